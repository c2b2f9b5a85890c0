//! The leader's decisions about members, I/O-free: who is dead, whether removing them is
//! safe, which learners to promote. The leader task feeds it ping answers and executes what it
//! returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;

/// When each member last answered the leader.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    last_answer: BTreeMap<NodeId, Instant>,
}

impl Liveness {
    /// Tracks exactly `members`: new ones get a full `dead_after` of grace from `now` (a new
    /// leader does not know when a member last answered its predecessor).
    pub(crate) fn track(&mut self, members: &BTreeSet<NodeId>, now: Instant) {
        self.last_answer.retain(|id, _| members.contains(id));
        for id in members {
            self.last_answer.entry(*id).or_insert(now);
        }
    }

    pub(crate) fn answered(&mut self, id: NodeId, now: Instant) {
        if let Some(last) = self.last_answer.get_mut(&id) {
            *last = now;
        }
    }

    /// Members that have not answered for `dead_after` or more.
    pub(crate) fn dead(&self, now: Instant, dead_after: Duration) -> BTreeSet<NodeId> {
        self.last_answer
            .iter()
            .filter(|(_, last)| now.duration_since(**last) >= dead_after)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn is_alive(&self, id: NodeId, now: Instant, dead_after: Duration) -> bool {
        self.last_answer.get(&id).is_some_and(|last| now.duration_since(*last) < dead_after)
    }

    /// Forgets everything (this node stopped leading).
    pub(crate) fn clear(&mut self) {
        self.last_answer.clear();
    }
}

/// What to do about dead members.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RemovalPlan {
    Nothing,
    /// Drop these members from raft and from the member set.
    Remove(BTreeSet<NodeId>),
    /// Too few voters answer to commit any change; removing now would only add an entry that
    /// cannot commit and block later changes.
    NoQuorum {
        alive_voters: usize,
        voters: usize,
    },
}

/// Decides the removal of `dead` members (never `leader` itself).
///
/// A membership change commits through joint consensus, which needs a majority of the current
/// voters; the new voters are all alive by construction.
pub(crate) fn plan_removal(voters: &BTreeSet<NodeId>, dead: &BTreeSet<NodeId>, leader: NodeId) -> RemovalPlan {
    let doomed: BTreeSet<NodeId> = dead.iter().copied().filter(|id| *id != leader).collect();
    if doomed.is_empty() {
        return RemovalPlan::Nothing;
    }
    let alive_voters = voters.iter().filter(|id| !doomed.contains(id)).count();
    if alive_voters < voters.len() / 2 + 1 {
        return RemovalPlan::NoQuorum { alive_voters, voters: voters.len() };
    }
    RemovalPlan::Remove(doomed)
}

/// Learners to promote so that there are up to `max_voters` voters.
pub(crate) fn plan_promotion(
    voters: &BTreeSet<NodeId>,
    promotable_learners: &BTreeSet<NodeId>,
    max_voters: usize,
) -> BTreeSet<NodeId> {
    let room = max_voters.saturating_sub(voters.len());
    promotable_learners.iter().filter(|id| !voters.contains(id)).take(room).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn members_die_after_the_grace_period_unless_they_answer() {
        let start = Instant::now();
        let dead_after = Duration::from_millis(500);
        let mut liveness = Liveness::default();
        liveness.track(&ids(&[2, 3]), start);
        assert!(liveness.dead(start + Duration::from_millis(499), dead_after).is_empty());
        liveness.answered(2, start + Duration::from_millis(400));
        assert_eq!(liveness.dead(start + Duration::from_millis(500), dead_after), ids(&[3]));
        assert!(liveness.is_alive(2, start + Duration::from_millis(800), dead_after));
        assert!(!liveness.is_alive(2, start + Duration::from_millis(900), dead_after));

        // A member that left is forgotten; one that comes back starts with a fresh grace.
        liveness.track(&ids(&[2]), start + Duration::from_millis(600));
        liveness.track(&ids(&[2, 3]), start + Duration::from_millis(700));
        assert_eq!(liveness.dead(start + Duration::from_millis(1000), dead_after), ids(&[2]));
        liveness.answered(42, start);
        liveness.clear();
        assert!(liveness.dead(start + Duration::from_secs(60), dead_after).is_empty());
    }

    #[test]
    fn removal_keeps_a_quorum_and_spares_the_leader() {
        let voters = ids(&[1, 2, 3]);
        assert_eq!(plan_removal(&voters, &ids(&[]), 1), RemovalPlan::Nothing);
        assert_eq!(plan_removal(&voters, &ids(&[1]), 1), RemovalPlan::Nothing);
        assert_eq!(plan_removal(&voters, &ids(&[3]), 1), RemovalPlan::Remove(ids(&[3])));
        assert_eq!(plan_removal(&voters, &ids(&[2, 3]), 1), RemovalPlan::NoQuorum { alive_voters: 1, voters: 3 });
        // Learners do not count towards the quorum.
        assert_eq!(plan_removal(&voters, &ids(&[3, 7]), 1), RemovalPlan::Remove(ids(&[3, 7])));
        let five = ids(&[1, 2, 3, 4, 5]);
        assert_eq!(plan_removal(&five, &ids(&[4, 5]), 1), RemovalPlan::Remove(ids(&[4, 5])));
        assert_eq!(plan_removal(&five, &ids(&[3, 4, 5]), 1), RemovalPlan::NoQuorum { alive_voters: 2, voters: 5 });
        assert_eq!(plan_removal(&ids(&[1, 2]), &ids(&[2]), 1), RemovalPlan::NoQuorum { alive_voters: 1, voters: 2 });
    }

    #[test]
    fn promotion_fills_voters_up_to_the_limit() {
        assert_eq!(plan_promotion(&ids(&[1, 2]), &ids(&[3, 4, 5, 6]), 5), ids(&[3, 4, 5]));
        assert_eq!(plan_promotion(&ids(&[1, 2, 3]), &ids(&[4]), 3), ids(&[]));
        assert_eq!(plan_promotion(&ids(&[1]), &ids(&[1, 2]), 5), ids(&[2]));
    }
}
