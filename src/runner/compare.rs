//! `backupd-sim compare`: the same scenarios against the fake and a real
//! target, side by side.
//!
//! Per scenario: the verdicts, every `sync_client` exit status, the deferral,
//! lock-hit and connection counts, each check's outcome, and how many lines of
//! the normalized transcripts differ. A *difference* is a verdict, an exit
//! status sequence or a check outcome that is not the same on both; counts are
//! shown, not compared (a reconnect storm's size depends on timing). Every
//! difference must be listed in the known-deviations file with its reason, or
//! the comparison fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{normalize_transcript, suite, RunOptions, ScenarioReport, Verdict};
use crate::harness::Target;
use crate::scenario::Scenario;

/// One known difference between the fake and a real target.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// Scenario name.
    pub scenario: String,
    /// Target kind (`backupd`, `sync_server`, `remote`).
    pub target: String,
    /// `verdict`, `exits`, or `check:<name>`.
    pub what: String,
    /// Why it differs.
    pub reason: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviationFile {
    #[serde(default)]
    deviation: Vec<Deviation>,
}

/// Load a known-deviations file; errors name the file and line.
pub fn load_deviations(path: &Path) -> Result<Vec<Deviation>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let file: DeviationFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!(
            "{}{}: {}\n{}",
            path.display(),
            line.map(|l| format!(":{l}")).unwrap_or_default(),
            e.message().trim_end(),
            e.to_string().trim_end()
        )
    })?;
    for d in &file.deviation {
        let ok_what =
            d.what == "verdict" || d.what == "exits" || d.what.strip_prefix("check:").is_some();
        if !ok_what {
            return Err(format!(
                "{}: deviation for `{}`: what = `{}`: expected `verdict`, `exits` or `check:<name>`",
                path.display(),
                d.scenario,
                d.what
            ));
        }
    }
    Ok(file.deviation)
}

/// One difference found, and whether it is a known deviation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// `verdict`, `exits` or `check:<name>`.
    pub what: String,
    /// The fake's side.
    pub fake: String,
    /// The real target's side.
    pub real: String,
    /// The reason from the deviations file, when known.
    pub known: Option<String>,
}

/// One scenario on both targets.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// The fake's report.
    pub fake: ScenarioReport,
    /// The real target's report.
    pub real: ScenarioReport,
    /// Lines that differ between the normalized transcripts (`None` when a side
    /// has none).
    pub transcript_lines_differing: Option<usize>,
    /// The differences.
    pub differences: Vec<Difference>,
}

impl Row {
    /// True when some difference is not a known deviation.
    pub fn unexplained(&self) -> bool {
        self.differences.iter().any(|d| d.known.is_none())
    }

    /// The real target cannot run the scenario: not compared, not a failure.
    pub fn skipped(&self) -> bool {
        self.real.verdict == Verdict::Skip
    }

    /// Either side ended in ERROR: not a comparison, a failure.
    pub fn errored(&self) -> bool {
        self.fake.verdict == Verdict::Error || self.real.verdict == Verdict::Error
    }
}

/// What a comparison of `rows` amounts to, for the exit status: nothing
/// compared (every row skipped), something wrong (an unexplained difference or
/// an ERROR), or agreement.
pub fn outcome(rows: &[Row]) -> Outcome {
    if !rows.is_empty() && rows.iter().all(Row::skipped) {
        Outcome::NothingCompared
    } else if rows.iter().any(|r| r.unexplained() || r.errored()) {
        Outcome::Differ
    } else {
        Outcome::Agree
    }
}

/// See [`outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every scenario compared agrees, or differs only as listed.
    Agree,
    /// An unexplained difference, or a side in ERROR.
    Differ,
    /// The real target could run none of the scenarios.
    NothingCompared,
}

/// Run every scenario on the fake and on `target`, and set them side by side.
/// Transcripts go to `out/fake/<scenario>/` and `out/<target>/<scenario>/`.
pub fn compare(
    scenarios: &[Scenario],
    base: &RunOptions,
    target: &Target,
    jobs: usize,
    out: &Path,
    deviations: &[Deviation],
) -> Vec<Row> {
    let side = |t: &Target| {
        let mut o = base.clone();
        o.target = t.clone();
        o.report_dir = Some(out.join(t.kind_name()));
        o
    };
    // A replica is compared with the fake's sync_server personality.
    let fake_opts = side(&match target {
        Target::Real(crate::cyrus::TargetKind::SyncServer) => Target::FakeSyncServer,
        _ => Target::Fake,
    });
    let real_opts = side(target);
    // What the real target cannot run is SKIP on both sides, without running.
    let (runnable, skipped): (Vec<&Scenario>, Vec<&Scenario>) = scenarios
        .iter()
        .partition(|s| super::unsupported(s, target).is_none());
    let runnable: Vec<Scenario> = runnable.into_iter().cloned().collect();
    eprintln!(
        "backupd-sim compare: {} scenario(s) on {} ({} that {} cannot run are skipped)",
        runnable.len(),
        fake_opts.target.name(),
        skipped.len(),
        target.name()
    );
    let mut fake = suite::run_all(&runnable, &fake_opts, jobs);
    eprintln!(
        "backupd-sim compare: {} scenario(s) on {}",
        runnable.len(),
        target.name()
    );
    let mut real = suite::run_all(&runnable, &real_opts, jobs);
    for s in skipped {
        let r = super::run_scenario(s, &real_opts);
        let mut f = r.clone();
        f.target = fake_opts.target.name();
        f.skipped = Some(format!(
            "not run: {}",
            r.skipped.as_deref().unwrap_or_default()
        ));
        fake.push(f);
        real.push(r);
    }
    fake.into_iter()
        .zip(real)
        .map(|(f, r)| {
            let read = |o: &RunOptions, name: &str| -> Option<String> {
                let dir = o.report_dir.as_ref()?.join(name);
                std::fs::read_to_string(dir.join("transcript.txt"))
                    .ok()
                    .map(|t| comparable_transcript(&t))
            };
            let (tf, tr) = (read(&fake_opts, &f.name), read(&real_opts, &r.name));
            let transcript_lines_differing = match (&tf, &tr) {
                (Some(a), Some(b)) if r.verdict != Verdict::Skip => {
                    let dir = real_opts.report_dir.as_ref().map(|d| d.join(&r.name));
                    if let Some(dir) = dir {
                        let _ = std::fs::write(dir.join("transcript.normalized.txt"), b);
                    }
                    if let Some(dir) = fake_opts.report_dir.as_ref().map(|d| d.join(&f.name)) {
                        let _ = std::fs::write(dir.join("transcript.normalized.txt"), a);
                    }
                    Some(lines_differing(a, b))
                }
                _ => None,
            };
            let differences = differences(&f, &r, target.kind_name(), deviations);
            Row {
                scenario: f.name.clone(),
                fake: f,
                real: r,
                transcript_lines_differing,
                differences,
            }
        })
        .collect()
}

/// A transcript normalized for comparing targets: [`normalize_transcript`],
/// and the parts that name the target's own machinery (why a connection
/// closed, which lock window answered, marks and control requests) reduced to
/// what happened.
pub fn comparable_transcript(t: &str) -> String {
    normalize_transcript(t)
        .lines()
        .filter(|l| !l.starts_with("-- mark ") && !l.starts_with("-- control "))
        .map(|l| {
            if let Some(i) = l.find(" closed: ") {
                format!("{} closed", &l[..i])
            } else if l.trim_start().starts_with("! locked by ") {
                "   ! locked".to_owned()
            } else {
                l.to_owned()
            }
        })
        .fold(String::new(), |mut s, l| {
            s.push_str(&l);
            s.push('\n');
            s
        })
}

/// Lines in one text and not the other, counted with multiplicity.
fn lines_differing(a: &str, b: &str) -> usize {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for l in a.lines() {
        *count.entry(l).or_default() += 1;
    }
    for l in b.lines() {
        *count.entry(l).or_default() -= 1;
    }
    count.values().map(|n| n.unsigned_abs() as usize).sum()
}

fn differences(
    f: &ScenarioReport,
    r: &ScenarioReport,
    target: &str,
    deviations: &[Deviation],
) -> Vec<Difference> {
    if r.verdict == Verdict::Skip {
        return Vec::new();
    }
    let known = |what: &str| {
        deviations
            .iter()
            .find(|d| d.scenario == f.name && d.target == target && d.what == what)
            .map(|d| d.reason.clone())
    };
    let mut out = Vec::new();
    let mut push = |what: String, fake: String, real: String| {
        let known = known(&what);
        out.push(Difference {
            what,
            fake,
            real,
            known,
        });
    };
    if f.verdict != r.verdict {
        push(
            "verdict".into(),
            f.verdict.to_string(),
            r.verdict.to_string(),
        );
    }
    if f.exits != r.exits {
        push("exits".into(), exits(&f.exits), exits(&r.exits));
    }
    let fc: BTreeMap<&str, bool> = f.checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    let rc: BTreeMap<&str, bool> = r.checks.iter().map(|c| (c.name.as_str(), c.ok)).collect();
    for (name, ok) in &fc {
        if let Some(rok) = rc.get(name) {
            if ok != rok {
                let word = |b: bool| if b { "ok" } else { "failed" }.to_owned();
                push(format!("check:{name}"), word(*ok), word(*rok));
            }
        }
    }
    out
}

fn exits(e: &[Option<i32>]) -> String {
    e.iter()
        .map(|s| s.map_or_else(|| "killed".into(), |s| s.to_string()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The side-by-side table, then every difference with its reason.
pub fn summary(rows: &[Row], target: &Target, out: &Path) -> String {
    let t = target.kind_name();
    let mut s = String::new();
    let w = rows
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let fake_name = rows.first().map_or("fake", |r| r.fake.target.as_str());
    let fw = fake_name.len().max(6);
    let _ = writeln!(
        s,
        "{:w$}  {:fw$} {:11}  {:>13}  {:>11}  {:>11}  {:>11}  transcript",
        "scenario", fake_name, t, "exits", "deferrals", "lock hits", "conns"
    );
    for r in rows {
        let pair = |a: u64, b: u64| format!("{a}/{b}");
        let skip = r.skipped();
        let _ = writeln!(
            s,
            "{:w$}  {:fw$} {:11}  {:>13}  {:>11}  {:>11}  {:>11}  {}",
            r.scenario,
            r.fake.verdict.to_string(),
            r.real.verdict.to_string(),
            if skip {
                "-".to_owned()
            } else if r.fake.exits == r.real.exits {
                format!("same ({})", r.fake.exits.len())
            } else {
                "DIFFER".to_owned()
            },
            if skip {
                "-".into()
            } else {
                pair(r.fake.stats.deferrals, r.real.stats.deferrals)
            },
            if skip {
                "-".into()
            } else {
                pair(r.fake.stats.lock_hits, r.real.stats.lock_hits)
            },
            if skip {
                "-".into()
            } else {
                pair(r.fake.stats.connections, r.real.stats.connections)
            },
            match r.transcript_lines_differing {
                Some(0) => "same".to_owned(),
                Some(n) => format!("{n} lines differ"),
                None => "-".to_owned(),
            }
        );
    }
    let skipped = rows.iter().filter(|r| r.skipped()).count();
    let errors = rows.iter().filter(|r| !r.skipped() && r.errored()).count();
    let compared = rows.len() - skipped - errors;
    let unexplained = rows.iter().filter(|r| r.unexplained()).count();
    let _ = writeln!(
        s,
        "\n{compared} of {} scenario(s) compared ({skipped} skipped on {t}{}); {unexplained} with unexplained differences",
        rows.len(),
        if errors > 0 {
            format!(", {errors} not compared: ERROR")
        } else {
            String::new()
        }
    );
    for r in rows {
        // An ERROR is not a comparison: say why, on each side.
        for (side, rep) in [(fake_name, &r.fake), (t, &r.real)] {
            if rep.verdict == Verdict::Error {
                let _ = writeln!(
                    s,
                    "ERROR {} on {side}: {}",
                    r.scenario,
                    rep.error.as_deref().unwrap_or("(no reason recorded)")
                );
            }
        }
        for d in &r.differences {
            let _ = writeln!(
                s,
                "{} {}: {}: fake {} / {t} {}{}",
                if d.known.is_some() {
                    "known"
                } else {
                    "UNEXPLAINED"
                },
                r.scenario,
                d.what,
                d.fake,
                d.real,
                d.known
                    .as_ref()
                    .map(|k| format!("\n    reason: {k}"))
                    .unwrap_or_default()
            );
        }
        if r.skipped() {
            let _ = writeln!(
                s,
                "skipped {}: {}",
                r.scenario,
                r.real.skipped.as_deref().unwrap_or("")
            );
        }
    }
    let _ = writeln!(
        s,
        "normalized transcripts: {}/<{{{fake_name},{t}}}>/<scenario>/transcript.normalized.txt",
        out.display()
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::Check;

    fn row(fake: ScenarioReport, real: ScenarioReport, deviations: &[Deviation]) -> Row {
        let differences = differences(&fake, &real, "backupd", deviations);
        Row {
            scenario: fake.name.clone(),
            fake,
            real,
            transcript_lines_differing: None,
            differences,
        }
    }

    fn stub(verdict: Verdict) -> ScenarioReport {
        ScenarioReport::stub("s", verdict)
    }

    /// A verdict, an exit sequence or a check outcome that differs is a
    /// difference; listed in the deviations file it is known, else it makes
    /// the comparison differ. Agreeing rows and skipped ones do not.
    #[test]
    fn unexplained_differences_fail_and_listed_ones_do_not() {
        let agree = row(stub(Verdict::Pass), stub(Verdict::Pass), &[]);
        assert!(agree.differences.is_empty());
        assert_eq!(outcome(std::slice::from_ref(&agree)), Outcome::Agree);

        let verdict = row(stub(Verdict::Pass), stub(Verdict::Fail), &[]);
        assert_eq!(verdict.differences[0].what, "verdict");
        assert_eq!(outcome(&[agree.clone(), verdict]), Outcome::Differ);

        let (mut f, mut r) = (stub(Verdict::Pass), stub(Verdict::Pass));
        f.exits = vec![Some(0)];
        r.exits = vec![Some(1)];
        let exits = row(f, r, &[]);
        assert_eq!(exits.differences[0].what, "exits");
        assert_eq!(outcome(&[exits]), Outcome::Differ);

        let (mut f, mut r) = (stub(Verdict::Pass), stub(Verdict::Pass));
        let c = |ok| Check {
            name: "converged".into(),
            ok,
            detail: String::new(),
        };
        f.checks = vec![c(true)];
        r.checks = vec![c(false)];
        let known = Deviation {
            scenario: "s".into(),
            target: "backupd".into(),
            what: "check:converged".into(),
            reason: "why".into(),
        };
        let listed = row(f.clone(), r.clone(), std::slice::from_ref(&known));
        assert_eq!(listed.differences[0].known.as_deref(), Some("why"));
        assert_eq!(outcome(&[listed]), Outcome::Agree);
        assert_eq!(outcome(&[row(f, r, &[])]), Outcome::Differ);
    }

    /// An ERROR on either side is a failure even where both sides agree; a
    /// comparison where every row was skipped compared nothing.
    #[test]
    fn errors_fail_and_all_skipped_compares_nothing() {
        let both = row(stub(Verdict::Error), stub(Verdict::Error), &[]);
        assert!(both.differences.is_empty());
        assert_eq!(outcome(&[both]), Outcome::Differ);
        let one = row(stub(Verdict::Pass), stub(Verdict::Error), &[]);
        assert_eq!(outcome(&[one]), Outcome::Differ);
        let skipped = row(stub(Verdict::Skip), stub(Verdict::Skip), &[]);
        assert_eq!(
            outcome(std::slice::from_ref(&skipped)),
            Outcome::NothingCompared
        );
        let pass = row(stub(Verdict::Pass), stub(Verdict::Pass), &[]);
        assert_eq!(outcome(&[skipped, pass]), Outcome::Agree);
        assert_eq!(outcome(&[]), Outcome::Agree);
    }
}
