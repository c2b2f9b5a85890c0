//! WebSocket client helpers: connect and wait for `hello`, request/answer round trips.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest wait for a handshake, the `hello` frame or an answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Client-side read buffer per socket (the library default is 128 KiB).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Frames skipped while waiting for a particular one before giving up.
const MAX_SKIPPED_FRAMES: usize = 10_000;

/// Why a connection attempt failed, coarsely, for the error summary.
#[derive(Debug)]
pub enum ConnectError {
    /// EMFILE: the bench ran out of file descriptors (`ulimit -n`).
    TooManyOpenFiles(String),
    Other(anyhow::Error),
}

impl ConnectError {
    pub fn describe(&self) -> String {
        match self {
            ConnectError::TooManyOpenFiles(text) => text.clone(),
            ConnectError::Other(err) => format!("{err:#}"),
        }
    }
}

pub fn classify(err: anyhow::Error) -> ConnectError {
    let text = format!("{err:#}");
    if text.contains("Too many open files") || text.contains("os error 24") {
        ConnectError::TooManyOpenFiles(text)
    } else {
        ConnectError::Other(err)
    }
}

/// Opens `GET /ws?token=…` and waits for the server's `hello` frame.
pub async fn connect(ws_base: &str, token: &str) -> Result<Ws, ConnectError> {
    connect_inner(ws_base, token).await.map_err(classify)
}

async fn connect_inner(ws_base: &str, token: &str) -> anyhow::Result<Ws> {
    let url = format!("{ws_base}/ws?token={token}");
    // Small frames only: a 128 KiB read buffer per socket would dominate the bench's own memory.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES);
    let handshake = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (mut ws, _) = tokio::time::timeout(CALL_TIMEOUT, handshake)
        .await
        .context("WebSocket handshake timed out")?
        .context("WebSocket handshake")?;
    let hello = next_json(&mut ws).await.context("waiting for hello")?;
    if hello["type"] != "hello" {
        bail!("expected hello, got {hello}");
    }
    Ok(ws)
}

/// The next JSON text frame (pings are answered by the library while reading).
pub async fn next_json(ws: &mut Ws) -> anyhow::Result<Value> {
    for _ in 0..MAX_SKIPPED_FRAMES {
        let message = tokio::time::timeout(CALL_TIMEOUT, ws.next())
            .await
            .context("timed out waiting for a frame")?
            .context("socket closed")?
            .context("socket read")?;
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).context("frame is not JSON"),
            Message::Close(close) => bail!("server closed the socket: {close:?}"),
            _ => {}
        }
    }
    bail!("no text frame among {MAX_SKIPPED_FRAMES} frames")
}

/// Sends a frame with request id `id` and returns the `result` of the matching `ok` frame.
/// Other frames arriving in between are dropped.
pub async fn request(ws: &mut Ws, id: &str, mut frame: Value) -> anyhow::Result<Value> {
    frame["id"] = Value::from(id);
    ws.send(Message::text(frame.to_string())).await.context("sending a request")?;
    for _ in 0..MAX_SKIPPED_FRAMES {
        let answer = next_json(ws).await?;
        if answer["id"] != id {
            continue;
        }
        return match answer["type"].as_str() {
            Some("ok") => Ok(answer["result"].clone()),
            _ => bail!("request {id} failed: {answer}"),
        };
    }
    bail!("no answer to request {id}")
}

/// Sends a close frame and flushes, without waiting long for a dead peer.
pub async fn close<S>(sink: &mut S)
where
    S: futures_util::Sink<Message> + Unpin,
{
    // Errors mean the peer is already gone, which is what closing wants anyway.
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(None))).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}
