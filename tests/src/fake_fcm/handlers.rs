//! The fake's HTTP handlers: the token endpoint, `messages:send` with its checks and
//! scripted failures, and the `/_fake/script` controls. Errors are in Google's format.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Form, Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{FcmReply, ScriptRule, SendAttempt, Shared, FCM_SCOPE, JWT_BEARER_GRANT, MAX_PAYLOAD_BYTES};

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs())
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

#[derive(Deserialize)]
struct AssertionClaims {
    scope: String,
    iat: u64,
    exp: u64,
}

pub(super) async fn issue_token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    shared.recorded().token_requests += 1;
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type");
    }
    let Some(assertion) = form.get("assertion") else { return oauth_error("invalid_request", "Missing assertion") };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&shared.token_uri]);
    validation.set_issuer(&[&shared.client_email]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    validation.leeway = 30;
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &shared.public_key, &validation) {
        Ok(data) => data.claims,
        Err(err) => return oauth_error("invalid_grant", &format!("Invalid JWT: {err}")),
    };
    if !claims.scope.split(' ').any(|scope| scope == FCM_SCOPE) {
        return oauth_error("invalid_scope", "The assertion does not ask for the firebase.messaging scope");
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 || claims.iat > unix_now() + 60 {
        return oauth_error("invalid_grant", "Invalid JWT: iat/exp out of range");
    }
    let access_token = format!("fake-access-{}", uuid::Uuid::new_v4().simple());
    shared.recorded().issued_tokens.insert(access_token.clone());
    Json(json!({"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"})).into_response()
}

/// An error in Google's format; `fcm_code` adds FCM's detail, `token_violation` a `BadRequest`
/// field violation on `message.token`.
fn google_error(
    status: StatusCode,
    rpc_status: &str,
    message: &str,
    fcm_code: Option<&str>,
    token_violation: bool,
) -> Response {
    let mut details = Vec::new();
    if let Some(code) = fcm_code {
        details.push(json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}));
    }
    if token_violation {
        details.push(json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.token", "description": message}]}));
    }
    let body =
        json!({"error": {"code": status.as_u16(), "message": message, "status": rpc_status, "details": details}});
    (status, Json(body)).into_response()
}

fn scripted_response(reply: FcmReply) -> Response {
    match reply {
        FcmReply::TooManyRequests { retry_after_secs } => {
            let mut response = google_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded.",
                Some("QUOTA_EXCEEDED"),
                false,
            );
            let value = header::HeaderValue::from(retry_after_secs);
            response.headers_mut().insert(header::RETRY_AFTER, value);
            response
        }
        FcmReply::Internal => {
            google_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "Internal error.", Some("INTERNAL"), false)
        }
        FcmReply::Unavailable | FcmReply::Stall { .. } => google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            Some("UNAVAILABLE"),
            false,
        ),
        FcmReply::Unregistered => google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
            Some("UNREGISTERED"),
            false,
        ),
        FcmReply::InvalidToken => google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            Some("INVALID_ARGUMENT"),
            true,
        ),
        FcmReply::InvalidPayload => invalid_payload("Invalid JSON payload received."),
        FcmReply::SenderIdMismatch => google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            Some("SENDER_ID_MISMATCH"),
            false,
        ),
        FcmReply::Unauthenticated => unauthenticated(),
    }
}

fn invalid_payload(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, Some("INVALID_ARGUMENT"), false)
}

fn unauthenticated() -> Response {
    let message = "Request had invalid authentication credentials. Expected OAuth 2 access token.";
    google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", message, None, false)
}

/// What is wrong with a message, checked like FCM does; `None` when it is fine.
fn invalid_message(body: &[u8], message: &Value) -> Option<Response> {
    if body.len() > MAX_PAYLOAD_BYTES {
        return Some(invalid_payload("Message is too big"));
    }
    if message["token"].as_str().is_none_or(str::is_empty) {
        return Some(invalid_payload("Recipient of the message is not set."));
    }
    if let Some(data) = message.get("data") {
        let all_strings = data.as_object().is_some_and(|data| data.values().all(Value::is_string));
        if !all_strings {
            return Some(invalid_payload("Invalid value at 'message.data': values must be strings"));
        }
    }
    let notification = &message["notification"];
    let well_formed = notification["title"].is_string() && notification["body"].is_string();
    if !notification.is_null() && !well_formed {
        return Some(invalid_payload("Invalid value at 'message.notification'"));
    }
    None
}

/// Takes one use of the first rule for `device_token`, else of the first rule for any token.
fn take_rule(rules: &mut Vec<ScriptRule>, device_token: &str) -> Option<FcmReply> {
    let position = rules
        .iter()
        .position(|rule| rule.device_token.as_deref() == Some(device_token))
        .or_else(|| rules.iter().position(|rule| rule.device_token.is_none()))?;
    let rule = &mut rules[position];
    let reply = rule.reply;
    rule.times = rule.times.saturating_sub(1);
    if rule.times == 0 {
        rules.remove(position);
    }
    Some(reply)
}

pub(super) async fn send_message(
    State(shared): State<Arc<Shared>>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|token| shared.recorded().issued_tokens.contains(token)) {
        return unauthenticated();
    }
    if project != shared.project_id {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Requested entity was not found.", None, false);
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return invalid_payload("Invalid JSON payload received.");
    };
    let message = request["message"].clone();
    let device_token = message["token"].as_str().unwrap_or_default().to_owned();
    let (response, stall) = {
        let mut recorded = shared.recorded();
        let scripted = take_rule(&mut recorded.rules, &device_token);
        let (response, stall) = match scripted {
            Some(FcmReply::Stall { secs }) => {
                (scripted_response(FcmReply::Stall { secs }), Some(Duration::from_secs(secs)))
            }
            Some(reply) => (scripted_response(reply), None),
            None => match invalid_message(&body, &message) {
                Some(invalid) => (invalid, None),
                None => {
                    recorded.messages.push(message);
                    let name = format!("projects/{project}/messages/{}", recorded.messages.len());
                    (Json(json!({"name": name})).into_response(), None)
                }
            },
        };
        let attempt = SendAttempt { device_token, status: response.status().as_u16(), at: shared.started.elapsed() };
        recorded.attempts.push(attempt);
        (response, stall)
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    response
}

pub(super) async fn add_rule(State(shared): State<Arc<Shared>>, Json(rule): Json<ScriptRule>) -> StatusCode {
    shared.recorded().rules.push(rule);
    StatusCode::NO_CONTENT
}

pub(super) async fn clear_rules(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.recorded().rules.clear();
    StatusCode::NO_CONTENT
}
