//! The directory of virtual actors: a request to a channel, user or meeting goes to its owner
//! (this node or another, as the cluster's placement says); on the owner, a key with no
//! running actor spawns one (state reloaded from the ports), and idle actors stop by
//! themselves.
//!
//! # Layout
//! - this file: the directory, routing of requests, local sessions;
//! - `api`: asking and telling each kind of actor;
//! - `kinds`: how each kind of actor is keyed, spawned and told about gone sessions;
//! - `slots`: running actors by key, and the supervisor;
//! - `membership`: following the cluster (epochs, restarted nodes, lost links);
//! - `handle`: what room actors get of the directory (sinks, notifications).
//!
//! # Supervision tree
//! ```text
//! HomeSupervisor            one per node; restarts nothing, forgets what ended
//! ├── ChannelActor *        spawned on demand, linked; ends when idle, after an uncertain
//! │                         write, when fenced by a newer owner, or when a membership
//! │                         change moves it to another node
//! ├── UserActor *           spawned on demand, linked; ends when idle or moved
//! └── MeetingRoomActor *    spawned on demand, linked; ends when empty, ended or moved
//! SessionActor *            not linked: it lives and dies with its socket
//! ```
//! When a linked actor ends (stopped or panicked) the supervisor removes it from the
//! directory, so the next message spawns a fresh one that reloads its state.
//!
//! **Invariant:** at most one running actor per key on a node (spawns happen under the key's
//! slot lock), and a node serves a key only while placement says it owns it **and** it holds
//! an ownership lease ([`Cluster::serving`]); otherwise it answers [`RouteError::NotOwner`]
//! and the sender asks again once the membership settles.

mod api;
mod handle;
mod kinds;
mod membership;
mod slots;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::concurrency::oneshot;
use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use tokio::time::Instant;
use tracing::debug;
use uuid::Uuid;

use crate::channel::{ChannelConfig, ChannelMsg};
use crate::cluster::Cluster;
use crate::delivery::{SessionInbox, SessionSink, SinkRoute};
use crate::meeting::{MeetingConfig, MeetingMsg};
use crate::model::{Delivery, NodeId, RequestError, SessionAddr};
use crate::ports::Ports;
use crate::routing::{RemoteAnswer, RemoteRequest, RouteError};
use crate::user::{UserConfig, UserMsg};
use kinds::{Channels, Kind, Meetings, Users};
use slots::{is_running, Slots};

#[derive(Debug, Clone, Copy, Default)]
pub struct DirectoryConfig {
    pub channel: ChannelConfig,
    pub meeting: MeetingConfig,
    pub user: UserConfig,
}

/// An answer still on its way.
pub type Pending<T> = Pin<Box<dyn Future<Output = Result<T, RouteError>> + Send>>;

/// What the directory asks of a live session besides deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionControl {
    /// The membership changed: subscribe again where owners moved, re-attach, re-watch, rejoin.
    Rehome,
    /// The link to this node was lost: re-establish what this session held there.
    PeerLost(NodeId),
}

/// A session on this node, as the directory knows it.
pub trait LocalSession: SessionInbox {
    fn control(&self, control: SessionControl);
}

struct Inner {
    ports: Ports,
    config: DirectoryConfig,
    cluster: Arc<dyn Cluster>,
    channels: Slots<ChannelMsg>,
    users: Slots<UserMsg>,
    meetings: Slots<MeetingMsg>,
    sessions: Mutex<HashMap<Uuid, Arc<dyn LocalSession>>>,
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

/// How long `ask` keeps trying while the owner moves or cannot be reached.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_millis(400);

/// Turns a failed cast into its message, for a retry.
fn cast_failed<M>(err: MessagingErr<M>) -> Option<M> {
    match err {
        MessagingErr::SendErr(msg) => Some(msg),
        _ => None,
    }
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
        let supervisor = slots::start_supervisor(Arc::downgrade(&inner)).await?;
        *inner.supervisor.lock().unwrap() = Some(supervisor);
        let directory = Self { inner };
        directory.follow_cluster();
        Ok(directory)
    }

    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    pub fn this_node(&self) -> NodeId {
        self.inner.cluster.this_node()
    }

    /// This node's address for a session of `user_id`.
    pub fn session_addr(&self, session_id: Uuid, user_id: Uuid) -> SessionAddr {
        SessionAddr { node: self.this_node(), incarnation: self.inner.cluster.incarnation(), session_id, user_id }
    }

    pub fn stats(&self) -> DirectoryStats {
        DirectoryStats {
            channels: self.inner.channels.len(),
            users: self.inner.users.len(),
            meetings: self.inner.meetings.len(),
            sessions: self.inner.sessions.lock().unwrap().len(),
        }
    }

    pub fn register_session(&self, session_id: Uuid, session: Arc<dyn LocalSession>) {
        self.inner.sessions.lock().unwrap().insert(session_id, session);
    }

    pub fn unregister_session(&self, session_id: Uuid) {
        self.inner.sessions.lock().unwrap().remove(&session_id);
    }

    /// How to reach a session: directly if it lives here, through the cluster otherwise.
    pub fn sink(&self, addr: SessionAddr) -> Option<SessionSink> {
        if addr.node == self.this_node() {
            if addr.incarnation != self.inner.cluster.incarnation() {
                return None; // a session of this node's previous run
            }
            let session = self.inner.sessions.lock().unwrap().get(&addr.session_id).cloned()?;
            Some(SessionSink::local(addr, session))
        } else {
            Some(SessionSink { addr, route: SinkRoute::Remote(self.inner.cluster.clone()) })
        }
    }

    /// Hands a delivery from another node to local sessions.
    pub fn deliver_local(&self, session_ids: &[Uuid], delivery: &Delivery) {
        let sessions: Vec<Arc<dyn LocalSession>> = {
            let sessions = self.inner.sessions.lock().unwrap();
            session_ids.iter().filter_map(|id| sessions.get(id).cloned()).collect()
        };
        for session in sessions {
            if !session.deliver(delivery) {
                debug!("session ended before a delivery");
            }
        }
    }

    fn supervisor(&self) -> Result<ractor::ActorCell, RouteError> {
        self.inner.supervisor.lock().unwrap().as_ref().map(|s| s.get_cell()).ok_or(RouteError::NotOwner)
    }

    /// Whether this node may serve `K`'s actor for `id` right now.
    fn owns<K: Kind>(&self, id: Uuid) -> bool {
        let cluster = &self.inner.cluster;
        cluster.owner(K::key(id)) == Some(self.this_node()) && cluster.serving()
    }

    /// The running actor of kind `K` for `id` on this node, spawned if needed.
    async fn actor<K: Kind>(&self, id: Uuid) -> Result<ActorRef<K::Msg>, RouteError> {
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

    /// One attempt: hands the request to the owner of `id`, in order. Returns the owner and
    /// the answer still on its way.
    async fn send<K: Kind>(&self, id: Uuid, request: K::Request) -> Result<(NodeId, Pending<K::Answer>), RouteError> {
        let owner = self.inner.cluster.owner(K::key(id)).ok_or(RouteError::Unreachable)?;
        if owner == self.this_node() {
            return Ok((owner, self.send_local::<K>(id, request).await?));
        }
        let rx = self.inner.cluster.request(owner, K::remote(id, request))?;
        let pending: Pending<K::Answer> = Box::pin(async move {
            let answer = rx.await.map_err(|_| RouteError::Unreachable)??;
            K::answer(answer).ok_or(RouteError::Request(RequestError::internal()))
        });
        Ok((owner, pending))
    }

    async fn send_local<K: Kind>(&self, id: Uuid, request: K::Request) -> Result<Pending<K::Answer>, RouteError> {
        if !self.owns::<K>(id) {
            return Err(RouteError::NotOwner);
        }
        let (tx, rx) = oneshot();
        let msg = K::message(request, RpcReplyPort::from(tx));
        let actor = self.actor::<K>(id).await?;
        if let Err(err) = actor.cast(msg) {
            let msg = cast_failed(err).ok_or(RouteError::NotOwner)?;
            debug!(%id, "actor stopped under us, respawning");
            self.actor::<K>(id).await?.cast(msg).map_err(|_| RouteError::NotOwner)?;
        }
        Ok(Box::pin(async move { rx.await.map_err(|_| RouteError::NotOwner)? }))
    }

    /// Asks the owner of `id` and waits at most `timeout`, asking again (with a growing pause)
    /// while ownership moves or the owner cannot be reached. Returns who answered.
    async fn ask<K: Kind>(
        &self,
        id: Uuid,
        request: K::Request,
        timeout: Duration,
    ) -> Result<(NodeId, K::Answer), RequestError> {
        let deadline = Instant::now() + timeout;
        let mut pause = RETRY_FIRST;
        loop {
            let outcome = match self.send::<K>(id, request.clone()).await {
                Ok((owner, pending)) => match tokio::time::timeout_at(deadline, pending).await {
                    Ok(answer) => answer.map(|answer| (owner, answer)),
                    Err(_) => return Err(RequestError::unavailable()),
                },
                Err(err) => Err(err),
            };
            match outcome {
                Err(err) if err.is_retryable() && Instant::now() + pause < deadline => {
                    debug!(%id, error = %err, retry_in = ?pause, "owner moving or unreachable, asking again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(RETRY_MAX);
                }
                other => return other.map_err(RequestError::from),
            }
        }
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

    /// Serves a request from another node, if this node owns the actor (and holds its lease).
    /// The request is handed to the actor before this returns, so requests keep their
    /// arrival order.
    pub async fn serve_remote(&self, request: RemoteRequest) -> Result<Pending<RemoteAnswer>, RouteError> {
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
