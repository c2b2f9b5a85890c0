//! Node-to-node transport: one connection per pair of nodes (whichever dialled first),
//! carrying length-prefixed postcard frames both ways: requests with ids and their
//! responses, and one-way messages, for two services (membership and actors).
//!
//! Connections are mutual TLS 1.3: both ends prove they hold a certificate of the cluster CA
//! (derived from the cluster secret, or supplied by the operator), and everything on the
//! wire is encrypted. Inside TLS the dialler says who it is (Hello: address, node,
//! incarnation) and the acceptor answers with its own (Welcome).
//!
//! A peer that cannot be reached fails fast for a backoff period (doubling to 2 s), so a
//! sender re-resolves the owner after the next membership epoch instead of waiting.
//!
//! # Layout
//! - [`frames`]: the frames and their length-prefixed encoding, with per-stage size limits.
//! - [`tls`]: rustls configurations from the secret or from PEM files.
//! - `ca`: the CA derived from the secret and each run's certificate.
//! - `handshake`: TLS + Hello/Welcome under a deadline; the throttle of repeated warnings.
//! - `peer`: one connection's outbound queue and the requests waiting for its answers.

mod ca;
pub mod frames;
mod handshake;
mod link;
mod peer;
pub mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use self::frames::{read_frame, write_frame, Frame};
pub use self::frames::{Service, MAX_FRAME_BYTES};
use self::handshake::{Throttle, MAX_HANDSHAKES};
use self::link::Link;
use self::peer::Peer;
use self::tls::Security;
pub use self::tls::{ClusterTls, TlsError, TlsFiles, DEFAULT_SERVER_NAME};
use crate::{Incarnation, NodeId, PeerRpc, TransportError};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Warnings about refused connections go out at most this often (each says how many it stands for).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// An answer still being computed.
pub type Reply = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// What a node does with frames from peers.
#[async_trait]
pub trait Inbound: Send + Sync + 'static {
    /// Accepts a request. Whatever must happen in arrival order happens before this returns;
    /// the returned future computes the answer (concurrently with later frames).
    async fn request(&self, service: Service, payload: Vec<u8>) -> Reply;
    /// A one-way message, handled in arrival order.
    async fn message(&self, service: Service, payload: Vec<u8>);
}

/// Who this node is, as it introduces itself to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub node: NodeId,
    /// This run of the node: a peer that reconnects with another incarnation restarted.
    pub incarnation: Incarnation,
    /// Where peers reach this node.
    pub advertise: String,
}

/// A connection to a peer came up or went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    Up {
        node: NodeId,
        incarnation: Incarnation,
    },
    /// Frames queued on the connection may be lost: whatever depends on them must be redone.
    Down {
        node: NodeId,
    },
}

pub struct Transport {
    identity: Identity,
    security: Security,
    /// Accepted connections still in their handshake hold one permit each.
    handshakes: Arc<Semaphore>,
    refused_warnings: Throttle,
    failed_handshake_warnings: Throttle,
    links: broadcast::Sender<LinkEvent>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    inbound: OnceLock<Arc<dyn Inbound>>,
    next_id: AtomicU64,
}

impl Transport {
    /// Listens on `listen` with `tls`; peers know this node by `identity`.
    pub async fn bind(
        listen: SocketAddr,
        identity: Identity,
        tls: ClusterTls,
    ) -> std::io::Result<(Arc<Self>, SocketAddr)> {
        Self::bind_with(listen, identity, Security::Tls(tls)).await
    }

    async fn bind_with(
        listen: SocketAddr,
        identity: Identity,
        security: Security,
    ) -> std::io::Result<(Arc<Self>, SocketAddr)> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let transport = Arc::new(Self::new(identity, security));
        let weak = Arc::downgrade(&transport);
        tokio::spawn(async move {
            loop {
                let (stream, remote) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        warn!(error = %err, "cluster accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(transport) = weak.upgrade() else { return };
                // Taken here, in accept order, so the excess is closed before it costs a task.
                let Ok(permit) = transport.handshakes.clone().try_acquire_owned() else {
                    if let Some(held_back) = transport.refused_warnings.due() {
                        warn!(%remote, held_back, limit = MAX_HANDSHAKES, "too many cluster handshakes in progress, closing connection");
                    }
                    drop(stream);
                    continue;
                };
                tokio::spawn(async move { transport.accept(stream, remote, permit).await });
            }
        });
        info!(%local, "cluster transport listening");
        Ok((transport, local))
    }

    /// A transport that does not listen (yet): `bind` wraps it with a listener.
    fn new(identity: Identity, security: Security) -> Self {
        Self {
            identity,
            security,
            handshakes: Arc::new(Semaphore::new(MAX_HANDSHAKES)),
            refused_warnings: Throttle::new(WARN_EVERY),
            failed_handshake_warnings: Throttle::new(WARN_EVERY),
            links: broadcast::channel(256).0,
            peers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            inbound: OnceLock::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// Sets who handles inbound frames; frames before that are answered with an error.
    pub fn set_inbound(&self, inbound: Arc<dyn Inbound>) {
        if self.inbound.set(inbound).is_err() {
            warn!("inbound handler set twice");
        }
    }

    pub fn advertised(&self) -> &str {
        &self.identity.advertise
    }

    /// Links coming up and going down, as they happen.
    pub fn link_events(&self) -> broadcast::Receiver<LinkEvent> {
        self.links.subscribe()
    }

    fn announce(&self, event: LinkEvent) {
        if self.links.send(event).is_err() {
            debug!(?event, "nobody follows the links");
        }
    }

    async fn accept(self: Arc<Self>, stream: TcpStream, remote: SocketAddr, permit: OwnedSemaphorePermit) {
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "cannot set nodelay");
        }
        let (link, hello) = match handshake::accept(&self.security, stream, &self.identity).await {
            Ok(accepted) => accepted,
            Err(err) => {
                match self.failed_handshake_warnings.due() {
                    Some(held_back) => warn!(%remote, error = %err, held_back, "cluster handshake refused"),
                    None => debug!(%remote, error = %err, "cluster handshake refused"),
                }
                return;
            }
        };
        drop(permit);
        let from = hello.from;
        let (peer, rx) = Peer::new(from.clone(), Some((hello.node, hello.incarnation)));
        {
            let mut peers = self.peers.lock().unwrap();
            let usable = peers.get(&from).is_some_and(|existing| !existing.is_dead());
            if !usable {
                peers.insert(from.clone(), peer.clone());
            }
        }
        debug!(peer = %from, "peer connected to us");
        self.announce(LinkEvent::Up { node: hello.node, incarnation: hello.incarnation });
        self.run(link, peer, rx).await;
    }

    /// The live connection to `addr`, dialling it if needed; fails fast while backing off.
    fn peer(self: &Arc<Self>, addr: &str) -> Result<Arc<Peer>, TransportError> {
        let mut peers = self.peers.lock().unwrap();
        if let Some(peer) = peers.get(addr).filter(|peer| !peer.is_dead()) {
            return Ok(peer.clone());
        }
        if let Some((until, _)) = self.backoff.lock().unwrap().get(addr) {
            if Instant::now() < *until {
                return Err(TransportError::Unreachable(addr.to_owned(), "backing off after a failure".to_owned()));
            }
        }
        let (peer, rx) = Peer::new(addr.to_owned(), None);
        peers.insert(addr.to_owned(), peer.clone());
        let transport = self.clone();
        let dialled = peer.clone();
        tokio::spawn(async move { transport.dial(dialled, rx).await });
        Ok(peer)
    }

    async fn dial(self: Arc<Self>, peer: Arc<Peer>, rx: mpsc::Receiver<Frame>) {
        match self.connect(&peer.addr).await {
            Ok((link, identity)) => {
                self.backoff.lock().unwrap().remove(&peer.addr);
                debug!(peer = %peer.addr, "connected to peer");
                *peer.identity.lock().unwrap() = Some(identity);
                self.announce(LinkEvent::Up { node: identity.0, incarnation: identity.1 });
                self.run(link, peer, rx).await;
            }
            Err(err) => {
                let mut backoff = self.backoff.lock().unwrap();
                let delay =
                    backoff.get(&peer.addr).map_or(Duration::from_millis(100), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                backoff.insert(peer.addr.clone(), (Instant::now() + delay, delay));
                drop(backoff);
                debug!(peer = %peer.addr, error = %err, "cannot reach peer");
                self.forget(&peer);
                // fail_all names the peer itself: pass only the reason.
                let reason = match err {
                    TransportError::Unreachable(_, reason) => reason,
                    other => other.to_string(),
                };
                peer.fail_all(&reason);
            }
        }
    }

    async fn connect(&self, addr: &str) -> Result<(Link, (NodeId, Incarnation)), TransportError> {
        let unreachable = |reason: String| TransportError::Unreachable(addr.to_owned(), reason);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connect timed out".to_owned()))?
            .map_err(|err| unreachable(err.to_string()))?;
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "cannot set nodelay");
        }
        handshake::connect(&self.security, stream, &self.identity)
            .await
            .map_err(|err| unreachable(format!("handshake: {err}")))
    }

    fn forget(&self, peer: &Arc<Peer>) {
        let mut peers = self.peers.lock().unwrap();
        if peers.get(&peer.addr).is_some_and(|current| Arc::ptr_eq(current, peer)) {
            peers.remove(&peer.addr);
        }
    }

    /// Pumps frames until the connection ends; then fails what was pending on it.
    async fn run(self: &Arc<Self>, link: Link, peer: Arc<Peer>, mut rx: mpsc::Receiver<Frame>) {
        let (mut reader, writer) = tokio::io::split(link);
        let writer_peer = peer.clone();
        let writer_task = tokio::spawn(async move {
            let mut writer = BufWriter::new(writer);
            while let Some(frame) = rx.recv().await {
                if let Err(err) = write_frame(&mut writer, &frame).await {
                    debug!(peer = %writer_peer.addr, error = %err, "peer write failed");
                    break;
                }
                if rx.is_empty() && writer.flush().await.is_err() {
                    break;
                }
            }
        });
        let reason = loop {
            match read_frame(&mut reader, MAX_FRAME_BYTES).await {
                Ok(frame) => {
                    if let Err(reason) = self.dispatch(&peer, frame).await {
                        break reason;
                    }
                }
                Err(err) => break err.to_string(),
            }
        };
        debug!(peer = %peer.addr, %reason, "peer connection ended");
        writer_task.abort();
        self.forget(&peer);
        peer.fail_all(&reason);
        let identity = *peer.identity.lock().unwrap();
        if let Some((node, _)) = identity {
            self.announce(LinkEvent::Down { node });
        }
    }

    async fn dispatch(&self, peer: &Arc<Peer>, frame: Frame) -> Result<(), String> {
        match frame {
            Frame::Request { id, service, payload } => {
                let Some(inbound) = self.inbound.get() else {
                    let response = Frame::Response { id, result: Err("node starting".to_owned()) };
                    return peer.tx.try_send(response).map_err(|err| err.to_string());
                };
                let reply = inbound.request(service, payload).await;
                let tx = peer.tx.clone();
                tokio::spawn(async move {
                    let result = reply.await;
                    if tx.send(Frame::Response { id, result }).await.is_err() {
                        debug!(id, "connection closed before the response");
                    }
                });
                Ok(())
            }
            Frame::Response { id, result } => {
                if let Some(reply) = peer.pending.lock().unwrap().remove(&id) {
                    let result = result.map_err(TransportError::Protocol);
                    if reply.send(result).is_err() {
                        debug!(id, "requester gave up before the response");
                    }
                }
                Ok(())
            }
            Frame::Message { service, payload } => {
                if let Some(inbound) = self.inbound.get() {
                    inbound.message(service, payload).await;
                }
                Ok(())
            }
            Frame::Hello { .. } | Frame::Welcome { .. } => Err("handshake frame after the handshake".to_owned()),
        }
    }

    /// Enqueues a request now (so requests keep their order) and returns its answer's receiver.
    pub fn request(
        self: &Arc<Self>,
        addr: &str,
        service: Service,
        payload: Vec<u8>,
    ) -> Result<oneshot::Receiver<Result<Vec<u8>, TransportError>>, TransportError> {
        let peer = self.peer(addr)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, receiver) = oneshot::channel();
        peer.pending.lock().unwrap().insert(id, reply);
        if let Err(err) = peer.tx.try_send(Frame::Request { id, service, payload }) {
            peer.pending.lock().unwrap().remove(&id);
            return Err(TransportError::Unreachable(addr.to_owned(), format!("queue: {err}")));
        }
        Ok(receiver)
    }

    /// Sends a request and waits for its answer at most `timeout`.
    pub async fn call(
        self: &Arc<Self>,
        addr: &str,
        service: Service,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let receiver = self.request(addr, service, payload)?;
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(TransportError::Unreachable(addr.to_owned(), "connection dropped".to_owned())),
            Err(_) => Err(TransportError::Timeout(addr.to_owned())),
        }
    }

    /// Enqueues a one-way message; fails fast if the peer is unreachable or saturated.
    pub fn send(self: &Arc<Self>, addr: &str, service: Service, payload: Vec<u8>) -> Result<(), TransportError> {
        let peer = self.peer(addr)?;
        peer.tx
            .try_send(Frame::Message { service, payload })
            .map_err(|err| TransportError::Unreachable(addr.to_owned(), format!("queue: {err}")))
    }
}

/// The membership layer's view of the transport.
pub struct MembershipRpc(pub Arc<Transport>);

#[async_trait]
impl PeerRpc for MembershipRpc {
    async fn call(&self, addr: &str, payload: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, TransportError> {
        self.0.call(addr, Service::Membership, payload, timeout).await
    }
}

#[cfg(test)]
mod tests;
