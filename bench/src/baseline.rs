//! The baseline: a bare tokio-tungstenite WebSocket broadcast server (no auth, no storage),
//! run as a separate process (`bench baseline-server`) so that its CPU time and memory are
//! measured apart from the bench's.
//!
//! Protocol, shaped like lark's so the bench drives both the same way: `GET /ws?room=<name>`
//! (no room: an idle socket in no room); the server greets with `{"type":"hello"}`; a text
//! frame `{"type":"send","id":…,"body":…}` is broadcast to every socket of the room, the sender
//! included, as `{"type":"event","channel_id":…,"seq":…,"event":{"kind":"message_new",
//! "message":{"id":…,"body":…}}}`, and the sender gets `{"type":"ok","id":…,"result":{"seq":…}}`.
//!
//! It is meant to be a fair, reasonably efficient server: each event is serialized once and
//! shared by every recipient (`Utf8Bytes` is reference counted), every socket has a bounded
//! queue and a writer task that feeds up to 64 queued frames before one flush, and the I/O
//! buffers are 4 KiB like lark's. A socket whose queue is full is dropped (lark closes it with
//! 4008).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Frames queued per socket before it counts as a slow consumer (lark's `OUTBOUND_QUEUE`).
const QUEUE_FRAMES: usize = 512;
/// Frames written before one flush when many are queued (lark's writer does the same).
const MAX_FRAMES_PER_FLUSH: usize = 64;
/// Read and write buffer of each socket (lark's size).
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// This process's own binary on Linux.
const SELF_EXE: &str = "/proc/self/exe";

/// `ADDR` or `ADDR:PORT` (port 0 when missing).
pub fn bind_addr(raw: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: std::net::IpAddr =
        raw.parse().map_err(|_| anyhow::anyhow!("--bind takes ADDR or ADDR:PORT, not {raw:?}"))?;
    Ok(SocketAddr::new(ip, 0))
}

type Queue = mpsc::Sender<Message>;

#[derive(Default)]
struct Room {
    seq: u64,
    members: Vec<(u64, Queue)>,
}

#[derive(Default)]
struct Rooms {
    by_name: Mutex<HashMap<String, Arc<Mutex<Room>>>>,
    next_socket: AtomicU64,
}

impl Rooms {
    fn join(&self, name: &str, socket: u64, queue: Queue) -> Arc<Mutex<Room>> {
        let mut rooms = self.by_name.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let room = rooms.entry(name.to_owned()).or_default().clone();
        room.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).members.push((socket, queue));
        room
    }
}

#[derive(Deserialize)]
struct Incoming {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    body: String,
}

/// Serves until killed; prints `BASELINE_PORT <port>` once listening.
pub async fn serve(bind: SocketAddr) -> anyhow::Result<()> {
    let listener = TcpListener::bind(bind).await.with_context(|| format!("binding {bind}"))?;
    println!("BASELINE_PORT {}", listener.local_addr()?.port());
    let rooms = Arc::new(Rooms::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_socket(stream, rooms.clone()));
            }
            // Out of descriptors, or a connection reset before accept: keep serving.
            Err(err) => {
                eprintln!("baseline: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn room_of(request: &Request) -> Option<String> {
    request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix("room=")).map(str::to_owned)
}

async fn serve_socket(stream: TcpStream, rooms: Arc<Rooms>) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut room_name = None;
    // The error type is tungstenite's `ErrorResponse`; the callback never fails.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        room_name = room_of(request);
        Ok(response)
    };
    let config =
        WebSocketConfig::default().read_buffer_size(SOCKET_BUFFER_BYTES).write_buffer_size(SOCKET_BUFFER_BYTES);
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await else {
        return;
    };
    let (sink, mut stream) = ws.split();
    let (queue, outbound) = mpsc::channel(QUEUE_FRAMES);
    let writer = tokio::spawn(write_frames(sink, outbound));
    if queue.try_send(Message::text(r#"{"type":"hello"}"#)).is_err() {
        return;
    }
    let socket = rooms.next_socket.fetch_add(1, Relaxed);
    let room = room_name.as_deref().map(|name| (name.to_owned(), rooms.join(name, socket, queue.clone())));
    while let Some(Ok(message)) = stream.next().await {
        match message {
            Message::Text(text) => {
                let Ok(frame) = serde_json::from_str::<Incoming>(text.as_str()) else { continue };
                if let (Some((name, room)), "send") = (&room, frame.kind.as_str()) {
                    broadcast(name, room, frame, &queue);
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    if let Some((_, room)) = room {
        room.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).members.retain(|(id, _)| *id != socket);
    }
    drop(queue);
    if let Err(err) = writer.await {
        eprintln!("baseline: writer task failed: {err}");
    }
}

/// Serializes the event once and queues the same bytes for every member; acks the sender.
fn broadcast(name: &str, room: &Mutex<Room>, frame: Incoming, sender: &Queue) {
    let mut room = room.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    room.seq += 1;
    let seq = room.seq;
    let event = json!({
        "type": "event",
        "channel_id": name,
        "seq": seq,
        "event": { "kind": "message_new", "message": { "id": frame.id, "body": frame.body } },
    });
    let text = Utf8Bytes::from(event.to_string());
    // A full queue is a slow consumer: drop it from the room (its socket closes once idle).
    room.members.retain(|(_, queue)| queue.try_send(Message::Text(text.clone())).is_ok());
    drop(room);
    let ack = json!({ "type": "ok", "id": frame.id, "result": { "seq": seq } });
    // The sender's own queue being full means it is already being dropped from the room.
    let _ = sender.try_send(Message::text(ack.to_string()));
}

async fn write_frames(mut sink: SplitSink<WebSocketStream<TcpStream>, Message>, mut outbound: mpsc::Receiver<Message>) {
    while let Some(first) = outbound.recv().await {
        if sink.feed(first).await.is_err() {
            return;
        }
        for _ in 1..MAX_FRAMES_PER_FLUSH {
            let Ok(next) = outbound.try_recv() else { break };
            if sink.feed(next).await.is_err() {
                return;
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    // Every queue handle is gone (the socket's reader ended): a failed close means the peer
    // is already gone, which is what closing wants.
    let _ = sink.close().await;
}

/// A spawned `bench baseline-server` process.
pub struct Baseline {
    pub pid: u32,
    /// `ws://host:port`.
    pub ws_base: String,
    child: Child,
}

impl Baseline {
    /// Starts the baseline on `bind` (an IP address; the port is chosen by the kernel).
    pub async fn spawn(bind: &str) -> anyhow::Result<Self> {
        // `/proc/self/exe` runs this very binary even if `target/release/bench` was rebuilt
        // (replaced) since the bench started, which would make `current_exe` a dead path.
        let exe = if Path::new(SELF_EXE).exists() {
            PathBuf::from(SELF_EXE)
        } else {
            std::env::current_exe().context("locating the bench binary")?
        };
        let mut child = Command::new(exe)
            .args(["baseline-server", "--bind", &crate::node::listen_addr(bind, 0)])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the baseline server")?;
        let pid = child.id().context("the baseline exited at once")?;
        let stdout = child.stdout.take().context("the baseline's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .context("the baseline did not print its port within 10 s")??
            .context("the baseline exited before printing its port")?;
        let Some(port) = line.strip_prefix("BASELINE_PORT ").and_then(|port| port.trim().parse::<u16>().ok()) else {
            bail!("unexpected first line from the baseline: {line:?}");
        };
        let ws_base = format!("ws://{}:{port}", crate::node::client_host(bind));
        Ok(Self { pid, ws_base, child })
    }

    pub fn rss_kib(&self) -> Option<u64> {
        crate::stats::proc_status_kib(&self.pid.to_string(), "VmRSS")
    }

    pub async fn stop(mut self) {
        if let Err(err) = self.child.start_kill() {
            eprintln!("could not kill the baseline: {err}");
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await.is_err() {
            eprintln!("the baseline did not exit within 5 s");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bind_addresses() {
        assert_eq!(bind_addr("127.0.0.1").unwrap(), "127.0.0.1:0".parse().unwrap());
        assert_eq!(bind_addr("127.0.0.1:9000").unwrap(), "127.0.0.1:9000".parse().unwrap());
        assert!(bind_addr("localhost").is_err());
    }

    #[test]
    fn reads_the_room_from_the_query() {
        let request = Request::builder().uri("/ws?x=1&room=r7").body(()).unwrap();
        assert_eq!(room_of(&request).as_deref(), Some("r7"));
        let request = Request::builder().uri("/ws").body(()).unwrap();
        assert_eq!(room_of(&request), None);
    }
}
