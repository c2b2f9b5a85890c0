//! Decisions about members, I/O-free: who is dead, whether removing them is safe, which
//! learners to promote, and whether this node holds an ownership lease. Every node probes
//! every other one and feeds the answers in; the leader acts on the same table, so a new
//! leader knows at once who has been silent (liveness does not restart with the leader).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::NodeId;

/// What this node knows of one other member.
#[derive(Debug, Clone, Copy)]
struct Heard {
    /// Since when the member is tracked: its grace period starts here.
    since: Instant,
    /// The last answer (or probe) from it, and the membership epoch it was at.
    last: Option<(Instant, u64)>,
}

impl Heard {
    /// When it was last heard from, or when its grace started.
    fn alive_at(&self) -> Instant {
        self.last.map_or(self.since, |(at, _)| at.max(self.since))
    }
}

/// When each member was last heard from, as this node probes them.
#[derive(Debug, Default)]
pub(crate) struct Liveness {
    members: BTreeMap<NodeId, Heard>,
}

impl Liveness {
    /// Tracks exactly `members`: new ones get a full `dead_after` of grace from `now`.
    pub(crate) fn track(&mut self, members: &BTreeSet<NodeId>, now: Instant) {
        self.members.retain(|id, _| members.contains(id));
        for id in members {
            self.members.entry(*id).or_insert(Heard { since: now, last: None });
        }
    }

    /// `id` answered (or probed this node) at `now`, being at membership `epoch`.
    pub(crate) fn answered(&mut self, id: NodeId, epoch: u64, now: Instant) {
        if let Some(heard) = self.members.get_mut(&id) {
            heard.last = Some((now, epoch));
        }
    }

    /// Members that have not been heard from for `dead_after` or more.
    pub(crate) fn dead(&self, now: Instant, dead_after: Duration) -> BTreeSet<NodeId> {
        self.members
            .iter()
            .filter(|(_, heard)| now.duration_since(heard.alive_at()) >= dead_after)
            .map(|(id, _)| *id)
            .collect()
    }

    pub(crate) fn is_alive(&self, id: NodeId, now: Instant, dead_after: Duration) -> bool {
        self.members.get(&id).is_some_and(|heard| now.duration_since(heard.alive_at()) < dead_after)
    }

    /// Whether `me` holds an ownership lease at `now`: a majority of `voters` (counting `me`
    /// if it is one) was heard from within `lease`, and none heard within it was at a later
    /// epoch than `my_epoch` (which would mean this node's view is stale: it may have been
    /// removed while paused or cut off, and its actors already live elsewhere).
    ///
    /// The leader removes a member only after not hearing from it for `dead_after`; with
    /// `lease < dead_after`, a member cut off from the others stops acting as an owner before
    /// the others give its actors to someone else.
    pub(crate) fn holds_lease(
        &self,
        me: NodeId,
        voters: &BTreeSet<NodeId>,
        my_epoch: u64,
        now: Instant,
        lease: Duration,
    ) -> bool {
        let recent = |heard: &Heard| heard.last.filter(|(at, _)| now.duration_since(*at) < lease);
        if self.members.values().filter_map(recent).any(|(_, epoch)| epoch > my_epoch) {
            return false;
        }
        let heard_voters =
            voters.iter().filter(|id| **id == me || self.members.get(id).and_then(recent).is_some()).count();
        heard_voters > voters.len() / 2
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

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn members_die_after_the_grace_period_unless_they_answer() {
        let start = Instant::now();
        let dead_after = ms(500);
        let mut liveness = Liveness::default();
        liveness.track(&ids(&[2, 3]), start);
        assert!(liveness.dead(start + ms(499), dead_after).is_empty());
        liveness.answered(2, 1, start + ms(400));
        assert_eq!(liveness.dead(start + ms(500), dead_after), ids(&[3]));
        assert!(liveness.is_alive(2, start + ms(800), dead_after));
        assert!(!liveness.is_alive(2, start + ms(900), dead_after));

        // A member that left is forgotten; one that comes back starts with a fresh grace.
        liveness.track(&ids(&[2]), start + ms(600));
        liveness.track(&ids(&[2, 3]), start + ms(700));
        assert_eq!(liveness.dead(start + ms(1000), dead_after), ids(&[2]));
        liveness.answered(42, 1, start);
        assert!(!liveness.is_alive(42, start, dead_after), "strangers are not tracked");
    }

    #[test]
    fn a_lease_needs_a_recent_majority_and_nobody_ahead() {
        let start = Instant::now();
        let lease = ms(300);
        let voters = ids(&[1, 2, 3]);
        let mut liveness = Liveness::default();
        liveness.track(&ids(&[2, 3]), start);
        assert!(!liveness.holds_lease(1, &voters, 5, start, lease), "a grace period is not an answer");
        liveness.answered(2, 5, start + ms(100));
        assert!(liveness.holds_lease(1, &voters, 5, start + ms(200), lease), "itself and one other");
        assert!(!liveness.holds_lease(1, &voters, 5, start + ms(400), lease), "silence ends the lease");

        // Paused, then back: the others answer from a later epoch, so this view is stale.
        liveness.answered(2, 7, start + ms(1000));
        liveness.answered(3, 7, start + ms(1000));
        assert!(!liveness.holds_lease(1, &voters, 5, start + ms(1010), lease));
        assert!(liveness.holds_lease(1, &voters, 7, start + ms(1010), lease), "caught up");

        // A learner counts only the voters it hears.
        let mut learner = Liveness::default();
        learner.track(&ids(&[1, 2, 3]), start);
        learner.answered(1, 7, start);
        assert!(!learner.holds_lease(9, &voters, 7, start, lease));
        learner.answered(2, 7, start);
        assert!(learner.holds_lease(9, &voters, 7, start, lease));
        assert!(Liveness::default().holds_lease(1, &ids(&[1]), 1, start, lease), "a single voter leads itself");
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
