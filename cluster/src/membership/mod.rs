//! Cluster membership: an openraft group whose replicated state is the set of members (id,
//! cluster and client addresses) and an **epoch** bumped by every change of that set.
//!
//! # Layout
//! - `state`: the raft types, the `state::Command`s in the log and their pure transitions.
//! - `liveness`: I/O-free decisions (who is dead, is removal safe, promotions, the lease).
//! - `log_store`, `state_machine`, `disk`: openraft storage persisted under `data_dir`.
//! - `protocol`, `network`: requests between nodes over [`PeerRpc`] and openraft's network.
//! - `admin`: join, leave and removal, executed by the leader.
//! - `tasks`: the background tasks below.
//!
//! # Tasks
//! [`Membership::start`] runs raft and spawns three tasks; [`Membership::shutdown`] stops raft,
//! then the tasks (bounded wait, then abort). The tasks hold only a weak reference, so they
//! also end if the `Membership` is dropped.
//! - *leader watch*: follows raft metrics and publishes the leader on the view channel.
//! - *probe and lead*: every node pings every other member each heartbeat and keeps when it
//!   last heard from each (and at which epoch) — the basis of its ownership lease; while this
//!   node leads, it also removes the members silent for `dead_after` and promotes learners up
//!   to `max_voters`, from the same table, so a new leader acts without a new grace period.
//! - *joiner*: joins through the seeds at start, and rejoins later if no leader has pinged this
//!   node for `2 × dead_after` (it was removed while cut off) or the member set lacks it as it
//!   is now (its addresses changed).
//!
//! # Invariants
//! - **Only the leader changes membership, one change at a time** (`admin_lock`).
//! - **Adding goes raft first, then the member set; removing goes raft first, then the member
//!   set** (except a leader removing itself). A member that is in the set but not in raft is
//!   therefore a leftover of an interrupted removal, which the leader finishes.
//! - **A node never removes itself for silence**, and never proposes a removal that the
//!   answering voters could not commit.
//! - **A node acts as an owner only under a lease** ([`Membership::serving`]): it heard from a
//!   majority of voters within `lease < dead_after`, and none of them is at a later epoch. A
//!   node the others are about to remove for silence has lost its lease before they do.
//! - **A restart is a new member entry**: the member info carries the process incarnation,
//!   so a node restarted (even within the failure-detection time) re-adds itself at once and
//!   the epoch moves, telling everyone that what the old run held is gone.

mod admin;
mod config;
pub(crate) mod disk;
mod error;
mod liveness;
mod log_store;
mod network;
mod protocol;
mod state;
mod state_machine;
mod tasks;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use openraft::{BasicNode, Raft, RaftMetrics};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

pub use config::MembershipConfig;
pub use error::MembershipError;

use log_store::LogStore;
use network::PeerNetwork;
use protocol::{PeerRequest, PeerResponse};
use state::TypeConfig;
use state_machine::StateMachineStore;

use crate::{codec, ClusterView, MemberInfo, NodeId, PeerRpc};
use liveness::Liveness;

pub use disk::load_or_create_node_id as node_id_in;

/// How long `shutdown` waits for each background task before aborting it.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's membership: a running raft node plus the tasks around it.
pub struct Membership {
    info: MemberInfo,
    config: MembershipConfig,
    raft: Raft<TypeConfig>,
    metrics: watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    rpc: Arc<dyn PeerRpc>,
    /// Shared with the state machine, which publishes members and epoch; the leader watch
    /// publishes the leader.
    view: Arc<watch::Sender<ClusterView>>,
    stop: watch::Sender<bool>,
    /// Serialises membership changes made by this node as leader.
    admin_lock: tokio::sync::Mutex<()>,
    /// Set by `leave`: the joiner must not bring this node back.
    leaving: AtomicBool,
    /// When a leader last pinged this node (or when it started or last joined).
    last_pinged: Mutex<Instant>,
    /// When this node last heard from each other member: liveness and the lease.
    liveness: Mutex<Liveness>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A snapshot of this node's membership, for an admin or status endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MembershipStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub epoch: u64,
    pub members: Vec<MemberInfo>,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub is_leader: bool,
}

/// Raft's own membership as this node sees it.
struct RaftMembers {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    addrs: BTreeMap<NodeId, String>,
}

impl Membership {
    /// Loads or creates this node's state under `config.data_dir`, starts raft and the
    /// background tasks. A new node with no seeds bootstraps a single-member cluster before
    /// this returns; a node with seeds joins in the background (watch [`Membership::view`]).
    pub async fn start(config: MembershipConfig, rpc: Arc<dyn PeerRpc>) -> Result<Arc<Membership>, MembershipError> {
        config.validate()?;
        let raft_config = config.raft_config()?;
        let data_dir = config.data_dir.clone();
        let storage_error = |source| MembershipError::Storage { path: data_dir.clone(), source };
        let id_dir = data_dir.clone();
        let node_id = disk::blocking(move || disk::load_or_create_node_id(&id_dir)).await.map_err(storage_error)?;
        let info = MemberInfo {
            id: node_id,
            incarnation: config.incarnation,
            cluster_addr: config.cluster_addr.clone(),
            client_addr: config.client_addr.clone(),
        };

        let view = Arc::new(watch::channel(ClusterView::default()).0);
        let raft_dir = data_dir.join("raft");
        let log_store = LogStore::open(raft_dir.clone()).await.map_err(storage_error)?;
        let state_machine =
            StateMachineStore::open(raft_dir, node_id, Arc::clone(&view)).await.map_err(storage_error)?;
        let fresh = !log_store.has_state() && !state_machine.has_snapshot();
        let network = PeerNetwork { rpc: Arc::clone(&rpc), node_id, first_backoff: config.heartbeat };
        let raft = Raft::new(node_id, raft_config, network, log_store, state_machine)
            .await
            .map_err(|fatal| MembershipError::Stopped(fatal.to_string()))?;

        let membership = Arc::new(Membership {
            info,
            metrics: raft.metrics(),
            raft,
            config,
            rpc,
            view,
            stop: watch::channel(false).0,
            admin_lock: tokio::sync::Mutex::new(()),
            leaving: AtomicBool::new(false),
            last_pinged: Mutex::new(Instant::now()),
            liveness: Mutex::new(Liveness::default()),
            tasks: Mutex::new(Vec::new()),
        });
        let has_seeds = !membership.seeds().is_empty();
        if fresh && !has_seeds {
            if let Err(error) = membership.bootstrap().await {
                membership.shutdown().await;
                return Err(error);
            }
        }
        // A restarted node joins again at once: its incarnation changed, so its member entry
        // must be replaced before the others keep treating it as the run that died.
        tasks::spawn(&membership, has_seeds || !fresh);
        info!(node_id, cluster_addr = %membership.info.cluster_addr, fresh, has_seeds, "membership started");
        Ok(membership)
    }

    pub fn node_id(&self) -> NodeId {
        self.info.id
    }

    /// Handles one request that a peer sent with [`PeerRpc::call`]; returns the encoded answer.
    pub async fn handle(&self, payload: Vec<u8>) -> Vec<u8> {
        let response = match codec::decode::<PeerRequest>(&payload) {
            Ok(request) => self.dispatch(request).await,
            Err(error) => {
                warn!(node_id = self.info.id, %error, "undecodable peer request");
                PeerResponse::Failed(format!("undecodable request: {error}"))
            }
        };
        codec::encode(&response).unwrap_or_else(|error| {
            // The caller then fails to decode and treats this node as failing.
            warn!(node_id = self.info.id, %error, "cannot encode peer response");
            Vec::new()
        })
    }

    /// The current view; a new value is published on every applied membership change and
    /// every leader change.
    pub fn view(&self) -> watch::Receiver<ClusterView> {
        self.view.subscribe()
    }

    /// Graceful leave: asks the leader to remove this node now. Bounded by a few election
    /// timeouts; this node then stays out of the cluster until restarted.
    pub async fn leave(&self) -> Result<(), MembershipError> {
        self.leave_cluster().await
    }

    /// Stops raft and the background tasks. Idempotent.
    pub async fn shutdown(&self) {
        let node_id = self.info.id;
        if self.stop.send_replace(true) {
            return;
        }
        if let Err(error) = self.raft.shutdown().await {
            warn!(node_id, %error, "raft did not stop cleanly");
        }
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for mut task in tasks {
            match tokio::time::timeout(TASK_STOP_TIMEOUT, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => warn!(node_id, %error, "membership task failed"),
                Err(_) => {
                    warn!(node_id, "membership task did not stop in time");
                    task.abort();
                }
            }
        }
        info!(node_id, "membership stopped");
    }

    /// For an admin/status endpoint.
    pub fn status(&self) -> MembershipStatus {
        let (leader, term, voters, learners) = {
            let metrics = self.metrics.borrow();
            let membership = metrics.membership_config.membership();
            (
                metrics.current_leader,
                metrics.current_term,
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        let view = self.view.borrow();
        MembershipStatus {
            node_id: self.info.id,
            leader,
            term,
            epoch: view.epoch,
            members: view.members.values().cloned().collect(),
            voters,
            learners,
            is_leader: leader == Some(self.info.id),
        }
    }

    async fn dispatch(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::AppendEntries(rpc) => match self.raft.append_entries(rpc).await {
                Ok(response) => PeerResponse::AppendEntries(response),
                Err(error) => PeerResponse::Failed(error.to_string()),
            },
            PeerRequest::Vote(rpc) => match self.raft.vote(rpc).await {
                Ok(response) => PeerResponse::Vote(response),
                Err(error) => PeerResponse::Failed(error.to_string()),
            },
            PeerRequest::InstallSnapshot(rpc) => match self.raft.install_snapshot(rpc).await {
                Ok(response) => PeerResponse::InstallSnapshot(response),
                Err(error) => PeerResponse::Failed(error.to_string()),
            },
            PeerRequest::Join { member, forwarded } => self.on_join(member, forwarded).await,
            PeerRequest::Leave { id, forwarded } => self.on_leave(id, forwarded).await,
            PeerRequest::Ping { from, epoch, leader } => {
                if leader {
                    self.pinged();
                }
                self.heard(from, epoch);
                PeerResponse::Pong {
                    id: self.info.id,
                    incarnation: self.info.incarnation,
                    epoch: self.view.borrow().epoch,
                }
            }
        }
    }

    fn heard(&self, from: NodeId, epoch: u64) {
        self.liveness.lock().unwrap_or_else(PoisonError::into_inner).answered(from, epoch, Instant::now());
    }

    /// Whether this node may act as the owner of what placement gives it now: it is a member
    /// and holds the lease (see the module's invariants).
    pub fn serving(&self) -> bool {
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let (member, epoch) = {
            let view = self.view.borrow();
            (view.members.contains_key(&self.info.id), view.epoch)
        };
        if !member {
            return false;
        }
        let voters = self.raft_members().voters;
        let liveness = self.liveness.lock().unwrap_or_else(PoisonError::into_inner);
        liveness.holds_lease(self.info.id, &voters, epoch, Instant::now(), self.config.lease())
    }

    fn pinged(&self) {
        *self.last_pinged.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last_pinged(&self) -> Instant {
        *self.last_pinged.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cluster addresses to join through, without this node's own.
    fn seeds(&self) -> Vec<String> {
        let mut seeds: Vec<String> =
            self.config.seeds.iter().filter(|seed| **seed != self.info.cluster_addr).cloned().collect();
        seeds.dedup();
        seeds
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.metrics.borrow().current_leader
    }

    fn is_leader(&self) -> bool {
        self.current_leader() == Some(self.info.id)
    }

    fn raft_members(&self) -> RaftMembers {
        let metrics = self.metrics.borrow();
        let membership = metrics.membership_config.membership();
        RaftMembers {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            addrs: membership.nodes().map(|(id, node)| (*id, node.addr.clone())).collect(),
        }
    }

    /// The leader and its cluster address, if known.
    fn leader_addr(&self) -> Option<(NodeId, String)> {
        let leader = self.current_leader()?;
        let addr = self.raft_members().addrs.remove(&leader);
        addr.or_else(|| self.view.borrow().members.get(&leader).map(|member| member.cluster_addr.clone()))
            .map(|addr| (leader, addr))
    }
}
