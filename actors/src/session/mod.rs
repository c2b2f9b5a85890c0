//! SessionActor: one per WebSocket connection, on the node that accepted it.
//!
//! It parses client frames, talks to channel, user and meeting actors (on this node or their
//! owner), and writes server frames into a bounded outbound queue that the node's socket
//! writer drains. Per subscribed channel it tracks the last seq it delivered: duplicates are
//! dropped and a gap is filled from the store, so a client sees every durable event once and
//! in order — also across a membership change, an owner's restart or a lost link, after
//! which it subscribes again.
//!
//! # Layout
//! - this file: the actor, its messages and state;
//! - `frames`: what the session does with each client frame;
//! - `follow`: subscribing again, re-attaching and re-watching when the cluster changes;
//! - `asks`: the retry budget and answer posting shared by the asks run off the mailbox;
//!   answers that arrive off the mailbox; `meetings`: joins and rejoins;
//! - [`subscriptions`]: per-channel and per-watch tracking, plain data;
//! - `replay`, `rate`, [`io`]: gap filling, the inbound rate limit, the socket's two ends.
//!
//! **Invariant:** the outbound queue is bounded; a client that does not read is disconnected
//! with close code [`CLOSE_SLOW_CONSUMER`], it never makes the server buffer without bound.
//! Calls to other actors that may wait for a moving owner run off the mailbox, so a session
//! keeps answering pings and delivering while its subscriptions are re-established.

mod asks;
mod follow;
mod frames;
pub mod io;
mod meeting_follow;
mod meetings;
mod outbox;
pub mod rate;
mod replay;
pub mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{info, warn};
use uuid::Uuid;

use crate::delivery::SessionInbox;
use crate::directory::{Directory, LocalSession, SessionControl};
use crate::model::FrameText;
use crate::model::{
    Caller, ChannelSeq, Delivery, ErrorCode, NodeId, PresenceView, RequestError, SessionAddr, SubscribeAnswer,
};
use crate::protocol::ServerFrame;
use crate::routing::{ChannelRequest, MeetingRequest, UserRequest};
pub use io::{
    session_io, CloseFrame, SessionIo, SocketIo, CLOSE_IDLE_TIMEOUT, CLOSE_MESSAGE_TOO_BIG, CLOSE_SERVICE_RESTART,
    CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED,
};
use meeting_follow::MeetingFollows;
use outbox::{Fast, Outbox, QueueError, Tracking};
use rate::{FrameLimiter, SocketBucket};
use subscriptions::Watches;

#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    /// Frames a client may send in a burst, and refilled per second.
    pub rate_burst: f64,
    pub rate_per_sec: f64,
    pub call_timeout: Duration,
    pub max_subscriptions: usize,
    pub max_presence_watches: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            rate_burst: 100.0,
            rate_per_sec: 50.0,
            call_timeout: Duration::from_secs(10),
            max_subscriptions: 1000,
            max_presence_watches: 1000,
        }
    }
}

/// Who asked for a subscription whose answer arrived.
#[derive(Debug, Clone)]
pub enum SubscribeOrigin {
    /// A `subscribe` frame: answer it.
    Client { request_id: Option<String>, last_seq: Option<ChannelSeq> },
    /// The session itself, subscribing again; `attempt` counts the tries.
    Again { attempt: u32 },
}

pub enum SessionMsg {
    /// A text frame from the client.
    Inbound(String),
    /// A frame from a channel, user or meeting actor.
    Deliver(Delivery),
    /// The answer to an earlier client request, computed off the session's mailbox.
    Reply(ServerFrame),
    /// Close the socket with this frame and stop.
    Close(CloseFrame),
    /// The cluster changed (see [`SessionControl`]).
    Control(SessionControl),
    /// Establish something again (after a failed attempt, or an actor that stopped).
    Again(Again),
    /// A channel's owner answered a subscribe.
    Subscribed { channel_id: Uuid, origin: SubscribeOrigin, result: Result<(NodeId, SubscribeAnswer), RequestError> },
    /// The user's actor took this session (again), on `owner`.
    Attached { attempt: u32, result: Result<NodeId, RequestError> },
    /// A watched user's actor answered a watch again.
    Watched { user_id: Uuid, attempt: u32, result: Result<(NodeId, PresenceView), RequestError> },
    /// A meeting's room answered a join: the answer to send (`ok` or `meeting_rejoined`).
    MeetingJoined { meeting_id: Uuid, origin: JoinOrigin, result: Result<(NodeId, meetings::Joined), RequestError> },
}

/// What a session establishes again, and how many times it tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Again {
    Subscribe { channel_id: Uuid, attempt: u32 },
    Attach { attempt: u32 },
    Watch { user_id: Uuid, attempt: u32 },
    Rejoin { meeting_id: Uuid, attempt: u32 },
}

/// Who asked for a meeting join whose answer arrived.
#[derive(Debug, Clone)]
pub enum JoinOrigin {
    /// A `meeting_join` frame: answer it with `ok`.
    Client { request_id: Option<String> },
    /// The session itself, after the room moved: send `meeting_rejoined`.
    Rejoin { attempt: u32 },
}

pub struct SessionArgs {
    pub session_id: Uuid,
    pub caller: Caller,
    pub node_id: String,
    pub directory: Directory,
    pub io: SessionIo,
    pub config: SessionConfig,
    /// Shared by every socket of the user on this node; `None`: a bucket for this socket.
    pub limiter: Option<Arc<dyn FrameLimiter>>,
}

pub struct SessionState {
    session_id: Uuid,
    caller: Caller,
    directory: Directory,
    io: SessionIo,
    config: SessionConfig,
    limiter: Arc<dyn FrameLimiter>,
    /// The outbound queue and the per-channel state the fast path shares with the actor.
    outbox: Arc<Outbox>,
    watches: Watches,
    /// Where the user's actor took this session, if it did.
    attached_at: Option<NodeId>,
    /// Meetings this session joined (or is joining).
    meetings: MeetingFollows,
    closed: bool,
}

impl SessionState {
    fn addr(&self) -> SessionAddr {
        self.directory.session_addr(self.session_id, self.caller.user_id)
    }

    /// The per-channel state shared with the fast path.
    fn tracking(&self) -> std::sync::MutexGuard<'_, Tracking> {
        self.outbox.lock()
    }

    /// Queues a frame without waiting. A full queue means the client stopped reading.
    fn push(&mut self, myself: &ActorRef<SessionMsg>, text: FrameText) {
        if self.closed {
            return;
        }
        let queued = {
            let outbox = self.outbox.clone();
            let mut tracking = outbox.lock();
            outbox.queue(&mut tracking, text)
        };
        match queued {
            Ok(()) => {}
            Err(QueueError::Full) => self.slow_consumer(myself),
            Err(QueueError::Closed) => {
                self.closed = true;
                myself.stop(Some("socket closed".to_owned()));
            }
        }
    }

    /// Queues a channel event and records it delivered, in one step (the fast path must not
    /// slip the same seq in between).
    fn push_event(&mut self, myself: &ActorRef<SessionMsg>, channel_id: Uuid, seq: ChannelSeq, text: FrameText) {
        if self.closed {
            return;
        }
        let queued = {
            let outbox = self.outbox.clone();
            let mut tracking = outbox.lock();
            let queued = outbox.queue(&mut tracking, text);
            if queued.is_ok() {
                tracking.subscriptions.advance(channel_id, seq);
            }
            queued
        };
        match queued {
            Ok(()) => {}
            Err(QueueError::Full) => self.slow_consumer(myself),
            Err(QueueError::Closed) => {
                self.closed = true;
                myself.stop(Some("socket closed".to_owned()));
            }
        }
    }

    fn slow_consumer(&mut self, myself: &ActorRef<SessionMsg>) {
        warn!(session_id = %self.session_id, user_id = %self.caller.user_id, "slow consumer, disconnecting");
        self.close(myself, CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full");
    }

    fn send_frame(&mut self, myself: &ActorRef<SessionMsg>, frame: &ServerFrame) {
        self.push(myself, FrameText::from(frame.to_text()));
    }

    fn close(&mut self, myself: &ActorRef<SessionMsg>, code: u16, reason: &str) {
        if !self.closed {
            self.closed = true;
            self.tracking().closed = true;
            self.io.close.send_replace(Some(CloseFrame { code, reason: reason.to_owned() }));
            myself.stop(Some(reason.to_owned()));
        }
    }
}

/// The directory's handle on a session: the fast path into its queue, its actor for the rest.
struct SessionHandle {
    actor: ActorRef<SessionMsg>,
    outbox: Arc<Outbox>,
}

impl SessionInbox for SessionHandle {
    fn deliver(&self, delivery: &Delivery) -> bool {
        match self.outbox.deliver(delivery) {
            Fast::Done => true,
            Fast::Closed => false,
            Fast::ToActor => self.actor.cast(SessionMsg::Deliver(delivery.clone())).is_ok(),
            Fast::Overflow => {
                let close =
                    CloseFrame { code: CLOSE_SLOW_CONSUMER, reason: "slow consumer: outbound queue full".into() };
                warn!("slow consumer, disconnecting");
                self.actor.cast(SessionMsg::Close(close)).is_ok()
            }
        }
    }
}

impl LocalSession for SessionHandle {
    fn control(&self, control: SessionControl) {
        if self.actor.cast(SessionMsg::Control(control)).is_err() {
            tracing::debug!("session ended before a cluster change reached it");
        }
    }
}

/// The session's start: registers it, attaches it to its user's actor, says hello.
async fn start(myself: ActorRef<SessionMsg>, args: SessionArgs) -> Result<SessionState, ActorProcessingErr> {
    let outbox = Arc::new(Outbox::new(args.io.outbound.clone()));
    let mut state = SessionState {
        session_id: args.session_id,
        caller: args.caller,
        directory: args.directory,
        io: args.io,
        config: args.config,
        limiter: args
            .limiter
            .unwrap_or_else(|| Arc::new(SocketBucket::new(args.config.rate_burst, args.config.rate_per_sec))),
        outbox: outbox.clone(),
        watches: Watches::default(),
        attached_at: None,
        meetings: MeetingFollows::default(),
        closed: false,
    };
    state.directory.register_session(state.session_id, Arc::new(SessionHandle { actor: myself.clone(), outbox }));
    let attach = UserRequest::Attach { session: state.addr() };
    match state.directory.ask_user_at(state.caller.user_id, attach, state.config.call_timeout).await {
        Ok((owner, _)) => state.attached_at = Some(owner),
        Err(err) if err.code == ErrorCode::Unavailable => {
            // The user's owner is unreachable (a node just died): chat works without
            // presence, and the next membership change attaches again.
            warn!(session_id = %state.session_id, error = %err, "presence not attached yet");
        }
        Err(err) => {
            state.directory.unregister_session(state.session_id);
            return Err(format!("user actor: {err}").into());
        }
    }
    let hello = ServerFrame::Hello {
        session_id: state.session_id,
        node_id: args.node_id,
        user_id: state.caller.user_id,
        heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
        idle_timeout_ms: state.config.idle_timeout.as_millis() as u64,
    };
    state.send_frame(&myself, &hello);
    info!(session_id = %state.session_id, user_id = %state.caller.user_id, "session started");
    Ok(state)
}

pub struct SessionActor;

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        // Boxed for the same reason as the handlers below: it would size the actor's task.
        Box::pin(start(myself, args)).await
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let session_id = state.session_id;
        state.directory.unregister_session(session_id);
        let channels = state.tracking().subscriptions.channels();
        for channel_id in channels {
            state.directory.tell_channel(channel_id, ChannelRequest::Unsubscribe { session_id });
        }
        for user_id in state.watches.users() {
            state.directory.tell_user(user_id, UserRequest::Unwatch { session_id });
        }
        state.directory.tell_user(state.caller.user_id, UserRequest::Detach { session_id });
        for meeting_id in state.meetings.meetings() {
            let request = MeetingRequest::Disconnected { caller: state.caller, session_id };
            state.directory.tell_meeting(meeting_id, request);
        }
        info!(%session_id, user_id = %state.caller.user_id, "session ended");
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        msg: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // The awaiting handlers are boxed: ractor keeps the handler's future inside the
            // actor's task, so the largest of them would be paid by every idle session.
            SessionMsg::Inbound(text) => Box::pin(frames::on_inbound(&myself, state, &text)).await,
            SessionMsg::Deliver(delivery) => Box::pin(follow::on_delivery(&myself, state, delivery)).await,
            SessionMsg::Reply(frame) => state.send_frame(&myself, &frame),
            SessionMsg::Close(frame) => state.close(&myself, frame.code, &frame.reason),
            SessionMsg::Control(control) => follow::on_control(&myself, state, control),
            SessionMsg::Again(again) => follow::again(&myself, state, again),
            SessionMsg::Subscribed { channel_id, origin, result } => {
                Box::pin(follow::on_subscribed(&myself, state, channel_id, origin, result)).await
            }
            SessionMsg::Attached { attempt, result } => follow::on_attached(&myself, state, attempt, result),
            SessionMsg::Watched { user_id, attempt, result } => {
                follow::on_watched(&myself, state, user_id, attempt, result)
            }
            SessionMsg::MeetingJoined { meeting_id, origin, result } => {
                meetings::on_meeting_joined(&myself, state, meeting_id, origin, result)
            }
        }
        Ok(())
    }
}
