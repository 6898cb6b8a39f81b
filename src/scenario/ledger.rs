//! The ledger: every source change a scenario made, and where it ended up.
//!
//! At the end of a run each change is classified against the final source
//! state, the backup and the channel log:
//! - **on backup**: the backup reflects it;
//! - **queued**: not on the backup yet, but a channel log (`log` or `log-run`)
//!   still names its mailbox or user, so a later rolling pass will carry it;
//! - **lost**: neither: nothing will ever bring it to the backup;
//! - **superseded**: a later change undid it on the source (say, an append
//!   whose message was expunged afterwards), so there is nothing to carry;
//! - **acknowledged lost**: the target acknowledged the write that carried it
//!   and a later read showed it missing ([`crate::history`]), whatever the end
//!   state: a catch-up that carried it again healed a loss, it did not undo it.

use serde::Serialize;

use crate::mailstate::MailState;

/// One change made on the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A message appended.
    Append {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// UID the source gave it.
        uid: u32,
        /// SHA-1 of its bytes.
        guid: String,
    },
    /// Flags changed on these UIDs.
    Flags {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// UIDs touched.
        uids: Vec<u32>,
    },
    /// These UIDs expunged.
    Expunge {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// UIDs expunged.
        uids: Vec<u32>,
    },
    /// A mailbox created.
    Create {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
    },
    /// A mailbox deleted.
    Delete {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
    },
    /// A mailbox renamed.
    Rename {
        /// Owner.
        user: String,
        /// Old internal name.
        from: String,
        /// New internal name.
        to: String,
    },
    /// A mailbox annotation set or removed (`SETMETADATA`).
    Metadata {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// The entry (`/private/comment`).
        entry: String,
    },
    /// Per-message annotations changed on these UIDs.
    Annotations {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// UIDs touched.
        uids: Vec<u32>,
    },
    /// A mailbox's ACL changed.
    Acl {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
    },
    /// Quota limits set or removed on a root.
    Quota {
        /// The user.
        user: String,
        /// The quota root (internal name).
        root: String,
    },
    /// A subscription added (`on`) or removed.
    Subscription {
        /// Owner.
        user: String,
        /// Internal mailbox name.
        mailbox: String,
        /// Subscribed afterwards.
        on: bool,
    },
}

impl Change {
    /// The user whose data it changed.
    pub fn user(&self) -> &str {
        match self {
            Change::Append { user, .. }
            | Change::Flags { user, .. }
            | Change::Expunge { user, .. }
            | Change::Create { user, .. }
            | Change::Delete { user, .. }
            | Change::Rename { user, .. }
            | Change::Metadata { user, .. }
            | Change::Annotations { user, .. }
            | Change::Acl { user, .. }
            | Change::Quota { user, .. }
            | Change::Subscription { user, .. } => user,
        }
    }

    /// The internal mailbox names it changed (a quota change: its root).
    pub fn mailboxes(&self) -> Vec<&str> {
        match self {
            Change::Append { mailbox, .. }
            | Change::Flags { mailbox, .. }
            | Change::Expunge { mailbox, .. }
            | Change::Create { mailbox, .. }
            | Change::Delete { mailbox, .. }
            | Change::Metadata { mailbox, .. }
            | Change::Annotations { mailbox, .. }
            | Change::Acl { mailbox, .. }
            | Change::Subscription { mailbox, .. } => vec![mailbox],
            Change::Rename { from, to, .. } => vec![from, to],
            Change::Quota { root, .. } => vec![root],
        }
    }
}

/// One channel log line: its TYPE (upper-cased) and arguments, bare or
/// double-quoted with `\`-escapes (Cyrus quotes a name with a space, a tab,
/// parentheses, `"`, `\`, `{` or `}`: `imap/sync_log.c`).
fn log_line(line: &str) -> Option<(String, Vec<String>)> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut w = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => w.extend(chars.next()),
                    c => w.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                w.push(c);
                chars.next();
            }
        }
        words.push(w);
    }
    let mut words = words.into_iter();
    let verb = words.next()?.to_ascii_uppercase();
    Some((verb, words.collect()))
}

/// Where a change ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// On the backup.
    OnBackup,
    /// Still named by a channel log.
    Queued,
    /// Nowhere: lost.
    Lost,
    /// Undone on the source later.
    Superseded,
    /// The target acknowledged it, then a read showed it missing.
    AcknowledgedLost,
}

/// One ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Scenario step number (1-based; 0 for the set-up).
    pub step: usize,
    /// What changed.
    pub change: Change,
}

/// A classified ledger line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Classified {
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
    /// Where it ended up.
    pub class: Class,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Append {
                mailbox, uid, guid, ..
            } => write!(f, "append {mailbox} UID {uid} ({guid})"),
            Change::Flags { mailbox, uids, .. } => write!(f, "flags {mailbox} UIDs {uids:?}"),
            Change::Expunge { mailbox, uids, .. } => write!(f, "expunge {mailbox} UIDs {uids:?}"),
            Change::Create { mailbox, .. } => write!(f, "create {mailbox}"),
            Change::Delete { mailbox, .. } => write!(f, "delete {mailbox}"),
            Change::Rename { from, to, .. } => write!(f, "rename {from} to {to}"),
            Change::Metadata { mailbox, entry, .. } => write!(f, "metadata {mailbox} {entry}"),
            Change::Annotations { mailbox, uids, .. } => {
                write!(f, "annotations {mailbox} UIDs {uids:?}")
            }
            Change::Quota { root, .. } => write!(f, "quota {root}"),
            Change::Acl { mailbox, .. } => write!(f, "acl {mailbox}"),
            Change::Subscription { mailbox, on, .. } => {
                write!(
                    f,
                    "{} {mailbox}",
                    if *on { "subscribe" } else { "unsubscribe" }
                )
            }
        }
    }
}

/// Classify every entry. `channel_log` is the text of the source's channel
/// `log` and `log-run` together.
///
/// A change is judged where its mailbox is at the end: a later rename of it
/// (or of a folder above it; of an INBOX, only the INBOX itself: Cyrus moves
/// its messages, not its folders) carries it to the new name. A change whose
/// mailbox is deleted later is superseded: a mailbox created again under that
/// name is another, whose UIDs may be new messages'.
pub fn classify(
    entries: &[Entry],
    source: &MailState,
    backup: &MailState,
    channel_log: &str,
) -> Vec<Classified> {
    let changes: Vec<&Change> = entries.iter().map(|e| &e.change).collect();
    entries
        .iter()
        .zip(carried(&changes))
        .map(|(e, (now, deleted))| Classified {
            entry: e.clone(),
            class: if deleted {
                Class::Superseded
            } else {
                class_of(&now, source, backup, channel_log)
            },
        })
        .collect()
}

/// Each change carried forward ([`carried_forward`]) through the later ones.
fn carried(changes: &[&Change]) -> Vec<(Change, bool)> {
    carried_with_names(changes)
        .into_iter()
        .map(|(c, ended, _)| (c, ended))
        .collect()
}

/// [`carried`], with the names each change's mailbox took on the way (after
/// each later rename of it, the last one included).
fn carried_with_names(changes: &[&Change]) -> Vec<(Change, bool, Vec<String>)> {
    // Only renames and deletions move or end a mailbox: index them once.
    let moves: Vec<(usize, &Change)> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| matches!(c, Change::Rename { .. } | Change::Delete { .. }))
        .map(|(i, c)| (i, *c))
        .collect();
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let later = moves.iter().filter(|(j, _)| *j > i).map(|(_, m)| *m);
            carried_forward(c, later)
        })
        .collect()
}

/// `c` with its mailbox carried through the `later` renames of its user, and
/// whether a later deletion ended that mailbox first. A rename carries only
/// its new name (its old name may be taken by another mailbox later); a
/// deletion, a subscription and a quota root are not carried.
fn carried_forward<'a>(
    c: &Change,
    later: impl Iterator<Item = &'a Change>,
) -> (Change, bool, Vec<String>) {
    use crate::types::names::at_or_under;
    let mut now = c.clone();
    let mut names = Vec::new();
    match c {
        // A later rename or deletion of that name is of another mailbox.
        Change::Delete { .. } => return (now, false, names),
        // Cyrus moves no subscription with a rename (docs/history.md), and a
        // quota root's fate in one is Cyrus's choice: both stay by name.
        Change::Subscription { .. } | Change::Quota { .. } => return (now, false, names),
        _ => {}
    }
    for m in later {
        let name: &mut String = match &mut now {
            Change::Append { mailbox, .. }
            | Change::Flags { mailbox, .. }
            | Change::Expunge { mailbox, .. }
            | Change::Create { mailbox, .. }
            | Change::Delete { mailbox, .. }
            | Change::Metadata { mailbox, .. }
            | Change::Annotations { mailbox, .. }
            | Change::Acl { mailbox, .. }
            | Change::Subscription { mailbox, .. } => mailbox,
            Change::Rename { to, .. } => to,
            Change::Quota { root, .. } => root,
        };
        if m.user() != c.user() {
            continue;
        }
        match m {
            // An INBOX rename moves the INBOX's messages, not its folders;
            // its ACL and annotations are copied and the INBOX keeps its own
            // (Cyrus `annotate_rename_mailbox`: "copy here"), so a metadata
            // or ACL change of the INBOX stays judged there.
            Change::Rename { user, from, to }
                if at_or_under(name, from)
                    && (name == from || *from != crate::cyrus::user_inbox(user))
                    && !(*from == crate::cyrus::user_inbox(user)
                        && matches!(c, Change::Metadata { .. } | Change::Acl { .. })) =>
            {
                *name = format!("{to}{}", &name[from.len()..]);
                names.push(name.clone());
            }
            Change::Delete { mailbox, .. } if mailbox == name => return (now, true, names),
            _ => {}
        }
    }
    (now, false, names)
}

fn class_of(c: &Change, source: &MailState, backup: &MailState, log: &str) -> Class {
    let mbox = |state: &MailState, user: &str, name: &str| {
        state
            .users
            .get(user)
            .and_then(|u| u.mailboxes.get(name))
            .cloned()
    };
    // Which channel log lines would still carry the change: a mailbox line
    // naming its mailbox (sync_do_mailboxes sends the whole mailbox), the
    // line of its own kind, or a USER line of its user (sync_do_user sends
    // everything of the user). Not a line of another kind that names the
    // mailbox (SUB, ANNOTATION, QUOTA, UNMAILBOX carry no messages) nor META
    // (seen state, subscriptions and sieve only).
    // Subscriptions and quota go by their own lines, not with a mailbox.
    let by_mailbox = !matches!(c, Change::Subscription { .. } | Change::Quota { .. });
    const CONTENT: [&str; 4] = ["APPEND", "MAILBOX", "DOUBLEMAILBOX", "RENAME"];
    let lines: Vec<(String, Vec<String>)> = log.lines().filter_map(log_line).collect();
    let logged = |user: &str, names: &[&str], own: &[&str]| {
        lines.iter().any(|(verb, args)| {
            let names_one = || args.iter().any(|a| names.contains(&a.as_str()));
            match verb.as_str() {
                "USER" => args.first().is_some_and(|u| u == user),
                v if CONTENT.contains(&v) => by_mailbox && names_one(),
                "META" | "SUB" | "UNSUB" => {
                    own.contains(&verb.as_str())
                        && args.first().is_some_and(|u| u == user)
                        && (verb == "META"
                            || args.get(1).is_some_and(|m| names.contains(&m.as_str())))
                }
                v => own.contains(&v) && names_one(),
            }
        })
    };
    let own: &[&str] = match c {
        Change::Metadata { .. } => &["ANNOTATION"],
        Change::Delete { .. } => &["UNMAILBOX"],
        Change::Quota { .. } => &["QUOTA"],
        Change::Subscription { .. } => &["SUB", "UNSUB", "META"],
        _ => &[],
    };
    let (done, superseded, user, names): (bool, bool, &str, Vec<&str>) = match c {
        Change::Append {
            user,
            mailbox,
            uid,
            guid,
        } => {
            let live = mbox(source, user, mailbox).and_then(|m| m.messages.get(uid).cloned());
            let on = mbox(backup, user, mailbox).and_then(|m| m.messages.get(uid).cloned());
            (
                on.is_some_and(|m| &m.guid == guid),
                live.is_none_or(|m| &m.guid != guid),
                user,
                vec![mailbox],
            )
        }
        Change::Flags {
            user,
            mailbox,
            uids,
        } => {
            let (s, b) = (mbox(source, user, mailbox), mbox(backup, user, mailbox));
            let live: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| s.as_ref().is_some_and(|m| m.messages.contains_key(u)))
                .collect();
            let done = live.iter().all(|u| {
                let sf = s.as_ref().and_then(|m| m.messages.get(u)).map(|m| &m.flags);
                let bf = b.as_ref().and_then(|m| m.messages.get(u)).map(|m| &m.flags);
                sf == bf
            });
            (done, live.is_empty(), user, vec![mailbox])
        }
        Change::Expunge {
            user,
            mailbox,
            uids,
        } => {
            let b = mbox(backup, user, mailbox);
            let done = uids
                .iter()
                .all(|u| b.as_ref().is_none_or(|m| !m.messages.contains_key(u)));
            (done, false, user, vec![mailbox])
        }
        // Done when the backup holds the mailbox the source holds: the same
        // uniqueid (an old mailbox of that name, one a lost delete left, is
        // not it).
        Change::Create { user, mailbox } => {
            let (s, b) = (mbox(source, user, mailbox), mbox(backup, user, mailbox));
            let same = match (s.as_ref().and_then(|m| m.uniqueid.as_ref()), b.as_ref()) {
                (_, None) => false,
                (Some(x), Some(b)) => b.uniqueid.as_ref().is_none_or(|y| y == x),
                (None, Some(_)) => true,
            };
            (same, s.is_none(), user, vec![mailbox])
        }
        Change::Delete { user, mailbox } => (
            mbox(backup, user, mailbox).is_none(),
            mbox(source, user, mailbox).is_some(),
            user,
            vec![mailbox],
        ),
        // Done when the new name is on the backup and the old name is as on
        // the source (a folder may have been created there again since).
        Change::Rename { user, from, to } => (
            mbox(backup, user, to).is_some()
                && mbox(backup, user, from).is_none() == mbox(source, user, from).is_none(),
            mbox(source, user, to).is_none(),
            user,
            vec![from, to],
        ),
        Change::Metadata {
            user,
            mailbox,
            entry,
        } => {
            let value =
                |s: &MailState| mbox(s, user, mailbox).map(|m| m.annotations.get(entry).cloned());
            let (sv, bv) = (value(source), value(backup));
            (sv.is_some() && sv == bv, sv.is_none(), user, vec![mailbox])
        }
        Change::Annotations {
            user,
            mailbox,
            uids,
        } => {
            let (s, b) = (mbox(source, user, mailbox), mbox(backup, user, mailbox));
            let live: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|u| s.as_ref().is_some_and(|m| m.messages.contains_key(u)))
                .collect();
            let done = live.iter().all(|u| {
                let sa = s
                    .as_ref()
                    .and_then(|m| m.messages.get(u))
                    .map(|m| &m.annotations);
                let ba = b
                    .as_ref()
                    .and_then(|m| m.messages.get(u))
                    .map(|m| &m.annotations);
                sa == ba
            });
            (done, live.is_empty(), user, vec![mailbox])
        }
        Change::Acl { user, mailbox } => {
            let acl = |s: &MailState| mbox(s, user, mailbox).map(|m| m.acl);
            let sv = acl(source);
            (
                sv.is_some() && sv == acl(backup),
                sv.is_none(),
                user,
                vec![mailbox],
            )
        }
        Change::Quota { user, root } => {
            // The channel log names a quota change as `QUOTA root`.
            let limits =
                |s: &MailState| s.users.get(user).and_then(|u| u.quotas.get(root)).cloned();
            (limits(source) == limits(backup), false, user, vec![root])
        }
        Change::Subscription { user, mailbox, on } => {
            let has = |s: &MailState| {
                s.users
                    .get(user)
                    .is_some_and(|u| u.subscriptions.contains(mailbox))
            };
            (has(backup) == *on, has(source) != *on, user, vec![mailbox])
        }
    };
    if superseded {
        Class::Superseded
    } else if done {
        Class::OnBackup
    } else if logged(user, &names, own) {
        Class::Queued
    } else {
        Class::Lost
    }
}

/// Reclassify as [`Class::AcknowledgedLost`] every entry a violation of the
/// history check names: the same user and mailbox, a kind of state the
/// change made ([`kinds_of`]), and for a change of messages one of its UIDs
/// (a violation about the whole mailbox names every change of the mailbox),
/// or the body an append uploaded.
pub fn mark_acknowledged_lost(ledger: &mut [Classified], lost: &[crate::history::Violation]) {
    use crate::history::About;
    let changes: Vec<Change> = ledger.iter().map(|c| c.entry.change.clone()).collect();
    let now = carried_with_names(&changes.iter().collect::<Vec<_>>());
    for (c, (_, _, renamed)) in ledger.iter_mut().zip(now) {
        if c.class == Class::Superseded {
            continue;
        }
        // A violation may name the mailbox as it was or as any later rename
        // made it (X -> Y -> Z: a write acknowledged at Y is lost at Y).
        // A quota violation names its root as the mailbox (`mailboxes`).
        let (user, mut mailboxes) = (c.entry.change.user(), c.entry.change.mailboxes());
        let uids: Vec<u32> = match &c.entry.change {
            Change::Append { uid, .. } => vec![*uid],
            Change::Flags { uids, .. }
            | Change::Expunge { uids, .. }
            | Change::Annotations { uids, .. } => uids.clone(),
            _ => Vec::new(),
        };
        mailboxes.extend(renamed.iter().map(String::as_str));
        let guid = match &c.entry.change {
            Change::Append { guid, .. } => Some(guid.as_str()),
            _ => None,
        };
        let kinds = kinds_of(&c.entry.change);
        let hit = lost.iter().any(|v| {
            // A body lost: the appends of that body.
            if let (About::Body, Some(g), None) = (v.about, &v.guid, &v.mailbox) {
                return v.user == user && guid == Some(g.as_str());
            }
            kinds.contains(&v.about)
                && v.user == user
                && v.mailbox.as_deref().is_some_and(|m| mailboxes.contains(&m))
                && (v.uids.is_empty() || uids.is_empty() || v.uids.iter().any(|u| uids.contains(u)))
        });
        if hit {
            c.class = Class::AcknowledgedLost;
        }
    }
}

/// The kinds of state a change made, whose loss loses the change: the
/// mailbox itself for every change in it, then what the change set (its
/// records, their flags or annotations, the mailbox's ACL or annotations,
/// the body of an append). A lost message annotation does not lose the
/// metadata change of the same mailbox, nor a flag change of the same UID.
fn kinds_of(change: &Change) -> &'static [crate::history::About] {
    use crate::history::About::*;
    match change {
        Change::Append { .. } => &[Mailbox, Records, Body],
        Change::Flags { .. } => &[Mailbox, Records, Flags],
        Change::Expunge { .. } => &[Mailbox, Records],
        Change::Annotations { .. } => &[Mailbox, Records, MessageAnnotation],
        Change::Create { .. } | Change::Delete { .. } | Change::Rename { .. } => &[Mailbox],
        Change::Metadata { .. } => &[Mailbox, Annotation],
        Change::Acl { .. } => &[Mailbox, Acl],
        Change::Quota { .. } => &[Quota],
        Change::Subscription { .. } => &[Subscription],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstate::{MailboxState, MessageState, UserState};

    fn state(uids: &[(u32, &str)], subs: &[&str]) -> MailState {
        let mut m = MailboxState::default();
        for (u, g) in uids {
            m.messages.insert(
                *u,
                MessageState {
                    guid: (*g).into(),
                    ..MessageState::default()
                },
            );
        }
        let mut u = UserState::default();
        u.mailboxes.insert("user.a".into(), m);
        u.subscriptions = subs.iter().map(|s| (*s).to_owned()).collect();
        let mut s = MailState::default();
        s.users.insert("a".into(), u);
        s
    }

    fn append(uid: u32, guid: &str) -> Entry {
        Entry {
            step: 1,
            change: Change::Append {
                user: "a".into(),
                mailbox: "user.a".into(),
                uid,
                guid: guid.into(),
            },
        }
    }

    #[test]
    fn each_class() {
        let source = state(&[(1, "g1"), (2, "g2"), (3, "g3")], &["user.a"]);
        let backup = state(&[(1, "g1")], &[]);
        let entries = vec![
            append(1, "g1"),
            append(2, "g2"),
            append(4, "g4"),
            Entry {
                step: 2,
                change: Change::Subscription {
                    user: "a".into(),
                    mailbox: "user.a".into(),
                    on: true,
                },
            },
        ];
        let classes: Vec<Class> = classify(&entries, &source, &backup, "")
            .iter()
            .map(|c| c.class)
            .collect();
        assert_eq!(
            classes,
            [Class::OnBackup, Class::Lost, Class::Superseded, Class::Lost]
        );
        let classes: Vec<Class> =
            classify(&entries, &source, &backup, "APPEND user.a\nSUB a user.a\n")
                .iter()
                .map(|c| c.class)
                .collect();
        assert_eq!(
            classes,
            [
                Class::OnBackup,
                Class::Queued,
                Class::Superseded,
                Class::Queued
            ]
        );
    }

    /// A channel log line queues only what it would carry: a mailbox line
    /// naming the mailbox or the user's USER line carry its messages; META,
    /// SUB, ANNOTATION, QUOTA and UNMAILBOX lines carry none (before December
    /// 2026 any line naming the mailbox or META of the user made a lost
    /// message "queued"); a quoted name is read as Cyrus writes it.
    #[test]
    fn a_log_line_queues_only_what_it_carries() {
        let source = state(&[(1, "g1")], &["user.a"]);
        let backup = state(&[], &[]);
        let one = |log: &str| classify(&[append(1, "g1")], &source, &backup, log)[0].class;
        for log in [
            "APPEND user.a\n",
            "MAILBOX user.a\n",
            "DOUBLEMAILBOX user.a user.a.Sent\n",
            "USER a\n",
        ] {
            assert_eq!(one(log), Class::Queued, "{log}");
        }
        for log in [
            "META a\n",
            "SUB a user.a\n",
            "ANNOTATION user.a\n",
            "QUOTA user.a\n",
            "UNMAILBOX user.a\n",
            "USER b\n",
        ] {
            assert_eq!(one(log), Class::Lost, "{log}");
        }
        // A subscription is carried by its own lines, META and USER.
        let sub = Entry {
            step: 2,
            change: Change::Subscription {
                user: "a".into(),
                mailbox: "user.a".into(),
                on: true,
            },
        };
        for (log, class) in [
            ("SUB a user.a\n", Class::Queued),
            ("META a\n", Class::Queued),
            ("APPEND user.a\n", Class::Lost),
        ] {
            assert_eq!(
                classify(std::slice::from_ref(&sub), &backup, &backup, log)[0].class,
                Class::Superseded,
                "the source is unsubscribed here"
            );
            let subscribed = state(&[], &["user.a"]);
            assert_eq!(
                classify(std::slice::from_ref(&sub), &subscribed, &backup, log)[0].class,
                class,
                "{log}"
            );
        }
        // Quoted names.
        let spaced = Entry {
            step: 1,
            change: Change::Append {
                user: "a".into(),
                mailbox: "user.a.My Folder".into(),
                uid: 1,
                guid: "g1".into(),
            },
        };
        let src = with_mailboxes(&[("user.a.My Folder", &[(1, "g1")])]);
        assert_eq!(
            classify(&[spaced], &src, &backup, "APPEND \"user.a.My Folder\"\n")[0].class,
            Class::Queued
        );
        assert_eq!(
            log_line(r#"RENAME "user.a.x \"q\"" user.a.y"#),
            Some((
                "RENAME".to_string(),
                vec!["user.a.x \"q\"".to_string(), "user.a.y".to_string()]
            ))
        );
    }

    /// An INBOX rename copies the INBOX's metadata to the new mailbox and the
    /// INBOX keeps its own: a metadata change of the INBOX is judged at the
    /// INBOX, so a backup whose INBOX lacks it is lost although the renamed
    /// copy has it.
    #[test]
    fn an_inbox_rename_leaves_its_metadata_judged_at_the_inbox() {
        let entries = [
            entry(
                1,
                Change::Metadata {
                    user: "a".into(),
                    mailbox: "user.a".into(),
                    entry: "/private/comment".into(),
                },
            ),
            entry(
                2,
                Change::Rename {
                    user: "a".into(),
                    from: "user.a".into(),
                    to: "user.a.Old".into(),
                },
            ),
        ];
        let with = |inbox: bool| {
            let mut s = with_mailboxes(&[("user.a", &[]), ("user.a.Old", &[])]);
            let u = s.users.get_mut("a").expect("a");
            for (name, has) in [("user.a", inbox), ("user.a.Old", true)] {
                if has {
                    u.mailboxes
                        .get_mut(name)
                        .expect("mailbox")
                        .annotations
                        .insert("/private/comment".into(), "x".into());
                }
            }
            s
        };
        let class = |backup: &MailState| classify(&entries, &with(true), backup, "")[0].class;
        assert_eq!(class(&with(true)), Class::OnBackup);
        assert_eq!(class(&with(false)), Class::Lost);
    }

    /// A folder deleted and created again under its name: the backup that
    /// still holds the old one (another uniqueid) does not hold the new one.
    #[test]
    fn a_create_is_done_only_with_the_sources_mailbox() {
        let with_id = |id: &str| {
            let mut s = with_mailboxes(&[("user.a.X", &[])]);
            if let Some(m) = s
                .users
                .get_mut("a")
                .and_then(|u| u.mailboxes.get_mut("user.a.X"))
            {
                m.uniqueid = Some(id.into());
            }
            s
        };
        let entries = [
            entry(
                1,
                Change::Delete {
                    user: "a".into(),
                    mailbox: "user.a.X".into(),
                },
            ),
            entry(
                1,
                Change::Create {
                    user: "a".into(),
                    mailbox: "user.a.X".into(),
                },
            ),
        ];
        let classes = |backup: &MailState| -> Vec<Class> {
            classify(&entries, &with_id("new"), backup, "")
                .iter()
                .map(|c| c.class)
                .collect()
        };
        assert_eq!(
            classes(&with_id("new")),
            [Class::Superseded, Class::OnBackup]
        );
        assert_eq!(classes(&with_id("old")), [Class::Superseded, Class::Lost]);
    }

    fn with_mailboxes(names: &[(&str, &[(u32, &str)])]) -> MailState {
        let mut u = UserState::default();
        for (name, uids) in names {
            let mut m = MailboxState::default();
            for (uid, g) in *uids {
                m.messages.insert(
                    *uid,
                    MessageState {
                        guid: (*g).into(),
                        ..MessageState::default()
                    },
                );
            }
            u.mailboxes.insert((*name).into(), m);
        }
        let mut s = MailState::default();
        s.users.insert("a".into(), u);
        s
    }

    fn entry(step: usize, change: Change) -> Entry {
        Entry { step, change }
    }

    /// A change is judged where its mailbox ends up: an append to A, then A
    /// renamed to B, is on the backup when B has it and lost when B lacks it
    /// (it was superseded before, the source having no A any more); a rename
    /// is done although a new A was created after it; an expunge in a
    /// mailbox deleted and created again is superseded (its UID may be a new
    /// message's).
    #[test]
    fn renames_carry_changes_and_deletions_end_them() {
        let a = |s: &str| format!("user.a.{s}");
        let append = entry(
            1,
            Change::Append {
                user: "a".into(),
                mailbox: a("A"),
                uid: 1,
                guid: "g1".into(),
            },
        );
        let rename = entry(
            2,
            Change::Rename {
                user: "a".into(),
                from: a("A"),
                to: a("B"),
            },
        );
        let source = with_mailboxes(&[("user.a.B", &[(1, "g1")])]);
        let kept = with_mailboxes(&[("user.a.B", &[(1, "g1")])]);
        let lost = with_mailboxes(&[("user.a.B", &[])]);
        let entries = vec![append.clone(), rename.clone()];
        let classes = |backup: &MailState, entries: &[Entry], source: &MailState| -> Vec<Class> {
            classify(entries, source, backup, "")
                .iter()
                .map(|c| c.class)
                .collect()
        };
        assert_eq!(
            classes(&kept, &entries, &source),
            [Class::OnBackup, Class::OnBackup]
        );
        assert_eq!(
            classes(&lost, &entries, &source),
            [Class::Lost, Class::OnBackup]
        );
        // A created again after the rename: the rename is still done.
        let create = entry(
            3,
            Change::Create {
                user: "a".into(),
                mailbox: a("A"),
            },
        );
        let both = with_mailboxes(&[("user.a.A", &[]), ("user.a.B", &[(1, "g1")])]);
        let entries = vec![append, rename, create];
        assert_eq!(
            classes(&both, &entries, &both),
            [Class::OnBackup, Class::OnBackup, Class::OnBackup]
        );
        // Expunge UID 1 of W, delete W, create W, append a new UID 1.
        let w = a("W");
        let entries = vec![
            entry(
                1,
                Change::Expunge {
                    user: "a".into(),
                    mailbox: w.clone(),
                    uids: vec![1],
                },
            ),
            entry(
                2,
                Change::Delete {
                    user: "a".into(),
                    mailbox: w.clone(),
                },
            ),
            entry(
                3,
                Change::Create {
                    user: "a".into(),
                    mailbox: w.clone(),
                },
            ),
        ];
        let again = with_mailboxes(&[("user.a.W", &[(1, "g9")])]);
        assert_eq!(
            classes(&again, &entries, &again),
            [Class::Superseded, Class::Superseded, Class::OnBackup]
        );
        // A subscription stays by name: Cyrus moves none with a rename.
        let entries = vec![
            entry(
                1,
                Change::Subscription {
                    user: "a".into(),
                    mailbox: a("S"),
                    on: true,
                },
            ),
            entry(
                2,
                Change::Rename {
                    user: "a".into(),
                    from: a("S"),
                    to: a("T"),
                },
            ),
        ];
        let mut subscribed = with_mailboxes(&[("user.a.T", &[])]);
        if let Some(u) = subscribed.users.get_mut("a") {
            u.subscriptions = [a("S")].into_iter().collect();
        }
        assert_eq!(
            classes(&subscribed, &entries, &subscribed),
            [Class::OnBackup, Class::OnBackup]
        );
        // Renaming an INBOX moves its messages, not its folders.
        let msg = |mailbox: &str, guid: &str| {
            entry(
                1,
                Change::Append {
                    user: "a".into(),
                    mailbox: mailbox.into(),
                    uid: 1,
                    guid: guid.into(),
                },
            )
        };
        let entries = vec![
            msg("user.a", "g1"),
            msg("user.a.Sent", "g2"),
            entry(
                2,
                Change::Rename {
                    user: "a".into(),
                    from: "user.a".into(),
                    to: a("Old"),
                },
            ),
        ];
        let moved = with_mailboxes(&[
            ("user.a", &[]),
            ("user.a.Old", &[(1, "g1")]),
            ("user.a.Sent", &[(1, "g2")]),
        ]);
        assert_eq!(
            classes(&moved, &entries, &moved),
            [Class::OnBackup, Class::OnBackup, Class::OnBackup]
        );
        // A violation on the new name marks a change made under the old one.
        use crate::history::{About, Violation};
        let lost_in_old = Violation {
            about: About::Records,
            user: "a".into(),
            mailbox: Some(a("Old")),
            uids: vec![1],
            guid: None,
            acknowledged: String::new(),
            contradicted_by: String::new(),
            what: String::new(),
            again: 0,
        };
        let mut l = classify(&entries, &moved, &moved, "");
        mark_acknowledged_lost(&mut l, std::slice::from_ref(&lost_in_old));
        let marked: Vec<Class> = l.iter().map(|c| c.class).collect();
        assert_eq!(
            marked,
            [Class::AcknowledgedLost, Class::OnBackup, Class::OnBackup]
        );
        // Through two renames (INBOX -> Old -> Older), a violation under the
        // name in between still names the change made under the first.
        let mut twice = entries.clone();
        twice.push(entry(
            3,
            Change::Rename {
                user: "a".into(),
                from: a("Old"),
                to: a("Older"),
            },
        ));
        let moved_twice = with_mailboxes(&[
            ("user.a", &[]),
            ("user.a.Older", &[(1, "g1")]),
            ("user.a.Sent", &[(1, "g2")]),
        ]);
        let mut l = classify(&twice, &moved_twice, &moved_twice, "");
        assert_eq!(l[0].class, Class::OnBackup);
        mark_acknowledged_lost(&mut l, &[lost_in_old]);
        assert_eq!(l[0].class, Class::AcknowledgedLost);
        assert_eq!(l[1].class, Class::OnBackup);
    }

    /// A violation names the changes it is about: the same user and mailbox,
    /// the same kind of state, an overlapping UID or the same body.
    #[test]
    fn acknowledged_lost_names_exactly_its_changes() {
        use crate::history::{About, Violation};
        let state = state(&[(1, "g1"), (2, "g2")], &["user.a"]);
        let mut entries = vec![append(1, "g1"), append(2, "g2")];
        entries.push(Entry {
            step: 2,
            change: Change::Subscription {
                user: "a".into(),
                mailbox: "user.a".into(),
                on: true,
            },
        });
        let v = |about, mailbox: Option<&str>, uids: Vec<u32>, guid: Option<&str>| Violation {
            about,
            user: "a".into(),
            mailbox: mailbox.map(str::to_owned),
            uids,
            guid: guid.map(str::to_owned),
            acknowledged: String::new(),
            contradicted_by: String::new(),
            what: String::new(),
            again: 0,
        };
        let classes = |lost: &[Violation]| -> Vec<Class> {
            let mut l = classify(&entries, &state, &state, "");
            mark_acknowledged_lost(&mut l, lost);
            l.iter().map(|c| c.class).collect()
        };
        let (ok, ack) = (Class::OnBackup, Class::AcknowledgedLost);
        assert_eq!(classes(&[]), [ok, ok, ok]);
        assert_eq!(
            classes(&[v(About::Records, Some("user.a"), vec![2], None)]),
            [ok, ack, ok]
        );
        assert_eq!(
            classes(&[v(About::Mailbox, Some("user.a"), vec![], None)]),
            [ack, ack, ok]
        );
        assert_eq!(
            classes(&[v(About::Subscription, Some("user.a"), vec![], None)]),
            [ok, ok, ack]
        );
        assert_eq!(
            classes(&[v(About::Body, None, vec![], Some("g1"))]),
            [ack, ok, ok]
        );
        assert_eq!(
            classes(&[v(About::Records, Some("user.a.Other"), vec![1], None)]),
            [ok, ok, ok]
        );
    }

    /// A violation marks only the changes that made the kind of state it
    /// names: a lost message annotation of UID 2 marks the annotation change
    /// of UID 2, not the metadata change of the mailbox nor the flag change or
    /// the append of the same UID; a lost flag marks the flag change; a lost
    /// ACL entry the ACL change.
    #[test]
    fn acknowledged_lost_follows_the_kind_of_state() {
        use crate::history::{About, Violation};
        let (user, mailbox) = (String::from("a"), String::from("user.a"));
        let changes = [
            append(2, "g2").change,
            Change::Flags {
                user: user.clone(),
                mailbox: mailbox.clone(),
                uids: vec![2],
            },
            Change::Annotations {
                user: user.clone(),
                mailbox: mailbox.clone(),
                uids: vec![2],
            },
            Change::Metadata {
                user: user.clone(),
                mailbox: mailbox.clone(),
                entry: "/shared/comment".into(),
            },
            Change::Acl {
                user: user.clone(),
                mailbox: mailbox.clone(),
            },
        ];
        let marked = |about: About, uids: Vec<u32>| -> Vec<bool> {
            let mut l: Vec<Classified> = changes
                .iter()
                .map(|c| Classified {
                    entry: Entry {
                        step: 1,
                        change: c.clone(),
                    },
                    class: Class::OnBackup,
                })
                .collect();
            let v = Violation {
                about,
                user: user.clone(),
                mailbox: Some(mailbox.clone()),
                uids,
                guid: None,
                acknowledged: String::new(),
                contradicted_by: String::new(),
                what: String::new(),
                again: 0,
            };
            mark_acknowledged_lost(&mut l, &[v]);
            l.iter()
                .map(|c| c.class == Class::AcknowledgedLost)
                .collect()
        };
        let (t, f) = (true, false);
        assert_eq!(marked(About::MessageAnnotation, vec![2]), [f, f, t, f, f]);
        assert_eq!(marked(About::Flags, vec![2]), [f, t, f, f, f]);
        assert_eq!(marked(About::Acl, vec![]), [f, f, f, f, t]);
        assert_eq!(marked(About::Annotation, vec![]), [f, f, f, t, f]);
        // The record itself lost: every change of that UID.
        assert_eq!(marked(About::Records, vec![2]), [t, t, t, f, f]);
        // The mailbox lost: every change in it.
        assert_eq!(marked(About::Mailbox, vec![]), [t, t, t, t, t]);
    }
}
