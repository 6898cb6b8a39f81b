//! Backup contents as the `*` data items backupd prints (`backup/lcb_indexr.c`).

use bytes::Bytes;

use crate::dlist::Value;
use crate::proto::Annotation;
use crate::store::{Mailbox, Record, Seen, Sieve};

fn kv(items: Vec<(&str, Value)>) -> Value {
    Value::KvList(items.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn num(n: impl Into<u64>) -> Value {
    Value::num(n.into())
}

fn date(n: i64) -> Value {
    Value::num(n.max(0) as u64)
}

fn flag(f: &str) -> Value {
    if f.starts_with('\\') {
        Value::Flag(Bytes::copy_from_slice(f.as_bytes()))
    } else {
        Value::atom(f)
    }
}

fn annotations(a: &[Annotation]) -> Value {
    Value::List(
        a.iter()
            .map(|a| {
                kv(vec![
                    ("ENTRY", Value::atom(&a.entry)),
                    ("USERID", Value::atom(&a.userid)),
                    ("MODSEQ", num(a.modseq)),
                    ("VALUE", Value::Atom(a.value.clone())),
                ])
            })
            .collect(),
    )
}

fn record(r: &Record) -> Value {
    let mut flags: Vec<Value> = r.flags.iter().map(|f| flag(f)).collect();
    if r.expunged {
        flags.push(flag("\\Expunged"));
    }
    let mut items = vec![
        ("UID", num(r.uid)),
        ("MODSEQ", num(r.modseq)),
        ("LAST_UPDATED", date(r.last_updated)),
        ("INTERNALDATE", date(r.internaldate)),
        ("GUID", Value::atom(r.guid.to_hex())),
        ("SIZE", num(r.size)),
        ("FLAGS", Value::List(flags)),
    ];
    if !r.annotations.is_empty() {
        let a: Vec<Annotation> = r.annotations.iter().map(|a| a.to_annotation()).collect();
        items.push(("ANNOTATIONS", annotations(&a)));
    }
    kv(items)
}

/// `* MAILBOX %(…)` in backupd's field order; with RECORD for `GET FULLMAILBOX`.
pub fn mailbox(m: &Mailbox, with_records: bool) -> Value {
    let mut items = vec![
        ("UNIQUEID", Value::atom(&m.uniqueid)),
        ("MBOXNAME", Value::atom(&m.name)),
        (
            "MBOXTYPE",
            m.mboxtype.as_deref().map_or(Value::Nil, Value::atom),
        ),
        ("LAST_UID", num(m.last_uid)),
        ("HIGHESTMODSEQ", num(m.highestmodseq)),
        ("RECENTUID", num(m.recentuid)),
        ("RECENTTIME", date(m.recenttime)),
        ("LAST_APPENDDATE", date(m.last_appenddate)),
        ("POP3_LAST_LOGIN", date(m.pop3_last_login)),
        ("POP3_SHOW_AFTER", date(m.pop3_show_after)),
        ("UIDVALIDITY", num(m.uidvalidity)),
        ("PARTITION", Value::atom(&m.partition)),
        ("ACL", Value::Atom(m.acl.clone())),
        ("OPTIONS", Value::atom(&m.options)),
        ("SYNC_CRC", num(m.sync_crc)),
        ("SYNC_CRC_ANNOT", num(m.sync_crc_annot)),
        ("QUOTAROOT", Value::Nil),
        ("XCONVMODSEQ", num(m.xconvmodseq)),
    ];
    if !m.annotations.is_empty() {
        items.push(("ANNOTATIONS", annotations(&m.annotations)));
    }
    if with_records {
        items.push((
            "RECORD",
            Value::List(m.records.iter().map(record).collect()),
        ));
    }
    kv(items)
}

/// `* SEEN %(…)`.
pub fn seen(uniqueid: &str, s: &Seen) -> Value {
    kv(vec![
        ("UNIQUEID", Value::atom(uniqueid)),
        ("LASTREAD", date(s.lastread)),
        ("LASTUID", num(s.lastuid)),
        ("LASTCHANGE", date(s.lastchange)),
        ("SEENUIDS", Value::Atom(s.seenuids.clone())),
    ])
}

/// `* SIEVE %(…)`; backupd always reports `ISACTIVE 0`.
pub fn sieve(s: &Sieve) -> Value {
    kv(vec![
        ("FILENAME", Value::atom(&s.filename)),
        ("LAST_UPDATE", date(s.last_update)),
        ("GUID", Value::atom(&s.guid)),
        ("ISACTIVE", num(0u32)),
    ])
}
