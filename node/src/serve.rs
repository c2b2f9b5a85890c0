//! The HTTP listener: accepts TCP connections and serves each with hyper, bounded so that
//! clients that never finish a request cannot take the node off the air (slowloris).
//!
//! - Request headers must arrive within `HEADER_READ_TIMEOUT_MS`; request bodies within
//!   `BODY_READ_TIMEOUT_MS` (a layer in the router).
//! - At most `MAX_HTTP_CONNECTIONS` connections are served at once (WebSockets are counted
//!   apart, by `MAX_CONNECTIONS`, once upgraded): beyond that a new connection is closed at
//!   once, before it holds anything but its file descriptor for a moment.
//! - The peer address reaches handlers as axum's `ConnectInfo<SocketAddr>`.
//! - On shutdown the listener stops and every connection finishes its request in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;
use tracing::{debug, warn};

/// How the listener bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub header_read_timeout: Duration,
    pub max_http_connections: usize,
}

/// Serves `app` on `listener` until `shutdown` turns true; returns once every connection
/// finished (upgraded WebSockets live on apart and close through their own shutdown).
pub async fn serve(listener: TcpListener, app: Router, limits: ServeLimits, mut shutdown: watch::Receiver<bool>) {
    let connections = Arc::new(Semaphore::new(limits.max_http_connections));
    let mut refused_logged = tokio::time::Instant::now() - Duration::from_secs(60);
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            stopping = async { shutdown.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                if stopping.is_err() {
                    warn!("shutdown sender dropped");
                }
                break;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            if refused_logged.elapsed() > Duration::from_secs(10) {
                warn!(max = limits.max_http_connections, "too many HTTP connections, refusing new ones");
                refused_logged = tokio::time::Instant::now();
            }
            drop(stream);
            continue;
        };
        // Frames are small and latency matters: no Nagle delay on client sockets.
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let service = app.clone().map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let mut stop = shutdown.clone();
        tasks.spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .with_upgrades();
            tokio::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                _ = async { stop.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = served {
                debug!(%peer, error = %err, "http connection ended with an error");
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow with the node's lifetime.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// The peer address of a request, as the listener recorded it (`None` for a request that
/// did not come through it, e.g. in tests that call the router directly).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| *peer)))
    }
}
