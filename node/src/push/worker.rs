//! A node's worker on the Redis push stream.
//!
//! Two halves run in one task, so aborting the task (what a crash does) stops both:
//! - the **reader** first re-reads this consumer's own pending entries (left by an earlier
//!   run under the same node id), then blocks on `XREADGROUP … >` and hands entries over a
//!   bounded channel;
//! - the **dispatcher** delivers up to `concurrency` entries at once and settles each: `XACK`
//!   when done, `XADD` of a retry for the devices still due plus `XACK` (one `MULTI`), or
//!   nothing when the devices could not be read (the entry is claimed again once idle).
//!   Every third of the claim time it renews the entries it holds (`XCLAIM … JUSTID` resets
//!   their idle time, so a slow delivery is not taken over) and `XAUTOCLAIM`s entries idle
//!   longer than the claim time, from dead workers or postponed ones.
//!
//! On shutdown the reader stops, deliveries under way get [`DRAIN`] to finish, the rest stay
//! pending for another worker.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamId, StreamPendingCountReply,
    StreamReadOptions, StreamReadReply,
};
use redis::{AsyncCommands, RedisResult};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio::time::{timeout, MissedTickBehavior};
use tracing::{error, info, warn};

use super::delivery::{Deliverer, JobOutcome, PushJob};
use super::queue::{ensure_group, StreamNames, JOB_FIELD};
use super::stopping;

/// How long deliveries under way may finish after shutdown.
const DRAIN: Duration = Duration::from_secs(3);
/// Longest pause after failed reads in a row.
const MAX_READ_PAUSE: Duration = Duration::from_secs(5);
/// Entries renewed per `XCLAIM`.
const RENEW_CHUNK: usize = 100;

pub struct WorkerSettings {
    pub names: StreamNames,
    /// This worker's consumer name: the node id.
    pub consumer: String,
    pub claim_idle: Duration,
    pub max_age: Duration,
    pub concurrency: usize,
}

impl WorkerSettings {
    /// How long one `XREADGROUP` blocks.
    pub const BLOCK: Duration = Duration::from_secs(2);

    fn lease_period(&self) -> Duration {
        (self.claim_idle / 3).max(Duration::from_millis(50))
    }
}

/// Entry ids this worker read and has not settled: read ahead, or being delivered.
type Held = Arc<Mutex<HashSet<String>>>;

/// What a delivery task reports back.
enum Settled {
    Delivered(Box<PushJob>, JobOutcome),
    Malformed(String),
}

pub struct StreamWorker {
    settings: Arc<WorkerSettings>,
    commands: ConnectionManager,
    reader: ConnectionManager,
    deliverer: Arc<Deliverer>,
    held: Held,
}

impl StreamWorker {
    pub fn new(
        settings: WorkerSettings,
        commands: ConnectionManager,
        reader: ConnectionManager,
        deliverer: Arc<Deliverer>,
    ) -> Self {
        Self { settings: Arc::new(settings), commands, reader, deliverer, held: Held::default() }
    }

    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let (entries_tx, entries_rx) = mpsc::channel(self.settings.concurrency);
        let reader = Reader { settings: self.settings.clone(), conn: self.reader.clone(), held: self.held.clone() };
        let dispatcher = Dispatcher {
            settings: self.settings.clone(),
            conn: self.commands,
            deliverer: self.deliverer,
            held: self.held,
            running: JoinSet::new(),
            entry_of_task: HashMap::new(),
            claim_cursor: "0-0".to_owned(),
        };
        info!(consumer = %self.settings.consumer, stream = %self.settings.names.key, "push worker started");
        tokio::join!(reader.run(entries_tx, shutdown.clone()), dispatcher.run(entries_rx, shutdown));
        info!(consumer = %self.settings.consumer, "push worker stopped");
    }
}

struct Reader {
    settings: Arc<WorkerSettings>,
    conn: ConnectionManager,
    held: Held,
}

impl Reader {
    async fn run(mut self, entries: mpsc::Sender<StreamId>, mut shutdown: watch::Receiver<bool>) {
        // `Some(id)`: still going through our own pending entries, after `id`.
        let mut own_pending_after = Some("0".to_owned());
        let mut failures = 0u32;
        loop {
            let read = tokio::select! {
                biased;
                _ = stopping(&mut shutdown) => return,
                read = self.read(own_pending_after.as_deref()) => read,
            };
            let batch = match read {
                Ok(batch) => batch,
                Err(err) => {
                    failures += 1;
                    warn!(error = %err, failures, "push stream read failed");
                    if err.code() == Some("NOGROUP") {
                        if let Err(err) = ensure_group(&mut self.conn, &self.settings.names).await {
                            warn!(error = %err, "cannot recreate the push consumer group");
                        }
                    }
                    let pause = (Duration::from_millis(100) * 2u32.pow(failures.min(6))).min(MAX_READ_PAUSE);
                    tokio::select! {
                        _ = stopping(&mut shutdown) => return,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            failures = 0;
            if own_pending_after.is_some() {
                own_pending_after = batch.last().map(|entry| entry.id.clone());
                if let Some(after) = &own_pending_after {
                    info!(consumer = %self.settings.consumer, after = %after, "resuming pushes this node had read");
                }
            }
            for entry in batch {
                self.held.lock().expect("held ids lock").insert(entry.id.clone());
                if entries.send(entry).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Own pending entries after `own_pending_after` without blocking, or new entries.
    async fn read(&mut self, own_pending_after: Option<&str>) -> RedisResult<Vec<StreamId>> {
        let names = &self.settings.names;
        let options =
            StreamReadOptions::default().group(&names.group, &self.settings.consumer).count(self.settings.concurrency);
        let (options, start) = match own_pending_after {
            Some(after) => (options, after),
            None => (options.block(WorkerSettings::BLOCK.as_millis() as usize), ">"),
        };
        let reply: Option<StreamReadReply> = self.conn.xread_options(&[&names.key], &[start], &options).await?;
        Ok(reply.into_iter().flat_map(|reply| reply.keys).flat_map(|key| key.ids).collect())
    }
}

struct Dispatcher {
    settings: Arc<WorkerSettings>,
    conn: ConnectionManager,
    deliverer: Arc<Deliverer>,
    held: Held,
    running: JoinSet<Settled>,
    entry_of_task: HashMap<tokio::task::Id, String>,
    claim_cursor: String,
}

impl Dispatcher {
    async fn run(mut self, mut entries: mpsc::Receiver<StreamId>, mut shutdown: watch::Receiver<bool>) {
        let mut lease = tokio::time::interval(self.settings.lease_period());
        lease.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let has_room = self.running.len() < self.settings.concurrency;
            tokio::select! {
                biased;
                _ = stopping(&mut shutdown) => break,
                Some(joined) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    self.settle(joined).await;
                }
                _ = lease.tick() => {
                    self.renew().await;
                    self.claim_idle_entries().await;
                }
                entry = entries.recv(), if has_room => match entry {
                    Some(entry) => self.start(entry),
                    None => break,
                },
            }
        }
        self.drain().await;
    }

    fn start(&mut self, entry: StreamId) {
        let entry_id = entry.id.clone();
        let job = entry
            .get::<String>(JOB_FIELD)
            .ok_or_else(|| "no job field (trimmed from the stream?)".to_owned())
            .and_then(|text| serde_json::from_str::<PushJob>(&text).map_err(|err| err.to_string()));
        let deliverer = self.deliverer.clone();
        let max_age = self.settings.max_age;
        let task = self.running.spawn(async move {
            match job {
                Ok(job) => {
                    let outcome = deliverer.deliver(&job, max_age).await;
                    Settled::Delivered(Box::new(job), outcome)
                }
                Err(reason) => Settled::Malformed(reason),
            }
        });
        self.entry_of_task.insert(task.id(), entry_id);
    }

    async fn settle(&mut self, joined: Result<(tokio::task::Id, Settled), JoinError>) {
        let (task_id, settled) = match joined {
            Ok((task_id, settled)) => (task_id, Some(settled)),
            Err(err) => {
                error!(error = %err, "push delivery task failed");
                (err.id(), None)
            }
        };
        let Some(entry_id) = self.entry_of_task.remove(&task_id) else { return };
        let settled_in_redis = match settled {
            Some(Settled::Delivered(_, JobOutcome::Done(_) | JobOutcome::Expired)) => self.ack(&entry_id).await,
            Some(Settled::Malformed(reason)) => {
                warn!(entry_id = %entry_id, %reason, "unreadable push entry dropped");
                self.ack(&entry_id).await
            }
            Some(Settled::Delivered(_, JobOutcome::Retry(job, _))) => self.requeue(&entry_id, &job).await,
            Some(Settled::Delivered(job, JobOutcome::Postponed(err))) => {
                warn!(entry_id = %entry_id, user_id = %job.notice.user_id, error = %err, "cannot read devices, push postponed");
                Ok(())
            }
            // Left pending: claimed again once idle.
            None => Ok(()),
        };
        if let Err(err) = settled_in_redis {
            warn!(entry_id = %entry_id, error = %err, "cannot settle push entry, it will be delivered again");
        }
        self.held.lock().expect("held ids lock").remove(&entry_id);
    }

    async fn ack(&mut self, entry_id: &str) -> RedisResult<()> {
        let names = &self.settings.names;
        self.conn.xack::<_, _, _, ()>(&names.key, &names.group, &[entry_id]).await
    }

    /// Queues the devices still due as a new entry and acknowledges the old one, atomically.
    async fn requeue(&mut self, entry_id: &str, job: &PushJob) -> RedisResult<()> {
        let names = &self.settings.names;
        let text = serde_json::to_string(job)
            .map_err(|err| redis::RedisError::from((redis::ErrorKind::TypeError, "job encoding", err.to_string())))?;
        let options = redis::streams::StreamAddOptions::default().trim(redis::streams::StreamTrimStrategy::maxlen(
            redis::streams::StreamTrimmingMode::Approx,
            names.max_len,
        ));
        redis::pipe()
            .atomic()
            .xadd_options(&names.key, "*", &[(JOB_FIELD, text)], &options)
            .xack(&names.key, &names.group, &[entry_id])
            .query_async::<()>(&mut self.conn)
            .await
    }

    /// Resets the idle time of the entries this worker still holds, so no one claims them.
    async fn renew(&mut self) {
        let held: HashSet<String> = self.held.lock().expect("held ids lock").clone();
        if held.is_empty() {
            return;
        }
        if let Err(err) = self.renew_held(&held).await {
            warn!(error = %err, held = held.len(), "cannot renew held push entries");
        }
    }

    async fn renew_held(&mut self, held: &HashSet<String>) -> RedisResult<()> {
        let names = &self.settings.names;
        // Only entries still ours: renewing with XCLAIM would take back one already claimed.
        let count = held.len() + RENEW_CHUNK;
        let ours: StreamPendingCountReply = self
            .conn
            .xpending_consumer_count(&names.key, &names.group, "-", "+", count, &self.settings.consumer)
            .await?;
        let ours: Vec<String> = ours.ids.into_iter().map(|pending| pending.id).filter(|id| held.contains(id)).collect();
        if ours.len() < held.len() {
            warn!(lost = held.len() - ours.len(), "held push entries were claimed by another worker");
        }
        for chunk in ours.chunks(RENEW_CHUNK) {
            let options = StreamClaimOptions::default().with_justid();
            let _renewed: Vec<String> =
                self.conn.xclaim_options(&names.key, &names.group, &self.settings.consumer, 0, chunk, options).await?;
        }
        Ok(())
    }

    /// Takes over entries idle longer than the claim time (their worker died or gave them back).
    async fn claim_idle_entries(&mut self) {
        let room = self.settings.concurrency.saturating_sub(self.running.len());
        if room == 0 {
            return;
        }
        let names = &self.settings.names;
        let idle_ms = self.settings.claim_idle.as_millis() as u64;
        let options = StreamAutoClaimOptions::default().count(room);
        let claimed: RedisResult<StreamAutoClaimReply> = self
            .conn
            .xautoclaim_options(&names.key, &names.group, &self.settings.consumer, idle_ms, &self.claim_cursor, options)
            .await;
        let reply = match claimed {
            Ok(reply) => reply,
            Err(err) => {
                warn!(error = %err, "cannot claim idle push entries");
                return;
            }
        };
        self.claim_cursor = reply.next_stream_id;
        let fresh: Vec<StreamId> = {
            let mut held = self.held.lock().expect("held ids lock");
            reply.claimed.into_iter().filter(|entry| held.insert(entry.id.clone())).collect()
        };
        if !fresh.is_empty() {
            info!(claimed = fresh.len(), consumer = %self.settings.consumer, "claimed idle push entries");
        }
        for entry in fresh {
            self.start(entry);
        }
    }

    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !self.running.is_empty() {
            match timeout(
                deadline.saturating_duration_since(tokio::time::Instant::now()),
                self.running.join_next_with_id(),
            )
            .await
            {
                Ok(Some(joined)) => self.settle(joined).await,
                Ok(None) => break,
                Err(_) => {
                    warn!(left = self.running.len(), "push deliveries still running at shutdown, left pending");
                    self.running.abort_all();
                    break;
                }
            }
        }
    }
}
