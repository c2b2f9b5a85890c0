//! Running actors by key, and the supervisor that forgets those that end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus, SupervisionEvent};
use tracing::debug;
use uuid::Uuid;

use super::Inner;

pub(super) type Slot<M> = Arc<tokio::sync::Mutex<Option<ActorRef<M>>>>;

/// Running actors of one kind, by key.
pub(super) struct Slots<M> {
    pub(super) by_key: Mutex<HashMap<Uuid, Slot<M>>>,
    pub(super) keys: Mutex<HashMap<ActorId, Uuid>>,
}

impl<M: ractor::Message> Slots<M> {
    pub(super) fn new() -> Self {
        Self { by_key: Mutex::new(HashMap::new()), keys: Mutex::new(HashMap::new()) }
    }

    pub(super) fn slot(&self, key: Uuid) -> Slot<M> {
        self.by_key.lock().unwrap().entry(key).or_default().clone()
    }

    pub(super) fn find(&self, key: Uuid) -> Option<ActorRef<M>> {
        let slot = self.by_key.lock().unwrap().get(&key).cloned()?;
        let guard = slot.try_lock().ok()?;
        guard.as_ref().filter(|actor| is_running(actor.get_cell())).cloned()
    }

    /// Drops the slot of `key` if nobody else holds it and it has no actor.
    pub(super) fn release(&self, key: Uuid, slot: Slot<M>) {
        let mut by_key = self.by_key.lock().unwrap();
        // One reference in the map, one in `slot`: nobody else is waiting on it.
        if Arc::strong_count(&slot) == 2 && slot.try_lock().map(|guard| guard.is_none()).unwrap_or(false) {
            by_key.remove(&key);
        }
    }

    pub(super) fn forget(&self, actor_id: ActorId) -> bool {
        let Some(key) = self.keys.lock().unwrap().remove(&actor_id) else {
            return false;
        };
        let mut by_key = self.by_key.lock().unwrap();
        let Some(slot) = by_key.get(&key).cloned() else {
            return true;
        };
        let cleared = match slot.try_lock() {
            Ok(mut guard) if guard.as_ref().map(|actor| actor.get_id()) == Some(actor_id) => {
                *guard = None;
                true
            }
            _ => false,
        };
        // One reference in the map, one here: nobody is waiting to spawn into it.
        if cleared && Arc::strong_count(&slot) == 2 {
            by_key.remove(&key);
        }
        true
    }

    /// Running actors with their keys.
    pub(super) fn running(&self) -> Vec<(Uuid, ActorRef<M>)> {
        let slots: Vec<(Uuid, Slot<M>)> =
            self.by_key.lock().unwrap().iter().map(|(key, slot)| (*key, slot.clone())).collect();
        slots
            .iter()
            .filter_map(|(key, slot)| slot.try_lock().ok().and_then(|guard| guard.clone()).map(|actor| (*key, actor)))
            .collect()
    }

    pub(super) fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

pub(super) fn is_running(cell: ActorCell) -> bool {
    matches!(cell.get_status(), ActorStatus::Running | ActorStatus::Starting | ActorStatus::Upgrading)
}

/// Starts the supervisor of the directory's actors.
pub(super) async fn start_supervisor(inner: Weak<Inner>) -> Result<ActorRef<()>, ractor::SpawnErr> {
    Actor::spawn(None, HomeSupervisor, inner).await.map(|(supervisor, _)| supervisor)
}

/// Watches the directory's actors and forgets those that end.
pub(super) struct HomeSupervisor;

impl Actor for HomeSupervisor {
    type Msg = ();
    type State = Weak<Inner>;
    type Arguments = Weak<Inner>;

    async fn pre_start(&self, _myself: ActorRef<()>, inner: Weak<Inner>) -> Result<Weak<Inner>, ActorProcessingErr> {
        Ok(inner)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<()>,
        event: SupervisionEvent,
        inner: &mut Weak<Inner>,
    ) -> Result<(), ActorProcessingErr> {
        let Some(inner) = inner.upgrade() else {
            return Ok(());
        };
        let (cell, failure) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => (cell, reason.map(|r| format!("stopped: {r}"))),
            SupervisionEvent::ActorFailed(cell, err) => (cell, Some(format!("failed: {err}"))),
            _ => return Ok(()),
        };
        let actor_id = cell.get_id();
        if !inner.channels.forget(actor_id) && !inner.users.forget(actor_id) && !inner.meetings.forget(actor_id) {
            debug!(%actor_id, "unknown actor ended");
        }
        if let Some(reason) = failure {
            debug!(%actor_id, %reason, "actor ended");
        }
        Ok(())
    }
}
