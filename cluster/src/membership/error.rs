//! Membership errors: fatal ones (the node cannot take part any more) apart from per-request
//! ones (retry, or ask another node).

use std::path::PathBuf;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::BasicNode;

use crate::{NodeId, TransportError};

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Fatal: the data folder cannot be read or written.
    #[error("membership storage failed at {path}: {source}")]
    Storage { path: PathBuf, source: std::io::Error },
    /// Fatal: the settings are unusable.
    #[error("invalid membership configuration: {0}")]
    Config(String),
    /// Fatal: raft stopped (after a storage failure or a shutdown).
    #[error("raft stopped: {0}")]
    Stopped(String),
    /// Per request: this node is not the leader; `leader` is who is, if known.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// Per request: raft or the leader refused the request.
    #[error("request rejected: {0}")]
    Rejected(String),
    /// Per request: the peer could not be reached.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Per request: no answer within the bound.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl MembershipError {
    /// Whether the node should stop rather than retry.
    pub fn is_fatal(&self) -> bool {
        matches!(self, MembershipError::Storage { .. } | MembershipError::Config(_) | MembershipError::Stopped(_))
    }
}

impl From<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>> for MembershipError {
    fn from(error: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        match error {
            RaftError::Fatal(fatal) => MembershipError::Stopped(fatal.to_string()),
            RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                MembershipError::NotLeader { leader: forward.leader_id }
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(change)) => {
                MembershipError::Rejected(change.to_string())
            }
        }
    }
}
