//! MeetingRoomActor: one per live meeting. It owns the roster (participants and their
//! audio/video/screen/hand state and role), host controls and the lobby, and relays WebRTC
//! signaling (offer/answer/ICE) between participants of this meeting only.
//!
//! **Invariants:** the room is rebuilt only from clients that (re)join — never from a cache —
//! so a node crash leaves no ghost participants; a participant whose socket dropped is
//! `disconnected` for a grace period, then removed; signals are relayed in the order the
//! room receives them, so each sender→receiver pair stays ordered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tracing::{debug, info};
use uuid::Uuid;

use crate::channel::Reply;
use crate::directory::Directory;
use crate::ports::{Caller, MeetingInfo};
use crate::protocol::{now_millis, ErrorCode, RequestError, UnixMillis};
use crate::routing::{MeetingAnswer, MeetingRequest, NodeId, SessionAddr};
use crate::session::{Delivery, SessionSink};

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

pub enum MeetingMsg {
    Request {
        request: MeetingRequest,
        reply: Reply<MeetingAnswer>,
    },
    /// The grace period of a disconnected participant ended.
    Expire {
        participant_id: Uuid,
        generation: u64,
    },
    DropNodes(Vec<NodeId>),
    IdleCheck,
}

pub struct MeetingArgs {
    pub info: MeetingInfo,
    pub directory: Directory,
    pub config: MeetingConfig,
}

struct Participant {
    view: ParticipantView,
    /// Order of arrival in this room: the later of two peers is the polite one.
    arrival: u64,
    sink: SessionSink,
    /// Bumped on every disconnect, so a stale expiry does nothing.
    generation: u64,
}

pub struct MeetingState {
    info: MeetingInfo,
    directory: Directory,
    config: MeetingConfig,
    participants: BTreeMap<Uuid, Participant>,
    by_session: HashMap<Uuid, Uuid>,
    version: u64,
    arrivals: u64,
    ended: bool,
    empty_since: Option<std::time::Instant>,
    idle_timer: Option<ractor::concurrency::JoinHandle<()>>,
}

/// A room event as sent to clients.
#[derive(Debug, Clone, Serialize)]
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

fn meeting_frame(meeting_id: Uuid, version: u64, event: &RoomEvent) -> String {
    serde_json::json!({ "type": "meeting_event", "meeting_id": meeting_id, "version": version, "event": event })
        .to_string()
}

impl MeetingState {
    fn meeting_id(&self) -> Uuid {
        self.info.meeting_id
    }

    fn roster(&self) -> Vec<ParticipantView> {
        self.participants.values().map(|p| p.view.clone()).collect()
    }

    fn live_count(&self) -> usize {
        self.participants.values().filter(|p| p.view.status != ParticipantStatus::Lobby).count()
    }

    /// Sends an event to the room. Lobby requests go to hosts and the waiting participant;
    /// everything else to participants who are in (not waiting in the lobby).
    fn broadcast(&mut self, event: RoomEvent) {
        self.broadcast_except(event, None);
    }

    /// Like [`Self::broadcast`], skipping `except` (a joiner gets the snapshot in its answer).
    fn broadcast_except(&mut self, event: RoomEvent, except: Option<Uuid>) {
        self.version += 1;
        let text: Arc<str> = Arc::from(meeting_frame(self.meeting_id(), self.version, &event));
        let delivery = Delivery::frame(None, None, text);
        let waiting = match &event {
            RoomEvent::Lobby { participant } => Some(participant.participant_id),
            _ => None,
        };
        for participant in self.participants.values() {
            let view = &participant.view;
            let recipient = match waiting {
                Some(waiting) => view.role == Role::Host || view.participant_id == waiting,
                None => view.status != ParticipantStatus::Lobby,
            };
            if recipient && Some(view.participant_id) != except && !participant.sink.deliver(delivery.clone()) {
                debug!(participant_id = %view.participant_id, "participant unreachable");
            }
        }
    }

    fn send_to(&self, participant_id: Uuid, text: String) -> bool {
        match self.participants.get(&participant_id) {
            Some(participant) => participant.sink.deliver(Delivery::frame(None, None, Arc::from(text))),
            None => false,
        }
    }

    fn caller_participant(&self, caller: &Caller, session_id: Uuid) -> Result<&Participant, RequestError> {
        let not_joined = || RequestError::new(ErrorCode::NotMember, "this session has not joined the meeting");
        let id = self.by_session.get(&session_id).ok_or_else(not_joined)?;
        let participant = self.participants.get(id).ok_or_else(not_joined)?;
        if participant.view.user_id != caller.user_id {
            return Err(not_joined());
        }
        Ok(participant)
    }

    fn require_host(&self, caller: &Caller, session_id: Uuid) -> Result<Uuid, RequestError> {
        let participant = self.caller_participant(caller, session_id)?;
        if participant.view.role != Role::Host || participant.view.status != ParticipantStatus::Joined {
            return Err(RequestError::new(ErrorCode::Forbidden, "only the host can do that"));
        }
        Ok(participant.view.participant_id)
    }

    fn target(&self, participant_id: Uuid) -> Result<&Participant, RequestError> {
        self.participants.get(&participant_id).ok_or_else(|| RequestError::not_found("participant"))
    }

    fn remove(&mut self, participant_id: Uuid, reason: &'static str) {
        // The one leaving (removed, denied, timed out) hears it too, before it is gone.
        let event = RoomEvent::Left { participant_id, reason };
        self.send_to(participant_id, meeting_frame(self.meeting_id(), self.version + 1, &event));
        if let Some(participant) = self.participants.remove(&participant_id) {
            self.by_session.retain(|_, id| *id != participant_id);
            let was_host = participant.view.role == Role::Host;
            self.broadcast(RoomEvent::Left { participant_id, reason });
            if was_host {
                self.elect_host();
            }
        }
        if self.participants.is_empty() {
            self.empty_since = Some(std::time::Instant::now());
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
            .min_by_key(|p| p.view.joined_at)
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
}

pub struct MeetingRoomActor;

impl Actor for MeetingRoomActor {
    type Msg = MeetingMsg;
    type State = MeetingState;
    type Arguments = MeetingArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<MeetingMsg>,
        args: MeetingArgs,
    ) -> Result<MeetingState, ActorProcessingErr> {
        let every = (args.config.idle_timeout / 2).max(Duration::from_millis(50));
        let idle_timer = myself.send_interval(every, || MeetingMsg::IdleCheck);
        Ok(MeetingState {
            ended: args.info.ended,
            info: args.info,
            directory: args.directory,
            config: args.config,
            participants: BTreeMap::new(),
            by_session: HashMap::new(),
            version: 0,
            arrivals: 0,
            empty_since: Some(std::time::Instant::now()),
            idle_timer: Some(idle_timer),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MeetingMsg>,
        state: &mut MeetingState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<MeetingMsg>,
        msg: MeetingMsg,
        state: &mut MeetingState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            MeetingMsg::Request { request, reply } => {
                let answer = serve(&myself, state, request).await;
                if reply.send(answer).is_err() {
                    debug!(meeting_id = %state.meeting_id(), "requester went away");
                }
            }
            MeetingMsg::Expire { participant_id, generation } => {
                let expired = state
                    .participants
                    .get(&participant_id)
                    .is_some_and(|p| p.generation == generation && p.view.status == ParticipantStatus::Disconnected);
                if expired {
                    state.remove(participant_id, "timed_out");
                }
            }
            MeetingMsg::DropNodes(nodes) => {
                let gone: Vec<(Uuid, Uuid)> = state
                    .participants
                    .values()
                    .filter(|p| nodes.contains(&p.sink.addr.node))
                    .map(|p| (p.view.participant_id, p.sink.addr.session_id))
                    .collect();
                for (participant_id, session_id) in gone {
                    disconnect(&myself, state, participant_id, session_id);
                }
            }
            MeetingMsg::IdleCheck => {
                let idle = state.empty_since.is_some_and(|since| since.elapsed() >= state.config.idle_timeout);
                if state.participants.is_empty() && idle {
                    myself.stop(Some("empty".to_owned()));
                }
            }
        }
        Ok(())
    }
}

fn disconnect(myself: &ActorRef<MeetingMsg>, state: &mut MeetingState, participant_id: Uuid, session_id: Uuid) {
    state.by_session.remove(&session_id);
    let Some(participant) = state.participants.get_mut(&participant_id) else { return };
    if participant.view.status == ParticipantStatus::Lobby {
        state.remove(participant_id, "left");
        return;
    }
    participant.view.status = ParticipantStatus::Disconnected;
    participant.generation += 1;
    let generation = participant.generation;
    let view = participant.view.clone();
    state.broadcast(RoomEvent::Updated { participant: view });
    myself.send_after(state.config.grace, move || MeetingMsg::Expire { participant_id, generation });
}

async fn serve(
    myself: &ActorRef<MeetingMsg>,
    state: &mut MeetingState,
    request: MeetingRequest,
) -> Result<MeetingAnswer, RequestError> {
    let caller = request.caller();
    if caller.company_id != state.info.company_id {
        return Err(RequestError::not_found("meeting"));
    }
    match request {
        MeetingRequest::Join { caller, session } => join(state, caller, session),
        MeetingRequest::Leave { caller, session_id } => {
            let id = state.caller_participant(&caller, session_id)?.view.participant_id;
            state.remove(id, "left");
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::Disconnected { caller, session_id } => {
            if let Ok(participant) = state.caller_participant(&caller, session_id) {
                let id = participant.view.participant_id;
                disconnect(myself, state, id, session_id);
            }
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::SetState { caller, session_id, change } => {
            let id = state.caller_participant(&caller, session_id)?.view.participant_id;
            let participant = state.participants.get_mut(&id).ok_or_else(|| RequestError::not_found("participant"))?;
            let media = &mut participant.view.state;
            media.audio = change.audio.unwrap_or(media.audio);
            media.video = change.video.unwrap_or(media.video);
            media.screen = change.screen.unwrap_or(media.screen);
            media.hand = change.hand.unwrap_or(media.hand);
            let view = participant.view.clone();
            state.broadcast(RoomEvent::Updated { participant: view.clone() });
            Ok(MeetingAnswer::Participant(view))
        }
        MeetingRequest::Signal { caller, session_id, to, kind, payload } => {
            relay(state, caller, session_id, to, kind, payload)
        }
        MeetingRequest::HostMute { caller, session_id, target } => {
            let host = state.require_host(&caller, session_id)?;
            state.target(target)?;
            state.version += 1;
            let event = RoomEvent::MuteRequested { participant_id: target, by: host };
            if !state.send_to(target, meeting_frame(state.meeting_id(), state.version, &event)) {
                return Err(RequestError::unavailable());
            }
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::HostRemove { caller, session_id, target } => {
            state.require_host(&caller, session_id)?;
            state.target(target)?;
            state.remove(target, "removed");
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::HostTransfer { caller, session_id, target } => {
            let host = state.require_host(&caller, session_id)?;
            if state.target(target)?.view.status != ParticipantStatus::Joined {
                return Err(RequestError::invalid("the new host must have joined"));
            }
            state.set_role(host, Role::Participant);
            state.set_role(target, Role::Host);
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::LobbyDecision { caller, session_id, target, admit } => {
            state.require_host(&caller, session_id)?;
            if state.target(target)?.view.status != ParticipantStatus::Lobby {
                return Err(RequestError::invalid("that participant is not in the lobby"));
            }
            if admit {
                if state.live_count() >= state.config.max_participants {
                    return Err(limit_exceeded(state.config.max_participants));
                }
                let participant =
                    state.participants.get_mut(&target).ok_or_else(|| RequestError::not_found("participant"))?;
                participant.view.status = ParticipantStatus::Joined;
                let view = participant.view.clone();
                state.broadcast(RoomEvent::Joined { participant: view });
            } else {
                state.remove(target, "denied");
            }
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::End { caller, session_id } => {
            let by = match session_id {
                Some(session_id) => state.require_host(&caller, session_id).map(|_| caller.user_id)?,
                None if caller.user_id == state.info.host_id => caller.user_id,
                None => return Err(RequestError::new(ErrorCode::Forbidden, "only the host can end the meeting")),
            };
            end(state, by).await?;
            myself.stop(Some("ended".to_owned()));
            Ok(MeetingAnswer::Done)
        }
        MeetingRequest::Roster { .. } => {
            Ok(MeetingAnswer::Roster { version: state.version, participants: state.roster() })
        }
    }
}

fn limit_exceeded(max: usize) -> RequestError {
    RequestError::new(
        ErrorCode::LimitExceeded,
        format!("the meeting is full: at most {max} participants in a mesh call"),
    )
}

async fn end(state: &mut MeetingState, by: Uuid) -> Result<(), RequestError> {
    let meetings = state.directory.ports().meetings.clone();
    meetings.mark_ended(state.meeting_id()).await.map_err(|err| {
        tracing::warn!(meeting_id = %state.meeting_id(), error = %err, "meeting not marked ended");
        RequestError::unavailable()
    })?;
    state.ended = true;
    state.broadcast(RoomEvent::Ended { by });
    state.participants.clear();
    state.by_session.clear();
    info!(meeting_id = %state.meeting_id(), "meeting ended for all");
    Ok(())
}

fn join(state: &mut MeetingState, caller: Caller, session: SessionAddr) -> Result<MeetingAnswer, RequestError> {
    if state.ended {
        return Err(RequestError::new(ErrorCode::Conflict, "the meeting has ended"));
    }
    if session.user_id != caller.user_id {
        return Err(RequestError::new(ErrorCode::Forbidden, "a session joins for its own user"));
    }
    let sink = state.directory.sink(session).ok_or_else(|| RequestError::not_found("session"))?;
    // Rejoining (after a drop, on any node) takes over the user's earlier place.
    let existing =
        state.participants.values().find(|p| p.view.user_id == caller.user_id).map(|p| p.view.participant_id);
    if let Some(participant_id) = existing {
        let participant = state.participants.get_mut(&participant_id).ok_or_else(RequestError::internal)?;
        let replaced = participant.sink.addr.session_id;
        participant.sink = sink;
        participant.generation += 1;
        if participant.view.status == ParticipantStatus::Disconnected {
            participant.view.status = ParticipantStatus::Joined;
        }
        let view = participant.view.clone();
        state.by_session.remove(&replaced);
        state.by_session.insert(session.session_id, participant_id);
        state.broadcast_except(RoomEvent::Updated { participant: view.clone() }, Some(participant_id));
        return Ok(joined_answer(state, view));
    }
    let invited = caller.user_id == state.info.host_id || state.info.invitees.contains(&caller.user_id);
    let to_lobby = state.info.lobby && !invited;
    if !to_lobby && state.live_count() >= state.config.max_participants {
        return Err(limit_exceeded(state.config.max_participants));
    }
    let is_host = caller.user_id == state.info.host_id
        || (!state.participants.values().any(|p| p.view.role == Role::Host)
            && !to_lobby
            && state.participants.is_empty());
    let view = ParticipantView {
        participant_id: Uuid::new_v4(),
        user_id: caller.user_id,
        role: if is_host { Role::Host } else { Role::Participant },
        status: if to_lobby { ParticipantStatus::Lobby } else { ParticipantStatus::Joined },
        state: MediaState::default(),
        joined_at: now_millis(),
    };
    if is_host {
        let others: Vec<Uuid> =
            state.participants.values().filter(|p| p.view.role == Role::Host).map(|p| p.view.participant_id).collect();
        for other in others {
            state.set_role(other, Role::Participant);
        }
    }
    state.by_session.insert(session.session_id, view.participant_id);
    state.arrivals += 1;
    let arrival = state.arrivals;
    state.participants.insert(view.participant_id, Participant { view: view.clone(), arrival, sink, generation: 0 });
    state.empty_since = None;
    let event = if to_lobby {
        RoomEvent::Lobby { participant: view.clone() }
    } else {
        RoomEvent::Joined { participant: view.clone() }
    };
    state.broadcast_except(event, Some(view.participant_id));
    Ok(joined_answer(state, view))
}

fn joined_answer(state: &MeetingState, me: ParticipantView) -> MeetingAnswer {
    MeetingAnswer::Joined {
        meeting_id: state.meeting_id(),
        me,
        version: state.version,
        participants: state.roster(),
        max_participants: state.config.max_participants,
        grace_ms: state.config.grace.as_millis() as u64,
    }
}

/// Relays a signal to one participant. The later joiner of a pair is the polite peer
/// ("perfect negotiation"): it rolls back its own offer on glare.
fn relay(
    state: &mut MeetingState,
    caller: Caller,
    session_id: Uuid,
    to: Uuid,
    kind: SignalKind,
    payload: String,
) -> Result<MeetingAnswer, RequestError> {
    if payload.len() > MAX_SIGNAL_BYTES {
        return Err(RequestError::new(
            ErrorCode::PayloadTooLarge,
            format!("signal payload over {MAX_SIGNAL_BYTES} bytes"),
        ));
    }
    let from = state.caller_participant(&caller, session_id)?;
    if from.view.status != ParticipantStatus::Joined {
        return Err(RequestError::new(ErrorCode::Forbidden, "wait until you are admitted"));
    }
    let (from_view, from_arrival) = (from.view.clone(), from.arrival);
    let target = state.target(to)?;
    if target.view.status != ParticipantStatus::Joined || to == from_view.participant_id {
        return Err(RequestError::not_found("participant"));
    }
    let receiver_polite = target.arrival > from_arrival;
    let frame = serde_json::json!({
        "type": "signal",
        "meeting_id": state.meeting_id(),
        "from": from_view.participant_id,
        "to": to,
        "kind": kind,
        "payload": serde_json::from_str::<serde_json::Value>(&payload).unwrap_or(serde_json::Value::Null),
        "polite": receiver_polite,
    });
    if !state.send_to(to, frame.to_string()) {
        return Err(RequestError::unavailable());
    }
    Ok(MeetingAnswer::Done)
}
