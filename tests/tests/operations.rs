//! Files, devices, health, metrics, idle timeout, graceful shutdown and Redis presence.

use integration_tests::{on_both_backends, service_url, Backend, TestNode};
use serde_json::json;
use std::time::Duration;

on_both_backends!(files_upload_attach_and_download, devices_register_and_delete);

async fn files_upload_attach_and_download(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("files").await;
    let outsider = admin.add_user("outsider").await;
    let channel = admin.channel("docs", true).await;
    let form = |bytes: Vec<u8>| {
        reqwest::multipart::Form::new().text("channel_id", channel.to_string()).part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name("report.pdf").mime_str("application/pdf").unwrap(),
        )
    };
    let (status, file) =
        admin.send(admin.raw(reqwest::Method::POST, "/v1/files").multipart(form(b"%PDF-1.7".to_vec()))).await;
    assert_eq!(status, 201, "{file}");
    assert_eq!((file["file"]["size"].as_i64(), file["file"]["filename"].as_str()), (Some(8), Some("report.pdf")));
    let file_id = file["file"]["id"].as_str().unwrap().to_owned();

    let (status, sent) = admin
        .post(
            &format!("/v1/channels/{channel}/messages"),
            &json!({"client_msg_id":"f","body":"","attachment_ids":[file_id]}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(sent["message"]["attachment_ids"][0], file_id.as_str());

    let response = admin.raw(reqwest::Method::GET, &format!("/v1/files/{file_id}")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"%PDF-1.7");
    let (status, _) = outsider.get(&format!("/v1/files/{file_id}")).await;
    assert_eq!(status, 404, "only members of the file's channel download it");
    let (status, _) =
        outsider.send(outsider.raw(reqwest::Method::POST, "/v1/files").multipart(form(b"x".to_vec()))).await;
    assert_eq!(status, 404, "nor upload into it");

    let too_big = vec![0u8; 300 * 1024];
    let (status, body) = admin.send(admin.raw(reqwest::Method::POST, "/v1/files").multipart(form(too_big))).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
    let other = uuid::Uuid::new_v4();
    let (status, _) = admin
        .post(
            &format!("/v1/channels/{channel}/messages"),
            &json!({"client_msg_id":"g","body":"x","attachment_ids":[other]}),
        )
        .await;
    assert_eq!(status, 404, "attachments must be uploaded to the same channel");
    node.node.shutdown().await;
}

async fn devices_register_and_delete(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("phones").await;
    let (status, _) = admin.post("/v1/devices", &json!({"token":"fcm-token-1","platform":"android"})).await;
    assert_eq!(status, 201);
    let (status, body) = admin.post("/v1/devices", &json!({"token":"fcm-token-2","platform":"fax"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid")));
    let (_, devices) = admin.get("/v1/devices").await;
    assert_eq!(devices["devices"][0]["token"], "fcm-token-1");
    assert_eq!(admin.delete("/v1/devices/fcm-token-1").await.0, 204);
    assert_eq!(admin.delete("/v1/devices/fcm-token-1").await.0, 404);
    node.node.shutdown().await;
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let node = TestNode::start(Backend::Sqlite).await.unwrap();
    let anonymous = integration_tests::Api::anonymous(&node.http());
    assert_eq!(anonymous.get("/healthz").await.0, 200);
    let (status, ready) = anonymous.get("/readyz").await;
    assert_eq!((status, ready["database"].as_bool()), (200, Some(true)));
    let admin = node.company("metrics").await;
    let _ws = admin.connect().await;
    let response = reqwest::get(format!("{}/metrics", node.http())).await.unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("lark_ws_sessions 1"), "{text}");
    assert!(text.contains("lark_user_actors 1"), "{text}");
    node.node.shutdown().await;
}

#[tokio::test]
async fn an_idle_socket_is_closed_with_4002() {
    let node =
        TestNode::start_with(Backend::Sqlite, |config| config.idle_timeout = Duration::from_millis(300)).await.unwrap();
    let admin = node.company("idle").await;
    let mut ws = admin.connect().await;
    assert_eq!(ws.closed().await, Some(4002));
    node.node.shutdown().await;
}

#[tokio::test]
async fn shutdown_tells_clients_to_reconnect() {
    let node = TestNode::start(Backend::Sqlite).await.unwrap();
    let admin = node.company("bye").await;
    let mut ws = admin.connect().await;
    let TestNode { node, dir: _dir, .. } = node;
    let stopping = tokio::spawn(node.shutdown());
    assert_eq!(ws.closed().await, Some(1012));
    stopping.await.unwrap();
}

#[tokio::test]
async fn presence_is_kept_in_redis_across_restarts() {
    let Some(redis_url) = service_url("TEST_REDIS_URL") else { return };
    let config = |config: &mut integration_tests::Config| config.redis_url = Some(redis_url.clone());
    let first = TestNode::start_with(Backend::Sqlite, config).await.unwrap();
    let admin = first.company("presence").await;
    let bob = admin.add_user("bob").await;
    let (_, ready) = admin.get("/readyz").await;
    assert_eq!(ready["redis"], true);
    let mut watcher = admin.connect().await;
    let watched = watcher.ok(json!({"type":"presence_watch","user_ids":[bob.user_id]})).await;
    assert_eq!(watched[0]["status"], "offline");
    let bob_ws = bob.connect().await;
    assert_eq!(watcher.next_of("presence").await["status"], "online");
    bob_ws.close().await;
    let offline = watcher.next_of("presence").await;
    assert_eq!(offline["status"], "offline");
    let last_seen = offline["last_seen"].as_i64().unwrap();
    drop(watcher);
    let database_url = first.database_url.clone();
    let TestNode { node, dir, .. } = first;
    node.shutdown().await;

    // A new node on the same database and Redis knows when bob was last seen.
    let mut config = integration_tests::Config::for_tests(&database_url);
    config.redis_url = Some(redis_url.clone());
    let second = integration_tests::Node::start(config).await.unwrap();
    let mut admin = admin.clone();
    admin.base = format!("http://{}", second.addr);
    let mut watcher = admin.connect().await;
    let watched = watcher.ok(json!({"type":"presence_watch","user_ids":[bob.user_id]})).await;
    assert_eq!((watched[0]["status"].as_str(), watched[0]["last_seen"].as_i64()), (Some("offline"), Some(last_seen)));
    second.shutdown().await;
    drop(dir);
}

/// A throwaway Redis of this test's own, so the test can kill it.
struct OwnRedis {
    child: std::process::Child,
    port: u16,
    dir: integration_tests::TempDir,
}

impl OwnRedis {
    fn start(port: Option<u16>, dir: integration_tests::TempDir) -> Option<OwnRedis> {
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir.0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        Some(OwnRedis { child, port, dir })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn wait_up(&self) {
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis did not start on {}", self.port);
    }

    fn kill(mut self) -> (u16, integration_tests::TempDir) {
        self.child.kill().expect("kill redis");
        self.child.wait().expect("reap redis");
        (self.port, self.dir)
    }
}

/// With Redis down a node is degraded, not out: `/readyz` stays 200 (a load balancer keeps it)
/// and says what is missing; chat goes on; Redis coming back is noticed.
#[tokio::test]
async fn redis_down_degrades_the_node_without_taking_it_out() {
    if service_url("TEST_REDIS_URL").is_none() {
        return; // no redis-server here (scripts/test.sh always provides one)
    }
    let redis = OwnRedis::start(None, integration_tests::TempDir::new()).expect("redis-server runs");
    redis.wait_up().await;
    let url = redis.url();
    let node = TestNode::start_with(Backend::Sqlite, |config| config.redis_url = Some(url)).await.unwrap();
    let admin = node.company("degraded").await;
    let channel = admin.channel("general", false).await;
    let (status, ready) = admin.get("/readyz").await;
    assert_eq!((status, ready["redis"].as_bool(), ready["degraded"].clone()), (200, Some(true), json!([])));

    let (port, dir) = redis.kill();
    let (status, ready) = admin.get("/readyz").await;
    assert_eq!(status, 200, "still ready: {ready}");
    assert_eq!((ready["ready"].as_bool(), ready["redis"].as_bool()), (Some(true), Some(false)));
    assert_eq!(ready["degraded"], json!(["redis"]));
    let (status, _) = admin
        .post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"c","body":"still here"}))
        .await;
    assert_eq!(status, 201, "chat goes on without Redis");

    let redis = OwnRedis::start(Some(port), dir).expect("redis-server runs again");
    redis.wait_up().await;
    let mut back = false;
    for _ in 0..100 {
        let (_, ready) = admin.get("/readyz").await;
        if ready["redis"] == true {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "redis noticed again");
    node.node.shutdown().await;
    redis.kill();
}

/// A burst of logins runs argon2 (19 MiB of working memory each) hundreds of times: the node
/// must not keep that memory (it went from ~30 MB to over 1 GB before the hashing memory
/// was reused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_leaves_the_node_small() {
    use futures_util::StreamExt;
    use integration_tests::sandbox::ClusterSandbox;
    let Some(cluster) = ClusterSandbox::start(1).await else { return };
    let admin = cluster.company(0).await;
    let slug = admin.company_slug.clone();
    let url = format!("{}/v1/auth/login", cluster.nodes[0].http());
    let client = reqwest::Client::new();
    let login = json!({"company": slug, "username": "admin", "password": "password123"});
    let statuses: Vec<u16> = futures_util::stream::iter(0..200)
        .map(|_| {
            let (client, url, login) = (client.clone(), url.clone(), login.clone());
            async move { client.post(&url).json(&login).send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "every login succeeds: {statuses:?}");
    let rss_mib = cluster.nodes[0].rss_kib().expect("rss of the node") / 1024;
    eprintln!("node RSS after 200 logins: {rss_mib} MiB");
    assert!(rss_mib < 100, "the node keeps {rss_mib} MiB after a burst of logins");
}
