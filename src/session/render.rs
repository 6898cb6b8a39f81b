//! Backup contents as the `*` data items a target prints: backupd's
//! (`backup/lcb_indexr.c`) or sync_server's (`sync_prepare_dlists`), one
//! printer with a field table per [`Dialect`].

use bytes::Bytes;

use crate::dlist::Value;
use crate::proto::{Annotation, Reply};
use crate::store::{Mailbox, Quota, Record, Seen, Sieve, UserBackup};

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

/// Which server's printer: backupd's (`backup/lcb_indexr.c`) or sync_server's
/// (`sync_prepare_dlists`). They print the same fields in another order, and
/// sync_server leaves out some that are empty; the tables below say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Backupd,
    SyncServer,
}

/// A `* MAILBOX` field.
#[derive(Debug, Clone, Copy)]
enum M {
    UniqueId,
    MboxName,
    MboxType,
    LastUid,
    HighestModseq,
    RecentUid,
    RecentTime,
    LastAppendDate,
    Pop3LastLogin,
    Pop3ShowAfter,
    UidValidity,
    Partition,
    Acl,
    Options,
    SyncCrc,
    SyncCrcAnnot,
    QuotaRoot,
    XConvModseq,
    CreatedModseq,
    FolderModseq,
}

/// A `RECORD` field.
#[derive(Debug, Clone, Copy)]
enum R {
    Uid,
    Modseq,
    LastUpdated,
    InternalDate,
    Guid,
    Size,
    Flags,
}

impl Dialect {
    /// The `* MAILBOX` fields in print order (ANNOTATIONS and RECORD follow).
    fn mailbox_fields(self) -> &'static [M] {
        use M::*;
        match self {
            Dialect::Backupd => &[
                UniqueId,
                MboxName,
                MboxType,
                LastUid,
                HighestModseq,
                RecentUid,
                RecentTime,
                LastAppendDate,
                Pop3LastLogin,
                Pop3ShowAfter,
                UidValidity,
                Partition,
                Acl,
                Options,
                SyncCrc,
                SyncCrcAnnot,
                QuotaRoot,
                XConvModseq,
            ],
            // No `QUOTAROOT NIL`; the CRCs after MBOXNAME.
            Dialect::SyncServer => &[
                UniqueId,
                MboxName,
                MboxType,
                SyncCrc,
                SyncCrcAnnot,
                LastUid,
                HighestModseq,
                RecentUid,
                RecentTime,
                LastAppendDate,
                Pop3LastLogin,
                Pop3ShowAfter,
                XConvModseq,
                UidValidity,
                Partition,
                Acl,
                Options,
                CreatedModseq,
                FolderModseq,
            ],
        }
    }

    /// The `RECORD` fields in print order (ANNOTATIONS follow).
    fn record_fields(self) -> &'static [R] {
        use R::*;
        match self {
            Dialect::Backupd => &[Uid, Modseq, LastUpdated, InternalDate, Guid, Size, Flags],
            // FLAGS before INTERNALDATE.
            Dialect::SyncServer => &[Uid, Modseq, LastUpdated, Flags, InternalDate, Size, Guid],
        }
    }
}

/// A mailbox field as `d` prints it; `None`: `d` leaves it out.
fn mailbox_field(m: &Mailbox, f: M, d: Dialect) -> Option<(&'static str, Value)> {
    let replica = d == Dialect::SyncServer;
    Some(match f {
        M::UniqueId => ("UNIQUEID", Value::atom(&m.uniqueid)),
        M::MboxName => ("MBOXNAME", Value::atom(&m.name)),
        // backupd prints `MBOXTYPE NIL`; sync_server nothing.
        M::MboxType => match m.mboxtype.as_deref() {
            Some(t) => ("MBOXTYPE", Value::atom(t)),
            None if replica => return None,
            None => ("MBOXTYPE", Value::Nil),
        },
        M::LastUid => ("LAST_UID", num(m.last_uid)),
        M::HighestModseq => ("HIGHESTMODSEQ", num(m.highestmodseq)),
        M::RecentUid => ("RECENTUID", num(m.recentuid)),
        M::RecentTime => ("RECENTTIME", date(m.recenttime)),
        M::LastAppendDate => ("LAST_APPENDDATE", date(m.last_appenddate)),
        M::Pop3LastLogin => ("POP3_LAST_LOGIN", date(m.pop3_last_login)),
        M::Pop3ShowAfter => ("POP3_SHOW_AFTER", date(m.pop3_show_after)),
        M::UidValidity => ("UIDVALIDITY", num(m.uidvalidity)),
        M::Partition => ("PARTITION", Value::atom(&m.partition)),
        M::Acl => ("ACL", Value::Atom(m.acl.clone())),
        M::Options => ("OPTIONS", Value::atom(&m.options)),
        M::SyncCrc => ("SYNC_CRC", num(m.sync_crc)),
        M::SyncCrcAnnot => ("SYNC_CRC_ANNOT", num(m.sync_crc_annot)),
        M::QuotaRoot => ("QUOTAROOT", Value::Nil),
        // sync_server prints XCONVMODSEQ only when set.
        M::XConvModseq if replica && m.xconvmodseq == 0 => return None,
        M::XConvModseq => ("XCONVMODSEQ", num(m.xconvmodseq)),
        // sync_server prints these (as last sent) when nonzero.
        M::CreatedModseq => ("CREATEDMODSEQ", num(m.createdmodseq.filter(|&n| n != 0)?)),
        M::FolderModseq => ("FOLDERMODSEQ", num(m.foldermodseq.filter(|&n| n != 0)?)),
    })
}

/// A record's flags as `d` prints them: backupd in stored order with
/// `\Expunged` last; sync_server in `sync_print_flags` order, `\Expunged`
/// between `\Draft` and `\Seen`, then the keywords.
fn record_flags(r: &Record, d: Dialect) -> Vec<Value> {
    if d == Dialect::Backupd {
        let mut flags: Vec<Value> = r.flags.iter().map(|f| flag(f)).collect();
        if r.expunged {
            flags.push(flag("\\Expunged"));
        }
        return flags;
    }
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
    flags
}

fn record(r: &Record, d: Dialect) -> Value {
    let mut flags = Some(record_flags(r, d));
    let mut items: Vec<(&str, Value)> = d
        .record_fields()
        .iter()
        .map(|f| match f {
            R::Uid => ("UID", num(r.uid)),
            R::Modseq => ("MODSEQ", num(r.modseq)),
            R::LastUpdated => ("LAST_UPDATED", date(r.last_updated)),
            R::InternalDate => ("INTERNALDATE", date(r.internaldate)),
            R::Guid => ("GUID", Value::atom(r.guid.to_hex())),
            R::Size => ("SIZE", num(r.size)),
            R::Flags => ("FLAGS", Value::List(flags.take().unwrap_or_default())),
        })
        .collect();
    if let Some(a) = record_annotations(r) {
        items.push(("ANNOTATIONS", a));
    }
    kv(items)
}

/// `* MAILBOX %(…)` in `d`'s field order; with RECORD for `GET FULLMAILBOX`
/// (sync_server's in UID order).
pub fn mailbox(m: &Mailbox, with_records: bool, d: Dialect) -> Value {
    let mut items: Vec<(&str, Value)> = d
        .mailbox_fields()
        .iter()
        .filter_map(|&f| mailbox_field(m, f, d))
        .collect();
    if !m.annotations.is_empty() {
        items.push(("ANNOTATIONS", annotations(&m.annotations)));
    }
    if with_records {
        let mut records: Vec<&Record> = m.records.iter().collect();
        if d == Dialect::SyncServer {
            records.sort_by_key(|r| r.uid);
        }
        items.push((
            "RECORD",
            Value::List(records.into_iter().map(|r| record(r, d)).collect()),
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

/// `* QUOTA %(ROOT … LIMIT … STORAGE … MODSEQ …)` as sync_server's
/// `print_quota` gives it: the limits in the order they were sent.
pub fn quota(root: &str, q: &Quota) -> Value {
    let mut items: Vec<(crate::dlist::Key, Value)> = vec![("ROOT".into(), Value::atom(root))];
    items.extend(
        q.limits
            .iter()
            .map(|(r, l)| (r.as_str().into(), Value::num(*l))),
    );
    items.push(("MODSEQ".into(), Value::num(q.modseq)));
    Value::KvList(items)
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

/// The `* SEEN`, `* LSUB` and (with `with_sieve`) `* SIEVE` lines of a user.
pub fn meta(b: &UserBackup, with_sieve: bool, replies: &mut Vec<Reply>) {
    for (uniqueid, s) in &b.seen {
        replies.push(Reply::Data("SEEN".into(), seen(uniqueid, s)));
    }
    if !b.subscriptions.is_empty() {
        replies.push(Reply::Data(
            "LSUB".into(),
            Value::List(b.subscriptions.iter().map(Value::atom).collect()),
        ));
    }
    if with_sieve {
        for s in &b.sieve {
            replies.push(Reply::Data("SIEVE".into(), sieve(s)));
        }
    }
}
