//! What a session does with each client frame.

use ractor::ActorRef;
use serde::Serialize;
use tracing::{debug, warn};
use uuid::Uuid;

use super::follow::start_subscribe;
use super::meetings::start_join;
use super::{JoinOrigin, SessionMsg, SessionState, SubscribeOrigin};
use crate::model::{
    ErrorCode, MessageDraft, PresenceStatus, PresenceView, RequestError, StateChange, MAX_SIGNAL_BYTES,
};
use crate::protocol::{parse_client_frame, ClientFrame, ServerFrame};
use crate::routing::{ChannelAnswer, ChannelRequest, MeetingAnswer, MeetingRequest, UserAnswer, UserRequest};

pub(super) async fn on_inbound(myself: &ActorRef<SessionMsg>, state: &mut SessionState, text: &str) {
    let parsed = parse_client_frame(text);
    if !state.limiter.allow(state.caller.user_id) {
        let id = match &parsed {
            Ok((id, _)) => id.clone(),
            Err(bad) => bad.request_id.clone(),
        };
        let err = RequestError::new(ErrorCode::RateLimited, "too many frames, slow down");
        state.send_frame(myself, &ServerFrame::error(id, &err));
        return;
    }
    let (request_id, frame) = match parsed {
        Ok(parsed) => parsed,
        Err(bad) => {
            debug!(session_id = %state.session_id, code = bad.code.as_str(), "bad client frame");
            let frame = ServerFrame::Error { id: bad.request_id, code: bad.code, message: bad.message };
            state.send_frame(myself, &frame);
            return;
        }
    };
    on_frame(myself, state, request_id, frame).await;
}

fn ok_frame(id: Option<String>, result: impl Serialize) -> ServerFrame {
    ServerFrame::Ok { id, result: serde_json::to_value(result).unwrap_or_default() }
}

fn answer_frame<T: Serialize>(id: Option<String>, result: Result<T, RequestError>) -> ServerFrame {
    match result {
        Ok(value) => ok_frame(id, value),
        Err(err) => ServerFrame::error(id, &err),
    }
}

async fn on_frame(myself: &ActorRef<SessionMsg>, state: &mut SessionState, id: Option<String>, frame: ClientFrame) {
    let caller = state.caller;
    let request = match frame {
        ClientFrame::Ping => return state.send_frame(myself, &ServerFrame::Pong { id }),
        ClientFrame::Subscribe { channel_id, last_seq } => {
            let (known, count) = {
                let tracking = state.tracking();
                (tracking.subscriptions.contains(channel_id), tracking.subscriptions.len())
            };
            if !known && count >= state.config.max_subscriptions {
                let err = RequestError::invalid(format!("at most {} subscriptions", state.config.max_subscriptions));
                return state.send_frame(myself, &ServerFrame::error(id, &err));
            }
            state.tracking().subscriptions.begin(channel_id, last_seq);
            return start_subscribe(myself, state, channel_id, SubscribeOrigin::Client { request_id: id, last_seq });
        }
        ClientFrame::Unsubscribe { channel_id } => {
            let removed = state.tracking().subscriptions.remove(channel_id);
            let result = if removed {
                state.directory.tell_channel(channel_id, ChannelRequest::Unsubscribe { session_id: state.session_id });
                Ok(serde_json::Value::Null)
            } else {
                Err(RequestError::not_found("subscription"))
            };
            return state.send_frame(myself, &answer_frame(id, result));
        }
        ClientFrame::PresenceSet { status } => {
            let result = set_presence(state, status).await.map(|()| serde_json::Value::Null);
            return state.send_frame(myself, &answer_frame(id, result));
        }
        ClientFrame::PresenceWatch { user_ids } => {
            let result = watch_presence(state, user_ids).await;
            return state.send_frame(myself, &answer_frame(id, result));
        }
        ClientFrame::PresenceUnwatch { user_ids } => {
            for user_id in user_ids {
                if state.watches.remove(user_id) {
                    state.directory.tell_user(user_id, UserRequest::Unwatch { session_id: state.session_id });
                }
            }
            return state.send_frame(myself, &ok_frame(id, serde_json::Value::Null));
        }
        ClientFrame::Send { channel_id, client_msg_id, body, parent_id, attachment_ids } => {
            let draft = MessageDraft { client_msg_id, body, parent_id, attachment_ids };
            (channel_id, ChannelRequest::Send { caller, draft })
        }
        ClientFrame::Edit { channel_id, message_id, body } => {
            (channel_id, ChannelRequest::Edit { caller, message_id, body })
        }
        ClientFrame::Delete { channel_id, message_id } => (channel_id, ChannelRequest::Delete { caller, message_id }),
        ClientFrame::React { channel_id, message_id, emoji } => {
            (channel_id, ChannelRequest::React { caller, message_id, emoji, add: true })
        }
        ClientFrame::Unreact { channel_id, message_id, emoji } => {
            (channel_id, ChannelRequest::React { caller, message_id, emoji, add: false })
        }
        ClientFrame::TypingStart { channel_id } => (channel_id, ChannelRequest::Typing { caller, active: true }),
        ClientFrame::TypingStop { channel_id } => (channel_id, ChannelRequest::Typing { caller, active: false }),
        ClientFrame::Read { channel_id, seq } => (channel_id, ChannelRequest::Read { caller, seq }),
        meeting_frame => return on_meeting_frame(myself, state, id, meeting_frame).await,
    };
    let (channel_id, request) = request;
    ask_channel(myself, state, id, channel_id, request).await;
}

/// Meeting frames: join, leave, media state, signaling, host controls.
async fn on_meeting_frame(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    id: Option<String>,
    frame: ClientFrame,
) {
    let caller = state.caller;
    let session_id = state.session_id;
    let (meeting_id, request) = match frame {
        ClientFrame::MeetingJoin { meeting_id } => {
            return start_join(myself, state, meeting_id, JoinOrigin::Client { request_id: id });
        }
        ClientFrame::MeetingLeave { meeting_id } => {
            state.meetings.remove(meeting_id);
            (meeting_id, MeetingRequest::Leave { caller, session_id })
        }
        ClientFrame::MeetingState { meeting_id, audio, video, screen, hand } => {
            let change = StateChange { audio, video, screen, hand };
            (meeting_id, MeetingRequest::SetState { caller, session_id, change })
        }
        ClientFrame::Signal { meeting_id, to, kind, payload } => {
            let payload = payload.to_string();
            if payload.len() > MAX_SIGNAL_BYTES {
                let err = RequestError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("signal payload over {MAX_SIGNAL_BYTES} bytes"),
                );
                return state.send_frame(myself, &ServerFrame::error(id, &err));
            }
            (meeting_id, MeetingRequest::Signal { caller, session_id, to, kind, payload })
        }
        ClientFrame::HostMute { meeting_id, participant_id: target } => {
            (meeting_id, MeetingRequest::HostMute { caller, session_id, target })
        }
        ClientFrame::HostRemove { meeting_id, participant_id: target } => {
            (meeting_id, MeetingRequest::HostRemove { caller, session_id, target })
        }
        ClientFrame::HostTransfer { meeting_id, participant_id: target } => {
            (meeting_id, MeetingRequest::HostTransfer { caller, session_id, target })
        }
        ClientFrame::LobbyAdmit { meeting_id, participant_id: target } => {
            (meeting_id, MeetingRequest::LobbyDecision { caller, session_id, target, admit: true })
        }
        ClientFrame::LobbyDeny { meeting_id, participant_id: target } => {
            (meeting_id, MeetingRequest::LobbyDecision { caller, session_id, target, admit: false })
        }
        ClientFrame::MeetingEnd { meeting_id } => {
            (meeting_id, MeetingRequest::End { caller, session_id: Some(session_id) })
        }
        other => {
            warn!(?other, "not a meeting frame");
            return;
        }
    };
    let pending = match state.directory.send_meeting(meeting_id, request).await {
        Ok(pending) => pending,
        Err(err) => return state.send_frame(myself, &ServerFrame::error(id, &err)),
    };
    answer_later(myself, state, id, async move { pending.await.map(meeting_result).map_err(RequestError::from) });
}

fn meeting_result(answer: MeetingAnswer) -> serde_json::Value {
    match answer {
        MeetingAnswer::Done => serde_json::Value::Null,
        MeetingAnswer::Participant(participant) => serde_json::to_value(participant).unwrap_or_default(),
        MeetingAnswer::Roster { incarnation, version, participants } => {
            serde_json::json!({ "incarnation": incarnation, "version": version, "participants": participants })
        }
        joined @ MeetingAnswer::Joined { .. } => serde_json::to_value(joined).unwrap_or_default(),
    }
}

/// Answers the client once `answer` resolves, without holding up the session's mailbox.
fn answer_later<F>(myself: &ActorRef<SessionMsg>, state: &SessionState, id: Option<String>, answer: F)
where
    F: std::future::Future<Output = Result<serde_json::Value, RequestError>> + Send + 'static,
{
    let session = myself.clone();
    let timeout = state.config.call_timeout;
    tokio::spawn(async move {
        let frame = match tokio::time::timeout(timeout, answer).await {
            Ok(result) => answer_frame(id, result),
            Err(_) => ServerFrame::error(id, &RequestError::unavailable()),
        };
        if session.cast(SessionMsg::Reply(frame)).is_err() {
            debug!("session ended before its reply arrived");
        }
    });
}

/// Sends a request to a channel in order and answers the client when the channel replies,
/// without holding up this session's mailbox in the meantime.
async fn ask_channel(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    id: Option<String>,
    channel_id: Uuid,
    request: ChannelRequest,
) {
    let pending = match state.directory.send_channel(channel_id, request).await {
        Ok(pending) => pending,
        Err(err) => return state.send_frame(myself, &ServerFrame::error(id, &err)),
    };
    answer_later(myself, state, id, async move { pending.await.map(channel_result).map_err(RequestError::from) });
}

/// The `result` of an `ok` frame for a channel answer.
fn channel_result(answer: ChannelAnswer) -> serde_json::Value {
    match answer {
        ChannelAnswer::Subscribed(subscribed) => serde_json::to_value(subscribed).unwrap_or_default(),
        ChannelAnswer::Message(message) => serde_json::to_value(message).unwrap_or_default(),
        ChannelAnswer::Seq(seq) => serde_json::json!({ "seq": seq }),
        ChannelAnswer::MaybeSeq(seq) => serde_json::json!({ "seq": seq, "changed": seq.is_some() }),
        ChannelAnswer::Done => serde_json::Value::Null,
    }
}

async fn set_presence(state: &mut SessionState, status: PresenceStatus) -> Result<(), RequestError> {
    if status == PresenceStatus::Offline {
        return Err(RequestError::invalid("a live session is online or away; close it to go offline"));
    }
    let request = UserRequest::SetStatus { session_id: state.session_id, status };
    state.directory.ask_user(state.caller.user_id, request, state.config.call_timeout).await.map(|_| ())
}

async fn watch_presence(state: &mut SessionState, user_ids: Vec<Uuid>) -> Result<Vec<PresenceView>, RequestError> {
    if state.watches.len() + user_ids.len() > state.config.max_presence_watches {
        return Err(RequestError::invalid(format!("at most {} presence watches", state.config.max_presence_watches)));
    }
    let mut views = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        let request = UserRequest::Watch { watcher: state.caller, session: state.addr() };
        match state.directory.ask_user_at(user_id, request, state.config.call_timeout).await? {
            (owner, UserAnswer::Presence(view)) => {
                state.watches.answered(owner, view, true);
                views.push(view);
            }
            (_, other) => return Err(unexpected(other)),
        }
    }
    Ok(views)
}

fn unexpected<T: std::fmt::Debug>(answer: T) -> RequestError {
    warn!(?answer, "unexpected answer from an actor");
    RequestError::internal()
}
