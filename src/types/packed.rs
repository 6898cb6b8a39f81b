//! Compact per-record values: [`PackedAnnotations`], a record's annotations in
//! one allocation, with [`PackCache`] kept between packs; [`SmallBytes`],
//! short byte strings stored inline. What a backup of 100,000 messages holds
//! per message is a few dozen bytes, not a dozen heap strings.

use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::intern::INTERN_MAX;
use super::{Name, Recent, RecordAnnotation};

/// Names with a number, for [`PackedAnnotations`]: at most [`INTERN_MAX`].
struct NameIds {
    ids: std::collections::HashMap<Name, u32>,
    names: Vec<Name>,
}

fn name_ids() -> std::sync::MutexGuard<'static, NameIds> {
    static IDS: OnceLock<Mutex<NameIds>> = OnceLock::new();
    IDS.get_or_init(|| {
        Mutex::new(NameIds {
            ids: Default::default(),
            names: Vec::new(),
        })
    })
    .lock()
    .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> u64 {
    let mut n = 0u64;
    let mut shift = 0;
    while let Some(&x) = b.get(*pos) {
        *pos += 1;
        n |= u64::from(x & 0x7f) << shift;
        shift += 7;
        if x < 0x80 || shift >= 64 {
            break;
        }
    }
    n
}

/// What [`PackedAnnotations::pack_with`] keeps between calls: the numbers
/// of the names met lately, and a buffer.
#[derive(Debug, Default)]
pub struct PackCache {
    recent: Recent<(Name, Option<u32>), 8>,
    scratch: Vec<u8>,
}

/// A record's annotations packed into one allocation (none when there are
/// none): per annotation, the entry and the userid as numbers of interned
/// names, the modseq and the value's length as varints, then the value.
/// The two annotations every record carries (savedate, createdmodseq) take
/// 35 bytes instead of two 64-byte structs. Read back with [`PackedAnnotations::iter`];
/// serialized as the list of [`RecordAnnotation`] it holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedAnnotations(Option<Box<[u8]>>);

impl PackedAnnotations {
    /// Pack `items`.
    pub fn new(items: impl IntoIterator<Item = RecordAnnotation>) -> PackedAnnotations {
        let items: Vec<RecordAnnotation> = items.into_iter().collect();
        PackedAnnotations::pack(
            items
                .iter()
                .map(|a| (a.entry.as_str(), a.userid.as_str(), a.modseq, &a.value[..])),
        )
    }

    /// Pack `(entry, userid, modseq, value)` items (a name they repeat is
    /// looked up in the name table once).
    pub fn pack<'a>(
        items: impl IntoIterator<Item = (&'a str, &'a str, u64, &'a [u8])>,
    ) -> PackedAnnotations {
        PackedAnnotations::pack_with(&mut PackCache::default(), items)
    }

    /// [`PackedAnnotations::pack`] with `cache` kept from one call to the
    /// next (records of one mailbox repeat the same names): names found in
    /// the cache need no lock and no lookup, and the bytes are gathered in
    /// the cache's buffer and allocated once, at their exact size.
    pub fn pack_with<'a>(
        cache: &mut PackCache,
        items: impl IntoIterator<Item = (&'a str, &'a str, u64, &'a [u8])>,
    ) -> PackedAnnotations {
        let PackCache { recent, scratch } = cache;
        scratch.clear();
        let mut put_name = |out: &mut Vec<u8>, n: &str| {
            let id = match recent.find(|(name, _)| name.as_str() == n) {
                Some(&(_, id)) => id,
                None => {
                    let mut ids = name_ids();
                    let id = match ids.ids.get(n) {
                        Some(&id) => Some(id),
                        None if ids.names.len() < INTERN_MAX => {
                            let id = ids.names.len() as u32;
                            let name = Name::new(n);
                            ids.names.push(name.clone());
                            ids.ids.insert(name, id);
                            Some(id)
                        }
                        None => None,
                    };
                    drop(ids);
                    // Ids never change once given, so the cache cannot go stale.
                    recent.remember((Name::new(n), id));
                    id
                }
            };
            match id {
                Some(id) => {
                    out.push(0);
                    out.extend_from_slice(&id.to_le_bytes());
                }
                None => {
                    out.push(1);
                    put_varint(out, n.len() as u64);
                    out.extend_from_slice(n.as_bytes());
                }
            }
        };
        for (entry, userid, modseq, value) in items {
            put_name(scratch, entry);
            put_name(scratch, userid);
            put_varint(scratch, modseq);
            put_varint(scratch, value.len() as u64);
            scratch.extend_from_slice(value);
        }
        PackedAnnotations((!scratch.is_empty()).then(|| Box::from(&scratch[..])))
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The annotations, in order.
    pub fn iter(&self) -> impl Iterator<Item = RecordAnnotation> + '_ {
        let b: &[u8] = self.0.as_deref().unwrap_or_default();
        let mut pos = 0;
        let name = |pos: &mut usize| -> Name {
            let tag = b[*pos];
            *pos += 1;
            if tag == 0 {
                let id = u32::from_le_bytes([b[*pos], b[*pos + 1], b[*pos + 2], b[*pos + 3]]);
                *pos += 4;
                name_ids().names[id as usize].clone()
            } else {
                let n = get_varint(b, pos) as usize;
                let s = String::from_utf8_lossy(&b[*pos..*pos + n]).into_owned();
                *pos += n;
                Name::new(&s)
            }
        };
        std::iter::from_fn(move || {
            if pos >= b.len() {
                return None;
            }
            let entry = name(&mut pos);
            let userid = name(&mut pos);
            let modseq = get_varint(b, &mut pos);
            let n = get_varint(b, &mut pos) as usize;
            let value = SmallBytes::new(&b[pos..pos + n]);
            pos += n;
            Some(RecordAnnotation {
                entry,
                userid,
                modseq,
                value,
            })
        })
    }
}

impl fmt::Debug for PackedAnnotations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for PackedAnnotations {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PackedAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PackedAnnotations, D::Error> {
        Ok(PackedAnnotations::new(
            Vec::<RecordAnnotation>::deserialize(d)?,
        ))
    }
}

/// Bytes stored inline up to [`SmallBytes::INLINE`] (an annotation value such
/// as a savedate), on the heap beyond. Serialized like
/// [`super::bytes_serde`]: a string when UTF-8, else `{"base64": …}`.
#[derive(Clone)]
pub struct SmallBytes(SmallRepr);

#[derive(Clone)]
enum SmallRepr {
    Inline {
        len: u8,
        buf: [u8; SmallBytes::INLINE],
    },
    Heap(Box<[u8]>),
}

impl SmallBytes {
    /// Longest value stored without a heap allocation.
    pub const INLINE: usize = 22;

    /// A copy of `b`.
    pub fn new(b: &[u8]) -> SmallBytes {
        if b.len() <= Self::INLINE {
            let mut buf = [0u8; Self::INLINE];
            buf[..b.len()].copy_from_slice(b);
            SmallBytes(SmallRepr::Inline {
                len: b.len() as u8,
                buf,
            })
        } else {
            SmallBytes(SmallRepr::Heap(b.into()))
        }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            SmallRepr::Inline { len, buf } => &buf[..usize::from(*len)],
            SmallRepr::Heap(b) => b,
        }
    }
}

impl Default for SmallBytes {
    fn default() -> SmallBytes {
        SmallBytes::new(b"")
    }
}

impl std::ops::Deref for SmallBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &SmallBytes) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", bytes::Bytes::copy_from_slice(self.as_slice()))
    }
}

impl Serialize for SmallBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        super::bytes_serde::serialize_slice(self.as_slice(), s)
    }
}

impl<'de> Deserialize<'de> for SmallBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SmallBytes, D::Error> {
        super::bytes_serde::deserialize(d).map(|b| SmallBytes::new(&b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_annotations_read_back_as_given() {
        let a = |e: &str, u: &str, m: u64, v: &[u8]| RecordAnnotation {
            entry: Name::new(e),
            userid: Name::new(u),
            modseq: m,
            value: SmallBytes::new(v),
        };
        let items = vec![
            a("/vendor/cmu/cyrus-imapd/savedate", "", 0, b"1795874858"),
            a("/vendor/cmu/cyrus-imapd/createdmodseq", "", u64::MAX, b"2"),
            a("/comment", "alice", 300, &[0xff; 200]),
            a("", "", 0, b""),
        ];
        let p = PackedAnnotations::new(items.clone());
        assert_eq!(p.iter().collect::<Vec<_>>(), items);
        assert!(!p.is_empty());
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, serde_json::to_string(&items).unwrap());
        assert_eq!(serde_json::from_str::<PackedAnnotations>(&json).unwrap(), p);
        let none = PackedAnnotations::new(Vec::new());
        assert!(none.is_empty() && none.iter().next().is_none());
        assert_eq!(serde_json::to_string(&none).unwrap(), "[]");
        // The two annotations every record carries, in 35 bytes.
        let typical = [
            a("/vendor/cmu/cyrus-imapd/savedate", "", 0, b"1795874858"),
            a("/vendor/cmu/cyrus-imapd/createdmodseq", "", 0, b"2"),
        ];
        assert_eq!(PackedAnnotations::new(typical).0.unwrap().len(), 35);
    }

    /// A cache kept across many packs (more names than it holds) gives the
    /// same bytes as packing each afresh.
    #[test]
    fn a_pack_cache_changes_nothing() {
        let names: Vec<String> = (0..20).map(|i| format!("/cache-test/{i}")).collect();
        let mut cache = PackCache::default();
        for round in 0..200usize {
            let e = &names[(round * 7) % names.len()];
            let u = &names[(round * 3) % names.len()];
            let v = round.to_string();
            let items = [
                (e.as_str(), u.as_str(), round as u64, v.as_bytes()),
                ("", "", 0, b""),
            ];
            assert_eq!(
                PackedAnnotations::pack_with(&mut cache, items),
                PackedAnnotations::pack(items),
                "round {round}"
            );
        }
        assert!(PackedAnnotations::pack_with(&mut cache, []).is_empty());
    }

    #[test]
    fn small_bytes_inline_heap_and_binary() {
        for v in [&b""[..], b"1795874858", &[b'x'; 23], &[0xff, 0xfe, 0]] {
            let s = SmallBytes::new(v);
            assert_eq!(s.as_slice(), v);
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(serde_json::from_str::<SmallBytes>(&json).unwrap(), s);
        }
        assert!(matches!(
            SmallBytes::new(b"1795874858").0,
            SmallRepr::Inline { .. }
        ));
        assert!(matches!(SmallBytes::new(&[b'x'; 23]).0, SmallRepr::Heap(_)));
    }
}
