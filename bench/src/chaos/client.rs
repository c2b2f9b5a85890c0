//! One chaos client: a user with one WebSocket at a time, subscribed to every channel, sending
//! at a fixed rate. It behaves like a careful real client: every send has a `client_msg_id`
//! and is resent with the same id until acknowledged; when the socket dies it reconnects to
//! the next node that answers and resubscribes each channel with the last seq it saw.
//! Everything it observes is recorded for the final check.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use super::check::{Ack, Seen, Sent, SeqTracker, Stored};
use super::recovery::Episode;
use super::shared::{unix_ms, Phase, Shared};
use crate::client::{self, Ws};

/// Housekeeping period: message generation, retries, pings.
const TICK: Duration = Duration::from_millis(20);
/// Longest wait for a WebSocket handshake and `hello` before trying the next node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An application `ping` goes out this often on an otherwise quiet socket.
const PING_EVERY: Duration = Duration::from_secs(2);
/// No frame at all for this long (pongs included): the node is gone or frozen; reconnect.
const STALL_AFTER: Duration = Duration::from_secs(6);
/// A send without any answer for this long is sent again (the server answers within 10 s).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(12);
/// Longest wait for the socket to take our frames.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many sends in flight per client (the server's burst limit is 100 frames).
const MAX_IN_FLIGHT: usize = 64;
/// Backoff for `unavailable` answers: 200 ms doubling, at most this.
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Resubscriptions asked for to refill a hole, per channel and connection.
const MAX_REFETCHES: u32 = 5;
/// Duplicate or late events kept as examples for the report, per client.
const MAX_EXAMPLES: usize = 5;

/// Everything one client saw, handed back when it stops.
#[derive(Debug, Default)]
pub struct ClientReport {
    /// The user's index (user1 is 0).
    pub user: usize,
    pub acks: Vec<Ack>,
    /// client_msg_ids still unacknowledged at the end.
    pub unacked: Vec<String>,
    /// Two acks for one client_msg_id with different seqs.
    pub ack_conflicts: u64,
    /// Acks repeated with the same seq (a resend of an already stored message).
    pub repeated_acks: u64,
    /// Acks whose `client_msg_id` differs from the one sent.
    pub ack_wrong_id: u64,
    /// Sends written again with the same client_msg_id.
    pub resends: u64,
    /// Sends given up on because of a non-retryable error, by code.
    pub rejected: BTreeMap<String, u64>,
    /// `error` frames by code (retried or not).
    pub error_frames: BTreeMap<String, u64>,
    /// Failed connection attempts by reason.
    pub connect_failures: BTreeMap<String, u64>,
    /// Why sockets ended, by reason.
    pub disconnect_reasons: BTreeMap<String, u64>,
    pub trackers: Vec<SeqTracker>,
    /// Per channel, seq → the message of every `message_new` that arrived.
    pub delivered: Vec<BTreeMap<i64, Stored>>,
    /// Every message this client composed, by client_msg_id: what its copies must match.
    pub sent: Vec<(String, Sent)>,
    /// `message_new` events received, replays and duplicates included.
    pub message_events: u64,
    pub episodes: Vec<Episode>,
    /// Per channel, when acks arrived (unix ms).
    pub ack_times: Vec<Vec<u64>>,
    /// First write → ack, in milliseconds.
    pub ack_latency_ms: Vec<u64>,
    /// Resubscriptions sent to refill a hole.
    pub refetches: u64,
    /// The first few events that arrived twice or late, for the report.
    pub misdelivered: Vec<Misdelivered>,
    /// Whether the first subscription round ever completed.
    pub initially_ready: bool,
    /// Index into the url list of the node the client was on last.
    pub last_url: usize,
}

/// An event that arrived twice (outside a replay asked for) or after a higher seq.
#[derive(Debug, Clone)]
pub struct Misdelivered {
    pub channel: usize,
    pub seq: i64,
    pub seen: Seen,
    /// Index into the url list of the node the socket was on.
    pub url: usize,
    pub at_ms: u64,
}

struct Pending {
    channel: usize,
    client_msg_id: String,
    body: String,
    attempt: u32,
    first_sent: Option<Instant>,
    /// The logical clock at the first write (see [`Ack`]).
    first_sent_tick: u64,
    in_flight_since: Option<Instant>,
    retry_at: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Sub {
    /// `subscribe` sent on this connection, answer awaited.
    Waiting,
    Ready,
    RetryAt(Instant),
}

/// Why a connection ended.
enum End {
    Stop,
    Lost(String),
}

pub struct Client {
    user: usize,
    token: String,
    shared: Arc<Shared>,
    phase: watch::Receiver<Phase>,
    channel_index: HashMap<String, usize>,
    /// Messages generated so far (the next one is number `generated`).
    generated: u64,
    pending: BTreeMap<u64, Pending>,
    acked: HashMap<u64, i64>,
    report: ClientReport,
    url: usize,
    connection: u64,
    subs: Vec<Sub>,
    refetches: Vec<u32>,
    episode: Option<Episode>,
    last_rx: Instant,
    last_ping: Instant,
    pings: u64,
    outbox: Vec<String>,
    /// Logical clock: one tick per first write and per ack, for the per-sender order check.
    clock: u64,
}

impl Client {
    pub fn new(user: usize, token: String, shared: Arc<Shared>, phase: watch::Receiver<Phase>) -> Self {
        let channels = shared.channels.len();
        let channel_index = shared.channels.iter().enumerate().map(|(index, id)| (id.clone(), index)).collect();
        let report = ClientReport {
            user,
            trackers: vec![SeqTracker::default(); channels],
            delivered: vec![BTreeMap::new(); channels],
            ack_times: vec![Vec::new(); channels],
            ..ClientReport::default()
        };
        let url = user % shared.urls.len();
        Self {
            user,
            token,
            shared,
            phase,
            channel_index,
            generated: 0,
            pending: BTreeMap::new(),
            acked: HashMap::new(),
            report,
            url,
            connection: 0,
            subs: vec![Sub::Waiting; channels],
            refetches: vec![0; channels],
            episode: None,
            last_rx: Instant::now(),
            last_ping: Instant::now(),
            pings: 0,
            outbox: Vec::new(),
            clock: 0,
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Runs until the orchestrator says stop; returns what was seen.
    pub async fn run(mut self) -> ClientReport {
        let mut first = true;
        while self.phase() != Phase::Stop {
            let Some(ws) = self.connect(first).await else { break };
            first = false;
            match self.serve(ws).await {
                End::Stop => break,
                End::Lost(reason) => self.lost(reason),
            }
        }
        if let Some(episode) = self.episode.take() {
            self.report.episodes.push(episode);
        }
        self.report.unacked = self.pending.values().map(|p| p.client_msg_id.clone()).collect();
        self.report.last_url = self.url;
        self.report
    }

    /// Tries the nodes in turn (the next one after the node just lost) until one accepts.
    async fn connect(&mut self, first: bool) -> Option<Ws> {
        let start = if first { self.url } else { (self.url + 1) % self.shared.urls.len() };
        for round in 0..u32::MAX {
            for url in self.shared.candidates(start) {
                if self.phase() == Phase::Stop {
                    return None;
                }
                self.generate();
                if let Some(episode) = self.episode.as_mut() {
                    episode.attempts += 1;
                }
                let ws_base = self.shared.urls[url].replacen("http://", "ws://", 1);
                let failure = match tokio::time::timeout(CONNECT_TIMEOUT, client::connect(&ws_base, &self.token)).await
                {
                    Ok(Ok(ws)) => {
                        self.url = url;
                        return Some(ws);
                    }
                    Ok(Err(err)) => short_reason(&err.describe()),
                    Err(_) => "connect timed out".to_owned(),
                };
                self.shared.avoid(url);
                *self.report.connect_failures.entry(failure).or_default() += 1;
            }
            let pause = Duration::from_millis(100u64 << round.min(4)).min(Duration::from_secs(1));
            let mut phase = self.phase.clone();
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = phase.wait_for(|phase| *phase == Phase::Stop) => return None,
            }
        }
        None
    }

    /// Subscribes every channel, then sends, receives and checks until the socket ends.
    async fn serve(&mut self, ws: Ws) -> End {
        self.connection += 1;
        self.last_rx = Instant::now();
        self.last_ping = Instant::now();
        self.refetches.iter_mut().for_each(|count| *count = 0);
        for channel in 0..self.subs.len() {
            self.subscribe(channel);
        }
        let (mut sink, mut stream) = ws.split();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()),
                    Some(Ok(Message::Close(frame))) => return End::Lost(describe_close(frame.as_ref())),
                    Some(Ok(_)) => self.last_rx = Instant::now(),
                    Some(Err(err)) => return End::Lost(short_reason(&format!("read error: {err}"))),
                    None => return End::Lost("connection ended".to_owned()),
                },
                _ = tick.tick() => self.housekeeping(),
            }
            if self.phase() == Phase::Stop {
                client::close(&mut sink).await;
                return End::Stop;
            }
            if self.last_rx.elapsed() > STALL_AFTER {
                return End::Lost(format!("no frame for {} s", STALL_AFTER.as_secs()));
            }
            if let Err(reason) = self.flush(&mut sink).await {
                return End::Lost(reason);
            }
        }
    }

    async fn flush(&mut self, sink: &mut SplitSink<Ws, Message>) -> Result<(), String> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let frames: Vec<String> = self.outbox.drain(..).collect();
        let write = async {
            for frame in frames {
                sink.feed(Message::text(frame)).await?;
            }
            sink.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(short_reason(&format!("write error: {err}"))),
            Err(_) => Err("write timed out".to_owned()),
        }
    }

    fn subscribe(&mut self, channel: usize) {
        let last_seq = self.report.trackers[channel].resubscribing();
        let frame = json!({
            "type": "subscribe",
            "id": format!("s{channel}.{}", self.connection),
            "channel_id": self.shared.channels[channel],
            "last_seq": last_seq,
        });
        self.outbox.push(frame.to_string());
        self.subs[channel] = Sub::Waiting;
    }

    /// The socket died: everything in flight is sent again after the next resubscription.
    fn lost(&mut self, reason: String) {
        self.shared.disconnects.fetch_add(1, Relaxed);
        *self.report.disconnect_reasons.entry(reason.clone()).or_default() += 1;
        for pending in self.pending.values_mut() {
            pending.in_flight_since = None;
            pending.retry_at = Instant::now();
        }
        self.subs.iter_mut().for_each(|sub| *sub = Sub::Waiting);
        self.outbox.clear();
        if self.episode.is_none() {
            self.episode = Some(Episode {
                user: self.user,
                from_url: self.url,
                to_url: None,
                disconnected_at_ms: unix_ms(),
                resumed_at_ms: None,
                reason,
                attempts: 0,
            });
        }
    }

    /// Generates the messages due by now (during traffic) as pending sends.
    fn generate(&mut self) {
        let Some(window) = self.shared.window.get() else { return };
        if self.phase() < Phase::Traffic {
            return;
        }
        let rate = self.shared.rate;
        let total = (rate * window.seconds).floor() as u64;
        let offset = self.user as f64 / (rate * self.shared.users as f64);
        let elapsed = window.start.elapsed().as_secs_f64() - offset;
        let due = if elapsed < 0.0 { 0 } else { ((elapsed * rate).floor() as u64 + 1).min(total) };
        let channels = self.shared.channels.len();
        let now = Instant::now();
        for n in self.generated..due {
            let pending = Pending {
                channel: (self.user + n as usize) % channels,
                client_msg_id: format!("{}-u{}-n{n}", self.shared.tag, self.user),
                body: format!("chaos u{} n{n} {}", self.user, self.shared.tag),
                attempt: 0,
                first_sent: None,
                first_sent_tick: 0,
                in_flight_since: None,
                retry_at: now,
            };
            let original = Sent { channel: pending.channel, sender: self.user, body: pending.body.clone() };
            self.report.sent.push((pending.client_msg_id.clone(), original));
            self.pending.insert(n, pending);
            self.generated += 1;
            self.shared.generated.fetch_add(1, Relaxed);
            self.shared.outstanding.fetch_add(1, Relaxed);
        }
    }

    /// Periodic work on a live socket: generate, retry, send, ping.
    fn housekeeping(&mut self) {
        self.generate();
        let now = Instant::now();
        for (channel, sub) in self.subs.clone().into_iter().enumerate() {
            if matches!(sub, Sub::RetryAt(at) if at <= now) {
                self.subscribe(channel);
            }
        }
        let mut in_flight = 0;
        for pending in self.pending.values_mut() {
            if let Some(since) = pending.in_flight_since {
                if now.duration_since(since) > ANSWER_TIMEOUT {
                    pending.in_flight_since = None;
                    pending.retry_at = now;
                    *self.report.error_frames.entry("client_timeout".to_owned()).or_default() += 1;
                } else {
                    in_flight += 1;
                }
            }
        }
        for (n, pending) in self.pending.iter_mut() {
            if in_flight >= MAX_IN_FLIGHT {
                break;
            }
            if pending.in_flight_since.is_some() || pending.retry_at > now || self.subs[pending.channel] != Sub::Ready {
                continue;
            }
            pending.attempt += 1;
            if pending.attempt > 1 {
                self.report.resends += 1;
            }
            if pending.first_sent.is_none() {
                pending.first_sent = Some(now);
                self.clock += 1;
                pending.first_sent_tick = self.clock;
            }
            pending.in_flight_since = Some(now);
            in_flight += 1;
            let frame = json!({
                "type": "send",
                "id": format!("m{n}.{}", pending.attempt),
                "channel_id": self.shared.channels[pending.channel],
                "client_msg_id": pending.client_msg_id,
                "body": pending.body,
            });
            self.outbox.push(frame.to_string());
        }
        if now.duration_since(self.last_ping) >= PING_EVERY {
            self.last_ping = now;
            self.pings += 1;
            self.outbox.push(json!({ "type": "ping", "id": format!("p{}", self.pings) }).to_string());
        }
    }

    fn on_text(&mut self, text: &str) {
        self.last_rx = Instant::now();
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            *self.report.error_frames.entry("unparseable_frame".to_owned()).or_default() += 1;
            return;
        };
        match frame["type"].as_str() {
            Some("event") => self.on_event(&frame),
            Some("ok") => self.on_ok(&frame),
            Some("error") => self.on_error(&frame),
            _ => {}
        }
    }

    fn on_event(&mut self, frame: &Value) {
        let Some(&channel) = frame["channel_id"].as_str().and_then(|id| self.channel_index.get(id)) else { return };
        let Some(seq) = frame["seq"].as_i64() else {
            *self.report.error_frames.entry("event_without_seq".to_owned()).or_default() += 1;
            return;
        };
        let seen = self.report.trackers[channel].on_event(seq);
        if matches!(seen, Seen::Duplicate | Seen::Late) && self.report.misdelivered.len() < MAX_EXAMPLES {
            let example = Misdelivered { channel, seq, seen, url: self.url, at_ms: unix_ms() };
            self.report.misdelivered.push(example);
        }
        let slot = self.user * self.shared.channels.len() + channel;
        self.shared.progress[slot].store(self.report.trackers[channel].contiguous(), Relaxed);
        if frame["event"]["kind"] == "message_new" {
            self.report.message_events += 1;
            if matches!(seen, Seen::New | Seen::Jump | Seen::Late) {
                let message = &frame["event"]["message"];
                let text = |key: &str| message[key].as_str().unwrap_or_default().to_owned();
                let copy = Stored {
                    seq,
                    client_msg_id: text("client_msg_id"),
                    body: text("body"),
                    sender_id: text("sender_id"),
                };
                self.report.delivered[channel].insert(seq, copy);
            }
        }
        if seen == Seen::Jump && self.subs[channel] == Sub::Ready {
            self.refetch(channel);
        }
    }

    /// Asks for a replay from the last contiguous seq, to fill a hole (bounded per connection).
    fn refetch(&mut self, channel: usize) {
        if self.refetches[channel] < MAX_REFETCHES {
            self.refetches[channel] += 1;
            self.report.refetches += 1;
            self.subscribe(channel);
        }
    }

    fn on_ok(&mut self, frame: &Value) {
        let Some(id) = frame["id"].as_str() else { return };
        if let Some(rest) = id.strip_prefix('m') {
            let Some(n) = rest.split('.').next().and_then(|n| n.parse::<u64>().ok()) else { return };
            self.on_ack(n, &frame["result"]);
        } else if let Some(rest) = id.strip_prefix('s') {
            let mut parts = rest.split('.').map(|part| part.parse::<u64>().ok());
            let (Some(Some(channel)), Some(Some(connection))) = (parts.next(), parts.next()) else { return };
            let channel = channel as usize;
            if connection != self.connection || channel >= self.subs.len() {
                return;
            }
            let head = frame["result"]["head_seq"].as_i64().unwrap_or(0);
            self.report.trackers[channel].subscribed(head);
            self.subs[channel] = Sub::Ready;
            if self.report.trackers[channel].unfilled_gaps() > 0 {
                self.refetch(channel);
            }
            if self.subs.iter().all(|sub| *sub == Sub::Ready) {
                self.resumed();
            }
        }
    }

    /// Every channel is subscribed again: the client has resumed.
    fn resumed(&mut self) {
        if !self.report.initially_ready {
            self.report.initially_ready = true;
            self.shared.ready.fetch_add(1, Relaxed);
        }
        if let Some(mut episode) = self.episode.take() {
            episode.to_url = Some(self.url);
            episode.resumed_at_ms = Some(unix_ms());
            self.report.episodes.push(episode);
        }
    }

    fn on_ack(&mut self, n: u64, result: &Value) {
        let Some(seq) = result["seq"].as_i64() else {
            *self.report.error_frames.entry("ack_without_seq".to_owned()).or_default() += 1;
            return;
        };
        if let Some(pending) = self.pending.remove(&n) {
            if result["client_msg_id"].as_str() != Some(pending.client_msg_id.as_str()) {
                self.report.ack_wrong_id += 1;
            }
            if let Some(sent) = pending.first_sent {
                self.report.ack_latency_ms.push(u64::try_from(sent.elapsed().as_millis()).unwrap_or(u64::MAX));
            }
            self.report.ack_times[pending.channel].push(unix_ms());
            self.clock += 1;
            self.report.acks.push(Ack {
                channel: pending.channel,
                client_msg_id: pending.client_msg_id,
                seq,
                sender: self.user,
                first_sent_tick: pending.first_sent_tick,
                acked_tick: self.clock,
            });
            self.acked.insert(n, seq);
            self.shared.acked.fetch_add(1, Relaxed);
            self.shared.outstanding.fetch_sub(1, Relaxed);
            self.shared.max_acked_seq[pending.channel].fetch_max(seq, Relaxed);
        } else if let Some(&first) = self.acked.get(&n) {
            if first == seq {
                self.report.repeated_acks += 1;
            } else {
                self.report.ack_conflicts += 1;
            }
        }
    }

    fn on_error(&mut self, frame: &Value) {
        let code = frame["code"].as_str().unwrap_or("unknown").to_owned();
        *self.report.error_frames.entry(code.clone()).or_default() += 1;
        let now = Instant::now();
        let Some(id) = frame["id"].as_str() else {
            if code == "rate_limited" {
                // Some request was dropped unanswered: resend whatever is in flight.
                for pending in self.pending.values_mut().filter(|p| p.in_flight_since.is_some()) {
                    pending.in_flight_since = None;
                    pending.retry_at = now + Duration::from_millis(500);
                }
            }
            return;
        };
        if let Some(rest) = id.strip_prefix('m') {
            let mut parts = rest.split('.').map(|part| part.parse::<u64>().ok());
            let (Some(Some(n)), Some(Some(attempt))) = (parts.next(), parts.next()) else { return };
            let Some(pending) = self.pending.get_mut(&n) else { return };
            if u64::from(pending.attempt) != attempt {
                return;
            }
            if matches!(code.as_str(), "unavailable" | "rate_limited" | "internal") {
                let backoff = Duration::from_millis(200u64 << pending.attempt.min(4)).min(MAX_RETRY_BACKOFF);
                pending.in_flight_since = None;
                pending.retry_at = now + backoff;
            } else {
                self.pending.remove(&n);
                *self.report.rejected.entry(code).or_default() += 1;
                self.shared.outstanding.fetch_sub(1, Relaxed);
            }
        } else if let Some(rest) = id.strip_prefix('s') {
            let mut parts = rest.split('.').map(|part| part.parse::<u64>().ok());
            let (Some(Some(channel)), Some(Some(connection))) = (parts.next(), parts.next()) else { return };
            if connection == self.connection && (channel as usize) < self.subs.len() {
                self.subs[channel as usize] = Sub::RetryAt(now + Duration::from_millis(500));
            }
        }
    }
}

/// A close frame as a short reason: `close 1012 server restarting, reconnect`.
fn describe_close(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(frame) => format!("close {} {}", u16::from(frame.code), frame.reason),
        None => "close without code".to_owned(),
    }
}

/// Error texts carry addresses and OS details; keep them short and groupable.
fn short_reason(text: &str) -> String {
    let text = text.replace('\n', " ");
    let lower = text.to_lowercase();
    if let Some(at) = text.find("code: ") {
        // "server closed the socket: Some(CloseFrame { code: Error, reason: ... })"
        let code: String = text[at + 6..].chars().take_while(|c| c.is_alphanumeric()).collect();
        return format!("closed before hello ({code})");
    }
    for (needle, reason) in [
        ("connection refused", "connection refused"),
        ("connection reset", "connection reset"),
        ("broken pipe", "broken pipe"),
        ("timed out", "timed out"),
        ("503", "503 unavailable"),
        ("without closing handshake", "reset without closing handshake"),
    ] {
        if lower.contains(needle) {
            return reason.to_owned();
        }
    }
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_short() {
        assert_eq!(short_reason("IO error: Connection refused (os error 111)"), "connection refused");
        assert_eq!(short_reason("HTTP error: 503 Service Unavailable"), "503 unavailable");
        let closed = "waiting for hello: server closed the socket: Some(CloseFrame { code: Error, reason: \"x\" })";
        assert_eq!(short_reason(closed), "closed before hello (Error)");
        assert_eq!(describe_close(None), "close without code");
    }
}
