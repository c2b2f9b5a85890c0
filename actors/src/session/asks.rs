//! What every ask a session runs off its mailbox shares: how often and how many times it is
//! tried, and how its answer is posted back.

use std::time::Duration;

use ractor::ActorRef;
use tracing::{debug, warn};

use super::SessionMsg;
use crate::model::RequestError;

/// Pause between two attempts to establish something again.
pub(super) const AGAIN_EVERY: Duration = Duration::from_millis(300);
/// Attempts before giving up (each waits up to the call timeout for a moving owner).
pub(super) const ATTEMPTS: u32 = 4;

pub(super) fn unexpected<T: std::fmt::Debug>(answer: T) -> RequestError {
    warn!(?answer, "unexpected answer from an actor");
    RequestError::internal()
}

/// Posts a message to the session; a session that ended needs no answer.
pub(super) fn post(myself: &ActorRef<SessionMsg>, msg: SessionMsg) {
    if myself.cast(msg).is_err() {
        debug!("session ended before an answer arrived");
    }
}
