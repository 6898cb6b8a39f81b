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

/// A record's `ANNOTATIONS` list (unpacked from the store), if it has any.
fn record_annotations(r: &Record) -> Option<Value> {
    if r.annotations.is_empty() {
        return None;
    }
    let a: Vec<Annotation> = r.annotations.iter().map(|a| a.to_annotation()).collect();
    Some(annotations(&a))
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
    if let Some(a) = record_annotations(r) {
        items.push(("ANNOTATIONS", a));
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

/// A record as sync_server prints it (`sync_prepare_dlists`): FLAGS before
/// INTERNALDATE, system flags in `sync_print_flags` order with `\Expunged`
/// between `\Draft` and `\Seen`.
fn replica_record(r: &Record) -> Value {
    const ORDER: [&str; 4] = ["\\Deleted", "\\Answered", "\\Flagged", "\\Draft"];
    let has = |f: &str| r.flags.iter().any(|x| x.eq_ignore_ascii_case(f));
    let mut flags: Vec<Value> = ORDER.iter().filter(|f| has(f)).map(|f| flag(f)).collect();
    if r.expunged {
        flags.push(flag("\\Expunged"));
    }
    if has("\\Seen") {
        flags.push(flag("\\Seen"));
    }
    flags.extend(
        r.flags
            .iter()
            .filter(|f| {
                !ORDER.iter().any(|o| o.eq_ignore_ascii_case(f))
                    && !f.eq_ignore_ascii_case("\\Seen")
                    && !f.eq_ignore_ascii_case("\\Expunged")
            })
            .map(|f| flag(f)),
    );
    let mut items = vec![
        ("UID", num(r.uid)),
        ("MODSEQ", num(r.modseq)),
        ("LAST_UPDATED", date(r.last_updated)),
        ("FLAGS", Value::List(flags)),
        ("INTERNALDATE", date(r.internaldate)),
        ("SIZE", num(r.size)),
        ("GUID", Value::atom(r.guid.to_hex())),
    ];
    if let Some(a) = record_annotations(r) {
        items.push(("ANNOTATIONS", a));
    }
    kv(items)
}

/// `* MAILBOX %(…)` as sync_server prints it (`sync_prepare_dlists`): no
/// `MBOXTYPE NIL` or `QUOTAROOT NIL`, the CRCs after MBOXNAME, XCONVMODSEQ only
/// when set, CREATEDMODSEQ/FOLDERMODSEQ as last sent; RECORD (in UID order)
/// for `GET FULLMAILBOX`.
pub fn replica_mailbox(m: &Mailbox, with_records: bool) -> Value {
    let mut items = vec![
        ("UNIQUEID", Value::atom(&m.uniqueid)),
        ("MBOXNAME", Value::atom(&m.name)),
    ];
    if let Some(t) = m.mboxtype.as_deref() {
        items.push(("MBOXTYPE", Value::atom(t)));
    }
    items.extend([
        ("SYNC_CRC", num(m.sync_crc)),
        ("SYNC_CRC_ANNOT", num(m.sync_crc_annot)),
        ("LAST_UID", num(m.last_uid)),
        ("HIGHESTMODSEQ", num(m.highestmodseq)),
        ("RECENTUID", num(m.recentuid)),
        ("RECENTTIME", date(m.recenttime)),
        ("LAST_APPENDDATE", date(m.last_appenddate)),
        ("POP3_LAST_LOGIN", date(m.pop3_last_login)),
        ("POP3_SHOW_AFTER", date(m.pop3_show_after)),
    ]);
    if m.xconvmodseq != 0 {
        items.push(("XCONVMODSEQ", num(m.xconvmodseq)));
    }
    items.extend([
        ("UIDVALIDITY", num(m.uidvalidity)),
        ("PARTITION", Value::atom(&m.partition)),
        ("ACL", Value::Atom(m.acl.clone())),
        ("OPTIONS", Value::atom(&m.options)),
    ]);
    // sync_server prints them when nonzero.
    for (key, v) in [
        ("CREATEDMODSEQ", m.createdmodseq),
        ("FOLDERMODSEQ", m.foldermodseq),
    ] {
        if let Some(n) = v.filter(|&n| n != 0) {
            items.push((key, num(n)));
        }
    }
    if !m.annotations.is_empty() {
        items.push(("ANNOTATIONS", annotations(&m.annotations)));
    }
    if with_records {
        let mut records: Vec<&Record> = m.records.iter().collect();
        records.sort_by_key(|r| r.uid);
        items.push((
            "RECORD",
            Value::List(records.into_iter().map(replica_record).collect()),
        ));
    }
    kv(items)
}
