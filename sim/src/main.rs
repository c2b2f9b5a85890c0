//! `simulate`: an end-to-end working day against a running lark cluster, checked.
//!
//! Run with:
//! ```text
//! simulate --urls http://127.0.0.11:8000,http://127.0.0.12:8000,http://127.0.0.13:8000 \
//!     --users 50 --seconds 90 [--actions FILE] [--fcm http://127.0.0.1:9099] [--seed N]
//! ```
//!
//! # Layout
//! - `world.rs`: the company built over HTTP (users, offline users with a device, channels,
//!   DMs, planned meetings).
//! - `user.rs`: one online user's socket, reconnects and resume, checks of incoming frames.
//! - `actions.rs` / `meeting.rs`: what users do (messages, threads, files, reactions,
//!   edits, typing, receipts, presence; meetings and signaling).
//! - `conn.rs`: a WebSocket with request/answer matching; `api.rs`: HTTP with failover.
//! - `record.rs`: everything observed (one process, one clock); `stats.rs`: pure checks;
//!   `report.rs`: expected against received, the verdict, `SIM_RESULT {json}`.
//!
//! Prints `SIM_STARTED <unix_ms>` and `SIM_CHANNEL general <id>` when the day starts (for the
//! script that injects faults), a progress line every 10 s, then a summary and one line
//! `SIM_RESULT {json}`. Exit status 0 when every check passed, 1 otherwise, 2 on setup errors.

mod actions;
mod api;
mod conn;
mod meeting;
mod record;
mod report;
mod state;
mod stats;
mod user;
mod world;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tokio::sync::watch;

use crate::api::Api;
use crate::record::Recorder;
use crate::state::{Board, Phase, UserCtx};

struct Args {
    urls: Vec<String>,
    users: usize,
    seconds: u64,
    actions: Option<String>,
    fcm: Option<String>,
    seed: u64,
    drain_seconds: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args =
        Args { urls: Vec::new(), users: 50, seconds: 90, actions: None, fcm: None, seed: 1, drain_seconds: 20 };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        let mut value = || words.next().with_context(|| format!("{word} needs a value"));
        match word.as_str() {
            "--urls" => args.urls = value()?.split(',').map(|u| u.trim_end_matches('/').to_owned()).collect(),
            "--users" => args.users = value()?.parse().context("--users")?,
            "--seconds" => args.seconds = value()?.parse().context("--seconds")?,
            "--actions" => args.actions = Some(value()?),
            "--fcm" => args.fcm = Some(value()?.trim_end_matches('/').to_owned()),
            "--seed" => args.seed = value()?.parse().context("--seed")?,
            "--drain-seconds" => args.drain_seconds = value()?.parse().context("--drain-seconds")?,
            "-h" | "--help" => {
                println!("usage: simulate --urls U1,U2,U3 [--users 50] [--seconds 90] [--actions FILE] [--fcm URL] [--seed N] [--drain-seconds 20]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if args.urls.is_empty() {
        bail!("--urls is required");
    }
    if args.users < 4 {
        bail!("--users must be at least 4");
    }
    Ok(args)
}

#[tokio::main]
async fn main() {
    let code = match run().await {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(err) => {
            eprintln!("simulate: {err:#}");
            2
        }
    };
    std::process::exit(code);
}

async fn run() -> anyhow::Result<bool> {
    let args = parse_args()?;
    let api = Api::new(args.urls.clone())?;
    let setup_started = Instant::now();
    let world = Arc::new(world::build(&api, args.users).await?);
    println!(
        "company {} ready in {:.1} s: {} users ({} offline with a device), {} channels, {} meetings planned",
        world.slug,
        setup_started.elapsed().as_secs_f64(),
        world.users.len(),
        world.users.iter().filter(|u| !u.online).count(),
        world.channels.len(),
        world.meetings.len()
    );
    let rec = Arc::new(Recorder::new());
    println!("SIM_STARTED {}", rec.start_unix_ms);
    println!("SIM_CHANNEL general {}", world.channels[0].id);
    std::io::stdout().flush()?;

    let (phase_tx, phase_rx) = watch::channel(Phase::Run);
    let board = Arc::new(Board::new(&world.meetings));
    let mut tasks = Vec::new();
    for index in (0..world.users.len()).filter(|&u| world.users[u].online) {
        let ctx = Arc::new(UserCtx {
            index,
            world: world.clone(),
            rec: rec.clone(),
            api: api.clone(),
            board: board.clone(),
            phase: phase_rx.clone(),
            offers: Mutex::default(),
            recent: Mutex::new(HashMap::new()),
        });
        tasks.push(tokio::spawn(user::run(ctx, args.seed)));
    }
    for elapsed in (10..=args.seconds).step_by(10) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(rec.start + Duration::from_secs(elapsed))).await;
        progress(&rec, elapsed);
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(rec.start + Duration::from_secs(args.seconds))).await;
    phase_tx.send_replace(Phase::Drain);
    println!("traffic over; draining (at most {} s)", args.drain_seconds);
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    while Instant::now() < drain_deadline && !settled(&world, &rec) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phase_tx.send_replace(Phase::Stop);
    for task in tasks {
        // A task that does not stop within the bound is left behind: the process ends soon.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    let expected = report::expected_pushes(&world, &rec.lock(), rec.start);
    let ours: HashSet<String> = world.users.iter().filter_map(|u| u.device.clone()).collect();
    let pushes = match &args.fcm {
        Some(fcm) => {
            let received = wait_for_pushes(fcm, &expected).await;
            report::count_pushes(&expected, &received, &ours)
        }
        None => serde_json::json!({"expected": expected.len(), "received": null, "missing": null,
            "note": "no --fcm given: pushes not counted"}),
    };
    let actions = read_actions(args.actions.as_deref(), rec.start_unix_ms);
    let result = report::build(report::Inputs {
        world: &world,
        inner: &rec.lock(),
        pushes,
        actions,
        seconds: args.seconds,
        nodes: args.urls.len(),
        start_unix_ms: rec.start_unix_ms,
    });
    println!("{}", report::summary(&result));
    println!("SIM_RESULT {result}");
    Ok(result["verdict"] == "PASS")
}

fn progress(rec: &Recorder, elapsed: u64) {
    let inner = rec.lock();
    let acked = inner.sends.values().filter(|s| s.acked.is_some()).count();
    let errors: u64 = inner.errors.values().sum();
    println!(
        "t={elapsed:>3}s sent {} acked {} delivered {} signals {} reconnects {} errors {}",
        inner.sends.len(),
        acked,
        inner.received.len(),
        inner.signals.len(),
        inner.counters.get("reconnects").copied().unwrap_or(0),
        errors
    );
}

/// Every message acknowledged and delivered to every online member.
fn settled(world: &world::World, rec: &Recorder) -> bool {
    let inner = rec.lock();
    inner.sends.iter().all(|(id, sent)| {
        sent.acked.is_some() && world.online_members(sent.channel).all(|m| inner.received.contains(&(m, id.clone())))
    })
}

/// The fake FCM's accepted messages, once all expected pushes are there (or after 20 s).
async fn wait_for_pushes(fcm: &str, expected: &HashMap<report::PushKey, report::ExpectedPush>) -> Vec<Value> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build();
    let Ok(http) = http else { return Vec::new() };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let received: Vec<Value> = match http.get(format!("{fcm}/_fake/messages")).send().await {
            Ok(answer) => answer.json().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        let keys: HashSet<(String, String)> = received
            .iter()
            .map(|m| {
                let data = &m["data"];
                let id = data["message_id"].as_str().or(data["meeting_id"].as_str()).unwrap_or_default();
                (m["token"].as_str().unwrap_or_default().to_owned(), id.to_owned())
            })
            .collect();
        if expected.keys().all(|key| keys.contains(key)) || Instant::now() > deadline {
            return received;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The fault log: `<unix_ms> <label>` lines, as seconds since the start of the day.
fn read_actions(path: Option<&str>, start_unix_ms: u64) -> Vec<(f64, String)> {
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else { return Vec::new() };
    text.lines()
        .filter_map(|line| {
            let (ms, label) = line.trim().split_once(' ')?;
            let ms: u64 = ms.parse().ok()?;
            Some(((ms as f64 - start_unix_ms as f64) / 1000.0, label.trim().to_owned()))
        })
        .collect()
}
