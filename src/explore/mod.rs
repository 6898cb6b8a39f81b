//! `backupd-sim explore`: property-based convergence testing with the real
//! client. A campaign draws cases from one seed ([`gen`]: every step kind,
//! client mode, lock and fault, weighted toward races), renders each as a
//! scenario file ([`render`]) and runs it as `backupd-sim run` would, on
//! workers that reuse a harness per Cyrus installation with fresh users per
//! case ([`worker`]). Every case must end converged with nothing lost and
//! every acknowledged write kept (the runner's verdict, unchanged).
//!
//! A failing case is shrunk ([`shrink`]) to a small scenario file that
//! `backupd-sim run` fails again, with a Markdown report ([`finding`]).
//! Coverage ([`coverage`]) says which lock or fault fired on which command
//! under which client mode; interesting cases go to a corpus ([`corpus`])
//! replayed first next time.
//!
//! Case `i` of seed `s` is the same whatever `-j`, `--shard` or the order the
//! workers take cases in: it has its own random stream ([`gen::case_rng`]).

mod aim;
pub mod corpus;
pub mod coverage;
pub mod finding;
pub mod gen;
pub mod known;
pub mod loss;
mod render;
mod shrink;
mod worker;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::rng::Seed;
use crate::runner::{RunOptions, Timing, Verdict};
use crate::scenario::Scenario;

pub use coverage::Coverage;
pub use finding::Finding;
pub use gen::{generate, ExploreMode, GenCase, GenOptions};
pub use render::{BATCHSIZE, SYNC_TIMEOUT};
pub use worker::{sandbox_parent, Installation};

/// Cases whose users are set up together by default.
pub const DEFAULT_BATCH: usize = 3;

/// Everything a campaign needs.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// Cases of the whole campaign (all shards); `None`: until `minutes`.
    pub cases: Option<u64>,
    /// Stop starting cases after this long.
    pub minutes: Option<f64>,
    /// The seed.
    pub seed: Seed,
    /// What may be generated.
    pub gen: GenOptions,
    /// Workers.
    pub jobs: usize,
    /// The Cyrus installations; case `i` runs on installation `i % len`.
    pub installations: Vec<Installation>,
    /// This shard `k` of `n` (1-based): the cases `i` with `i % n == k - 1`.
    pub shard: (u64, u64),
    /// Where findings (shrunk scenario, report, timeline) are written.
    pub out_dir: PathBuf,
    /// The corpus, replayed first and added to; `None`: no corpus.
    pub corpus: Option<PathBuf>,
    /// Where sandboxes go (default: [`sandbox_parent`]).
    pub sandbox: Option<PathBuf>,
    /// Most candidate runs when shrinking one failure.
    pub shrink_runs: usize,
    /// Run a finding's scenario against a real backupd and sync_server.
    pub compare_real: bool,
    /// Cases whose users are set up together.
    pub batch: usize,
    /// The run settings every case takes (target: the fake).
    pub run: RunOptions,
}

/// One case's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseResult {
    /// Its index (a corpus entry's own index for a replayed one).
    pub index: u64,
    /// From the corpus.
    pub corpus: bool,
    /// The Cyrus version it ran on.
    pub version: String,
    /// The verdict.
    pub verdict: String,
    /// What failed.
    pub failures: Vec<String>,
    /// Wall seconds, set-up share included.
    pub seconds: f64,
}

/// How a campaign went.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The shard (k, n).
    pub shard: (u64, u64),
    /// Cases run (corpus replays included, shrinking runs not).
    pub cases_run: u64,
    /// Runs made while shrinking.
    pub shrink_runs: u64,
    /// Wall seconds of the whole campaign.
    pub seconds: f64,
    /// Where the cases' time went (summed over cases).
    pub timing: Timing,
    /// Harness starts, and their seconds (not in any case's timing).
    pub harness_starts: (u64, f64),
    /// Batches of cases run, and how many of them were set up ahead on a
    /// second harness while the batch before ran.
    #[serde(default)]
    pub batches: (u64, u64),
    /// What was generated and what fired.
    pub coverage: Coverage,
    /// Every case that did not pass.
    pub failing: Vec<CaseResult>,
    /// Shrunk failures.
    pub findings: Vec<Finding>,
    /// Cases per Cyrus version.
    pub per_version: BTreeMap<String, u64>,
    /// Cases that failed only on an already triaged behaviour, per behaviour
    /// (its bundled scenario).
    #[serde(default)]
    pub known: BTreeMap<String, u64>,
    /// Every case run: (index, Cyrus version, fingerprint of its scenario),
    /// in index order (corpus replays left out).
    #[serde(default)]
    pub ran: Vec<(u64, String, u64)>,
    /// Every case (corpus replays left out) that set up a loss fault or saw
    /// one fire, in index order: [`loss`].
    #[serde(default)]
    pub loss: Vec<loss::LossCase>,
}

impl Outcome {
    /// Cases per minute.
    pub fn per_minute(&self) -> f64 {
        self.cases_run as f64 / self.seconds.max(1e-3) * 60.0
    }

    /// Add a shard's outcome (its seconds run beside ours: the longest counts).
    pub fn merge(&mut self, other: &Outcome) {
        self.cases_run += other.cases_run;
        self.shrink_runs += other.shrink_runs;
        self.seconds = self.seconds.max(other.seconds);
        self.timing.merge(&other.timing);
        self.harness_starts.0 += other.harness_starts.0;
        self.harness_starts.1 += other.harness_starts.1;
        self.batches.0 += other.batches.0;
        self.batches.1 += other.batches.1;
        self.coverage.merge(&other.coverage);
        self.failing.extend(other.failing.iter().cloned());
        self.findings.extend(other.findings.iter().cloned());
        for (v, n) in &other.per_version {
            *self.per_version.entry(v.clone()).or_default() += n;
        }
        for (v, n) in &other.known {
            *self.known.entry(v.clone()).or_default() += n;
        }
        self.ran.extend(other.ran.iter().cloned());
        self.ran.sort();
        self.loss.extend(other.loss.iter().cloned());
        self.loss.sort_by_key(|c| c.index);
    }
}

/// What the campaign tells its caller as it goes.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Cases done.
    pub done: u64,
    /// Cases that did not pass.
    pub failing: u64,
    /// Findings written.
    pub findings: u64,
    /// Cases per minute so far.
    pub per_minute: f64,
    /// A line to print now (a failure, a finding), if any.
    pub note: Option<String>,
}

/// The seed's case `index`, rendered with user names `{prefix}u{i}`.
pub fn render_case(case: &GenCase, prefix: &str, header: &str) -> Result<Scenario, String> {
    let text = case.to_toml(prefix, header);
    Scenario::parse(&text, Path::new(&format!("{prefix}.toml")))
        .map_err(|e| format!("generated an invalid scenario: {e}\n{text}"))
}

struct Shared {
    coverage: Coverage,
    timing: Timing,
    failing: Vec<CaseResult>,
    findings: Vec<Finding>,
    per_version: BTreeMap<String, u64>,
    done: u64,
    shrink_runs: u64,
    starts: (u64, f64),
    batches: (u64, u64),
    corpus_queue: VecDeque<corpus::Entry>,
    /// Failure signatures already shrunk, with how many times.
    shrunk: BTreeMap<String, usize>,
    known: BTreeMap<String, u64>,
    ran: Vec<(u64, String, u64)>,
    loss: Vec<loss::LossCase>,
}

/// Run a campaign, telling `progress` after every case.
pub fn explore(
    opts: &ExploreOptions,
    progress: impl Fn(&Progress) + Sync,
) -> Result<Outcome, String> {
    if opts.installations.is_empty() {
        return Err("no Cyrus installation to run on".into());
    }
    let started = Instant::now();
    let deadline = opts
        .minutes
        .map(|m| started + Duration::from_secs_f64(m * 60.0));
    let queue = match &opts.corpus {
        Some(dir) => corpus::load(dir, &opts.gen)?.into(),
        None => VecDeque::new(),
    };
    let shared = Mutex::new(Shared {
        coverage: Coverage::default(),
        timing: Timing::default(),
        failing: Vec::new(),
        findings: Vec::new(),
        per_version: BTreeMap::new(),
        done: 0,
        shrink_runs: 0,
        starts: (0, 0.0),
        batches: (0, 0),
        corpus_queue: queue,
        shrunk: BTreeMap::new(),
        known: BTreeMap::new(),
        ran: Vec::new(),
        loss: Vec::new(),
    });
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let (k, n) = (opts.shard.0.max(1), opts.shard.1.max(1));
    let claim = || -> Option<u64> {
        if stop.load(Ordering::SeqCst) || deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let p = next.fetch_add(1, Ordering::SeqCst);
        let i = p.checked_mul(n)?.checked_add(k - 1)?;
        match opts.cases {
            Some(c) if i >= c => None,
            _ => Some(i),
        }
    };
    std::thread::scope(|sc| {
        for _ in 0..opts.jobs.max(1) {
            sc.spawn(|| {
                let mut w = worker::Worker::new(opts.seed, opts.sandbox.clone());
                let claim_batch = || {
                    let mut batch: Vec<Job> = Vec::new();
                    if let Ok(mut s) = shared.lock() {
                        while batch.len() < opts.batch.max(1) {
                            match s.corpus_queue.pop_front() {
                                Some(e) => batch.push(Job::Corpus(e)),
                                None => break,
                            }
                        }
                    }
                    while batch.len() < opts.batch.max(1) {
                        match claim() {
                            Some(i) => batch.push(Job::Case(i)),
                            None => break,
                        }
                    }
                    render_jobs(opts, batch, &shared, &progress, started)
                };
                // The next batch is claimed and set up (on a harness of its
                // own) while this one runs.
                let mut current = claim_batch();
                while !current.is_empty() {
                    let next = claim_batch();
                    for (slot, jobs) in &next {
                        let readies: Vec<worker::Ready> =
                            jobs.iter().map(|(_, _, r)| r.clone()).collect();
                        w.prefetch(&opts.installations[*slot], &readies);
                    }
                    run_groups(opts, &mut w, current, &shared, &progress, started);
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        // Claimed before the deadline, not started: dropped.
                        break;
                    }
                    current = next;
                }
                let done = w.finish();
                if let Ok(mut s) = shared.lock() {
                    s.starts.0 += done.starts as u64;
                    s.starts.1 += done.start_seconds;
                    s.batches.0 += done.batches;
                    s.batches.1 += done.batches_ahead;
                }
            });
        }
    });
    let s = shared
        .into_inner()
        .map_err(|_| "a worker panicked".to_owned())?;
    let mut failing = s.failing;
    failing.sort_by_key(|c| (c.corpus, c.index));
    Ok(Outcome {
        seed: opts.seed.0,
        shard: (k, n),
        cases_run: s.done,
        shrink_runs: s.shrink_runs,
        seconds: started.elapsed().as_secs_f64(),
        timing: s.timing,
        harness_starts: s.starts,
        batches: s.batches,
        coverage: s.coverage,
        failing,
        findings: s.findings,
        per_version: s.per_version,
        known: s.known,
        ran: {
            let mut r = s.ran;
            r.sort();
            r
        },
        loss: {
            let mut l = s.loss;
            l.sort_by_key(|c| c.index);
            l
        },
    })
}

enum Job {
    Case(u64),
    Corpus(corpus::Entry),
}

/// The cases of a batch, rendered and grouped by installation (a group's
/// users are set up on one harness).
type Groups = BTreeMap<usize, Vec<(Job, GenCase, worker::Ready)>>;

/// Render a batch of jobs, grouped by installation.
fn render_jobs(
    opts: &ExploreOptions,
    batch: Vec<Job>,
    shared: &Mutex<Shared>,
    progress: &(impl Fn(&Progress) + Sync),
    started: Instant,
) -> Groups {
    let installs = &opts.installations;
    let mut groups = Groups::new();
    for job in batch {
        let (index, case, prefix) = match &job {
            Job::Case(i) => match gen::case(opts.seed, *i, &opts.gen) {
                Ok(c) => (*i, c, format!("x{i}")),
                Err(e) => {
                    note(progress, shared, started, format!("case {i}: {e}"));
                    continue;
                }
            },
            Job::Corpus(e) => (e.index, e.case.clone(), format!("k{}", e.index)),
        };
        let scenario = match render_case(&case, &prefix, "") {
            Ok(s) => s,
            Err(e) => {
                note(progress, shared, started, format!("case {index}: {e}"));
                continue;
            }
        };
        let slot = (index as usize) % installs.len();
        groups
            .entry(slot)
            .or_default()
            .push((job, case, worker::Ready { index, scenario }));
    }
    groups
}

/// Run and account the groups of a batch on worker `w`.
fn run_groups(
    opts: &ExploreOptions,
    w: &mut worker::Worker,
    groups: Groups,
    shared: &Mutex<Shared>,
    progress: &(impl Fn(&Progress) + Sync),
    started: Instant,
) {
    let installs = &opts.installations;
    for (slot, jobs) in groups {
        let inst = &installs[slot];
        let readies: Vec<worker::Ready> = jobs.iter().map(|(_, _, r)| r.clone()).collect();
        let results = w.run_batch(inst, &readies, &opts.run);
        for ((job, case, ready), result) in jobs.into_iter().zip(results) {
            let from_corpus = matches!(job, Job::Corpus(_));
            let (verdict, failures, seconds, new) = match &result {
                Ok(ran) => {
                    let mut s = lock(shared);
                    s.coverage.add_generated(&ready.scenario);
                    let new = s.coverage.add_run(&ran.events, &ran.report.annotations);
                    s.timing.merge(&ran.report.timing);
                    (
                        ran.report.verdict,
                        ran.report.failures(),
                        ran.report.timing.wall,
                        new,
                    )
                }
                Err(e) => (Verdict::Error, vec![format!("error: {e}")], 0.0, Vec::new()),
            };
            {
                let mut s = lock(shared);
                s.done += 1;
                *s.per_version.entry(inst.version.clone()).or_default() += 1;
                if !from_corpus {
                    s.ran
                        .push((ready.index, inst.version.clone(), fingerprint(&case)));
                    let drawn = loss::drawn(&ready.scenario);
                    let (fired, hollow) = match &result {
                        Ok(ran) => loss::fired(&ran.events),
                        Err(_) => (Vec::new(), 0),
                    };
                    if drawn > 0 || !fired.is_empty() {
                        s.loss.push(loss::LossCase {
                            index: ready.index,
                            drawn,
                            fired,
                            hollow,
                            failed: verdict != Verdict::Pass,
                        });
                    }
                }
            }
            if let (Some(dir), false, false) = (&opts.corpus, new.is_empty(), from_corpus) {
                let reason = format!("first to reach {}", new.join(", "));
                if let Err(e) = corpus::add(dir, opts.seed, ready.index, &case, &reason) {
                    note(progress, shared, started, format!("corpus: {e}"));
                }
            }
            if verdict == Verdict::Pass {
                note_done(progress, shared, started, None);
                continue;
            }
            let known = result
                .as_ref()
                .ok()
                .and_then(|ran| known::explain(&ready.scenario, &ran.report));
            if let Some(k) = known {
                *lock(shared)
                    .known
                    .entry(format!("{} ({})", k.name, k.scenario))
                    .or_default() += 1;
                note_done(progress, shared, started, None);
                continue;
            }
            let case_result = CaseResult {
                index: ready.index,
                corpus: from_corpus,
                version: inst.version.clone(),
                verdict: verdict.to_string(),
                failures: failures.clone(),
                seconds,
            };
            lock(shared).failing.push(case_result);
            let line = format!(
                "case {}{} on Cyrus {}: {verdict}: {}",
                ready.index,
                if from_corpus { " (corpus)" } else { "" },
                inst.version,
                failures
                    .first()
                    .map_or("", |f| f.lines().next().unwrap_or(""))
            );
            note_done(progress, shared, started, Some(line));
            let Ok(ran) = result else { continue };
            let signature = shrink::signature(&ran.report);
            let again = {
                let mut s = lock(shared);
                let n = s.shrunk.entry(signature.clone()).or_default();
                *n += 1;
                *n <= 2
            };
            if !again {
                continue;
            }
            if let Some(dir) = &opts.corpus {
                let _ = corpus::add(dir, opts.seed, ready.index, &case, "failed");
            }
            match finding::find(opts, w, inst, ready.index, &case, &ran.report) {
                Ok((f, runs)) => {
                    let line = format!(
                        "FINDING: case {} shrunk to {} step(s) in {runs} run(s): {} ({})",
                        ready.index,
                        f.steps,
                        f.path.display(),
                        f.reproduced_summary()
                    );
                    {
                        let mut s = lock(shared);
                        s.shrink_runs += runs as u64;
                        s.findings.push(f);
                    }
                    note(progress, shared, started, line);
                }
                Err(e) => note(
                    progress,
                    shared,
                    started,
                    format!("case {}: shrinking failed: {e}", ready.index),
                ),
            }
        }
    }
}

/// A case's identity: a hash (FNV-1a) of its scenario file with fixed names.
pub fn fingerprint(case: &GenCase) -> u64 {
    case.to_toml("f", "")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests;

fn lock(m: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn snapshot(s: &Shared, started: Instant, note: Option<String>) -> Progress {
    Progress {
        done: s.done,
        failing: s.failing.len() as u64,
        findings: s.findings.len() as u64,
        per_minute: s.done as f64 / started.elapsed().as_secs_f64().max(1e-3) * 60.0,
        note,
    }
}

fn note_done(
    progress: &(impl Fn(&Progress) + Sync),
    shared: &Mutex<Shared>,
    started: Instant,
    line: Option<String>,
) {
    let p = snapshot(&lock(shared), started, line);
    progress(&p);
}

fn note(
    progress: &(impl Fn(&Progress) + Sync),
    shared: &Mutex<Shared>,
    started: Instant,
    line: String,
) {
    note_done(progress, shared, started, Some(line));
}
