//! The server: configuration, the axum HTTP and WebSocket edge, auth, storage, wiring.
//!
//! # Layout
//! - [`config`]: environment configuration with defaults; secrets masked when printed.
//! - [`app`]: shared state, the router, a node's start and graceful stop.
//! - [`cluster_node`]: cluster mode: membership, placement, actor traffic between nodes.
//! - [`auth`]: HS256 JWTs and the `AuthUser` extractor.
//! - [`password`]: argon2id password hashes in reused working memory.
//! - [`error`]: `ApiError`, the one error type of the HTTP API, and extractors that use it.
//! - [`http`]: HTTP handlers by resource.
//! - [`ws`]: the WebSocket edge that pumps frames between sockets and `SessionActor`s.
//! - [`store`]: sqlx storage (SQLite or Postgres) implementing the actors' ports.
//! - [`turn`]: STUN/TURN servers and coturn REST credentials.
//! - [`push`]: FCM HTTP v1 push behind a Redis-stream (or in-process) queue.
//! - [`presence`]: Redis presence store for clusters.
//! - [`metrics`]: Prometheus metrics.
//!
//! **Architecture invariant:** handlers never change channel state in the database directly;
//! every change goes through the channel's actor (reads may go to the database).

pub mod app;
pub mod auth;
pub mod cluster_node;
pub mod config;
pub mod error;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod password;
pub mod presence;
pub mod push;
pub mod serve;
pub mod store;
pub mod turn;
pub mod ws;

pub use app::Node;
pub use config::Config;

/// Sets up `tracing`: JSON lines when `json`, human-readable otherwise; `RUST_LOG` filters.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if result.is_err() {
        eprintln!("tracing was already initialised");
    }
}
