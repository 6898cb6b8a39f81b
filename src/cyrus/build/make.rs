//! The build itself, from unpacking to `make install` into a staging
//! directory: Debian's patch series, the recipe's source fixes, the
//! developer's patches, the build dependencies (host or chroot), then
//! `./configure`, `make` and `make install`, each at `nice -n 19` in the
//! build's environment (the chroot for 3.10/3.12).

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::super::install::{chroot_apt, AptMounts, Builder, InstallError};
use super::recipe::{add_missing_include, build_deps, INCLUDE_FIXES};
use super::source::parse_series;
use super::{other, BuildTarget};

/// Bound of `make` (a loaded 2-core machine took 8 min for 3.6.1).
const MAKE_TIMEOUT: Duration = Duration::from_secs(3 * 3600);

/// The steps from unpacking to `make install`.
pub(super) struct Ctx<'a> {
    pub(super) target: BuildTarget,
    pub(super) root: Option<&'a Path>,
    pub(super) sources: &'a Path,
    pub(super) orig: &'a str,
    pub(super) debian: Option<&'a str>,
    pub(super) patches: &'a [(String, String, Vec<u8>)],
    pub(super) work_host: &'a Path,
    pub(super) work_inside: &'a Path,
    pub(super) prefix_inside: &'a Path,
    pub(super) flags: &'a [String],
    pub(super) jobs: usize,
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
    pub(super) fn run(&self, b: &mut Builder<'_>) -> Result<Vec<String>, InstallError> {
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
                let apt = |args: &[&str]| chroot_apt(root, args);
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
