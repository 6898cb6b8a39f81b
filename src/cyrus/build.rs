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
//!
//! This file owns [`build`], the order of the steps and the move into place;
//! the pieces: `build/recipe.rs` (targets, dependencies, flags, source
//! fixes), `build/source.rs` (the private index, download and checks),
//! `build/key.rs` (the build's key, [`BuildInfo`], where builds live),
//! `build/make.rs` (unpack, patch, `configure`, `make`, `make install`).

mod key;
mod make;
mod recipe;
mod source;

use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use super::install::{self, Builder, InstallError};
use super::CyrusBins;

pub use key::{list, BuildInfo, BUILD_INFO, CHROOT_BUILDS};
pub use recipe::{build_deps, configure_flags, patch_tag, target_for, BuildTarget, IDENT, TARGETS};
pub use source::{parse_series, parse_showsrc, SourceEntry};

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

fn other(msg: impl Into<String>) -> InstallError {
    InstallError::Other(msg.into())
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
    let (builds_host, builds_inside) = key::builds_dir(target, &opts.cache);
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

    // 1 and 2. The index and the source files.
    let source::Source {
        dir: sources,
        entry,
        orig: (orig_name, orig_sha),
        debian,
    } = source::fetch(&opts.cache, opts.refresh, target, root.as_deref(), &mut b)?;

    // 3. The key: recipe, sources, flags, patches.
    let key::Key {
        key,
        flags,
        patches,
    } = key::compute(target, &orig_sha, debian.as_ref(), &opts.patches)?;
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
    let ctx = make::Ctx {
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
