//! Push notifications to phones through FCM HTTP v1, behind a durable queue.
//!
//! # Layout
//! - [`oauth`]: the service account and the cached OAuth2 access token (RS256 JWT assertion).
//! - [`payload`]: the FCM message for one device, fitted into FCM's 4096-byte limit.
//! - [`fcm`]: [`FcmClient`] sends one message and sorts FCM's answer into an outcome, with
//!   bounded retries for 429/5xx (honouring `Retry-After`) and one token refresh on 401.
//! - [`delivery`]: one queued notice to every device of its user; stale tokens are deleted.
//! - [`queue`]: the Redis stream queue (durable, shared by the nodes).
//! - [`worker`]: a node's reader and dispatcher on that stream: ack, retry, lease, claim.
//! - [`local`]: the in-process queue of the single-node default (not crash-durable).
//!
//! # Flow
//! `UserActor` → [`PushQueue::enqueue`] → stream entry (or channel item) → worker →
//! [`delivery::Deliverer`] → [`FcmClient::send`] per device token.
//!
//! **Architecture invariant:** with Redis, an entry is acknowledged only after every device
//! of the notice got an answer from FCM (sent, stale token deleted, or refused for good), or
//! after it was re-queued for the devices that are still due. A node that dies holding
//! entries leaves them pending in the consumer group; live workers claim them once they sat
//! idle for [`PushConfig::claim_idle`]. Delivery is therefore at least once.

pub mod delivery;
pub mod fcm;
pub mod local;
pub mod oauth;
pub mod payload;
pub mod queue;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use actors::ports::{NoPush, PushNotice, PushQueue};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

pub use delivery::{Deliverer, PushJob};
pub use fcm::{FcmClient, FcmError, RetryPolicy, SendOutcome};
pub use local::LocalPushQueue;
pub use oauth::ServiceAccount;
pub use queue::RedisPushQueue;

use crate::store::Db;

/// FCM's production endpoint.
pub const DEFAULT_FCM_BASE_URL: &str = "https://fcm.googleapis.com";

/// How push is configured. Built by [`PushConfig::from_env`] or [`PushConfig::new`].
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The Google service account JSON (`FCM_SERVICE_ACCOUNT_FILE`).
    pub service_account_file: PathBuf,
    /// Where `/v1/projects/{project}/messages:send` lives (`FCM_BASE_URL`).
    pub base_url: String,
    /// Overrides the service account's `project_id` (`FCM_PROJECT_ID`).
    pub project_id: Option<String>,
    /// How long a stream entry sits unacknowledged before another worker claims it
    /// (`PUSH_CLAIM_IDLE_MS`, default 30 s).
    pub claim_idle: Duration,
    /// The Redis stream (default `push:queue`).
    pub stream_key: String,
    /// The Redis consumer group (default `push-workers`).
    pub group: String,
    /// Approximate cap on the stream's length; the oldest entries are trimmed past it.
    pub max_stream_len: usize,
    /// A notice older than this is dropped instead of delivered: a late push is noise.
    pub max_age: Duration,
    /// Notices delivered at once by one worker.
    pub concurrency: usize,
    /// Retries of one send to one device.
    pub retry: RetryPolicy,
    /// Timeout of one HTTP request to FCM or to the token endpoint.
    pub request_timeout: Duration,
}

/// A push setting that could not be read (same fields as `config::ConfigError`).
#[derive(Debug, thiserror::Error)]
#[error("bad value for {name}: {value:?} ({reason})")]
pub struct PushConfigError {
    pub name: &'static str,
    pub value: String,
    pub reason: String,
}

/// Why push could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Fcm(#[from] FcmError),
    #[error("push queue redis: {0}")]
    Redis(#[from] redis::RedisError),
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

impl PushConfig {
    /// Defaults around a service account file.
    pub fn new(service_account_file: impl Into<PathBuf>) -> Self {
        Self {
            service_account_file: service_account_file.into(),
            base_url: DEFAULT_FCM_BASE_URL.to_owned(),
            project_id: None,
            claim_idle: Duration::from_secs(30),
            stream_key: "push:queue".to_owned(),
            group: "push-workers".to_owned(),
            max_stream_len: 100_000,
            max_age: Duration::from_secs(15 * 60),
            concurrency: 16,
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(10),
        }
    }

    /// `None` when `FCM_SERVICE_ACCOUNT_FILE` is unset: push is off.
    pub fn from_env() -> Result<Option<Self>, PushConfigError> {
        let Some(file) = var("FCM_SERVICE_ACCOUNT_FILE") else { return Ok(None) };
        let mut config = Self::new(file.trim());
        if let Some(base_url) = var("FCM_BASE_URL") {
            config.base_url = base_url.trim().trim_end_matches('/').to_owned();
        }
        config.project_id = var("FCM_PROJECT_ID").map(|id| id.trim().to_owned());
        if let Some(value) = var("PUSH_CLAIM_IDLE_MS") {
            let millis: u64 = value.trim().parse().map_err(|err: std::num::ParseIntError| PushConfigError {
                name: "PUSH_CLAIM_IDLE_MS",
                value: value.clone(),
                reason: err.to_string(),
            })?;
            if millis == 0 {
                let reason = "must be above zero".to_owned();
                return Err(PushConfigError { name: "PUSH_CLAIM_IDLE_MS", value, reason });
            }
            config.claim_idle = Duration::from_millis(millis);
        }
        Ok(Some(config))
    }
}

/// The queue in use, so tests and operators can look at its backlog.
#[derive(Clone)]
pub enum QueueKind {
    Redis(Arc<RedisPushQueue>),
    Local(Arc<LocalPushQueue>),
}

/// A running push pipeline: where to enqueue, and the worker task that drains it.
pub struct PushPipeline {
    pub queue: QueueKind,
    /// Ends on shutdown. Aborting it is what a crash does to a Redis-backed worker.
    pub worker: JoinHandle<()>,
}

impl PushPipeline {
    pub fn push_queue(&self) -> Arc<dyn PushQueue> {
        match &self.queue {
            QueueKind::Redis(queue) => queue.clone(),
            QueueKind::Local(queue) => queue.clone(),
        }
    }

    /// Entries read by some worker but not yet acknowledged (always 0 for the local queue).
    pub async fn pending(&self) -> Result<u64, redis::RedisError> {
        match &self.queue {
            QueueKind::Redis(queue) => queue.pending().await,
            QueueKind::Local(_) => Ok(0),
        }
    }
}

/// Returns once `shutdown` turns true, or its sender is gone (nobody can stop us then either).
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        tracing::debug!("push shutdown sender dropped");
    }
}

/// Starts push: a Redis stream queue when `redis_url` is given, else the in-process queue;
/// [`NoPush`] when FCM is not configured. `consumer` names this worker in the consumer
/// group (the node id), so a restarted node first finishes what it had read before.
pub async fn start(
    config: Option<PushConfig>,
    db: Db,
    redis_url: Option<&str>,
    consumer: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<dyn PushQueue>, PushError> {
    match config {
        None => {
            info!("push notifications off (FCM_SERVICE_ACCOUNT_FILE unset)");
            Ok(Arc::new(NoPush))
        }
        Some(config) => Ok(launch(config, db, redis_url, consumer, shutdown).await?.push_queue()),
    }
}

/// Like [`start`] with FCM configured, but hands back the worker too.
pub async fn launch(
    config: PushConfig,
    db: Db,
    redis_url: Option<&str>,
    consumer: &str,
    shutdown: watch::Receiver<bool>,
) -> Result<PushPipeline, PushError> {
    let account = ServiceAccount::from_file(&config.service_account_file)?;
    let fcm = FcmClient::new(account, &config)?;
    info!(project_id = %fcm.project_id(), base_url = %config.base_url, durable = redis_url.is_some(), "push notifications on");
    let deliverer = Arc::new(Deliverer::new(db, Arc::new(fcm)));
    match redis_url {
        Some(url) => {
            let queue = Arc::new(RedisPushQueue::connect(url, &config).await?);
            let worker = queue.spawn_worker(deliverer, consumer, &config, shutdown).await?;
            Ok(PushPipeline { queue: QueueKind::Redis(queue), worker })
        }
        None => {
            let (queue, worker) = LocalPushQueue::start(deliverer, &config, shutdown);
            Ok(PushPipeline { queue: QueueKind::Local(Arc::new(queue)), worker })
        }
    }
}
