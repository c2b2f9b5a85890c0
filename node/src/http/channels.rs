//! Channels, direct messages, members, messages, threads, reactions and read receipts.
//! Every change goes through the channel's actor, so HTTP and WebSocket clients see one order.

use std::time::Duration;

use actors::model::MessageDraft;
use actors::model::{ChannelSeq, MessageView, RequestError};
use actors::ports::{ChannelKind, StoreError};
use actors::routing::{ChannelAnswer, ChannelRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::check_text;
use super::types::{
    Added, AtSeq, Changed, Channels, Joined, Left, MemberEntry, Members, MessagePage, OneChannel, OneMessage, ReadAt,
    Thread, VisibleChannel,
};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::store::{ChannelRow, HistoryQuery};

const ACTOR_TIMEOUT: Duration = Duration::from_secs(10);

async fn ask(state: &AppState, channel_id: Uuid, request: ChannelRequest) -> Result<ChannelAnswer, RequestError> {
    state.directory.ask_channel(channel_id, request, ACTOR_TIMEOUT).await
}

/// The seq an answer carries: `None` when the request changed nothing.
fn answered_seq(answer: ChannelAnswer) -> Result<Option<ChannelSeq>, ApiError> {
    match answer {
        ChannelAnswer::Seq(seq) => Ok(Some(seq)),
        ChannelAnswer::MaybeSeq(seq) => Ok(seq),
        other => Err(ApiError::internal(format!("unexpected channel answer {other:?}"))),
    }
}

async fn ask_seq(state: &AppState, channel_id: Uuid, request: ChannelRequest) -> ApiResult<Option<ChannelSeq>> {
    answered_seq(ask(state, channel_id, request).await?)
}

/// The channel if the caller may see it: a member, or any user of the company for a public one.
async fn visible_channel(state: &AppState, auth: &AuthUser, channel_id: Uuid) -> ApiResult<ChannelRow> {
    let channel =
        state.db.channel(auth.caller.company_id, channel_id).await?.ok_or_else(|| ApiError::not_found("channel"))?;
    if channel.kind == ChannelKind::Public.as_str() || state.db.is_member(channel_id, auth.caller.user_id).await? {
        Ok(channel)
    } else {
        Err(ApiError::not_found("channel"))
    }
}

/// The channel if the caller is a member; other tenants' and hidden channels are `not_found`.
async fn member_channel(state: &AppState, auth: &AuthUser, channel_id: Uuid) -> ApiResult<ChannelRow> {
    let channel = visible_channel(state, auth, channel_id).await?;
    if state.db.is_member(channel_id, auth.caller.user_id).await? {
        Ok(channel)
    } else {
        Err(ApiError::new(actors::model::ErrorCode::NotMember, "not a member of this channel"))
    }
}

#[derive(Deserialize)]
pub struct NewChannelBody {
    pub name: String,
    #[serde(default)]
    pub private: bool,
}

pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<NewChannelBody>,
) -> ApiResult<(StatusCode, Json<OneChannel>)> {
    check_text("name", &body.name, 80)?;
    let kind = if body.private { ChannelKind::Private } else { ChannelKind::Public };
    let caller = auth.caller;
    let channel = state
        .db
        .create_channel(caller.company_id, kind, body.name.trim(), caller.user_id, &[caller.user_id], None)
        .await?;
    Ok((StatusCode::CREATED, Json(OneChannel { channel })))
}

/// `GET /v1/channels`: the caller's channels and the company's public ones, with unread counts.
pub async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Channels>> {
    let channels = state.db.visible_channels(auth.caller.company_id, auth.caller.user_id).await?;
    let channels = channels
        .into_iter()
        .map(|(channel, is_member, unread)| VisibleChannel {
            channel,
            is_member,
            unread: if is_member { unread.count } else { 0 },
            head_seq: unread.head_seq,
        })
        .collect();
    Ok(Json(Channels { channels }))
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<VisibleChannel>> {
    let channel = visible_channel(&state, &auth, channel_id).await?;
    let is_member = state.db.is_member(channel_id, auth.caller.user_id).await?;
    let unread = state.db.unread(channel_id, auth.caller.user_id).await?;
    let count = if is_member { unread.count } else { 0 };
    Ok(Json(VisibleChannel { channel, is_member, unread: count, head_seq: unread.head_seq }))
}

pub async fn join(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<Joined>> {
    let caller = auth.caller;
    let seq = ask_seq(&state, channel_id, ChannelRequest::Join { caller }).await?;
    Ok(Json(Joined { joined: seq.is_some(), seq }))
}

pub async fn leave(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<Left>> {
    let caller = auth.caller;
    let seq = ask_seq(&state, channel_id, ChannelRequest::Leave { caller }).await?;
    Ok(Json(Left { left: seq.is_some(), seq }))
}

pub async fn members(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
) -> ApiResult<Json<Members>> {
    visible_channel(&state, &auth, channel_id).await?;
    let members = state
        .db
        .members(channel_id)
        .await?
        .into_iter()
        .map(|member| MemberEntry { user_id: member.user_id, username: member.username })
        .collect();
    Ok(Json(Members { members }))
}

#[derive(Deserialize)]
pub struct AddMemberBody {
    pub user_id: Uuid,
}

pub async fn add_member(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<AddMemberBody>,
) -> ApiResult<Json<Added>> {
    let caller = auth.caller;
    let user_id = body.user_id;
    let seq = ask_seq(&state, channel_id, ChannelRequest::AddMember { caller, user_id }).await?;
    Ok(Json(Added { added: seq.is_some(), seq }))
}

#[derive(Deserialize)]
pub struct OpenDmBody {
    pub user_id: Uuid,
}

/// `POST /v1/dms`: the direct-message channel between the caller and another user of the
/// same company, created on first use.
pub async fn open_dm(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<OpenDmBody>,
) -> ApiResult<(StatusCode, Json<OneChannel>)> {
    let caller = auth.caller;
    if body.user_id == caller.user_id {
        return Err(ApiError::invalid("a direct message needs another user"));
    }
    state.db.user(caller.company_id, body.user_id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    let mut pair = [caller.user_id, body.user_id];
    pair.sort();
    let dm_key = format!("{}:{}", pair[0], pair[1]);
    if let Some(channel) = state.db.dm_channel(caller.company_id, &dm_key).await? {
        return Ok((StatusCode::OK, Json(OneChannel { channel })));
    }
    match state
        .db
        .create_channel(caller.company_id, ChannelKind::Direct, "dm", caller.user_id, &pair, Some(&dm_key))
        .await
    {
        Ok(channel) => {
            // The other side learns of the new conversation on every device at once.
            let frame = actors::protocol::ServerFrame::ChannelAdded { channel_id: channel.id, by: caller.user_id };
            state.directory.notify_user_later(body.user_id, frame.to_text().into(), None);
            Ok((StatusCode::CREATED, Json(OneChannel { channel })))
        }
        // Both sides opened it at once: the other request created it.
        Err(StoreError::Conflict(_)) => {
            let channel =
                state.db.dm_channel(caller.company_id, &dm_key).await?.ok_or_else(|| ApiError::not_found("channel"))?;
            Ok((StatusCode::OK, Json(OneChannel { channel })))
        }
        Err(err) => Err(err.into()),
    }
}

#[derive(Deserialize)]
pub struct SendBody {
    pub client_msg_id: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub parent_id: Option<Uuid>,
    #[serde(default)]
    pub attachment_ids: Vec<Uuid>,
}

/// `POST /v1/channels/{id}/messages`: acknowledged once stored; idempotent by `client_msg_id`.
pub async fn send(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<SendBody>,
) -> ApiResult<(StatusCode, Json<OneMessage>)> {
    let caller = auth.caller;
    let draft = MessageDraft {
        client_msg_id: body.client_msg_id,
        body: body.body,
        parent_id: body.parent_id,
        attachment_ids: body.attachment_ids,
    };
    let message: MessageView = match ask(&state, channel_id, ChannelRequest::Send { caller, draft }).await? {
        ChannelAnswer::Message(message) => *message,
        other => return Err(ApiError::internal(format!("unexpected channel answer {other:?}"))),
    };
    Ok((StatusCode::CREATED, Json(OneMessage { message })))
}

#[derive(Deserialize)]
pub struct HistoryParams {
    pub before: Option<ChannelSeq>,
    pub after: Option<ChannelSeq>,
    pub limit: Option<i64>,
}

/// `GET /v1/channels/{id}/messages?before=&after=&limit=`: a page in seq order.
pub async fn history(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> ApiResult<Json<MessagePage>> {
    member_channel(&state, &auth, channel_id).await?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 200"));
    }
    let query = HistoryQuery { before: params.before, after: params.after, limit };
    let messages = state.db.history(channel_id, query).await?;
    let has_more = messages.len() as i64 == limit;
    Ok(Json(MessagePage { messages, has_more }))
}

pub async fn thread(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((channel_id, message_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<Thread>> {
    member_channel(&state, &auth, channel_id).await?;
    let mut messages = state.db.thread(channel_id, message_id).await?.into_iter();
    let root = messages.next().filter(|root| root.id == message_id).ok_or_else(|| ApiError::not_found("message"))?;
    Ok(Json(Thread { root, replies: messages.collect() }))
}

#[derive(Deserialize)]
pub struct EditBody {
    pub body: String,
}

pub async fn edit(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((channel_id, message_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<EditBody>,
) -> ApiResult<Json<AtSeq>> {
    let caller = auth.caller;
    let seq = ask_seq(&state, channel_id, ChannelRequest::Edit { caller, message_id, body: body.body }).await?;
    Ok(Json(AtSeq { seq }))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath((channel_id, message_id)): ApiPath<(Uuid, Uuid)>,
) -> ApiResult<Json<AtSeq>> {
    let caller = auth.caller;
    let seq = ask_seq(&state, channel_id, ChannelRequest::Delete { caller, message_id }).await?;
    Ok(Json(AtSeq { seq }))
}

async fn set_reaction(
    state: &AppState,
    auth: &AuthUser,
    path: (Uuid, Uuid, String),
    add: bool,
) -> ApiResult<Json<Changed>> {
    let (channel_id, message_id, emoji) = path;
    let caller = auth.caller;
    let seq = ask_seq(state, channel_id, ChannelRequest::React { caller, message_id, emoji, add }).await?;
    Ok(Json(Changed { changed: seq.is_some(), seq }))
}

pub async fn react(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(path): ApiPath<(Uuid, Uuid, String)>,
) -> ApiResult<Json<Changed>> {
    set_reaction(&state, &auth, path, true).await
}

pub async fn unreact(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(path): ApiPath<(Uuid, Uuid, String)>,
) -> ApiResult<Json<Changed>> {
    set_reaction(&state, &auth, path, false).await
}

#[derive(Deserialize)]
pub struct ReadBody {
    pub seq: ChannelSeq,
}

pub async fn read(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(channel_id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ReadBody>,
) -> ApiResult<Json<ReadAt>> {
    let caller = auth.caller;
    let seq = ask_seq(&state, channel_id, ChannelRequest::Read { caller, seq: body.seq }).await?;
    Ok(Json(ReadAt { read_seq: seq }))
}
