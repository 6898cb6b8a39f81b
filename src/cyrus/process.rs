//! Process helpers that work by PID only (what they read of `/proc` is parsed
//! in [`super::procfs`]), and the process-wide registry of what we started
//! (see [`install_interrupt_handler`]).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Mutex, MutexGuard, Once};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use super::ports::{free_port, port_owner, PortOwner};
use super::procfs::all_stats;
pub use super::procfs::{
    children_of, descendants, pid_alive, proc_stat, same_process_alive, ProcStat,
};

/// Send `signal` to `pid`; errors (already gone) are ignored.
pub fn signal(pid: i32, sig: Signal) {
    if pid > 0 {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Send `signal` to every process of group `pgid`; errors are ignored.
pub fn signal_group(pgid: i32, sig: Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), sig);
    }
}

/// Terminate recorded processes that are still alive: SIGTERM, wait up to `grace`,
/// then SIGKILL and wait briefly. Returns the PIDs still alive at the end.
pub fn terminate_all(procs: &[ProcStat], grace: Duration) -> Vec<i32> {
    let alive = |s: &ProcStat| same_process_alive(s.pid, s.starttime);
    let targets: Vec<ProcStat> = procs.iter().copied().filter(alive).collect();
    let still_alive = || -> Vec<ProcStat> { targets.iter().copied().filter(alive).collect() };
    for s in &targets {
        signal(s.pid, Signal::SIGTERM);
    }
    wait_until(grace, || still_alive().is_empty());
    for s in still_alive() {
        signal(s.pid, Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(2), || still_alive().is_empty());
    still_alive().iter().map(|s| s.pid).collect()
}

/// Wait up to `timeout` for our child `pid` to exit, without reaping it (the
/// caller reaps it, with [`Child::wait`]): a helper thread blocks in
/// `waitid(WEXITED | WNOWAIT)` and reports the exit the moment it happens.
/// `Some(true)` when it exited, `Some(false)` at the timeout (the helper ends
/// when the caller kills and reaps the child), `None` when `waitid` failed
/// (not our child): then the caller falls back to [`wait_until`].
pub fn wait_exit(pid: i32, timeout: Duration) -> Option<bool> {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = loop {
            match waitid(
                Id::Pid(Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => break r.is_ok(),
            }
        };
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(true) => Some(true),
        Ok(false) => None,
        Err(_) => Some(false),
    }
}

/// Poll `done` every 20 ms until it is true or `timeout` passes; returns `done()`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// The registry: every child we start and every sandbox to remove, so that an
// interrupt (SIGINT, SIGTERM, SIGHUP) never leaves a Cyrus master, an imapd, a
// sync_client or a sandbox behind, although the process exits without Drop.

/// A process started through [`spawn_tracked`]: with its start time, so a
/// recycled PID is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracked {
    pub pid: i32,
    pub starttime: u64,
}

impl Tracked {
    /// Whether this very process is still alive (not a zombie, not a recycled PID).
    pub fn alive(&self) -> bool {
        same_process_alive(self.pid, self.starttime)
    }
}

/// What a tracked process is, which decides how an interrupt stops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A Cyrus `master`: SIGTERM, bounded wait, SIGKILL; then its descendants and
    /// every process whose command line names `marker` (its `imapd.conf`).
    Master { marker: PathBuf },
    /// A `sync_client`: SIGKILL.
    SyncClient,
    /// A Cyrus tool started in a process group of its own (so a terminal's
    /// Ctrl-C never reaches it): a `ctl_backups lock` holder, a bounded tool
    /// run. SIGKILL to its whole group (the holder's `-x` shell and `cat`
    /// too), while its leader still runs.
    Group {
        /// What it is, for the cleanup's line (`ctl_backups lock`).
        what: String,
    },
}

#[derive(Debug)]
struct Entry {
    proc: Tracked,
    kind: Kind,
}

#[derive(Debug)]
struct Registry {
    /// Set by the interrupt cleanup: from then on nothing new is started.
    shutting_down: bool,
    /// Once shutting down, a thread that touches the registry waits for the exit
    /// (so a worker that saw its instance die cannot finish the run normally
    /// while the cleanup is still under way). Off for the tests' own registries.
    park_when_shutting_down: bool,
    procs: Vec<Entry>,
    /// Sandboxes and whether to keep them.
    sandboxes: Vec<(PathBuf, bool)>,
}

impl Registry {
    const fn new(park_when_shutting_down: bool) -> Registry {
        Registry {
            shutting_down: false,
            park_when_shutting_down,
            procs: Vec::new(),
            sandboxes: Vec::new(),
        }
    }
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry::new(true));

/// The registry, locked. Once an interrupt cleanup has begun, the calling thread
/// waits here (without the lock) for the handler to end the process.
fn lock(reg: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    let guard = reg.lock().unwrap_or_else(|e| e.into_inner());
    if guard.shutting_down && guard.park_when_shutting_down {
        drop(guard);
        park_until_interrupted();
    }
    guard
}

fn registry() -> MutexGuard<'static, Registry> {
    lock(&REGISTRY)
}

/// Spawn `cmd` and register the child, atomically with respect to an interrupt:
/// once the interrupt cleanup has begun this refuses to start anything
/// (`ErrorKind::Interrupted`), and a child spawned before it is always in the
/// snapshot the cleanup stops. Call [`untrack`] once the child has been reaped.
pub fn spawn_tracked(cmd: &mut Command, kind: Kind) -> std::io::Result<(Child, Tracked)> {
    spawn_in(&REGISTRY, cmd, kind)
}

fn spawn_in(
    reg: &Mutex<Registry>,
    cmd: &mut Command,
    kind: Kind,
) -> std::io::Result<(Child, Tracked)> {
    let mut reg = lock(reg);
    if reg.shutting_down {
        return Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "interrupted: not starting new processes",
        ));
    }
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(-1);
    // Not reaped yet, so `/proc/PID` exists (at worst as a zombie).
    let starttime = proc_stat(pid).map_or(0, |s| s.starttime);
    let proc = Tracked { pid, starttime };
    reg.procs.push(Entry { proc, kind });
    Ok((child, proc))
}

/// Forget a process registered by [`spawn_tracked`] (it was stopped normally).
pub fn untrack(proc: Tracked) {
    registry().procs.retain(|e| e.proc != proc);
}

/// The processes registered now (for tests and diagnostics).
pub fn tracked() -> Vec<(Tracked, Kind)> {
    registry()
        .procs
        .iter()
        .map(|e| (e.proc, e.kind.clone()))
        .collect()
}

/// Register a sandbox directory to remove on interrupt (unless kept).
pub fn register_sandbox(path: &Path) {
    register_sandbox_in(&REGISTRY, path);
}

fn register_sandbox_in(reg: &Mutex<Registry>, path: &Path) {
    let mut reg = lock(reg);
    if !reg.sandboxes.iter().any(|(p, _)| p == path) {
        reg.sandboxes.push((path.to_owned(), false));
    }
}

/// Mark a registered sandbox to be kept on interrupt (e.g. `--keep`, or a failed
/// scenario's sandbox).
pub fn keep_sandbox(path: &Path) {
    keep_sandbox_in(&REGISTRY, path);
}

fn keep_sandbox_in(reg: &Mutex<Registry>, path: &Path) {
    for (p, keep) in lock(reg).sandboxes.iter_mut() {
        if p == path {
            *keep = true;
        }
    }
}

/// Forget a sandbox (it was removed, or kept, normally).
pub fn unregister_sandbox(path: &Path) {
    registry().sandboxes.retain(|(p, _)| p != path);
}

/// A sandbox's registration, undone on drop: hold it as long as the directory
/// it names should be removed on interrupt (declare it after the `TempDir`, so
/// the directory goes first).
#[derive(Debug)]
pub struct SandboxRegistration {
    path: PathBuf,
}

impl SandboxRegistration {
    /// Register `path`; `keep`: leave it on interrupt (still listed as kept).
    pub fn new(path: &Path, keep: bool) -> SandboxRegistration {
        register_sandbox(path);
        if keep {
            keep_sandbox(path);
        }
        SandboxRegistration {
            path: path.to_owned(),
        }
    }

    /// Keep the directory on interrupt from now on.
    pub fn keep(&self) {
        keep_sandbox(&self.path);
    }

    /// The registered directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SandboxRegistration {
    fn drop(&mut self) {
        unregister_sandbox(&self.path);
    }
}

/// What [`cleanup_registered`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleanup {
    /// Cyrus masters that were alive and were stopped.
    pub instances: usize,
    /// sync_client processes that were alive and were killed.
    pub sync_clients: usize,
    /// Tool process groups (a `ctl_backups lock` holder, a bounded tool run)
    /// that were alive and were killed, by what they were.
    pub tools: Vec<String>,
    /// Other processes (master's children, by then orphaned or not) killed.
    pub children: usize,
    /// Sandboxes removed.
    pub sandboxes_removed: usize,
    /// Sandboxes kept (marked keep).
    pub sandboxes_kept: Vec<PathBuf>,
    /// PIDs still alive at the end, and sandboxes that could not be removed.
    pub problems: Vec<String>,
}

impl std::fmt::Display for Cleanup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = |count: usize, one: &str, many: &str| {
            format!("{count} {}", if count == 1 { one } else { many })
        };
        write!(
            f,
            "stopped {} and {}, removed {}",
            n(self.instances, "Cyrus instance", "Cyrus instances"),
            n(
                self.sync_clients,
                "sync_client process",
                "sync_client processes"
            ),
            n(self.sandboxes_removed, "sandbox", "sandboxes"),
        )?;
        if !self.tools.is_empty() {
            write!(
                f,
                ", killed {} ({})",
                n(
                    self.tools.len(),
                    "tool process group",
                    "tool process groups"
                ),
                self.tools.join(", ")
            )?;
        }
        if self.children > 0 {
            write!(f, " ({} leftover Cyrus children killed)", self.children)?;
        }
        if !self.sandboxes_kept.is_empty() {
            let kept: Vec<String> = self
                .sandboxes_kept
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            write!(f, ", kept {}", kept.join(" "))?;
        }
        if !self.problems.is_empty() {
            write!(f, "; PROBLEMS: {}", self.problems.join("; "))?;
        }
        Ok(())
    }
}

/// Processes whose command line contains `needle` (e.g. an instance's config path).
fn processes_naming(needle: &str) -> Vec<ProcStat> {
    let me = std::process::id() as i32;
    all_stats()
        .into_iter()
        .filter(|s| s.pid != me && s.state != 'Z' && s.state != 'X')
        .filter(|s| {
            std::fs::read(format!("/proc/{}/cmdline", s.pid)).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c).replace('\0', " ");
                text.contains(needle)
            })
        })
        .collect()
}

/// Stop every registered process and remove every registered sandbox not marked
/// keep; from now on [`spawn_tracked`] refuses. Bounded: masters get `grace`
/// after SIGTERM (all at once), then SIGKILL; the rest is SIGKILL and short waits.
pub fn cleanup_registered(grace: Duration) -> Cleanup {
    cleanup_in(&REGISTRY, grace)
}

fn cleanup_in(reg: &Mutex<Registry>, grace: Duration) -> Cleanup {
    let (procs, sandboxes) = {
        let mut reg = lock(reg);
        reg.shutting_down = true;
        (
            std::mem::take(&mut reg.procs),
            std::mem::take(&mut reg.sandboxes),
        )
    };
    let mut out = Cleanup::default();
    // 1. sync_clients first: they hold connections and the channel log.
    let clients: Vec<Tracked> = procs
        .iter()
        .filter(|e| e.kind == Kind::SyncClient && e.proc.alive())
        .map(|e| e.proc)
        .collect();
    for p in &clients {
        signal(p.pid, Signal::SIGKILL);
    }
    out.sync_clients = clients.len();
    // ... and tool groups (a lock holder would otherwise keep its lock until
    // we exit): the leader, its group and its descendants.
    let mut tool_procs: Vec<ProcStat> = Vec::new();
    for e in &procs {
        if let Kind::Group { what } = &e.kind {
            if e.proc.alive() {
                tool_procs.extend(descendants(e.proc.pid));
                tool_procs.extend(proc_stat(e.proc.pid));
                // The leader runs, so the group is still the one it leads.
                signal_group(e.proc.pid, Signal::SIGKILL);
                out.tools.push(what.clone());
            }
        }
    }
    for s in &tool_procs {
        signal(s.pid, Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(2), || {
        tool_procs
            .iter()
            .all(|s| !same_process_alive(s.pid, s.starttime))
    });
    for s in &tool_procs {
        if same_process_alive(s.pid, s.starttime) {
            out.problems.push(format!("tool pid {} still alive", s.pid));
        }
    }
    // 2. masters: note their children, SIGTERM all, wait, SIGKILL the rest.
    let mut masters = Vec::new();
    let mut kids: Vec<ProcStat> = Vec::new();
    for e in &procs {
        if let Kind::Master { marker } = &e.kind {
            if e.proc.alive() {
                kids.extend(descendants(e.proc.pid));
                masters.push((e.proc, marker.clone()));
            }
        }
    }
    out.instances = masters.len();
    for (m, _) in &masters {
        signal(m.pid, Signal::SIGTERM);
    }
    let all_gone = |ps: &[(Tracked, PathBuf)]| ps.iter().all(|(m, _)| !m.alive());
    if !wait_until(grace, || all_gone(&masters)) {
        for (m, _) in &masters {
            if m.alive() {
                kids.extend(descendants(m.pid));
                signal(m.pid, Signal::SIGKILL);
            }
        }
        wait_until(Duration::from_secs(2), || all_gone(&masters));
    }
    // 3. their children (reparented by now if master died first), and anything
    //    else still naming an instance's config (started in between).
    let mut leftovers: Vec<ProcStat> = kids
        .into_iter()
        .filter(|s| same_process_alive(s.pid, s.starttime))
        .collect();
    for (_, marker) in &masters {
        if let Some(m) = marker.to_str().filter(|m| !m.is_empty()) {
            leftovers.extend(processes_naming(m));
        }
    }
    // Markers of instances that were registered but whose master was already gone.
    for e in &procs {
        if let Kind::Master { marker } = &e.kind {
            if !masters.iter().any(|(m, _)| *m == e.proc) {
                if let Some(m) = marker.to_str().filter(|m| !m.is_empty()) {
                    leftovers.extend(processes_naming(m));
                }
            }
        }
    }
    leftovers.sort_by_key(|s| (s.pid, s.starttime));
    leftovers.dedup_by_key(|s| (s.pid, s.starttime));
    out.children = leftovers.len();
    for s in &leftovers {
        signal(s.pid, Signal::SIGKILL);
    }
    wait_until(Duration::from_secs(2), || {
        leftovers
            .iter()
            .all(|s| !same_process_alive(s.pid, s.starttime))
    });
    for s in &leftovers {
        if same_process_alive(s.pid, s.starttime) {
            out.problems.push(format!("pid {} still alive", s.pid));
        }
    }
    for (m, _) in &masters {
        if m.alive() {
            out.problems
                .push(format!("master pid {} still alive", m.pid));
        }
    }
    for c in &clients {
        if c.alive() {
            out.problems
                .push(format!("sync_client pid {} still alive", c.pid));
        }
    }
    // 4. sandboxes.
    for (path, keep) in sandboxes {
        if keep {
            out.sandboxes_kept.push(path);
            continue;
        }
        if !path.exists() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => out.sandboxes_removed += 1,
            Err(e) => out
                .problems
                .push(format!("removing `{}`: {e}", path.display())),
        }
    }
    out
}

/// How long masters get after SIGTERM on interrupt.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
/// The whole interrupt cleanup ends by then, done or not.
const INTERRUPT_DEADLINE: Duration = Duration::from_secs(15);

static HANDLER: Once = Once::new();

/// On SIGINT, SIGTERM or SIGHUP: stop every registered process, remove every
/// registered sandbox not marked keep, print one line on stderr saying so, and
/// exit with 128 + the signal (130, 143, 129). Bounded by ~15 s. Install it once,
/// early in `main` (later calls do nothing).
///
/// Do not combine with another handler that also acts on these signals (e.g.
/// tokio's `signal()` in `serve`): both would run.
pub fn install_interrupt_handler() -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut result = Ok(());
    HANDLER.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(s) => s,
            Err(e) => {
                result = Err(e);
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("interrupt".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    on_interrupt(sig);
                }
            });
        if let Err(e) = spawned {
            result = Err(e);
        }
    });
    result
}

fn on_interrupt(sig: i32) -> ! {
    let code = 128 + sig;
    let name = match sig {
        signal_hook::consts::SIGINT => "SIGINT",
        signal_hook::consts::SIGTERM => "SIGTERM",
        signal_hook::consts::SIGHUP => "SIGHUP",
        _ => "signal",
    };
    // Whatever happens, the process is gone by the deadline.
    let _ = std::thread::Builder::new()
        .name("interrupt-deadline".into())
        .spawn(move || {
            sleep(INTERRUPT_DEADLINE);
            eprintln!(
                "interrupted ({name}): cleanup did not finish within {INTERRUPT_DEADLINE:?}; exiting"
            );
            std::process::exit(code);
        });
    let done = cleanup_registered(INTERRUPT_GRACE);
    eprintln!("interrupted: {done} ({name}, exit {code})");
    std::process::exit(code);
}

/// Block this thread until the interrupt handler ends the process (for commands
/// whose only job after starting things is to wait for Ctrl-C).
pub fn park_until_interrupted() -> ! {
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleanup_kills_tracked_processes_and_removes_sandboxes() {
        // A fake "master" (a shell with a child, naming a marker in its command
        // line) and a fake sync_client; both must be gone after the cleanup.
        let dir = tempfile::tempdir().expect("tempdir");
        let sandbox = dir.path().join("sandbox");
        let kept = dir.path().join("kept");
        std::fs::create_dir_all(sandbox.join("source")).expect("mkdir");
        std::fs::create_dir_all(&kept).expect("mkdir");
        let marker = sandbox.join("source/etc/imapd.conf");
        let script = format!("trap '' TERM; sleep 60 & wait # {}", marker.display());
        // A registry of its own: the global one serves the other tests.
        let reg = Mutex::new(Registry::new(false));
        let (mut master, m) = spawn_in(
            &reg,
            Command::new("sh").arg("-c").arg(&script),
            Kind::Master {
                marker: marker.clone(),
            },
        )
        .expect("spawn master");
        let (mut client, c) =
            spawn_in(&reg, Command::new("sleep").arg("60"), Kind::SyncClient).expect("spawn");
        register_sandbox_in(&reg, &sandbox);
        register_sandbox_in(&reg, &kept);
        keep_sandbox_in(&reg, &kept);
        assert!(wait_until(Duration::from_secs(5), || !descendants(m.pid).is_empty()));
        let kids = descendants(m.pid);
        let done = cleanup_in(&reg, Duration::from_millis(300));
        assert_eq!((done.instances, done.sync_clients), (1, 1), "{done}");
        assert_eq!(done.sandboxes_removed, 1, "{done}");
        assert_eq!(done.sandboxes_kept, vec![kept.clone()]);
        assert!(done.problems.is_empty(), "{done}");
        assert!(!m.alive() && !c.alive());
        assert!(kids.iter().all(|k| !same_process_alive(k.pid, k.starttime)));
        assert!(!sandbox.exists() && kept.exists());
        let _ = master.wait();
        let _ = client.wait();
        // From now on nothing new starts.
        let err = spawn_in(&reg, &mut Command::new("true"), Kind::SyncClient).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
        assert!(done
            .to_string()
            .starts_with("stopped 1 Cyrus instance and 1 sync_client process, removed 1 sandbox"));
    }
}
