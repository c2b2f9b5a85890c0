//! The room as it is saved after every roster change, and rebuilt from on a new node.

use serde::{Deserialize, Serialize};

use super::{MeetingConfig, MeetingRoom, Participant, RoomEffect};
use crate::model::{ParticipantStatus, ParticipantView, SessionAddr};
use crate::ports::MeetingInfo;

/// The version of [`RoomRecord`] written now.
const RECORD_VERSION: u16 = 1;

/// What a room needs to be rebuilt elsewhere: its roster and where its history stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomRecord {
    pub v: u16,
    pub version: u64,
    pub arrivals: u64,
    pub participants: Vec<ParticipantRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantRecord {
    pub view: ParticipantView,
    /// The session the participant was last on: the rebuilt room tells it about the new run.
    pub session: SessionAddr,
}

impl RoomRecord {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("room records always serialize")
    }

    /// `None` for a record this version cannot read (the room then starts empty).
    pub fn decode(text: &str) -> Option<RoomRecord> {
        serde_json::from_str::<RoomRecord>(text).ok().filter(|record| record.v <= RECORD_VERSION)
    }
}

impl MeetingRoom {
    /// Whether the roster changed since the last [`MeetingRoom::saved`].
    pub fn needs_save(&self) -> bool {
        self.version != self.saved_version
    }

    pub fn saved(&mut self, version: u64) {
        self.saved_version = version;
    }

    pub fn record(&self) -> RoomRecord {
        RoomRecord {
            v: RECORD_VERSION,
            version: self.version,
            arrivals: self.arrivals,
            participants: self
                .participants
                .values()
                .map(|p| ParticipantRecord { view: p.view.clone(), session: p.session })
                .collect(),
        }
    }

    /// The room as it was when `record` was saved, in a new run (`incarnation`): everyone
    /// who was in is `reconnecting` until they rejoin or their grace period ends; lobby
    /// entries wait in the lobby the same way. Roles, the host, media state, ids and order
    /// are as they were. The expiries are queued as effects.
    pub fn rebuild(info: MeetingInfo, config: MeetingConfig, record: RoomRecord, incarnation: u64) -> Self {
        let mut room = MeetingRoom::new(info, config, incarnation);
        room.version = record.version;
        room.saved_version = record.version;
        room.arrivals = record.arrivals;
        for ParticipantRecord { mut view, session } in record.participants {
            if view.status != ParticipantStatus::Lobby {
                view.status = ParticipantStatus::Reconnecting;
            }
            let participant_id = view.participant_id;
            room.by_session.insert(session.session_id, participant_id);
            room.participants.insert(participant_id, Participant { view, session, generation: 1 });
            room.effects.push(RoomEffect::ExpireLater { participant_id, generation: 1 });
        }
        room
    }
}
