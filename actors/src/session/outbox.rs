//! The delivery fast path: room actors hand a session's frames straight to its bounded
//! outbound queue, checking and advancing the session's per-channel state under one lock,
//! without a hop through the session actor. Only what needs the actor (a gap to fill from the
//! store, presence and meeting ordering, a resubscription) goes to its mailbox.
//!
//! **Invariants:** a channel event is pushed by the fast path only when it extends the
//! channel's delivered seq by exactly one, so order and no-duplicate hold whoever pushes;
//! while the actor fills a channel's gap (`filling`), that channel's events go to the actor,
//! in order, behind the replay.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;
use uuid::Uuid;

use super::subscriptions::{EventAction, Subscriptions};
use crate::model::{Delivery, DeliveryKind, FrameText};

/// What the session's per-channel state says, behind the outbox's lock.
#[derive(Default)]
pub(super) struct Tracking {
    pub(super) subscriptions: Subscriptions,
    /// Channels whose gap the actor is filling from the store right now.
    pub(super) filling: HashSet<Uuid>,
    /// The socket is closing: nothing more is queued.
    pub(super) closed: bool,
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum QueueError {
    /// The client stopped reading: the queue is full.
    Full,
    /// The socket is gone or closing.
    Closed,
}

/// What the fast path did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fast {
    Done,
    /// The actor must handle it (in order with what else it was handed).
    ToActor,
    /// Queued nothing: the client stopped reading, the session must close.
    Overflow,
    Closed,
}

pub(super) struct Outbox {
    frames: mpsc::Sender<FrameText>,
    tracking: Mutex<Tracking>,
}

impl Outbox {
    pub(super) fn new(frames: mpsc::Sender<FrameText>) -> Self {
        Self { frames, tracking: Mutex::new(Tracking::default()) }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Tracking> {
        self.tracking.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The sender, for the actor's replays that wait for room in the queue.
    pub(super) fn frames(&self) -> &mpsc::Sender<FrameText> {
        &self.frames
    }

    /// Queues a frame without waiting.
    pub(super) fn queue(&self, tracking: &mut Tracking, text: FrameText) -> Result<(), QueueError> {
        if tracking.closed {
            return Err(QueueError::Closed);
        }
        self.frames.try_send(text).map_err(|err| {
            tracking.closed = true;
            match err {
                mpsc::error::TrySendError::Full(_) => QueueError::Full,
                mpsc::error::TrySendError::Closed(_) => QueueError::Closed,
            }
        })
    }

    /// Handles a delivery on the caller's thread if it can.
    pub(super) fn deliver(&self, delivery: &Delivery) -> Fast {
        let mut tracking = self.lock();
        if tracking.closed {
            return Fast::Closed;
        }
        let pushed = match delivery.kind {
            DeliveryKind::Event { channel_id, seq } => {
                if tracking.filling.contains(&channel_id) {
                    return Fast::ToActor;
                }
                match tracking.subscriptions.on_event(channel_id, seq) {
                    EventAction::Drop => return Fast::Done,
                    EventAction::FillThenPush { .. } => {
                        tracking.filling.insert(channel_id);
                        return Fast::ToActor;
                    }
                    EventAction::Push => {
                        let queued = self.queue(&mut tracking, delivery.text.clone());
                        if queued.is_ok() {
                            tracking.subscriptions.advance(channel_id, seq);
                        }
                        queued
                    }
                }
            }
            DeliveryKind::Typing { channel_id, user_id, active } => {
                if !tracking.subscriptions.on_typing(channel_id, user_id, active, delivery.from) {
                    return Fast::Done;
                }
                self.queue(&mut tracking, delivery.text.clone())
            }
            DeliveryKind::Channel { channel_id } => {
                if !tracking.subscriptions.contains(channel_id) {
                    return Fast::Done;
                }
                self.queue(&mut tracking, delivery.text.clone())
            }
            DeliveryKind::Direct => self.queue(&mut tracking, delivery.text.clone()),
            DeliveryKind::Presence { .. } | DeliveryKind::Meeting { .. } | DeliveryKind::Resubscribe { .. } => {
                return Fast::ToActor
            }
        };
        match pushed {
            Ok(()) => Fast::Done,
            Err(QueueError::Full) => Fast::Overflow,
            Err(QueueError::Closed) => Fast::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SubscribeAnswer;

    fn event(channel_id: Uuid, seq: i64) -> Delivery {
        Delivery::new(DeliveryKind::Event { channel_id, seq }, FrameText::from(format!("{seq}")), 1)
    }

    #[test]
    fn the_fast_path_pushes_only_the_next_seq_and_leaves_gaps_to_the_actor() {
        let (tx, mut rx) = mpsc::channel(4);
        let outbox = Outbox::new(tx);
        let channel = Uuid::new_v4();
        {
            let mut tracking = outbox.lock();
            tracking.subscriptions.begin(channel, None);
            let answer = SubscribeAnswer { channel_id: channel, head_seq: 0, read_cursors: vec![], typing: vec![] };
            tracking.subscriptions.answered(channel, 1, &answer, None).unwrap();
        }
        assert_eq!(outbox.deliver(&event(channel, 1)), Fast::Done);
        assert_eq!(outbox.deliver(&event(channel, 1)), Fast::Done, "a repeat is dropped");
        assert_eq!(rx.try_recv().unwrap().as_str(), "1");
        assert!(rx.try_recv().is_err());
        assert_eq!(outbox.deliver(&event(channel, 3)), Fast::ToActor, "a gap goes to the actor");
        assert_eq!(outbox.deliver(&event(channel, 2)), Fast::ToActor, "and so does the channel while it fills");
        outbox.lock().filling.clear();
        assert_eq!(outbox.deliver(&event(channel, 2)), Fast::Done);
        for seq in 3..=5 {
            outbox.deliver(&event(channel, seq));
        }
        assert_eq!(outbox.deliver(&event(channel, 6)), Fast::Overflow, "a client that stops reading is cut off");
        assert_eq!(outbox.deliver(&event(channel, 7)), Fast::Closed);
    }
}
