//! Run the real `sync_client` with a timeout and captured output.
//!
//! `sync_client` retries a failed connect forever (15 s, 30 s, ...), even with `-o`,
//! so every run here has a deadline. `-v -v` sends its syslog lines (`Deferred: ...`)
//! and a protocol trace to stderr.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{last_lines, process, CyrusBins, CyrusError};

type Result<T> = std::result::Result<T, CyrusError>;

/// How many output lines [`SyncRun`]'s `Display` shows per stream.
const SHOWN_LINES: usize = 40;
/// How long to wait for the output pipes to close after the process is reaped.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// Runs `<bins>/sync_client -C <config> ...` (for a chroot installation
/// `chroot ROOT /usr/lib/cyrus/bin/sync_client -C <config inside ROOT> ...`;
/// chroot execs it, so the PID is sync_client's).
#[derive(Debug, Clone)]
pub struct SyncClient {
    bins: CyrusBins,
    /// The config as seen from the host.
    config: PathBuf,
    /// How many processes this runner and its clones have started and not
    /// reaped yet.
    alive: Arc<AtomicUsize>,
}

/// The outcome of one `sync_client` process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    /// Exit code; `None` if it was killed by a signal.
    pub status: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Killed because the timeout passed.
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub argv: Vec<String>,
}

impl SyncRun {
    /// Exited by itself with code 0.
    pub fn success(&self) -> bool {
        self.status == Some(0) && !self.timed_out
    }
}

impl fmt::Display for SyncRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "sync_client run: `{}`", self.argv.join(" "))?;
        let how = match (self.timed_out, self.status, self.signal) {
            (true, _, _) => "killed after timeout".to_string(),
            (false, Some(code), _) => format!("exit status {code}"),
            (false, None, Some(sig)) => format!("killed by signal {sig}"),
            (false, None, None) => "unknown exit".to_string(),
        };
        writeln!(
            f,
            "  result: {how}, elapsed {:.3} s",
            self.elapsed.as_secs_f64()
        )?;
        for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let total = text.lines().count();
            if total == 0 {
                writeln!(f, "  {name}: (empty)")?;
                continue;
            }
            writeln!(
                f,
                "  {name} (last {} of {total} lines):",
                total.min(SHOWN_LINES)
            )?;
            for line in last_lines(text, SHOWN_LINES).lines() {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}

impl SyncClient {
    /// `sync_client` from `bins`, reading `config_path` (the source's
    /// `imapd.conf`, a host path; below the chroot for a chroot installation).
    pub fn new(bins: &CyrusBins, config_path: impl AsRef<Path>) -> SyncClient {
        SyncClient {
            bins: bins.clone(),
            config: config_path.as_ref().to_path_buf(),
            alive: Arc::default(),
        }
    }

    /// How many `sync_client` processes this runner (or a clone of it) has
    /// started that are not reaped yet, plus the [`SyncClient::hold`]s kept.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::SeqCst)
    }

    /// Count as one client alive until the returned token is dropped: a
    /// supervisor that restarts its client holds one, so the gap between an
    /// exit and the restart never looks like no client at all.
    pub fn hold(&self) -> Alive {
        self.alive.fetch_add(1, Ordering::SeqCst);
        Alive(Arc::clone(&self.alive))
    }

    /// Run to completion, or kill it (SIGKILL) at `timeout`.
    pub fn run(&self, args: &[String], timeout: Duration) -> Result<SyncRun> {
        let mut running = self.spawn(args)?;
        running.finish(None, timeout)
    }

    /// Start it in the background (e.g. `-R` rolling mode); see [`RunningSyncClient`].
    pub fn spawn(&self, args: &[String]) -> Result<RunningSyncClient> {
        if args.iter().any(|a| a == "-r") {
            return Err(CyrusError::Config(
                "`sync_client -r` forks into the background where it cannot be supervised; use `-R`"
                    .into(),
            ));
        }
        let config = self.bins.inside(&self.config)?;
        let mut cmd = self.bins.command("sync_client");
        cmd.arg("-C").arg(&config).args(args);
        let mut argv = vec![cmd.get_program().to_string_lossy().into_owned()];
        argv.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Registered for the interrupt handler until reaped.
        let (mut child, tracked) =
            process::spawn_tracked(&mut cmd, process::Kind::SyncClient).map_err(CyrusError::io(
                format!("start `{}`", self.bins.host_path("sync_client").display()),
            ))?;
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Ok(RunningSyncClient {
            child: Some(child),
            tracked: Some(tracked),
            alive: Some(self.hold()),
            argv,
            started: Instant::now(),
            stdout,
            stderr,
        })
    }
}

/// Read a pipe to the end on its own thread, so the child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// The drained output; gives up after a short wait if the pipe is still held open
/// (by a grandchild that inherited it).
fn collect(rx: Option<Receiver<Vec<u8>>>) -> String {
    match rx.map(|rx| rx.recv_timeout(PIPE_GRACE)) {
        Some(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        Some(Err(_)) => "(output incomplete: the pipe stayed open after exit)".into(),
        None => String::new(),
    }
}

/// A `sync_client` running in the background. Dropping it kills and reaps it.
#[derive(Debug)]
pub struct RunningSyncClient {
    child: Option<Child>,
    /// Its entry in the interrupt registry, until reaped.
    tracked: Option<process::Tracked>,
    /// Its count in [`SyncClient::alive`], until reaped.
    alive: Option<Alive>,
    argv: Vec<String>,
    started: Instant,
    stdout: Option<Receiver<Vec<u8>>>,
    stderr: Option<Receiver<Vec<u8>>>,
}

impl RunningSyncClient {
    /// The process id (until it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        let running = match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        };
        if !running {
            self.alive = None;
        }
        running
    }

    /// Wait up to `timeout` for it to exit by itself; kill it (SIGKILL) otherwise.
    pub fn wait(&mut self, timeout: Duration) -> Result<SyncRun> {
        self.finish(None, timeout)
    }

    /// SIGTERM, wait up to `timeout`, then SIGKILL (then `timed_out` is set); reap and
    /// collect the output.
    pub fn stop(&mut self, timeout: Duration) -> Result<SyncRun> {
        self.finish(Some(Signal::SIGTERM), timeout)
    }

    fn finish(&mut self, first: Option<Signal>, timeout: Duration) -> Result<SyncRun> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| CyrusError::Config("sync_client was already stopped".into()))?;
        let pid = i32::try_from(child.id()).unwrap_or(-1);
        if let Some(sig) = first {
            if matches!(child.try_wait(), Ok(None)) {
                // Not yet reaped, so the PID is still ours.
                process::signal(pid, sig);
            }
        }
        let started = Instant::now();
        let exited = match process::wait_exit(pid, timeout) {
            Some(exited) => exited,
            None => process::wait_until(timeout.saturating_sub(started.elapsed()), || {
                !matches!(child.try_wait(), Ok(None))
            }),
        };
        let timed_out = !exited;
        if !exited {
            let _ = child.kill();
        }
        let status = child.wait();
        if let Some(t) = self.tracked.take() {
            process::untrack(t);
        }
        self.alive = None;
        let status: ExitStatus =
            status.map_err(CyrusError::io(format!("wait for sync_client (pid {pid})")))?;
        let elapsed = self.started.elapsed();
        use std::os::unix::process::ExitStatusExt;
        Ok(SyncRun {
            status: status.code(),
            signal: status.signal(),
            timed_out,
            stdout: collect(self.stdout.take()),
            stderr: collect(self.stderr.take()),
            elapsed,
            argv: self.argv.clone(),
        })
    }
}

impl Drop for RunningSyncClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(t) = self.tracked.take() {
            process::untrack(t);
        }
        self.alive = None;
    }
}

/// One client counted in [`SyncClient::alive`] until dropped.
#[derive(Debug)]
pub struct Alive(Arc<AtomicUsize>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
