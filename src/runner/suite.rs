//! Many scenarios: discovery, sharding, `-j N` workers, progress.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{run_scenario, RunOptions, ScenarioReport};
use crate::scenario::{discover, Scenario, ScenarioError};

/// Which part of a suite this machine runs: shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let (k, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}`: expected K/N, e.g. 1/2"))?;
        let (index, count) = (
            k.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: K is not a number"))?,
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{s}`: N is not a number"))?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(format!("`{s}`: expected 1 <= K <= N"));
        }
        Ok(Shard { index, count })
    }
}

/// Load every scenario under `paths` (all files are validated, so one typo
/// anywhere fails the whole run before anything starts), then keep the shard.
pub fn load(
    paths: &[PathBuf],
    shard: Option<Shard>,
    filter: Option<&str>,
) -> Result<Vec<Scenario>, Vec<ScenarioError>> {
    let files = discover(paths).map_err(|e| vec![e])?;
    let mut scenarios = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        match Scenario::load(f) {
            Ok(s) => scenarios.push(s),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut names = std::collections::BTreeMap::new();
    for s in &scenarios {
        if let Some(other) = names.insert(s.name.clone(), s.path.clone()) {
            errors.push(ScenarioError {
                file: s.path.display().to_string(),
                line: None,
                column: None,
                message: format!(
                    "scenario name `{}` is also used by {}",
                    s.name,
                    other.display()
                ),
                snippet: None,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(f) = filter {
        scenarios.retain(|s| s.name.contains(f));
    }
    if let Some(sh) = shard {
        scenarios = scenarios
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % sh.count == sh.index - 1)
            .map(|(_, s)| s)
            .collect();
    }
    Ok(scenarios)
}

/// Run `scenarios` with `jobs` workers, reporting progress on stderr: on a
/// terminal, an `indicatif` bar with one spinner line per running scenario
/// and each result printed above it; otherwise one plain line per finished
/// scenario (`[n/total] VERDICT name (secs s)`). Reports come back in the
/// scenarios' order.
pub fn run_all(scenarios: &[Scenario], opts: &RunOptions, jobs: usize) -> Vec<ScenarioReport> {
    let total = scenarios.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioReport>>> = Mutex::new(vec![None; total]);
    let live = std::io::stderr().is_terminal();
    let color = crate::term::stderr_color();
    let bars = MultiProgress::with_draw_target(if live {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let overall = bars.add(
        ProgressBar::new(total as u64).with_style(
            ProgressStyle::with_template("[{pos}/{len}] {bar:30} {elapsed_precise}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
    );
    let spinner = ProgressStyle::with_template("  {spinner} {wide_msg} {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let emit = |line: &str| {
        if live {
            let _ = bars.println(line);
        } else {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{line}");
            let _ = err.flush();
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(s) = scenarios.get(i) else { return };
                let running = bars.insert_before(
                    &overall,
                    ProgressBar::new_spinner()
                        .with_style(spinner.clone())
                        .with_message(s.name.clone()),
                );
                if live {
                    running.enable_steady_tick(Duration::from_millis(200));
                }
                let report = run_scenario(s, opts);
                running.finish_and_clear();
                bars.remove(&running);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                let verdict = crate::term::paint_verdict(
                    report.verdict,
                    &format!("{:<5}", report.verdict.to_string()),
                    color,
                );
                emit(&format!(
                    "[{n}/{total}] {verdict} {} ({:.1} s)",
                    s.name, report.seconds
                ));
                overall.inc(1);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(report);
            });
        }
    });
    overall.finish_and_clear();
    let _ = bars.clear();
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
