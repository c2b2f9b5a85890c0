//! Meeting participants as everyone in the room sees them, and what they send each other.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::UnixMillis;

/// Largest signaling payload (an SDP with its candidates), in bytes of JSON.
pub const MAX_SIGNAL_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Host,
    Participant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantStatus {
    /// Waiting in the lobby for the host.
    Lobby,
    Joined,
    /// The socket dropped; back to `joined` on rejoin, removed after the grace period.
    Disconnected,
    /// The room was rebuilt on another node (its node died) and this participant has not
    /// rejoined it yet; back to `joined` on rejoin, removed after the grace period.
    Reconnecting,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MediaState {
    pub audio: bool,
    pub video: bool,
    pub screen: bool,
    pub hand: bool,
}

/// A participant as everyone in the room sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantView {
    pub participant_id: Uuid,
    pub user_id: Uuid,
    pub role: Role,
    pub status: ParticipantStatus,
    pub state: MediaState,
    pub joined_at: UnixMillis,
    /// Order of arrival in the meeting, kept across rebuilds: of two participants, the one
    /// with the higher `order` is the polite peer of their pair.
    pub order: u64,
}

/// A change to a participant's media state; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateChange {
    pub audio: Option<bool>,
    pub video: Option<bool>,
    pub screen: Option<bool>,
    pub hand: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    Offer,
    Answer,
    Ice,
    Rollback,
}
