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

/// A client that follows docs/PROTOCOL.md §6 literally: it takes the roster from each
/// snapshot (`ok` of `meeting_join`, `meeting_rejoined`), applies only events of the
/// snapshot's incarnation with a higher version, keeps a peer for every participant in the
/// roster, and drops one only when the roster says it left.
#[derive(Default)]
struct RosterFollower {
    at: Option<(u64, u64)>,
    roster: std::collections::BTreeMap<String, String>,
    /// Participants it ever had to drop while they had not left (must stay empty).
    wrongly_dropped: Vec<String>,
    snapshots: usize,
}

impl RosterFollower {
    fn snapshot(&mut self, frame: &serde_json::Value) {
        self.snapshots += 1;
        self.at = Some((frame["incarnation"].as_u64().unwrap(), frame["version"].as_u64().unwrap()));
        let now: std::collections::BTreeMap<String, String> = frame["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["participant_id"].as_str().unwrap().to_owned(), p["status"].as_str().unwrap().to_owned()))
            .collect();
        for id in self.roster.keys() {
            if !now.contains_key(id) {
                self.wrongly_dropped.push(id.clone()); // nobody in these tests leaves
            }
        }
        self.roster = now;
    }

    fn frame(&mut self, frame: &serde_json::Value) {
        match frame["type"].as_str() {
            Some("meeting_rejoined") => self.snapshot(frame),
            Some("meeting_event") => {
                let at = (frame["incarnation"].as_u64().unwrap(), frame["version"].as_u64().unwrap());
                let Some((incarnation, version)) = self.at else { return };
                if at.0 != incarnation || at.1 <= version {
                    return;
                }
                self.at = Some(at);
                let event = &frame["event"];
                match event["kind"].as_str() {
                    Some("joined" | "updated" | "lobby") => {
                        let p = &event["participant"];
                        self.roster.insert(
                            p["participant_id"].as_str().unwrap().to_owned(),
                            p["status"].as_str().unwrap().to_owned(),
                        );
                    }
                    Some("left") => {
                        let id = event["participant_id"].as_str().unwrap().to_owned();
                        self.roster.remove(&id);
                        self.wrongly_dropped.push(id);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    fn statuses(&self) -> Vec<String> {
        self.roster.values().cloned().collect()
    }
}

#[tokio::test]
async fn a_rebuilt_room_keeps_roster_host_and_lobby_for_clients_that_follow_the_protocol() {
    for round in 0..4 {
        let world = World::new(4).await;
        let (a, b, c, d) = (world.nodes[0], world.nodes[1], world.nodes[2], world.nodes[3]);
        let host = world.user("host");
        let invited = world.user("invited");
        let walk_in = world.user("walkin");
        let meeting = loop {
            let id = world.store.add_meeting(world.company, host.user_id, &[invited.user_id], true);
            if world.net.owner(ActorKey::Meeting(id)) == Some(b) {
                break id;
            }
        };
        let mut sessions = [
            (world.connect(a, host).await, RosterFollower::default()),
            (world.connect(c, invited).await, RosterFollower::default()),
            (world.connect(d, walk_in).await, RosterFollower::default()),
        ];
        for (index, (session, follower)) in sessions.iter_mut().enumerate() {
            let (answer, _) =
                session.request(&format!("j{index}"), json!({"type":"meeting_join","meeting_id":meeting})).await;
            assert_eq!(answer["type"], "ok", "{answer}");
            follower.snapshot(&answer["result"]);
        }
        // Let the host see everyone arrive (the lobby entry is shown to hosts only).
        for (session, follower) in sessions.iter_mut().take(1) {
            while follower.roster.len() < 3 {
                let frame = session.next_where("the roster filling", |f| f["type"] == "meeting_event").await;
                follower.frame(&frame);
            }
        }

        // The room's node dies; with round % 2 the membership notices only later, so the
        // sessions reach the new owner in whatever order their retries land.
        if round % 2 == 0 {
            world.net.kill(b).await;
        } else {
            world.net.kill_process(b).await;
            tokio::time::sleep(Duration::from_millis(100 * round as u64)).await;
            world.net.remove_member(b);
        }
        for (session, follower) in sessions.iter_mut() {
            let rejoined = session.next_where("meeting_rejoined", |f| f["type"] == "meeting_rejoined").await;
            follower.frame(&rejoined);
            assert_eq!(
                follower.roster.len(),
                3,
                "round {round}: the first snapshot of the new room is whole: {rejoined}"
            );
        }
        // Until everyone is back, follow the events.
        for (session, follower) in sessions.iter_mut().take(2) {
            while follower.statuses().iter().filter(|s| *s == "joined").count() < 2 {
                let frame = session.next_where("everyone back", |f| f["type"] == "meeting_event").await;
                follower.frame(&frame);
            }
            assert!(follower.wrongly_dropped.is_empty(), "round {round}: dropped {:?}", follower.wrongly_dropped);
        }
        // Host and lobby are as before: the host admits the walk-in from the rebuilt room.
        let (host_session, _) = &mut sessions[0];
        let (roster, _) = host_session.request("r", json!({"type":"ping"})).await;
        assert_eq!(roster["type"], "pong");
        let participants = world
            .net
            .directory(a)
            .ask_meeting(meeting, actors::routing::MeetingRequest::Roster { caller: host }, Duration::from_secs(5))
            .await
            .unwrap();
        let actors::routing::MeetingAnswer::Roster { participants, .. } = participants else { panic!() };
        let host_view = participants.iter().find(|p| p.user_id == host.user_id).unwrap();
        assert_eq!(host_view.role, actors::model::Role::Host, "round {round}: the host is still the host");
        let waiting = participants.iter().find(|p| p.user_id == walk_in.user_id).unwrap();
        assert_eq!(waiting.status, actors::model::ParticipantStatus::Lobby, "round {round}: the walk-in still waits");
        let admit = json!({"type":"lobby_admit","meeting_id":meeting,"participant_id":waiting.participant_id});
        let (answer, _) = host_session.request("admit", admit).await;
        assert_eq!(answer["type"], "ok", "round {round}: the host admits from the rebuilt room: {answer}");
    }
}
