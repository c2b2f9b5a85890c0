//! The FCM HTTP v1 client: one message to one device, and what FCM's answer means.
//!
//! | answer | outcome |
//! |---|---|
//! | 200 | [`SendOutcome::Sent`] |
//! | 404 `UNREGISTERED`, 400 `INVALID_ARGUMENT` about `message.token` | [`SendOutcome::StaleToken`]: delete the token |
//! | other 400/404, 403 `SENDER_ID_MISMATCH`, other 4xx | [`SendOutcome::Refused`]: give up, keep the token |
//! | 401 | fetch a new access token once and resend; a second 401 is [`FcmError::Unauthorized`] |
//! | 429, 5xx, network errors | retry with exponential backoff, at least `Retry-After` (seconds) |
//!
//! A 400 is about the token only when FCM says so (a `BadRequest` field violation on
//! `message.token`, or a message naming the registration token): a malformed payload must
//! never cost users their devices.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};

use super::oauth::{clip, ServiceAccount, TokenSource};
use super::{payload, PushConfig, PushNotice};

/// Retries of one send. The wait before retry `n` (1-based) is `base_delay · 2^(n-1)` with
/// jitter, at least `Retry-After`, at most `max_delay`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    pub fn delay(&self, failed_attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).min(16);
        let backoff = self.base_delay.saturating_mul(1 << exponent).min(self.max_delay);
        // Equal jitter: half fixed, half random, so workers hit by one outage spread out.
        let random = (uuid::Uuid::new_v4().as_u128() % 1024) as u32;
        let jittered = backoff / 2 + (backoff / 2) * random / 1024;
        retry_after.map_or(jittered, |wait| wait.max(jittered)).min(self.max_delay)
    }
}

/// What became of one message to one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// FCM accepted it; `message_name` is FCM's `projects/…/messages/…` id.
    Sent { message_name: String },
    /// The token will never work again (the app was uninstalled, or it is not a token).
    StaleToken { error_code: String },
    /// FCM refused the message for a reason retrying will not fix.
    Refused { status: u16, error_code: String },
}

#[derive(Debug, thiserror::Error)]
pub enum FcmError {
    #[error("cannot read the service account {path}: {source}")]
    ReadServiceAccount { path: String, source: std::io::Error },
    #[error("bad service account: {0}")]
    BadServiceAccount(String),
    #[error("cannot build the http client: {0}")]
    HttpClient(reqwest::Error),
    #[error("cannot sign the oauth assertion: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("oauth token endpoint unavailable: {0}")]
    TokenUnavailable(String),
    #[error("oauth token endpoint refused the assertion ({status}): {body}")]
    TokenRefused { status: u16, body: String },
    #[error("fcm refused a freshly fetched access token: {0}")]
    Unauthorized(String),
    #[error("fcm still failing after {attempts} attempts: {last}")]
    Exhausted { attempts: u32, last: String },
}

impl FcmError {
    /// Whether trying again later may succeed (as opposed to a configuration problem).
    pub fn is_transient(&self) -> bool {
        matches!(self, FcmError::Exhausted { .. } | FcmError::TokenUnavailable(_))
    }
}

/// How one answer from FCM is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Sent(String),
    StaleToken(String),
    Unauthenticated(String),
    Refused { status: u16, code: String },
    Transient { retry_after: Option<Duration>, reason: String },
}

pub struct FcmClient {
    http: reqwest::Client,
    tokens: TokenSource,
    project_id: String,
    send_url: String,
    retry: RetryPolicy,
}

impl FcmClient {
    pub fn new(account: ServiceAccount, config: &PushConfig) -> Result<Self, FcmError> {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(FcmError::HttpClient)?;
        let project_id = config.project_id.clone().unwrap_or_else(|| account.project_id.clone());
        if project_id.is_empty() {
            return Err(FcmError::BadServiceAccount("project_id is empty (set FCM_PROJECT_ID)".to_owned()));
        }
        let base = config.base_url.trim_end_matches('/');
        let send_url = format!("{base}/v1/projects/{project_id}/messages:send");
        let tokens = TokenSource::new(account, http.clone())?;
        Ok(Self { http, tokens, project_id, send_url, retry: config.retry })
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// Sends `notice` to one device, retrying what is worth retrying.
    pub async fn send(&self, device_token: &str, notice: &PushNotice) -> Result<SendOutcome, FcmError> {
        let body = payload::message(device_token, notice);
        let token_hint = token_hint(device_token);
        let mut refreshed_after_401 = false;
        let mut attempt = 0;
        // One extra round for the resend after a 401.
        for _ in 0..=self.retry.max_attempts {
            attempt += 1;
            let (verdict, used_token) = match self.tokens.access_token().await {
                Ok(access_token) => (self.post(&access_token, &body).await, access_token),
                Err(err) if err.is_transient() => {
                    (Verdict::Transient { retry_after: None, reason: err.to_string() }, String::new())
                }
                Err(err) => return Err(err),
            };
            match verdict {
                Verdict::Sent(message_name) => {
                    debug!(%token_hint, %message_name, attempt, "push sent");
                    return Ok(SendOutcome::Sent { message_name });
                }
                Verdict::StaleToken(error_code) => return Ok(SendOutcome::StaleToken { error_code }),
                Verdict::Refused { status, code } => {
                    warn!(%token_hint, status, error_code = %code, "fcm refused the push");
                    return Ok(SendOutcome::Refused { status, error_code: code });
                }
                Verdict::Unauthenticated(reason) if !refreshed_after_401 => {
                    warn!(%token_hint, %reason, "fcm answered 401, fetching a new access token");
                    refreshed_after_401 = true;
                    attempt -= 1;
                    self.tokens.invalidate(&used_token).await;
                }
                Verdict::Unauthenticated(reason) => return Err(FcmError::Unauthorized(reason)),
                Verdict::Transient { retry_after, reason } => {
                    if attempt >= self.retry.max_attempts {
                        return Err(FcmError::Exhausted { attempts: attempt, last: reason });
                    }
                    let wait = self.retry.delay(attempt, retry_after);
                    debug!(%token_hint, attempt, wait_ms = wait.as_millis() as u64, %reason, "push send will be retried");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Err(FcmError::Exhausted { attempts: attempt, last: "attempts used up".to_owned() })
    }

    async fn post(&self, access_token: &str, body: &Value) -> Verdict {
        let response = match self.http.post(&self.send_url).bearer_auth(access_token).json(body).send().await {
            Ok(response) => response,
            Err(err) => return Verdict::Transient { retry_after: None, reason: err.to_string() },
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(parse_retry_after);
        match response.text().await {
            Ok(text) => classify(status, retry_after, &text),
            Err(err) => Verdict::Transient { retry_after, reason: format!("reading the answer: {err}") },
        }
    }
}

/// A short, log-safe prefix of a device token.
pub fn token_hint(device_token: &str) -> String {
    device_token.chars().take(8).collect()
}

/// `Retry-After` in seconds; HTTP dates are not understood (the computed backoff applies).
fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[derive(Deserialize, Default)]
struct GoogleErrorBody {
    #[serde(default)]
    error: GoogleError,
}

#[derive(Deserialize, Default)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

impl GoogleError {
    /// FCM's own `errorCode` when given, else the RPC status.
    fn code(&self) -> String {
        self.details
            .iter()
            .filter(|detail| detail["@type"].as_str().is_some_and(|kind| kind.ends_with("fcm.v1.FcmError")))
            .find_map(|detail| detail["errorCode"].as_str())
            .unwrap_or(&self.status)
            .to_owned()
    }

    fn is_about_the_token(&self) -> bool {
        let violation_on_token = self.details.iter().any(|detail| {
            detail["fieldViolations"].as_array().is_some_and(|violations| {
                violations.iter().any(|violation| violation["field"].as_str() == Some("message.token"))
            })
        });
        violation_on_token || self.message.to_ascii_lowercase().contains("registration token")
    }
}

fn classify(status: u16, retry_after: Option<Duration>, body: &str) -> Verdict {
    if (200..300).contains(&status) {
        let name = serde_json::from_str::<Value>(body).ok().and_then(|v| v["name"].as_str().map(str::to_owned));
        return Verdict::Sent(name.unwrap_or_default());
    }
    let error = serde_json::from_str::<GoogleErrorBody>(body).unwrap_or_default().error;
    let code = error.code();
    match status {
        // A 404 without FCM's `UNREGISTERED` (a wrong project, say) says nothing about the token.
        404 | 400 if code == "UNREGISTERED" => Verdict::StaleToken(code),
        400 if code == "INVALID_ARGUMENT" && error.is_about_the_token() => Verdict::StaleToken(code),
        401 => Verdict::Unauthenticated(clip(&error.message)),
        429 | 500..=599 => Verdict::Transient { retry_after, reason: format!("{status} {code}") },
        _ => Verdict::Refused { status, code },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn google(code: u16, status: &str, fcm_code: &str, extra: Option<Value>) -> String {
        let mut details =
            vec![json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code})];
        details.extend(extra);
        json!({"error": {"code": code, "message": "m", "status": status, "details": details}}).to_string()
    }

    #[test]
    fn answers_are_sorted_into_outcomes() {
        assert_eq!(
            classify(200, None, r#"{"name":"projects/p/messages/1"}"#),
            Verdict::Sent("projects/p/messages/1".into())
        );
        assert_eq!(
            classify(404, None, &google(404, "NOT_FOUND", "UNREGISTERED", None)),
            Verdict::StaleToken("UNREGISTERED".into())
        );
        let token_violation = json!({"@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": "message.token", "description": "bad"}]});
        let bad_token = google(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", Some(token_violation));
        assert_eq!(classify(400, None, &bad_token), Verdict::StaleToken("INVALID_ARGUMENT".into()));
        let bad_payload = google(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", None);
        assert_eq!(
            classify(400, None, &bad_payload),
            Verdict::Refused { status: 400, code: "INVALID_ARGUMENT".into() }
        );
        let mismatch = google(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", None);
        assert_eq!(classify(403, None, &mismatch), Verdict::Refused { status: 403, code: "SENDER_ID_MISMATCH".into() });
        let wrong_project =
            json!({"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}});
        let refused = Verdict::Refused { status: 404, code: "NOT_FOUND".into() };
        assert_eq!(classify(404, None, &wrong_project.to_string()), refused);
        assert!(matches!(classify(401, None, "{}"), Verdict::Unauthenticated(_)));
        let wait = Some(Duration::from_secs(3));
        assert!(matches!(classify(429, wait, "{}"), Verdict::Transient { retry_after, .. } if retry_after == wait));
        assert!(matches!(classify(503, None, "not json"), Verdict::Transient { .. }));
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let policy =
            RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        let first = policy.delay(1, None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let third = policy.delay(3, None);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400), "{third:?}");
        assert!(policy.delay(30, None) <= Duration::from_secs(1));
        assert_eq!(policy.delay(1, Some(Duration::from_millis(700))), Duration::from_millis(700));
        assert_eq!(policy.delay(1, Some(Duration::from_secs(90))), Duration::from_secs(1));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
