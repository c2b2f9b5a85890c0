//! The directory of virtual actors: a request to a channel or user goes to its owner (this
//! node or another, as the cluster's placement says); on the owner, a key with no running
//! actor spawns one (state reloaded from the ports), and idle actors stop by themselves.
//!
//! # Supervision tree
//! ```text
//! HomeSupervisor            one per node; restarts nothing, forgets what ended
//! ├── ChannelActor *        spawned on demand, linked; ends when idle, after an uncertain
//! │                         write, or when a membership change moves it to another node
//! └── UserActor *           spawned on demand, linked; ends when idle or moved
//! SessionActor *            not linked: it lives and dies with its socket
//! ```
//! When a linked actor ends (stopped or panicked) the supervisor removes it from the
//! directory, so the next message spawns a fresh one that reloads its state.
//!
//! **Invariant:** at most one running actor per key on a node (spawns happen under the key's
//! slot lock), and a node serves a key only while placement says it owns it.

mod kinds;
mod slots;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::concurrency::oneshot;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::channel::{ChannelConfig, ChannelMsg};
use crate::meeting::{MeetingConfig, MeetingMsg};
use crate::ports::{Ports, PushNotice, StoreError};
use crate::protocol::{ErrorCode, RequestError};
use crate::routing::{
    ActorKey, ChannelAnswer, ChannelRequest, Cluster, MeetingAnswer, MeetingRequest, NodeId, RemoteAnswer,
    RemoteRequest, SessionAddr, UserAnswer, UserRequest,
};
use crate::session::{cast_failed, SessionMsg, SessionSink, SinkRoute};
use crate::user::UserMsg;
use kinds::{Channels, Kind, Meetings, Users};
use slots::{is_running, HomeSupervisor, Slots};

#[derive(Debug, Clone, Copy)]
pub struct DirectoryConfig {
    pub channel: ChannelConfig,
    pub meeting: MeetingConfig,
    pub user_idle_timeout: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self {
            channel: ChannelConfig::default(),
            meeting: MeetingConfig::default(),
            user_idle_timeout: Duration::from_secs(60),
        }
    }
}

/// An answer still on its way.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, RequestError>> + Send>>;

/// The message of a refusal by a node that does not own the key; the sender retries.
const NOT_OWNER: &str = "this node does not own the actor (membership is changing), retry";

struct Inner {
    ports: Ports,
    config: DirectoryConfig,
    cluster: Arc<dyn Cluster>,
    channels: Slots<ChannelMsg>,
    users: Slots<UserMsg>,
    meetings: Slots<MeetingMsg>,
    sessions: Mutex<HashMap<Uuid, ActorRef<SessionMsg>>>,
    supervisor: Mutex<Option<ActorRef<()>>>,
}

/// Cheap to clone; every clone is the same directory.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

/// How many actors of each kind run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryStats {
    pub channels: usize,
    pub users: usize,
    pub meetings: usize,
    pub sessions: usize,
}

fn store_unavailable(err: StoreError) -> RequestError {
    warn!(error = %err, "store failed while loading an actor");
    RequestError::unavailable()
}

fn not_owner() -> RequestError {
    RequestError::new(ErrorCode::Unavailable, NOT_OWNER)
}

fn is_not_owner(err: &RequestError) -> bool {
    err.code == ErrorCode::Unavailable && err.message == NOT_OWNER
}

/// Waits for a local actor's answer.
fn local_answer<T: Send + 'static>(rx: ractor::concurrency::OneshotReceiver<Result<T, RequestError>>) -> Pending<T> {
    Box::pin(async move { rx.await.map_err(|_| RequestError::unavailable())? })
}

impl Directory {
    pub async fn start(
        ports: Ports,
        config: DirectoryConfig,
        cluster: Arc<dyn Cluster>,
    ) -> Result<Self, ractor::SpawnErr> {
        let inner = Arc::new(Inner {
            ports,
            config,
            cluster,
            channels: Slots::new(),
            users: Slots::new(),
            meetings: Slots::new(),
            sessions: Mutex::new(HashMap::new()),
            supervisor: Mutex::new(None),
        });
        let (supervisor, _) = Actor::spawn(None, HomeSupervisor, Arc::downgrade(&inner)).await?;
        *inner.supervisor.lock().unwrap() = Some(supervisor);
        let directory = Self { inner };
        directory.follow_membership();
        Ok(directory)
    }

    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    pub fn this_node(&self) -> NodeId {
        self.inner.cluster.this_node()
    }

    pub fn stats(&self) -> DirectoryStats {
        DirectoryStats {
            channels: self.inner.channels.len(),
            users: self.inner.users.len(),
            meetings: self.inner.meetings.len(),
            sessions: self.inner.sessions.lock().unwrap().len(),
        }
    }

    pub fn register_session(&self, session_id: Uuid, actor: ActorRef<SessionMsg>) {
        self.inner.sessions.lock().unwrap().insert(session_id, actor);
    }

    pub fn unregister_session(&self, session_id: Uuid) {
        self.inner.sessions.lock().unwrap().remove(&session_id);
    }

    /// How to reach a session: directly if it lives here, through the cluster otherwise.
    pub fn sink(&self, addr: SessionAddr) -> Option<SessionSink> {
        if addr.node == self.this_node() {
            let actor = self.inner.sessions.lock().unwrap().get(&addr.session_id).cloned()?;
            Some(SessionSink::local(addr, actor))
        } else {
            Some(SessionSink { addr, route: SinkRoute::Remote(self.inner.cluster.clone()) })
        }
    }

    /// Hands a delivery from another node to local sessions.
    pub fn deliver_local(&self, session_ids: &[Uuid], delivery: crate::session::Delivery) {
        let sessions = self.inner.sessions.lock().unwrap();
        for session_id in session_ids {
            if let Some(session) = sessions.get(session_id) {
                if session.cast(SessionMsg::Deliver(delivery.clone())).is_err() {
                    debug!(%session_id, "session ended before a delivery");
                }
            }
        }
    }

    fn supervisor(&self) -> Result<ractor::ActorCell, RequestError> {
        self.inner.supervisor.lock().unwrap().as_ref().map(|s| s.get_cell()).ok_or_else(RequestError::unavailable)
    }

    fn owner(&self, key: ActorKey) -> Result<NodeId, RequestError> {
        self.inner.cluster.owner(key).ok_or_else(RequestError::unavailable)
    }

    /// The running actor of kind `K` for `id` on this node, spawned if needed.
    async fn actor<K: Kind>(&self, id: Uuid) -> Result<ActorRef<K::Msg>, RequestError> {
        let slots = K::slots(&self.inner);
        let slot = slots.slot(id);
        let result = {
            let mut guard = slot.lock().await;
            match guard.as_ref().filter(|actor| is_running(actor.get_cell())) {
                Some(actor) => Ok(actor.clone()),
                None => {
                    let spawned = K::spawn(self, id).await;
                    if let Ok(actor) = &spawned {
                        slots.keys.lock().unwrap().insert(actor.get_id(), id);
                        *guard = Some(actor.clone());
                    }
                    spawned
                }
            }
        };
        if result.is_err() {
            slots.release(id, slot);
        }
        result
    }

    /// Sends a request to the owner of `id`, in order; the result resolves to its answer.
    async fn send<K: Kind>(&self, id: Uuid, request: K::Request) -> Result<Pending<K::Answer>, RequestError> {
        let mut attempt = 0;
        loop {
            let owner = self.owner(K::key(id))?;
            if owner == self.this_node() {
                return self.send_local::<K>(id, request).await;
            }
            match self.inner.cluster.request(owner, K::remote(id, request.clone())) {
                Ok(rx) => {
                    return Ok(Box::pin(async move {
                        let answer = rx.await.map_err(|_| RequestError::unavailable())??;
                        K::answer(answer).ok_or_else(RequestError::internal)
                    }))
                }
                Err(err) if attempt < 3 => {
                    attempt += 1;
                    debug!(%id, owner, error = %err, attempt, "owner unreachable, retrying after the view settles");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn send_local<K: Kind>(&self, id: Uuid, request: K::Request) -> Result<Pending<K::Answer>, RequestError> {
        let (tx, rx) = oneshot();
        let msg = K::message(request, RpcReplyPort::from(tx));
        let actor = self.actor::<K>(id).await?;
        if let Err(err) = actor.cast(msg) {
            let msg = cast_failed(err).ok_or_else(RequestError::unavailable)?;
            debug!(%id, "actor stopped under us, respawning");
            self.actor::<K>(id).await?.cast(msg).map_err(|_| RequestError::unavailable())?;
        }
        Ok(local_answer(rx))
    }

    /// Asks the owner of `id` and waits at most `timeout`; retries while ownership moves.
    async fn ask<K: Kind>(&self, id: Uuid, request: K::Request, timeout: Duration) -> Result<K::Answer, RequestError> {
        for attempt in 0u64..4 {
            let pending = self.send::<K>(id, request.clone()).await?;
            match tokio::time::timeout(timeout, pending).await {
                Ok(Err(err)) if is_not_owner(&err) && attempt < 3 => {
                    tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                }
                Ok(answer) => return answer,
                Err(_) => return Err(RequestError::unavailable()),
            }
        }
        Err(RequestError::unavailable())
    }

    /// Fire and forget, for notices whose answer nobody needs.
    fn tell<K: Kind>(&self, id: Uuid, request: K::Request) {
        let directory = self.clone();
        tokio::spawn(async move {
            if let Err(err) = directory.send::<K>(id, request).await {
                debug!(%id, error = %err, "notice not sent");
            }
        });
    }

    pub async fn send_channel(
        &self,
        id: Uuid,
        request: ChannelRequest,
    ) -> Result<Pending<ChannelAnswer>, RequestError> {
        self.send::<Channels>(id, request).await
    }
    pub async fn ask_channel(
        &self,
        id: Uuid,
        request: ChannelRequest,
        timeout: Duration,
    ) -> Result<ChannelAnswer, RequestError> {
        self.ask::<Channels>(id, request, timeout).await
    }
    pub fn tell_channel(&self, id: Uuid, request: ChannelRequest) {
        self.tell::<Channels>(id, request);
    }
    pub fn find_channel(&self, id: Uuid) -> Option<ActorRef<ChannelMsg>> {
        self.inner.channels.find(id)
    }

    pub async fn send_user(&self, id: Uuid, request: UserRequest) -> Result<Pending<UserAnswer>, RequestError> {
        self.send::<Users>(id, request).await
    }
    pub async fn ask_user(
        &self,
        id: Uuid,
        request: UserRequest,
        timeout: Duration,
    ) -> Result<UserAnswer, RequestError> {
        self.ask::<Users>(id, request, timeout).await
    }
    pub fn tell_user(&self, id: Uuid, request: UserRequest) {
        self.tell::<Users>(id, request);
    }
    pub fn find_user(&self, id: Uuid) -> Option<ActorRef<UserMsg>> {
        self.inner.users.find(id)
    }

    pub async fn send_meeting(
        &self,
        id: Uuid,
        request: MeetingRequest,
    ) -> Result<Pending<MeetingAnswer>, RequestError> {
        self.send::<Meetings>(id, request).await
    }
    pub async fn ask_meeting(
        &self,
        id: Uuid,
        request: MeetingRequest,
        timeout: Duration,
    ) -> Result<MeetingAnswer, RequestError> {
        self.ask::<Meetings>(id, request, timeout).await
    }
    pub fn tell_meeting(&self, id: Uuid, request: MeetingRequest) {
        self.tell::<Meetings>(id, request);
    }

    /// Delivers `text` to every live session of the user, or queues `push` when none is
    /// live; returns how many sessions took it.
    pub async fn notify_user(
        &self,
        user_id: Uuid,
        text: &str,
        push: Option<PushNotice>,
    ) -> Result<usize, RequestError> {
        let request = UserRequest::Notify { text: text.to_owned(), push };
        match self.ask_user(user_id, request, Duration::from_secs(10)).await? {
            UserAnswer::Delivered(count) => Ok(count),
            _ => Err(RequestError::internal()),
        }
    }

    /// Like [`Self::notify_user`] without waiting: for actors that must not block on another.
    pub fn notify_user_later(&self, user_id: Uuid, text: Arc<str>, push: Option<PushNotice>) {
        let directory = self.clone();
        tokio::spawn(async move {
            if let Err(err) = directory.notify_user(user_id, &text, push).await {
                warn!(%user_id, error = %err, "notification not delivered");
            }
        });
    }

    /// Serves a request from another node, if this node owns the actor. The request is handed
    /// to the actor before this returns, so requests keep their arrival order.
    pub async fn serve_remote(&self, request: RemoteRequest) -> Result<Pending<RemoteAnswer>, RequestError> {
        let key = match &request {
            RemoteRequest::Channel { channel_id, .. } => ActorKey::Channel(*channel_id),
            RemoteRequest::User { user_id, .. } => ActorKey::User(*user_id),
            RemoteRequest::Meeting { meeting_id, .. } => ActorKey::Meeting(*meeting_id),
        };
        if self.inner.cluster.owner(key) != Some(self.this_node()) {
            return Err(not_owner());
        }
        match request {
            RemoteRequest::Channel { channel_id, request } => {
                let pending = self.send_local::<Channels>(channel_id, request).await?;
                Ok(Box::pin(async move { pending.await.map(RemoteAnswer::Channel) }))
            }
            RemoteRequest::User { user_id, request } => {
                let pending = self.send_local::<Users>(user_id, request).await?;
                Ok(Box::pin(async move { pending.await.map(RemoteAnswer::User) }))
            }
            RemoteRequest::Meeting { meeting_id, request } => {
                let pending = self.send_local::<Meetings>(meeting_id, request).await?;
                Ok(Box::pin(async move { pending.await.map(RemoteAnswer::Meeting) }))
            }
        }
    }

    /// Follows membership epochs: stops actors that moved away, drops sessions of departed
    /// nodes, and tells local sessions to subscribe again.
    fn follow_membership(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut epochs = self.inner.cluster.epochs();
        let mut members: BTreeSet<NodeId> = self.inner.cluster.members().into_iter().collect();
        tokio::spawn(async move {
            while epochs.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else { return };
                let directory = Directory { inner };
                let now: BTreeSet<NodeId> = directory.inner.cluster.members().into_iter().collect();
                let departed: Vec<NodeId> = members.difference(&now).copied().collect();
                members = now;
                directory.on_membership_change(departed);
            }
        });
    }

    fn on_membership_change(&self, departed: Vec<NodeId>) {
        let moved =
            self.rehome::<Channels>(&departed) + self.rehome::<Users>(&departed) + self.rehome::<Meetings>(&departed);
        let sessions: Vec<ActorRef<SessionMsg>> = self.inner.sessions.lock().unwrap().values().cloned().collect();
        for session in &sessions {
            if session.cast(SessionMsg::Rehome).is_err() {
                debug!("session ended before rehome");
            }
        }
        info!(moved, sessions = sessions.len(), ?departed, "membership changed, actors rehomed");
    }

    /// Stops the actors of kind `K` this node no longer owns; tells the others who left.
    fn rehome<K: Kind>(&self, departed: &[NodeId]) -> usize {
        let this = self.this_node();
        let mut moved = 0;
        for (id, actor) in K::slots(&self.inner).running() {
            if self.inner.cluster.owner(K::key(id)) != Some(this) {
                actor.stop(Some("moved to another node".to_owned()));
                moved += 1;
            } else if !departed.is_empty() && actor.cast(K::drop_nodes(departed.to_vec())).is_err() {
                debug!(%id, "actor stopped");
            }
        }
        moved
    }

    /// Stops every actor of the directory and its supervisor.
    pub async fn shutdown(&self) {
        for (_, channel) in self.inner.channels.running() {
            channel.stop(Some("shutdown".to_owned()));
        }
        for (_, user) in self.inner.users.running() {
            user.stop(Some("shutdown".to_owned()));
        }
        for (_, meeting) in self.inner.meetings.running() {
            meeting.stop(Some("shutdown".to_owned()));
        }
        let supervisor = self.inner.supervisor.lock().unwrap().take();
        if let Some(supervisor) = supervisor {
            supervisor.stop(Some("shutdown".to_owned()));
        }
    }
}
