//! The acknowledged-write history: every command a target acknowledged, every
//! read it answered, and the checker that finds a write acknowledged and then
//! missing. Sans-IO: the fake's driver and the relay feed it
//! ([`History::command`], [`History::reply`], [`History::closed`]); the runner
//! asks [`check::check`] for the verdict.
//!
//! Why a history and not only the final state: a catch-up pass may carry a
//! change again and heal a target that acknowledged it and then lost it. For a
//! backup, "acknowledged, then missing" is data loss (had the source died
//! before the next pass, the change was gone), so the verdict must come from
//! what the target said it had, read by read, in the spirit of Jepsen's
//! checkers (Knossos, Elle). The checker's rules, what it covers and what it
//! does not, are in [`check`].
//!
//! Bounded: at most [`History::OPS_MAX`] commands and [`History::RECORDS_MAX`]
//! records are kept; past that the history says it is incomplete, and a
//! verdict built on it says so too (never a silent pass).

mod carry;
pub mod check;
pub mod facts;
mod reads;
#[cfg(test)]
mod tests;
pub mod verdict;

use std::collections::HashMap;

use crate::proto::{Command, Reply};
use crate::store::SessionId;

pub use check::check;
pub use facts::{Call, MailboxFacts, Observation, Outcome, Read, RecordFact, SeenFacts, Write};
pub use verdict::{About, Carried, CarryClass, FinalRead, Input, Report, Violation};

/// The runner's own connections (its reads of the target, [`crate::reader`])
/// are numbered from here on, apart from the client's.
pub const RUNNER_SESSIONS: SessionId = 1_000_000_000;

/// `session 3`, or `runner session 1` for the runner's own connections.
pub fn session_name(session: SessionId) -> String {
    match session.checked_sub(RUNNER_SESSIONS) {
        Some(n) => format!("runner session {}", n + 1),
        None => format!("session {session}"),
    }
}

/// One command the checker cares about, from its invocation to its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// The connection.
    pub session: SessionId,
    /// Its label (`APPLY MAILBOX`, `GET USER`).
    pub label: String,
    /// The first line of the command, shortened, for reports.
    pub text: String,
    /// When the command arrived (microseconds on the server's clock).
    pub invoked_us: u64,
    /// When its reply went out; `None` if none did.
    pub completed_us: Option<u64>,
    /// What it writes or reads.
    pub call: Call,
    /// How it ended.
    pub outcome: Outcome,
    /// What the reply showed (reads only, once answered).
    pub observed: Option<Observation>,
}

impl Op {
    /// True for a write the target acknowledged with `OK`.
    pub fn acked_write(&self) -> bool {
        matches!(self.call, Call::Write(_)) && self.outcome == Outcome::Ok
    }
}

/// A named point in time (a scenario step, the start of the catch-up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When (the server's clock, microseconds).
    pub t_us: u64,
    /// Its name.
    pub name: String,
}

/// The history of one target.
#[derive(Debug, Default)]
pub struct History {
    ops: Vec<Op>,
    marks: Vec<Mark>,
    /// Per connection: the op awaiting its reply (`None` for a command the
    /// checker does not track, whose reply must not complete an earlier one).
    pending: HashMap<SessionId, Option<usize>>,
    /// `RESTART`s: connection and time (a backupd session forgets what it
    /// reserved).
    restarts: Vec<(SessionId, u64)>,
    records: usize,
    truncated: Option<String>,
    /// [`History::OPS_MAX`] and [`History::RECORDS_MAX`] unless set otherwise.
    limits: Option<(usize, usize)>,
}

impl History {
    /// Most commands kept.
    pub const OPS_MAX: usize = 1_000_000;
    /// Most records (of `APPLY MAILBOX` and `* MAILBOX` items) kept.
    pub const RECORDS_MAX: usize = 4_000_000;

    /// An empty history.
    pub fn new() -> History {
        History::default()
    }

    /// An empty history keeping at most `ops` commands and `records` records.
    pub fn with_limits(ops: usize, records: usize) -> History {
        History {
            limits: Some((ops, records)),
            ..History::default()
        }
    }

    fn ops_max(&self) -> usize {
        self.limits.map_or(Self::OPS_MAX, |l| l.0)
    }

    fn records_max(&self) -> usize {
        self.limits.map_or(Self::RECORDS_MAX, |l| l.1)
    }

    /// Forget everything recorded so far (a new scenario on the same target:
    /// its verdict rests on its own history), keeping the limits.
    pub fn clear(&mut self) {
        *self = History {
            limits: self.limits,
            ..History::default()
        };
    }

    /// A command arrived on `session` (`None`: input that is no command, a
    /// SASL answer or an invalid line; its reply completes nothing).
    pub fn command(&mut self, session: SessionId, t_us: u64, text: &str, cmd: Option<&Command>) {
        self.unanswered(session, t_us);
        if matches!(cmd, Some(Command::Restart)) {
            self.restarts.push((session, t_us));
        }
        let call = match cmd {
            Some(c) if self.truncated.is_none() => Call::of(c).map(|call| (c.label(), call)),
            _ => None,
        };
        let Some((label, call)) = call else {
            self.pending.insert(session, None);
            return;
        };
        if self.ops.len() >= self.ops_max() {
            self.truncate(format!("more than {} commands", self.ops_max()));
            self.pending.insert(session, None);
            return;
        }
        if let Call::Write(Write::Mailbox(m)) = &call {
            self.count_records(m.records.as_ref().map_or(0, |r| r.len()));
        }
        self.ops.push(Op {
            session,
            label,
            text: shorten(text),
            invoked_us: t_us,
            completed_us: None,
            call,
            outcome: Outcome::Pending,
            observed: None,
        });
        self.pending.insert(session, Some(self.ops.len() - 1));
    }

    /// The complete response to the last command on `session`.
    pub fn reply(&mut self, session: SessionId, t_us: u64, replies: &[Reply]) {
        let Some(Some(i)) = self.pending.remove(&session) else {
            return;
        };
        let outcome = facts::outcome_of(replies);
        let observed = match (&self.ops[i].call, &outcome) {
            (Call::Read(_), Outcome::Ok | Outcome::No(_)) => {
                let o = Observation::from_replies(replies);
                let n = o
                    .mailboxes
                    .values()
                    .map(|m| m.records.as_ref().map_or(0, |r| r.len()))
                    .sum();
                self.count_records(n);
                Some(o)
            }
            _ => None,
        };
        let op = &mut self.ops[i];
        op.completed_us = Some(t_us);
        op.outcome = outcome;
        op.observed = observed;
    }

    /// `session` ended: a command still waiting for its reply got none.
    pub fn closed(&mut self, session: SessionId, t_us: u64) {
        self.unanswered(session, t_us);
    }

    /// What `session` sends or receives can no longer be decoded (a relay
    /// lost the stream): what follows is missing, so the history is
    /// incomplete and never a pass.
    pub fn lost(&mut self, session: SessionId, why: &str) {
        self.truncate(format!("{}: {why}", session_name(session)));
    }

    /// Name this point in time (`step 3`, `catch-up`).
    pub fn mark(&mut self, t_us: u64, name: impl Into<String>) {
        self.marks.push(Mark {
            t_us,
            name: name.into(),
        });
    }

    /// Every op, in the order the commands arrived.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Every `RESTART`: its connection and time, oldest first.
    pub fn restarts(&self) -> &[(SessionId, u64)] {
        &self.restarts
    }

    /// Every mark, oldest first.
    pub fn marks(&self) -> &[Mark] {
        &self.marks
    }

    /// Why the history is incomplete, if it is.
    pub fn truncated(&self) -> Option<&str> {
        self.truncated.as_deref()
    }

    /// The users some acknowledged write touched, sorted.
    pub fn users_written(&self) -> Vec<String> {
        let mut users: Vec<String> = self
            .ops
            .iter()
            .filter(|o| o.acked_write())
            .filter_map(|o| match &o.call {
                Call::Write(w) => check::write_user(w),
                Call::Read(_) => None,
            })
            .collect();
        users.sort();
        users.dedup();
        users
    }

    /// The quota roots some acknowledged `APPLY QUOTA` or `UNQUOTA` named, sorted.
    pub fn quota_roots_written(&self) -> Vec<String> {
        let mut roots: Vec<String> = self
            .ops
            .iter()
            .filter(|o| o.acked_write())
            .filter_map(|o| match &o.call {
                Call::Write(Write::Quota { root, .. }) => Some(root.clone()),
                _ => None,
            })
            .collect();
        roots.sort();
        roots.dedup();
        roots
    }

    fn unanswered(&mut self, session: SessionId, t_us: u64) {
        if let Some(Some(i)) = self.pending.remove(&session) {
            let op = &mut self.ops[i];
            op.outcome = Outcome::Unanswered;
            op.completed_us = Some(t_us);
        }
    }

    fn count_records(&mut self, n: usize) {
        self.records += n;
        if self.records > self.records_max() {
            self.truncate(format!("more than {} records", self.records_max()));
        }
    }

    fn truncate(&mut self, why: String) {
        self.truncated.get_or_insert(why);
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 160;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
