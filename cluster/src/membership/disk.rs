//! Small durable files in the data folder.
//!
//! Every file is JSON (readable when debugging a node) and replaced atomically: written to a
//! temporary file, fsynced, renamed over the target, then the folder is fsynced so the rename
//! itself survives a crash.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::NodeId;

/// Writes `value` to `path` durably, without fsyncing the folder (see [`sync_dir`]).
pub(crate) fn write_json_unsynced_dir<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    write_file(path, &bytes)
}

/// Writes `value` to `path` durably, folder included.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    write_json_unsynced_dir(path, value)?;
    sync_dir(parent(path)?)
}

/// Reads a JSON file; `None` if it does not exist.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {error}", path.display())))
}

/// Removes a file; a file that is already gone is fine.
pub(crate) fn remove_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Makes renames and removals in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The node id kept in `data_dir/node_id`, created at random on first start.
/// The node id kept in `data_dir`, drawn and saved on the first start.
pub fn load_or_create_node_id(data_dir: &Path) -> io::Result<NodeId> {
    fs::create_dir_all(data_dir)?;
    let path = data_dir.join("node_id");
    match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse().map_err(|error| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: not a node id: {error}", path.display()))
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            // 0 is avoided so that a zeroed id always means "not set" when reading logs.
            let id = rand::random::<NodeId>().max(1);
            write_file(&path, id.to_string().as_bytes())?;
            sync_dir(data_dir)?;
            Ok(id)
        }
        Err(error) => Err(error),
    }
}

/// Runs blocking file work off the async workers.
pub(crate) async fn blocking<T, F>(work: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(io::Error::other)?
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = path.with_extension("tmp");
    {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    fs::rename(&temporary, path)
}

fn parent(path: &Path) -> io::Result<&Path> {
    path.parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{} has no folder", path.display())))
}
