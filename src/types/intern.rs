//! Interned values: [`Name`], a string stored once however many records use
//! it (flag names, annotation entries, userids); [`Flags`], an interned list
//! of flag names; [`Recent`], the last few values met, compared before any
//! lookup in a shared table.

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Distinct values an interner keeps; past this, values are still shared
/// where they are already interned, and new ones are simply allocated (so a
/// peer sending endless distinct names cannot grow the table without bound).
pub(super) const INTERN_MAX: usize = 65_536;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
