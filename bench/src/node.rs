//! The node under test: either spawned here (fresh SQLite database in a temporary directory,
//! free loopback port) or an already running one given by `--url`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::Args;

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
        let bin = &args.node_bin;
        if !bin.is_file() {
            bail!("node binary {} not found: build it with `cargo build --release -p node`", bin.display());
        }
        let dir = std::env::temp_dir().join(format!("lark-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let base = format!("http://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("node.log")).context("creating node.log")?;
        let child = Command::new(bin)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", format!("sqlite://{}", dir.join("bench.db").display()))
            .env("JWT_SECRET", format!("bench-{}", uuid::Uuid::new_v4().simple()))
            .env("ACCESS_TOKEN_TTL_SECS", "7200")
            .env("MAX_CONNECTIONS", "20000")
            .env("WS_RATE_PER_SEC", "100000")
            .env("WS_RATE_BURST", "100000")
            // Every bench user logs in from this one address.
            .env("LOGIN_RATE_PER_MIN", "1000000")
            .env("SIGNUP_RATE_PER_HOUR", "1000000")
            .env("RUST_LOG", "warn")
            .env_remove("REDIS_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("cloning the log handle")?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child.id();
        println!("spawned node pid {} on {base} (logs and database in {})", pid.unwrap_or(0), dir.display());
        let node = Self { base, pid, child: Mutex::new(Some(child)), dir: Some(dir), keep: args.keep };
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

/// A loopback port that was free a moment ago (the node binds it right after).
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
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
