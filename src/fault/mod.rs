//! Lock windows and faults: small values the server consults at protocol
//! events. Sans-IO: the driver passes the time (milliseconds since the server
//! started) and the event; the engine returns a [`Verdict`] and never touches a
//! socket.
//!
//! Every random choice (a fault's `probability`) comes from the [`Rng`](crate::rng::Rng) the
//! engine was built with, forked from the run's seed, and decisions depend only
//! on the order of events: the same seed and the same commands give the same
//! verdicts.
//!
//! Two lock modes:
//! - [`LockMode::Hold`] behaves as another connection holding the user's backup
//!   (what `ctl_backups lock` does to real backupd): a session that tries to
//!   *open* the user gets `LOCKED`; a session that already holds it carries on
//!   until RESTART. Only a whole user can be held.
//! - [`LockMode::Reject`] answers every matching command `LOCKED` and stores
//!   nothing: any user, mailbox or command kind, which real backupd cannot do.
//!
//! With the sync_server personality neither mode answers `LOCKED`: the driver
//! makes the command wait while [`Engine::blocking_lock`] finds a window (a
//! `reject` window by its matcher, a `hold` window for the user's
//! [`NAMESPACE_LOCKED`] commands), as sync_server blocks on its locks.
//!
//! Files: `engine` (the verdicts; `engine/window.rs` one lock window's state,
//! `engine/status.rs` what `ctl status` reads), `spec` (locks and faults as
//! written, validated into values, [`SpecError`]), `plan` (the plan file, with
//! file/line errors). The actions' effects are in [`crate::effect`].

mod engine;
pub mod plan;
mod spec;

pub use crate::types::Corruption;
pub use engine::{
    CommandEvent, Engine, LockStatus, RuleStatus, Status, UserCounters, Verdict, NAMESPACE_LOCKED,
};
pub use plan::{Plan, PlanError};
pub use spec::{FaultSpec, LockSpec, MatchSpec, SpecError, TriggerSpec, TriggerTable};

use serde::Serialize;

/// Which commands a rule or lock applies to. Empty fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Match {
    /// A command label (`APPLY MAILBOX`) or its leading words (`APPLY`).
    pub verb: Option<String>,
    /// A user the command touches.
    pub user: Option<String>,
    /// A mailbox the command names.
    pub mailbox: Option<String>,
    /// Connection number, from 1.
    pub session: Option<u64>,
    /// Command number within its connection, from 1.
    pub index: Option<u64>,
}

impl Match {
    /// True when `ev` is one of the commands this matcher describes.
    pub fn matches(&self, ev: &CommandEvent<'_>) -> bool {
        let verb_ok = self.verb.as_deref().is_none_or(|v| {
            ev.verb == v
                || ev
                    .verb
                    .strip_prefix(v)
                    .is_some_and(|rest| rest.starts_with(' '))
        });
        verb_ok
            && self
                .user
                .as_deref()
                .is_none_or(|u| ev.users.iter().any(|x| x == u))
            && self
                .mailbox
                .as_deref()
                .is_none_or(|m| ev.mailboxes.iter().any(|x| x == m))
            && self.session.is_none_or(|s| s == ev.session)
            && self.index.is_none_or(|i| i == ev.index)
    }
}

/// How a lock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// As another connection holding the user's backup.
    Hold,
    /// Every matching command answered `LOCKED`.
    Reject,
}

/// When a lock window opens or closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Open from the start.
    Start,
    /// Only by hand (`ctl`).
    Manual,
    /// Never (for `close`).
    Never,
    /// At a named mark.
    Mark(String),
    /// When a command matches, the nth time.
    On {
        /// The matcher.
        when: Match,
        /// Which match (from 1).
        nth: u64,
    },
    /// This many milliseconds after opening (close only).
    AfterMs(u64),
    /// After this many `LOCKED` answers (close only).
    Attempts(u64),
}

/// A lock window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// Name for status and logs.
    pub name: String,
    /// What it locks.
    pub target: Match,
    /// How it answers.
    pub mode: LockMode,
    /// When it opens.
    pub open: Trigger,
    /// When it closes.
    pub close: Trigger,
}

/// A fault rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Name for status and logs.
    pub name: String,
    /// Which commands it looks at.
    pub when: Match,
    /// Fire on the nth match only.
    pub nth: Option<u64>,
    /// Fire on each match with this probability.
    pub probability: Option<f64>,
    /// Fire at most this many times.
    pub times: Option<u64>,
    /// What happens.
    pub action: Action,
}

/// What a fault does to the command it fires on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Action {
    /// Close the connection without executing the command.
    DropBefore,
    /// Execute the command, then close without replying.
    DropAfter,
    /// Execute, send the first `bytes` bytes of the reply, close.
    PartialReply {
        /// How many bytes of the reply to send.
        bytes: usize,
    },
    /// Execute, wait, reply.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// Never answer (the client hits its `sync_timeout`).
    Stall,
    /// Answer `NO text` without executing.
    No {
        /// The reply text (its first word is the error code).
        text: String,
    },
    /// Answer `BAD text` without executing.
    Bad {
        /// The reply text.
        text: String,
    },
    /// Answer `BYE text` and close.
    Bye {
        /// The reply text.
        text: String,
    },
    /// Refuse new connections for a while (this command goes on normally).
    RefuseConnections {
        /// Milliseconds.
        ms: u64,
    },
    /// Drop every connection, keep the stored state, refuse connections for a while.
    Restart {
        /// Milliseconds of refusal after the restart.
        ms: u64,
    },
    /// Answer `OK Success` without storing anything (to prove the checks catch loss).
    Lie,
    /// Leave GUIDs out of `* MISSING` (to prove the checks catch loss).
    HideMissing {
        /// How many.
        count: usize,
    },
    /// Execute and acknowledge, then corrupt one kind of stored state (to
    /// prove the convergence check catches each row: see [`Corruption`]).
    Corrupt {
        /// What is corrupted.
        what: Corruption,
    },
    /// Close without executing the command (as `drop-before`), and corrupt
    /// one kind of stored state with it: a target that loses data when a
    /// connection drops (to prove an unanswered write does not hide the loss
    /// of what was acknowledged before it).
    DropCorrupt {
        /// What is corrupted.
        what: Corruption,
    },
}

impl Action {
    /// Every action's name as written in plans.
    pub const NAMES: [&'static str; 14] = [
        "drop-before",
        "drop-after",
        "partial-reply",
        "delay",
        "stall",
        "no",
        "bad",
        "bye",
        "refuse-connections",
        "restart",
        "lie",
        "hide-missing",
        "corrupt",
        "drop-corrupt",
    ];

    /// The action's name as written in plans.
    pub fn name(&self) -> &'static str {
        match self {
            Action::DropBefore => "drop-before",
            Action::DropAfter => "drop-after",
            Action::PartialReply { .. } => "partial-reply",
            Action::Delay { .. } => "delay",
            Action::Stall => "stall",
            Action::No { .. } => "no",
            Action::Bad { .. } => "bad",
            Action::Bye { .. } => "bye",
            Action::RefuseConnections { .. } => "refuse-connections",
            Action::Restart { .. } => "restart",
            Action::Lie => "lie",
            Action::HideMissing { .. } => "hide-missing",
            Action::Corrupt { .. } => "corrupt",
            Action::DropCorrupt { .. } => "drop-corrupt",
        }
    }
}

/// A text for an injected `NO <code>` that names its origin.
pub(crate) fn default_text(code: &str) -> &'static str {
    match code {
        "IMAP_MAILBOX_LOCKED" => "Mailbox locked",
        "IMAP_MAILBOX_NONEXISTENT" => "No Such Mailbox",
        "IMAP_PROTOCOL_ERROR" => "Protocol error",
        "IMAP_PROTOCOL_BAD_PARAMETERS" => "Bad parameters",
        _ => "injected by backupd-sim",
    }
}
