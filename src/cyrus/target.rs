//! Real Cyrus replication *targets* in a caller-owned directory: a `backupd`
//! instance (Cyrus Backups) or a `sync_server` + `imapd` replica.
//!
//! Like [`super::SourceInstance`], master runs in the foreground in its own process
//! group, on 127.0.0.1 ports chosen by the OS (retried when taken before master
//! binds them), and is stopped by PID together with every descendant seen, never by
//! name. Every wait is bounded.
//!
//! Reading a target back into a [`MailState`]:
//! - replica: over IMAP as each user through its `imapd`, exactly like the source;
//! - backupd: `cyr_backup -C conf -u U json mailboxes` gives the mailboxes
//!   (uniqueid, internal name) and every record (UID, GUID, `expunged` mark), but no
//!   flags, dates, sizes, counters, annotations or subscriptions. Those live in the
//!   backup's SQLite index (`<backup>.index`: `mailbox`, `mailbox_message` and
//!   `subscription` tables, annotations as dlist text), which is read with the
//!   `sqlite3` command line tool when it is installed ([`StateScope::Backup`]).
//!   Without it the state holds only what `cyr_backup` prints
//!   ([`StateScope::UidGuid`]) and both sides of a comparison must be cut down with
//!   [`StateScope::project`]. Only live records (no `expunged` mark) are projected;
//!   mailboxes marked deleted in the index (`APPLY UNMAILBOX`) are left out, and
//!   `DELETED.*` ones (a delayed delete) are projected apart. backupd keeps no
//!   quota.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

use super::config::{self, ImapdConf};
use super::instance::read_state_imap;
use super::master::{self, Master, Probe};
use super::process;
use super::{CyrusBins, CyrusError};
use crate::mailstate::{DeletedMailbox, MailState, MailboxState, MessageState, UserState};

type Result<T> = std::result::Result<T, CyrusError>;

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of one `cyr_backup` / `ctl_backups` / `sqlite3` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long [`RealTarget::lock_user`] waits for the lock to be visible.
const LOCK_TIMEOUT: Duration = Duration::from_secs(15);
/// `ctl_backups` exit code for "Mailbox is locked" (EX_TEMPFAIL).
const EX_TEMPFAIL: i32 = 75;

/// Which real Cyrus service receives the replication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// `backupd` (Cyrus Backups), what the fake imitates.
    Backupd,
    /// `sync_server` (a replica), with an `imapd` to read it back.
    SyncServer,
}

impl TargetKind {
    /// `backupd` or `sync_server`.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Backupd => "backupd",
            TargetKind::SyncServer => "sync_server",
        }
    }
}

/// How much of a [`MailState`] a target holds and its reader can see;
/// comparisons must be made at the scope of the weaker side (see
/// [`StateScope::project`]). `docs/oracle.md` has the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum StateScope {
    /// Only mailbox names, uniqueids, live UID -> GUID and the `DELETED.*`
    /// mailboxes' names and message counts (all `cyr_backup` prints).
    UidGuid,
    /// Everything a backupd keeps: all of [`MailState`] but quota (backupd
    /// acknowledges `APPLY QUOTA` and stores nothing: `backup/backupd.c`
    /// `cmd_apply`, "ignore and succeed"; the fake does the same).
    Backup,
    /// Every field of [`MailState`] (a replica).
    Full,
}

impl StateScope {
    /// Cut `state` down to what this scope can see. Apply it to *both* sides
    /// before comparing.
    /// - [`StateScope::Backup`]: quota roots are cleared;
    /// - [`StateScope::UidGuid`]: also flags, INTERNALDATE, size, annotations,
    ///   ACLs, UIDVALIDITY, last UID, HIGHESTMODSEQ, subscriptions and the
    ///   `DELETED.*` mailboxes' UIDVALIDITY and last UID.
    pub fn project(self, state: &MailState) -> MailState {
        let mut out = state.clone();
        if self == StateScope::Full {
            return out;
        }
        for user in out.users.values_mut() {
            user.quotas.clear();
            if self == StateScope::Backup {
                continue;
            }
            user.subscriptions.clear();
            for d in user.deleted.values_mut() {
                d.uidvalidity = 0;
                d.last_uid = 0;
            }
            for mb in user.mailboxes.values_mut() {
                mb.uidvalidity = 0;
                mb.last_uid = 0;
                mb.highestmodseq = 0;
                mb.annotations.clear();
                mb.acl.clear();
                for m in mb.messages.values_mut() {
                    m.flags.clear();
                    m.internaldate = 0;
                    m.size = 0;
                    m.annotations.clear();
                }
            }
        }
        out
    }
}

/// A running real target. Stopped (by PID) on [`RealTarget::stop`] or drop.
#[derive(Debug)]
pub struct RealTarget {
    kind: TargetKind,
    bins: CyrusBins,
    root: PathBuf,
    config_path: PathBuf,
    /// `config_path` as the programs see it (inside the chroot).
    inside_config_path: PathBuf,
    addr: SocketAddr,
    imap_addr: Option<SocketAddr>,
    authname: String,
    password: String,
    master: Master,
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyrusError {
    CyrusError::io(context)
}

fn simple_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// The outcome of a bounded tool run.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// Exit code; `None` when killed (timeout or signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

/// Run `cmd` with stdin closed, capturing output, killing it (by PID) after `timeout`.
/// The child is registered ([`process::spawn_tracked`]), so an interrupt
/// kills its process group at once.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Result<ToolOutput> {
    let shown = format!("{cmd:?}");
    let what = Path::new(cmd.get_program())
        .file_name()
        .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let (mut child, tracked) = process::spawn_tracked(&mut cmd, process::Kind::Group { what })
        .map_err(io(format!("start {shown}")))?;
    let result = wait_bounded(&mut child, &shown, timeout);
    process::untrack(tracked);
    result
}

fn wait_bounded(child: &mut Child, shown: &str, timeout: Duration) -> Result<ToolOutput> {
    let pump = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = pump(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let err = pump(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().map_err(io(format!("wait {shown}")))? {
            break st;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            // The whole group: a tool's own children go too.
            process::signal_group(
                i32::try_from(child.id()).unwrap_or(-1),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = child.kill();
            break child.wait().map_err(io(format!("wait {shown}")))?;
        }
        sleep(Duration::from_millis(5));
    };
    Ok(ToolOutput {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        timed_out,
    })
}

impl RealTarget {
    /// Create a `kind` instance under `root` (absolute, no spaces; created if
    /// missing, chowned to `cyrus:mail`) and start it; returns once every port
    /// greets. `authname` is made an admin (the replication user); with
    /// `sasl_pwcheck_method: alwaystrue` any password is accepted, `password` is only
    /// kept for [`RealTarget::password`]. On failure nothing is left running.
    pub fn start(
        kind: TargetKind,
        bins: &CyrusBins,
        root: &Path,
        authname: &str,
        password: &str,
    ) -> Result<RealTarget> {
        if !root.is_absolute()
            || root
                .to_str()
                .is_none_or(|s| s.contains(|c: char| c.is_whitespace() || c == '"'))
        {
            return Err(CyrusError::Config(format!(
                "target root `{}` must be absolute UTF-8 without spaces or quotes",
                root.display()
            )));
        }
        if !simple_word(authname) || authname == "admin" {
            return Err(CyrusError::Config(format!(
                "authname `{authname}` must be letters, digits, `_`, `-`, `.` (not `admin`)"
            )));
        }
        let needed: &[&str] = match kind {
            TargetKind::Backupd => &["backupd", "ctl_backups", "cyr_backup"],
            TargetKind::SyncServer => &["sync_server"],
        };
        let missing: Vec<String> = needed
            .iter()
            .filter(|n| !bins.has(n))
            .map(|n| format!("`{n}`"))
            .collect();
        if !missing.is_empty() {
            return Err(bins.missing(&format!(
                "{} (for a real {})",
                missing.join(", "),
                kind.name()
            )));
        }
        // The installation's own `cyrus` uid (a chroot has its own passwd),
        // and a root the programs can reach (below the chroot).
        let (uid, gid) = bins.cyrus_ids()?;
        bins.inside(root)?;
        config::make_dirs(root, &["tmp/backup", "backup"])?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .map_err(io(format!("chmod `{}`", root.display())))?;

        let deadline = Instant::now() + START_TIMEOUT;
        master::start_retrying_ports(
            root,
            deadline,
            || {
                let port = process::free_port().map_err(io("finding a free port on 127.0.0.1"))?;
                let imap_port = match kind {
                    TargetKind::Backupd => None,
                    TargetKind::SyncServer => Some(loop {
                        let p = process::free_port().map_err(io("finding a free port"))?;
                        if p != port {
                            break p;
                        }
                    }),
                };
                Self::launch(
                    kind, bins, root, authname, password, port, imap_port, uid, gid,
                )
            },
            |t| {
                let servername = Self::servername(t.kind, t.addr.port());
                let mut ports = vec![(t.addr, Probe::Csync)];
                ports.extend(t.imap_addr.map(|a| (a, Probe::Imap)));
                t.master
                    .wait_ready(deadline, t.kind.name(), &servername, &ports)
            },
            |t| &mut t.master,
        )
    }

    fn servername(kind: TargetKind, port: u16) -> String {
        match kind {
            TargetKind::Backupd => format!("bak-{port}.backupd-sim.test"),
            TargetKind::SyncServer => format!("rep-{port}.backupd-sim.test"),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        kind: TargetKind,
        bins: &CyrusBins,
        root: &Path,
        authname: &str,
        password: &str,
        port: u16,
        imap_port: Option<u16>,
        uid: Uid,
        gid: Gid,
    ) -> Result<RealTarget> {
        let conf = root.join("etc/imapd.conf");
        // Every path Cyrus reads is the path it sees (inside a chroot: below it).
        let inside_conf = bins.inside(&conf)?;
        let r = bins.inside(root)?.display().to_string();
        let note = format!(" ({})", kind.name());
        let servername = Self::servername(kind, port);
        let mut imapd = ImapdConf {
            note: &note,
            root: &r,
            servername: &servername,
            syslog: match kind {
                TargetKind::Backupd => "bak",
                TargetKind::SyncServer => "rep",
            },
            admin: authname,
        }
        .render();
        if kind == TargetKind::Backupd {
            let _ = write!(
                imapd,
                "backuppartition-default: {r}/backup\n\
                 backup_db: twoskip\n\
                 backup_db_path: {r}/conf/backups.db\n\
                 backup_staging_path: {r}/tmp/backup\n\
                 backup_keep_previous: no\n\
                 backup_retention: 7d\n"
            );
        }
        let bin = |name: &str| bins.path(name).display().to_string();
        let c = inside_conf.display().to_string();
        let mut services = match kind {
            TargetKind::Backupd => config::service("backupd", &bin("backupd"), &c, port),
            TargetKind::SyncServer => config::service("sync", &bin("sync_server"), &c, port),
        };
        if let Some(ip) = imap_port {
            services.push_str(&config::service("imap", &bin("imapd"), &c, ip));
        }
        let cyrus_conf = config::cyrus_conf(&bin("ctl_cyrusdb"), &c, &services);
        let (log, log2, pidfile) =
            master::prepare_files(root, &conf, &imapd, &cyrus_conf, uid, gid)?;
        // For a chroot installation `chroot ROOT master ...`: chroot execs
        // master, so the PID (and the process group) are master's.
        let mut cmd = bins.command("master");
        cmd.arg("-C")
            .arg(&inside_conf)
            .arg("-M")
            .arg(bins.inside(&root.join("etc/cyrus.conf"))?)
            .arg("-p")
            .arg(bins.inside(&pidfile)?)
            .arg("-D")
            // Own process group: master signals its whole group on shutdown.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Registered for the interrupt handler, like a source's master.
        let master = Master::spawn(
            &mut cmd,
            inside_conf.clone(),
            pidfile,
            &bins.host_path("master"),
        )?;
        Ok(RealTarget {
            kind,
            bins: bins.clone(),
            root: root.to_path_buf(),
            config_path: conf,
            inside_config_path: inside_conf,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            imap_addr: imap_port.map(|p| SocketAddr::from(([127, 0, 0, 1], p))),
            authname: authname.to_string(),
            password: password.to_string(),
            master,
        })
    }

    /// Stop master (SIGTERM, SIGKILL after 10 s) and every descendant seen, by PID.
    /// Idempotent.
    pub fn stop(&mut self) -> Result<()> {
        self.master.stop()
    }

    /// Master and every descendant seen so far (including now): for leak checks.
    pub fn pids(&mut self) -> Vec<i32> {
        self.master.pids()
    }

    /// Master and its current descendants (the service processes doing the work).
    pub fn live_pids(&self) -> Vec<i32> {
        self.master.live_pids()
    }

    /// Whether master is still running.
    pub fn is_running(&mut self) -> bool {
        self.master.is_running()
    }

    /// The csync port (`backupd` or `sync_server`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The replica's `imapd` (sync_server targets only).
    pub fn imap_addr(&self) -> Option<SocketAddr> {
        self.imap_addr
    }

    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    pub fn master_pid(&self) -> i32 {
        self.master.pid()
    }

    /// `<root>/etc/imapd.conf` as seen from the host (for a chroot
    /// installation pass [`CyrusBins::inside`] of it to a Cyrus tool's `-C`).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The replication user (an admin here).
    pub fn authname(&self) -> &str {
        &self.authname
    }

    /// The password given to `start` (any password is accepted).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// What [`RealTarget::read_state`] can see: [`StateScope::Full`] for a replica,
    /// [`StateScope::Backup`] for backupd when the `sqlite3` tool is installed.
    pub fn state_scope(&self) -> StateScope {
        match self.kind {
            TargetKind::SyncServer => StateScope::Full,
            TargetKind::Backupd if sqlite3_available() => StateScope::Backup,
            TargetKind::Backupd => StateScope::UidGuid,
        }
    }

    fn tool(&self, name: &str) -> Command {
        let mut c = self.bins.command(name);
        c.arg("-C").arg(&self.inside_config_path);
        c
    }

    /// The installation the target runs from.
    pub fn bins(&self) -> &CyrusBins {
        &self.bins
    }

    /// Run `ctl_backups -C conf ARGS` (bounded).
    pub fn ctl_backups(&self, args: &[&str]) -> Result<ToolOutput> {
        let mut c = self.tool("ctl_backups");
        c.args(args);
        run_bounded(c, TOOL_TIMEOUT)
    }

    /// Run `cyr_backup -C conf ARGS` (bounded).
    pub fn cyr_backup(&self, args: &[&str]) -> Result<ToolOutput> {
        let mut c = self.tool("cyr_backup");
        c.args(args);
        run_bounded(c, TOOL_TIMEOUT)
    }

    /// Read each user's live mailboxes, messages and subscriptions (see the module
    /// doc for what each kind can show; check [`RealTarget::state_scope`]). A user
    /// the target does not know reads as empty.
    pub fn read_state(&self, users: &[&str]) -> Result<MailState> {
        match self.kind {
            TargetKind::SyncServer => {
                let addr = self
                    .imap_addr
                    .ok_or_else(|| CyrusError::Config("replica has no imap port".into()))?;
                read_state_imap(addr, users)
            }
            TargetKind::Backupd => {
                let mut state = MailState::default();
                for &u in users {
                    state.users.insert(u.to_string(), self.read_backup_user(u)?);
                }
                Ok(state)
            }
        }
    }

    /// The path of `user`'s backup data file (from `ctl_backups list -j`), if
    /// any, as seen from the host.
    pub fn backup_path(&self, user: &str) -> Result<Option<PathBuf>> {
        let out = self.ctl_backups(&["list", "-j", "-u", user])?;
        if out.stderr.contains("not found in backups.db") {
            return Ok(None);
        }
        if out.code != Some(0) {
            return Err(CyrusError::Config(format!(
                "ctl_backups list -j -u {user}: rc {:?}: {}{}",
                out.code, out.stdout, out.stderr
            )));
        }
        let text = out.stdout.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let json: serde_json::Value =
            serde_json::from_str(&text[text.find(['[', '{']).unwrap_or(0)..]).map_err(|e| {
                CyrusError::Config(format!("ctl_backups list -j output: {e}: {text}"))
            })?;
        let find = |v: &serde_json::Value| -> Option<PathBuf> {
            v.get("fname")
                .or_else(|| v.get("filename"))
                .or_else(|| v.get("path"))
                .and_then(|p| p.as_str())
                .map(PathBuf::from)
        };
        let inside = match &json {
            serde_json::Value::Array(items) => items.iter().find_map(find),
            serde_json::Value::Object(map) => find(&json).or_else(|| map.values().find_map(find)),
            _ => None,
        };
        // ctl_backups prints the path it sees (inside a chroot).
        Ok(inside.map(|p| self.bins.host_view(&p)))
    }

    fn read_backup_user(&self, user: &str) -> Result<UserState> {
        let out = self.cyr_backup(&["-u", user, "json", "mailboxes"])?;
        if out.code != Some(0) {
            // An unknown user: cyr_backup fails to open a backup that does not exist.
            if self.backup_path(user)?.is_none() {
                return Ok(UserState::default());
            }
            return Err(CyrusError::Config(format!(
                "cyr_backup -u {user} json mailboxes: rc {:?}{}: {}{}",
                out.code,
                if out.timed_out { " (timed out)" } else { "" },
                out.stdout.trim(),
                out.stderr.trim()
            )));
        }
        let mut us = parse_cyr_backup_mailboxes(&out.stdout)?;
        if sqlite3_available() {
            if let Some(path) = self.backup_path(user)? {
                let mut index = path.into_os_string();
                index.push(".index");
                enrich_from_index(&mut us, Path::new(&index), user)?;
            }
        }
        Ok(us)
    }

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

impl Drop for RealTarget {
    fn drop(&mut self) {
        let _ = self.stop();
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

fn sqlite3_available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("sqlite3")
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `cyr_backup json mailboxes` -> live mailboxes with uniqueid and live UID -> GUID
/// (flags, dates, sizes and counters are not printed and stay zero).
pub fn parse_cyr_backup_mailboxes(text: &str) -> Result<UserState> {
    let start = text.find('[').unwrap_or(text.len());
    let json: serde_json::Value = if start == text.len() {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_str(&text[start..])
            .map_err(|e| CyrusError::Config(format!("cyr_backup json mailboxes: {e}")))?
    };
    let mut us = UserState::default();
    for mb in json.as_array().into_iter().flatten() {
        let Some(name) = mb.get("mboxname").and_then(|v| v.as_str()) else {
            continue;
        };
        let mut messages = BTreeMap::new();
        for m in mb
            .get("messages")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            if m.get("expunged").is_some() {
                continue;
            }
            let (Some(uid), Some(guid)) = (
                m.get("uid").and_then(|v| v.as_u64()),
                m.get("guid").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            messages.insert(
                u32::try_from(uid).unwrap_or(u32::MAX),
                MessageState {
                    guid: guid.to_string(),
                    ..MessageState::default()
                },
            );
        }
        if name.starts_with("DELETED.") {
            us.deleted.insert(
                name.to_string(),
                DeletedMailbox {
                    messages: u32::try_from(messages.len()).unwrap_or(u32::MAX),
                    ..DeletedMailbox::default()
                },
            );
            continue;
        }
        us.mailboxes.insert(
            name.to_string(),
            MailboxState {
                uniqueid: mb
                    .get("uniqueid")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                messages,
                ..MailboxState::default()
            },
        );
    }
    Ok(us)
}

/// The annotations backupd's index keeps as dlist text (`dlist_printbuf` of the
/// `ANNOTATIONS` list: `(%(ENTRY /comment USERID olga MODSEQ 16 VALUE x) …)`),
/// keyed for comparison by `key(entry, userid)`.
fn index_annotations(
    text: Option<&str>,
    key: impl Fn(&str, &str) -> Option<String>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        return Ok(out);
    };
    let bad = |e: String| CyrusError::Config(format!("backup index annotations `{text}`: {e}"));
    let value = crate::dlist::decode_value(bytes::Bytes::copy_from_slice(text.as_bytes()))
        .map_err(|e| bad(e.to_string()))?;
    for a in value.as_list().ok_or_else(|| bad("not a list".into()))? {
        let field = |k: &str| a.get(k).and_then(|v| v.as_bytes());
        let (Some(entry), Some(userid), Some(v)) =
            (field("ENTRY"), field("USERID"), field("VALUE"))
        else {
            return Err(bad("an annotation without ENTRY, USERID or VALUE".into()));
        };
        let entry = String::from_utf8_lossy(entry);
        if let Some(k) = key(&entry, &String::from_utf8_lossy(userid)) {
            out.insert(k, String::from_utf8_lossy(v).into_owned());
        }
    }
    Ok(out)
}

fn sqlite_json(index: &Path, sql: &str) -> Result<Vec<serde_json::Value>> {
    let mut c = Command::new("sqlite3");
    c.arg("-readonly").arg("-json").arg(index).arg(sql);
    let out = run_bounded(c, TOOL_TIMEOUT)?;
    if out.code != Some(0) {
        return Err(CyrusError::Config(format!(
            "sqlite3 {}: rc {:?}: {}",
            index.display(),
            out.code,
            out.stderr.trim()
        )));
    }
    if out.stdout.trim().is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_str(&out.stdout)
        .map_err(|e| CyrusError::Config(format!("sqlite3 json output: {e}")))
}

/// Fill in what `cyr_backup` does not print from the backup's SQLite index: per
/// mailbox UIDVALIDITY, LAST_UID, HIGHESTMODSEQ and the deleted mark; per record
/// flags, INTERNALDATE and size; and the subscriptions. The UID -> GUID sets must
/// agree with `cyr_backup`'s.
fn enrich_from_index(us: &mut UserState, index: &Path, owner: &str) -> Result<()> {
    let mailboxes = sqlite_json(
        index,
        "SELECT id, mboxname, uidvalidity, last_uid, highestmodseq, deleted, annotations, acl \
         FROM mailbox",
    )?;
    let mut by_id = BTreeMap::new();
    for row in &mailboxes {
        let name = row["mboxname"].as_str().unwrap_or_default().to_string();
        let id = row["id"].as_i64().unwrap_or(-1);
        let deleted = row["deleted"].as_i64().unwrap_or(0) != 0;
        if deleted {
            us.mailboxes.remove(&name);
            us.deleted.remove(&name);
            continue;
        }
        let uidvalidity = u32::try_from(row["uidvalidity"].as_i64().unwrap_or(0)).unwrap_or(0);
        let last_uid = u32::try_from(row["last_uid"].as_i64().unwrap_or(0)).unwrap_or(0);
        if let Some(d) = us.deleted.get_mut(&name) {
            d.uidvalidity = uidvalidity;
            d.last_uid = last_uid;
            continue;
        }
        let Some(mb) = us.mailboxes.get_mut(&name) else {
            continue;
        };
        mb.uidvalidity = uidvalidity;
        mb.last_uid = last_uid;
        mb.highestmodseq = u64::try_from(row["highestmodseq"].as_i64().unwrap_or(0)).unwrap_or(0);
        mb.acl = crate::mailstate::parse_acl(row["acl"].as_str().unwrap_or_default());
        mb.annotations = index_annotations(row["annotations"].as_str(), |e, u| {
            crate::mailstate::mailbox_annotation_key(e, u, owner)
        })?;
        by_id.insert(id, name);
    }
    let records = sqlite_json(
        index,
        "SELECT mm.mailbox_id, mm.uid, mm.flags, mm.internaldate, mm.expunged, mm.annotations, \
         m.size, m.guid FROM mailbox_message mm JOIN message m ON m.id = mm.message_id",
    )?;
    for row in &records {
        let Some(name) = by_id.get(&row["mailbox_id"].as_i64().unwrap_or(-1)) else {
            continue;
        };
        if row["expunged"].as_i64().unwrap_or(0) != 0 {
            continue;
        }
        let uid = u32::try_from(row["uid"].as_i64().unwrap_or(0)).unwrap_or(0);
        let mb = us
            .mailboxes
            .get_mut(name)
            .expect("by_id names live mailboxes");
        let Some(m) = mb.messages.get_mut(&uid) else {
            return Err(CyrusError::Config(format!(
                "backup index has live record {name} UID {uid} that cyr_backup does not show"
            )));
        };
        if let Some(g) = row["guid"].as_str() {
            if g != m.guid {
                return Err(CyrusError::Config(format!(
                    "backup index GUID {g} != cyr_backup GUID {} for {name} UID {uid}",
                    m.guid
                )));
            }
        }
        m.flags = MessageState::normalize_flags(
            row["flags"]
                .as_str()
                .unwrap_or_default()
                .trim_matches(|c| c == '(' || c == ')')
                .split_whitespace()
                .map(str::to_string),
        );
        m.internaldate = row["internaldate"].as_i64().unwrap_or(0);
        m.size = u64::try_from(row["size"].as_i64().unwrap_or(0)).unwrap_or(0);
        m.annotations = index_annotations(row["annotations"].as_str(), |e, u| {
            crate::mailstate::message_annotation_key(e, u, owner)
        })?;
    }
    let subs = sqlite_json(index, "SELECT mboxname, unsubscribed FROM subscription")?;
    for row in &subs {
        if row["unsubscribed"].as_i64().unwrap_or(0) != 0 {
            continue;
        }
        if let Some(n) = row["mboxname"].as_str() {
            us.subscriptions.insert(n.to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyr_backup_json_keeps_live_records_only() {
        let text = r#"reading backup...
[
  {"uniqueid": "u1", "mboxname": "user.a", "last_appenddate": "x",
   "messages": [{"uid": 1, "guid": "aa"}, {"uid": 2, "guid": "bb", "expunged": "2026"}]},
  {"uniqueid": "u2", "mboxname": "DELETED.user.a.T.123", "last_appenddate": "x"},
  {"uniqueid": "u3", "mboxname": "user.a.Empty", "last_appenddate": "x"}
]"#;
        let us = parse_cyr_backup_mailboxes(text).expect("parse");
        assert_eq!(
            us.mailboxes.keys().collect::<Vec<_>>(),
            ["user.a", "user.a.Empty"]
        );
        assert_eq!(
            us.deleted.keys().collect::<Vec<_>>(),
            ["DELETED.user.a.T.123"]
        );
        assert_eq!(us.deleted["DELETED.user.a.T.123"].messages, 0);
        let a = &us.mailboxes["user.a"];
        assert_eq!(a.uniqueid.as_deref(), Some("u1"));
        assert_eq!(a.messages.len(), 1);
        assert_eq!(a.messages[&1].guid, "aa");
    }

    #[test]
    fn uid_guid_scope_clears_what_cyr_backup_cannot_show() {
        let mut s = MailState::default();
        let mut us = UserState::default();
        us.subscriptions.insert("user.a".into());
        let mut mb = MailboxState {
            uniqueid: Some("u".into()),
            uidvalidity: 7,
            last_uid: 3,
            highestmodseq: 9,
            ..MailboxState::default()
        };
        mb.messages.insert(
            3,
            MessageState {
                guid: "g".into(),
                flags: vec!["\\Seen".into()],
                internaldate: 5,
                size: 10,
                annotations: [("/comment value.priv".to_string(), "n".to_string())].into(),
            },
        );
        mb.annotations.insert("/private/comment".into(), "c".into());
        mb.acl.insert("anyone".into(), "lr".into());
        us.mailboxes.insert("user.a".into(), mb);
        us.quotas
            .insert("user.a".into(), [("STORAGE".to_string(), 10)].into());
        us.deleted.insert(
            "DELETED.user.a.T.1".into(),
            DeletedMailbox {
                uidvalidity: 4,
                last_uid: 2,
                messages: 1,
            },
        );
        s.users.insert("a".into(), us);
        assert_eq!(StateScope::Full.project(&s), s);
        let b = StateScope::Backup.project(&s);
        assert!(b.users["a"].quotas.is_empty());
        let mut without_quota = s.clone();
        without_quota.users.get_mut("a").expect("a").quotas.clear();
        assert_eq!(b, without_quota, "Backup clears quota only");
        let p = StateScope::UidGuid.project(&s);
        let pm = &p.users["a"].mailboxes["user.a"];
        assert_eq!(pm.uniqueid.as_deref(), Some("u"));
        assert_eq!((pm.uidvalidity, pm.last_uid, pm.highestmodseq), (0, 0, 0));
        assert_eq!(pm.messages[&3].guid, "g");
        assert!(pm.messages[&3].flags.is_empty());
        assert!(pm.messages[&3].annotations.is_empty() && pm.annotations.is_empty());
        assert!(pm.acl.is_empty());
        assert!(p.users["a"].subscriptions.is_empty());
        assert_eq!(
            p.users["a"].deleted["DELETED.user.a.T.1"],
            DeletedMailbox {
                uidvalidity: 0,
                last_uid: 0,
                messages: 1
            }
        );
    }

    #[test]
    fn index_annotations_are_read_from_dlist_text() {
        let text = "(%(ENTRY /comment USERID olga MODSEQ 16 VALUE \"priv note\") \
                    %(ENTRY /comment USERID \"\" MODSEQ 18 VALUE {5+}\r\nshare) \
                    %(ENTRY /vendor/cmu/cyrus-imapd/savedate USERID \"\" MODSEQ 0 VALUE 1796294874) \
                    %(ENTRY /comment USERID other MODSEQ 3 VALUE x))";
        let got = index_annotations(Some(text), |e, u| {
            crate::mailstate::message_annotation_key(e, u, "olga")
        })
        .expect("parse");
        assert_eq!(
            got,
            [
                ("/comment value.priv".to_string(), "priv note".to_string()),
                ("/comment value.shared".to_string(), "share".to_string()),
            ]
            .into()
        );
        assert!(index_annotations(None, |_, _| None)
            .expect("none")
            .is_empty());
        assert!(index_annotations(Some("(%(ENTRY x))"), |_, _| None).is_err());
    }
}
