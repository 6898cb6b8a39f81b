//! `backupd-sim compare`: scenarios on the fake and on a real target, side by side.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::TargetArgs;

#[derive(Args)]
pub struct CompareArgs {
    /// Scenario files or directories. Without a ./scenarios directory, the
    /// suite built into this binary.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// The real target compared with the fake: a real Cyrus backupd or
    /// sync_server started in the sandbox, or HOST:PORT.
    #[arg(long, value_name = "TARGET", default_value = "backupd",
          value_parser = super::TargetParser(&["backupd", "sync_server"]))]
    against: String,
    /// Credentials for a HOST:PORT target.
    #[arg(long, value_name = "USER:PASSWORD", default_value = "repluser:secret")]
    target_auth: String,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Scenarios run at once, per target.
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// The known deviations (TOML, `[[deviation]]` tables); without
    /// ./fixtures/deviations.toml, the one built into this binary.
    #[arg(long, value_name = "FILE", default_value = "fixtures/deviations.toml")]
    deviations: PathBuf,
    /// Where the reports and normalized transcripts of both sides go.
    #[arg(long, value_name = "DIR", default_value = "target/compare")]
    out: PathBuf,
    /// Where sandboxes go (default: the system temp dir); failed ones are kept.
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Write the rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

pub fn run(mut args: CompareArgs) -> Result<ExitCode> {
    use backupd_sim::runner::{compare, suite, RunOptions};
    // Outside a checkout (an installed binary), the bundled suite and deviations.
    args.paths = backupd_sim::bundled::scenario_paths(&args.paths)
        .context("extracting the bundled scenarios")?;
    args.deviations = backupd_sim::bundled::deviations_path(&args.deviations)
        .context("extracting the bundled deviations file")?;
    let scenarios = match suite::load(&args.paths, None, args.filter.as_deref()) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!(
                "backupd-sim: no scenario to compare (paths: {:?})",
                args.paths
            );
            return Ok(ExitCode::from(2));
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let target = TargetArgs {
        target: args.against.clone(),
        target_auth: args.target_auth.clone(),
    }
    .parse();
    let target = match target {
        Ok(t) if !t.is_fake() => t,
        Ok(_) => {
            eprintln!(
                "backupd-sim: --against must be a real target (backupd, sync_server or HOST:PORT)"
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("backupd-sim: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let deviations = match compare::load_deviations(&args.deviations) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = RunOptions {
        sandbox_parent: args.sandbox_dir.clone(),
        ..RunOptions::new(args.cyrus.single()?, backupd_sim::harness::Target::Fake)
    };
    let rows = compare::compare(
        &scenarios,
        &opts,
        &target,
        args.jobs.max(1),
        &args.out,
        &deviations,
    );
    print!("{}", compare::summary(&rows, &target, &args.out));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing `{}`", p.display()))?;
    }
    match compare::outcome(&rows) {
        // Nothing compared is not a success, as `run` says when nothing ran.
        compare::Outcome::NothingCompared => {
            eprintln!(
                "backupd-sim compare: nothing compared: every selected scenario was SKIP on {} (reasons above)",
                target.name()
            );
            Ok(ExitCode::from(2))
        }
        compare::Outcome::Differ => Ok(ExitCode::from(1)),
        compare::Outcome::Agree => Ok(ExitCode::SUCCESS),
    }
}
