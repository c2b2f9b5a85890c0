//! UserActor: one per user who is online or watched. It knows the user's live sessions,
//! derives presence from them (online if any session is active, away if all are away,
//! offline when none is left), tells watchers when it changes, and delivers notifications
//! to every device of the user.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::channel::Reply;
use crate::directory::Directory;
use crate::ports::{PresenceRecord, PresenceStore};
use crate::protocol::{now_millis, PresenceStatus, RequestError, ServerFrame, UnixMillis};
use crate::routing::{NodeId, UserAnswer, UserRequest};
use crate::session::{fan_out, Delivery, SessionSink};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    pub user_id: Uuid,
    pub status: PresenceStatus,
    pub last_seen: Option<UnixMillis>,
}

pub enum UserMsg {
    /// A request from a session or another actor, local or from another node.
    Request {
        request: UserRequest,
        reply: Reply<UserAnswer>,
    },
    /// These nodes left the cluster: forget their sessions and watchers.
    DropNodes(Vec<NodeId>),
    IdleCheck,
}

pub struct UserArgs {
    pub directory: Directory,
    pub user_id: Uuid,
    pub company_id: Uuid,
    pub last: Option<PresenceRecord>,
    pub presence: Arc<dyn PresenceStore>,
    pub idle_timeout: Duration,
}

/// Presence derived from sessions: plain data, tested without a runtime.
#[derive(Debug, Default)]
pub struct Presence {
    sessions: HashMap<Uuid, PresenceStatus>,
}

impl Presence {
    pub fn attach(&mut self, session_id: Uuid) {
        self.sessions.insert(session_id, PresenceStatus::Online);
    }
    pub fn detach(&mut self, session_id: Uuid) {
        self.sessions.remove(&session_id);
    }
    pub fn set(&mut self, session_id: Uuid, status: PresenceStatus) {
        if let Some(current) = self.sessions.get_mut(&session_id) {
            *current = status;
        }
    }
    pub fn status(&self) -> PresenceStatus {
        if self.sessions.values().any(|status| *status == PresenceStatus::Online) {
            PresenceStatus::Online
        } else if self.sessions.is_empty() {
            PresenceStatus::Offline
        } else {
            PresenceStatus::Away
        }
    }
}

pub struct UserState {
    directory: Directory,
    user_id: Uuid,
    company_id: Uuid,
    presence: Presence,
    sinks: HashMap<Uuid, SessionSink>,
    watchers: HashMap<Uuid, SessionSink>,
    current: PresenceRecord,
    store: Arc<dyn PresenceStore>,
    idle_timeout: Duration,
    last_activity: Instant,
    idle_timer: Option<ractor::concurrency::JoinHandle<()>>,
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
        if let Err(err) = self.store.save(self.user_id, self.current).await {
            warn!(user_id = %self.user_id, error = %err, "presence not saved");
        }
        let frame = ServerFrame::Presence { user_id: self.user_id, status, last_seen: self.current.last_seen };
        let delivery = Delivery::frame(None, None, Arc::from(frame.to_text()));
        fan_out(&mut self.watchers, &delivery);
    }

    async fn serve(&mut self, request: UserRequest) -> Result<UserAnswer, RequestError> {
        match request {
            UserRequest::Attach { session } => {
                let sink = self.directory.sink(session).ok_or_else(|| RequestError::not_found("session"))?;
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
                let sink = self.directory.sink(session).ok_or_else(|| RequestError::not_found("session"))?;
                self.watchers.insert(session.session_id, sink);
                return Ok(UserAnswer::Presence(self.view()));
            }
            UserRequest::Unwatch { session_id } => {
                self.watchers.remove(&session_id);
            }
            UserRequest::Notify { text, push } => {
                let delivery = Delivery::frame(None, None, Arc::from(text));
                fan_out(&mut self.sinks, &delivery);
                if let Some(notice) = push.filter(|_| self.sinks.is_empty()) {
                    if let Err(err) = self.directory.ports().push.enqueue(notice).await {
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

    fn drop_nodes(&mut self, nodes: &[NodeId]) -> bool {
        let gone: Vec<Uuid> = self
            .sinks
            .values()
            .filter(|sink| nodes.contains(&sink.addr.node))
            .map(|sink| sink.addr.session_id)
            .collect();
        for session_id in &gone {
            self.presence.detach(*session_id);
            self.sinks.remove(session_id);
        }
        self.watchers.retain(|_, sink| !nodes.contains(&sink.addr.node));
        !gone.is_empty()
    }
}

pub struct UserActor;

impl Actor for UserActor {
    type Msg = UserMsg;
    type State = UserState;
    type Arguments = UserArgs;

    async fn pre_start(&self, myself: ActorRef<UserMsg>, args: UserArgs) -> Result<UserState, ActorProcessingErr> {
        let check_every = (args.idle_timeout / 2).max(Duration::from_millis(50));
        let idle_timer = myself.send_interval(check_every, || UserMsg::IdleCheck);
        // Whatever was saved, nobody is connected to this fresh actor yet.
        let current = PresenceRecord {
            status: PresenceStatus::Offline,
            last_seen: args.last.and_then(|record| record.last_seen),
        };
        Ok(UserState {
            directory: args.directory,
            user_id: args.user_id,
            company_id: args.company_id,
            presence: Presence::default(),
            sinks: HashMap::new(),
            watchers: HashMap::new(),
            current,
            store: args.presence,
            idle_timeout: args.idle_timeout,
            last_activity: Instant::now(),
            idle_timer: Some(idle_timer),
        })
    }

    async fn post_stop(&self, _myself: ActorRef<UserMsg>, state: &mut UserState) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.idle_timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<UserMsg>,
        msg: UserMsg,
        state: &mut UserState,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(msg, UserMsg::Request { .. }) {
            state.last_activity = Instant::now();
        }
        match msg {
            UserMsg::Request { request, reply } => {
                let answer = state.serve(request).await;
                if reply.send(answer).is_err() {
                    debug!(user_id = %state.user_id, "requester went away before the reply");
                }
            }
            UserMsg::DropNodes(nodes) => {
                if state.drop_nodes(&nodes) {
                    state.refresh().await;
                }
            }
            UserMsg::IdleCheck => {
                if state.sinks.is_empty()
                    && state.watchers.is_empty()
                    && state.last_activity.elapsed() >= state.idle_timeout
                {
                    myself.stop(Some("idle".to_owned()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_is_derived_from_all_sessions() {
        let (phone, laptop) = (Uuid::new_v4(), Uuid::new_v4());
        let mut presence = Presence::default();
        assert_eq!(presence.status(), PresenceStatus::Offline);
        presence.attach(phone);
        presence.attach(laptop);
        presence.set(phone, PresenceStatus::Away);
        assert_eq!(presence.status(), PresenceStatus::Online, "one active device keeps the user online");
        presence.set(laptop, PresenceStatus::Away);
        assert_eq!(presence.status(), PresenceStatus::Away);
        presence.detach(laptop);
        assert_eq!(presence.status(), PresenceStatus::Away);
        presence.detach(phone);
        assert_eq!(presence.status(), PresenceStatus::Offline);
    }
}
