//! SessionActor: one per WebSocket connection, on the node that accepted it.
//!
//! It parses client frames, talks to channel and user actors, and writes server frames into a
//! bounded outbound queue that the node's socket writer drains. It tracks, per subscribed
//! channel, the last seq it delivered: duplicates are dropped and a gap is filled from the
//! store, so a client sees every durable event once and in order.
//!
//! **Invariant:** the outbound queue is bounded; a client that does not read is disconnected
//! with close code [`CLOSE_SLOW_CONSUMER`], it never makes the server buffer without bound.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::concurrency::oneshot;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::channel::{ChannelMsg, MessageDraft, Reply};
use crate::directory::Directory;
use crate::ports::Caller;
use crate::protocol::{
    parse_client_frame, ChannelSeq, ClientFrame, ErrorCode, PresenceStatus, RequestError, ServerFrame,
};
use crate::user::UserMsg;

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
}

/// How channel and user actors reach a session.
#[derive(Debug, Clone)]
pub struct SessionSink {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub actor: ActorRef<SessionMsg>,
}

impl SessionSink {
    /// `false` when the session is gone.
    pub fn deliver(&self, delivery: Delivery) -> bool {
        self.actor.cast(SessionMsg::Deliver(delivery)).is_ok()
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
    closed: bool,
}

impl SessionState {
    fn sink(&self, myself: &ActorRef<SessionMsg>) -> SessionSink {
        SessionSink { session_id: self.session_id, user_id: self.caller.user_id, actor: myself.clone() }
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
            closed: false,
        };
        let user = state.directory.user(state.caller.user_id).await.map_err(|err| format!("user actor: {err}"))?;
        user.cast(UserMsg::Attach { sink: state.sink(&myself) }).map_err(|_| "user actor stopped")?;
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
        for channel_id in state.subscriptions.keys() {
            if let Some(channel) = state.directory.find_channel(*channel_id) {
                if channel.cast(ChannelMsg::Unsubscribe { session_id }).is_err() {
                    debug!(%channel_id, "channel already stopped");
                }
            }
        }
        for user_id in state.watching.iter().chain(std::iter::once(&state.caller.user_id)) {
            if let Some(user) = state.directory.find_user(*user_id) {
                let detach = if *user_id == state.caller.user_id {
                    UserMsg::Detach { session_id }
                } else {
                    UserMsg::Unwatch { session_id }
                };
                if user.cast(detach).is_err() {
                    debug!(%user_id, "user actor already stopped");
                }
            }
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
            SessionMsg::Inbound(text) => on_inbound(&myself, state, &text).await,
            SessionMsg::Deliver(delivery) => on_delivery(&myself, state, delivery).await,
            SessionMsg::Reply(frame) => state.send_frame(&myself, &frame),
            SessionMsg::Close(frame) => state.close(&myself, frame.code, &frame.reason),
        }
        Ok(())
    }
}

async fn on_inbound(myself: &ActorRef<SessionMsg>, state: &mut SessionState, text: &str) {
    if !state.limiter.allow() {
        let err = RequestError::new(ErrorCode::RateLimited, "too many frames, slow down");
        state.send_frame(myself, &ServerFrame::error(None, &err));
        return;
    }
    let (request_id, frame) = match parse_client_frame(text) {
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

async fn on_frame(myself: &ActorRef<SessionMsg>, state: &mut SessionState, id: Option<String>, frame: ClientFrame) {
    let caller = state.caller;
    match frame {
        ClientFrame::Ping => state.send_frame(myself, &ServerFrame::Pong { id }),
        ClientFrame::Subscribe { channel_id, last_seq } => {
            let frame = match subscribe(myself, state, channel_id, last_seq).await {
                Ok(answer) => ok_frame(id, answer),
                Err(err) => ServerFrame::error(id, &err),
            };
            state.send_frame(myself, &frame);
        }
        ClientFrame::Unsubscribe { channel_id } => {
            let frame = if state.subscriptions.remove(&channel_id).is_some() {
                if let Some(channel) = state.directory.find_channel(channel_id) {
                    if channel.cast(ChannelMsg::Unsubscribe { session_id: state.session_id }).is_err() {
                        debug!(%channel_id, "channel stopped before unsubscribe");
                    }
                }
                ok_frame(id, serde_json::Value::Null)
            } else {
                ServerFrame::error(id, &RequestError::not_found("subscription"))
            };
            state.send_frame(myself, &frame);
        }
        ClientFrame::Send { channel_id, client_msg_id, body, parent_id, attachment_ids } => {
            let draft = MessageDraft { client_msg_id, body, parent_id, attachment_ids };
            let msg = move |reply| ChannelMsg::Send { caller, draft, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::Edit { channel_id, message_id, body } => {
            let msg = move |reply| ChannelMsg::Edit { caller, message_id, body, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::Delete { channel_id, message_id } => {
            let msg = move |reply| ChannelMsg::Delete { caller, message_id, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::React { channel_id, message_id, emoji } => {
            let msg = move |reply| ChannelMsg::React { caller, message_id, emoji, add: true, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::Unreact { channel_id, message_id, emoji } => {
            let msg = move |reply| ChannelMsg::React { caller, message_id, emoji, add: false, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::TypingStart { channel_id } => {
            let msg = move |reply| ChannelMsg::Typing { caller, active: true, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::TypingStop { channel_id } => {
            let msg = move |reply| ChannelMsg::Typing { caller, active: false, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::Read { channel_id, seq } => {
            let msg = move |reply| ChannelMsg::Read { caller, seq, reply };
            ask_channel(myself, state, id, channel_id, msg).await;
        }
        ClientFrame::PresenceSet { status } => {
            let frame = set_presence(state, status).await.map_or_else(
                |err| ServerFrame::error(id.clone(), &err),
                |()| ok_frame(id.clone(), serde_json::Value::Null),
            );
            state.send_frame(myself, &frame);
        }
        ClientFrame::PresenceWatch { user_ids } => {
            let frame = match watch_presence(myself, state, user_ids).await {
                Ok(views) => ok_frame(id, views),
                Err(err) => ServerFrame::error(id, &err),
            };
            state.send_frame(myself, &frame);
        }
        ClientFrame::PresenceUnwatch { user_ids } => {
            for user_id in user_ids {
                if state.watching.remove(&user_id) {
                    if let Some(user) = state.directory.find_user(user_id) {
                        if user.cast(UserMsg::Unwatch { session_id: state.session_id }).is_err() {
                            debug!(%user_id, "user actor stopped before unwatch");
                        }
                    }
                }
            }
            state.send_frame(myself, &ok_frame(id, serde_json::Value::Null));
        }
    }
}

/// Sends a request to a channel in mailbox order and answers the client when the channel
/// replies, without holding up this session's mailbox in the meantime.
async fn ask_channel<T, F>(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    id: Option<String>,
    channel_id: Uuid,
    build: F,
) where
    T: Serialize + Send + 'static,
    F: FnOnce(Reply<T>) -> ChannelMsg,
{
    let (tx, rx) = oneshot();
    let msg = build(RpcReplyPort::from(tx));
    if let Err(err) = state.directory.cast_channel(channel_id, msg).await {
        state.send_frame(myself, &ServerFrame::error(id, &err));
        return;
    }
    let session = myself.clone();
    let timeout = state.config.call_timeout;
    tokio::spawn(async move {
        let frame = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(value))) => ok_frame(id, value),
            Ok(Ok(Err(err))) => ServerFrame::error(id, &err),
            Ok(Err(_)) | Err(_) => ServerFrame::error(id, &RequestError::unavailable()),
        };
        if session.cast(SessionMsg::Reply(frame)).is_err() {
            debug!("session ended before its reply arrived");
        }
    });
}

async fn subscribe(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    channel_id: Uuid,
    last_seq: Option<ChannelSeq>,
) -> Result<crate::channel::SubscribeAnswer, RequestError> {
    if !state.subscriptions.contains_key(&channel_id) && state.subscriptions.len() >= state.config.max_subscriptions {
        return Err(RequestError::invalid(format!("at most {} subscriptions", state.config.max_subscriptions)));
    }
    let caller = state.caller;
    let sink = state.sink(myself);
    let answer = state
        .directory
        .ask_channel(channel_id, state.config.call_timeout, move |reply| ChannelMsg::Subscribe { caller, sink, reply })
        .await?;
    let head = answer.head_seq;
    let from = match last_seq {
        Some(seen) if seen < head => {
            replay(myself, state, channel_id, seen.max(0), head).await?;
            head
        }
        _ => head,
    };
    state.subscriptions.insert(channel_id, from);
    Ok(answer)
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

async fn on_delivery(myself: &ActorRef<SessionMsg>, state: &mut SessionState, delivery: Delivery) {
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

async fn set_presence(state: &mut SessionState, status: PresenceStatus) -> Result<(), RequestError> {
    if status == PresenceStatus::Offline {
        return Err(RequestError::invalid("a live session is online or away; close it to go offline"));
    }
    let user = state.directory.user(state.caller.user_id).await?;
    user.cast(UserMsg::SetStatus { session_id: state.session_id, status }).map_err(|_| RequestError::unavailable())
}

async fn watch_presence(
    myself: &ActorRef<SessionMsg>,
    state: &mut SessionState,
    user_ids: Vec<Uuid>,
) -> Result<Vec<crate::user::PresenceView>, RequestError> {
    if state.watching.len() + user_ids.len() > state.config.max_presence_watches {
        return Err(RequestError::invalid(format!("at most {} presence watches", state.config.max_presence_watches)));
    }
    let mut views = Vec::with_capacity(user_ids.len());
    for user_id in user_ids {
        let watcher = state.caller;
        let sink = state.sink(myself);
        let view = state
            .directory
            .ask_user(user_id, state.config.call_timeout, move |reply| UserMsg::Watch { watcher, sink, reply })
            .await?;
        state.watching.insert(user_id);
        views.push(view);
    }
    Ok(views)
}

/// Turns a failed cast into a request error; the message is given back for a retry.
pub(crate) fn cast_failed<M>(err: MessagingErr<M>) -> Option<M> {
    match err {
        MessagingErr::SendErr(msg) => Some(msg),
        _ => None,
    }
}
