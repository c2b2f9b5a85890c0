//! One measured run of traffic against one server: sockets already connected and subscribed,
//! some of them send timestamped 100-byte bodies at a fixed total rate, every socket counts
//! the deliveries it receives and their latency; the server's CPU time is read around the
//! window (first send → drain end).
//!
//! The receive path only scans each frame for a few markers (no JSON parse), so that the
//! bench, which shares the machine with the server, spends as little CPU per delivery as
//! it can. Sequence order is checked by the `fanout` scenario, not here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{stream, SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Ws};
use crate::cpu;
use crate::stats::{now_micros, Samples};

/// Body length of every message, as in the issue's measurements.
pub const BODY_BYTES: usize = 100;

/// Builds a send frame for (room index, request id, body).
pub type FrameFn = Arc<dyn Fn(usize, &str, &str) -> String + Send + Sync>;

/// A connected, subscribed socket and the room it receives.
pub struct Socket {
    pub room: usize,
    pub ws: Ws,
}

pub struct Plan {
    /// Total messages per second over all senders.
    pub rate: f64,
    pub seconds: f64,
    /// Longest wait after the last send for outstanding acks and deliveries.
    pub drain: Duration,
    /// Sockets per room: each acked message is expected this many times.
    pub room_size: u64,
    /// Tasks the sending sockets are spread over (each sends round-robin over its sockets).
    pub sender_tasks: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub target_rate: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub delivered: u64,
    pub expected: u64,
    pub send_secs: f64,
    /// First send → last delivery.
    pub delivery_secs: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
    pub server_cpu_us: Option<u64>,
    pub bench_cpu_us: Option<u64>,
    pub closed: usize,
    pub drained: bool,
    pub first_problem: Option<String>,
}

impl Outcome {
    pub fn deliveries_per_sec(&self) -> f64 {
        if self.delivery_secs > 0.0 {
            self.delivered as f64 / self.delivery_secs
        } else {
            0.0
        }
    }

    pub fn server_cpu_per_delivery(&self) -> Option<f64> {
        cpu::per_delivery(self.server_cpu_us, self.delivered)
    }

    pub fn bench_cpu_per_delivery(&self) -> Option<f64> {
        cpu::per_delivery(self.bench_cpu_us, self.delivered)
    }

    /// Kept up: sent (nearly) what was asked, every send acked and every delivery arrived
    /// within the drain, no socket closed, p99 within `p99_limit_us`.
    pub fn sustained(&self, seconds: f64, p99_limit_us: u64) -> bool {
        let asked = (self.target_rate * seconds).round() as u64;
        self.sent * 100 >= asked * 95
            && self.drained
            && self.errors == 0
            && self.closed == 0
            && self.p99_us.is_some_and(|p99| p99 <= p99_limit_us)
    }

    /// One line: delivered share, p50/p99, CPU per delivery.
    pub fn summary(&self) -> String {
        let share = if self.expected > 0 { 100.0 * self.delivered as f64 / self.expected as f64 } else { 0.0 };
        format!(
            "sent {} acked {} delivered {}/{} ({share:.1}%) at {:.0}/s, p50 {} p99 {}, server {} bench {} CPU-µs/delivery{}{}",
            self.sent,
            self.acked,
            self.delivered,
            self.expected,
            self.deliveries_per_sec(),
            crate::stats::ms(self.p50_us),
            crate::stats::ms(self.p99_us),
            fmt_opt(self.server_cpu_per_delivery()),
            fmt_opt(self.bench_cpu_per_delivery()),
            if self.closed > 0 { format!(", {} sockets closed by server", self.closed) } else { String::new() },
            self.first_problem.as_ref().map(|problem| format!(", first problem: {problem}")).unwrap_or_default(),
        )
    }
}

pub fn fmt_opt(value: Option<f64>) -> String {
    value.map_or_else(|| "n/a".to_owned(), |value| format!("{value:.2}"))
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    errors: AtomicU64,
    delivered: AtomicU64,
    last_delivery_us: AtomicU64,
    first_problem: Mutex<Option<String>>,
}

impl Counters {
    fn problem(&self, text: &str) {
        let mut first = self.first_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| text.chars().take(200).collect());
    }
}

/// Makes request ids unique across runs (lark deduplicates by `client_msg_id`).
static RUN: AtomicU64 = AtomicU64::new(0);

type Sink = SplitSink<Ws, Message>;

/// Runs the plan over `sockets`; the sockets at `senders` (indices) send. Closes every socket.
pub async fn run(sockets: Vec<Socket>, senders: &[usize], frame: FrameFn, plan: &Plan, server_pid: u32) -> Outcome {
    let run_id = RUN.fetch_add(1, Relaxed);
    let counters = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = plan.sender_tasks.clamp(1, senders.len().max(1));
    let mut groups: Vec<Vec<(usize, Sink)>> = (0..tasks).map(|_| Vec::new()).collect();
    let mut idle_sinks = Vec::new();
    let mut receivers = Vec::new();
    let mut placed = 0;
    let senders: std::collections::HashSet<usize> = senders.iter().copied().collect();
    for (index, socket) in sockets.into_iter().enumerate() {
        let (sink, stream) = socket.ws.split();
        receivers.push(tokio::spawn(receive(stream, counters.clone(), stop_rx.clone())));
        if senders.contains(&index) {
            groups[placed % tasks].push((socket.room, sink));
            placed += 1;
        } else {
            idle_sinks.push(sink);
        }
    }
    let per_task_rate = plan.rate / tasks as f64;
    let per_task_count = (plan.rate * plan.seconds / tasks as f64).round() as u64;

    let server_cpu = cpu::Window::start(&server_pid.to_string());
    let bench_cpu = cpu::Window::start("self");
    let send_start_us = now_micros();
    let mut sending = Vec::new();
    for (task, group) in groups.into_iter().enumerate() {
        let job = Job {
            name: format!("m{run_id}-{task}"),
            rate: per_task_rate,
            count: per_task_count,
            offset: Duration::from_secs_f64(task as f64 / plan.rate.max(1.0)),
        };
        sending.push(tokio::spawn(send(group, job, frame.clone(), counters.clone())));
    }
    let send_limit = Duration::from_secs_f64(plan.seconds + 30.0);
    for task in sending {
        match tokio::time::timeout(send_limit, task).await {
            Ok(Ok(sinks)) => idle_sinks.extend(sinks),
            Ok(Err(err)) => counters.problem(&format!("sender task failed: {err}")),
            Err(_) => counters.problem("a sender did not finish in time"),
        }
    }
    let send_secs = now_micros().saturating_sub(send_start_us) as f64 / 1e6;
    let drained = drain(&counters, plan.room_size, plan.drain).await;
    let server_cpu_us = server_cpu.elapsed_micros();
    let bench_cpu_us = bench_cpu.elapsed_micros();

    stop_tx.send_replace(true);
    let mut latency = Samples::default();
    let mut closed = 0;
    for receiver in receivers {
        match tokio::time::timeout(Duration::from_secs(10), receiver).await {
            Ok(Ok((samples, close))) => {
                latency.extend(samples);
                if let Some(reason) = close {
                    closed += 1;
                    counters.problem(&reason);
                }
            }
            Ok(Err(err)) => counters.problem(&format!("receiver task failed: {err}")),
            Err(_) => counters.problem("a receiver did not stop in time"),
        }
    }
    let closing =
        stream::iter(idle_sinks).for_each_concurrent(256, |mut sink| async move { client::close(&mut sink).await });
    if tokio::time::timeout(Duration::from_secs(20), closing).await.is_err() {
        eprintln!("closing the sockets took over 20 s; dropped the rest");
    }

    let latency = latency.sorted();
    let acked = counters.acked.load(Relaxed);
    let first_problem = counters.first_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    Outcome {
        target_rate: plan.rate,
        sent: counters.sent.load(Relaxed),
        acked,
        errors: counters.errors.load(Relaxed),
        delivered: counters.delivered.load(Relaxed),
        expected: acked * plan.room_size,
        send_secs,
        delivery_secs: counters.last_delivery_us.load(Relaxed).saturating_sub(send_start_us) as f64 / 1e6,
        p50_us: latency.percentile(50.0),
        p99_us: latency.percentile(99.0),
        max_us: latency.max(),
        server_cpu_us,
        bench_cpu_us,
        closed,
        drained,
        first_problem,
    }
}

struct Job {
    /// Request id prefix, unique per run and task.
    name: String,
    rate: f64,
    count: u64,
    offset: Duration,
}

/// Sends `count` messages at `rate`, round-robin over the task's sockets; returns the sinks.
async fn send(mut sinks: Vec<(usize, Sink)>, job: Job, frame: FrameFn, counters: Arc<Counters>) -> Vec<Sink> {
    tokio::time::sleep(job.offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / job.rate));
    for n in 0..job.count {
        tick.tick().await;
        let slot = (n % sinks.len() as u64) as usize;
        let (room, sink) = &mut sinks[slot];
        let id = format!("{}-{n}", job.name);
        let text = frame(*room, &id, &body(now_micros()));
        if let Err(err) = sink.send(Message::text(text)).await {
            counters.problem(&format!("send failed: {err}"));
            break;
        }
        counters.sent.fetch_add(1, Relaxed);
    }
    sinks.into_iter().map(|(_, sink)| sink).collect()
}

/// `bench t=<µs> ` padded with `x` to [`BODY_BYTES`].
pub fn body(sent_at_us: u64) -> String {
    let mut body = format!("bench t={sent_at_us} ");
    while body.len() < BODY_BYTES {
        body.push('x');
    }
    body
}

/// What a received frame is, judged from a few markers in its text.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// A `message_new` event, with the send time from its body.
    Delivery(Option<u64>),
    Ack,
    Error,
    Other,
}

pub fn classify(text: &str) -> Seen {
    if text.contains(r#""type":"event""#) {
        if text.contains(r#""message_new""#) {
            return Seen::Delivery(sent_at(text));
        }
        return Seen::Other;
    }
    if text.contains(r#""type":"ok""#) {
        return Seen::Ack;
    }
    if text.contains(r#""type":"error""#) {
        return Seen::Error;
    }
    Seen::Other
}

/// The `t=<µs>` of a bench body inside a frame.
fn sent_at(text: &str) -> Option<u64> {
    let start = text.find("bench t=")? + "bench t=".len();
    text[start..].split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Reads until stopped; returns the latency samples and why the server closed, if it did.
async fn receive(
    mut stream: SplitStream<Ws>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) -> (Samples, Option<String>) {
    let mut samples = Samples::default();
    let closed = loop {
        let message = tokio::select! {
            _ = stop.changed() => break None,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => match classify(text.as_str()) {
                Seen::Delivery(sent) => {
                    let now = now_micros();
                    counters.delivered.fetch_add(1, Relaxed);
                    counters.last_delivery_us.fetch_max(now, Relaxed);
                    if let Some(sent) = sent {
                        samples.push(now.saturating_sub(sent));
                    }
                }
                Seen::Ack => {
                    counters.acked.fetch_add(1, Relaxed);
                }
                Seen::Error => {
                    counters.errors.fetch_add(1, Relaxed);
                    counters.problem(text.as_str());
                }
                Seen::Other => {}
            },
            Some(Ok(Message::Close(frame))) => break Some(format!("closed by server: {frame:?}")),
            Some(Ok(_)) => {}
            Some(Err(err)) => break Some(format!("read error: {err}")),
            None => break Some("connection ended".to_owned()),
        }
    };
    (samples, closed)
}

/// Waits until every send is answered and every ack delivered `room_size` times.
async fn drain(counters: &Counters, room_size: u64, limit: Duration) -> bool {
    let started = Instant::now();
    loop {
        let acked = counters.acked.load(Relaxed);
        let answered = acked + counters.errors.load(Relaxed);
        if answered >= counters.sent.load(Relaxed) && counters.delivered.load(Relaxed) >= acked * room_size {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_100_bytes_and_carry_the_send_time() {
        let text = body(123_456);
        assert_eq!(text.len(), BODY_BYTES);
        assert_eq!(sent_at(&text), Some(123_456));
    }

    #[test]
    fn classifies_frames_by_markers() {
        let event = format!(
            r#"{{"type":"event","channel_id":"c","seq":3,"event":{{"kind":"message_new","message":{{"body":"{}"}}}}}}"#,
            body(42)
        );
        assert_eq!(classify(&event), Seen::Delivery(Some(42)));
        assert_eq!(classify(r#"{"type":"event","event":{"kind":"typing"}}"#), Seen::Other);
        assert_eq!(classify(r#"{"type":"ok","id":"m0-1","result":{"seq":3}}"#), Seen::Ack);
        assert_eq!(classify(r#"{"type":"error","code":"rate_limited"}"#), Seen::Error);
        assert_eq!(classify(r#"{"type":"hello"}"#), Seen::Other);
    }

    #[test]
    fn sustained_needs_every_condition() {
        let good = Outcome {
            target_rate: 100.0,
            sent: 1000,
            acked: 1000,
            delivered: 200_000,
            expected: 200_000,
            drained: true,
            p99_us: Some(5_000),
            ..Outcome::default()
        };
        assert!(good.sustained(10.0, 200_000));
        assert!(!Outcome { p99_us: Some(300_000), ..good.clone() }.sustained(10.0, 200_000));
        assert!(!Outcome { drained: false, ..good.clone() }.sustained(10.0, 200_000));
        assert!(!Outcome { sent: 900, ..good.clone() }.sustained(10.0, 200_000));
        assert!(!Outcome { closed: 1, ..good }.sustained(10.0, 200_000));
    }
}
