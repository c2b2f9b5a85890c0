//! Hostile clients: text no store can keep, tokens that outlive their user or lie about their
//! company, unknown enum values, login floods, slow clients that hold sockets open, operator
//! routes, and one company taking another's push token. Each case failed (503s, 200s, a node
//! taken off the air) before the fix it names.

use std::time::{Duration, Instant};

use integration_tests::{on_both_backends, service_url, Api, Backend, TestNode, WsClient};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_backends!(nul_text_is_refused_not_retried, a_deleted_user_or_a_lying_token_gets_401);

/// A NUL character in any text field was a `503 unavailable, retry` on Postgres (which
/// cannot store it) and stored as is on SQLite: now `400 invalid` naming the field, on both.
async fn nul_text_is_refused_not_retried(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("nul").await;
    let channel = admin.channel("general", false).await;
    let checks = [
        ("/v1/auth/login", json!({"company":"nul","username":"ad\u{0}min","password":"password123"})),
        ("/v1/channels", json!({"name":"gen\u{0}eral"})),
        (&format!("/v1/channels/{channel}/messages") as &str, json!({"client_msg_id":"c1","body":"hi\u{0}there"})),
        ("/v1/users", json!({"username":"bob","password":"pass\u{0}word1"})),
        ("/v1/devices", json!({"token":"tok\u{0}en","platform":"android"})),
    ];
    for (path, body) in checks {
        let (status, answer) = if path == "/v1/auth/login" {
            Api::anonymous(&node.http()).post(path, &body).await
        } else {
            admin.post(path, &body).await
        };
        assert_eq!((status, answer["code"].as_str()), (400, Some("invalid")), "{path}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("NUL"), "{answer}");
    }
    let (status, answer) =
        admin.put(&format!("/v1/channels/{channel}/messages/{}/reactions/%00", uuid::Uuid::new_v4())).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid")));
    let mut ws = admin.connect().await;
    let (answer, _) =
        ws.request(json!({"type":"send","channel_id":channel,"client_msg_id":"w1","body":"a\u{0}b"})).await;
    assert_eq!(
        (answer["code"].as_str(), answer["message"].as_str()),
        (Some("invalid"), Some("field `body` must not contain NUL characters (\\u0000)"))
    );
    // Nothing was stored; the socket and the node go on.
    let (_, history) = admin.get(&format!("/v1/channels/{channel}/messages")).await;
    assert_eq!(history["messages"], json!([]));
    ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":"w2","body":"fine"})).await;
    node.node.shutdown().await;
}

/// A signed token of a user deleted since got 503 on writes; a token whose company claim does
/// not match its user's company was accepted. Both are now 401, on HTTP and on the socket.
async fn a_deleted_user_or_a_lying_token_gets_401(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("ghosts").await;
    let other = node.company("others").await;
    let bob = admin.add_user("bob").await;
    let channel = admin.channel("general", false).await;
    bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;

    // The signing key's holder could claim any company: the user's own is checked.
    let tokens =
        node::auth::Tokens::new(&node.node.state.config.jwt_secret, Duration::from_secs(60), Duration::from_secs(60));
    let lying = tokens.pair(bob.user_id, other.company_id, true).unwrap().access_token;
    let liar = bob.with_token(&lying, other.company_id);
    let (status, answer) = liar.get("/v1/channels").await;
    assert_eq!((status, answer["code"].as_str()), (401, Some("unauthorized")), "{answer}");
    assert!(WsClient::connect(&node.ws_url(&lying)).await.is_err(), "the socket upgrade is refused too");

    // Bob is deleted (by an operator, in the database); his token is still signed and fresh.
    let pool = sqlx::AnyPool::connect(&node.database_url).await.unwrap();
    for sql in ["DELETE FROM channel_members WHERE user_id = $1", "DELETE FROM users WHERE id = $1"] {
        sqlx::query(sql).bind(bob.user_id.to_string()).execute(&pool).await.unwrap();
    }
    let (status, answer) =
        bob.post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"g","body":"boo"})).await;
    assert_eq!((status, answer["message"].as_str()), (401, Some("user no longer exists")), "{answer}");
    assert!(WsClient::connect(&node.ws_url(&bob.token)).await.is_err());
    node.node.shutdown().await;
}

#[tokio::test]
async fn unknown_values_name_their_field_and_last_seq_is_checked_on_every_subscribe() {
    let node = TestNode::start(Backend::Sqlite).await.unwrap();
    let admin = node.company("enums").await;
    let channel = admin.channel("general", false).await;
    let mut ws = admin.connect().await;
    let signal = json!({"type":"signal","meeting_id":uuid::Uuid::new_v4(),"to":uuid::Uuid::new_v4(),"kind":"bogus","payload":{}});
    let (answer, _) = ws.request(signal).await;
    assert_eq!(answer["code"], "invalid", "{answer}");
    assert!(answer["message"].as_str().unwrap().starts_with("field `kind`"), "{answer}");
    let (answer, _) = ws.request(json!({"type":"presence_set","status":"busy"})).await;
    assert_eq!(answer["code"], "invalid");
    assert!(answer["message"].as_str().unwrap().contains("field `status`"), "{answer}");
    // Subscribed already, a last_seq ahead of the head is still refused.
    ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    let (answer, _) = ws.request(json!({"type":"subscribe","channel_id":channel,"last_seq":99})).await;
    assert_eq!(answer["code"], "invalid", "{answer}");
    // HTTP bodies name their field too.
    let (status, answer) = admin.post("/v1/devices", &json!({"token":"t","platform":7})).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().unwrap().contains("platform"), "{answer}");
    node.node.shutdown().await;
}

/// Login runs argon2 and had no limit: one client could burn a node's CPU. Now a client
/// address gets `LOGIN_RATE_PER_MIN` attempts, on every node together when Redis is shared.
#[tokio::test]
async fn logins_are_limited_per_address_across_nodes() {
    let Some(redis_url) = service_url("TEST_REDIS_URL") else { return };
    let tweak = |config: &mut node::Config| {
        config.limits.login_per_min = 4;
        config.redis_url = Some(redis_url.clone());
    };
    let first = TestNode::start_with(Backend::Postgres, tweak).await;
    let Some(first) = first else { return };
    let mut second_config = node::Config::for_tests(&first.database_url);
    tweak(&mut second_config);
    let second = node::Node::start(second_config).await.unwrap();
    let slug = format!("login{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    first.company(&slug).await;
    let login = json!({"company": slug, "username":"admin","password":"wrong-password"});
    let bases = [first.http(), format!("http://{}", second.addr)];
    let mut answers = Vec::new();
    for attempt in 0..6 {
        let (status, answer) = Api::anonymous(&bases[attempt % 2]).post("/v1/auth/login", &login).await;
        answers.push((status, answer["code"].as_str().unwrap_or_default().to_owned()));
    }
    let limited = answers.iter().filter(|(status, code)| *status == 429 && code == "rate_limited").count();
    assert!(limited >= 2, "the 5th and 6th attempt over both nodes are refused: {answers:?}");
    let response =
        reqwest::Client::new().post(format!("{}/v1/auth/login", bases[0])).json(&login).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().get("retry-after").is_some(), "429 says when to come back");
    second.shutdown().await;
    first.node.shutdown().await;
}

/// Frames were limited per socket: opening more sockets bought more. Now the limit is the
/// user's, across all their sockets on the node.
#[tokio::test]
async fn frame_limits_hold_per_user_across_sockets() {
    let node = TestNode::start_with(Backend::Sqlite, |config| {
        config.limits.frames_per_sec = 1.0;
        config.limits.frames_burst = 6.0;
    })
    .await
    .unwrap();
    let admin = node.company("frames").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(admin.connect().await);
    }
    let mut refused = 0;
    for ws in &mut sockets {
        for _ in 0..4 {
            let (answer, _) = ws.request(json!({"type":"ping"})).await;
            if answer["code"] == "rate_limited" {
                refused += 1;
            }
        }
    }
    assert!(refused >= 5, "12 frames against a burst of 6 for the user: {refused} refused");
    node.node.shutdown().await;
}

/// Partial request headers were never timed out and took a node off the air. Now they are
/// dropped after `HEADER_READ_TIMEOUT_MS`, slow bodies after `BODY_READ_TIMEOUT_MS`, and the
/// node serves real clients all along.
#[tokio::test]
async fn slow_clients_are_cut_off_and_the_node_keeps_serving() {
    let node = TestNode::start_with(Backend::Sqlite, |config| {
        config.header_read_timeout = Duration::from_millis(800);
        config.body_read_timeout = Duration::from_millis(800);
        config.max_http_connections = 150;
    })
    .await
    .unwrap();
    let admin = node.company("slow").await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        // More than the cap: the excess is closed at once, the rest when their time is up.
        if let Ok(mut socket) = TcpStream::connect(node.node.addr).await {
            if socket.write_all(b"GET /v1/me HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.is_ok() {
                slow.push(socket);
            }
        }
    }
    let started = Instant::now();
    let mut closed = 0;
    for socket in &mut slow {
        let mut buf = [0u8; 256];
        let deadline = Duration::from_secs(5).saturating_sub(started.elapsed());
        if matches!(tokio::time::timeout(deadline, socket.read(&mut buf)).await, Ok(Ok(_)) | Ok(Err(_))) {
            closed += 1;
        }
    }
    assert_eq!(closed, slow.len(), "every slow socket was closed by the node");
    let (status, _) = admin.get("/v1/me").await;
    assert_eq!(status, 200, "the node serves");

    // A body that trickles in is cut off too.
    let mut socket = TcpStream::connect(node.node.addr).await.unwrap();
    let head = format!(
        "POST /v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        admin.token
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the slow body was given up within the timeout");
    let text = String::from_utf8_lossy(&answer);
    // The body extractor reports the cut-off body (400 with the reason), or the
    // connection just ends: either way the request is over within the timeout.
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    node.node.shutdown().await;
}

/// `/metrics` and `/cluster/*` showed member addresses and raft ids to anyone without a
/// token configured. With a token, it is required; without one, only loopback may ask.
#[tokio::test]
async fn operator_routes_need_the_token_off_loopback() {
    let node = TestNode::start_with(Backend::Sqlite, |config| config.metrics_token = Some("op-secret".to_owned()))
        .await
        .unwrap();
    let anonymous = Api::anonymous(&node.http());
    for path in ["/metrics", "/cluster/status", "/cluster/owner?key=channel:x"] {
        let (status, _) = anonymous.get(path).await;
        assert_eq!(status, 401, "{path} without the token");
    }
    let operator = anonymous.with_token("op-secret", uuid::Uuid::nil());
    let (status, _) = operator.get("/cluster/status").await;
    assert_eq!(status, 200);
    node.node.shutdown().await;
    // Without a token: loopback (this test) may ask; the rule for other peers is unit-tested.
    let node = TestNode::start(Backend::Sqlite).await.unwrap();
    let (status, _) = Api::anonymous(&node.http()).get("/cluster/status").await;
    assert_eq!(status, 200);
    node.node.shutdown().await;
}

/// A user of company B registering A's device token took it away from A, so A's phone got
/// B's pushes only. A token is now registered per company: both keep it.
#[tokio::test]
async fn another_company_cannot_take_a_device_token_away() {
    let node = TestNode::start(Backend::Sqlite).await.unwrap();
    let a = node.company("alpha").await;
    let b = node.company("beta").await;
    let device = json!({"token":"fcm-token-123","platform":"android"});
    assert_eq!(a.post("/v1/devices", &device).await.0, 201);
    assert_eq!(b.post("/v1/devices", &device).await.0, 201);
    for api in [&a, &b] {
        let (_, devices) = api.get("/v1/devices").await;
        assert_eq!(devices["devices"][0]["token"], "fcm-token-123", "{devices}");
    }
    // Within one company the device moves to whoever registers it last.
    let a2 = a.add_user("second").await;
    assert_eq!(a2.post("/v1/devices", &device).await.0, 201);
    let (_, devices) = a.get("/v1/devices").await;
    assert_eq!(devices["devices"], json!([]));
    node.node.shutdown().await;
}
