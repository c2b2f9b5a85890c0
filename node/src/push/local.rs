//! The in-process push queue of the single-node default (no Redis).
//!
//! **Not crash-durable:** notices live in a bounded tokio channel; those still queued or
//! being sent when the node stops or dies are lost (the count is logged on a clean stop).
//! A full channel refuses new notices rather than growing. Use Redis (`REDIS_URL`) for a
//! queue that survives a node.

use std::sync::Arc;
use std::time::Duration;

use actors::ports::{StoreError, StoreResult};
use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

use super::delivery::{Deliverer, JobOutcome, PushJob};
use super::{stopping, PushConfig, PushNotice, PushQueue};

/// Notices waiting in memory before `enqueue` refuses more.
const CAPACITY: usize = 4096;
/// Pause before a job whose devices could not all be served runs again.
const RETRY_PAUSE: Duration = Duration::from_secs(2);

pub struct LocalPushQueue {
    sender: mpsc::Sender<PushJob>,
}

impl LocalPushQueue {
    /// The queue and its worker; the worker stops when `shutdown` turns true (or its sender drops).
    pub fn start(
        deliverer: Arc<Deliverer>,
        config: &PushConfig,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(CAPACITY);
        let worker = LocalWorker {
            deliverer,
            requeue: sender.clone(),
            max_age: config.max_age,
            concurrency: config.concurrency.max(1),
        };
        (Self { sender }, tokio::spawn(worker.run(receiver, shutdown)))
    }
}

#[async_trait]
impl PushQueue for LocalPushQueue {
    async fn enqueue(&self, notice: PushNotice) -> StoreResult<()> {
        self.sender.try_send(PushJob::new(notice)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => StoreError::Unavailable("push queue full".to_owned()),
            mpsc::error::TrySendError::Closed(_) => StoreError::Unavailable("push worker stopped".to_owned()),
        })
    }
}

struct LocalWorker {
    deliverer: Arc<Deliverer>,
    /// Jobs that must run again go back through the same channel.
    requeue: mpsc::Sender<PushJob>,
    max_age: Duration,
    concurrency: usize,
}

impl LocalWorker {
    async fn run(self, mut receiver: mpsc::Receiver<PushJob>, mut shutdown: watch::Receiver<bool>) {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                biased;
                _ = stopping(&mut shutdown) => break,
                Some(joined) = running.join_next(), if !running.is_empty() => {
                    if let Err(err) = joined {
                        error!(error = %err, "push delivery task failed");
                    }
                }
                job = receiver.recv(), if running.len() < self.concurrency => {
                    let Some(job) = job else { break };
                    running.spawn(run_job(self.deliverer.clone(), self.requeue.clone(), job, self.max_age));
                }
            }
        }
        let abandoned = running.len() + receiver.len();
        if abandoned > 0 {
            warn!(abandoned, "in-process push queue stopped with notices undelivered");
        }
        info!("push worker stopped");
    }
}

async fn run_job(deliverer: Arc<Deliverer>, requeue: mpsc::Sender<PushJob>, job: PushJob, max_age: Duration) {
    let again = match deliverer.deliver(&job, max_age).await {
        JobOutcome::Done(_) | JobOutcome::Expired => return,
        JobOutcome::Retry(job, _) => job,
        JobOutcome::Postponed(err) => {
            warn!(user_id = %job.notice.user_id, error = %err, "cannot read devices, push postponed");
            job
        }
    };
    tokio::time::sleep(RETRY_PAUSE).await;
    let user_id = again.notice.user_id;
    if let Err(err) = requeue.try_send(again) {
        warn!(%user_id, error = %err, "push dropped: cannot requeue");
    }
}
