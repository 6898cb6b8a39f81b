//! Runs scenarios against the real Cyrus source and `sync_client`, with the
//! fake as the target (or, with [`RunOptions::target`], a real backupd or
//! sync_server, or any csync server), and judges them.
//!
//! One scenario: a fresh [`Harness`] (sandbox, source, target), the set-up and
//! baseline, the steps in order, the final catch-up, then the checks: exit
//! codes, convergence, the ledger (lost, queued), deferrals, lock hits,
//! connections, reconnect rate, restarts, the transcript snapshot. Everything
//! the run did is written to the sandbox, which is kept when the scenario
//! fails (or with `--keep`), with the command that replays it.

mod client;
pub mod compare;
pub mod matrix;
pub mod report;
pub mod suite;
pub mod timing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::check::compare;
use crate::cyrus::{CyrusBins, ImapClient, SyncRun};
use crate::events::EventKind;
use crate::harness::{lock_unsupported, Harness, HarnessOptions, Target};
use crate::mailstate::MailState;
use crate::populate;
use crate::rng::{Rng, Seed};
use crate::scenario::ledger::{classify, Change, Class, Classified, Entry};
use crate::scenario::{ExitExpect, ExitWant, Mode, Scenario, Step, SyncSpec};
use crate::server::control::Request;
use crate::server::HoldPhase;

use client::Supervised;
pub use timing::Timing;

/// How long a hand-run client (`hold_sync_lock`) may take to finish its `-u`
/// once its lock is released.
const HAND_RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// How a scenario ended, measured against what it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every expectation held.
    Pass,
    /// Some expectation did not hold.
    Fail,
    /// It failed, as its `known_failure` says it does on this version.
    Xfail,
    /// It passed although a `known_failure` says it fails here: a change in
    /// behaviour worth a look, so it counts as a failure.
    Xpass,
    /// It could not run (set-up or harness trouble).
    Error,
    /// Not run: the target cannot do what it needs (e.g. faults on a real
    /// server); the reason is in the report.
    Skip,
}

impl Verdict {
    /// True for the verdicts that make a suite fail.
    pub fn is_bad(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Xpass | Verdict::Error)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Xfail => "XFAIL",
            Verdict::Xpass => "XPASS",
            Verdict::Error => "ERROR",
            Verdict::Skip => "SKIP",
        })
    }
}

/// Options for a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The Cyrus installation.
    pub bins: CyrusBins,
    /// The client version (`3.6.1`), for `known_failure`.
    pub version: String,
    /// Override every scenario's seed.
    pub seed: Option<Seed>,
    /// Keep every sandbox (failed ones are always kept).
    pub keep: bool,
    /// Where sandboxes go (default: the system temp dir).
    pub sandbox_parent: Option<PathBuf>,
    /// Write missing or changed transcript snapshots instead of failing.
    pub update_snapshots: bool,
    /// Also copy every scenario's artifacts (transcript, events, report,
    /// timeline) to `DIR/<scenario>/`.
    pub report_dir: Option<PathBuf>,
    /// The server replicated to.
    pub target: Target,
}

/// Counters measured during a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    /// `sync_client` processes run.
    pub client_runs: usize,
    /// Wall time of each of those runs, in seconds (the continuous client's
    /// runs after the one-shot ones): what the scenario spent inside the client.
    pub client_run_seconds: Vec<f64>,
    /// Connections the fake accepted.
    pub connections: u64,
    /// Commands the fake answered `LOCKED`.
    pub lock_hits: u64,
    /// `Deferred:` lines the client printed.
    pub deferrals: u64,
    /// Faults fired.
    pub faults: u64,
    /// Restarts by the operator policy.
    pub restarts: u64,
    /// Connections per second while lock hits happened (first to last), or
    /// while a source-side lock (a held sync lock, a skipuser file) was in
    /// place, whichever is higher.
    pub reconnect_rate: f64,
    /// Seconds from the end of the last lock window (the target's or the
    /// source's) to the convergence a `wait_for = converged` step saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converge_seconds: Option<f64>,
}

/// One expectation and whether it held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// Expected and seen, or the difference.
    pub detail: String,
}

/// The result of one scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Its file.
    pub path: PathBuf,
    /// What it proves.
    pub description: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, for XFAIL/XPASS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_failure: Option<String>,
    /// The seed used.
    pub seed: u64,
    /// Wall time.
    pub seconds: f64,
    /// Every expectation checked.
    pub checks: Vec<Check>,
    /// Measured counters.
    pub stats: Stats,
    /// The classified ledger.
    pub ledger: Vec<Classified>,
    /// Writes the target acknowledged and a later read showed lost.
    pub acknowledged_lost: Vec<crate::history::Violation>,
    /// What the catch-up passes carried, and why.
    pub carried: Vec<crate::history::Carried>,
    /// Trouble that stopped the run (for ERROR).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was not run (for SKIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// The target it ran against (`fake`, `backupd`, `sync_server`, HOST:PORT).
    pub target: String,
    /// Exit status of each `sync_client` run the steps made, in order (`null`
    /// when killed); the catch-up's passes are not included.
    pub exits: Vec<Option<i32>>,
    /// The kept sandbox, if kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<PathBuf>,
    /// The command that replays this run.
    pub replay: String,
    /// The timeline, when written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeline: Option<PathBuf>,
    /// What the runner saw happen, on the fake's clock (for the timeline).
    #[serde(skip)]
    pub annotations: Vec<crate::timeline::Annotation>,
    /// Files of the run (transcript, events, report, timeline, their copies in
    /// `--report-dir`) that could not be written, each with its error. The
    /// verdict stands (it comes from the target), but nothing is lost silently.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_errors: Vec<String>,
    /// Where the wall time went: the client's own time and the rest, by phase.
    pub timing: Timing,
}

impl ScenarioReport {
    /// The failed checks, one line each.
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if let Some(e) = &self.error {
            out.push(format!("error: {e}"));
        }
        out
    }

    /// Ledger entries in a class.
    pub fn count(&self, class: Class) -> u64 {
        self.ledger.iter().filter(|c| c.class == class).count() as u64
    }
}

/// The seed a scenario runs with: `--seed`, else its own, else one derived
/// from its name (so CI runs are repeatable without pinning every file).
pub fn seed_for(s: &Scenario, opts: &RunOptions) -> Seed {
    opts.seed.or(s.seed).unwrap_or_else(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Seed(h % 1_000_000_000)
    })
}

/// Run one scenario to its verdict in a fresh harness. Never panics on
/// scenario or Cyrus trouble: that becomes an ERROR verdict with the reason.
pub fn run_scenario(s: &Scenario, opts: &RunOptions) -> ScenarioReport {
    let started = Instant::now();
    let seed = seed_for(s, opts);
    if let Some(why) = unsupported(s, &opts.target) {
        let mut report = empty_report(s, opts, seed);
        report.verdict = Verdict::Skip;
        report.skipped = Some(why);
        return report;
    }
    let mut hopts = HarnessOptions::new(opts.bins.clone());
    hopts.target = opts.target.clone();
    hopts.sandbox_parent.clone_from(&opts.sandbox_parent);
    hopts.keep = opts.keep;
    hopts.server.seed = seed;
    hopts.repeat_interval_secs = s.client.repeat_interval;
    hopts.channel_sync_timeout = s.client.sync_timeout;
    hopts.batchsize = s.client.batchsize;
    hopts.sync_log = s.client.sync_log;
    hopts.sync_timeout = Duration::from_secs(s.client.timeout);
    let mut h = match Harness::start(hopts) {
        Ok(h) => h,
        Err(e) => {
            let mut report = empty_report(s, opts, seed);
            report.error = Some(format!("starting the harness: {e}"));
            report.seconds = started.elapsed().as_secs_f64();
            return report;
        }
    };
    let mut report = run_on(&h, s, opts, seed);
    report.seconds = started.elapsed().as_secs_f64();
    write_artifacts(&h, &mut report);
    if let Some(dir) = &opts.report_dir {
        let dir = dir.join(&s.name);
        match std::fs::create_dir_all(&dir) {
            Ok(()) => {
                for f in [
                    "transcript.txt",
                    "events.jsonl",
                    "report.json",
                    "timeline.svg",
                    "timeline.html",
                ] {
                    let to = dir.join(f);
                    if let Err(e) = std::fs::copy(h.sandbox().join(f), &to) {
                        report
                            .artifact_errors
                            .push(format!("copying {f} to `{}`: {e}", to.display()));
                    }
                }
                report.timeline = Some(dir.join("timeline.html"));
            }
            Err(e) => report
                .artifact_errors
                .push(format!("creating `{}`: {e}", dir.display())),
        }
    }
    if opts.keep || report.verdict.is_bad() {
        h.keep_sandbox();
        report.sandbox = Some(h.sandbox().to_owned());
        report
            .timeline
            .get_or_insert_with(|| h.sandbox().join("timeline.html"));
    }
    drop(h);
    report
}

/// Why scenario `s` cannot run against `target`, if it cannot: faults and
/// triggers are the fake's own; a real backupd can only be locked per user with
/// `ctl_backups lock`; a sync_server or a `HOST:PORT` cannot be locked; a
/// `HOST:PORT` cannot be read back, so `wait_for = converged` is out there.
pub fn unsupported(s: &Scenario, target: &Target) -> Option<String> {
    let kind = target.kind_name();
    if !s.targets.is_empty() && !s.targets.iter().any(|t| t == kind) {
        return Some(format!(
            "the scenario is only meaningful on {} (its `targets`)",
            s.targets.join(", ")
        ));
    }
    if target.is_fake() {
        return None;
    }
    fn walk(steps: &[Step], target: &Target) -> Option<String> {
        for (i, step) in steps.iter().enumerate() {
            let why = match step {
                Step::Fault(f) => Some(format!(
                    "fault `{}`: faults are injected by the fake only",
                    f.action
                )),
                Step::Trigger { .. } => {
                    Some("triggers hold commands inside the fake only".to_owned())
                }
                Step::Lock(l) => lock_unsupported(l, target),
                Step::HoldSyncLock(_) => Some(
                    "hold_sync_lock needs the fake: it holds the hand-run client's GET USER"
                        .to_owned(),
                ),
                Step::WaitFor(w)
                    if w.event == "converged" && matches!(target, Target::Remote { .. }) =>
                {
                    Some("`wait_for = converged` needs a target that can be read back".to_owned())
                }
                _ => None,
            };
            if let Some(why) = why {
                return Some(format!("step {} ({}): {why}", i + 1, step.describe()));
            }
        }
        None
    }
    walk(&s.steps, target)
}

fn empty_report(s: &Scenario, opts: &RunOptions, seed: Seed) -> ScenarioReport {
    let replay = format!(
        "backupd-sim run {} --seed {seed} --keep{}{}",
        s.path.display(),
        opts.bins.cli_arg(),
        if opts.target.is_fake() {
            String::new()
        } else {
            format!(" --target {}", opts.target.name())
        }
    );
    ScenarioReport {
        name: s.name.clone(),
        path: s.path.clone(),
        description: s.description.clone(),
        verdict: Verdict::Error,
        known_failure: None,
        seed: seed.0,
        seconds: 0.0,
        checks: Vec::new(),
        stats: Stats::default(),
        ledger: Vec::new(),
        acknowledged_lost: Vec::new(),
        carried: Vec::new(),
        error: None,
        skipped: None,
        target: opts.target.name(),
        exits: Vec::new(),
        sandbox: None,
        replay,
        timeline: None,
        annotations: Vec::new(),
        artifact_errors: Vec::new(),
        timing: Timing::default(),
    }
}

/// Run one scenario on an existing harness (shared by `explore`, which gives
/// every case fresh users). The harness' client settings are used as they are;
/// locks, faults and holds are cleared at the end.
pub fn run_on(h: &Harness, s: &Scenario, opts: &RunOptions, seed: Seed) -> ScenarioReport {
    run_on_setup(h, s, opts, seed, None)
}

/// Like [`run_on`], for a caller that has set the users up already, as the
/// set-up would have: each filled with [`populate::fill_user`] in order from
/// `Rng::new(seed).fork("source")` (`rng` is that stream afterwards), the
/// `baseline` ones replicated and checked converged. `explore` prepares the
/// users of several cases with one client run this way.
pub fn run_prepared(
    h: &Harness,
    s: &Scenario,
    opts: &RunOptions,
    seed: Seed,
    rng: Rng,
) -> ScenarioReport {
    run_on_setup(h, s, opts, seed, Some(rng))
}

fn run_on_setup(
    h: &Harness,
    s: &Scenario,
    opts: &RunOptions,
    seed: Seed,
    prepared: Option<Rng>,
) -> ScenarioReport {
    let started = Instant::now();
    // The expectations for this client version (`[expect.versions."3.10"]`).
    let resolved = s.for_version(&opts.version);
    let s = &resolved;
    let mut report = empty_report(s, opts, seed);
    // This scenario's verdict rests on its own history.
    if let Some(mut history) = h.fake().history() {
        history.clear();
    }
    let mut run = Run {
        s,
        h,
        rng: Rng::new(seed).fork("source"),
        ledger: Vec::new(),
        runs: Vec::new(),
        checks: Vec::new(),
        client: None,
        restarts: 0,
        triggers: Vec::new(),
        opts,
        setup_seq: 0,
        annotations: Vec::new(),
        converged_seen: false,
        step_runs: None,
        acked_lost: Vec::new(),
        carried: Vec::new(),
        holders: Vec::new(),
        skipped: Vec::new(),
        source_windows: Vec::new(),
        last_lock_us: None,
        converge_seconds: None,
        timing: Timing::default(),
        client_started: None,
        prepared,
    };
    let outcome = run.execute();
    let (checks, ledger, stats) = match outcome {
        Ok(()) => run.judge(),
        Err(e) => {
            // What the target acknowledged is judged even when a step failed:
            // the loss may be why it failed.
            run.shutdown();
            run.read_target("the runner's read after the error");
            let history = run.history_check(None);
            report.error = Some(e);
            let mut checks = std::mem::take(&mut run.checks);
            checks.push(history);
            (checks, Vec::new(), run.stats())
        }
    };
    let cleared = Instant::now();
    let _ = h.clear();
    run.timing.lap("clear", cleared);
    // The steps' runs only: how many catch-up passes follow depends on timing.
    let steps = run.step_runs.unwrap_or(run.runs.len());
    report.exits = run.runs[..steps].iter().map(|r| r.status).collect();
    report.annotations = std::mem::take(&mut run.annotations);
    report.checks = checks;
    report.ledger = ledger;
    report.acknowledged_lost = std::mem::take(&mut run.acked_lost);
    report.carried = std::mem::take(&mut run.carried);
    report.stats = stats;
    let failed = report.error.is_some() || report.checks.iter().any(|c| !c.ok);
    let known = s.expect.known_failure.as_ref().filter(|k| {
        (k.versions.is_empty()
            || k.versions
                .iter()
                .any(|v| crate::scenario::version_matches(v, &opts.version)))
            && (k.targets.is_empty() || k.targets.iter().any(|t| t == opts.target.kind_name()))
    });
    report.verdict = match (report.error.is_some(), failed, known) {
        (true, _, _) => Verdict::Error,
        (false, true, Some(_)) => Verdict::Xfail,
        (false, false, Some(_)) => Verdict::Xpass,
        (false, true, None) => Verdict::Fail,
        (false, false, None) => Verdict::Pass,
    };
    report.known_failure = known.map(|k| k.reason.clone());
    report.seconds = started.elapsed().as_secs_f64();
    run.timing.wall = report.seconds;
    run.timing.client = run
        .timing
        .phases
        .iter()
        .filter(|(p, _)| timing::CLIENT_PHASES.contains(&p.as_str()))
        .map(|(_, s)| s)
        .sum::<f64>()
        + run.timing.continuous;
    report.timing = std::mem::take(&mut run.timing);
    report
}

/// The timing phase a step's time goes to.
fn step_phase(step: &Step) -> &'static str {
    match step {
        Step::Sync(_) => "sync steps",
        Step::WaitMs(_) | Step::WaitFor(_) => "waits",
        Step::Start | Step::Stop | Step::Kill => "continuous client control",
        Step::Lock(_) | Step::Unlock(_) | Step::Fault(_) | Step::Clear | Step::Mark(_) => {
            "locks and faults"
        }
        Step::Trigger { .. } => "triggers",
        Step::HoldSyncLock(_)
        | Step::ReleaseSyncLock { .. }
        | Step::SkipUser(_)
        | Step::UnskipUser(_) => "source-side locks",
        _ => "source changes",
    }
}

/// Write the run's files into its sandbox. A failed write is named in
/// `report.artifact_errors` (so in the summary and the JSON report), never
/// dropped; report.json is written last, holding the earlier failures.
fn write_artifacts(h: &Harness, report: &mut ScenarioReport) {
    let dir = h.sandbox();
    let mut errors = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        if let Err(e) = std::fs::write(&path, bytes) {
            errors.push(format!("writing `{}`: {e}", path.display()));
        }
    };
    write("transcript.txt", h.transcript().as_bytes());
    if let Some(json) = h.fake_store_json() {
        write("fake-store.json", json.as_bytes());
    }
    let events: Vec<crate::events::Event> = h.fake().events().events().cloned().collect();
    let mut lines = String::new();
    for e in &events {
        if let Ok(l) = serde_json::to_string(e) {
            lines.push_str(&l);
            lines.push('\n');
        }
    }
    write("events.jsonl", lines.as_bytes());
    let mut input = crate::timeline::TimelineInput::new(
        format!("{}: {}", report.name, report.description),
        &events,
    );
    input.annotations.clone_from(&report.annotations);
    if let Err(e) = crate::timeline::write_files(dir, &input) {
        errors.push(format!("writing the timeline in `{}`: {e}", dir.display()));
    }
    report.artifact_errors.append(&mut errors);
    let path = dir.join("report.json");
    let written = serde_json::to_string_pretty(&*report)
        .map_err(std::io::Error::from)
        .and_then(|json| std::fs::write(&path, json));
    if let Err(e) = written {
        report
            .artifact_errors
            .push(format!("writing `{}`: {e}", path.display()));
    }
}

struct Trigger {
    id: u64,
    step: usize,
    then: Vec<Step>,
    deadline: Instant,
    required: bool,
}

/// The history mark that starts the catch-up passes.
const CATCH_UP: &str = "catch-up";

/// The name of the history check's line in every report.
const ACKED: &str = "acknowledged writes kept";

/// One scenario in progress.
struct Run<'a> {
    s: &'a Scenario,
    h: &'a Harness,
    rng: Rng,
    ledger: Vec<Entry>,
    runs: Vec<SyncRun>,
    checks: Vec<Check>,
    client: Option<Supervised>,
    restarts: u32,
    triggers: Vec<Trigger>,
    opts: &'a RunOptions,
    /// Events up to this sequence number belong to the set-up, not the steps.
    setup_seq: u64,
    /// What happened, for the timeline.
    annotations: Vec<crate::timeline::Annotation>,
    /// The first time the backup was seen converged during the steps.
    converged_seen: bool,
    /// Client runs made by the steps (the catch-up's passes come after).
    step_runs: Option<usize>,
    /// What the history check found lost, and what the catch-up carried.
    acked_lost: Vec<crate::history::Violation>,
    carried: Vec<crate::history::Carried>,
    /// Hand-run clients holding a user's sync lock (`hold_sync_lock`).
    holders: Vec<Holder>,
    /// Users with a `skipuser-USER` file, and since when (fake time, µs).
    skipped: Vec<(String, u64)>,
    /// Source-side lock windows that ended (fake time, µs): for the reconnect rate.
    source_windows: Vec<(u64, u64)>,
    /// The last time (fake time, µs) a lock window was seen open or closed.
    last_lock_us: Option<u64>,
    /// Seconds from `last_lock_us` to the convergence `wait_for` saw.
    converge_seconds: Option<f64>,
    /// Where the time went.
    timing: Timing,
    /// When the continuous client was started.
    client_started: Option<Instant>,
    /// The source stream after the caller's set-up ([`run_prepared`]).
    prepared: Option<Rng>,
}

/// A hand-run `sync_client -u USER` whose `GET USER` the fake holds: it
/// holds the user's sync lock on the source meanwhile.
struct Holder {
    name: String,
    hold: u64,
    client: crate::cyrus::RunningSyncClient,
    since_us: u64,
}

fn check(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        ok,
        detail: detail.into(),
    }
}

impl Run<'_> {
    fn note(&mut self, kind: crate::timeline::AnnotationKind, label: impl Into<String>) {
        let t = self.h.fake().now_us();
        self.annotations
            .push(crate::timeline::Annotation::new(t, kind, label));
    }

    fn execute(&mut self) -> Result<(), String> {
        self.setup()?;
        self.setup_seq = self.h.fake().events().events().last().map_or(0, |e| e.seq);
        for (i, step) in self.s.steps.iter().enumerate() {
            self.serve_triggers()?;
            self.note(
                crate::timeline::AnnotationKind::Step,
                format!("step {}: {}", i + 1, step.describe()),
            );
            self.h.fake().history_mark(&format!("step {}", i + 1));
            // A window closed by this step ends now.
            self.see_locks();
            let t = Instant::now();
            let done = self.step(i + 1, step);
            self.timing.lap(step_phase(step), t);
            done.map_err(|e| format!("step {} ({}): {e}", i + 1, step.describe()))?;
        }
        // Required triggers still pending get until their deadline to be reached.
        for t in self.triggers.iter().filter(|t| !t.required) {
            self.h.fake().release_hold(t.id);
        }
        self.triggers.retain(|t| t.required);
        let t = Instant::now();
        let mut seen = self.h.fake().pokes();
        while !self.triggers.is_empty() {
            self.serve_triggers()?;
            if !self.triggers.is_empty() {
                seen = self.h.fake().wait_poke(seen, self.next_wake());
            }
        }
        self.timing.lap("waits", t);
        if self.s.expect.catch_up {
            self.catch_up()?;
        } else {
            self.shutdown();
            self.read_target("the runner's read after the steps");
        }
        Ok(())
    }

    /// Read every user the target acknowledged a write for, over csync, so
    /// that the history holds what the target has now (see
    /// [`crate::history`]). A failed read is a failed check: the verdict must
    /// not rest on reads that never happened.
    fn read_target(&mut self, phase: &str) {
        let users = match self.h.fake().history() {
            Some(h) => h.users_written(),
            None => return,
        };
        if users.is_empty() {
            return;
        }
        self.h.fake().history_mark(phase);
        let t = Instant::now();
        let read = self.h.read_target(&users);
        self.timing.lap("target reads", t);
        if let Err(e) = read {
            self.checks.push(check(
                format!("{phase} of the target"),
                false,
                e.to_string(),
            ));
        }
    }

    fn setup(&mut self) -> Result<(), String> {
        if let Some(rng) = self.prepared.take() {
            // The caller filled, replicated and checked the users already.
            self.rng = rng;
            return Ok(());
        }
        let src = self.h.source();
        let t = Instant::now();
        for u in &self.s.users {
            populate::fill_user(src, &u.name, u.messages, &mut self.rng)
                .map_err(|e| format!("filling {}: {e}", u.name))?;
            if !u.fixtures.is_empty() {
                let mut c = src.login_as(&u.name).map_err(|e| e.to_string())?;
                for f in &u.fixtures {
                    let body = populate::fixture(f).ok_or_else(|| format!("no fixture `{f}`"))?;
                    c.append("INBOX", &[], None, body)
                        .map_err(|e| e.to_string())?;
                }
                c.logout().map_err(|e| e.to_string())?;
            }
        }
        let base: Vec<&str> = self
            .s
            .users
            .iter()
            .filter(|u| u.baseline)
            .map(|u| u.name.as_str())
            .collect();
        let t = self.timing.lap("fill users", t);
        if !base.is_empty() {
            let mut args: Vec<&str> = vec!["-u"];
            args.extend(&base);
            let run = self.h.sync(&args).map_err(|e| e.to_string())?;
            if run.status != Some(0) {
                return Err(format!("the baseline `-u` failed:\n{run}"));
            }
            if self.s.client.sync_log {
                let run = self.h.sync(&["-R", "-1"]).map_err(|e| e.to_string())?;
                if run.status != Some(0) {
                    return Err(format!("the baseline rolling pass failed:\n{run}"));
                }
            }
            let t = self.timing.lap("baseline sync", t);
            // A HOST:PORT target cannot be read: its final `-u` pass judges all.
            if matches!(self.h.target(), Target::Remote { .. }) {
                return Ok(());
            }
            let c = self.h.compare(&base).map_err(|e| e.to_string())?;
            self.timing.lap("baseline check", t);
            if !c.converged() {
                return Err(format!("the baseline did not converge:\n{c}"));
            }
        }
        Ok(())
    }

    fn sync_args(&self, spec: &SyncSpec) -> Vec<String> {
        let mode = spec.mode.unwrap_or(self.s.client.mode);
        let mut args: Vec<String> = vec!["-v".into(), "-v".into()];
        args.extend(self.s.client.flags.iter().cloned());
        args.extend(spec.flags.iter().cloned());
        match mode {
            Mode::User => {
                args.push("-u".into());
                match &spec.users {
                    Some(u) => args.extend(u.iter().cloned()),
                    None => args.extend(self.s.users.iter().map(|u| u.name.clone())),
                }
            }
            Mode::Mailbox => {
                args.push("-m".into());
                args.extend(spec.mailboxes.iter().flatten().cloned());
            }
            Mode::All => args.push("-A".into()),
            Mode::RollingOnce => {
                args.push("-R".into());
                args.push("-1".into());
            }
            Mode::Rolling => args.push("-R".into()),
        }
        args
    }

    fn step(&mut self, n: usize, step: &Step) -> Result<(), String> {
        match step {
            Step::Sync(spec) => {
                let args = self.sync_args(spec);
                self.note(
                    crate::timeline::AnnotationKind::ClientStart,
                    format!("sync_client {}", args.join(" ")),
                );
                // Triggers are served while the client runs: it is the client's
                // command that a trigger holds.
                let h = self.h;
                let run = std::thread::scope(|sc| {
                    let mut seen = h.fake().pokes();
                    let t = sc.spawn(move || {
                        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
                        let run = h.sync(&argv);
                        h.fake().poke();
                        run
                    });
                    let mut served = Ok(());
                    while !t.is_finished() {
                        if served.is_ok() {
                            served = self.serve_triggers();
                        }
                        // Woken when the client exits or a trigger's command
                        // is held; else at the next trigger deadline (a real
                        // target's lock windows are ticked every 10 ms).
                        seen = h.fake().wait_poke(seen, self.next_wake());
                    }
                    served.and_then(|()| {
                        t.join()
                            .map_err(|_| "the client thread panicked".to_owned())
                    })
                })?
                .map_err(|e| e.to_string())?;
                self.note(
                    crate::timeline::AnnotationKind::ClientExit { status: run.status },
                    format!(
                        "sync_client exited {}",
                        run.status
                            .map_or_else(|| "(killed)".into(), |s| s.to_string())
                    ),
                );
                let want = spec
                    .expect_exit
                    .as_ref()
                    .map(|e| e.for_version(&self.opts.version));
                if let Some(want) = want {
                    let ok = match want {
                        ExitWant::Code(c) => run.status == Some(c) && !run.timed_out,
                        ExitWant::Timeout => run.timed_out,
                    };
                    self.checks.push(check(
                        format!("step {n}: exit status"),
                        ok,
                        format!(
                            "expected {want} (Cyrus {}), got {}",
                            self.opts.version,
                            if run.timed_out {
                                "still running at the timeout (killed)".into()
                            } else {
                                run.status
                                    .map_or_else(|| "none (killed)".into(), |s| s.to_string())
                            }
                        ),
                    ));
                }
                if run.timed_out && want != Some(ExitWant::Timeout) {
                    self.checks.push(check(
                        format!("step {n}: finished"),
                        false,
                        format!("killed at the timeout:\n{run}"),
                    ));
                }
                self.runs.push(run);
                Ok(())
            }
            Step::Start => {
                if self.client.is_some() {
                    return Err("the continuous client is already running".into());
                }
                let mut args = vec![
                    "-n".to_owned(),
                    crate::harness::CHANNEL.to_owned(),
                    "-v".into(),
                    "-v".into(),
                ];
                args.extend(self.s.client.flags.iter().cloned());
                args.push("-R".into());
                let log_run = self.h.source().sync_log_run_path(crate::harness::CHANNEL);
                self.note(
                    crate::timeline::AnnotationKind::ClientStart,
                    "sync_client -R (continuous)",
                );
                let shared = std::sync::Arc::clone(self.h.fake());
                self.client_started = Some(Instant::now());
                self.client = Some(Supervised::start(
                    self.h.client().clone(),
                    args,
                    self.s.client.policy,
                    log_run,
                    std::sync::Arc::new(move || shared.now_us()),
                )?);
                Ok(())
            }
            Step::Stop => {
                self.stop_client();
                Ok(())
            }
            Step::Kill => {
                let c = self
                    .client
                    .as_ref()
                    .ok_or("no continuous client is running")?;
                c.kill();
                Ok(())
            }
            Step::WaitMs(ms) => {
                let until = Instant::now() + Duration::from_millis(*ms);
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    self.serve_triggers()?;
                    std::thread::sleep(left.min(Duration::from_millis(10)));
                }
                Ok(())
            }
            Step::WaitFor(w) => {
                let deadline = Instant::now() + Duration::from_millis(w.timeout_ms);
                loop {
                    self.see_locks();
                    let have = self.count_event(&w.event, w.verb.as_deref())?;
                    if have >= w.count {
                        if w.event == "converged" && !self.converged_seen {
                            let now = self.h.fake().now_us();
                            self.converge_seconds = self
                                .last_lock_us
                                .map(|t| now.saturating_sub(t) as f64 / 1e6);
                            self.converged_seen = true;
                            self.note(
                                crate::timeline::AnnotationKind::Converged,
                                "backup converged",
                            );
                        }
                        return Ok(());
                    }
                    if Instant::now() > deadline {
                        return Err(format!(
                            "waited {} ms for {} x{}, saw {have}",
                            w.timeout_ms, w.event, w.count
                        ));
                    }
                    self.serve_triggers()?;
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            Step::Trigger {
                when,
                then,
                timeout_ms,
                required,
            } => {
                let m = crate::fault::Match {
                    verb: when.verb.as_ref().map(|v| v.to_ascii_uppercase()),
                    user: when.user.clone(),
                    mailbox: when.mailbox.clone(),
                    session: when.session,
                    index: when.index,
                };
                let id = self.h.fake().add_hold(m, when.nth.unwrap_or(1));
                self.triggers.push(Trigger {
                    id,
                    step: n,
                    then: then.clone(),
                    deadline: Instant::now() + Duration::from_millis(*timeout_ms),
                    required: *required,
                });
                Ok(())
            }
            Step::HoldSyncLock(l) => self.hold_sync_lock(l),
            Step::ReleaseSyncLock { name, expect_exit } => {
                let run = self.release_sync_lock(name)?;
                self.check_exit(n, expect_exit.as_ref(), &run);
                self.runs.push(run);
                Ok(())
            }
            other => self.change(n, other),
        }
    }

    /// The checks of a client run's exit against `expect_exit` (none: only
    /// that it ended before its timeout).
    fn check_exit(&mut self, n: usize, expect_exit: Option<&ExitExpect>, run: &SyncRun) {
        let want = expect_exit.map(|e| e.for_version(&self.opts.version));
        if let Some(want) = want {
            let ok = match want {
                ExitWant::Code(c) => run.status == Some(c) && !run.timed_out,
                ExitWant::Timeout => run.timed_out,
            };
            self.checks.push(check(
                format!("step {n}: exit status"),
                ok,
                format!(
                    "expected {want} (Cyrus {}), got {}",
                    self.opts.version,
                    if run.timed_out {
                        "still running at the timeout (killed)".into()
                    } else {
                        run.status
                            .map_or_else(|| "none (killed)".into(), |s| s.to_string())
                    }
                ),
            ));
        }
        if run.timed_out && want != Some(ExitWant::Timeout) {
            self.checks.push(check(
                format!("step {n}: finished"),
                false,
                format!("killed at the timeout:\n{run}"),
            ));
        }
    }

    /// Start a hand-run `sync_client -u USER` and wait until the fake holds its
    /// `GET USER`: sync_client took the user's sync lock before sending it.
    fn hold_sync_lock(&mut self, l: &crate::scenario::SyncLockSpec) -> Result<(), String> {
        if !self.h.target().is_fake() {
            return Err(
                "hold_sync_lock needs the fake: it holds the hand-run client's GET USER".into(),
            );
        }
        let name = l.name();
        if self.holders.iter().any(|h| h.name == name) {
            return Err(format!("the sync lock `{name}` is held already"));
        }
        let m = crate::fault::Match {
            verb: Some("GET USER".into()),
            user: Some(l.user.clone()),
            ..crate::fault::Match::default()
        };
        let hold = self.h.fake().add_hold(m, 1);
        let args: Vec<String> = ["-n", crate::harness::CHANNEL, "-v", "-v", "-u", &l.user]
            .map(String::from)
            .to_vec();
        let mut client = match self.h.client().spawn(&args) {
            Ok(c) => c,
            Err(e) => {
                self.h.fake().release_hold(hold);
                return Err(format!("starting the hand-run client: {e}"));
            }
        };
        self.note(
            crate::timeline::AnnotationKind::ClientStart,
            format!("hand-run sync_client -u {} ({name})", l.user),
        );
        let deadline = Instant::now() + Duration::from_millis(l.timeout_ms);
        loop {
            if self.h.fake().hold_phase(hold) == Some(HoldPhase::Reached) {
                break;
            }
            let failed = if !client.is_running() {
                Some("exited before its GET USER arrived")
            } else if Instant::now() > deadline {
                Some("sent no GET USER in time")
            } else {
                None
            };
            if let Some(why) = failed {
                self.h.fake().release_hold(hold);
                let run = client
                    .stop(Duration::from_secs(5))
                    .map_err(|e| e.to_string())?;
                return Err(format!(
                    "the hand-run sync_client -u {} {why}:\n{run}",
                    l.user
                ));
            }
            self.serve_triggers()?;
            std::thread::sleep(Duration::from_millis(10));
        }
        let since_us = self.h.fake().now_us();
        self.holders.push(Holder {
            name,
            hold,
            client,
            since_us,
        });
        Ok(())
    }

    /// Let a hand-run client's `GET USER` go on and wait (bounded) for it to end.
    fn release_sync_lock(&mut self, name: &str) -> Result<SyncRun, String> {
        let i = self
            .holders
            .iter()
            .position(|h| h.name == name)
            .ok_or_else(|| format!("no sync lock `{name}` is held"))?;
        let mut h = self.holders.remove(i);
        self.h.fake().release_hold(h.hold);
        let run = h.client.wait(HAND_RUN_TIMEOUT).map_err(|e| e.to_string())?;
        let now = self.h.fake().now_us();
        self.source_windows.push((h.since_us, now));
        self.note(
            crate::timeline::AnnotationKind::ClientExit { status: run.status },
            format!(
                "hand-run sync_client exited {} ({name} released)",
                run.status
                    .map_or_else(|| "(killed)".into(), |s| s.to_string())
            ),
        );
        Ok(run)
    }

    /// Note the time when any lock window is open (the fake's, a real
    /// target's, a held sync lock, a skipuser file).
    fn see_locks(&mut self) {
        let open = !self.h.fake().engine().active_locks().is_empty()
            || self.h.open_locks() > 0
            || !self.holders.is_empty()
            || !self.skipped.is_empty();
        if open {
            self.last_lock_us = Some(self.h.fake().now_us());
        }
    }

    /// `<configdirectory>/sync/<channel>/skipuser-USER`.
    fn skipuser_path(&self, user: &str) -> PathBuf {
        self.h
            .source()
            .sync_log_path(crate::harness::CHANNEL)
            .with_file_name(format!("skipuser-{user}"))
    }

    /// Steps that change the source or the fake (also run inside triggers).
    fn change(&mut self, n: usize, step: &Step) -> Result<(), String> {
        let before = self.ledger.len();
        let result = self.change_inner(n, step);
        let new: Vec<(String, String)> = self.ledger[before..]
            .iter()
            .map(|e| (change_user(&e.change).to_owned(), e.change.to_string()))
            .collect();
        for (user, text) in new {
            self.note(crate::timeline::AnnotationKind::SourceChange { user }, text);
        }
        result
    }

    fn change_inner(&mut self, n: usize, step: &Step) -> Result<(), String> {
        let ctl = |req: Request| self.h.ctl(&req).map(|_| ());
        match step {
            Step::SkipUser(user) => {
                let path = self.skipuser_path(user);
                if let Some(dir) = path.parent().filter(|d| !d.exists()) {
                    // The channel's directory, as Cyrus would make it: the cyrus user's.
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    let (uid, gid) = self.opts.bins.cyrus_ids().map_err(|e| e.to_string())?;
                    crate::cyrus::master::chown_tree(dir, uid, gid).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
                let now = self.h.fake().now_us();
                if !self.skipped.iter().any(|(u, _)| u == user) {
                    self.skipped.push((user.clone(), now));
                }
                Ok(())
            }
            Step::UnskipUser(user) => {
                let path = self.skipuser_path(user);
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let now = self.h.fake().now_us();
                if let Some(i) = self.skipped.iter().position(|(u, _)| u == user) {
                    let (_, since) = self.skipped.remove(i);
                    self.source_windows.push((since, now));
                }
                Ok(())
            }
            Step::Synclog(q) => self.synclog(q),
            Step::SharedSeen(x) => {
                // The owner shares the folder; the reader's \Seen goes to her
                // own seen database (no change of the owner's mail: no ledger entry).
                let mut c = self.login(&x.owner)?;
                c.setacl(&x.folder, &x.reader, "lrs")
                    .map_err(|e| e.to_string())?;
                c.logout().map_err(|e| e.to_string())?;
                let mut c = self.login(&x.reader)?;
                let mailbox = crate::cyrus::to_internal_name(&x.owner, &x.folder);
                c.select(&mailbox).map_err(|e| e.to_string())?;
                c.uid_store(&x.uids, "+FLAGS", &["\\Seen"])
                    .map_err(|e| e.to_string())?;
                c.logout().map_err(|e| e.to_string())
            }
            Step::Lock(l) => self.h.lock(l),
            Step::Unlock(name) => self.h.unlock(name),
            Step::Fault(_) if !self.h.target().is_fake() => {
                Err("faults are injected by the fake only".into())
            }
            Step::Fault(f) => ctl(Request::Fault { fault: f.clone() }),
            Step::Clear => self.h.clear(),
            Step::Mark(m) => ctl(Request::Mark { name: m.clone() }),
            Step::Append(a) => {
                let mut c = self.login(&a.user)?;
                let flags: Vec<&str> = a.flags.iter().map(String::as_str).collect();
                for i in 0..a.count {
                    let body = match &a.fixture {
                        Some(f) => populate::fixture(f)
                            .ok_or_else(|| format!("no fixture `{f}`"))?
                            .to_vec(),
                        None => populate::message(
                            &format!("{}-s{n}", a.user),
                            i,
                            self.rng.below(1024) as usize,
                        ),
                    };
                    let uid = c
                        .append(&a.folder, &flags, None, &body)
                        .map_err(|e| e.to_string())?
                        .ok_or("the source gave no APPENDUID")?;
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Append {
                            user: a.user.clone(),
                            mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                            uid,
                            guid: crate::store::sha1_hex(&body),
                        },
                    });
                }
                c.logout().map_err(|e| e.to_string())
            }
            Step::Flag(f) => {
                let mut c = self.login(&f.user)?;
                c.select(&f.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &f.uids)?;
                let add: Vec<&str> = f.add.iter().map(String::as_str).collect();
                let remove: Vec<&str> = f.remove.iter().map(String::as_str).collect();
                if !add.is_empty() {
                    c.uid_store(&f.uids, "+FLAGS", &add)
                        .map_err(|e| e.to_string())?;
                }
                if !remove.is_empty() {
                    c.uid_store(&f.uids, "-FLAGS", &remove)
                        .map_err(|e| e.to_string())?;
                }
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Flags {
                        user: f.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&f.user, &f.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Expunge(x) => {
                let mut c = self.login(&x.user)?;
                c.select(&x.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &x.uids)?;
                c.uid_store(&x.uids, "+FLAGS", &["\\Deleted"])
                    .map_err(|e| e.to_string())?;
                c.uid_expunge(&x.uids).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Expunge {
                        user: x.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&x.user, &x.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Create(f) | Step::Delete(f) | Step::Subscribe(f) | Step::Unsubscribe(f) => {
                let mut c = self.login(&f.user)?;
                let mailbox = crate::cyrus::to_internal_name(&f.user, &f.folder);
                let user = f.user.clone();
                let change = match step {
                    Step::Create(_) => {
                        c.create(&f.folder).map_err(|e| e.to_string())?;
                        Change::Create { user, mailbox }
                    }
                    Step::Delete(_) => {
                        c.delete(&f.folder).map_err(|e| e.to_string())?;
                        Change::Delete { user, mailbox }
                    }
                    Step::Subscribe(_) => {
                        c.subscribe(&f.folder).map_err(|e| e.to_string())?;
                        Change::Subscription {
                            user,
                            mailbox,
                            on: true,
                        }
                    }
                    _ => {
                        c.unsubscribe(&f.folder).map_err(|e| e.to_string())?;
                        Change::Subscription {
                            user,
                            mailbox,
                            on: false,
                        }
                    }
                };
                self.ledger.push(Entry { step: n, change });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Rename(r) => {
                let mut c = self.login(&r.user)?;
                c.rename(&r.from, &r.to).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Rename {
                        user: r.user.clone(),
                        from: crate::cyrus::to_internal_name(&r.user, &r.from),
                        to: crate::cyrus::to_internal_name(&r.user, &r.to),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Move(m) => {
                let mut c = self.login(&m.user)?;
                c.select(&m.folder).map_err(|e| e.to_string())?;
                // The GUIDs of what moves, for the ledger's appends.
                let guids: BTreeMap<u32, String> = c
                    .uid_fetch_all()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|f| (f.uid, crate::store::sha1_hex(&f.body)))
                    .collect();
                let uids = resolve_uids(&mut c, &m.uids)?;
                let pairs = if uids.is_empty() {
                    Vec::new()
                } else {
                    c.uid_move(&m.uids, &m.to).map_err(|e| e.to_string())?
                };
                if pairs.len() != uids.len() {
                    return Err(format!(
                        "moved {} message(s) but the source's COPYUID names {}",
                        uids.len(),
                        pairs.len()
                    ));
                }
                let (from, to) = (
                    crate::cyrus::to_internal_name(&m.user, &m.folder),
                    crate::cyrus::to_internal_name(&m.user, &m.to),
                );
                for (old, new) in &pairs {
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Append {
                            user: m.user.clone(),
                            mailbox: to.clone(),
                            uid: *new,
                            guid: guids.get(old).cloned().unwrap_or_default(),
                        },
                    });
                }
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Expunge {
                        user: m.user.clone(),
                        mailbox: from,
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::DeleteUser(user) => {
                // As an administrator deletes an account: DELETE of the INBOX
                // deletes every mailbox of the user.
                let mut c = self.h.source().admin().map_err(|e| e.to_string())?;
                let inbox = crate::cyrus::user_inbox(user);
                let mut gone: Vec<String> = c
                    .list("", &format!("{inbox}*"))
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|e| e.name)
                    .filter(|m| *m == inbox || m.starts_with(&format!("{inbox}.")))
                    .collect();
                gone.sort();
                // An admin holds only `l` and `a` implicitly: it gives itself
                // the delete right first, as `cyradm`'s users do.
                c.setacl(&inbox, "admin", "lrswipkxtecda")
                    .map_err(|e| e.to_string())?;
                c.delete(&inbox).map_err(|e| e.to_string())?;
                for mailbox in gone {
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Delete {
                            user: user.clone(),
                            mailbox,
                        },
                    });
                }
                c.logout().map_err(|e| e.to_string())
            }
            Step::Metadata(m) => {
                let mut c = self.login(&m.user)?;
                c.setmetadata(&m.folder, &m.entry, m.value.as_deref())
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Metadata {
                        user: m.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&m.user, &m.folder),
                        entry: m.entry.clone(),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Annotate(a) => {
                let mut c = self.login(&a.user)?;
                c.select(&a.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &a.uids)?;
                c.store_annotation(&a.uids, &a.entry, a.shared, a.value.as_deref())
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Annotations {
                        user: a.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Acl(a) => {
                let mut c = self.login(&a.user)?;
                c.setacl(&a.folder, &a.identifier, &a.rights)
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Acl {
                        user: a.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Quota(q) => {
                let mut c = self.h.source().admin().map_err(|e| e.to_string())?;
                let root = crate::cyrus::user_inbox(&q.user);
                let mut limits = Vec::new();
                if let Some(v) = q.storage {
                    limits.push(("STORAGE".to_owned(), v));
                }
                if let Some(v) = q.message {
                    limits.push(("MESSAGE".to_owned(), v));
                }
                c.setquota(&root, &limits).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Quota {
                        user: q.user.clone(),
                        root,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            other => Err(format!("`{}` is not a change", other.describe())),
        }
    }

    fn login(&self, user: &str) -> Result<ImapClient, String> {
        self.h.source().login_as(user).map_err(|e| e.to_string())
    }

    /// How long the runner may wait for a poke before it must look again: the
    /// nearest trigger deadline, every 10 ms for a real target's lock windows
    /// (closed on the runner's watch), at most a second.
    fn next_wake(&self) -> Duration {
        if !self.h.target().is_fake() {
            return Duration::from_millis(10);
        }
        let now = Instant::now();
        self.triggers
            .iter()
            .map(|t| t.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(1), Duration::from_secs(1))
    }

    /// Run the `then` steps of every trigger whose command is held now, then
    /// release it; fail a trigger whose deadline passed unreached.
    fn serve_triggers(&mut self) -> Result<(), String> {
        // Real lock windows close on the runner's watch (the fake closes its own).
        self.h.tick()?;
        let mut pending = std::mem::take(&mut self.triggers);
        let mut result = Ok(());
        pending.retain(|t| {
            if result.is_err() {
                return true;
            }
            match self.h.fake().hold_phase(t.id) {
                Some(HoldPhase::Reached) => {
                    for (i, sub) in t.then.iter().enumerate() {
                        if let Err(e) = self.change(t.step, sub) {
                            result = Err(format!(
                                "step {} trigger action {} ({}): {e}",
                                t.step,
                                i + 1,
                                sub.describe()
                            ));
                            break;
                        }
                    }
                    self.h.fake().release_hold(t.id);
                    false
                }
                Some(HoldPhase::Waiting) if Instant::now() > t.deadline => {
                    self.h.fake().release_hold(t.id);
                    self.checks.push(check(
                        format!("step {}: trigger", t.step),
                        false,
                        "no command matched before its timeout",
                    ));
                    false
                }
                _ => true,
            }
        });
        self.triggers = pending;
        result
    }

    fn count_event(&self, event: &str, verb: Option<&str>) -> Result<u64, String> {
        Ok(match event {
            "converged"
                if self.client.is_some()
                    && *self.h.target() == Target::Real(crate::cyrus::TargetKind::Backupd) =>
            {
                // A real backupd cannot be read while the continuous client is
                // connected: the idle client keeps each user's backup locked
                // (ctl_backups: rc 75). Wait for what convergence needs instead:
                // the channel log drained and no lock window open; the contents
                // are compared after the client stops.
                let src = self.h.source();
                let empty = |p: PathBuf| std::fs::metadata(p).map_or(true, |m| m.len() == 0);
                u64::from(
                    self.h.open_locks() == 0
                        && empty(src.sync_log_path(crate::harness::CHANNEL))
                        && empty(src.sync_log_run_path(crate::harness::CHANNEL)),
                )
            }
            "converged" => {
                let users = self.s.user_names();
                u64::from(
                    self.h
                        .compare(&users)
                        .map_err(|e| e.to_string())?
                        .converged(),
                )
            }
            "client-exit" => u64::from(self.client.as_ref().is_some_and(|c| !c.running())),
            _ => {
                let events = self.h.fake().events();
                events
                    .events()
                    .filter(|e| e.seq > self.setup_seq)
                    .filter(|e| match (&e.kind, event) {
                        (EventKind::LockHit { .. }, "lock-hit") => true,
                        (EventKind::Fault { .. }, "fault") => true,
                        (EventKind::Connected { .. }, "connections") => true,
                        (EventKind::Command { verb: v, .. }, "command") => {
                            verb.is_none_or(|want| {
                                let want = want.to_ascii_uppercase();
                                *v == want
                                    || v.strip_prefix(want.as_str())
                                        .is_some_and(|r| r.starts_with(' '))
                            })
                        }
                        _ => false,
                    })
                    .count() as u64
            }
        })
    }

    fn stop_client(&mut self) {
        if let Some(c) = self.client.take() {
            let stopped_at = Instant::now();
            self.note(
                crate::timeline::AnnotationKind::ClientExit { status: None },
                "continuous sync_client stopped",
            );
            let stopped = c.stop();
            for (t, e) in stopped.life {
                let (kind, label) = match e {
                    client::Life::Exit(status) => (
                        crate::timeline::AnnotationKind::ClientExit { status },
                        format!(
                            "sync_client exited {}",
                            status.map_or_else(|| "(signal)".into(), |s| s.to_string())
                        ),
                    ),
                    client::Life::Restart => (
                        crate::timeline::AnnotationKind::ClientRestart,
                        "restarted by the policy".to_owned(),
                    ),
                };
                self.annotations
                    .push(crate::timeline::Annotation::new(t, kind, label));
            }
            self.runs.extend(stopped.runs);
            self.restarts += stopped.restarts;
            for e in stopped.errors {
                self.checks.push(check("continuous client", false, e));
            }
            if let Some(t) = self.client_started.take() {
                self.timing.continuous += (stopped_at - t).as_secs_f64();
            }
            self.timing.lap("stop the continuous client", stopped_at);
        }
    }

    /// Release every hold, clear locks and faults, stop the client.
    fn shutdown(&mut self) {
        for t in std::mem::take(&mut self.triggers) {
            self.h.fake().release_hold(t.id);
        }
        // Source-side locks go too: held sync locks are released (their
        // clients finish), skipuser files removed.
        let names: Vec<String> = self.holders.iter().map(|h| h.name.clone()).collect();
        for name in names {
            match self.release_sync_lock(&name) {
                Ok(run) => {
                    if run.timed_out {
                        self.checks.push(check(
                            format!("hand-run client {name}"),
                            false,
                            format!("killed at the timeout:\n{run}"),
                        ));
                    }
                    self.runs.push(run);
                }
                Err(e) => self
                    .checks
                    .push(check(format!("hand-run client {name}"), false, e)),
            }
        }
        let skipped: Vec<String> = self.skipped.iter().map(|(u, _)| u.clone()).collect();
        for user in skipped {
            if let Err(e) = self.change_inner(0, &Step::UnskipUser(user.clone())) {
                self.checks
                    .push(check(format!("skipuser-{user}"), false, e));
            }
        }
        let _ = self.h.clear();
        self.stop_client();
    }

    /// Queue one sync log entry with `cyr_synclog` (as the cyrus user: it
    /// drops privileges itself).
    fn synclog(&mut self, q: &crate::scenario::SynclogSpec) -> Result<(), String> {
        let (_, flag, names_mailbox) = crate::scenario::SYNCLOG_KINDS
            .iter()
            .find(|(k, _, _)| *k == q.kind)
            .ok_or_else(|| format!("unknown synclog kind `{}`", q.kind))?;
        let mailbox = crate::cyrus::to_internal_name(&q.user, &q.folder);
        let mut values = match q.kind.as_str() {
            "seen" => {
                let state = self
                    .h
                    .source()
                    .read_state(&[q.user.as_str()])
                    .map_err(|e| e.to_string())?;
                let uniqueid = state
                    .users
                    .get(&q.user)
                    .and_then(|u| u.mailboxes.get(&mailbox))
                    .and_then(|m| m.uniqueid.clone())
                    .ok_or_else(|| format!("no uniqueid for {mailbox} on the source"))?;
                vec![q.user.clone(), uniqueid]
            }
            "sub" => vec![q.user.clone(), mailbox],
            _ if *names_mailbox => vec![mailbox],
            _ => vec![q.user.clone()],
        };
        let conf = self
            .opts
            .bins
            .inside(self.h.source().config_path())
            .map_err(|e| e.to_string())?;
        let mut cmd = self.opts.bins.command("cyr_synclog");
        cmd.arg("-C").arg(conf).arg(flag).args(values.drain(..));
        let shown = format!("{cmd:?}");
        let out = crate::cyrus::target::run_bounded(cmd, Duration::from_secs(30))
            .map_err(|e| e.to_string())?;
        if out.code != Some(0) {
            return Err(format!(
                "{shown}: exit {:?}: {}{}",
                out.code,
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
        Ok(())
    }

    /// Locks and faults cleared, client stopped, then `-R -1` until the
    /// channel log is drained (at most 3 passes).
    fn catch_up(&mut self) -> Result<(), String> {
        self.shutdown();
        self.step_runs = Some(self.runs.len());
        // What the target holds of everything it acknowledged, before a pass
        // can carry anything again.
        self.read_target("the runner's read before the catch-up");
        if !self.s.client.sync_log {
            return Ok(());
        }
        self.h.fake().history_mark(CATCH_UP);
        self.catch_up_passes()?;
        self.read_target("the runner's read after the catch-up");
        Ok(())
    }

    fn catch_up_passes(&mut self) -> Result<(), String> {
        let t = Instant::now();
        let done = self.catch_up_passes_inner();
        self.timing.lap("catch-up sync", t);
        done
    }

    fn catch_up_passes_inner(&mut self) -> Result<(), String> {
        let src = self.h.source();
        for _ in 0..3 {
            let log = src.sync_log_path(crate::harness::CHANNEL);
            let run_file = src.sync_log_run_path(crate::harness::CHANNEL);
            if !log.exists() && !run_file.exists() {
                break;
            }
            let run = self
                .h
                .sync(&["-v", "-v", "-R", "-1"])
                .map_err(|e| e.to_string())?;
            self.runs.push(run);
        }
        Ok(())
    }

    fn stats(&self) -> Stats {
        let events = self.h.fake().events();
        let mut stats = Stats {
            client_runs: self.runs.len(),
            client_run_seconds: self.runs.iter().map(|r| r.elapsed.as_secs_f64()).collect(),
            restarts: u64::from(self.restarts),
            converge_seconds: self.converge_seconds,
            deferrals: self
                .runs
                .iter()
                .map(|r| r.stderr.matches("Deferred: ").count() as u64)
                .sum(),
            ..Stats::default()
        };
        let mut conn_times = Vec::new();
        let (mut first_hit, mut last_hit) = (None, None);
        for e in events.events().filter(|e| e.seq > self.setup_seq) {
            match &e.kind {
                EventKind::Connected { .. } => {
                    stats.connections += 1;
                    conn_times.push(e.t_us);
                }
                EventKind::LockHit { .. } => {
                    stats.lock_hits += 1;
                    first_hit.get_or_insert(e.t_us);
                    last_hit = Some(e.t_us);
                }
                EventKind::Fault { .. } => stats.faults += 1,
                _ => {}
            }
        }
        if let (Some(a), Some(b)) = (first_hit, last_hit) {
            let during = conn_times.iter().filter(|t| (a..=b).contains(*t)).count();
            let secs = (b - a) as f64 / 1e6;
            stats.reconnect_rate = if secs > 0.05 {
                during as f64 / secs
            } else {
                0.0
            };
        }
        // Source-side lock windows (a held sync lock, a skipuser file) get no
        // LOCKED answer from the target: the rate is taken over the windows.
        let now = self.h.fake().now_us();
        let mut windows: Vec<(u64, u64)> = self.source_windows.clone();
        windows.extend(self.holders.iter().map(|h| (h.since_us, now)));
        windows.extend(self.skipped.iter().map(|(_, since)| (*since, now)));
        let secs: f64 = windows
            .iter()
            .map(|(a, b)| b.saturating_sub(*a) as f64 / 1e6)
            .sum();
        if secs > 0.05 {
            let during = conn_times
                .iter()
                .filter(|t| windows.iter().any(|(a, b)| (*a..=*b).contains(*t)))
                .count();
            stats.reconnect_rate = stats.reconnect_rate.max(during as f64 / secs);
        }
        stats
    }

    fn channel_log_text(&self) -> String {
        let src = self.h.source();
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        read(src.sync_log_path(crate::harness::CHANNEL))
            + &read(src.sync_log_run_path(crate::harness::CHANNEL))
    }

    fn judge(&mut self) -> (Vec<Check>, Vec<Classified>, Stats) {
        let users = self.s.user_names();
        let stats = self.stats();
        let mut checks = std::mem::take(&mut self.checks);
        let e = &self.s.expect;
        let t = Instant::now();
        let source = self.h.source().read_state(&users);
        let t = self.timing.lap("read the source", t);
        let source = match source {
            Ok(s) => s,
            Err(err) => {
                checks.push(check("read the source", false, err.to_string()));
                return (checks, Vec::new(), stats);
            }
        };
        if matches!(self.h.target(), Target::Remote { .. }) {
            // Its contents cannot be read back: what it acknowledged and what
            // its answers showed, and a final `-u` that must find nothing to send.
            checks.push(self.history_check(None));
            checks.push(self.final_pass_check(&users));
            return (checks, Vec::new(), stats);
        }
        let backup = self.h.read_backup(&users);
        let t = self.timing.lap("read the backup", t);
        let (backup, scope) = match backup {
            Ok(b) => b,
            Err(err) => {
                checks.push(self.history_check(None));
                checks.push(check("read the backup", false, err.to_string()));
                return (checks, Vec::new(), stats);
            }
        };
        checks.push(self.history_check(Some(crate::history::FinalRead {
            state: &backup,
            users: &users,
            // Flags, counters and subscriptions are read at every scope but UID -> GUID.
            full: scope != crate::cyrus::StateScope::UidGuid,
        })));
        let t = self.timing.lap("history check", t);
        let (source, mut backup): (MailState, MailState) =
            (scope.project(&source), scope.project(&backup));
        let wanted: BTreeSet<&str> = users.iter().copied().collect();
        backup.users.retain(|u, _| wanted.contains(u.as_str()));
        let c = compare(&source, &backup);
        if c.converged() && !self.converged_seen {
            self.converged_seen = true;
            self.note(
                crate::timeline::AnnotationKind::Converged,
                "backup converged (checked after the catch-up)",
            );
        }
        checks.push(check(
            "converged",
            c.converged() == e.converged,
            if c.converged() {
                "the backup equals the source".to_owned()
            } else {
                c.to_string()
            },
        ));
        if e.converged && self.h.target().is_fake() {
            let bad = self.h.verify_bodies();
            checks.push(check("bodies", bad.is_empty(), bad.join("\n")));
        }
        let mut ledger = classify(&self.ledger, &source, &backup, &self.channel_log_text());
        crate::scenario::ledger::mark_acknowledged_lost(&mut ledger, &self.acked_lost);
        let lost: Vec<String> = ledger
            .iter()
            .filter(|c| matches!(c.class, Class::Lost | Class::AcknowledgedLost))
            .map(|c| {
                let how = if c.class == Class::AcknowledgedLost {
                    " (acknowledged by the target, then lost)"
                } else {
                    ""
                };
                format!("step {}: {}{how}", c.entry.step, c.entry.change)
            })
            .collect();
        let queued = ledger.iter().filter(|c| c.class == Class::Queued).count() as u64;
        if let Some(want) = e.lost {
            checks.push(check(
                "lost changes",
                lost.len() as u64 == want,
                format!(
                    "expected {want}, ledger says {}{}",
                    lost.len(),
                    if lost.is_empty() {
                        String::new()
                    } else {
                        format!(":\n  {}", lost.join("\n  "))
                    }
                ),
            ));
        }
        if let Some(want) = e.queued {
            checks.push(check(
                "queued changes",
                queued == want,
                format!("expected {want}, ledger says {queued}"),
            ));
        }
        let ranges = [
            ("deferrals", e.deferrals, stats.deferrals),
            ("lock hits", e.lock_hits, stats.lock_hits),
            ("connections", e.connections, stats.connections),
            ("restarts", e.restarts, stats.restarts),
        ];
        for (name, range, have) in ranges {
            if let Some(r) = range {
                checks.push(check(
                    name,
                    r.contains(have),
                    format!("expected {r}, saw {have}"),
                ));
            }
        }
        if let Some(max) = e.reconnect_rate_max {
            checks.push(check(
                "reconnect rate",
                stats.reconnect_rate <= max,
                format!(
                    "expected at most {max:.1}/s, saw {:.1}/s",
                    stats.reconnect_rate
                ),
            ));
        }
        // Snapshots hold the fake's transcripts; `compare` sets real ones beside them.
        if e.snapshot && self.h.target().is_fake() {
            checks.push(self.snapshot());
        }
        self.timing.lap("compare and ledger", t);
        (checks, ledger, stats)
    }

    /// Every write the target acknowledged must still be there in every later
    /// read, the final read-back (`final_state`, and whether it shows every
    /// field) included: [`crate::history`].
    fn history_check(&mut self, final_state: Option<crate::history::FinalRead<'_>>) -> Check {
        let shared = self.h.fake();
        let Some(history) = shared.history() else {
            return check(ACKED, false, "no history was kept for this target");
        };
        let report = crate::history::check(crate::history::Input {
            history: &history,
            final_state,
            catch_up_mark: Some(CATCH_UP),
            // backupd keeps every body in the backup of the user that reserved it.
            bodies_kept: match self.h.target() {
                Target::Fake => {
                    shared.session_config().personality == crate::session::Personality::Backupd
                }
                Target::Real(kind) => *kind == crate::cyrus::TargetKind::Backupd,
                Target::FakeSyncServer | Target::Remote { .. } => false,
            },
        });
        drop(history);
        let want = self
            .s
            .expect
            .acknowledged_lost
            .unwrap_or(crate::scenario::Range {
                min: Some(0),
                max: Some(0),
            });
        let lost = report.violations.len() as u64;
        let mut detail = format!(
            "{} write(s) acknowledged, {} read(s) checked; ",
            report.acknowledged, report.reads_checked
        );
        if let Some(why) = &report.incomplete {
            detail.push_str(&format!("no verdict: {why}"));
        } else if lost == 0 {
            detail.push_str("nothing acknowledged was lost");
        } else {
            detail.push_str(&format!("acknowledged write lost: {lost}"));
            for v in &report.violations {
                detail.push_str(&format!("\n  - {v}"));
            }
        }
        if want
            != (crate::scenario::Range {
                min: Some(0),
                max: Some(0),
            })
        {
            detail.push_str(&format!(" (expected {want})"));
        }
        let healed: Vec<&crate::history::Carried> = report
            .carried
            .iter()
            .filter(|c| c.class == crate::history::CarryClass::PreviouslyAcknowledged)
            .collect();
        if !healed.is_empty() {
            detail.push_str(&format!(
                "\n  the catch-up carried {} write(s) the target had acknowledged before:",
                healed.len()
            ));
            for c in healed {
                detail.push_str(&format!("\n  - {}", c.command));
            }
        }
        let ok = report.incomplete.is_none() && want.contains(lost);
        self.acked_lost = report.violations;
        self.carried = report.carried;
        check(ACKED, ok, detail)
    }

    /// For a target that cannot be read: `-u` of every user after the catch-up
    /// must send no `APPLY` (the client's exit status proves nothing: it exits 0
    /// in many runs that lost changes).
    fn final_pass_check(&mut self, users: &[&str]) -> Check {
        let applies = |h: &Harness| -> u64 {
            h.fake()
                .events()
                .counts()
                .iter()
                .filter(|(verb, _)| verb.starts_with("APPLY "))
                .map(|(_, n)| n)
                .sum()
        };
        let before = applies(self.h);
        let mut args = vec!["-v", "-v", "-u"];
        args.extend(users);
        let run = match self.h.sync(&args) {
            Ok(r) => r,
            Err(e) => return check("final -u sends no APPLY", false, e.to_string()),
        };
        let sent = applies(self.h) - before;
        let converged = sent == 0 && run.status == Some(0);
        let want = self.s.expect.converged;
        check(
            "final -u sends no APPLY",
            converged == want,
            format!(
                "{} (expected the target {}converged); the final -u sent {sent} APPLY and exited {}",
                if converged { "converged" } else { "not converged" },
                if want { "" } else { "not " },
                run.status.map_or_else(|| "(killed)".into(), |s| s.to_string())
            ),
        )
    }

    /// Compare the normalized transcript with `scenarios/snapshots/NAME.snap`.
    fn snapshot(&self) -> Check {
        let text = normalize_transcript(&self.h.transcript());
        let dir = self
            .s
            .path
            .parent()
            .unwrap_or(Path::new("."))
            .join("snapshots");
        let name = self
            .s
            .expect
            .snapshot_name
            .as_deref()
            .unwrap_or(&self.s.name);
        let path = dir.join(format!("{name}.snap"));
        match std::fs::read_to_string(&path) {
            Ok(want) if want == text => {
                check("transcript snapshot", true, path.display().to_string())
            }
            result => {
                if self.opts.update_snapshots {
                    let ok = std::fs::create_dir_all(&dir)
                        .and_then(|()| std::fs::write(&path, &text))
                        .is_ok();
                    return check(
                        "transcript snapshot",
                        ok,
                        format!("written to {}", path.display()),
                    );
                }
                let detail = match result {
                    Ok(want) => format!(
                        "{} differs (re-run with --update-snapshots to accept):\n{}",
                        path.display(),
                        crate::diff::unified(&want, &text, "snapshot", "this run", 3)
                    ),
                    Err(_) => format!(
                        "{} is missing (re-run with --update-snapshots to write it)",
                        path.display()
                    ),
                };
                check("transcript snapshot", false, detail)
            }
        }
    }
}

fn change_user(c: &Change) -> &str {
    match c {
        Change::Append { user, .. }
        | Change::Flags { user, .. }
        | Change::Expunge { user, .. }
        | Change::Create { user, .. }
        | Change::Delete { user, .. }
        | Change::Rename { user, .. }
        | Change::Metadata { user, .. }
        | Change::Annotations { user, .. }
        | Change::Quota { user, .. }
        | Change::Acl { user, .. }
        | Change::Subscription { user, .. } => user,
    }
}

/// Resolve a UID set (`1`, `2:4`, `1,3`, `5:*`) against the selected mailbox.
fn resolve_uids(c: &mut ImapClient, set: &str) -> Result<Vec<u32>, String> {
    let have: Vec<u32> = c
        .uid_fetch_all()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|m| m.uid)
        .collect();
    let max = have.iter().copied().max().unwrap_or(0);
    let num = |s: &str| -> Result<u32, String> {
        if s == "*" {
            Ok(max)
        } else {
            s.parse().map_err(|_| format!("`{set}` is not a UID set"))
        }
    };
    let mut out = BTreeSet::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        let (lo, hi) = (a.min(b), a.max(b));
        out.extend(have.iter().copied().filter(|u| (lo..=hi).contains(u)));
    }
    Ok(out.into_iter().collect())
}

/// A transcript with what changes between runs replaced: the value after a
/// key that carries a time, a checksum or an id (`UNIQUEID`, `SYNC_CRC`,
/// `RECENTTIME`, …) becomes `[X]`, any other number of 9 or more digits `[N]`.
/// Message contents come from the run's seed, so a message's GUID becomes
/// `[GUID]` and the size after it in an `APPLY MESSAGE` literal head `[SIZE]`.
/// A line the event log shortened (ending in `…`) is cut at 100 characters,
/// well before the shortening, whose place moves with the width of the
/// numbers before it.
///
/// A connection's close is placed right after that connection's last line:
/// when a client ends one connection and opens the next at once, which of
/// the two the target notices first is a race (through a relay, the new
/// connection came first in about one run in ten).
pub fn normalize_transcript(t: &str) -> String {
    order_closes(&normalize_lines(t))
}

fn normalize_lines(t: &str) -> String {
    const VOLATILE: [&str; 9] = [
        "UNIQUEID",
        "SYNC_CRC",
        "SYNC_CRC_ANNOT",
        "RECENTTIME",
        "LAST_APPENDDATE",
        "LAST_UPDATED",
        "UIDVALIDITY",
        "POP3_LAST_LOGIN",
        "INTERNALDATE",
    ];
    let mut out = String::with_capacity(t.len());
    for line in t.lines() {
        let mut words = Vec::new();
        let mut after_key = false;
        let mut after_guid = false;
        for w in line.split(' ') {
            let bare = w.trim_start_matches('(');
            let guid = is_guid(bare.trim_end_matches(')'));
            words.push(if after_key {
                "[X]".to_owned()
            } else if guid {
                let open = w.len() - bare.len();
                format!("{}[GUID]{}", &w[..open], &bare[40..])
            } else if after_guid && is_literal_size(w) {
                format!(
                    "[SIZE]{}",
                    w.trim_start_matches(|c: char| c.is_ascii_digit())
                )
            } else {
                normalize_word(w)
            });
            after_guid = guid;
            after_key = VOLATILE
                .iter()
                .any(|k| w.ends_with(k) && w.trim_start_matches("%(") == *k);
        }
        let mut text = words.join(" ");
        if line.ends_with('…') && text.chars().count() > 100 {
            text = text.chars().take(100).collect::<String>() + "…";
        }
        out.push_str(&text);
        out.push('\n');
    }
    out
}

/// Each `-- session N closed…` line moved to right after session N's last
/// line (`CN:`, `SN:`, `-- session N connected`, and the indented lines
/// after them).
fn order_closes(t: &str) -> String {
    let mut lines: Vec<&str> = Vec::new();
    // The closes to print right after line i.
    let mut closes_after: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    // Index in `lines` of each open session's last line.
    let mut last: BTreeMap<u64, usize> = BTreeMap::new();
    let mut current: Option<u64> = None;
    for l in t.lines() {
        if let Some(id) = closed_session(l) {
            match last.remove(&id) {
                Some(i) => closes_after.entry(i).or_default().push(l),
                None => lines.push(l),
            }
            current = None;
            continue;
        }
        current = line_session(l).or(if l.starts_with(' ') { current } else { None });
        if let Some(id) = current {
            last.insert(id, lines.len());
        }
        lines.push(l);
    }
    let mut out = String::with_capacity(t.len());
    for (i, l) in lines.iter().enumerate() {
        for l in std::iter::once(l).chain(closes_after.get(&i).into_iter().flatten()) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// `-- session N closed` (with or without a reason): N.
fn closed_session(l: &str) -> Option<u64> {
    let (id, tail) = l.strip_prefix("-- session ")?.split_once(' ')?;
    if tail == "closed" || tail.starts_with("closed: ") {
        id.parse().ok()
    } else {
        None
    }
}

/// The session of a `CN:`/`SN:` line or of `-- session N connected`.
fn line_session(l: &str) -> Option<u64> {
    if let Some(rest) = l.strip_prefix("-- session ") {
        let (id, tail) = rest.split_once(' ')?;
        return if tail == "connected" {
            id.parse().ok()
        } else {
            None
        };
    }
    let rest = l.strip_prefix('C').or_else(|| l.strip_prefix('S'))?;
    rest.split_once(": ")?.0.parse().ok()
}

/// 40 lower-case hex digits: a message GUID.
fn is_guid(w: &str) -> bool {
    w.len() == 40 && w.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The size closing an `APPLY MESSAGE` literal head: `687}`.
fn is_literal_size(w: &str) -> bool {
    w.strip_suffix('}')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn normalize_word(w: &str) -> String {
    // A delayed delete's name ends in the time as hex: DELETED.user.a.Trash.6B0B076B
    if let Some(i) = w.find("DELETED.") {
        let tail = &w[i..];
        let end = tail.find([')', ' ']).map_or(w.len(), |e| i + e);
        if let Some(dot) = w[..end].rfind('.') {
            let hex = &w[dot + 1..end];
            if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return format!("{}.[HEX]{}", &w[..dot], &w[end..]);
            }
        }
    }
    let mut out = String::new();
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 9 {
            out.push_str("[N]");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for ch in w.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
        } else {
            flush(&mut digits, &mut out);
            out.push(ch);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_hides_what_changes_between_runs() {
        let t = "C1: APPLY MAILBOX %(UNIQUEID ab12 MBOXNAME DELETED.user.a.Trash.6B0B076B SYNC_CRC 123 LAST_UID 6 RECENTTIME 1795880136\n\
                 C2: GET MAILBOXES (user.a DELETED.user.a.Trash.6B0B0773)\n\
                 S2: OK 1234567890 done\n";
        assert_eq!(
            normalize_transcript(t),
            "C1: APPLY MAILBOX %(UNIQUEID [X] MBOXNAME DELETED.user.a.Trash.[HEX] SYNC_CRC [X] LAST_UID 6 RECENTTIME [X]\n\
             C2: GET MAILBOXES (user.a DELETED.user.a.Trash.[HEX])\n\
             S2: OK [N] done\n"
        );
        assert_eq!(
            normalize_transcript(
                "C1: APPLY MESSAGE (%{default d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8 687} …\n\
                 C1: APPLY RESERVE %(GUID (d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8 d8fc4987c55a7ae65b6941ff91e1ab1054ec73c8))\n"
            ),
            "C1: APPLY MESSAGE (%{default [GUID] [SIZE]} …\n\
             C1: APPLY RESERVE %(GUID ([GUID] [GUID]))\n"
        );
        let raced = "-- session 1 connected\n\
                     C1: EXIT\n\
                     S1: OK Finished\n\
                     -- session 2 connected\n\
                     -- session 1 closed: closed by the server after its reply\n\
                     C2: GET USER a\n\
                     S2: NO IMAP_MAILBOX_LOCKED Mailbox locked\n\
                     \x20  ! locked by window w1\n\
                     -- session 2 closed: client closed\n";
        let ordered = "-- session 1 connected\n\
                       C1: EXIT\n\
                       S1: OK Finished\n\
                       -- session 1 closed: closed by the server after its reply\n\
                       -- session 2 connected\n\
                       C2: GET USER a\n\
                       S2: NO IMAP_MAILBOX_LOCKED Mailbox locked\n\
                       \x20  ! locked by window w1\n\
                       -- session 2 closed: client closed\n";
        assert_eq!(
            normalize_transcript(raced),
            ordered,
            "a close raced by the next connection"
        );
        assert_eq!(normalize_transcript(ordered), ordered);
        let long = format!("C1: APPLY X {}…", "y".repeat(150));
        assert_eq!(normalize_transcript(&long).trim_end().chars().count(), 101);
    }
}
