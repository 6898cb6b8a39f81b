//! One lock window's state: open or closed, its hits, and which commands it
//! makes wait in the sync_server personality ([`NAMESPACE_LOCKED`]).

use super::CommandEvent;
use crate::fault::{Lock, LockMode, Trigger};

/// The commands real sync_server 3.6.1 runs under the user namespace lock
/// (`mboxname_usernamespacelock`, a blocking fcntl lock on
/// `<configdir>/lock/*U*<user>.lock`, in `imap/sync_support.c`): what a `hold`
/// lock (another process holding the user) makes wait in the sync_server
/// personality. GETs and RESERVE open mailboxes under their own locks.
pub const NAMESPACE_LOCKED: [&str; 4] = [
    "APPLY MAILBOX",
    "APPLY UNMAILBOX",
    "APPLY RENAME",
    "APPLY UNUSER",
];

#[derive(Debug)]
pub(super) struct LockState {
    pub(super) lock: Lock,
    pub(super) active: bool,
    /// When it last opened (ms).
    pub(super) opened_at: u64,
    /// LOCKED answers since it last opened.
    pub(super) hits: u64,
    /// LOCKED answers in all.
    pub(super) hits_total: u64,
    /// Matches seen by an `On` open trigger / close trigger.
    pub(super) open_matches: u64,
    pub(super) close_matches: u64,
    /// It closed and will not reopen by itself.
    pub(super) done: bool,
}

impl LockState {
    pub(super) fn activate(&mut self, now: u64) {
        self.active = true;
        self.opened_at = now;
        self.hits = 0;
        self.close_matches = 0;
    }

    pub(super) fn deactivate(&mut self) {
        self.active = false;
        // A window opened by an event or by start runs once; marks and ctl may reopen.
        self.done = matches!(self.lock.open, Trigger::On { .. } | Trigger::Start);
    }

    pub(super) fn blocks(&self, ev: &CommandEvent<'_>) -> bool {
        match self.lock.mode {
            LockMode::Reject => self.lock.target.matches(ev),
            LockMode::Hold => {
                NAMESPACE_LOCKED.contains(&ev.verb)
                    && self
                        .lock
                        .target
                        .user
                        .as_ref()
                        .is_some_and(|u| ev.users.contains(u))
            }
        }
    }

    pub(super) fn hit(&mut self) {
        self.hits += 1;
        self.hits_total += 1;
        if let Trigger::Attempts(n) = self.lock.close {
            if self.hits >= n {
                self.deactivate();
            }
        }
    }
}
