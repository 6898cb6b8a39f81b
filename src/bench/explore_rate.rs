//! Workload 4: `explore` cases per minute against the correct fake.

use super::results::{Series, WorkloadResult};
use super::{log, BenchError, BenchOptions, Context, Result};

/// `explore` cases per minute against the correct fake (one harness, fresh
/// users per case, as `backupd-sim explore` runs them).
pub(super) fn run(opts: &BenchOptions) -> Result<WorkloadResult> {
    use crate::explore::{explore, ExploreMode, ExploreOptions, GenOptions};
    let cases: u32 = if opts.sizes.w1_messages < 10_000 {
        5
    } else {
        30
    };
    log(opts, format!("workload 4: {cases} explore cases"));
    let mut hopts = crate::harness::HarnessOptions::new(opts.bins.clone());
    hopts.sandbox_parent = Some(opts.sandbox_parent.clone());
    let h = crate::harness::Harness::start(hopts).context("starting the harness")?;
    let scratch = tempfile::tempdir_in(&opts.sandbox_parent)?;
    let eo = ExploreOptions {
        cases,
        seed: crate::rng::Seed(1),
        gen: GenOptions {
            mode: ExploreMode::Mixed,
            allow_loss_faults: false,
            steps_max: 8,
            renames: false,
        },
        out_dir: scratch.path().join("regressions"),
        regressions: scratch.path().join("explore.txt"),
        run: crate::runner::RunOptions {
            bins: opts.bins.clone(),
            version: opts.bins.version(),
            seed: Some(crate::rng::Seed(1)),
            keep: false,
            sandbox_parent: Some(opts.sandbox_parent.clone()),
            update_snapshots: false,
            report_dir: None,
            target: crate::harness::Target::Fake,
        },
    };
    let outcome = explore(&h, &eo, |_, _, _| {}).map_err(BenchError::Failed)?;
    let per_min = outcome.cases_run as f64 / outcome.seconds.max(1e-3) * 60.0;
    Ok(WorkloadResult {
        id: 4,
        name: "explore cases per minute".into(),
        skipped: None,
        series: vec![Series::new(
            "fake",
            "cases_per_minute",
            "cases/min",
            vec![per_min],
        )],
        notes: vec![format!(
            "{} case(s) in {:.1} s, seed 1, mode mixed, {}",
            outcome.cases_run,
            outcome.seconds,
            if outcome.failure.is_some() {
                "A FAILURE WAS FOUND"
            } else {
                "no failure"
            }
        )],
    })
}
