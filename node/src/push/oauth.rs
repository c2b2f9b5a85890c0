//! The Google service account and the OAuth2 access token FCM wants.
//!
//! The token comes from the "JWT bearer" grant: an RS256 JWT
//! `{iss: client_email, scope, aud: token_uri, iat, exp: iat + 3600}` signed with the
//! service account's private key, posted form-encoded to `token_uri`. The answer's
//! `access_token` is cached until shortly before its `expires_in` runs out.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::info;

use super::fcm::FcmError;

pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime of the assertion; Google accepts at most one hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// A cached token is replaced this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The fields of a Google service account JSON file that FCM needs.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    /// PEM (PKCS#8 as Google issues it, or PKCS#1).
    pub private_key: String,
    /// Names the key in the JWT header (`kid`) when present.
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"***")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    pub fn from_file(path: &Path) -> Result<Self, FcmError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| FcmError::ReadServiceAccount { path: path.display().to_string(), source })?;
        Self::from_json(&text)
    }

    pub fn from_json(text: &str) -> Result<Self, FcmError> {
        let account: Self = serde_json::from_str(text)
            .map_err(|err| FcmError::BadServiceAccount(format!("not a service account: {err}")))?;
        if account.client_email.is_empty() || account.token_uri.is_empty() {
            return Err(FcmError::BadServiceAccount("client_email and token_uri must be set".to_owned()));
        }
        Ok(account)
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

/// Hands out a valid access token, fetching a new one when the cached one is (nearly) expired.
pub struct TokenSource {
    account: ServiceAccount,
    key: EncodingKey,
    http: reqwest::Client,
    /// Held while fetching, so concurrent senders wait for one exchange instead of racing.
    cached: Mutex<Option<CachedToken>>,
}

impl TokenSource {
    pub fn new(account: ServiceAccount, http: reqwest::Client) -> Result<Self, FcmError> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
            .map_err(|err| FcmError::BadServiceAccount(format!("private_key is not an RSA PEM key: {err}")))?;
        Ok(Self { account, key, http, cached: Mutex::new(None) })
    }

    pub fn account(&self) -> &ServiceAccount {
        &self.account
    }

    /// A token that is valid for at least the expiry margin.
    pub async fn access_token(&self) -> Result<String, FcmError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| Instant::now() < token.refresh_at) {
            return Ok(token.value.clone());
        }
        let fresh = self.exchange().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    /// Forgets `rejected` (FCM answered 401 to it) so the next call fetches a new one. A
    /// token another sender already replaced stays.
    pub async fn invalidate(&self, rejected: &str) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|token| token.value == rejected) {
            *cached = None;
        }
    }

    fn assertion(&self) -> Result<String, FcmError> {
        let iat = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        let claims = AssertionClaims {
            iss: &self.account.client_email,
            scope: FCM_SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid.clone_from(&self.account.private_key_id);
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(FcmError::Sign)
    }

    async fn exchange(&self) -> Result<CachedToken, FcmError> {
        let assertion = self.assertion()?;
        let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())];
        let response = self
            .http
            .post(&self.account.token_uri)
            .form(&form)
            .send()
            .await
            .map_err(|err| FcmError::TokenUnavailable(err.to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|err| FcmError::TokenUnavailable(err.to_string()))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(FcmError::TokenUnavailable(format!("{status}: {}", clip(&body))));
        }
        if !status.is_success() {
            return Err(FcmError::TokenRefused { status: status.as_u16(), body: clip(&body) });
        }
        let answer: TokenAnswer = serde_json::from_str(&body)
            .map_err(|err| FcmError::TokenUnavailable(format!("unreadable token answer: {err}")))?;
        let lifetime = Duration::from_secs(answer.expires_in);
        // Short-lived tokens (tests) would never be reused with a fixed margin: use half then.
        let margin = if lifetime > 2 * EXPIRY_MARGIN { EXPIRY_MARGIN } else { lifetime / 2 };
        info!(token_uri = %self.account.token_uri, expires_in = answer.expires_in, "fcm access token fetched");
        Ok(CachedToken { value: answer.access_token, refresh_at: Instant::now() + lifetime - margin })
    }
}

/// The first 300 characters of an error body, for logs.
pub(crate) fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}
