//! Faults a production cluster meets every day, on real node processes (127.0.0.x, one
//! Postgres, SIGKILL): an instant restart of a channel's owner, two of three nodes killed at
//! once, and the ephemeral state (typing, presence) a dead node held. Each of these left
//! clients connected to the survivors silently stale before restarts were detected by
//! incarnation, lost links re-established subscriptions, and sessions reconciled typing
//! and presence with the new owner.

use std::time::Instant;

use integration_tests::sandbox::ClusterSandbox;
use integration_tests::{Api, WsClient};
use serde_json::json;

async fn join(api: &Api, channel: &str) {
    let (status, answer) = api.post(&format!("/v1/channels/{channel}/join"), &json!({})).await;
    assert_eq!(status, 200, "{answer}");
}

/// Reads events until `head`; returns the seqs in arrival order.
async fn events_until(ws: &mut WsClient, head: i64) -> Vec<i64> {
    let mut seen = Vec::new();
    while seen.last().copied().unwrap_or(0) < head {
        seen.push(ws.next_of("event").await["seq"].as_i64().unwrap());
    }
    seen
}

/// The index of a node other than those in `not`.
fn other(count: usize, not: &[usize]) -> usize {
    (0..count).find(|index| !not.contains(index)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instant_restart_of_a_channels_owner_keeps_every_subscriber_receiving() {
    let Some(mut cluster) = ClusterSandbox::start(3).await else { return };
    let admin = cluster.company(0).await;
    let channel = admin.channel("busy", false).await.to_string();
    let owner = cluster.index_of(cluster.owner_of(&format!("channel:{channel}")).await).await;
    let (reader_node, writer_node) = (other(3, &[owner]), other(3, &[owner, other(3, &[owner])]));
    let reader = admin.add_user("reader").await;
    join(&reader, &channel).await;
    let mut ws = reader.on(&cluster.nodes[reader_node].http()).connect().await;
    let from = ws.ok(json!({"type":"subscribe","channel_id":channel})).await["head_seq"].as_i64().unwrap();
    let writer = admin.on(&cluster.nodes[writer_node].http());
    let before = writer.send_acknowledged(&channel, "before").await;
    assert_eq!(events_until(&mut ws, before).await, vec![before]);

    // kill -9 and back at once with the same data folder, as a process supervisor does.
    let started = Instant::now();
    cluster.kill(owner).await;
    cluster.restart(owner).await;
    let mut last = before;
    for n in 0..10 {
        last = writer.send_acknowledged(&channel, &format!("after-{n}")).await;
    }
    eprintln!("kill -9 + restart of the owner → 10 acknowledged sends in {:?}", started.elapsed());
    let seen = events_until(&mut ws, last).await;
    assert_eq!(seen, (before + 1..=last).collect::<Vec<_>>(), "every event once, in order, nothing lost");
    assert_eq!(from + 1, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_killed_and_restarted_leave_no_subscriber_behind() {
    let Some(mut cluster) = ClusterSandbox::start(3).await else { return };
    let admin = cluster.company(0).await;
    let channel = admin.channel("busy", false).await.to_string();
    let owner = cluster.index_of(cluster.owner_of(&format!("channel:{channel}")).await).await;
    let survivor = other(3, &[owner]);
    let second = other(3, &[owner, survivor]);
    let reader = admin.add_user("reader").await;
    join(&reader, &channel).await;
    let mut ws = reader.on(&cluster.nodes[survivor].http()).connect().await;
    ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    let writer = admin.on(&cluster.nodes[survivor].http());
    let before = writer.send_acknowledged(&channel, "before").await;
    assert_eq!(events_until(&mut ws, before).await, vec![before]);

    cluster.kill(owner).await;
    cluster.kill(second).await;
    cluster.restart(owner).await;
    cluster.restart(second).await;
    let mut last = before;
    for n in 0..10 {
        last = writer.send_acknowledged(&channel, &format!("after-{n}")).await;
    }
    let seen = events_until(&mut ws, last).await;
    assert_eq!(seen, (before + 1..=last).collect::<Vec<_>>(), "the survivor's client is not left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_and_presence_held_by_a_dead_node_end_for_every_watcher() {
    let Some(mut cluster) = ClusterSandbox::start(3).await else { return };
    let admin = cluster.company(0).await;
    let channel = admin.channel("general", false).await.to_string();
    let owner = cluster.index_of(cluster.owner_of(&format!("channel:{channel}")).await).await;
    let watcher_node = other(3, &[owner]);

    // Dave's user actor lives on the doomed node, and so does his only session.
    let dave = loop {
        let name = format!("dave{}", uuid::Uuid::new_v4().simple());
        let user = admin.add_user(&name[..20]).await;
        if cluster.index_of(cluster.owner_of(&format!("user:{}", user.user_id)).await).await == owner {
            break user;
        }
    };
    join(&dave, &channel).await;
    let erin = admin.add_user("erin").await;
    join(&erin, &channel).await;
    let mut daves_ws = dave.on(&cluster.nodes[owner].http()).connect().await;
    daves_ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    let mut erins_ws = erin.on(&cluster.nodes[watcher_node].http()).connect().await;
    erins_ws.ok(json!({"type":"subscribe","channel_id":channel})).await;
    let watched = erins_ws.ok(json!({"type":"presence_watch","user_ids":[dave.user_id]})).await;
    assert_eq!(watched[0]["status"], "online");
    daves_ws.ok(json!({"type":"typing_start","channel_id":channel})).await;
    assert_eq!(erins_ws.next_of("typing").await["active"], true);

    let killed = Instant::now();
    cluster.kill(owner).await;
    let typing = erins_ws.next_of("typing").await;
    assert_eq!(
        (typing["user_id"].as_str(), typing["active"].as_bool()),
        (Some(dave.user_id.to_string().as_str()), Some(false))
    );
    eprintln!("typing ended for the watcher {:?} after kill -9", killed.elapsed());
    let presence = erins_ws.next_of("presence").await;
    assert_eq!(
        (presence["user_id"].as_str(), presence["status"].as_str()),
        (Some(dave.user_id.to_string().as_str()), Some("offline"))
    );
    eprintln!("presence offline for the watcher {:?} after kill -9", killed.elapsed());
}
