//! Shared ephemeral state in Redis, readable from every node and outliving actor moves:
//! presence records (`presence:<user_id>` → JSON, 30 days) and meeting rooms' rosters
//! (`room:<meeting_id>` → the room's JSON record, 1 day after its last change).

use actors::model::PresenceStatus;
use actors::ports::{PresenceRecord, PresenceStore, RoomStore, StoreError, StoreResult};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const TTL_SECS: u64 = 30 * 24 * 3600;
/// A room nobody touched for a day is over (its meeting may never have been ended).
const ROOM_TTL_SECS: u64 = 24 * 3600;

#[derive(Serialize, Deserialize)]
struct Stored {
    status: PresenceStatus,
    last_seen: Option<i64>,
}

#[derive(Clone)]
pub struct RedisPresence {
    conn: ConnectionManager,
}

impl RedisPresence {
    pub async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let conn = ConnectionManager::new(client).await?;
        Ok(Self { conn })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(unavailable)
    }
}

impl RedisPresence {
    /// Counts one hit on `key` in a fixed window of `window_secs`; returns the count so far
    /// and the seconds left in the window.
    pub async fn window_hit(&self, key: &str, window_secs: u64) -> Result<(u64, u64), StoreError> {
        let mut conn = self.conn.clone();
        let (count, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(key)
            .cmd("EXPIRE")
            .arg(key)
            .arg(window_secs)
            .arg("NX")
            .ignore()
            .cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok((count, u64::try_from(ttl).unwrap_or(window_secs)))
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn key(user_id: Uuid) -> String {
    format!("presence:{user_id}")
}

#[async_trait]
impl PresenceStore for RedisPresence {
    async fn load(&self, user_id: Uuid) -> StoreResult<Option<PresenceRecord>> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(key(user_id)).await.map_err(unavailable)?;
        Ok(text
            .and_then(|text| serde_json::from_str::<Stored>(&text).ok())
            .map(|stored| PresenceRecord { status: stored.status, last_seen: stored.last_seen }))
    }

    async fn save(&self, user_id: Uuid, record: PresenceRecord) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        let text = serde_json::to_string(&Stored { status: record.status, last_seen: record.last_seen })
            .map_err(|err| StoreError::Unavailable(err.to_string()))?;
        conn.set_ex::<_, _, ()>(key(user_id), text, TTL_SECS).await.map_err(unavailable)
    }
}

fn room_key(meeting_id: Uuid) -> String {
    format!("room:{meeting_id}")
}

#[async_trait]
impl RoomStore for RedisPresence {
    async fn load_room(&self, meeting_id: Uuid) -> StoreResult<Option<String>> {
        let mut conn = self.conn.clone();
        conn.get(room_key(meeting_id)).await.map_err(unavailable)
    }

    async fn save_room(&self, meeting_id: Uuid, record: &str) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        conn.set_ex::<_, _, ()>(room_key(meeting_id), record, ROOM_TTL_SECS).await.map_err(unavailable)
    }

    async fn delete_room(&self, meeting_id: Uuid) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        conn.del::<_, ()>(room_key(meeting_id)).await.map_err(unavailable)
    }
}
