//! Tenant isolation: a user of one company can never read, join or write another company's
//! channels, messages, files or users, over HTTP or WebSocket.

use integration_tests::{on_both_backends, Backend, TestNode};
use serde_json::json;

on_both_backends!(another_company_sees_nothing, private_channels_stay_private);

async fn another_company_sees_nothing(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let acme = node.company("acme").await;
    let globex = node.company("globex").await;
    let channel = acme.channel("secret-plans", false).await;
    let (_, sent) =
        acme.post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"1","body":"launch"})).await;
    let message_id = sent["message"]["id"].as_str().unwrap().to_owned();
    let upload = reqwest::multipart::Form::new()
        .text("channel_id", channel.to_string())
        .part("file", reqwest::multipart::Part::bytes(b"blueprint".to_vec()).file_name("plan.txt"));
    let (status, file) = acme.send(acme.raw(reqwest::Method::POST, "/v1/files").multipart(upload)).await;
    assert_eq!(status, 201);
    let file_id = file["file"]["id"].as_str().unwrap().to_owned();

    // Every route answers as if the thing did not exist.
    for path in [
        format!("/v1/channels/{channel}"),
        format!("/v1/channels/{channel}/messages"),
        format!("/v1/channels/{channel}/members"),
        format!("/v1/channels/{channel}/messages/{message_id}/thread"),
        format!("/v1/files/{file_id}"),
        format!("/v1/users/{}", acme.user_id),
    ] {
        let (status, body) = globex.get(&path).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")), "GET {path}: {body}");
    }
    for (path, body) in [
        (format!("/v1/channels/{channel}/join"), json!({})),
        (format!("/v1/channels/{channel}/messages"), json!({"client_msg_id":"x","body":"pwned"})),
        (format!("/v1/channels/{channel}/read"), json!({"seq":1})),
        (format!("/v1/channels/{channel}/members"), json!({"user_id": globex.user_id})),
        ("/v1/dms".to_owned(), json!({"user_id": acme.user_id})),
    ] {
        let (status, answer) = globex.post(&path, &body).await;
        assert_eq!(status, 404, "POST {path}: {answer}");
    }
    let (status, _) = globex.put(&format!("/v1/channels/{channel}/messages/{message_id}/reactions/x")).await;
    assert_eq!(status, 404);
    let (status, _) = globex.delete(&format!("/v1/channels/{channel}/messages/{message_id}")).await;
    assert_eq!(status, 404);
    let (status, _) = acme.post(&format!("/v1/channels/{channel}/members"), &json!({"user_id": globex.user_id})).await;
    assert_eq!(status, 404, "a user of another company cannot be added");

    let (_, listed) = globex.get("/v1/channels").await;
    assert_eq!(listed["channels"].as_array().unwrap().len(), 0);
    let (_, users) = globex.get("/v1/users").await;
    assert!(users["users"].as_array().unwrap().iter().all(|u| u["company_id"] == globex.company_id.to_string()));

    let mut ws = globex.connect().await;
    for frame in [
        json!({"type":"subscribe","channel_id":channel,"last_seq":0}),
        json!({"type":"send","channel_id":channel,"client_msg_id":"w","body":"pwned"}),
        json!({"type":"typing_start","channel_id":channel}),
        json!({"type":"presence_watch","user_ids":[acme.user_id]}),
    ] {
        let (answer, before) = ws.request(frame.clone()).await;
        assert_eq!(answer["code"], "not_found", "{frame}: {answer}");
        assert!(before.is_empty(), "nothing leaked before the error: {before:?}");
    }

    // Nothing changed: the channel still holds exactly its one message.
    let (_, history) = acme.get(&format!("/v1/channels/{channel}/messages")).await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 1);
    node.node.shutdown().await;
}

async fn private_channels_stay_private(backend: Backend) {
    let Some(node) = TestNode::start(backend).await else { return };
    let admin = node.company("initech").await;
    let eve = admin.add_user("eve").await;
    let bob = admin.add_user("bob").await;
    let channel = admin.channel("board", true).await;
    let (status, _) = eve.get(&format!("/v1/channels/{channel}")).await;
    assert_eq!(status, 404, "a private channel is invisible to non-members");
    let (status, answer) = eve.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")), "joining does not reveal it either");
    let (status, _) =
        eve.post(&format!("/v1/channels/{channel}/messages"), &json!({"client_msg_id":"e","body":"hi"})).await;
    assert_eq!(status, 404, "writing does not reveal it");
    let mut eve_ws = eve.connect().await;
    let (answer, _) = eve_ws.request(json!({"type":"subscribe","channel_id":channel})).await;
    assert_eq!(answer["code"], "not_found");

    // A member invites bob; bob then reads, eve still cannot.
    let (status, _) = admin.post(&format!("/v1/channels/{channel}/members"), &json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 200);
    let (status, _) = bob.get(&format!("/v1/channels/{channel}/messages")).await;
    assert_eq!(status, 200);
    let (_, listed) = eve.get("/v1/channels").await;
    assert!(listed["channels"].as_array().unwrap().is_empty());
    node.node.shutdown().await;
}
