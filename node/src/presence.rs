//! Presence records in Redis, so last-seen survives actor moves and restarts and every node
//! reads the same value. Keys: `presence:<user_id>` → JSON, expiring after 30 days.

use actors::model::PresenceStatus;
use actors::ports::{PresenceRecord, PresenceStore, StoreError, StoreResult};
use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const TTL_SECS: u64 = 30 * 24 * 3600;

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
