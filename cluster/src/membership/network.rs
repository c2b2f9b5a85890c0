//! openraft's network over [`PeerRpc`]: each raft RPC is one [`PeerRequest`] and one
//! [`PeerResponse`].
//!
//! Transport errors map onto openraft's errors so that replication behaves: an unreachable
//! peer (or one whose raft stopped) is [`Unreachable`], which makes openraft back off with
//! [`RaftNetwork::backoff`]; a timeout is [`Timeout`]; anything else is a [`NetworkError`].

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Timeout, Unreachable};
use openraft::network::{Backoff, RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{AnyError, BasicNode};

use super::protocol::{PeerRequest, PeerResponse};
use super::state::TypeConfig;
use crate::{codec, NodeId, PeerRpc, TransportError};

/// The longest pause openraft takes before retrying an unreachable peer.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Creates one [`PeerClient`] per replication target.
pub(crate) struct PeerNetwork {
    pub(crate) rpc: Arc<dyn PeerRpc>,
    pub(crate) node_id: NodeId,
    /// First pause after a peer became unreachable; doubles up to [`MAX_BACKOFF`].
    pub(crate) first_backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            rpc: Arc::clone(&self.rpc),
            node_id: self.node_id,
            target,
            addr: node.addr.clone(),
            first_backoff: self.first_backoff,
        }
    }
}

pub(crate) struct PeerClient {
    rpc: Arc<dyn PeerRpc>,
    node_id: NodeId,
    target: NodeId,
    addr: String,
    first_backoff: Duration,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn send<E: std::error::Error>(
        &self,
        request: PeerRequest,
        timeout: Duration,
        action: RPCTypes,
    ) -> RpcResult<PeerResponse, E> {
        let payload = codec::encode(&request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer = match self.rpc.call(&self.addr, payload, timeout).await {
            Ok(answer) => answer,
            Err(TransportError::Timeout(_)) => {
                let timeout = Timeout { action, id: self.node_id, target: self.target, timeout };
                return Err(RPCError::Timeout(timeout));
            }
            Err(error @ TransportError::Unreachable(..)) => {
                return Err(RPCError::Unreachable(Unreachable::new(&error)))
            }
            Err(error @ TransportError::Protocol(_)) => return Err(RPCError::Network(NetworkError::new(&error))),
        };
        match codec::decode::<PeerResponse>(&answer) {
            // The peer's raft has stopped or its storage failed: as good as gone, so back off.
            Ok(PeerResponse::Failed(reason)) => {
                let reason = AnyError::error(format!("peer {} failed: {reason}", self.addr));
                Err(RPCError::Unreachable(Unreachable::new(&reason)))
            }
            Ok(response) => Ok(response),
            Err(error) => Err(RPCError::Network(NetworkError::new(&error))),
        }
    }
}

fn unexpected<E: std::error::Error>(response: PeerResponse) -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&AnyError::error(format!("unexpected answer {response:?}"))))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self.send(PeerRequest::AppendEntries(rpc), option.hard_ttl(), RPCTypes::AppendEntries).await? {
            PeerResponse::AppendEntries(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self.send(PeerRequest::InstallSnapshot(rpc), option.hard_ttl(), RPCTypes::InstallSnapshot).await? {
            // The state fits in one chunk, so a refused chunk (out of order) cannot happen and a
            // failed transfer is simply retried from the start after a backoff.
            PeerResponse::InstallSnapshot(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        match self.send(PeerRequest::Vote(rpc), option.hard_ttl(), RPCTypes::Vote).await? {
            PeerResponse::Vote(response) => Ok(response),
            other => Err(unexpected(other)),
        }
    }

    fn backoff(&self) -> Backoff {
        let first = self.first_backoff;
        Backoff::new((0u32..).map(move |attempt| first.saturating_mul(1 << attempt.min(10)).min(MAX_BACKOFF)))
    }
}
