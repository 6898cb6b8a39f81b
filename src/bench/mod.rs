//! `backupd-sim bench` / `make bench`: the same workloads against the fake, the
//! real backupd, the real sync_server and a floor (a server that answers OK and
//! stores nothing: the client's own cost), several repetitions each; results go to
//! `bench/results.md` and `bench/results.json` with min/median/max and ratios.
//!
//! Workloads (issue 6), one file each, named for what it measures:
//! 1. [`first_sync`]: first `sync_client -u` of one user with 10,000 small messages;
//! 2. [`rolling_pass`]: a rolling `-R -1` pass after 1,000 changes over 5 users;
//! 3. [`suite_time`]: the bundled scenario suite (fake only): wall time per scenario;
//! 4. [`explore_rate`]: explore cases per minute (seed 1, mixed modes, the correct fake);
//! 5. [`peak_rss`]: the fake's peak RSS (VmHWM) after receiving 100,000 messages;
//! 6. [`codec`]: codec throughput: MB/s framing + parsing APPLY MESSAGE / APPLY MAILBOX.
//!
//! Around them: [`targets`] starts each server and times a client run, [`fill`]
//! fills the source, [`results`] holds the series, goals and `results.md`.
//!
//! How it measures: the fake runs as a child process (`backupd-sim serve`), so
//! its CPU time (utime+stime from `/proc/PID/stat`) and peak RSS (`VmHWM`) are its
//! own. Real targets' CPU is master's plus its service children's (live ones, and
//! reaped ones through master's cutime/cstime). The client's CPU is the `times`
//! builtin of the `sh` that runs it. The floor runs in-process (its CPU is not
//! reported). Wall time is the client process's.

mod codec;
mod explore_rate;
mod fill;
mod first_sync;
pub mod floor;
mod peak_rss;
mod results;
mod rolling_pass;
mod suite_time;
mod targets;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cyrus::{CyrusBins, CyrusError};
use crate::dlist::FrameError;
use crate::harness::HarnessError;

pub use codec::{apply_mailbox_frame, apply_message_frame, codec_throughput};
pub use fill::bulk_append;
pub use floor::Floor;
pub use results::{BenchResults, Goal, Series, WorkloadResult};

/// Why a benchmark could not run. Its message is one line per cause, outermost
/// first (as [`chain`] joins them).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// What was being done when the cause (the source) happened.
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<BenchError>,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cyrus(#[from] CyrusError),
    #[error(transparent)]
    Harness(#[from] HarnessError),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// Anything else, in words.
    #[error("{0}")]
    Failed(String),
}

type Result<T, E = BenchError> = std::result::Result<T, E>;

fn failed(message: impl Into<String>) -> BenchError {
    BenchError::Failed(message.into())
}

/// An error and its causes on one line, outermost first, joined by `: `.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// `.context(…)` for any result whose error converts into a [`BenchError`].
trait Context<T> {
    fn context(self, context: impl Into<String>) -> Result<T>;
    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<BenchError>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<C: Into<String>>(self, context: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| BenchError::Context {
            context: context().into(),
            source: Box::new(e.into()),
        })
    }
}

/// What [`run_bench`] does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub bins: CyrusBins,
    /// The `backupd-sim` executable, run as `serve` for the fake.
    pub serve_exe: PathBuf,
    /// Another `backupd-sim` executable (an older build), run as `serve`
    /// for the target `baseline` beside `fake` in workloads 1 and 2, so that
    /// a change to the fake is measured against the same floor in one run.
    pub baseline_exe: Option<PathBuf>,
    /// The targets of workloads 1 and 2 (names from [`ALL_TARGETS`]);
    /// empty: all but `baseline`, and `baseline` when `baseline_exe` is set.
    pub targets: Vec<String>,
    /// Where `results.md` and `results.json` go (created).
    pub out_dir: PathBuf,
    /// Repetitions of workloads 1 and 2 (and of the codec loop).
    pub reps: usize,
    /// Scenario directory for workload 3 (`None`: skipped).
    pub scenarios: Option<PathBuf>,
    /// Parent of the sandboxes (must be traversable by `cyrus`; default /tmp).
    pub sandbox_parent: PathBuf,
    pub sizes: Sizes,
    /// Print progress on stderr.
    pub verbose: bool,
    /// Run only these workloads (by number) and replace them in the
    /// `results.json` already in `out_dir`; empty: every workload.
    pub only: Vec<u32>,
}

/// Workload sizes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Sizes {
    /// Workload 1: messages of the one user.
    pub w1_messages: usize,
    /// Workload 2: users, messages each before the changes, changes in all.
    pub w2_users: usize,
    pub w2_base: usize,
    pub w2_changes: usize,
    /// Workload 5: users and messages each (100,000 in all by default).
    pub w5_users: usize,
    pub w5_per_user: usize,
    /// Workload 6: APPLY MESSAGE bodies per frame and their size; APPLY MAILBOX records.
    pub codec_bodies: usize,
    pub codec_body_bytes: usize,
    pub codec_records: usize,
}

impl Sizes {
    /// The sizes of the issue.
    pub fn full() -> Sizes {
        Sizes {
            w1_messages: 10_000,
            w2_users: 5,
            w2_base: 200,
            w2_changes: 1_000,
            w5_users: 10,
            w5_per_user: 10_000,
            codec_bodies: 1024,
            codec_body_bytes: 4096,
            codec_records: 1000,
        }
    }

    /// Small sizes for a smoke run (seconds).
    pub fn quick() -> Sizes {
        Sizes {
            w1_messages: 200,
            w2_users: 2,
            w2_base: 20,
            w2_changes: 40,
            w5_users: 2,
            w5_per_user: 200,
            codec_bodies: 64,
            codec_body_bytes: 4096,
            codec_records: 100,
        }
    }
}

impl BenchOptions {
    /// Full sizes, 3 repetitions, results in `bench/`, scenarios in `scenarios/`
    /// when that directory exists.
    pub fn new(bins: CyrusBins, serve_exe: impl Into<PathBuf>) -> BenchOptions {
        let scen = PathBuf::from("scenarios");
        // The system temp dir, or ROOT/tmp for a chroot installation.
        let sandbox_parent = bins.sandbox_parent();
        BenchOptions {
            bins,
            serve_exe: serve_exe.into(),
            baseline_exe: None,
            targets: Vec::new(),
            out_dir: PathBuf::from("bench"),
            reps: 3,
            scenarios: scen.is_dir().then_some(scen),
            sandbox_parent,
            sizes: Sizes::full(),
            verbose: true,
            only: Vec::new(),
        }
    }

    /// The targets workloads 1 and 2 run, in [`ALL_TARGETS`] order.
    pub fn targets(&self) -> Vec<&'static str> {
        select_targets(&self.targets, self.baseline_exe.is_some())
    }

    /// Switch to [`Sizes::quick`].
    pub fn quick(mut self) -> BenchOptions {
        self.sizes = Sizes::quick();
        self
    }
}

/// `wanted` in [`ALL_TARGETS`] order; none wanted: every target, `baseline`
/// only when there is one.
fn select_targets(wanted: &[String], baseline: bool) -> Vec<&'static str> {
    ALL_TARGETS
        .into_iter()
        .filter(|t| {
            if wanted.is_empty() {
                *t != "baseline" || baseline
            } else {
                wanted.iter().any(|x| x == t)
            }
        })
        .collect()
}

/// Every target a workload can replicate into: the floor, the fake, an older
/// build's fake (`baseline`), the real backupd and sync_server.
pub const ALL_TARGETS: [&str; 5] = ["floor", "fake", "baseline", "backupd", "sync_server"];
/// Bound of one client run in workloads 1 and 5 (the slowest lab run of 10k into
/// backupd took 15 s).
const SYNC_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound of one client run in workload 2.
const PASS_TIMEOUT: Duration = Duration::from_secs(120);

fn log(opts: &BenchOptions, msg: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("bench: {}", msg.as_ref());
    }
}

/// Run every workload and write `results.md` / `results.json` in `opts.out_dir`.
pub fn run_bench(opts: &BenchOptions) -> Result<BenchResults> {
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating `{}`", opts.out_dir.display()))?;
    let reps = opts.reps.max(1);
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let wanted = |id: u32| opts.only.is_empty() || opts.only.contains(&id);
    let mut workloads = Vec::new();
    if wanted(1) {
        workloads.push(first_sync::run(opts, reps).context("workload 1")?);
    }
    if wanted(2) {
        workloads.push(rolling_pass::run(opts, reps).context("workload 2")?);
    }
    if wanted(3) {
        workloads.push(suite_time::run(opts).context("workload 3")?);
    }
    if wanted(4) {
        workloads.push(explore_rate::run(opts, reps).context("workload 4")?);
    }
    if wanted(5) {
        workloads.push(peak_rss::run(opts).context("workload 5")?);
    }
    if wanted(6) {
        workloads.push(codec::run(opts, reps)?);
    }
    let earlier = opts.out_dir.join("results.json");
    // With --workload into a directory holding no earlier run, the results
    // are the workloads run.
    let results = if opts.only.is_empty() || !earlier.exists() {
        BenchResults {
            cyrus_version: opts.bins.version(),
            unix_time,
            reps,
            sizes: opts.sizes,
            machine: machine(),
            goals: results::goals(&workloads),
            workloads,
        }
    } else {
        // Replace the workloads run in the results already there; each says
        // it was measured on its own, and when.
        let path = earlier;
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading `{}` (--workload updates an earlier full run)",
                path.display()
            )
        })?;
        let mut all: BenchResults = serde_json::from_str(&text)?;
        for mut w in workloads {
            w.notes.push(format!(
                "measured on its own (`bench --workload {}`, unix time {unix_time}, {}), after the run above",
                w.id,
                machine()
            ));
            all.workloads.retain(|o| o.id != w.id);
            all.workloads.push(w);
        }
        all.workloads.sort_by_key(|w| w.id);
        all.goals = results::goals(&all.workloads);
        all
    };
    let json = serde_json::to_string_pretty(&results)?;
    std::fs::write(opts.out_dir.join("results.json"), json + "\n")?;
    std::fs::write(
        opts.out_dir.join("results.md"),
        results::render_md(&results),
    )?;
    Ok(results)
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    format!("{cpus} cpu(s), {model}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_are_the_wanted_ones_in_order_and_baseline_only_when_given() {
        let none: Vec<String> = Vec::new();
        assert_eq!(
            select_targets(&none, false),
            ["floor", "fake", "backupd", "sync_server"]
        );
        assert_eq!(
            select_targets(&none, true),
            ["floor", "fake", "baseline", "backupd", "sync_server"]
        );
        let some = vec!["baseline".to_owned(), "floor".to_owned(), "fake".to_owned()];
        assert_eq!(select_targets(&some, true), ["floor", "fake", "baseline"]);
    }
}
