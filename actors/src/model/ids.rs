//! Identifiers and clocks.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A node's id in the cluster (its raft id; kept in its data folder across restarts).
pub type NodeId = u64;

/// One run of a node process: drawn afresh at every start, so a restarted node is told apart
/// from the one that died (Akka's uid, Erlang's creation).
pub type Incarnation = u64;

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// The per-channel sequence number: 1 for the first durable event of a channel, then +1 per event.
pub type ChannelSeq = i64;

pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or_default()
}

/// Who asks: every request names the user and the company the user's token was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: Uuid,
    pub company_id: Uuid,
}

/// Where a session lives: its node, that node's incarnation, and the session's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionAddr {
    pub node: NodeId,
    pub incarnation: Incarnation,
    pub session_id: Uuid,
    pub user_id: Uuid,
}

/// The key an actor is placed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorKey {
    Channel(Uuid),
    User(Uuid),
    Meeting(Uuid),
}

impl ActorKey {
    /// The text hashed for placement: `channel:<uuid>`, `user:<uuid>`, `meeting:<uuid>`.
    pub fn placement_key(&self) -> String {
        match self {
            ActorKey::Channel(id) => format!("channel:{id}"),
            ActorKey::User(id) => format!("user:{id}"),
            ActorKey::Meeting(id) => format!("meeting:{id}"),
        }
    }
}
