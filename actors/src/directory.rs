//! The directory of virtual actors on this node: a message to a channel or user that has no
//! running actor spawns one (state reloaded from the ports), and idle actors stop by themselves.
//!
//! # Supervision tree
//! ```text
//! HomeSupervisor            one per node; restarts nothing, forgets what ended
//! ├── ChannelActor *        spawned on demand, linked; ends when idle or after an uncertain write
//! └── UserActor *           spawned on demand, linked; ends when idle
//! SessionActor *            not linked: it lives and dies with its socket
//! ```
//! When a linked actor ends (stopped or panicked) the supervisor removes it from the
//! directory, so the next message spawns a fresh one that reloads its state.
//!
//! **Invariant:** at most one running actor per key on a node: spawning happens under the
//! key's slot lock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ractor::concurrency::oneshot;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort, SupervisionEvent};
use tracing::{debug, error, warn};
use uuid::Uuid;

use crate::channel::{ChannelActor, ChannelArgs, ChannelConfig, ChannelMsg, Reply};
use crate::ports::{Ports, StoreError};
use crate::protocol::RequestError;
use crate::session::cast_failed;
use crate::user::{UserActor, UserArgs, UserMsg};

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

type Slot<M> = Arc<tokio::sync::Mutex<Option<ActorRef<M>>>>;

/// Running actors of one kind, by key.
struct Slots<M> {
    by_key: Mutex<HashMap<Uuid, Slot<M>>>,
    keys: Mutex<HashMap<ActorId, Uuid>>,
}

impl<M: ractor::Message> Slots<M> {
    fn new() -> Self {
        Self { by_key: Mutex::new(HashMap::new()), keys: Mutex::new(HashMap::new()) }
    }

    fn slot(&self, key: Uuid) -> Slot<M> {
        self.by_key.lock().unwrap().entry(key).or_default().clone()
    }

    fn find(&self, key: Uuid) -> Option<ActorRef<M>> {
        let slot = self.by_key.lock().unwrap().get(&key).cloned()?;
        let guard = slot.try_lock().ok()?;
        guard.as_ref().filter(|actor| is_running(actor.get_cell())).cloned()
    }

    /// Drops the slot of `key` if nobody else holds it and it has no actor.
    fn release(&self, key: Uuid, slot: Slot<M>) {
        let mut by_key = self.by_key.lock().unwrap();
        // One reference in the map, one in `slot`: nobody else is waiting on it.
        if Arc::strong_count(&slot) == 2 && slot.try_lock().map(|guard| guard.is_none()).unwrap_or(false) {
            by_key.remove(&key);
        }
    }

    fn forget(&self, actor_id: ActorId) -> bool {
        let Some(key) = self.keys.lock().unwrap().remove(&actor_id) else {
            return false;
        };
        let mut by_key = self.by_key.lock().unwrap();
        let Some(slot) = by_key.get(&key).cloned() else {
            return true;
        };
        let cleared = match slot.try_lock() {
            Ok(mut guard) if guard.as_ref().map(|actor| actor.get_id()) == Some(actor_id) => {
                *guard = None;
                true
            }
            _ => false,
        };
        // One reference in the map, one here: nobody is waiting to spawn into it.
        if cleared && Arc::strong_count(&slot) == 2 {
            by_key.remove(&key);
        }
        true
    }

    fn running(&self) -> Vec<ActorRef<M>> {
        let slots: Vec<Slot<M>> = self.by_key.lock().unwrap().values().cloned().collect();
        slots.iter().filter_map(|slot| slot.try_lock().ok().and_then(|guard| guard.clone())).collect()
    }

    fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

fn is_running(cell: ActorCell) -> bool {
    matches!(cell.get_status(), ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading)
}

struct Inner {
    ports: Ports,
    config: DirectoryConfig,
    channels: Slots<ChannelMsg>,
    users: Slots<UserMsg>,
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
}

fn store_unavailable(err: StoreError) -> RequestError {
    warn!(error = %err, "store failed while loading an actor");
    RequestError::unavailable()
}

impl Directory {
    pub async fn start(ports: Ports, config: DirectoryConfig) -> Result<Self, ractor::SpawnErr> {
        let inner = Arc::new(Inner {
            ports,
            config,
            channels: Slots::new(),
            users: Slots::new(),
            supervisor: Mutex::new(None),
        });
        let (supervisor, _) = Actor::spawn(None, HomeSupervisor, Arc::downgrade(&inner)).await?;
        *inner.supervisor.lock().unwrap() = Some(supervisor);
        Ok(Self { inner })
    }

    pub fn ports(&self) -> &Ports {
        &self.inner.ports
    }

    pub fn stats(&self) -> DirectoryStats {
        DirectoryStats { channels: self.inner.channels.len(), users: self.inner.users.len() }
    }

    fn supervisor(&self) -> Result<ActorCell, RequestError> {
        self.inner.supervisor.lock().unwrap().as_ref().map(|s| s.get_cell()).ok_or_else(RequestError::unavailable)
    }

    /// The running channel actor, spawned if needed. Unknown channels are `not_found`.
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

    /// Casts to the channel, respawning it once if it stopped between lookup and send.
    pub async fn cast_channel(&self, channel_id: Uuid, msg: ChannelMsg) -> Result<(), RequestError> {
        let actor = self.channel(channel_id).await?;
        let Err(err) = actor.cast(msg) else {
            return Ok(());
        };
        let msg = cast_failed(err).ok_or_else(RequestError::unavailable)?;
        debug!(%channel_id, "channel stopped under us, respawning");
        self.channel(channel_id).await?.cast(msg).map_err(|_| RequestError::unavailable())
    }

    /// Asks the channel and waits for its answer at most `timeout`.
    pub async fn ask_channel<T: Send + 'static>(
        &self,
        channel_id: Uuid,
        timeout: Duration,
        build: impl FnOnce(Reply<T>) -> ChannelMsg,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot();
        self.cast_channel(channel_id, build(RpcReplyPort::from(tx))).await?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Err(RequestError::unavailable()),
        }
    }

    /// The running user actor, spawned if needed. Unknown users are `not_found`.
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

    pub async fn ask_user<T: Send + 'static>(
        &self,
        user_id: Uuid,
        timeout: Duration,
        build: impl FnOnce(Reply<T>) -> UserMsg,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot();
        let msg = build(RpcReplyPort::from(tx));
        let actor = self.user(user_id).await?;
        if let Err(err) = actor.cast(msg) {
            let msg = cast_failed(err).ok_or_else(RequestError::unavailable)?;
            self.user(user_id).await?.cast(msg).map_err(|_| RequestError::unavailable())?;
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) | Err(_) => Err(RequestError::unavailable()),
        }
    }

    /// Delivers `text` to every live session of the user; returns how many took it.
    pub async fn notify_user(&self, user_id: Uuid, text: Arc<str>) -> Result<usize, RequestError> {
        let (tx, rx) = oneshot();
        let actor = self.user(user_id).await?;
        actor
            .cast(UserMsg::Notify { text, reply: Some(RpcReplyPort::from(tx)) })
            .map_err(|_| RequestError::unavailable())?;
        rx.await.map_err(|_| RequestError::unavailable())
    }

    /// Like [`Self::notify_user`] without waiting: for actors that must not block on another.
    pub fn notify_user_later(&self, user_id: Uuid, text: Arc<str>) {
        let directory = self.clone();
        tokio::spawn(async move {
            if let Err(err) = directory.notify_user(user_id, text).await {
                warn!(%user_id, error = %err, "notification not delivered");
            }
        });
    }

    /// Stops every actor of the directory and its supervisor.
    pub async fn shutdown(&self) {
        for channel in self.inner.channels.running() {
            channel.stop(Some("shutdown".to_owned()));
        }
        for user in self.inner.users.running() {
            user.stop(Some("shutdown".to_owned()));
        }
        let supervisor = self.inner.supervisor.lock().unwrap().take();
        if let Some(supervisor) = supervisor {
            supervisor.stop(Some("shutdown".to_owned()));
        }
    }
}

/// Watches the directory's actors and forgets those that end.
struct HomeSupervisor;

impl Actor for HomeSupervisor {
    type Msg = ();
    type State = Weak<Inner>;
    type Arguments = Weak<Inner>;

    async fn pre_start(&self, _myself: ActorRef<()>, inner: Weak<Inner>) -> Result<Weak<Inner>, ActorProcessingErr> {
        Ok(inner)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.map(|r| format!("stopped: {r}"))),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(format!("failed: {err}"))),
            _ => return Ok(()),
        };
        let actor_id = cell.get_id();
        if !inner.channels.forget(actor_id) && !inner.users.forget(actor_id) {
            debug!(%actor_id, "unknown actor ended");
        }
        if let Some(reason) = failure {
            debug!(%actor_id, %reason, "actor ended");
        }
        Ok(())
    }
}
