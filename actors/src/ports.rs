//! The ports through which actors reach the outside world. `node/` implements them over
//! sqlx and Redis; [`crate::memory`] implements them in memory for tests and the embedded default.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::model::{ChannelEvent, ChannelSeq, MessageView, PresenceStatus, ReadCursor, UnixMillis};

/// The ownership token of a channel's writer: the membership epoch under which its actor
/// loaded the channel. Loading raises the channel's stored fence to it; a write carrying a
/// lower token than the stored fence is refused ([`StoreError::Fenced`]), so an owner that
/// lost the channel to a newer one can no longer append (Kleppmann's fencing tokens).
pub type Fence = u64;

/// A failure of a port. `Unavailable` means the write certainly did not happen (connection
/// refused, pool timed out before sending); `Unknown` means it may have been applied, so the
/// owner of cached state must reload before trusting its cache again.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store outcome unknown: {0}")]
    Unknown(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A newer owner loaded the channel: this writer must stop (nothing was applied).
    #[error("fenced: a newer owner holds the channel")]
    Fenced,
    /// The store refused the data itself (a reference to a row that is gone, text it cannot
    /// keep): nothing was applied and retrying the same request cannot succeed.
    #[error("rejected: {0}")]
    Rejected(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    Public,
    Private,
    Direct,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Public => "public",
            ChannelKind::Private => "private",
            ChannelKind::Direct => "dm",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(ChannelKind::Public),
            "private" => Some(ChannelKind::Private),
            "dm" => Some(ChannelKind::Direct),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: Uuid,
    pub username: String,
}

/// What a channel actor loads when it starts.
#[derive(Debug, Clone)]
pub struct ChannelSnapshot {
    pub channel_id: Uuid,
    pub company_id: Uuid,
    pub kind: ChannelKind,
    pub head_seq: ChannelSeq,
    pub members: Vec<Member>,
    pub read_cursors: Vec<ReadCursor>,
}

/// A message to store together with its `message_new` event.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message: MessageView,
    pub company_id: Uuid,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AppendOutcome {
    /// Stored at this seq.
    Stored { seq: ChannelSeq },
    /// The `(channel_id, client_msg_id)` pair was already stored: here is the earlier message
    /// (no seq was used).
    Duplicate(Box<MessageView>),
}

/// A change to durable channel state, stored atomically with the event that announces it.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    EditMessage { message_id: Uuid, body: String, mentions: Vec<Uuid>, at: UnixMillis },
    DeleteMessage { message_id: Uuid, at: UnixMillis },
    AddReaction { message_id: Uuid, user_id: Uuid, emoji: String },
    RemoveReaction { message_id: Uuid, user_id: Uuid, emoji: String },
    AddMember { user_id: Uuid },
    RemoveMember { user_id: Uuid },
}

/// A stored event as replay returns it: rendered from the event log and the messages as they
/// are now (see [`crate::event_log`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent {
    pub seq: ChannelSeq,
    pub event: ChannelEvent,
}

/// Durable channel state. Every method that takes a `seq` writes the event row in the same
/// transaction as the change, so the event log and the tables never disagree; every write
/// carries the writer's [`Fence`] and is refused once a newer owner loaded the channel.
#[async_trait]
pub trait ChannelStore: Send + Sync + 'static {
    /// Loads the channel for an owner holding `fence`, raising the stored fence to it. `None`
    /// when the channel does not exist; [`StoreError::Fenced`] when a newer owner holds it.
    async fn load_channel(&self, channel_id: Uuid, fence: Fence) -> StoreResult<Option<ChannelSnapshot>>;
    /// Appends `batch` in order, each at the next free seq after `head` (a duplicate takes
    /// none), with its `message_new` event, in one transaction: all or nothing.
    async fn append_messages(
        &self,
        fence: Fence,
        channel_id: Uuid,
        head: ChannelSeq,
        batch: &[NewMessage],
    ) -> StoreResult<Vec<AppendOutcome>>;
    /// Applies `mutation` and records `event` at `seq`. `Ok(false)` when the mutation changed
    /// nothing (reaction already there, member already gone); then no event is recorded.
    async fn apply(
        &self,
        fence: Fence,
        channel_id: Uuid,
        seq: ChannelSeq,
        mutation: &Mutation,
        event: &ChannelEvent,
    ) -> StoreResult<bool>;
    async fn message(&self, channel_id: Uuid, message_id: Uuid) -> StoreResult<Option<MessageView>>;
    async fn set_read_cursor(&self, channel_id: Uuid, user_id: Uuid, seq: ChannelSeq) -> StoreResult<()>;
    /// Events with `seq > after`, oldest first, at most `limit`, rendered for replay.
    async fn events_after(&self, channel_id: Uuid, after: ChannelSeq, limit: u32) -> StoreResult<Vec<ReplayedEvent>>;
    /// The user's id and username if the user exists in `company_id`.
    async fn member_candidate(&self, company_id: Uuid, user_id: Uuid) -> StoreResult<Option<Member>>;
    /// Whether all `attachment_ids` were uploaded to `channel_id`.
    async fn attachments_belong(&self, channel_id: Uuid, attachment_ids: &[Uuid]) -> StoreResult<bool>;
}

/// A user's last known presence, kept where it outlives the user actor (Redis in a cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRecord {
    pub status: PresenceStatus,
    pub last_seen: Option<UnixMillis>,
}

#[async_trait]
pub trait PresenceStore: Send + Sync + 'static {
    async fn load(&self, user_id: Uuid) -> StoreResult<Option<PresenceRecord>>;
    async fn save(&self, user_id: Uuid, record: PresenceRecord) -> StoreResult<()>;
}

#[async_trait]
pub trait UserDirectory: Send + Sync + 'static {
    /// The company of the user, `None` if there is no such user.
    async fn company_of(&self, user_id: Uuid) -> StoreResult<Option<Uuid>>;
}

/// A push notification for all devices of one user (FCM in production).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PushNotice {
    pub user_id: Uuid,
    pub title: String,
    pub body: String,
    /// String to string only (FCM's `data`): kind, ids, `deep_link`, `link`.
    pub data: std::collections::BTreeMap<String, String>,
}

/// A durable push queue: once `enqueue` returns `Ok`, the notice is delivered even if this
/// node dies.
#[async_trait]
pub trait PushQueue: Send + Sync + 'static {
    async fn enqueue(&self, notice: PushNotice) -> StoreResult<()>;
}

/// No push configured: notices are logged and dropped.
pub struct NoPush;

#[async_trait]
impl PushQueue for NoPush {
    async fn enqueue(&self, notice: PushNotice) -> StoreResult<()> {
        tracing::debug!(user_id = %notice.user_id, title = %notice.title, "push not configured, notice dropped");
        Ok(())
    }
}

/// What a meeting room loads when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingInfo {
    pub meeting_id: Uuid,
    pub company_id: Uuid,
    pub host_id: Uuid,
    pub invitees: Vec<Uuid>,
    /// Uninvited users wait for the host to admit them.
    pub lobby: bool,
    pub ended: bool,
}

#[async_trait]
pub trait MeetingStore: Send + Sync + 'static {
    async fn load_meeting(&self, meeting_id: Uuid) -> StoreResult<Option<MeetingInfo>>;
    async fn mark_ended(&self, meeting_id: Uuid) -> StoreResult<()>;
}

/// Where a meeting room keeps its roster so that it outlives its node: Redis with
/// `REDIS_URL`, the database otherwise. The text is the room's own versioned JSON record.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    async fn load_room(&self, meeting_id: Uuid) -> StoreResult<Option<String>>;
    async fn save_room(&self, meeting_id: Uuid, record: &str) -> StoreResult<()>;
    async fn delete_room(&self, meeting_id: Uuid) -> StoreResult<()>;
}

/// STUN/TURN servers handed to a participant on join (RTCIceServer shape).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// Seconds the credential stays valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

pub trait IceServers: Send + Sync + 'static {
    fn for_user(&self, user_id: Uuid) -> Vec<IceServer>;
}

/// No STUN/TURN configured.
pub struct NoIce;

impl IceServers for NoIce {
    fn for_user(&self, _user_id: Uuid) -> Vec<IceServer> {
        Vec::new()
    }
}

/// What the actors need from the outside world, shared by all of them.
#[derive(Clone)]
pub struct Ports {
    pub channels: Arc<dyn ChannelStore>,
    pub presence: Arc<dyn PresenceStore>,
    pub users: Arc<dyn UserDirectory>,
    pub push: Arc<dyn PushQueue>,
    pub meetings: Arc<dyn MeetingStore>,
    pub rooms: Arc<dyn RoomStore>,
    pub ice: Arc<dyn IceServers>,
}
