//! The MeetingRoomActor: a thin shell around [`MeetingRoom`]. It resolves sessions to sinks,
//! performs the room's effects, marks the meeting ended in the store and stops when empty.

use std::collections::HashMap;
use std::time::Instant;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::state::{Directed, MeetingConfig, MeetingRoom, RoomEffect, RoomRecord};
use crate::channel::Reply;
use crate::cluster::rand_incarnation;
use crate::context::RoomContext;
use crate::delivery::{Gone, SessionSink};
use crate::lifecycle::IdleTimer;
use crate::model::{Delivery, DeliveryKind, RequestError, SessionAddr};
use crate::ports::MeetingInfo;
use crate::routing::{MeetingAnswer, MeetingRequest, RouteError};

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
    /// These sessions are gone (their node left or restarted).
    Forget(Vec<Gone>),
    IdleCheck,
}

pub struct MeetingArgs {
    pub info: MeetingInfo,
    pub context: RoomContext,
    pub config: MeetingConfig,
}

pub struct MeetingState {
    room: MeetingRoom,
    context: RoomContext,
    config: MeetingConfig,
    /// Sinks of the participants' sessions, by session id.
    sinks: HashMap<Uuid, SessionSink>,
    empty_since: Option<Instant>,
    idle: IdleTimer,
}

impl MeetingState {
    fn sink(&mut self, session: SessionAddr) -> Option<SessionSink> {
        if let Some(sink) = self.sinks.get(&session.session_id).filter(|sink| sink.addr == session) {
            return Some(sink.clone());
        }
        let sink = self.context.sinks.sink(session)?;
        self.sinks.insert(session.session_id, sink.clone());
        Some(sink)
    }

    fn deliver(&mut self, session: SessionAddr, delivery: &Delivery) -> bool {
        match self.sink(session) {
            Some(sink) => sink.deliver(delivery),
            None => false,
        }
    }

    fn perform(&mut self, myself: &ActorRef<MeetingMsg>) {
        for effect in self.room.drain() {
            match effect {
                RoomEffect::Send { sessions, text, version } => {
                    let kind = DeliveryKind::Meeting {
                        meeting_id: self.room.meeting_id(),
                        incarnation: self.room.incarnation(),
                        version,
                    };
                    let delivery = Delivery::new(kind, text, self.context.node);
                    for session in sessions {
                        if !self.deliver(session, &delivery) {
                            debug!(session_id = %session.session_id, "participant unreachable");
                        }
                    }
                }
                RoomEffect::ExpireLater { participant_id, generation } => {
                    myself.send_after(self.config.grace, move || MeetingMsg::Expire { participant_id, generation });
                }
            }
        }
        if self.room.is_empty() {
            self.empty_since.get_or_insert_with(Instant::now);
            self.sinks.clear();
        } else {
            self.empty_since = None;
        }
    }

    /// Saves the roster where every node can read it, when it changed; forgets it when the
    /// room is over. A failed save is logged: the meeting goes on, only a rebuild would be
    /// poorer.
    async fn save(&mut self) {
        let meeting_id = self.room.meeting_id();
        let rooms = self.context.ports.rooms.clone();
        if self.room.is_ended() || (self.room.is_empty() && self.room.needs_save()) {
            if let Err(err) = rooms.delete_room(meeting_id).await {
                warn!(%meeting_id, error = %err, "room record not deleted");
            }
            self.room.saved(self.room.version());
            return;
        }
        if !self.room.needs_save() {
            return;
        }
        let version = self.room.version();
        match rooms.save_room(meeting_id, &self.room.record().encode()).await {
            Ok(()) => self.room.saved(version),
            Err(err) => warn!(%meeting_id, error = %err, "room record not saved"),
        }
    }

    /// Sends a frame whose delivery decides the answer.
    fn direct(&mut self, directed: Directed) -> Result<MeetingAnswer, RequestError> {
        let delivery = Delivery::new(DeliveryKind::Direct, directed.text.into(), self.context.node);
        if self.deliver(directed.session, &delivery) {
            Ok(MeetingAnswer::Done)
        } else {
            Err(RequestError::unavailable())
        }
    }

    async fn serve(
        &mut self,
        myself: &ActorRef<MeetingMsg>,
        request: MeetingRequest,
    ) -> Result<MeetingAnswer, RequestError> {
        let caller = request.caller();
        self.room.check_tenant(&caller)?;
        match request {
            MeetingRequest::Join { caller, session } => {
                if self.sink(session).is_none() {
                    return Err(RequestError::not_found("session"));
                }
                self.room.join(&caller, session)
            }
            MeetingRequest::Leave { caller, session_id } => self.room.leave(&caller, session_id),
            MeetingRequest::Disconnected { caller, session_id } => Ok(self.room.disconnected(&caller, session_id)),
            MeetingRequest::SetState { caller, session_id, change } => self.room.set_state(&caller, session_id, change),
            MeetingRequest::Signal { caller, session_id, to, kind, payload } => {
                let directed = self.room.relay(&caller, session_id, to, kind, &payload)?;
                self.direct(directed)
            }
            MeetingRequest::HostMute { caller, session_id, target } => {
                let directed = self.room.host_mute(&caller, session_id, target)?;
                self.direct(directed)
            }
            MeetingRequest::HostRemove { caller, session_id, target } => {
                self.room.host_remove(&caller, session_id, target)
            }
            MeetingRequest::HostTransfer { caller, session_id, target } => {
                self.room.host_transfer(&caller, session_id, target)
            }
            MeetingRequest::LobbyDecision { caller, session_id, target, admit } => {
                self.room.lobby_decision(&caller, session_id, target, admit)
            }
            MeetingRequest::End { caller, session_id } => {
                let by = self.room.authorize_end(&caller, session_id)?;
                let meeting_id = self.room.meeting_id();
                self.context.ports.meetings.mark_ended(meeting_id).await.map_err(|err| {
                    warn!(%meeting_id, error = %err, "meeting not marked ended");
                    RequestError::unavailable()
                })?;
                self.room.ended(by);
                info!(%meeting_id, "meeting ended for all");
                self.perform(myself);
                myself.stop(Some("ended".to_owned()));
                Ok(MeetingAnswer::Done)
            }
            MeetingRequest::Roster { .. } => Ok(self.room.roster_answer()),
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
        let meeting_id = args.info.meeting_id;
        let incarnation = rand_incarnation();
        let record = match args.context.ports.rooms.load_room(meeting_id).await {
            Ok(record) => record.and_then(|text| RoomRecord::decode(&text)),
            Err(err) => {
                warn!(%meeting_id, error = %err, "room record not loaded, the room starts empty");
                None
            }
        };
        let room = match record {
            Some(record) if !args.info.ended => {
                info!(%meeting_id, participants = record.participants.len(), version = record.version, "room rebuilt");
                MeetingRoom::rebuild(args.info, args.config, record, incarnation)
            }
            _ => MeetingRoom::new(args.info, args.config, incarnation),
        };
        let mut state = MeetingState {
            room,
            context: args.context,
            idle: IdleTimer::start(&myself, args.config.idle_timeout, || MeetingMsg::IdleCheck),
            config: args.config,
            sinks: HashMap::new(),
            empty_since: Some(Instant::now()),
        };
        state.perform(&myself);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<MeetingMsg>,
        state: &mut MeetingState,
    ) -> Result<(), ActorProcessingErr> {
        state.idle.cancel();
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
                let answer = state.serve(&myself, request).await;
                state.perform(&myself);
                // Saved before the answer: whoever saw a change finds it in a rebuilt room.
                state.save().await;
                if reply.send(answer.map_err(RouteError::Request)).is_err() {
                    debug!(meeting_id = %state.room.meeting_id(), "requester went away");
                }
            }
            MeetingMsg::Expire { participant_id, generation } => {
                state.room.expire(participant_id, generation);
                state.perform(&myself);
                state.save().await;
            }
            MeetingMsg::Forget(gone) => {
                state.room.sessions_gone(|addr| Gone::any_covers(&gone, addr));
                state.perform(&myself);
                state.save().await;
            }
            MeetingMsg::IdleCheck => {
                let idle = state.empty_since.is_some_and(|since| since.elapsed() >= state.config.idle_timeout);
                if state.room.is_empty() && idle {
                    myself.stop(Some("empty".to_owned()));
                }
            }
        }
        Ok(())
    }
}
