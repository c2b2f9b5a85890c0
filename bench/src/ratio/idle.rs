//! `idle-ratio`: KiB of server RSS per idle WebSocket, on a fresh node and a fresh baseline.
//!
//! The node must be fresh: one that already served logins or traffic reuses memory its
//! allocator kept and under-reports. Lark sockets authenticate with the tokens of a few
//! users (logged in before the first RSS reading) and subscribe to nothing; baseline sockets
//! join no room. Connections come from 127.0.0.2..17 in turn, so 100k+ sockets do not run
//! out of ephemeral ports; the file-descriptor limit is the other bound (see README).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::servers;
use super::Settings;
use crate::api::Api;
use crate::baseline::Baseline;
use crate::client::ConnectError;
use crate::idle::{hold, shorten};
use crate::node::{Node, Spawn};
use crate::{net, stats};

/// Lark users whose tokens the idle sockets share.
const USERS: usize = 3;
/// Descriptors the bench keeps for itself besides the sockets.
const SPARE_FILES: u64 = 300;
/// Stop connecting after this many failures.
const MAX_FAILURES: usize = 200;
/// How long the sockets are held before RSS is read.
const HOLD: Duration = Duration::from_secs(3);

/// One server's idle figures.
#[derive(Debug, Clone, Default)]
pub struct IdleSide {
    pub opened: usize,
    pub failed: usize,
    pub rss_before_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub connect_secs: f64,
}

impl IdleSide {
    pub fn kib_per_socket(&self) -> Option<f64> {
        let (before, after) = (self.rss_before_kib?, self.rss_after_kib?);
        (self.opened > 0).then(|| (after as f64 - before as f64) / self.opened as f64)
    }
}

#[derive(Debug, Clone, Default)]
pub struct IdleFigures {
    pub requested: usize,
    pub lark: IdleSide,
    pub baseline: IdleSide,
}

/// The socket count the open-file limit allows (the bench holds one descriptor per socket,
/// and each server, which inherits the same limit, another).
fn allowed(requested: usize) -> usize {
    match stats::open_files_limit("self") {
        Some(limit) if (requested as u64) + SPARE_FILES > limit => {
            let allowed = limit.saturating_sub(SPARE_FILES) as usize;
            println!(
                "  note: the open-file limit is {limit}: opening {allowed} sockets, not {requested} \
                 (raise it with bench/run.sh; 100k sockets need the OS settings in bench/README.md)"
            );
            allowed
        }
        _ => requested,
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<IdleFigures> {
    let count = allowed(settings.idle_connections);
    println!("\n== idle-ratio: {count} idle WebSockets on a fresh node and a fresh baseline ==");
    let spawn = Spawn { max_connections: count.max(20_000) + 1_000, ..settings.spawn.clone() };
    let node = Node::spawn(&spawn).await?;
    let lark = async {
        let api = Api::new(&node.base)?;
        let tokens: Vec<String> =
            servers::lark_accounts(&api, USERS).await?.into_iter().map(|account| account.token).collect();
        let ws_base = node.ws_base();
        let urls: Vec<String> = tokens.iter().map(|token| format!("{ws_base}/ws?token={token}")).collect();
        anyhow::Ok(hold_idle(&urls, count, settings.idle_concurrency, || node.rss_kib()).await)
    }
    .await;
    node.stop(Duration::from_secs(5)).await;
    let lark = lark?;
    println!("  lark:     {}", describe(&lark));

    let baseline = Baseline::spawn(&settings.bind).await?;
    let urls = [format!("{}/ws", baseline.ws_base)];
    let bare = hold_idle(&urls, count, settings.idle_concurrency, || baseline.rss_kib()).await;
    baseline.stop().await;
    println!("  baseline: {}", describe(&bare));
    Ok(IdleFigures { requested: count, lark, baseline: bare })
}

fn describe(side: &IdleSide) -> String {
    format!(
        "{} opened ({} failed) in {:.1} s, RSS {} -> {} KiB: {} KiB per socket",
        side.opened,
        side.failed,
        side.connect_secs,
        side.rss_before_kib.map_or("n/a".to_owned(), |kib| kib.to_string()),
        side.rss_after_kib.map_or("n/a".to_owned(), |kib| kib.to_string()),
        side.kib_per_socket().map_or("n/a".to_owned(), |kib| format!("{kib:.2}")),
    )
}

/// Opens `count` sockets over `urls` round-robin, holds them, reads RSS, closes them.
async fn hold_idle(urls: &[String], count: usize, concurrency: usize, rss: impl Fn() -> Option<u64>) -> IdleSide {
    // Let setup allocations settle before the first reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = rss();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = JoinSet::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    let started = Instant::now();
    let mut progress = Instant::now();
    let mut attempts =
        stream::iter(0..count).map(|index| net::connect(&urls[index % urls.len()])).buffer_unordered(concurrency);
    while let Some(result) = attempts.next().await {
        match result {
            Ok(ws) => {
                holders.spawn(hold(ws, stop_rx.clone()));
            }
            Err(err) => {
                failed += 1;
                let text = match &err {
                    ConnectError::TooManyOpenFiles(_) => "too many open files (raise ulimit -n)".to_owned(),
                    other => shorten(&other.describe()),
                };
                *failures.entry(text).or_default() += 1;
                if failed >= MAX_FAILURES {
                    eprintln!("  giving up after {failed} failed connection attempts");
                    break;
                }
            }
        }
        if progress.elapsed() >= Duration::from_secs(5) {
            progress = Instant::now();
            println!("  {} sockets open after {:.0} s", holders.len(), started.elapsed().as_secs_f64());
        }
    }
    drop(attempts);
    let connect_secs = started.elapsed().as_secs_f64();
    let opened = holders.len();
    tokio::time::sleep(HOLD).await;
    let rss_after_kib = rss();
    for (reason, count) in &failures {
        println!("  connect failure x{count}: {reason}");
    }
    stop_tx.send_replace(true);
    let closing = async { while holders.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(30), closing).await.is_err() {
        holders.abort_all();
    }
    IdleSide { opened, failed, rss_before_kib, rss_after_kib, connect_secs }
}
