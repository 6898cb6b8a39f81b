//! Convergence: does the backup hold exactly what the source holds?
//!
//! Verified, per user found on either side (`docs/oracle.md` has the table, how
//! each side is read, and the mutation fault that proves each row can fail):
//! - the set of live mailboxes (by internal name), and each one's uniqueid
//!   (when both sides know it), UIDVALIDITY, last UID and HIGHESTMODSEQ;
//! - each mailbox's ACL (rights by identifier);
//! - each mailbox's annotations (shared and the owner's private, not the ones
//!   Cyrus computes under `/vendor/cmu/cyrus-imapd/`);
//! - every live message by UID: GUID, flags, the owner's `\Seen` (its own
//!   row), INTERNALDATE, size, annotations. A message on the source and not on
//!   the backup is **lost**; a live one on the backup that the source no longer
//!   has is an expunge the backup missed;
//! - subscriptions, raw on both sides (a subscription to a folder that no longer
//!   exists counts: Cyrus keeps it, and so do the backups; see
//!   `docs/findings/subscriptions.md`);
//! - `DELETED.*` mailboxes of a delayed delete: name, UIDVALIDITY, last UID and
//!   message count (all the source shows an admin);
//! - quota roots and limits, where the target keeps quota (the caller projects
//!   both sides to the target's scope first).
//!
//! Not verified here, on purpose (see `docs/oracle.md`):
//! - expunged records (the backup keeps them, the source's IMAP view cannot
//!   show them);
//! - seen state of other users' mailboxes, sieve, quota usage;
//! - that the bodies are really stored: [`crate::store::Store::verify_bodies`]
//!   does that, against the fake only.

use std::collections::BTreeSet;
use std::fmt;

use crate::mailstate::{MailState, MailboxState, UserState};

/// One difference, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The user.
    pub user: String,
    /// The mailbox, when the difference is inside one.
    pub mailbox: Option<String>,
    /// The message UID, when the difference is about one message.
    pub uid: Option<u32>,
    /// What differs.
    pub what: String,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}", self.user)?;
        if let Some(m) = &self.mailbox {
            write!(f, ", mailbox {m}")?;
        }
        if let Some(u) = self.uid {
            write!(f, ", UID {u}")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// The result of comparing a source with a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    /// Every difference found; empty when converged.
    pub divergences: Vec<Divergence>,
    /// A line diff of the differing users' states (source left, backup right).
    pub diff: String,
}

impl Comparison {
    /// True when the backup equals the source.
    pub fn converged(&self) -> bool {
        self.divergences.is_empty()
    }

    /// How many source messages the backup lacks.
    pub fn lost_messages(&self) -> usize {
        self.divergences
            .iter()
            .filter(|d| d.what.starts_with("lost"))
            .count()
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.converged() {
            return write!(f, "converged");
        }
        writeln!(f, "not converged: {} difference(s)", self.divergences.len())?;
        for d in &self.divergences {
            writeln!(f, "  - {d}")?;
        }
        if !self.diff.is_empty() {
            writeln!(f, "diff (- source, + backup):")?;
            write!(f, "{}", self.diff)?;
        }
        Ok(())
    }
}

/// Compare every user on either side.
pub fn compare(source: &MailState, backup: &MailState) -> Comparison {
    let users: BTreeSet<&String> = source.users.keys().chain(backup.users.keys()).collect();
    let empty = UserState::default();
    let mut divergences = Vec::new();
    let mut diff = String::new();
    for user in users {
        let s = source.users.get(user).unwrap_or(&empty);
        let b = backup.users.get(user).unwrap_or(&empty);
        let before = divergences.len();
        compare_user(user, s, b, &mut divergences);
        if divergences.len() > before {
            diff.push_str(&crate::diff::unified(
                &format!("{s:#?}"),
                &format!("{b:#?}"),
                &format!("source/{user}"),
                &format!("backup/{user}"),
                3,
            ));
        }
    }
    Comparison { divergences, diff }
}

fn compare_user(user: &str, s: &UserState, b: &UserState, out: &mut Vec<Divergence>) {
    let div = |mailbox: Option<&str>, uid: Option<u32>, what: String| Divergence {
        user: user.to_owned(),
        mailbox: mailbox.map(str::to_owned),
        uid,
        what,
    };
    let names: BTreeSet<&String> = s.mailboxes.keys().chain(b.mailboxes.keys()).collect();
    for name in names {
        match (s.mailboxes.get(name), b.mailboxes.get(name)) {
            (Some(sm), None) => out.push(div(
                Some(name),
                None,
                format!(
                    "mailbox missing on the backup ({} message(s) lost)",
                    sm.messages.len()
                ),
            )),
            (None, Some(_)) => out.push(div(Some(name), None, "mailbox on the backup only".into())),
            (Some(sm), Some(bm)) => compare_mailbox(sm, bm, &mut |uid, what| {
                out.push(div(Some(name), uid, what))
            }),
            (None, None) => {}
        }
    }
    for m in s.subscriptions.difference(&b.subscriptions) {
        out.push(div(
            None,
            None,
            format!("subscription to {m} missing on the backup"),
        ));
    }
    for m in b.subscriptions.difference(&s.subscriptions) {
        out.push(div(
            None,
            None,
            format!("subscription to {m} on the backup only"),
        ));
    }
    let names: BTreeSet<&String> = s.deleted.keys().chain(b.deleted.keys()).collect();
    for name in names {
        match (s.deleted.get(name), b.deleted.get(name)) {
            (Some(sd), None) => out.push(div(
                Some(name),
                None,
                format!(
                    "deleted mailbox missing on the backup ({} message(s))",
                    sd.messages
                ),
            )),
            (None, Some(_)) => out.push(div(
                Some(name),
                None,
                "deleted mailbox on the backup only".into(),
            )),
            (Some(sd), Some(bd)) => {
                let fields: [(&str, u64, u64); 4] = [
                    ("UIDVALIDITY", sd.uidvalidity.into(), bd.uidvalidity.into()),
                    ("last UID", sd.last_uid.into(), bd.last_uid.into()),
                    ("HIGHESTMODSEQ", sd.highestmodseq, bd.highestmodseq),
                    ("messages", sd.messages.into(), bd.messages.into()),
                ];
                for (what, x, y) in fields {
                    if x != y {
                        out.push(div(
                            Some(name),
                            None,
                            format!("deleted mailbox {what}: source {x}, backup {y}"),
                        ));
                    }
                }
            }
            (None, None) => {}
        }
    }
    let roots: BTreeSet<&String> = s.quotas.keys().chain(b.quotas.keys()).collect();
    for root in roots {
        let what = match (s.quotas.get(root), b.quotas.get(root)) {
            (Some(x), None) => format!("quota root {root} {x:?} missing on the backup"),
            (None, Some(y)) => format!("quota root {root} {y:?} on the backup only"),
            (Some(x), Some(y)) if x != y => {
                format!("quota root {root}: limits: source {x:?}, backup {y:?}")
            }
            _ => continue,
        };
        out.push(div(None, None, what));
    }
}

/// Differences between two annotation maps, one line each, named `kind`.
fn annotation_diffs(
    kind: &str,
    s: &std::collections::BTreeMap<String, String>,
    b: &std::collections::BTreeMap<String, String>,
    out: &mut dyn FnMut(String),
) {
    let keys: BTreeSet<&String> = s.keys().chain(b.keys()).collect();
    for k in keys {
        match (s.get(k), b.get(k)) {
            (Some(x), None) => out(format!("{kind} {k} = {x:?} missing on the backup")),
            (None, Some(y)) => out(format!("{kind} {k} = {y:?} on the backup only")),
            (Some(x), Some(y)) if x != y => out(format!("{kind} {k}: source {x:?}, backup {y:?}")),
            _ => {}
        }
    }
}

fn compare_mailbox(s: &MailboxState, b: &MailboxState, out: &mut dyn FnMut(Option<u32>, String)) {
    // A side without one is a difference too: each reader gets it (EXAMINE's
    // MAILBOXID, the index, the fake's store), so one missing is a read that
    // went wrong, or an identity the target lost.
    if s.uniqueid != b.uniqueid {
        let show = |u: &Option<String>| u.clone().unwrap_or_else(|| "none".into());
        out(
            None,
            format!(
                "uniqueid: source {}, backup {}",
                show(&s.uniqueid),
                show(&b.uniqueid)
            ),
        );
    }
    let fields: [(&str, u64, u64); 3] = [
        ("UIDVALIDITY", s.uidvalidity.into(), b.uidvalidity.into()),
        ("last UID", s.last_uid.into(), b.last_uid.into()),
        ("HIGHESTMODSEQ", s.highestmodseq, b.highestmodseq),
    ];
    for (name, x, y) in fields {
        if x != y {
            out(None, format!("{name}: source {x}, backup {y}"));
        }
    }
    let ids: BTreeSet<&String> = s.acl.keys().chain(b.acl.keys()).collect();
    for id in ids {
        let what = match (s.acl.get(id), b.acl.get(id)) {
            (Some(x), None) => format!("ACL of {id} ({x}) missing on the backup"),
            (None, Some(y)) => format!("ACL of {id} ({y}) on the backup only"),
            (Some(x), Some(y)) if x != y => format!("ACL of {id}: source {x}, backup {y}"),
            _ => continue,
        };
        out(None, what);
    }
    annotation_diffs(
        "mailbox annotation",
        &s.annotations,
        &b.annotations,
        &mut |w| out(None, w),
    );
    let uids: BTreeSet<&u32> = s.messages.keys().chain(b.messages.keys()).collect();
    for &uid in uids {
        match (s.messages.get(&uid), b.messages.get(&uid)) {
            (Some(m), None) => out(
                Some(uid),
                format!("lost: message {} is not on the backup", m.guid),
            ),
            (None, Some(m)) => out(
                Some(uid),
                format!(
                    "message {} is live on the backup but expunged or absent on the source",
                    m.guid
                ),
            ),
            (Some(x), Some(y)) => {
                if x.guid != y.guid {
                    out(
                        Some(uid),
                        format!("GUID: source {}, backup {}", x.guid, y.guid),
                    );
                }
                // The owner's seen state is its own row: `\Seen` (Cyrus keeps the
                // owner's seen state in the index record, not the seen db).
                let is_seen = |f: &&String| f.eq_ignore_ascii_case("\\Seen");
                let others = |m: &crate::mailstate::MessageState| -> Vec<String> {
                    m.flags.iter().filter(|f| !is_seen(f)).cloned().collect()
                };
                if others(x) != others(y) {
                    out(
                        Some(uid),
                        format!("flags: source {:?}, backup {:?}", others(x), others(y)),
                    );
                }
                let (sx, sy) = (
                    x.flags.iter().any(|f| is_seen(&f)),
                    y.flags.iter().any(|f| is_seen(&f)),
                );
                if sx != sy {
                    out(
                        Some(uid),
                        format!(
                            "owner's \\Seen: source {}, backup {}",
                            if sx { "seen" } else { "unseen" },
                            if sy { "seen" } else { "unseen" }
                        ),
                    );
                }
                if x.internaldate != y.internaldate {
                    out(
                        Some(uid),
                        format!(
                            "INTERNALDATE: source {}, backup {}",
                            x.internaldate, y.internaldate
                        ),
                    );
                }
                if x.size != y.size {
                    out(
                        Some(uid),
                        format!("size: source {}, backup {}", x.size, y.size),
                    );
                }
                annotation_diffs(
                    "message annotation",
                    &x.annotations,
                    &y.annotations,
                    &mut |w| out(Some(uid), w),
                );
            }
            (None, None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstate::MessageState;

    fn state(flags: &[&str], extra_uid: bool) -> MailState {
        let mut mb = MailboxState {
            uniqueid: Some("u1".into()),
            uidvalidity: 7,
            last_uid: 2,
            highestmodseq: 9,
            ..MailboxState::default()
        };
        mb.messages.insert(
            1,
            MessageState {
                guid: "aa".into(),
                flags: flags.iter().map(|f| f.to_string()).collect(),
                internaldate: 5,
                size: 10,
                ..MessageState::default()
            },
        );
        if extra_uid {
            mb.messages.insert(
                2,
                MessageState {
                    guid: "bb".into(),
                    ..MessageState::default()
                },
            );
        }
        let mut u = UserState::default();
        u.mailboxes.insert("user.alice".into(), mb);
        let mut s = MailState::default();
        s.users.insert("alice".into(), u);
        s
    }

    #[test]
    fn equal_states_converge() {
        let c = compare(&state(&["\\Seen"], true), &state(&["\\Seen"], true));
        assert!(c.converged(), "{c}");
        assert_eq!(c.to_string(), "converged");
    }

    #[test]
    fn differences_name_user_mailbox_and_uid() {
        let c = compare(&state(&["\\Seen"], true), &state(&[], false));
        let lines: Vec<String> = c.divergences.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            vec![
                "user alice, mailbox user.alice, UID 1: owner's \\Seen: source seen, backup unseen",
                "user alice, mailbox user.alice, UID 2: lost: message bb is not on the backup",
            ]
        );
        assert_eq!(c.lost_messages(), 1);
        let text = c.to_string();
        assert!(
            text.contains("diff (- source, + backup):\n--- source/alice\n+++ backup/alice\n@@"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with('-') && l.contains("Seen")),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    /// The rows added for issue 15 name themselves: flags apart from the
    /// owner's `\Seen`, mailbox and message annotations, `DELETED.*`
    /// mailboxes, quota roots.
    #[test]
    fn every_row_names_itself() {
        let full = || {
            let mut s = state(&["\\Seen", "$X"], false);
            let u = s.users.get_mut("alice").expect("alice");
            let mb = u.mailboxes.get_mut("user.alice").expect("inbox");
            mb.annotations.insert("/private/comment".into(), "c".into());
            mb.messages
                .get_mut(&1)
                .expect("uid 1")
                .annotations
                .insert("/comment value.shared".into(), "n".into());
            u.deleted.insert(
                "DELETED.user.alice.T.1".into(),
                crate::mailstate::DeletedMailbox {
                    uidvalidity: 3,
                    last_uid: 2,
                    messages: 2,
                    highestmodseq: 9,
                },
            );
            u.quotas
                .insert("user.alice".into(), [("STORAGE".to_string(), 9)].into());
            s
        };
        let src = full();
        let mut b = full();
        let u = b.users.get_mut("alice").expect("alice");
        let mb = u.mailboxes.get_mut("user.alice").expect("inbox");
        mb.annotations.clear();
        let m = mb.messages.get_mut(&1).expect("uid 1");
        m.annotations.clear();
        m.flags = vec!["\\Seen".into()];
        u.deleted.values_mut().for_each(|d| d.messages = 1);
        u.quotas.clear();
        let lines: Vec<String> = compare(&src, &b)
            .divergences
            .iter()
            .map(|d| d.what.clone())
            .collect();
        assert_eq!(
            lines,
            vec![
                "mailbox annotation /private/comment = \"c\" missing on the backup",
                "flags: source [\"$X\"], backup []",
                "message annotation /comment value.shared = \"n\" missing on the backup",
                "deleted mailbox messages: source 2, backup 1",
                "quota root user.alice {\"STORAGE\": 9} missing on the backup",
            ]
        );
        let mut b = full();
        b.users.get_mut("alice").expect("alice").deleted.clear();
        let c = compare(&src, &b);
        assert_eq!(
            c.divergences[0].to_string(),
            "user alice, mailbox DELETED.user.alice.T.1: deleted mailbox missing on the backup (2 message(s))"
        );
    }

    /// The other direction of every row: what the backup holds and the
    /// source does not (a missed expunge, unsubscribe, delete, removal), and
    /// values that differ. A row that ignored `(None, Some(_))` or compared
    /// only presence would pass this state as converged.
    #[test]
    fn the_backups_extras_and_changed_values_name_themselves() {
        let lines = |src: &MailState, b: &MailState| -> Vec<String> {
            compare(src, b)
                .divergences
                .iter()
                .map(|d| d.what.clone())
                .collect()
        };
        let src = state(&["\\Seen"], false);
        let b = state(&["\\Seen"], true);
        let extras = lines(&src, &b);
        assert_eq!(
            extras,
            ["message bb is live on the backup but expunged or absent on the source"]
        );
        // A uniqueid one side lacks.
        let mut none = state(&["\\Seen"], false);
        none.users
            .get_mut("alice")
            .expect("alice")
            .mailboxes
            .get_mut("user.alice")
            .expect("inbox")
            .uniqueid = None;
        assert_eq!(lines(&src, &none), ["uniqueid: source u1, backup none"]);
        assert_eq!(lines(&none, &src), ["uniqueid: source none, backup u1"]);

        let full = |acl: &str, note: &str, storage: u64, uidvalidity: u32| {
            let mut s = state(&["\\Seen"], false);
            let u = s.users.get_mut("alice").expect("alice");
            let mb = u.mailboxes.get_mut("user.alice").expect("inbox");
            mb.acl.insert("anyone".into(), acl.into());
            mb.annotations
                .insert("/private/comment".into(), note.into());
            mb.messages
                .get_mut(&1)
                .expect("uid 1")
                .annotations
                .insert("/comment value.priv".into(), note.into());
            u.deleted.insert(
                "DELETED.user.alice.T.1".into(),
                crate::mailstate::DeletedMailbox {
                    uidvalidity,
                    last_uid: 2,
                    messages: 2,
                    highestmodseq: 9,
                },
            );
            u.quotas.insert(
                "user.alice".into(),
                [("STORAGE".to_string(), storage)].into(),
            );
            s
        };
        // Values that differ.
        assert_eq!(
            lines(&full("lr", "a", 9, 3), &full("lrs", "b", 8, 4)),
            [
                "ACL of anyone: source lr, backup lrs",
                "mailbox annotation /private/comment: source \"a\", backup \"b\"",
                "message annotation /comment value.priv: source \"a\", backup \"b\"",
                "deleted mailbox UIDVALIDITY: source 3, backup 4",
                "quota root user.alice: limits: source {\"STORAGE\": 9}, backup {\"STORAGE\": 8}",
            ]
        );
        // On the backup only.
        let mut bare = state(&["\\Seen"], false);
        let mut extra = full("lr", "a", 9, 3);
        {
            let u = extra.users.get_mut("alice").expect("alice");
            u.subscriptions.insert("user.alice.Gone".into());
            u.mailboxes
                .insert("user.alice.Gone".into(), MailboxState::default());
            u.deleted.values_mut().for_each(|d| d.last_uid = 2);
        }
        bare.users
            .get_mut("alice")
            .expect("alice")
            .mailboxes
            .get_mut("user.alice")
            .expect("inbox")
            .messages
            .get_mut(&1)
            .expect("uid 1")
            .annotations
            .clear();
        assert_eq!(
            lines(&bare, &extra),
            [
                "ACL of anyone (lr) on the backup only",
                "mailbox annotation /private/comment = \"a\" on the backup only",
                "message annotation /comment value.priv = \"a\" on the backup only",
                "mailbox on the backup only",
                "subscription to user.alice.Gone on the backup only",
                "deleted mailbox on the backup only",
                "quota root user.alice {\"STORAGE\": 9} on the backup only",
            ]
        );
        // A deleted mailbox's last UID.
        let mut later = full("lr", "a", 9, 3);
        later
            .users
            .get_mut("alice")
            .expect("alice")
            .deleted
            .values_mut()
            .for_each(|d| {
                d.last_uid = 5;
                d.highestmodseq = 12;
            });
        assert_eq!(
            lines(&full("lr", "a", 9, 3), &later),
            [
                "deleted mailbox last UID: source 2, backup 5",
                "deleted mailbox HIGHESTMODSEQ: source 9, backup 12"
            ]
        );
    }
}
