//! The seam between the actors and the cluster: who owns a key, whether this node may act as
//! an owner right now, and how requests and deliveries reach other nodes. `node/` implements
//! [`Cluster`] over the transport and the raft membership; [`SingleNode`] is the whole
//! cluster in the single-node default; [`crate::testing`] wires several directories in one
//! process.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{broadcast, oneshot, watch};
use uuid::Uuid;

use crate::model::{ActorKey, Delivery, Incarnation, NodeId};
use crate::routing::{RemoteAnswer, RemoteRequest, RouteError};

pub type AnswerReceiver = oneshot::Receiver<Result<RemoteAnswer, RouteError>>;

/// Something that happened to the link with another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// The connection to this node ended. Frames sent on it may be lost, so whatever this
    /// node's sessions hold there (subscriptions, presence, meetings) is established again.
    LinkLost(NodeId),
}

/// What the actors need from the cluster. Calls that send are synchronous enqueues, so
/// requests from one sender reach the owner in the order they were made.
pub trait Cluster: Send + Sync + 'static {
    fn this_node(&self) -> NodeId;
    /// This run of this node.
    fn incarnation(&self) -> Incarnation;
    /// The owner of `key` in the current epoch; `None` while no member is known.
    fn owner(&self, key: ActorKey) -> Option<NodeId>;
    /// Whether this node may act as the owner of what placement gives it: it holds an
    /// ownership lease (it heard from a quorum recently, and nobody is ahead of its epoch).
    fn serving(&self) -> bool;
    /// The membership epoch this node is at: the fencing token of actors it loads now.
    fn epoch(&self) -> u64;
    /// Sends a request to `node`; the receiver yields its answer (or a transport error).
    fn request(&self, node: NodeId, request: RemoteRequest) -> Result<AnswerReceiver, RouteError>;
    /// Delivers one frame to several sessions of `node` in one message; `false` if the node
    /// cannot be reached (its sessions are then dropped by the sender).
    fn deliver(&self, node: NodeId, session_ids: Vec<Uuid>, delivery: Delivery) -> bool;
    /// Bumped on every membership change.
    fn epochs(&self) -> watch::Receiver<u64>;
    /// Members of the current epoch and the incarnation each runs.
    fn members(&self) -> BTreeMap<NodeId, Incarnation>;
    /// Link events, as they happen.
    fn peer_events(&self) -> broadcast::Receiver<PeerEvent>;
}

/// The whole cluster is this node.
pub struct SingleNode {
    incarnation: Incarnation,
    epochs: watch::Sender<u64>,
    peers: broadcast::Sender<PeerEvent>,
}

impl SingleNode {
    pub const NODE: NodeId = 1;

    pub fn new() -> Arc<Self> {
        Arc::new(Self { incarnation: rand_incarnation(), epochs: watch::channel(1).0, peers: broadcast::channel(1).0 })
    }
}

/// A fresh, non-zero incarnation below 2^53, so that JavaScript clients hold it exactly
/// (JSON numbers beyond that are rounded by browsers).
pub fn rand_incarnation() -> Incarnation {
    (Uuid::new_v4().as_u64_pair().0 >> 11) | 1
}

impl Cluster for SingleNode {
    fn this_node(&self) -> NodeId {
        Self::NODE
    }
    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }
    fn owner(&self, _key: ActorKey) -> Option<NodeId> {
        Some(Self::NODE)
    }
    fn serving(&self) -> bool {
        true
    }
    fn epoch(&self) -> u64 {
        1
    }
    fn request(&self, _node: NodeId, _request: RemoteRequest) -> Result<AnswerReceiver, RouteError> {
        Err(RouteError::Unreachable)
    }
    fn deliver(&self, _node: NodeId, _session_ids: Vec<Uuid>, _delivery: Delivery) -> bool {
        false
    }
    fn epochs(&self) -> watch::Receiver<u64> {
        self.epochs.subscribe()
    }
    fn members(&self) -> BTreeMap<NodeId, Incarnation> {
        BTreeMap::from([(Self::NODE, self.incarnation)])
    }
    fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.peers.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::rand_incarnation;

    #[test]
    fn incarnations_are_exact_in_javascript_and_never_zero() {
        const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
        for _ in 0..1000 {
            let incarnation = rand_incarnation();
            assert!(incarnation <= MAX_SAFE_INTEGER, "{incarnation} would be rounded by a browser");
            assert_ne!(incarnation, 0);
        }
    }
}
