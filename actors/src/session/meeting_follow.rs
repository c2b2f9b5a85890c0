//! What a session tracks per joined meeting, as plain data: the node whose room answered,
//! the room's run (`incarnation`) and roster `version` of the last snapshot or event it passed
//! on, and the roster events that arrived while a (re)join was on its way.
//!
//! **Invariants:** a client gets a meeting's snapshot (the `meeting_join` answer or
//! `meeting_rejoined`) before any event of the same room run, and then only events of that
//! run with a higher version, in order; an event from another run means the room was rebuilt
//! and the session rejoins it (the client never has to).

use std::collections::HashMap;

use uuid::Uuid;

use crate::model::FrameText;
use crate::model::NodeId;

/// Roster events kept while a join is on its way; beyond this the snapshot answers for them.
const MAX_BUFFERED: usize = 256;

#[derive(Debug, Default)]
struct Followed {
    owner: Option<NodeId>,
    /// The room run and version of what the client last got.
    at: Option<(u64, u64)>,
    /// A join is on its way: events wait here.
    joining: bool,
    buffered: Vec<(u64, u64, FrameText)>,
}

/// What to do with a roster event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MeetingEventAction {
    Push,
    Drop,
    /// Kept until the join on its way answers.
    Held,
    /// A new run of the room speaks: rejoin it (the event is kept until then).
    Rejoin,
}

#[derive(Debug, Default)]
pub struct MeetingFollows {
    meetings: HashMap<Uuid, Followed>,
}

impl MeetingFollows {
    pub fn contains(&self, meeting_id: Uuid) -> bool {
        self.meetings.contains_key(&meeting_id)
    }

    #[cfg(test)]
    fn is_joined(&self, meeting_id: Uuid) -> bool {
        self.meetings.get(&meeting_id).is_some_and(|m| m.at.is_some())
    }

    pub fn meetings(&self) -> Vec<Uuid> {
        self.meetings.keys().copied().collect()
    }

    /// Meetings whose room answered from `node`.
    pub fn owned_by(&self, node: NodeId) -> Vec<Uuid> {
        self.meetings.iter().filter(|(_, m)| m.owner == Some(node)).map(|(id, _)| *id).collect()
    }

    /// A join (or rejoin) is on its way: hold events until its answer.
    pub fn joining(&mut self, meeting_id: Uuid) {
        self.meetings.entry(meeting_id).or_default().joining = true;
    }

    /// The join was answered with a snapshot of run `incarnation` at `version` from `owner`:
    /// returns the held events to pass on after it, in order.
    pub fn joined(&mut self, meeting_id: Uuid, owner: NodeId, incarnation: u64, version: u64) -> Vec<FrameText> {
        let followed = self.meetings.entry(meeting_id).or_default();
        followed.owner = Some(owner);
        followed.at = Some((incarnation, version));
        followed.joining = false;
        let mut held = std::mem::take(&mut followed.buffered);
        held.retain(|(run, held_version, _)| *run == incarnation && *held_version > version);
        held.sort_by_key(|(_, held_version, _)| *held_version);
        held.dedup_by_key(|(_, held_version, _)| *held_version);
        if let Some((_, last, _)) = held.last() {
            followed.at = Some((incarnation, *last));
        }
        held.into_iter().map(|(_, _, text)| text).collect()
    }

    /// The join failed: forget the meeting unless the client was in it already.
    pub fn join_failed(&mut self, meeting_id: Uuid) {
        if let Some(followed) = self.meetings.get_mut(&meeting_id) {
            if followed.at.is_none() {
                self.meetings.remove(&meeting_id);
            } else {
                followed.joining = false;
                followed.buffered.clear();
            }
        }
    }

    pub fn remove(&mut self, meeting_id: Uuid) -> bool {
        self.meetings.remove(&meeting_id).is_some()
    }

    /// A roster event of run `incarnation` at `version`.
    pub fn on_event(
        &mut self,
        meeting_id: Uuid,
        incarnation: u64,
        version: u64,
        text: &FrameText,
    ) -> MeetingEventAction {
        let Some(followed) = self.meetings.get_mut(&meeting_id) else { return MeetingEventAction::Drop };
        let hold = |followed: &mut Followed| {
            if followed.buffered.len() < MAX_BUFFERED {
                followed.buffered.push((incarnation, version, text.clone()));
            }
        };
        if followed.joining {
            hold(followed);
            return MeetingEventAction::Held;
        }
        match followed.at {
            Some((run, seen)) if run == incarnation => {
                if version > seen {
                    followed.at = Some((run, version));
                    MeetingEventAction::Push
                } else {
                    MeetingEventAction::Drop
                }
            }
            Some(_) => {
                followed.joining = true;
                hold(followed);
                MeetingEventAction::Rejoin
            }
            None => MeetingEventAction::Drop,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: u64) -> FrameText {
        FrameText::from(format!("event {n}"))
    }

    #[test]
    fn events_pass_after_the_snapshot_in_order_and_once() {
        let meeting = Uuid::new_v4();
        let mut follows = MeetingFollows::default();
        follows.joining(meeting);
        // Events of the room race the join's answer: held, not lost and not early.
        assert_eq!(follows.on_event(meeting, 7, 5, &text(5)), MeetingEventAction::Held);
        assert_eq!(follows.on_event(meeting, 7, 4, &text(4)), MeetingEventAction::Held);
        let after = follows.joined(meeting, 1, 7, 4);
        assert_eq!(after, vec![text(5)], "only what the snapshot does not contain, in order");
        assert_eq!(follows.on_event(meeting, 7, 5, &text(5)), MeetingEventAction::Drop, "never twice");
        assert_eq!(follows.on_event(meeting, 7, 6, &text(6)), MeetingEventAction::Push);
    }

    #[test]
    fn a_new_run_of_the_room_makes_the_session_rejoin_and_old_runs_are_ignored() {
        let meeting = Uuid::new_v4();
        let mut follows = MeetingFollows::default();
        follows.joining(meeting);
        follows.joined(meeting, 1, 7, 10);
        assert_eq!(follows.on_event(meeting, 9, 11, &text(11)), MeetingEventAction::Rejoin);
        assert_eq!(follows.on_event(meeting, 9, 12, &text(12)), MeetingEventAction::Held);
        assert_eq!(follows.on_event(meeting, 7, 11, &text(99)), MeetingEventAction::Held);
        let after = follows.joined(meeting, 2, 9, 11);
        assert_eq!(after, vec![text(12)], "the old run's late event is dropped, the new run's kept");
        assert_eq!(follows.on_event(meeting, 7, 20, &text(20)), MeetingEventAction::Rejoin);
        assert_eq!(follows.owned_by(2), vec![meeting]);
    }

    #[test]
    fn a_failed_first_join_forgets_the_meeting_but_a_failed_rejoin_keeps_it() {
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        let mut follows = MeetingFollows::default();
        follows.joining(first);
        follows.join_failed(first);
        assert!(!follows.contains(first));
        follows.joining(second);
        follows.joined(second, 1, 3, 1);
        follows.joining(second);
        follows.join_failed(second);
        assert!(follows.is_joined(second));
    }
}
