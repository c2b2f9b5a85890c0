//! Meetings a session joined: joins and rejoins run off the mailbox; their answers come back
//! as [`SessionMsg::MeetingJoined`].

use ractor::ActorRef;
use tracing::warn;
use uuid::Uuid;

use super::asks::{post, unexpected, AGAIN_EVERY, ATTEMPTS};
use super::{Again, JoinOrigin, SessionMsg, SessionState};
use crate::directory::Directory;
use crate::model::{ErrorCode, NodeId, RequestError};
use crate::protocol::ServerFrame;
use crate::routing::{MeetingAnswer, MeetingRequest};

/// Joins (or rejoins) a meeting off the mailbox; the answer carries the roster and the ICE
/// servers.
pub(super) fn start_join(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    meeting_id: Uuid,
    origin: JoinOrigin,
) {
    state.meetings.joining(meeting_id);
    let directory = state.directory.clone();
    let request = MeetingRequest::Join { caller: state.caller, session: state.addr() };
    let (timeout, heartbeat_ms) = (state.config.call_timeout, state.config.heartbeat_interval.as_millis() as u64);
    let user_id = state.caller.user_id;
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = match directory.ask_meeting_at(meeting_id, request, timeout).await {
            Ok((owner, answer)) => joined_result(&directory, user_id, heartbeat_ms, answer).map(|value| (owner, value)),
            Err(err) => Err(err),
        };
        post(&myself, SessionMsg::MeetingJoined { meeting_id, origin, result });
    });
}

pub(super) fn on_meeting_joined(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    meeting_id: Uuid,
    origin: JoinOrigin,
    result: Result<(NodeId, Joined), RequestError>,
) {
    match (origin, result) {
        (JoinOrigin::Client { request_id }, Ok((owner, joined))) => {
            let held = state.meetings.joined(meeting_id, owner, joined.incarnation, joined.version);
            state.send_frame(myself, &ServerFrame::Ok { id: request_id, result: joined.frame });
            for text in held {
                state.push(myself, text);
            }
        }
        (JoinOrigin::Client { request_id }, Err(err)) => {
            state.meetings.join_failed(meeting_id);
            state.send_frame(myself, &ServerFrame::error(request_id, &err))
        }
        (JoinOrigin::Rejoin { .. }, Ok((owner, mut joined))) => {
            if !state.meetings.contains(meeting_id) {
                return; // left meanwhile
            }
            let held = state.meetings.joined(meeting_id, owner, joined.incarnation, joined.version);
            joined.frame["type"] = serde_json::Value::from("meeting_rejoined");
            state.push(myself, joined.frame.to_string().into());
            for text in held {
                state.push(myself, text);
            }
        }
        (JoinOrigin::Rejoin { attempt }, Err(err)) => {
            if !state.meetings.contains(meeting_id) {
                return;
            }
            if attempt + 1 < ATTEMPTS && err.code == ErrorCode::Unavailable {
                myself.send_after(AGAIN_EVERY, move || {
                    SessionMsg::Again(Again::Rejoin { meeting_id, attempt: attempt + 1 })
                });
            } else {
                // The meeting went on without this session (ended, or it was removed): tell
                // the client as a rejoin error and forget it, the socket itself is fine.
                warn!(session_id = %state.session_id, %meeting_id, error = %err, "meeting rejoin failed");
                state.meetings.remove(meeting_id);
                let frame = serde_json::json!({
                    "type": "meeting_rejoin_failed", "meeting_id": meeting_id, "code": err.code, "message": err.message,
                });
                state.push(myself, frame.to_string().into());
            }
        }
    }
}

/// A meeting's snapshot as the client gets it, with where it stands.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The `result` of the `meeting_join` answer (or the body of `meeting_rejoined`).
    pub frame: serde_json::Value,
    pub incarnation: u64,
    pub version: u64,
}

/// The snapshot of a join: the roster and the ICE servers.
pub(super) fn joined_result(
    directory: &Directory,
    user_id: Uuid,
    heartbeat_interval_ms: u64,
    answer: MeetingAnswer,
) -> Result<Joined, RequestError> {
    let MeetingAnswer::Joined { meeting_id, me, incarnation, version, participants, max_participants, grace_ms } =
        answer
    else {
        return Err(unexpected(answer));
    };
    let ice_servers = directory.ports().ice.for_user(user_id);
    let frame = serde_json::json!({
        "meeting_id": meeting_id,
        "participant_id": me.participant_id,
        "me": me,
        "incarnation": incarnation,
        "version": version,
        "participants": participants,
        "max_participants": max_participants,
        "grace_ms": grace_ms,
        "heartbeat_interval_ms": heartbeat_interval_ms,
        "ice_servers": ice_servers,
    });
    Ok(Joined { frame, incarnation, version })
}
