//! Meetings: create (with invitees, pushed to phones), list, get, end, roster, ICE servers.
//! The live room is the meeting's actor; joining happens over the WebSocket.

use std::time::Duration;

use actors::model::ErrorCode;
use actors::ports::PushNotice;
use actors::routing::{MeetingAnswer, MeetingRequest};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::check_text;
use super::types::{Ended, Ice, MeetingLinks, Meetings, OneMeeting, Roster};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult};
use crate::store::{MeetingRow, NewMeeting};

const MAX_INVITEES: usize = 100;

#[derive(Deserialize)]
pub struct NewMeetingBody {
    pub title: String,
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    #[serde(default)]
    pub invitees: Vec<Uuid>,
    #[serde(default)]
    pub channel_id: Option<Uuid>,
    #[serde(default)]
    pub lobby: bool,
}

fn links(state: &AppState, meeting_id: Uuid) -> MeetingLinks {
    let base = state.config.public_base_url.trim_end_matches('/');
    MeetingLinks { deep_link: format!("lark://meeting/{meeting_id}"), web: format!("{base}/meetings/{meeting_id}") }
}

fn one_meeting(state: &AppState, meeting: MeetingRow) -> OneMeeting {
    let links = links(state, meeting.id);
    OneMeeting { meeting, links }
}

/// `POST /v1/meetings`: creates a meeting and invites people: a `meeting_invite` frame on
/// their live sessions, or a push to their phones with a deep link when none is live.
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(body): ApiJson<NewMeetingBody>,
) -> ApiResult<(StatusCode, Json<OneMeeting>)> {
    check_text("title", &body.title, 200)?;
    let caller = auth.caller;
    let mut invitees = body.invitees.clone();
    invitees.sort();
    invitees.dedup();
    invitees.retain(|id| *id != caller.user_id);
    if invitees.len() > MAX_INVITEES {
        return Err(ApiError::invalid(format!("at most {MAX_INVITEES} invitees")));
    }
    for invitee in &invitees {
        state.db.user(caller.company_id, *invitee).await?.ok_or_else(|| ApiError::not_found("user"))?;
    }
    if let Some(channel_id) = body.channel_id {
        state.db.channel(caller.company_id, channel_id).await?.ok_or_else(|| ApiError::not_found("channel"))?;
        if !state.db.is_member(channel_id, caller.user_id).await? {
            return Err(ApiError::not_found("channel"));
        }
    }
    let new = NewMeeting {
        title: body.title.trim(),
        host_id: caller.user_id,
        channel_id: body.channel_id,
        scheduled_at: body.scheduled_at,
        lobby: body.lobby,
        invitees: &invitees,
    };
    let meeting = state.db.create_meeting(caller.company_id, new).await?;
    let inviter = state.db.user(caller.company_id, caller.user_id).await?.map(|u| u.display_name).unwrap_or_default();
    let links = links(&state, meeting.id);
    for invitee in &invitees {
        let frame = json!({ "type": "meeting_invite", "meeting": meeting, "inviter": caller.user_id, "links": links });
        let push = PushNotice {
            user_id: *invitee,
            title: format!("{inviter} invited you to a meeting"),
            body: meeting.title.clone(),
            data: [
                ("kind", "meeting_invite".to_owned()),
                ("meeting_id", meeting.id.to_string()),
                ("title", meeting.title.clone()),
                ("inviter", caller.user_id.to_string()),
                ("deep_link", links.deep_link.clone()),
                ("link", links.web.clone()),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect(),
        };
        state.directory.notify_user_later(*invitee, frame.to_string().into(), Some(push));
    }
    Ok((StatusCode::CREATED, Json(one_meeting(&state, meeting))))
}

pub async fn list(State(state): State<AppState>, auth: AuthUser) -> ApiResult<Json<Meetings>> {
    let meetings = state.db.meetings_of(auth.caller.company_id, auth.caller.user_id).await?;
    Ok(Json(Meetings { meetings: meetings.into_iter().map(|meeting| one_meeting(&state, meeting)).collect() }))
}

async fn visible(state: &AppState, auth: &AuthUser, meeting_id: Uuid) -> ApiResult<MeetingRow> {
    state.db.meeting(Some(auth.caller.company_id), meeting_id).await?.ok_or_else(|| ApiError::not_found("meeting"))
}

pub async fn get_one(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(meeting_id): ApiPath<Uuid>,
) -> ApiResult<Json<OneMeeting>> {
    let meeting = visible(&state, &auth, meeting_id).await?;
    Ok(Json(one_meeting(&state, meeting)))
}

/// `POST /v1/meetings/{id}/end`: the host ends the meeting for everyone.
pub async fn end(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(meeting_id): ApiPath<Uuid>,
) -> ApiResult<Json<Ended>> {
    let meeting = visible(&state, &auth, meeting_id).await?;
    if meeting.host_id != auth.caller.user_id {
        return Err(ApiError::forbidden("only the host can end the meeting"));
    }
    if meeting.status == "ended" {
        return Err(ApiError::new(ErrorCode::Conflict, "the meeting has already ended"));
    }
    let request = MeetingRequest::End { caller: auth.caller, session_id: None };
    state.directory.ask_meeting(meeting_id, request, Duration::from_secs(10)).await?;
    Ok(Json(Ended { ended: true }))
}

/// `GET /v1/meetings/{id}/participants`: the roster, answered by the room itself.
pub async fn participants(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(meeting_id): ApiPath<Uuid>,
) -> ApiResult<Json<Roster>> {
    visible(&state, &auth, meeting_id).await?;
    let request = MeetingRequest::Roster { caller: auth.caller };
    match state.directory.ask_meeting(meeting_id, request, Duration::from_secs(10)).await? {
        MeetingAnswer::Roster { incarnation, version, participants } => {
            Ok(Json(Roster { incarnation, version, participants }))
        }
        other => Err(ApiError::internal(format!("unexpected meeting answer {other:?}"))),
    }
}

/// `GET /v1/ice`: STUN/TURN servers with fresh TURN credentials for the caller.
pub async fn ice(State(state): State<AppState>, auth: AuthUser) -> Json<Ice> {
    Json(Ice { ice_servers: state.directory.ports().ice.for_user(auth.caller.user_id) })
}
