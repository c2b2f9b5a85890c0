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
//!
//! The stricter checks on top: every stored and delivered copy has the body and sender that
//! were sent (content), a sender's messages keep the order that sender could observe, every
//! receiver reaches its channel's head after the drain (not behind), and every client that
//! lost its socket resumed.
//!
//! # Layout
//! - `setup`: company, users, channels over HTTP; the history download at the end.
//! - `shared`, `client`: the clients (one WebSocket each) and the state they share.
//! - `check`, `recovery`: pure checks and figures, unit tested.
//! - `summary`, `print`: gathering the figures, the verdict and the output.

mod check;
mod client;
mod print;
mod recovery;
mod setup;
mod shared;
mod summary;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::sync::watch;

use crate::api::Api;
use client::Client;
use shared::{unix_ms, Phase, Shared, Window};
use summary::{Inputs, Summary};

/// Per HTTP request during setup and history download.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for every client's first subscription round.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(60);

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
    let setup = setup::set_up(&apis, opts).await.context("setting up the company, users and channels")?;
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

    let history = setup::fetch_history(&apis, &setup).await;
    let actions = match &opts.actions {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => recovery::parse_actions(&text),
            Err(err) => {
                eprintln!("could not read the actions file {}: {err}", path.display());
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    let inputs = Inputs {
        channels: opts.channels,
        user_ids: &setup.user_ids,
        history: history.as_ref(),
        actions: &actions,
        traffic_started_ms,
        lost_clients,
    };
    let summary = Summary::new(&reports, &inputs);
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
