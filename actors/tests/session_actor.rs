//! SessionActor and UserActor: resume without gap or duplicate, slow consumers, bad frames,
//! rate limits, presence across sessions, mentions.

mod common;

use actors::ports::ChannelKind;
use actors::session::{SessionConfig, CLOSE_SLOW_CONSUMER};
use common::Harness;
use serde_json::json;

#[tokio::test]
async fn resume_replays_what_was_missed_in_order_without_duplicates() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut sender = h.connect(alice).await;
    for n in 1..=5 {
        let (ok, _) = sender
            .request(
                &format!("s{n}"),
                json!({"type":"send","channel_id":channel,"client_msg_id":format!("c{n}"),"body":format!("m{n}")}),
            )
            .await;
        assert_eq!(ok["result"]["seq"], n);
    }
    let mut bob_session = h.connect(bob).await;
    let (ok, replayed) =
        bob_session.request("sub", json!({"type":"subscribe","channel_id":channel,"last_seq":2})).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(ok["result"]["head_seq"], 5);
    let seqs: Vec<i64> = replayed.iter().map(|f| f["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, vec![3, 4, 5]);

    // Live events continue right after the replay, each exactly once.
    sender.request("s6", json!({"type":"send","channel_id":channel,"client_msg_id":"c6","body":"m6"})).await;
    let live = bob_session.next_of("event").await;
    assert_eq!(live["seq"], 6);
    let (pong, before) = bob_session.request("p", json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
    assert!(before.iter().all(|f| f["type"] != "event"), "no duplicate after the live event: {before:?}");
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_with_a_close_code() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut slow = h.connect_with(bob, 4, SessionConfig::default()).await;
    slow.send(json!({"type":"subscribe","channel_id":channel}));
    let subscribed = slow.next().await;
    assert_eq!(subscribed["type"], "ok");
    let mut sender = h.connect(alice).await;
    for n in 0..20 {
        sender
            .request(
                &n.to_string(),
                json!({"type":"send","channel_id":channel,"client_msg_id":n.to_string(),"body":"x"}),
            )
            .await;
    }
    tokio::time::timeout(common::WAIT, slow.socket.close.wait_for(|close| close.is_some())).await.unwrap().unwrap();
    let close = slow.socket.close.borrow().clone().unwrap();
    assert_eq!(close.code, CLOSE_SLOW_CONSUMER);
    // The sender was never held up by the slow reader.
    let (ok, _) =
        sender.request("last", json!({"type":"send","channel_id":channel,"client_msg_id":"last","body":"x"})).await;
    assert_eq!(ok["result"]["seq"], 21);
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_the_session_survives() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let mut session = h.connect(alice).await;
    session.send_text("{not json");
    assert_eq!(session.next().await["code"], "bad_json");
    session.send_text(r#"{"id":"u","type":"teleport"}"#);
    let unknown = session.next().await;
    assert_eq!((unknown["code"].as_str(), unknown["id"].as_str()), (Some("unknown_type"), Some("u")));
    session.send_text(r#"{"id":"m","type":"send","channel_id":"not-a-uuid"}"#);
    assert_eq!(session.next().await["code"], "bad_frame");
    let (missing, _) = session.request("c", json!({"type":"subscribe","channel_id":uuid::Uuid::new_v4()})).await;
    assert_eq!(missing["code"], "not_found");
    let (pong, _) = session.request("p", json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
}

#[tokio::test]
async fn a_flood_is_rate_limited() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let config = SessionConfig { rate_burst: 5.0, rate_per_sec: 0.001, ..SessionConfig::default() };
    let mut session = h.connect_with(alice, 64, config).await;
    for _ in 0..8 {
        session.send(json!({"type":"ping"}));
    }
    let mut frames = Vec::new();
    for _ in 0..8 {
        frames.push(session.next().await);
    }
    let pongs = frames.iter().filter(|f| f["type"] == "pong").count();
    let limited = frames.iter().filter(|f| f["code"] == "rate_limited").count();
    assert_eq!((pongs, limited), (5, 3));
}

#[tokio::test]
async fn presence_follows_all_sessions_of_a_user() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let mut watcher = h.connect(alice).await;
    let (ok, _) = watcher.request("w", json!({"type":"presence_watch","user_ids":[bob.user_id]})).await;
    assert_eq!(ok["result"][0]["status"], "offline");

    let mut phone = h.connect(bob).await;
    assert_eq!(watcher.next_of("presence").await["status"], "online");
    let laptop = h.connect(bob).await;
    phone.request("away", json!({"type":"presence_set","status":"away"})).await;
    laptop.stop();
    let status = watcher.next_of("presence").await;
    assert_eq!(status["status"], "away", "the laptop left, the phone is away");
    phone.stop();
    let offline = watcher.next_of("presence").await;
    assert_eq!(offline["status"], "offline");
    assert!(offline["last_seen"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn watching_a_user_of_another_company_is_refused() {
    let h = Harness::new().await;
    let alice = h.user("alice");
    let stranger = h.store.add_user(uuid::Uuid::new_v4(), "mallory");
    let mut session = h.connect(alice).await;
    let (err, _) = session.request("w", json!({"type":"presence_watch","user_ids":[stranger]})).await;
    assert_eq!(err["code"], "not_found");
}

#[tokio::test]
async fn a_mention_reaches_the_user_even_when_not_subscribed() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut bob_session = h.connect(bob).await;
    let mut alice_session = h.connect(alice).await;
    let (ok, _) = alice_session
        .request("s", json!({"type":"send","channel_id":channel,"client_msg_id":"m","body":"ping @bob please"}))
        .await;
    assert_eq!(ok["result"]["mentions"][0], bob.user_id.to_string());
    let note = bob_session.next_of("notification").await;
    assert_eq!(note["reason"], "mention");
    assert_eq!(note["message"]["body"], "ping @bob please");
}

#[tokio::test]
async fn a_mention_of_an_offline_user_is_queued_as_a_push_with_a_deep_link() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut alice_session = h.connect(alice).await;
    let (ok, _) = alice_session
        .request("s", json!({"type":"send","channel_id":channel,"client_msg_id":"m","body":"@bob are you there?"}))
        .await;
    let message_id = ok["result"]["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + common::WAIT;
    let notice = loop {
        if let Some(notice) = h.store.pushes.queued.lock().unwrap().first().cloned() {
            break notice;
        }
        assert!(std::time::Instant::now() < deadline, "no push queued");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(notice.user_id, bob.user_id);
    assert_eq!(notice.title, "alice mentioned you");
    assert_eq!(notice.data["deep_link"], format!("lark://channel/{channel}/message/{message_id}"));

    // With a live session the mention goes to the socket, not to the phone.
    let mut bob_session = h.connect(bob).await;
    alice_session.request("t", json!({"type":"send","channel_id":channel,"client_msg_id":"n","body":"@bob hi"})).await;
    bob_session.next_of("notification").await;
    assert_eq!(h.store.pushes.queued.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_session_subscribes_again_when_the_channel_actor_stops() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let channel = h.channel(ChannelKind::Public, &[alice, bob]);
    let mut bob_session = h.connect(bob).await;
    bob_session.request("sub", json!({"type":"subscribe","channel_id":channel})).await;
    let mut alice_session = h.connect(alice).await;
    alice_session.request("s1", json!({"type":"send","channel_id":channel,"client_msg_id":"1","body":"one"})).await;
    assert_eq!(bob_session.next_of("event").await["seq"], 1);

    // The actor stops (idle, moved to another node, reloading after an uncertain write).
    let first = h.directory.find_channel(channel).unwrap();
    first.stop(Some("moved".into()));
    let deadline = std::time::Instant::now() + common::WAIT;
    while h.directory.find_channel(channel).is_none_or(|actor| actor.get_id() == first.get_id()) {
        assert!(std::time::Instant::now() < deadline, "nobody subscribed again");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    alice_session.request("s2", json!({"type":"send","channel_id":channel,"client_msg_id":"2","body":"two"})).await;
    let event = bob_session.next_of("event").await;
    assert_eq!((event["seq"].as_i64(), event["event"]["message"]["body"].as_str()), (Some(2), Some("two")));
}
