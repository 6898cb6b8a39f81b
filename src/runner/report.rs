//! Suite reports: the summary table, JSON and JUnit XML.

use std::fmt::Write as _;

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

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: bool,
    scenarios: &'a [ScenarioReport],
}

/// Every report as JSON.
pub fn json(reports: &[ScenarioReport]) -> String {
    let passed = !reports.iter().any(|r| r.verdict.is_bad());
    serde_json::to_string_pretty(&JsonReport {
        passed,
        scenarios: reports,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters, even escaped.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML (the Ant/Surefire shape CI servers read): one `testcase` per
/// scenario; FAIL and XPASS are `failure`, ERROR is `error`, XFAIL passes
/// with its reason in `system-out`.
pub fn junit(reports: &[ScenarioReport]) -> String {
    let failures = reports
        .iter()
        .filter(|r| matches!(r.verdict, Verdict::Fail | Verdict::Xpass))
        .count();
    let errors = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Error)
        .count();
    let skipped = reports
        .iter()
        .filter(|r| r.verdict == Verdict::Skip)
        .count();
    let time: f64 = reports.iter().map(|r| r.seconds).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"backupd-sim\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">",
        reports.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"scenarios\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        reports.len()
    );
    for r in reports {
        let _ = write!(
            out,
            "    <testcase classname=\"backupd-sim.scenarios\" name=\"{}\" file=\"{}\" time=\"{:.3}\">",
            xml(&r.name),
            xml(&r.path.display().to_string()),
            r.seconds
        );
        let body = format!(
            "{}\nseed {}\nreplay: {}",
            r.failures().join("\n"),
            r.seed,
            r.replay
        );
        match r.verdict {
            Verdict::Fail | Verdict::Xpass => {
                let msg = if r.verdict == Verdict::Xpass {
                    "passed, but a known failure was expected"
                } else {
                    "expectations not met"
                };
                let _ = write!(
                    out,
                    "\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    ",
                    xml(msg),
                    r.verdict,
                    xml(&body)
                );
            }
            Verdict::Error => {
                let _ = write!(
                    out,
                    "\n      <error message=\"could not run\" type=\"ERROR\">{}</error>\n    ",
                    xml(&body)
                );
            }
            Verdict::Xfail => {
                let _ = write!(
                    out,
                    "\n      <system-out>{}</system-out>\n    ",
                    xml(&format!(
                        "expected failure: {}\n{}",
                        r.known_failure.as_deref().unwrap_or(""),
                        body
                    ))
                );
            }
            Verdict::Skip => {
                let _ = write!(
                    out,
                    "\n      <skipped message=\"{}\"/>\n    ",
                    xml(r.skipped.as_deref().unwrap_or(""))
                );
            }
            Verdict::Pass => {}
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
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

#[derive(Serialize)]
struct JsonVersion<'a> {
    cyrus_version: &'a str,
    passed: bool,
    scenarios: &'a [ScenarioReport],
}

#[derive(Serialize)]
struct JsonMatrix<'a> {
    passed: bool,
    versions: Vec<JsonVersion<'a>>,
}

/// A matrix run as JSON: `{ passed, versions: [ { cyrus_version, passed, scenarios } ] }`.
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
        passed: versions.iter().all(|v| v.passed),
        versions,
    })
    .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A matrix run as JUnit XML: one `testsuite` per version, its test cases
/// named `<scenario>` in class `backupd-sim.cyrus-<version>`.
pub fn junit_matrix(runs: &[(String, Vec<ScenarioReport>)]) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"backupd-sim\">\n",
    );
    for (v, reports) in runs {
        let one = junit(reports);
        // Reuse the single-suite rendering: keep its <testsuite> element, named per version.
        let start = one.find("  <testsuite ").unwrap_or(0);
        let end = one.rfind("</testsuites>").unwrap_or(one.len());
        let body = one[start..end]
            .replacen(
                "<testsuite name=\"scenarios\"",
                &format!("<testsuite name=\"cyrus-{}\"", xml(v)),
                1,
            )
            .replace(
                "classname=\"backupd-sim.scenarios\"",
                &format!("classname=\"backupd-sim.cyrus-{}\"", xml(v)),
            );
        out.push_str(&body);
    }
    out.push_str("</testsuites>\n");
    out
}
