//! How room actors reach sessions: a [`SessionSink`] per session, local (straight into the
//! session's inbox) or remote (through the cluster, one message per node), and [`fan_out`]
//! of one frame to many sinks.

use std::collections::HashMap;
use std::sync::Arc;

use tracing::debug;
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::model::{Delivery, Incarnation, NodeId, SessionAddr};

/// A live session on this node, as actors hand it deliveries.
pub trait SessionInbox: Send + Sync + 'static {
    /// Hands over one delivery; `false` when the session is gone.
    fn deliver(&self, delivery: &Delivery) -> bool;
}

/// How a session is reached from the actor holding its sink.
#[derive(Clone)]
pub enum SinkRoute {
    Local(Arc<dyn SessionInbox>),
    /// On another node: frames go through the cluster, batched per node.
    Remote(Arc<dyn Cluster>),
}

/// How channel, user and meeting actors reach a session, on this node or another.
#[derive(Clone)]
pub struct SessionSink {
    pub addr: SessionAddr,
    pub route: SinkRoute,
}

impl std::fmt::Debug for SessionSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSink").field("addr", &self.addr).finish()
    }
}

impl SessionSink {
    pub fn local(addr: SessionAddr, inbox: Arc<dyn SessionInbox>) -> Self {
        Self { addr, route: SinkRoute::Local(inbox) }
    }

    /// `false` when the session is gone (or its node unreachable).
    pub fn deliver(&self, delivery: &Delivery) -> bool {
        match &self.route {
            SinkRoute::Local(inbox) => inbox.deliver(delivery),
            SinkRoute::Remote(cluster) => cluster.deliver(self.addr.node, vec![self.addr.session_id], delivery.clone()),
        }
    }
}

/// Delivers one frame to every sink: directly to local sessions, and in one message per
/// remote node. Sinks that cannot be reached are removed.
pub fn fan_out(sinks: &mut HashMap<Uuid, SessionSink>, delivery: &Delivery) {
    let mut remote: HashMap<NodeId, (Arc<dyn Cluster>, Vec<Uuid>)> = HashMap::new();
    sinks.retain(|session_id, sink| match &sink.route {
        SinkRoute::Local(inbox) => inbox.deliver(delivery),
        SinkRoute::Remote(cluster) => {
            remote.entry(sink.addr.node).or_insert_with(|| (cluster.clone(), Vec::new())).1.push(*session_id);
            true
        }
    });
    for (node, (cluster, session_ids)) in remote {
        if !cluster.deliver(node, session_ids, delivery.clone()) {
            debug!(node, "node unreachable, dropping its sessions");
            sinks.retain(|_, sink| sink.addr.node != node);
        }
    }
}

/// Sessions that no longer exist because their node left the cluster (every incarnation) or
/// restarted (the incarnation that died).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone {
    pub node: NodeId,
    /// `None`: every incarnation of the node.
    pub incarnation: Option<Incarnation>,
}

impl Gone {
    pub fn covers(&self, addr: &SessionAddr) -> bool {
        addr.node == self.node && self.incarnation.is_none_or(|incarnation| incarnation == addr.incarnation)
    }

    /// Whether any of `gone` covers `addr`.
    pub fn any_covers(gone: &[Gone], addr: &SessionAddr) -> bool {
        gone.iter().any(|gone| gone.covers(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_covers_one_incarnation_or_all() {
        let addr = SessionAddr { node: 3, incarnation: 7, session_id: Uuid::new_v4(), user_id: Uuid::new_v4() };
        assert!(Gone { node: 3, incarnation: None }.covers(&addr));
        assert!(Gone { node: 3, incarnation: Some(7) }.covers(&addr));
        assert!(!Gone { node: 3, incarnation: Some(8) }.covers(&addr), "a newer incarnation's sessions live");
        assert!(!Gone { node: 4, incarnation: None }.covers(&addr));
    }
}
