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
//!
//! This file owns the entry points ([`run_scenario`], [`run_on`],
//! [`run_prepared`]), the run's state and its artifacts; the pieces:
//! `execute.rs` (set-up and the steps), `change.rs` (IMAP changes and the
//! ledger entries), `client_runs.rs` (hand-run clients, stop, shutdown,
//! catch-up), `judge.rs` (stats, checks), `outcome.rs` (the report types),
//! `redact.rs` (transcript redaction, a table of rules), `timing.rs`, and per
//! suite `suite.rs`, `matrix.rs`, `report.rs`, `compare.rs`.

mod change;
mod client;
mod client_runs;
pub mod compare;
mod execute;
mod judge;
pub mod matrix;
mod outcome;
mod redact;
pub mod report;
pub mod suite;
pub mod timing;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cyrus::{CyrusBins, SyncRun};
use crate::harness::{lock_unsupported, Harness, HarnessOptions, Target};
use crate::rng::{Rng, Seed};
use crate::scenario::ledger::Entry;
use crate::scenario::{KnownFailure, Scenario, Step};

use client::Supervised;
use client_runs::Holder;
pub use outcome::{Check, ScenarioReport, Stats, Verdict, REFUSED_MAX};
pub use redact::normalize_transcript;
pub use timing::Timing;

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

impl RunOptions {
    /// Options to run on `bins` against `target`, the client version read
    /// from the installation once (`master -V`); no seed override, sandboxes
    /// in the system temp dir, removed on a pass, snapshots compared.
    pub fn new(bins: CyrusBins, target: Target) -> RunOptions {
        RunOptions {
            version: bins.version(),
            bins,
            seed: None,
            keep: false,
            sandbox_parent: None,
            update_snapshots: false,
            report_dir: None,
            target,
        }
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
/// set-up would have: each filled with [`crate::populate::fill_user`] in order from
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
    let known = s.expect.known_failure.as_ref().filter(|k| {
        (k.versions.is_empty()
            || k.versions
                .iter()
                .any(|v| crate::scenario::version_matches(v, &opts.version)))
            && (k.targets.is_empty() || k.targets.iter().any(|t| t == opts.target.kind_name()))
    });
    if let Some(c) = known
        .filter(|_| report.error.is_none())
        .and_then(|k| known_failure_check(&report.checks, k))
    {
        report.checks.push(c);
    }
    report.verdict = verdict(report.error.is_some(), &report.checks, known);
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

/// A run's verdict from its error, its checks and the known failure that
/// applies to it (its version and target). A failed check the known failure
/// does not name is a new failure: FAIL, not XFAIL.
fn verdict(error: bool, checks: &[Check], known: Option<&KnownFailure>) -> Verdict {
    let failed = checks.iter().any(|c| !c.ok);
    let unexplained = |k: &KnownFailure| {
        !k.checks.is_empty() && checks.iter().any(|c| !c.ok && !k.checks.contains(&c.name))
    };
    match (error, failed, known) {
        (true, _, _) => Verdict::Error,
        (false, true, Some(k)) if unexplained(k) => Verdict::Fail,
        (false, true, Some(_)) => Verdict::Xfail,
        (false, false, Some(_)) => Verdict::Xpass,
        (false, true, None) => Verdict::Fail,
        (false, false, None) => Verdict::Pass,
    }
}

/// The lines a check lists (a difference, a lost change): `  - …` and
/// `  step …` lines of its detail.
fn listed(c: &Check) -> impl Iterator<Item = &str> {
    c.detail.lines().filter_map(|l| {
        l.strip_prefix("  - ")
            .or_else(|| l.starts_with("  step ").then(|| &l[2..]))
    })
}

/// A failed `known_failure` check when the known failure does not explain
/// this run: it names a check the run does not have (a typo, or a check
/// renamed since: else it would excuse nothing, with no word on why), or a
/// check it excuses lists a line none of its `differences` is in (a new
/// difference beside the known ones).
fn known_failure_check(checks: &[Check], k: &KnownFailure) -> Option<Check> {
    let quote = |v: &[&str]| {
        v.iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<&str> = k
        .checks
        .iter()
        .filter(|n| !checks.iter().any(|c| &c.name == *n))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        return Some(Check {
            name: "known_failure".into(),
            ok: false,
            detail: format!(
                "[expect] known_failure.checks names {} that this run does not have; its checks: {}",
                quote(&missing),
                quote(&names)
            ),
        });
    }
    let unexplained: Vec<&str> = checks
        .iter()
        .filter(|c| {
            !c.ok && k.checks.contains(&c.name) && KnownFailure::LISTING.contains(&c.name.as_str())
        })
        .flat_map(listed)
        .filter(|line| !k.differences.iter().any(|d| line.contains(d.as_str())))
        .collect();
    (!unexplained.is_empty()).then(|| Check {
        name: "known_failure".into(),
        ok: false,
        detail: format!(
            "lines the known failure's `differences` do not name (a new failure beside the known one):\n  {}",
            unexplained.join("\n  ")
        ),
    })
}

/// The history mark that starts the catch-up passes.
const CATCH_UP: &str = "catch-up";

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

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(failed: &[&str]) -> Vec<Check> {
        ["converged", "lost changes", "bodies"]
            .iter()
            .map(|n| Check {
                name: (*n).into(),
                ok: !failed.contains(n),
                detail: String::new(),
            })
            .collect()
    }

    fn known(checks: &[&str]) -> KnownFailure {
        KnownFailure {
            reason: "r".into(),
            versions: Vec::new(),
            targets: Vec::new(),
            checks: checks.iter().map(|c| (*c).to_owned()).collect(),
            differences: Vec::new(),
        }
    }

    /// A known failure turns the failure of the checks it names into XFAIL,
    /// and of any check when it names none; another check failing beside
    /// them is FAIL (a new loss is not hidden); a pass is XPASS.
    #[test]
    fn a_known_failure_excuses_only_the_checks_it_names() {
        let converged = known(&["converged"]);
        let any = known(&[]);
        assert_eq!(verdict(false, &checks(&[]), None), Verdict::Pass);
        assert_eq!(verdict(false, &checks(&["converged"]), None), Verdict::Fail);
        assert_eq!(
            verdict(false, &checks(&["converged"]), Some(&converged)),
            Verdict::Xfail
        );
        assert_eq!(
            verdict(false, &checks(&["converged", "bodies"]), Some(&converged)),
            Verdict::Fail
        );
        assert_eq!(
            verdict(false, &checks(&["lost changes"]), Some(&converged)),
            Verdict::Fail
        );
        assert_eq!(
            verdict(false, &checks(&["converged", "bodies"]), Some(&any)),
            Verdict::Xfail
        );
        assert_eq!(
            verdict(false, &checks(&[]), Some(&converged)),
            Verdict::Xpass
        );
        assert_eq!(
            verdict(true, &checks(&["converged"]), Some(&converged)),
            Verdict::Error
        );
    }

    /// A known failure naming a check the run does not have adds a failed
    /// `known_failure` check that says which; the run is then a FAIL.
    #[test]
    fn a_known_failure_naming_no_such_check_fails_and_says_so() {
        assert!(known_failure_check(&checks(&["converged"]), &known(&["converged"])).is_none());
        assert!(known_failure_check(&checks(&[]), &known(&[])).is_none());
        let typo = known(&["converged", "convergd"]);
        let mut run = checks(&["converged"]);
        let c = known_failure_check(&run, &typo).expect("a check");
        assert!(!c.ok);
        assert!(
            c.detail
                .contains("names `convergd` that this run does not have")
                && c.detail.contains("`lost changes`"),
            "{}",
            c.detail
        );
        run.push(c);
        assert_eq!(verdict(false, &run, Some(&typo)), Verdict::Fail);
    }

    /// A known failure of `converged` explains the differences it names, and
    /// only them: one more line is a failed `known_failure` check, and FAIL.
    #[test]
    fn a_known_failure_explains_only_the_differences_it_names() {
        let mut run = checks(&["converged", "lost changes"]);
        run[0].detail = "not converged: 2 difference(s)\n  - user d: subscription to user.d on the backup only\n  - user d: subscription to user.d.Sent on the backup only\ndiff (- source, + backup):\n- x".into();
        run[1].detail = "expected 0, ledger says 1:\n  step 1: unsubscribe user.d.Sent".into();
        let mut k = known(&["converged", "lost changes"]);
        k.differences = vec![
            "user d: subscription to".into(),
            "step 1: unsubscribe".into(),
        ];
        assert!(known_failure_check(&run, &k).is_none());
        assert_eq!(verdict(false, &run, Some(&k)), Verdict::Xfail);
        run[0].detail = run[0].detail.replace(
            "diff (",
            "  - user d, mailbox user.d, UID 3: lost: message g is not on the backup\ndiff (",
        );
        let c = known_failure_check(&run, &k).expect("a new difference");
        assert_eq!(
            c.detail,
            "lines the known failure's `differences` do not name (a new failure beside the known one):\n  user d, mailbox user.d, UID 3: lost: message g is not on the backup"
        );
        run.push(c);
        assert_eq!(verdict(false, &run, Some(&k)), Verdict::Fail);
    }
}
