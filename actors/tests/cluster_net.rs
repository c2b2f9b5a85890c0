//! Several nodes in one process (`actors::testing::MemoryNet`): what a session on one node
//! keeps when the node owning its channel, its user or its meeting dies, restarts, or is cut
//! off. Each test names the fault; each would leave a session silently stale without the
//! mechanism it checks (lost links, incarnations, reconciliation, retries while owners move).

mod common;

use std::sync::Arc;
use std::time::Duration;

use actors::directory::DirectoryConfig;
use actors::memory::MemoryStore;
use actors::model::{ActorKey, Caller, NodeId};
use actors::ports::{ChannelKind, Ports};
use actors::session::SessionConfig;
use actors::testing::MemoryNet;
use actors::user::UserConfig;
use common::{connect_to, TestSession};
use serde_json::json;
use uuid::Uuid;

struct World {
    net: Arc<MemoryNet>,
    store: Arc<MemoryStore>,
    ports: Ports,
    company: Uuid,
    nodes: Vec<NodeId>,
}

impl World {
    async fn new(count: usize) -> World {
        let config = DirectoryConfig {
            user: UserConfig { reattach_grace: Duration::from_millis(300), ..UserConfig::default() },
            ..DirectoryConfig::default()
        };
        let net = MemoryNet::with_config(config);
        let store = MemoryStore::new();
        // One set of ports for every node: they share one database and one presence store.
        let ports = store.ports();
        let mut nodes = Vec::new();
        for _ in 0..count {
            nodes.push(net.add_node(ports.clone()).await);
        }
        World { net, store, ports, company: Uuid::new_v4(), nodes }
    }

    fn user(&self, name: &str) -> Caller {
        Caller { user_id: self.store.add_user(self.company, name), company_id: self.company }
    }

    /// A user whose actor lives on `node`.
    fn user_on(&self, name: &str, node: NodeId) -> Caller {
        loop {
            let caller = self.user(name);
            if self.net.owner(ActorKey::User(caller.user_id)) == Some(node) {
                return caller;
            }
        }
    }

    /// A public channel of `members` owned by `node`.
    fn channel_on(&self, node: NodeId, members: &[Caller]) -> Uuid {
        let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
        loop {
            let channel = self.store.add_channel(self.company, ChannelKind::Public, &ids);
            if self.net.owner(ActorKey::Channel(channel)) == Some(node) {
                return channel;
            }
        }
    }

    async fn connect(&self, node: NodeId, caller: Caller) -> TestSession {
        connect_to(&self.net.directory(node), caller, 256, SessionConfig::default()).await
    }
}

async fn send(session: &mut TestSession, rid: &str, channel: Uuid, body: &str) -> i64 {
    let frame = json!({"type":"send","channel_id":channel,"client_msg_id":rid,"body":body});
    let (answer, _) = session.request(rid, frame).await;
    assert_eq!(answer["type"], "ok", "{answer}");
    answer["result"]["seq"].as_i64().unwrap()
}

#[tokio::test]
async fn a_subscription_survives_an_instant_restart_of_its_channels_node() {
    let world = World::new(2).await;
    let (a, b) = (world.nodes[0], world.nodes[1]);
    let alice = world.user("alice");
    let bob = world.user("bob");
    let channel = world.channel_on(b, &[alice, bob]);
    let mut watcher = world.connect(a, alice).await;
    let (ok, _) = watcher.request("s", json!({"type":"subscribe","channel_id":channel})).await;
    assert_eq!(ok["type"], "ok");
    let mut sender = world.connect(a, bob).await;
    assert_eq!(send(&mut sender, "m1", channel, "before").await, 1);
    watcher.next_where("the first message", |f| f["seq"] == 1).await;

    // kill -9 and back at once, before the membership notices: same id, new incarnation.
    world.net.crash_and_restart(b, world.ports.clone()).await;
    let seq = send(&mut sender, "m2", channel, "after").await;
    let event = watcher.next_where("the message sent after the restart", |f| f["type"] == "event").await;
    assert_eq!((event["seq"].as_i64(), event["event"]["message"]["body"].as_str()), (Some(seq), Some("after")));

    // The restarted node rejoins with its new incarnation: nothing is delivered twice.
    world.net.announce(b);
    let seq = send(&mut sender, "m3", channel, "rejoined").await;
    let event = watcher.next_where("the next event", |f| f["type"] == "event").await;
    assert_eq!(event["seq"].as_i64(), Some(seq), "no duplicate of an earlier seq in between");
}

#[tokio::test]
async fn typing_shown_from_a_dead_owner_ends() {
    let world = World::new(3).await;
    let (a, b, c) = (world.nodes[0], world.nodes[1], world.nodes[2]);
    let alice = world.user("alice");
    let carol = world.user("carol");
    let channel = world.channel_on(b, &[alice, carol]);
    let mut typist = world.connect(c, alice).await;
    let mut watcher = world.connect(a, carol).await;
    for session in [&mut typist, &mut watcher] {
        let (ok, _) = session.request("s", json!({"type":"subscribe","channel_id":channel})).await;
        assert_eq!(ok["type"], "ok");
    }
    let (ok, _) = typist.request("t", json!({"type":"typing_start","channel_id":channel})).await;
    assert_eq!(ok["type"], "ok");
    let typing = watcher.next_of("typing").await;
    assert_eq!(typing["active"], true);

    world.net.kill(b).await; // its typing state dies with it; no expiry will ever come from it
    let ended = watcher.next_of("typing").await;
    assert_eq!(
        (ended["user_id"].as_str(), ended["active"].as_bool()),
        (Some(alice.user_id.to_string().as_str()), Some(false))
    );
}

#[tokio::test]
async fn a_watcher_hears_offline_when_the_users_only_node_dies() {
    let world = World::new(3).await;
    let (a, b) = (world.nodes[0], world.nodes[1]);
    let dave = world.user_on("dave", b);
    let erin = world.user("erin");
    let _daves_only_session = world.connect(b, dave).await;
    let mut watcher = world.connect(a, erin).await;
    let (answer, _) = watcher.request("w", json!({"type":"presence_watch","user_ids":[dave.user_id]})).await;
    assert_eq!(answer["result"][0]["status"], "online");

    world.net.kill(b).await; // dave's session and dave's user actor die together
    let presence = watcher.next_of("presence").await;
    assert_eq!(
        (presence["user_id"].as_str(), presence["status"].as_str()),
        (Some(dave.user_id.to_string().as_str()), Some("offline"))
    );
}

#[tokio::test]
async fn a_presence_change_during_a_move_reaches_an_existing_watcher() {
    let world = World::new(2).await;
    let (a, b) = (world.nodes[0], world.nodes[1]);
    let dave = world.user_on("dave", b);
    let erin = world.user("erin");
    let mut watcher = world.connect(a, erin).await;
    let (answer, _) = watcher.request("w", json!({"type":"presence_watch","user_ids":[dave.user_id]})).await;
    assert_eq!(answer["result"][0]["status"], "offline");

    // Dave comes online while his user actor moves (its node restarts): the watcher must
    // end up told online, whatever the order of re-attach and re-watch.
    world.net.crash_and_restart(b, world.ports.clone()).await;
    let _dave = world.connect(a, dave).await;
    world.net.announce(b);
    let presence = watcher.next_of("presence").await;
    assert_eq!(presence["status"], "online");
}

#[tokio::test]
async fn a_meeting_join_waits_while_the_room_moves_and_succeeds() {
    let world = World::new(2).await;
    let (a, b) = (world.nodes[0], world.nodes[1]);
    let host = world.user("host");
    let meeting = loop {
        let id = world.store.add_meeting(world.company, host.user_id, &[], false);
        if world.net.owner(ActorKey::Meeting(id)) == Some(b) {
            break id;
        }
    };
    let mut session = world.connect(a, host).await;
    world.net.kill_process(b).await; // dead, but still a member for a moment
    let net = world.net.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        net.remove_member(b); // the membership notices
    });
    let (answer, _) = session.request("j", json!({"type":"meeting_join","meeting_id":meeting})).await;
    assert_eq!(answer["type"], "ok", "the join waited for the room to move instead of failing: {answer}");
    assert_eq!(answer["result"]["me"]["role"], "host");
}

#[tokio::test]
async fn a_session_keeps_answering_while_its_subscription_is_re_established() {
    let world = World::new(2).await;
    let (a, b) = (world.nodes[0], world.nodes[1]);
    let alice = world.user("alice");
    let channel = world.channel_on(b, &[alice]);
    let mut session = world.connect(a, alice).await;
    let (ok, _) = session.request("s", json!({"type":"subscribe","channel_id":channel})).await;
    assert_eq!(ok["type"], "ok");
    world.net.kill_process(b).await; // the owner is unreachable and still listed
    let (pong, _) = session.request("p", json!({"type":"ping"})).await;
    assert_eq!(pong["type"], "pong", "pings are answered while the session waits for the owner");
    world.net.remove_member(b);
    let mut other = world.connect(a, alice).await;
    let seq = send(&mut other, "m", channel, "moved").await;
    let event = session.next_where("the message at the new owner", |f| f["type"] == "event").await;
    assert_eq!(event["seq"].as_i64(), Some(seq));
}
