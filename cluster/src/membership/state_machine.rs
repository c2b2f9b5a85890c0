//! The state machine handed to openraft: applies [`Command`]s to the [`MemberSet`], publishes
//! the result on the view channel, and keeps its snapshot in `data_dir/raft/snapshot.json`.
//!
//! The state machine itself is not written on every apply: after a restart it is the last
//! snapshot, and openraft re-applies the committed log entries that follow it (the committed
//! id is persisted by the log store).

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::info;

use super::disk;
use super::state::{Command, CommandOutcome, MemberSet, TypeConfig};
use crate::{ClusterView, NodeId};

/// The state machine; clones share the same state (one is the snapshot builder).
#[derive(Clone)]
pub(crate) struct StateMachineStore {
    node_id: NodeId,
    snapshot_path: Arc<PathBuf>,
    data: Arc<Mutex<MachineData>>,
    view: Arc<watch::Sender<ClusterView>>,
}

#[derive(Default)]
struct MachineData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    state: MemberSet,
    snapshot: Option<StoredSnapshot>,
    snapshots_built: u64,
}

/// The snapshot file: openraft's metadata and the member set it covers.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: MemberSet,
}

impl StoredSnapshot {
    fn to_snapshot(&self) -> Result<Snapshot<TypeConfig>, serde_json::Error> {
        let bytes = serde_json::to_vec(&self.state)?;
        Ok(Snapshot { meta: self.meta.clone(), snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl StateMachineStore {
    /// Loads the last snapshot in `dir` (created if missing) and publishes it on `view`.
    pub(crate) async fn open(dir: PathBuf, node_id: NodeId, view: Arc<watch::Sender<ClusterView>>) -> io::Result<Self> {
        let snapshot_path = dir.join("snapshot.json");
        let path = snapshot_path.clone();
        let snapshot: Option<StoredSnapshot> = disk::blocking(move || {
            std::fs::create_dir_all(&dir)?;
            disk::read_json(&path)
        })
        .await?;
        let mut data = MachineData::default();
        if let Some(snapshot) = snapshot {
            data.last_applied = snapshot.meta.last_log_id;
            data.last_membership = snapshot.meta.last_membership.clone();
            data.state = snapshot.state.clone();
            data.snapshot = Some(snapshot);
        }
        let store = StateMachineStore { node_id, snapshot_path: Arc::new(snapshot_path), data: Arc::default(), view };
        store.publish(&data.state);
        *store.lock() = data;
        Ok(store)
    }

    pub(crate) fn has_snapshot(&self) -> bool {
        self.lock().snapshot.is_some()
    }

    fn lock(&self) -> MutexGuard<'_, MachineData> {
        // Every mutation is a plain assignment, so a panicking holder leaves valid data.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes members and epoch, keeping the leader the metrics task wrote.
    fn publish(&self, state: &MemberSet) {
        self.view.send_if_modified(|view| {
            if view.epoch == state.epoch && view.members == state.members {
                return false;
            }
            view.epoch = state.epoch;
            view.members = state.members.clone();
            true
        });
    }

    async fn persist(&self, snapshot: StoredSnapshot) -> Result<(), StorageError<NodeId>> {
        let path = Arc::clone(&self.snapshot_path);
        let signature = snapshot.meta.signature();
        let written = snapshot.clone();
        disk::blocking(move || disk::write_json(&path, &written))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        self.lock().snapshot = Some(snapshot);
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let snapshot = {
            let mut data = self.lock();
            data.snapshots_built += 1;
            let last =
                data.last_applied.map_or_else(|| "none".to_owned(), |id| format!("{}-{}", id.leader_id, id.index));
            let meta = SnapshotMeta {
                last_log_id: data.last_applied,
                last_membership: data.last_membership.clone(),
                snapshot_id: format!("{last}-{}", data.snapshots_built),
            };
            StoredSnapshot { meta, state: data.state.clone() }
        };
        self.persist(snapshot.clone()).await?;
        Ok(snapshot.to_snapshot().map_err(|e| StorageIOError::read_snapshot(Some(snapshot.meta.signature()), &e))?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        let data = self.lock();
        Ok((data.last_applied, data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let node_id = self.node_id;
        let (outcomes, state) = {
            let mut data = self.lock();
            let mut outcomes = Vec::new();
            for entry in entries {
                data.last_applied = Some(entry.log_id);
                let outcome = match entry.payload {
                    EntryPayload::Blank => data.state.unchanged(),
                    EntryPayload::Normal(command) => {
                        let outcome = data.state.apply(&command);
                        if outcome.changed {
                            let epoch = outcome.epoch;
                            match command {
                                Command::AddMember(member) => {
                                    info!(node_id, member_id = member.id, cluster_addr = %member.cluster_addr, epoch, "member added");
                                }
                                Command::RemoveMember(member_id) => info!(node_id, member_id, epoch, "member removed"),
                            }
                        }
                        outcome
                    }
                    EntryPayload::Membership(membership) => {
                        data.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                        data.state.unchanged()
                    }
                };
                outcomes.push(outcome);
            }
            (outcomes, data.state.clone())
        };
        self.publish(&state);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let state: MemberSet = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(StoredSnapshot { meta: meta.clone(), state: state.clone() }).await?;
        {
            let mut data = self.lock();
            data.last_applied = meta.last_log_id;
            data.last_membership = meta.last_membership.clone();
            data.state = state.clone();
        }
        info!(node_id = self.node_id, epoch = state.epoch, members = state.members.len(), "snapshot installed");
        self.publish(&state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored = self.lock().snapshot.clone();
        let Some(stored) = stored else {
            return Ok(None);
        };
        let snapshot =
            stored.to_snapshot().map_err(|e| StorageIOError::read_snapshot(Some(stored.meta.signature()), &e))?;
        Ok(Some(snapshot))
    }
}
