//! One WebSocket connection: a writer task, a reader task that matches `ok`/`error`/`pong`
//! answers to requests by id and hands every other frame to a callback, and a flag that says
//! the socket is gone (every request still waiting then fails with [`ReqError::Closed`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Message;

/// Longest wait for an answer (the server answers channel requests within 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(12);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReqError {
    /// An `error` frame with this code.
    Code(String),
    /// The socket ended before the answer.
    Closed,
    Timeout,
}

impl ReqError {
    pub fn code(&self) -> String {
        match self {
            ReqError::Code(code) => code.clone(),
            ReqError::Closed => "socket_closed".into(),
            ReqError::Timeout => "answer_timeout".into(),
        }
    }
}

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<Result<Value, ReqError>>>>>;

pub struct Conn {
    out: mpsc::UnboundedSender<Message>,
    waiters: Waiters,
    closed: Arc<AtomicBool>,
    closed_notify: Arc<Notify>,
    next_id: AtomicU64,
    /// Why the socket ended, once it has.
    pub end_reason: Arc<Mutex<Option<String>>>,
}

impl Conn {
    /// Connects to `http_base`'s `/ws`, waits for `hello`, then serves the socket; `on_frame`
    /// gets every frame that is not an answer to a request.
    pub async fn open<F>(http_base: &str, token: &str, on_frame: F) -> anyhow::Result<Conn>
    where
        F: Fn(Value) + Send + 'static,
    {
        let url = format!("{}/ws?token={token}", http_base.replacen("http://", "ws://", 1));
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("handshake timed out")?
            .context("handshake")?;
        let (mut sink, mut stream) = ws.split();
        let hello = tokio::time::timeout(CONNECT_TIMEOUT, stream.next()).await.context("hello timed out")?;
        match hello {
            Some(Ok(Message::Text(text))) if text.as_str().contains("\"hello\"") => {}
            other => bail!("expected hello, got {other:?}"),
        }
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let waiters: Waiters = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let closed_notify = Arc::new(Notify::new());
        let end_reason: Arc<Mutex<Option<String>>> = Arc::default();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                let is_close = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || is_close {
                    break;
                }
            }
        });
        let reader = Reader {
            waiters: waiters.clone(),
            closed: closed.clone(),
            notify: closed_notify.clone(),
            end_reason: end_reason.clone(),
        };
        tokio::spawn(async move {
            let reason = loop {
                match stream.next().await {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<Value>(text.as_str()) {
                        Ok(frame) => {
                            if let Some(frame) = reader.answer(frame) {
                                on_frame(frame);
                            }
                        }
                        Err(_) => on_frame(serde_json::json!({"type": "error", "code": "sim_bad_server_json"})),
                    },
                    Some(Ok(Message::Close(frame))) => {
                        break frame.map_or("close".to_owned(), |f| format!("close {}", u16::from(f.code)))
                    }
                    Some(Ok(_)) => {}
                    Some(Err(err)) => break format!("read error: {err}"),
                    None => break "connection ended".to_owned(),
                }
            };
            reader.finish(reason);
        });
        Ok(Conn { out, waiters, closed, closed_notify, next_id: AtomicU64::new(1), end_reason })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Resolves once the socket has ended.
    pub async fn wait_closed(&self) {
        while !self.is_closed() {
            let notified = self.closed_notify.notified();
            if self.is_closed() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), notified).await;
        }
    }

    /// Sends `frame` with a fresh request id; its `result` (or `Null`) once answered.
    pub async fn request(&self, frame: Value) -> Result<Value, ReqError> {
        self.request_within(frame, ANSWER_TIMEOUT).await
    }

    pub async fn request_within(&self, mut frame: Value, within: Duration) -> Result<Value, ReqError> {
        if self.is_closed() {
            return Err(ReqError::Closed);
        }
        let id = format!("q{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        frame["id"] = Value::from(id.clone());
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().expect("waiters").insert(id.clone(), tx);
        if self.out.send(Message::text(frame.to_string())).is_err() {
            self.waiters.lock().expect("waiters").remove(&id);
            return Err(ReqError::Closed);
        }
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ReqError::Closed),
            Err(_) => {
                self.waiters.lock().expect("waiters").remove(&id);
                Err(ReqError::Timeout)
            }
        }
    }

    /// Sends a close frame; the reader ends when the server answers or the socket drops.
    pub fn close(&self) {
        // A dead writer means the socket is already gone, which is what closing wants.
        let _ = self.out.send(Message::Close(None));
    }
}

struct Reader {
    waiters: Waiters,
    closed: Arc<AtomicBool>,
    notify: Arc<Notify>,
    end_reason: Arc<Mutex<Option<String>>>,
}

impl Reader {
    /// Completes the request a frame answers; hands back frames that answer nothing.
    fn answer(&self, frame: Value) -> Option<Value> {
        let kind = frame["type"].as_str().unwrap_or("");
        if !matches!(kind, "ok" | "error" | "pong") {
            return Some(frame);
        }
        let Some(id) = frame["id"].as_str() else { return Some(frame) };
        let Some(waiter) = self.waiters.lock().expect("waiters").remove(id) else { return Some(frame) };
        let answer = if kind == "error" {
            Err(ReqError::Code(frame["code"].as_str().unwrap_or("unknown").to_owned()))
        } else {
            Ok(frame.get("result").cloned().unwrap_or(Value::Null))
        };
        // The requester may have timed out and gone: nothing to tell then.
        let _ = waiter.send(answer);
        None
    }

    fn finish(&self, reason: String) {
        *self.end_reason.lock().expect("end reason") = Some(reason);
        self.closed.store(true, Ordering::SeqCst);
        for (_, waiter) in self.waiters.lock().expect("waiters").drain() {
            let _ = waiter.send(Err(ReqError::Closed));
        }
        self.notify.notify_waiters();
    }
}
