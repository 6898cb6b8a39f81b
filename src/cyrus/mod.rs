//! Drive a real, throwaway Cyrus IMAP 3.6 "source" instance: start it in a sandbox
//! directory, change mail on it over IMAP, read its state back, run `sync_client`.
//!
//! * [`CyrusBins`] - where the Cyrus executables are.
//! * [`SourceInstance`] - a running `master` + `imapd` with `sync_log` channels.
//! * [`ImapClient`] - a small blocking IMAP4rev1 client.
//! * [`SyncClient`] - runs `sync_client` with a timeout and captured output.
//! * [`RealTarget`] - a real `backupd` or `sync_server` replica to replicate into.

pub mod imap;
pub mod instance;
pub mod process;
pub mod sync_client;
pub mod target;

use std::path::{Path, PathBuf};

pub use imap::{FetchedMessage, ImapClient, ListEntry, MailboxInfo, StatusInfo};
pub use instance::{to_internal_name, to_user_view_name, Channel, SourceInstance, SourceOptions};
pub use sync_client::{RunningSyncClient, SyncClient, SyncRun};
pub use target::{BackupLock, RealTarget, StateScope, TargetKind};

/// Default Debian location of the Cyrus executables.
pub const DEFAULT_CYRUS_BIN: &str = "/usr/lib/cyrus/bin";

const SETUP_HINT: &str = "run `make setup` or pass --cyrus-bin DIR";

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

/// A Cyrus installation: the directory holding `master`, `imapd`, `sync_client`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CyrusBins {
    dir: PathBuf,
}

impl CyrusBins {
    /// Executables every use of this module needs.
    pub const REQUIRED: [&'static str; 4] = ["master", "imapd", "sync_client", "ctl_cyrusdb"];

    /// Check that `dir` holds the needed executables and that the `cyrus` user exists.
    pub fn locate(dir: impl AsRef<Path>) -> Result<CyrusBins, CyrusError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = dir.as_ref().to_path_buf();
        let missing: Vec<String> = Self::REQUIRED
            .iter()
            .filter(|name| {
                let ok = std::fs::metadata(dir.join(name))
                    .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false);
                !ok
            })
            .map(|name| format!("`{name}`"))
            .collect();
        if !missing.is_empty() {
            return Err(CyrusError::MissingBinaries {
                dir,
                missing: missing.join(", "),
            });
        }
        match nix::unistd::User::from_name("cyrus") {
            Ok(Some(_)) => Ok(CyrusBins { dir }),
            _ => Err(CyrusError::MissingUser {
                user: "cyrus".into(),
            }),
        }
    }

    /// The installation directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Cyrus version (`3.6.1`) from `master -V`, or `unknown`.
    pub fn version(&self) -> String {
        std::process::Command::new(self.path("master"))
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

    /// The path of one executable, e.g. `path("sync_client")`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
