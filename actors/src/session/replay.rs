//! Filling a session's gap from the stored event log.

use ractor::ActorRef;
use tracing::warn;
use uuid::Uuid;

use super::io::CLOSE_SLOW_CONSUMER;
use super::{SessionMsg, SessionState};
use crate::model::FrameText;
use crate::model::{ChannelSeq, RequestError};
use crate::protocol::ServerFrame;

/// Events replayed from the store per page when a session catches up.
const REPLAY_PAGE: u32 = 500;

/// Sends the stored events in `(after, up_to]` and records what was sent as delivered.
pub(super) async fn replay(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    channel_id: Uuid,
    after: ChannelSeq,
    up_to: ChannelSeq,
) -> Result<(), RequestError> {
    let store = state.directory.ports().channels.clone();
    let mut cursor = after;
    while cursor < up_to {
        let page = store.events_after(channel_id, cursor, REPLAY_PAGE).await.map_err(|err| {
            warn!(%channel_id, error = %err, "replay failed");
            RequestError::unavailable()
        })?;
        if page.is_empty() {
            break;
        }
        for stored in page.into_iter().take_while(|stored| stored.seq <= up_to) {
            if stored.seq != cursor + 1 {
                warn!(%channel_id, expected = cursor + 1, found = stored.seq, "event log has a hole");
            }
            cursor = stored.seq;
            let frame = ServerFrame::Event { channel_id, seq: stored.seq, event: stored.event };
            if state.closed {
                return Err(RequestError::unavailable());
            }
            // Replay waits for room in the queue, but only as long as a live client would need.
            let text: FrameText = FrameText::from(frame.to_text());
            let frames = state.outbox.frames().clone();
            if frames.send_timeout(text, state.config.call_timeout).await.is_err() {
                state.close(myself, CLOSE_SLOW_CONSUMER, "slow consumer: replay not read");
                return Err(RequestError::unavailable());
            }
            state.tracking().subscriptions.advance(channel_id, cursor);
        }
        if cursor >= up_to {
            break;
        }
    }
    Ok(())
}
