//! What names a build and where finished builds live: the key over the
//! recipe, the source tarballs and the patches (their contents, in order),
//! the metadata file in every finished prefix ([`BuildInfo`]), the builds
//! directory of each target (host or inside its chroot), and the list of
//! finished builds.

use std::fs;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::super::install::{self, InstallError};
use super::recipe::{configure_flags, patch_tag};
use super::{other, BuildTarget, TARGETS};

/// Bumped when the recipe (flags, steps) changes, so old builds are not reused.
const RECIPE: &str = "backupd-sim cyrus build recipe 2";
/// The metadata file in every finished prefix.
pub const BUILD_INFO: &str = ".backupd-sim-build.json";
/// Where builds for a chroot version live inside its root.
pub const CHROOT_BUILDS: &str = "/opt/backupd-sim/builds";

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
pub(super) fn builds_dir(target: BuildTarget, cache: &Path) -> (PathBuf, PathBuf) {
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

/// A build's name and what it hashed: the key (hex), the `./configure`
/// flags, and each patch as (file name, SHA-1 hex, contents).
pub(super) struct Key {
    pub(super) key: String,
    pub(super) flags: Vec<String>,
    pub(super) patches: Vec<(String, String, Vec<u8>)>,
}

/// Step 3 of a build: the key over the recipe, the sources (the orig
/// tarball's SHA-256 and the `debian.tar`'s, if any), the flags and the
/// patches' contents, in order.
pub(super) fn compute(
    target: BuildTarget,
    orig_sha: &str,
    debian: Option<&(String, String)>,
    patch_files: &[PathBuf],
) -> Result<Key, InstallError> {
    // 3. The key: recipe, sources, flags, patches.
    let tags: Vec<String> = patch_files
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
    h.update(debian.map_or("", |d| d.1.as_str()).as_bytes());
    h.update(flags.join(" ").as_bytes());
    let mut patches = Vec::new();
    for p in patch_files {
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
    Ok(Key {
        key,
        flags,
        patches,
    })
}
