//! Value types shared by the protocol, the store, the event log and the fault
//! engine, with no dependency on any of them: message GUIDs, interned names
//! and flag lists, compact per-record annotations, Cyrus mailbox-name rules,
//! session ids, and the serde helper for byte strings.
//!
//! - [`guid`]: [`Guid`], [`GuidSet`], [`GuidMap`];
//! - [`intern`]: [`Name`], [`Flags`], [`Recent`];
//! - [`packed`]: [`PackedAnnotations`], [`SmallBytes`];
//! - [`names`]: who owns a mailbox, by its internal name;
//! - [`bytes_serde`]: bytes as a string when UTF-8, else base64;
//! - [`corruption`]: the kinds of stored state a `corrupt` fault breaks.

pub mod corruption;
pub mod guid;
pub mod intern;
pub mod names;
pub mod packed;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

pub use corruption::Corruption;
pub use guid::{AsGuid, Guid, GuidHasher, GuidMap, GuidSet};
pub use intern::{Flags, Name, Recent};
pub use packed::{PackCache, PackedAnnotations, SmallBytes};

/// Identifies one client connection.
pub type SessionId = u64;

/// The holder standing for "someone else" (a `hold` lock, like `ctl_backups
/// lock` on real backupd). Real sessions are numbered from 1.
pub const EXTERNAL: SessionId = 0;

/// Lower-case hex SHA-1 of `data`: the Cyrus message GUID.
pub fn sha1_hex(data: &[u8]) -> String {
    hex::encode(Sha1::digest(data))
}

/// One `%(ENTRY USERID MODSEQ VALUE)` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// Entry name (interned: every record repeats the same few).
    pub entry: Name,
    /// Userid (`""` for shared).
    pub userid: Name,
    /// MODSEQ.
    pub modseq: u64,
    /// Value bytes.
    #[serde(with = "bytes_serde")]
    pub value: Bytes,
}

/// One per-record annotation, as [`Annotation`] but compact: the entry and
/// userid are interned (`/vendor/cmu/cyrus-imapd/savedate` is on every
/// record), short values are inline. Same fields in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAnnotation {
    /// Entry name.
    pub entry: Name,
    /// Userid (`""` for shared).
    pub userid: Name,
    /// MODSEQ.
    pub modseq: u64,
    /// Value bytes.
    pub value: SmallBytes,
}

impl RecordAnnotation {
    /// A copy of a parsed annotation.
    pub fn new(a: &Annotation) -> RecordAnnotation {
        RecordAnnotation {
            entry: a.entry.clone(),
            userid: a.userid.clone(),
            modseq: a.modseq,
            value: SmallBytes::new(&a.value),
        }
    }

    /// As the protocol's [`Annotation`] (for printing).
    pub fn to_annotation(&self) -> Annotation {
        Annotation {
            entry: self.entry.clone(),
            userid: self.userid.clone(),
            modseq: self.modseq,
            value: Bytes::copy_from_slice(&self.value),
        }
    }
}

/// Serialize bytes as a JSON string when they are UTF-8, else as
/// `{"base64": "…"}`, so the state file stays readable and lossless.
pub mod bytes_serde {
    use base64::Engine;
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Binary { base64: String },
    }

    /// Serialize.
    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        serialize_slice(b, s)
    }

    /// Serialize a slice.
    pub fn serialize_slice<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => Repr::Text(t.to_owned()),
            Err(_) => Repr::Binary {
                base64: base64::engine::general_purpose::STANDARD.encode(b),
            },
        }
        .serialize(s)
    }

    /// Deserialize.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(Bytes::from(t)),
            Repr::Binary { base64 } => base64::engine::general_purpose::STANDARD
                .decode(base64)
                .map(Bytes::from)
                .map_err(serde::de::Error::custom),
        }
    }
}
