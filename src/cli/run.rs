//! `backupd-sim run`: scenario files against the real sync_client, on one
//! Cyrus installation or several (the version matrix lives in
//! [`backupd_sim::runner::matrix`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::Args;

use backupd_sim::runner::matrix::{installations, run_matrix, Progress};
use backupd_sim::runner::{report, suite, RunOptions};

use super::TargetArgs;

#[derive(Args)]
pub struct RunArgs {
    /// Scenario files or directories (searched for *.toml). Without a
    /// ./scenarios directory, the suite built into this binary.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Scenarios run at once (each has its own source instance and fake).
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// Run only shard K of N (e.g. 1/2), to split a suite across machines.
    #[arg(long, value_name = "K/N")]
    shard: Option<backupd_sim::runner::suite::Shard>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Seed for every scenario (default: the scenario's own, else one derived from its name).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// Write every report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Keep every sandbox (failed ones are always kept).
    #[arg(long)]
    keep: bool,
    /// Where sandboxes go (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Write missing or changed transcript snapshots instead of failing.
    #[arg(long)]
    update_snapshots: bool,
    /// Only validate the scenario files.
    #[arg(long)]
    check: bool,
    /// Only list the selected scenarios (after --filter and --shard) that --target can run, one path a line; those it would skip go to stderr with the reason.
    #[arg(long)]
    list: bool,
    /// Copy every scenario's artifacts (transcript, events, report, timeline.svg/html) to DIR/<scenario>/.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
}

pub fn run(mut args: RunArgs) -> Result<ExitCode> {
    // Outside a checkout (an installed binary), the bundled suite.
    args.paths = backupd_sim::bundled::scenario_paths(&args.paths)
        .context("extracting the bundled scenarios")?;
    let scenarios = match suite::load(&args.paths, args.shard, args.filter.as_deref()) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    // Nothing selected is an error for --list and --check too: a CI job whose
    // filter or shard matches nothing must not pass silently.
    if scenarios.is_empty() {
        eprintln!(
            "backupd-sim: no scenario to run (paths: {:?}, filter: {:?}, shard: {:?})",
            args.paths,
            args.filter,
            args.shard.map(|s| format!("{}/{}", s.index, s.count))
        );
        return Ok(ExitCode::from(2));
    }
    if args.check {
        println!("{} scenario file(s) valid", scenarios.len());
        return Ok(ExitCode::SUCCESS);
    }
    let target = match args.target.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("backupd-sim: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.list {
        // What a run on this target would run; what it would skip, and why,
        // on stderr (stdout stays one path a line, for scripts).
        for s in &scenarios {
            match backupd_sim::runner::unsupported(s, &target) {
                None => println!("{}", s.path.display()),
                Some(why) => eprintln!("left out: {} ({why})", s.path.display()),
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A missing installation is an environment error: `main` prints it, exit 2.
    let installations = installations(&args.cyrus.choice())?;
    if let Some(dir) = &args.sandbox_dir {
        for bins in &installations {
            // A chroot'd Cyrus only reaches its sandbox below the root.
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("--sandbox-dir `{}`", dir.display()))?;
            bins.inside(&dir)?;
        }
    }
    // Several installations: a header per version, a version x scenario table,
    // and report dirs per version.
    let multi = installations.len() > 1;
    let jobs = args.jobs.max(1);
    // Each installation's run: these options, with its bins and version.
    let first = installations
        .first()
        .cloned()
        .ok_or_else(|| anyhow!("no Cyrus installation"))?;
    let template = RunOptions {
        bins: first,
        version: String::new(),
        seed: args.seed,
        keep: args.keep,
        sandbox_parent: args.sandbox_dir.clone(),
        update_snapshots: args.update_snapshots,
        report_dir: args.report_dir.clone(),
        target: target.clone(),
    };
    let matrix = run_matrix(&scenarios, installations, &template, jobs, |p| match p {
        Progress::Starting { bins, version } => eprintln!(
            "backupd-sim: {} scenario(s), Cyrus {version} from {}, target {}, {jobs} at a time",
            scenarios.len(),
            bins.describe(),
            target.name(),
        ),
        Progress::Finished {
            bins,
            version,
            reports,
        } => {
            if multi {
                println!("== Cyrus {version} ({})", bins.describe());
            }
            print!(
                "{}",
                report::summary_with(reports, backupd_sim::term::stdout_color())
            );
        }
    });
    if let Some(table) = matrix.table() {
        print!("\n{table}");
    }
    if let Some(numbers) = matrix.numbers() {
        print!("\n{numbers}");
    }
    if let Some(p) = &args.json {
        std::fs::write(p, matrix.json()).with_context(|| format!("writing `{}`", p.display()))?;
    }
    if let Some(p) = &args.junit {
        std::fs::write(p, matrix.junit()).with_context(|| format!("writing `{}`", p.display()))?;
    }
    if matrix.nothing_ran() {
        eprintln!(
            "backupd-sim: nothing ran: every selected scenario was SKIP on target {} (reasons above)",
            target.name()
        );
        return Ok(ExitCode::from(2));
    }
    Ok(if matrix.any_bad() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
