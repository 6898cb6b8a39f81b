//! What one command asserts once acknowledged ([`Write`]), what one reply shows
//! ([`Read`] and [`Observation`]), taken from the typed commands and replies of
//! [`crate::proto`]. Sans-IO.
//!
//! Only what a later read of the same target can show is kept: a mailbox's
//! identity, counters, ACL, annotations and records (UID, GUID, flags),
//! subscriptions, seen state and sieve scripts. Bodies are kept as the GUIDs of acknowledged records.

use std::collections::BTreeMap;

use crate::dlist::Value;
use crate::mailstate::MessageState;
use crate::proto::{Apply, Command, Get, MailboxUpdate, RecordUpdate, Reply};

/// One record of a mailbox, as a write carried it or a read showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFact {
    /// SHA-1 of the body, 40 lower-case hex digits.
    pub guid: String,
    /// Flags, sorted, without `\Recent` and `\Expunged`.
    pub flags: Vec<String>,
    /// `\Expunged` was among the flags.
    pub expunged: bool,
    /// Per-message annotations the convergence check compares ((entry,
    /// userid) to value), when the write or read was in csync form; `None`
    /// in the final read-back (read over IMAP or from backupd's index).
    pub annotations: Option<Annotations>,
}

/// Compared annotations: (entry, userid) to value.
pub type Annotations = BTreeMap<(String, String), Vec<u8>>;

/// The annotations of `list` the convergence check compares (not those under
/// `/vendor/cmu/cyrus-imapd/`, which Cyrus computes itself).
fn compared_annotations<'a>(
    list: impl IntoIterator<Item = &'a crate::types::Annotation>,
) -> Annotations {
    list.into_iter()
        .filter(|a| crate::mailstate::is_compared_entry(&a.entry))
        .map(|a| {
            (
                (a.entry.to_string(), a.userid.to_string()),
                a.value.to_vec(),
            )
        })
        .collect()
}

impl RecordFact {
    fn from_update(r: &RecordUpdate) -> RecordFact {
        RecordFact {
            guid: r.guid.to_ascii_lowercase(),
            expunged: r.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Expunged")),
            flags: MessageState::normalize_flags(r.flags.iter().cloned()),
            // Every side prints a record's ANNOTATIONS only when it has any.
            annotations: Some(compared_annotations(&r.annotations)),
        }
    }
}

/// A mailbox's state, as an `APPLY MAILBOX` set it or a `* MAILBOX` showed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxFacts {
    /// Internal name (`user.alice.Sent`).
    pub name: String,
    /// Cyrus uniqueid (empty when a read could not show it).
    pub uniqueid: String,
    /// UIDVALIDITY, when carried.
    pub uidvalidity: Option<u32>,
    /// LAST_UID, when carried.
    pub last_uid: Option<u32>,
    /// HIGHESTMODSEQ, when carried.
    pub highestmodseq: Option<u64>,
    /// Records by UID; `None` when the write or read carried no RECORD list
    /// (a `GET MAILBOXES` answer, an intermediate mailbox).
    pub records: Option<BTreeMap<u32, RecordFact>>,
    /// ACL entries (identifier to rights, sorted), when carried.
    pub acl: Option<BTreeMap<String, String>>,
    /// Mailbox annotations the convergence check compares ((entry, userid)
    /// to value); `None` only in the final read-back (not csync).
    pub annotations: Option<Annotations>,
}

impl MailboxFacts {
    /// The facts of one `APPLY MAILBOX` or `* MAILBOX` item.
    pub fn from_update(u: &MailboxUpdate) -> MailboxFacts {
        MailboxFacts {
            name: u.mboxname.clone(),
            uniqueid: u.uniqueid.clone(),
            uidvalidity: u.uidvalidity,
            last_uid: u.last_uid,
            highestmodseq: u.highestmodseq,
            records: u.records.as_ref().map(|rs| {
                rs.iter()
                    .map(|r| (r.uid, RecordFact::from_update(r)))
                    .collect()
            }),
            acl: u
                .acl
                .as_ref()
                .map(|a| crate::mailstate::parse_acl(&String::from_utf8_lossy(a))),
            // Every side prints ANNOTATIONS only when there are any (the
            // client's and sync_server's sync_prepare_dlists, backupd's
            // backup_mailbox_to_dlist, the fake): none printed is none held.
            annotations: Some(compared_annotations(u.annotations.iter().flatten())),
        }
    }
}

/// `APPLY SEEN`, or a `* SEEN` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFacts {
    /// The mailbox's uniqueid.
    pub uniqueid: String,
    /// LASTUID.
    pub lastuid: u32,
    /// LASTCHANGE, Unix seconds.
    pub lastchange: i64,
    /// SEENUIDS, as sent.
    pub seenuids: String,
}

/// What an acknowledged command asserts the target now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `APPLY MAILBOX`: the mailbox exists with this state (records merge by UID).
    Mailbox(MailboxFacts),
    /// `APPLY UNMAILBOX`: the mailbox is gone.
    Unmailbox(String),
    /// `APPLY RENAME`: `old` is gone; `new` holds what `old` held.
    Rename {
        /// Old internal name.
        old: String,
        /// New internal name.
        new: String,
    },
    /// `APPLY SUB` (`on`) or `APPLY UNSUB`.
    Sub {
        /// Userid.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// Subscribed afterwards.
        on: bool,
    },
    /// `APPLY SEEN`.
    Seen {
        /// Userid.
        user: String,
        /// The seen record.
        seen: SeenFacts,
    },
    /// `APPLY SIEVE` (`Some(last_update)`) or `APPLY UNSIEVE` (`None`).
    Sieve {
        /// Userid.
        user: String,
        /// Script file name.
        filename: String,
        /// LAST_UPDATE of the script, `None` once deleted.
        last_update: Option<i64>,
    },
    /// `APPLY UNUSER`: everything of the user is gone (backupd ignores it; a
    /// checker must then simply stop expecting anything of the user).
    Unuser(String),
    /// `APPLY EXPUNGE`: these UIDs are expunged.
    Expunge {
        /// Internal mailbox name.
        mailbox: String,
        /// UIDs.
        uids: Vec<u32>,
    },
    /// `APPLY MESSAGE`: bodies uploaded (kept only for the catch-up report).
    Message(Vec<String>),
    /// `APPLY QUOTA` (`Some(limits)`) or `APPLY UNQUOTA` (`None`): checked
    /// only on a target that keeps quota (a replica; backupd acknowledges
    /// `APPLY QUOTA` and keeps nothing).
    Quota {
        /// Quota root.
        root: String,
        /// The limits, as [`quota_limits`] gives them; `None` once removed.
        limits: Option<QuotaLimits>,
    },
}

/// A quota's limits: every numeric field but MODSEQ (`LIMIT`, `STORAGE`,
/// `MESSAGE`, ...), sorted by name. sync_client and sync_server encode them
/// with the same function (`sync_encode_quota_limits`), so equal limits are
/// equal fields.
pub type QuotaLimits = Vec<(String, u64)>;

/// `limits` sorted by name.
fn quota_limits(limits: &[(String, u64)]) -> QuotaLimits {
    let mut l = limits.to_vec();
    l.sort();
    l
}

/// What a command reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `GET USER u`: every mailbox of `u`, its subscriptions, seen state, sieve.
    User(String),
    /// `GET META u`: subscriptions, seen state, sieve of `u`.
    Meta(String),
    /// `GET MAILBOXES (…)`: these mailboxes.
    Mailboxes(Vec<String>),
    /// `GET FULLMAILBOX m`: `m` with its records.
    FullMailbox(String),
    /// `GET QUOTA root`: the quota of `root`, if there is one.
    Quota(String),
    /// `APPLY RESERVE`: which of `guids` the target lacks, for `mailboxes`.
    Reserve {
        /// The mailboxes named.
        mailboxes: Vec<String>,
        /// The GUIDs asked about.
        guids: Vec<String>,
    },
}

/// A command the checker cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// It changes the target.
    Write(Write),
    /// It reads the target.
    Read(Read),
}

impl Call {
    /// What `cmd` writes or reads; `None` for everything else (NOOP, AUTHENTICATE, …).
    pub fn of(cmd: &Command) -> Option<Call> {
        Some(match cmd {
            Command::Get(g) => Call::Read(match g {
                Get::User(Some(u)) => Read::User(u.clone()),
                Get::Meta(u) => Read::Meta(u.clone()),
                Get::Mailboxes(names) => Read::Mailboxes(names.clone()),
                Get::FullMailbox(m) => Read::FullMailbox(m.clone()),
                Get::Quota(root) => Read::Quota(root.clone()),
                _ => return None,
            }),
            Command::Apply(a) => match a {
                Apply::Reserve {
                    mailboxes, guids, ..
                } => Call::Read(Read::Reserve {
                    mailboxes: mailboxes.clone(),
                    guids: guids.iter().map(|g| g.to_ascii_lowercase()).collect(),
                }),
                Apply::Mailbox(u) => Call::Write(Write::Mailbox(MailboxFacts::from_update(u))),
                Apply::Unmailbox(m) => Call::Write(Write::Unmailbox(m.clone())),
                Apply::Rename { old, new, .. } => Call::Write(Write::Rename {
                    old: old.clone(),
                    new: new.clone(),
                }),
                Apply::Sub { user, mailbox } | Apply::Unsub { user, mailbox } => {
                    Call::Write(Write::Sub {
                        user: user.clone(),
                        mailbox: mailbox.clone(),
                        on: matches!(a, Apply::Sub { .. }),
                    })
                }
                Apply::Seen(s) => Call::Write(Write::Seen {
                    user: s.user.clone(),
                    seen: SeenFacts {
                        uniqueid: s.uniqueid.clone(),
                        lastuid: s.lastuid,
                        lastchange: s.lastchange,
                        seenuids: String::from_utf8_lossy(&s.seenuids).into_owned(),
                    },
                }),
                Apply::Sieve {
                    user,
                    filename,
                    last_update,
                    ..
                } => Call::Write(Write::Sieve {
                    user: user.clone(),
                    filename: filename.clone(),
                    last_update: Some(*last_update),
                }),
                Apply::Unsieve { user, filename } => Call::Write(Write::Sieve {
                    user: user.clone(),
                    filename: filename.clone(),
                    last_update: None,
                }),
                Apply::Unuser(u) => Call::Write(Write::Unuser(u.clone())),
                Apply::Expunge { mailbox, uids, .. } => Call::Write(Write::Expunge {
                    mailbox: mailbox.clone(),
                    uids: uids.clone(),
                }),
                Apply::Quota { root, limits, .. } => Call::Write(Write::Quota {
                    root: root.clone(),
                    limits: Some(quota_limits(limits)),
                }),
                Apply::Unquota(root) => Call::Write(Write::Quota {
                    root: root.clone(),
                    limits: None,
                }),
                Apply::Message(files) => Call::Write(Write::Message(
                    files.iter().map(|f| f.guid.to_ascii_lowercase()).collect(),
                )),
                _ => return None,
            },
            _ => return None,
        })
    }
}

impl Call {
    /// `APPLY MAILBOX user.a.X (LAST_UID 2, HIGHESTMODSEQ 5, 2 records)`: the
    /// command's label and what it names, short enough for a report line.
    pub fn summary(&self, label: &str) -> String {
        let what = match self {
            Call::Write(Write::Mailbox(m)) => {
                let num = |n: Option<u64>| n.map_or_else(|| "?".to_owned(), |n| n.to_string());
                format!(
                    "{} (LAST_UID {}, HIGHESTMODSEQ {}{})",
                    m.name,
                    num(m.last_uid.map(u64::from)),
                    num(m.highestmodseq),
                    m.records
                        .as_ref()
                        .map_or_else(String::new, |r| format!(", {} record(s)", r.len()))
                )
            }
            Call::Write(Write::Unmailbox(m))
            | Call::Read(Read::FullMailbox(m) | Read::Quota(m)) => m.clone(),
            Call::Write(Write::Quota { root, limits }) => match limits {
                Some(l) => format!("{root} ({})", describe_quota(l)),
                None => root.clone(),
            },
            Call::Write(Write::Rename { old, new }) => format!("{old} to {new}"),
            Call::Write(Write::Sub { user, mailbox, .. }) => format!("{user} {mailbox}"),
            Call::Write(Write::Seen { user, seen }) => format!(
                "{user} {} (LASTUID {}, SEENUIDS {})",
                seen.uniqueid, seen.lastuid, seen.seenuids
            ),
            Call::Write(Write::Sieve { user, filename, .. }) => format!("{user} {filename}"),
            Call::Write(Write::Unuser(u)) | Call::Read(Read::User(u) | Read::Meta(u)) => u.clone(),
            Call::Write(Write::Expunge { mailbox, uids }) => format!("{mailbox} UIDs {uids:?}"),
            Call::Write(Write::Message(guids)) => format!("({} bodies)", guids.len()),
            Call::Read(Read::Mailboxes(names)) => format!("({})", names.join(" ")),
            Call::Read(Read::Reserve { mailboxes, guids }) => {
                format!("({}) ({} GUIDs)", mailboxes.join(" "), guids.len())
            }
        };
        format!("{label} {what}")
    }
}

/// `STORAGE 100, MESSAGE 10`: limits for a report line (`LIMIT`, the legacy
/// copy of `STORAGE`, left out).
pub fn describe_quota(limits: &[(String, u64)]) -> String {
    let parts: Vec<String> = limits
        .iter()
        .filter(|(k, _)| k != "LIMIT")
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if parts.is_empty() {
        "no limit".to_owned()
    } else {
        parts.join(", ")
    }
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No reply yet.
    Pending,
    /// `OK`.
    Ok,
    /// `NO text`.
    No(String),
    /// `BAD text` or `BYE text`: refused or cut.
    Bad(String),
    /// The connection ended without a complete reply: the command may or may
    /// not have taken effect.
    Unanswered,
}

/// The key a reader gives a data line it could not decode (the relay, for a
/// real server's answer): the whole answer is then not checked.
pub const UNREADABLE: &str = "*UNREADABLE*";

/// What a reply showed: the data lines a read returned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// `* MAILBOX` items, by name.
    pub mailboxes: BTreeMap<String, MailboxFacts>,
    /// `* LSUB` items (`None` when the reply had no LSUB line: an empty list).
    pub subscriptions: Option<Vec<String>>,
    /// `* SEEN` items, by uniqueid.
    pub seen: BTreeMap<String, SeenFacts>,
    /// `* SIEVE` items: file name and LAST_UPDATE.
    pub sieve: BTreeMap<String, i64>,
    /// `* MISSING` GUIDs.
    pub missing: Vec<String>,
    /// `* QUOTA` items: root to limits.
    pub quotas: BTreeMap<String, QuotaLimits>,
    /// Data lines that could not be read: the answer is then not checked
    /// (an absence in it may be a line not understood).
    pub unreadable: Vec<String>,
}

impl Observation {
    /// The data lines of one reply.
    pub fn from_replies(replies: &[Reply]) -> Observation {
        let mut o = Observation::default();
        for r in replies {
            let Reply::Data(key, value) = r else { continue };
            match key.as_str() {
                "MAILBOX" => match crate::proto::MailboxUpdate::from_value(value) {
                    Ok(u) => {
                        let f = MailboxFacts::from_update(&u);
                        o.mailboxes.insert(f.name.clone(), f);
                    }
                    Err(e) => o.unreadable.push(format!("* MAILBOX: {e}")),
                },
                "LSUB" => {
                    let list = o.subscriptions.get_or_insert_with(Vec::new);
                    list.extend(
                        value
                            .as_list()
                            .unwrap_or_default()
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned),
                    );
                }
                "SEEN" => match seen_of(value) {
                    Some(s) => {
                        o.seen.insert(s.uniqueid.clone(), s);
                    }
                    None => o.unreadable.push("* SEEN without its fields".into()),
                },
                "SIEVE" => match (
                    value.get("FILENAME").and_then(Value::as_str),
                    value.get("LAST_UPDATE").and_then(Value::as_u64),
                ) {
                    (Some(f), Some(t)) => {
                        o.sieve
                            .insert(f.to_owned(), i64::try_from(t).unwrap_or(i64::MAX));
                    }
                    _ => o.unreadable.push("* SIEVE without its fields".into()),
                },
                "QUOTA" => match quota_of(value) {
                    Some((root, limits)) => {
                        o.quotas.insert(root, limits);
                    }
                    None => o
                        .unreadable
                        .push("* QUOTA without a ROOT or with a non-number".into()),
                },
                "MISSING" => o.missing.extend(
                    value
                        .as_list()
                        .unwrap_or_default()
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_ascii_lowercase),
                ),
                UNREADABLE => o.unreadable.push(
                    value
                        .as_str()
                        .unwrap_or("a data line that does not decode")
                        .to_owned(),
                ),
                _ => {}
            }
        }
        o
    }
}

fn quota_of(v: &Value) -> Option<(String, QuotaLimits)> {
    let root = v.get("ROOT")?.as_str()?.to_owned();
    let mut limits = Vec::new();
    for (key, val) in v.as_kvlist()? {
        if key.as_str() != "ROOT" && key.as_str() != "MODSEQ" {
            limits.push((key.as_str().to_owned(), val.as_u64()?));
        }
    }
    Some((root, quota_limits(&limits)))
}

fn seen_of(v: &Value) -> Option<SeenFacts> {
    Some(SeenFacts {
        uniqueid: v.get("UNIQUEID")?.as_str()?.to_owned(),
        lastuid: u32::try_from(v.get("LASTUID")?.as_u64()?).ok()?,
        lastchange: i64::try_from(v.get("LASTCHANGE")?.as_u64()?).ok()?,
        seenuids: v
            .get("SEENUIDS")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The reply lines of a response as the checker needs them: the data lines
/// and how it ended.
pub fn outcome_of(replies: &[Reply]) -> Outcome {
    match replies.iter().rev().find(|r| r.is_final()) {
        Some(Reply::Ok(_)) => Outcome::Ok,
        Some(Reply::No(t)) => Outcome::No(t.clone()),
        Some(Reply::Bad(t) | Reply::Bye(t) | Reply::Raw(t)) => Outcome::Bad(t.clone()),
        Some(Reply::Data(..)) | None => Outcome::Unanswered,
    }
}
