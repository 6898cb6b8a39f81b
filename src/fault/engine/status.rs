//! What `ctl status` and reports read from the [`Engine`]: per-user counters,
//! each lock and rule with its counts, the marks reached.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Engine;
use crate::fault::{Lock, Match, Rule};

/// Per-user counters, for `ctl status` and reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserCounters {
    /// Commands touching the user.
    pub commands: u64,
    /// `LOCKED` answers.
    pub locked: u64,
    /// Faults fired on commands touching the user.
    pub faults: u64,
    /// Commands that waited for a lock window (the sync_server personality,
    /// which blocks instead of answering `LOCKED`).
    pub waited: u64,
}

/// A lock, as `ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockStatus {
    /// The lock.
    #[serde(flatten)]
    pub lock: Lock,
    /// Open now.
    pub active: bool,
    /// `LOCKED` answers it caused.
    pub hits: u64,
}

/// A fault rule, as `ctl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    /// The rule.
    #[serde(flatten)]
    pub rule: Rule,
    /// Commands it matched.
    pub matches: u64,
    /// Times it fired.
    pub fires: u64,
}

/// Everything `ctl status` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The run's seed.
    pub seed: u64,
    /// Lock windows.
    pub locks: Vec<LockStatus>,
    /// Fault rules.
    pub faults: Vec<RuleStatus>,
    /// Per-user counters.
    pub users: BTreeMap<String, UserCounters>,
    /// Milliseconds new connections are still refused for.
    pub refusing_ms: u64,
    /// Marks reached so far.
    pub marks: Vec<String>,
}

impl Engine {
    /// Everything, for `ctl status`.
    pub fn status(&self, now: u64) -> Status {
        Status {
            seed: self.seed.0,
            locks: self
                .locks
                .iter()
                .map(|l| LockStatus {
                    lock: l.lock.clone(),
                    active: l.active,
                    hits: l.hits_total,
                })
                .collect(),
            faults: self
                .rules
                .iter()
                .map(|r| RuleStatus {
                    rule: r.rule.clone(),
                    matches: r.matches,
                    fires: r.fires,
                })
                .collect(),
            users: self.users.clone(),
            refusing_ms: self.refuse_until.saturating_sub(now),
            marks: self.marks.clone(),
        }
    }

    /// Names of the locks open now.
    pub fn active_locks(&self) -> Vec<&str> {
        self.locks
            .iter()
            .filter(|l| l.active)
            .map(|l| l.lock.name.as_str())
            .collect()
    }

    /// Does any lock target this user (for tests and reports)?
    pub fn targets_user(&self, user: &str) -> bool {
        self.locks
            .iter()
            .any(|l| l.lock.target.user.as_deref() == Some(user))
    }

    /// The matcher of every lock, for reports.
    pub fn lock_targets(&self) -> Vec<&Match> {
        self.locks.iter().map(|l| &l.lock.target).collect()
    }
}
