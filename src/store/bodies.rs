//! Message bodies: an append-only pack file and an in-memory index.
//!
//! Bodies never live in memory after they are stored: a backup of 100,000
//! messages keeps only the index (GUID → offset, size). The pack is only ever
//! appended to, so a state file written earlier stays valid whatever happens to
//! the process later.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where one body is in the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageMeta {
    /// Body size in bytes.
    pub size: u64,
    /// Offset of the body in the pack file.
    pub offset: u64,
}

/// The body store.
#[derive(Debug)]
pub struct Bodies {
    index: BTreeMap<String, MessageMeta>,
    pack: File,
    pack_path: Option<PathBuf>,
    pack_len: u64,
}

impl Bodies {
    /// A store in an anonymous temporary file (gone when the process ends).
    pub fn temporary() -> io::Result<Bodies> {
        Ok(Bodies {
            index: BTreeMap::new(),
            pack: tempfile::tempfile()?,
            pack_path: None,
            pack_len: 0,
        })
    }

    /// A store in `path`, with an index read from a state file. Every indexed
    /// body must lie inside the pack.
    pub fn open(path: &Path, index: BTreeMap<String, MessageMeta>) -> io::Result<Bodies> {
        let pack = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let pack_len = pack.metadata()?.len();
        if let Some((guid, m)) = index.iter().find(|(_, m)| m.offset + m.size > pack_len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "`{}` holds {pack_len} bytes, but message {guid} needs bytes {}..{}",
                    path.display(),
                    m.offset,
                    m.offset + m.size
                ),
            ));
        }
        Ok(Bodies {
            index,
            pack,
            pack_path: Some(path.to_owned()),
            pack_len,
        })
    }

    /// True when the body for `guid` is stored.
    pub fn contains(&self, guid: &str) -> bool {
        self.index.contains_key(guid)
    }

    /// Store a body (a no-op when it is already stored).
    pub fn insert(&mut self, guid: &str, data: &[u8]) -> io::Result<()> {
        if self.contains(guid) {
            return Ok(());
        }
        // Positional I/O: reads never move where the next body is written.
        self.pack.write_all_at(data, self.pack_len)?;
        self.index.insert(
            guid.to_owned(),
            MessageMeta {
                size: data.len() as u64,
                offset: self.pack_len,
            },
        );
        self.pack_len += data.len() as u64;
        Ok(())
    }

    /// Read a body back.
    pub fn read(&self, guid: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(m) = self.index.get(guid).copied() else {
            return Ok(None);
        };
        let mut buf = vec![0; m.size as usize];
        self.pack.read_exact_at(&mut buf, m.offset)?;
        Ok(Some(buf))
    }

    /// The index, for the state file.
    pub fn index(&self) -> &BTreeMap<String, MessageMeta> {
        &self.index
    }

    /// Number of bodies.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no body is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Flush the pack to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.pack.flush()?;
        self.pack.sync_data()
    }

    /// The pack's path, when it is not anonymous.
    pub fn pack_path(&self) -> Option<&Path> {
        self.pack_path.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_between_writes_do_not_misplace_bodies() {
        let dir = tempfile::tempdir().unwrap();
        for mut b in [
            Bodies::temporary().unwrap(),
            Bodies::open(&dir.path().join("pack"), BTreeMap::new()).unwrap(),
        ] {
            b.insert("a", b"first").unwrap();
            assert_eq!(b.read("a").unwrap().as_deref(), Some(&b"first"[..]));
            b.insert("b", b"second body").unwrap();
            b.insert("a", b"ignored: already stored").unwrap();
            assert_eq!(b.read("a").unwrap().as_deref(), Some(&b"first"[..]));
            assert_eq!(b.read("b").unwrap().as_deref(), Some(&b"second body"[..]));
            assert_eq!(b.read("c").unwrap(), None);
            assert_eq!(b.len(), 2);
        }
    }

    #[test]
    fn an_index_beyond_the_pack_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        std::fs::write(&path, b"12345").unwrap();
        let index = BTreeMap::from([("g".to_owned(), MessageMeta { size: 4, offset: 3 })]);
        let err = Bodies::open(&path, index).unwrap_err().to_string();
        assert!(
            err.contains("holds 5 bytes, but message g needs bytes 3..7"),
            "{err}"
        );
    }
}
