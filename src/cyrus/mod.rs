//! Drive a real, throwaway Cyrus IMAP 3.6 "source" instance: start it in a sandbox
//! directory, change mail on it over IMAP, read its state back, run `sync_client`.
//!
//! * [`CyrusBins`] - a Cyrus installation: the host's, a build directory, or a chroot.
//! * [`install`] - Debian chroots with newer Cyrus versions (`backupd-sim cyrus install`).
//! * [`build`] - Cyrus built from Debian's source package with patches (`backupd-sim cyrus build`).
//! * [`SourceInstance`] - a running `master` + `imapd` with `sync_log` channels.
//! * [`ImapClient`] - a small blocking IMAP4rev1 client.
//! * [`SyncClient`] - runs `sync_client` with a timeout and captured output.
//! * [`RealTarget`] - a real `backupd` or `sync_server` replica to replicate into.
//! * [`process`] - processes by PID, the registry of what we started; [`procfs`] - `/proc` parsing.

pub mod build;
mod config;
pub mod imap;
pub mod install;
pub mod instance;
pub(crate) mod master;
pub mod ports;
pub mod process;
pub mod procfs;
pub mod sync_client;
pub mod target;
pub mod tool;

use std::path::{Path, PathBuf};

pub use imap::{FetchedMessage, ImapClient, ListEntry, MailboxInfo, StatusInfo};
pub use instance::{
    to_internal_name, to_user_view_name, user_inbox, Channel, SourceInstance, SourceOptions,
};
pub use sync_client::{Alive, RunningSyncClient, SyncClient, SyncRun};
pub use target::{BackupLock, RealTarget, StateScope, TargetKind};

/// Default Debian location of the Cyrus executables.
pub const DEFAULT_CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

/// The environment variable naming an installed tree (as `--cyrus-prefix`).
pub const PREFIX_ENV: &str = "CYRUS_PREFIX";
/// The environment variable naming a flat directory of executables (as `--cyrus-bin`).
pub const BIN_ENV: &str = "CYRUS_BIN";

/// Where programs are looked for below an installation prefix, in this order.
/// Upstream `make install` puts the servers (`master`, `imapd`, `sync_server`,
/// `backupd`) in `libexec/`, the tools (`sync_client`, `ctl_cyrusdb`,
/// `ctl_backups`, `cyr_backup`) in `sbin/` and a few (`imtest`) in `bin/`;
/// after those come the layouts distributions pick with `--libexecdir`
/// (`libexec/cyrus-imapd/`, Debian's `lib/cyrus/bin/`).
pub const PREFIX_DIRS: [&str; 5] = [
    "libexec",
    "sbin",
    "bin",
    "libexec/cyrus-imapd",
    "lib/cyrus/bin",
];

const SETUP_HINT: &str = "install Debian's packages as root (`apt-get install cyrus-common \
     cyrus-imapd cyrus-replication`), or pass --cyrus-prefix DIR (an installed tree) or \
     --cyrus-bin DIR (one directory of executables), or set CYRUS_PREFIX or CYRUS_BIN";

/// Everything that can go wrong while driving Cyrus.
#[derive(Debug, thiserror::Error)]
pub enum CyrusError {
    #[error("cyrus installation `{dir}` is incomplete: missing {missing}{looked}; {SETUP_HINT}")]
    MissingBinaries {
        dir: PathBuf,
        missing: String,
        /// Where they were looked for, for a prefix (empty for a flat directory).
        looked: String,
    },

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

/// How an installation's programs are laid out (paths as the programs see them).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// Every program in one directory (Debian's `/usr/lib/cyrus/bin`).
    Flat(PathBuf),
    /// An installation prefix as `make install` lays it out ([`PREFIX_DIRS`]).
    Prefix(PathBuf),
}

/// A Cyrus installation: where `master`, `imapd`, `sync_client`, ... are, either
/// on the host or inside a chroot (a Debian root built by `backupd-sim cyrus
/// install`, see [`install`]). The programs are either in one directory
/// ([`CyrusBins::locate`]) or below a prefix as upstream `make install` lays
/// them out ([`CyrusBins::locate_prefix`], [`PREFIX_DIRS`]).
///
/// For a chroot installation every Cyrus program runs as `chroot ROOT PROGRAM`
/// (chroot(8) execs it, so the PID is the program's), every path handed to it is
/// the path seen inside the root ([`CyrusBins::inside`]), and sandboxes are made
/// under `ROOT/tmp` ([`CyrusBins::sandbox_parent`]). The fake stays on the host:
/// the chroot shares the host's loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyrusBins {
    /// Where the programs are, as the programs see it (inside the chroot).
    layout: Layout,
    /// The chroot, when the installation lives in one.
    chroot: Option<PathBuf>,
}

/// The Cyrus executables' directory inside a Debian root.
pub const CHROOT_CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

/// `path` made absolute and without `..` (canonical when it exists: the
/// paths end up in `cyrus.conf` and in replay commands).
fn absolute(path: &Path) -> Result<PathBuf, CyrusError> {
    if let Ok(p) = std::fs::canonicalize(path) {
        return Ok(p);
    }
    std::path::absolute(path).map_err(CyrusError::io(format!(
        "making `{}` absolute",
        path.display()
    )))
}

impl CyrusBins {
    /// Executables every use of this module needs.
    pub const REQUIRED: [&'static str; 4] = ["master", "imapd", "sync_client", "ctl_cyrusdb"];

    /// Check that the directory `dir` holds the needed executables and that
    /// the `cyrus` user exists.
    pub fn locate(dir: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        let bins = CyrusBins {
            layout: Layout::Flat(absolute(dir.as_ref())?),
            chroot: None,
        };
        bins.check()?;
        Ok(bins)
    }

    /// An installed tree below `prefix`, each program found in the first of
    /// [`PREFIX_DIRS`] holding it (`PREFIX/libexec/master`,
    /// `PREFIX/sbin/sync_client`, ...); the `cyrus` user must exist.
    pub fn locate_prefix(prefix: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        let prefix = prefix.as_ref();
        if !prefix.is_dir() {
            return Err(CyrusError::Config(format!(
                "--cyrus-prefix `{}` is not a directory",
                prefix.display()
            )));
        }
        let bins = CyrusBins {
            layout: Layout::Prefix(absolute(prefix)?),
            chroot: None,
        };
        bins.check()?;
        Ok(bins)
    }

    /// The Debian installation inside the chroot `root` (`ROOT/usr/lib/cyrus/bin`,
    /// the `cyrus` user in `ROOT/etc/passwd`). Running it needs root.
    pub fn locate_chroot(root: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        Self::in_chroot(root.as_ref(), Layout::Flat(PathBuf::from(CHROOT_CYRUS_BIN)))
    }

    /// An installed tree at `prefix` (the path inside the root, e.g.
    /// `/opt/backupd-sim/cyrus-3.12.4-…`) in the chroot `root`: a `cyrus build`
    /// for a chroot's Debian version. Running it needs root.
    pub fn locate_chroot_prefix(
        root: impl AsRef<Path>,
        prefix: impl AsRef<Path>,
    ) -> Result<CyrusBins, CyrusError> {
        let prefix = prefix.as_ref();
        if !prefix.is_absolute() {
            return Err(CyrusError::Config(format!(
                "prefix `{}` inside a chroot must be absolute",
                prefix.display()
            )));
        }
        Self::in_chroot(root.as_ref(), Layout::Prefix(prefix.to_path_buf()))
    }

    /// A flat installation at `dir`, not checked (unit tests of validation).
    #[cfg(test)]
    pub(crate) fn unchecked_flat(dir: PathBuf) -> CyrusBins {
        CyrusBins {
            layout: Layout::Flat(dir),
            chroot: None,
        }
    }

    fn in_chroot(root: &Path, layout: Layout) -> Result<CyrusBins, CyrusError> {
        let root = std::fs::canonicalize(root).map_err(CyrusError::io(format!(
            "chroot `{}` (install one with `backupd-sim cyrus install 3.10`)",
            root.display()
        )))?;
        let bins = CyrusBins {
            layout,
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
    /// root (a directory holding `usr/lib/cyrus/bin/master`), an installed tree
    /// (a prefix with `libexec/master`; inside a `cyrus install` root it runs in
    /// that chroot: a `cyrus build` for 3.10 or 3.12), or a directory of Cyrus
    /// executables (a build).
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
        if is_prefix(path) {
            return CyrusBins::prefix_anywhere(path);
        }
        if path.is_dir() {
            return CyrusBins::locate(path);
        }
        Err(CyrusError::Config(format!(
            "--cyrus `{spec}`: expected 3.6, 3.10, 3.12, host, a chroot root, an installed tree (PREFIX/libexec/master) or a directory of Cyrus executables"
        )))
    }

    /// An installed tree at the host path `prefix`: run in the chroot of the
    /// `cyrus install` root it lies in (found by its marker file), else on the host.
    pub fn prefix_anywhere(prefix: &Path) -> Result<CyrusBins, CyrusError> {
        let prefix = absolute(prefix)?;
        for root in prefix.ancestors().skip(1) {
            if root.join(install::MARKER).is_file() {
                let inside = Path::new("/").join(prefix.strip_prefix(root).unwrap_or(&prefix));
                return CyrusBins::locate_chroot_prefix(root, inside);
            }
        }
        CyrusBins::locate_prefix(&prefix)
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
            return Err(self.missing(&missing.join(", ")));
        }
        self.cyrus_ids().map(|_| ())
    }

    /// The error for programs this installation lacks (`missing`: "`backupd`").
    pub fn missing(&self, missing: &str) -> CyrusError {
        let looked = match &self.layout {
            Layout::Flat(_) => String::new(),
            Layout::Prefix(_) => format!(
                " (looked in {})",
                PREFIX_DIRS
                    .iter()
                    .map(|d| format!("{d}/"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        CyrusError::MissingBinaries {
            dir: self.to_host(self.location()),
            missing: missing.to_owned(),
            looked,
        }
    }

    /// Whether the installation has the program `name`.
    pub fn has(&self, name: &str) -> bool {
        self.host_path(name).is_file()
    }

    /// Where the installation is, as the programs see it: the directory of
    /// executables, or the prefix.
    pub fn location(&self) -> &Path {
        match &self.layout {
            Layout::Flat(d) | Layout::Prefix(d) => d,
        }
    }

    /// The prefix, for an installed tree.
    pub fn prefix(&self) -> Option<&Path> {
        match &self.layout {
            Layout::Prefix(p) => Some(p),
            Layout::Flat(_) => None,
        }
    }

    /// The chroot, for a chroot installation.
    pub fn chroot(&self) -> Option<&Path> {
        self.chroot.as_deref()
    }

    /// How a user names this installation on the command line (`--cyrus ...`);
    /// empty for the default host installation.
    pub fn cli_arg(&self) -> String {
        match (&self.chroot, &self.layout) {
            (Some(root), Layout::Flat(_)) => format!(" --cyrus {}", root.display()),
            (Some(_), Layout::Prefix(p)) => format!(" --cyrus {}", self.to_host(p).display()),
            (None, Layout::Flat(d)) if d == Path::new(DEFAULT_CYRUS_BIN) => String::new(),
            (None, Layout::Flat(d)) => format!(" --cyrus-bin {}", d.display()),
            (None, Layout::Prefix(p)) => format!(" --cyrus-prefix {}", p.display()),
        }
    }

    /// A short description: `/usr/lib/cyrus/bin`, `prefix /opt/cyrus`,
    /// `chroot /var/cache/.../trixie` or `chroot ROOT, prefix /opt/...`.
    pub fn describe(&self) -> String {
        match (&self.chroot, &self.layout) {
            (Some(root), Layout::Flat(_)) => format!("chroot {}", root.display()),
            (Some(root), Layout::Prefix(p)) => {
                format!("chroot {}, prefix {}", root.display(), p.display())
            }
            (None, Layout::Flat(d)) => d.display().to_string(),
            (None, Layout::Prefix(p)) => format!("prefix {}", p.display()),
        }
    }

    /// The Cyrus version (`3.6.1`) from `master -V`, or `unknown`. A build
    /// from `backupd-sim cyrus build --patch` carries one tag per patch
    /// (`3.6.1+sync-client-backoff`), which per-version expectations can name.
    pub fn version(&self) -> String {
        self.command("master")
            .arg("-V")
            .stdin(std::process::Stdio::null())
            .output()
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                parse_master_version(&text)
            })
            .unwrap_or_else(|| "unknown".into())
    }

    /// The path of one executable as the Cyrus programs see it, e.g.
    /// `path("imapd")` for a `cyrus.conf` line. On the host it is also the path
    /// to run; for a chroot installation start programs with [`CyrusBins::command`].
    /// Below a prefix it is the first of [`PREFIX_DIRS`] holding the program
    /// (`libexec/NAME` when none does).
    pub fn path(&self, name: &str) -> PathBuf {
        match &self.layout {
            Layout::Flat(d) => d.join(name),
            Layout::Prefix(p) => PREFIX_DIRS
                .iter()
                .map(|d| p.join(d).join(name))
                .find(|c| self.to_host(c).is_file())
                .unwrap_or_else(|| p.join(PREFIX_DIRS[0]).join(name)),
        }
    }

    /// The path of one executable as seen from the host.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.to_host(&self.path(name))
    }

    /// A path as the programs see it, as seen from the host.
    fn to_host(&self, inside: &Path) -> PathBuf {
        match &self.chroot {
            Some(root) => root.join(inside.strip_prefix("/").unwrap_or(inside)),
            None => inside.to_path_buf(),
        }
    }

    /// A path the programs print (inside the chroot) as seen from the host.
    pub fn host_view(&self, inside: &Path) -> PathBuf {
        self.to_host(inside)
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

    /// A command that runs `program` (any program of the root, e.g. `/bin/sh`)
    /// inside this installation's chroot, or on the host.
    pub fn command_in_root(&self, program: &str) -> std::process::Command {
        match &self.chroot {
            Some(root) => {
                let mut c = std::process::Command::new("chroot");
                c.arg(root).arg(program);
                c
            }
            None => std::process::Command::new(program),
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

/// The version in `master -V` output (`cyrus-imapd 3.6.1-Debian-3.6.1-4` ->
/// `3.6.1`); a `cyrus build` ident (`3.6.1-backupd-sim+a+b`) keeps its tags
/// (`3.6.1+a+b`).
pub fn parse_master_version(text: &str) -> Option<String> {
    let word = text
        .split_whitespace()
        .skip_while(|w| *w != "cyrus-imapd")
        .nth(1)?;
    let (number, ident) = word.split_once('-').unwrap_or((word, ""));
    Some(
        match ident
            .strip_prefix(build::IDENT)
            .and_then(|t| t.strip_prefix('+'))
        {
            Some(tags) if !tags.is_empty() => format!("{number}+{tags}"),
            _ => number.to_owned(),
        },
    )
}

/// Whether `dir` looks like an installed tree: `master` in one of
/// [`PREFIX_DIRS`] other than a flat directory's own.
pub fn is_prefix(dir: &Path) -> bool {
    PREFIX_DIRS
        .iter()
        .any(|d| dir.join(d).join("master").is_file())
}

/// Which installation(s) a command runs on: its `--cyrus-prefix`,
/// `--cyrus-bin` and `--cyrus` flags, else `$CYRUS_PREFIX` or `$CYRUS_BIN`,
/// else Debian's [`DEFAULT_CYRUS_BIN`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Choice {
    /// `--cyrus-prefix DIR`: an installed tree.
    pub prefix: Option<PathBuf>,
    /// `--cyrus-bin DIR`: a flat directory of executables.
    pub bin: Option<PathBuf>,
    /// `--cyrus VERSION|DIR` (repeatable where a command runs on several).
    pub cyrus: Vec<String>,
}

impl Choice {
    /// The installations named, in order (`all`: the host's and every
    /// installed chroot). More than one kind of flag is an error; with no flag
    /// the environment decides (`CYRUS_PREFIX` and `CYRUS_BIN` both set is an
    /// error too).
    pub fn installations(&self) -> Result<Vec<CyrusBins>, CyrusError> {
        self.installations_with(|k| std::env::var_os(k))
    }

    /// [`Choice::installations`] with the environment given (for tests).
    pub fn installations_with(
        &self,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Vec<CyrusBins>, CyrusError> {
        let given = [
            self.prefix.is_some(),
            self.bin.is_some(),
            !self.cyrus.is_empty(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(CyrusError::Config(
                "give only one of --cyrus-prefix, --cyrus-bin and --cyrus".into(),
            ));
        }
        if let Some(p) = &self.prefix {
            return Ok(vec![CyrusBins::prefix_anywhere(p)?]);
        }
        if let Some(b) = &self.bin {
            return Ok(vec![CyrusBins::locate(b)?]);
        }
        if self.cyrus.is_empty() {
            let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
            return Ok(vec![match (var(PREFIX_ENV), var(BIN_ENV)) {
                (Some(p), Some(b)) => {
                    return Err(CyrusError::Config(format!(
                        "both {PREFIX_ENV} (`{}`) and {BIN_ENV} (`{}`) are set: unset one",
                        p.display(),
                        b.display()
                    )))
                }
                (Some(p), None) => CyrusBins::prefix_anywhere(&p).map_err(|e| {
                    CyrusError::Config(format!("{PREFIX_ENV}=`{}`: {e}", p.display()))
                })?,
                (None, Some(b)) => CyrusBins::locate(&b)
                    .map_err(|e| CyrusError::Config(format!("{BIN_ENV}=`{}`: {e}", b.display())))?,
                (None, None) => CyrusBins::locate(DEFAULT_CYRUS_BIN)?,
            }]);
        }
        let cache = install::cache_dir();
        let mut out: Vec<CyrusBins> = Vec::new();
        for spec in &self.cyrus {
            if spec == "all" {
                out.push(CyrusBins::locate(DEFAULT_CYRUS_BIN)?);
                for s in install::SUITES {
                    if let Some(root) = install::installed_root(&cache, s) {
                        out.push(CyrusBins::locate_chroot(root)?);
                    }
                }
            } else {
                out.push(CyrusBins::resolve(spec, &cache)?);
            }
        }
        out.dedup();
        Ok(out)
    }

    /// The one installation a command that runs on one names.
    pub fn single(&self) -> Result<CyrusBins, CyrusError> {
        let mut all = self.installations()?;
        if all.len() != 1 {
            return Err(CyrusError::Config(format!(
                "this command runs on one Cyrus installation; --cyrus names {} (only `run` takes several)",
                all.len()
            )));
        }
        Ok(all.remove(0))
    }
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_versions_with_and_without_build_tags() {
        let v = |t: &str| parse_master_version(t);
        assert_eq!(
            v("cyrus-imapd 3.6.1-Debian-3.6.1-4+deb12u5\n").as_deref(),
            Some("3.6.1")
        );
        assert_eq!(v("cyrus-imapd 3.12.4").as_deref(), Some("3.12.4"));
        assert_eq!(v("cyrus-imapd 3.6.1-backupd-sim").as_deref(), Some("3.6.1"));
        assert_eq!(
            v("cyrus-imapd 3.6.1-backupd-sim+sync-client-backoff").as_deref(),
            Some("3.6.1+sync-client-backoff")
        );
        assert_eq!(
            v("master: cyrus-imapd 3.10.2-backupd-sim+a+b").as_deref(),
            Some("3.10.2+a+b")
        );
        assert_eq!(v("no version here"), None);
    }
}
