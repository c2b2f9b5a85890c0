//! `bench`: load benchmark for a messenger node, driven over its public HTTP + WebSocket API.
//!
//! Three scenarios:
//! - `fanout` (default): N users subscribe to one channel over WebSockets; a few of them send
//!   timestamped messages at a fixed rate. Measures send→ack latency (ack = durable in the DB),
//!   deliveries per second across all clients, send→receive latency, and checks that every
//!   receiver sees strictly increasing channel sequence numbers with no gaps or duplicates.
//! - `idle`: opens many idle WebSocket sessions and measures the node's resident memory per
//!   connection (VmRSS of the node process before and after) and the connect rate.
//! - `chaos`: drives a running cluster (`--urls`) while a script kills, pauses and partitions
//!   nodes; checks that no acknowledged message is lost, that every receiver sees every seq
//!   once and in order across reconnects, and measures how fast clients resume.
//!
//! By default the bench spawns `target/release/node` on a free loopback port with a fresh SQLite
//! database in a temporary directory, and kills it at the end; `--url` drives a running node.
//!
//! Run with: `cargo build --release -p node -p bench && ulimit -n 65536 &&
//! target/release/bench fanout --users 50 --senders 5 --rate 20 --seconds 10`
//! or `target/release/bench idle --connections 10000`. `bench --help` lists every flag.

mod api;
mod chaos;
mod client;
mod fanout;
mod idle;
mod node;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

const USAGE: &str = "\
bench: load benchmark for a messenger node

USAGE:
    bench [fanout|idle|chaos] [FLAGS]

SCENARIOS:
    fanout   (default) one channel, every user subscribed, a few users send at a fixed rate;
             prints ack and delivery latency, deliveries/s and sequence-order checks
    idle     opens many idle WebSocket sessions; prints node RSS per connection and connect rate
    chaos    clients on a running cluster (--urls) while nodes are killed (see chaos/run.sh);
             checks no acknowledged message is lost, no gap, no duplicate, same order everywhere

COMMON FLAGS:
    --url URL             drive a running node (e.g. http://127.0.0.1:8000) instead of spawning one
    --node-pid PID        with --url: the node's pid, to read its RSS (idle scenario)
    --node-bin PATH       node binary to spawn [default: target/release/node]
    --keep                keep the temporary directory (database, node.log) after the run
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

Raise the open-file limit first (`ulimit -n 65536`, or as high as `ulimit -Hn` allows): every
connection costs one descriptor in the bench and one in the spawned node, which inherits the limit.
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Fanout,
    Idle,
    Chaos,
}

/// Parsed command line.
#[derive(Debug, Clone)]
pub struct Args {
    pub scenario: Scenario,
    pub url: Option<String>,
    pub node_pid: Option<u32>,
    pub node_bin: PathBuf,
    pub keep: bool,
    pub users: Option<usize>,
    pub senders: usize,
    pub rate: Option<f64>,
    pub seconds: Option<u64>,
    pub drain_seconds: Option<u64>,
    pub connections: usize,
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
            users: None,
            senders: 5,
            rate: None,
            seconds: None,
            drain_seconds: None,
            connections: 10_000,
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
            "-h" | "--help" => {
                print!("{USAGE}");
                return Ok(None);
            }
            "--url" => args.url = Some(value::<String>(&arg, argv.next())?.trim_end_matches('/').to_owned()),
            "--node-pid" => args.node_pid = Some(value(&arg, argv.next())?),
            "--node-bin" => args.node_bin = value(&arg, argv.next())?,
            "--keep" => args.keep = true,
            "--users" => args.users = Some(value(&arg, argv.next())?),
            "--senders" => args.senders = value(&arg, argv.next())?,
            "--rate" => args.rate = Some(value(&arg, argv.next())?),
            "--seconds" => args.seconds = Some(value(&arg, argv.next())?),
            "--drain-seconds" => args.drain_seconds = Some(value(&arg, argv.next())?),
            "--connections" => args.connections = value(&arg, argv.next())?,
            "--concurrency" => args.concurrency = value(&arg, argv.next())?,
            "--hold-seconds" => args.hold_seconds = value(&arg, argv.next())?,
            "--urls" => {
                let raw: String = value(&arg, argv.next())?;
                args.urls = raw.split(',').filter(|u| !u.trim().is_empty()).map(normalize_url).collect();
            }
            "--setup-url" => args.setup_url = Some(normalize_url(&value::<String>(&arg, argv.next())?)),
            "--channels" => args.channels = value(&arg, argv.next())?,
            "--actions" => args.actions = Some(value(&arg, argv.next())?),
            other => bail!("unknown argument {other:?} (see --help)"),
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
    if args.connections == 0 || args.connections > 1_000_000 || args.concurrency == 0 {
        bail!("--connections must be 1..=1000000 and --concurrency at least 1");
    }
    if args.node_pid.is_some() && args.url.is_none() {
        bail!("--node-pid only makes sense with --url");
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
    stats::start_clock();
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
        Scenario::Chaos => bail!("chaos drives a running cluster, not a spawned node"),
        Scenario::Idle => {
            let opts = idle::Options {
                users: args.users.unwrap_or(4),
                connections: args.connections,
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
        assert_eq!(args.connections, 500);
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
