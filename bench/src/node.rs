//! The node under test: either spawned here (fresh SQLite database in a temporary directory, or
//! the Postgres + Redis of `DATABASE_URL`/`REDIS_URL` with `--backend postgres`; a free port on
//! `--bind`) or an already running one given by `--url`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::{Args, Backend};

/// How long a spawned node may take to answer `/healthz`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Node {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    /// The node's pid, when known (spawned, or `--node-pid`).
    pub pid: Option<u32>,
    child: Mutex<Option<Child>>,
    dir: Option<PathBuf>,
    keep: bool,
}

/// How to spawn a node.
#[derive(Debug, Clone)]
pub struct Spawn {
    pub bin: PathBuf,
    /// The IP address it listens on (a free port is picked).
    pub bind: String,
    pub backend: Backend,
    /// `MAX_CONNECTIONS`: WebSocket sessions the node accepts.
    pub max_connections: usize,
    pub keep: bool,
}

impl Spawn {
    pub fn from_args(args: &Args) -> Self {
        Self {
            bin: args.node_bin.clone(),
            bind: args.bind.clone(),
            backend: args.backend,
            max_connections: 20_000,
            keep: args.keep,
        }
    }
}

/// The address clients use for a listen address (`0.0.0.0` is reached at `127.0.0.1`).
pub fn client_host(bind: &str) -> String {
    match bind {
        "0.0.0.0" => "127.0.0.1".to_owned(),
        "::" => "[::1]".to_owned(),
        ip if ip.contains(':') => format!("[{ip}]"),
        ip => ip.to_owned(),
    }
}

/// `ip:port`, with brackets around an IPv6 address.
pub fn listen_addr(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

impl Node {
    pub async fn start(args: &Args) -> anyhow::Result<Self> {
        if let Some(url) = &args.url {
            if !url.starts_with("http://") {
                bail!("--url must start with http:// (the bench has no TLS)");
            }
            let node = Self { base: url.clone(), pid: args.node_pid, child: Mutex::new(None), dir: None, keep: true };
            wait_healthy(&node.base, Duration::from_secs(5), None).await?;
            return Ok(node);
        }
        Self::spawn(&Spawn::from_args(args)).await
    }

    /// Spawns a fresh node process and waits until it answers `/healthz`.
    pub async fn spawn(spawn: &Spawn) -> anyhow::Result<Self> {
        let bin = &spawn.bin;
        if !bin.is_file() {
            bail!("node binary {} not found: build it with `cargo build --release -p node`", bin.display());
        }
        let dir = std::env::temp_dir().join(format!("lark-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port(&spawn.bind)?;
        let base = format!("http://{}:{port}", client_host(&spawn.bind));
        let log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
        let mut command = Command::new(bin);
        match spawn.backend {
            Backend::Sqlite => {
                command
                    .env("DATABASE_URL", format!("sqlite://{}", dir.join("bench.db").display()))
                    .env_remove("REDIS_URL");
            }
            Backend::Postgres => {
                let database = std::env::var("DATABASE_URL").unwrap_or_default();
                let redis = std::env::var("REDIS_URL").unwrap_or_default();
                if !database.starts_with("postgres") || redis.is_empty() {
                    bail!("--backend postgres needs DATABASE_URL=postgres://… and REDIS_URL in the environment (bench/run.sh starts both)");
                }
                command.env("DATABASE_URL", database).env("REDIS_URL", redis);
            }
        }
        let child = command
            .env("BIND_ADDR", listen_addr(&spawn.bind, port))
            .env("JWT_SECRET", format!("bench-{}", uuid::Uuid::new_v4().simple()))
            .env("ACCESS_TOKEN_TTL_SECS", "7200")
            .env("MAX_CONNECTIONS", spawn.max_connections.to_string())
            .env("WS_RATE_PER_SEC", "100000")
            .env("WS_RATE_BURST", "100000")
            // Every bench user logs in from this one address.
            .env("LOGIN_RATE_PER_MIN", "1000000")
            .env("SIGNUP_RATE_PER_HOUR", "1000000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("cloning the log handle")?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id();
        println!("spawned node pid {} on {base} (logs and database in {})", pid.unwrap_or(0), dir.display());
        let node = Self { base, pid, child: Mutex::new(Some(child)), dir: Some(dir), keep: spawn.keep };
        if let Err(err) = wait_healthy(&node.base, STARTUP_TIMEOUT, Some(&node.child)).await {
            node.print_log_tail(30);
            node.stop(Duration::from_secs(2)).await;
            return Err(err);
        }
        Ok(node)
    }

    /// `ws://host:port`.
    pub fn ws_base(&self) -> String {
        self.base.replacen("http://", "ws://", 1)
    }

    /// The node's resident set size in KiB, if its pid is known.
    pub fn rss_kib(&self) -> Option<u64> {
        crate::stats::proc_status_kib(&self.pid?.to_string(), "VmRSS")
    }

    pub fn open_files_limit(&self) -> Option<u64> {
        crate::stats::open_files_limit(&self.pid?.to_string())
    }

    /// Prints the end of the spawned node's log, to explain a failure.
    pub fn print_log_tail(&self, lines: usize) {
        let Some(dir) = &self.dir else { return };
        let path = dir.join("node.log");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let all: Vec<&str> = text.lines().collect();
            eprintln!("--- last {} lines of {} ---", lines.min(all.len()), path.display());
            for line in &all[all.len().saturating_sub(lines)..] {
                eprintln!("{line}");
            }
        }
    }

    /// Kills a spawned node and removes its directory (unless `--keep`); a no-op for `--url`.
    pub async fn stop(&self, grace: Duration) {
        if let Some(mut child) = self.child.lock().await.take() {
            if let Err(err) = child.start_kill() {
                eprintln!("could not kill the node: {err}");
            }
            match tokio::time::timeout(grace, child.wait()).await {
                Ok(Ok(_)) => {}
                Ok(Err(err)) => eprintln!("waiting for the node failed: {err}"),
                Err(_) => eprintln!("the node did not exit within {grace:?}"),
            }
        }
        if let Some(dir) = &self.dir {
            if self.keep {
                println!("kept {}", dir.display());
            } else if let Err(err) = remove_dir(dir) {
                eprintln!("could not remove {}: {err}", dir.display());
            }
        }
    }
}

fn remove_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::remove_dir_all(dir)
}

/// A port on `ip` that was free a moment ago (the node binds it right after).
fn free_port(ip: &str) -> anyhow::Result<u16> {
    let ip: std::net::IpAddr = ip.parse().with_context(|| format!("bad bind address {ip:?}"))?;
    let listener = std::net::TcpListener::bind((ip, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Polls `GET /healthz` until it answers 200, the node exits, or `limit` passes.
async fn wait_healthy(base: &str, limit: Duration, child: Option<&Mutex<Option<Child>>>) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build()?;
    let started = Instant::now();
    let url = format!("{base}/healthz");
    let mut last_error = String::from("no answer yet");
    for _ in 0..1000 {
        if started.elapsed() > limit {
            break;
        }
        if let Some(child) = child {
            if let Some(child) = child.lock().await.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("the node exited during startup with {status}");
                }
            }
        }
        match http.get(&url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last_error = format!("status {}", response.status()),
            Err(err) => last_error = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{url} not healthy after {limit:?}: {last_error}")
}
