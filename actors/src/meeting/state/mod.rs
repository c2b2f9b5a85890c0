//! The rules of a meeting room as plain data: the roster, roles, the lobby, host controls
//! and which signals may pass. Every command changes the room and queues [`RoomEffect`]s (the
//! frames to send, the timers to set); the actor drains them with [`MeetingRoom::drain`] and
//! performs them, and saves [`MeetingRoom::record`] whenever the roster changed.
//!
//! A room that starts on a new node (its previous node died) is rebuilt from that record
//! ([`MeetingRoom::rebuild`]) with a new incarnation: the same participants, ids, roles,
//! host, lobby and media state, each `reconnecting` until it rejoins or its grace ends.
//!
//! **Invariants:** at most one participant per user (a rejoin takes over the earlier place);
//! at most one host among joined participants; `version` grows by one with every roster event
//! any participant is sent, also across rebuilds; a signal passes only between two joined
//! participants; participant ids and `order` never change for the life of the meeting.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use uuid::Uuid;

use crate::model::FrameText;
use crate::model::{
    now_millis, Caller, ErrorCode, MediaState, ParticipantStatus, ParticipantView, RequestError, Role, SessionAddr,
};
use crate::ports::MeetingInfo;
use crate::protocol::{meeting_event_frame, RoomEvent, RoomPosition};
use crate::routing::MeetingAnswer;

mod host;
mod media;
mod record;

pub use record::{ParticipantRecord, RoomRecord};

#[derive(Debug, Clone, Copy)]
pub struct MeetingConfig {
    /// Mesh cap: every participant connects to every other one.
    pub max_participants: usize,
    /// How long a dropped participant stays `disconnected` before it is reported left.
    pub grace: Duration,
    pub idle_timeout: Duration,
}

impl Default for MeetingConfig {
    fn default() -> Self {
        Self { max_participants: 6, grace: Duration::from_secs(20), idle_timeout: Duration::from_secs(60) }
    }
}

/// What the actor does after a command.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEffect {
    /// One roster frame to these sessions, at roster version `version`.
    Send { sessions: Vec<SessionAddr>, text: FrameText, version: u64 },
    /// Report a disconnected participant left once the grace period is over, unless it came
    /// back (its `generation` moved on).
    ExpireLater { participant_id: Uuid, generation: u64 },
}

/// A frame for exactly one session, whose delivery decides the answer (signals, mute requests).
#[derive(Debug, Clone, PartialEq)]
pub struct Directed {
    pub session: SessionAddr,
    pub text: String,
}

#[derive(Debug, Clone)]
struct Participant {
    /// `view.order` is the order of arrival: the later of two peers is the polite one.
    view: ParticipantView,
    session: SessionAddr,
    /// Bumped on every disconnect and takeover, so a stale expiry does nothing.
    generation: u64,
}

pub struct MeetingRoom {
    info: MeetingInfo,
    config: MeetingConfig,
    /// This run of the room.
    incarnation: u64,
    participants: BTreeMap<Uuid, Participant>,
    by_session: HashMap<Uuid, Uuid>,
    version: u64,
    /// The version of the last record the actor saved.
    saved_version: u64,
    arrivals: u64,
    ended: bool,
    effects: Vec<RoomEffect>,
}

impl MeetingRoom {
    pub fn new(info: MeetingInfo, config: MeetingConfig, incarnation: u64) -> Self {
        Self {
            ended: info.ended,
            info,
            config,
            incarnation,
            participants: BTreeMap::new(),
            by_session: HashMap::new(),
            version: 0,
            saved_version: 0,
            arrivals: 0,
            effects: Vec::new(),
        }
    }

    pub fn meeting_id(&self) -> Uuid {
        self.info.meeting_id
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    fn at(&self, version: u64) -> RoomPosition {
        RoomPosition { incarnation: self.incarnation, version }
    }

    /// The effects queued since the last drain, in order.
    pub fn drain(&mut self) -> Vec<RoomEffect> {
        std::mem::take(&mut self.effects)
    }

    pub fn roster(&self) -> Vec<ParticipantView> {
        self.participants.values().map(|p| p.view.clone()).collect()
    }

    fn live_count(&self) -> usize {
        self.participants.values().filter(|p| p.view.status != ParticipantStatus::Lobby).count()
    }

    /// Refuses callers of another company as if the meeting did not exist.
    pub fn check_tenant(&self, caller: &Caller) -> Result<(), RequestError> {
        if caller.company_id == self.info.company_id {
            Ok(())
        } else {
            Err(RequestError::not_found("meeting"))
        }
    }

    /// Sends an event to the room. Lobby requests go to hosts and the waiting participant;
    /// everything else to participants who are in (not waiting in the lobby), but `except`
    /// (a joiner gets the snapshot in its answer).
    fn broadcast_except(&mut self, event: RoomEvent, except: Option<Uuid>) {
        self.version += 1;
        let text = FrameText::from(meeting_event_frame(self.meeting_id(), self.at(self.version), &event));
        let waiting = match &event {
            RoomEvent::Lobby { participant } => Some(participant.participant_id),
            _ => None,
        };
        let sessions = self
            .participants
            .values()
            .filter(|p| match waiting {
                Some(waiting) => p.view.role == Role::Host || p.view.participant_id == waiting,
                None => p.view.status != ParticipantStatus::Lobby,
            })
            .filter(|p| Some(p.view.participant_id) != except)
            .map(|p| p.session)
            .collect();
        self.effects.push(RoomEffect::Send { sessions, text, version: self.version });
    }

    fn broadcast(&mut self, event: RoomEvent) {
        self.broadcast_except(event, None);
    }

    fn participant_of(&self, caller: &Caller, session_id: Uuid) -> Result<&Participant, RequestError> {
        let not_joined = || RequestError::new(ErrorCode::NotMember, "this session has not joined the meeting");
        let id = self.by_session.get(&session_id).ok_or_else(not_joined)?;
        let participant = self.participants.get(id).ok_or_else(not_joined)?;
        if participant.view.user_id != caller.user_id {
            return Err(not_joined());
        }
        Ok(participant)
    }

    fn require_host(&self, caller: &Caller, session_id: Uuid) -> Result<Uuid, RequestError> {
        let participant = self.participant_of(caller, session_id)?;
        if participant.view.role != Role::Host || participant.view.status != ParticipantStatus::Joined {
            return Err(RequestError::forbidden("only the host can do that"));
        }
        Ok(participant.view.participant_id)
    }

    fn target(&self, participant_id: Uuid) -> Result<&Participant, RequestError> {
        self.participants.get(&participant_id).ok_or_else(|| RequestError::not_found("participant"))
    }

    fn remove(&mut self, participant_id: Uuid, reason: &'static str) {
        let Some(participant) = self.participants.remove(&participant_id) else { return };
        // The one leaving (removed, denied, timed out) hears it too, before it is gone.
        let event = RoomEvent::Left { participant_id, reason };
        let text = meeting_event_frame(self.meeting_id(), self.at(self.version + 1), &event);
        let sessions = vec![participant.session];
        self.effects.push(RoomEffect::Send { sessions, text: FrameText::from(text), version: self.version + 1 });
        self.by_session.retain(|_, id| *id != participant_id);
        self.broadcast(event);
        if participant.view.role == Role::Host {
            self.elect_host();
        }
    }

    /// When the host leaves, the longest-present joined participant becomes host.
    fn elect_host(&mut self) {
        if self.participants.values().any(|p| p.view.role == Role::Host) {
            return;
        }
        let next = self
            .participants
            .values()
            .filter(|p| p.view.status == ParticipantStatus::Joined)
            .min_by_key(|p| p.view.order)
            .map(|p| p.view.participant_id);
        if let Some(id) = next {
            self.set_role(id, Role::Host);
        }
    }

    fn set_role(&mut self, participant_id: Uuid, role: Role) {
        if let Some(participant) = self.participants.get_mut(&participant_id) {
            participant.view.role = role;
            let view = participant.view.clone();
            self.broadcast(RoomEvent::Updated { participant: view });
        }
    }

    fn limit_exceeded(&self) -> RequestError {
        let max = self.config.max_participants;
        RequestError::new(
            ErrorCode::LimitExceeded,
            format!("the meeting is full: at most {max} participants in a mesh call"),
        )
    }

    fn joined_answer(&self, me: ParticipantView) -> MeetingAnswer {
        MeetingAnswer::Joined {
            meeting_id: self.meeting_id(),
            me,
            incarnation: self.incarnation,
            version: self.version,
            participants: self.roster(),
            max_participants: self.config.max_participants,
            grace_ms: self.config.grace.as_millis() as u64,
        }
    }

    // --- commands ------------------------------------------------------------------------

    /// Joins (or rejoins, from any session on any node, taking over the earlier place).
    pub fn join(&mut self, caller: &Caller, session: SessionAddr) -> Result<MeetingAnswer, RequestError> {
        if self.ended {
            return Err(RequestError::new(ErrorCode::Conflict, "the meeting has ended"));
        }
        if session.user_id != caller.user_id {
            return Err(RequestError::forbidden("a session joins for its own user"));
        }
        let existing =
            self.participants.values().find(|p| p.view.user_id == caller.user_id).map(|p| p.view.participant_id);
        if let Some(participant_id) = existing {
            let participant = self.participants.get_mut(&participant_id).ok_or_else(RequestError::internal)?;
            let replaced = participant.session.session_id;
            participant.session = session;
            participant.generation += 1;
            if matches!(participant.view.status, ParticipantStatus::Disconnected | ParticipantStatus::Reconnecting) {
                participant.view.status = ParticipantStatus::Joined;
            }
            let view = participant.view.clone();
            self.by_session.remove(&replaced);
            self.by_session.insert(session.session_id, participant_id);
            self.broadcast_except(RoomEvent::Updated { participant: view.clone() }, Some(participant_id));
            return Ok(self.joined_answer(view));
        }
        let invited = caller.user_id == self.info.host_id || self.info.invitees.contains(&caller.user_id);
        let to_lobby = self.info.lobby && !invited;
        if !to_lobby && self.live_count() >= self.config.max_participants {
            return Err(self.limit_exceeded());
        }
        let is_host = caller.user_id == self.info.host_id
            || (!self.participants.values().any(|p| p.view.role == Role::Host)
                && !to_lobby
                && self.participants.is_empty());
        let view = ParticipantView {
            participant_id: Uuid::new_v4(),
            user_id: caller.user_id,
            role: if is_host { Role::Host } else { Role::Participant },
            status: if to_lobby { ParticipantStatus::Lobby } else { ParticipantStatus::Joined },
            state: MediaState::default(),
            joined_at: now_millis(),
            order: self.arrivals + 1,
        };
        if is_host {
            let others: Vec<Uuid> = self
                .participants
                .values()
                .filter(|p| p.view.role == Role::Host)
                .map(|p| p.view.participant_id)
                .collect();
            for other in others {
                self.set_role(other, Role::Participant);
            }
        }
        self.by_session.insert(session.session_id, view.participant_id);
        self.arrivals += 1;
        let participant = Participant { view: view.clone(), session, generation: 0 };
        self.participants.insert(view.participant_id, participant);
        let event = if to_lobby {
            RoomEvent::Lobby { participant: view.clone() }
        } else {
            RoomEvent::Joined { participant: view.clone() }
        };
        self.broadcast_except(event, Some(view.participant_id));
        Ok(self.joined_answer(view))
    }

    pub fn leave(&mut self, caller: &Caller, session_id: Uuid) -> Result<MeetingAnswer, RequestError> {
        let id = self.participant_of(caller, session_id)?.view.participant_id;
        self.remove(id, "left");
        Ok(MeetingAnswer::Done)
    }

    /// The session's socket dropped: its participant gets a grace period to rejoin.
    pub fn disconnected(&mut self, caller: &Caller, session_id: Uuid) -> MeetingAnswer {
        if let Ok(participant) = self.participant_of(caller, session_id) {
            let id = participant.view.participant_id;
            self.disconnect(id, session_id);
        }
        MeetingAnswer::Done
    }

    /// Sessions that no longer exist (their node left or restarted).
    pub fn sessions_gone(&mut self, gone: impl Fn(&SessionAddr) -> bool) {
        let lost: Vec<(Uuid, Uuid)> = self
            .participants
            .values()
            .filter(|p| gone(&p.session))
            .map(|p| (p.view.participant_id, p.session.session_id))
            .collect();
        for (participant_id, session_id) in lost {
            self.disconnect(participant_id, session_id);
        }
    }

    fn disconnect(&mut self, participant_id: Uuid, session_id: Uuid) {
        self.by_session.remove(&session_id);
        let Some(participant) = self.participants.get_mut(&participant_id) else { return };
        if participant.view.status == ParticipantStatus::Lobby {
            self.remove(participant_id, "left");
            return;
        }
        participant.view.status = ParticipantStatus::Disconnected;
        participant.generation += 1;
        let (generation, view) = (participant.generation, participant.view.clone());
        self.broadcast(RoomEvent::Updated { participant: view });
        self.effects.push(RoomEffect::ExpireLater { participant_id, generation });
    }

    /// The grace period of a disconnected participant ended.
    pub fn expire(&mut self, participant_id: Uuid, generation: u64) {
        // Lobby entries expire only after a rebuild (their session never came back); a live
        // lobby entry that drops is removed at once.
        let expired = self.participants.get(&participant_id).is_some_and(|p| {
            p.generation == generation
                && matches!(
                    p.view.status,
                    ParticipantStatus::Disconnected | ParticipantStatus::Reconnecting | ParticipantStatus::Lobby
                )
        });
        if expired {
            self.remove(participant_id, "timed_out");
        }
    }

    pub fn roster_answer(&self) -> MeetingAnswer {
        MeetingAnswer::Roster { incarnation: self.incarnation, version: self.version, participants: self.roster() }
    }
}

#[cfg(test)]
mod tests;
