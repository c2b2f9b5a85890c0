//! The `idle` scenario: many idle WebSocket sessions; the node's RSS per connection and the
//! connect rate.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::{stream, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::api::Api;
use crate::client::{self, ConnectError, Ws};
use crate::node::Node;
use crate::stats::{self, Table};

pub struct Options {
    pub users: usize,
    pub connections: usize,
    pub concurrency: usize,
    pub hold_seconds: u64,
}

/// Stop opening connections after this many failures.
const MAX_FAILURES: usize = 200;

pub async fn run(node: &Node, opts: &Options) -> anyhow::Result<()> {
    check_fd_limits(node, opts.connections);
    let api = Api::new(&node.base)?;
    let (slug, admin) = api.create_company().await?;
    let mut accounts = api.create_users(&admin, &slug, opts.users.saturating_sub(1)).await?;
    accounts.push(admin);
    let tokens: Vec<String> = accounts.into_iter().map(|account| account.token).collect();
    println!("setup: company {slug}, {} users whose tokens the connections share", tokens.len());

    // Let allocations from setup settle before the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = node.rss_kib();
    let bench_rss_before = stats::proc_status_kib("self", "VmRSS");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut holders = JoinSet::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut out_of_files = false;
    let mut failed = 0;
    let ws_base = node.ws_base();
    let connecting = Instant::now();
    let mut attempts = stream::iter(0..opts.connections)
        .map(|index| client::connect(&ws_base, &tokens[index % tokens.len()]))
        .buffer_unordered(opts.concurrency);
    let mut progress = Instant::now();
    while let Some(result) = attempts.next().await {
        match result {
            Ok(ws) => {
                holders.spawn(hold(ws, stop_rx.clone()));
            }
            Err(err) => {
                failed += 1;
                out_of_files |= matches!(err, ConnectError::TooManyOpenFiles(_));
                *failures.entry(shorten(&err.describe())).or_default() += 1;
                if failed >= MAX_FAILURES {
                    eprintln!("giving up after {failed} failed connection attempts");
                    break;
                }
            }
        }
        if progress.elapsed() >= Duration::from_secs(2) {
            progress = Instant::now();
            println!("  {} connections open after {:.1} s", holders.len(), connecting.elapsed().as_secs_f64());
        }
    }
    drop(attempts);
    let connect_secs = connecting.elapsed().as_secs_f64();
    let opened = holders.len();
    println!("opened {opened} connections in {connect_secs:.2} s; holding for {} s", opts.hold_seconds);

    tokio::time::sleep(Duration::from_secs(opts.hold_seconds)).await;
    let rss_after = node.rss_kib();
    let bench_rss_after = stats::proc_status_kib("self", "VmRSS");
    let still_open = opened - holders.try_join_next_count();

    let closing = Instant::now();
    let _ = stop_tx.send(true);
    let mut closed = 0usize;
    let close_limit = Duration::from_secs(30);
    while let Ok(Some(joined)) =
        tokio::time::timeout(close_limit.saturating_sub(closing.elapsed()), holders.join_next()).await
    {
        closed += usize::from(joined.is_ok());
    }
    holders.abort_all();

    let mut table = Table::default();
    table.row("connections requested", opts.connections);
    table.row("connections opened", opened);
    table.row("connections failed", failed);
    table.row("connect time", format!("{connect_secs:.2} s"));
    table.row("connect rate", format!("{:.0} conn/s", opened as f64 / connect_secs.max(1e-9)));
    table.row("still open after hold", still_open);
    table.row("node RSS before", kib(rss_before));
    table.row("node RSS after", kib(rss_after));
    match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => {
            let per_conn = (after as f64 - before as f64) / opened as f64;
            table.row("node RSS per connection", format!("{per_conn:.2} KiB"));
        }
        _ => table.row("node RSS per connection", "n/a (node pid unknown: pass --node-pid with --url)"),
    }
    table.row("bench RSS before", kib(bench_rss_before));
    table.row("bench RSS after", kib(bench_rss_after));
    table.row("close time", format!("{:.2} s ({closed} closed)", closing.elapsed().as_secs_f64()));
    table.print("idle results");
    for (reason, count) in &failures {
        println!("connect failure x{count}: {reason}");
    }
    if out_of_files {
        println!(
            "\nTOO MANY OPEN FILES: the bench ran out of file descriptors. Raise the limit in the shell \
             first (`ulimit -n 65536`, or up to `ulimit -Hn`); the spawned node inherits it too."
        );
    }
    Ok(())
}

/// Keeps one idle connection open (reading, so that server pings get their pongs) until stopped.
pub(crate) async fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            message = ws.next() => match message {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    client::close(&mut ws).await;
}

/// Warns when the bench's or the node's open-file limit is below what the run needs.
fn check_fd_limits(node: &Node, connections: usize) {
    let needed = connections as u64 + 200;
    if let Some(limit) = stats::open_files_limit("self") {
        if limit < needed {
            println!(
                "warning: the bench may open only {limit} files but needs about {needed}: \
                 run `ulimit -n 65536` (or up to `ulimit -Hn`) in this shell first"
            );
        }
    }
    if let Some(limit) = node.open_files_limit() {
        if limit < needed {
            println!("warning: the node may open only {limit} files but needs about {needed}");
        }
    }
}

fn kib(value: Option<u64>) -> String {
    match value {
        Some(kib) => format!("{kib} KiB ({:.1} MiB)", kib as f64 / 1024.0),
        None => "n/a".to_owned(),
    }
}

/// Error texts without the per-connection details (ports, tokens), for grouping.
pub(crate) fn shorten(text: &str) -> String {
    text.chars().take(160).collect()
}

trait FinishedCount {
    /// Reaps the tasks that already ended (connections the server dropped) and counts them.
    fn try_join_next_count(&mut self) -> usize;
}

impl FinishedCount for JoinSet<()> {
    fn try_join_next_count(&mut self) -> usize {
        let mut finished = 0;
        while self.try_join_next().is_some() {
            finished += 1;
        }
        finished
    }
}
