//! Meeting frames: room events (roster changes, host actions) and relayed signals.

use serde::Serialize;
use uuid::Uuid;

use crate::model::{ParticipantView, SignalKind};

/// A room event as sent to clients inside a `meeting_event` frame.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    Joined {
        participant: ParticipantView,
    },
    Updated {
        participant: ParticipantView,
    },
    Left {
        participant_id: Uuid,
        reason: &'static str,
    },
    Lobby {
        participant: ParticipantView,
    },
    MuteRequested {
        participant_id: Uuid,
        by: Uuid,
    },
    /// `by` is the user id of whoever ended it.
    Ended {
        by: Uuid,
    },
}

/// The `meeting_event` frame for `event` at roster `version`.
pub fn meeting_event_frame(meeting_id: Uuid, version: u64, event: &RoomEvent) -> String {
    serde_json::json!({ "type": "meeting_event", "meeting_id": meeting_id, "version": version, "event": event })
        .to_string()
}

/// The `signal` frame relayed to `to`; `payload` is the sender's JSON text, passed through.
pub fn signal_frame(meeting_id: Uuid, from: Uuid, to: Uuid, kind: SignalKind, payload: &str, polite: bool) -> String {
    serde_json::json!({
        "type": "signal",
        "meeting_id": meeting_id,
        "from": from,
        "to": to,
        "kind": kind,
        "payload": serde_json::from_str::<serde_json::Value>(payload).unwrap_or(serde_json::Value::Null),
        "polite": polite,
    })
    .to_string()
}
