//! What passes between joined participants: media state changes and WebRTC signals.

use uuid::Uuid;

use super::{Directed, MeetingRoom};
use crate::model::{Caller, ErrorCode, ParticipantStatus, RequestError, SignalKind, StateChange, MAX_SIGNAL_BYTES};
use crate::protocol::{signal_frame, RoomEvent, SignalRoute};
use crate::routing::MeetingAnswer;

impl MeetingRoom {
    pub fn set_state(
        &mut self,
        caller: &Caller,
        session_id: Uuid,
        change: StateChange,
    ) -> Result<MeetingAnswer, RequestError> {
        let id = self.participant_of(caller, session_id)?.view.participant_id;
        let participant = self.participants.get_mut(&id).ok_or_else(|| RequestError::not_found("participant"))?;
        let media = &mut participant.view.state;
        media.audio = change.audio.unwrap_or(media.audio);
        media.video = change.video.unwrap_or(media.video);
        media.screen = change.screen.unwrap_or(media.screen);
        media.hand = change.hand.unwrap_or(media.hand);
        let view = participant.view.clone();
        self.broadcast(RoomEvent::Updated { participant: view.clone() });
        Ok(MeetingAnswer::Participant(view))
    }

    /// A signal to relay to one participant. The later joiner of a pair is the polite peer
    /// ("perfect negotiation"): it rolls back its own offer on glare.
    pub fn relay(
        &self,
        caller: &Caller,
        session_id: Uuid,
        to: Uuid,
        kind: SignalKind,
        payload: &str,
    ) -> Result<Directed, RequestError> {
        if payload.len() > MAX_SIGNAL_BYTES {
            return Err(RequestError::new(
                ErrorCode::PayloadTooLarge,
                format!("signal payload over {MAX_SIGNAL_BYTES} bytes"),
            ));
        }
        let from = self.participant_of(caller, session_id)?;
        if from.view.status != ParticipantStatus::Joined {
            return Err(RequestError::forbidden("wait until you are admitted"));
        }
        let target = self.target(to)?;
        if target.view.status != ParticipantStatus::Joined || to == from.view.participant_id {
            return Err(RequestError::not_found("participant"));
        }
        let route = SignalRoute {
            meeting_id: self.meeting_id(),
            incarnation: self.incarnation,
            from: from.view.participant_id,
            from_user: from.view.user_id,
            to,
            polite: target.view.order > from.view.order,
        };
        Ok(Directed { session: target.session, text: signal_frame(route, kind, payload) })
    }
}
