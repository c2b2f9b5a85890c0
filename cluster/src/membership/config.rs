//! Membership settings and the timeouts derived from them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;

use super::error::MembershipError;

/// How a node takes part in the membership group.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// This node's address for peers, e.g. "127.0.0.2:9000".
    pub cluster_addr: String,
    /// This node's HTTP/WebSocket address, e.g. "127.0.0.2:8000".
    pub client_addr: String,
    /// This run of the node (drawn at every start); peers see a restart by its change.
    pub incarnation: crate::Incarnation,
    /// Holds the node id and the persisted raft state.
    pub data_dir: PathBuf,
    /// Cluster addresses to join through; empty means "bootstrap a new cluster" when there is
    /// no persisted state.
    pub seeds: Vec<String>,
    /// Raft heartbeat; the leader also pings members this often.
    pub heartbeat: Duration,
    /// Raft election timeout range (min, max).
    pub election_timeout: (Duration, Duration),
    /// The leader removes a member that has not answered its pings for this long.
    pub dead_after: Duration,
    /// At most this many voters; further members stay learners.
    pub max_voters: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        MembershipConfig {
            cluster_addr: String::new(),
            client_addr: String::new(),
            incarnation: 1,
            data_dir: PathBuf::from("data/membership"),
            seeds: Vec::new(),
            heartbeat: Duration::from_millis(150),
            election_timeout: (Duration::from_millis(600), Duration::from_millis(1200)),
            dead_after: Duration::from_secs(2),
            max_voters: 5,
        }
    }
}

impl MembershipConfig {
    pub(crate) fn validate(&self) -> Result<(), MembershipError> {
        let invalid = |reason: &str| Err(MembershipError::Config(reason.to_owned()));
        if self.cluster_addr.is_empty() {
            return invalid("cluster_addr is empty");
        }
        if self.max_voters == 0 {
            return invalid("max_voters must be at least 1");
        }
        if self.heartbeat.is_zero() {
            return invalid("heartbeat must be positive");
        }
        if self.dead_after <= self.heartbeat * 2 {
            return invalid("dead_after must exceed two heartbeats");
        }
        Ok(())
    }

    /// The openraft configuration (validated by openraft as well).
    pub(crate) fn raft_config(&self) -> Result<Arc<openraft::Config>, MembershipError> {
        let millis = |duration: Duration| u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1);
        let config = openraft::Config {
            cluster_name: "membership".to_owned(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout.0),
            election_timeout_max: millis(self.election_timeout.1),
            // The log only grows with membership changes and elections: compact rarely.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
            max_in_snapshot_log_to_keep: 100,
            ..openraft::Config::default()
        };
        config.validate().map(Arc::new).map_err(|error| MembershipError::Config(error.to_string()))
    }

    /// Bound of one request that needs the leader to commit something (join, leave, a
    /// membership change): a few elections long.
    pub(crate) fn request_timeout(&self) -> Duration {
        (self.election_timeout.1 * 4).max(Duration::from_millis(500))
    }

    /// Bound of one liveness ping.
    pub(crate) fn ping_timeout(&self) -> Duration {
        (self.heartbeat * 2).min(self.dead_after / 2)
    }

    /// How long a node may act as an owner after it last heard from a quorum: shorter than
    /// `dead_after`, so a node cut off stops serving before the others move its actors.
    pub fn lease(&self) -> Duration {
        self.dead_after * 3 / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_an_address_and_then_validate() {
        let config = MembershipConfig::default();
        assert!(matches!(config.validate(), Err(MembershipError::Config(_))));
        let config = MembershipConfig { cluster_addr: "127.0.0.1:9000".into(), ..MembershipConfig::default() };
        config.validate().unwrap();
        let raft = config.raft_config().unwrap();
        assert_eq!((raft.heartbeat_interval, raft.election_timeout_min, raft.election_timeout_max), (150, 600, 1200));
        let inverted =
            MembershipConfig { election_timeout: (Duration::from_millis(900), Duration::from_millis(800)), ..config };
        assert!(matches!(inverted.raft_config(), Err(MembershipError::Config(_))));
    }
}
