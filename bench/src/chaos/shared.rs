//! State shared by the orchestrator and every chaos client: the run's phase, the traffic
//! window, which nodes to avoid, and the counters the drain waits on.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A node that failed a connection attempt is skipped by every client for this long.
const AVOID_FOR: Duration = Duration::from_millis(1500);

/// Where the run is; only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Connecting and subscribing; nothing is sent yet.
    Connect,
    /// Sending at the configured rate.
    Traffic,
    /// No new messages: resending what is unacknowledged, receiving what is missing.
    Drain,
    /// Close the socket and report.
    Stop,
}

/// When messages are generated.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub seconds: f64,
}

/// State shared by all clients and the orchestrator.
pub struct Shared {
    pub urls: Vec<String>,
    pub channels: Vec<String>,
    pub rate: f64,
    pub users: usize,
    /// Prefix of every client_msg_id of this run.
    pub tag: String,
    pub window: OnceLock<Window>,
    avoid_until: Mutex<Vec<Option<Instant>>>,
    pub generated: AtomicU64,
    pub acked: AtomicU64,
    /// Generated and neither acknowledged nor rejected.
    pub outstanding: AtomicI64,
    pub disconnects: AtomicU64,
    /// Clients that finished their first subscription round.
    pub ready: AtomicU64,
    /// Highest acknowledged seq per channel.
    pub max_acked_seq: Vec<AtomicI64>,
    /// `contiguous` seq per (user, channel), at `user * channels + channel`.
    pub progress: Vec<AtomicI64>,
}

impl Shared {
    pub fn new(urls: Vec<String>, channels: Vec<String>, rate: f64, users: usize, tag: String) -> Self {
        let avoid = vec![None; urls.len()];
        let max_acked_seq = channels.iter().map(|_| AtomicI64::new(0)).collect();
        let progress = (0..users * channels.len()).map(|_| AtomicI64::new(0)).collect();
        Self {
            urls,
            channels,
            rate,
            users,
            tag,
            window: OnceLock::new(),
            avoid_until: Mutex::new(avoid),
            generated: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            outstanding: AtomicI64::new(0),
            disconnects: AtomicU64::new(0),
            ready: AtomicU64::new(0),
            max_acked_seq,
            progress,
        }
    }

    pub fn avoid(&self, url: usize) {
        if let Ok(mut avoid) = self.avoid_until.lock() {
            avoid[url] = Some(Instant::now() + AVOID_FOR);
        }
    }

    /// The order in which to try nodes: from `first` on, recently failed ones left out
    /// (unless all failed recently).
    pub fn candidates(&self, first: usize) -> Vec<usize> {
        let count = self.urls.len();
        let order: Vec<usize> = (0..count).map(|k| (first + k) % count).collect();
        let now = Instant::now();
        let fresh: Vec<usize> = match self.avoid_until.lock() {
            Ok(avoid) => order.iter().copied().filter(|&url| avoid[url].is_none_or(|until| until <= now)).collect(),
            Err(_) => order.clone(),
        };
        if fresh.is_empty() {
            order
        } else {
            fresh
        }
    }

    /// True once every acknowledged message reached every receiver and nothing is outstanding.
    pub fn drained(&self) -> bool {
        if self.outstanding.load(Relaxed) > 0 {
            return false;
        }
        let channels = self.channels.len();
        self.progress
            .iter()
            .enumerate()
            .all(|(slot, progress)| progress.load(Relaxed) >= self.max_acked_seq[slot % channels].load(Relaxed))
    }
}

/// Unix time in milliseconds (what the scenario script logs its actions with).
pub fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_recently_failed_nodes() {
        let urls = vec!["http://a".to_owned(), "http://b".to_owned(), "http://c".to_owned()];
        let shared = Shared::new(urls, vec!["x".to_owned()], 1.0, 1, "t".to_owned());
        assert_eq!(shared.candidates(1), [1, 2, 0]);
        shared.avoid(2);
        assert_eq!(shared.candidates(1), [1, 0]);
        shared.avoid(0);
        shared.avoid(1);
        assert_eq!(shared.candidates(2), [2, 0, 1], "all failed: try them all");
    }

    #[test]
    fn drained_needs_acks_and_deliveries() {
        let shared = Shared::new(vec!["http://a".to_owned()], vec!["x".to_owned(), "y".to_owned()], 1.0, 2, "t".into());
        assert!(shared.drained());
        shared.outstanding.store(1, Relaxed);
        assert!(!shared.drained());
        shared.outstanding.store(0, Relaxed);
        shared.max_acked_seq[1].store(5, Relaxed);
        shared.progress[1].store(5, Relaxed);
        assert!(!shared.drained(), "user 1 has not seen channel y up to 5");
        shared.progress[3].store(6, Relaxed);
        assert!(shared.drained());
    }
}
