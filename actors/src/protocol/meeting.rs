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

/// Which run of a room, and where in its roster history: clients order everything they learn
/// about a roster by `(incarnation, version)` (see docs/PROTOCOL.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomPosition {
    /// Drawn afresh each time the room starts (it was rebuilt on a new node).
    pub incarnation: u64,
    pub version: u64,
}

/// The `meeting_event` frame for `event` at `at`.
pub fn meeting_event_frame(meeting_id: Uuid, at: RoomPosition, event: &RoomEvent) -> String {
    serde_json::json!({
        "type": "meeting_event",
        "meeting_id": meeting_id,
        "incarnation": at.incarnation,
        "version": at.version,
        "event": event,
    })
    .to_string()
}

/// A relayed signal: who sends it (participant and user) to whom.
#[derive(Debug, Clone, Copy)]
pub struct SignalRoute {
    pub meeting_id: Uuid,
    pub incarnation: u64,
    pub from: Uuid,
    pub from_user: Uuid,
    pub to: Uuid,
    /// Whether the receiver is the polite peer of the pair.
    pub polite: bool,
}

/// The `signal` frame relayed to `route.to`; `payload` is the sender's JSON text, passed through.
pub fn signal_frame(route: SignalRoute, kind: SignalKind, payload: &str) -> String {
    serde_json::json!({
        "type": "signal",
        "meeting_id": route.meeting_id,
        "incarnation": route.incarnation,
        "from": route.from,
        "from_user": route.from_user,
        "to": route.to,
        "kind": kind,
        "payload": serde_json::from_str::<serde_json::Value>(payload).unwrap_or(serde_json::Value::Null),
        "polite": route.polite,
    })
    .to_string()
}
