//! Configuration from the environment, with defaults for a single node on SQLite.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use cluster::transport::{TlsFiles, DEFAULT_SERVER_NAME};

use crate::cluster_node::ClusterConfig;
use crate::turn::TurnConfig;

/// Everything a node is configured with. `Debug` masks the secrets.
#[derive(Clone)]
pub struct Config {
    /// Where HTTP and WebSocket clients connect (`BIND_ADDR`, default `0.0.0.0:8000`).
    pub bind_addr: SocketAddr,
    /// This node's name in logs and `hello` frames (`NODE_ID`; default `node-<host>-<port>`
    /// from the address clients reach it at, so that nodes of one cluster differ).
    pub node_id: String,
    /// `sqlite://…` (default `sqlite://./data/lark.db`) or `postgres://…` (`DATABASE_URL`).
    pub database_url: String,
    pub database_max_connections: u32,
    /// Shared ephemeral state (`REDIS_URL`); `None` keeps it in memory (single node only).
    pub redis_url: Option<String>,
    /// HS256 secret for access and refresh tokens (`JWT_SECRET`).
    pub jwt_secret: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Largest JSON request body (`MAX_JSON_BYTES`, default 1 MiB).
    pub max_json_bytes: usize,
    /// Largest uploaded file (`MAX_UPLOAD_BYTES`, default 10 MiB).
    pub max_upload_bytes: usize,
    /// Largest WebSocket message the server reads at all; bigger ones close the socket with 1009.
    pub max_ws_message_bytes: usize,
    /// Most concurrent WebSocket connections (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Most HTTP connections served at once, WebSockets apart (`MAX_HTTP_CONNECTIONS`).
    pub max_http_connections: usize,
    /// Request headers must arrive within this (`HEADER_READ_TIMEOUT_MS`).
    pub header_read_timeout: Duration,
    /// Request bodies must arrive within this (`BODY_READ_TIMEOUT_MS`).
    pub body_read_timeout: Duration,
    /// Frames queued for one slow client before it is disconnected (`OUTBOUND_QUEUE`).
    pub outbound_queue: usize,
    pub heartbeat_interval: Duration,
    pub idle_timeout: Duration,
    pub typing_ttl: Duration,
    /// Rate limits: logins and sign-ups per client address, WebSocket frames per user.
    pub limits: crate::limits::LimitConfig,
    /// Bearer token required on `/metrics` (`METRICS_TOKEN`); unset leaves it open.
    pub metrics_token: Option<String>,
    /// `json` for production logs, anything else for human-readable ones (`LOG_FORMAT`).
    pub log_json: bool,
    /// How long shutdown waits for sockets to close (`SHUTDOWN_GRACE_MS`).
    pub shutdown_grace: Duration,
    /// Cluster mode, on when `CLUSTER_ADDR` is set.
    pub cluster: Option<ClusterConfig>,
    /// Where people open links (`PUBLIC_BASE_URL`): the https fallback of deep links.
    pub public_base_url: String,
    /// STUN/TURN servers handed to meeting participants.
    pub turn: TurnConfig,
    /// Mesh cap of a meeting (`MAX_MEETING_PARTICIPANTS`, default 6).
    pub max_meeting_participants: usize,
    /// How long a dropped participant may rejoin before it is reported left (`MEETING_GRACE_MS`).
    pub meeting_grace: Duration,
    /// Push notifications through FCM, on when `FCM_SERVICE_ACCOUNT_FILE` is set.
    pub push: Option<crate::push::PushConfig>,
}

pub const DEV_JWT_SECRET: &str = "dev-only-secret-change-me";

#[derive(Debug, thiserror::Error)]
#[error("bad value for {name}: {value:?} ({reason})")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|err: T::Err| ConfigError { name, value, reason: err.to_string() }),
    }
}

/// `node-<host>-<port>`: the client address (`CLIENT_ADVERTISE`, else `BIND_ADDR`), or this
/// machine's host name when the node listens on every address.
fn default_node_id(bind_addr: SocketAddr) -> String {
    let advertised = var("CLIENT_ADVERTISE").unwrap_or_else(|| bind_addr.to_string());
    let (host, port) = advertised.rsplit_once(':').unwrap_or((advertised.as_str(), ""));
    let host = host.trim_matches(|c| c == '[' || c == ']');
    let host = if host == "0.0.0.0" || host == "::" || host.is_empty() {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    } else {
        host.to_owned()
    };
    let port = if port.is_empty() { bind_addr.port().to_string() } else { port.to_owned() };
    format!("node-{host}-{port}")
}

fn millis(name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
    parsed(name, default_ms).map(Duration::from_millis)
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let bind_addr: SocketAddr = parsed("BIND_ADDR", SocketAddr::from(([0, 0, 0, 0], 8000)))?;
        Ok(Self {
            bind_addr,
            node_id: var("NODE_ID").unwrap_or_else(|| default_node_id(bind_addr)),
            database_url: var("DATABASE_URL").unwrap_or_else(|| "sqlite://./data/lark.db".to_owned()),
            database_max_connections: parsed("DATABASE_MAX_CONNECTIONS", 16)?,
            redis_url: var("REDIS_URL"),
            jwt_secret: var("JWT_SECRET").unwrap_or_else(|| DEV_JWT_SECRET.to_owned()),
            access_token_ttl: Duration::from_secs(parsed("ACCESS_TOKEN_TTL_SECS", 15 * 60)?),
            refresh_token_ttl: Duration::from_secs(parsed("REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?),
            max_json_bytes: parsed("MAX_JSON_BYTES", 1024 * 1024)?,
            max_upload_bytes: parsed("MAX_UPLOAD_BYTES", 10 * 1024 * 1024)?,
            max_ws_message_bytes: parsed("MAX_WS_MESSAGE_BYTES", 1024 * 1024)?,
            max_connections: parsed("MAX_CONNECTIONS", 50_000)?,
            max_http_connections: parsed("MAX_HTTP_CONNECTIONS", 4096)?,
            header_read_timeout: millis("HEADER_READ_TIMEOUT_MS", 10_000)?,
            body_read_timeout: millis("BODY_READ_TIMEOUT_MS", 30_000)?,
            outbound_queue: parsed("OUTBOUND_QUEUE", 512)?,
            heartbeat_interval: millis("HEARTBEAT_INTERVAL_MS", 15_000)?,
            idle_timeout: millis("IDLE_TIMEOUT_MS", 45_000)?,
            typing_ttl: millis("TYPING_TTL_MS", 5_000)?,
            limits: crate::limits::LimitConfig {
                login_per_min: parsed("LOGIN_RATE_PER_MIN", 20)?,
                signup_per_hour: parsed("SIGNUP_RATE_PER_HOUR", 30)?,
                frames_per_sec: parsed("WS_RATE_PER_SEC", 50.0)?,
                frames_burst: parsed("WS_RATE_BURST", 100.0)?,
                trusted_proxies: crate::limits::parse_proxies(&var("TRUSTED_PROXIES").unwrap_or_default()).map_err(
                    |reason| ConfigError {
                        name: "TRUSTED_PROXIES",
                        value: var("TRUSTED_PROXIES").unwrap_or_default(),
                        reason,
                    },
                )?,
            },
            metrics_token: var("METRICS_TOKEN"),
            log_json: var("LOG_FORMAT").is_some_and(|format| format.eq_ignore_ascii_case("json")),
            shutdown_grace: millis("SHUTDOWN_GRACE_MS", 5_000)?,
            cluster: cluster_from_env(bind_addr)?,
            public_base_url: var("PUBLIC_BASE_URL").unwrap_or_else(|| format!("http://localhost:{}", bind_addr.port())),
            turn: TurnConfig {
                stun_urls: list("STUN_URLS"),
                turn_urls: list("TURN_URLS"),
                secret: var("TURN_SECRET"),
                ttl: Duration::from_secs(parsed("TURN_TTL_SECS", 24 * 3600)?),
            },
            max_meeting_participants: parsed("MAX_MEETING_PARTICIPANTS", 6)?,
            meeting_grace: millis("MEETING_GRACE_MS", 20_000)?,
            push: crate::push::PushConfig::from_env().map_err(|err| ConfigError {
                name: err.name,
                value: err.value,
                reason: err.reason,
            })?,
        })
    }

    /// A configuration for tests: port 0 on loopback, the given database, short timers.
    pub fn for_tests(database_url: &str) -> Self {
        Self {
            bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            node_id: "test-node".to_owned(),
            database_url: database_url.to_owned(),
            database_max_connections: 8,
            redis_url: None,
            jwt_secret: "test-secret".to_owned(),
            access_token_ttl: Duration::from_secs(600),
            refresh_token_ttl: Duration::from_secs(3600),
            max_json_bytes: 64 * 1024,
            max_upload_bytes: 256 * 1024,
            max_ws_message_bytes: 256 * 1024,
            max_connections: 1000,
            max_http_connections: 1000,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            outbound_queue: 256,
            heartbeat_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            typing_ttl: Duration::from_secs(5),
            limits: crate::limits::LimitConfig {
                login_per_min: 100_000,
                signup_per_hour: 100_000,
                frames_per_sec: 200.0,
                frames_burst: 400.0,
                trusted_proxies: Vec::new(),
            },
            metrics_token: None,
            log_json: false,
            shutdown_grace: Duration::from_secs(2),
            cluster: None,
            public_base_url: "http://localhost:8000".to_owned(),
            turn: TurnConfig {
                stun_urls: vec!["stun:stun.test:3478".to_owned()],
                turn_urls: vec!["turn:turn.test:3478".to_owned()],
                secret: Some("turn-test-secret".to_owned()),
                ttl: Duration::from_secs(3600),
            },
            max_meeting_participants: 6,
            meeting_grace: Duration::from_secs(20),
            push: None,
        }
    }
}

fn list(name: &'static str) -> Vec<String> {
    var(name)
        .map(|value| value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default()
}

pub const DEV_CLUSTER_SECRET: &str = "dev-only-cluster-secret";

fn cluster_from_env(bind_addr: SocketAddr) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(listen) = var("CLUSTER_ADDR") else { return Ok(None) };
    let listen: SocketAddr = listen.parse().map_err(|err: std::net::AddrParseError| ConfigError {
        name: "CLUSTER_ADDR",
        value: listen,
        reason: err.to_string(),
    })?;
    let seeds = var("SEED_NODES")
        .map(|seeds| seeds.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(Some(ClusterConfig {
        listen,
        advertise: var("CLUSTER_ADVERTISE").unwrap_or_else(|| listen.to_string()),
        client_advertise: var("CLIENT_ADVERTISE").unwrap_or_else(|| bind_addr.to_string()),
        seeds,
        secret: var("CLUSTER_SECRET").unwrap_or_else(|| DEV_CLUSTER_SECRET.to_owned()),
        tls_files: tls_files_from_env()?,
        tls_server_name: var("CLUSTER_TLS_SERVER_NAME").unwrap_or_else(|| DEFAULT_SERVER_NAME.to_owned()),
        data_dir: var("DATA_DIR").unwrap_or_else(|| "./data".to_owned()).into(),
        heartbeat: millis("RAFT_HEARTBEAT_MS", 150)?,
        election_timeout: (millis("RAFT_ELECTION_MIN_MS", 600)?, millis("RAFT_ELECTION_MAX_MS", 1200)?),
        dead_after: millis("DEAD_AFTER_MS", 2_000)?,
        max_voters: parsed("MAX_VOTERS", 5)?,
    }))
}

/// `CLUSTER_TLS_CA`, `CLUSTER_TLS_CERT` and `CLUSTER_TLS_KEY`: all three, or none (then the
/// certificates are derived from `CLUSTER_SECRET`).
fn tls_files_from_env() -> Result<Option<TlsFiles>, ConfigError> {
    match (var("CLUSTER_TLS_CA"), var("CLUSTER_TLS_CERT"), var("CLUSTER_TLS_KEY")) {
        (None, None, None) => Ok(None),
        (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles { ca: ca.into(), cert: cert.into(), key: key.into() })),
        (ca, cert, key) => Err(ConfigError {
            name: "CLUSTER_TLS_CA",
            value: format!("CA {}, CERT {}, KEY {}", set_or_not(&ca), set_or_not(&cert), set_or_not(&key)),
            reason: "set all three of CLUSTER_TLS_CA, CLUSTER_TLS_CERT and CLUSTER_TLS_KEY, or none".to_owned(),
        }),
    }
}

fn set_or_not(value: &Option<String>) -> &'static str {
    if value.is_some() {
        "set"
    } else {
        "unset"
    }
}

/// Hides the password part of a URL.
fn mask_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind_addr", &self.bind_addr)
            .field("node_id", &self.node_id)
            .field("database_url", &mask_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("redis_url", &self.redis_url.as_deref().map(mask_url))
            .field("jwt_secret", &"***")
            .field("access_token_ttl", &self.access_token_ttl)
            .field("refresh_token_ttl", &self.refresh_token_ttl)
            .field("max_json_bytes", &self.max_json_bytes)
            .field("max_upload_bytes", &self.max_upload_bytes)
            .field("max_ws_message_bytes", &self.max_ws_message_bytes)
            .field("max_connections", &self.max_connections)
            .field("outbound_queue", &self.outbound_queue)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("idle_timeout", &self.idle_timeout)
            .field("typing_ttl", &self.typing_ttl)
            .field("limits", &self.limits)
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .field("log_json", &self.log_json)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("public_base_url", &self.public_base_url)
            .field("stun_urls", &self.turn.stun_urls)
            .field("turn_urls", &self.turn.turn_urls)
            .field("turn_secret", &self.turn.secret.as_ref().map(|_| "***"))
            .field("turn_ttl", &self.turn.ttl)
            .field("max_meeting_participants", &self.max_meeting_participants)
            .field("meeting_grace", &self.meeting_grace)
            .field(
                "push",
                &self.push.as_ref().map_or_else(
                    || "off (FCM_SERVICE_ACCOUNT_FILE unset)".to_owned(),
                    |push| format!("FCM v1 at {} with {}", push.base_url, push.service_account_file.display()),
                ),
            )
            .field(
                "cluster",
                &self.cluster.as_ref().map(|c| {
                    let tls = c.tls_files.as_ref().map_or("derived from CLUSTER_SECRET", |_| "CLUSTER_TLS_* files");
                    (c.listen, &c.advertise, &c.seeds, &c.data_dir, c.dead_after, tls)
                }),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug_output() {
        let mut config = Config::for_tests("postgres://lark:hunter2@db:5432/lark");
        config.redis_url = Some("redis://:s3cret@cache:6379".to_owned());
        config.turn.secret = Some("coturn-s3cret".to_owned());
        config.turn.stun_urls = vec!["stun:stun.example.com:3478".to_owned()];
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("s3cret") && !printed.contains("test-secret"));
        assert!(printed.contains("stun:stun.example.com:3478") && printed.contains("meeting_grace"), "{printed}");
        assert!(printed.contains("postgres://lark:***@db:5432/lark"));
    }
}
