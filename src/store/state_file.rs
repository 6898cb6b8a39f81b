//! The `--state FILE` format: JSON of every backup, plus an index into the body
//! pack `FILE.bodies` beside it. Written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Bodies, MessageMeta, Store, UserBackup};

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("state file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The JSON is not a state file.
    #[error("state file `{path}` line {line} column {column}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What was expected.
        message: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    users: BTreeMap<String, UserBackup>,
    messages: BTreeMap<String, MessageMeta>,
    /// File name of the body pack, relative to the state file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bodies: Option<String>,
}

/// The body pack that goes with a state file: `FILE.bodies`.
pub fn bodies_path(state: &Path) -> PathBuf {
    let mut s = state.as_os_str().to_owned();
    s.push(".bodies");
    PathBuf::from(s)
}

/// Load `path` (and its body pack) when it exists; an empty store over a fresh
/// pack otherwise.
pub fn load_state(path: &Path) -> Result<Store, StateError> {
    let io_err = |p: &Path, source| StateError::Io {
        path: p.to_owned(),
        source,
    };
    let pack = bodies_path(path);
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bodies = Bodies::open(&pack, BTreeMap::new()).map_err(|e| io_err(&pack, e))?;
            return Ok(Store::with_bodies(bodies));
        }
        Err(e) => return Err(io_err(path, e)),
    };
    let file: StateFile = serde_json::from_str(&text).map_err(|e| StateError::Format {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    let bodies = Bodies::open(&pack, file.messages).map_err(|e| io_err(&pack, e))?;
    let mut store = Store::with_bodies(bodies);
    store.users = file.users;
    Ok(store)
}

/// Write `store` to `path` atomically: the pack is synced first, then the JSON
/// goes to a temporary file in the same directory, is synced and renamed over
/// `path`. A crash at any point leaves the previous file whole.
pub fn save_state(store: &mut Store, path: &Path) -> Result<(), StateError> {
    let io_err = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    store.bodies.sync().map_err(io_err)?;
    let file = StateFile {
        users: store.users.clone(),
        messages: store.bodies.index().clone(),
        bodies: store
            .bodies
            .pack_path()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    serde_json::to_writer_pretty(&mut tmp, &file).map_err(|e| io_err(e.into()))?;
    tmp.write_all(b"\n").map_err(io_err)?;
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}
