//! One connection to a peer: its outbound queue and the requests waiting for answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::frames::Frame;
use crate::{Incarnation, NodeId, TransportError};

/// Frames queued for one peer before sends fail.
const PEER_QUEUE: usize = 65_536;

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, TransportError>>>>;

pub(super) struct Peer {
    /// The peer's advertised cluster address: the key of the connection.
    pub addr: String,
    pub tx: mpsc::Sender<Frame>,
    pub pending: Pending,
    pub dead: AtomicBool,
    /// The peer's node and incarnation, once the handshake told them.
    pub identity: Mutex<Option<(NodeId, Incarnation)>>,
}

impl Peer {
    /// A peer and the receiving end of its outbound queue (for the connection's writer).
    pub(super) fn new(addr: String, identity: Option<(NodeId, Incarnation)>) -> (Arc<Peer>, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let peer = Peer {
            addr,
            tx,
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            identity: Mutex::new(identity),
        };
        (Arc::new(peer), rx)
    }

    pub(super) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Marks the connection dead and fails every request still waiting on it.
    pub(super) fn fail_all(&self, reason: &str) {
        self.dead.store(true, Ordering::SeqCst);
        let pending: Vec<_> = self.pending.lock().unwrap().drain().collect();
        for (_, reply) in pending {
            if reply.send(Err(TransportError::Unreachable(self.addr.clone(), reason.to_owned()))).is_err() {
                debug!(peer = %self.addr, "requester already gone");
            }
        }
    }
}
