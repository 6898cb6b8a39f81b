//! Newer Cyrus versions from Debian, each in a `debootstrap` chroot
//! (`backupd-sim cyrus install 3.10|3.12`, `backupd-sim cyrus list`).
//!
//! Newer Debian binaries need a newer glibc than the host's, so each version
//! gets a minimal Debian root with `cyrus-common cyrus-imapd cyrus-replication`
//! installed by its own apt. The recipe and every trap are in
//! `docs/version-matrix.md` (the lab's matrix, §2 and §7): no service may start inside
//! (`policy-rc.d`), the hostname goes into the root's `/etc/hosts` (else each
//! connect waits on DNS), sid's frozen `InRelease` may be past its
//! `Valid-Until`, and `/proc`, `/dev`, `/dev/pts` are mounted only while apt
//! runs, and always unmounted, on error and on interrupt too.
//!
//! An installation is complete when its marker file exists; `install` is
//! idempotent and rebuilds a root that has no marker (an interrupted build).
//!
//! This file owns the suites, the cache layout, the chroot's creation and
//! its marker, and `cyrus list`; the pieces: `install/mirror.rs` (the host's
//! Debian mirrors), `install/step.rs` (running a step: bounded, logged,
//! interruptible; [`InstallError`]), `install/mounts.rs` (the mounts apt
//! needs inside a root, always undone). `cyrus build` uses the same steps.

mod mirror;
mod mounts;
mod step;

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

pub use mirror::{
    host_mirror, host_security_mirror, mirror_from_deb822, mirror_from_list, security_from_deb822,
};
pub(crate) use mounts::{chroot_apt, AptMounts};
pub use mounts::{mounts_under, unmount_all};
pub use step::InstallError;
pub(crate) use step::{interrupt_flag, Builder};

/// The default directory holding one chroot per Debian suite.
pub const DEFAULT_CACHE: &str = "/var/cache/backupd-sim/cyrus";
/// The environment variable that overrides [`DEFAULT_CACHE`].
pub const CACHE_ENV: &str = "BACKUPD_SIM_CYRUS_CACHE";
/// The file inside a root that says its installation completed.
pub const MARKER: &str = ".backupd-sim-installed";
/// Debian packages installed in each root.
pub const PACKAGES: [&str; 3] = ["cyrus-common", "cyrus-imapd", "cyrus-replication"];

/// A Cyrus version Debian ships in a suite the host can debootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suite {
    /// Major.minor as a user names it: `3.10`.
    pub version: &'static str,
    /// The Debian suite: `trixie`.
    pub suite: &'static str,
}

/// Every version `cyrus install` knows.
pub const SUITES: [Suite; 2] = [
    Suite {
        version: "3.10",
        suite: "trixie",
    },
    Suite {
        version: "3.12",
        suite: "sid",
    },
];

/// The suite for a version (`3.10`, `3.10.2`) or suite name (`trixie`).
pub fn suite_for(spec: &str) -> Option<Suite> {
    SUITES.iter().copied().find(|s| {
        s.suite == spec
            || s.version == spec
            || spec
                .strip_prefix(s.version)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The cache directory: `$BACKUPD_SIM_CYRUS_CACHE`, else [`DEFAULT_CACHE`].
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_CACHE), PathBuf::from)
}

/// Where `suite`'s root goes.
pub fn root_of(cache: &Path, suite: Suite) -> PathBuf {
    cache.join(suite.suite)
}

/// `suite`'s root when its installation completed.
pub fn installed_root(cache: &Path, suite: Suite) -> Option<PathBuf> {
    let root = root_of(cache, suite);
    root.join(MARKER).is_file().then_some(root)
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Installed {
    /// The root.
    pub root: PathBuf,
    /// `master -V`'s version, e.g. `3.10.2`.
    pub version: String,
    /// False when it was already installed and nothing was done.
    pub built: bool,
    /// Wall time.
    pub seconds: f64,
}

/// Build `suite`'s chroot under `cache` unless it is complete already. Needs
/// root. `progress` gets one line per step, with its time.
pub fn install(
    suite: Suite,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<Installed, InstallError> {
    let started = Instant::now();
    let root = root_of(cache, suite);
    if let Some(root) = installed_root(cache, suite) {
        let version = super::CyrusBins::locate_chroot(&root)
            .map(|b| b.version())
            .map_err(|e| InstallError::Other(format!("installed root is broken: {e}")))?;
        return Ok(Installed {
            root,
            version,
            built: false,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Err(InstallError::Other(
            "building a chroot needs root (debootstrap, mount, chroot)".into(),
        ));
    }
    let interrupted = interrupt_flag()?;
    fs::create_dir_all(cache)
        .map_err(|e| InstallError::Other(format!("create `{}`: {e}", cache.display())))?;
    let log = cache.join(format!("{}.log", suite.suite));
    let _ = fs::remove_file(&log);
    let mut b = Builder {
        log: log.clone(),
        interrupted,
        progress,
    };
    if root.exists() {
        // A build that did not finish: never delete through a mount.
        unmount_all(&root)?;
        (b.progress)(&format!(
            "removing the unfinished root {} (no marker)",
            root.display()
        ));
        fs::remove_dir_all(&root)
            .map_err(|e| InstallError::Other(format!("remove `{}`: {e}", root.display())))?;
    }
    let have_debootstrap = Command::new("debootstrap")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_debootstrap {
        let mut apt = Command::new("apt-get");
        apt.env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "debootstrap"]);
        if b.run("apt-get install debootstrap (host)", &mut apt)
            .is_err()
        {
            b.run(
                "apt-get update (host)",
                Command::new("apt-get").arg("update"),
            )?;
            b.run(
                "apt-get install debootstrap (host)",
                Command::new("apt-get")
                    .env("DEBIAN_FRONTEND", "noninteractive")
                    .args(["install", "-y", "debootstrap"]),
            )?;
        }
    }
    let mirror = host_mirror().ok_or_else(|| {
        InstallError::Other("no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR".into())
    })?;
    (b.progress)(&format!(
        "Cyrus {} from Debian {} ({mirror}) into {}",
        suite.version,
        suite.suite,
        root.display()
    ));
    b.run(
        &format!("debootstrap --variant=minbase {}", suite.suite),
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(suite.suite)
            .arg(&root)
            .arg(&mirror)
            .env("LC_ALL", "C.UTF-8"),
    )?;
    // No service may start inside the root.
    let policy = root.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n")
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&policy, fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| InstallError::Other(format!("write `{}`: {e}", policy.display())))?;
    add_hostname(&root)?;
    {
        let _mounts = AptMounts::mount(&root)?;
        b.run(
            "apt-get update (chroot)",
            &mut chroot_apt(&root, &["update"]),
        )?;
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(PACKAGES);
        b.run(
            &format!("apt-get install {} (chroot)", PACKAGES.join(" ")),
            &mut chroot_apt(&root, &args),
        )?;
        b.run("apt-get clean (chroot)", &mut chroot_apt(&root, &["clean"]))?;
    }
    if !mounts_under(&root).is_empty() {
        return Err(InstallError::Other(format!(
            "mounts left under `{}` after apt",
            root.display()
        )));
    }
    let bins = super::CyrusBins::locate_chroot(&root)
        .map_err(|e| InstallError::Other(format!("the new root is incomplete: {e}")))?;
    let version = bins.version();
    if !version.starts_with(&format!("{}.", suite.version)) {
        return Err(InstallError::Other(format!(
            "expected Cyrus {} in Debian {}, `master -V` says {version}",
            suite.version, suite.suite
        )));
    }
    fs::write(root.join(MARKER), format!("{version}\n"))
        .map_err(|e| InstallError::Other(format!("write the marker: {e}")))?;
    Ok(Installed {
        root,
        version,
        built: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Append `127.0.0.1 HOSTNAME` to the root's `/etc/hosts` unless it names the
/// host already (else every sync_client connect asks DNS: 5 s stalls).
fn add_hostname(root: &Path) -> Result<(), InstallError> {
    let host = fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| InstallError::Other(format!("read the hostname: {e}")))?
        .trim()
        .to_owned();
    if host.is_empty() {
        return Ok(());
    }
    let path = root.join("etc/hosts");
    let text = fs::read_to_string(&path).unwrap_or_default();
    let known = text.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("");
        l.split_whitespace().skip(1).any(|w| w == host)
    });
    if !known {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| InstallError::Other(format!("open `{}`: {e}", path.display())))?;
        writeln!(f, "127.0.0.1\t{host}")
            .map_err(|e| InstallError::Other(format!("write `{}`: {e}", path.display())))?;
    }
    Ok(())
}

/// One line of `cyrus list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// What `--cyrus` takes: `3.6`, `3.10`, `3.12`.
    pub name: String,
    /// `master -V`, or why it is not usable.
    pub version: String,
    /// The executables (host) or the root (chroot).
    pub location: PathBuf,
    /// Bytes on disk (chroots only).
    pub bytes: Option<u64>,
    /// Installed and usable.
    pub usable: bool,
}

/// The host's installation and every suite's chroot, installed or not.
pub fn list(cache: &Path) -> Vec<Listed> {
    let mut out = Vec::new();
    match super::CyrusBins::locate(super::DEFAULT_CYRUS_BIN) {
        Ok(b) => out.push(Listed {
            name: "3.6".into(),
            version: b.version(),
            location: b.location().to_owned(),
            bytes: None,
            usable: true,
        }),
        Err(e) => out.push(Listed {
            name: "3.6".into(),
            version: format!("not installed ({e})"),
            location: PathBuf::from(super::DEFAULT_CYRUS_BIN),
            bytes: None,
            usable: false,
        }),
    }
    for s in SUITES {
        let root = root_of(cache, s);
        let (version, usable) = match installed_root(cache, s) {
            Some(r) => match super::CyrusBins::locate_chroot(&r) {
                Ok(b) => (b.version(), true),
                Err(e) => (format!("broken ({e})"), false),
            },
            None if root.exists() => ("unfinished (run `cyrus install` again)".into(), false),
            None => (
                format!("not installed (`backupd-sim cyrus install {}`)", s.version),
                false,
            ),
        };
        out.push(Listed {
            name: s.version.into(),
            version,
            bytes: root.exists().then(|| disk_usage(&root)),
            location: root,
            usable,
        });
    }
    out
}

/// Bytes allocated under `path` (as `du`: blocks, hard links once, no
/// symlinks followed, not crossing into mounts).
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_owned()];
    let dev = fs::symlink_metadata(path).map(|m| m.dev()).unwrap_or(0);
    while let Some(p) = stack.pop() {
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if m.dev() != dev || !seen.insert((m.dev(), m.ino())) {
            continue;
        }
        total += m.blocks() * 512;
        if m.is_dir() {
            if let Ok(d) = fs::read_dir(&p) {
                stack.extend(d.filter_map(|e| e.ok().map(|e| e.path())));
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_by_version_or_name() {
        assert_eq!(suite_for("3.10").map(|s| s.suite), Some("trixie"));
        assert_eq!(suite_for("3.10.2").map(|s| s.suite), Some("trixie"));
        assert_eq!(suite_for("sid").map(|s| s.version), Some("3.12"));
        assert_eq!(suite_for("3.1"), None);
        assert_eq!(suite_for("3.100"), None);
        assert_eq!(suite_for("3.6"), None);
    }
}
