//! The chat flow over real HTTP and WebSocket, on SQLite and Postgres.

use integration_tests::{on_both_backends, Backend, TestNode};
use serde_json::json;

on_both_backends!(
    two_users_chat_live,
    resume_after_disconnect_has_no_gap_and_no_duplicate,
    history_pages_both_ways,
    deleted_and_pre_edit_text_never_comes_back,
    unread_counts_say_which_head_they_were_counted_at
);

async fn two_users_chat_live(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("acme").await;
    let alice = admin.add_user("alice").await;
    let bob = admin.add_user("bob").await;
    let channel = alice.channel("general", false).await;
    let (status, joined) = bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    assert_eq!((status, joined["joined"].as_bool()), (200, Some(true)));

    let mut alice_ws = alice.connect().await;
    let mut bob_ws = bob.connect().await;
    let subscribed = bob_ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    assert_eq!(subscribed["head_seq"], 1, "the join is event 1");
    alice_ws.ok(json!({"type":"subscribe","channel_id":channel})).await;

    // Typing is ephemeral and reaches the other member.
    alice_ws.ok(json!({"type":"typing_start","channel_id":channel})).await;
    let typing = bob_ws.next_of("typing").await;
    assert_eq!(
        (typing["active"].as_bool(), typing["user_id"].as_str()),
        (Some(true), Some(alice.user_id.to_string().as_str()))
    );

    // A message is acknowledged with its seq and delivered live; sending stops typing.
    let sent = alice_ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":"c1","body":"hi @bob"})).await;
    assert_eq!(sent["seq"], 2);
    let event = bob_ws.next_of("event").await;
    assert_eq!(event["seq"], 2);
    assert_eq!(event["event"]["kind"], "message_new");
    assert_eq!(event["event"]["message"]["body"], "hi @bob");
    let mention = bob_ws.next_of("notification").await;
    assert_eq!(mention["reason"], "mention");
    let message_id = sent["id"].as_str().unwrap().to_owned();

    // A thread reply, a reaction over HTTP, an edit and a receipt all show up live.
    let reply = bob_ws
        .ok(json!({"type":"send","channel_id":channel,"client_msg_id":"c2","body":"hello!","parent_id":message_id}))
        .await;
    assert_eq!(reply["parent_id"], message_id.as_str());
    let (status, _) = bob.put(&format!("/v1/channels/{channel}/messages/{message_id}/reactions/thumbsup")).await;
    assert_eq!(status, 200);
    let (status, _) =
        alice.patch(&format!("/v1/channels/{channel}/messages/{message_id}"), &json!({"body":"hi all"})).await;
    assert_eq!(status, 200);
    bob_ws.ok(json!({"type":"read","channel_id":channel,"seq":5})).await;
    let mut kinds = Vec::new();
    while kinds.len() < 4 {
        let frame = alice_ws.next().await.unwrap();
        match frame["type"].as_str() {
            Some("event") => kinds.push(frame["event"]["kind"].as_str().unwrap().to_owned()),
            Some("read") => {
                assert_eq!(frame["seq"], 5);
                kinds.push("read".to_owned());
            }
            _ => {}
        }
    }
    assert_eq!(kinds, vec!["message_new", "reaction_added", "message_edited", "read"]);

    let (status, thread) = alice.get(&format!("/v1/channels/{channel}/messages/{message_id}/thread")).await;
    assert_eq!(status, 200);
    assert_eq!(thread["root"]["body"], "hi all");
    assert_eq!(thread["root"]["reactions"][0]["emoji"], "thumbsup");
    assert_eq!(thread["replies"][0]["body"], "hello!");

    // Direct messages notify the other side on every device, subscribed or not.
    let (status, dm) = alice.post("/v1/dms", &json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 201);
    let (status, again) = bob.post("/v1/dms", &json!({"user_id": alice.user_id})).await;
    assert_eq!((status, &again["channel"]["id"]), (200, &dm["channel"]["id"]), "one DM channel per pair");
    let dm_id = dm["channel"]["id"].as_str().unwrap();
    let (status, _) =
        alice.post(&format!("/v1/channels/{dm_id}/messages"), &json!({"client_msg_id":"d1","body":"psst"})).await;
    assert_eq!(status, 201);
    let note = bob_ws.next_of("notification").await;
    assert_eq!((note["reason"].as_str(), note["message"]["body"].as_str()), (Some("direct_message"), Some("psst")));

    // Deleting leaves a tombstone in history.
    let (status, _) = alice.delete(&format!("/v1/channels/{channel}/messages/{message_id}")).await;
    assert_eq!(status, 200);
    let (_, history) = bob.get(&format!("/v1/channels/{channel}/messages")).await;
    let first = &history["messages"][0];
    assert_eq!((first["deleted"].as_bool(), first["body"].as_str()), (Some(true), Some("")));
    node.node.shutdown().await;
}

async fn resume_after_disconnect_has_no_gap_and_no_duplicate(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("resume").await;
    let bob = admin.add_user("bob").await;
    let channel = admin.channel("busy", false).await;
    bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;

    let mut bob_ws = bob.connect().await;
    bob_ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    for n in 1..=3 {
        admin
            .post(
                &format!("/v1/channels/{channel}/messages"),
                &json!({"client_msg_id":format!("a{n}"),"body":n.to_string()}),
            )
            .await;
    }
    let mut last_seen = 0;
    for _ in 0..3 {
        last_seen = bob_ws.next_of("event").await["seq"].as_i64().unwrap();
    }
    bob_ws.close().await;

    for n in 4..=10 {
        let (status, _) = admin
            .post(
                &format!("/v1/channels/{channel}/messages"),
                &json!({"client_msg_id":format!("a{n}"),"body":n.to_string()}),
            )
            .await;
        assert_eq!(status, 201);
    }
    let mut bob_ws = bob.connect().await;
    let (answer, replayed) =
        bob_ws.request(json!({"type":"subscribe","channel_id":channel,"last_seq":last_seen})).await;
    assert_eq!(answer["type"], "ok");
    let mut seqs: Vec<i64> = replayed.iter().map(|frame| frame["seq"].as_i64().unwrap()).collect();
    admin.post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"live","body":"live"})).await;
    seqs.push(bob_ws.next_of("event").await["seq"].as_i64().unwrap());
    let expected: Vec<i64> = (last_seen + 1..=last_seen + 8).collect();
    assert_eq!(seqs, expected, "every missed event once, in order, then live");

    // Resending an acknowledged message with the same client id changes nothing.
    let (status, again) =
        admin.post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"a4","body":"dup"})).await;
    assert_eq!((status, again["message"]["body"].as_str()), (201, Some("4")));
    let (pong, before) = bob_ws.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong");
    assert!(before.iter().all(|frame| frame["type"] != "event"), "the duplicate was not delivered: {before:?}");
    node.node.shutdown().await;
}

async fn history_pages_both_ways(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("pages").await;
    let channel = admin.channel("log", false).await;
    for n in 1..=25 {
        admin
            .post(
                &format!("/v1/channels/{channel}/messages"),
                &json!({"client_msg_id":n.to_string(),"body":n.to_string()}),
            )
            .await;
    }
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_i64().unwrap()).collect()
    };
    let (_, newest) = admin.get(&format!("/v1/channels/{channel}/messages?limit=10")).await;
    assert_eq!(seqs(&newest), (16..=25).collect::<Vec<_>>());
    assert_eq!(newest["has_more"], true);
    let (_, older) = admin.get(&format!("/v1/channels/{channel}/messages?limit=10&before=16")).await;
    assert_eq!(seqs(&older), (6..=15).collect::<Vec<_>>());
    let (_, forward) = admin.get(&format!("/v1/channels/{channel}/messages?limit=10&after=20")).await;
    assert_eq!(seqs(&forward), (21..=25).collect::<Vec<_>>());
    assert_eq!(forward["has_more"], false);
    let (status, bad) = admin.get(&format!("/v1/channels/{channel}/messages?limit=1000")).await;
    assert_eq!((status, bad["code"].as_str()), (400, Some("invalid")));
    node.node.shutdown().await;
}

/// Deleting or editing a message changes what every later reader gets: a resume from any seq
/// and the history show the tombstone and the latest text, never what was deleted or replaced.
async fn deleted_and_pre_edit_text_never_comes_back(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("forget").await;
    let bob = admin.add_user("bob").await;
    let channel = admin.channel("general", false).await;
    bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    let base = format!("/v1/channels/{channel}/messages");
    let (_, secret) = admin.post(&base, &json!({"client_msg_id":"s","body":"the secret plan @bob"})).await;
    let (_, draft) = admin.post(&base, &json!({"client_msg_id":"d","body":"first draft wording"})).await;
    let (secret_id, draft_id) = (secret["message"]["id"].as_str().unwrap(), draft["message"]["id"].as_str().unwrap());
    let (status, _) = admin.patch(&format!("{base}/{draft_id}"), &json!({"body":"final wording"})).await;
    assert_eq!(status, 200);
    let (status, _) = admin.delete(&format!("{base}/{secret_id}")).await;
    assert_eq!(status, 200);

    // A client resuming from before it all (last_seq 0) replays the whole log.
    let mut bob_ws = bob.connect().await;
    let (answer, replayed) = bob_ws.request(json!({"type":"subscribe","channel_id":channel,"last_seq":0})).await;
    assert_eq!(answer["type"], "ok");
    let text = serde_json::to_string(&replayed).unwrap();
    for gone in ["secret plan", "first draft"] {
        assert!(!text.contains(gone), "replay returned deleted or replaced text {gone:?}: {text}");
    }
    let new_messages: Vec<&serde_json::Value> =
        replayed.iter().filter(|f| f["event"]["kind"] == "message_new").map(|f| &f["event"]["message"]).collect();
    assert_eq!(new_messages.len(), 2);
    assert_eq!((new_messages[0]["deleted"].as_bool(), new_messages[0]["body"].as_str()), (Some(true), Some("")));
    assert_eq!(new_messages[0]["mentions"], json!([]));
    assert_eq!(new_messages[1]["body"], "final wording");
    let kinds: Vec<&str> = replayed.iter().map(|f| f["event"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["member_joined", "message_new", "message_new", "message_edited", "message_deleted"]);

    // A resume that starts between the edit and the delete, and the history, agree.
    let mut late = bob.connect().await;
    let (_, tail) = late.request(json!({"type":"subscribe","channel_id":channel,"last_seq":3})).await;
    assert_eq!(tail[0]["event"]["body"], "final wording", "the edit replays with the text as it is now");
    let (_, history) = bob.get(&base).await;
    let history_text = history.to_string();
    assert!(!history_text.contains("secret plan") && !history_text.contains("first draft"), "{history_text}");
    assert_eq!(history["messages"][0]["mentions"], json!([]));
    let (_, thread) = bob.get(&format!("{base}/{secret_id}/thread")).await;
    assert!(!thread.to_string().contains("secret plan"));
    node.node.shutdown().await;
}

async fn unread_counts_say_which_head_they_were_counted_at(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("acme").await;
    let (alice, bob, carol) =
        (admin.add_user("alice").await, admin.add_user("bob").await, admin.add_user("carol").await);
    let channel = alice.channel("general", false).await;
    let (status, _) = bob.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    assert_eq!(status, 200);
    let mut alice_ws = alice.connect().await;
    let mut bob_ws = bob.connect().await;
    for n in 1..=3 {
        alice_ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":format!("a{n}"),"body":"hi"})).await;
    }
    let own = bob_ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":"b1","body":"mine"})).await;
    assert_eq!(own["seq"], 5);

    let listed = |answer: &serde_json::Value| {
        let entry = answer["channels"].as_array().unwrap().iter().find(|c| c["channel"]["id"] == channel.to_string());
        let entry = entry.expect("the channel is listed").clone();
        (entry["unread"].as_i64().unwrap(), entry["head_seq"].as_i64().unwrap())
    };
    let (status, list) = bob.get("/v1/channels").await;
    assert_eq!(status, 200);
    assert_eq!(listed(&list), (3, 5), "alice's three messages, counted at head 5; bob's own does not count");
    let (_, list) = carol.get("/v1/channels").await;
    assert_eq!(listed(&list), (0, 5), "a non-member has nothing unread but sees the head");

    bob_ws.ok(json!({"type":"read","channel_id":channel,"seq":3})).await;
    let (_, one) = bob.get(&format!("/v1/channels/{channel}")).await;
    assert_eq!((one["unread"].as_i64(), one["head_seq"].as_i64()), (Some(1), Some(5)));
}
