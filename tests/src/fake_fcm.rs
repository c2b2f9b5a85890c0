//! A local fake of FCM HTTP v1 and of Google's OAuth2 token endpoint, for tests and local
//! runs (`src/bin/mock_firebase.rs` wraps it).
//!
//! - `POST /token`: the JWT-bearer grant. Checks the form, the assertion's RS256 signature
//!   against the test public key (`fixtures/fcm-test-only-public-key.pem`) and its claims
//!   (`iss`, `scope`, `aud`, `iat`/`exp`), then issues an access token.
//! - `POST /v1/projects/{project}/messages:send`: checks the bearer token it issued and the
//!   message (token, string-only `data`, 4096-byte limit), records it, answers `{"name"}`.
//!   Scripts make it answer 429 (with `Retry-After`), 500, 503, 404 `UNREGISTERED`, 400
//!   `INVALID_ARGUMENT` (about the token or not), 403 `SENDER_ID_MISMATCH`, 401, or stall,
//!   for the next N sends to one token or to any token. Errors are in Google's format.
//! - `GET /_fake/messages`, `GET /_fake/attempts`, `POST /_fake/script` (a [`ScriptRule`]),
//!   `DELETE /_fake/script`: the same controls over HTTP for a standalone fake.

mod handlers;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::DecodingKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use handlers::{add_rule, clear_rules, issue_token, send_message};

/// Test-only RSA key pair; never use it anywhere real.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../fixtures/fcm-test-only-private-key.pem");
pub const TEST_PUBLIC_KEY_PEM: &str = include_str!("../fixtures/fcm-test-only-public-key.pem");
pub const TEST_PROJECT_ID: &str = "lark-push-test";
pub const TEST_CLIENT_EMAIL: &str = "fcm-sender@lark-push-test.iam.gserviceaccount.com";
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const MAX_PAYLOAD_BYTES: usize = 4096;

/// A scripted answer to `messages:send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FcmReply {
    /// 429 `QUOTA_EXCEEDED` with `Retry-After: retry_after_secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// 500 `INTERNAL`.
    Internal,
    /// 503 `UNAVAILABLE`.
    Unavailable,
    /// 404 `UNREGISTERED`: the app is gone from that device.
    Unregistered,
    /// 400 `INVALID_ARGUMENT` with a field violation on `message.token`.
    InvalidToken,
    /// 400 `INVALID_ARGUMENT` about the payload, not the token.
    InvalidPayload,
    /// 403 `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// 401 `UNAUTHENTICATED`, whatever the bearer token.
    Unauthenticated,
    /// Holds the request for `secs`, then answers 503.
    Stall { secs: u64 },
}

/// "Answer the next `times` sends (to `device_token`, or to any token) with `reply`."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRule {
    #[serde(default)]
    pub device_token: Option<String>,
    pub reply: FcmReply,
    pub times: usize,
}

/// One request to `messages:send`, as answered.
#[derive(Debug, Clone, Serialize)]
pub struct SendAttempt {
    pub device_token: String,
    pub status: u16,
    /// Since the fake started.
    pub at: Duration,
}

#[derive(Default)]
struct Recorded {
    issued_tokens: HashSet<String>,
    token_requests: usize,
    messages: Vec<Value>,
    attempts: Vec<SendAttempt>,
    rules: Vec<ScriptRule>,
}

struct Shared {
    project_id: String,
    client_email: String,
    token_uri: String,
    public_key: DecodingKey,
    started: Instant,
    recorded: Mutex<Recorded>,
}

impl Shared {
    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().expect("fake fcm state lock")
    }
}

/// A running fake; stops when dropped.
pub struct FakeFcm {
    pub addr: SocketAddr,
    /// Give this as `FCM_BASE_URL`.
    pub base_url: String,
    pub token_uri: String,
    pub project_id: String,
    pub client_email: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeFcm {
    /// Starts on a free loopback port.
    pub async fn start() -> anyhow::Result<FakeFcm> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<FakeFcm> {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let token_uri = format!("{base_url}/token");
        let shared = Arc::new(Shared {
            project_id: TEST_PROJECT_ID.to_owned(),
            client_email: TEST_CLIENT_EMAIL.to_owned(),
            token_uri: token_uri.clone(),
            public_key: DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes()).context("test public key")?,
            started: Instant::now(),
            recorded: Mutex::default(),
        });
        let app = Router::new()
            .route("/token", post(issue_token))
            .route("/v1/projects/{project}/messages:send", post(send_message))
            .route(
                "/_fake/messages",
                get(|State(shared): State<Arc<Shared>>| async move { Json(shared.recorded().messages.clone()) }),
            )
            .route(
                "/_fake/attempts",
                get(|State(shared): State<Arc<Shared>>| async move { Json(shared.recorded().attempts.clone()) }),
            )
            .route("/_fake/script", post(add_rule).delete(clear_rules))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("fake fcm stopped: {err}");
            }
        });
        Ok(FakeFcm {
            addr,
            base_url,
            token_uri,
            project_id: TEST_PROJECT_ID.to_owned(),
            client_email: TEST_CLIENT_EMAIL.to_owned(),
            shared,
            task,
        })
    }

    /// The service account JSON pointing at this fake's token endpoint.
    pub fn service_account(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "fcm-test-only-key",
            "private_key": TEST_PRIVATE_KEY_PEM,
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        })
    }

    /// Writes [`Self::service_account`] to `path` (for `FCM_SERVICE_ACCOUNT_FILE`).
    pub fn write_service_account(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.service_account())?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }

    /// Answers the next `times` sends to `device_token` (`None`: to any token) with `reply`.
    /// Rules for one token win over rules for any token.
    pub fn script(&self, device_token: Option<&str>, reply: FcmReply, times: usize) {
        let rule = ScriptRule { device_token: device_token.map(str::to_owned), reply, times };
        self.shared.recorded().rules.push(rule);
    }

    pub fn clear_script(&self) {
        self.shared.recorded().rules.clear();
    }

    /// The `message` objects accepted (answered 200), oldest first.
    pub fn received(&self) -> Vec<Value> {
        self.shared.recorded().messages.clone()
    }

    /// Every request to `messages:send` with its answer's status, oldest first.
    pub fn attempts(&self) -> Vec<SendAttempt> {
        self.shared.recorded().attempts.clone()
    }

    /// How many times the token endpoint was asked (successfully or not).
    pub fn token_requests(&self) -> usize {
        self.shared.recorded().token_requests
    }

    /// Forgets every issued access token, as if they had all expired: the next send gets 401.
    pub fn revoke_access_tokens(&self) {
        self.shared.recorded().issued_tokens.clear();
    }

    /// Waits until `condition` holds for the accepted messages; `None` after `within`.
    pub async fn wait_for_messages(
        &self,
        within: Duration,
        condition: impl Fn(&[Value]) -> bool,
    ) -> Option<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let messages = self.received();
            if condition(&messages) {
                return Some(messages);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for FakeFcm {
    fn drop(&mut self) {
        self.task.abort();
    }
}
