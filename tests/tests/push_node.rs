//! Push through a whole node: a direct message to a user with no live session reaches their
//! phone through the (fake) FCM, with a deep link to the message.

use integration_tests::fake_fcm::FakeFcm;
use integration_tests::{Backend, TestNode, WAIT};
use node::push::PushConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_message_to_an_offline_user_is_pushed_to_their_phone() {
    let fake = FakeFcm::start().await.expect("fake fcm starts");
    let account_dir = integration_tests::TempDir::new();
    let account_file = account_dir.0.join("service-account.json");
    fake.write_service_account(&account_file).expect("service account written");
    let mut push = PushConfig::new(&account_file);
    push.base_url = fake.base_url.clone();
    let Some(node) = TestNode::start_with(Backend::Sqlite, |config| config.push = Some(push)).await else { return };
    let alice = node.company("pushco").await;
    let bob = alice.add_user("bob").await;
    let (status, _) = bob.post("/v1/devices", &json!({"token": "bob-phone", "platform": "android"})).await;
    assert_eq!(status, 201);
    let (status, dm) = alice.post("/v1/dms", &json!({"user_id": bob.user_id})).await;
    assert_eq!(status, 201);
    let dm_id = dm["channel"]["id"].as_str().unwrap();
    let (status, sent) =
        alice.post(&format!("/v1/channels/{dm_id}/messages"), &json!({"client_msg_id": "p1", "body": "lunch?"})).await;
    assert_eq!(status, 201);
    let message_id = sent["message"]["id"].as_str().unwrap();

    let received = fake.wait_for_messages(WAIT, |messages| !messages.is_empty()).await.expect("bob's phone is pushed");
    let push = &received[0];
    assert_eq!(push["token"], "bob-phone");
    assert_eq!(push["notification"]["body"], "lunch?");
    assert_eq!(push["data"]["kind"], "direct_message");
    let deep_link = push["data"]["deep_link"].as_str().unwrap();
    assert!(deep_link.contains(dm_id) && deep_link.contains(message_id), "{deep_link}");
    node.node.shutdown().await;
}
