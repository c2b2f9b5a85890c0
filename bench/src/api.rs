//! The HTTP calls that set up a benchmark: a company, its users, a channel.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt, TryStreamExt};
use serde_json::{json, Value};

pub const PASSWORD: &str = "password123";
/// Password hashing is argon2 (slow on purpose): this many user creations or logins at once.
const ACCOUNT_CONCURRENCY: usize = 8;

/// A user's fresh access token.
#[derive(Debug, Clone)]
pub struct Account {
    pub token: String,
}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build()?;
        Ok(Self { http, base: base.to_owned() })
    }

    /// Like [`Api::new`] with a shorter request timeout (for nodes that may be killed or paused).
    pub fn with_timeout(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(timeout).build()?;
        Ok(Self { http, base: base.to_owned() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// One request; answers the status and the body text whatever the status.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, String)> {
        let mut request = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("{method} {}{path}", self.base))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading {method} {}{path}", self.base))?;
        Ok((status, text))
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let (status, text) = self.call(reqwest::Method::POST, path, token, Some(&body)).await?;
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path} answered non-JSON: {text}"))
    }

    /// `GET path` with a token; the JSON answer of a 2xx, else an error.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let (status, text) = self.call(reqwest::Method::GET, path, Some(token), None).await?;
        if !status.is_success() {
            bail!("GET {}{path} answered {status}: {text}", self.base);
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path} answered non-JSON: {text}"))
    }

    /// Adds a user as the admin; a `409 conflict` (an earlier attempt got through) is success.
    pub async fn create_user(&self, admin: &Account, username: &str) -> anyhow::Result<()> {
        let body = json!({ "username": username, "password": PASSWORD });
        let (status, text) = self.call(reqwest::Method::POST, "/v1/users", Some(&admin.token), Some(&body)).await?;
        if status.is_success() || status == reqwest::StatusCode::CONFLICT {
            return Ok(());
        }
        bail!("POST /v1/users answered {status}: {text}")
    }

    /// Logs a user of company `slug` in.
    pub async fn login(&self, slug: &str, username: &str) -> anyhow::Result<Account> {
        let login = json!({ "company": slug, "username": username, "password": PASSWORD });
        account(&self.post("/v1/auth/login", None, login).await?)
    }

    /// Joins one account to a public channel (joining twice is harmless).
    pub async fn join(&self, account: &Account, channel_id: &str) -> anyhow::Result<()> {
        self.post(&format!("/v1/channels/{channel_id}/join"), Some(&account.token), json!({})).await.map(|_| ())
    }

    /// Creates a company with a unique slug; returns the slug and its admin.
    pub async fn create_company(&self) -> anyhow::Result<(String, Account)> {
        let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let body = json!({
            "name": "Bench",
            "slug": slug,
            "admin": { "username": "admin", "password": PASSWORD },
        });
        let answer = self.post("/v1/companies", None, body).await?;
        Ok((slug, account(&answer)?))
    }

    /// Creates `count` users (as the admin) and logs each of them in.
    pub async fn create_users(&self, admin: &Account, slug: &str, count: usize) -> anyhow::Result<Vec<Account>> {
        stream::iter(1..=count)
            .map(|index| async move {
                let username = format!("user{index}");
                let body = json!({ "username": username, "password": PASSWORD });
                self.post("/v1/users", Some(&admin.token), body).await?;
                let login = json!({ "company": slug, "username": username, "password": PASSWORD });
                account(&self.post("/v1/auth/login", None, login).await?)
            })
            .buffered(ACCOUNT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Creates a public channel (the creator is a member) and returns its id.
    pub async fn create_channel(&self, token: &str, name: &str) -> anyhow::Result<String> {
        let answer = self.post("/v1/channels", Some(token), json!({ "name": name })).await?;
        string_at(&answer, "/channel/id")
    }

    /// Joins every account to a public channel, a few at a time.
    pub async fn join_all(&self, accounts: &[Account], channel_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/channels/{channel_id}/join");
        stream::iter(accounts)
            .map(|account| self.post(&path, Some(&account.token), json!({})))
            .buffer_unordered(16)
            .try_for_each(|_| async { Ok(()) })
            .await
    }
}

fn string_at(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("answer has no {pointer}: {value}"))
}

fn account(answer: &Value) -> anyhow::Result<Account> {
    string_at(answer, "/user/id")?;
    Ok(Account { token: string_at(answer, "/tokens/access_token")? })
}
