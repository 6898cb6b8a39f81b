//! What the checker is given and what it answers: [`Input`], [`Report`], and
//! the [`Violation`]s and [`Carried`] writes in it.

use std::fmt;

use serde::Serialize;

use super::History;
use crate::mailstate::MailState;

/// What the checker is given.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The history of the target.
    pub history: &'a History,
    /// The target's contents read back after every command, when it can be
    /// read: what it holds of the users it was asked for (a user asked for
    /// and absent holds nothing).
    pub final_state: Option<FinalRead<'a>>,
    /// The mark that starts the catch-up passes, if there was one.
    pub catch_up_mark: Option<&'a str>,
    /// The target keeps every body it acknowledged, in the backup of the user
    /// that reserved it (backupd, and the fake as backupd): then a body
    /// acknowledged by `APPLY MESSAGE` must never be `* MISSING` for that
    /// user again. A replica keeps only bodies its records use.
    pub bodies_kept: bool,
    /// The target keeps quota (a replica: sync_server, the fake as
    /// sync_server): then `APPLY QUOTA`/`UNQUOTA` are checked against later
    /// `* QUOTA` items. backupd acknowledges `APPLY QUOTA` and keeps nothing.
    pub quota_kept: bool,
}

/// What kind of state a violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    /// A mailbox as a whole: there or not, its identity and counters.
    Mailbox,
    /// An entry of a mailbox's ACL.
    Acl,
    /// A mailbox annotation.
    Annotation,
    /// Records of a mailbox (the UIDs say which): there or not, their GUID,
    /// expunged or live.
    Records,
    /// The flags of records.
    Flags,
    /// The per-message annotations of records.
    MessageAnnotation,
    /// The body of a record.
    Body,
    /// A subscription.
    Subscription,
    /// Seen state.
    Seen,
    /// A sieve script.
    Sieve,
    /// A quota root (the mailbox field names it).
    Quota,
}

/// The target's contents read back at the end.
#[derive(Debug, Clone, Copy)]
pub struct FinalRead<'a> {
    /// What it holds.
    pub state: &'a MailState,
    /// The users read.
    pub users: &'a [&'a str],
    /// Whether the read shows every field (`false`: only mailbox names,
    /// uniqueids and live UID -> GUID).
    pub full: bool,
}

/// One acknowledged write contradicted by a later read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What kind of state was lost.
    pub about: About,
    /// The owner of what was lost.
    pub user: String,
    /// The mailbox, when it is about one.
    pub mailbox: Option<String>,
    /// The UIDs concerned (empty for the mailbox as a whole).
    pub uids: Vec<u32>,
    /// The body concerned, when it is about one.
    pub guid: Option<String>,
    /// The acknowledged command: `session 3, step 4: APPLY MAILBOX %(…)`.
    pub acknowledged: String,
    /// The read that contradicted it.
    pub contradicted_by: String,
    /// What the read showed instead.
    pub what: String,
    /// Later reads that contradicted the same write the same way.
    pub again: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}", self.user)?;
        if let Some(m) = &self.mailbox {
            write!(f, ", mailbox {m}")?;
        }
        if !self.uids.is_empty() {
            write!(f, ", UIDs {:?}", self.uids)?;
        }
        write!(
            f,
            ": {}\n      acknowledged: {}\n      contradicted by: {}",
            self.what, self.acknowledged, self.contradicted_by
        )?;
        if self.again > 0 {
            write!(f, " (and {} later read(s))", self.again)?;
        }
        Ok(())
    }
}

/// Why the catch-up carried a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryClass {
    /// The target had not acknowledged this before the catch-up: it was queued.
    Queued,
    /// Acknowledged before and still there: the client sent it again without
    /// asking (a rolling `APPLY SUB`, say). Harmless.
    Repeated,
    /// Acknowledged before and then lost: the catch-up healed a loss. A failure.
    PreviouslyAcknowledged,
}

/// One write of the catch-up passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// The command: `session 9: APPLY MAILBOX %(…)`.
    pub command: String,
    /// Why it was carried.
    pub class: CarryClass,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every contradiction found.
    pub violations: Vec<Violation>,
    /// What the catch-up passes carried, and why.
    pub carried: Vec<Carried>,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Reads checked against at least one settled state.
    pub reads_checked: usize,
    /// Answered reads not checked because a data line in the answer could
    /// not be read (an absence in it may be a line not understood), and the
    /// first of them: the read and the line.
    pub reads_unreadable: usize,
    /// The first unreadable read: `session 2 (step 3): GET USER u: * MAILBOX: …`.
    pub first_unreadable: Option<String>,
    /// Set when the history is incomplete: the verdict is then not trusted.
    pub incomplete: Option<String>,
}

impl Report {
    /// True when nothing acknowledged was lost and the history was complete.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.incomplete.is_none()
    }
}
