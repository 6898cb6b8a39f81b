//! The scenario suite and the known-deviations file, built into the binary
//! (`build.rs`), so an installed `backupd-sim` runs the bundled suite from any
//! directory: when `./scenarios` does not exist, [`extract`] writes them to a
//! cache directory named by their content hash and the runner uses that.

use std::io;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// The bundled scenario files (`scenarios/…`), without snapshots.
pub fn scenario_count() -> usize {
    FILES
        .iter()
        .filter(|(p, _)| p.starts_with("scenarios/") && p.ends_with(".toml"))
        .count()
}

/// A short hash of every bundled path and content (FNV-1a, 64 bits).
fn content_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (path, text) in FILES {
        for b in path.bytes().chain([0]).chain(text.bytes()).chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Where [`extract`] writes: `$BACKUPD_SIM_BUNDLE_DIR`, else
/// `$XDG_CACHE_HOME/backupd-sim`, else `$HOME/.cache/backupd-sim`, else the
/// system temp dir; then `bundle-<version>-<hash>`.
pub fn bundle_dir() -> PathBuf {
    let base = std::env::var_os("BACKUPD_SIM_BUNDLE_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("backupd-sim"))
        })
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache/backupd-sim")))
        .unwrap_or_else(|| std::env::temp_dir().join("backupd-sim"));
    base.join(format!(
        "bundle-{}-{}",
        env!("CARGO_PKG_VERSION"),
        content_hash()
    ))
}

/// Write the bundled files under [`bundle_dir`] (once: an existing complete
/// copy is reused; the name changes with the content) and return that
/// directory; `DIR/scenarios` is the suite, `DIR/fixtures/deviations.toml`
/// the deviations file.
pub fn extract() -> io::Result<PathBuf> {
    let dir = bundle_dir();
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(dir);
    }
    // Written beside, then renamed: a concurrent or interrupted run never
    // sees half a copy.
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new()
        .prefix(".bundle-")
        .tempdir_in(parent)?;
    for (path, text) in FILES {
        let p = tmp.path().join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&p, text)?;
    }
    std::fs::write(tmp.path().join(".complete"), "")?;
    // Sandboxes are owned by the cyrus user, but scenario files are only read
    // by backupd-sim itself; keep the tree readable anyway.
    let tmp = tmp.keep();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    match std::fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        // Another process finished first: use its copy.
        Err(_) if done.exists() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// The paths to run: `paths` unless they are the default `scenarios` and no
/// such directory exists here; then the bundled suite, extracted, with a line
/// on stderr saying so.
pub fn scenario_paths(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    if paths != [PathBuf::from("scenarios")] || Path::new("scenarios").exists() {
        return Ok(paths.to_vec());
    }
    let dir = extract()?;
    eprintln!(
        "backupd-sim: no ./scenarios here; using the {} bundled scenarios in {}",
        scenario_count(),
        dir.join("scenarios").display()
    );
    Ok(vec![dir.join("scenarios")])
}

/// The deviations file: `path` unless it is the default
/// `fixtures/deviations.toml` and that does not exist here; then the bundled one.
pub fn deviations_path(path: &Path) -> io::Result<PathBuf> {
    if path != Path::new("fixtures/deviations.toml") || path.exists() {
        return Ok(path.to_owned());
    }
    Ok(extract()?.join("fixtures/deviations.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_is_bundled_with_its_snapshots_and_deviations() {
        assert!(scenario_count() >= 20, "{}", scenario_count());
        assert!(FILES.iter().any(|(p, _)| p.ends_with(".snap")));
        assert!(FILES.iter().any(|(p, _)| *p == "fixtures/deviations.toml"));
        assert!(FILES.iter().all(|(p, _)| !p.contains("regressions")));
        // Exactly the checkout's files, byte for byte.
        for (path, text) in FILES {
            let here = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
                .expect("file");
            assert_eq!(&here, text, "{path}");
        }
    }
}
