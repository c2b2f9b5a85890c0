//! Meetings over real HTTP and WebSocket: create with invitees, invites, join with ICE
//! servers, signaling, end for all, tenant isolation.

use integration_tests::{on_both_backends, Backend, TestNode};
use serde_json::json;

on_both_backends!(a_meeting_from_invite_to_end);

async fn a_meeting_from_invite_to_end(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("meet").await;
    let bob = admin.add_user("bob").await;
    let other = node.company("elsewhere").await;
    let mut bob_ws = bob.connect().await;

    let (status, created) =
        admin.post("/v1/meetings", &json!({"title":"Standup","invitees":[bob.user_id, other.user_id]})).await;
    assert_eq!((status, created["code"].as_str()), (404, Some("not_found")), "cannot invite another tenant's user");
    let (status, created) = admin.post("/v1/meetings", &json!({"title":"Standup","invitees":[bob.user_id]})).await;
    assert_eq!(status, 201, "{created}");
    let meeting_id = created["meeting"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["links"]["deep_link"], format!("lark://meeting/{meeting_id}"));
    let invite = bob_ws.next_of("meeting_invite").await;
    assert_eq!(invite["meeting"]["id"], meeting_id.as_str());
    assert_eq!(invite["links"]["deep_link"], format!("lark://meeting/{meeting_id}"));

    let (status, _) = other.get(&format!("/v1/meetings/{meeting_id}")).await;
    assert_eq!(status, 404, "tenant isolation");
    let (_, listed) = bob.get("/v1/meetings").await;
    assert_eq!(listed["meetings"][0]["meeting"]["id"], meeting_id.as_str());
    let mut other_ws = other.connect().await;
    let (answer, _) = other_ws.request(json!({"type":"meeting_join","meeting_id":meeting_id})).await;
    assert_eq!(answer["code"], "not_found");

    let mut admin_ws = admin.connect().await;
    let joined = admin_ws.ok(json!({"type":"meeting_join","meeting_id":meeting_id})).await;
    let turn = &joined["ice_servers"][1];
    let username = turn["username"].as_str().unwrap();
    assert!(username.ends_with(&format!(":{}", admin.user_id)), "coturn REST username: {username}");
    assert!(turn["credential"].as_str().unwrap().ends_with('='));
    let bob_joined = bob_ws.ok(json!({"type":"meeting_join","meeting_id":meeting_id})).await;
    let bob_pid = bob_joined["participant_id"].clone();
    let admin_pid = joined["participant_id"].clone();

    admin_ws.ok(json!({"type":"signal","meeting_id":meeting_id,"to":bob_pid,"kind":"offer","payload":{"type":"offer","sdp":"v=0"}})).await;
    let offer = bob_ws.next_of("signal").await;
    assert_eq!((offer["kind"].as_str(), offer["payload"]["sdp"].as_str()), (Some("offer"), Some("v=0")));
    bob_ws.ok(json!({"type":"signal","meeting_id":meeting_id,"to":admin_pid,"kind":"answer","payload":{"type":"answer","sdp":"v=0"}})).await;
    assert_eq!(admin_ws.next_of("signal").await["kind"], "answer");

    let (_, roster) = bob.get(&format!("/v1/meetings/{meeting_id}/participants")).await;
    assert_eq!(roster["participants"].as_array().unwrap().len(), 2);
    let (status, _) = bob.post(&format!("/v1/meetings/{meeting_id}/end"), &json!({})).await;
    assert_eq!(status, 403, "only the host ends it");
    let (status, _) = admin.post(&format!("/v1/meetings/{meeting_id}/end"), &json!({})).await;
    assert_eq!(status, 200);
    loop {
        let event = bob_ws.next_of("meeting_event").await;
        if event["event"]["kind"] == "ended" {
            break;
        }
    }
    let (_, meeting) = admin.get(&format!("/v1/meetings/{meeting_id}")).await;
    assert_eq!(meeting["meeting"]["status"], "ended");
    let (answer, _) = bob_ws.request(json!({"type":"meeting_join","meeting_id":meeting_id})).await;
    assert_eq!(answer["code"], "conflict");
    node.node.shutdown().await;
}
