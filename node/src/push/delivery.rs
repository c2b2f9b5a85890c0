//! One queued notice to every device of its user.
//!
//! Devices are read from the database when the job runs (not when it is queued), so a
//! token registered or removed meanwhile counts. Stale tokens are deleted on FCM's word;
//! devices that FCM kept failing for are handed back for a re-queue until the job is
//! [`PushConfig::max_age`](super::PushConfig::max_age) old.

use std::sync::Arc;
use std::time::Duration;

use actors::model::now_millis;
use actors::ports::StoreError;
use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use tracing::{debug, error, info, warn};

use super::fcm::{token_hint, FcmClient, SendOutcome};
use super::PushNotice;
use crate::store::Db;

/// Devices of one user sent to at once.
const DEVICES_AT_ONCE: usize = 8;

/// What travels through the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    pub notice: PushNotice,
    /// Only these device tokens (a retry of the ones still due); `None` means every device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    /// When the notice was first queued, Unix milliseconds.
    pub enqueued_at: i64,
    /// How many times it was re-queued.
    #[serde(default)]
    pub round: u32,
}

impl PushJob {
    pub fn new(notice: PushNotice) -> Self {
        Self { notice, tokens: None, enqueued_at: now_millis(), round: 0 }
    }

    pub fn age(&self) -> Duration {
        Duration::from_millis(u64::try_from(now_millis() - self.enqueued_at).unwrap_or(0))
    }

    /// The same notice for `tokens` only, one round later.
    pub fn retry_for(&self, tokens: Vec<String>) -> Self {
        Self { notice: self.notice.clone(), tokens: Some(tokens), enqueued_at: self.enqueued_at, round: self.round + 1 }
    }
}

/// Counts of one job's devices, for logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport {
    pub sent: usize,
    pub stale_removed: usize,
    pub refused: usize,
    /// Devices FCM kept failing for.
    pub failed: usize,
}

#[derive(Debug)]
pub enum JobOutcome {
    /// Every device got its final answer (or was given up on).
    Done(DeliveryReport),
    /// Queue this job again: its devices that are still due.
    Retry(PushJob, DeliveryReport),
    /// The devices could not be read; the job stays where it is and runs again later.
    Postponed(StoreError),
    /// Older than the maximum age; dropped unsent.
    Expired,
}

enum DeviceResult {
    Sent,
    StaleRemoved,
    Refused,
    Failed(String),
}

pub struct Deliverer {
    db: Db,
    fcm: Arc<FcmClient>,
}

impl Deliverer {
    pub fn new(db: Db, fcm: Arc<FcmClient>) -> Self {
        Self { db, fcm }
    }

    pub fn fcm(&self) -> &FcmClient {
        &self.fcm
    }

    pub async fn deliver(&self, job: &PushJob, max_age: Duration) -> JobOutcome {
        let user_id = job.notice.user_id;
        if job.age() > max_age {
            warn!(%user_id, age_ms = job.age().as_millis() as u64, "push expired before delivery, dropped");
            return JobOutcome::Expired;
        }
        let devices = match self.db.devices(user_id).await {
            Ok(devices) => devices,
            Err(err) => return JobOutcome::Postponed(err),
        };
        let tokens: Vec<String> = devices
            .into_iter()
            .map(|device| device.token)
            .filter(|token| job.tokens.as_ref().is_none_or(|wanted| wanted.contains(token)))
            .collect();
        let mut report = DeliveryReport::default();
        let mut still_due = Vec::new();
        for chunk in tokens.chunks(DEVICES_AT_ONCE) {
            let results = join_all(chunk.iter().map(|token| self.deliver_to(&job.notice, token))).await;
            for (token, result) in chunk.iter().zip(results) {
                match result {
                    DeviceResult::Sent => report.sent += 1,
                    DeviceResult::StaleRemoved => report.stale_removed += 1,
                    DeviceResult::Refused => report.refused += 1,
                    DeviceResult::Failed(reason) => {
                        warn!(%user_id, token_hint = %token_hint(token), %reason, round = job.round, "push to device failed");
                        report.failed += 1;
                        still_due.push(token.clone());
                    }
                }
            }
        }
        let devices = tokens.len();
        let DeliveryReport { sent, stale_removed, refused, failed } = report;
        if sent == devices {
            debug!(%user_id, devices, "push delivered");
        } else {
            info!(%user_id, devices, sent, stale_removed, refused, failed, "push delivered in part");
        }
        if still_due.is_empty() {
            JobOutcome::Done(report)
        } else if job.age() < max_age {
            JobOutcome::Retry(job.retry_for(still_due), report)
        } else {
            warn!(%user_id, devices = still_due.len(), "push given up: fcm kept failing until it expired");
            JobOutcome::Done(report)
        }
    }

    async fn deliver_to(&self, notice: &PushNotice, token: &str) -> DeviceResult {
        match self.fcm.send(token, notice).await {
            Ok(SendOutcome::Sent { .. }) => DeviceResult::Sent,
            Ok(SendOutcome::StaleToken { error_code }) => {
                let user_id = notice.user_id;
                match self.db.delete_device(user_id, token).await {
                    Ok(removed) => {
                        info!(%user_id, token_hint = %token_hint(token), %error_code, removed, "stale device token deleted");
                    }
                    Err(err) => {
                        warn!(%user_id, token_hint = %token_hint(token), error = %err, "cannot delete stale device token");
                    }
                }
                DeviceResult::StaleRemoved
            }
            Ok(SendOutcome::Refused { .. }) => DeviceResult::Refused,
            Err(err) if err.is_transient() => DeviceResult::Failed(err.to_string()),
            Err(err) => {
                error!(user_id = %notice.user_id, error = %err, "push cannot be sent: check the fcm configuration");
                DeviceResult::Refused
            }
        }
    }
}
