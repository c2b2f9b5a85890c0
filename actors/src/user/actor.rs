//! The UserActor shell: keeps the user's session and watcher sinks, publishes presence
//! changes to watchers (and to the presence store), delivers notifications to every device.

use std::collections::HashMap;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{debug, warn};
use uuid::Uuid;

use super::presence::Presence;
use crate::channel::Reply;
use crate::context::RoomContext;
use crate::delivery::{fan_out, Gone, SessionSink};
use crate::lifecycle::IdleTimer;
use crate::model::FrameText;
use crate::model::{now_millis, Delivery, DeliveryKind, PresenceStatus, PresenceView, RequestError};
use crate::ports::PresenceRecord;
use crate::protocol::ServerFrame;
use crate::routing::{RouteError, UserAnswer, UserRequest};

pub enum UserMsg {
    /// A request from a session or another actor, local or from another node.
    Request {
        request: UserRequest,
        reply: Reply<UserAnswer>,
    },
    /// These sessions are gone (their node left or restarted): forget them.
    Forget(Vec<Gone>),
    /// The re-attach grace after a move is over.
    EndCarry,
    IdleCheck,
}

#[derive(Debug, Clone, Copy)]
pub struct UserConfig {
    pub idle_timeout: Duration,
    /// How long a fresh actor keeps the status its predecessor published while sessions
    /// re-attach (after a move or the death of the user's node).
    pub reattach_grace: Duration,
}

impl Default for UserConfig {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_secs(60), reattach_grace: Duration::from_secs(3) }
    }
}

pub struct UserArgs {
    pub context: RoomContext,
    pub user_id: Uuid,
    pub company_id: Uuid,
    /// What the user's previous actor last published (from the presence store).
    pub last: Option<PresenceRecord>,
    pub config: UserConfig,
}

pub struct UserState {
    context: RoomContext,
    user_id: Uuid,
    company_id: Uuid,
    presence: Presence,
    sinks: HashMap<Uuid, SessionSink>,
    watchers: HashMap<Uuid, SessionSink>,
    /// What watchers were last told.
    current: PresenceRecord,
    idle: IdleTimer,
}

impl UserState {
    fn view(&self) -> PresenceView {
        PresenceView { user_id: self.user_id, status: self.current.status, last_seen: self.current.last_seen }
    }

    /// Recomputes presence; on a change, saves it and tells the watchers.
    async fn refresh(&mut self) {
        let status = self.presence.status();
        if status == self.current.status {
            return;
        }
        self.current = PresenceRecord { status, last_seen: Some(now_millis()) };
        if let Err(err) = self.context.ports.presence.save(self.user_id, self.current).await {
            warn!(user_id = %self.user_id, error = %err, "presence not saved");
        }
        let frame = ServerFrame::Presence { user_id: self.user_id, status, last_seen: self.current.last_seen };
        let kind = DeliveryKind::Presence { user_id: self.user_id, status };
        let delivery = Delivery::new(kind, FrameText::from(frame.to_text()), self.context.node);
        fan_out(&mut self.watchers, &delivery);
    }

    fn sink(&self, session: crate::model::SessionAddr) -> Result<SessionSink, RequestError> {
        self.context.sinks.sink(session).ok_or_else(|| RequestError::not_found("session"))
    }

    async fn serve(&mut self, request: UserRequest) -> Result<UserAnswer, RequestError> {
        match request {
            UserRequest::Attach { session } => {
                let sink = self.sink(session)?;
                self.presence.attach(session.session_id);
                self.sinks.insert(session.session_id, sink);
                self.refresh().await;
            }
            UserRequest::Detach { session_id } => {
                self.presence.detach(session_id);
                self.sinks.remove(&session_id);
                self.refresh().await;
            }
            UserRequest::SetStatus { session_id, status } => {
                self.presence.set(session_id, status);
                self.refresh().await;
            }
            UserRequest::Watch { watcher, session } => {
                if watcher.company_id != self.company_id {
                    return Err(RequestError::not_found("user"));
                }
                let sink = self.sink(session)?;
                self.watchers.insert(session.session_id, sink);
                return Ok(UserAnswer::Presence(self.view()));
            }
            UserRequest::Unwatch { session_id } => {
                self.watchers.remove(&session_id);
            }
            UserRequest::Notify { text, push } => {
                let delivery = Delivery::new(DeliveryKind::Direct, FrameText::from(text), self.context.node);
                fan_out(&mut self.sinks, &delivery);
                if let Some(notice) = push.filter(|_| self.sinks.is_empty()) {
                    if let Err(err) = self.context.ports.push.enqueue(notice).await {
                        warn!(user_id = %self.user_id, error = %err, "push not queued");
                        return Err(RequestError::unavailable());
                    }
                }
                return Ok(UserAnswer::Delivered(self.sinks.len()));
            }
            UserRequest::GetPresence => return Ok(UserAnswer::Presence(self.view())),
        }
        Ok(UserAnswer::Done)
    }

    /// Forgets sessions that no longer exist; `true` if one of the user's own went.
    fn forget(&mut self, gone: &[Gone]) -> bool {
        let lost: Vec<Uuid> = self
            .sinks
            .values()
            .filter(|sink| Gone::any_covers(gone, &sink.addr))
            .map(|sink| sink.addr.session_id)
            .collect();
        for session_id in &lost {
            self.presence.detach(*session_id);
            self.sinks.remove(session_id);
        }
        self.watchers.retain(|_, sink| !Gone::any_covers(gone, &sink.addr));
        !lost.is_empty()
    }
}

pub struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(&self, myself: ActorRef<UserMsg>, args: UserArgs) -> Result<UserState, ActorProcessingErr> {
        let last_status = args.last.map_or(PresenceStatus::Offline, |record| record.status);
        if last_status != PresenceStatus::Offline {
            myself.send_after(args.config.reattach_grace, || UserMsg::EndCarry);
        }
        Ok(UserState {
            presence: Presence::carrying(last_status),
            current: PresenceRecord { status: last_status, last_seen: args.last.and_then(|record| record.last_seen) },
            idle: IdleTimer::start(&myself, args.config.idle_timeout, || UserMsg::IdleCheck),
            context: args.context,
            user_id: args.user_id,
            company_id: args.company_id,
            sinks: HashMap::new(),
            watchers: HashMap::new(),
        })
    }

    async fn post_stop(&self, _myself: ActorRef<UserMsg>, state: &mut UserState) -> Result<(), ActorProcessingErr> {
        state.idle.cancel();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            UserMsg::Request { request, reply } => {
                state.idle.touch();
                let answer = state.serve(request).await.map_err(RouteError::Request);
                if reply.send(answer).is_err() {
                    debug!(user_id = %state.user_id, "requester went away before the reply");
                }
            }
            UserMsg::Forget(gone) => {
                if state.forget(&gone) {
                    state.refresh().await;
                }
            }
            UserMsg::EndCarry => {
                state.presence.end_carry();
                state.refresh().await;
            }
            UserMsg::IdleCheck => {
                if state.sinks.is_empty() && state.watchers.is_empty() && state.idle.expired() {
                    myself.stop(Some("idle".to_owned()));
                }
            }
        }
        Ok(())
    }
}
