//! The durable push queue: a Redis stream shared by every node, read through one consumer
//! group.
//!
//! - `enqueue` is `XADD push:queue MAXLEN ~ N * job <json>`; it returns `Ok` only once Redis
//!   answered, so an acknowledged notice is in Redis, not in this process.
//! - Each node runs one worker ([`super::worker`]) that reads with `XREADGROUP` under its
//!   node id, delivers, and `XACK`s. What a dead node had read stays pending in the group
//!   and is taken over with `XAUTOCLAIM` once idle for the claim time.
//! - The group is created at `0` with `MKSTREAM` (a `BUSYGROUP` answer means it exists), so
//!   notices queued before any worker started are delivered too.

use std::sync::Arc;
use std::time::Duration;

use actors::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::streams::{StreamAddOptions, StreamTrimStrategy, StreamTrimmingMode};
use redis::{AsyncCommands, RedisError, RedisResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::delivery::{Deliverer, PushJob};
use super::worker::{StreamWorker, WorkerSettings};
use super::{PushConfig, PushNotice, PushQueue};

/// The stream entry's field holding the JSON [`PushJob`].
pub const JOB_FIELD: &str = "job";
/// Longest wait for an answer to a non-blocking command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where one queue lives in Redis.
#[derive(Debug, Clone)]
pub struct StreamNames {
    pub key: String,
    pub group: String,
    pub max_len: usize,
}

pub struct RedisPushQueue {
    client: redis::Client,
    commands: ConnectionManager,
    names: StreamNames,
}

pub(crate) fn connection_config(response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(COMMAND_TIMEOUT)
        .set_response_timeout(response_timeout)
        .set_number_of_retries(4)
        .set_max_delay(2_000)
}

impl RedisPushQueue {
    /// Connects and makes sure the stream and its consumer group exist.
    pub async fn connect(url: &str, config: &PushConfig) -> RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let commands = ConnectionManager::new_with_config(client.clone(), connection_config(COMMAND_TIMEOUT)).await?;
        let names =
            StreamNames { key: config.stream_key.clone(), group: config.group.clone(), max_len: config.max_stream_len };
        let queue = Self { client, commands, names };
        ensure_group(&mut queue.commands.clone(), &queue.names).await?;
        Ok(queue)
    }

    pub fn names(&self) -> &StreamNames {
        &self.names
    }

    /// Entries some worker read but did not acknowledge yet.
    pub async fn pending(&self) -> RedisResult<u64> {
        let mut conn = self.commands.clone();
        let reply: redis::streams::StreamPendingReply = conn.xpending(&self.names.key, &self.names.group).await?;
        Ok(reply.count() as u64)
    }

    /// Appends a job; `Ok` once Redis stored it.
    pub async fn enqueue_job(&self, job: &PushJob) -> StoreResult<String> {
        let text = serde_json::to_string(job).map_err(|err| StoreError::Unavailable(err.to_string()))?;
        let options = StreamAddOptions::default()
            .trim(StreamTrimStrategy::maxlen(StreamTrimmingMode::Approx, self.names.max_len));
        let mut conn = self.commands.clone();
        let id: Option<String> =
            conn.xadd_options(&self.names.key, "*", &[(JOB_FIELD, text)], &options).await.map_err(store_error)?;
        id.ok_or_else(|| StoreError::Unavailable("xadd returned no id".to_owned()))
    }

    /// Starts this node's worker as consumer `consumer`. It opens its own connection for the
    /// blocking reads, which would otherwise hold up every other command.
    pub async fn spawn_worker(
        &self,
        deliverer: Arc<Deliverer>,
        consumer: &str,
        config: &PushConfig,
        shutdown: watch::Receiver<bool>,
    ) -> RedisResult<JoinHandle<()>> {
        let settings = WorkerSettings {
            names: self.names.clone(),
            consumer: consumer.to_owned(),
            claim_idle: config.claim_idle,
            max_age: config.max_age,
            concurrency: config.concurrency.max(1),
        };
        let reader = ConnectionManager::new_with_config(
            self.client.clone(),
            connection_config(WorkerSettings::BLOCK + COMMAND_TIMEOUT),
        )
        .await?;
        let worker = StreamWorker::new(settings, self.commands.clone(), reader, deliverer);
        Ok(tokio::spawn(worker.run(shutdown)))
    }
}

#[async_trait]
impl PushQueue for RedisPushQueue {
    async fn enqueue(&self, notice: PushNotice) -> StoreResult<()> {
        self.enqueue_job(&PushJob::new(notice)).await.map(|_| ())
    }
}

/// `XGROUP CREATE key group 0 MKSTREAM`, tolerating an existing group.
pub(crate) async fn ensure_group(conn: &mut ConnectionManager, names: &StreamNames) -> RedisResult<()> {
    let created: RedisResult<()> = conn.xgroup_create_mkstream(&names.key, &names.group, "0").await;
    match created {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// A refused connection certainly wrote nothing; a timeout or a broken connection may have.
fn store_error(err: RedisError) -> StoreError {
    if err.is_timeout() || (err.is_io_error() && !err.is_connection_refusal()) {
        StoreError::Unknown(err.to_string())
    } else {
        StoreError::Unavailable(err.to_string())
    }
}
