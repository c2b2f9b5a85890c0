//! A cluster of real node processes on 127.0.0.x addresses sharing one Postgres, with
//! controls to kill, pause and restart nodes (a `ClusterSandbox` in quickwit's manner).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::{fresh_database, Api, Backend, TempDir};

/// One node process.
pub struct NodeProcess {
    pub index: usize,
    pub ip: String,
    pub http_port: u16,
    pub cluster_port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
}

impl NodeProcess {
    pub fn http(&self) -> String {
        format!("http://{}:{}", self.ip, self.http_port)
    }
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}", self.ip, self.cluster_port)
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|child| child.id())
    }
    /// Resident memory of the running process in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }
}

pub struct ClusterSandbox {
    pub nodes: Vec<NodeProcess>,
    pub database_url: String,
    pub dir: TempDir,
    binary: PathBuf,
    client: reqwest::Client,
}

/// The node binary: `LARK_NODE_BIN`, or `target/debug/node` of this workspace.
pub fn node_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LARK_NODE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").join("target"));
    target.join("debug").join("node")
}

fn free_port(ip: &str) -> u16 {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("a free port");
    listener.local_addr().expect("local addr").port()
}

impl ClusterSandbox {
    /// Starts `count` nodes (the first bootstraps, the others join it) on a fresh Postgres
    /// database; `None` when Postgres is not available here.
    pub async fn start(count: usize) -> Option<ClusterSandbox> {
        let dir = TempDir::new();
        let database_url = fresh_database(Backend::Postgres, &dir.0).await?;
        let binary = node_binary();
        assert!(
            binary.exists(),
            "node binary {} missing: run `cargo build -p node` (scripts/test.sh does)",
            binary.display()
        );
        let mut sandbox =
            ClusterSandbox { nodes: Vec::new(), database_url, dir, binary, client: reqwest::Client::new() };
        for _ in 0..count {
            sandbox.add_node().await;
        }
        sandbox.wait_for_members(count, Duration::from_secs(60)).await;
        Some(sandbox)
    }

    /// Starts one more node, joining through the first live node.
    pub async fn add_node(&mut self) -> usize {
        self.add_node_with_seeds(None).await
    }

    /// Starts one more node that joins through `seeds` (e.g. a proxy in front of a member).
    pub async fn add_node_via(&mut self, seeds: Vec<String>) -> usize {
        self.add_node_with_seeds(Some(seeds)).await
    }

    async fn add_node_with_seeds(&mut self, seeds: Option<Vec<String>>) -> usize {
        let index = self.nodes.len();
        let ip = format!("127.0.0.{}", 10 + index);
        let node = NodeProcess {
            index,
            http_port: free_port(&ip),
            cluster_port: free_port(&ip),
            data_dir: self.dir.0.join(format!("node{index}")),
            ip,
            child: None,
        };
        self.nodes.push(node);
        self.spawn_with_seeds(index, seeds);
        self.wait_ready(index, Duration::from_secs(60)).await;
        index
    }

    fn spawn(&mut self, index: usize) {
        self.spawn_with_seeds(index, None);
    }

    /// Starts node `index`, joining through `seeds` or else through every live node.
    fn spawn_with_seeds(&mut self, index: usize, seeds: Option<Vec<String>>) {
        let seeds: Vec<String> = seeds.unwrap_or_else(|| {
            self.nodes
                .iter()
                .filter(|node| node.index != index && node.child.is_some())
                .map(NodeProcess::cluster_addr)
                .collect()
        });
        let node = &self.nodes[index];
        let log = std::fs::File::create(self.dir.0.join(format!("node{index}.log"))).expect("log file");
        let mut command = Command::new(&self.binary);
        command
            .env("BIND_ADDR", format!("{}:{}", node.ip, node.http_port))
            .env("NODE_ID", format!("node{index}"))
            .env("DATABASE_URL", &self.database_url)
            .env("JWT_SECRET", "sandbox-secret")
            .env("CLUSTER_ADDR", node.cluster_addr())
            .env("CLUSTER_SECRET", "sandbox-cluster-secret")
            .env("SEED_NODES", seeds.join(","))
            .env("DATA_DIR", &node.data_dir)
            .env("RAFT_HEARTBEAT_MS", "100")
            .env("RAFT_ELECTION_MIN_MS", "400")
            .env("RAFT_ELECTION_MAX_MS", "800")
            .env("DEAD_AFTER_MS", "1500")
            .env("SHUTDOWN_GRACE_MS", "1000")
            // Every test user logs in from this one machine.
            .env("LOGIN_RATE_PER_MIN", "1000000")
            .env("SIGNUP_RATE_PER_HOUR", "1000000")
            .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let child = command.spawn().expect("node process starts");
        self.nodes[index].child = Some(child);
    }

    /// Restarts a stopped or killed node with its data folder.
    pub async fn restart(&mut self, index: usize) {
        self.spawn(index);
        self.wait_ready(index, Duration::from_secs(60)).await;
    }

    pub async fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            child.start_kill().expect("kill -9");
            child.wait().await.expect("reaped");
        }
    }

    fn signal(&self, index: usize, signal: &str) {
        let pid = self.nodes[index].pid().expect("a running node");
        let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub fn pause(&self, index: usize) {
        self.signal(index, "-STOP");
    }

    pub fn resume(&self, index: usize) {
        self.signal(index, "-CONT");
    }

    pub fn live(&self) -> impl Iterator<Item = &NodeProcess> {
        self.nodes.iter().filter(|node| node.child.is_some())
    }

    pub fn log(&self, index: usize) -> String {
        std::fs::read_to_string(self.dir.0.join(format!("node{index}.log"))).unwrap_or_default()
    }

    async fn wait_ready(&self, index: usize, timeout: Duration) {
        let url = format!("{}/readyz", self.nodes[index].http());
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(response) = self.client.get(&url).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {index} not ready within {timeout:?}:\n{}", self.log(index));
    }

    pub async fn status(&self, index: usize) -> Option<Value> {
        let url = format!("{}/cluster/status", self.nodes[index].http());
        let response = self.client.get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        response.json().await.ok()
    }

    /// Waits until every live node sees `count` members and the same epoch; returns the epoch.
    pub async fn wait_for_members(&self, count: usize, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let mut last = Vec::new();
        while Instant::now() < deadline {
            last.clear();
            for node in self.live() {
                let status = self.status(node.index).await;
                let members = status.as_ref().and_then(|s| s["membership"]["members"].as_array().map(Vec::len));
                let epoch = status.as_ref().and_then(|s| s["membership"]["epoch"].as_u64());
                last.push((node.index, members, epoch));
            }
            let epochs: Vec<Option<u64>> = last.iter().map(|(_, _, epoch)| *epoch).collect();
            if last.iter().all(|(_, members, _)| *members == Some(count)) && epochs.windows(2).all(|w| w[0] == w[1]) {
                if let Some(Some(epoch)) = epochs.first() {
                    return *epoch;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("members did not converge to {count} within {timeout:?}: {last:?}");
    }

    /// The raft id of the node owning `key` (e.g. `channel:<uuid>`), asked of a live node.
    pub async fn owner_of(&self, key: &str) -> u64 {
        let node = self.live().next().expect("a live node");
        let url = format!("{}/cluster/owner?key={key}", node.http());
        let answer: Value = self.client.get(url).send().await.expect("owner").json().await.expect("json");
        answer["owner"].as_u64().expect("an owner")
    }

    /// The sandbox index of the node whose raft id is `raft_id`.
    pub async fn index_of(&self, raft_id: u64) -> usize {
        for node in self.live() {
            if let Some(status) = self.status(node.index).await {
                if status["raft_node_id"].as_u64() == Some(raft_id) {
                    return node.index;
                }
            }
        }
        panic!("no live node has raft id {raft_id}");
    }

    /// A company on the cluster (created through node `index`), as its admin.
    pub async fn company(&self, index: usize) -> Api {
        let slug = format!("c{}", &Uuid::new_v4().simple().to_string()[..10]);
        let body =
            serde_json::json!({"name": slug, "slug": slug, "admin": {"username": "admin", "password": "password123"}});
        let (status, answer) = Api::anonymous(&self.nodes[index].http()).post("/v1/companies", &body).await;
        assert_eq!(status, 201, "company created: {answer}");
        crate::api_from_login(&self.nodes[index].http(), &slug, &answer)
    }
}

impl Drop for ClusterSandbox {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                if child.start_kill().is_err() {
                    eprintln!("node {} already gone", node.index);
                }
            }
        }
    }
}
