//! The client protocol: JSON text frames exchanged over the WebSocket.
//!
//! Every frame is an object tagged by `"type"`. Client frames may carry a request `"id"`;
//! the server answers each such frame with `ok` or `error` carrying the same id.
//! docs/PROTOCOL.md describes every frame with examples; keep the two in step.
//!
//! # Layout
//! - this file: client frames and their parsing;
//! - [`server`]: server frames;
//! - [`meeting`]: meeting events and signaling frames.

mod meeting;
mod server;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{ChannelSeq, ErrorCode, PresenceStatus, SignalKind};

pub use meeting::{meeting_event_frame, signal_frame, RoomEvent, RoomPosition, SignalRoute};
pub use server::ServerFrame;

/// Largest client frame the session accepts, in bytes; larger frames get `payload_too_large`.
pub const MAX_CLIENT_FRAME_BYTES: usize = 64 * 1024;

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
        kind: SignalKind,
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
    if let Some(field) = text_with_nul(&value) {
        return Err(FrameError {
            request_id,
            code: ErrorCode::Invalid,
            message: format!("{field} must not contain NUL characters (\\u0000)"),
        });
    }
    let frame_type = value.get("type").and_then(|t| t.as_str()).map(str::to_owned);
    let fields = value.clone();
    serde_json::from_value::<ClientFrame>(value).map(|frame| (request_id.clone(), frame)).map_err(|err| {
        let message = err.to_string();
        // serde names the unknown value, not where it stood: find the field that holds it.
        let unknown = unknown_variant(&message);
        match (unknown, &frame_type) {
            (Some(variant), Some(t)) if variant == t => {
                FrameError { request_id, code: ErrorCode::UnknownType, message: format!("unknown frame type {t:?}") }
            }
            (Some(variant), _) => {
                let field = field_holding(&fields, variant).unwrap_or_else(|| "a field".to_owned());
                FrameError { request_id, code: ErrorCode::Invalid, message: format!("{field}: {message}") }
            }
            (None, _) => {
                FrameError { request_id, code: ErrorCode::BadFrame, message: format!("malformed frame: {err}") }
            }
        }
    })
}

/// The value of serde's "unknown variant `x`, expected ..." message.
fn unknown_variant(message: &str) -> Option<&str> {
    message.strip_prefix("unknown variant `")?.split('`').next()
}

/// The top-level field of `frame` whose value is the string `value`, as `field \`name\``.
fn field_holding(frame: &serde_json::Value, value: &str) -> Option<String> {
    frame.as_object()?.iter().find(|(_, v)| v.as_str() == Some(value)).map(|(key, _)| format!("field `{key}`"))
}

/// The path of the first string (or key) that holds a NUL character, e.g. `field \`body\``:
/// no store can keep it (Postgres refuses it) and no client means it.
pub fn text_with_nul(value: &serde_json::Value) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &mut Vec<String>) -> bool {
        match value {
            serde_json::Value::String(text) => text.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
                path.push(index.to_string());
                let found = walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            serde_json::Value::Object(fields) => fields.iter().any(|(key, item)| {
                path.push(key.clone());
                let found = key.contains('\0') || walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(value, &mut path).then(|| {
        if path.is_empty() {
            "the frame".to_owned()
        } else {
            format!("field `{}`", path.join("."))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_name_their_field_and_nul_is_refused() {
        let bad_kind = parse_client_frame(
            r#"{"id":"s","type":"signal","meeting_id":"00000000-0000-0000-0000-000000000000","to":"00000000-0000-0000-0000-000000000000","kind":"bogus","payload":{}}"#,
        )
        .unwrap_err();
        assert_eq!((bad_kind.code, bad_kind.request_id.as_deref()), (ErrorCode::Invalid, Some("s")));
        assert!(bad_kind.message.starts_with("field `kind`"), "{}", bad_kind.message);
        let bad_status = parse_client_frame(r#"{"type":"presence_set","status":"busy"}"#).unwrap_err();
        assert_eq!(bad_status.code, ErrorCode::Invalid);
        assert!(bad_status.message.contains("field `status`"), "{}", bad_status.message);
        let nul = parse_client_frame(
            r#"{"id":"n","type":"send","channel_id":"00000000-0000-0000-0000-000000000000","client_msg_id":"c","body":"a\u0000b"}"#,
        )
        .unwrap_err();
        assert_eq!(
            (nul.code, nul.message.as_str()),
            (ErrorCode::Invalid, "field `body` must not contain NUL characters (\\u0000)")
        );
        assert_eq!(text_with_nul(&serde_json::json!({"a": [1, {"b\u{0}": 2}]})).as_deref(), Some("field `a.1.b\u{0}`"));
    }

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
}
