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
    /// Subscribed mailboxes, internal names.
    pub subscriptions: BTreeSet<String>,
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
