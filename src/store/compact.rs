//! Compact building blocks for the store: what a backup of 100,000 messages
//! holds per message is a few dozen bytes, not a dozen heap strings.
//!
//! - [`Guid`]: the 20 bytes of a SHA-1, read and written as 40 lower-case hex
//!   digits (so the state file is unchanged);
//! - [`Name`]: an interned string (flag names, annotation entries, userids),
//!   shared by every record that uses it;
//! - [`Flags`]: an interned list of flag names (most records share a handful
//!   of flag sets);
//! - [`SmallBytes`]: short byte strings (annotation values) stored inline;
//! - [`GuidSet`]: a set of GUIDs that also answers for GUIDs given as text.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

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

/// Distinct values an interner keeps; past this, values are still shared
/// where they are already interned, and new ones are simply allocated (so a
/// peer sending endless distinct names cannot grow the table without bound).
const INTERN_MAX: usize = 65_536;

fn intern<T: ?Sized + Eq + Hash>(
    table: &'static OnceLock<Mutex<HashSet<Arc<T>>>>,
    value: &T,
    make: impl FnOnce(&T) -> Arc<T>,
) -> Arc<T> {
    let mut t = table
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(a) = t.get(value) {
        return Arc::clone(a);
    }
    let a = make(value);
    if t.len() < INTERN_MAX {
        t.insert(Arc::clone(&a));
    }
    a
}

/// An interned string: flag names, annotation entries and userids repeat on
/// every record, and are stored once.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

impl Name {
    /// The interned `s`.
    pub fn new(s: &str) -> Name {
        static TABLE: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
        Name(intern(&TABLE, s, |s: &str| Arc::from(s)))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Name {
    fn default() -> Name {
        Name::new("")
    }
}

impl std::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Name {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name::new(s)
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Name::new(&s))
    }
}

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

/// The last `N` values remembered, oldest replaced first: for the few
/// annotation names every record of a command repeats, a compare instead of
/// a lookup in a shared table.
#[derive(Debug)]
pub struct Recent<T, const N: usize> {
    items: Vec<T>,
    next: usize,
}

impl<T, const N: usize> Default for Recent<T, N> {
    fn default() -> Self {
        Recent {
            items: Vec::new(),
            next: 0,
        }
    }
}

impl<T, const N: usize> Recent<T, N> {
    /// The first remembered value `matches` accepts.
    pub fn find(&self, matches: impl FnMut(&&T) -> bool) -> Option<&T> {
        self.items.iter().find(matches)
    }

    /// Remember `item`, forgetting the oldest when `N` are remembered.
    pub fn remember(&mut self, item: T) {
        if self.items.len() < N {
            self.items.push(item);
        } else {
            self.items[self.next] = item;
            self.next = (self.next + 1) % N;
        }
    }
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
/// serialized as the list of [`super::RecordAnnotation`] it holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PackedAnnotations(Option<Box<[u8]>>);

impl PackedAnnotations {
    /// Pack `items`.
    pub fn new(items: impl IntoIterator<Item = super::RecordAnnotation>) -> PackedAnnotations {
        let items: Vec<super::RecordAnnotation> = items.into_iter().collect();
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
    pub fn iter(&self) -> impl Iterator<Item = super::RecordAnnotation> + '_ {
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
            Some(super::RecordAnnotation {
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
            Vec::<super::RecordAnnotation>::deserialize(d)?,
        ))
    }
}

/// A record's flags, in wire order: an interned list, so the records that
/// share a flag set (most of them) share one allocation.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Flags(Arc<[Name]>);

impl Flags {
    /// The interned list of these flags.
    pub fn new<S: AsRef<str>>(flags: impl IntoIterator<Item = S>) -> Flags {
        static TABLE: OnceLock<Mutex<HashSet<Arc<[Name]>>>> = OnceLock::new();
        let names: Vec<Name> = flags.into_iter().map(|f| Name::new(f.as_ref())).collect();
        Flags(intern(&TABLE, &names[..], |n: &[Name]| Arc::from(n)))
    }
}

impl Default for Flags {
    fn default() -> Flags {
        Flags::new(std::iter::empty::<&str>())
    }
}

impl std::ops::Deref for Flags {
    type Target = [Name];
    fn deref(&self) -> &[Name] {
        &self.0
    }
}

impl<const N: usize> PartialEq<[&str; N]> for Flags {
    fn eq(&self, other: &[&str; N]) -> bool {
        self.0.len() == N && self.0.iter().zip(other).all(|(a, b)| a.as_str() == *b)
    }
}

impl PartialEq<[&str]> for Flags {
    fn eq(&self, other: &[&str]) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| a.as_str() == *b)
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flags, D::Error> {
        let v = Vec::<Name>::deserialize(d)?;
        Ok(Flags::new(v.iter().map(|n| n.as_str())))
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
    fn guids_parse_only_lower_case_hex_and_print_back() {
        let hex = crate::store::sha1_hex(b"hello");
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
        let hex = crate::store::sha1_hex(b"hello");
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
        let hex = crate::store::sha1_hex(b"a");
        let mut s = GuidSet::default();
        assert!(s.insert(hex.clone()));
        assert!(!s.insert(hex.as_str()));
        assert!(!s.insert("not a guid"));
        assert!(s.contains(&hex) && s.contains(hex.as_str()));
        let other = crate::store::sha1_hex(b"b");
        s.extend(vec![other.clone(), hex.clone()]);
        assert!(s.contains(&other) && s.len() == 2);
        assert!(s.remove(&other) && s.len() == 1);
        assert!(!s.contains(&hex.to_ascii_uppercase()));
        assert_eq!(s.len(), 1);
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("[\"{hex}\"]"));
    }

    #[test]
    fn names_and_flag_lists_are_shared() {
        let a = Name::new("\\Seen");
        let b = Name::new("\\Seen");
        assert!(Arc::ptr_eq(&a.0, &b.0));
        let f = Flags::new(["\\Seen", "$Label"]);
        let g = Flags::new(vec!["\\Seen".to_owned(), "$Label".to_owned()]);
        assert!(Arc::ptr_eq(&f.0, &g.0));
        assert_eq!(f.len(), 2);
        assert_eq!(f[1], "$Label");
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"["\\Seen","$Label"]"#);
        assert_eq!(serde_json::from_str::<Flags>(&json).unwrap(), f);
    }

    #[test]
    fn packed_annotations_read_back_as_given() {
        use crate::store::RecordAnnotation;
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
    fn a_record_stays_small() {
        assert_eq!(std::mem::size_of::<crate::store::Record>(), 96);
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
