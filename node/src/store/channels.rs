//! Channels, members, messages, the event log, reactions, read cursors and attachments.

use std::collections::HashMap;

use actors::model::{now_millis, ChannelSeq, MessageView, ReactionView};
use actors::ports::{ChannelKind, Member, StoreError, StoreResult, UserDirectory};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::{classify, json_col, opt_uuid_col, uuid_col, Db};

pub(super) const MESSAGE_COLUMNS: &str = "id, channel_id, seq, sender_id, client_msg_id, parent_id, body, mentions, \
                               attachment_ids, created_at, edited_at, deleted_at";

#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub kind: &'static str,
    pub name: String,
    pub created_by: Uuid,
    pub created_at: i64,
}

/// How many messages by others a member has not read, counted as of `head_seq`: a client
/// adds the `message_new` events after `head_seq` it receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unread {
    pub count: i64,
    pub head_seq: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentRow {
    pub id: Uuid,
    pub channel_id: Uuid,
    pub uploader_id: Uuid,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: i64,
    #[serde(skip)]
    pub data: Vec<u8>,
}

/// Which page of history: `before` and `after` are exclusive seqs; neither means the newest.
#[derive(Debug, Clone, Copy)]
pub struct HistoryQuery {
    pub before: Option<ChannelSeq>,
    pub after: Option<ChannelSeq>,
    pub limit: i64,
}

pub(super) fn channel_row(row: &AnyRow) -> Result<ChannelRow, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let kind = ChannelKind::parse(&kind).ok_or_else(|| sqlx::Error::Decode(format!("bad kind {kind}").into()))?;
    Ok(ChannelRow {
        id: uuid_col(row, "id")?,
        company_id: uuid_col(row, "company_id")?,
        kind: kind.as_str(),
        name: row.try_get("name")?,
        created_by: uuid_col(row, "created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn message_row(row: &AnyRow) -> Result<MessageView, sqlx::Error> {
    let deleted_at: Option<i64> = row.try_get("deleted_at")?;
    Ok(MessageView {
        id: uuid_col(row, "id")?,
        channel_id: uuid_col(row, "channel_id")?,
        seq: row.try_get("seq")?,
        sender_id: uuid_col(row, "sender_id")?,
        client_msg_id: row.try_get("client_msg_id")?,
        parent_id: opt_uuid_col(row, "parent_id")?,
        body: row.try_get("body")?,
        mentions: json_col(row, "mentions")?,
        attachment_ids: json_col(row, "attachment_ids")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted: deleted_at.is_some(),
        reactions: Vec::new(),
    })
}

impl Db {
    pub async fn create_channel(
        &self,
        company_id: Uuid,
        kind: ChannelKind,
        name: &str,
        creator: Uuid,
        members: &[Uuid],
        dm_key: Option<&str>,
    ) -> Result<ChannelRow, StoreError> {
        let id = Uuid::now_v7();
        let now = now_millis();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "INSERT INTO channels (id, company_id, kind, name, dm_key, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(company_id.to_string())
        .bind(kind.as_str())
        .bind(name)
        .bind(dm_key)
        .bind(creator.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        for member in members {
            sqlx::query(
                "INSERT INTO channel_members (channel_id, user_id, company_id, joined_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(id.to_string())
            .bind(member.to_string())
            .bind(company_id.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(ChannelRow {
            id,
            company_id,
            kind: kind.as_str(),
            name: name.to_owned(),
            created_by: creator,
            created_at: now,
        })
    }

    pub async fn dm_channel(&self, company_id: Uuid, dm_key: &str) -> Result<Option<ChannelRow>, StoreError> {
        sqlx::query("SELECT * FROM channels WHERE company_id = $1 AND dm_key = $2")
            .bind(company_id.to_string())
            .bind(dm_key)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .map(|row| channel_row(&row).map_err(classify))
            .transpose()
    }

    /// The channel if it belongs to `company_id`.
    pub async fn channel(&self, company_id: Uuid, channel_id: Uuid) -> Result<Option<ChannelRow>, StoreError> {
        sqlx::query("SELECT * FROM channels WHERE id = $1 AND company_id = $2")
            .bind(channel_id.to_string())
            .bind(company_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .map(|row| channel_row(&row).map_err(classify))
            .transpose()
    }

    /// Channels the user is a member of, plus the company's public channels, each with
    /// whether the user is a member and how many messages by others they have not read, as
    /// of the channel's head seq (read in the same statement).
    pub async fn visible_channels(
        &self,
        company_id: Uuid,
        user_id: Uuid,
    ) -> Result<Vec<(ChannelRow, bool, Unread)>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.*, CASE WHEN m.user_id IS NULL THEN 0 ELSE 1 END AS is_member, \
             (SELECT COALESCE(MAX(e.seq), 0) FROM channel_events e WHERE e.channel_id = c.id) AS head_seq, \
             CASE WHEN m.user_id IS NULL THEN 0 ELSE ( \
                 SELECT COUNT(*) FROM messages x WHERE x.channel_id = c.id AND x.sender_id <> $1 \
                 AND x.deleted_at IS NULL \
                 AND x.seq > COALESCE((SELECT r.seq FROM read_cursors r WHERE r.channel_id = c.id AND r.user_id = $1), 0) \
             ) END AS unread \
             FROM channels c \
             LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = $1 \
             WHERE c.company_id = $2 AND (m.user_id IS NOT NULL OR c.kind = 'public') ORDER BY c.created_at",
        )
        .bind(user_id.to_string())
        .bind(company_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| {
                let is_member: i64 = row.try_get("is_member")?;
                let unread = Unread { count: row.try_get("unread")?, head_seq: row.try_get("head_seq")? };
                Ok((channel_row(row)?, is_member == 1, unread))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// Messages by others after the user's read cursor, as of the channel's head seq.
    pub async fn unread(&self, channel_id: Uuid, user_id: Uuid) -> Result<Unread, StoreError> {
        sqlx::query(
            "SELECT (SELECT COUNT(*) FROM messages x WHERE x.channel_id = $1 AND x.sender_id <> $2 \
             AND x.deleted_at IS NULL \
             AND x.seq > COALESCE((SELECT r.seq FROM read_cursors r WHERE r.channel_id = $1 AND r.user_id = $2), 0)) \
             AS unread, (SELECT COALESCE(MAX(e.seq), 0) FROM channel_events e WHERE e.channel_id = $1) AS head_seq",
        )
        .bind(channel_id.to_string())
        .bind(user_id.to_string())
        .fetch_one(&self.pool)
        .await
        .and_then(|row| Ok(Unread { count: row.try_get("unread")?, head_seq: row.try_get("head_seq")? }))
        .map_err(classify)
    }

    pub async fn is_member(&self, channel_id: Uuid, user_id: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM channel_members WHERE channel_id = $1 AND user_id = $2")
            .bind(channel_id.to_string())
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.is_some())
    }

    pub async fn members(&self, channel_id: Uuid) -> Result<Vec<Member>, StoreError> {
        let rows = sqlx::query(
            "SELECT u.id, u.username FROM channel_members m JOIN users u ON u.id = m.user_id \
             WHERE m.channel_id = $1 ORDER BY m.joined_at, u.username",
        )
        .bind(channel_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.iter()
            .map(|row| Ok(Member { user_id: uuid_col(row, "id")?, username: row.try_get("username")? }))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(classify)
    }

    /// A page of messages in seq order, with their reactions.
    pub async fn history(&self, channel_id: Uuid, query: HistoryQuery) -> Result<Vec<MessageView>, StoreError> {
        let channel = channel_id.to_string();
        let rows = match (query.after, query.before) {
            (Some(after), before) => {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND seq > $2 AND seq < $3 \
                     ORDER BY seq ASC LIMIT $4"
                );
                sqlx::query(&sql).bind(channel).bind(after).bind(before.unwrap_or(i64::MAX)).bind(query.limit)
                    .fetch_all(&self.pool).await
            }
            (None, before) => {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3"
                );
                sqlx::query(&sql).bind(channel).bind(before.unwrap_or(i64::MAX)).bind(query.limit)
                    .fetch_all(&self.pool).await
            }
        }
        .map_err(classify)?;
        let mut messages = rows.iter().map(message_row).collect::<Result<Vec<_>, _>>().map_err(classify)?;
        messages.sort_by_key(|m| m.seq);
        self.attach_reactions(channel_id, &mut messages).await?;
        Ok(messages)
    }

    /// The thread's root and its replies in seq order.
    pub async fn thread(&self, channel_id: Uuid, root_id: Uuid) -> Result<Vec<MessageView>, StoreError> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE channel_id = $1 AND (id = $2 OR parent_id = $2) ORDER BY seq"
        );
        let rows = sqlx::query(&sql)
            .bind(channel_id.to_string())
            .bind(root_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        let mut messages = rows.iter().map(message_row).collect::<Result<Vec<_>, _>>().map_err(classify)?;
        self.attach_reactions(channel_id, &mut messages).await?;
        Ok(messages)
    }

    async fn attach_reactions(&self, channel_id: Uuid, messages: &mut [MessageView]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (messages.first(), messages.last()) else {
            return Ok(());
        };
        let rows = sqlx::query(
            "SELECT r.message_id, r.emoji, r.user_id FROM reactions r JOIN messages m ON m.id = r.message_id \
             WHERE m.channel_id = $1 AND m.seq >= $2 AND m.seq <= $3 ORDER BY r.created_at, r.user_id",
        )
        .bind(channel_id.to_string())
        .bind(first.seq)
        .bind(last.seq)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut by_message: HashMap<Uuid, Vec<ReactionView>> = HashMap::new();
        for row in &rows {
            let message_id = uuid_col(row, "message_id").map_err(classify)?;
            let emoji: String = row.try_get("emoji").map_err(classify)?;
            let user_id = uuid_col(row, "user_id").map_err(classify)?;
            let reactions = by_message.entry(message_id).or_default();
            match reactions.iter_mut().find(|r| r.emoji == emoji) {
                Some(reaction) => reaction.user_ids.push(user_id),
                None => reactions.push(ReactionView { emoji, user_ids: vec![user_id] }),
            }
        }
        for message in messages {
            message.reactions = by_message.remove(&message.id).unwrap_or_default();
        }
        Ok(())
    }

    pub async fn insert_attachment(&self, company_id: Uuid, row: &AttachmentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO attachments (id, company_id, channel_id, uploader_id, filename, content_type, size, data, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(row.id.to_string())
        .bind(company_id.to_string())
        .bind(row.channel_id.to_string())
        .bind(row.uploader_id.to_string())
        .bind(&row.filename)
        .bind(&row.content_type)
        .bind(row.size)
        .bind(row.data.clone())
        .bind(row.created_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    /// The attachment if it belongs to `company_id`.
    pub async fn attachment(&self, company_id: Uuid, id: Uuid) -> Result<Option<AttachmentRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM attachments WHERE id = $1 AND company_id = $2")
            .bind(id.to_string())
            .bind(company_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| {
            Ok(AttachmentRow {
                id: uuid_col(&row, "id")?,
                channel_id: uuid_col(&row, "channel_id")?,
                uploader_id: uuid_col(&row, "uploader_id")?,
                filename: row.try_get("filename")?,
                content_type: row.try_get("content_type")?,
                size: row.try_get("size")?,
                created_at: row.try_get("created_at")?,
                data: row.try_get("data")?,
            })
        })
        .transpose()
        .map_err(classify)
    }
}

pub(super) fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

#[async_trait]
impl UserDirectory for Db {
    async fn company_of(&self, user_id: Uuid) -> StoreResult<Option<Uuid>> {
        let row = sqlx::query("SELECT company_id FROM users WHERE id = $1")
            .bind(user_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| uuid_col(&row, "company_id")).transpose().map_err(classify)
    }
}
