//! Wiring: the shared state, the router, and a node's life from start to graceful stop.
//!
//! # Shutdown order
//! One signal (`Node::shutdown`, fired by ctrl-c or SIGTERM in `main`) is fanned out to
//! every task: the listener stops accepting, every socket gets close code 1012 ("restart,
//! reconnect elsewhere") and its session stops, then — once sockets are gone or the grace
//! period ran out — the actors stop and the database pool closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actors::channel::ChannelConfig;
use actors::cluster::Cluster;
use actors::meeting::MeetingConfig;
use actors::memory::MemoryPresence;
use actors::ports::{Ports, PresenceStore};
use actors::{Directory, DirectoryConfig};
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, patch, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

use crate::auth::Tokens;
use crate::cluster_node::NodeCluster;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::{accounts, channels, files, meetings, ops, web};
use crate::limits::{self, Limits};
use crate::metrics::Metrics;
use crate::presence::RedisPresence;
use crate::serve::{serve, ServeLimits};
use crate::store::{Backend, Db};
use crate::ws;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub redis: Option<RedisPresence>,
    pub directory: Directory,
    pub tokens: Arc<Tokens>,
    pub metrics: Arc<Metrics>,
    /// One permit per open WebSocket.
    pub connections: Arc<Semaphore>,
    pub shutdown: watch::Receiver<bool>,
    /// Set in cluster mode.
    pub cluster: Option<Arc<NodeCluster>>,
    pub limits: Arc<Limits>,
}

impl AppState {
    pub fn open_sockets(&self) -> usize {
        self.config.max_connections - self.connections.available_permits()
    }
}

pub fn router(state: AppState) -> Router {
    let upload_limit = state.config.max_upload_bytes + 64 * 1024;
    let api = Router::new()
        .route(
            "/companies",
            post(accounts::create_company).layer(from_fn_with_state(state.clone(), limits::signup_guard)),
        )
        .route("/auth/login", post(accounts::login).layer(from_fn_with_state(state.clone(), limits::login_guard)))
        .route("/auth/refresh", post(accounts::refresh))
        .route("/me", get(accounts::me))
        .route(
            "/users",
            get(accounts::list_users)
                .post(accounts::create_user.layer(from_fn_with_state(state.clone(), limits::signup_guard))),
        )
        .route("/users/{user_id}", get(accounts::get_user))
        .route("/devices", get(accounts::list_devices).post(accounts::register_device))
        .route("/devices/{token}", axum::routing::delete(accounts::delete_device))
        .route("/channels", get(channels::list).post(channels::create))
        .route("/channels/{channel_id}", get(channels::get_one))
        .route("/channels/{channel_id}/join", post(channels::join))
        .route("/channels/{channel_id}/leave", post(channels::leave))
        .route("/channels/{channel_id}/members", get(channels::members).post(channels::add_member))
        .route("/channels/{channel_id}/messages", get(channels::history).post(channels::send))
        .route("/channels/{channel_id}/messages/{message_id}", patch(channels::edit).delete(channels::delete))
        .route("/channels/{channel_id}/messages/{message_id}/thread", get(channels::thread))
        .route(
            "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}",
            put(channels::react).delete(channels::unreact),
        )
        .route("/channels/{channel_id}/read", post(channels::read))
        .route("/dms", post(channels::open_dm))
        .route("/meetings", get(meetings::list).post(meetings::create))
        .route("/meetings/{meeting_id}", get(meetings::get_one))
        .route("/meetings/{meeting_id}/end", post(meetings::end))
        .route("/meetings/{meeting_id}/participants", get(meetings::participants))
        .route("/ice", get(meetings::ice))
        .route("/files", post(files::upload).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/files/{file_id}", get(files::download))
        .route("/files/{file_id}/meta", get(files::meta))
        .route("/nodes", get(ops::nodes));
    Router::new()
        .nest("/v1", api)
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/cluster/status", get(ops::cluster_status))
        .route("/cluster/owner", get(ops::cluster_owner))
        .fallback(web::fallback)
        .method_not_allowed_fallback(|| async {
            ApiError::new(actors::model::ErrorCode::MethodNotAllowed, "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(state.config.max_json_bytes))
        // A body that trickles in slower than this holds a connection for nothing.
        .layer(RequestBodyTimeoutLayer::new(state.config.body_read_timeout))
        .layer(CorsLayer::new().allow_origin(Any).allow_methods(Any).allow_headers(Any))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A running node.
pub struct Node {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Node {
    pub async fn start(config: Config) -> anyhow::Result<Node> {
        let db =
            Db::open(&config.database_url, config.database_max_connections).await.context("opening the database")?;
        let redis = match &config.redis_url {
            Some(url) => Some(RedisPresence::connect(url).await.context("connecting to redis")?),
            None => None,
        };
        let presence: Arc<dyn PresenceStore> = match &redis {
            Some(redis) => Arc::new(redis.clone()),
            None => Arc::new(MemoryPresence::default()),
        };
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let push = crate::push::start(
            config.push.clone(),
            db.clone(),
            config.redis_url.as_deref(),
            &config.node_id,
            shutdown_rx.clone(),
        )
        .await
        .context("starting push notifications")?;
        if config.turn.stun_urls.is_empty() && config.turn.turn_urls.is_empty() {
            warn!(
                "no STUN or TURN server configured (STUN_URLS, TURN_URLS): meeting calls work only \
                 between clients on the same network; calls across NATs will fail"
            );
        } else if config.turn.turn_urls.is_empty() {
            warn!("no TURN server configured (TURN_URLS): calls between clients behind symmetric NATs will fail");
        }
        let ports = Ports {
            channels: Arc::new(db.clone()),
            presence,
            users: Arc::new(db.clone()),
            push,
            meetings: Arc::new(db.clone()),
            // Rosters go where every node reads them fastest: Redis when there is one.
            rooms: match &redis {
                Some(redis) => Arc::new(redis.clone()),
                None => Arc::new(db.clone()),
            },
            ice: Arc::new(config.turn.clone()),
        };
        let directory_config = DirectoryConfig {
            channel: ChannelConfig { typing_ttl: config.typing_ttl, ..ChannelConfig::default() },
            meeting: MeetingConfig {
                max_participants: config.max_meeting_participants,
                grace: config.meeting_grace,
                ..MeetingConfig::default()
            },
            ..DirectoryConfig::default()
        };
        let (node_cluster, inbound) = match &config.cluster {
            Some(cluster_config) => {
                if db.backend() == Backend::Sqlite {
                    anyhow::bail!("cluster mode needs a shared database: set DATABASE_URL=postgres://…");
                }
                let (node_cluster, inbound) =
                    NodeCluster::start(cluster_config).await.context("joining the cluster")?;
                if !node_cluster.joined(Duration::from_secs(60)).await {
                    anyhow::bail!("did not join the cluster within 60 s (seeds {:?})", cluster_config.seeds);
                }
                (Some(node_cluster), Some(inbound))
            }
            None => (None, None),
        };
        let cluster: Arc<dyn Cluster> = match &node_cluster {
            Some(node_cluster) => node_cluster.clone(),
            None => actors::cluster::SingleNode::new(),
        };
        let directory =
            Directory::start(ports, directory_config, cluster).await.context("starting the actor directory")?;
        if let Some(inbound) = inbound {
            inbound.set_directory(directory.clone());
        }
        let listener =
            TcpListener::bind(config.bind_addr).await.with_context(|| format!("binding {}", config.bind_addr))?;
        let addr = listener.local_addr()?;
        let config_limits = config.limits.clone();
        let state = AppState {
            tokens: Arc::new(Tokens::new(&config.jwt_secret, config.access_token_ttl, config.refresh_token_ttl)),
            connections: Arc::new(Semaphore::new(config.max_connections)),
            config: Arc::new(config),
            db,
            redis,
            directory,
            metrics: Arc::new(Metrics::new()),
            shutdown: shutdown_rx,
            cluster: node_cluster,
            limits: Limits::new(config_limits),
        };
        let app = router(state.clone());
        let serve_state = state.clone();
        let limits = ServeLimits {
            header_read_timeout: state.config.header_read_timeout,
            max_http_connections: state.config.max_http_connections,
        };
        let task = tokio::spawn(async move {
            serve(listener, app, limits, serve_state.shutdown.clone()).await;
            drain(&serve_state).await;
        });
        info!(%addr, node_id = %state.config.node_id, "node listening");
        Ok(Node { addr, state, shutdown: shutdown_tx, task })
    }

    /// Stops gracefully: sockets are told to reconnect, actors stop, the pool closes.
    pub async fn shutdown(self) {
        if let Some(cluster) = &self.state.cluster {
            // Leave first, so the others move this node's actors at once.
            match tokio::time::timeout(Duration::from_secs(3), cluster.membership().leave()).await {
                Ok(Ok(())) => info!("left the cluster"),
                Ok(Err(err)) => warn!(error = %err, "could not leave the cluster"),
                Err(_) => warn!("leaving the cluster timed out"),
            }
        }
        self.shutdown.send_replace(true);
        if let Err(err) = self.task.await {
            warn!(error = %err, "server task failed");
        }
    }

    /// Waits until the server ends (it ends only after `shutdown`).
    pub async fn wait(&mut self) {
        if let Err(err) = (&mut self.task).await {
            warn!(error = %err, "server task failed");
        }
    }
}

/// Waits for sockets to close, up to the grace period, then stops actors and the pool.
async fn drain(state: &AppState) {
    let deadline = tokio::time::Instant::now() + state.config.shutdown_grace;
    while state.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.open_sockets();
    if left > 0 {
        warn!(left, "sockets still open after the grace period");
    }
    state.directory.shutdown().await;
    if let Some(cluster) = &state.cluster {
        cluster.membership().shutdown().await;
    }
    state.db.close().await;
    info!("node stopped");
}
