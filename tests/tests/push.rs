//! Push notifications: the FCM HTTP v1 client against the fake FCM, stale-token cleanup, and
//! the Redis queue surviving a worker killed mid-delivery.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use integration_tests::fake_fcm::{FakeFcm, FcmReply};
use integration_tests::{service_url, TempDir, WAIT};
use node::push::{
    self, FcmClient, FcmError, PushConfig, PushNotice, RedisPushQueue, RetryPolicy, SendOutcome, ServiceAccount,
};
use node::store::{Db, NewUser};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

const DEEP_LINK: &str = "lark://channel/0190f0a4-0000-7000-8000-000000000001/message/42";

/// A fake FCM, a database with one user and their devices, and a push config aimed at both.
struct Setup {
    fake: FakeFcm,
    db: Db,
    user_id: Uuid,
    account_file: PathBuf,
    config: PushConfig,
    _dir: TempDir,
}

async fn setup(devices: &[&str]) -> Setup {
    let fake = FakeFcm::start().await.expect("fake fcm starts");
    let dir = TempDir::new();
    let account_file = dir.0.join("service-account.json");
    fake.write_service_account(&account_file).expect("service account written");
    let db = Db::open(&format!("sqlite://{}/push.db", dir.0.display()), 4).await.expect("database opens");
    let admin = NewUser { username: "ann", display_name: "Ann", password_hash: "not-a-real-hash", is_admin: true };
    let (company, user) = db.create_company("Push Co", "push-co", admin).await.expect("company created");
    for token in devices {
        db.upsert_device(company.id, user.id, token, "android").await.expect("device registered");
    }
    let mut config = PushConfig::new(&account_file);
    config.base_url = fake.base_url.clone();
    // Short computed backoff, so a test that waits ~1 s proves `Retry-After` was honoured.
    config.retry =
        RetryPolicy { max_attempts: 5, base_delay: Duration::from_millis(20), max_delay: Duration::from_secs(5) };
    Setup { fake, db, user_id: user.id, account_file, config, _dir: dir }
}

impl Setup {
    fn client(&self) -> FcmClient {
        let account = ServiceAccount::from_file(&self.account_file).expect("service account reads");
        FcmClient::new(account, &self.config).expect("fcm client builds")
    }

    fn notice(&self, body: &str) -> PushNotice {
        let data = [("kind", "mention"), ("deep_link", DEEP_LINK)]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect();
        PushNotice { user_id: self.user_id, title: "Bob mentioned you".to_owned(), body: body.to_owned(), data }
    }

    async fn device_tokens(&self) -> Vec<String> {
        let mut tokens: Vec<String> =
            self.db.devices(self.user_id).await.expect("devices").into_iter().map(|d| d.token).collect();
        tokens.sort();
        tokens
    }
}

/// Polls `check` until it holds; panics with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn client_exchanges_a_token_and_sends_the_deep_link() {
    let setup = setup(&[]).await;
    let client = setup.client();
    let outcome = client.send("device-a", &setup.notice("see the plan")).await.expect("sent");
    assert!(matches!(outcome, SendOutcome::Sent { ref message_name } if message_name.starts_with("projects/")));
    let long_body = "é".repeat(6000);
    let outcome = client.send("device-b", &setup.notice(&long_body)).await.expect("sent");
    assert!(matches!(outcome, SendOutcome::Sent { .. }), "an oversized notice is shortened, not refused: {outcome:?}");

    assert_eq!(setup.fake.token_requests(), 1, "the access token is cached between sends");
    let received = setup.fake.received();
    assert_eq!(received.len(), 2);
    let first = &received[0];
    assert_eq!(first["token"], "device-a");
    assert_eq!(first["notification"], json!({"title": "Bob mentioned you", "body": "see the plan"}));
    assert_eq!(first["data"], json!({"kind": "mention", "deep_link": DEEP_LINK}));
    assert_eq!(first["android"], json!({"priority": "high", "ttl": "60s"}));
    assert_eq!(first["apns"]["headers"]["apns-priority"], "10");
    let shortened = received[1]["notification"]["body"].as_str().expect("body");
    assert!(shortened.ends_with('…') && shortened.len() < 4096, "body cut to fit: {} bytes", shortened.len());
    assert_eq!(received[1]["data"]["deep_link"], DEEP_LINK);
}

#[tokio::test]
async fn a_rejected_access_token_is_refreshed_once() {
    let setup = setup(&[]).await;
    let client = setup.client();
    client.send("device-a", &setup.notice("one")).await.expect("sent");
    setup.fake.revoke_access_tokens();
    let outcome = client.send("device-a", &setup.notice("two")).await.expect("sent after a refresh");
    assert!(matches!(outcome, SendOutcome::Sent { .. }));
    assert_eq!(setup.fake.token_requests(), 2, "one new token after the 401");

    setup.fake.script(None, FcmReply::Unauthenticated, 5);
    let failed = client.send("device-a", &setup.notice("three")).await;
    assert!(matches!(failed, Err(FcmError::Unauthorized(_))), "a second 401 gives up: {failed:?}");
    assert_eq!(setup.fake.token_requests(), 3, "exactly one refresh per send");
}

#[tokio::test]
async fn rate_limited_send_waits_for_retry_after_then_succeeds() {
    let setup = setup(&[]).await;
    let client = setup.client();
    setup.fake.script(None, FcmReply::TooManyRequests { retry_after_secs: 1 }, 1);
    setup.fake.script(Some("device-a"), FcmReply::Unavailable, 1);
    let outcome = client.send("device-a", &setup.notice("hello")).await.expect("sent in the end");
    assert!(matches!(outcome, SendOutcome::Sent { .. }));

    let attempts = setup.fake.attempts();
    let statuses: Vec<u16> = attempts.iter().map(|attempt| attempt.status).collect();
    assert_eq!(statuses, [503, 429, 200]);
    let waited = attempts[2].at - attempts[1].at;
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 honoured, waited {waited:?}");
    assert_eq!(setup.fake.received().len(), 1);

    setup.fake.script(None, FcmReply::Internal, 10);
    let failed = client.send("device-a", &setup.notice("again")).await;
    assert!(matches!(failed, Err(FcmError::Exhausted { attempts: 5, .. })), "bounded retries: {failed:?}");
    assert_eq!(setup.fake.attempts().len(), 3 + 5);
}

#[tokio::test]
async fn stale_tokens_are_deleted_and_other_refusals_keep_them() {
    let devices = ["bogus", "dead", "live", "other-sender", "payload-bug"];
    let setup = setup(&devices).await;
    setup.fake.script(Some("dead"), FcmReply::Unregistered, 1);
    setup.fake.script(Some("bogus"), FcmReply::InvalidToken, 1);
    setup.fake.script(Some("other-sender"), FcmReply::SenderIdMismatch, 1);
    setup.fake.script(Some("payload-bug"), FcmReply::InvalidPayload, 1);
    let (_stop, shutdown) = watch::channel(false);
    let pipeline =
        push::launch(setup.config.clone(), setup.db.clone(), None, "test-node", shutdown).await.expect("push starts");
    pipeline.push_queue().enqueue(setup.notice("hi all")).await.expect("queued");

    eventually("every device was tried", || async { setup.fake.attempts().len() >= devices.len() }).await;
    eventually("stale tokens are deleted", || async { setup.device_tokens().await.len() == 3 }).await;
    assert_eq!(setup.device_tokens().await, ["live", "other-sender", "payload-bug"]);
    let received = setup.fake.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        (received[0]["token"].as_str(), received[0]["data"]["deep_link"].as_str()),
        (Some("live"), Some(DEEP_LINK))
    );
    let tries_of = |token: &str| setup.fake.attempts().iter().filter(|attempt| attempt.device_token == token).count();
    assert_eq!((tries_of("other-sender"), tries_of("payload-bug")), (1, 1), "refusals are not retried");
}

/// A Redis push config on a stream of its own, or `None` without a test Redis.
fn redis_setup(setup: &Setup) -> Option<(String, PushConfig)> {
    let url = service_url("TEST_REDIS_URL")?;
    let mut config = setup.config.clone();
    config.stream_key = format!("push:test:{}", Uuid::new_v4().simple());
    Some((url, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_push_survives_a_worker_killed_mid_delivery() {
    let setup = setup(&["phone"]).await;
    let Some((redis_url, config)) = redis_setup(&setup) else { return };
    // Node A reads the entry and hangs in the send; then it dies.
    setup.fake.script(None, FcmReply::Stall { secs: 30 }, 1);
    let (_stop_a, shutdown_a) = watch::channel(false);
    let mut node_a = push::launch(config.clone(), setup.db.clone(), Some(&redis_url), "node-a", shutdown_a)
        .await
        .expect("push on a");
    node_a.push_queue().enqueue(setup.notice("from a dead node")).await.expect("queued");
    eventually("node a is inside the send", || async { !setup.fake.attempts().is_empty() }).await;
    node_a.worker.abort();
    assert!((&mut node_a.worker).await.is_err_and(|err| err.is_cancelled()));
    assert_eq!(node_a.pending().await.expect("xpending"), 1, "the entry is left pending, unacknowledged");
    assert!(setup.fake.received().is_empty());

    // Node B claims what A held once it sat idle, and delivers it.
    let mut config_b = config.clone();
    config_b.claim_idle = Duration::from_millis(300);
    let (stop_b, shutdown_b) = watch::channel(false);
    let node_b =
        push::launch(config_b, setup.db.clone(), Some(&redis_url), "node-b", shutdown_b).await.expect("push on b");
    let received =
        setup.fake.wait_for_messages(WAIT, |messages| !messages.is_empty()).await.expect("b delivers a's push");
    assert_eq!(
        (received[0]["token"].as_str(), received[0]["data"]["deep_link"].as_str()),
        (Some("phone"), Some(DEEP_LINK))
    );
    eventually("node b acknowledged the entry", || async { node_b.pending().await.expect("xpending") == 0 }).await;
    assert_eq!(setup.fake.received().len(), 1, "delivered once");

    stop_b.send_replace(true);
    tokio::time::timeout(WAIT, node_b.worker)
        .await
        .expect("worker b stops on shutdown")
        .expect("worker b ends cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_what_it_had_read() {
    let setup = setup(&["phone"]).await;
    let Some((redis_url, config)) = redis_setup(&setup) else { return };
    setup.fake.script(None, FcmReply::Stall { secs: 30 }, 1);
    let (_stop, shutdown) = watch::channel(false);
    let first_run = push::launch(config.clone(), setup.db.clone(), Some(&redis_url), "node-a", shutdown.clone())
        .await
        .expect("push");
    first_run.push_queue().enqueue(setup.notice("before the crash")).await.expect("queued");
    eventually("the first run is inside the send", || async { !setup.fake.attempts().is_empty() }).await;
    first_run.worker.abort();

    // Same node id, default 30 s claim time: only re-reading its own pending entries delivers in time.
    let second_run = push::launch(config, setup.db.clone(), Some(&redis_url), "node-a", shutdown).await.expect("push");
    let received = setup.fake.wait_for_messages(WAIT, |messages| !messages.is_empty()).await.expect("resumed");
    assert_eq!(received[0]["notification"]["body"], "before the crash");
    eventually("the entry is acknowledged", || async { second_run.pending().await.expect("xpending") == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_queued_while_no_worker_runs_is_delivered_by_the_next_one() {
    let setup = setup(&["phone", "tablet"]).await;
    let Some((redis_url, config)) = redis_setup(&setup) else { return };
    let queue = RedisPushQueue::connect(&redis_url, &config).await.expect("redis queue");
    for body in ["first", "second"] {
        queue.enqueue_job(&push::PushJob::new(setup.notice(body))).await.expect("queued");
    }
    // Sends to the tablet fail through both notices' five attempts: each is re-queued for
    // the tablet alone, and the phone does not get it twice.
    setup.fake.script(Some("tablet"), FcmReply::Unavailable, 10);
    let (_stop, shutdown) = watch::channel(false);
    let node = push::launch(config, setup.db.clone(), Some(&redis_url), "node-c", shutdown).await.expect("push starts");
    let received =
        setup.fake.wait_for_messages(WAIT, |messages| messages.len() >= 4).await.expect("all four delivered");
    let mut delivered: Vec<(String, String)> = received
        .iter()
        .map(|message| {
            (
                message["token"].as_str().unwrap().to_owned(),
                message["notification"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    delivered.sort();
    let expected = [("phone", "first"), ("phone", "second"), ("tablet", "first"), ("tablet", "second")];
    assert_eq!(delivered, expected.map(|(token, body)| (token.to_owned(), body.to_owned())), "no device twice");
    eventually("every entry acknowledged", || async { node.pending().await.expect("xpending") == 0 }).await;
    assert_eq!(setup.fake.received().len(), 4);
    let tries_of = |token: &str| setup.fake.attempts().iter().filter(|attempt| attempt.device_token == token).count();
    assert_eq!((tries_of("phone"), tries_of("tablet")), (2, 12));
}
