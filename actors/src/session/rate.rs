//! Limits on a client's inbound frames.

use std::sync::Mutex;
use std::time::Instant;

use uuid::Uuid;

/// Decides whether a user may send one more frame now. The node shares one limiter across
/// every socket of a user, so opening more sockets buys no more frames.
pub trait FrameLimiter: Send + Sync + 'static {
    fn allow(&self, user_id: Uuid) -> bool;
}

/// A token bucket for one socket: the default when no shared limiter is given (tests).
pub struct SocketBucket {
    bucket: Mutex<(f64, Instant)>,
    burst: f64,
    per_sec: f64,
}

impl SocketBucket {
    pub fn new(burst: f64, per_sec: f64) -> Self {
        Self { bucket: Mutex::new((burst, Instant::now())), burst, per_sec }
    }
}

impl FrameLimiter for SocketBucket {
    fn allow(&self, _user_id: Uuid) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let (tokens, last) = *bucket;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_sec).min(self.burst);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            true
        } else {
            *bucket = (tokens, now);
            false
        }
    }
}
