//! Meetings and their invitees.

use actors::model::now_millis;
use actors::ports::{MeetingInfo, MeetingStore, RoomStore, StoreError, StoreResult};
use async_trait::async_trait;
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

use super::{classify, opt_uuid_col, uuid_col, Db};

#[derive(Debug, Clone, Serialize)]
pub struct MeetingRow {
    pub id: Uuid,
    pub company_id: Uuid,
    pub channel_id: Option<Uuid>,
    pub title: String,
    pub host_id: Uuid,
    pub scheduled_at: Option<i64>,
    pub lobby: bool,
    pub status: String,
    pub created_at: i64,
    pub ended_at: Option<i64>,
    pub invitees: Vec<Uuid>,
}

pub struct NewMeeting<'a> {
    pub title: &'a str,
    pub host_id: Uuid,
    pub channel_id: Option<Uuid>,
    pub scheduled_at: Option<i64>,
    pub lobby: bool,
    pub invitees: &'a [Uuid],
}

fn meeting_row(row: &AnyRow, invitees: Vec<Uuid>) -> Result<MeetingRow, sqlx::Error> {
    let lobby: i64 = row.try_get("lobby")?;
    Ok(MeetingRow {
        id: uuid_col(row, "id")?,
        company_id: uuid_col(row, "company_id")?,
        channel_id: opt_uuid_col(row, "channel_id")?,
        title: row.try_get("title")?,
        host_id: uuid_col(row, "host_id")?,
        scheduled_at: row.try_get("scheduled_at")?,
        lobby: lobby != 0,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        ended_at: row.try_get("ended_at")?,
        invitees,
    })
}

impl Db {
    pub async fn create_meeting(&self, company_id: Uuid, new: NewMeeting<'_>) -> Result<MeetingRow, StoreError> {
        let id = Uuid::now_v7();
        let now = now_millis();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query(
            "INSERT INTO meetings (id, company_id, channel_id, title, host_id, scheduled_at, lobby, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'scheduled', $8)",
        )
        .bind(id.to_string())
        .bind(company_id.to_string())
        .bind(new.channel_id.map(|c| c.to_string()))
        .bind(new.title)
        .bind(new.host_id.to_string())
        .bind(new.scheduled_at)
        .bind(i64::from(new.lobby))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        for invitee in new.invitees {
            sqlx::query("INSERT INTO meeting_invitees (meeting_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id.to_string())
                .bind(invitee.to_string())
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(MeetingRow {
            id,
            company_id,
            channel_id: new.channel_id,
            title: new.title.to_owned(),
            host_id: new.host_id,
            scheduled_at: new.scheduled_at,
            lobby: new.lobby,
            status: "scheduled".to_owned(),
            created_at: now,
            ended_at: None,
            invitees: new.invitees.to_vec(),
        })
    }

    async fn invitees(&self, meeting_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query("SELECT user_id FROM meeting_invitees WHERE meeting_id = $1 ORDER BY user_id")
            .bind(meeting_id.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter().map(|row| uuid_col(row, "user_id")).collect::<Result<_, _>>().map_err(classify)
    }

    /// The meeting, if it belongs to `company_id` (any company when `None`).
    pub async fn meeting(&self, company_id: Option<Uuid>, meeting_id: Uuid) -> Result<Option<MeetingRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM meetings WHERE id = $1")
            .bind(meeting_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else { return Ok(None) };
        let invitees = self.invitees(meeting_id).await?;
        let meeting = meeting_row(&row, invitees).map_err(classify)?;
        Ok(company_id.is_none_or(|company| company == meeting.company_id).then_some(meeting))
    }

    /// Meetings the user hosts or is invited to, newest first.
    pub async fn meetings_of(&self, company_id: Uuid, user_id: Uuid) -> Result<Vec<MeetingRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT m.* FROM meetings m LEFT JOIN meeting_invitees i ON i.meeting_id = m.id \
             WHERE m.company_id = $1 AND (m.host_id = $2 OR i.user_id = $2) ORDER BY m.created_at DESC LIMIT 200",
        )
        .bind(company_id.to_string())
        .bind(user_id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        let mut meetings = Vec::with_capacity(rows.len());
        for row in &rows {
            let id = uuid_col(row, "id").map_err(classify)?;
            meetings.push(meeting_row(row, self.invitees(id).await?).map_err(classify)?);
        }
        Ok(meetings)
    }
}

#[async_trait]
impl MeetingStore for Db {
    async fn load_meeting(&self, meeting_id: Uuid) -> StoreResult<Option<MeetingInfo>> {
        Ok(self.meeting(None, meeting_id).await?.map(|meeting| MeetingInfo {
            meeting_id,
            company_id: meeting.company_id,
            host_id: meeting.host_id,
            invitees: meeting.invitees,
            lobby: meeting.lobby,
            ended: meeting.status == "ended",
        }))
    }

    async fn mark_ended(&self, meeting_id: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE meetings SET status = 'ended', ended_at = $1 WHERE id = $2 AND status <> 'ended'")
            .bind(now_millis())
            .bind(meeting_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl RoomStore for Db {
    async fn load_room(&self, meeting_id: Uuid) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT record FROM meeting_rooms WHERE meeting_id = $1")
            .bind(meeting_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.map(|row| row.try_get::<String, _>("record")).transpose().map_err(classify)
    }

    async fn save_room(&self, meeting_id: Uuid, record: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meeting_rooms (meeting_id, record, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (meeting_id) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
        )
        .bind(meeting_id.to_string())
        .bind(record)
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn delete_room(&self, meeting_id: Uuid) -> StoreResult<()> {
        sqlx::query("DELETE FROM meeting_rooms WHERE meeting_id = $1")
            .bind(meeting_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
