//! What membership nodes say to each other through [`crate::PeerRpc`], encoded with
//! [`crate::codec`] (postcard: plain externally tagged enums only).

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::state::TypeConfig;
use crate::{MemberInfo, NodeId};

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Admit `member`; a non-leader forwards it once to the leader (`forwarded` stops loops
    /// while two nodes disagree on who leads).
    Join {
        member: MemberInfo,
        forwarded: bool,
    },
    /// Remove member `id` now (graceful leave), forwarded like `Join`.
    Leave {
        id: NodeId,
        forwarded: bool,
    },
    /// A liveness probe: every node probes every other one each heartbeat.
    Ping {
        from: NodeId,
        /// The sender's membership epoch: a receiver behind it knows its view is stale.
        epoch: u64,
        /// Whether the sender believes it leads (a follower's "pinged by a leader" clock).
        leader: bool,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerResponse {
    AppendEntries(AppendEntriesResponse<NodeId>),
    Vote(VoteResponse<NodeId>),
    InstallSnapshot(InstallSnapshotResponse<NodeId>),
    Joined {
        leader: NodeId,
        epoch: u64,
    },
    Left {
        epoch: u64,
    },
    /// Answers a ping with the answering node's id (so a new node reusing a dead member's
    /// address does not keep the dead member alive), its incarnation and its epoch.
    Pong {
        id: NodeId,
        incarnation: crate::Incarnation,
        epoch: u64,
    },
    /// The request needs the leader and this node is not it (the leader, if known).
    NotLeader {
        leader: Option<NodeId>,
    },
    /// The request failed on the receiving node.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, Vote};

    use super::*;
    use crate::codec::{decode, encode};
    use crate::membership::state::Command;

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(3, 7), index)
    }

    #[test]
    fn raft_messages_survive_postcard() {
        let member = MemberInfo {
            id: 9,
            incarnation: 77,
            cluster_addr: "10.0.0.9:9000".into(),
            client_addr: "10.0.0.9:8000".into(),
        };
        let nodes = BTreeMap::from([(7, BasicNode::new("10.0.0.7:9000")), (9, BasicNode::new("10.0.0.9:9000"))]);
        let membership = Membership::new(vec![BTreeSet::from([7]), BTreeSet::from([7, 9])], nodes);
        let entries = vec![
            Entry::<TypeConfig> { log_id: log_id(1), payload: EntryPayload::Blank },
            Entry { log_id: log_id(2), payload: EntryPayload::Membership(membership) },
            Entry { log_id: log_id(3), payload: EntryPayload::Normal(Command::AddMember(member)) },
            Entry { log_id: log_id(4), payload: EntryPayload::Normal(Command::RemoveMember(9)) },
        ];
        let request = AppendEntriesRequest::<TypeConfig> {
            vote: Vote::new_committed(3, 7),
            prev_log_id: Some(log_id(0)),
            entries,
            leader_commit: Some(log_id(2)),
        };
        let bytes = encode(&PeerRequest::AppendEntries(request.clone())).unwrap();
        match decode::<PeerRequest>(&bytes).unwrap() {
            PeerRequest::AppendEntries(decoded) => {
                assert_eq!(decoded.vote, request.vote);
                assert_eq!(decoded.prev_log_id, request.prev_log_id);
                assert_eq!(decoded.leader_commit, request.leader_commit);
                assert!(decoded.entries == request.entries, "entries differ: {:?}", decoded.entries);
            }
            other => panic!("decoded as {other:?}"),
        }

        let response = PeerResponse::AppendEntries(AppendEntriesResponse::HigherVote(Vote::new(4, 9)));
        let decoded = decode::<PeerResponse>(&encode(&response).unwrap()).unwrap();
        assert!(
            matches!(decoded, PeerResponse::AppendEntries(AppendEntriesResponse::HigherVote(v)) if v == Vote::new(4, 9))
        );
        let response = PeerResponse::NotLeader { leader: Some(7) };
        let decoded = decode::<PeerResponse>(&encode(&response).unwrap()).unwrap();
        assert!(matches!(decoded, PeerResponse::NotLeader { leader: Some(7) }));
    }
}
