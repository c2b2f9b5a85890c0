//! What every HTTP route answers, as types: the one source of truth of the API's responses
//! (docs/PROTOCOL.md §2 describes them; an OpenAPI document can be derived from these).

use actors::model::{ChannelSeq, MessageView, ParticipantView};
use actors::ports::IceServer;
use serde::Serialize;
use uuid::Uuid;

use crate::auth::TokenPair;
use crate::store::{AttachmentRow, ChannelRow, CompanyRow, DeviceToken, MeetingRow, UserRow};

/// `POST /v1/companies`.
#[derive(Debug, Serialize)]
pub struct CompanyCreated {
    pub company: CompanyRow,
    pub user: UserRow,
    pub tokens: TokenPair,
}

/// `POST /v1/auth/login`.
#[derive(Debug, Serialize)]
pub struct LoggedIn {
    pub user: UserRow,
    pub tokens: TokenPair,
}

/// `POST /v1/auth/refresh`.
#[derive(Debug, Serialize)]
pub struct Refreshed {
    pub tokens: TokenPair,
}

/// `GET /v1/me`.
#[derive(Debug, Serialize)]
pub struct Me {
    pub user: UserRow,
    pub company: CompanyRow,
}

/// `GET /v1/users/{id}`, `POST /v1/users`.
#[derive(Debug, Serialize)]
pub struct OneUser {
    pub user: UserRow,
}

#[derive(Debug, Serialize)]
pub struct Users {
    pub users: Vec<UserRow>,
}

#[derive(Debug, Serialize)]
pub struct Devices {
    pub devices: Vec<DeviceToken>,
}

/// `POST /v1/channels`, `POST /v1/dms`.
#[derive(Debug, Serialize)]
pub struct OneChannel {
    pub channel: ChannelRow,
}

/// A channel as the caller sees it.
#[derive(Debug, Serialize)]
pub struct VisibleChannel {
    pub channel: ChannelRow,
    pub is_member: bool,
    /// Messages by others after the caller's read cursor (0 when not a member), counted as
    /// of `head_seq`.
    pub unread: i64,
    /// The channel's newest seq when `unread` was counted: `message_new` events by others
    /// after it add to the count.
    pub head_seq: i64,
}

#[derive(Debug, Serialize)]
pub struct Channels {
    pub channels: Vec<VisibleChannel>,
}

/// `POST .../join`: `seq` of the `member_joined` event, `null` when already a member.
#[derive(Debug, Serialize)]
pub struct Joined {
    pub joined: bool,
    pub seq: Option<ChannelSeq>,
}

#[derive(Debug, Serialize)]
pub struct Left {
    pub left: bool,
    pub seq: Option<ChannelSeq>,
}

#[derive(Debug, Serialize)]
pub struct Added {
    pub added: bool,
    pub seq: Option<ChannelSeq>,
}

#[derive(Debug, Serialize)]
pub struct MemberEntry {
    pub user_id: Uuid,
    pub username: String,
}

#[derive(Debug, Serialize)]
pub struct Members {
    pub members: Vec<MemberEntry>,
}

#[derive(Debug, Serialize)]
pub struct OneMessage {
    pub message: MessageView,
}

#[derive(Debug, Serialize)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    pub has_more: bool,
}

#[derive(Debug, Serialize)]
pub struct Thread {
    pub root: MessageView,
    pub replies: Vec<MessageView>,
}

/// Edits and deletes: the seq of the event (or the head when nothing changed).
#[derive(Debug, Serialize)]
pub struct AtSeq {
    pub seq: Option<ChannelSeq>,
}

/// Reactions: whether anything changed, and the event's seq.
#[derive(Debug, Serialize)]
pub struct Changed {
    pub changed: bool,
    pub seq: Option<ChannelSeq>,
}

#[derive(Debug, Serialize)]
pub struct ReadAt {
    pub read_seq: Option<ChannelSeq>,
}

/// `POST /v1/files`, `GET /v1/files/{id}/meta`.
#[derive(Debug, Serialize)]
pub struct OneFile {
    pub file: AttachmentRow,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeetingLinks {
    pub deep_link: String,
    pub web: String,
}

#[derive(Debug, Serialize)]
pub struct OneMeeting {
    pub meeting: MeetingRow,
    pub links: MeetingLinks,
}

#[derive(Debug, Serialize)]
pub struct Meetings {
    pub meetings: Vec<OneMeeting>,
}

#[derive(Debug, Serialize)]
pub struct Ended {
    pub ended: bool,
}

/// `GET /v1/meetings/{id}/participants`.
#[derive(Debug, Serialize)]
pub struct Roster {
    pub incarnation: u64,
    pub version: u64,
    pub participants: Vec<ParticipantView>,
}

#[derive(Debug, Serialize)]
pub struct Ice {
    pub ice_servers: Vec<IceServer>,
}

/// `GET /v1/nodes`: where clients reach the cluster's nodes.
#[derive(Debug, Serialize)]
pub struct Nodes {
    pub nodes: Vec<String>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub stopping: bool,
    pub database: bool,
    pub redis: Option<bool>,
    pub degraded: Vec<&'static str>,
    pub cluster_member: Option<bool>,
    pub serving: Option<bool>,
    pub node_id: String,
}

/// `GET /cluster/owner`.
#[derive(Debug, Serialize)]
pub struct Owner {
    pub key: String,
    pub owner: Option<u64>,
}

/// `GET /cluster/status`.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    pub node_id: String,
    pub raft_node_id: u64,
    pub mode: &'static str,
    pub membership: Option<cluster::membership::MembershipStatus>,
    pub actors: actors::directory::DirectoryStats,
    pub sockets: usize,
}
