//! The client protocol: JSON text frames exchanged over the WebSocket.
//!
//! Every frame is an object tagged by `"type"`. Client frames may carry a request `"id"`;
//! the server answers each such frame with `ok` or `error` carrying the same id.
//! docs/PROTOCOL.md describes every frame with examples; keep the two in step.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// The per-channel sequence number: 1 for the first durable event of a channel, then +1 per event.
pub type ChannelSeq = i64;

/// Largest message body in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest client frame the session accepts, in bytes; larger frames get `payload_too_large`.
pub const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;
/// Largest emoji name in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;
/// Most attachments on one message.
pub const MAX_ATTACHMENTS: usize = 10;

pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// A frame sent by a client. The request id travels beside it in [`ClientEnvelope`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Ping,
    Subscribe {
        channel_id: Uuid,
        /// The last sequence number the client has seen; events after it are replayed.
        #[serde(default)]
        last_seq: Option<ChannelSeq>,
    },
    Unsubscribe {
        channel_id: Uuid,
    },
    Send {
        channel_id: Uuid,
        client_msg_id: String,
        #[serde(default)]
        body: String,
        #[serde(default)]
        parent_id: Option<Uuid>,
        #[serde(default)]
        attachment_ids: Vec<Uuid>,
    },
    Edit {
        channel_id: Uuid,
        message_id: Uuid,
        body: String,
    },
    Delete {
        channel_id: Uuid,
        message_id: Uuid,
    },
    React {
        channel_id: Uuid,
        message_id: Uuid,
        emoji: String,
    },
    Unreact {
        channel_id: Uuid,
        message_id: Uuid,
        emoji: String,
    },
    TypingStart {
        channel_id: Uuid,
    },
    TypingStop {
        channel_id: Uuid,
    },
    Read {
        channel_id: Uuid,
        seq: ChannelSeq,
    },
    PresenceSet {
        status: PresenceStatus,
    },
    PresenceWatch {
        user_ids: Vec<Uuid>,
    },
    PresenceUnwatch {
        user_ids: Vec<Uuid>,
    },
    MeetingJoin {
        meeting_id: Uuid,
    },
    MeetingLeave {
        meeting_id: Uuid,
    },
    /// Changes this participant's media state; absent fields stay as they are.
    MeetingState {
        meeting_id: Uuid,
        #[serde(default)]
        audio: Option<bool>,
        #[serde(default)]
        video: Option<bool>,
        #[serde(default)]
        screen: Option<bool>,
        #[serde(default)]
        hand: Option<bool>,
    },
    /// WebRTC signaling to one participant: `payload` is the SDP description or ICE candidate.
    Signal {
        meeting_id: Uuid,
        to: Uuid,
        kind: crate::meeting::SignalKind,
        payload: serde_json::Value,
    },
    HostMute {
        meeting_id: Uuid,
        participant_id: Uuid,
    },
    HostRemove {
        meeting_id: Uuid,
        participant_id: Uuid,
    },
    HostTransfer {
        meeting_id: Uuid,
        participant_id: Uuid,
    },
    LobbyAdmit {
        meeting_id: Uuid,
        participant_id: Uuid,
    },
    LobbyDeny {
        meeting_id: Uuid,
        participant_id: Uuid,
    },
    MeetingEnd {
        meeting_id: Uuid,
    },
}

/// Why a client frame could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub request_id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

/// Parses one client text frame into its request id and frame.
pub fn parse_client_frame(text: &str) -> Result<(Option<String>, ClientFrame), FrameError> {
    let too_large = |request_id| FrameError {
        request_id,
        code: ErrorCode::PayloadTooLarge,
        message: format!("frame of {} bytes exceeds the limit of {MAX_CLIENT_FRAME_BYTES}", text.len()),
    };
    // The socket already bounds what is read; parsing an oversized frame only serves to
    // answer it with its request id.
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        if text.len() > MAX_CLIENT_FRAME_BYTES {
            too_large(None)
        } else {
            FrameError {
                request_id: None,
                code: ErrorCode::BadJson,
                message: format!("frame is not valid JSON: {err}"),
            }
        }
    })?;
    let object = value.as_object_mut().ok_or_else(|| FrameError {
        request_id: None,
        code: ErrorCode::BadFrame,
        message: "frame must be a JSON object".to_owned(),
    })?;
    let request_id = match object.remove("id") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(id)) if id.len() <= 128 => Some(id),
        Some(_) => {
            return Err(FrameError {
                request_id: None,
                code: ErrorCode::BadFrame,
                message: "\"id\" must be a string of at most 128 bytes".to_owned(),
            })
        }
    };
    if text.len() > MAX_CLIENT_FRAME_BYTES {
        return Err(too_large(request_id));
    }
    let frame_type = object.get("type").and_then(|t| t.as_str()).map(str::to_owned);
    serde_json::from_value::<ClientFrame>(value).map(|frame| (request_id.clone(), frame)).map_err(|err| {
        let unknown = err.to_string().starts_with("unknown variant");
        FrameError {
            request_id,
            code: if unknown { ErrorCode::UnknownType } else { ErrorCode::BadFrame },
            message: match frame_type {
                Some(t) if unknown => format!("unknown frame type {t:?}"),
                _ => format!("malformed frame: {err}"),
            },
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

/// Error codes shared by WebSocket error frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadFrame,
    UnknownType,
    PayloadTooLarge,
    RateLimited,
    Invalid,
    Unauthorized,
    Forbidden,
    NotMember,
    NotFound,
    Conflict,
    /// A limit such as the meeting's participant cap.
    LimitExceeded,
    MethodNotAllowed,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Invalid => "invalid",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A request-level failure: what a client is told. Internal detail never goes here.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Deserialize, Serialize)]
#[error("{code:?}: {message}")]
pub struct RequestError {
    pub code: ErrorCode,
    pub message: String,
}

impl RequestError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Invalid, message)
    }
    pub fn unavailable() -> Self {
        Self::new(ErrorCode::Unavailable, "service temporarily unavailable, retry")
    }
    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "internal error")
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct ReactionView {
    pub emoji: String,
    pub user_ids: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct MessageView {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub seq: ChannelSeq,
    pub sender_id: Uuid,
    pub client_msg_id: String,
    pub parent_id: Option<Uuid>,
    pub body: String,
    pub mentions: Vec<Uuid>,
    pub attachment_ids: Vec<Uuid>,
    pub created_at: UnixMillis,
    pub edited_at: Option<UnixMillis>,
    pub deleted: bool,
    #[serde(default)]
    pub reactions: Vec<ReactionView>,
}

/// A durable channel event: persisted with its sequence number and replayed on resume.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChannelEvent {
    MessageNew { message: MessageView },
    MessageEdited { message_id: Uuid, body: String, mentions: Vec<Uuid>, edited_at: UnixMillis },
    MessageDeleted { message_id: Uuid, deleted_at: UnixMillis },
    ReactionAdded { message_id: Uuid, user_id: Uuid, emoji: String },
    ReactionRemoved { message_id: Uuid, user_id: Uuid, emoji: String },
    MemberJoined { user_id: Uuid },
    MemberLeft { user_id: Uuid },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct ReadCursor {
    pub user_id: Uuid,
    pub seq: ChannelSeq,
}

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
    /// The user was mentioned, or got a direct message, in a channel the session may not be subscribed to.
    Notification {
        reason: NotificationReason,
        channel_id: Uuid,
        seq: ChannelSeq,
        message: MessageView,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationReason {
    Mention,
    DirectMessage,
}

impl ServerFrame {
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
    pub fn error(id: Option<String>, err: &RequestError) -> Self {
        ServerFrame::Error { id, code: err.code, message: err.message.clone() }
    }
}

/// Extracts `@username` mentions from a message body, in order of first appearance.
pub fn parse_mentions(body: &str) -> Vec<&str> {
    let mut names: Vec<&str> = Vec::new();
    let bytes = body.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        let at_word_start = index == 0 || !is_name_byte(bytes[index - 1]);
        if bytes[index] == b'@' && at_word_start {
            let start = index + 1;
            let mut end = start;
            while end < bytes.len() && is_name_byte(bytes[end]) {
                end += 1;
            }
            if end > start {
                let name = body[start..end].trim_end_matches('.');
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
            }
            index = end.max(index + 1);
        } else {
            index += 1;
        }
    }
    names
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-' || byte == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_frame_with_request_id() {
        let (id, frame) = parse_client_frame(r#"{"id":"r1","type":"ping"}"#).unwrap();
        assert_eq!(id.as_deref(), Some("r1"));
        assert_eq!(frame, ClientFrame::Ping);
    }

    #[test]
    fn classifies_bad_frames() {
        assert_eq!(parse_client_frame("{not json").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse_client_frame("[1,2]").unwrap_err().code, ErrorCode::BadFrame);
        let unknown = parse_client_frame(r#"{"id":"x","type":"launch_rockets"}"#).unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownType);
        assert_eq!(unknown.request_id.as_deref(), Some("x"));
        let missing = parse_client_frame(r#"{"type":"subscribe"}"#).unwrap_err();
        assert_eq!(missing.code, ErrorCode::BadFrame);
        let bad_uuid = parse_client_frame(r#"{"type":"unsubscribe","channel_id":"nope"}"#).unwrap_err();
        assert_eq!(bad_uuid.code, ErrorCode::BadFrame);
        let huge = format!(r#"{{"id":"h","type":"ping","pad":"{}"}}"#, "x".repeat(MAX_CLIENT_FRAME_BYTES));
        let too_large = parse_client_frame(&huge).unwrap_err();
        assert_eq!((too_large.code, too_large.request_id.as_deref()), (ErrorCode::PayloadTooLarge, Some("h")));
    }

    #[test]
    fn mentions_are_words_starting_with_at() {
        let body = "hi @alice and @bob.smith, not mail@example.com @alice. @carol.";
        assert_eq!(parse_mentions(body), vec!["alice", "bob.smith", "carol"]);
        assert!(parse_mentions("@ alone").is_empty());
    }

    #[test]
    fn event_frames_round_trip() {
        let frame = ServerFrame::Typing { channel_id: Uuid::nil(), user_id: Uuid::nil(), active: true };
        let text = frame.to_text();
        assert!(text.contains(r#""type":"typing""#));
        assert_eq!(serde_json::from_str::<ServerFrame>(&text).unwrap(), frame);
    }
}
