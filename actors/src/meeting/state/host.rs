//! Host controls: mute requests, removal, transfer, the lobby, ending for all.

use uuid::Uuid;

use super::{Directed, MeetingRoom};
use crate::model::{Caller, ParticipantStatus, RequestError, Role};
use crate::protocol::{meeting_event_frame, RoomEvent};
use crate::routing::MeetingAnswer;

impl MeetingRoom {
    pub fn host_mute(&mut self, caller: &Caller, session_id: Uuid, target: Uuid) -> Result<Directed, RequestError> {
        let host = self.require_host(caller, session_id)?;
        let session = self.target(target)?.session;
        self.version += 1;
        let event = RoomEvent::MuteRequested { participant_id: target, by: host };
        Ok(Directed { session, text: meeting_event_frame(self.meeting_id(), self.at(self.version), &event) })
    }

    pub fn host_remove(
        &mut self,
        caller: &Caller,
        session_id: Uuid,
        target: Uuid,
    ) -> Result<MeetingAnswer, RequestError> {
        self.require_host(caller, session_id)?;
        self.target(target)?;
        self.remove(target, "removed");
        Ok(MeetingAnswer::Done)
    }

    pub fn host_transfer(
        &mut self,
        caller: &Caller,
        session_id: Uuid,
        target: Uuid,
    ) -> Result<MeetingAnswer, RequestError> {
        let host = self.require_host(caller, session_id)?;
        if self.target(target)?.view.status != ParticipantStatus::Joined {
            return Err(RequestError::invalid("the new host must have joined"));
        }
        self.set_role(host, Role::Participant);
        self.set_role(target, Role::Host);
        Ok(MeetingAnswer::Done)
    }

    pub fn lobby_decision(
        &mut self,
        caller: &Caller,
        session_id: Uuid,
        target: Uuid,
        admit: bool,
    ) -> Result<MeetingAnswer, RequestError> {
        self.require_host(caller, session_id)?;
        if self.target(target)?.view.status != ParticipantStatus::Lobby {
            return Err(RequestError::invalid("that participant is not in the lobby"));
        }
        if !admit {
            self.remove(target, "denied");
            return Ok(MeetingAnswer::Done);
        }
        if self.live_count() >= self.config.max_participants {
            return Err(self.limit_exceeded());
        }
        let participant = self.participants.get_mut(&target).ok_or_else(|| RequestError::not_found("participant"))?;
        participant.view.status = ParticipantStatus::Joined;
        let view = participant.view.clone();
        self.broadcast(RoomEvent::Joined { participant: view });
        Ok(MeetingAnswer::Done)
    }

    /// Who may end the meeting for all: the host's session, or (over HTTP, no session) the
    /// host user. Returns the user id that ends it.
    pub fn authorize_end(&self, caller: &Caller, session_id: Option<Uuid>) -> Result<Uuid, RequestError> {
        match session_id {
            Some(session_id) => self.require_host(caller, session_id).map(|_| caller.user_id),
            None if caller.user_id == self.info.host_id => Ok(caller.user_id),
            None => Err(RequestError::forbidden("only the host can end the meeting")),
        }
    }

    /// The end is stored: everyone is told and the room empties.
    pub fn ended(&mut self, by: Uuid) {
        self.ended = true;
        self.broadcast(RoomEvent::Ended { by });
        self.participants.clear();
        self.by_session.clear();
    }
}
