//! The `fanout` scenario: every user subscribes to one channel, a few send timestamped messages
//! at a fixed rate, and every receiver measures latency and checks sequence order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{stream, SinkExt, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;
use crate::client::{self, Ws};
use crate::node::Node;
use crate::stats::{ms, now_micros, Samples, Table};

pub struct Options {
    pub users: usize,
    pub senders: usize,
    pub rate: f64,
    pub seconds: u64,
    pub drain_seconds: u64,
}

/// Totals shared by all clients, read by the drain loop.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    acked: AtomicU64,
    failed: AtomicU64,
    delivered: AtomicU64,
    max_acked_seq: AtomicI64,
    last_delivery_us: AtomicU64,
}

/// What one receiving client saw.
#[derive(Default)]
struct Report {
    /// Whether this socket's user also sends (its latency is reported apart as well).
    sender: bool,
    deliveries: u64,
    latency: Samples,
    ack_latency: Samples,
    next_seq: i64,
    gaps: u64,
    duplicates: u64,
    errors: BTreeMap<String, u64>,
    closed: Option<String>,
}

pub async fn run(node: &Node, opts: &Options) -> anyhow::Result<()> {
    let api = Api::new(&node.base)?;
    let setup = Instant::now();
    let (slug, admin) = api.create_company().await?;
    let users = api.create_users(&admin, &slug, opts.users).await.context("creating users")?;
    let channel = api.create_channel(&admin.token, "load").await?;
    api.join_all(&users, &channel).await.context("joining the channel")?;
    println!("setup: company {slug}, {} users, channel {channel} in {:.1} s", users.len(), secs(setup));

    let connecting = Instant::now();
    let ws_base = node.ws_base();
    let clients: Vec<(Ws, i64)> = stream::iter(&users)
        .map(|user| {
            let (ws_base, channel) = (&ws_base, &channel);
            async move {
                let mut ws = client::connect(ws_base, &user.token).await.map_err(|e| anyhow::anyhow!(e.describe()))?;
                let frame = json!({ "type": "subscribe", "channel_id": channel });
                let answer = client::request(&mut ws, "s", frame).await?;
                let head = answer["head_seq"].as_i64().with_context(|| format!("subscribe answer: {answer}"))?;
                anyhow::Ok((ws, head))
            }
        })
        .buffered(32)
        .try_collect()
        .await
        .context("connecting and subscribing")?;
    println!("connected and subscribed {} sockets in {:.1} s", clients.len(), secs(connecting));

    let receivers_count = clients.len() as u64;
    let senders = opts.senders.min(clients.len());
    let per_sender = (opts.rate * opts.seconds as f64).round() as u64;
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut idle_sinks = Vec::new();
    let mut sender_tasks = Vec::new();
    println!("sending: {senders} senders x {} msg/s for {} s ({per_sender} each)", opts.rate, opts.seconds);
    let send_start_us = now_micros();
    for (index, (ws, head)) in clients.into_iter().enumerate() {
        let (sink, stream) = ws.split();
        let report = Report { sender: index < senders, next_seq: head + 1, ..Report::default() };
        receivers.push(tokio::spawn(receive(stream, report, channel.clone(), shared.clone(), stop_rx.clone())));
        if index < senders {
            let offset = Duration::from_secs_f64(index as f64 / (opts.rate * senders as f64));
            let job = SendJob { sender: index, channel: channel.clone(), rate: opts.rate, count: per_sender, offset };
            sender_tasks.push(tokio::spawn(send(sink, job, shared.clone())));
        } else {
            idle_sinks.push(sink);
        }
    }
    let send_limit = Duration::from_secs(opts.seconds + 30);
    for task in sender_tasks {
        match tokio::time::timeout(send_limit, task).await {
            Ok(Ok(sink)) => idle_sinks.push(sink),
            Ok(Err(err)) => eprintln!("sender task failed: {err}"),
            Err(_) => eprintln!("a sender did not finish within {send_limit:?}"),
        }
    }
    let send_end_us = now_micros();

    let drained = drain(&shared, receivers_count, Duration::from_secs(opts.drain_seconds)).await;
    let _ = stop_tx.send(true);
    let mut total = Report::default();
    let mut reports = Vec::new();
    for receiver in receivers {
        match tokio::time::timeout(Duration::from_secs(10), receiver).await {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(err)) => eprintln!("receiver task failed: {err}"),
            Err(_) => eprintln!("a receiver did not stop in time"),
        }
    }
    stream::iter(idle_sinks).for_each_concurrent(64, |mut sink| async move { client::close(&mut sink).await }).await;

    let max_seq = shared.max_acked_seq.load(Relaxed);
    let mut missing_at_end = 0;
    let mut closed = Vec::new();
    let (mut at_senders, mut at_others) = (Samples::default(), Samples::default());
    for report in reports {
        let split = if report.sender { &mut at_senders } else { &mut at_others };
        split.extend(report.latency.clone());
        missing_at_end += u64::try_from(max_seq - (report.next_seq - 1)).unwrap_or(0);
        total.deliveries += report.deliveries;
        total.latency.extend(report.latency);
        total.ack_latency.extend(report.ack_latency);
        total.gaps += report.gaps;
        total.duplicates += report.duplicates;
        for (code, count) in report.errors {
            *total.errors.entry(code).or_default() += count;
        }
        closed.extend(report.closed);
    }

    let sent = shared.sent.load(Relaxed);
    let acked = shared.acked.load(Relaxed);
    let send_secs = (send_end_us.saturating_sub(send_start_us)) as f64 / 1e6;
    let delivery_secs = shared.last_delivery_us.load(Relaxed).saturating_sub(send_start_us) as f64 / 1e6;
    let ack_latency = total.ack_latency.sorted();
    let latency = total.latency.sorted();
    let mut table = Table::default();
    table.row("users (subscribed sockets)", receivers_count);
    table.row("senders", senders);
    table.row("target rate per sender", format!("{} msg/s", opts.rate));
    table.row("target total rate", format!("{} msg/s", opts.rate * senders as f64));
    table.row("send duration", format!("{send_secs:.2} s"));
    table.row("messages sent", sent);
    table.row("acks received", acked);
    table.row("send errors", shared.failed.load(Relaxed));
    table.row("achieved send rate", format!("{:.1} msg/s", per_sec(sent, send_secs)));
    table.row("ack latency p50", ms(ack_latency.percentile(50.0)));
    table.row("ack latency p99", ms(ack_latency.percentile(99.0)));
    table.row("ack latency max", ms(ack_latency.max()));
    table.row("deliveries expected", acked * receivers_count);
    table.row("deliveries received", total.deliveries);
    table.row("deliveries/s", format!("{:.0}", per_sec(total.deliveries, delivery_secs)));
    table.row("delivery latency p50", ms(latency.percentile(50.0)));
    table.row("delivery latency p99", ms(latency.percentile(99.0)));
    table.row("delivery latency max", ms(latency.max()));
    let (at_senders, at_others) = (at_senders.sorted(), at_others.sorted());
    table.row("delivery latency p50 at senders", ms(at_senders.percentile(50.0)));
    table.row("delivery latency p99 at senders", ms(at_senders.percentile(99.0)));
    table.row("delivery latency p50 at others", ms(at_others.percentile(50.0)));
    table.row("delivery latency p99 at others", ms(at_others.percentile(99.0)));
    table.row("seq gaps (missing seqs)", total.gaps);
    table.row("seq duplicates/reorders", total.duplicates);
    table.row("missing at end", missing_at_end);
    table.row("drained in time", if drained { "yes" } else { "no" });
    table.row("sockets closed by server", closed.len());
    for (code, count) in &total.errors {
        table.row(&format!("error frames {code}"), count);
    }
    table.print("fanout results");
    for reason in closed.iter().take(5) {
        println!("server closed a socket: {reason}");
    }
    Ok(())
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn per_sec(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Waits until every send is answered and every acked message reached every subscriber.
async fn drain(shared: &Shared, receivers: u64, limit: Duration) -> bool {
    let started = Instant::now();
    for _ in 0..100_000 {
        let answered = shared.acked.load(Relaxed) + shared.failed.load(Relaxed);
        let complete = answered >= shared.sent.load(Relaxed)
            && shared.delivered.load(Relaxed) >= shared.acked.load(Relaxed) * receivers;
        if complete {
            return true;
        }
        if started.elapsed() >= limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

struct SendJob {
    sender: usize,
    channel: String,
    rate: f64,
    count: u64,
    offset: Duration,
}

/// Sends `count` messages at `rate` per second, each body carrying its send time; returns the
/// sink so that the socket can be closed once everything is received.
async fn send(mut sink: SplitSink<Ws, Message>, job: SendJob, shared: Arc<Shared>) -> SplitSink<Ws, Message> {
    tokio::time::sleep(job.offset).await;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / job.rate));
    let sender = job.sender;
    for n in 0..job.count {
        tick.tick().await;
        let frame = json!({
            "id": format!("m{sender}-{n}"),
            "type": "send",
            "channel_id": job.channel,
            "client_msg_id": format!("bench-{sender}-{n}"),
            "body": format!("bench t={} s={sender} n={n}", now_micros()),
        });
        if let Err(err) = sink.send(Message::text(frame.to_string())).await {
            eprintln!("sender {sender}: send failed after {n} messages: {err}");
            break;
        }
        shared.sent.fetch_add(1, Relaxed);
    }
    sink
}

/// Reads one client's frames until told to stop or the socket ends.
async fn receive(
    mut stream: SplitStream<Ws>,
    mut report: Report,
    channel: String,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Report {
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = stream.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => report.on_text(text.as_str(), &channel, &shared),
            Some(Ok(Message::Close(frame))) => {
                report.closed = Some(format!("{frame:?}"));
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                report.closed = Some(format!("read error: {err}"));
                break;
            }
            None => {
                report.closed = Some("connection ended".to_owned());
                break;
            }
        }
    }
    report
}

/// The send time embedded in a bench message body (`… t=<micros> …`).
fn sent_at(body: &Value) -> Option<u64> {
    let body = body.as_str()?;
    let start = body.find("t=")? + 2;
    let digits = body[start..].split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok()
}

impl Report {
    fn on_text(&mut self, text: &str, channel: &str, shared: &Shared) {
        let now = now_micros();
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            *self.errors.entry("unparseable_frame".to_owned()).or_default() += 1;
            return;
        };
        match frame["type"].as_str() {
            Some("event") if frame["channel_id"] == channel => {
                let Some(seq) = frame["seq"].as_i64() else {
                    *self.errors.entry("event_without_seq".to_owned()).or_default() += 1;
                    return;
                };
                self.check_seq(seq);
                if frame["event"]["kind"] == "message_new" {
                    self.deliveries += 1;
                    shared.delivered.fetch_add(1, Relaxed);
                    shared.last_delivery_us.fetch_max(now, Relaxed);
                    if let Some(sent) = sent_at(&frame["event"]["message"]["body"]) {
                        self.latency.push(now.saturating_sub(sent));
                    }
                }
            }
            Some("ok") if frame["id"].as_str().is_some_and(|id| id.starts_with('m')) => {
                shared.acked.fetch_add(1, Relaxed);
                if let Some(seq) = frame["result"]["seq"].as_i64() {
                    shared.max_acked_seq.fetch_max(seq, Relaxed);
                }
                if let Some(sent) = sent_at(&frame["result"]["body"]) {
                    self.ack_latency.push(now.saturating_sub(sent));
                }
            }
            Some("error") => {
                if frame["id"].as_str().is_some_and(|id| id.starts_with('m')) {
                    shared.failed.fetch_add(1, Relaxed);
                }
                let code = frame["code"].as_str().unwrap_or("unknown").to_owned();
                *self.errors.entry(code).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Expects exactly `next_seq`; counts skipped numbers as gaps and old ones as duplicates.
    fn check_seq(&mut self, seq: i64) {
        if seq == self.next_seq {
            self.next_seq += 1;
        } else if seq > self.next_seq {
            self.gaps += u64::try_from(seq - self.next_seq).unwrap_or(0);
            self.next_seq = seq + 1;
        } else {
            self.duplicates += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_send_time_from_body() {
        assert_eq!(sent_at(&json!("bench t=12345 s=0 n=1")), Some(12345));
        assert_eq!(sent_at(&json!("no time")), None);
        assert_eq!(sent_at(&Value::Null), None);
    }

    #[test]
    fn counts_gaps_and_duplicates() {
        let mut report = Report { next_seq: 5, ..Report::default() };
        for seq in [5, 6, 9, 9, 10, 3] {
            report.check_seq(seq);
        }
        assert_eq!(report.gaps, 2);
        assert_eq!(report.duplicates, 2);
        assert_eq!(report.next_seq, 11);
    }
}
