//! `node`: one messenger node. Run with `cargo run --release -p node` (SQLite in ./data,
//! port 8000). See README.md for the environment variables.

use anyhow::Context;
use node::{Config, Node};
use tracing::info;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = Config::from_env().context("reading configuration")?;
    let joins = join_args(std::env::args().skip(1))?;
    if !joins.is_empty() {
        let cluster = config.cluster.as_mut().context("--join needs cluster mode: set CLUSTER_ADDR")?;
        cluster.seeds.extend(joins);
    }
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

/// `--join <addr>` (repeatable): cluster addresses of existing members.
fn join_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Vec<String>> {
    let mut joins = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--join" => joins.push(args.next().context("--join needs an address")?),
            other => match other.strip_prefix("--join=") {
                Some(addr) => joins.push(addr.to_owned()),
                None => anyhow::bail!("unknown argument {other:?} (usage: node [--join <cluster-addr>]...)"),
            },
        }
    }
    Ok(joins)
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
