//! `node`: one messenger node. Run with `cargo run --release -p node` (SQLite in ./data,
//! port 8000). See README.md for the environment variables.

use anyhow::Context;
use node::{Config, Node};
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::from_env().context("reading configuration")?;
    node::init_tracing(config.log_json);
    if config.jwt_secret == node::config::DEV_JWT_SECRET {
        tracing::warn!("JWT_SECRET is not set: using the development secret, never do this in production");
    }
    info!(config = ?config, "starting");
    let node = Node::start(config).await?;
    shutdown_signal().await;
    info!("shutdown signal received, draining");
    node.shutdown().await;
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
