//! Lark side by side with a bare tokio-tungstenite broadcast server (the baseline, see
//! `baseline.rs`), every figure printed as lark / baseline (issue 12).
//!
//! # Layout
//! - `load.rs`: one measured run of traffic over connected sockets (rate, drain, latency,
//!   server CPU time from `/proc/<pid>/stat`).
//! - `servers.rs`: how a socket joins a room on lark (token + subscribe) and on the baseline.
//! - `traffic.rs`: the `fanout-ratio`, `saturation` and `rooms` scenarios (one node and one
//!   baseline process shared by the three).
//! - `idle.rs`: KiB per idle WebSocket, on a fresh node and a fresh baseline.
//! - `logins.rs`: RSS of a fresh node after a burst of logins (no baseline).
//! - `summary.rs`: the goals, PASS/MISS verdicts and the `BENCH_RESULT` line.

mod idle;
mod load;
mod logins;
mod servers;
mod summary;
mod traffic;

use std::time::Duration;

use crate::baseline::Baseline;
use crate::node::{Node, Spawn};
use crate::{Args, Backend};

/// Which comparison to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Fanout,
    Saturation,
    Rooms,
    Idle,
    Logins,
    All,
}

impl Which {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "fanout-ratio" => Which::Fanout,
            "saturation" => Which::Saturation,
            "rooms" => Which::Rooms,
            "idle-ratio" => Which::Idle,
            "logins" => Which::Logins,
            "all" => Which::All,
            _ => return None,
        })
    }

    fn includes(self, part: Which) -> bool {
        self == part || self == Which::All
    }
}

/// Every size, rate and duration of the comparison (`--quick` shrinks them).
#[derive(Debug, Clone)]
pub struct Settings {
    pub quick: bool,
    pub backend: Backend,
    pub bind: String,
    pub spawn: Spawn,
    /// Measured window of fanout-ratio, rooms and the 70% run.
    pub seconds: f64,
    pub subscribers: usize,
    pub senders: usize,
    /// Total msg/s of fanout-ratio.
    pub fanout_rate: f64,
    pub drain: Duration,
    pub saturation_start_rate: f64,
    pub saturation_step_seconds: f64,
    pub saturation_drain: Duration,
    pub saturation_doublings: usize,
    pub saturation_bisections: usize,
    /// p99 above this fails a saturation step.
    pub saturation_p99_us: u64,
    pub rooms: usize,
    pub room_size: usize,
    pub rooms_rate: f64,
    pub idle_connections: usize,
    pub idle_concurrency: usize,
    pub logins: usize,
    pub login_concurrency: usize,
    pub logins_observe: Duration,
}

impl Settings {
    pub fn new(args: &Args) -> Self {
        let quick = args.quick;
        Self {
            quick,
            backend: args.backend,
            bind: args.bind.clone(),
            spawn: Spawn::from_args(args),
            seconds: args.seconds.map_or(if quick { 3.0 } else { 10.0 }, |s| s as f64),
            subscribers: 200,
            senders: 5,
            fanout_rate: args.rate.unwrap_or(100.0),
            drain: Duration::from_secs(args.drain_seconds.unwrap_or(10)),
            saturation_start_rate: if quick { 200.0 } else { 100.0 },
            saturation_step_seconds: if quick { 2.0 } else { 5.0 },
            saturation_drain: Duration::from_secs(if quick { 2 } else { 3 }),
            saturation_doublings: if quick { 4 } else { 8 },
            saturation_bisections: if quick { 0 } else { 2 },
            saturation_p99_us: 200_000,
            rooms: args.rooms.unwrap_or(if quick { 100 } else { 1000 }),
            room_size: 5,
            rooms_rate: if quick { 100.0 } else { 200.0 },
            idle_connections: args.connections.unwrap_or(if quick { 2_000 } else { 15_000 }),
            idle_concurrency: args.concurrency,
            logins: args.logins.unwrap_or(if quick { 100 } else { 500 }),
            login_concurrency: 16,
            logins_observe: Duration::from_secs(if quick { 10 } else { 60 }),
        }
    }
}

pub async fn run(which: Which, args: &Args) -> anyhow::Result<()> {
    let settings = Settings::new(args);
    print_header(&settings);
    let mut report = summary::Report::default();
    if [Which::Fanout, Which::Saturation, Which::Rooms].iter().any(|&part| which.includes(part)) {
        let node = Node::spawn(&settings.spawn).await?;
        let baseline = match Baseline::spawn(&settings.bind).await {
            Ok(baseline) => baseline,
            Err(err) => {
                node.stop(Duration::from_secs(5)).await;
                return Err(err);
            }
        };
        println!("baseline pid {} on {}", baseline.pid, baseline.ws_base);
        let outcome = traffic::run(which, &settings, &node, &baseline, &mut report).await;
        if outcome.is_err() {
            node.print_log_tail(20);
        }
        baseline.stop().await;
        node.stop(Duration::from_secs(5)).await;
        outcome?;
    }
    if which.includes(Which::Idle) {
        report.idle = Some(idle::run(&settings).await?);
    }
    if which.includes(Which::Logins) {
        report.logins = Some(logins::run(&settings).await?);
    }
    if which == Which::All {
        summary::print(&report, &settings);
    }
    Ok(())
}

fn print_header(settings: &Settings) {
    println!(
        "lark vs baseline: backend {:?}{}, node {}, bind {}, load average {} (bench, node and baseline share this machine; {} cores)",
        settings.backend,
        if settings.quick { ", quick" } else { "" },
        settings.spawn.bin.display(),
        settings.bind,
        load_average(),
        std::thread::available_parallelism().map_or(0, |cores| cores.get()),
    );
    println!("node binary: {}", binary_stamp(&settings.spawn.bin));
    println!(
        "CPU time from /proc/<pid>/stat at {} ticks/s (getconf CLK_TCK; 100 assumed if it fails)",
        crate::cpu::clk_tck()
    );
}

/// Size and modification time of a binary, to tell builds apart between runs.
pub fn binary_stamp(path: &std::path::Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return format!("{} (missing)", path.display()) };
    let modified = meta
        .modified()
        .ok()
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs());
    format!("{} ({} bytes, modified at unix time {modified})", path.display(), meta.len())
}

/// The first three fields of `/proc/loadavg`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".to_owned())
}
