//! The recipe of a build: the versions `cyrus build` knows ([`TARGETS`]),
//! the build dependencies, the `./configure` flags with one ident tag per
//! patch, and the source fixes a reduced build needs ([`add_missing_include`]).

use std::fs;
use std::path::Path;

use super::super::install::{self, InstallError, Suite};
use super::other;

/// The `--with-extraident` of every build; `+TAG` per patch follows it
/// (`master -V`: `cyrus-imapd 3.6.1-backupd-sim+sync-client-backoff`).
pub const IDENT: &str = "backupd-sim";

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

/// Headers a reduced build needs where the full one got them indirectly:
/// (file, identifier it uses, header). Debian 12's CVE-2026-47082 patch makes
/// `imap/lmtp_sieve.c` use `ACL_INSERT`, which only `WITH_DAV`'s headers
/// bring in; with httpd off, `make` fails without the include.
pub(super) const INCLUDE_FIXES: [(&str, &str, &str); 1] =
    [("imap/lmtp_sieve.c", "ACL_INSERT", "acl.h")];

/// Add `#include "HEADER"` before the file's first quoted include when the
/// file uses `ident` and includes no `HEADER`; whether it changed the file.
pub(super) fn add_missing_include(
    path: &Path,
    ident: &str,
    header: &str,
) -> Result<bool, InstallError> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
