//! The channel event log and the writes of channel actors: loading under a fence, appending
//! messages and changes with their event in one transaction, replaying the log.
//!
//! **Invariant:** every write checks the channel's fence in its own transaction, so a writer
//! whose epoch is older than the newest load is refused ([`StoreError::Fenced`]); the log
//! stores versioned records without message text, rendered on replay from the messages as
//! they are now (a deleted message never replays its text).

use std::collections::HashMap;

use actors::event_log::EventRecord;
use actors::model::now_millis;
use actors::model::{ChannelEvent, ChannelSeq, MessageView, ReadCursor};
use actors::ports::{
    AppendOutcome, ChannelKind, ChannelSnapshot, ChannelStore, Fence, Member, Mutation, NewMessage, ReplayedEvent,
    StoreError, StoreResult,
};
use async_trait::async_trait;
use sqlx::Row;
use uuid::Uuid;

use super::channels::{channel_row, json_text, message_row, MESSAGE_COLUMNS};
use super::{classify, uuid_col, Db};

impl Db {
    /// Checks, inside a write's transaction, that no newer owner raised the channel's fence;
    /// holds the channel row until the transaction ends, so a concurrent load waits for it.
    pub(super) async fn check_fence(
        tx: &mut sqlx::AnyConnection,
        channel_id: Uuid,
        fence: Fence,
    ) -> Result<(), StoreError> {
        let held = sqlx::query("UPDATE channels SET fence = fence WHERE id = $1 AND fence <= $2")
            .bind(channel_id.to_string())
            .bind(fence as i64)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        if held.rows_affected() == 0 {
            return Err(StoreError::Fenced);
        }
        Ok(())
    }

    pub(super) async fn insert_event(
        tx: &mut sqlx::AnyConnection,
        channel_id: Uuid,
        seq: ChannelSeq,
        event: &ChannelEvent,
    ) -> Result<(), sqlx::Error> {
        // The log keeps a versioned record without message text (see actors::event_log).
        let payload = EventRecord::of(event).encode();
        sqlx::query("INSERT INTO channel_events (channel_id, seq, payload, created_at) VALUES ($1, $2, $3, $4)")
            .bind(channel_id.to_string())
            .bind(seq)
            .bind(payload)
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// The messages of this channel among `ids`, as they are now.
    async fn messages_by_id(&self, channel_id: Uuid, ids: &[Uuid]) -> Result<HashMap<Uuid, MessageView>, StoreError> {
        let mut messages = HashMap::with_capacity(ids.len());
        // The Any driver binds no arrays: a placeholder list per chunk.
        for chunk in ids.chunks(100) {
            let placeholders: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND id IN ({})",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql).bind(channel_id.to_string());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await.map_err(classify)? {
                let message = message_row(&row).map_err(classify)?;
                messages.insert(message.id, message);
            }
        }
        Ok(messages)
    }
}

#[async_trait]
impl ChannelStore for Db {
    async fn load_channel(&self, channel_id: Uuid, fence: Fence) -> StoreResult<Option<ChannelSnapshot>> {
        let raised = sqlx::query("UPDATE channels SET fence = $1 WHERE id = $2 AND fence <= $1")
            .bind(fence as i64)
            .bind(channel_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = sqlx::query("SELECT * FROM channels WHERE id = $1")
            .bind(channel_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
        else {
            return Ok(None);
        };
        if raised.rows_affected() == 0 {
            let stored: i64 = row.try_get("fence").map_err(classify)?;
            tracing::warn!(%channel_id, stored, fence, "channel fenced by a newer owner (if the cluster was re-created over \
                           this database, its fences must be reset: UPDATE channels SET fence = 0)");
            return Err(StoreError::Fenced);
        }
        let channel = channel_row(&row).map_err(classify)?;
        let head: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS head FROM channel_events WHERE channel_id = $1")
            .bind(channel_id.to_string())
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get("head"))
            .map_err(classify)?;
        let members = self.members(channel_id).await?;
        let cursor_rows = sqlx::query("SELECT user_id, seq FROM read_cursors WHERE channel_id = $1")
            .bind(channel_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let read_cursors = cursor_rows
            .iter()
            .map(|row| Ok(ReadCursor { user_id: uuid_col(row, "user_id")?, seq: row.try_get("seq")? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)?;
        Ok(Some(ChannelSnapshot {
            channel_id,
            company_id: channel.company_id,
            kind: ChannelKind::parse(channel.kind).unwrap_or(ChannelKind::Private),
            head_seq: head,
            members,
            read_cursors,
        }))
    }

    async fn append_messages(
        &self,
        fence: Fence,
        channel_id: Uuid,
        head: ChannelSeq,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<AppendOutcome>> {
        // One transaction for every channel whose batch is waiting (see `committer`).
        self.committer.append(fence, channel_id, head, batch.to_vec()).await
    }

    async fn apply(
        &self,
        fence: Fence,
        channel_id: Uuid,
        seq: ChannelSeq,
        mutation: &Mutation,
        event: &ChannelEvent,
    ) -> StoreResult<bool> {
        let channel = channel_id.to_string();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        Self::check_fence(&mut tx, channel_id, fence).await?;
        let result = match mutation {
            Mutation::EditMessage { message_id, body, mentions, at } => {
                sqlx::query(
                    "UPDATE messages SET body = $1, mentions = $2, edited_at = $3 \
                 WHERE id = $4 AND channel_id = $5 AND deleted_at IS NULL",
                )
                .bind(body)
                .bind(json_text(mentions))
                .bind(*at)
                .bind(message_id.to_string())
                .bind(channel)
                .execute(&mut *tx)
                .await
            }
            Mutation::DeleteMessage { message_id, at } => {
                sqlx::query(
                    "UPDATE messages SET body = '', mentions = '[]', attachment_ids = '[]', deleted_at = $1 \
                 WHERE id = $2 AND channel_id = $3 AND deleted_at IS NULL",
                )
                .bind(*at)
                .bind(message_id.to_string())
                .bind(channel)
                .execute(&mut *tx)
                .await
            }
            Mutation::AddReaction { message_id, user_id, emoji } => {
                sqlx::query(
                    "INSERT INTO reactions (message_id, user_id, emoji, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (message_id, user_id, emoji) DO NOTHING",
                )
                .bind(message_id.to_string())
                .bind(user_id.to_string())
                .bind(emoji)
                .bind(now_millis())
                .execute(&mut *tx)
                .await
            }
            Mutation::RemoveReaction { message_id, user_id, emoji } => {
                sqlx::query("DELETE FROM reactions WHERE message_id = $1 AND user_id = $2 AND emoji = $3")
                    .bind(message_id.to_string())
                    .bind(user_id.to_string())
                    .bind(emoji)
                    .execute(&mut *tx)
                    .await
            }
            Mutation::AddMember { user_id } => {
                sqlx::query(
                    "INSERT INTO channel_members (channel_id, user_id, company_id, joined_at) \
                 SELECT $1, $2, company_id, $3 FROM channels WHERE id = $1 \
                 ON CONFLICT (channel_id, user_id) DO NOTHING",
                )
                .bind(channel)
                .bind(user_id.to_string())
                .bind(now_millis())
                .execute(&mut *tx)
                .await
            }
            Mutation::RemoveMember { user_id } => {
                sqlx::query("DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2")
                    .bind(channel)
                    .bind(user_id.to_string())
                    .execute(&mut *tx)
                    .await
            }
        }
        .map_err(classify)?;
        if result.rows_affected() == 0 {
            tx.rollback().await.map_err(classify)?;
            return Ok(false);
        }
        Self::insert_event(&mut tx, channel_id, seq, event).await.map_err(classify)?;
        tx.commit().await.map_err(|err| StoreError::Unknown(err.to_string()))?;
        Ok(true)
    }

    async fn message(&self, channel_id: Uuid, message_id: Uuid) -> StoreResult<Option<MessageView>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND channel_id = $2");
        let row = sqlx::query(&sql)
            .bind(message_id.to_string())
            .bind(channel_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| message_row(&row)).transpose().map_err(classify)
    }

    async fn set_read_cursor(&self, channel_id: Uuid, user_id: Uuid, seq: ChannelSeq) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO read_cursors (channel_id, user_id, seq, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (channel_id, user_id) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at \
             WHERE read_cursors.seq < excluded.seq",
        )
        .bind(channel_id.to_string())
        .bind(user_id.to_string())
        .bind(seq)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn events_after(&self, channel_id: Uuid, after: ChannelSeq, limit: u32) -> StoreResult<Vec<ReplayedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, payload FROM channel_events WHERE channel_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
        )
        .bind(channel_id.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq: ChannelSeq = row.try_get("seq").map_err(classify)?;
            let payload: String = row.try_get("payload").map_err(classify)?;
            let record =
                EventRecord::decode(&payload).map_err(|err| StoreError::Unknown(format!("seq {seq}: {err}")))?;
            records.push((seq, record));
        }
        let ids: Vec<Uuid> = records.iter().filter_map(|(_, record)| record.message_id()).collect();
        let messages = self.messages_by_id(channel_id, &ids).await?;
        Ok(records.into_iter().map(|(seq, record)| ReplayedEvent { seq, event: record.render(&messages) }).collect())
    }

    async fn member_candidate(&self, company_id: Uuid, user_id: Uuid) -> StoreResult<Option<Member>> {
        let row = sqlx::query("SELECT id, username FROM users WHERE id = $1 AND company_id = $2")
            .bind(user_id.to_string())
            .bind(company_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| Ok(Member { user_id: uuid_col(&row, "id")?, username: row.try_get("username")? }))
            .transpose()
            .map_err(classify)
    }

    async fn attachments_belong(&self, channel_id: Uuid, attachment_ids: &[Uuid]) -> StoreResult<bool> {
        for id in attachment_ids {
            let row = sqlx::query("SELECT 1 AS one FROM attachments WHERE id = $1 AND channel_id = $2")
                .bind(id.to_string())
                .bind(channel_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            if row.is_none() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
