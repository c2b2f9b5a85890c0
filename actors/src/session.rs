//! SessionActor: one per WebSocket connection, on the node that accepted it.
//!
//! It parses client frames, talks to channel and user actors (on this node or their owner),
//! and writes server frames into a bounded outbound queue that the node's socket writer
//! drains. It tracks, per subscribed channel, the last seq it delivered: duplicates are
//! dropped and a gap is filled from the store, so a client sees every durable event once
//! and in order — also across a membership change, after which it subscribes again.
//!
//! **Invariant:** the outbound queue is bounded; a client that does not read is disconnected
//! with close code [`CLOSE_SLOW_CONSUMER`], it never makes the server buffer without bound.

mod frames;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::directory::Directory;
use crate::ports::Caller;
use crate::protocol::{ChannelSeq, ErrorCode, RequestError, ServerFrame};
use crate::routing::{ChannelRequest, Cluster, MeetingRequest, NodeId, SessionAddr, UserRequest};

/// Close code sent to a client whose outbound queue overflowed.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code sent when the server shuts down: reconnect (to any node) and resume.
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// Close code sent after no frame arrived for the idle timeout.
pub const CLOSE_IDLE_TIMEOUT: u16 = 4002;
/// Close code sent when the client's token expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;

/// Events replayed from the store per page when a session catches up.
const REPLAY_PAGE: u32 = 500;

/// A frame on its way to one session, with the channel position it stands for (if any).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel_id: Option<Uuid>,
    /// Set for durable channel events; the session drops duplicates and fills gaps by it.
    pub seq: Option<ChannelSeq>,
    pub text: Arc<str>,
    /// Not a frame: the channel actor holding this subscription stopped (idle, moved,
    /// reloading), so the session must subscribe again to keep receiving.
    pub resubscribe: bool,
}

impl Delivery {
    /// A frame for the client; `channel_id`/`seq` when it is a channel's event.
    pub fn frame(channel_id: Option<Uuid>, seq: Option<ChannelSeq>, text: Arc<str>) -> Self {
        Self { channel_id, seq, text, resubscribe: false }
    }

    /// Tells the session its subscription to `channel_id` ended with the actor.
    pub fn resubscribe(channel_id: Uuid) -> Self {
        Self { channel_id: Some(channel_id), seq: None, text: Arc::from(""), resubscribe: true }
    }
}

/// How often and how long a session tries to subscribe again before it gives up and closes
/// the socket (the client then reconnects and resumes).
const RESUBSCRIBE_EVERY: Duration = Duration::from_millis(300);
const RESUBSCRIBE_ATTEMPTS: u32 = 100;

/// How a session is reached from the actor holding its sink.
#[derive(Clone)]
pub enum SinkRoute {
    Local(ActorRef<SessionMsg>),
    /// On another node: frames go through the cluster, batched per node.
    Remote(Arc<dyn Cluster>),
}

/// How channel and user actors reach a session, on this node or another.
#[derive(Clone)]
pub struct SessionSink {
    pub addr: SessionAddr,
    pub route: SinkRoute,
}

impl std::fmt::Debug for SessionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSink").field("addr", &self.addr).finish()
    }
}

impl SessionSink {
    pub fn local(addr: SessionAddr, actor: ActorRef<SessionMsg>) -> Self {
        Self { addr, route: SinkRoute::Local(actor) }
    }

    /// `false` when the session is gone (or its node unreachable).
    pub fn deliver(&self, delivery: Delivery) -> bool {
        match &self.route {
            SinkRoute::Local(actor) => actor.cast(SessionMsg::Deliver(delivery)).is_ok(),
            SinkRoute::Remote(cluster) => cluster.deliver(self.addr.node, vec![self.addr.session_id], delivery),
        }
    }
}

/// Delivers one frame to every sink: directly to local sessions, and in one message per
/// remote node. Sinks that cannot be reached are removed.
pub fn fan_out(sinks: &mut HashMap<Uuid, SessionSink>, delivery: &Delivery) {
    let mut remote: HashMap<NodeId, (Arc<dyn Cluster>, Vec<Uuid>)> = HashMap::new();
    sinks.retain(|session_id, sink| match &sink.route {
        SinkRoute::Local(actor) => actor.cast(SessionMsg::Deliver(delivery.clone())).is_ok(),
        SinkRoute::Remote(cluster) => {
            remote.entry(sink.addr.node).or_insert_with(|| (cluster.clone(), Vec::new())).1.push(*session_id);
            true
        }
    });
    for (node, (cluster, session_ids)) in remote {
        if !cluster.deliver(node, session_ids, delivery.clone()) {
            debug!(node, "node unreachable, dropping its sessions");
            sinks.retain(|_, sink| sink.addr.node != node);
        }
    }
}

/// Why and how the socket is to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// The session's side of its socket: the bounded outbound queue and the close signal.
pub struct SessionIo {
    pub outbound: mpsc::Sender<Arc<str>>,
    pub close: watch::Sender<Option<CloseFrame>>,
}

/// The socket's side: what the node's writer task drains.
pub struct SocketIo {
    pub outbound: mpsc::Receiver<Arc<str>>,
    pub close: watch::Receiver<Option<CloseFrame>>,
}

pub fn session_io(queue_capacity: usize) -> (SessionIo, SocketIo) {
    let (outbound_tx, outbound_rx) = mpsc::channel(queue_capacity);
    let (close_tx, close_rx) = watch::channel(None);
    (SessionIo { outbound: outbound_tx, close: close_tx }, SocketIo { outbound: outbound_rx, close: close_rx })
}

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

pub enum SessionMsg {
    /// A text frame from the client.
    Inbound(String),
    /// A frame from a channel or user actor.
    Deliver(Delivery),
    /// The answer to an earlier client request, computed off the session's mailbox.
    Reply(ServerFrame),
    /// Close the socket with this frame and stop.
    Close(CloseFrame),
    /// Cluster membership changed: subscribe again where owners moved, re-attach presence.
    Rehome,
    /// Subscribe again to a channel whose actor stopped.
    Resubscribe { channel_id: Uuid, attempt: u32 },
}

pub struct SessionArgs {
    pub session_id: Uuid,
    pub caller: Caller,
    pub node_id: String,
    pub directory: Directory,
    pub io: SessionIo,
    pub config: SessionConfig,
}

/// A token bucket for inbound frames.
struct RateLimiter {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(burst: f64, per_sec: f64) -> Self {
        Self { tokens: burst, burst, per_sec, last: Instant::now() }
    }
    fn allow(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_sec).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct SessionState {
    session_id: Uuid,
    caller: Caller,
    directory: Directory,
    io: SessionIo,
    config: SessionConfig,
    limiter: RateLimiter,
    /// Channel → last seq delivered to the client.
    subscriptions: HashMap<Uuid, ChannelSeq>,
    watching: HashSet<Uuid>,
    /// Meetings this session joined.
    meetings: HashSet<Uuid>,
    closed: bool,
}

impl SessionState {
    fn addr(&self) -> SessionAddr {
        SessionAddr { node: self.directory.this_node(), session_id: self.session_id, user_id: self.caller.user_id }
    }

    /// Queues a frame without waiting. A full queue means the client stopped reading.
    fn push(&mut self, myself: &ActorRef<SessionMsg>, text: Arc<str>) {
        if self.closed {
            return;
        }
        match self.io.outbound.try_send(text) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(session_id = %self.session_id, user_id = %self.caller.user_id, "slow consumer, disconnecting");
                self.close(myself, CLOSE_SLOW_CONSUMER, "slow consumer: outbound queue full");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.closed = true;
                myself.stop(Some("socket closed".to_owned()));
            }
        }
    }

    fn send_frame(&mut self, myself: &ActorRef<SessionMsg>, frame: &ServerFrame) {
        self.push(myself, Arc::from(frame.to_text()));
    }

    fn close(&mut self, myself: &ActorRef<SessionMsg>, code: u16, reason: &str) {
        if !self.closed {
            self.closed = true;
            self.io.close.send_replace(Some(CloseFrame { code, reason: reason.to_owned() }));
            myself.stop(Some(reason.to_owned()));
        }
    }
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
        let mut state = SessionState {
            session_id: args.session_id,
            caller: args.caller,
            directory: args.directory,
            io: args.io,
            config: args.config,
            limiter: RateLimiter::new(args.config.rate_burst, args.config.rate_per_sec),
            subscriptions: HashMap::new(),
            watching: HashSet::new(),
            meetings: HashSet::new(),
            closed: false,
        };
        state.directory.register_session(state.session_id, myself.clone());
        let attach = UserRequest::Attach { session: state.addr() };
        match state.directory.ask_user(state.caller.user_id, attach, state.config.call_timeout).await {
            Ok(_) => {}
            Err(err) if err.code == ErrorCode::Unavailable => {
                // The user's owner is unreachable (a node just died): chat works without
                // presence, and the next membership change attaches again (`Rehome`).
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

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let session_id = state.session_id;
        state.directory.unregister_session(session_id);
        for channel_id in state.subscriptions.keys() {
            state.directory.tell_channel(*channel_id, ChannelRequest::Unsubscribe { session_id });
        }
        for user_id in &state.watching {
            state.directory.tell_user(*user_id, UserRequest::Unwatch { session_id });
        }
        state.directory.tell_user(state.caller.user_id, UserRequest::Detach { session_id });
        for meeting_id in &state.meetings {
            let request = MeetingRequest::Disconnected { caller: state.caller, session_id };
            state.directory.tell_meeting(*meeting_id, request);
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
            SessionMsg::Inbound(text) => frames::on_inbound(&myself, state, &text).await,
            SessionMsg::Deliver(delivery) => on_delivery(&myself, state, delivery).await,
            SessionMsg::Reply(frame) => state.send_frame(&myself, &frame),
            SessionMsg::Close(frame) => state.close(&myself, frame.code, &frame.reason),
            SessionMsg::Rehome => frames::rehome(&myself, state).await,
            SessionMsg::Resubscribe { channel_id, attempt } => resubscribe(&myself, state, channel_id, attempt).await,
        }
        Ok(())
    }
}

/// Subscribes again after the channel's actor stopped, retrying while its owner moves; a
/// session that cannot get its subscription back closes, so the client resumes elsewhere.
async fn resubscribe(myself: &ActorRef<SessionMsg>, state: &mut SessionState, channel_id: Uuid, attempt: u32) {
    if !state.subscriptions.contains_key(&channel_id) || state.closed {
        return;
    }
    match frames::subscribe(myself, state, channel_id, None).await {
        Ok(_) => debug!(session_id = %state.session_id, %channel_id, attempt, "subscribed again"),
        Err(err) if attempt < RESUBSCRIBE_ATTEMPTS && err.code == crate::protocol::ErrorCode::Unavailable => {
            myself.send_after(RESUBSCRIBE_EVERY, move || SessionMsg::Resubscribe { channel_id, attempt: attempt + 1 });
        }
        Err(err) => {
            warn!(session_id = %state.session_id, %channel_id, error = %err, "subscription lost, closing the socket");
            state.close(myself, CLOSE_SERVICE_RESTART, "subscription lost, reconnect and resume");
        }
    }
}

async fn on_delivery(myself: &ActorRef<SessionMsg>, state: &mut SessionState, delivery: Delivery) {
    if delivery.resubscribe {
        if let Some(channel_id) = delivery.channel_id.filter(|id| state.subscriptions.contains_key(id)) {
            // Give the membership a moment to settle before asking the (new) owner.
            myself.send_after(RESUBSCRIBE_EVERY, move || SessionMsg::Resubscribe { channel_id, attempt: 0 });
        }
        return;
    }
    let (Some(channel_id), Some(seq)) = (delivery.channel_id, delivery.seq) else {
        if let Some(channel_id) = delivery.channel_id {
            if !state.subscriptions.contains_key(&channel_id) {
                return;
            }
        }
        state.push(myself, delivery.text);
        return;
    };
    let Some(&delivered) = state.subscriptions.get(&channel_id) else {
        return;
    };
    if seq <= delivered {
        return;
    }
    if seq > delivered + 1 {
        debug!(%channel_id, delivered, seq, "gap in live events, filling from the store");
        if replay(myself, state, channel_id, delivered, seq - 1).await.is_err() {
            return;
        }
    }
    state.push(myself, delivery.text);
    state.subscriptions.insert(channel_id, seq);
}

/// Sends the stored events in `(after, up_to]` and records `up_to` as delivered.
async fn replay(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    channel_id: Uuid,
    after: ChannelSeq,
    up_to: ChannelSeq,
) -> Result<(), RequestError> {
    let store = state.directory.ports().channels.clone();
    let mut cursor = after;
    while cursor < up_to {
        let page = store.events_after(channel_id, cursor, REPLAY_PAGE).await.map_err(|err| {
            warn!(%channel_id, error = %err, "replay failed");
            RequestError::unavailable()
        })?;
        if page.is_empty() {
            break;
        }
        for stored in page.into_iter().take_while(|stored| stored.seq <= up_to) {
            if stored.seq != cursor + 1 {
                warn!(%channel_id, expected = cursor + 1, found = stored.seq, "event log has a hole");
            }
            cursor = stored.seq;
            let frame = ServerFrame::Event { channel_id, seq: stored.seq, event: stored.event };
            // Replay waits for room in the queue, but only as long as a live client would need.
            let text: Arc<str> = Arc::from(frame.to_text());
            if state.closed {
                return Err(RequestError::unavailable());
            }
            if state.io.outbound.send_timeout(text, state.config.call_timeout).await.is_err() {
                state.close(myself, CLOSE_SLOW_CONSUMER, "slow consumer: replay not read");
                return Err(RequestError::unavailable());
            }
        }
        if cursor >= up_to {
            break;
        }
    }
    if let Some(delivered) = state.subscriptions.get_mut(&channel_id) {
        *delivered = (*delivered).max(cursor);
    }
    Ok(())
}

/// Turns a failed cast into its message, for a retry.
pub(crate) fn cast_failed<M>(err: MessagingErr<M>) -> Option<M> {
    match err {
        MessagingErr::SendErr(msg) => Some(msg),
        _ => None,
    }
}
