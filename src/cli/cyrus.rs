//! `backupd-sim cyrus install|list`: Cyrus installations in Debian chroots.

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
    /// Show the host's Cyrus and every chroot: version, location, size.
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
            Ok(ExitCode::SUCCESS)
        }
    }
}
