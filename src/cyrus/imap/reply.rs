//! Typed views of what the server answered: SELECT/EXAMINE, STATUS, LIST/LSUB
//! entries and fetched messages, with the small value readers they share.

use std::collections::BTreeMap;

use super::{proto, Result, Value};

/// What SELECT/EXAMINE reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxInfo {
    pub exists: u32,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: u64,
    /// `[MAILBOXID (...)]` (RFC 8474), the Cyrus uniqueid.
    pub mailboxid: Option<String>,
    pub read_only: bool,
}

/// What STATUS reported (items not asked for are `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusInfo {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub mailboxid: Option<String>,
}

/// One LIST/LSUB entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub attributes: Vec<String>,
    pub delimiter: Option<String>,
    pub name: String,
}

/// One message from [`super::ImapClient::uid_fetch_all`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    /// Unix seconds.
    pub internaldate: i64,
    pub size: u64,
    pub body: Vec<u8>,
    /// Per-message annotations with a value (RFC 5257), keyed `ENTRY ATTRIBUTE`
    /// (`/comment value.priv`); NIL ones left out.
    pub annotations: BTreeMap<String, Vec<u8>>,
}

/// `ANNOTATION (ENTRY (ATTR VALUE …) …)` from a FETCH: the non-NIL values.
pub(super) fn fetched_annotations(val: Option<&Value>) -> Option<BTreeMap<String, Vec<u8>>> {
    let Some(Value::List(items)) = val else {
        return None;
    };
    let mut out = BTreeMap::new();
    for pair in items.chunks(2) {
        let entry = pair[0].as_text()?;
        let Some(Value::List(attrs)) = pair.get(1) else {
            return None;
        };
        for av in attrs.chunks(2) {
            let attr = av[0].as_text()?.to_ascii_lowercase();
            match av.get(1)? {
                Value::Str(b) => {
                    out.insert(format!("{entry} {attr}"), b.clone());
                }
                Value::Atom(a) => {
                    out.insert(format!("{entry} {attr}"), a.clone().into_bytes());
                }
                Value::Nil => {}
                Value::List(_) => return None,
            }
        }
    }
    Some(out)
}

pub(super) fn num<T: std::str::FromStr>(v: Option<&Value>, what: &str) -> Result<T> {
    v.and_then(Value::as_text)
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| proto(format!("bad or missing {what}")))
}

pub(super) fn first_in_list(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::List(items) => items.first()?.as_text(),
        other => other.as_text(),
    }
}

/// One `* LIST`/`* LSUB` response line.
pub(super) fn list_entry(v: &[Value], verb: &str) -> Result<ListEntry> {
    let attributes = match v.get(1) {
        Some(Value::List(a)) => a.iter().filter_map(Value::as_text).collect(),
        _ => return Err(proto(format!("bad {verb} response: {v:?}"))),
    };
    let delimiter = v.get(2).and_then(Value::as_text);
    let name = v
        .get(3)
        .and_then(Value::as_text)
        .ok_or_else(|| proto(format!("bad {verb} response: {v:?}")))?;
    Ok(ListEntry {
        attributes,
        delimiter,
        name,
    })
}

/// One `* STATUS NAME (ITEM VALUE …)` response line.
pub(super) fn parse_status(v: &[Value]) -> Result<StatusInfo> {
    let Some(Value::List(kv)) = v.get(2) else {
        return Err(proto(format!("bad STATUS response: {v:?}")));
    };
    let mut info = StatusInfo::default();
    for pair in kv.chunks(2) {
        let key = pair[0].as_text().unwrap_or_default().to_ascii_uppercase();
        let val = pair.get(1);
        match key.as_str() {
            "MESSAGES" => info.messages = Some(num(val, "MESSAGES")?),
            "UIDNEXT" => info.uidnext = Some(num(val, "UIDNEXT")?),
            "UIDVALIDITY" => info.uidvalidity = Some(num(val, "UIDVALIDITY")?),
            "HIGHESTMODSEQ" => info.highestmodseq = Some(num(val, "HIGHESTMODSEQ")?),
            "MAILBOXID" => info.mailboxid = first_in_list(val),
            _ => {}
        }
    }
    Ok(info)
}
