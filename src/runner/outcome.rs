//! What one scenario run produced: its [`Verdict`], the [`Check`] lines, the
//! [`Stats`], and the [`ScenarioReport`] that carries them to the suite, the
//! JSON and the JUnit report.

use std::path::PathBuf;

use serde::Serialize;

use crate::scenario::ledger::{Class, Classified};

use super::Timing;

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
    /// What the fake refused on its own account: each distinct `VERB: NO …`
    /// (the command's label and the final reply) that was neither `LOCKED`
    /// nor a fault's doing, in order, at most [`REFUSED_MAX`]. backupd
    /// answers `NO` to what it does not serve (`APPLY UNQUOTA`,
    /// `GET ANNOTATION`), which is how a halted rolling client shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
    /// Events after the set-up that the fake's event log dropped from memory
    /// (it keeps the last 1,000,000) before they were counted: connections,
    /// lock hits, faults, the reconnect rate and `refused` then undercount,
    /// and the checks on them fail as not measured.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub events_missed: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// At most this many distinct refusals are kept in [`Stats::refused`].
pub const REFUSED_MAX: usize = 16;

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

#[cfg(test)]
impl ScenarioReport {
    /// A report of scenario `name` with `verdict` and nothing else, for unit
    /// tests of what reads reports.
    pub(crate) fn stub(name: &str, verdict: Verdict) -> ScenarioReport {
        ScenarioReport {
            name: name.into(),
            path: format!("scenarios/{name}.toml").into(),
            description: "d".into(),
            verdict,
            known_failure: None,
            seed: 42,
            seconds: 1.5,
            checks: Vec::new(),
            stats: Default::default(),
            ledger: Vec::new(),
            acknowledged_lost: Vec::new(),
            carried: Vec::new(),
            error: None,
            skipped: (verdict == Verdict::Skip).then(|| "not on this target".into()),
            target: "fake".into(),
            exits: Vec::new(),
            sandbox: None,
            replay: format!("backupd-sim run scenarios/{name}.toml --seed 42"),
            timeline: None,
            annotations: Vec::new(),
            artifact_errors: Vec::new(),
            timing: Default::default(),
        }
    }
}
