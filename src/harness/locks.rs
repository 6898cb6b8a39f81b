//! Lock windows on the target: on the fake a control request; on a real
//! backupd a `ctl_backups lock -u USER` process per window, closed by hand,
//! after a time or after a number of LOCKED answers ([`Harness::tick`]); other
//! targets cannot be locked on demand ([`lock_unsupported`]).

use std::time::Duration;

use crate::cyrus::{BackupLock, TargetKind};
use crate::events::EventKind;
use crate::fault::{LockSpec, TriggerSpec};
use crate::server::control;

use super::{Harness, Target};

/// Why a lock window could not be opened or closed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The fake refused the control request.
    #[error("{0}")]
    Control(String),
    /// The target cannot be given this lock (on a real backupd: what
    /// `ctl_backups lock -u USER` cannot express).
    #[error("{0}")]
    Unsupported(String),
    /// `ctl_backups lock -u USER` did not start.
    #[error("ctl_backups lock -u {user}: {reason}")]
    Start {
        /// The user.
        user: String,
        /// Why.
        reason: String,
    },
    /// No open lock window has this name or user.
    #[error("no open lock named or targeting `{name}` ({open} open)")]
    NoSuchLock {
        /// The name asked for.
        name: String,
        /// Windows open.
        open: usize,
    },
    /// Windows that could not be released, one text each.
    #[error("{}", .0.join("; "))]
    Release(Vec<String>),
}

/// A lock window on a real backupd: a `ctl_backups lock` process, and when it
/// ends.
#[derive(Debug)]
pub(super) struct RealLock {
    name: String,
    user: String,
    lock: BackupLock,
    close: RealClose,
}

#[derive(Debug, Clone, Copy)]
enum RealClose {
    /// By `unlock` or `clear`.
    Manual,
    /// At this instant.
    At(std::time::Instant),
    /// After this many `LOCKED` answers counted from this many.
    Attempts { n: u64, base: u64 },
}

/// How a real lock window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RealCloseSpec {
    Manual,
    AfterMs(u64),
    Attempts(u64),
}

impl Harness {
    /// Open a lock window. On the fake every [`LockSpec`] works; on a real
    /// backupd a window is a `ctl_backups lock -u USER` process, so only a
    /// user-wide `hold` lock opening at once can be made, closing by hand, after
    /// `after_ms`, or after `attempts` LOCKED answers. Other targets cannot be
    /// locked on demand.
    pub fn lock(&self, spec: &LockSpec) -> Result<(), LockError> {
        match &self.target {
            Target::Fake | Target::FakeSyncServer => self
                .ctl(&control::Request::Lock { lock: spec.clone() })
                .map(|_| ())
                .map_err(LockError::Control),
            Target::Real(TargetKind::Backupd) => {
                let (user, close) = real_lock_plan(spec).map_err(LockError::Unsupported)?;
                let real = self.real.as_ref().expect("a real target runs");
                let close = match close {
                    RealCloseSpec::Manual => RealClose::Manual,
                    RealCloseSpec::AfterMs(ms) => {
                        RealClose::At(std::time::Instant::now() + Duration::from_millis(ms))
                    }
                    RealCloseSpec::Attempts(n) => RealClose::Attempts {
                        n,
                        base: self.lock_hits(),
                    },
                };
                let lock = real.lock_user(&user).map_err(|e| LockError::Start {
                    user: user.clone(),
                    reason: e.to_string(),
                })?;
                let name = spec.name.clone().unwrap_or_else(|| user.clone());
                self.recorder.record(
                    0,
                    EventKind::Mark {
                        name: format!("ctl_backups lock -u {user} ({name})"),
                    },
                );
                self.real_locks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(RealLock {
                        name,
                        user,
                        lock,
                        close,
                    });
                Ok(())
            }
            other => Err(LockError::Unsupported(format!(
                "the {} target cannot be locked on demand",
                other.name()
            ))),
        }
    }

    /// Close every lock window named `name` or on user `name`.
    pub fn unlock(&self, name: &str) -> Result<(), LockError> {
        if self.target.is_fake() {
            return self
                .ctl(&control::Request::Unlock {
                    name: name.to_owned(),
                })
                .map(|_| ())
                .map_err(LockError::Control);
        }
        let mut locks = self.real_locks.lock().unwrap_or_else(|e| e.into_inner());
        let before = locks.len();
        let (closing, keep): (Vec<RealLock>, Vec<RealLock>) = std::mem::take(&mut *locks)
            .into_iter()
            .partition(|l| l.name == name || l.user == name);
        *locks = keep;
        drop(locks);
        if closing.is_empty() {
            return Err(LockError::NoSuchLock {
                name: name.to_owned(),
                open: before,
            });
        }
        self.release(closing)
    }

    /// Close every lock window and clear every fault.
    pub fn clear(&self) -> Result<(), LockError> {
        if self.target.is_fake() {
            return self
                .ctl(&control::Request::Clear)
                .map(|_| ())
                .map_err(LockError::Control);
        }
        let all = std::mem::take(&mut *self.real_locks.lock().unwrap_or_else(|e| e.into_inner()));
        self.release(all)
    }

    fn release(&self, locks: Vec<RealLock>) -> Result<(), LockError> {
        let mut errors = Vec::new();
        for mut l in locks {
            match l.lock.release() {
                Ok(()) => self.recorder.record(
                    0,
                    EventKind::Mark {
                        name: format!("ctl_backups unlock -u {} ({})", l.user, l.name),
                    },
                ),
                Err(e) => errors.push(format!("releasing {}: {e}", l.name)),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(LockError::Release(errors))
        }
    }

    /// Close the real lock windows whose time or LOCKED count has come (the fake
    /// closes its own). Call it often while a scenario runs.
    pub fn tick(&self) -> Result<(), LockError> {
        if self.target.is_fake() {
            return Ok(());
        }
        let hits = self.lock_hits();
        let now = std::time::Instant::now();
        let mut locks = self.real_locks.lock().unwrap_or_else(|e| e.into_inner());
        let (due, keep): (Vec<RealLock>, Vec<RealLock>) = std::mem::take(&mut *locks)
            .into_iter()
            .partition(|l| match l.close {
                RealClose::Manual => false,
                RealClose::At(t) => now >= t,
                RealClose::Attempts { n, base } => hits >= base + n,
            });
        *locks = keep;
        drop(locks);
        self.release(due)
    }

    /// Lock windows open on a real target (0 for the fake, which keeps its own).
    pub fn open_locks(&self) -> usize {
        self.real_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    fn lock_hits(&self) -> u64 {
        // A counter: tick() runs every few ms, and a storm logs thousands of events.
        self.recorder.events().lock_hits()
    }
}

/// The user and closing of a lock a real backupd can be given, or why not.
fn real_lock_plan(spec: &LockSpec) -> Result<(String, RealCloseSpec), String> {
    let why = "a real backupd is locked with `ctl_backups lock -u USER`";
    let user = spec
        .user
        .clone()
        .ok_or_else(|| format!("{why}: the lock needs a `user`"))?;
    if spec.mailbox.is_some() || spec.verb.is_some() {
        return Err(format!("{why}: a lock by mailbox or verb cannot be made"));
    }
    if spec.mode.as_deref().is_some_and(|m| m != "hold") {
        return Err(format!("{why}: only `hold` mode exists there"));
    }
    match &spec.open {
        None => {}
        Some(TriggerSpec::Word(w)) if w == "start" => {}
        Some(_) => return Err(format!("{why}: the window can only open at once")),
    }
    let close = match &spec.close {
        None => RealCloseSpec::Manual,
        Some(TriggerSpec::Word(w)) if w == "never" || w == "manual" => RealCloseSpec::Manual,
        Some(TriggerSpec::Table(t)) => match (t.after_ms, t.attempts, &t.mark, &t.on) {
            (Some(ms), None, None, None) => RealCloseSpec::AfterMs(ms),
            (None, Some(n), None, None) => RealCloseSpec::Attempts(n),
            _ => {
                return Err(format!(
                    "{why}: it closes by hand, `after_ms` or `attempts`"
                ))
            }
        },
        Some(_) => {
            return Err(format!(
                "{why}: it closes by hand, `after_ms` or `attempts`"
            ))
        }
    };
    Ok((user, close))
}

/// Why `spec` cannot be a lock window on `target`, if it cannot.
pub fn lock_unsupported(spec: &LockSpec, target: &Target) -> Option<String> {
    match target {
        Target::Fake | Target::FakeSyncServer => None,
        Target::Real(TargetKind::Backupd) => real_lock_plan(spec).err(),
        Target::Real(TargetKind::SyncServer) => Some(
            "a real sync_server blocks instead of answering LOCKED, and cannot be locked on demand"
                .into(),
        ),
        Target::Remote { .. } => Some("a HOST:PORT target cannot be locked on demand".into()),
    }
}
