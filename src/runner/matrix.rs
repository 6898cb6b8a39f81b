//! A suite on several Cyrus installations: the installations `--cyrus` names,
//! one suite run per installation, and the version x scenario results with
//! their reports (table, JSON, JUnit) and the suite's outcome.

use super::{report, suite, RunOptions, ScenarioReport, Verdict};
use crate::cyrus::{Choice, CyrusBins, CyrusError};
use crate::scenario::Scenario;

/// The installations a command line names (see [`Choice`]): its
/// `--cyrus-prefix`, `--cyrus-bin` or `--cyrus` flags (`all` is the host's and
/// every installed chroot), else `$CYRUS_PREFIX` or `$CYRUS_BIN`, else Debian's.
/// Duplicates next to each other are dropped.
pub fn installations(choice: &Choice) -> Result<Vec<CyrusBins>, CyrusError> {
    choice.installations()
}

/// What [`run_matrix`] tells its caller as it goes.
pub enum Progress<'a> {
    /// An installation's suite is about to run.
    Starting {
        /// The installation.
        bins: &'a CyrusBins,
        /// Its version.
        version: &'a str,
    },
    /// An installation's suite has run.
    Finished {
        /// The installation.
        bins: &'a CyrusBins,
        /// Its version.
        version: &'a str,
        /// Its reports, in the scenarios' order.
        reports: &'a [ScenarioReport],
    },
}

/// The reports of a suite per installation, in the installations' order.
#[derive(Debug, Clone, Default)]
pub struct Matrix {
    /// (version, reports) per installation.
    pub runs: Vec<(String, Vec<ScenarioReport>)>,
}

impl Matrix {
    /// True with more than one installation.
    pub fn is_multi(&self) -> bool {
        self.runs.len() > 1
    }

    /// The version x scenario table, with more than one installation.
    pub fn table(&self) -> Option<String> {
        self.is_multi().then(|| report::matrix(&self.runs))
    }

    /// Each scenario's numbers per installation (Markdown), with more than one.
    pub fn numbers(&self) -> Option<String> {
        self.is_multi().then(|| report::matrix_numbers(&self.runs))
    }

    /// Every report as JSON (one installation: the plain report list).
    pub fn json(&self) -> String {
        match self.runs.as_slice() {
            [(_, reports)] => report::json(reports),
            _ => report::json_matrix(&self.runs),
        }
    }

    /// JUnit XML (one installation: the plain suite).
    pub fn junit(&self) -> String {
        match self.runs.as_slice() {
            [(_, reports)] => report::junit(reports),
            _ => report::junit_matrix(&self.runs),
        }
    }

    /// True when no scenario ran on any installation: every one was SKIP
    /// (or none was selected). Such a suite proves nothing, so it must not pass.
    pub fn nothing_ran(&self) -> bool {
        self.runs
            .iter()
            .all(|(_, reports)| reports.iter().all(|r| r.verdict == Verdict::Skip))
    }

    /// True when some verdict makes the suite fail.
    pub fn any_bad(&self) -> bool {
        self.runs
            .iter()
            .any(|(_, reports)| reports.iter().any(|r| r.verdict.is_bad()))
    }
}

/// Run `scenarios` with `jobs` workers on each installation in turn, telling
/// `progress` before and after each. Every run takes `template`'s options, with
/// the installation and its version instead of the template's, and with several
/// installations the artifacts in `report_dir/<version>/`.
pub fn run_matrix(
    scenarios: &[Scenario],
    installations: Vec<CyrusBins>,
    template: &RunOptions,
    jobs: usize,
    mut progress: impl FnMut(Progress<'_>),
) -> Matrix {
    let multi = installations.len() > 1;
    let mut matrix = Matrix::default();
    for bins in installations {
        let version = bins.version();
        progress(Progress::Starting {
            bins: &bins,
            version: &version,
        });
        let mut run = template.clone();
        if multi {
            run.report_dir = run.report_dir.map(|d| d.join(&version));
        }
        run.bins = bins;
        run.version = version.clone();
        let reports = suite::run_all(scenarios, &run, jobs.max(1));
        progress(Progress::Finished {
            bins: &run.bins,
            version: &version,
            reports: &reports,
        });
        matrix.runs.push((version, reports));
    }
    matrix
}
