//! The `chaos` checker: clients talk to a running cluster while a script kills, pauses and
//! partitions nodes; afterwards the stored history is compared with what was acknowledged
//! and with what every receiver saw.
//!
//! Guarantees checked (DESIGN.md, "Guarantees to test"):
//! 1. an acknowledged message is never lost: every acked client_msg_id is in the history, at
//!    the acked seq, exactly once;
//! 2. per-channel order is the same for every receiver, and resuming yields no gap and no
//!    duplicate: each receiver sees every seq from 1 on, once, in increasing order, and the
//!    message at each seq is the stored one;
//! 3. any node accepts any client: clients are spread over all nodes and reconnect to any;
//! 4. killing a node, its clients resume elsewhere: the resume time is measured.

mod check;
mod client;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::{Account, Api};
use check::{Ack, Episode, HistoryCheck, Recovery, Stored};
use client::{unix_ms, Client, ClientReport, Phase, Shared, Window};

/// Per HTTP request during setup and history download.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts per setup step (each on the next node).
const SETUP_ATTEMPTS: usize = 8;
/// Longest wait for every client's first subscription round.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(60);
/// History page size (the API's maximum).
const PAGE: usize = 200;

#[derive(Debug, Clone)]
pub struct Options {
    /// `http://ip:port` of every node, no trailing slash.
    pub urls: Vec<String>,
    pub setup_url: Option<String>,
    pub seconds: u64,
    pub users: usize,
    pub channels: usize,
    /// Messages per second per user.
    pub rate: f64,
    /// Longest wait after the traffic for outstanding acks and deliveries.
    pub drain_seconds: u64,
    /// `<unix_ms> <label>` lines written by the scenario script, read at the end.
    pub actions: Option<PathBuf>,
}

struct Setup {
    admin: Account,
    users: Vec<Account>,
    channels: Vec<String>,
}

pub async fn run(opts: &Options) -> anyhow::Result<()> {
    let urls = &opts.urls;
    let mut apis: Vec<Api> = Vec::new();
    if let Some(setup_url) = &opts.setup_url {
        apis.push(Api::with_timeout(setup_url, HTTP_TIMEOUT)?);
    }
    for url in urls {
        if opts.setup_url.as_deref() != Some(url.as_str()) {
            apis.push(Api::with_timeout(url, HTTP_TIMEOUT)?);
        }
    }
    let started = Instant::now();
    let setup = set_up(&apis, opts).await.context("setting up the company, users and channels")?;
    println!(
        "setup: {} users, {} channels, every user in every channel, in {:.1} s",
        setup.users.len(),
        setup.channels.len(),
        started.elapsed().as_secs_f64()
    );
    println!("CHAOS_CHANNELS {}", setup.channels.join(","));

    let tag = format!("chaos-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let shared = Arc::new(Shared::new(urls.clone(), setup.channels.clone(), opts.rate, setup.users.len(), tag));
    let (phase_tx, phase_rx) = watch::channel(Phase::Connect);
    let tasks: Vec<_> = setup
        .users
        .iter()
        .enumerate()
        .map(|(user, account)| {
            let client = Client::new(user, account.token.clone(), shared.clone(), phase_rx.clone());
            tokio::spawn(client.run())
        })
        .collect();

    let connecting = Instant::now();
    while shared.ready.load(Relaxed) < setup.users.len() as u64 && connecting.elapsed() < CONNECT_PHASE_LIMIT {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready = shared.ready.load(Relaxed);
    println!(
        "connected and subscribed {ready}/{} clients over {} nodes in {:.1} s",
        setup.users.len(),
        urls.len(),
        connecting.elapsed().as_secs_f64()
    );

    let window = Window { start: Instant::now(), seconds: opts.seconds as f64 };
    let _ = shared.window.set(window);
    let _ = phase_tx.send(Phase::Traffic);
    let traffic_started_ms = unix_ms();
    println!("CHAOS_STARTED {traffic_started_ms} (sending {} msg/s per user for {} s)", opts.rate, opts.seconds);
    let traffic_end = window.start + Duration::from_secs(opts.seconds);
    let mut next_progress = window.start + Duration::from_secs(5);
    while Instant::now() < traffic_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(5);
            print_progress(&shared, window.start);
        }
    }

    let _ = phase_tx.send(Phase::Drain);
    let drain_start = Instant::now();
    let drain_limit = Duration::from_secs(opts.drain_seconds);
    while !shared.drained() && drain_start.elapsed() < drain_limit {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained = shared.drained();
    let drain_secs = drain_start.elapsed().as_secs_f64();
    println!("drain: {} after {drain_secs:.1} s", if drained { "complete" } else { "NOT complete" });
    let _ = phase_tx.send(Phase::Stop);

    let mut reports = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(15), task).await {
            Ok(Ok(report)) => reports.push(report),
            Ok(Err(err)) => eprintln!("a client task failed: {err}"),
            Err(_) => eprintln!("a client did not stop within 15 s"),
        }
    }
    let lost_clients = setup.users.len() - reports.len();

    let history = fetch_history(&apis, &setup).await;
    let actions = match &opts.actions {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => check::parse_actions(&text),
            Err(err) => {
                eprintln!("could not read the actions file {}: {err}", path.display());
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let summary = Summary::new(opts, &reports, history.as_ref(), &actions, traffic_started_ms, lost_clients);
    summary.print(opts, drain_secs, drained);
    if summary.failures.is_empty() {
        Ok(())
    } else {
        bail!("chaos check FAILED: {}", summary.failures.join("; "))
    }
}

fn print_progress(shared: &Shared, start: Instant) {
    println!(
        "[+{:>5.1} s] sent {} acked {} outstanding {} disconnects {}",
        start.elapsed().as_secs_f64(),
        shared.generated.load(Relaxed),
        shared.acked.load(Relaxed),
        shared.outstanding.load(Relaxed),
        shared.disconnects.load(Relaxed),
    );
}

/// Runs `step` on one node after another until it succeeds, at most `SETUP_ATTEMPTS` times.
async fn retry<T, F, Fut>(apis: &[Api], what: &str, step: F) -> anyhow::Result<T>
where
    F: Fn(Api) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut last = None;
    for attempt in 0..SETUP_ATTEMPTS {
        match step(apis[attempt % apis.len()].clone()).await {
            Ok(value) => return Ok(value),
            Err(err) => {
                eprintln!(
                    "setup: {what} failed on {} (attempt {}): {err:#}",
                    apis[attempt % apis.len()].base(),
                    attempt + 1
                );
                last = Some(err);
                tokio::time::sleep(Duration::from_millis(300 * (attempt as u64 + 1))).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no node to ask")).context(format!("{what}: giving up")))
}

async fn set_up(apis: &[Api], opts: &Options) -> anyhow::Result<Setup> {
    let (slug, admin) = retry(apis, "creating the company", |api| async move { api.create_company().await }).await?;
    let users: Vec<Account> = stream::iter(1..=opts.users)
        .map(|index| {
            let (admin, slug) = (&admin, &slug);
            async move {
                let username = format!("user{index}");
                retry(apis, "creating a user", |api| {
                    let username = username.clone();
                    async move { api.create_user(admin, &username).await }
                })
                .await?;
                retry(apis, "logging in", |api| {
                    let username = username.clone();
                    async move { api.login(slug, &username).await }
                })
                .await
            }
        })
        .buffered(4)
        .try_collect()
        .await?;
    let mut channels = Vec::new();
    for index in 0..opts.channels {
        let name = format!("chaos-{index}");
        let admin = &admin;
        let id = retry(apis, "creating a channel", |api| {
            let name = name.clone();
            async move { api.create_channel(&admin.token, &name).await }
        })
        .await?;
        channels.push(id);
    }
    let joins: Vec<(&Account, &String)> = users.iter().flat_map(|u| channels.iter().map(move |c| (u, c))).collect();
    stream::iter(joins)
        .map(|(user, channel)| {
            retry(apis, "joining a channel", move |api| async move { api.join(user, channel).await })
        })
        .buffer_unordered(8)
        .try_for_each(|()| async { Ok(()) })
        .await?;
    Ok(Setup { admin, users, channels })
}

/// Every channel's full message history, from the first node that serves it all.
async fn fetch_history(apis: &[Api], setup: &Setup) -> Option<Vec<Vec<Stored>>> {
    let mut history = Vec::new();
    for channel in &setup.channels {
        let mut fetched = None;
        for attempt in 0..apis.len() * 2 {
            let api = &apis[attempt % apis.len()];
            match fetch_channel(api, &setup.admin.token, channel).await {
                Ok(messages) => {
                    fetched = Some(messages);
                    break;
                }
                Err(err) => eprintln!("history of {channel} from {} failed: {err:#}", api.base()),
            }
        }
        history.push(fetched?);
    }
    Some(history)
}

async fn fetch_channel(api: &Api, token: &str, channel: &str) -> anyhow::Result<Vec<Stored>> {
    let mut messages = Vec::new();
    let mut after = 0;
    for _ in 0..100_000 {
        let page = api.get(&format!("/v1/channels/{channel}/messages?after={after}&limit={PAGE}"), token).await?;
        let items = page["messages"].as_array().with_context(|| format!("no messages in {page}"))?;
        for item in items {
            let seq = item["seq"].as_i64().with_context(|| format!("message without seq: {item}"))?;
            let client_msg_id = item["client_msg_id"].as_str().unwrap_or_default().to_owned();
            messages.push(Stored { seq, client_msg_id });
            after = after.max(seq);
        }
        if items.len() < PAGE {
            return Ok(messages);
        }
    }
    bail!("history of {channel} did not end")
}

/// The figures of a run and the verdict.
struct Summary {
    sent: u64,
    acked: u64,
    unacked: u64,
    rejected: BTreeMap<String, u64>,
    resends: u64,
    message_events: u64,
    history: Option<HistoryCheck>,
    ack_conflicts: u64,
    ack_wrong_id: u64,
    order_violations: u64,
    duplicates: u64,
    gaps_seen: u64,
    refetches: u64,
    unfilled_gaps: u64,
    not_delivered: u64,
    delivered_mismatches: u64,
    head_regressions: u64,
    disconnects: u64,
    episodes: Vec<Episode>,
    unresumed: usize,
    ack_latency_ms: Vec<u64>,
    longest_ack_pause: Option<(u64, usize, u64)>,
    recoveries: Vec<Recovery>,
    error_frames: BTreeMap<String, u64>,
    connect_failures: BTreeMap<String, u64>,
    disconnect_reasons: BTreeMap<String, u64>,
    traffic_started_ms: u64,
    /// Receivers missing events at the end.
    missing: Vec<Missing>,
    failures: Vec<String>,
}

/// One receiver's missing events in one channel at the end.
struct Missing {
    user: usize,
    channel: usize,
    contiguous: i64,
    max_seen: i64,
    head: i64,
    missing: u64,
    last_url: usize,
}

impl Summary {
    fn new(
        opts: &Options,
        reports: &[ClientReport],
        history: Option<&Vec<Vec<Stored>>>,
        actions: &[check::Action],
        traffic_started_ms: u64,
        lost_clients: usize,
    ) -> Self {
        let channels = opts.channels;
        let acks: Vec<Ack> = reports.iter().flat_map(|r| r.acks.iter().cloned()).collect();
        let history_check = history.map(|history| HistoryCheck::new(&acks, history));
        let mut ack_times = vec![Vec::new(); channels];
        let mut summary = Summary {
            sent: 0,
            acked: acks.len() as u64,
            unacked: 0,
            rejected: BTreeMap::new(),
            resends: 0,
            message_events: 0,
            history: history_check,
            ack_conflicts: 0,
            ack_wrong_id: 0,
            order_violations: 0,
            duplicates: 0,
            gaps_seen: 0,
            refetches: 0,
            unfilled_gaps: 0,
            not_delivered: 0,
            delivered_mismatches: 0,
            head_regressions: 0,
            disconnects: 0,
            episodes: Vec::new(),
            unresumed: 0,
            ack_latency_ms: Vec::new(),
            longest_ack_pause: None,
            recoveries: Vec::new(),
            error_frames: BTreeMap::new(),
            connect_failures: BTreeMap::new(),
            disconnect_reasons: BTreeMap::new(),
            traffic_started_ms,
            missing: Vec::new(),
            failures: Vec::new(),
        };
        // The head every receiver must reach: the highest seq anyone acked, stored or saw.
        let mut heads = vec![0i64; channels];
        for report in reports {
            for (channel, tracker) in report.trackers.iter().enumerate() {
                heads[channel] = heads[channel].max(tracker.max_seen());
            }
        }
        for ack in &acks {
            heads[ack.channel] = heads[ack.channel].max(ack.seq);
        }
        if let Some(history) = history {
            for (channel, messages) in history.iter().enumerate() {
                heads[channel] = heads[channel].max(messages.iter().map(|m| m.seq).max().unwrap_or(0));
            }
        }
        for report in reports {
            summary.unacked += report.unacked.len() as u64;
            summary.sent += report.acks.len() as u64 + report.unacked.len() as u64;
            for (code, count) in &report.rejected {
                summary.sent += count;
                *summary.rejected.entry(code.clone()).or_default() += count;
            }
            summary.resends += report.resends;
            summary.message_events += report.message_events;
            summary.ack_conflicts += report.ack_conflicts;
            summary.ack_wrong_id += report.ack_wrong_id;
            summary.refetches += report.refetches;
            for (channel, tracker) in report.trackers.iter().enumerate() {
                summary.order_violations += tracker.order_violations;
                summary.duplicates += tracker.duplicates;
                summary.gaps_seen += tracker.gaps_seen;
                summary.unfilled_gaps += tracker.unfilled_gaps();
                summary.not_delivered += tracker.missing_up_to(heads[channel]) - tracker.unfilled_gaps();
                summary.head_regressions += tracker.head_regressions;
                let missing = tracker.missing_up_to(heads[channel]);
                if missing > 0 {
                    summary.missing.push(Missing {
                        user: report.user,
                        channel,
                        contiguous: tracker.contiguous(),
                        max_seen: tracker.max_seen(),
                        head: heads[channel],
                        missing,
                        last_url: report.last_url,
                    });
                }
                if let Some(history) = history {
                    summary.delivered_mismatches +=
                        check::delivered_mismatches(&report.delivered[channel], &history[channel]);
                }
            }
            summary.disconnects += report.disconnect_reasons.values().sum::<u64>();
            summary.episodes.extend(report.episodes.iter().cloned());
            summary.ack_latency_ms.extend(&report.ack_latency_ms);
            for (channel, times) in report.ack_times.iter().enumerate() {
                ack_times[channel].extend(times);
            }
            for (from, to) in [
                (&report.error_frames, &mut summary.error_frames),
                (&report.connect_failures, &mut summary.connect_failures),
                (&report.disconnect_reasons, &mut summary.disconnect_reasons),
            ] {
                for (key, count) in from {
                    *to.entry(key.clone()).or_default() += count;
                }
            }
        }
        summary.unresumed = summary.episodes.iter().filter(|e| e.resumed_at_ms.is_none()).count();
        for (channel, times) in ack_times.iter_mut().enumerate() {
            times.sort_unstable();
            for pair in times.windows(2) {
                let pause = pair[1] - pair[0];
                if summary.longest_ack_pause.is_none_or(|(longest, _, _)| pause > longest) {
                    summary.longest_ack_pause = Some((pause, channel, pair[0]));
                }
            }
        }
        summary.recoveries = check::recoveries(actions, &summary.episodes, &ack_times);
        summary.judge(lost_clients);
        summary
    }

    fn judge(&mut self, lost_clients: usize) {
        let mut fail = |count: u64, what: &str| {
            if count > 0 {
                self.failures.push(format!("{what}: {count}"));
            }
        };
        match &self.history {
            Some(history) => {
                fail(history.lost.len() as u64, "acknowledged-but-lost");
                fail(history.mismatched.len() as u64, "ack seq mismatches");
                fail(history.duplicates, "duplicates in history");
                fail(history.disorder, "history out of seq order");
            }
            None => fail(1, "history could not be fetched from any node"),
        }
        fail(self.ack_conflicts, "conflicting acks for one client_msg_id");
        fail(self.ack_wrong_id, "acks for another client_msg_id");
        fail(self.order_violations, "order violations at receivers");
        fail(self.duplicates, "duplicates at receivers");
        fail(self.unfilled_gaps, "unfilled gaps at receivers");
        fail(self.not_delivered, "not delivered at end");
        fail(self.delivered_mismatches, "delivered events differing from history");
        fail(self.head_regressions, "subscribe head_seq below a seq already seen");
        fail(lost_clients as u64, "client tasks that did not report");
    }

    fn print(&self, opts: &Options, drain_secs: f64, drained: bool) {
        let resumes: Vec<u64> = self.episodes.iter().filter_map(Episode::resume_ms).collect();
        let (resume_median, resume_max) = check::median_max(&resumes);
        let mut latency = self.ack_latency_ms.clone();
        latency.sort_unstable();
        let percentile = |p: f64| percentile_of(&latency, p);
        let ms = |value: Option<u64>| value.map_or_else(|| "n/a".to_owned(), |v| format!("{v} ms"));
        let history = self.history.as_ref();
        let count = |value: Option<u64>| value.map_or_else(|| "n/a (no history)".to_owned(), |v| v.to_string());
        let mut table = crate::stats::Table::default();
        table.row("nodes", opts.urls.len());
        table.row("users / channels", format!("{} / {}", opts.users, opts.channels));
        table.row("rate", format!("{} msg/s per user, {} s, drain {drain_secs:.1} s", opts.rate, opts.seconds));
        table.row("messages sent (attempted)", self.sent);
        table.row("acknowledged", self.acked);
        table.row("unacknowledged at end", self.unacked);
        table.row("rejected (not retried)", self.rejected.values().sum::<u64>());
        table.row("resends (same client_msg_id)", self.resends);
        table.row("stored in history", count(history.map(|h| h.stored)));
        table.row("stored but never acked", count(history.map(|h| h.stored_unacked)));
        table.row("delivered (message events received)", self.message_events);
        table.row("acknowledged-but-lost", count(history.map(|h| h.lost.len() as u64)));
        table.row("ack seq mismatches", count(history.map(|h| h.mismatched.len() as u64)));
        table.row("conflicting acks", self.ack_conflicts);
        table.row("duplicates in history", count(history.map(|h| h.duplicates)));
        table.row("order violations", self.order_violations);
        table.row("duplicates at receivers", self.duplicates);
        table.row("gaps seen at receivers", self.gaps_seen);
        table.row("unfilled gaps at receivers", self.unfilled_gaps);
        table.row("not delivered at end", self.not_delivered);
        table.row("delivered events differing from history", self.delivered_mismatches);
        table.row("drained in time", if drained { "yes" } else { "no" });
        table.row("reconnects (sockets lost)", self.disconnects);
        table.row("resumes / never resumed", format!("{} / {}", resumes.len(), self.unresumed));
        table.row("resume time median", ms(resume_median));
        table.row("resume time max", ms(resume_max));
        table.row("ack latency p50 / p99 / max", {
            format!("{} / {} / {}", ms(percentile(50.0)), ms(percentile(99.0)), ms(latency.last().copied()))
        });
        table.row(
            "longest ack pause in a channel",
            match self.longest_ack_pause {
                Some((pause, channel, at)) => format!(
                    "{pause} ms (channel {channel}, from +{:.1} s)",
                    at.saturating_sub(self.traffic_started_ms) as f64 / 1000.0
                ),
                None => "n/a".to_owned(),
            },
        );
        table.print("chaos results");
        let groups = [
            ("error frames", &self.error_frames),
            ("rejected sends", &self.rejected),
            ("sockets lost", &self.disconnect_reasons),
            ("failed connection attempts", &self.connect_failures),
        ];
        for (title, counts) in groups {
            if !counts.is_empty() {
                let items: Vec<String> = counts.iter().map(|(key, count)| format!("{key} x{count}")).collect();
                println!("{title}: {}", items.join(", "));
            }
        }
        if let Some(history) = history {
            for ack in history.lost.iter().take(10) {
                println!("LOST: channel {} client_msg_id {} acked at seq {}", ack.channel, ack.client_msg_id, ack.seq);
            }
            for (ack, stored) in history.mismatched.iter().take(10) {
                println!("MISMATCH: {} acked at seq {} but stored at seq {stored}", ack.client_msg_id, ack.seq);
            }
        }
        for m in self.missing.iter().take(12) {
            println!(
                "MISSING at user{} (last on {}): channel {}: {} of seqs 1..={} never arrived (contiguous to {}, highest seen {})",
                m.user + 1,
                opts.urls[m.last_url],
                m.channel,
                m.missing,
                m.head,
                m.contiguous,
                m.max_seen
            );
        }
        if self.missing.len() > 12 {
            println!("... and {} more receiver/channel pairs missing events", self.missing.len() - 12);
        }
        if !self.recoveries.is_empty() {
            println!();
            println!("== recovery after each action ==");
            for recovery in &self.recoveries {
                println!("{}", describe_recovery(recovery, self.traffic_started_ms));
            }
        }
        let mut episodes = self.episodes.clone();
        episodes.sort_by_key(|e| e.disconnected_at_ms);
        if !episodes.is_empty() {
            println!();
            println!("== lost connections ==");
            for episode in &episodes {
                let to = episode.to_url.map_or_else(|| "-".to_owned(), |url| opts.urls[url].clone());
                println!(
                    "+{:>6.2} s user{} {} -> {} after {} ({} attempts): {}",
                    episode.disconnected_at_ms.saturating_sub(self.traffic_started_ms) as f64 / 1000.0,
                    episode.user + 1,
                    opts.urls[episode.from_url],
                    to,
                    ms(episode.resume_ms()),
                    episode.attempts,
                    episode.reason
                );
            }
        }
        println!();
        if self.failures.is_empty() {
            println!("verdict: PASS (no acknowledged message lost, no duplicate, no gap, same order everywhere)");
        } else {
            println!("verdict: FAIL ({})", self.failures.join("; "));
        }
        println!("CHAOS_RESULT {}", self.json(opts, resume_median, resume_max, &latency, drained));
    }

    fn json(
        &self,
        opts: &Options,
        resume_median: Option<u64>,
        resume_max: Option<u64>,
        latency: &[u64],
        drained: bool,
    ) -> Value {
        let history = self.history.as_ref();
        let recoveries: Vec<Value> = self
            .recoveries
            .iter()
            .map(|r| {
                json!({
                    "label": r.action.label,
                    "at_ms": r.action.at_ms,
                    "disconnected": r.disconnected,
                    "unresumed": r.unresumed,
                    "all_resumed_after_ms": r.all_resumed_after_ms,
                    "max_resume_ms": r.max_resume_ms,
                    "longest_ack_pause_ms": r.longest_ack_pause_ms,
                })
            })
            .collect();
        json!({
            "passed": self.failures.is_empty(),
            "failures": self.failures,
            "nodes": opts.urls.len(),
            "users": opts.users,
            "channels": opts.channels,
            "rate": opts.rate,
            "seconds": opts.seconds,
            "sent": self.sent,
            "acknowledged": self.acked,
            "unacknowledged_at_end": self.unacked,
            "rejected": self.rejected.values().sum::<u64>(),
            "resends": self.resends,
            "stored": history.map(|h| h.stored),
            "stored_unacked": history.map(|h| h.stored_unacked),
            "delivered": self.message_events,
            "acknowledged_but_lost": history.map(|h| h.lost.len()),
            "ack_seq_mismatches": history.map(|h| h.mismatched.len()),
            "ack_conflicts": self.ack_conflicts,
            "history_duplicates": history.map(|h| h.duplicates),
            "order_violations": self.order_violations,
            "receiver_duplicates": self.duplicates,
            "gaps_seen": self.gaps_seen,
            "refetches": self.refetches,
            "unfilled_gaps": self.unfilled_gaps,
            "not_delivered_at_end": self.not_delivered,
            "delivered_history_mismatches": self.delivered_mismatches,
            "drained": drained,
            "reconnects": self.disconnects,
            "resumes": self.episodes.len() - self.unresumed,
            "unresumed": self.unresumed,
            "resume_ms_median": resume_median,
            "resume_ms_max": resume_max,
            "ack_latency_ms_p50": percentile_of(latency, 50.0),
            "ack_latency_ms_p99": percentile_of(latency, 99.0),
            "ack_latency_ms_max": latency.last(),
            "longest_ack_pause_ms": self.longest_ack_pause.map(|(pause, _, _)| pause),
            "traffic_started_ms": self.traffic_started_ms,
            "recoveries": recoveries,
        })
    }
}

fn percentile_of(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn describe_recovery(recovery: &Recovery, traffic_started_ms: u64) -> String {
    let at = recovery.action.at_ms as i64 - traffic_started_ms as i64;
    let mut line = format!("+{:>6.2} s {}: ", at as f64 / 1000.0, recovery.action.label);
    if recovery.disconnected == 0 {
        line.push_str("no client lost its socket");
    } else {
        line.push_str(&format!("{} clients lost their socket", recovery.disconnected));
        match recovery.all_resumed_after_ms {
            Some(after) => line.push_str(&format!(
                ", all resumed {after} ms after the action (longest resume {} ms)",
                recovery.max_resume_ms.unwrap_or(0)
            )),
            None => line.push_str(&format!(", {} NEVER resumed", recovery.unresumed)),
        }
    }
    if let Some(pause) = recovery.longest_ack_pause_ms {
        line.push_str(&format!("; longest ack pause {pause} ms"));
    }
    line
}
