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
//!   `sqlite3` command line tool ([`StateScope::Backup`]). It is required:
//!   `cyr_backup` prints every row of the index, those of removed mailboxes
//!   too, and only the index says which were removed. Only live records (no
//!   `expunged` mark) are projected; mailboxes marked deleted in the index
//!   (`APPLY UNMAILBOX`) are left out (by uniqueid), and `DELETED.*` ones (a
//!   delayed delete) are projected apart. backupd keeps no quota.

use std::fmt::Write as _;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Uid};

use super::config::{self, ImapdConf};
use super::instance::read_state_imap;
use super::master::{self, Master, Probe};
use super::process;
use super::{CyrusBins, CyrusError};
use crate::mailstate::MailState;

mod lock;
mod read_backup;
mod scope;

/// Bounded tool runs live in [`super::tool`]; kept here for older paths.
pub use super::tool::{run_bounded, ToolOutput};
pub use lock::BackupLock;
pub use read_backup::parse_cyr_backup_mailboxes;
pub use scope::StateScope;

use read_backup::{sqlite3_available, NO_SQLITE3};

type Result<T> = std::result::Result<T, CyrusError>;

const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of one `cyr_backup` / `ctl_backups` / `sqlite3` run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

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

    /// The programs an installation needs to run this target.
    pub fn programs(self) -> &'static [&'static str] {
        match self {
            TargetKind::Backupd => &["backupd", "ctl_backups", "cyr_backup"],
            TargetKind::SyncServer => &["sync_server"],
        }
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
        let missing: Vec<String> = kind
            .programs()
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
        if kind == TargetKind::Backupd && !sqlite3_available() {
            return Err(CyrusError::Config(NO_SQLITE3.into()));
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
        let files = master::prepare_files(root, &conf, &imapd, &cyrus_conf, uid, gid)?;
        let master = master::start(bins, root, &inside_conf, files)?;
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
    /// [`StateScope::Backup`] for backupd.
    pub fn state_scope(&self) -> StateScope {
        match self.kind {
            TargetKind::SyncServer => StateScope::Full,
            TargetKind::Backupd => StateScope::Backup,
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
}

impl Drop for RealTarget {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
