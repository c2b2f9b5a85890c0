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

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> anyhow::Result<Value> {
        let mut request = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading POST {path}"))?;
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path} answered non-JSON: {text}"))
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
