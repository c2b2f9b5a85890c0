//! Operational endpoints: liveness, readiness, metrics and the cluster's view. They take no
//! user token: probes and scrapers hold none. `/metrics` and `/cluster/*` reveal the
//! cluster's layout, so they need the operator token (`METRICS_TOKEN`), or — when none is
//! set — a client on this machine (a loopback address).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::types::{ClusterStatus, Health, Nodes, Owner, Readiness};
use crate::app::AppState;
use crate::auth::bearer;
use crate::error::ApiError;
use crate::serve::Peer;

pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready when the database (and Redis, if configured) answer and the node is not stopping.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let stopping = *state.shutdown.borrow();
    let database = state.db.ping().await.is_ok();
    let redis = match &state.redis {
        Some(redis) => Some(redis.ping().await.is_ok()),
        None => None,
    };
    // In a cluster, a node serves clients only while it is a member of its own view.
    let member = state.cluster.as_ref().map(|cluster| cluster.is_member());
    // Redis holds presence and the push queue: chat works without it, so a node whose Redis
    // is down is degraded, not out (taking it out would drain every node at once).
    let ready = !stopping && database && member.unwrap_or(true);
    let degraded = if redis == Some(false) { vec!["redis"] } else { Vec::new() };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Readiness {
        ready,
        stopping,
        database,
        redis,
        degraded,
        cluster_member: member,
        serving: state.cluster.as_ref().map(|cluster| cluster.membership().serving()),
        node_id: state.config.node_id.clone(),
    };
    (status, Json(body)).into_response()
}

fn check_operator(state: &AppState, headers: &HeaderMap, peer: Peer) -> Result<(), ApiError> {
    operator_allowed(state.config.metrics_token.as_deref(), bearer(headers), peer)
}

/// The operator rule: the token when one is configured, else a loopback peer.
fn operator_allowed(expected: Option<&str>, presented: Option<&str>, peer: Peer) -> Result<(), ApiError> {
    match expected {
        Some(expected) if presented != Some(expected) => {
            Err(ApiError::unauthorized("this endpoint needs the operator token (METRICS_TOKEN)"))
        }
        Some(_) => Ok(()),
        None if peer.0.is_some_and(|addr| addr.ip().is_loopback()) => Ok(()),
        None => Err(ApiError::unauthorized(
            "operator endpoints answer only on loopback unless METRICS_TOKEN is set (then send it as a bearer token)",
        )),
    }
}

/// `GET /cluster/status`: members, leader, epoch and the actors this node runs.
pub async fn cluster_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
) -> Result<Response, ApiError> {
    check_operator(&state, &headers, peer)?;
    let actors = state.directory.stats();
    let membership = state.cluster.as_ref().map(|cluster| cluster.membership().status());
    let body = ClusterStatus {
        node_id: state.config.node_id.clone(),
        raft_node_id: state.directory.this_node(),
        mode: if state.cluster.is_some() { "cluster" } else { "single" },
        membership,
        actors,
        sockets: state.open_sockets(),
    };
    Ok(Json(body).into_response())
}

#[derive(serde::Deserialize)]
pub struct OwnerQuery {
    pub key: String,
}

/// `GET /cluster/owner?key=channel:<uuid>`: which node owns an actor key in this node's view.
pub async fn cluster_owner(
    State(state): State<AppState>,
    headers: HeaderMap,
    peer: Peer,
    crate::error::ApiQuery(query): crate::error::ApiQuery<OwnerQuery>,
) -> Result<Response, ApiError> {
    check_operator(&state, &headers, peer)?;
    let owner = match &state.cluster {
        Some(cluster) => cluster.owner_of_key(&query.key),
        None => Some(state.directory.this_node()),
    };
    Ok(Json(Owner { key: query.key, owner }).into_response())
}

/// `GET /v1/nodes`: where clients reach every node (for a client that connects to nodes
/// directly and wants another one when its node goes away). Needs a user token.
pub async fn nodes(State(state): State<AppState>, _auth: crate::auth::AuthUser) -> Json<Nodes> {
    let nodes = match &state.cluster {
        Some(cluster) => cluster.client_addresses(),
        None => vec![state.config.public_base_url.clone()],
    };
    Json(Nodes { nodes })
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap, peer: Peer) -> Result<Response, ApiError> {
    check_operator(&state, &headers, peer)?;
    let stats = state.directory.stats();
    state.metrics.channel_actors.set(stats.channels as i64);
    state.metrics.user_actors.set(stats.users as i64);
    let text = state.metrics.render();
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_need_the_token_or_a_loopback_peer() {
        let local = Peer(Some("127.0.0.1:5000".parse().unwrap()));
        let remote = Peer(Some("10.1.2.3:5000".parse().unwrap()));
        let v6_local = Peer(Some("[::1]:5000".parse().unwrap()));
        assert!(operator_allowed(None, None, local).is_ok());
        assert!(operator_allowed(None, None, v6_local).is_ok());
        assert!(operator_allowed(None, None, remote).is_err(), "no token configured: remote peers are refused");
        assert!(operator_allowed(None, None, Peer(None)).is_err());
        assert!(operator_allowed(Some("t"), Some("t"), remote).is_ok());
        assert!(operator_allowed(Some("t"), Some("x"), local).is_err(), "a configured token is required everywhere");
        assert!(operator_allowed(Some("t"), None, local).is_err());
    }
}
