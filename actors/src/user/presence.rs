//! Presence derived from a user's sessions, as plain data.
//!
//! A fresh user actor may carry the status its predecessor last published (the actor moved or
//! its node died while the user was online): sessions re-attach within moments, and reporting
//! `offline` meanwhile would flap every watcher. The carried status holds until the first
//! session attaches or the re-attach grace ends, whichever comes first; then the status is
//! derived from the sessions again (so a user whose only node died goes `offline`).

use std::collections::HashMap;

use uuid::Uuid;

use crate::model::PresenceStatus;

#[derive(Debug, Default)]
pub struct Presence {
    sessions: HashMap<Uuid, PresenceStatus>,
    carried: Option<PresenceStatus>,
}

impl Presence {
    /// Starts from the status a predecessor published, held until [`Presence::end_carry`].
    pub fn carrying(status: PresenceStatus) -> Self {
        Self { sessions: HashMap::new(), carried: (status != PresenceStatus::Offline).then_some(status) }
    }

    pub fn attach(&mut self, session_id: Uuid) {
        self.carried = None;
        self.sessions.insert(session_id, PresenceStatus::Online);
    }

    pub fn detach(&mut self, session_id: Uuid) {
        self.sessions.remove(&session_id);
    }

    pub fn set(&mut self, session_id: Uuid, status: PresenceStatus) {
        if let Some(current) = self.sessions.get_mut(&session_id) {
            *current = status;
        }
    }

    /// The re-attach grace is over: from now on only sessions count.
    pub fn end_carry(&mut self) {
        self.carried = None;
    }

    pub fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }

    pub fn status(&self) -> PresenceStatus {
        if let Some(carried) = self.carried {
            return carried;
        }
        if self.sessions.values().any(|status| *status == PresenceStatus::Online) {
            PresenceStatus::Online
        } else if self.sessions.is_empty() {
            PresenceStatus::Offline
        } else {
            PresenceStatus::Away
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_is_derived_from_all_sessions() {
        let (phone, laptop) = (Uuid::new_v4(), Uuid::new_v4());
        let mut presence = Presence::default();
        assert_eq!(presence.status(), PresenceStatus::Offline);
        presence.attach(phone);
        presence.attach(laptop);
        presence.set(phone, PresenceStatus::Away);
        assert_eq!(presence.status(), PresenceStatus::Online, "one active device keeps the user online");
        presence.set(laptop, PresenceStatus::Away);
        assert_eq!(presence.status(), PresenceStatus::Away);
        presence.detach(laptop);
        assert_eq!(presence.status(), PresenceStatus::Away);
        presence.detach(phone);
        assert_eq!(presence.status(), PresenceStatus::Offline);
    }

    #[test]
    fn a_carried_status_holds_until_a_session_attaches_or_the_grace_ends() {
        let mut moved = Presence::carrying(PresenceStatus::Online);
        assert_eq!(moved.status(), PresenceStatus::Online, "no flap while sessions re-attach");
        moved.end_carry();
        assert_eq!(moved.status(), PresenceStatus::Offline, "nobody came back: offline");

        let mut moved = Presence::carrying(PresenceStatus::Away);
        let session = Uuid::new_v4();
        moved.attach(session);
        assert_eq!(moved.status(), PresenceStatus::Online, "the sessions speak once one is back");
        moved.detach(session);
        assert_eq!(moved.status(), PresenceStatus::Offline);
        assert_eq!(Presence::carrying(PresenceStatus::Offline).status(), PresenceStatus::Offline);
    }
}
