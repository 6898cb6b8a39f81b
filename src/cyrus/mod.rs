//! Drive a real, throwaway Cyrus IMAP 3.6 "source" instance: start it in a sandbox
//! directory, change mail on it over IMAP, read its state back, run `sync_client`.
//!
//! * [`CyrusBins`] - a Cyrus installation: the host's, a build directory, or a chroot.
//! * [`install`] - Debian chroots with newer Cyrus versions (`backupd-sim cyrus install`).
//! * [`SourceInstance`] - a running `master` + `imapd` with `sync_log` channels.
//! * [`ImapClient`] - a small blocking IMAP4rev1 client.
//! * [`SyncClient`] - runs `sync_client` with a timeout and captured output.
//! * [`RealTarget`] - a real `backupd` or `sync_server` replica to replicate into.
//! * [`process`] - processes by PID, the registry of what we started; [`procfs`] - `/proc` parsing.

mod config;
pub mod imap;
pub mod install;
pub mod instance;
mod master;
pub mod process;
pub mod procfs;
pub mod sync_client;
pub mod target;

use std::path::{Path, PathBuf};

pub use imap::{FetchedMessage, ImapClient, ListEntry, MailboxInfo, StatusInfo};
pub use instance::{
    to_internal_name, to_user_view_name, user_inbox, Channel, SourceInstance, SourceOptions,
};
pub use sync_client::{RunningSyncClient, SyncClient, SyncRun};
pub use target::{BackupLock, RealTarget, StateScope, TargetKind};

/// Default Debian location of the Cyrus executables.
pub const DEFAULT_CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

const SETUP_HINT: &str = "install Debian's packages as root (`apt-get install cyrus-common \
     cyrus-imapd cyrus-replication`), or pass --cyrus-bin DIR (or set CYRUS_BIN) for another build";

/// Everything that can go wrong while driving Cyrus.
#[derive(Debug, thiserror::Error)]
pub enum CyrusError {
    #[error("cyrus installation `{dir}` is incomplete: missing {missing}; {SETUP_HINT}")]
    MissingBinaries { dir: PathBuf, missing: String },

    #[error("system user `{user}` does not exist (cyrus needs it); {SETUP_HINT}")]
    MissingUser { user: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid configuration: {0}")]
    Config(String),

    #[error("cyrus instance in `{root}` did not start: {reason}{log}", log = fmt_tail(.log_tail))]
    StartFailed {
        root: PathBuf,
        reason: String,
        log_tail: String,
    },

    #[error("imap command `{command}` failed: {text}")]
    ImapCommand { command: String, text: String },

    #[error("imap protocol error: {0}")]
    ImapProtocol(String),

    #[error("could not stop process {pid}: {reason}")]
    Stop { pid: i32, reason: String },
}

fn fmt_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("\n--- log tail ---\n{}", tail.trim_end())
    }
}

impl CyrusError {
    /// An I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CyrusError {
        let context = context.into();
        move |source| CyrusError::Io { context, source }
    }
}

/// A Cyrus installation: the directory holding `master`, `imapd`, `sync_client`,
/// ..., either on the host or inside a chroot (a Debian root built by
/// `backupd-sim cyrus install`, see [`install`]).
///
/// For a chroot installation every Cyrus program runs as `chroot ROOT PROGRAM`
/// (chroot(8) execs it, so the PID is the program's), every path handed to it is
/// the path seen inside the root ([`CyrusBins::inside`]), and sandboxes are made
/// under `ROOT/tmp` ([`CyrusBins::sandbox_parent`]). The fake stays on the host:
/// the chroot shares the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyrusBins {
    /// The executables' directory as the programs see it (inside the chroot).
    dir: PathBuf,
    /// The chroot, when the installation lives in one.
    chroot: Option<PathBuf>,
}

/// The Cyrus executables' directory inside a Debian root.
pub const CHROOT_CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

impl CyrusBins {
    /// Executables every use of this module needs.
    pub const REQUIRED: [&'static str; 4] = ["master", "imapd", "sync_client", "ctl_cyrusdb"];

    /// Check that `dir` holds the needed executables and that the `cyrus` user exists.
    pub fn locate(dir: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        let bins = CyrusBins {
            dir: dir.as_ref().to_path_buf(),
            chroot: None,
        };
        bins.check()?;
        Ok(bins)
    }

    /// The Debian installation inside the chroot `root` (`ROOT/usr/lib/cyrus/bin`,
    /// the `cyrus` user in `ROOT/etc/passwd`). Running it needs root.
    pub fn locate_chroot(root: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        let root = root.as_ref();
        let root = std::fs::canonicalize(root).map_err(CyrusError::io(format!(
            "chroot `{}` (install one with `backupd-sim cyrus install 3.10`)",
            root.display()
        )))?;
        let bins = CyrusBins {
            dir: PathBuf::from(CHROOT_CYRUS_BIN),
            chroot: Some(root),
        };
        bins.check()?;
        if !nix::unistd::Uid::effective().is_root() {
            return Err(CyrusError::Config(format!(
                "running Cyrus from the chroot `{}` needs root (chroot(2))",
                bins.chroot
                    .as_ref()
                    .map_or(String::new(), |r| r.display().to_string())
            )));
        }
        Ok(bins)
    }

    /// A user's choice: `3.6` or `host` (the host's Debian Cyrus), `3.10` or
    /// `3.12` (the chroot `backupd-sim cyrus install` built in `cache`), a chroot
    /// root (a directory holding `usr/lib/cyrus/bin/master`), or a directory of
    /// Cyrus executables (a build).
    pub fn resolve(spec: &str, cache: &Path) -> Result<CyrusBins, CyrusError> {
        if spec == "host" || spec == "3.6" {
            return CyrusBins::locate(DEFAULT_CYRUS_BIN);
        }
        if let Some(suite) = install::suite_for(spec) {
            return match install::installed_root(cache, suite) {
                Some(root) => CyrusBins::locate_chroot(root),
                None => Err(CyrusError::Config(format!(
                    "Cyrus {spec} is not installed in `{}`; run `backupd-sim cyrus install {spec}`",
                    cache.display()
                ))),
            };
        }
        let path = Path::new(spec);
        if path.join("usr/lib/cyrus/bin/master").exists() {
            return CyrusBins::locate_chroot(path);
        }
        if path.is_dir() {
            return CyrusBins::locate(path);
        }
        Err(CyrusError::Config(format!(
            "--cyrus `{spec}`: expected 3.6, 3.10, 3.12, host, a chroot root or a directory of Cyrus executables"
        )))
    }

    fn check(&self) -> Result<(), CyrusError> {
        use std::os::unix::fs::PermissionsExt;
        let missing: Vec<String> = Self::REQUIRED
            .iter()
            .filter(|name| {
                let ok = std::fs::metadata(self.host_path(name))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                !ok
            })
            .map(|name| format!("`{name}`"))
            .collect();
        if !missing.is_empty() {
            return Err(CyrusError::MissingBinaries {
                dir: self.host_path(""),
                missing: missing.join(", "),
            });
        }
        self.cyrus_ids().map(|_| ())
    }

    /// The installation directory (inside the chroot for a chroot installation).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The chroot, for a chroot installation.
    pub fn chroot(&self) -> Option<&Path> {
        self.chroot.as_deref()
    }

    /// How a user names this installation on the command line (`--cyrus ...`);
    /// empty for the default host installation.
    pub fn cli_arg(&self) -> String {
        match &self.chroot {
            Some(root) => format!(" --cyrus {}", root.display()),
            None if self.dir == Path::new(DEFAULT_CYRUS_BIN) => String::new(),
            None => format!(" --cyrus-bin {}", self.dir.display()),
        }
    }

    /// A short description: `/usr/lib/cyrus/bin` or `chroot /var/cache/.../trixie`.
    pub fn describe(&self) -> String {
        match &self.chroot {
            Some(root) => format!("chroot {}", root.display()),
            None => self.dir.display().to_string(),
        }
    }

    /// The Cyrus version (`3.6.1`) from `master -V`, or `unknown`.
    pub fn version(&self) -> String {
        self.command("master")
            .arg("-V")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                text.split_whitespace()
                    .skip_while(|w| *w != "cyrus-imapd")
                    .nth(1)
                    .map(|v| v.split('-').next().unwrap_or(v).to_owned())
            })
            .unwrap_or_else(|| "unknown".into())
    }

    /// The path of one executable as the Cyrus programs see it, e.g.
    /// `path("imapd")` for a `cyrus.conf` line. On the host it is also the path
    /// to run; for a chroot installation start programs with [`CyrusBins::command`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The path of one executable as seen from the host.
    pub fn host_path(&self, name: &str) -> PathBuf {
        match &self.chroot {
            Some(root) => root
                .join(self.dir.strip_prefix("/").unwrap_or(&self.dir))
                .join(name),
            None => self.dir.join(name),
        }
    }

    /// A command that runs the executable `name`: directly, or as
    /// `chroot ROOT /usr/lib/cyrus/bin/NAME` (chroot execs it: same PID).
    /// Arguments that are paths must be given as [`CyrusBins::inside`] paths.
    pub fn command(&self, name: &str) -> std::process::Command {
        match &self.chroot {
            Some(root) => {
                let mut c = std::process::Command::new("chroot");
                c.arg(root).arg(self.path(name));
                c
            }
            None => std::process::Command::new(self.path(name)),
        }
    }

    /// A host path as the Cyrus programs see it: unchanged on the host; inside a
    /// chroot the path below `ROOT` (an error when it is not below `ROOT`: a
    /// chroot'd program cannot reach it).
    pub fn inside(&self, host_path: &Path) -> Result<PathBuf, CyrusError> {
        let Some(root) = &self.chroot else {
            return Ok(host_path.to_path_buf());
        };
        match host_path.strip_prefix(root) {
            Ok(rest) => Ok(Path::new("/").join(rest)),
            Err(_) => Err(CyrusError::Config(format!(
                "`{}` is outside the chroot `{}`: Cyrus from a chroot can only use paths below it (use a sandbox dir under `{}`)",
                host_path.display(),
                root.display(),
                root.join("tmp").display()
            ))),
        }
    }

    /// Where sandboxes go by default: the system temp dir, or `ROOT/tmp`.
    pub fn sandbox_parent(&self) -> PathBuf {
        match &self.chroot {
            Some(root) => root.join("tmp"),
            None => std::env::temp_dir(),
        }
    }

    /// The uid of `cyrus` and the gid of `mail` (else `cyrus`' group) in this
    /// installation's user database: the host's, or `ROOT/etc/passwd` and
    /// `ROOT/etc/group` (the uid differs per Debian root).
    pub fn cyrus_ids(&self) -> Result<(nix::unistd::Uid, nix::unistd::Gid), CyrusError> {
        use nix::unistd::{Gid, Group, Uid, User};
        let missing = || CyrusError::MissingUser {
            user: "cyrus".into(),
        };
        match &self.chroot {
            None => {
                let user = User::from_name("cyrus")
                    .ok()
                    .flatten()
                    .ok_or_else(missing)?;
                let gid = Group::from_name("mail")
                    .ok()
                    .flatten()
                    .map_or(user.gid, |g| g.gid);
                Ok((user.uid, gid))
            }
            Some(root) => {
                let field = |file: &str, name: &str, index: usize| -> Option<u32> {
                    let text = std::fs::read_to_string(root.join(file)).ok()?;
                    text.lines()
                        .map(|l| l.split(':').collect::<Vec<_>>())
                        .find(|f| f.first() == Some(&name))
                        .and_then(|f| f.get(index)?.parse().ok())
                };
                let uid = field("etc/passwd", "cyrus", 2).ok_or_else(missing)?;
                let gid = field("etc/group", "mail", 2)
                    .or_else(|| field("etc/passwd", "cyrus", 3))
                    .ok_or_else(missing)?;
                Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
            }
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
