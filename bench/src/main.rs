//! `bench`: load benchmark for a messenger node, driven over its public HTTP + WebSocket API.
//!
//! # Layout
//! `api.rs` HTTP setup calls, `client.rs`/`net.rs` WebSocket clients, `node.rs` the spawned
//! node, `stats.rs`/`cpu.rs` measurements, one module per scenario (`fanout`, `idle`, `chaos`,
//! `ratio/`), `baseline.rs` the bare server the `ratio` scenarios compare with.
//!
//! Scenarios:
//! - `fanout` (default): N users subscribe to one channel over WebSockets; a few of them send
//!   timestamped messages at a fixed rate. Measures send→ack latency (ack = durable in the DB),
//!   deliveries per second across all clients, send→receive latency, and checks that every
//!   receiver sees strictly increasing channel sequence numbers with no gaps or duplicates.
//! - `idle`: opens many idle WebSocket sessions and measures the node's resident memory per
//!   connection (VmRSS of the node process before and after) and the connect rate.
//! - `chaos`: drives a running cluster (`--urls`) while a script kills, pauses and partitions
//!   nodes; checks that no acknowledged message is lost, that every receiver sees every seq
//!   once and in order across reconnects, and measures how fast clients resume.
//! - `fanout-ratio`, `saturation`, `rooms`, `idle-ratio`, `logins` and `all` (module `ratio`):
//!   lark side by side with a bare tokio-tungstenite broadcast server (`baseline-server`, run
//!   as a separate process), every figure as lark / baseline, server CPU time per delivery
//!   from `/proc/<pid>/stat`; `all` ends with the issue-12 goals and a `BENCH_RESULT` line.
//!
//! By default the bench spawns `target/release/node` on a free loopback port with a fresh SQLite
//! database in a temporary directory, and kills it at the end; `--url` drives a running node.
//!
//! Run with: `cargo build --release -p node -p bench && ulimit -n 65536 &&
//! target/release/bench fanout --users 50 --senders 5 --rate 20 --seconds 10`
//! or `target/release/bench idle --connections 10000`. `bench --help` lists every flag.

mod api;
mod baseline;
mod chaos;
mod client;
mod cpu;
mod fanout;
mod idle;
mod net;
mod node;
mod ratio;
mod stats;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

const USAGE: &str = "\
bench: load benchmark for a messenger node

USAGE:
    bench [SCENARIO] [FLAGS]          (bench/run.sh raises the file limit and starts Postgres)

SCENARIOS:
    fanout   (default) one channel, every user subscribed, a few users send at a fixed rate;
             prints ack and delivery latency, deliveries/s and sequence-order checks
    idle     opens many idle WebSocket sessions; prints node RSS per connection and connect rate
    chaos    clients on a running cluster (--urls) while nodes are killed (see chaos/run.sh);
             checks no acknowledged message is lost, no gap, no duplicate, same order everywhere

  Side by side with a bare tokio-tungstenite broadcast server (the baseline, spawned as a
  separate process); every figure as lark / baseline:
    fanout-ratio  1 room x 200 sockets, 5 senders, 100 msg/s: server CPU-us per delivery, p50/p99
    saturation    steps the send rate up until p99 > 200 ms or deliveries fall behind: max
                  sustained deliveries/s of each, then lark at 70% of its own maximum
    rooms         1,000 rooms x 5 sockets, messages spread over the rooms: CPU-us per delivery
    idle-ratio    KiB per idle WebSocket on a fresh node and a fresh baseline
    logins        500 logins on a fresh node, then its RSS every 5 s for 60 s (no baseline)
    all           all of the above, a summary with the issue's goals (PASS/MISS) and one
                  `BENCH_RESULT {json}` line
    baseline-server --bind ADDR   the baseline itself (prints `BASELINE_PORT <port>`)

COMMON FLAGS:
    --url URL             drive a running node (e.g. http://127.0.0.1:8000) instead of spawning one
    --node-pid PID        with --url: the node's pid, to read its RSS (idle scenario)
    --node-bin PATH       node binary to spawn [default: target/release/node]
    --keep                keep the temporary directory (database, node.log) after the run
    --bind ADDR           address the spawned node and baseline listen on [default: 127.0.0.1]
    --backend B           sqlite (fresh file per node) or postgres (the node gets DATABASE_URL and
                          REDIS_URL from the environment; bench/run.sh starts both) [default: sqlite]
    -h, --help            print this help

FANOUT FLAGS:
    --users N             users, each with one WebSocket subscribed to the channel [default: 50]
    --senders N           how many of those users send [default: 5]
    --rate R              messages per second per sender [default: 20]
    --seconds S           sending duration [default: 10]
    --drain-seconds S     longest wait for outstanding acks and deliveries afterwards [default: 10]

CHAOS FLAGS:
    --urls U1,U2,...      the cluster's nodes (http://127.0.0.x:port); clients are spread over them
    --setup-url URL       node for the setup requests first [default: the first of --urls]
    --users N             users, one WebSocket each, all in every channel [default: 12]
    --channels N          channels [default: 3]
    --rate R              messages per second per user, round-robin over the channels [default: 5]
    --seconds S           sending duration [default: 30]
    --drain-seconds S     longest wait for outstanding acks and deliveries afterwards [default: 20]
    --actions FILE        `<unix_ms> <label>` lines of injected faults, read at the end to time
                          each recovery

IDLE FLAGS:
    --connections N       idle WebSocket connections to open [default: 10000]
    --users N             distinct users whose tokens the connections share [default: 4]
    --concurrency N       connection attempts in flight at once [default: 200]
    --hold-seconds S      how long to hold the connections before measuring RSS [default: 3]

RATIO FLAGS (fanout-ratio, saturation, rooms, idle-ratio, logins, all):
    --quick               short durations and small counts (`all --quick` takes under 2 minutes)
    --seconds S           measured window of fanout-ratio, rooms and the 70% run [default: 10]
    --rate R              fanout-ratio: total messages per second over the 5 senders [default: 100]
    --connections N       idle sockets per server [default: 15000, quick 2000; 100000 needs the
                          OS limits in bench/README.md]
    --rooms N             rooms of the rooms scenario [default: 1000, quick 100]
    --logins N            logins of the logins scenario [default: 500, quick 100]

Raise the open-file limit first (`ulimit -n 65536`, or as high as `ulimit -Hn` allows): every
connection costs one descriptor in the bench and one in the spawned node, which inherits the limit.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Idle,
    Chaos,
    BaselineServer,
    Ratio(ratio::Which),
}

/// Where the spawned node keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in the node's temporary directory.
    Sqlite,
    /// `DATABASE_URL` and `REDIS_URL` from the bench's environment.
    Postgres,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: Scenario,
    pub url: Option<String>,
    pub node_pid: Option<u32>,
    pub node_bin: PathBuf,
    pub keep: bool,
    /// `--bind`: an address (`baseline-server` also takes `ADDR:PORT`).
    pub bind: String,
    pub backend: Backend,
    pub quick: bool,
    pub rooms: Option<usize>,
    pub logins: Option<usize>,
    pub users: Option<usize>,
    pub senders: usize,
    pub rate: Option<f64>,
    pub seconds: Option<u64>,
    pub drain_seconds: Option<u64>,
    pub connections: Option<usize>,
    pub concurrency: usize,
    pub hold_seconds: u64,
    pub urls: Vec<String>,
    pub setup_url: Option<String>,
    pub channels: usize,
    pub actions: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            scenario: Scenario::Fanout,
            url: None,
            node_pid: None,
            node_bin: PathBuf::from("target/release/node"),
            keep: false,
            bind: "127.0.0.1".to_owned(),
            backend: Backend::Sqlite,
            quick: false,
            rooms: None,
            logins: None,
            users: None,
            senders: 5,
            rate: None,
            seconds: None,
            drain_seconds: None,
            connections: None,
            concurrency: 200,
            hold_seconds: 3,
            urls: Vec::new(),
            setup_url: None,
            channels: 3,
            actions: None,
        }
    }
}

fn value<T: std::str::FromStr>(flag: &str, raw: Option<String>) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    let raw = raw.with_context(|| format!("{flag} needs a value"))?;
    raw.parse().map_err(|err| anyhow::anyhow!("bad value for {flag}: {raw:?} ({err})"))
}

/// Parses the command line; `Ok(None)` means help was printed.
fn parse_args(mut argv: impl Iterator<Item = String>) -> anyhow::Result<Option<Args>> {
    let mut args = Args::default();
    let mut first = true;
    while let Some(arg) = argv.next() {
        let positional = first && !arg.starts_with('-');
        first = false;
        match arg.as_str() {
            "fanout" if positional => args.scenario = Scenario::Fanout,
            "idle" if positional => args.scenario = Scenario::Idle,
            "chaos" if positional => args.scenario = Scenario::Chaos,
            "baseline-server" if positional => args.scenario = Scenario::BaselineServer,
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--url" => args.url = Some(value::<String>(&arg, argv.next())?.trim_end_matches('/').to_owned()),
            "--node-pid" => args.node_pid = Some(value(&arg, argv.next())?),
            "--node-bin" => args.node_bin = value(&arg, argv.next())?,
            "--keep" => args.keep = true,
            "--bind" => args.bind = value(&arg, argv.next())?,
            "--backend" => {
                args.backend = match value::<String>(&arg, argv.next())?.as_str() {
                    "sqlite" => Backend::Sqlite,
                    "postgres" => Backend::Postgres,
                    other => bail!("--backend must be sqlite or postgres, not {other:?}"),
                }
            }
            "--quick" => args.quick = true,
            "--rooms" => args.rooms = Some(value(&arg, argv.next())?),
            "--logins" => args.logins = Some(value(&arg, argv.next())?),
            "--users" => args.users = Some(value(&arg, argv.next())?),
            "--senders" => args.senders = value(&arg, argv.next())?,
            "--rate" => args.rate = Some(value(&arg, argv.next())?),
            "--seconds" => args.seconds = Some(value(&arg, argv.next())?),
            "--drain-seconds" => args.drain_seconds = Some(value(&arg, argv.next())?),
            "--connections" => args.connections = Some(value(&arg, argv.next())?),
            "--concurrency" => args.concurrency = value(&arg, argv.next())?,
            "--hold-seconds" => args.hold_seconds = value(&arg, argv.next())?,
            "--urls" => {
                let raw: String = value(&arg, argv.next())?;
                args.urls = raw.split(',').filter(|u| !u.trim().is_empty()).map(normalize_url).collect();
            }
            "--setup-url" => args.setup_url = Some(normalize_url(&value::<String>(&arg, argv.next())?)),
            "--channels" => args.channels = value(&arg, argv.next())?,
            "--actions" => args.actions = Some(value(&arg, argv.next())?),
            other => match ratio::Which::parse(other) {
                Some(which) if positional => args.scenario = Scenario::Ratio(which),
                _ => bail!("unknown argument {other:?} (see --help)"),
            },
        }
    }
    validate(&args)?;
    Ok(Some(args))
}

fn normalize_url(raw: &str) -> String {
    raw.trim().trim_end_matches('/').to_owned()
}

fn validate(args: &Args) -> anyhow::Result<()> {
    if args.users == Some(0) {
        bail!("--users must be at least 1");
    }
    if args.rate.is_some_and(|rate| !(rate > 0.0 && rate <= 10_000.0)) {
        bail!("--rate must be in (0, 10000]");
    }
    let seconds = args.seconds.unwrap_or(10);
    if seconds == 0 || seconds > 3600 || args.drain_seconds.unwrap_or(0) > 600 || args.hold_seconds > 3600 {
        bail!("--seconds must be 1..=3600, --drain-seconds at most 600, --hold-seconds at most 3600");
    }
    if args.scenario == Scenario::Chaos {
        if args.urls.is_empty() {
            bail!("chaos needs --urls http://127.0.0.11:8000,http://127.0.0.12:8000,...");
        }
        if let Some(url) = args.urls.iter().chain(&args.setup_url).find(|url| !is_loopback_url(url)) {
            bail!("chaos only drives loopback nodes (http://127.x.y.z:port), not {url:?}");
        }
        if args.channels == 0 || args.channels > 100 || args.users.is_some_and(|users| users > 1000) {
            bail!("--channels must be 1..=100 and --users at most 1000");
        }
    } else if !args.urls.is_empty() || args.setup_url.is_some() || args.actions.is_some() {
        bail!("--urls, --setup-url and --actions belong to the chaos scenario");
    }
    if args.connections.is_some_and(|count| count == 0 || count > 1_000_000) || args.concurrency == 0 {
        bail!("--connections must be 1..=1000000 and --concurrency at least 1");
    }
    if args.node_pid.is_some() && args.url.is_none() {
        bail!("--node-pid only makes sense with --url");
    }
    if args.scenario == Scenario::BaselineServer {
        baseline::bind_addr(&args.bind)?;
    } else {
        args.bind.parse::<IpAddr>().map_err(|_| anyhow::anyhow!("--bind takes an IP address, not {:?}", args.bind))?;
    }
    if matches!(args.scenario, Scenario::Ratio(_)) && args.url.is_some() {
        bail!("the ratio scenarios spawn their own nodes (they read the server's CPU time): drop --url");
    }
    if args.rooms == Some(0) || args.logins == Some(0) {
        bail!("--rooms and --logins must be at least 1");
    }
    Ok(())
}

/// `http://127.a.b.c:port`: the chaos checker never sends traffic anywhere else.
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(args) = parse_args(std::env::args().skip(1))? else {
        return Ok(());
    };
    if args.scenario == Scenario::BaselineServer {
        return baseline::serve(baseline::bind_addr(&args.bind)?).await;
    }
    stats::start_clock();
    if let Scenario::Ratio(which) = args.scenario {
        return tokio::select! {
            outcome = ratio::run(which, &args) => outcome,
            signal = tokio::signal::ctrl_c() => {
                signal.context("listening for ctrl-c")?;
                Err(anyhow::anyhow!("interrupted"))
            }
        };
    }
    if args.scenario == Scenario::Chaos {
        let opts = chaos::Options {
            urls: args.urls.clone(),
            setup_url: args.setup_url.clone(),
            seconds: args.seconds.unwrap_or(30),
            users: args.users.unwrap_or(12),
            channels: args.channels,
            rate: args.rate.unwrap_or(5.0),
            drain_seconds: args.drain_seconds.unwrap_or(20),
            actions: args.actions.clone(),
        };
        let outcome = tokio::select! {
            outcome = chaos::run(&opts) => outcome,
            signal = tokio::signal::ctrl_c() => {
                signal.context("listening for ctrl-c")?;
                Err(anyhow::anyhow!("interrupted"))
            }
        };
        // The verdict is already printed; a failure is one line, never a backtrace.
        if let Err(err) = outcome {
            eprintln!("error: {err:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let node = node::Node::start(&args).await?;
    let outcome = tokio::select! {
        outcome = run(&args, &node) => outcome,
        signal = tokio::signal::ctrl_c() => {
            signal.context("listening for ctrl-c")?;
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    if outcome.is_err() {
        node.print_log_tail(20);
    }
    node.stop(Duration::from_secs(5)).await;
    outcome
}

async fn run(args: &Args, node: &node::Node) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::Fanout => {
            let opts = fanout::Options {
                users: args.users.unwrap_or(50),
                senders: args.senders,
                rate: args.rate.unwrap_or(20.0),
                seconds: args.seconds.unwrap_or(10),
                drain_seconds: args.drain_seconds.unwrap_or(10),
            };
            fanout::run(node, &opts).await
        }
        Scenario::Chaos | Scenario::BaselineServer | Scenario::Ratio(_) => {
            bail!("this scenario does not drive one spawned node")
        }
        Scenario::Idle => {
            let opts = idle::Options {
                users: args.users.unwrap_or(4),
                connections: args.connections.unwrap_or(10_000),
                concurrency: args.concurrency,
                hold_seconds: args.hold_seconds,
            };
            idle::run(node, &opts).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> anyhow::Result<Option<Args>> {
        parse_args(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn defaults_to_fanout() {
        let args = parse("").unwrap().unwrap();
        assert_eq!(args.scenario, Scenario::Fanout);
        assert_eq!(args.senders, 5);
        assert!(args.url.is_none());
    }

    #[test]
    fn parses_idle_flags() {
        let args = parse("idle --connections 500 --concurrency 10 --url http://127.0.0.1:9/").unwrap().unwrap();
        assert_eq!(args.scenario, Scenario::Idle);
        assert_eq!(args.connections, Some(500));
        assert_eq!(args.concurrency, 10);
        assert_eq!(args.url.as_deref(), Some("http://127.0.0.1:9"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse("--rate").is_err());
        assert!(parse("--rate fast").is_err());
        assert!(parse("--bogus").is_err());
        assert!(parse("--users 0").is_err());
        assert!(parse("fanout idle").is_err());
        assert!(parse("chaos").is_err(), "chaos needs --urls");
        assert!(parse("chaos --urls http://10.0.0.1:8000").is_err(), "loopback only");
        assert!(parse("--urls http://127.0.0.1:8000").is_err(), "--urls is a chaos flag");
    }

    #[test]
    fn parses_ratio_scenarios() {
        let args = parse("all --quick --backend postgres --bind 127.0.0.1").unwrap().unwrap();
        assert_eq!(args.scenario, Scenario::Ratio(ratio::Which::All));
        assert!(args.quick);
        assert_eq!(args.backend, Backend::Postgres);
        assert_eq!(parse("rooms --rooms 10").unwrap().unwrap().rooms, Some(10));
        assert_eq!(parse("baseline-server --bind 127.0.0.1:0").unwrap().unwrap().scenario, Scenario::BaselineServer);
        assert!(parse("all --backend mysql").is_err());
        assert!(parse("all --bind nowhere").is_err());
        assert!(parse("saturation --url http://127.0.0.1:8000").is_err(), "ratio scenarios spawn their servers");
    }

    #[test]
    fn parses_chaos_flags() {
        let args =
            parse("chaos --urls http://127.0.0.11:8000/,http://127.0.0.12:8000 --channels 2 --rate 3 --seconds 5")
                .unwrap()
                .unwrap();
        assert_eq!(args.scenario, Scenario::Chaos);
        assert_eq!(args.urls, ["http://127.0.0.11:8000", "http://127.0.0.12:8000"]);
        assert_eq!((args.channels, args.rate, args.seconds), (2, Some(3.0), Some(5)));
        assert!(is_loopback_url("http://127.0.0.11:8000"));
        assert!(!is_loopback_url("http://localhost.evil:80"));
    }
}
