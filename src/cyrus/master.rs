//! A Cyrus `master` this process started, for source instances and real
//! targets alike: its files written, spawned in the foreground in its own
//! process group (so its shutdown signals reach only its own children) and
//! registered for the interrupt handler, started on 127.0.0.1 ports chosen by
//! the OS (retried with fresh ports when another process takes one before
//! master binds it), and stopped by PID together with every descendant seen,
//! never by name. Every wait is bounded.

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};

use super::imap::ImapClient;
use super::process::{self, PortOwner, ProcStat, Tracked};
use super::{last_lines, CyrusBins, CyrusError};

type Result<T> = std::result::Result<T, CyrusError>;

/// How many fresh ports to try if a chosen one is taken before master binds it.
const PORT_ATTEMPTS: usize = 5;
/// If master has not bound its port this long after starting, assume the bind failed.
const BIND_GRACE: Duration = Duration::from_secs(5);
/// How long `stop` waits for master to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyrusError {
    CyrusError::io(context)
}

/// Write an instance's `imapd.conf` (at `conf`) and `etc/cyrus.conf`, open
/// `master.log` for master's stdout and stderr, clear a stale pidfile, and
/// give the tree to the `cyrus` user. Returns the two log handles and the
/// pidfile's host path.
pub(crate) fn prepare_files(
    root: &Path,
    conf: &Path,
    imapd_conf: &str,
    cyrus_conf: &str,
    uid: Uid,
    gid: Gid,
) -> Result<(File, File, PathBuf)> {
    let write = |path: &Path, text: &str| -> Result<()> {
        fs::write(path, text).map_err(io(format!("write `{}`", path.display())))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .map_err(io(format!("chmod `{}`", path.display())))
    };
    write(conf, imapd_conf)?;
    write(&root.join("etc/cyrus.conf"), cyrus_conf)?;
    let log_path = root.join("master.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format!("open `{}`", log_path.display())))?;
    let pidfile = root.join("run/master.pid");
    let _ = fs::remove_file(&pidfile);
    let _ = fs::remove_file(root.join("run/master.pid.lock"));
    chown_tree(root, uid, gid)?;
    let log2 = log.try_clone().map_err(io("duplicate log handle"))?;
    Ok((log, log2, pidfile))
}

pub(crate) fn chown_tree(path: &Path, uid: Uid, gid: Gid) -> Result<()> {
    nix::unistd::fchownat(
        None,
        path,
        Some(uid),
        Some(gid),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| CyrusError::Io {
        context: format!("chown `{}` to cyrus:mail", path.display()),
        source: e.into(),
    })?;
    let meta = fs::symlink_metadata(path).map_err(io(format!("stat `{}`", path.display())))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).map_err(io(format!("read `{}`", path.display())))? {
            let entry = entry.map_err(io(format!("read `{}`", path.display())))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The last `lines` lines of a file, or nothing when it cannot be read.
pub(crate) fn read_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => last_lines(&String::from_utf8_lossy(&bytes), lines),
        Err(_) => String::new(),
    }
}

/// Why an attempt to start did not become ready.
pub(crate) enum Ready {
    /// Try again with other ports.
    PortTaken(String),
    Failed(String),
}

/// What answers on a port master listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// An IMAP greeting (`* OK [CAPABILITY …] servername …`).
    Imap,
    /// A csync banner (`* SASL …`, …, `* OK servername …`).
    Csync,
}

/// Start an instance under `root`: `launch` writes its configs for fresh
/// ports and spawns master; `ready` waits until it answers. A port taken by
/// another process before master bound it means a new attempt with new ports
/// (at most [`PORT_ATTEMPTS`]); any other failure stops the attempt's master
/// and is returned with the tail of `master.log`.
pub(crate) fn start_retrying_ports<T>(
    root: &Path,
    deadline: Instant,
    mut launch: impl FnMut() -> Result<T>,
    mut ready: impl FnMut(&mut T) -> std::result::Result<(), Ready>,
    mut master: impl FnMut(&mut T) -> &mut Master,
) -> Result<T> {
    let failed = |reason: String| CyrusError::StartFailed {
        log_tail: read_tail(&root.join("master.log"), 30),
        root: root.to_path_buf(),
        reason,
    };
    let mut last_reason = String::new();
    for attempt in 1..=PORT_ATTEMPTS {
        let mut t = launch()?;
        match ready(&mut t) {
            Ok(()) => return Ok(t),
            Err(Ready::PortTaken(why)) => {
                let _ = master(&mut t).stop();
                last_reason = format!("attempt {attempt}: {why}");
            }
            Err(Ready::Failed(reason)) => {
                let _ = master(&mut t).stop();
                return Err(failed(reason));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Err(failed(format!(
        "no usable port after {PORT_ATTEMPTS} attempts; last: {last_reason}"
    )))
}

/// A running `master`. Stop it with [`Master::stop`]; its owner does that on drop.
#[derive(Debug)]
pub(crate) struct Master {
    child: Option<Child>,
    pid: i32,
    /// The entry in the interrupt registry, until master is stopped.
    tracked: Option<Tracked>,
    /// Every descendant seen so far (for `stop`).
    seen_children: Vec<ProcStat>,
    /// The pidfile (host path), removed on stop.
    pidfile: PathBuf,
}

/// Start the master of the instance under `root` with the files
/// [`prepare_files`] returned: `master -C CONF -M ROOT/etc/cyrus.conf -p
/// PIDFILE -D`, its output to `master.log`. For a chroot installation
/// `chroot ROOT master ...`: chroot execs master, so the PID (and the
/// process group) are master's. Its own process group: on shutdown master
/// signals its whole group, which in foreground mode would otherwise be ours
/// (and every other instance's). Registered for the interrupt handler
/// ([`Master::stop`] unregisters it); the marker, `inside_conf`, is what the
/// command lines of master's children name.
pub(crate) fn start(
    bins: &CyrusBins,
    root: &Path,
    inside_conf: &Path,
    (log, log2, pidfile): (File, File, PathBuf),
) -> Result<Master> {
    let mut cmd = bins.command("master");
    cmd.arg("-C")
        .arg(inside_conf)
        .arg("-M")
        .arg(bins.inside(&root.join("etc/cyrus.conf"))?)
        .arg("-p")
        .arg(bins.inside(&pidfile)?)
        .arg("-D")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    Master::spawn(
        &mut cmd,
        inside_conf.to_path_buf(),
        pidfile,
        &bins.host_path("master"),
    )
}

impl Master {
    /// Spawn `cmd` (master in the foreground: `-D`, its own process group) and
    /// register it for the interrupt handler. `marker` is the `imapd.conf`
    /// path its children's command lines name (as master sees it).
    fn spawn(cmd: &mut Command, marker: PathBuf, pidfile: PathBuf, shown: &Path) -> Result<Master> {
        let (child, tracked) = process::spawn_tracked(cmd, process::Kind::Master { marker })
            .map_err(io(format!("start `{}`", shown.display())))?;
        Ok(Master {
            pid: i32::try_from(child.id()).unwrap_or(-1),
            child: Some(child),
            tracked: Some(tracked),
            seen_children: Vec::new(),
            pidfile,
        })
    }

    /// Wait until every port in `ports` is bound by master and greets naming
    /// `servername`, until `deadline`. `what` names the instance in the
    /// timeout message.
    pub(crate) fn wait_ready(
        &mut self,
        deadline: Instant,
        what: &str,
        servername: &str,
        ports: &[(SocketAddr, Probe)],
    ) -> std::result::Result<(), Ready> {
        let started = Instant::now();
        let mut greeted = vec![false; ports.len()];
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    self.untrack();
                    return Err(Ready::Failed(format!("master exited early ({status})")));
                }
            }
            for (i, &(addr, probe)) in ports.iter().enumerate() {
                if greeted[i] {
                    continue;
                }
                match process::port_owner(self.pid, addr.port()) {
                    PortOwner::Listening => {
                        let banner = match probe {
                            Probe::Csync => csync_banner(addr),
                            Probe::Imap => ImapClient::connect(addr, Duration::from_secs(5))
                                .ok()
                                .map(|c| {
                                    let g = c.greeting().to_string();
                                    let _ = c.logout();
                                    g
                                }),
                        };
                        if let Some(b) = banner {
                            if !b.contains(servername) {
                                return Err(Ready::Failed(format!(
                                    "unexpected greeting on {addr}: {b}"
                                )));
                            }
                            greeted[i] = true;
                        }
                    }
                    PortOwner::Other => {
                        // Someone else holds the port; master's bind failed or will.
                        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                            || started.elapsed() > Duration::from_millis(500)
                        {
                            return Err(Ready::PortTaken(format!(
                                "port {} is used by another process",
                                addr.port()
                            )));
                        }
                    }
                    PortOwner::Free if started.elapsed() > BIND_GRACE => {
                        return Err(Ready::PortTaken(format!(
                            "master did not bind port {} within {BIND_GRACE:?}",
                            addr.port()
                        )));
                    }
                    PortOwner::Free => {}
                }
            }
            if greeted.iter().all(|g| *g) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let addrs: Vec<String> = ports.iter().map(|(a, _)| a.to_string()).collect();
                return Err(Ready::Failed(format!(
                    "{what} on {} not ready within the start timeout",
                    addrs.join(" and ")
                )));
            }
            sleep(Duration::from_millis(25));
        }
    }

    /// Stop master (SIGTERM, then SIGKILL after 10 s) and every descendant
    /// seen, by PID only. Idempotent.
    pub(crate) fn stop(&mut self) -> Result<()> {
        let Some(mut master) = self.child.take() else {
            self.untrack();
            return Ok(());
        };
        self.note_children();
        let pid = self.pid;
        let mut kids = self.seen_children.clone();
        if matches!(master.try_wait(), Ok(None)) {
            process::signal(pid, Signal::SIGTERM);
            let exited = process::wait_until(STOP_GRACE, || !matches!(master.try_wait(), Ok(None)));
            if !exited {
                // Children may have appeared meanwhile.
                kids.extend(process::descendants(pid));
                let _ = master.kill();
            }
        }
        let _ = master.wait();
        let left = process::terminate_all(&kids, Duration::from_millis(500));
        let _ = fs::remove_file(&self.pidfile);
        self.untrack();
        match left.first() {
            Some(&pid) => Err(CyrusError::Stop {
                pid,
                reason: format!("still alive after SIGKILL (all left: {left:?})"),
            }),
            None => Ok(()),
        }
    }

    /// Leave the interrupt registry (master was reaped).
    fn untrack(&mut self) {
        if let Some(t) = self.tracked.take() {
            process::untrack(t);
        }
    }

    /// Record master's current descendants (so `stop` can kill stragglers).
    fn note_children(&mut self) {
        for s in process::descendants(self.pid) {
            if !self
                .seen_children
                .iter()
                .any(|k| k.pid == s.pid && k.starttime == s.starttime)
            {
                self.seen_children.push(s);
            }
        }
    }

    /// Master and every descendant seen so far (including now): for leak checks.
    pub(crate) fn pids(&mut self) -> Vec<i32> {
        self.note_children();
        let mut pids = vec![self.pid];
        pids.extend(self.seen_children.iter().map(|s| s.pid));
        pids
    }

    /// Master and its current descendants (the service processes doing the work).
    pub(crate) fn live_pids(&self) -> Vec<i32> {
        if !process::pid_alive(self.pid) {
            return Vec::new();
        }
        let mut pids = vec![self.pid];
        pids.extend(process::descendants(self.pid).iter().map(|s| s.pid));
        pids
    }

    /// Whether master is still running.
    pub(crate) fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Master's PID.
    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }
}

/// Read the csync banner on `addr` until `* OK ...`.
fn csync_banner(addr: SocketAddr) -> Option<String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut r = BufReader::new(s);
    let mut all = String::new();
    for _ in 0..10 {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        all.push_str(&line);
        if line.starts_with("* OK") {
            return Some(all);
        }
    }
    None
}
