//! Fetching the source: a private `deb-src` index of the target's suite
//! (the host's apt configuration untouched), the newest revision whose
//! files the archive still has, each file checked against the index's
//! SHA-256; and the parsers of `apt-cache showsrc` and quilt's `series`.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::super::install::{self, Builder, InstallError};
use super::{other, BuildTarget};

/// Bound of a command whose output is read (apt-cache, dpkg, sha256sum).
const QUERY_TIMEOUT: Duration = Duration::from_secs(300);

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

/// The output of a bounded command, or the step's error.
fn query(b: &Builder<'_>, step: &str, cmd: Command) -> Result<String, InstallError> {
    let out = super::super::tool::run_bounded(cmd, QUERY_TIMEOUT)
        .map_err(|e| b.fail(step, e.to_string()))?;
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

/// The source a build is made from, downloaded and checked.
pub(super) struct Source {
    /// The directory holding the downloaded files (`CACHE/sources/SUITE`).
    pub(super) dir: PathBuf,
    /// The revision chosen.
    pub(super) entry: SourceEntry,
    /// The orig tarball's file name and SHA-256.
    pub(super) orig: (String, String),
    /// The `debian.tar`'s, when the archive still had one for a revision
    /// with the orig tarball.
    pub(super) debian: Option<(String, String)>,
}

/// Steps 1 and 2 of a build: read the index (private deb-src lists, from the
/// archive once, or again with `refresh`), then the files: cached ones are
/// checked against the index, missing ones downloaded, newest revision
/// first, until the newest has both tarballs. `root` is the chroot whose
/// keyring checks the index (the host's when `None`).
pub(super) fn fetch(
    cache: &Path,
    refresh: bool,
    target: BuildTarget,
    root: Option<&Path>,
    b: &mut Builder<'_>,
) -> Result<Source, InstallError> {
    // 1. The index (private deb-src lists), read from the archive once.
    let keyring = root
        .as_ref()
        .map(|r| r.join("usr/share/keyrings/debian-archive-keyring.gpg"))
        .filter(|k| k.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/share/keyrings/debian-archive-keyring.gpg"));
    let apt = PrivateApt::new(cache.join("apt-src").join(target.suite), target, &keyring)?;
    if refresh || !apt.has_index() {
        let mut c = apt.cmd("apt-get");
        c.arg("update");
        b.run(
            &format!("read the deb-src index of Debian {}", target.suite),
            &mut c,
        )?;
    }
    let mut c = apt.cmd("apt-cache");
    c.args(["showsrc", "cyrus-imapd"]);
    let text = query(b, "apt-cache showsrc cyrus-imapd", c)?;
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
    let sources = cache.join("sources").join(target.suite);
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
        if present(b, e.debian())? && present(b, e.orig())? {
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
        if present(b, e.orig())? {
            let with_debian = present(b, e.debian())?;
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
    Ok(Source {
        dir: sources,
        entry: entry.clone(),
        orig: (orig_name, orig_sha),
        debian,
    })
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
}
