//! The WebSocket edge: authenticates the upgrade, spawns a `SessionActor`, and pumps frames
//! between the socket and the session. The socket loop is generic over `Sink`/`Stream` so it
//! can be driven by anything that speaks axum's `Message`.
//!
//! Close codes: 1009 frame too big to read, 1011 session failed to start, 1012 server
//! restarting (reconnect anywhere and resume), 4001 token expired, 4002 idle timeout,
//! 4008 slow consumer.

use std::time::Duration;

use actors::model::{ErrorCode, RequestError};
use actors::protocol::ServerFrame;
use actors::session::{
    session_io, CloseFrame, SessionActor, SessionArgs, SessionConfig, SessionMsg, SocketIo, CLOSE_IDLE_TIMEOUT,
    CLOSE_MESSAGE_TOO_BIG, CLOSE_SERVICE_RESTART, CLOSE_SLOW_CONSUMER, CLOSE_TOKEN_EXPIRED,
};
use axum::extract::ws::{self, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use ractor::{Actor, ActorRef};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::{bearer, AuthUser};
use crate::error::{ApiError, ApiQuery};
use actors::model::FrameText;

/// Each socket's read buffer, allocated for the socket's whole life: client frames are small
/// (a larger one is read into a buffer of its own size, in reads of this size).
const READ_BUFFER_BYTES: usize = 1024;
/// How much output a socket gathers before it writes (grown only while writing).
const WRITE_BUFFER_BYTES: usize = 4 * 1024;
/// Frames written before one flush (one system call) when many are queued.
const MAX_FRAMES_PER_FLUSH: usize = 64;

#[derive(Deserialize)]
pub struct WsParams {
    pub token: Option<String>,
}

/// `GET /ws`: the token comes in `Authorization: Bearer …` or `?token=…` (browsers cannot set
/// headers on a WebSocket). Refused before the upgrade with a JSON error if invalid.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<WsParams>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let token = bearer(&headers).or(params.token.as_deref()).ok_or_else(|| ApiError::unauthorized("missing token"))?;
    let auth = AuthUser::authorize(&state, token).await?;
    if *state.shutdown.borrow() {
        return Err(ApiError(RequestError::unavailable()));
    }
    let permit = state
        .connections
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "connection limit reached, try another node"))?;
    let max = state.config.max_ws_message_bytes;
    // Small I/O buffers: the library's 128 KiB read buffer per socket dominated idle memory.
    let upgrade = upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES);
    Ok(upgrade.on_upgrade(move |socket| serve_socket(state, auth, socket, permit)))
}

async fn serve_socket(state: AppState, auth: AuthUser, socket: WebSocket, permit: OwnedSemaphorePermit) {
    state.metrics.connections.inc();
    state.metrics.sessions.inc();
    let (sink, stream) = socket.split();
    run_session(state.clone(), auth, sink, stream).await;
    state.metrics.sessions.dec();
    drop(permit);
}

fn session_config(state: &AppState) -> SessionConfig {
    let config = &state.config;
    SessionConfig {
        heartbeat_interval: config.heartbeat_interval,
        idle_timeout: config.idle_timeout,
        rate_burst: config.limits.frames_burst,
        rate_per_sec: config.limits.frames_per_sec,
        ..SessionConfig::default()
    }
}

/// Runs one client connection to its end.
pub async fn run_session<W, R>(state: AppState, auth: AuthUser, mut sink: W, stream: R)
where
    W: Sink<Message> + Unpin + Send + 'static,
    W::Error: std::fmt::Display,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    let (io, socket_io) = session_io(state.config.outbound_queue);
    let session_id = Uuid::new_v4();
    let args = SessionArgs {
        session_id,
        caller: auth.caller,
        node_id: state.config.node_id.clone(),
        directory: state.directory.clone(),
        io,
        config: session_config(&state),
        limiter: Some(state.limits.frames()),
    };
    // Boxed: the spawn future is large and would otherwise stay inside this connection's
    // task for as long as the socket lives.
    let session = match Box::pin(Actor::spawn(None, SessionActor, args)).await {
        Ok((session, _)) => session,
        Err(err) => {
            warn!(user_id = %auth.caller.user_id, error = %err, "session failed to start");
            let close = ws::CloseFrame { code: 1011, reason: "session failed to start, retry".into() };
            if sink.send(Message::Close(Some(close))).await.is_err() {
                debug!("client gone before the close frame");
            }
            return;
        }
    };
    let writer = tokio::spawn(write_loop(
        sink,
        socket_io,
        state.config.heartbeat_interval,
        state.shutdown.clone(),
        state.clone(),
    ));
    match read_loop(&state, &auth, &session, stream).await {
        // The session sets the close frame for the writer, then stops itself.
        Some(close) => {
            if session.cast(SessionMsg::Close(close)).is_err() {
                debug!(%session_id, "session already gone");
            }
        }
        None => session.stop(Some("socket closed".to_owned())),
    }
    // The writer ends once the session's queue closes; do not wait on a dead peer for long.
    if tokio::time::timeout(Duration::from_secs(5), writer).await.is_err() {
        debug!(%session_id, "writer did not finish in time");
    }
}

/// Reads client frames until the socket ends (`None`) or the server must close it (`Some`).
async fn read_loop<R>(
    state: &AppState,
    auth: &AuthUser,
    session: &ActorRef<SessionMsg>,
    mut stream: R,
) -> Option<CloseFrame>
where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let idle_timeout = state.config.idle_timeout;
    let expires_in = Duration::from_secs(auth.expires_at.saturating_sub(unix_now()));
    let token_expiry = tokio::time::sleep(expires_in);
    tokio::pin!(token_expiry);
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(idle_timeout, stream.next()) => next,
            () = &mut token_expiry => {
                return Some(close_frame(CLOSE_TOKEN_EXPIRED, "token expired, reconnect with a fresh token"));
            }
        };
        let message = match next {
            Err(_) => return Some(close_frame(CLOSE_IDLE_TIMEOUT, "idle timeout")),
            Ok(None) => return None,
            Ok(Some(Err(err))) => {
                if is_too_big(err) {
                    let max = state.config.max_ws_message_bytes;
                    return Some(close_frame(CLOSE_MESSAGE_TOO_BIG, &format!("frame larger than {max} bytes")));
                }
                return None;
            }
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                state.metrics.frames_received.inc();
                if session.cast(SessionMsg::Inbound(text.to_string())).is_err() {
                    return None;
                }
            }
            Message::Binary(_) => {
                let err = RequestError::new(ErrorCode::BadFrame, "binary frames are not supported: send JSON text");
                if session.cast(SessionMsg::Reply(ServerFrame::error(None, &err))).is_err() {
                    return None;
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return None,
        }
    }
}

/// Whether a read failed because the client sent a frame over the size limit (the library
/// stops reading; the close code it would send is not the documented 1009, so we send it).
fn is_too_big(err: axum::Error) -> bool {
    match err.into_inner().downcast::<tungstenite::Error>() {
        Ok(err) => matches!(*err, tungstenite::Error::Capacity(_)),
        Err(other) => {
            debug!(error = %other, "socket read failed");
            false
        }
    }
}

fn close_frame(code: u16, reason: &str) -> CloseFrame {
    CloseFrame { code, reason: reason.to_owned() }
}

async fn write_loop<W>(
    mut sink: W,
    mut io: SocketIo,
    heartbeat: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    state: AppState,
) where
    W: Sink<Message> + Unpin,
    W::Error: std::fmt::Display,
{
    let mut ping = tokio::time::interval(heartbeat);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let close = loop {
        tokio::select! {
            biased;
            changed = io.close.changed() => {
                if changed.is_err() {
                    break None;
                }
                let frame = io.close.borrow().clone();
                if frame.as_ref().is_some_and(|f| f.code == CLOSE_SLOW_CONSUMER) {
                    state.metrics.slow_consumers.inc();
                }
                break frame;
            }
            stopping = async { shutdown.wait_for(|stopping| *stopping).await.is_ok() } => {
                if stopping {
                    break Some(CloseFrame { code: CLOSE_SERVICE_RESTART, reason: "server restarting, reconnect".to_owned() });
                }
                break None;
            }
            text = io.outbound.recv() => match text {
                Some(text) => {
                    // Coalesce: hand the socket every frame already queued, then flush once,
                    // so a burst costs one write instead of one per frame.
                    let mut next = Some(text);
                    let mut batched = 0;
                    while let Some(text) = next.take() {
                        if let Err(err) = sink.feed(Message::Text(text_frame(text))).await {
                            debug!(error = %err, "socket write failed");
                            return;
                        }
                        batched += 1;
                        if batched < MAX_FRAMES_PER_FLUSH {
                            next = io.outbound.try_recv().ok();
                        }
                    }
                    if let Err(err) = sink.flush().await {
                        debug!(error = %err, "socket flush failed");
                        return;
                    }
                }
                None => break io.close.borrow().clone(),
            },
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    };
    let close = close.map(|frame| ws::CloseFrame { code: frame.code, reason: frame.reason.into() });
    if sink.send(Message::Close(close)).await.is_err() {
        debug!("client gone before the close frame");
    }
    if sink.close().await.is_err() {
        debug!("socket already closed");
    }
}

/// The frame's shared bytes as the socket's text, without a copy (the check that they are
/// UTF-8 cannot fail: every frame text is made from a `String`).
fn text_frame(text: FrameText) -> ws::Utf8Bytes {
    ws::Utf8Bytes::try_from(text.into_bytes()).unwrap_or_else(|_| ws::Utf8Bytes::from_static(""))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}
