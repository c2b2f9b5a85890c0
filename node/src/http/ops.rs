//! Operational endpoints: liveness, readiness and metrics. These are the only routes without
//! a user token: probes and scrapers hold none. `/metrics` takes `METRICS_TOKEN` when set.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::AppState;
use crate::auth::bearer;
use crate::error::ApiError;

pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
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
    let degraded: Vec<&str> = if redis == Some(false) { vec!["redis"] } else { Vec::new() };
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": ready,
        "stopping": stopping,
        "database": database,
        "redis": redis,
        "degraded": degraded,
        "cluster_member": member,
        "serving": state.cluster.as_ref().map(|cluster| cluster.membership().serving()),
        "node_id": state.config.node_id,
    });
    (status, Json(body)).into_response()
}

fn check_operator(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    match &state.config.metrics_token {
        Some(expected) if bearer(headers) != Some(expected.as_str()) => {
            Err(ApiError::unauthorized("this endpoint needs the operator token (METRICS_TOKEN)"))
        }
        _ => Ok(()),
    }
}

/// `GET /cluster/status`: members, leader, epoch and the actors this node runs.
pub async fn cluster_status(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_operator(&state, &headers)?;
    let actors = state.directory.stats();
    let membership = state.cluster.as_ref().map(|cluster| cluster.membership().status());
    let body = json!({
        "node_id": state.config.node_id,
        "raft_node_id": state.directory.this_node(),
        "mode": if state.cluster.is_some() { "cluster" } else { "single" },
        "membership": membership,
        "actors": actors,
        "sockets": state.open_sockets(),
    });
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
    crate::error::ApiQuery(query): crate::error::ApiQuery<OwnerQuery>,
) -> Result<Response, ApiError> {
    check_operator(&state, &headers)?;
    let owner = match &state.cluster {
        Some(cluster) => cluster.owner_of_key(&query.key),
        None => Some(state.directory.this_node()),
    };
    Ok(Json(json!({ "key": query.key, "owner": owner })).into_response())
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_operator(&state, &headers)?;
    let stats = state.directory.stats();
    state.metrics.channel_actors.set(stats.channels as i64);
    state.metrics.user_actors.set(stats.users as i64);
    let text = state.metrics.render();
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response())
}
