//! Node-to-node transport: one TCP connection per pair of nodes (whichever dialled first),
//! carrying length-prefixed postcard frames both ways: requests with ids and their
//! responses, and one-way messages, for two services (membership and actors).
//!
//! Peers authenticate with a shared cluster secret: the dialler sends an HMAC-SHA256 of its
//! address, the time and a nonce; the acceptor checks it and answers with an HMAC of the
//! nonce. Frames are not encrypted: run the cluster port on a private network.
//!
//! A peer that cannot be reached fails fast for a backoff period (doubling to 2 s), so a
//! sender re-resolves the owner after the next membership epoch instead of waiting.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::codec::{decode, encode};
use crate::{Incarnation, NodeId, PeerRpc, TransportError};

/// Largest frame accepted; a larger length prefix is a protocol error.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Frames queued for one peer before sends fail.
const PEER_QUEUE: usize = 65_536;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const MAX_CLOCK_SKEW_SECS: u64 = 120;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Service {
    Membership,
    Actors,
}

#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Hello { from: String, node: NodeId, incarnation: Incarnation, unix_secs: u64, nonce: Vec<u8>, mac: Vec<u8> },
    Welcome { node: NodeId, incarnation: Incarnation, mac: Vec<u8> },
    Request { id: u64, service: Service, payload: Vec<u8> },
    Response { id: u64, result: Result<Vec<u8>, String> },
    Message { service: Service, payload: Vec<u8> },
}

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

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<Vec<u8>, TransportError>>>>;

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

struct Peer {
    addr: String,
    tx: mpsc::Sender<Frame>,
    pending: Pending,
    dead: AtomicBool,
    /// The peer's node and incarnation, once the handshake told them.
    identity: Mutex<Option<(NodeId, Incarnation)>>,
}

impl Peer {
    fn fail_all(&self, reason: &str) {
        self.dead.store(true, Ordering::SeqCst);
        let pending: Vec<_> = self.pending.lock().unwrap().drain().collect();
        for (_, reply) in pending {
            if reply.send(Err(TransportError::Unreachable(self.addr.clone(), reason.to_owned()))).is_err() {
                debug!(peer = %self.addr, "requester already gone");
            }
        }
    }
}

pub struct Transport {
    identity: Identity,
    secret: Vec<u8>,
    links: broadcast::Sender<LinkEvent>,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
    backoff: Mutex<HashMap<String, (Instant, Duration)>>,
    inbound: OnceLock<Arc<dyn Inbound>>,
    next_id: AtomicU64,
}

fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

/// HMAC-SHA256 over length-prefixed parts (so `("ab","c")` and `("a","bc")` differ).
fn keyed(secret: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("hmac takes keys of any size");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    keyed(secret, parts).finalize().into_bytes().to_vec()
}

/// Constant-time comparison of `tag` with the HMAC of `parts`.
fn verify(secret: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    keyed(secret, parts).verify_slice(tag).is_ok()
}

async fn write_frame<W: AsyncWriteExt + Unpin>(writer: &mut W, frame: &Frame) -> Result<(), TransportError> {
    let bytes = encode(frame).map_err(|err| TransportError::Protocol(err.to_string()))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(TransportError::Protocol(format!("frame of {} bytes is too large", bytes.len())));
    }
    let io = |err: std::io::Error| TransportError::Protocol(err.to_string());
    writer.write_u32(bytes.len() as u32).await.map_err(io)?;
    writer.write_all(&bytes).await.map_err(io)
}

async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> Result<Frame, TransportError> {
    let io = |err: std::io::Error| TransportError::Protocol(err.to_string());
    let len = reader.read_u32().await.map_err(io)? as usize;
    if len > MAX_FRAME_BYTES {
        return Err(TransportError::Protocol(format!("frame length {len} exceeds {MAX_FRAME_BYTES}")));
    }
    let mut bytes = vec![0; len];
    reader.read_exact(&mut bytes).await.map_err(io)?;
    decode(&bytes).map_err(|err| TransportError::Protocol(format!("undecodable frame: {err}")))
}

impl Transport {
    /// Listens on `listen`; peers know this node by `identity`.
    pub async fn bind(
        listen: SocketAddr,
        identity: Identity,
        secret: &str,
    ) -> std::io::Result<(Arc<Self>, SocketAddr)> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let transport = Arc::new(Self {
            identity,
            secret: secret.as_bytes().to_vec(),
            links: broadcast::channel(256).0,
            peers: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            inbound: OnceLock::new(),
            next_id: AtomicU64::new(1),
        });
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
                tokio::spawn(async move { transport.accept(stream, remote).await });
            }
        });
        info!(%local, "cluster transport listening");
        Ok((transport, local))
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

    async fn accept(self: Arc<Self>, mut stream: TcpStream, remote: SocketAddr) {
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "cannot set nodelay");
        }
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut stream)).await;
        let (from, identity, nonce) = match hello {
            Ok(Ok(Frame::Hello { from, node, incarnation, unix_secs: sent, nonce, mac: tag })) => {
                let fresh = unix_secs().abs_diff(sent) <= MAX_CLOCK_SKEW_SECS;
                let parts: [&[u8]; 6] = [
                    b"hello",
                    from.as_bytes(),
                    &node.to_be_bytes(),
                    &incarnation.to_be_bytes(),
                    &sent.to_be_bytes(),
                    &nonce,
                ];
                if !fresh || !verify(&self.secret, &parts, &tag) {
                    warn!(%remote, %from, "peer failed authentication, dropping connection");
                    return;
                }
                (from, (node, incarnation), nonce)
            }
            Ok(Ok(_)) | Ok(Err(_)) | Err(_) => {
                warn!(%remote, "bad or missing handshake, dropping connection");
                return;
            }
        };
        let (node, incarnation) = (self.identity.node, self.identity.incarnation);
        let welcome = Frame::Welcome {
            node,
            incarnation,
            mac: mac(&self.secret, &[b"welcome", &nonce, &node.to_be_bytes(), &incarnation.to_be_bytes()]),
        };
        if write_frame(&mut stream, &welcome).await.is_err() {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let peer = Arc::new(Peer {
            addr: from.clone(),
            tx,
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            identity: Mutex::new(Some(identity)),
        });
        {
            let mut peers = self.peers.lock().unwrap();
            let usable = peers.get(&from).is_some_and(|existing| !existing.dead.load(Ordering::SeqCst));
            if !usable {
                peers.insert(from.clone(), peer.clone());
            }
        }
        debug!(peer = %from, "peer connected to us");
        self.announce(LinkEvent::Up { node: identity.0, incarnation: identity.1 });
        self.run(stream, peer, rx).await;
    }

    /// The live connection to `addr`, dialling it if needed; fails fast while backing off.
    fn peer(self: &Arc<Self>, addr: &str) -> Result<Arc<Peer>, TransportError> {
        let mut peers = self.peers.lock().unwrap();
        if let Some(peer) = peers.get(addr).filter(|peer| !peer.dead.load(Ordering::SeqCst)) {
            return Ok(peer.clone());
        }
        if let Some((until, _)) = self.backoff.lock().unwrap().get(addr) {
            if Instant::now() < *until {
                return Err(TransportError::Unreachable(addr.to_owned(), "backing off after a failure".to_owned()));
            }
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        let peer = Arc::new(Peer {
            addr: addr.to_owned(),
            tx,
            pending: Mutex::new(HashMap::new()),
            dead: AtomicBool::new(false),
            identity: Mutex::new(None),
        });
        peers.insert(addr.to_owned(), peer.clone());
        let transport = self.clone();
        let dialled = peer.clone();
        tokio::spawn(async move { transport.dial(dialled, rx).await });
        Ok(peer)
    }

    async fn dial(self: Arc<Self>, peer: Arc<Peer>, rx: mpsc::Receiver<Frame>) {
        match self.connect(&peer.addr).await {
            Ok((stream, identity)) => {
                self.backoff.lock().unwrap().remove(&peer.addr);
                debug!(peer = %peer.addr, "connected to peer");
                *peer.identity.lock().unwrap() = Some(identity);
                self.announce(LinkEvent::Up { node: identity.0, incarnation: identity.1 });
                self.run(stream, peer, rx).await;
            }
            Err(err) => {
                let mut backoff = self.backoff.lock().unwrap();
                let delay =
                    backoff.get(&peer.addr).map_or(Duration::from_millis(100), |(_, d)| (*d * 2).min(MAX_BACKOFF));
                backoff.insert(peer.addr.clone(), (Instant::now() + delay, delay));
                drop(backoff);
                debug!(peer = %peer.addr, error = %err, "cannot reach peer");
                self.forget(&peer);
                peer.fail_all(&err.to_string());
            }
        }
    }

    async fn connect(&self, addr: &str) -> Result<(TcpStream, (NodeId, Incarnation)), TransportError> {
        let unreachable = |reason: String| TransportError::Unreachable(addr.to_owned(), reason);
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable("connect timed out".to_owned()))?
            .map_err(|err| unreachable(err.to_string()))?;
        if let Err(err) = stream.set_nodelay(true) {
            debug!(error = %err, "cannot set nodelay");
        }
        let nonce: [u8; 16] = rand::random();
        let sent = unix_secs();
        let me = &self.identity;
        let parts: [&[u8]; 6] = [
            b"hello",
            me.advertise.as_bytes(),
            &me.node.to_be_bytes(),
            &me.incarnation.to_be_bytes(),
            &sent.to_be_bytes(),
            &nonce,
        ];
        let hello = Frame::Hello {
            from: me.advertise.clone(),
            node: me.node,
            incarnation: me.incarnation,
            unix_secs: sent,
            nonce: nonce.to_vec(),
            mac: mac(&self.secret, &parts),
        };
        write_frame(&mut stream, &hello).await?;
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut stream)).await {
            Ok(Ok(Frame::Welcome { node, incarnation, mac: tag }))
                if verify(
                    &self.secret,
                    &[b"welcome", &nonce, &node.to_be_bytes(), &incarnation.to_be_bytes()],
                    &tag,
                ) =>
            {
                Ok((stream, (node, incarnation)))
            }
            Ok(Ok(_)) => Err(TransportError::Protocol(format!("{addr} failed authentication"))),
            Ok(Err(err)) => Err(unreachable(format!("handshake: {err}"))),
            Err(_) => Err(unreachable("handshake timed out".to_owned())),
        }
    }

    fn forget(&self, peer: &Arc<Peer>) {
        let mut peers = self.peers.lock().unwrap();
        if peers.get(&peer.addr).is_some_and(|current| Arc::ptr_eq(current, peer)) {
            peers.remove(&peer.addr);
        }
    }

    /// Pumps frames until the connection ends; then fails what was pending on it.
    async fn run(self: &Arc<Self>, stream: TcpStream, peer: Arc<Peer>, mut rx: mpsc::Receiver<Frame>) {
        let (mut reader, writer) = stream.into_split();
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
            match read_frame(&mut reader).await {
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
