//! `backupd-sim bench`: the benchmarks of [`backupd_sim::bench`], and the
//! goals they met or missed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// Repetitions of each workload.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Small sizes (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Where results.md and results.json go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The scenario suite timed by workload 3.
    #[arg(long, default_value = "scenarios")]
    scenarios: PathBuf,
    /// Skip workload 3 (the scenario suite).
    #[arg(long)]
    no_suite: bool,
    /// Where sandboxes go.
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Run only workload N (1-6, repeatable) and replace it in the
    /// results.json and results.md of an earlier full run in --out.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=6))]
    workload: Vec<u32>,
    /// Another backupd-sim executable (an older build) whose `serve` runs as
    /// the target `baseline` beside `fake` in workloads 1 and 2: a change to
    /// the fake measured against the same floor in one run.
    #[arg(long, value_name = "EXE")]
    baseline_fake: Option<PathBuf>,
    /// The targets of workloads 1 and 2 (default: every one there is).
    #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(backupd_sim::bench::ALL_TARGETS))]
    targets: Vec<String>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let bins = args.cyrus.single()?;
    let exe = std::env::current_exe().context("locating the backupd-sim executable")?;
    let mut opts = backupd_sim::bench::BenchOptions::new(bins, exe);
    if args.quick {
        opts = opts.quick();
    }
    opts.reps = args.reps;
    opts.out_dir = args.out;
    if !args.no_suite {
        // Outside a checkout (an installed binary), the bundled suite.
        let suite = backupd_sim::bundled::scenario_paths(std::slice::from_ref(&args.scenarios))
            .context("extracting the bundled scenarios")?;
        opts.scenarios = suite.into_iter().next().filter(|d| d.is_dir());
    }
    if let Some(d) = args.sandbox_dir {
        opts.sandbox_parent = d;
    }
    opts.only = args.workload;
    if args.targets.iter().any(|t| t == "baseline") && args.baseline_fake.is_none() {
        anyhow::bail!("--targets baseline needs --baseline-fake EXE");
    }
    if let Some(exe) = &args.baseline_fake {
        if !exe.is_file() {
            anyhow::bail!("--baseline-fake {}: no such file", exe.display());
        }
    }
    opts.baseline_exe = args.baseline_fake;
    opts.targets = args.targets;
    let r = backupd_sim::bench::run_bench(&opts)?;
    for g in &r.goals {
        println!(
            "{} {}: {} (limit {})",
            if g.pass { "pass" } else { "MISS" },
            g.name,
            g.measured,
            g.limit
        );
    }
    println!(
        "wrote {0}/results.md and {0}/results.json",
        opts.out_dir.display()
    );
    // Missed goals are reported, not an error.
    Ok(ExitCode::SUCCESS)
}
