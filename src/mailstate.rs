//! The comparable view of a mail store, shared by both sides of a check.
//!
//! The source instance is read into a [`MailState`] over IMAP; the fake's backup is
//! projected into one too ([`crate::store::Store::mail_state`]). [`crate::check`]
//! compares the two. Only what the backup is expected to hold exactly is here; see
//! `check` for what is deliberately left out and why.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Every user's mail, keyed by userid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailState {
    /// Users by userid (`alice`, `bob@example.com`).
    pub users: BTreeMap<String, UserState>,
}

/// One user's mailboxes and subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserState {
    /// Live (not deleted) mailboxes by Cyrus internal name (`user.alice`, `user.alice.Sent`).
    pub mailboxes: BTreeMap<String, MailboxState>,
    /// Subscribed mailboxes, internal names, raw: a subscription to a folder that
    /// no longer exists counts (Cyrus keeps it).
    pub subscriptions: BTreeSet<String>,
    /// The user's mailboxes moved aside by a delayed delete
    /// (`DELETED.user.alice.Trash.6B113E59`), by internal name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deleted: BTreeMap<String, DeletedMailbox>,
    /// Quota roots of the user's mailboxes (`user.alice`) with their limits by
    /// resource (`STORAGE` in KiB, `MESSAGE`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, BTreeMap<String, u64>>,
}

/// A mailbox moved aside by a delayed delete: what a user could get back.
/// Only what the source shows an admin without reading it (a `LIST … RETURN
/// (STATUS …)`: the owner cannot see it and the admin has no read right on it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedMailbox {
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// The highest UID ever assigned (`UIDNEXT` - 1).
    pub last_uid: u32,
    /// How many live messages it holds.
    pub messages: u32,
    /// HIGHESTMODSEQ: a copy that missed a later change (a flag, a seen
    /// state, an annotation set before the delete) is behind on it.
    #[serde(default)]
    pub highestmodseq: u64,
}

/// One mailbox: identity, counters and live (not expunged) messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxState {
    /// Cyrus mailbox uniqueid (IMAP `MAILBOXID`), when the reader could see it.
    pub uniqueid: Option<String>,
    /// UIDVALIDITY.
    pub uidvalidity: u32,
    /// The highest UID ever assigned (IMAP `UIDNEXT` - 1).
    pub last_uid: u32,
    /// HIGHESTMODSEQ.
    pub highestmodseq: u64,
    /// Live messages by UID.
    pub messages: BTreeMap<u32, MessageState>,
    /// Access rights by identifier (`anyone`, `alice`), each a sorted string of
    /// right letters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acl: BTreeMap<String, String>,
    /// Mailbox annotations (IMAP METADATA) by entry as IMAP names it
    /// (`/shared/comment`, `/private/comment` for the owner's): see
    /// [`is_compared_entry`] for which.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One live message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageState {
    /// SHA-1 of the message bytes, 40 lower-case hex digits (the Cyrus GUID).
    pub guid: String,
    /// Flags, sorted, without `\Recent` and `\Expunged`.
    pub flags: Vec<String>,
    /// INTERNALDATE as Unix seconds.
    pub internaldate: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// Per-message annotations (RFC 5257) by `ENTRY ATTRIBUTE`
    /// (`/comment value.shared`, `/comment value.priv` for the owner's): see
    /// [`is_compared_entry`] for which.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An ACL as Cyrus keeps it in a mailbox record and csync carries it
/// (`alice\tlrswipkxtecdan\tanyone\tlr\t`), by identifier with sorted rights.
pub fn parse_acl(text: &str) -> BTreeMap<String, String> {
    let fields: Vec<&str> = text.split('\t').collect();
    fields
        .chunks(2)
        .filter(|p| p.len() == 2 && !p[0].is_empty())
        .map(|p| (p[0].to_owned(), sorted_rights(p[1])))
        .collect()
}

/// Right letters sorted, so the same rights compare equal however printed.
///
/// ```
/// use backupd_sim::mailstate::{parse_acl, sorted_rights};
/// let acl = parse_acl("olga\tlrswipkxtecdan\tanyone\trl\t");
/// assert_eq!(acl["anyone"], "lr");
/// assert_eq!(acl["olga"], sorted_rights("lrswipkxtecdan"));
/// assert_eq!(acl.len(), 2);
/// assert!(parse_acl("").is_empty());
/// ```
pub fn sorted_rights(rights: &str) -> String {
    let mut c: Vec<char> = rights.chars().collect();
    c.sort_unstable();
    c.into_iter().collect()
}

/// Whether an annotation entry (without its `/private` or `/shared` prefix:
/// `/comment`, `/vendor/cmu/cyrus-imapd/expire`) is compared. Entries under
/// `/vendor/cmu/cyrus-imapd/` are not: Cyrus computes several of them from the
/// mailbox or message on each read (`size`, `lastupdate`, `synccrcs`,
/// `uniqueid`, `partition`, `savedate`, `thrid`, …), so the source's IMAP view
/// and what sync carries differ by design.
pub fn is_compared_entry(entry: &str) -> bool {
    !entry.starts_with("/vendor/cmu/cyrus-imapd/")
}

/// The comparable key of a mailbox annotation as csync carries it (entry
/// `/comment`, userid empty for a shared value): `/shared/comment`, or
/// `/private/comment` when `userid` is the owner. `None` for another user's
/// private value or an entry not compared.
pub fn mailbox_annotation_key(entry: &str, userid: &str, owner: &str) -> Option<String> {
    if !is_compared_entry(entry) {
        return None;
    }
    match userid {
        "" => Some(format!("/shared{entry}")),
        u if u == owner => Some(format!("/private{entry}")),
        _ => None,
    }
}

/// The comparable key of a per-message annotation as csync carries it:
/// `/comment value.shared`, or `/comment value.priv` for the owner's.
pub fn message_annotation_key(entry: &str, userid: &str, owner: &str) -> Option<String> {
    if !is_compared_entry(entry) {
        return None;
    }
    match userid {
        "" => Some(format!("{entry} value.shared")),
        u if u == owner => Some(format!("{entry} value.priv")),
        _ => None,
    }
}

impl MessageState {
    /// Put flags in the canonical form both readers produce: sorted, deduplicated,
    /// `\Recent` and `\Expunged` removed.
    pub fn normalize_flags(flags: impl IntoIterator<Item = String>) -> Vec<String> {
        let set: BTreeSet<String> = flags
            .into_iter()
            .filter(|f| {
                !f.eq_ignore_ascii_case("\\Recent") && !f.eq_ignore_ascii_case("\\Expunged")
            })
            .collect();
        set.into_iter().collect()
    }
}
