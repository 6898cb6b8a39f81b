//! Many scenarios: discovery, sharding, `-j N` workers, progress.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

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

/// Run `scenarios` with `jobs` workers, reporting progress on `out` (a live
/// status line on a terminal, one plain line per scenario otherwise). Reports
/// come back in the scenarios' order.
pub fn run_all(scenarios: &[Scenario], opts: &RunOptions, jobs: usize) -> Vec<ScenarioReport> {
    let total = scenarios.len();
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<ScenarioReport>>> = Mutex::new(vec![None; total]);
    let running: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let live = std::io::stderr().is_terminal();
    let print = |line: &str, running: &[String], done: usize| {
        let mut err = std::io::stderr().lock();
        if live {
            let _ = write!(
                err,
                "\r\x1b[K{line}\n[{done}/{total}] running: {}",
                running.join(", ")
            );
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, total.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(s) = scenarios.get(i) else { return };
                {
                    let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                    r.push(s.name.clone());
                    if live {
                        print(
                            &format!("start {}", s.name),
                            &r,
                            done.load(Ordering::SeqCst),
                        );
                    }
                }
                let report = run_scenario(s, opts);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                let line = format!(
                    "[{n}/{total}] {:<5} {} ({:.1} s)",
                    report.verdict.to_string(),
                    s.name,
                    report.seconds
                );
                {
                    let mut r = running.lock().unwrap_or_else(|e| e.into_inner());
                    r.retain(|x| x != &s.name);
                    print(&line, &r, n);
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(report);
            });
        }
    });
    if live {
        let _ = writeln!(std::io::stderr(), "\r\x1b[K");
    }
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect()
}
