//! A frame on its way to one or more sessions, with what the session needs to know about it
//! without parsing the text.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::{ChannelSeq, NodeId};
use super::presence::PresenceStatus;

/// What a delivery stands for. Sessions keep per-channel and per-watch state by it: the last
/// seq delivered, who is typing, the last presence sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryKind {
    /// A durable channel event: delivered once, in seq order; gaps are filled from the store.
    Event { channel_id: Uuid, seq: ChannelSeq },
    /// Someone started or stopped typing in a channel.
    Typing { channel_id: Uuid, user_id: Uuid, active: bool },
    /// Another ephemeral channel frame (a read receipt).
    Channel { channel_id: Uuid },
    /// A watched user's presence changed.
    Presence { user_id: Uuid, status: PresenceStatus },
    /// A meeting's roster event from room `incarnation` at `version`: a session passes events
    /// on in order after the snapshot it forwarded, and rejoins when a new incarnation speaks.
    Meeting { meeting_id: Uuid, incarnation: u64, version: u64 },
    /// A frame for this session only (a notification, a signal).
    Direct,
    /// Not a frame: the actor holding this session's subscription to the channel stopped
    /// (idle, moved, reloading), so the session must subscribe again to keep receiving.
    Resubscribe { channel_id: Uuid },
}

/// A frame's JSON text, shared by every recipient (and handed to the socket) without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameText(Bytes);

impl FrameText {
    pub fn empty() -> Self {
        FrameText(Bytes::new())
    }

    /// The text (checked: it is only for tests and logs, never on the delivery path).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes, for a socket writer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl From<String> for FrameText {
    fn from(text: String) -> Self {
        FrameText(Bytes::from(text))
    }
}

impl From<&'static str> for FrameText {
    fn from(text: &'static str) -> Self {
        FrameText(Bytes::from_static(text.as_bytes()))
    }
}

impl std::fmt::Display for FrameText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: DeliveryKind,
    /// The JSON text of the frame (empty for `Resubscribe`); shared by every recipient.
    pub text: FrameText,
    /// The node whose actor sent it: a session takes channel events and presence only from
    /// the node it subscribed or watched at, so a stale owner cannot speak for the new one.
    pub from: NodeId,
}

impl Delivery {
    pub fn new(kind: DeliveryKind, text: FrameText, from: NodeId) -> Self {
        Self { kind, text, from }
    }

    pub fn resubscribe(channel_id: Uuid, from: NodeId) -> Self {
        Self { kind: DeliveryKind::Resubscribe { channel_id }, text: FrameText::empty(), from }
    }

    /// The channel this delivery belongs to, if any.
    pub fn channel_id(&self) -> Option<Uuid> {
        match self.kind {
            DeliveryKind::Event { channel_id, .. }
            | DeliveryKind::Typing { channel_id, .. }
            | DeliveryKind::Channel { channel_id }
            | DeliveryKind::Resubscribe { channel_id } => Some(channel_id),
            DeliveryKind::Presence { .. } | DeliveryKind::Meeting { .. } | DeliveryKind::Direct => None,
        }
    }

    /// The seq of a durable event.
    pub fn seq(&self) -> Option<ChannelSeq> {
        match self.kind {
            DeliveryKind::Event { seq, .. } => Some(seq),
            _ => None,
        }
    }
}
