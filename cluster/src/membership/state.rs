//! The replicated state of the membership group and its I/O-free transitions.
//!
//! The raft log carries [`Command`]s; applying them to a [`MemberSet`] is a pure function, so
//! the epoch rules are unit-tested here without a runtime.

use std::collections::BTreeMap;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::{MemberInfo, NodeId};

openraft::declare_raft_types!(
    /// The raft types of the membership group: commands on the member set, nodes addressed by
    /// their cluster address, snapshots as bytes in memory (the state is tiny).
    pub(crate) TypeConfig:
        D = Command,
        R = CommandOutcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

/// A change of the member set, written to the raft log by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Adds a member, or replaces its addresses if they changed.
    AddMember(MemberInfo),
    /// Removes a member (left or unresponsive).
    RemoveMember(NodeId),
}

/// What applying one log entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct CommandOutcome {
    /// The epoch after the entry.
    pub epoch: u64,
    /// Whether the member set changed (and so the epoch was bumped).
    pub changed: bool,
}

/// The members and the epoch: the whole replicated state machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) struct MemberSet {
    /// Bumped by every command that changes `members`.
    pub epoch: u64,
    pub members: BTreeMap<NodeId, MemberInfo>,
}

impl MemberSet {
    /// Applies one command; commands that change nothing keep the epoch, so retries and
    /// repeated joins are harmless.
    pub(crate) fn apply(&mut self, command: &Command) -> CommandOutcome {
        let changed = match command {
            Command::AddMember(info) => {
                if self.members.get(&info.id) == Some(info) {
                    false
                } else {
                    self.members.insert(info.id, info.clone());
                    true
                }
            }
            Command::RemoveMember(id) => self.members.remove(id).is_some(),
        };
        if changed {
            self.epoch += 1;
        }
        CommandOutcome { epoch: self.epoch, changed }
    }

    pub(crate) fn unchanged(&self) -> CommandOutcome {
        CommandOutcome { epoch: self.epoch, changed: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: NodeId, port: u16) -> MemberInfo {
        MemberInfo {
            id,
            incarnation: 1,
            cluster_addr: format!("10.0.0.{id}:{port}"),
            client_addr: format!("10.0.0.{id}:8000"),
        }
    }

    #[test]
    fn add_bumps_the_epoch_once_per_new_member() {
        let mut set = MemberSet::default();
        assert_eq!(set.apply(&Command::AddMember(member(1, 9000))), CommandOutcome { epoch: 1, changed: true });
        assert_eq!(set.apply(&Command::AddMember(member(2, 9000))), CommandOutcome { epoch: 2, changed: true });
        assert_eq!(set.members.len(), 2);
        assert_eq!(set.epoch, 2);
    }

    #[test]
    fn re_adding_the_same_member_is_idempotent() {
        let mut set = MemberSet::default();
        set.apply(&Command::AddMember(member(1, 9000)));
        let again = set.apply(&Command::AddMember(member(1, 9000)));
        assert_eq!(again, CommandOutcome { epoch: 1, changed: false });
        assert_eq!(set.members.len(), 1);
    }

    #[test]
    fn an_address_change_replaces_the_member_and_bumps_the_epoch() {
        let mut set = MemberSet::default();
        set.apply(&Command::AddMember(member(1, 9000)));
        let moved = set.apply(&Command::AddMember(member(1, 9001)));
        assert_eq!(moved, CommandOutcome { epoch: 2, changed: true });
        assert_eq!(set.members.len(), 1);
        assert_eq!(set.members[&1].cluster_addr, "10.0.0.1:9001");
    }

    #[test]
    fn a_restart_with_a_new_incarnation_replaces_the_member_and_bumps_the_epoch() {
        let mut set = MemberSet::default();
        set.apply(&Command::AddMember(member(1, 9000)));
        let restarted = MemberInfo { incarnation: 2, ..member(1, 9000) };
        assert_eq!(set.apply(&Command::AddMember(restarted)), CommandOutcome { epoch: 2, changed: true });
        assert_eq!(set.members[&1].incarnation, 2);
    }

    #[test]
    fn remove_bumps_the_epoch_only_for_a_member() {
        let mut set = MemberSet::default();
        set.apply(&Command::AddMember(member(1, 9000)));
        set.apply(&Command::AddMember(member(2, 9000)));
        assert_eq!(set.apply(&Command::RemoveMember(2)), CommandOutcome { epoch: 3, changed: true });
        assert_eq!(set.apply(&Command::RemoveMember(2)), CommandOutcome { epoch: 3, changed: false });
        assert_eq!(set.apply(&Command::RemoveMember(42)), CommandOutcome { epoch: 3, changed: false });
        assert_eq!(set.members.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(set.unchanged(), CommandOutcome { epoch: 3, changed: false });
    }
}
