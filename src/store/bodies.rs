//! Message bodies: an append-only pack file and an in-memory index.
//!
//! Bodies never live in memory after they are stored: a backup of 100,000
//! messages keeps only the index (20-byte GUID → offset, size, in a hash
//! map: one probe per lookup however many bodies there are), plus at most
//! [`WRITE_BUFFER`] bytes not yet written (appends are batched: one `pwrite`
//! per megabyte, not one per body). The pack is only ever appended to, so a
//! state file written earlier stays valid whatever happens to the process later.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::types::{AsGuid, Guid, GuidMap};

/// Bodies appended but not yet written to the pack are held up to this many
/// bytes (a bigger body is written at once).
pub const WRITE_BUFFER: usize = 1 << 20;

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
    index: GuidMap<MessageMeta>,
    pack: File,
    pack_path: Option<PathBuf>,
    /// Bytes in the pack file, not counting `pending`.
    written: u64,
    /// Appended bodies not yet written: they go at offset `written`.
    pending: Vec<u8>,
}

impl Bodies {
    /// A store in an anonymous temporary file (gone when the process ends).
    pub fn temporary() -> io::Result<Bodies> {
        Ok(Bodies {
            index: GuidMap::default(),
            pack: tempfile::tempfile()?,
            pack_path: None,
            written: 0,
            pending: Vec::new(),
        })
    }

    /// A store in `path`, with an index read from a state file. Every indexed
    /// body must lie inside the pack.
    pub fn open(path: &Path, index: BTreeMap<Guid, MessageMeta>) -> io::Result<Bodies> {
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
            index: index.into_iter().collect(),
            pack,
            pack_path: Some(path.to_owned()),
            written: pack_len,
            pending: Vec::new(),
        })
    }

    /// True when the body for `guid` (a [`Guid`] or its 40 lower-case hex
    /// digits) is stored.
    pub fn contains<G: AsGuid + ?Sized>(&self, guid: &G) -> bool {
        guid.as_guid().is_some_and(|g| self.index.contains_key(&g))
    }

    /// Store a body (a no-op when it is already stored). `guid` must name a
    /// GUID (40 lower-case hex digits); the caller has checked it is the body's.
    pub fn insert<G: AsGuid + ?Sized>(&mut self, guid: &G, data: &[u8]) -> io::Result<()> {
        let Some(guid) = guid.as_guid() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a body's GUID must be 40 lower-case hex digits",
            ));
        };
        let std::collections::hash_map::Entry::Vacant(slot) = self.index.entry(guid) else {
            return Ok(());
        };
        let offset = self.written + self.pending.len() as u64;
        if self.pending.len() + data.len() > WRITE_BUFFER {
            flush(&self.pack, &mut self.written, &mut self.pending)?;
        }
        if data.len() > WRITE_BUFFER {
            // Positional I/O: reads never move where the next body is written.
            self.pack.write_all_at(data, self.written)?;
            self.written += data.len() as u64;
        } else {
            self.pending.extend_from_slice(data);
        }
        slot.insert(MessageMeta {
            size: data.len() as u64,
            offset,
        });
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        flush(&self.pack, &mut self.written, &mut self.pending)
    }

    /// Read a body back.
    pub fn read<G: AsGuid + ?Sized>(&self, guid: &G) -> io::Result<Option<Vec<u8>>> {
        let Some(m) = guid.as_guid().and_then(|g| self.index.get(&g).copied()) else {
            return Ok(None);
        };
        if m.offset >= self.written {
            let start = (m.offset - self.written) as usize;
            return Ok(Some(self.pending[start..start + m.size as usize].to_vec()));
        }
        let mut buf = vec![0; m.size as usize];
        self.pack.read_exact_at(&mut buf, m.offset)?;
        Ok(Some(buf))
    }

    /// Flip the first byte of the body of `guid` where it is stored (for the
    /// `body` corruption fault); false when there is no such body, or it is
    /// empty.
    pub fn corrupt(&mut self, guid: &Guid) -> io::Result<bool> {
        let Some(m) = self.index.get(guid).copied() else {
            return Ok(false);
        };
        if m.size == 0 {
            return Ok(false);
        }
        if m.offset >= self.written {
            self.pending[(m.offset - self.written) as usize] ^= 0xff;
            return Ok(true);
        }
        let mut byte = [0u8];
        self.pack.read_exact_at(&mut byte, m.offset)?;
        byte[0] ^= 0xff;
        match &self.pack_path {
            // Opened for appending: a positional write would land at the end.
            Some(path) => OpenOptions::new()
                .write(true)
                .open(path)?
                .write_all_at(&byte, m.offset)?,
            None => self.pack.write_all_at(&byte, m.offset)?,
        }
        Ok(true)
    }

    /// The index in GUID order, for the state file.
    pub fn index(&self) -> BTreeMap<Guid, MessageMeta> {
        self.index.iter().map(|(g, m)| (*g, *m)).collect()
    }

    /// Number of bodies.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when no body is stored.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Write every pending body and flush the pack to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.flush_pending()?;
        self.pack.flush()?;
        self.pack.sync_data()
    }

    /// The pack's path, when it is not anonymous.
    pub fn pack_path(&self) -> Option<&Path> {
        self.pack_path.as_deref()
    }
}

/// Write `pending` at `written` in `pack`, and empty it.
fn flush(pack: &File, written: &mut u64, pending: &mut Vec<u8>) -> io::Result<()> {
    if !pending.is_empty() {
        pack.write_all_at(pending, *written)?;
        *written += pending.len() as u64;
        pending.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(name: &str) -> Guid {
        Guid::of(name.as_bytes())
    }

    #[test]
    fn reads_between_writes_do_not_misplace_bodies() {
        let dir = tempfile::tempdir().unwrap();
        for mut b in [
            Bodies::temporary().unwrap(),
            Bodies::open(&dir.path().join("pack"), BTreeMap::new()).unwrap(),
        ] {
            b.insert(&g("a"), b"first").unwrap();
            assert_eq!(b.read(&g("a")).unwrap().as_deref(), Some(&b"first"[..]));
            b.insert(&g("b").to_hex(), b"second body").unwrap();
            b.insert(&g("a"), b"ignored: already stored").unwrap();
            assert_eq!(b.read(&g("a")).unwrap().as_deref(), Some(&b"first"[..]));
            assert_eq!(
                b.read(&g("b").to_hex()).unwrap().as_deref(),
                Some(&b"second body"[..])
            );
            assert_eq!(b.read(&g("c")).unwrap(), None);
            assert_eq!(b.read("not a guid").unwrap(), None);
            assert!(b.insert("not a guid", b"x").is_err());
            assert_eq!(b.len(), 2);
        }
    }

    #[test]
    fn buffered_and_large_bodies_land_where_the_index_says() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        let mut b = Bodies::open(&path, BTreeMap::new()).unwrap();
        // Small bodies past the buffer size, one body larger than the buffer,
        // then more small ones: each read back before and after `sync`.
        let mut bodies: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![(i % 251) as u8; 5000 + i as usize])
            .collect();
        bodies.insert(150, vec![7u8; WRITE_BUFFER + 3]);
        for (i, body) in bodies.iter().enumerate() {
            b.insert(&Guid::of(body), body).unwrap();
            let back = b.read(&Guid::of(&bodies[i / 2])).unwrap().unwrap();
            assert_eq!(back, bodies[i / 2], "body {} after {i} inserts", i / 2);
        }
        assert!(b.pending.len() <= WRITE_BUFFER);
        b.sync().unwrap();
        assert!(b.pending.is_empty());
        let total: usize = bodies.iter().map(Vec::len).sum();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), total as u64);
        let reopened = Bodies::open(&path, b.index()).unwrap();
        for body in &bodies {
            assert_eq!(reopened.read(&Guid::of(body)).unwrap().as_ref(), Some(body));
        }
    }

    #[test]
    fn an_index_beyond_the_pack_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pack");
        std::fs::write(&path, b"12345").unwrap();
        let index = BTreeMap::from([(g("g"), MessageMeta { size: 4, offset: 3 })]);
        let err = Bodies::open(&path, index).unwrap_err().to_string();
        let want = format!("holds 5 bytes, but message {} needs bytes 3..7", g("g"));
        assert!(err.contains(&want), "{err}");
    }
}
