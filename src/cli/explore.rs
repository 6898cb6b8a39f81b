//! `backupd-sim explore`: property-based convergence testing with the real
//! sync_client; a failure shrunk to a scenario file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

#[derive(Args)]
pub struct ExploreArgs {
    /// Cases to generate and run.
    #[arg(long, default_value_t = 50)]
    cases: u32,
    /// Seed (default: drawn now and printed).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    /// Client modes: `-R -1` passes, `-u`, `-A`, or a mix of them.
    #[arg(long, default_value = "mixed",
          value_parser = super::names::<backupd_sim::explore::ExploreMode>(&["rolling", "user", "all", "mixed"]))]
    mode: backupd_sim::explore::ExploreMode,
    /// Most steps per case.
    #[arg(long, default_value_t = 8)]
    steps_max: usize,
    /// Let `lie` and `hide-missing` into the generated faults (cases then fail on purpose).
    #[arg(long)]
    allow_loss_faults: bool,
    /// Also rename subscribed folders (the backup must keep the old name's
    /// subscription, as the source does).
    #[arg(long)]
    renames: bool,
    /// Removed: its only property, stale-subscriptions, was a false finding
    /// (refused with the reason).
    #[arg(long, value_name = "NAME", hide = true)]
    off: Vec<String>,
    /// Where a shrunk failing case is written.
    #[arg(long, default_value = "scenarios/regressions")]
    out: PathBuf,
    /// proptest's regression file.
    #[arg(long, default_value = "proptest-regressions/explore.txt")]
    regressions: PathBuf,
    /// Only write the generated cases as scenario files into DIR; run nothing.
    #[arg(long, value_name = "DIR")]
    dry_run: Option<PathBuf>,
    #[command(flatten)]
    cyrus: super::CyrusSelect,
}

pub fn run(args: ExploreArgs) -> Result<ExitCode> {
    use backupd_sim::explore::{generate, ExploreOptions, GenOptions};
    let seed = args.seed.unwrap_or_else(backupd_sim::rng::Seed::from_clock);
    if let Some(name) = args.off.first() {
        eprintln!(
            "backupd-sim: --off `{name}`: --off was removed: its only property, \
             `stale-subscriptions`, was a false finding (the source's subscriptions were read \
             through LSUB, which hides those to renamed and deleted folders that Cyrus keeps; \
             both sides are read raw now and agree: docs/findings/subscriptions.md)"
        );
        return Ok(ExitCode::from(2));
    }
    let gen = GenOptions {
        mode: args.mode,
        allow_loss_faults: args.allow_loss_faults,
        steps_max: args.steps_max,
        renames: args.renames,
    };
    if let Some(dir) = &args.dry_run {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        for (i, case) in generate(seed, &gen, args.cases).iter().enumerate() {
            let path = dir.join(format!("case-{i:04}.toml"));
            std::fs::write(
                &path,
                case.to_toml(
                    &format!("c{i}"),
                    &format!("explore --seed {seed}, case {i}"),
                ),
            )?;
        }
        println!(
            "wrote {} generated case(s) to {} (seed {seed})",
            args.cases,
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A missing installation is an environment error: `main` prints it, exit 2.
    let bins = args.cyrus.single()?;
    let version = bins.version();
    let mut hopts = backupd_sim::harness::HarnessOptions::new(bins.clone());
    hopts.server.seed = seed;
    hopts.sync_timeout = Duration::from_secs(60);
    let h = backupd_sim::harness::Harness::start(hopts).context("starting the harness")?;
    eprintln!(
        "backupd-sim explore: seed {seed}, {} cases, mode {:?}, Cyrus {version}",
        args.cases, args.mode
    );
    let opts = ExploreOptions {
        cases: args.cases,
        seed,
        gen,
        out_dir: args.out.clone(),
        regressions: args.regressions.clone(),
        run: backupd_sim::runner::RunOptions {
            bins,
            version,
            seed: Some(seed),
            keep: false,
            sandbox_parent: None,
            update_snapshots: false,
            report_dir: None,
            target: backupd_sim::harness::Target::Fake,
        },
    };
    if let Some(parent) = args.regressions.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    // On a terminal: a bar (indicatif, width-aware); otherwise a plain line
    // every 10 cases and on each failure.
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = if live {
        indicatif::ProgressBar::new(u64::from(args.cases))
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{pos}/{len}] {bar:30} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcome = backupd_sim::explore::explore(&h, &opts, |done, failures, per_min| {
        if live {
            bar.set_position(done as u64);
            bar.set_message(format!("{failures} failing, {per_min:.1} cases/min"));
        } else if done % 10 == 0 || failures > 0 {
            eprintln!("{done} cases, {failures} failing, {per_min:.1} cases/min");
        }
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    bar.finish_and_clear();
    println!(
        "{} case(s) run in {:.1} s: {:.1} cases/min (seed {seed})",
        outcome.cases_run,
        outcome.seconds,
        outcome.cases_run as f64 / outcome.seconds.max(1e-3) * 60.0
    );
    match outcome.failure {
        None => {
            println!("no failure");
            Ok(ExitCode::SUCCESS)
        }
        Some((path, report)) => {
            println!("FAILURE, shrunk and written to {}", path.display());
            for f in report.failures() {
                println!("  - {}", f.lines().next().unwrap_or(""));
            }
            println!("replay: backupd-sim run {}", path.display());
            let mut again = format!(
                "backupd-sim explore --seed {seed} --cases {} --mode {} --steps-max {}",
                args.cases,
                format!("{:?}", args.mode).to_lowercase(),
                args.steps_max
            );
            if args.allow_loss_faults {
                again.push_str(" --allow-loss-faults");
            }
            if args.renames {
                again.push_str(" --renames");
            }
            println!("explore again: {again}");
            Ok(ExitCode::from(1))
        }
    }
}
