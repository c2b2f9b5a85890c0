//! Frames sent by the server.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{
    ChannelEvent, ChannelSeq, ErrorCode, MessageView, NotificationReason, PresenceStatus, RequestError, UnixMillis,
};

/// A frame sent by the server.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Hello {
        session_id: Uuid,
        node_id: String,
        user_id: Uuid,
        heartbeat_interval_ms: u64,
        idle_timeout_ms: u64,
    },
    /// The answer to `ping`, with its request id if it had one.
    Pong {
        #[serde(skip_serializing_if = "Option::is_none", default)]
        id: Option<String>,
    },
    Ok {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        #[serde(skip_serializing_if = "serde_json::Value::is_null", default)]
        result: serde_json::Value,
    },
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    /// A durable channel event, in sequence order.
    Event {
        channel_id: Uuid,
        seq: ChannelSeq,
        event: ChannelEvent,
    },
    /// Ephemeral: a member started or stopped typing (stops by itself after the typing TTL).
    Typing {
        channel_id: Uuid,
        user_id: Uuid,
        active: bool,
    },
    /// A member's read cursor moved forward.
    Read {
        channel_id: Uuid,
        user_id: Uuid,
        seq: ChannelSeq,
    },
    Presence {
        user_id: Uuid,
        status: PresenceStatus,
        last_seen: Option<UnixMillis>,
    },
    /// The user became a member of a channel (joined, was added, or a direct message with
    /// them was opened): a client adds it to its list without polling.
    ChannelAdded {
        channel_id: Uuid,
        by: Uuid,
    },
    /// The user was mentioned, or got a direct message, in a channel the session may not be subscribed to.
    Notification {
        reason: NotificationReason,
        channel_id: Uuid,
        seq: ChannelSeq,
        message: MessageView,
    },
}

impl ServerFrame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
    pub fn error(id: Option<String>, err: &RequestError) -> Self {
        ServerFrame::Error { id, code: err.code, message: err.message.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_frames_round_trip() {
        let frame = ServerFrame::Typing { channel_id: Uuid::nil(), user_id: Uuid::nil(), active: true };
        let text = frame.to_text();
        assert!(text.contains(r#""type":"typing""#));
        assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), frame);
    }
}
