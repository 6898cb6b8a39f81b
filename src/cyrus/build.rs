//! Cyrus built from Debian's own source package, with the developer's patches
//! on top (`backupd-sim cyrus build [3.6|3.10|3.12] [--patch FILE]...`).
//!
//! Only Debian's package archive has to be reachable: the source package
//! (the upstream `orig` tarball and Debian's `debian.tar`) comes through apt,
//! with a private `deb-src` index under the cache (the host's apt
//! configuration is not touched), and apt checks every file against the
//! signed index. 3.6 is Debian 12's and builds on the host (bookworm); 3.10
//! and 3.12 come from trixie and sid and build inside their `cyrus install`
//! chroot (their glibc), with the prefix below the root.
//!
//! The steps: read the index; download the newest revision whose files the
//! archive still has (a frozen index may name a `debian.tar` the pool no longer
//! holds; the `orig` tarball is shared by every revision of one upstream
//! version and checked against the revision's own SHA-256); unpack; apply
//! Debian's patch series, then each `--patch` (`patch -p1`); install the build
//! dependencies the servers and tools need (not all of Debian's 116:
//! [`build_deps`]); upstream `./configure` ([`configure_flags`]), `make`,
//! `make install` into a staging directory, all at `nice -n 19`. The staged
//! tree is moved into place in one `rename` and then checked (`master -V`):
//! a failed step leaves no prefix behind, only its log.
//!
//! A build is named by a key over the recipe, the source tarballs and the
//! patches (their contents, in order); a second `cyrus build` with the same
//! inputs finds the prefix and does nothing. The prefix is an installed tree
//! as `make install` lays it out, for `--cyrus-prefix` (host) or `--cyrus`
//! (any, chroot builds included).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::install::{self, AptMounts, Builder, InstallError, Suite};
use super::CyrusBins;

/// The `--with-extraident` of every build; `+TAG` per patch follows it
/// (`master -V`: `cyrus-imapd 3.6.1-backupd-sim+sync-client-backoff`).
pub const IDENT: &str = "backupd-sim";
/// Bumped when the recipe (flags, steps) changes, so old builds are not reused.
const RECIPE: &str = "backupd-sim cyrus build recipe 2";
/// The metadata file in every finished prefix.
pub const BUILD_INFO: &str = ".backupd-sim-build.json";
/// Where builds for a chroot version live inside its root.
pub const CHROOT_BUILDS: &str = "/opt/backupd-sim/builds";
/// Bound of `make` (a loaded 2-core machine took 8 min for 3.6.1).
const MAKE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);
/// Bound of a command whose output is read (apt-cache, dpkg, sha256sum).
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

/// A Cyrus version `cyrus build` can build, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildTarget {
    /// Major.minor: `3.6`.
    pub version: &'static str,
    /// The Debian suite whose source package is built: `bookworm`.
    pub suite: &'static str,
    /// The `cyrus install` chroot it builds and runs in (none: the host).
    pub chroot: Option<Suite>,
    /// Whether the version still has Cyrus Backups (`--enable-backup`; gone in 3.12).
    pub backups: bool,
}

/// Every version `cyrus build` knows.
pub const TARGETS: [BuildTarget; 3] = [
    BuildTarget {
        version: "3.6",
        suite: "bookworm",
        chroot: None,
        backups: true,
    },
    BuildTarget {
        version: "3.10",
        suite: "trixie",
        chroot: Some(install::SUITES[0]),
        backups: true,
    },
    BuildTarget {
        version: "3.12",
        suite: "sid",
        chroot: Some(install::SUITES[1]),
        backups: false,
    },
];

/// The target for `3.6`, `3.6.1`, `bookworm`, `3.10`, `trixie`, ...
pub fn target_for(spec: &str) -> Option<BuildTarget> {
    TARGETS.iter().copied().find(|t| {
        t.suite == spec
            || t.version == spec
            || spec
                .strip_prefix(t.version)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// The Debian packages `./configure` and `make` need for [`configure_flags`]:
/// a compiler, SASL, OpenSSL, zlib, Jansson, ICU, SQLite (Cyrus Backups, the
/// DAV tables, sieve), libical (`dav_db.c` includes it even without httpd),
/// bison and flex (the sieve parser), xxd.
pub fn build_deps(target: BuildTarget) -> Vec<&'static str> {
    let mut deps = vec![
        "bison",
        "flex",
        "libsasl2-dev",
        "libssl-dev",
        "zlib1g-dev",
        "libjansson-dev",
        "libicu-dev",
        "libsqlite3-dev",
        "libical-dev",
        "xxd",
    ];
    if target.chroot.is_some() {
        // A minbase root has no compiler (3.10 and 3.12's configure wants C++
        // too); the Perl modules (cyradm) include crypt.h.
        deps.extend([
            "gcc",
            "g++",
            "make",
            "libc6-dev",
            "libcrypt-dev",
            "pkg-config",
            "perl",
        ]);
    }
    deps
}

/// The version tag of a patch file: its name without `.patch`/`.diff`, in
/// letters, digits, `-` and `_` (`sync-client-backoff.patch` ->
/// `sync-client-backoff`).
pub fn patch_tag(file_name: &str) -> String {
    let stem = file_name
        .strip_suffix(".patch")
        .or_else(|| file_name.strip_suffix(".diff"))
        .unwrap_or(file_name);
    stem.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Upstream `./configure` flags (besides `--prefix`): the ident with one tag
/// per patch, replication and, where it still exists, Cyrus Backups;
/// everything the harness does not run (httpd, squat, LDAP, SNMP, PCRE) is
/// off, which keeps the build short. Sieve stays on: without it `sync_client
/// -u` fails every user ("Unable to list sieve scripts").
pub fn configure_flags(target: BuildTarget, tags: &[String]) -> Vec<String> {
    let mut ident = IDENT.to_owned();
    for t in tags {
        ident.push('+');
        ident.push_str(t);
    }
    let mut f: Vec<String> = vec![format!("--with-extraident={ident}")];
    f.extend(
        [
            "--enable-replication",
            "--disable-squat",
            "--disable-pcre",
            "--without-ldap",
            "--without-snmp",
            "--with-lock=fcntl",
            "--with-cyrus-user=cyrus",
            "--with-syslogfacility=MAIL",
            "--disable-dependency-tracking",
        ]
        .map(String::from),
    );
    if target.version != "3.6" {
        f.push("--disable-pcre2".into());
    }
    if target.backups {
        f.push("--enable-backup".into());
    }
    f
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub target: BuildTarget,
    /// Applied in order with `patch -p1` after Debian's own.
    pub patches: Vec<PathBuf>,
    /// The cache (`cyrus install`'s): chroots, source downloads, host builds.
    pub cache: PathBuf,
    /// `make -j`.
    pub jobs: usize,
    /// Read the archive's index again even when a copy is cached.
    pub refresh: bool,
    /// Keep the unpacked, built source tree (else removed, on failure too).
    pub keep_work: bool,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct Built {
    /// The installed tree, as seen from the host.
    pub prefix: PathBuf,
    /// How to run it.
    pub bins: CyrusBins,
    /// `master -V`.
    pub version: String,
    /// The build's facts (also in `PREFIX/.backupd-sim-build.json`).
    pub info: BuildInfo,
    /// False when the same inputs were built before and nothing was done.
    pub built: bool,
    /// Wall time of this command.
    pub seconds: f64,
    /// The build log.
    pub log: PathBuf,
}

/// What a build was made from (`PREFIX/.backupd-sim-build.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    /// The build's key (hex): recipe, sources and patches.
    pub key: String,
    /// `3.6`.
    pub target: String,
    /// The Debian suite.
    pub suite: String,
    /// The Debian source revision whose `debian.tar` was applied, e.g.
    /// `3.6.1-4+deb12u5`; `None` when the archive had none (orig tarball only).
    pub debian_revision: Option<String>,
    /// The upstream version (the orig tarball's).
    pub upstream: String,
    /// Debian's patches applied.
    pub debian_patches: Vec<String>,
    /// The developer's patches: file name and SHA-1 of the contents, in order.
    pub patches: Vec<(String, String)>,
    /// `./configure` flags besides `--prefix`.
    pub configure: Vec<String>,
    /// The prefix as the programs see it (inside the chroot for 3.10/3.12).
    pub prefix: PathBuf,
    /// Seconds the build took (0 when reused).
    pub build_seconds: f64,
}

/// Where a target's builds go, as seen from the host, and that directory as
/// the build sees it.
fn builds_dir(target: BuildTarget, cache: &Path) -> (PathBuf, PathBuf) {
    match target.chroot {
        None => {
            let d = cache.join("builds");
            (d.clone(), d)
        }
        Some(s) => (
            install::root_of(cache, s).join(CHROOT_BUILDS.trim_start_matches('/')),
            PathBuf::from(CHROOT_BUILDS),
        ),
    }
}

/// One source revision in the index: version and `file -> sha256`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceEntry {
    pub version: String,
    pub files: Vec<(String, String)>,
}

impl SourceEntry {
    /// The upstream version: the Debian version without its revision.
    pub fn upstream(&self) -> &str {
        let v = self.version.split_once(':').map_or(&*self.version, |x| x.1);
        v.rsplit_once('-').map_or(v, |x| x.0)
    }

    fn file(&self, pred: impl Fn(&str) -> bool) -> Option<&(String, String)> {
        self.files.iter().find(|(name, _)| pred(name))
    }

    /// The orig tarball (`cyrus-imapd_3.6.1.orig.tar.gz`) and its SHA-256.
    pub fn orig(&self) -> Option<&(String, String)> {
        self.file(|n| n.contains(".orig.tar.") && !n.ends_with(".asc"))
    }

    /// The Debian tarball (`cyrus-imapd_3.6.1-4+deb12u5.debian.tar.xz`).
    pub fn debian(&self) -> Option<&(String, String)> {
        self.file(|n| n.contains(".debian.tar."))
    }
}

/// The `cyrus-imapd` entries of `apt-cache showsrc` output (`Version:` and
/// the `Checksums-Sha256:` block of each stanza).
pub fn parse_showsrc(text: &str) -> Vec<SourceEntry> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let mut version = None;
        let mut files = Vec::new();
        let mut in_sha = false;
        let mut package = None;
        for line in stanza.lines() {
            if let Some(rest) = line.strip_prefix(' ') {
                if in_sha {
                    let w: Vec<&str> = rest.split_whitespace().collect();
                    if let [sha, _size, name] = w[..] {
                        files.push((name.to_owned(), sha.to_owned()));
                    }
                }
                continue;
            }
            in_sha = line.starts_with("Checksums-Sha256:");
            if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim().to_owned());
            }
            if let Some(p) = line.strip_prefix("Package:") {
                package = Some(p.trim().to_owned());
            }
        }
        if let (Some(version), Some("cyrus-imapd")) = (version, package.as_deref()) {
            out.push(SourceEntry { version, files });
        }
    }
    out
}

/// The patch names of a quilt `series` file, with their `-pN` (default 1).
pub fn parse_series(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let name = w.next().unwrap_or_default().to_owned();
            let strip = w
                .find_map(|o| o.strip_prefix("-p").and_then(|n| n.parse().ok()))
                .unwrap_or(1);
            (name, strip)
        })
        .collect()
}

/// The builds that finished: host builds and those in each chroot.
pub fn list(cache: &Path) -> Vec<(PathBuf, BuildInfo)> {
    let mut out = Vec::new();
    for t in TARGETS {
        let (dir, _) = builds_dir(t, cache);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<(PathBuf, BuildInfo)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter_map(|p| {
                let text = fs::read_to_string(p.join(BUILD_INFO)).ok()?;
                Some((p, serde_json::from_str(&text).ok()?))
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        out.extend(found);
    }
    out
}

fn other(msg: impl Into<String>) -> InstallError {
    InstallError::Other(msg.into())
}

/// The output of a bounded command, or the step's error.
fn query(b: &Builder<'_>, step: &str, cmd: Command) -> Result<String, InstallError> {
    let out =
        super::target::run_bounded(cmd, QUERY_TIMEOUT).map_err(|e| b.fail(step, e.to_string()))?;
    if out.code != Some(0) {
        let mut log = fs::OpenOptions::new().append(true).open(&b.log).ok();
        if let Some(l) = log.as_mut() {
            let _ = writeln!(l, "\n==== {step}\n{}{}", out.stdout, out.stderr);
        }
        return Err(b.fail(
            step,
            format!(
                "exit {:?}{}",
                out.code,
                if out.timed_out { " (timed out)" } else { "" }
            ),
        ));
    }
    Ok(out.stdout)
}

fn sha256(b: &Builder<'_>, path: &Path) -> Result<String, InstallError> {
    let mut c = Command::new("sha256sum");
    c.arg(path);
    let out = query(b, &format!("sha256sum {}", path.display()), c)?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}

/// `dpkg --compare-versions a gt b`.
fn newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// apt with a private `deb-src` index under `dir` (the host's configuration
/// and lists are not touched).
struct PrivateApt {
    dir: PathBuf,
}

impl PrivateApt {
    fn new(dir: PathBuf, target: BuildTarget, keyring: &Path) -> Result<PrivateApt, InstallError> {
        let mirror = install::host_mirror().ok_or_else(|| {
            other("no Debian mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR")
        })?;
        for d in ["parts", "lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))
                .map_err(|e| other(format!("create `{}`: {e}", dir.join(d).display())))?;
        }
        let mut text = String::new();
        let suites = if target.suite == "sid" {
            "sid".to_owned()
        } else {
            format!("{0} {0}-updates", target.suite)
        };
        text.push_str(&format!(
            "Types: deb-src\nURIs: {mirror}\nSuites: {suites}\nComponents: main\nSigned-By: {}\n",
            keyring.display()
        ));
        if target.suite != "sid" {
            if let Some(sec) = install::host_security_mirror() {
                text.push_str(&format!(
                    "\nTypes: deb-src\nURIs: {sec}\nSuites: {}-security\nComponents: main\nSigned-By: {}\n",
                    target.suite,
                    keyring.display()
                ));
            }
        }
        let write = |p: PathBuf, t: &str| {
            fs::write(&p, t).map_err(|e| other(format!("write `{}`: {e}", p.display())))
        };
        write(dir.join("parts/backupd-sim-src.sources"), &text)?;
        write(dir.join("sources.list"), "")?;
        Ok(PrivateApt { dir })
    }

    fn cmd(&self, program: &str) -> Command {
        let d = &self.dir;
        let mut c = Command::new(program);
        for o in [
            format!("Dir::Etc::SourceList={}", d.join("sources.list").display()),
            format!("Dir::Etc::SourceParts={}", d.join("parts").display()),
            format!("Dir::State::Lists={}", d.join("lists").display()),
            format!("Dir::Cache={}", d.join("cache").display()),
            "Acquire::Check-Valid-Until=false".into(),
            "APT::Sandbox::User=root".into(),
        ] {
            c.arg("-o").arg(o);
        }
        c.env("LC_ALL", "C.UTF-8");
        c
    }

    fn has_index(&self) -> bool {
        fs::read_dir(self.dir.join("lists")).is_ok_and(|d| {
            d.filter_map(Result::ok)
                // apt keeps them compressed (`…_Sources.lz4`) or not.
                .any(|e| e.file_name().to_string_lossy().contains("_source_Sources"))
        })
    }
}

/// Build (or find) the target with the patches. Needs root. `progress` gets
/// one line per step with its time; the full output goes to the log.
pub fn build(opts: &BuildOptions, progress: &mut dyn FnMut(&str)) -> Result<Built, InstallError> {
    let started = Instant::now();
    if !nix::unistd::Uid::effective().is_root() {
        return Err(other(
            "building Cyrus needs root (apt-get for the build dependencies, chroot for 3.10/3.12)",
        ));
    }
    for p in &opts.patches {
        if !p.is_file() {
            return Err(other(format!("--patch `{}`: no such file", p.display())));
        }
    }
    let target = opts.target;
    let root = match target.chroot {
        None => None,
        Some(s) => {
            // The chroot the build runs in (a no-op when installed).
            let done = install::install(s, &opts.cache, progress)?;
            Some(done.root)
        }
    };
    let (builds_host, builds_inside) = builds_dir(target, &opts.cache);
    fs::create_dir_all(&builds_host)
        .map_err(|e| other(format!("create `{}`: {e}", builds_host.display())))?;
    // Named after the key once it is known; until then, after this process
    // (two builds at once do not share a log).
    let log = builds_host.join(format!(
        ".build-{}-{}.log",
        target.version,
        std::process::id()
    ));
    fs::write(
        &log,
        format!(
            "backupd-sim cyrus build {} (Debian {}), patches: {:?}\n",
            target.version, target.suite, opts.patches
        ),
    )
    .map_err(|e| other(format!("write `{}`: {e}", log.display())))?;
    let mut b = Builder {
        log,
        interrupted: install::interrupt_flag()?,
        progress,
    };

    // 1. The index (private deb-src lists), read from the archive once.
    let keyring = root
        .as_ref()
        .map(|r| r.join("usr/share/keyrings/debian-archive-keyring.gpg"))
        .filter(|k| k.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"));
    let apt = PrivateApt::new(
        opts.cache.join("apt-src").join(target.suite),
        target,
        &keyring,
    )?;
    if opts.refresh || !apt.has_index() {
        let mut c = apt.cmd("apt-get");
        c.arg("update");
        b.run(
            &format!("read the deb-src index of Debian {}", target.suite),
            &mut c,
        )?;
    }
    let mut c = apt.cmd("apt-cache");
    c.args(["showsrc", "cyrus-imapd"]);
    let text = query(&b, "apt-cache showsrc cyrus-imapd", c)?;
    let mut entries: Vec<SourceEntry> = parse_showsrc(&text)
        .into_iter()
        .filter(|e| {
            e.upstream()
                .strip_prefix(target.version)
                .is_some_and(|r| r.starts_with('.'))
        })
        .collect();
    entries.sort_by(|a, b| {
        if newer(&a.version, &b.version) {
            std::cmp::Ordering::Less
        } else if newer(&b.version, &a.version) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    });
    entries.dedup_by(|a, b| a.version == b.version);
    if entries.is_empty() {
        return Err(b.fail(
            "choose the source",
            format!(
                "Debian {}'s index has no cyrus-imapd {}.x source",
                target.suite, target.version
            ),
        ));
    }
    (b.progress)(&format!(
        "Debian {} has cyrus-imapd {}",
        target.suite,
        entries
            .iter()
            .map(|e| e.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 2. The files: cached ones are checked against the index, missing ones
    // downloaded, newest revision first, until the newest has both tarballs.
    let sources = opts.cache.join("sources").join(target.suite);
    fs::create_dir_all(&sources)
        .map_err(|e| other(format!("create `{}`: {e}", sources.display())))?;
    let present = |b: &Builder<'_>, f: Option<&(String, String)>| -> Result<bool, InstallError> {
        let Some((name, sha)) = f else {
            return Ok(false);
        };
        let p = sources.join(name);
        Ok(p.is_file() && sha256(b, &p)? == *sha)
    };
    for e in &entries {
        if present(&b, e.debian())? && present(&b, e.orig())? {
            break;
        }
        let mut c = apt.cmd("apt-get");
        c.args(["source", "--download-only"])
            .arg(format!("cyrus-imapd={}", e.version))
            .current_dir(&sources);
        match b.run(
            &format!("download the source package {}", e.version),
            &mut c,
        ) {
            Ok(()) => {}
            Err(InstallError::Interrupted(s)) => return Err(InstallError::Interrupted(s)),
            Err(_) => (b.progress)(&format!(
                "  some files of {} are not in the archive (see the log); trying older revisions",
                e.version
            )),
        }
    }
    let mut chosen: Option<(&SourceEntry, bool)> = None;
    for e in &entries {
        if present(&b, e.orig())? {
            let with_debian = present(&b, e.debian())?;
            if with_debian {
                chosen = Some((e, true));
                break;
            }
            chosen.get_or_insert((e, false));
        }
    }
    let Some((entry, with_debian)) = chosen else {
        return Err(b.fail(
            "download the source package",
            format!(
                "no revision's orig tarball could be downloaded ({})",
                entries
                    .iter()
                    .map(|e| e.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    };
    let (orig_name, orig_sha) = entry.orig().cloned().unwrap_or_default();
    let debian = if with_debian {
        entry.debian().cloned()
    } else {
        (b.progress)(&format!(
            "WARNING: no revision's debian.tar is in the archive: building the orig tarball of {} without Debian's patches",
            entry.upstream()
        ));
        None
    };
    (b.progress)(&format!(
        "source: {orig_name}{} (checked against the index's SHA-256)",
        debian
            .as_ref()
            .map(|(n, _)| format!(" + {n}"))
            .unwrap_or_default()
    ));

    // 3. The key: recipe, sources, flags, patches.
    let tags: Vec<String> = opts
        .patches
        .iter()
        .map(|p| {
            patch_tag(
                &p.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    let flags = configure_flags(target, &tags);
    let mut h = Sha1::new();
    h.update(RECIPE.as_bytes());
    h.update(target.suite.as_bytes());
    h.update(orig_sha.as_bytes());
    h.update(debian.as_ref().map_or("", |d| d.1.as_str()).as_bytes());
    h.update(flags.join(" ").as_bytes());
    let mut patches = Vec::new();
    for p in &opts.patches {
        let bytes =
            fs::read(p).map_err(|e| other(format!("read --patch `{}`: {e}", p.display())))?;
        let sha = hex::encode(Sha1::digest(&bytes));
        h.update(sha.as_bytes());
        let name = p.file_name().map_or_else(
            || p.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        patches.push((name, sha, bytes));
    }
    let key = hex::encode(h.finalize());
    let short = &key[..12];
    let upstream = entry.upstream().to_owned();
    let name = format!("cyrus-{upstream}-{short}");
    let prefix_host = builds_host.join(&name);
    let prefix_inside = builds_inside.join(&name);
    let final_log = builds_host.join(format!("{name}.log"));

    if prefix_host.join(BUILD_INFO).is_file() {
        let info: BuildInfo = fs::read_to_string(prefix_host.join(BUILD_INFO))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .ok_or_else(|| {
                other(format!(
                    "`{}` is unreadable",
                    prefix_host.join(BUILD_INFO).display()
                ))
            })?;
        let bins = CyrusBins::prefix_anywhere(&prefix_host).map_err(|e| {
            other(format!(
                "the build in `{}` is broken: {e}",
                prefix_host.display()
            ))
        })?;
        let _ = fs::remove_file(&b.log);
        return Ok(Built {
            prefix: prefix_host,
            version: bins.version(),
            bins,
            info,
            built: false,
            seconds: started.elapsed().as_secs_f64(),
            log: final_log,
        });
    }
    // A half-moved prefix cannot exist (one rename); a stale one without
    // metadata is from an older recipe's crash: never reuse it.
    if prefix_host.exists() {
        fs::remove_dir_all(&prefix_host).map_err(|e| {
            other(format!(
                "remove the unfinished `{}`: {e}",
                prefix_host.display()
            ))
        })?;
    }
    fs::rename(&b.log, &final_log).map_err(|e| other(format!("rename the log: {e}")))?;
    b.log = final_log.clone();
    (b.progress)(&format!("building {name} (log: {})", final_log.display()));

    let work_host = builds_host.join(format!(".work-{short}"));
    let work_inside = builds_inside.join(format!(".work-{short}"));
    if work_host.exists() {
        fs::remove_dir_all(&work_host)
            .map_err(|e| other(format!("remove `{}`: {e}", work_host.display())))?;
    }
    let build_started = Instant::now();
    let ctx = Ctx {
        target,
        root: root.as_deref(),
        sources: &sources,
        orig: &orig_name,
        debian: debian.as_ref().map(|d| d.0.as_str()),
        patches: &patches,
        work_host: &work_host,
        work_inside: &work_inside,
        prefix_inside: &prefix_inside,
        flags: &flags,
        jobs: opts.jobs.max(1),
    };
    let result = ctx.run(&mut b);
    let finished = result.and_then(|debian_patches| {
        // 4. Into place in one rename, then checked.
        let staged = work_host
            .join("stage")
            .join(prefix_inside.strip_prefix("/").unwrap_or(&prefix_inside));
        let info = BuildInfo {
            key: key.clone(),
            target: target.version.into(),
            suite: target.suite.into(),
            debian_revision: debian.as_ref().map(|_| entry.version.clone()),
            upstream: upstream.clone(),
            debian_patches,
            patches: patches
                .iter()
                .map(|(n, s, _)| (n.clone(), s.clone()))
                .collect(),
            configure: flags.clone(),
            prefix: prefix_inside.clone(),
            build_seconds: build_started.elapsed().as_secs_f64(),
        };
        let json = serde_json::to_string_pretty(&info).map_err(|e| other(e.to_string()))?;
        fs::write(staged.join(BUILD_INFO), json + "\n").map_err(|e| {
            b.fail(
                "make install",
                format!("no installed tree at `{}`: {e}", staged.display()),
            )
        })?;
        fs::rename(&staged, &prefix_host).map_err(|e| {
            b.fail(
                "move into place",
                format!("rename to `{}`: {e}", prefix_host.display()),
            )
        })?;
        let checked = CyrusBins::prefix_anywhere(&prefix_host)
            .map_err(|e| e.to_string())
            .and_then(|bins| {
                let v = bins.version();
                if v.starts_with(&format!("{}.", target.version)) {
                    Ok((bins, v))
                } else {
                    Err(format!("`master -V` says {v}, expected {}", target.version))
                }
            });
        match checked {
            Ok((bins, version)) => Ok((bins, version, info)),
            Err(e) => {
                let _ = fs::remove_dir_all(&prefix_host);
                Err(b.fail("check the installed tree", e))
            }
        }
    });
    if opts.keep_work {
        (b.progress)(&format!("source tree kept in {}", work_host.display()));
    } else {
        let _ = fs::remove_dir_all(&work_host);
    }
    let (bins, version, info) = finished?;
    Ok(Built {
        prefix: prefix_host,
        bins,
        version,
        info,
        built: true,
        seconds: started.elapsed().as_secs_f64(),
        log: final_log,
    })
}

/// Headers a reduced build needs where the full one got them indirectly:
/// (file, identifier it uses, header). Debian 12's CVE-2026-47082 patch makes
/// `imap/lmtp_sieve.c` use `ACL_INSERT`, which only `WITH_DAV`'s headers
/// bring in; with httpd off, `make` fails without the include.
const INCLUDE_FIXES: [(&str, &str, &str); 1] = [("imap/lmtp_sieve.c", "ACL_INSERT", "acl.h")];

/// Add `#include "HEADER"` before the file's first quoted include when the
/// file uses `ident` and includes no `HEADER`; whether it changed the file.
fn add_missing_include(path: &Path, ident: &str, header: &str) -> Result<bool, InstallError> {
    let Ok(text) = fs::read_to_string(path) else {
        return Ok(false);
    };
    let include = format!("#include \"{header}\"");
    if !text.contains(ident) || text.contains(&include) {
        return Ok(false);
    }
    let Some(at) = text.find("\n#include \"") else {
        return Ok(false);
    };
    let fixed = format!("{}\n{include}{}", &text[..at], &text[at..]);
    fs::write(path, fixed).map_err(|e| other(format!("write `{}`: {e}", path.display())))?;
    Ok(true)
}

/// The steps from unpacking to `make install`.
struct Ctx<'a> {
    target: BuildTarget,
    root: Option<&'a Path>,
    sources: &'a Path,
    orig: &'a str,
    debian: Option<&'a str>,
    patches: &'a [(String, String, Vec<u8>)],
    work_host: &'a Path,
    work_inside: &'a Path,
    prefix_inside: &'a Path,
    flags: &'a [String],
    jobs: usize,
}

impl Ctx<'_> {
    /// A command run in the build's environment (the chroot for 3.10/3.12)
    /// in the directory `dir` (as the build sees it), at `nice -n 19`.
    fn cmd(&self, dir: &Path, args: &[String]) -> Command {
        let mut c = match self.root {
            Some(root) => {
                let mut c = Command::new("chroot");
                c.arg(root)
                    .arg("/usr/bin/env")
                    .arg(format!("--chdir={}", dir.display()));
                c
            }
            None => {
                let mut c = Command::new("env");
                c.arg(format!("--chdir={}", dir.display()));
                c
            }
        };
        c.args(["nice", "-n", "19"])
            .args(args)
            .env("LC_ALL", "C.UTF-8");
        c
    }

    /// Returns Debian's patches applied.
    fn run(&self, b: &mut Builder<'_>) -> Result<Vec<String>, InstallError> {
        let mkdir = |p: &Path| {
            fs::create_dir_all(p).map_err(|e| other(format!("create `{}`: {e}", p.display())))
        };
        let src_parent = self.work_host.join("src");
        mkdir(&src_parent)?;
        mkdir(&self.work_host.join("stage"))?;
        b.run(
            &format!("unpack {}", self.orig),
            Command::new("tar")
                .arg("-xf")
                .arg(self.sources.join(self.orig))
                .arg("-C")
                .arg(&src_parent),
        )?;
        let dirs: Vec<String> = fs::read_dir(&src_parent)
            .map_err(|e| other(format!("read `{}`: {e}", src_parent.display())))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let [src_name] = &dirs[..] else {
            return Err(b.fail(
                &format!("unpack {}", self.orig),
                format!("expected one top directory, found {dirs:?}"),
            ));
        };
        let src_host = src_parent.join(src_name);
        let src_inside = self.work_inside.join("src").join(src_name);
        let mut debian_patches = Vec::new();
        if let Some(deb) = self.debian {
            b.run(
                &format!("unpack {deb}"),
                Command::new("tar")
                    .arg("-xf")
                    .arg(self.sources.join(deb))
                    .arg("-C")
                    .arg(&src_host),
            )?;
            let series =
                fs::read_to_string(src_host.join("debian/patches/series")).unwrap_or_default();
            for (name, strip) in parse_series(&series) {
                b.run_quiet(
                    &format!("apply Debian patch {name}"),
                    Command::new("patch")
                        .arg(format!("-p{strip}"))
                        .args(["--batch", "--forward", "--no-backup-if-mismatch", "-d"])
                        .arg(&src_host)
                        .arg("-i")
                        .arg(src_host.join("debian/patches").join(&name)),
                )?;
                debian_patches.push(name);
            }
            (b.progress)(&format!(
                "{} Debian patches applied (debian/patches/series)",
                debian_patches.len()
            ));
        }
        for (file, uses, header) in INCLUDE_FIXES {
            if add_missing_include(&src_host.join(file), uses, header)? {
                let line = format!(
                    "recipe fix: {file} uses {uses} without including {header} (it came through the httpd headers, which this build leaves out): #include added"
                );
                (b.progress)(&line);
                if let Ok(mut l) = fs::OpenOptions::new().append(true).open(&b.log) {
                    let _ = writeln!(l, "\n==== {line}");
                }
            }
        }
        let ours = self.work_host.join("patches");
        mkdir(&ours)?;
        for (i, (name, _, bytes)) in self.patches.iter().enumerate() {
            let copy = ours.join(format!("{:02}-{name}", i + 1));
            fs::write(&copy, bytes)
                .map_err(|e| other(format!("write `{}`: {e}", copy.display())))?;
            b.run(
                &format!("apply patch {name}"),
                Command::new("patch")
                    .args([
                        "-p1",
                        "--batch",
                        "--forward",
                        "--no-backup-if-mismatch",
                        "-d",
                    ])
                    .arg(&src_host)
                    .arg("-i")
                    .arg(&copy),
            )?;
        }
        self.install_deps(b)?;
        // Mounted for the build in a chroot (undone on drop, on error and
        // interrupt too).
        let _mounts = match self.root {
            Some(r) => Some(AptMounts::mount(r)?),
            None => None,
        };
        let mut configure = vec![
            "./configure".to_owned(),
            format!("--prefix={}", self.prefix_inside.display()),
        ];
        configure.extend(self.flags.iter().cloned());
        b.run("configure", &mut self.cmd(&src_inside, &configure))?;
        b.run_for(
            &format!("make -j{}", self.jobs),
            &mut self.cmd(&src_inside, &["make".into(), format!("-j{}", self.jobs)]),
            MAKE_TIMEOUT,
        )?;
        b.run(
            "make install",
            &mut self.cmd(
                &src_inside,
                &[
                    "make".into(),
                    "install".into(),
                    format!("DESTDIR={}", self.work_inside.join("stage").display()),
                ],
            ),
        )?;
        Ok(debian_patches)
    }

    fn install_deps(&self, b: &mut Builder<'_>) -> Result<(), InstallError> {
        let deps = build_deps(self.target);
        match self.root {
            None => {
                // Only what is missing: naming an installed package would upgrade it.
                let missing: Vec<&str> = deps
                    .iter()
                    .copied()
                    .filter(|p| {
                        !Command::new("dpkg-query")
                            .args(["-W", "-f=${Status}", p])
                            .output()
                            .is_ok_and(|o| {
                                String::from_utf8_lossy(&o.stdout).contains("install ok installed")
                            })
                    })
                    .collect();
                if missing.is_empty() {
                    (b.progress)("build dependencies: all installed");
                    return Ok(());
                }
                let step = format!("apt-get install {} (host)", missing.join(" "));
                let install = || {
                    let mut c = Command::new("apt-get");
                    c.env("DEBIAN_FRONTEND", "noninteractive")
                        .args(["install", "-y", "--no-install-recommends"])
                        .args(&missing);
                    c
                };
                if b.run(&step, &mut install()).is_err() && !b.interrupted() {
                    b.run(
                        "apt-get update (host)",
                        Command::new("apt-get").arg("update"),
                    )?;
                    b.run(&step, &mut install())?;
                }
                Ok(())
            }
            Some(root) => {
                let _mounts = AptMounts::mount(root)?;
                let apt = |args: &[&str]| {
                    let mut c = Command::new("chroot");
                    c.arg(root)
                        .arg("apt-get")
                        .arg("-o")
                        .arg("Acquire::Check-Valid-Until=false")
                        .args(args)
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .env("LC_ALL", "C.UTF-8");
                    c
                };
                let mut args = vec!["install", "-y", "--no-install-recommends"];
                args.extend(&deps);
                let step = "apt-get install the build dependencies (chroot)";
                if b.run(step, &mut apt(&args)).is_err() && !b.interrupted() {
                    b.run("apt-get update (chroot)", &mut apt(&["update"]))?;
                    b.run(step, &mut apt(&args))?;
                }
                b.run("apt-get clean (chroot)", &mut apt(&["clean"]))?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn showsrc_entries_and_their_tarballs() {
        let text = "Package: cyrus-imapd\nBinary: cyrus-common\nVersion: 3.6.1-4+deb12u4\nFiles:\n d6ae 5315 cyrus-imapd_3.6.1-4+deb12u4.dsc\nChecksums-Sha256:\n 1111 5315 cyrus-imapd_3.6.1-4+deb12u4.dsc\n 32d6 13724573 cyrus-imapd_3.6.1.orig.tar.gz\n 9999 488 cyrus-imapd_3.6.1.orig.tar.gz.asc\n b670 111360 cyrus-imapd_3.6.1-4+deb12u4.debian.tar.xz\nHomepage: x\n\nPackage: other\nVersion: 1-1\n\nPackage: cyrus-imapd\nVersion: 1:3.12.4-1\nChecksums-Sha256:\n abcd 1 cyrus-imapd_3.12.4.orig.tar.xz\n";
        let e = parse_showsrc(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].version, "3.6.1-4+deb12u4");
        assert_eq!(e[0].upstream(), "3.6.1");
        assert_eq!(
            e[0].orig(),
            Some(&(
                "cyrus-imapd_3.6.1.orig.tar.gz".to_owned(),
                "32d6".to_owned()
            ))
        );
        assert_eq!(e[0].debian().map(|d| d.1.as_str()), Some("b670"));
        assert_eq!(e[1].upstream(), "3.12.4");
        assert_eq!(e[1].debian(), None);
    }

    #[test]
    fn quilt_series_names_and_strip_levels() {
        let s =
            "0001-a.patch\n# comment\n#0019-off.patch\n\n0002-b.patch -p0\nCVE-x.patch  # why\n";
        assert_eq!(
            parse_series(s),
            vec![
                ("0001-a.patch".to_owned(), 1),
                ("0002-b.patch".to_owned(), 0),
                ("CVE-x.patch".to_owned(), 1)
            ]
        );
    }

    #[test]
    fn a_missing_include_is_added_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("x.c");
        fs::write(
            &f,
            "#include <config.h>\n#include \"annotate.h\"\nint a = ACL_INSERT;\n",
        )
        .expect("write");
        assert!(add_missing_include(&f, "ACL_INSERT", "acl.h").expect("fix"));
        let t = fs::read_to_string(&f).expect("read");
        assert_eq!(t, "#include <config.h>\n#include \"acl.h\"\n#include \"annotate.h\"\nint a = ACL_INSERT;\n");
        assert!(!add_missing_include(&f, "ACL_INSERT", "acl.h").expect("again"));
        fs::write(&f, "#include \"annotate.h\"\n").expect("write");
        assert!(!add_missing_include(&f, "ACL_INSERT", "acl.h").expect("unused"));
    }

    #[test]
    fn targets_by_version_or_suite() {
        assert_eq!(target_for("3.6").map(|t| t.suite), Some("bookworm"));
        assert_eq!(target_for("3.6.1").map(|t| t.suite), Some("bookworm"));
        assert_eq!(target_for("trixie").map(|t| t.version), Some("3.10"));
        assert_eq!(target_for("3.12").map(|t| t.backups), Some(false));
        assert_eq!(target_for("3.1"), None);
        assert!(configure_flags(target_for("3.12").expect("3.12"), &[])
            .iter()
            .all(|f| f != "--enable-backup"));
        let f = configure_flags(target_for("3.6").expect("3.6"), &["a".into(), "b-c".into()]);
        assert!(f.contains(&"--enable-backup".to_owned()));
        assert_eq!(f[0], "--with-extraident=backupd-sim+a+b-c");
        assert_eq!(
            patch_tag("sync-client-backoff.patch"),
            "sync-client-backoff"
        );
        assert_eq!(patch_tag("fix it.diff"), "fix-it");
    }
}
