//! Presence as clients see it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ids::UnixMillis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    Online,
    Away,
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceView {
    pub user_id: Uuid,
    pub status: PresenceStatus,
    pub last_seen: Option<UnixMillis>,
}
