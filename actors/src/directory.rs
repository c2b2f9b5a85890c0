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

mod slots;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::concurrency::oneshot;
use ractor::{Actor, ActorRef, RpcReplyPort};
use tracing::{debug, error, info, warn};
use uuid::Uuid;

use crate::channel::{ChannelActor, ChannelArgs, ChannelConfig, ChannelMsg};
use crate::ports::{Ports, PushNotice, StoreError};
use crate::protocol::{ErrorCode, RequestError};
use crate::routing::{
    ActorKey, ChannelAnswer, ChannelRequest, Cluster, NodeId, RemoteAnswer, RemoteRequest, SessionAddr, UserAnswer,
    UserRequest,
};
use crate::session::{cast_failed, SessionMsg, SessionSink, SinkRoute};
use crate::user::{UserActor, UserArgs, UserMsg};
use slots::{is_running, HomeSupervisor, Slots};

#[derive(Debug, Clone, Copy)]
pub struct DirectoryConfig {
    pub channel: ChannelConfig,
    pub user_idle_timeout: Duration,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        Self { channel: ChannelConfig::default(), user_idle_timeout: Duration::from_secs(60) }
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

    /// Sends a request to the channel's owner, in order; the result resolves to its answer.
    pub async fn send_channel(
        &self,
        channel_id: Uuid,
        request: ChannelRequest,
    ) -> Result<Pending<ChannelAnswer>, RequestError> {
        let mut attempt = 0;
        loop {
            let owner = self.owner(ActorKey::Channel(channel_id))?;
            if owner == self.this_node() {
                return self.send_local_channel(channel_id, request).await;
            }
            match self.inner.cluster.request(owner, RemoteRequest::Channel { channel_id, request: request.clone() }) {
                Ok(rx) => {
                    return Ok(Box::pin(async move {
                        match rx.await.map_err(|_| RequestError::unavailable())?? {
                            RemoteAnswer::Channel(answer) => Ok(answer),
                            RemoteAnswer::User(_) => Err(RequestError::internal()),
                        }
                    }))
                }
                Err(err) if attempt < 3 => {
                    attempt += 1;
                    debug!(%channel_id, owner, error = %err, attempt, "owner unreachable, retrying after the view settles");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    async fn send_local_channel(
        &self,
        channel_id: Uuid,
        request: ChannelRequest,
    ) -> Result<Pending<ChannelAnswer>, RequestError> {
        let (tx, rx) = oneshot();
        let msg = ChannelMsg::Request { request, reply: RpcReplyPort::from(tx) };
        let actor = self.channel(channel_id).await?;
        if let Err(err) = actor.cast(msg) {
            let msg = cast_failed(err).ok_or_else(RequestError::unavailable)?;
            debug!(%channel_id, "channel stopped under us, respawning");
            self.channel(channel_id).await?.cast(msg).map_err(|_| RequestError::unavailable())?;
        }
        Ok(local_answer(rx))
    }

    /// Asks the channel's owner and waits at most `timeout`; retries while ownership moves.
    pub async fn ask_channel(
        &self,
        channel_id: Uuid,
        request: ChannelRequest,
        timeout: Duration,
    ) -> Result<ChannelAnswer, RequestError> {
        for attempt in 0u64..4 {
            let pending = self.send_channel(channel_id, request.clone()).await?;
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

    /// Fire and forget, for requests whose answer nobody needs (unsubscribe).
    pub fn tell_channel(&self, channel_id: Uuid, request: ChannelRequest) {
        let directory = self.clone();
        tokio::spawn(async move {
            if let Err(err) = directory.send_channel(channel_id, request).await {
                debug!(%channel_id, error = %err, "channel notice not sent");
            }
        });
    }

    pub async fn send_user(&self, user_id: Uuid, request: UserRequest) -> Result<Pending<UserAnswer>, RequestError> {
        let owner = self.owner(ActorKey::User(user_id))?;
        if owner != self.this_node() {
            let rx = self.inner.cluster.request(owner, RemoteRequest::User { user_id, request })?;
            return Ok(Box::pin(async move {
                match rx.await.map_err(|_| RequestError::unavailable())?? {
                    RemoteAnswer::User(answer) => Ok(answer),
                    RemoteAnswer::Channel(_) => Err(RequestError::internal()),
                }
            }));
        }
        let (tx, rx) = oneshot();
        let msg = UserMsg::Request { request, reply: RpcReplyPort::from(tx) };
        let actor = self.user(user_id).await?;
        if let Err(err) = actor.cast(msg) {
            let msg = cast_failed(err).ok_or_else(RequestError::unavailable)?;
            self.user(user_id).await?.cast(msg).map_err(|_| RequestError::unavailable())?;
        }
        Ok(local_answer(rx))
    }

    pub async fn ask_user(
        &self,
        user_id: Uuid,
        request: UserRequest,
        timeout: Duration,
    ) -> Result<UserAnswer, RequestError> {
        for attempt in 0u64..4 {
            let pending = self.send_user(user_id, request.clone()).await?;
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

    pub fn tell_user(&self, user_id: Uuid, request: UserRequest) {
        let directory = self.clone();
        tokio::spawn(async move {
            if let Err(err) = directory.send_user(user_id, request).await {
                debug!(%user_id, error = %err, "user notice not sent");
            }
        });
    }

    /// Delivers `text` to every live session of the user, or queues `push` when none is
    /// live; returns how many sessions took it.
    pub async fn notify_user(&self, user_id: Uuid, text: &str, push: Option<PushNotice>) -> Result<usize, RequestError> {
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
        };
        if self.inner.cluster.owner(key) != Some(self.this_node()) {
            return Err(not_owner());
        }
        match request {
            RemoteRequest::Channel { channel_id, request } => {
                let pending = self.send_local_channel(channel_id, request).await?;
                Ok(Box::pin(async move { pending.await.map(RemoteAnswer::Channel) }))
            }
            RemoteRequest::User { user_id, request } => {
                let pending = self.send_user(user_id, request).await?;
                Ok(Box::pin(async move { pending.await.map(RemoteAnswer::User) }))
            }
        }
    }

    /// The running channel actor on this node, spawned if needed. Unknown channels are `not_found`.
    pub async fn channel(&self, channel_id: Uuid) -> Result<ActorRef<ChannelMsg>, RequestError> {
        let slot = self.inner.channels.slot(channel_id);
        let result = {
            let mut guard = slot.lock().await;
            match guard.as_ref().filter(|actor| is_running(actor.get_cell())) {
                Some(actor) => Ok(actor.clone()),
                None => {
                    let spawned = self.spawn_channel(channel_id).await;
                    if let Ok(actor) = &spawned {
                        self.inner.channels.keys.lock().unwrap().insert(actor.get_id(), channel_id);
                        *guard = Some(actor.clone());
                    }
                    spawned
                }
            }
        };
        if result.is_err() {
            self.inner.channels.release(channel_id, slot);
        }
        result
    }

    async fn spawn_channel(&self, channel_id: Uuid) -> Result<ActorRef<ChannelMsg>, RequestError> {
        let snapshot = self
            .inner
            .ports
            .channels
            .load_channel(channel_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| RequestError::not_found("channel"))?;
        let args = ChannelArgs { snapshot, directory: self.clone(), config: self.inner.config.channel };
        let (actor, _) = Actor::spawn_linked(None, ChannelActor, args, self.supervisor()?).await.map_err(|err| {
            error!(%channel_id, error = %err, "channel actor failed to start");
            RequestError::unavailable()
        })?;
        Ok(actor)
    }

    pub fn find_channel(&self, channel_id: Uuid) -> Option<ActorRef<ChannelMsg>> {
        self.inner.channels.find(channel_id)
    }

    /// The running user actor on this node, spawned if needed. Unknown users are `not_found`.
    pub async fn user(&self, user_id: Uuid) -> Result<ActorRef<UserMsg>, RequestError> {
        let slot = self.inner.users.slot(user_id);
        let result = {
            let mut guard = slot.lock().await;
            match guard.as_ref().filter(|actor| is_running(actor.get_cell())) {
                Some(actor) => Ok(actor.clone()),
                None => {
                    let spawned = self.spawn_user(user_id).await;
                    if let Ok(actor) = &spawned {
                        self.inner.users.keys.lock().unwrap().insert(actor.get_id(), user_id);
                        *guard = Some(actor.clone());
                    }
                    spawned
                }
            }
        };
        if result.is_err() {
            self.inner.users.release(user_id, slot);
        }
        result
    }

    async fn spawn_user(&self, user_id: Uuid) -> Result<ActorRef<UserMsg>, RequestError> {
        let ports = &self.inner.ports;
        let company_id = ports
            .users
            .company_of(user_id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(|| RequestError::not_found("user"))?;
        let last = ports.presence.load(user_id).await.unwrap_or_else(|err| {
            warn!(%user_id, error = %err, "last presence not loaded");
            None
        });
        let args = UserArgs {
            directory: self.clone(),
            user_id,
            company_id,
            last,
            presence: ports.presence.clone(),
            idle_timeout: self.inner.config.user_idle_timeout,
        };
        let (actor, _) = Actor::spawn_linked(None, UserActor, args, self.supervisor()?).await.map_err(|err| {
            error!(%user_id, error = %err, "user actor failed to start");
            RequestError::unavailable()
        })?;
        Ok(actor)
    }

    pub fn find_user(&self, user_id: Uuid) -> Option<ActorRef<UserMsg>> {
        self.inner.users.find(user_id)
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
        let this = self.this_node();
        let cluster = &self.inner.cluster;
        let mut moved = 0;
        for (channel_id, actor) in self.inner.channels.running() {
            if cluster.owner(ActorKey::Channel(channel_id)) != Some(this) {
                actor.stop(Some("moved to another node".to_owned()));
                moved += 1;
            } else if !departed.is_empty() && actor.cast(ChannelMsg::DropNodes(departed.clone())).is_err() {
                debug!(%channel_id, "channel stopped");
            }
        }
        for (user_id, actor) in self.inner.users.running() {
            if cluster.owner(ActorKey::User(user_id)) != Some(this) {
                actor.stop(Some("moved to another node".to_owned()));
                moved += 1;
            } else if !departed.is_empty() && actor.cast(UserMsg::DropNodes(departed.clone())).is_err() {
                debug!(%user_id, "user actor stopped");
            }
        }
        let sessions: Vec<ActorRef<SessionMsg>> = self.inner.sessions.lock().unwrap().values().cloned().collect();
        for session in &sessions {
            if session.cast(SessionMsg::Rehome).is_err() {
                debug!("session ended before rehome");
            }
        }
        info!(moved, sessions = sessions.len(), ?departed, "membership changed, actors rehomed");
    }

    /// Stops every actor of the directory and its supervisor.
    pub async fn shutdown(&self) {
        for (_, channel) in self.inner.channels.running() {
            channel.stop(Some("shutdown".to_owned()));
        }
        for (_, user) in self.inner.users.running() {
            user.stop(Some("shutdown".to_owned()));
        }
        let supervisor = self.inner.supervisor.lock().unwrap().take();
        if let Some(supervisor) = supervisor {
            supervisor.stop(Some("shutdown".to_owned()));
        }
    }
}
