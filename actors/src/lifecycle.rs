//! The life of a room actor that nobody uses: a periodic check that stops it once idle. One
//! helper instead of a timer copied into every actor.

use std::time::{Duration, Instant};

use ractor::concurrency::JoinHandle;
use ractor::ActorRef;

/// Sends `check()` to the actor every half `idle_timeout` (at least every 50 ms) and
/// remembers the last activity; stopped with [`IdleTimer::cancel`] (call it in `post_stop`).
pub struct IdleTimer {
    idle_timeout: Duration,
    last_activity: Instant,
    handle: Option<JoinHandle<()>>,
}

impl IdleTimer {
    pub fn start<M: ractor::Message>(myself: &ActorRef<M>, idle_timeout: Duration, check: fn() -> M) -> Self {
        let every = (idle_timeout / 2).max(Duration::from_millis(50));
        let handle = myself.send_interval(every, check);
        Self { idle_timeout, last_activity: Instant::now(), handle: Some(handle) }
    }

    /// Something happened: the idle period starts over.
    pub fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Whether nothing happened for the idle timeout.
    pub fn expired(&self) -> bool {
        self.last_activity.elapsed() >= self.idle_timeout
    }

    pub fn cancel(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}
