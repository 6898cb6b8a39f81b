//! Message GUIDs: [`Guid`], the 20 bytes of a SHA-1, read and written as 40
//! lower-case hex digits; [`GuidSet`], a set of GUIDs that also answers for
//! GUIDs given as text; [`GuidMap`], a map hashed by the GUID's own bytes.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Marks a byte that is not a hex digit in [`LOWER_HEX`] and [`ANY_HEX`].
const NOT_HEX: u8 = 0x10;

/// Hex digit values by byte (`NOT_HEX` for anything else), with or without
/// the upper-case letters.
const LOWER_HEX: [u8; 256] = hex_table(false);
const ANY_HEX: [u8; 256] = hex_table(true);

const fn hex_table(upper: bool) -> [u8; 256] {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        if upper {
            t[b'A' as usize + i] = 10 + i as u8;
        }
        i += 1;
    }
    t
}

/// A message GUID: a SHA-1, held as 20 bytes, shown as 40 lower-case hex digits.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Guid(pub [u8; 20]);

impl Guid {
    /// The GUID of `data` (its SHA-1).
    pub fn of(data: &[u8]) -> Guid {
        use sha1::{Digest, Sha1};
        Guid(Sha1::digest(data).into())
    }

    /// Parse exactly 40 **lower-case** hex digits (how the fake stores GUIDs:
    /// a GUID in another spelling never matched a stored one, and still does not).
    pub fn parse(s: &str) -> Option<Guid> {
        Guid::from_hex(s.as_bytes(), &LOWER_HEX)
    }

    /// Parse exactly 40 hex digits in either case (how a client's GUID is
    /// compared with a body's SHA-1: `sha1_hex(body) == guid.to_ascii_lowercase()`).
    pub fn parse_any_case(s: &str) -> Option<Guid> {
        Guid::from_hex(s.as_bytes(), &ANY_HEX)
    }

    fn from_hex(b: &[u8], table: &[u8; 256]) -> Option<Guid> {
        if b.len() != 40 {
            return None;
        }
        let mut out = [0u8; 20];
        let mut bad = 0u8;
        for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
            let (hi, lo) = (table[usize::from(pair[0])], table[usize::from(pair[1])]);
            bad |= hi | lo;
            *o = hi << 4 | lo;
        }
        (bad & NOT_HEX == 0).then_some(Guid(out))
    }

    /// The 40 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({})", self.to_hex())
    }
}

impl PartialEq<str> for Guid {
    fn eq(&self, other: &str) -> bool {
        Guid::parse(other) == Some(*self)
    }
}

impl PartialEq<&str> for Guid {
    fn eq(&self, other: &&str) -> bool {
        Guid::parse(other) == Some(*self)
    }
}

impl PartialEq<String> for Guid {
    fn eq(&self, other: &String) -> bool {
        Guid::parse(other) == Some(*self)
    }
}

impl PartialEq<Guid> for String {
    fn eq(&self, other: &Guid) -> bool {
        other == self
    }
}

impl PartialEq<Guid> for &str {
    fn eq(&self, other: &Guid) -> bool {
        other == self
    }
}

impl Serialize for Guid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Guid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Guid, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Guid;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GUID of 40 lower-case hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Guid, E> {
                Guid::parse(s).ok_or_else(|| {
                    E::custom(format!(
                        "`{s}` is not a GUID (40 lower-case hex digits expected)"
                    ))
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A hasher for maps keyed by [`Guid`]: a GUID is a SHA-1, its bytes already
/// uniformly spread, so eight of them are the hash (no SipHash rounds).
#[derive(Default)]
pub struct GuidHasher(u64);

impl std::hash::Hasher for GuidHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut x = [0u8; 8];
        let n = bytes.len().min(8);
        x[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(17) ^ u64::from_le_bytes(x);
    }
}

/// A `HashMap` keyed by [`Guid`], hashed with [`GuidHasher`].
pub type GuidMap<V> = std::collections::HashMap<Guid, V, std::hash::BuildHasherDefault<GuidHasher>>;

/// Anything that names a GUID: a [`Guid`] or its text. Text that is not 40
/// lower-case hex digits names no stored GUID.
pub trait AsGuid {
    /// The GUID, when this is one.
    fn as_guid(&self) -> Option<Guid>;
}

impl AsGuid for Guid {
    fn as_guid(&self) -> Option<Guid> {
        Some(*self)
    }
}

impl AsGuid for str {
    fn as_guid(&self) -> Option<Guid> {
        Guid::parse(self)
    }
}

impl AsGuid for String {
    fn as_guid(&self) -> Option<Guid> {
        Guid::parse(self)
    }
}

impl<T: AsGuid + ?Sized> AsGuid for &T {
    fn as_guid(&self) -> Option<Guid> {
        (**self).as_guid()
    }
}

/// Every GUID the process has put in a [`GuidSet`], numbered densely from 0:
/// an open-addressing table of ids (4 bytes a slot, hashed by the GUID's own
/// first bytes, which are uniformly random) over a list of the GUIDs. About
/// 30 bytes per distinct GUID, however many sets hold it.
struct GuidIds {
    guids: Vec<Guid>,
    /// `u32::MAX` marks an empty slot; the length is a power of two.
    slots: Vec<u32>,
}

/// Distinct GUIDs numbered; past this, sets keep further GUIDs themselves.
const GUID_IDS_MAX: usize = 1 << 26;

impl GuidIds {
    fn slot_of(&self, g: &Guid) -> (usize, Option<u32>) {
        let mask = self.slots.len() - 1;
        let mut i = u32::from_le_bytes([g.0[0], g.0[1], g.0[2], g.0[3]]) as usize & mask;
        loop {
            match self.slots[i] {
                u32::MAX => return (i, None),
                id if self.guids[id as usize] == *g => return (i, Some(id)),
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn get(&self, g: &Guid) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        self.slot_of(g).1
    }

    fn intern(&mut self, g: &Guid) -> Option<u32> {
        let mut free = None;
        if !self.slots.is_empty() {
            match self.slot_of(g) {
                (_, Some(id)) => return Some(id),
                (i, None) => free = Some(i),
            }
        }
        if self.guids.len() >= GUID_IDS_MAX {
            return None;
        }
        if (self.guids.len() + 1) * 4 > self.slots.len() * 3 {
            let size = (self.slots.len() * 2).max(1024);
            self.slots = vec![u32::MAX; size];
            for id in 0..self.guids.len() {
                let (i, _) = self.slot_of(&self.guids[id]);
                self.slots[i] = id as u32;
            }
            free = None;
        }
        let i = free.unwrap_or_else(|| self.slot_of(g).0);
        let id = self.guids.len() as u32;
        self.slots[i] = id;
        self.guids.push(*g);
        Some(id)
    }
}

fn guid_ids() -> std::sync::MutexGuard<'static, GuidIds> {
    static IDS: OnceLock<Mutex<GuidIds>> = OnceLock::new();
    IDS.get_or_init(|| {
        Mutex::new(GuidIds {
            guids: Vec::new(),
            slots: Vec::new(),
        })
    })
    .lock()
    .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A set of GUIDs: a bitmap over the process-wide GUID numbering, so a body
/// credited to ten backups (APPLY MESSAGE without RESERVE goes to every held
/// backup) costs ten bits, not ten copies of its GUID. Serialized as a sorted
/// list of hex strings.
#[derive(Clone, Default)]
pub struct GuidSet {
    bits: Vec<u64>,
    len: usize,
    /// GUIDs past [`GUID_IDS_MAX`] (none in practice).
    overflow: BTreeSet<Guid>,
}

impl GuidSet {
    /// True when `g` names a GUID in the set.
    pub fn contains<G: AsGuid + ?Sized>(&self, g: &G) -> bool {
        let Some(g) = g.as_guid() else { return false };
        match guid_ids().get(&g) {
            Some(id) => self.has_bit(id),
            None => self.overflow.contains(&g),
        }
    }

    fn has_bit(&self, id: u32) -> bool {
        let (w, b) = (id as usize / 64, id % 64);
        self.bits.get(w).is_some_and(|x| x >> b & 1 == 1)
    }

    /// Add `g`; false when it was there already or names no GUID.
    pub fn insert<G: AsGuid>(&mut self, g: G) -> bool {
        let Some(g) = g.as_guid() else { return false };
        let id = guid_ids().intern(&g);
        let Some(id) = id else {
            let new = self.overflow.insert(g);
            self.len += usize::from(new);
            return new;
        };
        if self.has_bit(id) {
            return false;
        }
        let (w, b) = (id as usize / 64, id % 64);
        if self.bits.len() <= w {
            self.bits.resize(w + 1, 0);
        }
        self.bits[w] |= 1 << b;
        self.len += 1;
        true
    }

    /// Remove `g`; true when it was there.
    pub fn remove<G: AsGuid + ?Sized>(&mut self, g: &G) -> bool {
        let Some(g) = g.as_guid() else { return false };
        let gone = match guid_ids().get(&g) {
            Some(id) if self.has_bit(id) => {
                self.bits[id as usize / 64] &= !(1 << (id % 64));
                true
            }
            Some(_) => false,
            None => self.overflow.remove(&g),
        };
        self.len -= usize::from(gone);
        gone
    }

    /// Number of GUIDs.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The GUIDs in order.
    pub fn iter(&self) -> impl Iterator<Item = Guid> {
        let mut all: Vec<Guid> = {
            let ids = guid_ids();
            let mut v = Vec::with_capacity(self.len);
            for (w, &word) in self.bits.iter().enumerate() {
                let mut x = word;
                while x != 0 {
                    let b = x.trailing_zeros();
                    v.push(ids.guids[w * 64 + b as usize]);
                    x &= x - 1;
                }
            }
            v
        };
        all.extend(self.overflow.iter().copied());
        all.sort_unstable();
        all.into_iter()
    }
}

impl PartialEq for GuidSet {
    fn eq(&self, other: &GuidSet) -> bool {
        let trimmed = |b: &[u64]| b.len() - b.iter().rev().take_while(|&&w| w == 0).count();
        let (a, b) = (
            &self.bits[..trimmed(&self.bits)],
            &other.bits[..trimmed(&other.bits)],
        );
        a == b && self.overflow == other.overflow
    }
}

impl Eq for GuidSet {}

impl fmt::Debug for GuidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<G: AsGuid> FromIterator<G> for GuidSet {
    fn from_iter<I: IntoIterator<Item = G>>(iter: I) -> GuidSet {
        let mut s = GuidSet::default();
        for g in iter {
            s.insert(g);
        }
        s
    }
}

impl<G: AsGuid> Extend<G> for GuidSet {
    fn extend<I: IntoIterator<Item = G>>(&mut self, iter: I) {
        for g in iter {
            self.insert(g);
        }
    }
}

impl Serialize for GuidSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for GuidSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<GuidSet, D::Error> {
        Ok(Vec::<Guid>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_parse_only_lower_case_hex_and_print_back() {
        let hex = crate::types::sha1_hex(b"hello");
        let g = Guid::parse(&hex).unwrap();
        assert_eq!(g, Guid::of(b"hello"));
        assert_eq!(g.to_hex(), hex);
        assert_eq!(g, hex);
        assert_eq!(Guid::parse(&hex.to_ascii_uppercase()), None);
        assert_eq!(Guid::parse(&hex[..39]), None);
        assert_eq!(Guid::parse(&format!("{}g", &hex[..39])), None);
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<Guid>(&json).unwrap(), g);
        let err = serde_json::from_str::<Guid>("\"xyz\"").unwrap_err();
        assert!(err.to_string().contains("`xyz` is not a GUID"), "{err}");
    }

    /// Any case parses as lower case would after `to_ascii_lowercase`, for
    /// every byte in every position.
    #[test]
    fn guids_in_any_case_parse_like_their_lower_case() {
        let hex = crate::types::sha1_hex(b"hello");
        assert_eq!(
            Guid::parse_any_case(&hex.to_ascii_uppercase()),
            Some(Guid::of(b"hello"))
        );
        for pos in [0, 1, 17, 39] {
            for byte in 0..=255u8 {
                let mut b = hex.clone().into_bytes();
                b[pos] = byte;
                let Ok(s) = String::from_utf8(b) else {
                    continue;
                };
                assert_eq!(
                    Guid::parse_any_case(&s),
                    Guid::parse(&s.to_ascii_lowercase()),
                    "{s}"
                );
                let digit = byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte);
                assert_eq!(Guid::parse(&s).is_some(), digit, "{s}");
            }
        }
        assert_eq!(Guid::parse_any_case(&hex[..39]), None);
    }

    #[test]
    fn guid_sets_answer_for_text() {
        let hex = crate::types::sha1_hex(b"a");
        let mut s = GuidSet::default();
        assert!(s.insert(hex.clone()));
        assert!(!s.insert(hex.as_str()));
        assert!(!s.insert("not a guid"));
        assert!(s.contains(&hex) && s.contains(hex.as_str()));
        let other = crate::types::sha1_hex(b"b");
        s.extend(vec![other.clone(), hex.clone()]);
        assert!(s.contains(&other) && s.len() == 2);
        assert!(s.remove(&other) && s.len() == 1);
        assert!(!s.contains(&hex.to_ascii_uppercase()));
        assert_eq!(s.len(), 1);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("[\"{hex}\"]"));
    }
}
