//! MeetingRoomActor through real sessions: roster, state, signaling, host controls, lobby,
//! the mesh limit and the reconnect grace period.

mod common;

use std::time::Duration;

use actors::meeting::MeetingConfig;
use actors::model::Caller;
use actors::DirectoryConfig;
use common::{Harness, TestSession};
use serde_json::{json, Value};
use uuid::Uuid;

async fn join(session: &mut TestSession, meeting: Uuid) -> Value {
    let (answer, _) = session.request("join", json!({"type":"meeting_join","meeting_id":meeting})).await;
    assert_eq!(answer["type"], "ok", "{answer}");
    answer["result"].clone()
}

#[tokio::test]
async fn participants_see_each_other_and_relay_signals_in_order() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let meeting = h.store.add_meeting(h.company, alice.user_id, &[bob.user_id], false);
    let mut a = h.connect(alice).await;
    let mut b = h.connect(bob).await;
    let joined_a = join(&mut a, meeting).await;
    assert_eq!(joined_a["me"]["role"], "host");
    let joined_b = join(&mut b, meeting).await;
    assert_eq!(joined_b["participants"].as_array().unwrap().len(), 2, "a full snapshot on join");
    assert!(joined_b["ice_servers"].is_array());
    let (a_id, b_id) = (joined_a["participant_id"].clone(), joined_b["participant_id"].clone());
    let event = a.next_of("meeting_event").await;
    assert_eq!(
        (event["event"]["kind"].as_str(), &event["event"]["participant"]["participant_id"]),
        (Some("joined"), &b_id)
    );

    for n in 0..20 {
        let frame = json!({"type":"signal","meeting_id":meeting,"to":b_id,"kind":"ice","payload":{"candidate":n}});
        a.send(frame);
    }
    for n in 0..20 {
        let signal = b.next_of("signal").await;
        assert_eq!((signal["from"].clone(), signal["payload"]["candidate"].as_i64()), (a_id.clone(), Some(n)));
        assert_eq!(signal["polite"], true, "bob joined later: he is the polite peer");
    }
    let (ok, _) =
        a.request("mute", json!({"type":"meeting_state","meeting_id":meeting,"audio":true,"hand":true})).await;
    assert_eq!(ok["result"]["state"]["hand"], true);
    let update = b.next_of("meeting_event").await;
    assert_eq!(
        (update["event"]["kind"].as_str(), update["event"]["participant"]["state"]["audio"].as_bool()),
        (Some("updated"), Some(true))
    );
}

#[tokio::test]
async fn signals_only_go_to_joined_participants_of_the_same_meeting() {
    let h = Harness::new().await;
    let (alice, bob, carol) = (h.user("alice"), h.user("bob"), h.user("carol"));
    let meeting = h.store.add_meeting(h.company, alice.user_id, &[bob.user_id], false);
    let other = h.store.add_meeting(h.company, carol.user_id, &[], false);
    let mut a = h.connect(alice).await;
    let mut c = h.connect(carol).await;
    join(&mut a, meeting).await;
    let carol_id = join(&mut c, other).await["participant_id"].clone();

    let (err, _) =
        a.request("x", json!({"type":"signal","meeting_id":meeting,"to":carol_id,"kind":"offer","payload":{}})).await;
    assert_eq!(err["code"], "not_found", "carol is in another meeting");
    let (err, _) =
        c.request("y", json!({"type":"signal","meeting_id":meeting,"to":carol_id,"kind":"offer","payload":{}})).await;
    assert_eq!(err["code"], "not_member", "a session that has not joined cannot signal");
    let big =
        json!({"type":"signal","meeting_id":meeting,"to":carol_id,"kind":"offer","payload":{"sdp":"v".repeat(40_000)}});
    let (err, _) = a.request("z", big).await;
    assert_eq!(err["code"], "payload_too_large");
    let (err, _) =
        c.request("h", json!({"type":"host_remove","meeting_id":other,"participant_id":Uuid::new_v4()})).await;
    assert_eq!(err["code"], "not_found");

    let other_company = Uuid::new_v4();
    let mallory = Caller { user_id: h.store.add_user(other_company, "mallory"), company_id: other_company };
    let mut m = h.connect(mallory).await;
    let (err, _) = m.request("j", json!({"type":"meeting_join","meeting_id":meeting})).await;
    assert_eq!(err["code"], "not_found", "another tenant's meeting does not exist for them");
}

#[tokio::test]
async fn only_the_host_controls_and_can_hand_over() {
    let h = Harness::new().await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let meeting = h.store.add_meeting(h.company, alice.user_id, &[bob.user_id], false);
    let mut a = h.connect(alice).await;
    let mut b = h.connect(bob).await;
    let a_id = join(&mut a, meeting).await["participant_id"].clone();
    let b_id = join(&mut b, meeting).await["participant_id"].clone();
    let (err, _) = b.request("m", json!({"type":"host_mute","meeting_id":meeting,"participant_id":a_id})).await;
    assert_eq!(err["code"], "forbidden");
    let (ok, _) = a.request("m", json!({"type":"host_mute","meeting_id":meeting,"participant_id":b_id})).await;
    assert_eq!(ok["type"], "ok");
    assert_eq!(b.next_of("meeting_event").await["event"]["kind"], "mute_requested");
    a.request("t", json!({"type":"host_transfer","meeting_id":meeting,"participant_id":b_id})).await;
    let (err, _) = a.request("r", json!({"type":"host_remove","meeting_id":meeting,"participant_id":b_id})).await;
    assert_eq!(err["code"], "forbidden", "alice is no longer host");
    let (ok, _) = b.request("r", json!({"type":"host_remove","meeting_id":meeting,"participant_id":a_id})).await;
    assert_eq!(ok["type"], "ok");
    let left = a.next_of("meeting_event").await;
    assert!(["updated", "left"].contains(&left["event"]["kind"].as_str().unwrap()));
    let (ok, _) = b.request("e", json!({"type":"meeting_end","meeting_id":meeting})).await;
    assert_eq!(ok["type"], "ok");
    let (err, _) = b.request("j", json!({"type":"meeting_join","meeting_id":meeting})).await;
    assert_eq!(err["code"], "conflict", "an ended meeting cannot be joined");
}

#[tokio::test]
async fn the_lobby_waits_for_the_host_and_the_mesh_has_a_cap() {
    let config = DirectoryConfig {
        meeting: MeetingConfig { max_participants: 2, ..MeetingConfig::default() },
        ..DirectoryConfig::default()
    };
    let h = Harness::with_config(config).await;
    let (alice, bob, carol) = (h.user("alice"), h.user("bob"), h.user("carol"));
    let meeting = h.store.add_meeting(h.company, alice.user_id, &[], true);
    let mut a = h.connect(alice).await;
    let mut b = h.connect(bob).await;
    let mut c = h.connect(carol).await;
    join(&mut a, meeting).await;
    let waiting = join(&mut b, meeting).await;
    assert_eq!(waiting["me"]["status"], "lobby");
    let request = a.next_of("meeting_event").await;
    assert_eq!(request["event"]["kind"], "lobby");
    let bob_id = request["event"]["participant"]["participant_id"].clone();
    a.request("admit", json!({"type":"lobby_admit","meeting_id":meeting,"participant_id":bob_id})).await;
    assert_eq!(b.next_of("meeting_event").await["event"]["kind"], "joined");
    let carol_waits = join(&mut c, meeting).await;
    let carol_id = carol_waits["participant_id"].clone();
    let (err, _) =
        a.request("admit2", json!({"type":"lobby_admit","meeting_id":meeting,"participant_id":carol_id})).await;
    assert_eq!(err["code"], "limit_exceeded", "two is the cap here");
    a.request("deny", json!({"type":"lobby_deny","meeting_id":meeting,"participant_id":carol_id})).await;
    let denied = c.next_of("meeting_event").await;
    assert_eq!((denied["event"]["kind"].as_str(), denied["event"]["reason"].as_str()), (Some("left"), Some("denied")));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_participant_has_a_grace_period_then_leaves() {
    let config = DirectoryConfig {
        meeting: MeetingConfig { grace: Duration::from_secs(20), ..MeetingConfig::default() },
        ..DirectoryConfig::default()
    };
    let h = Harness::with_config(config).await;
    let (alice, bob) = (h.user("alice"), h.user("bob"));
    let meeting = h.store.add_meeting(h.company, alice.user_id, &[bob.user_id], false);
    let mut a = h.connect(alice).await;
    let mut b = h.connect(bob).await;
    join(&mut a, meeting).await;
    let bob_id = join(&mut b, meeting).await["participant_id"].clone();
    a.next_of("meeting_event").await;

    b.stop();
    let dropped = a.next_of("meeting_event").await;
    assert_eq!(
        (dropped["event"]["kind"].as_str(), dropped["event"]["participant"]["status"].as_str()),
        (Some("updated"), Some("disconnected"))
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut again = h.connect(bob).await;
    let rejoined = join(&mut again, meeting).await;
    assert_eq!(rejoined["participant_id"], bob_id, "rejoining within the grace keeps the place");
    assert_eq!(a.next_of("meeting_event").await["event"]["participant"]["status"], "joined");

    again.stop();
    a.next_of("meeting_event").await;
    tokio::time::sleep(Duration::from_secs(21)).await;
    let left = a.next_of("meeting_event").await;
    assert_eq!((left["event"]["kind"].as_str(), left["event"]["reason"].as_str()), (Some("left"), Some("timed_out")));
    let (roster, _) = a.request("r", json!({"type":"meeting_join","meeting_id":meeting})).await;
    assert_eq!(roster["result"]["participants"].as_array().unwrap().len(), 1, "no ghost left behind");
}
