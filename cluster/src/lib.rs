//! The cluster: who is a member (openraft), who owns which actor (rendezvous hashing), and
//! how nodes talk (one mutual-TLS TCP connection per pair of nodes).
//!
//! # Layout
//! - [`codec`]: the binary codec between nodes (postcard).
//! - [`membership`]: the raft group of nodes; members, epoch, joins, removal of dead nodes.
//! - [`placement`]: rendezvous hashing of actor keys over the members of an epoch.
//! - [`transport`]: framed, multiplexed TCP between nodes under mutual TLS 1.3.

pub mod codec;
pub mod membership;
pub mod placement;
pub mod transport;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// A node's id in the raft group: random on first start, then kept in the data folder.
pub type NodeId = u64;

/// One run of a node: drawn afresh at every start. A member whose incarnation changed
/// restarted, and everything the old run held (sessions, subscriptions) is gone.
pub type Incarnation = u64;

/// What the cluster knows of a member.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub incarnation: Incarnation,
    /// Where other nodes reach it (raft and actor traffic).
    pub cluster_addr: String,
    /// Where clients reach it (HTTP and WebSocket).
    pub client_addr: String,
}

/// The replicated membership as one node currently sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ClusterView {
    /// Bumped by every change of the member set.
    pub epoch: u64,
    pub members: BTreeMap<NodeId, MemberInfo>,
    pub leader: Option<NodeId>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("peer {0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("peer {0} did not answer in time")]
    Timeout(String),
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// How the membership layer sends its (opaque, already encoded) requests to other nodes.
#[async_trait]
pub trait PeerRpc: Send + Sync + 'static {
    /// Sends `payload` to the node whose cluster address is `addr` and waits for its answer,
    /// which the receiving node produced with `Membership::handle`.
    async fn call(&self, addr: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError>;
}
