//! Suite reports: the summary table, JSON and JUnit XML.

use std::fmt::Write as _;
use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite, XmlString,
};
use serde::Serialize;

use super::{ScenarioReport, Verdict};
use crate::scenario::ledger::Class;
use crate::term::paint_verdict;

/// The summary table and, for every bad verdict, its failures, sandbox and
/// replay command. Plain text: [`summary_with`] colours the verdicts.
pub fn summary(reports: &[ScenarioReport]) -> String {
    summary_with(reports, false)
}

/// [`summary`], with the verdicts coloured when `color` (for a terminal).
pub fn summary_with(reports: &[ScenarioReport], color: bool) -> String {
    let paint =
        |v: Verdict, width: usize| paint_verdict(v, &format!("{:<width$}", v.to_string()), color);
    let mut out = String::new();
    let w = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "{:<w$}  {:<6} {:>6} {:>5} {:>6} {:>6} {:>5} {:>6} {:>5} {:>9}",
        "scenario",
        "result",
        "secs",
        "runs",
        "conns",
        "locked",
        "defer",
        "queued",
        "lost",
        "ack-lost"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<w$}  {} {:>6.1} {:>5} {:>6} {:>6} {:>5} {:>6} {:>5} {:>9}",
            r.name,
            paint(r.verdict, 6),
            r.seconds,
            r.stats.client_runs,
            r.stats.connections,
            r.stats.lock_hits,
            r.stats.deferrals,
            r.count(Class::Queued),
            r.count(Class::Lost) + r.count(Class::AcknowledgedLost),
            r.count(Class::AcknowledgedLost),
        );
    }
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let _ = writeln!(
        out,
        "\n{} scenarios: {} passed, {} failed, {} xfail, {} xpass, {} errors{}",
        reports.len(),
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Xfail),
        count(Verdict::Xpass),
        count(Verdict::Error),
        match count(Verdict::Skip) {
            0 => String::new(),
            n => format!(", {n} skipped"),
        }
    );
    for r in reports.iter().filter(|r| r.verdict == Verdict::Skip) {
        let _ = writeln!(
            out,
            "SKIP {} on {}: {}",
            r.name,
            r.target,
            r.skipped.as_deref().unwrap_or("")
        );
    }
    for r in reports.iter().filter(|r| !r.artifact_errors.is_empty()) {
        let _ = writeln!(
            out,
            "\nNOT WRITTEN: files of {} (its verdict stands):",
            r.name
        );
        for e in &r.artifact_errors {
            let _ = writeln!(out, "  - {e}");
        }
    }
    for r in reports
        .iter()
        .filter(|r| r.verdict.is_bad() || r.verdict == Verdict::Xfail)
    {
        let _ = writeln!(
            out,
            "\n{} {} (seed {}): {}",
            paint(r.verdict, 0),
            r.name,
            r.seed,
            r.description
        );
        if let Some(k) = &r.known_failure {
            let _ = writeln!(out, "  known failure: {k}");
        }
        for f in r.failures() {
            for (i, line) in f.lines().enumerate() {
                let _ = writeln!(out, "  {}{line}", if i == 0 { "- " } else { "  " });
            }
        }
        if let Some(s) = &r.sandbox {
            let _ = writeln!(
                out,
                "  sandbox: {} (transcript.txt, events.jsonl, report.json)",
                s.display()
            );
        }
        let _ = writeln!(out, "  replay:  {}", r.replay);
    }
    out
}

/// The version of the JSON report's layout (`format_version`, its first
/// field): raised when a field is removed or changes meaning, so a consumer
/// can refuse a layout it does not know. Adding a field keeps the version.
pub const JSON_FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct JsonReport<'a> {
    format_version: u32,
    passed: bool,
    scenarios: &'a [ScenarioReport],
}

/// Every report as JSON: `{ format_version, passed, scenarios: [...] }`.
pub fn json(reports: &[ScenarioReport]) -> String {
    let passed = !reports.iter().any(|r| r.verdict.is_bad());
    serde_json::to_string_pretty(&JsonReport {
        format_version: JSON_FORMAT_VERSION,
        passed,
        scenarios: reports,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// One JUnit test case for a scenario: FAIL and XPASS are `failure`, ERROR is
/// `error`, SKIP `skipped` with the reason, XFAIL passes with its reason in
/// `system-out`. The seed, the replay command and the verdict are properties
/// (and in the failure text, for CI servers that show only that).
fn junit_case(r: &ScenarioReport, classname: &str) -> TestCase {
    let body = format!(
        "{}\nseed {}\nreplay: {}",
        r.failures().join("\n"),
        r.seed,
        r.replay
    );
    let status = match r.verdict {
        Verdict::Fail | Verdict::Xpass => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
            s.set_message(if r.verdict == Verdict::Xpass {
                "passed, but a known failure was expected"
            } else {
                "expectations not met"
            })
            .set_type(r.verdict.to_string())
            .set_description(body.as_str());
            s
        }
        Verdict::Error => {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message("could not run")
                .set_type("ERROR")
                .set_description(body.as_str());
            s
        }
        Verdict::Skip => {
            let mut s = TestCaseStatus::skipped();
            s.set_message(r.skipped.as_deref().unwrap_or(""));
            s
        }
        Verdict::Pass | Verdict::Xfail => TestCaseStatus::success(),
    };
    let mut case = TestCase::new(r.name.as_str(), status);
    case.set_classname(classname)
        .set_time(Duration::from_secs_f64(r.seconds.max(0.0)));
    case.extra.insert(
        XmlString::new("file"),
        XmlString::new(r.path.display().to_string()),
    );
    if r.verdict == Verdict::Xfail {
        case.set_system_out(format!(
            "expected failure: {}\n{}",
            r.known_failure.as_deref().unwrap_or(""),
            body
        ));
    }
    case.add_properties([
        Property::new("seed", r.seed.to_string()),
        Property::new("replay", r.replay.as_str()),
        Property::new("verdict", r.verdict.to_string()),
    ]);
    case
}

/// One JUnit test suite of scenario reports.
fn junit_suite(name: &str, classname: &str, reports: &[ScenarioReport]) -> TestSuite {
    let mut suite = TestSuite::new(name);
    suite.add_test_cases(reports.iter().map(|r| junit_case(r, classname)));
    suite.set_time(Duration::from_secs_f64(
        reports.iter().map(|r| r.seconds.max(0.0)).sum(),
    ));
    suite
}

/// Render a report; XML 1.0 cannot hold every byte, and quick-junit drops
/// what it cannot (colour codes included).
fn render(report: &Report) -> String {
    report
        .to_string()
        .unwrap_or_else(|e| format!("<!-- JUnit report could not be written: {e} -->\n"))
}

/// JUnit XML (the Ant/Surefire shape CI servers read), through quick-junit:
/// one `testcase` per scenario in the suite `scenarios`.
pub fn junit(reports: &[ScenarioReport]) -> String {
    let mut report = Report::new("backupd-sim");
    report.add_test_suite(junit_suite("scenarios", "backupd-sim.scenarios", reports));
    render(&report)
}

/// The version x scenario table of a matrix run: one row per scenario, one
/// column per Cyrus version (in the order run), each cell the verdict; then
/// each version's totals. `-` marks a scenario a version did not run.
pub fn matrix(runs: &[(String, Vec<ScenarioReport>)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (_, reports) in runs {
        for r in reports {
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
    }
    let w = names.iter().map(|n| n.len()).max().unwrap_or(8).max(8);
    let cw = runs.iter().map(|(v, _)| v.len()).max().unwrap_or(6).max(6);
    let mut out = String::new();
    let _ = write!(out, "{:<w$}", "scenario");
    for (v, _) in runs {
        let _ = write!(out, "  {v:<cw$}");
    }
    out.push('\n');
    for name in &names {
        let _ = write!(out, "{name:<w$}");
        for (_, reports) in runs {
            let cell = reports
                .iter()
                .find(|r| r.name == *name)
                .map_or_else(|| "-".to_owned(), |r| r.verdict.to_string());
            let _ = write!(out, "  {cell:<cw$}");
        }
        out.push('\n');
    }
    for (v, reports) in runs {
        let count = |x: Verdict| reports.iter().filter(|r| r.verdict == x).count();
        let _ = writeln!(
            out,
            "Cyrus {v}: {} scenarios: {} passed, {} failed, {} xfail, {} xpass, {} errors",
            reports.len(),
            count(Verdict::Pass),
            count(Verdict::Fail),
            count(Verdict::Xfail),
            count(Verdict::Xpass),
            count(Verdict::Error)
        );
    }
    out
}

/// The numbers of each scenario on each installation, side by side, as a
/// Markdown table: verdict, connections, reconnect rate (connections a second
/// while a lock was in place), seconds from the end of the last lock to
/// convergence (when a `wait_for = converged` step saw it), lost changes.
pub fn matrix_numbers(runs: &[(String, Vec<ScenarioReport>)]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for (_, reports) in runs {
        for r in reports {
            if !names.contains(&r.name.as_str()) {
                names.push(&r.name);
            }
        }
    }
    let mut out = String::from("| scenario |");
    let mut rule = String::from("|---|");
    for (v, _) in runs {
        let _ = write!(out, " {v} | conns | rate/s | converge s | lost |");
        rule.push_str("---|---:|---:|---:|---:|");
    }
    out.push('\n');
    out.push_str(&rule);
    out.push('\n');
    for name in &names {
        let _ = write!(out, "| {name} |");
        for (_, reports) in runs {
            match reports.iter().find(|r| r.name == *name) {
                Some(r) => {
                    let _ = write!(
                        out,
                        " {} | {} | {} | {} | {} |",
                        r.verdict,
                        r.stats.connections,
                        if r.stats.reconnect_rate > 0.0 {
                            format!("{:.1}", r.stats.reconnect_rate)
                        } else {
                            "-".into()
                        },
                        r.stats
                            .converge_seconds
                            .map_or_else(|| "-".into(), |s| format!("{s:.1}")),
                        r.count(Class::Lost),
                    );
                }
                None => out.push_str(" - | | | | |"),
            }
        }
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct JsonVersion<'a> {
    cyrus_version: &'a str,
    passed: bool,
    scenarios: &'a [ScenarioReport],
}

#[derive(Serialize)]
struct JsonMatrix<'a> {
    format_version: u32,
    passed: bool,
    versions: Vec<JsonVersion<'a>>,
}

/// A matrix run as JSON: `{ format_version, passed, versions: [ { cyrus_version, passed, scenarios } ] }`.
pub fn json_matrix(runs: &[(String, Vec<ScenarioReport>)]) -> String {
    let versions: Vec<JsonVersion> = runs
        .iter()
        .map(|(v, reports)| JsonVersion {
            cyrus_version: v,
            passed: !reports.iter().any(|r| r.verdict.is_bad()),
            scenarios: reports,
        })
        .collect();
    serde_json::to_string_pretty(&JsonMatrix {
        format_version: JSON_FORMAT_VERSION,
        passed: versions.iter().all(|v| v.passed),
        versions,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A matrix run as JUnit XML: one `testsuite` per version (`cyrus-<version>`),
/// its test cases in class `backupd-sim.cyrus-<version>`.
pub fn junit_matrix(runs: &[(String, Vec<ScenarioReport>)]) -> String {
    let mut report = Report::new("backupd-sim");
    report.add_test_suites(runs.iter().map(|(v, reports)| {
        junit_suite(
            &format!("cyrus-{v}"),
            &format!("backupd-sim.cyrus-{v}"),
            reports,
        )
    }));
    render(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, verdict: Verdict) -> ScenarioReport {
        ScenarioReport::stub(name, verdict)
    }

    /// The matrix JUnit is built as data: one suite per version with its
    /// counts, each case in its version's class with seed and replay as
    /// properties; a colour code in a failure's text does not reach the XML.
    #[test]
    fn the_matrix_junit_has_a_suite_per_version() {
        let mut bad = report("b", Verdict::Fail);
        bad.error = Some("\x1b[31mred\x1b[0m".into());
        let runs = vec![
            ("3.6.1".to_owned(), vec![report("a", Verdict::Pass), bad]),
            (
                "3.12.4".to_owned(),
                vec![report("a", Verdict::Pass), report("b", Verdict::Skip)],
            ),
        ];
        let xml = junit_matrix(&runs);
        assert!(!xml.contains('\x1b'), "{xml}");
        assert!(
            xml.contains(
                r#"<testsuite name="cyrus-3.6.1" tests="2" skipped="0" errors="0" failures="1""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<testsuite name="cyrus-3.12.4" tests="2" skipped="1" errors="0" failures="0""#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<testcase name="b" classname="backupd-sim.cyrus-3.6.1""#),
            "{xml}"
        );
        assert!(
            xml.contains(
                r#"<property name="replay" value="backupd-sim run scenarios/b.toml --seed 42"/>"#
            ),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="seed" value="42"/>"#),
            "{xml}"
        );
        assert!(xml.contains(r#"file="scenarios/a.toml""#), "{xml}");
    }
}
