//! [`Value`]: one dlist node, mirroring Cyrus `enum dlist_t` where it matters on the wire.

use bytes::Bytes;

/// One dlist value as it travels on the wire.
///
/// Cyrus distinguishes more types internally (num32, num64, date, hex, guid, buf);
/// on the wire they are all atoms, quoted strings or literals, so they are all
/// [`Value::Atom`] here and are interpreted by whoever reads them
/// ([`Value::as_u64`], [`Value::as_str`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// The bare atom `NIL`: a null value.
    Nil,
    /// A string: printed as an atom, a quoted string or a literal, whichever fits.
    Atom(Bytes),
    /// A flag such as `\Seen`, printed raw (the bytes include the backslash).
    Flag(Bytes),
    /// `( … )`: values without keys.
    List(Vec<Value>),
    /// `%( … )`: values with keys, in wire order.
    KvList(Vec<(Key, Value)>),
    /// `%{partition guid size}` followed by the raw bytes: a message body
    /// (boxed: it is the largest variant, and rare next to atoms and lists).
    File(Box<File>),
}

/// A kvlist key: a short UTF-8 string. Keys up to [`Key::INLINE`] bytes (every
/// key Cyrus sends) are stored inline, so decoding a kvlist allocates nothing
/// per key. Reads as a `&str` through `Deref`.
#[derive(Clone)]
pub struct Key(KeyRepr);

#[derive(Clone)]
enum KeyRepr {
    Inline { len: u8, buf: [u8; Key::INLINE] },
    Heap(Box<str>),
}

impl Key {
    /// Longest key stored without a heap allocation.
    pub const INLINE: usize = 22;

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Only valid UTF-8 is ever stored inline (see `From<&str>`).
            KeyRepr::Inline { len, buf } => {
                std::str::from_utf8(&buf[..usize::from(*len)]).unwrap_or_default()
            }
            KeyRepr::Heap(s) => s,
        }
    }

    /// The key's bytes (no UTF-8 check).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, buf } => &buf[..usize::from(*len)],
            KeyRepr::Heap(s) => s.as_bytes(),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        if s.len() <= Key::INLINE {
            let mut buf = [0u8; Key::INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            Key(KeyRepr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Key(KeyRepr::Heap(s.into()))
        }
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        if s.len() <= Key::INLINE {
            Key::from(s.as_str())
        } else {
            Key(KeyRepr::Heap(s.into_boxed_str()))
        }
    }
}

impl std::ops::Deref for Key {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Key {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file literal: a message body with the partition and GUID the client named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Replica partition name (`default`).
    pub partition: String,
    /// The GUID as sent (40 hex digits when the client is well behaved).
    pub guid: String,
    /// The body bytes, exactly as sent.
    pub data: Bytes,
}

impl Value {
    /// A string value from anything byte-like.
    pub fn atom(s: impl AsRef<[u8]>) -> Value {
        Value::Atom(Bytes::copy_from_slice(s.as_ref()))
    }

    /// A decimal number as an atom.
    pub fn num(n: u64) -> Value {
        Value::Atom(Bytes::from(n.to_string()))
    }

    /// The string bytes, when this is a string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Atom(b) => Some(b),
            _ => None,
        }
    }

    /// The string as UTF-8, when this is a string and valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The value as an unsigned decimal; like Cyrus, the whole string must parse.
    pub fn as_u64(&self) -> Option<u64> {
        let s = self.as_str()?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }

    /// The items of a list (`( … )`).
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// The pairs of a kvlist (`%( … )`).
    pub fn as_kvlist(&self) -> Option<&[(Key, Value)]> {
        match self {
            Value::KvList(items) => Some(items),
            _ => None,
        }
    }

    /// The first child of a kvlist with this key (keys compare case-insensitively,
    /// as Cyrus `dlist_getchild` does).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_kvlist()?
            .iter()
            .find(|(k, _)| k.as_bytes().eq_ignore_ascii_case(key.as_bytes()))
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_inline_and_on_the_heap_read_back() {
        assert_eq!(std::mem::size_of::<Key>(), 24);
        assert!(std::mem::size_of::<Value>() <= 40);
        let short = Key::from("LAST_UPDATED");
        let long = Key::from("K".repeat(Key::INLINE + 1));
        let edge = Key::from("é".repeat(Key::INLINE / 2));
        assert_eq!(short.as_str(), "LAST_UPDATED");
        assert_eq!(long.as_str(), "K".repeat(Key::INLINE + 1));
        assert_eq!(edge.as_str(), "é".repeat(Key::INLINE / 2));
        assert!(matches!(short.0, KeyRepr::Inline { .. }));
        assert!(matches!(long.0, KeyRepr::Heap(_)));
        assert_eq!(short, "LAST_UPDATED");
        assert_eq!(
            format!("{short:?} {long}"),
            format!("\"LAST_UPDATED\" {}", "K".repeat(23))
        );
        let v = Value::KvList(vec![(short, Value::num(7))]);
        assert_eq!(v.get("last_updated").and_then(Value::as_u64), Some(7));
    }
}
