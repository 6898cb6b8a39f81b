//! The mounts a chroot needs while apt runs (`/proc`, `/dev`, `/dev/pts`),
//! undone on drop whatever happened, the read-out of what is still mounted
//! under a root, and apt-get run inside one.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::InstallError;

/// `apt-get ARGS` inside the chroot at `root`, non-interactive (mount
/// [`AptMounts`] first). A frozen mirror's InRelease may be past its
/// Valid-Until, so that check is off.
pub(crate) fn chroot_apt(root: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root)
        .arg("apt-get")
        .arg("-o")
        .arg("Acquire::Check-Valid-Until=false")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8");
    c
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
