//! Cluster mode: joins the raft membership, places actors by rendezvous hashing over the
//! members of the current epoch, and carries actor requests and deliveries between nodes.
//!
//! What the actors see is [`actors::routing::Cluster`]; this module implements it over
//! [`cluster::transport::Transport`] and [`cluster::membership::Membership`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actors::protocol::RequestError;
use actors::routing::{ActorKey, AnswerReceiver, Cluster, NodeId, RemoteAnswer, RemoteRequest};
use actors::session::Delivery;
use actors::Directory;
use async_trait::async_trait;
use cluster::codec::{decode, encode};
use cluster::membership::{Membership, MembershipConfig};
use cluster::transport::{Inbound, MembershipRpc, Reply, Service, Transport};
use cluster::{placement, ClusterView};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tracing::{debug, warn};
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
    /// Shared secret that authenticates peers (`CLUSTER_SECRET`).
    pub secret: String,
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
    Deliver { session_ids: Vec<Uuid>, channel_id: Option<Uuid>, seq: Option<i64>, text: String, resubscribe: bool },
}

/// The cluster as the actors see it.
pub struct NodeCluster {
    node_id: NodeId,
    transport: Arc<Transport>,
    membership: Arc<Membership>,
    view: watch::Receiver<ClusterView>,
    epochs: watch::Sender<u64>,
}

impl NodeCluster {
    /// Binds the transport and joins (or bootstraps) the membership.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<(Arc<NodeCluster>, Arc<ClusterInbound>)> {
        let (transport, _local) = Transport::bind(config.listen, config.advertise.clone(), &config.secret).await?;
        let inbound = Arc::new(ClusterInbound { membership: OnceLock::new(), directory: OnceLock::new() });
        transport.set_inbound(inbound.clone());
        let membership_config = MembershipConfig {
            cluster_addr: config.advertise.clone(),
            client_addr: config.client_advertise.clone(),
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
        let cluster = Arc::new(NodeCluster { node_id: membership.node_id(), transport, membership, view, epochs });
        cluster.follow_epochs();
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

    /// Whether this node is in the member set of its current view.
    pub fn is_member(&self) -> bool {
        self.view.borrow().members.contains_key(&self.node_id)
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

    fn owner(&self, key: ActorKey) -> Option<NodeId> {
        let view = self.view.borrow();
        placement::owner(&key.placement_key(), view.members.keys().copied())
    }

    fn request(&self, node: NodeId, request: RemoteRequest) -> Result<AnswerReceiver, RequestError> {
        let addr = self.addr_of(node).ok_or_else(RequestError::unavailable)?;
        let payload = encode(&ActorWire::Request(request)).map_err(|err| {
            warn!(error = %err, "cannot encode an actor request");
            RequestError::internal()
        })?;
        let receiver = self.transport.request(&addr, Service::Actors, payload).map_err(|err| {
            debug!(node, error = %err, "owner unreachable");
            RequestError::unavailable()
        })?;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let answer = match receiver.await {
                Ok(Ok(bytes)) => decode::<Result<RemoteAnswer, RequestError>>(&bytes).unwrap_or_else(|err| {
                    warn!(error = %err, "undecodable actor answer");
                    Err(RequestError::internal())
                }),
                Ok(Err(err)) => {
                    debug!(node, error = %err, "actor request failed in transit");
                    Err(RequestError::unavailable())
                }
                Err(_) => Err(RequestError::unavailable()),
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
            channel_id: delivery.channel_id,
            seq: delivery.seq,
            text: delivery.text.to_string(),
            resubscribe: delivery.resubscribe,
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

    fn members(&self) -> Vec<NodeId> {
        self.view.borrow().members.keys().copied().collect()
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

fn encoded_error(err: RequestError) -> Result<Vec<u8>, String> {
    encode(&Err::<RemoteAnswer, RequestError>(err)).map_err(|err| err.to_string())
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
                    return Box::pin(async { encoded_error(RequestError::unavailable()) });
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
            (Service::Actors, Ok(ActorWire::Deliver { session_ids, channel_id, seq, text, resubscribe })) => {
                let delivery = Delivery { channel_id, seq, text: Arc::from(text), resubscribe };
                directory.deliver_local(&session_ids, delivery);
            }
            (_, Ok(_)) => warn!("unexpected one-way message"),
            (_, Err(err)) => warn!(error = %err, "undecodable one-way message"),
        }
    }
}
