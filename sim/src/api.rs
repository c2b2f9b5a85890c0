//! HTTP calls to the cluster. Any node serves any request, so a call that cannot reach a node
//! (refused, reset, timed out) is tried on the next one; an answer with a status is final.

use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

pub const PASSWORD: &str = "sim-password-1";

/// Why a call failed, with the code used in the error table.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The body's `code` (`not_found`, `unavailable`, ...), `http_<status>` without one, or
    /// `unreachable` when no node answered.
    pub code: String,
    pub detail: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Api {
    pub fn new(urls: Vec<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(15)).build()?;
        Ok(Self { http, urls })
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// `method path` with an optional token and JSON body, starting at node `start`.
    pub async fn call(
        &self,
        start: usize,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut last = String::new();
        for round in 0..3 {
            for offset in 0..self.urls.len() {
                let base = &self.urls[(start + offset) % self.urls.len()];
                let mut request = self.http.request(method.clone(), format!("{base}{path}"));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                match request.send().await {
                    Ok(response) => return answer(response).await,
                    Err(err) => last = format!("{method} {base}{path}: {err}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(300 * (round + 1))).await;
        }
        Err(ApiError { code: "unreachable".into(), detail: last })
    }

    pub async fn post(&self, start: usize, path: &str, token: Option<&str>, body: Value) -> Result<Value, ApiError> {
        self.call(start, reqwest::Method::POST, path, token, Some(&body)).await
    }

    /// Uploads `bytes` as a file of `channel_id` (multipart, `channel_id` first); the file id.
    pub async fn upload(
        &self,
        start: usize,
        token: &str,
        channel_id: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<String, ApiError> {
        let mut last = String::new();
        for offset in 0..self.urls.len() {
            let base = &self.urls[(start + offset) % self.urls.len()];
            let part = reqwest::multipart::Part::bytes(bytes.clone())
                .file_name(name.to_owned())
                .mime_str("text/plain")
                .map_err(|err| ApiError { code: "client".into(), detail: err.to_string() })?;
            let form = reqwest::multipart::Form::new().text("channel_id", channel_id.to_owned()).part("file", part);
            match self.http.post(format!("{base}/v1/files")).bearer_auth(token).multipart(form).send().await {
                Ok(response) => {
                    let value = answer(response).await?;
                    return value["file"]["id"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or(ApiError { code: "bad_answer".into(), detail: format!("upload answered {value}") });
                }
                Err(err) => last = format!("POST {base}/v1/files: {err}"),
            }
        }
        Err(ApiError { code: "unreachable".into(), detail: last })
    }

    /// Logs a user in; the access token and the user id.
    pub async fn login(&self, start: usize, slug: &str, username: &str) -> anyhow::Result<(String, String)> {
        let body = json!({ "company": slug, "username": username, "password": PASSWORD });
        let answer = self.post(start, "/v1/auth/login", None, body).await.context("login")?;
        Ok((text_at(&answer, "/tokens/access_token")?, text_at(&answer, "/user/id")?))
    }
}

async fn answer(response: reqwest::Response) -> Result<Value, ApiError> {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        return serde_json::from_str(&text)
            .map_err(|_| ApiError { code: "bad_answer".into(), detail: format!("{status}: {text}") });
    }
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|body| body["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    Err(ApiError { code, detail: format!("{status}: {text}") })
}

pub fn text_at(value: &Value, pointer: &str) -> anyhow::Result<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("answer has no {pointer}: {value}"))
}
