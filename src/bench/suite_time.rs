//! Workload 3: the bundled scenario suite on the fake, one scenario at a
//! time: wall time per scenario, and how much of it the client took.

use std::time::Instant;

use super::results::{Series, WorkloadResult};
use super::{failed, log, BenchOptions, Result};

pub(super) fn run(opts: &BenchOptions) -> Result<WorkloadResult> {
    use crate::runner::{suite, RunOptions, Verdict};
    let name = "bundled scenario suite (fake only)".to_string();
    let Some(dir) = &opts.scenarios else {
        return Ok(WorkloadResult {
            id: 3,
            name,
            skipped: Some("no scenario directory given".into()),
            series: Vec::new(),
            notes: Vec::new(),
        });
    };
    let scenarios = suite::load(std::slice::from_ref(dir), None, None).map_err(|errs| {
        failed(format!(
            "invalid scenarios: {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    log(
        opts,
        format!("workload 3: {} scenarios, one at a time", scenarios.len()),
    );
    let ro = RunOptions {
        sandbox_parent: Some(opts.sandbox_parent.clone()),
        ..RunOptions::new(opts.bins.clone(), crate::harness::Target::Fake)
    };
    let t = Instant::now();
    let reports = suite::run_all(&scenarios, &ro, 1);
    let total = t.elapsed().as_secs_f64();
    let ok = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Pass | Verdict::Xfail))
        .count();
    let per: Vec<f64> = reports.iter().map(|r| r.seconds).collect();
    let runs: usize = reports.iter().map(|r| r.stats.client_runs).sum();
    let mut series = vec![
        Series::new("fake", "suite_wall", "s", vec![total]),
        Series::new("fake", "scenario_wall", "s", per),
    ];
    series.push(Series::new(
        "fake",
        "scenario_wall_per_client_run",
        "s",
        reports
            .iter()
            .filter(|r| r.stats.client_runs > 0)
            .map(|r| r.seconds / r.stats.client_runs as f64)
            .collect(),
    ));
    // Overhead beyond the client: the scenario's wall time minus the time its
    // sync_client runs took (setup, source changes over IMAP, checks, teardown).
    let client_secs: Vec<f64> = reports
        .iter()
        .map(|r| r.stats.client_run_seconds.iter().sum())
        .collect();
    let overhead: Vec<f64> = reports
        .iter()
        .zip(&client_secs)
        .map(|(r, c)| (r.seconds - c).max(0.0))
        .collect();
    series.push(Series::new(
        "fake",
        "scenario_client",
        "s",
        client_secs.clone(),
    ));
    series.push(Series::new(
        "fake",
        "scenario_overhead",
        "s",
        overhead.clone(),
    ));
    let total_client: f64 = client_secs.iter().sum();
    let total_overhead: f64 = overhead.iter().sum();
    let mut by_overhead: Vec<(f64, f64, &str)> = reports
        .iter()
        .zip(overhead.iter().zip(&client_secs))
        .map(|(r, (o, c))| (*o, *c, r.name.as_str()))
        .collect();
    by_overhead.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut slowest: Vec<(f64, &str)> = reports
        .iter()
        .map(|r| (r.seconds, r.name.as_str()))
        .collect();
    slowest.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(WorkloadResult {
        id: 3,
        name,
        skipped: None,
        series,
        notes: vec![
            format!(
                "{} scenarios, {ok} passed or xfail, {runs} sync_client runs, one at a time, one repetition",
                reports.len()
            ),
            format!(
                "scenario_client: the wall time of the scenario's sync_client runs (`stats.client_run_seconds` \
                 in each report); scenario_overhead: the scenario's wall time minus that. In all: {total_client:.1} s \
                 in the client, {total_overhead:.1} s beyond it"
            ),
            format!(
                "most overhead beyond the client: {}",
                by_overhead
                    .iter()
                    .take(5)
                    .map(|(o, c, n)| format!("{n} {o:.1} s (client {c:.1} s)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "slowest: {}",
                slowest
                    .iter()
                    .take(5)
                    .map(|(s, n)| format!("{n} {s:.1} s"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ],
    })
}
