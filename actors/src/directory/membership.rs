//! Following the cluster: membership epochs (actors that moved stop, sessions of departed or
//! restarted nodes are forgotten, local sessions subscribe again) and lost links (local
//! sessions re-establish what they held on that node).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, info, warn};

use super::kinds::{Channels, Kind, Meetings, Users};
use super::{Directory, LocalSession, SessionControl};
use crate::cluster::PeerEvent;
use crate::delivery::Gone;
use crate::model::{Incarnation, NodeId};

/// The sessions that no longer exist between two views of the members: every incarnation of
/// a node that left, the old incarnation of a node that restarted.
pub(crate) fn gone_between(before: &BTreeMap<NodeId, Incarnation>, after: &BTreeMap<NodeId, Incarnation>) -> Vec<Gone> {
    before
        .iter()
        .filter_map(|(node, incarnation)| match after.get(node) {
            None => Some(Gone { node: *node, incarnation: None }),
            Some(now) if now != incarnation => Some(Gone { node: *node, incarnation: Some(*incarnation) }),
            Some(_) => None,
        })
        .collect()
}

impl Directory {
    pub(super) fn follow_cluster(&self) {
        let weak = Arc::downgrade(&self.inner);
        let mut epochs = self.inner.cluster.epochs();
        let mut members = self.inner.cluster.members();
        tokio::spawn(async move {
            while epochs.changed().await.is_ok() {
                let Some(inner) = weak.upgrade() else { return };
                let directory = Directory { inner };
                let now = directory.inner.cluster.members();
                let gone = gone_between(&members, &now);
                members = now;
                directory.on_membership_change(gone);
            }
        });
        let weak = Arc::downgrade(&self.inner);
        let mut peers = self.inner.cluster.peer_events();
        tokio::spawn(async move {
            loop {
                let event = match peers.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(missed)) => {
                        // Events were lost: treat it as a membership change, which rehomes all.
                        warn!(missed, "peer events lagged, rehoming every session");
                        let Some(inner) = weak.upgrade() else { return };
                        Directory { inner }.control_sessions(SessionControl::Rehome);
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let directory = Directory { inner };
                match event {
                    PeerEvent::LinkLost(node) => {
                        debug!(node, "link lost, sessions re-establish what they held there");
                        directory.control_sessions(SessionControl::PeerLost(node));
                    }
                }
            }
        });
    }

    fn control_sessions(&self, control: SessionControl) -> usize {
        let sessions: Vec<Arc<dyn LocalSession>> = self.inner.sessions.lock().unwrap().values().cloned().collect();
        for session in &sessions {
            session.control(control);
        }
        sessions.len()
    }

    fn on_membership_change(&self, gone: Vec<Gone>) {
        let moved = self.rehome::<Channels>(&gone) + self.rehome::<Users>(&gone) + self.rehome::<Meetings>(&gone);
        let sessions = self.control_sessions(SessionControl::Rehome);
        info!(moved, sessions, ?gone, "membership changed, actors rehomed");
    }

    /// Stops the actors of kind `K` this node no longer owns; tells the others which sessions
    /// are gone.
    fn rehome<K: Kind>(&self, gone: &[Gone]) -> usize {
        let this = self.this_node();
        let mut moved = 0;
        for (id, actor) in K::slots(&self.inner).running() {
            if self.inner.cluster.owner(K::key(id)) != Some(this) {
                actor.stop(Some("moved to another node".to_owned()));
                moved += 1;
            } else if !gone.is_empty() && actor.cast(K::forget(gone.to_vec())).is_err() {
                debug!(%id, "actor stopped");
            }
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn departed_and_restarted_nodes_are_gone() {
        let before = BTreeMap::from([(1, 10), (2, 20), (3, 30)]);
        let after = BTreeMap::from([(1, 10), (3, 31), (4, 40)]);
        assert_eq!(
            gone_between(&before, &after),
            vec![Gone { node: 2, incarnation: None }, Gone { node: 3, incarnation: Some(30) }]
        );
        assert!(gone_between(&after, &after).is_empty());
    }
}
