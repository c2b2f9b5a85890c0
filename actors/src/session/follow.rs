//! Keeping a session's subscriptions, presence and meetings alive while the cluster changes.
//!
//! Every call that may wait for a moving or unreachable owner runs in a task; its answer comes
//! back as a message and is applied here, in order with the deliveries. A thing that cannot be
//! established again after [`ATTEMPTS`] tries closes the socket with 1012, so the client
//! reconnects (anywhere) and resumes instead of silently missing events.

use ractor::ActorRef;
use tracing::{debug, warn};
use uuid::Uuid;

use super::asks::{post, unexpected, AGAIN_EVERY, ATTEMPTS};
use super::meeting_follow::MeetingEventAction;
use super::meetings::start_join;
use super::replay::replay;
use super::subscriptions::EventAction;
use super::{Again, JoinOrigin, SessionMsg, SessionState, SubscribeOrigin, CLOSE_SERVICE_RESTART};
use crate::directory::SessionControl;
use crate::model::{Delivery, DeliveryKind, ErrorCode, NodeId, PresenceView, RequestError, SubscribeAnswer};
use crate::protocol::ServerFrame;
use crate::routing::{ChannelAnswer, ChannelRequest, UserAnswer, UserRequest};

pub(super) async fn on_delivery(myself: &ActorRef<SessionMsg>, state: &mut SessionState, delivery: Delivery) {
    match delivery.kind {
        DeliveryKind::Resubscribe { channel_id } => {
            // Only the actor this session subscribed at speaks for the subscription.
            let owner = state.tracking().subscriptions.owner(channel_id);
            if owner == Some(delivery.from) {
                start_subscribe(myself, state, channel_id, SubscribeOrigin::Again { attempt: 0 });
            }
        }
        DeliveryKind::Event { channel_id, seq } => {
            // Here only when the fast path met a gap, or the channel was filling meanwhile;
            // the fast path leaves the channel alone until this is done.
            state.tracking().filling.insert(channel_id);
            let action = state.tracking().subscriptions.on_event(channel_id, seq);
            match action {
                EventAction::Drop => {}
                EventAction::Push => state.push_event(myself, channel_id, seq, delivery.text),
                EventAction::FillThenPush { after, up_to } => {
                    debug!(%channel_id, after, seq, "gap in live events, filling from the store");
                    if replay(myself, state, channel_id, after, up_to).await.is_ok() {
                        state.push_event(myself, channel_id, seq, delivery.text);
                    }
                }
            }
            state.tracking().filling.remove(&channel_id);
        }
        DeliveryKind::Typing { channel_id, user_id, active } => {
            let pass = state.tracking().subscriptions.on_typing(channel_id, user_id, active, delivery.from);
            if pass {
                state.push(myself, delivery.text);
            }
        }
        DeliveryKind::Channel { channel_id } => {
            let pass = state.tracking().subscriptions.contains(channel_id);
            if pass {
                state.push(myself, delivery.text);
            }
        }
        DeliveryKind::Presence { user_id, status } => {
            if state.watches.on_presence(user_id, status, delivery.from) {
                state.push(myself, delivery.text);
            }
        }
        DeliveryKind::Meeting { meeting_id, incarnation, version } => {
            match state.meetings.on_event(meeting_id, incarnation, version, &delivery.text) {
                MeetingEventAction::Push => state.push(myself, delivery.text),
                MeetingEventAction::Drop | MeetingEventAction::Held => {}
                MeetingEventAction::Rejoin => {
                    // The room was rebuilt on another node and speaks to this session before
                    // it rejoined: rejoin now rather than wait for the membership to tell.
                    start_join(myself, state, meeting_id, JoinOrigin::Rejoin { attempt: 0 });
                }
            }
        }
        DeliveryKind::Direct => state.push(myself, delivery.text),
    }
}

pub(super) fn on_control(myself: &ActorRef<SessionMsg>, state: &mut SessionState, control: SessionControl) {
    if state.closed {
        return;
    }
    let (channels, attach, watches, meetings) = match control {
        // The owners may have moved, or a node restarted under the same id: everything again.
        SessionControl::Rehome => {
            (state.tracking().subscriptions.rehome(), true, state.watches.users(), state.meetings.meetings())
        }
        SessionControl::PeerLost(node) => {
            let channels = state.tracking().subscriptions.owned_by(node);
            // Whoever was typing there may have stopped unseen: end it now; the new owner's
            // answer brings back whoever is still typing.
            for channel_id in &channels {
                end_typing(myself, state, *channel_id);
            }
            let meetings = state.meetings.owned_by(node);
            (channels, state.attached_at == Some(node), state.watches.owned_by(node), meetings)
        }
    };
    for channel_id in channels {
        start_subscribe(myself, state, channel_id, SubscribeOrigin::Again { attempt: 0 });
    }
    if attach {
        start_attach(myself, state, 0);
    }
    for user_id in watches {
        start_watch(myself, state, user_id, 0);
    }
    for meeting_id in meetings {
        start_join(myself, state, meeting_id, JoinOrigin::Rejoin { attempt: 0 });
    }
}

fn end_typing(myself: &ActorRef<SessionMsg>, state: &mut SessionState, channel_id: Uuid) {
    let ended = state.tracking().subscriptions.clear_typing(channel_id);
    for user_id in ended {
        state.send_frame(myself, &ServerFrame::Typing { channel_id, user_id, active: false });
    }
}

pub(super) fn again(myself: &ActorRef<SessionMsg>, state: &mut SessionState, again: Again) {
    if state.closed {
        return;
    }
    match again {
        Again::Subscribe { channel_id, attempt } => {
            let known = state.tracking().subscriptions.contains(channel_id);
            if known {
                start_subscribe(myself, state, channel_id, SubscribeOrigin::Again { attempt });
            }
        }
        Again::Attach { attempt } => start_attach(myself, state, attempt),
        Again::Watch { user_id, attempt } => {
            if state.watches.contains(user_id) {
                start_watch(myself, state, user_id, attempt);
            }
        }
        Again::Rejoin { meeting_id, attempt } => {
            if state.meetings.contains(meeting_id) {
                start_join(myself, state, meeting_id, JoinOrigin::Rejoin { attempt });
            }
        }
    }
}

/// Retries `again` later, or closes the socket once the attempts are used up.
fn retry_or_close(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    again: Again,
    attempt: u32,
    err: &RequestError,
    what: &str,
) {
    if attempt + 1 < ATTEMPTS && err.code == ErrorCode::Unavailable {
        myself.send_after(AGAIN_EVERY, move || SessionMsg::Again(again));
    } else {
        warn!(session_id = %state.session_id, error = %err, what, "lost and not re-established, closing the socket");
        state.close(myself, CLOSE_SERVICE_RESTART, "subscription lost, reconnect and resume");
    }
}

/// Asks the channel's owner for a subscription off the mailbox.
pub(super) fn start_subscribe(
    myself: &ActorRef<SessionMsg>,
    state: &SessionState,
    channel_id: Uuid,
    origin: SubscribeOrigin,
) {
    let directory = state.directory.clone();
    let request = ChannelRequest::Subscribe { caller: state.caller, session: state.addr() };
    let timeout = state.config.call_timeout;
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = match directory.ask_channel_at(channel_id, request, timeout).await {
            Ok((owner, ChannelAnswer::Subscribed(answer))) => Ok((owner, answer)),
            Ok((_, other)) => Err(unexpected(other)),
            Err(err) => Err(err),
        };
        post(&myself, SessionMsg::Subscribed { channel_id, origin, result });
    });
}

pub(super) async fn on_subscribed(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    channel_id: Uuid,
    origin: SubscribeOrigin,
    result: Result<(NodeId, SubscribeAnswer), RequestError>,
) {
    let (request_id, last_seq, attempt) = match &origin {
        SubscribeOrigin::Client { request_id, last_seq } => (Some(request_id.clone()), *last_seq, 0),
        SubscribeOrigin::Again { attempt } => (None, None, *attempt),
    };
    let known = state.tracking().subscriptions.contains(channel_id);
    if !known {
        // Unsubscribed while the answer was on its way.
        if result.is_ok() {
            state.directory.tell_channel(channel_id, ChannelRequest::Unsubscribe { session_id: state.session_id });
        }
        if let Some(id) = request_id {
            state.send_frame(myself, &ServerFrame::error(id, &RequestError::not_found("subscription")));
        }
        return;
    }
    let fresh = state.tracking().subscriptions.delivered(channel_id).is_none();
    let mut again = false;
    let outcome = match result {
        Ok((owner, answer)) => {
            // The replay goes first: the fast path leaves the channel alone meanwhile.
            let subscribed = {
                let mut tracking = state.tracking();
                let subscribed = tracking.subscriptions.answered(channel_id, owner, &answer, last_seq);
                if subscribed.is_ok() {
                    tracking.filling.insert(channel_id);
                }
                subscribed
            };
            match subscribed {
                Ok(subscribed) => {
                    again = subscribed.again;
                    for (user_id, active) in subscribed.typing {
                        state.send_frame(myself, &ServerFrame::Typing { channel_id, user_id, active });
                    }
                    let answer = SubscribeAnswer { head_seq: subscribed.head, ..answer };
                    let replayed = match subscribed.replay {
                        Some((after, up_to)) => replay(myself, state, channel_id, after, up_to).await.map(|()| answer),
                        None => Ok(answer),
                    };
                    state.tracking().filling.remove(&channel_id);
                    replayed
                }
                Err(err) => Err(err),
            }
        }
        Err(err) => Err(err),
    };
    match (outcome, request_id) {
        (Ok(answer), Some(id)) => {
            let result = serde_json::to_value(answer).unwrap_or_default();
            state.send_frame(myself, &ServerFrame::Ok { id, result });
        }
        (Ok(_), None) => debug!(session_id = %state.session_id, %channel_id, attempt, "subscribed again"),
        (Err(err), Some(id)) => {
            if fresh {
                state.tracking().subscriptions.remove(channel_id);
                state.directory.tell_channel(channel_id, ChannelRequest::Unsubscribe { session_id: state.session_id });
            }
            state.send_frame(myself, &ServerFrame::error(id, &err));
        }
        (Err(err), None) => {
            if err.code != ErrorCode::Unavailable && fresh {
                state.tracking().subscriptions.remove(channel_id);
            }
            retry_or_close(
                myself,
                state,
                Again::Subscribe { channel_id, attempt: attempt + 1 },
                attempt,
                &err,
                "subscription",
            );
        }
    }
    if again {
        // The cluster changed while the first answer was on its way (see `Subscriptions::rehome`).
        start_subscribe(myself, state, channel_id, SubscribeOrigin::Again { attempt: 0 });
    }
}

fn start_attach(myself: &ActorRef<SessionMsg>, state: &SessionState, attempt: u32) {
    let directory = state.directory.clone();
    let (user_id, request, timeout) =
        (state.caller.user_id, UserRequest::Attach { session: state.addr() }, state.config.call_timeout);
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = directory.ask_user_at(user_id, request, timeout).await.map(|(owner, _)| owner);
        post(&myself, SessionMsg::Attached { attempt, result });
    });
}

pub(super) fn on_attached(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    attempt: u32,
    result: Result<NodeId, RequestError>,
) {
    match result {
        Ok(owner) => state.attached_at = Some(owner),
        Err(err) => retry_or_close(myself, state, Again::Attach { attempt: attempt + 1 }, attempt, &err, "presence"),
    }
}

fn start_watch(myself: &ActorRef<SessionMsg>, state: &SessionState, user_id: Uuid, attempt: u32) {
    let directory = state.directory.clone();
    let request = UserRequest::Watch { watcher: state.caller, session: state.addr() };
    let timeout = state.config.call_timeout;
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = match directory.ask_user_at(user_id, request, timeout).await {
            Ok((owner, UserAnswer::Presence(view))) => Ok((owner, view)),
            Ok((_, other)) => Err(unexpected(other)),
            Err(err) => Err(err),
        };
        post(&myself, SessionMsg::Watched { user_id, attempt, result });
    });
}

pub(super) fn on_watched(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    user_id: Uuid,
    attempt: u32,
    result: Result<(NodeId, PresenceView), RequestError>,
) {
    if !state.watches.contains(user_id) {
        if result.is_ok() {
            state.directory.tell_user(user_id, UserRequest::Unwatch { session_id: state.session_id });
        }
        return;
    }
    match result {
        Ok((owner, view)) => {
            if let Some(view) = state.watches.answered(owner, view, false) {
                let frame = ServerFrame::Presence { user_id, status: view.status, last_seen: view.last_seen };
                state.send_frame(myself, &frame);
            }
        }
        Err(err) => retry_or_close(
            myself,
            state,
            Again::Watch { user_id, attempt: attempt + 1 },
            attempt,
            &err,
            "presence watch",
        ),
    }
}
