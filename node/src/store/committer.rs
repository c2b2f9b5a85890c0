//! Group commit of message appends. Channel actors hand their batches to one committer per
//! database; while a transaction is being committed, the batches that arrive wait and go
//! together into the next one. One commit (one fsync on SQLite, one WAL flush on Postgres)
//! then serves many channels and many messages.
//!
//! Each channel's batch runs in a savepoint of its own, so a channel that fails (fenced by a
//! newer owner, a seq already taken) fails alone; a commit that fails leaves every batch in
//! it "outcome unknown", and their actors reload.

use actors::event_log::EventRecord;
use actors::model::{ChannelEvent, ChannelSeq};
use actors::ports::{AppendOutcome, Fence, NewMessage, StoreError, StoreResult};
use sqlx::{Acquire, AnyPool};
use tokio::sync::{mpsc, oneshot};
use tracing::debug;
use uuid::Uuid;

use super::channels::{json_text, message_row, MESSAGE_COLUMNS};
use super::{classify, Db};

/// Channels' batches in one transaction at most.
const MAX_BATCHES_PER_COMMIT: usize = 256;
/// Batches waiting for the committer before senders are made to wait.
const QUEUE: usize = 4096;

struct AppendJob {
    fence: Fence,
    channel_id: Uuid,
    head: ChannelSeq,
    batch: Vec<NewMessage>,
    reply: oneshot::Sender<StoreResult<Vec<AppendOutcome>>>,
}

#[derive(Clone)]
pub(crate) struct Committer {
    jobs: mpsc::Sender<AppendJob>,
}

impl Committer {
    pub(super) fn start(pool: AnyPool) -> Committer {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, rx));
        Committer { jobs }
    }

    pub(super) async fn append(
        &self,
        fence: Fence,
        channel_id: Uuid,
        head: ChannelSeq,
        batch: Vec<NewMessage>,
    ) -> StoreResult<Vec<AppendOutcome>> {
        let (reply, answer) = oneshot::channel();
        let job = AppendJob { fence, channel_id, head, batch, reply };
        if self.jobs.send(job).await.is_err() {
            return Err(StoreError::Unavailable("the committer stopped".to_owned()));
        }
        answer.await.unwrap_or_else(|_| Err(StoreError::Unknown("the committer stopped mid-commit".to_owned())))
    }
}

async fn run(pool: AnyPool, mut jobs: mpsc::Receiver<AppendJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit(&pool, group).await;
    }
    debug!("committer stopped");
}

fn answer(job: AppendJob, result: StoreResult<Vec<AppendOutcome>>) {
    if job.reply.send(result).is_err() {
        debug!(channel_id = %job.channel_id, "channel gave up on its batch");
    }
}

async fn commit(pool: &AnyPool, group: Vec<AppendJob>) {
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(err) => {
            let err = classify(err);
            for job in group {
                answer(job, Err(err.clone()));
            }
            return;
        }
    };
    let mut results = Vec::with_capacity(group.len());
    let alone = group.len() == 1;
    for job in &group {
        let result = if alone {
            append(&mut tx, job).await
        } else {
            // A savepoint per channel: one channel's failure leaves the others' batches in.
            match tx.begin().await {
                Ok(mut savepoint) => match append(&mut savepoint, job).await {
                    Ok(outcomes) => savepoint.commit().await.map(|()| outcomes).map_err(classify),
                    Err(err) => {
                        if let Err(rollback) = savepoint.rollback().await {
                            debug!(error = %rollback, "savepoint rollback failed");
                        }
                        Err(err)
                    }
                },
                Err(err) => Err(classify(err)),
            }
        };
        results.push(result);
    }
    if alone && results[0].is_err() {
        if let Err(err) = tx.rollback().await {
            debug!(error = %err, "rollback failed");
        }
        for (job, result) in group.into_iter().zip(results) {
            answer(job, result);
        }
        return;
    }
    match tx.commit().await {
        Ok(()) => {
            for (job, result) in group.into_iter().zip(results) {
                answer(job, result);
            }
        }
        Err(err) => {
            let unknown = StoreError::Unknown(err.to_string());
            for (job, result) in group.into_iter().zip(results) {
                answer(job, result.and(Err(unknown.clone())));
            }
        }
    }
}

/// A channel's batch: each message at the next free seq after `head` (a duplicate
/// `client_msg_id` takes none and answers the earlier message), with its event.
async fn append(conn: &mut sqlx::AnyConnection, job: &AppendJob) -> StoreResult<Vec<AppendOutcome>> {
    Db::check_fence(conn, job.channel_id, job.fence).await?;
    let mut next = job.head;
    let mut outcomes = Vec::with_capacity(job.batch.len());
    for new in &job.batch {
        let message = &new.message;
        let inserted = sqlx::query(
            "INSERT INTO messages (id, channel_id, company_id, seq, sender_id, client_msg_id, parent_id, body, \
             mentions, attachment_ids, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (channel_id, client_msg_id) DO NOTHING",
        )
        .bind(message.id.to_string())
        .bind(job.channel_id.to_string())
        .bind(new.company_id.to_string())
        .bind(next + 1)
        .bind(message.sender_id.to_string())
        .bind(&message.client_msg_id)
        .bind(message.parent_id.map(|id| id.to_string()))
        .bind(&message.body)
        .bind(json_text(&message.mentions))
        .bind(json_text(&message.attachment_ids))
        .bind(message.created_at)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
        if inserted.rows_affected() == 0 {
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND client_msg_id = $2");
            let row = sqlx::query(&sql)
                .bind(job.channel_id.to_string())
                .bind(&message.client_msg_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(classify)?
                .ok_or_else(|| StoreError::Unknown("duplicate client_msg_id vanished".to_owned()))?;
            outcomes.push(AppendOutcome::Duplicate(Box::new(message_row(&row).map_err(classify)?)));
            continue;
        }
        next += 1;
        let mut stored = message.clone();
        stored.seq = next;
        let event = ChannelEvent::MessageNew { message: stored };
        let payload = EventRecord::of(&event).encode();
        sqlx::query("INSERT INTO channel_events (channel_id, seq, payload, created_at) VALUES ($1, $2, $3, $4)")
            .bind(job.channel_id.to_string())
            .bind(next)
            .bind(payload)
            .bind(message.created_at)
            .execute(&mut *conn)
            .await
            .map_err(classify)?;
        outcomes.push(AppendOutcome::Stored { seq: next });
    }
    Ok(outcomes)
}
