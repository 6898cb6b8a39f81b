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
/// sync_server leaves out some that are empty: [`Dialect::mailbox_keys`] and
/// [`Dialect::record_keys`] are the orders, [`mailbox_value`] the omissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Backupd,
    SyncServer,
}

impl Dialect {
    /// The `* MAILBOX` keys in print order, as on the wire (ANNOTATIONS and
    /// RECORD follow). sync_server prints the CRCs after MBOXNAME, QUOTAROOT
    /// only when the mailbox has one (never `QUOTAROOT NIL`), and
    /// CREATEDMODSEQ/FOLDERMODSEQ as last sent (`sync_prepare_dlists`,
    /// `imap/sync_support.c` 1938-1950 at 3.6.1).
    fn mailbox_keys(self) -> &'static str {
        match self {
            Dialect::Backupd => {
                "UNIQUEID MBOXNAME MBOXTYPE LAST_UID HIGHESTMODSEQ RECENTUID \
                RECENTTIME LAST_APPENDDATE POP3_LAST_LOGIN POP3_SHOW_AFTER UIDVALIDITY PARTITION \
                ACL OPTIONS SYNC_CRC SYNC_CRC_ANNOT QUOTAROOT XCONVMODSEQ"
            }
            Dialect::SyncServer => {
                "UNIQUEID MBOXNAME MBOXTYPE SYNC_CRC SYNC_CRC_ANNOT LAST_UID \
                HIGHESTMODSEQ RECENTUID RECENTTIME LAST_APPENDDATE POP3_LAST_LOGIN POP3_SHOW_AFTER \
                XCONVMODSEQ UIDVALIDITY PARTITION ACL OPTIONS QUOTAROOT CREATEDMODSEQ FOLDERMODSEQ"
            }
        }
    }

    /// The `RECORD` keys in print order (ANNOTATIONS follow): sync_server
    /// prints FLAGS before INTERNALDATE.
    fn record_keys(self) -> &'static str {
        match self {
            Dialect::Backupd => "UID MODSEQ LAST_UPDATED INTERNALDATE GUID SIZE FLAGS",
            Dialect::SyncServer => "UID MODSEQ LAST_UPDATED FLAGS INTERNALDATE SIZE GUID",
        }
    }
}

/// A mailbox's value for `key` as `d` prints it; `None`: `d` leaves it out.
fn mailbox_value(m: &Mailbox, key: &str, d: Dialect) -> Option<Value> {
    let replica = d == Dialect::SyncServer;
    Some(match key {
        "UNIQUEID" => Value::atom(&m.uniqueid),
        "MBOXNAME" => Value::atom(&m.name),
        // backupd prints `MBOXTYPE NIL`; sync_server nothing.
        "MBOXTYPE" => match m.mboxtype.as_deref() {
            Some(t) => Value::atom(t),
            None if replica => return None,
            None => Value::Nil,
        },
        "LAST_UID" => num(m.last_uid),
        "HIGHESTMODSEQ" => num(m.highestmodseq),
        "RECENTUID" => num(m.recentuid),
        "RECENTTIME" => date(m.recenttime),
        "LAST_APPENDDATE" => date(m.last_appenddate),
        "POP3_LAST_LOGIN" => date(m.pop3_last_login),
        "POP3_SHOW_AFTER" => date(m.pop3_show_after),
        "UIDVALIDITY" => num(m.uidvalidity),
        "PARTITION" => Value::atom(&m.partition),
        "ACL" => Value::Atom(m.acl.clone()),
        "OPTIONS" => Value::atom(&m.options),
        "SYNC_CRC" => num(m.sync_crc),
        "SYNC_CRC_ANNOT" => num(m.sync_crc_annot),
        // backupd prints `QUOTAROOT NIL` (it keeps no quota); sync_server the
        // mailbox's root, when it has one.
        "QUOTAROOT" if replica => Value::atom(m.quotaroot.as_deref()?),
        "QUOTAROOT" => Value::Nil,
        // sync_server prints XCONVMODSEQ only when set.
        "XCONVMODSEQ" if replica && m.xconvmodseq == 0 => return None,
        "XCONVMODSEQ" => num(m.xconvmodseq),
        // sync_server prints these (as last sent) when nonzero.
        "CREATEDMODSEQ" => num(m.createdmodseq.filter(|&n| n != 0)?),
        "FOLDERMODSEQ" => num(m.foldermodseq.filter(|&n| n != 0)?),
        _ => return None,
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
        .record_keys()
        .split_ascii_whitespace()
        .filter_map(|key| {
            let v = match key {
                "UID" => num(r.uid),
                "MODSEQ" => num(r.modseq),
                "LAST_UPDATED" => date(r.last_updated),
                "INTERNALDATE" => date(r.internaldate),
                "GUID" => Value::atom(r.guid.to_hex()),
                "SIZE" => num(r.size),
                "FLAGS" => Value::List(flags.take().unwrap_or_default()),
                _ => return None,
            };
            Some((key, v))
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
        .mailbox_keys()
        .split_ascii_whitespace()
        .filter_map(|key| Some((key, mailbox_value(m, key, d)?)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of both orders names a value (a typo in an order would
    /// silently drop a field).
    #[test]
    fn every_key_in_the_orders_is_known() {
        let m = Mailbox {
            mboxtype: Some("x".into()),
            xconvmodseq: 1,
            createdmodseq: Some(1),
            foldermodseq: Some(1),
            quotaroot: Some("user.x".into()),
            ..Mailbox::default()
        };
        for d in [Dialect::Backupd, Dialect::SyncServer] {
            for key in d.mailbox_keys().split_ascii_whitespace() {
                assert!(mailbox_value(&m, key, d).is_some(), "{d:?} {key}");
            }
            let Value::KvList(items) = record(&Record::default(), d) else {
                panic!("a record is a kvlist");
            };
            assert_eq!(items.len(), 7, "{d:?}");
        }
    }

    /// sync_server prints QUOTAROOT between OPTIONS and CREATEDMODSEQ when
    /// the mailbox has a root, and nothing when not; backupd always NIL.
    #[test]
    fn quotaroot_as_each_target_prints_it() {
        let keys = |m: &Mailbox, d| {
            let Value::KvList(items) = mailbox(m, false, d) else {
                panic!("a mailbox is a kvlist");
            };
            items
                .into_iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect::<Vec<_>>()
        };
        let mut m = Mailbox {
            options: "P".into(),
            createdmodseq: Some(1),
            ..Mailbox::default()
        };
        let plain = keys(&m, Dialect::SyncServer);
        assert!(
            !plain.iter().any(|k| k.starts_with("QUOTAROOT")),
            "{plain:?}"
        );
        m.quotaroot = Some("user.olga".into());
        let rooted = keys(&m, Dialect::SyncServer);
        let at = |k: &str| rooted.iter().position(|x| x.starts_with(k)).unwrap();
        assert_eq!(at("OPTIONS") + 1, at("QUOTAROOT"), "{rooted:?}");
        assert_eq!(at("QUOTAROOT") + 1, at("CREATEDMODSEQ"), "{rooted:?}");
        assert!(rooted[at("QUOTAROOT")].contains("user.olga"), "{rooted:?}");
        let backupd = keys(&m, Dialect::Backupd);
        assert!(backupd.iter().any(|k| k == "QUOTAROOT=Nil"), "{backupd:?}");
    }
}
