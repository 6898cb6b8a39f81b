//! Holding a user's backup lock from outside, like a second backupd connection
//! would (`ctl_backups lock`), and asking whether it is held.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{io, RealTarget, Result, TargetKind};
use crate::cyrus::tool::ToolOutput;
use crate::cyrus::{process, CyrusError};

/// How long [`RealTarget::lock_user`] waits for the lock to be visible.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);
/// `ctl_backups` exit code for "Mailbox is locked" (EX_TEMPFAIL).
const EX_TEMPFAIL: i32 = 75;

impl RealTarget {
    /// Hold `user`'s backup lock like another backupd connection would
    /// (`ctl_backups lock -u USER`, released on stdin EOF). Returns once
    /// `ctl_backups list -u USER` answers rc 75 "Mailbox is locked" (bounded).
    /// The user's backup must exist already.
    pub fn lock_user(&self, user: &str) -> Result<BackupLock> {
        if self.kind != TargetKind::Backupd {
            return Err(CyrusError::Config(
                "lock_user needs a backupd target".into(),
            ));
        }
        let deadline = Instant::now() + LOCK_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            // `-x CMD` runs CMD while the lock is held: it says LOCKED (unbuffered,
            // unlike ctl_backups' own "OK locked") and holds the lock until our
            // stdin closes.
            let mut cmd = self.tool("ctl_backups");
            cmd.args(["lock", "-u", user, "-x", "echo LOCKED; exec cat >/dev/null"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0);
            // Registered: an interrupt kills it (and its `-x` shell) at once,
            // rather than when our exit closes its stdin.
            let (mut child, tracked) = process::spawn_tracked(
                &mut cmd,
                process::Kind::Group {
                    what: format!("ctl_backups lock -u {user}"),
                },
            )
            .map_err(io("start ctl_backups lock"))?;
            let stdout = child.stdout.take().expect("piped");
            let stderr = child.stderr.take();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stdout);
                let mut line = String::new();
                while r.read_line(&mut line).unwrap_or(0) > 0 {
                    if line.contains("LOCKED") {
                        let _ = tx.send(true);
                        // Keep draining until ctl_backups exits.
                        let _ = std::io::copy(&mut r, &mut std::io::sink());
                        return;
                    }
                    line.clear();
                }
                let _ = tx.send(false);
            });
            let wait = deadline.saturating_duration_since(Instant::now());
            let mut lock = BackupLock {
                user: user.to_string(),
                child: Some(child),
                tracked: Some(tracked),
            };
            match rx.recv_timeout(wait) {
                Ok(true) => {
                    drop(stderr);
                    return Ok(lock);
                }
                Ok(false) => {
                    // Exited without locking: another holder (e.g. a backupd
                    // connection that is still closing) has it. Try again.
                    let _ = lock.release();
                    let mut e = String::new();
                    if let Some(mut se) = stderr {
                        let _ = se.read_to_string(&mut e);
                    }
                    last = e.trim().to_string();
                    sleep(Duration::from_millis(100));
                }
                Err(_) => {
                    let _ = lock.release();
                    break;
                }
            }
        }
        Err(CyrusError::Config(format!(
            "could not lock {user}'s backup within {LOCK_TIMEOUT:?} (last: {last})"
        )))
    }

    /// Whether `ctl_backups list -u USER` says the backup is locked (rc 75,
    /// `Mailbox is locked`).
    pub fn is_locked(&self, user: &str) -> Result<bool> {
        Ok(is_locked_answer(&self.ctl_backups(&["list", "-u", user])?))
    }
}

/// A held backup lock (`ctl_backups lock`). Released on [`BackupLock::release`] or drop.
#[derive(Debug)]
pub struct BackupLock {
    user: String,
    child: Option<Child>,
    /// Its registration for the interrupt handler, until it is reaped.
    tracked: Option<process::Tracked>,
}

impl BackupLock {
    /// The locked user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The `ctl_backups` PID, while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }

    /// Close its stdin (the lock goes with the process) and wait up to 10 s; then
    /// kill it by PID. Idempotent.
    pub fn release(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = i32::try_from(child.id()).unwrap_or(-1);
        let kids = process::descendants(pid);
        drop(child.stdin.take());
        let exited = process::wait_until(Duration::from_secs(10), || {
            !matches!(child.try_wait(), Ok(None))
        });
        if !exited {
            let _ = child.kill();
        }
        // The `-x` shell and its `cat`, should any outlive ctl_backups.
        let _ = process::terminate_all(&kids, Duration::from_millis(500));
        let _ = child.wait();
        if let Some(t) = self.tracked.take() {
            process::untrack(t);
        }
        if exited {
            Ok(())
        } else {
            Err(CyrusError::Stop {
                pid: i32::try_from(child.id()).unwrap_or(-1),
                reason: "ctl_backups lock did not exit on stdin EOF; killed".into(),
            })
        }
    }
}

impl Drop for BackupLock {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// rc 75 alone is ambiguous (`not found in backups.db` also gives 75).
fn is_locked_answer(out: &ToolOutput) -> bool {
    out.code == Some(EX_TEMPFAIL)
        && (out.stdout.contains("Mailbox is locked") || out.stderr.contains("Mailbox is locked"))
}
