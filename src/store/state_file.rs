//! The `--state FILE` format: JSON of every backup, plus an index into the body
//! pack `FILE.bodies` beside it. Written atomically.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Bodies, Guid, MessageMeta, Store, UserBackup};

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
    messages: BTreeMap<Guid, MessageMeta>,
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
        messages: store.bodies.index(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `fixtures/state-v0/` was written by `backupd-sim serve --state` before
    /// the store went compact (GUIDs as 20 bytes, interned flags and
    /// annotation names): it must load whole, and save back to the same JSON.
    #[test]
    fn a_state_file_from_before_the_compact_store_loads_and_saves_unchanged() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/state-v0");
        let dir = tempfile::tempdir().unwrap();
        for f in ["state.json", "state.json.bodies"] {
            fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
        }
        let path = dir.path().join("state.json");
        let mut store = load_state(&path).unwrap();
        assert_eq!(store.verify_bodies(), Vec::<String>::new());
        assert_eq!(store.bodies.len(), 4);
        let fix = &store.users["fix"];
        assert_eq!(fix.guids.len(), 4);
        let inbox = &fix.mailboxes["user.fix"];
        assert_eq!(inbox.annotations[0].value, "fixture mailbox");
        let r2 = &inbox.records[1];
        assert_eq!(
            (r2.uid, r2.expunged, r2.modseq),
            (2, true, 6),
            "record 2: {r2:?}"
        );
        assert_eq!(r2.flags, ["\\Deleted", "\\Flagged", "\\Seen", "$Label1"]);
        assert_eq!(r2.guid, "eb364f18c4211abbee1ad93586b5d1024a41d9d1");
        let a = r2.annotations.iter().nth(1).unwrap();
        assert_eq!(&*a.entry, "/vendor/cmu/cyrus-imapd/createdmodseq");
        assert_eq!(&*a.value, b"3");
        let state = store.mail_state();
        let live = &state.users["fix"].mailboxes["user.fix"].messages;
        assert_eq!(live.keys().copied().collect::<Vec<_>>(), vec![1, 3]);

        let before: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        save_state(&mut store, &path).unwrap();
        let after: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(after, before);
    }

    #[test]
    fn a_malformed_guid_is_a_located_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        fs::write(
            &path,
            "{\"users\": {\"a\": {\"mailboxes\": {}, \"guids\": [\"xyz\"]}},\n \"messages\": {}}",
        )
        .unwrap();
        let err = load_state(&path).unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("`xyz` is not a GUID"), "{err}");
    }
}
