//! Bad input gets a clear error and changes nothing; the connection survives bad frames.

use integration_tests::{on_both_backends, Backend, Ending, TestNode, WsClient};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

on_both_backends!(http_rejects_bad_requests_clearly, websocket_survives_bad_frames);

/// A frame over `MAX_WS_MESSAGE_BYTES` closes the socket with the documented 1009, and the
/// node keeps serving (the library alone closed with 1005 or a reset).
#[tokio::test]
async fn an_oversized_frame_closes_the_socket_with_1009() {
    let node = TestNode::start_with(Backend::Sqlite, |config| config.max_ws_message_bytes = 8 * 1024).await.unwrap();
    let admin = node.company("big").await;
    let mut ws = admin.connect().await;
    let frame = json!({"type":"ping","pad":"x".repeat(64 * 1024)});
    ws.send_raw(Message::Text(frame.to_string().into())).await;
    assert_eq!(ws.closed().await, Some(1009));
    let mut again = admin.connect().await;
    let (pong, _) = again.request(json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong", "the node serves on");
}

async fn http_rejects_bad_requests_clearly(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("strict").await;
    let channel = admin.channel("general", false).await;
    let messages = format!("/v1/channels/{channel}/messages");

    let malformed =
        admin.raw(reqwest::Method::POST, &messages).header("content-type", "application/json").body("{oops");
    let (status, body) = admin.send(malformed).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_json")));
    let (status, body) = admin.post(&messages, &json!({"body":"no client id"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid")));
    let huge = "x".repeat(100 * 1024);
    let (status, body) = admin.post(&messages, &json!({"client_msg_id":"big","body":huge})).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")));
    let (status, body) = admin.post(&messages, &json!({"client_msg_id":"long","body":"y".repeat(20 * 1024)})).await;
    assert_eq!((status, body["code"].as_str()), (413, Some("payload_too_large")), "body over the message limit");
    let (status, _) = admin.get("/v1/channels/not-a-uuid").await;
    assert_eq!(status, 400);
    let (status, body) = admin.put("/v1/channels").await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")));
    let (status, body) = admin.get("/v1/nothing-here").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let (status, body) = admin
        .post(&format!("/v1/channels/{}/messages", uuid::Uuid::new_v4()), &json!({"client_msg_id":"u","body":"?"}))
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "unknown channel");

    let mut anonymous = admin.clone();
    anonymous.token = String::new();
    let (status, body) = anonymous.get("/v1/channels").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    anonymous.token = "not.a.jwt".to_owned();
    assert_eq!(anonymous.get("/v1/channels").await.0, 401);
    let mut refresh_as_access = admin.clone();
    refresh_as_access.token = admin.refresh_token.clone();
    assert_eq!(refresh_as_access.get("/v1/channels").await.0, 401, "a refresh token is not an access token");
    let (status, refreshed) = anonymous.post("/v1/auth/refresh", &json!({"refresh_token": admin.refresh_token})).await;
    assert_eq!(status, 200);
    assert!(refreshed["tokens"]["access_token"].is_string());
    let (status, _) = anonymous
        .post("/v1/auth/login", &json!({"company":"strict","username":"admin","password":"wrong-password"}))
        .await;
    assert_eq!(status, 401);

    let (status, body) = admin.post("/v1/users", &json!({"username":"bad name!","password":"password123"})).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid")));
    let (status, body) = admin.post("/v1/users", &json!({"username":"admin","password":"password123"})).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")));

    // None of the above stored anything.
    let (_, history) = admin.get(&messages).await;
    assert!(history["messages"].as_array().unwrap().is_empty());
    node.node.shutdown().await;
}

async fn websocket_survives_bad_frames(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("frames").await;
    let channel = admin.channel("general", false).await;

    let no_token = WsClient::connect(&format!("ws://{}/ws", node.node.addr)).await;
    assert!(no_token.is_err(), "the upgrade needs a token");
    assert!(WsClient::connect(&node.ws_url("garbage")).await.is_err(), "and a valid one");

    let mut ws = admin.connect().await;
    ws.send_raw(Message::Text("{this is not json".into())).await;
    assert_eq!(ws.next().await.unwrap()["code"], "bad_json");
    ws.send_json(&json!({"id":"t","type":"warp_drive"})).await;
    let unknown = ws.next().await.unwrap();
    assert_eq!((unknown["code"].as_str(), unknown["id"].as_str()), (Some("unknown_type"), Some("t")));
    ws.send_raw(Message::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(ws.next().await.unwrap()["code"], "bad_frame");
    let (answer, _) = ws.request(json!({"type":"send","channel_id":channel,"client_msg_id":"","body":"x"})).await;
    assert_eq!(answer["code"], "invalid");
    let big = json!({"type":"send","channel_id":channel,"client_msg_id":"big","body":"z".repeat(100 * 1024)});
    let (answer, _) = ws.request(big).await;
    assert_eq!(answer["code"], "payload_too_large", "a frame over the protocol limit is refused, not fatal");
    let (answer, _) = ws.request(json!({"type":"read","channel_id":channel,"seq":42})).await;
    assert_eq!(answer["code"], "invalid");
    let sent = ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":"fine","body":"still here"})).await;
    assert_eq!(sent["seq"], 1, "nothing before was stored");
    let again = ws.ok(json!({"type":"send","channel_id":channel,"client_msg_id":"fine","body":"twice"})).await;
    assert_eq!((again["seq"].as_i64(), again["body"].as_str()), (Some(1), Some("still here")), "duplicate client id");

    // A message beyond what the server reads at all closes the socket with 1009.
    ws.send_raw(Message::Text("w".repeat(300 * 1024).into())).await;
    match ws.next_ending().await {
        Ok(Ending::Closed(code)) => assert!(code.is_none() || code == Some(1009), "closed with {code:?}"),
        Ok(Ending::Frame(frame)) => panic!("expected a close, got {frame}"),
        Err(_) => {}
    }
    node.node.shutdown().await;
}
