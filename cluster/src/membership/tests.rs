//! In-process clusters over an in-memory [`PeerRpc`], and openraft's storage test suite.
//!
//! Timings printed with `eprintln!` (run with `--nocapture` to see them) measure convergence,
//! removal of an unreachable member and leader failover with test timeouts: heartbeat 50 ms,
//! election 200–400 ms, dead_after 500 ms.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::log_store::LogStore;
use super::protocol::{PeerRequest, PeerResponse};
use super::state::TypeConfig;
use super::state_machine::StateMachineStore;
use super::{Membership, MembershipConfig};
use crate::{codec, ClusterView, NodeId, PeerRpc, TransportError};

/// A folder under the system temp folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("cannot remove {}: {error}", self.0.display());
        }
    }
}

/// The network: cluster address → node, plus addresses switched off (in both directions).
#[derive(Default)]
struct LocalNet {
    nodes: Mutex<HashMap<String, Arc<Membership>>>,
    unreachable: Mutex<HashSet<String>>,
}

impl LocalNet {
    fn set_unreachable(&self, addr: &str) {
        self.unreachable.lock().unwrap().insert(addr.to_owned());
    }
}

struct LocalRpc {
    net: Arc<LocalNet>,
    from: String,
}

#[async_trait]
impl PeerRpc for LocalRpc {
    async fn call(&self, addr: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        let switched_off = {
            let unreachable = self.net.unreachable.lock().unwrap();
            unreachable.contains(addr) || unreachable.contains(&self.from)
        };
        if switched_off {
            return Err(TransportError::Unreachable(addr.to_owned(), "switched off".to_owned()));
        }
        let node = self.net.nodes.lock().unwrap().get(addr).cloned();
        let node = node.ok_or_else(|| TransportError::Unreachable(addr.to_owned(), "nobody there".to_owned()))?;
        tokio::time::timeout(timeout, node.handle(payload)).await.map_err(|_| TransportError::Timeout(addr.to_owned()))
    }
}

fn cluster_addr(index: usize) -> String {
    format!("node-{index}:9000")
}

fn test_config(root: &Path, index: usize, seeds: Vec<String>) -> MembershipConfig {
    MembershipConfig {
        cluster_addr: cluster_addr(index),
        client_addr: format!("node-{index}:8000"),
        incarnation: rand::random(),
        data_dir: root.join(format!("node-{index}")),
        seeds,
        heartbeat: Duration::from_millis(50),
        election_timeout: (Duration::from_millis(200), Duration::from_millis(400)),
        dead_after: Duration::from_millis(500),
        max_voters: 5,
    }
}

async fn start_node(net: &Arc<LocalNet>, config: MembershipConfig) -> Arc<Membership> {
    let addr = config.cluster_addr.clone();
    let rpc = Arc::new(LocalRpc { net: Arc::clone(net), from: addr.clone() });
    let node = Membership::start(config, rpc).await.unwrap();
    net.nodes.lock().unwrap().insert(addr, Arc::clone(&node));
    node
}

/// Polls `condition` every 10 ms; panics after `limit`. Returns how long it took.
async fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

fn views(nodes: &[&Arc<Membership>]) -> Vec<ClusterView> {
    nodes.iter().map(|node| node.view().borrow().clone()).collect()
}

/// All views show exactly `members`, one epoch and one known leader; returns (epoch, leader).
fn agreed(nodes: &[&Arc<Membership>], members: &BTreeSet<NodeId>) -> Option<(u64, NodeId)> {
    let views = views(nodes);
    let first = views.first()?;
    let agree = views.iter().all(|view| {
        view.members.keys().copied().collect::<BTreeSet<_>>() == *members
            && view.epoch == first.epoch
            && view.leader == first.leader
    });
    Some((first.epoch, first.leader?)).filter(|_| agree)
}

/// Starts node 1 (bootstrap) and nodes 2, 3 joining through it; waits until they agree.
async fn three_nodes(net: &Arc<LocalNet>, root: &Path) -> Vec<Arc<Membership>> {
    let started = Instant::now();
    let mut nodes = vec![start_node(net, test_config(root, 1, vec![])).await];
    for index in 2..=3 {
        nodes.push(start_node(net, test_config(root, index, vec![cluster_addr(1)])).await);
    }
    let ids: BTreeSet<NodeId> = nodes.iter().map(|node| node.node_id()).collect();
    let all: Vec<&Arc<Membership>> = nodes.iter().collect();
    wait_until("three nodes agree", Duration::from_secs(10), || agreed(&all, &ids).is_some()).await;
    // Three voters outside joint consensus: killing a node while {1, 2} is still one half of a
    // joint config would leave no majority of that half, which is raft, not this module.
    wait_until("three voters in a settled config", Duration::from_secs(5), || {
        nodes.iter().all(|node| {
            let metrics = node.metrics.borrow();
            let configs = metrics.membership_config.membership().get_joint_config();
            configs.len() == 1 && configs[0].len() == 3
        })
    })
    .await;
    eprintln!("measured: 3 nodes converged (members, epoch, leader, voters) in {:?}", started.elapsed());
    let (epoch, _) = agreed(&all, &ids).unwrap();
    assert_eq!(epoch, 3, "one epoch per member added");
    nodes
}

async fn stop_all(net: &LocalNet, nodes: &[Arc<Membership>]) {
    for node in nodes {
        node.shutdown().await;
    }
    net.nodes.lock().unwrap().clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_drop_an_unreachable_member_and_take_it_back() {
    let root = TempDir::new("membership-drop");
    let net = Arc::new(LocalNet::default());
    let nodes = three_nodes(&net, &root.0).await;
    let leader = nodes[0].view().borrow().leader.unwrap();

    // A repeated join, sent to a follower (forwarded to the leader), changes nothing.
    let follower = nodes.iter().find(|node| node.node_id() != leader).unwrap();
    let member = follower.info.clone();
    let request = codec::encode(&PeerRequest::Join { member, forwarded: false }).unwrap();
    let answer = codec::decode::<PeerResponse>(&follower.handle(request).await).unwrap();
    assert!(matches!(answer, PeerResponse::Joined { epoch: 3, leader: answered } if answered == leader), "{answer:?}");
    let ping = PeerRequest::Ping { from: 12345, epoch: 0, leader: false };
    let pong = codec::decode::<PeerResponse>(&follower.handle(codec::encode(&ping).unwrap()).await);
    assert!(matches!(pong.unwrap(), PeerResponse::Pong { id, .. } if id == follower.node_id()));

    let victim = nodes.iter().find(|node| node.node_id() != leader).unwrap();
    let survivors: Vec<&Arc<Membership>> = nodes.iter().filter(|node| node.node_id() != victim.node_id()).collect();
    let remaining: BTreeSet<NodeId> = survivors.iter().map(|node| node.node_id()).collect();
    net.set_unreachable(&victim.info.cluster_addr);
    let took = wait_until("the unreachable member is removed", Duration::from_secs(5), || {
        agreed(&survivors, &remaining).is_some_and(|(epoch, _)| epoch == 4)
    })
    .await;
    eprintln!("measured: unreachable member removed from the member set {took:?} after being cut off");
    wait_until("raft drops it too", Duration::from_secs(5), || {
        survivors.iter().all(|node| node.status().voters == remaining.iter().copied().collect::<Vec<_>>())
    })
    .await;
    let status = survivors.iter().find(|node| node.status().is_leader).unwrap().status();
    assert_eq!((status.epoch, status.members.len(), status.learners.len()), (4, 2, 0));

    // Reachable again, the removed node notices that no leader pings it and joins again.
    let healed = Instant::now();
    net.unreachable.lock().unwrap().clear();
    let all: Vec<&Arc<Membership>> = nodes.iter().collect();
    let ids: BTreeSet<NodeId> = nodes.iter().map(|node| node.node_id()).collect();
    wait_until("the removed node is back", Duration::from_secs(10), || {
        agreed(&all, &ids).is_some_and(|(epoch, _)| epoch == 5)
    })
    .await;
    eprintln!("measured: the removed node was a member again {:?} after the partition healed", healed.elapsed());
    stop_all(&net, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_a_survivor_and_removes_the_old_leader() {
    let root = TempDir::new("membership-failover");
    let net = Arc::new(LocalNet::default());
    let nodes = three_nodes(&net, &root.0).await;
    let old_leader = nodes[0].view().borrow().leader.unwrap();
    let dying = nodes.iter().find(|node| node.node_id() == old_leader).unwrap();
    let survivors: Vec<&Arc<Membership>> = nodes.iter().filter(|node| node.node_id() != old_leader).collect();

    let killed = Instant::now();
    net.set_unreachable(&dying.info.cluster_addr);
    dying.shutdown().await;
    let elected = wait_until("a survivor leads", Duration::from_secs(5), || {
        let leaders: Vec<Option<NodeId>> = views(&survivors).iter().map(|view| view.leader).collect();
        leaders[0].is_some_and(|leader| leader != old_leader) && leaders.iter().all(|leader| *leader == leaders[0])
    })
    .await;
    eprintln!("measured: new leader elected {elected:?} after the leader was killed");
    let remaining: BTreeSet<NodeId> = survivors.iter().map(|node| node.node_id()).collect();
    let new_leader = survivors[0].view().borrow().leader.unwrap();
    assert!(remaining.contains(&new_leader));
    wait_until("the old leader is removed", Duration::from_secs(5), || {
        agreed(&survivors, &remaining).is_some_and(|(epoch, _)| epoch == 4)
    })
    .await;
    eprintln!("measured: old leader removed from the member set {:?} after it was killed", killed.elapsed());
    stop_all(&net, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_loses_its_lease_before_the_others_remove_it() {
    let root = TempDir::new("membership-lease");
    let net = Arc::new(LocalNet::default());
    let nodes = three_nodes(&net, &root.0).await;
    wait_until("every node holds a lease", Duration::from_secs(5), || nodes.iter().all(|node| node.serving())).await;
    let leader = nodes[0].view().borrow().leader.unwrap();
    let victim = nodes.iter().find(|node| node.node_id() != leader).unwrap();
    let survivors: Vec<&Arc<Membership>> = nodes.iter().filter(|node| node.node_id() != victim.node_id()).collect();

    net.set_unreachable(&victim.info.cluster_addr);
    wait_until("the cut-off node stops serving", Duration::from_secs(5), || !victim.serving()).await;
    assert_eq!(victim.view().borrow().members.len(), 3, "it lost its lease while still a member everywhere");
    assert!(
        survivors.iter().all(|node| node.view().borrow().members.contains_key(&victim.node_id())),
        "the others had not removed it yet when its lease ended"
    );
    assert!(survivors.iter().all(|node| node.serving()), "the majority keeps serving");

    // Back after the others removed it: its view is stale (they are at a later epoch), so it
    // must not serve until it is a member again.
    let remaining: BTreeSet<NodeId> = survivors.iter().map(|node| node.node_id()).collect();
    wait_until("the cut-off node is removed", Duration::from_secs(5), || {
        agreed(&survivors, &remaining).is_some_and(|(epoch, _)| epoch == 4)
    })
    .await;
    net.unreachable.lock().unwrap().clear();
    let all: Vec<&Arc<Membership>> = nodes.iter().collect();
    let ids: BTreeSet<NodeId> = nodes.iter().map(|node| node.node_id()).collect();
    let mut served_stale = false;
    wait_until("it is a member again", Duration::from_secs(10), || {
        let stale = victim.view().borrow().epoch < 4;
        served_stale |= stale && victim.serving();
        agreed(&all, &ids).is_some_and(|(epoch, _)| epoch == 5)
    })
    .await;
    assert!(!served_stale, "a node with a stale view never holds a lease");
    wait_until("it serves again", Duration::from_secs(5), || victim.serving()).await;
    stop_all(&net, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_restart_replaces_the_member_entry_without_a_removal() {
    let root = TempDir::new("membership-fast-restart");
    let net = Arc::new(LocalNet::default());
    let mut nodes = three_nodes(&net, &root.0).await;
    let leader = nodes[0].view().borrow().leader.unwrap();
    let index = nodes.iter().position(|node| node.node_id() != leader).unwrap();
    let old = nodes[index].info.clone();
    nodes[index].shutdown().await;
    net.nodes.lock().unwrap().remove(&old.cluster_addr);

    // Back at once, same data folder and address, a new incarnation (a new process).
    let config = MembershipConfig { incarnation: old.incarnation + 1, ..nodes[index].config.clone() };
    let restarted = start_node(&net, config).await;
    assert_eq!(restarted.node_id(), old.id);
    nodes[index] = restarted;
    let all: Vec<&Arc<Membership>> = nodes.iter().collect();
    let ids: BTreeSet<NodeId> = nodes.iter().map(|node| node.node_id()).collect();
    let took = wait_until("everyone sees the new incarnation", Duration::from_secs(5), || {
        views(&all).iter().all(|view| view.members.get(&old.id).is_some_and(|m| m.incarnation == old.incarnation + 1))
    })
    .await;
    eprintln!("measured: a restarted node's new incarnation reached every view {took:?} after its start");
    let (epoch, _) = agreed(&all, &ids).expect("one view");
    assert_eq!(epoch, 4, "the restart moved the epoch once, with no removal in between");
    stop_all(&net, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_removes_a_follower_then_the_leader_at_once() {
    let root = TempDir::new("membership-leave");
    let net = Arc::new(LocalNet::default());
    let nodes = three_nodes(&net, &root.0).await;
    let leader_id = nodes[0].view().borrow().leader.unwrap();
    let leader = nodes.iter().find(|node| node.node_id() == leader_id).unwrap();
    let followers: Vec<&Arc<Membership>> = nodes.iter().filter(|node| node.node_id() != leader_id).collect();

    let started = Instant::now();
    followers[0].leave().await.unwrap();
    // Done when `leave` returns (no waiting for silence detection): the leader applied it.
    let leader_view = leader.view().borrow().clone();
    assert!(!leader_view.members.contains_key(&followers[0].node_id()));
    assert_eq!(leader_view.epoch, 4);
    eprintln!("measured: a follower's graceful leave took {:?}", started.elapsed());
    let stay: Vec<&Arc<Membership>> = vec![leader, followers[1]];
    let ids: BTreeSet<NodeId> = stay.iter().map(|node| node.node_id()).collect();
    wait_until("the other follower agrees", Duration::from_secs(2), || {
        agreed(&stay, &ids).is_some_and(|(epoch, _)| epoch == 4)
    })
    .await;
    followers[0].shutdown().await;

    leader.leave().await.unwrap();
    let last = followers[1];
    wait_until("the last node leads itself alone", Duration::from_secs(5), || {
        let view = last.view().borrow().clone();
        view.epoch == 5 && view.leader == Some(last.node_id()) && view.members.keys().eq([last.node_id()].iter())
    })
    .await;
    eprintln!("measured: after the leader left, the last node led alone {:?} after the first leave", started.elapsed());
    assert_eq!(last.status().voters, vec![last.node_id()]);
    stop_all(&net, &nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_keeps_its_id_members_and_epoch() {
    let root = TempDir::new("membership-restart");
    let net = Arc::new(LocalNet::default());
    let config = test_config(&root.0, 1, vec![]);
    let first = start_node(&net, config.clone()).await;
    let id = first.node_id();
    let before = first.view().borrow().clone();
    assert_eq!((before.epoch, before.members.len()), (1, 1), "bootstrap adds the node before start returns");
    first.shutdown().await;
    net.nodes.lock().unwrap().clear();
    drop(first);

    let second = start_node(&net, config.clone()).await;
    assert_eq!(second.node_id(), id);
    let after = second.view().borrow().clone();
    assert_eq!((after.epoch, &after.members), (before.epoch, &before.members), "state reloaded before start returns");
    wait_until("it leads again", Duration::from_secs(5), || second.status().is_leader).await;
    second.shutdown().await;
    net.nodes.lock().unwrap().clear();
    drop(second);

    // Restarted on another address: the member set follows (the node is its own leader).
    let moved = MembershipConfig { client_addr: "node-1:8001".to_owned(), ..config };
    let third = start_node(&net, moved).await;
    assert_eq!(third.node_id(), id);
    wait_until("the new address is in the member set", Duration::from_secs(5), || {
        let view = third.view().borrow().clone();
        view.epoch == 2 && view.members.get(&id).is_some_and(|member| member.client_addr == "node-1:8001")
    })
    .await;
    third.shutdown().await;
    net.nodes.lock().unwrap().clear();
}

/// Builds a fresh log store and state machine in a temp folder for each suite case.
struct SuiteBuilder;

impl openraft::testing::StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for SuiteBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), openraft::StorageError<NodeId>> {
        let dir = TempDir::new("membership-suite");
        let raft_dir = dir.0.join("raft");
        let io = |error: std::io::Error| openraft::StorageIOError::<NodeId>::write(&error);
        let log_store = LogStore::open(raft_dir.clone()).await.map_err(io)?;
        let view = Arc::new(tokio::sync::watch::channel(ClusterView::default()).0);
        let state_machine = StateMachineStore::open(raft_dir, 1, view).await.map_err(io)?;
        Ok((dir, log_store, state_machine))
    }
}

#[test]
fn storage_passes_the_openraft_suite() {
    openraft::testing::Suite::test_all(SuiteBuilder).unwrap();
}

#[tokio::test]
async fn the_log_store_reloads_what_it_persisted_and_drops_crash_leftovers() {
    use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

    let dir = TempDir::new("membership-log");
    let raft_dir = dir.0.join("raft");
    let log_id = |index| LogId::new(CommittedLeaderId::new(2, 7), index);
    let mut store = LogStore::open(raft_dir.clone()).await.unwrap();
    assert!(!store.has_state());
    store.save_vote(&Vote::new_committed(2, 7)).await.unwrap();
    let entries = (0..=5).map(|index| Entry::<TypeConfig> { log_id: log_id(index), payload: EntryPayload::Blank });
    store.blocking_append(entries).await.unwrap();
    store.save_committed(Some(log_id(3))).await.unwrap();
    store.truncate(log_id(4)).await.unwrap();
    store.purge(log_id(1)).await.unwrap();
    // What a crash could leave behind: a temporary file, an entry past a gap, a purged entry.
    let log_dir = raft_dir.join("log");
    std::fs::write(log_dir.join("00000000000000000004.tmp"), b"partial").unwrap();
    std::fs::write(log_dir.join(format!("{:020}.json", 9)), serde_json::to_vec(&log_id(9)).unwrap()).unwrap();
    std::fs::write(log_dir.join(format!("{:020}.json", 1)), b"not even json").unwrap();
    drop(store);

    let mut reopened = LogStore::open(raft_dir).await.unwrap();
    assert!(reopened.has_state());
    assert_eq!(reopened.read_vote().await.unwrap(), Some(Vote::new_committed(2, 7)));
    assert_eq!(reopened.read_committed().await.unwrap(), Some(log_id(3)));
    let state = reopened.get_log_state().await.unwrap();
    assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(log_id(1)), Some(log_id(3))));
    let kept: Vec<u64> = reopened.try_get_log_entries(0..100).await.unwrap().iter().map(|e| e.log_id.index).collect();
    assert_eq!(kept, vec![2, 3]);
    assert!(!log_dir.join(format!("{:020}.json", 9)).exists(), "an entry past a gap is deleted");
}
