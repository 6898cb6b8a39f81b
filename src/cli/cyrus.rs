//! `backupd-sim cyrus install|build|list`: Cyrus installations in Debian
//! chroots, and Cyrus built from Debian's source package with patches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct CyrusArgs {
    /// Where the chroots live (default: $BACKUPD_SIM_CYRUS_CACHE, else /var/cache/backupd-sim/cyrus).
    #[arg(long, value_name = "DIR", global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    op: CyrusOp,
}

#[derive(Subcommand)]
pub enum CyrusOp {
    /// Build the chroot of each VERSION (3.10: Debian trixie, 3.12: sid) unless
    /// it is complete already. Needs root and the host's Debian mirror.
    Install {
        /// 3.10, 3.12 (or trixie, sid).
        #[arg(required = true)]
        versions: Vec<String>,
    },
    /// Build Cyrus from Debian's own source package with your patches, into a
    /// cached prefix laid out as `make install` does (use it with
    /// --cyrus-prefix or --cyrus). 3.6 builds on the host (Debian 12), 3.10
    /// and 3.12 inside their `cyrus install` chroot. The same sources and
    /// patches reuse the build. Needs root and the Debian archive.
    Build {
        /// 3.6 (default), 3.10 or 3.12.
        #[arg(default_value = "3.6")]
        version: String,
        /// A patch applied with `patch -p1` after Debian's (repeatable, in order).
        #[arg(long, value_name = "FILE")]
        patch: Vec<PathBuf>,
        /// `make -j` (default: the number of CPUs).
        #[arg(short = 'j', long)]
        jobs: Option<usize>,
        /// Read the archive's deb-src index again (else a cached copy is used).
        #[arg(long)]
        refresh: bool,
        /// Keep the unpacked and built source tree (else removed).
        #[arg(long)]
        keep_work: bool,
        /// Print only the prefix on stdout (progress stays on stderr), for scripts.
        #[arg(long)]
        print_prefix: bool,
    },
    /// Show the host's Cyrus, every chroot and every `cyrus build`: version, location, size.
    List,
}

/// `backupd-sim cyrus install|list`.
pub fn run(args: CyrusArgs) -> Result<ExitCode> {
    use backupd_sim::cyrus::install;
    let cache = args.cache.unwrap_or_else(install::cache_dir);
    match args.op {
        CyrusOp::Install { versions } => {
            let mut suites = Vec::new();
            for v in &versions {
                match install::suite_for(v) {
                    Some(s) => suites.push(s),
                    None => {
                        let known: Vec<&str> = install::SUITES.iter().map(|s| s.version).collect();
                        eprintln!(
                            "backupd-sim: cyrus install `{v}`: expected one of {} (3.6 is the host's: `apt-get install cyrus-common cyrus-imapd cyrus-replication`)",
                            known.join(", ")
                        );
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            for s in suites {
                let started = std::time::Instant::now();
                let mut progress = |line: &str| {
                    eprintln!(
                        "[{:>6.1} s] cyrus {}: {line}",
                        started.elapsed().as_secs_f64(),
                        s.version
                    );
                };
                let done = install::install(s, &cache, &mut progress)
                    .map_err(|e| anyhow::anyhow!("cyrus install {}: {e}", s.version))?;
                let size = install::disk_usage(&done.root);
                if done.built {
                    println!(
                        "Cyrus {} installed in {} ({:.0} MiB) in {:.1} s",
                        done.version,
                        done.root.display(),
                        size as f64 / 1048576.0,
                        done.seconds
                    );
                } else {
                    println!(
                        "Cyrus {} already installed in {} ({:.0} MiB)",
                        done.version,
                        done.root.display(),
                        size as f64 / 1048576.0
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CyrusOp::Build {
            version,
            patch,
            jobs,
            refresh,
            keep_work,
            print_prefix,
        } => {
            use backupd_sim::cyrus::build;
            let Some(target) = build::target_for(&version) else {
                let known: Vec<&str> = build::TARGETS.iter().map(|t| t.version).collect();
                eprintln!(
                    "backupd-sim: cyrus build `{version}`: expected one of {}",
                    known.join(", ")
                );
                return Ok(ExitCode::from(2));
            };
            let opts = build::BuildOptions {
                target,
                patches: patch,
                cache: cache.clone(),
                jobs: jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
                refresh,
                keep_work,
            };
            let started = std::time::Instant::now();
            let mut progress = |line: &str| {
                eprintln!(
                    "[{:>6.1} s] cyrus build {}: {line}",
                    started.elapsed().as_secs_f64(),
                    target.version
                );
            };
            let done = match build::build(&opts, &mut progress) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("backupd-sim: cyrus build {}: {e}", target.version);
                    return Ok(ExitCode::from(1));
                }
            };
            if print_prefix {
                println!("{}", done.prefix.display());
                return Ok(ExitCode::SUCCESS);
            }
            let what = format!(
                "Cyrus {} from Debian {}{}",
                done.version,
                done.info
                    .debian_revision
                    .as_deref()
                    .unwrap_or("(orig tarball only)"),
                if done.info.patches.is_empty() {
                    String::new()
                } else {
                    format!(
                        " + {}",
                        done.info
                            .patches
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(" + ")
                    )
                }
            );
            if done.built {
                println!(
                    "{what} built in {:.0} s into {}",
                    done.seconds,
                    done.prefix.display()
                );
            } else {
                println!(
                    "{what} already built (in {:.0} s) in {}",
                    done.info.build_seconds,
                    done.prefix.display()
                );
            }
            println!("build log: {}", done.log.display());
            println!("use it with: backupd-sim run{}", done.bins.cli_arg());
            if done.bins.chroot().is_none() {
                println!(
                    "         or: backupd-sim run --cyrus {}",
                    done.prefix.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CyrusOp::List => {
            println!("{:<6} {:<10} {:>9}  location", "cyrus", "version", "size");
            for l in install::list(&cache) {
                let (version, note) = if l.usable {
                    (l.version.clone(), String::new())
                } else {
                    ("-".to_owned(), format!("  ({})", l.version))
                };
                println!(
                    "{:<6} {:<10} {:>9}  {}{note}",
                    l.name,
                    version,
                    l.bytes.map_or_else(
                        || "-".into(),
                        |b| format!("{:.0} MiB", b as f64 / 1048576.0)
                    ),
                    l.location.display()
                );
            }
            for (prefix, info) in backupd_sim::cyrus::build::list(&cache) {
                let patches = if info.patches.is_empty() {
                    "stock".to_owned()
                } else {
                    info.patches
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(" + ")
                };
                println!(
                    "{:<6} {:<10} {:>9}  {}  (built: Debian {}, {patches})",
                    "build",
                    info.upstream,
                    format!(
                        "{:.0} MiB",
                        backupd_sim::cyrus::install::disk_usage(&prefix) as f64 / 1048576.0
                    ),
                    prefix.display(),
                    info.debian_revision.as_deref().unwrap_or("orig only"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
