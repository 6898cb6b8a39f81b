//! Workload 4: `explore` cases per minute against the correct fake, with two
//! workers (`explore -j 2`), as `backupd-sim explore` runs them: each case's
//! wall time split into the real client's own time and everything else, and
//! where that else goes (the runner's phases, summed over the cases).

use super::results::{Series, WorkloadResult};
use super::{log, BenchError, BenchOptions, Result};

/// Workers, as the acceptance asks.
pub const JOBS: usize = 2;

/// The rate `explore -j 2` must reach (issue 17).
pub const GOAL_PER_MINUTE: f64 = 300.0;

/// CPU seconds of this process and every descendant it reaped (each harness'
/// master accounts for its services when it is reaped on the harness' stop).
fn cpu_now() -> f64 {
    crate::cyrus::procfs::cpu_seconds(std::process::id() as i32, true).unwrap_or(0.0)
}

/// Cases a repetition runs (a campaign runs thousands: harness starts and
/// the first batch's set-up, which nothing overlaps, weigh less in more).
pub const CASES: u64 = 120;

/// `explore` cases per minute with [`JOBS`] workers (seed 1, mixed modes),
/// `reps` times.
pub(super) fn run(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let cases: u64 = if opts.sizes.w1_messages < 10_000 {
        8
    } else {
        CASES
    };
    let reps = reps.max(1);
    let mut rates = Vec::new();
    let mut run = |rep: usize| -> Result<(crate::explore::Outcome, f64)> {
        log(
            opts,
            format!("workload 4: {cases} explore cases, -j {JOBS} (repetition {rep} of {reps})"),
        );
        let (outcome, cpu) = campaign(opts, cases)?;
        rates.push(outcome.per_minute());
        Ok((outcome, cpu))
    };
    // The split and the profile are the last repetition's.
    let mut last = run(1)?;
    for rep in 2..=reps {
        last = run(rep)?;
    }
    let (outcome, cpu) = last;
    let n = outcome.cases_run.max(1) as f64;
    let t = &outcome.timing;
    let mut notes = vec![
        format!(
            "{} repetition(s) of {} case(s) with -j {JOBS}, seed 1, mode mixed; the last took {:.1} s, {} failing{}",
            rates.len(),
            outcome.cases_run,
            outcome.seconds,
            outcome.failing.len(),
            if outcome.failing.is_empty() {
                String::new()
            } else {
                format!(
                    " (first: {})",
                    outcome.failing[0].failures.first().map_or("", String::as_str)
                )
            }
        ),
        format!(
            "per case (the last repetition): {:.2} s of wall time, {:.2} s in the real client ({:.0}%), {:.2} s beyond it; \
             {:.2} CPU-seconds of every process (Cyrus included); {} harness start(s) in {:.1} s. \
             Each worker sets the next batch's users up on a second harness while it runs a batch, \
             so the wall times summed over cases exceed the campaign's",
            t.wall / n,
            t.client / n,
            t.client / t.wall.max(1e-9) * 100.0,
            t.overhead() / n,
            cpu / n,
            outcome.harness_starts.0,
            outcome.harness_starts.1
        ),
    ];
    let top: Vec<String> = t
        .top()
        .iter()
        .take(8)
        .map(|(p, s)| format!("{p} {:.3} s ({:.0}%)", s / n, s / t.wall.max(1e-9) * 100.0))
        .collect();
    notes.push(format!(
        "profile, per case, largest first: {}",
        top.join(", ")
    ));
    Ok(WorkloadResult {
        id: 4,
        name: format!("explore cases per minute (-j {JOBS})"),
        skipped: None,
        series: vec![
            Series::new("fake", "cases_per_minute", "cases/min", rates),
            Series::new("fake", "case_wall", "s", vec![t.wall / n]),
            Series::new("fake", "case_client", "s", vec![t.client / n]),
            Series::new("fake", "case_overhead", "s", vec![t.overhead() / n]),
            Series::new("fake", "case_cpu", "s", vec![cpu / n]),
        ],
        notes,
    })
}

/// One campaign of `cases`; its outcome and the CPU seconds it took.
fn campaign(opts: &BenchOptions, cases: u64) -> Result<(crate::explore::Outcome, f64)> {
    use crate::explore::{explore, ExploreMode, ExploreOptions, GenOptions, Installation};
    let scratch = tempfile::tempdir_in(&opts.sandbox_parent)?;
    let version = opts.bins.version();
    let eo = ExploreOptions {
        cases: Some(cases),
        minutes: None,
        seed: crate::rng::Seed(1),
        gen: GenOptions {
            mode: ExploreMode::Mixed,
            allow_loss_faults: false,
            steps_max: 8,
            renames: true,
        },
        jobs: JOBS,
        installations: vec![Installation {
            bins: opts.bins.clone(),
            version: version.clone(),
        }],
        shard: (1, 1),
        out_dir: scratch.path().join("findings"),
        corpus: None,
        sandbox: None,
        shrink_runs: 0,
        compare_real: false,
        batch: crate::explore::DEFAULT_BATCH,
        run: crate::runner::RunOptions {
            seed: Some(crate::rng::Seed(1)),
            ..crate::runner::RunOptions::new(opts.bins.clone(), crate::harness::Target::Fake)
        },
    };
    let cpu = cpu_now();
    let outcome = explore(&eo, |_| {}).map_err(BenchError::Failed)?;
    Ok((outcome, cpu_now() - cpu))
}
