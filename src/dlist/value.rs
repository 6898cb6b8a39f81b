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
    KvList(Vec<(String, Value)>),
    /// `%{partition guid size}` followed by the raw bytes: a message body.
    File(File),
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
    pub fn as_kvlist(&self) -> Option<&[(String, Value)]> {
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
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }
}
