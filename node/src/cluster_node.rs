//! Cluster mode: joins the raft membership, places actors by rendezvous hashing over the
//! members of the current epoch, and carries actor requests and deliveries between nodes.
//!
//! What the actors see is [`actors::routing::Cluster`]; this module implements it over
//! [`cluster::transport::Transport`] and [`cluster::membership::Membership`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actors::cluster::{rand_incarnation, AnswerReceiver, Cluster, PeerEvent};
use actors::model::FrameText;
use actors::model::{ActorKey, Delivery, DeliveryKind, Incarnation, NodeId, RequestError};
use actors::routing::{RemoteAnswer, RemoteRequest, RouteError};
use actors::Directory;
use async_trait::async_trait;
use cluster::codec::{decode, encode};
use cluster::membership::{node_id_in, Membership, MembershipConfig};
use cluster::transport::{
    ClusterTls, Identity, Inbound, LinkEvent, MembershipRpc, Reply, Service, TlsFiles, Transport,
};
use cluster::{placement, ClusterView};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot, watch};
use tracing::{debug, info, warn};
use uuid::Uuid;

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where the transport listens (`CLUSTER_ADDR`).
    pub listen: SocketAddr,
    /// Where peers reach this node (`CLUSTER_ADVERTISE`, default `listen`).
    pub advertise: String,
    /// Where clients reach this node (`CLIENT_ADVERTISE`, default the bind address).
    pub client_advertise: String,
    /// Cluster addresses to join through (`SEED_NODES` or `--join`); empty bootstraps.
    pub seeds: Vec<String>,
    /// Shared secret the cluster CA is derived from (`CLUSTER_SECRET`), unless `tls_files` are given.
    pub secret: String,
    /// Operator-made CA, certificate and key (`CLUSTER_TLS_CA`, `CLUSTER_TLS_CERT`, `CLUSTER_TLS_KEY`).
    pub tls_files: Option<TlsFiles>,
    /// The name peers' certificates must carry (`CLUSTER_TLS_SERVER_NAME`, with `tls_files` only).
    pub tls_server_name: String,
    /// Raft state and the node id live here (`DATA_DIR`).
    pub data_dir: PathBuf,
    pub heartbeat: Duration,
    pub election_timeout: (Duration, Duration),
    /// A member silent this long is removed by the leader (`DEAD_AFTER_MS`).
    pub dead_after: Duration,
    pub max_voters: usize,
}

/// Actor traffic between nodes.
#[derive(Debug, Serialize, Deserialize)]
enum ActorWire {
    Request(RemoteRequest),
    Deliver { session_ids: Vec<Uuid>, kind: DeliveryKind, text: String, from: NodeId },
}

/// The cluster port's TLS: the operator's PEM files, or certificates derived from the secret.
async fn cluster_tls(config: &ClusterConfig) -> anyhow::Result<ClusterTls> {
    if config.tls_files.is_none() && config.secret == crate::config::DEV_CLUSTER_SECRET {
        warn!("CLUSTER_SECRET is not set: using the development secret, never do this in production");
    }
    let (files, server_name, secret) =
        (config.tls_files.clone(), config.tls_server_name.clone(), config.secret.clone());
    // Reading files and signing certificates block.
    let tls = tokio::task::spawn_blocking(move || match files {
        Some(files) => ClusterTls::from_files(&files, &server_name),
        None => ClusterTls::from_secret(&secret),
    })
    .await??;
    Ok(tls)
}

/// The cluster as the actors see it.
pub struct NodeCluster {
    node_id: NodeId,
    incarnation: Incarnation,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    view: watch::Receiver<ClusterView>,
    epochs: watch::Sender<u64>,
    peers: broadcast::Sender<PeerEvent>,
}

impl NodeCluster {
    /// Binds the transport and joins (or bootstraps) the membership.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<(Arc<NodeCluster>, Arc<ClusterInbound>)> {
        let data_dir = config.data_dir.clone();
        let node_id = tokio::task::spawn_blocking(move || node_id_in(&data_dir)).await??;
        // A fresh incarnation per process: peers tell this run from the one before.
        let incarnation = rand_incarnation();
        let identity = Identity { node: node_id, incarnation, advertise: config.advertise.clone() };
        let (transport, _local) = Transport::bind(config.listen, identity, cluster_tls(config).await?).await?;
        let inbound = Arc::new(ClusterInbound { membership: OnceLock::new(), directory: OnceLock::new() });
        transport.set_inbound(inbound.clone());
        let membership_config = MembershipConfig {
            cluster_addr: config.advertise.clone(),
            client_addr: config.client_advertise.clone(),
            incarnation,
            data_dir: config.data_dir.clone(),
            seeds: config.seeds.clone(),
            heartbeat: config.heartbeat,
            election_timeout: config.election_timeout,
            dead_after: config.dead_after,
            max_voters: config.max_voters,
        };
        let membership = Membership::start(membership_config, Arc::new(MembershipRpc(transport.clone()))).await?;
        if inbound.membership.set(membership.clone()).is_err() {
            warn!("membership set twice");
        }
        let view = membership.view();
        let (epochs, _) = watch::channel(view.borrow().epoch);
        let cluster = Arc::new(NodeCluster {
            node_id: membership.node_id(),
            incarnation,
            transport,
            membership,
            view,
            epochs,
            peers: broadcast::channel(256).0,
        });
        cluster.follow_epochs();
        cluster.follow_links();
        Ok((cluster, inbound))
    }

    pub fn membership(&self) -> &Arc<Membership> {
        &self.membership
    }

    /// Waits until this node is a member of a view (joined), at most `timeout`.
    pub async fn joined(&self, timeout: Duration) -> bool {
        let mut view = self.view.clone();
        let node_id = self.node_id;
        let joined = async move { view.wait_for(|view| view.members.contains_key(&node_id)).await.is_ok() };
        tokio::time::timeout(timeout, joined).await.unwrap_or(false)
    }

    fn follow_epochs(self: &Arc<Self>) {
        let mut view = self.view.clone();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            while view.changed().await.is_ok() {
                let epoch = view.borrow_and_update().epoch;
                let Some(cluster) = weak.upgrade() else { return };
                cluster.epochs.send_if_modified(|current| {
                    let changed = *current != epoch;
                    *current = epoch;
                    changed
                });
            }
        });
    }

    /// Turns the transport's lost links into the actors' peer events.
    fn follow_links(self: &Arc<Self>) {
        let mut links = self.transport.link_events();
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = match links.recv().await {
                    Ok(event) => event,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        warn!(missed, "link events lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let Some(cluster) = weak.upgrade() else { return };
                match event {
                    LinkEvent::Down { node } => {
                        debug!(node, "link to peer lost");
                        if cluster.peers.send(PeerEvent::LinkLost(node)).is_err() {
                            debug!("nobody follows peer events");
                        }
                    }
                    LinkEvent::Up { node, incarnation } => {
                        let known = cluster.view.borrow().members.get(&node).map(|member| member.incarnation);
                        if known.is_some_and(|known| known != incarnation) {
                            info!(node, incarnation, "a peer restarted; its new run rejoins the membership");
                        }
                    }
                }
            }
        });
    }

    /// Whether this node is in the member set of its current view.
    pub fn is_member(&self) -> bool {
        self.view.borrow().members.contains_key(&self.node_id)
    }

    /// Where clients reach each member (`CLIENT_ADVERTISE`), as `http://host:port` URLs.
    pub fn client_addresses(&self) -> Vec<String> {
        self.view.borrow().members.values().map(|member| format!("http://{}", member.client_addr)).collect()
    }

    /// The owner of a raw placement key such as `channel:<uuid>`.
    pub fn owner_of_key(&self, key: &str) -> Option<NodeId> {
        let view = self.view.borrow();
        placement::owner(key, view.members.keys().copied())
    }

    fn addr_of(&self, node: NodeId) -> Option<String> {
        self.view.borrow().members.get(&node).map(|member| member.cluster_addr.clone())
    }
}

impl Cluster for NodeCluster {
    fn this_node(&self) -> NodeId {
        self.node_id
    }

    fn incarnation(&self) -> Incarnation {
        self.incarnation
    }

    fn owner(&self, key: ActorKey) -> Option<NodeId> {
        let view = self.view.borrow();
        placement::owner(&key.placement_key(), view.members.keys().copied())
    }

    fn serving(&self) -> bool {
        self.membership.serving()
    }

    fn epoch(&self) -> u64 {
        self.view.borrow().epoch
    }

    fn request(&self, node: NodeId, request: RemoteRequest) -> Result<AnswerReceiver, RouteError> {
        let addr = self.addr_of(node).ok_or(RouteError::Unreachable)?;
        let payload = encode(&ActorWire::Request(request)).map_err(|err| {
            warn!(error = %err, "cannot encode an actor request");
            RouteError::Request(RequestError::internal())
        })?;
        let receiver = self.transport.request(&addr, Service::Actors, payload).map_err(|err| {
            debug!(node, error = %err, "owner unreachable");
            RouteError::Unreachable
        })?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let answer = match receiver.await {
                Ok(Ok(bytes)) => decode::<Result<RemoteAnswer, RouteError>>(&bytes).unwrap_or_else(|err| {
                    warn!(error = %err, "undecodable actor answer");
                    Err(RouteError::Request(RequestError::internal()))
                }),
                Ok(Err(err)) => {
                    debug!(node, error = %err, "actor request failed in transit");
                    Err(RouteError::Unreachable)
                }
                Err(_) => Err(RouteError::Unreachable),
            };
            if tx.send(answer).is_err() {
                debug!("requester gave up");
            }
        });
        Ok(rx)
    }

    fn deliver(&self, node: NodeId, session_ids: Vec<Uuid>, delivery: Delivery) -> bool {
        let Some(addr) = self.addr_of(node) else { return false };
        let wire = ActorWire::Deliver {
            session_ids,
            kind: delivery.kind,
            text: delivery.text.to_string(),
            from: delivery.from,
        };
        match encode(&wire) {
            Ok(payload) => self.transport.send(&addr, Service::Actors, payload).is_ok(),
            Err(err) => {
                warn!(error = %err, "cannot encode a delivery");
                false
            }
        }
    }

    fn epochs(&self) -> watch::Receiver<u64> {
        self.epochs.subscribe()
    }

    fn members(&self) -> BTreeMap<NodeId, Incarnation> {
        self.view.borrow().members.values().map(|member| (member.id, member.incarnation)).collect()
    }

    fn peer_events(&self) -> broadcast::Receiver<PeerEvent> {
        self.peers.subscribe()
    }
}

/// Frames from peers: membership requests go to raft, actor traffic to the directory.
pub struct ClusterInbound {
    membership: OnceLock<Arc<Membership>>,
    directory: OnceLock<Directory>,
}

impl ClusterInbound {
    pub fn set_directory(&self, directory: Directory) {
        if self.directory.set(directory).is_err() {
            warn!("directory set twice");
        }
    }
}

fn encoded_error(err: RouteError) -> Result<Vec<u8>, String> {
    encode(&Err::<RemoteAnswer, RouteError>(err)).map_err(|err| err.to_string())
}

#[async_trait]
impl Inbound for ClusterInbound {
    async fn request(&self, service: Service, payload: Vec<u8>) -> Reply {
        match service {
            Service::Membership => match self.membership.get() {
                Some(membership) => {
                    let membership = membership.clone();
                    Box::pin(async move { Ok(membership.handle(payload).await) })
                }
                None => Box::pin(async { Err("membership starting".to_owned()) }),
            },
            Service::Actors => {
                let Some(directory) = self.directory.get() else {
                    return Box::pin(async { encoded_error(RouteError::NotOwner) });
                };
                let request = match decode::<ActorWire>(&payload) {
                    Ok(ActorWire::Request(request)) => request,
                    Ok(ActorWire::Deliver { .. }) => {
                        return Box::pin(async { Err("a delivery is not a request".to_owned()) })
                    }
                    Err(err) => {
                        let reason = format!("undecodable actor request: {err}");
                        return Box::pin(async move { Err(reason) });
                    }
                };
                // Hand the request to the actor now, in arrival order; answer later.
                match directory.serve_remote(request).await {
                    Ok(pending) => Box::pin(async move {
                        let answer = pending.await;
                        encode(&answer).map_err(|err| err.to_string())
                    }),
                    Err(err) => Box::pin(async move { encoded_error(err) }),
                }
            }
        }
    }

    async fn message(&self, service: Service, payload: Vec<u8>) {
        let Some(directory) = self.directory.get() else { return };
        match (service, decode::<ActorWire>(&payload)) {
            (Service::Actors, Ok(ActorWire::Deliver { session_ids, kind, text, from })) => {
                let delivery = Delivery::new(kind, FrameText::from(text), from);
                directory.deliver_local(&session_ids, &delivery);
            }
            (_, Ok(_)) => warn!("unexpected one-way message"),
            (_, Err(err)) => warn!(error = %err, "undecodable one-way message"),
        }
    }
}
