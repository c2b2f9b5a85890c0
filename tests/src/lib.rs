//! Harness for integration tests over real HTTP and WebSocket.
//!
//! # Layout
//! - [`TestNode`]: a node started in-process on a loopback port, on SQLite or Postgres.
//! - [`Api`]: an HTTP client bound to one user's token.
//! - [`WsClient`]: a WebSocket client speaking the JSON protocol.
//! - [`fake_fcm`]: a local fake FCM with its OAuth token endpoint.
//! - [`sandbox`]: a cluster of real node processes with kill/pause/restart controls.
//!
//! Postgres and Redis come from `TEST_POSTGRES_URL` / `TEST_REDIS_URL` (scripts/test.sh
//! starts throwaway servers). Without them the Postgres/Redis tests say so and pass,
//! except under CI (`CI` set), where a missing server fails the test.

pub mod fake_fcm;
pub mod sandbox;

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub use node::{Config, Node};

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A URL from the environment, or `None` (with a notice) when absent outside CI.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!("{var} must be set in CI: run scripts/test.sh"),
        _ => {
            eprintln!("skipping: {var} is not set (scripts/test.sh sets it)");
            None
        }
    }
}

/// A database URL for a fresh database of `backend`, or `None` if Postgres is unavailable.
pub async fn fresh_database(backend: Backend, dir: &std::path::Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}/lark.db", dir.display())),
        Backend::Postgres => {
            let admin_url = service_url("TEST_POSTGRES_URL")?;
            let name = format!("lark_test_{}", Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin_url).await.expect("connect to the test postgres");
            conn.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
            let base = admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin_url);
            Some(format!("{base}/{name}"))
        }
    }
}

/// A node running in this process, with its data in a temp folder.
pub struct TestNode {
    pub node: Node,
    pub dir: TempDir,
    pub database_url: String,
}

impl TestNode {
    /// Starts a node on `backend`; `None` when that backend is not available here.
    pub async fn start(backend: Backend) -> Option<TestNode> {
        Self::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestNode> {
        let dir = TempDir::new();
        let database_url = fresh_database(backend, &dir.0).await?;
        let mut config = Config::for_tests(&database_url);
        tweak(&mut config);
        let node = Node::start(config).await.expect("node starts");
        Some(TestNode { node, dir, database_url })
    }

    pub fn http(&self) -> String {
        format!("http://{}", self.node.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.node.addr)
    }

    /// Creates a company with an admin; returns the admin's client.
    pub async fn company(&self, slug: &str) -> Api {
        let body = json!({"name": slug, "slug": slug, "admin": {"username": "admin", "password": "password123"}});
        let (status, answer) = Api::anonymous(&self.http()).post("/v1/companies", &body).await;
        assert_eq!(status, 201, "company created: {answer}");
        Api::from_login(&self.http(), slug, &answer)
    }
}

/// A folder removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("lark-it-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::fs::remove_dir_all(&self.0).is_err() {
            eprintln!("could not remove {}", self.0.display());
        }
    }
}

/// An HTTP client acting as one user.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub refresh_token: String,
    pub user_id: Uuid,
    pub company_id: Uuid,
    pub company_slug: String,
    client: reqwest::Client,
}

impl Api {
    pub fn anonymous(base: &str) -> Api {
        Api {
            base: base.to_owned(),
            token: String::new(),
            refresh_token: String::new(),
            user_id: Uuid::nil(),
            company_id: Uuid::nil(),
            company_slug: String::new(),
            client: reqwest::Client::new(),
        }
    }

    /// The same user, talking to another node.
    pub fn on(&self, base: &str) -> Api {
        Api { base: base.to_owned(), ..self.clone() }
    }

    /// The same client with another bearer token (and company claim).
    pub fn with_token(&self, token: &str, company_id: Uuid) -> Api {
        Api { token: token.to_owned(), company_id, ..self.clone() }
    }

    fn from_login(base: &str, slug: &str, answer: &Value) -> Api {
        let user = &answer["user"];
        Api {
            base: base.to_owned(),
            token: answer["tokens"]["access_token"].as_str().expect("access token").to_owned(),
            refresh_token: answer["tokens"]["refresh_token"].as_str().expect("refresh token").to_owned(),
            user_id: user["id"].as_str().and_then(|id| id.parse().ok()).expect("user id"),
            company_id: user["company_id"].as_str().and_then(|id| id.parse().ok()).expect("company id"),
            company_slug: slug.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// As admin: creates a user and logs in as them.
    pub async fn add_user(&self, username: &str) -> Api {
        let (status, answer) = self.post("/v1/users", &json!({"username": username, "password": "password123"})).await;
        assert_eq!(status, 201, "user created: {answer}");
        let login = json!({"company": self.company_slug, "username": username, "password": "password123"});
        let (status, answer) = Api::anonymous(&self.base).post("/v1/auth/login", &login).await;
        assert_eq!(status, 200, "login: {answer}");
        Api::from_login(&self.base, &self.company_slug, &answer)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        if self.token.is_empty() {
            builder
        } else {
            builder.bearer_auth(&self.token)
        }
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> (u16, Value) {
        let response = builder.send().await.expect("http request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("http body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.request(reqwest::Method::POST, path).json(body)).await
    }

    /// Sends until the message is acknowledged (its channel's owner may be moving); its seq.
    pub async fn send_acknowledged(&self, channel: &str, client_msg_id: &str) -> i64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let body = json!({"client_msg_id": client_msg_id, "body": client_msg_id});
            let (status, answer) = self.post(&format!("/v1/channels/{channel}/messages"), &body).await;
            if status == 201 {
                return answer["message"]["seq"].as_i64().unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "{client_msg_id} never acknowledged: {status} {answer}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn put(&self, path: &str) -> (u16, Value) {
        self.send(self.request(reqwest::Method::PUT, path)).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.request(reqwest::Method::PATCH, path).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request(method, path)
    }

    /// Creates a channel and returns its id.
    pub async fn channel(&self, name: &str, private: bool) -> Uuid {
        let (status, answer) = self.post("/v1/channels", &json!({"name": name, "private": private})).await;
        assert_eq!(status, 201, "channel created: {answer}");
        answer["channel"]["id"].as_str().and_then(|id| id.parse().ok()).expect("channel id")
    }

    pub async fn connect(&self) -> WsClient {
        let ws_base = self.base.replacen("http://", "ws://", 1);
        WsClient::connect(&format!("{ws_base}/ws?token={}", self.token)).await.expect("websocket connects")
    }
}

/// A client from the answer of a company creation or a login.
pub fn api_from_login(base: &str, slug: &str, answer: &Value) -> Api {
    Api::from_login(base, slug, answer)
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket client of the JSON protocol.
pub struct WsClient {
    socket: Socket,
    pub hello: Value,
    next_id: u64,
}

/// How a socket ended.
#[derive(Debug, PartialEq)]
pub enum Ending {
    Closed(Option<u16>),
    Frame(Value),
}

impl WsClient {
    pub async fn connect(url: &str) -> anyhow::Result<WsClient> {
        let (socket, _) = tokio_tungstenite::connect_async(url).await.context("websocket handshake")?;
        let mut client = WsClient { socket, hello: Value::Null, next_id: 0 };
        let hello = client.next().await?;
        if hello["type"] != "hello" {
            bail!("expected hello, got {hello}");
        }
        client.hello = hello;
        Ok(client)
    }

    pub async fn send_json(&mut self, frame: &Value) {
        self.socket.send(Message::Text(frame.to_string().into())).await.expect("websocket send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.socket.send(message).await.expect("websocket send");
    }

    /// The next JSON frame, skipping pings; an error if the socket closed or nothing came.
    pub async fn next(&mut self) -> anyhow::Result<Value> {
        match self.next_ending().await? {
            Ending::Frame(frame) => Ok(frame),
            Ending::Closed(code) => Err(anyhow!("socket closed with {code:?}")),
        }
    }

    /// The next frame or the close code.
    pub async fn next_ending(&mut self) -> anyhow::Result<Ending> {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next()).await.context("no frame within the wait")?;
            match message {
                None => return Ok(Ending::Closed(None)),
                Some(Err(err)) => return Err(anyhow!("socket error: {err}")),
                Some(Ok(Message::Text(text))) => return Ok(Ending::Frame(serde_json::from_str(&text)?)),
                Some(Ok(Message::Close(frame))) => return Ok(Ending::Closed(frame.map(|f| u16::from(f.code)))),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Waits for the socket to close and returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next_ending().await {
                Ok(Ending::Closed(code)) => return code,
                Ok(Ending::Frame(_)) => continue,
                Err(err) => panic!("expected a close: {err}"),
            }
        }
    }

    /// Sends `frame` with a fresh request id; returns the answer and the frames that came first.
    pub async fn request(&mut self, mut frame: Value) -> (Value, Vec<Value>) {
        self.next_id += 1;
        let id = format!("r{}", self.next_id);
        frame["id"] = Value::from(id.clone());
        self.send_json(&frame).await;
        let mut before = Vec::new();
        loop {
            let frame = self.next().await.expect("an answer");
            if frame["id"] == id.as_str() {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// Like [`Self::request`] but asserts an `ok` answer and returns its result.
    pub async fn ok(&mut self, frame: Value) -> Value {
        let (answer, _) = self.request(frame).await;
        assert_eq!(answer["type"], "ok", "expected ok, got {answer}");
        answer["result"].clone()
    }

    /// The next frame of `kind`, skipping others.
    pub async fn next_of(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.next().await.expect("a frame");
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    pub async fn close(mut self) {
        if self.socket.close(None).await.is_err() {
            eprintln!("socket already closed");
        }
    }
}

pub fn close_code(code: u16) -> CloseCode {
    CloseCode::from(code)
}

/// Generates one test per backend from `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::Backend::Postgres).await })*
        }
    };
}
