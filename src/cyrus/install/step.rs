//! Running the steps of an installation or a build: each step a bounded,
//! interruptible command in its own process group, its output in the log,
//! its name and time on the progress line; [`InstallError`] says which step
//! failed and shows the log's last lines.

use std::fs;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(1200);

/// Why an installation failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A step failed; `log` names the full output.
    #[error("{step} failed: {reason}{tail}\n(full output: {log})", tail = tail_text(.tail), log = .log.display())]
    Step {
        step: String,
        reason: String,
        tail: String,
        log: PathBuf,
    },
    /// Something outside the steps.
    #[error("{0}")]
    Other(String),
    /// SIGINT, SIGTERM or SIGHUP arrived; the mounts were undone.
    #[error("interrupted during {0}; mounts undone, the partial root is rebuilt next time")]
    Interrupted(String),
}

fn tail_text(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- last lines ---\n{}", tail.trim_end())
    }
}

/// Interrupt flag for the build: SIGINT/SIGTERM/SIGHUP set it instead of
/// killing us, so the mounts are always undone.
pub(crate) fn interrupt_flag() -> Result<Arc<AtomicBool>, InstallError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&flag))
            .map_err(|e| InstallError::Other(format!("installing a signal handler: {e}")))?;
    }
    Ok(flag)
}

/// Runs the steps: each one's output goes to the log, its name and time to
/// `progress`.
pub(crate) struct Builder<'a> {
    pub(crate) log: PathBuf,
    pub(crate) interrupted: Arc<AtomicBool>,
    pub(crate) progress: &'a mut dyn FnMut(&str),
}

impl Builder<'_> {
    /// Run `cmd` as the step `name` (bounded, interruptible); its output goes to the log.
    pub(crate) fn run(&mut self, name: &str, cmd: &mut Command) -> Result<(), InstallError> {
        self.run_for(name, cmd, STEP_TIMEOUT)
    }

    /// [`Builder::run`] without progress lines (only the log and, on
    /// failure, the error name the step).
    pub(crate) fn run_quiet(&mut self, name: &str, cmd: &mut Command) -> Result<(), InstallError> {
        self.run_with(name, cmd, STEP_TIMEOUT, false)
    }

    /// [`Builder::run`] with its own bound.
    pub(crate) fn run_for(
        &mut self,
        name: &str,
        cmd: &mut Command,
        timeout: Duration,
    ) -> Result<(), InstallError> {
        self.run_with(name, cmd, timeout, true)
    }

    fn run_with(
        &mut self,
        name: &str,
        cmd: &mut Command,
        timeout: Duration,
        loud: bool,
    ) -> Result<(), InstallError> {
        let started = Instant::now();
        if loud {
            (self.progress)(&format!("{name} ..."));
        }
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| InstallError::Other(format!("open `{}`: {e}", self.log.display())))?;
        let _ = writeln!(log, "\n==== {name}: {cmd:?}");
        let log2 = log
            .try_clone()
            .map_err(|e| InstallError::Other(format!("log handle: {e}")))?;
        // Its own process group (whose id is the child's PID), so apt's helpers
        // (dpkg, the http methods) are stopped with it.
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| self.fail(name, format!("cannot start: {e}")))?;
        let status = loop {
            if let Some(s) = child
                .try_wait()
                .map_err(|e| self.fail(name, format!("wait: {e}")))?
            {
                break s;
            }
            let interrupted = self.interrupted.load(Ordering::SeqCst);
            if interrupted || started.elapsed() > timeout {
                stop_group(&mut child);
                return Err(if interrupted {
                    InstallError::Interrupted(name.to_owned())
                } else {
                    self.fail(name, format!("no end within {timeout:?}"))
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            return Err(self.fail(name, format!("{status}")));
        }
        if loud {
            (self.progress)(&format!(
                "{name}: done in {:.1} s",
                started.elapsed().as_secs_f64()
            ));
        }
        Ok(())
    }

    /// Whether SIGINT, SIGTERM or SIGHUP arrived.
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }

    pub(crate) fn fail(&self, step: &str, reason: String) -> InstallError {
        InstallError::Step {
            step: step.to_owned(),
            reason,
            tail: crate::cyrus::master::read_tail(&self.log, 20),
            log: self.log.clone(),
        }
    }
}

/// Stop a step's process group (its id is the child's PID, and the child is
/// not reaped yet, so the id is still ours): SIGTERM, up to 5 s, SIGKILL.
fn stop_group(child: &mut std::process::Child) {
    use nix::sys::signal::{killpg, Signal};
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let group = nix::unistd::Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Helpers that outlived the leader are still in the group.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait();
}
