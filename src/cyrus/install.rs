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

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The default directory holding one chroot per Debian suite.
pub const DEFAULT_CACHE: &str = "/var/cache/backupd-sim/cyrus";
/// The environment variable that overrides [`DEFAULT_CACHE`].
pub const CACHE_ENV: &str = "BACKUPD_SIM_CYRUS_CACHE";
/// The file inside a root that says its installation completed.
pub const MARKER: &str = ".backupd-sim-installed";
/// Debian packages installed in each root.
pub const PACKAGES: [&str; 3] = ["cyrus-common", "cyrus-imapd", "cyrus-replication"];
/// The longest any one step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(1200);

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

/// The Debian mirror the host's apt uses: the first `URIs:` of a deb822
/// `.sources` file under `/etc/apt/sources.list.d/` whose suites are not a
/// `-security` one, else the first `deb URL` line of `/etc/apt/sources.list`
/// or `sources.list.d/*.list`. `$DEBIAN_MIRROR` overrides it.
pub fn host_mirror() -> Option<String> {
    if let Some(m) = std::env::var("DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.is_empty())
    {
        return Some(m);
    }
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|x| x == "sources"))
    {
        if let Ok(text) = fs::read_to_string(f) {
            if let Some(m) = mirror_from_deb822(&text) {
                return Some(m);
            }
        }
    }
    let mut lists = vec![PathBuf::from("/etc/apt/sources.list")];
    lists.extend(
        files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|x| x == "list")),
    );
    for f in lists {
        if let Ok(text) = fs::read_to_string(&f) {
            if let Some(m) = mirror_from_list(&text) {
                return Some(m);
            }
        }
    }
    None
}

/// The Debian security mirror the host's apt uses (the `URIs:` of a deb822
/// stanza, or the URL of a `deb` line, whose suite ends in `-security`).
pub fn host_security_mirror() -> Option<String> {
    let mut files: Vec<PathBuf> = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.insert(0, PathBuf::from("/etc/apt/sources.list"));
    files.into_iter().find_map(|f| {
        let text = fs::read_to_string(&f).ok()?;
        if f.extension().is_some_and(|x| x == "sources") {
            security_from_deb822(&text)
        } else if f.extension().is_some_and(|x| x == "list") {
            text.lines().find_map(|l| {
                let mut w = l.split_whitespace().filter(|w| !w.starts_with('['));
                (w.next()? == "deb").then_some(())?;
                let url = w.next()?;
                w.next()?.ends_with("-security").then(|| url.to_owned())
            })
        } else {
            None
        }
    })
}

/// The `-security` mirror of a deb822 sources file.
pub fn security_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let security = field("Suites").is_some_and(|s| s.contains("-security"));
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        (security && enabled)
            .then(|| field("URIs"))
            .flatten()
            .and_then(|u| u.split_whitespace().next().map(str::to_owned))
    })
}

/// The first non-security `deb` mirror of a deb822 sources file.
pub fn mirror_from_deb822(text: &str) -> Option<String> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        let enabled = field("Enabled").is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        let deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let security = field("Suites").is_some_and(|s| s.contains("-security"));
        if let (true, true, false, Some(uris)) = (enabled, deb, security, field("URIs")) {
            if let Some(u) = uris.split_whitespace().next() {
                return Some(u.to_owned());
            }
        }
    }
    None
}

/// The first non-security `deb URL SUITE` line of a one-line-style sources file.
pub fn mirror_from_list(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut words = l.split_whitespace().filter(|w| !w.starts_with('['));
        if words.next()? != "deb" {
            return None;
        }
        let url = words.next()?;
        let suite = words.next()?;
        (!suite.contains("-security")).then(|| url.to_owned())
    })
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
            tail: super::master::read_tail(&self.log, 20),
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

/// Mount points under `root` that are mounted now (deepest first).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut out: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        // /proc/mounts escapes spaces as \040; our roots have none.
        .map(PathBuf::from)
        .filter(|m| m.starts_with(root))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    out.dedup();
    out
}

/// Unmount everything under `root` (deepest first; lazily if busy).
pub fn unmount_all(root: &Path) -> Result<(), InstallError> {
    for m in mounts_under(root) {
        let ok = Command::new("umount")
            .arg(&m)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
    let left = mounts_under(root);
    if left.is_empty() {
        Ok(())
    } else {
        Err(InstallError::Other(format!(
            "still mounted under `{}`: {left:?}",
            root.display()
        )))
    }
}

/// `/proc`, `/dev` and `/dev/pts` bound into the root while apt runs; undone
/// on drop, whatever happened.
pub(crate) struct AptMounts {
    root: PathBuf,
}

impl AptMounts {
    pub(crate) fn mount(root: &Path) -> Result<AptMounts, InstallError> {
        let guard = AptMounts {
            root: root.to_owned(),
        };
        let steps: [(&str, &[&str]); 3] = [
            ("proc", &["-t", "proc", "proc"]),
            ("dev", &["--bind", "/dev"]),
            ("dev/pts", &["--bind", "/dev/pts"]),
        ];
        for (dir, args) in steps {
            let target = root.join(dir);
            let ok = Command::new("mount")
                .args(args)
                .arg(&target)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                // `guard` drops here and undoes what was mounted.
                return Err(InstallError::Other(format!(
                    "mount {} failed",
                    target.display()
                )));
            }
        }
        Ok(guard)
    }
}

impl Drop for AptMounts {
    fn drop(&mut self) {
        if let Err(e) = unmount_all(&self.root) {
            eprintln!("backupd-sim cyrus install: {e}");
        }
    }
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
        let chroot_apt = |args: &[&str]| {
            let mut c = Command::new("chroot");
            c.arg(&root)
                .arg("apt-get")
                // A frozen mirror's sid InRelease may be past its Valid-Until.
                .arg("-o")
                .arg("Acquire::Check-Valid-Until=false")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .env("LC_ALL", "C.UTF-8");
            c
        };
        b.run("apt-get update (chroot)", &mut chroot_apt(&["update"]))?;
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(PACKAGES);
        b.run(
            &format!("apt-get install {} (chroot)", PACKAGES.join(" ")),
            &mut chroot_apt(&args),
        )?;
        b.run("apt-get clean (chroot)", &mut chroot_apt(&["clean"]))?;
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
    fn mirrors_from_both_source_formats() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_from_deb822(deb822).as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let security_first = "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\nTypes: deb-src deb\nURIs: http://m.example/debian\nSuites: bookworm\n";
        assert_eq!(
            mirror_from_deb822(security_first).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_from_deb822("Types: deb-src\nURIs: http://x\n"), None);
        let list = "# x\ndeb http://security.debian.org/ bookworm-security main\ndeb [arch=amd64] http://ftp.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_list(list).as_deref(),
            Some("http://ftp.example/debian")
        );
    }

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
