//! The raft log, vote and committed id, persisted under `data_dir/raft/`.
//!
//! Layout (all JSON, see [`super::disk`]):
//! - `vote.json`, `committed.json`, `purged.json`: one value each, replaced atomically;
//! - `log/<index, 20 digits>.json`: one file per entry.
//!
//! The whole log also lives in memory (it only holds membership changes and one blank entry
//! per elected leader). Appends write the entry files then fsync the folder before reporting
//! them flushed; truncation removes files from the highest index down and purging records
//! `purged.json` first, so a crash in the middle always leaves a contiguous run of entries,
//! which is what [`LogStore::open`] keeps.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{Entry, LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use tracing::warn;

use super::disk;
use super::state::TypeConfig;
use crate::NodeId;

/// The log storage handed to openraft; clones share the same log (one is the log reader).
#[derive(Clone)]
pub(crate) struct LogStore {
    dir: Arc<PathBuf>,
    data: Arc<Mutex<LogData>>,
}

#[derive(Default)]
struct LogData {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

impl LogStore {
    /// Loads what a previous run persisted in `dir` (created if missing).
    pub(crate) async fn open(dir: PathBuf) -> io::Result<Self> {
        let loaded_dir = dir.clone();
        let data = disk::blocking(move || load(&loaded_dir)).await?;
        Ok(LogStore { dir: Arc::new(dir), data: Arc::new(Mutex::new(data)) })
    }

    /// Whether a previous run left raft state (so this node must not bootstrap a new cluster).
    pub(crate) fn has_state(&self) -> bool {
        let data = self.lock();
        data.vote.is_some() || data.last_purged.is_some() || !data.entries.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, LogData> {
        // The data is only replaced whole after each write, so a panicking holder leaves it valid.
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn log_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

fn entry_path(dir: &Path, index: u64) -> PathBuf {
    log_dir(dir).join(format!("{index:020}.json"))
}

fn load(dir: &Path) -> io::Result<LogData> {
    std::fs::create_dir_all(log_dir(dir))?;
    let mut data = LogData {
        vote: disk::read_json(&dir.join("vote.json"))?,
        // Both files hold an `Option` (`null` when saved as none).
        committed: disk::read_json::<Option<LogId<NodeId>>>(&dir.join("committed.json"))?.flatten(),
        last_purged: disk::read_json::<Option<LogId<NodeId>>>(&dir.join("purged.json"))?.flatten(),
        entries: BTreeMap::new(),
    };
    let mut indexes = Vec::new();
    for file in std::fs::read_dir(log_dir(dir))? {
        let name = file?.file_name();
        let index = name.to_str().and_then(|name| name.strip_suffix(".json")).and_then(|stem| stem.parse::<u64>().ok());
        // Anything else is a temporary file of an interrupted write.
        if let Some(index) = index {
            indexes.push(index);
        }
    }
    indexes.sort_unstable();
    let purged_up_to = data.last_purged.map(|log_id| log_id.index);
    let mut previous: Option<u64> = None;
    for index in indexes {
        let purged = purged_up_to.is_some_and(|up_to| index <= up_to);
        let after_gap = previous.is_some_and(|previous| index != previous + 1);
        if purged || after_gap {
            // Left by an interrupted purge or truncation, never reported as flushed.
            warn!(index, purged, "dropping a stale raft log entry");
            disk::remove_file(&entry_path(dir, index))?;
            continue;
        }
        let path = entry_path(dir, index);
        let entry: Entry<TypeConfig> = disk::read_json(&path)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} vanished", path.display())))?;
        if entry.log_id.index != index {
            let message = format!("{} holds entry {}", path.display(), entry.log_id.index);
            return Err(io::Error::new(io::ErrorKind::InvalidData, message));
        }
        data.entries.insert(index, entry);
        previous = Some(index);
    }
    Ok(data)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Ok(self.lock().entries.range(range).map(|(_, entry)| entry.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let data = self.lock();
        let last_log_id = data.entries.values().next_back().map(|entry| entry.log_id).or(data.last_purged);
        Ok(LogState { last_purged_log_id: data.last_purged, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let (path, value) = (self.path("vote.json"), *vote);
        disk::blocking(move || disk::write_json(&path, &value)).await.map_err(|e| StorageIOError::write_vote(&e))?;
        self.lock().vote = Some(value);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        let path = self.path("committed.json");
        disk::blocking(move || disk::write_json(&path, &committed)).await.map_err(|e| StorageIOError::write(&e))?;
        self.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let dir = Arc::clone(&self.dir);
        let written = entries.clone();
        let result = disk::blocking(move || {
            for entry in &written {
                disk::write_json_unsynced_dir(&entry_path(&dir, entry.log_id.index), entry)?;
            }
            disk::sync_dir(&log_dir(&dir))
        })
        .await;
        match result {
            Ok(()) => {
                self.lock().entries.extend(entries.into_iter().map(|entry| (entry.log_id.index, entry)));
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.log_io_completed(Err(io::Error::new(error.kind(), error.to_string())));
                Err(StorageIOError::write_logs(&error).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let doomed: Vec<u64> = self.lock().entries.range(log_id.index..).map(|(index, _)| *index).collect();
        let dir = Arc::clone(&self.dir);
        disk::blocking(move || {
            // Highest first: a crash leaves a shorter but contiguous log.
            for index in doomed.iter().rev() {
                disk::remove_file(&entry_path(&dir, *index))?;
            }
            disk::sync_dir(&log_dir(&dir))
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        self.lock().entries.retain(|index, _| *index < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let doomed: Vec<u64> = self.lock().entries.range(..=log_id.index).map(|(index, _)| *index).collect();
        let dir = Arc::clone(&self.dir);
        disk::blocking(move || {
            // Recorded first: files at or below it are garbage even if their removal is cut short.
            disk::write_json(&dir.join("purged.json"), &Some(log_id))?;
            for index in doomed {
                disk::remove_file(&entry_path(&dir, index))?;
            }
            disk::sync_dir(&log_dir(&dir))
        })
        .await
        .map_err(|e| StorageIOError::write_logs(&e))?;
        let mut data = self.lock();
        data.last_purged = Some(log_id);
        data.entries.retain(|index, _| *index > log_id.index);
        Ok(())
    }
}
