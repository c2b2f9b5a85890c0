//! Several directories in one process, wired through an in-memory network that implements the
//! [`Cluster`] seam: placement over the live members, epochs, leases, lost links, restarts
//! with a new incarnation and cut links. Routing, re-homing and fencing bugs show up here in
//! milliseconds instead of in chaos runs.
//!
//! ```ignore
//! let net = MemoryNet::new();
//! let a = net.add_node(store.ports()).await;
//! let b = net.add_node(store.ports()).await;
//! net.kill(a); // members shrink, the others see the link lost, the epoch moves on
//! ```

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::debug;
use uuid::Uuid;

use crate::cluster::{rand_incarnation, AnswerReceiver, Cluster, PeerEvent};
use crate::directory::{Directory, DirectoryConfig};
use crate::model::{ActorKey, Delivery, Incarnation, NodeId};
use crate::ports::Ports;
use crate::routing::{RemoteRequest, RouteError};

type Envelope = (RemoteRequest, oneshot::Sender<Result<crate::routing::RemoteAnswer, RouteError>>);

struct NetNode {
    incarnation: Incarnation,
    directory: Option<Directory>,
    /// Whether this node is in the member set.
    member: bool,
    /// Restarted, but the member set still lists its previous incarnation.
    member_incarnation_stale: bool,
    /// The incarnation the member set lists while `member_incarnation_stale`.
    listed_incarnation: Incarnation,
    /// Whether it holds an ownership lease.
    serving: bool,
    /// Cut off from every other node (a partition): requests and deliveries fail both ways.
    cut: bool,
    peers: broadcast::Sender<PeerEvent>,
    /// One ordered queue per sender, like one TCP connection per pair of nodes.
    links: HashMap<NodeId, mpsc::UnboundedSender<Envelope>>,
}

/// The network and membership of an in-process cluster.
pub struct MemoryNet {
    me: Weak<MemoryNet>,
    nodes: Mutex<BTreeMap<NodeId, NetNode>>,
    epoch: watch::Sender<u64>,
    config: DirectoryConfig,
}

impl MemoryNet {
    pub fn new() -> Arc<Self> {
        Self::with_config(DirectoryConfig::default())
    }

    pub fn with_config(config: DirectoryConfig) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            nodes: Mutex::new(BTreeMap::new()),
            epoch: watch::channel(1).0,
            config,
        })
    }

    fn bump(&self) {
        self.epoch.send_modify(|epoch| *epoch += 1);
    }

    /// Adds a member running a fresh directory over `ports`; returns its node id.
    pub async fn add_node(&self, ports: Ports) -> NodeId {
        let node = self.nodes.lock().unwrap().keys().next_back().map_or(1, |last| last + 1);
        self.nodes.lock().unwrap().insert(
            node,
            NetNode {
                incarnation: rand_incarnation(),
                directory: None,
                member: true,
                member_incarnation_stale: false,
                listed_incarnation: 0,
                serving: true,
                cut: false,
                peers: broadcast::channel(64).0,
                links: HashMap::new(),
            },
        );
        self.start(node, ports).await;
        self.bump();
        node
    }

    async fn start(&self, node: NodeId, ports: Ports) {
        let incarnation = self.incarnation(node);
        let cluster = Arc::new(NetCluster { net: self.me.upgrade().expect("net alive"), node, incarnation });
        let directory = Directory::start(ports, self.config, cluster).await.expect("directory starts");
        if let Some(entry) = self.nodes.lock().unwrap().get_mut(&node) {
            entry.directory = Some(directory);
        }
    }

    pub fn directory(&self, node: NodeId) -> Directory {
        self.nodes.lock().unwrap()[&node].directory.clone().expect("a running node")
    }

    pub fn incarnation(&self, node: NodeId) -> Incarnation {
        self.nodes.lock().unwrap()[&node].incarnation
    }

    /// The owner of `key` as every node computes it now.
    pub fn owner(&self, key: ActorKey) -> Option<NodeId> {
        owner_among(&key.placement_key(), self.members().keys().copied())
    }

    fn members(&self) -> BTreeMap<NodeId, Incarnation> {
        let nodes = self.nodes.lock().unwrap();
        nodes
            .iter()
            .filter(|(_, n)| n.member)
            .map(|(id, n)| (*id, if n.member_incarnation_stale { n.listed_incarnation } else { n.incarnation }))
            .collect()
    }

    fn tell_others(&self, node: NodeId) {
        for (id, other) in self.nodes.lock().unwrap().iter_mut() {
            if *id != node {
                other.links.remove(&node);
                if other.peers.send(PeerEvent::LinkLost(node)).is_err() {
                    debug!(node = id, "nobody follows the links of this node");
                }
            }
        }
    }

    /// kill -9: the process is gone (nothing it sends arrives any more), its links drop now,
    /// and the membership removes it.
    pub async fn kill(&self, node: NodeId) {
        self.kill_process(node).await;
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").member = false;
        self.bump();
    }

    /// kill -9 without the membership noticing yet: links drop, the member stays listed.
    pub async fn kill_process(&self, node: NodeId) {
        let directory = {
            let mut nodes = self.nodes.lock().unwrap();
            let entry = nodes.get_mut(&node).expect("a node");
            entry.links.clear();
            if !entry.member_incarnation_stale {
                entry.listed_incarnation = entry.incarnation;
            }
            // A new incarnation number makes everything the dead run still sends vanish.
            entry.incarnation = rand_incarnation();
            entry.directory.take()
        };
        self.tell_others(node);
        if let Some(directory) = directory {
            directory.shutdown().await;
        }
    }

    /// kill -9 and an instant restart with the same id (what a supervisor does), before the
    /// membership noticed: a new incarnation, the member stays listed until it rejoins
    /// ([`MemoryNet::announce`]).
    pub async fn crash_and_restart(&self, node: NodeId, ports: Ports) {
        self.kill_process(node).await;
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").member_incarnation_stale = true;
        self.start(node, ports).await;
    }

    /// The restarted node's new incarnation reaches the membership (it rejoined).
    pub fn announce(&self, node: NodeId) {
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").member_incarnation_stale = false;
        self.bump();
    }

    /// Cuts every link of `node` (a partition) without a membership change.
    pub fn cut(&self, node: NodeId, cut: bool) {
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").cut = cut;
        if cut {
            self.tell_others(node);
            let peers: Vec<NodeId> = self.nodes.lock().unwrap().keys().copied().filter(|id| *id != node).collect();
            let sender = self.nodes.lock().unwrap()[&node].peers.clone();
            for peer in peers {
                if sender.send(PeerEvent::LinkLost(peer)).is_err() {
                    debug!(node, "nobody follows the links of this node");
                }
            }
        }
    }

    /// Removes `node` from the members without stopping it (what the others decide about a
    /// node they cannot hear).
    pub fn remove_member(&self, node: NodeId) {
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").member = false;
        self.bump();
    }

    pub fn set_serving(&self, node: NodeId, serving: bool) {
        self.nodes.lock().unwrap().get_mut(&node).expect("a node").serving = serving;
    }

    /// The directory of `to`, if `from` (in its run `incarnation`) can reach it now.
    fn reachable(&self, from: NodeId, incarnation: Incarnation, to: NodeId) -> Option<Directory> {
        let nodes = self.nodes.lock().unwrap();
        let (from, to) = (nodes.get(&from)?, nodes.get(&to)?);
        if from.cut || to.cut || from.incarnation != incarnation || from.directory.is_none() {
            return None;
        }
        to.directory.clone()
    }

    fn link(&self, from: NodeId, incarnation: Incarnation, to: NodeId) -> Option<mpsc::UnboundedSender<Envelope>> {
        let directory = self.reachable(from, incarnation, to)?;
        let mut nodes = self.nodes.lock().unwrap();
        let entry = nodes.get_mut(&to)?;
        if let Some(link) = entry.links.get(&from).filter(|link| !link.is_closed()) {
            return Some(link.clone());
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Envelope>();
        tokio::spawn(async move {
            // Requests are handed to the owner's actors in arrival order; answers come later.
            while let Some((request, reply)) = rx.recv().await {
                match directory.serve_remote(request).await {
                    Ok(pending) => {
                        tokio::spawn(async move {
                            if reply.send(pending.await).is_err() {
                                debug!("requester gave up");
                            }
                        });
                    }
                    Err(err) => {
                        if reply.send(Err(err)).is_err() {
                            debug!("requester gave up");
                        }
                    }
                }
            }
        });
        entry.links.insert(from, tx.clone());
        Some(tx)
    }
}

/// Rendezvous hashing over `members` (a stand-in for the cluster's own placement).
fn owner_among(key: &str, members: impl Iterator<Item = NodeId>) -> Option<NodeId> {
    members.max_by_key(|node| {
        let mut hasher = DefaultHasher::new();
        (key, node).hash(&mut hasher);
        (hasher.finish(), *node)
    })
}

/// One node's (one run's) view of a [`MemoryNet`].
pub struct NetCluster {
    net: Arc<MemoryNet>,
    node: NodeId,
    incarnation: Incarnation,
}

impl Cluster for NetCluster {
    fn this_node(&self) -> NodeId {
        self.node
    }
    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }
    fn owner(&self, key: ActorKey) -> Option<NodeId> {
        self.net.owner(key)
    }
    fn serving(&self) -> bool {
        let nodes = self.net.nodes.lock().unwrap();
        nodes.get(&self.node).is_some_and(|node| node.serving && node.member && node.incarnation == self.incarnation)
    }
    fn epoch(&self) -> u64 {
        *self.net.epoch.borrow()
    }
    fn request(&self, node: NodeId, request: RemoteRequest) -> Result<AnswerReceiver, RouteError> {
        let link = self.net.link(self.node, self.incarnation, node).ok_or(RouteError::Unreachable)?;
        let (tx, rx) = oneshot::channel();
        link.send((request, tx)).map_err(|_| RouteError::Unreachable)?;
        Ok(rx)
    }
    fn deliver(&self, node: NodeId, session_ids: Vec<Uuid>, delivery: Delivery) -> bool {
        match self.net.reachable(self.node, self.incarnation, node) {
            Some(directory) => {
                directory.deliver_local(&session_ids, &delivery);
                true
            }
            None => false,
        }
    }
    fn epochs(&self) -> watch::Receiver<u64> {
        self.net.epoch.subscribe()
    }
    fn members(&self) -> BTreeMap<NodeId, Incarnation> {
        self.net.members()
    }
    fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.net.nodes.lock().unwrap()[&self.node].peers.subscribe()
    }
}
