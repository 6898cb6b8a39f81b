//! What the benchmarks measured: series with min/median/max and ratios to the
//! floor, per workload; the goals of the issue met or missed; `results.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::targets::Measure;
use super::{chain, log, BenchOptions, Result, Sizes, ALL_TARGETS};

/// One measured series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    /// `floor`, `fake`, `backupd`, `sync_server`.
    pub target: String,
    /// `wall`, `client_cpu`, `target_cpu`, ...
    pub metric: String,
    pub unit: String,
    #[serde(deserialize_with = "samples_or_nan")]
    pub samples: Vec<f64>,
    #[serde(deserialize_with = "f64_or_nan")]
    pub min: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub median: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub max: f64,
    /// median / the floor's median of the same metric, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_vs_floor: Option<f64>,
}

/// JSON writes NaN (no sample) as `null`; read it back as NaN.
fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn samples_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

impl Series {
    pub(super) fn new(target: &str, metric: &str, unit: &str, samples: Vec<f64>) -> Series {
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let (min, max) = (
            s.first().copied().unwrap_or(f64::NAN),
            s.last().copied().unwrap_or(f64::NAN),
        );
        let median = match s.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => s[n / 2],
            n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
        };
        Series {
            target: target.into(),
            metric: metric.into(),
            unit: unit.into(),
            samples,
            min,
            median,
            max,
            ratio_vs_floor: None,
        }
    }
}

/// One workload's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub id: u32,
    pub name: String,
    /// Why it did not run, when it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub series: Vec<Series>,
    pub notes: Vec<String>,
}

/// One target of the issue, met or missed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Goal {
    pub name: String,
    pub limit: String,
    pub measured: String,
    pub pass: bool,
}

/// Everything `run_bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResults {
    pub cyrus_version: String,
    pub unix_time: u64,
    pub reps: usize,
    pub sizes: Sizes,
    pub machine: String,
    pub workloads: Vec<WorkloadResult>,
    pub goals: Vec<Goal>,
}

pub(super) fn series_of(target: &str, ms: &[Measure], out: &mut Vec<Series>) {
    out.push(Series::new(
        target,
        "wall",
        "s",
        ms.iter().map(|m| m.wall).collect(),
    ));
    out.push(Series::new(
        target,
        "client_cpu",
        "s",
        ms.iter().map(|m| m.client_cpu).collect(),
    ));
    if !ms.is_empty() && ms.iter().all(|m| m.target_cpu.is_some()) {
        out.push(Series::new(
            target,
            "target_cpu",
            "s",
            ms.iter().filter_map(|m| m.target_cpu).collect(),
        ));
    }
}

/// Keep a successful run; note a failed one (the workload goes on without it).
pub(super) fn record<'a>(
    opts: &BenchOptions,
    workload: u32,
    name: &'a str,
    rep: usize,
    m: Result<Measure>,
    runs: &mut BTreeMap<&'a str, Vec<Measure>>,
    failures: &mut Vec<String>,
) {
    match m {
        Ok(m) => {
            log(
                opts,
                format!(
                    "workload {workload} rep {} {name}: {:.2} s",
                    rep + 1,
                    m.wall
                ),
            );
            runs.entry(name).or_default().push(m);
        }
        Err(e) => {
            let msg = format!("FAILED {name} rep {}: {}", rep + 1, chain(&e));
            log(opts, &msg);
            failures.push(msg.replace('\n', " / "));
        }
    }
}

/// The series of every target that ran, in [`ALL_TARGETS`] order, with the
/// ratios added.
pub(super) fn target_series(runs: &BTreeMap<&str, Vec<Measure>>) -> Vec<Series> {
    let mut series = Vec::new();
    for name in ALL_TARGETS.into_iter().filter(|t| runs.contains_key(t)) {
        series_of(
            name,
            runs.get(name).map_or(&[][..], Vec::as_slice),
            &mut series,
        );
    }
    add_ratios(&mut series);
    series
}

pub(super) fn add_ratios(series: &mut [Series]) {
    let floor: BTreeMap<String, f64> = series
        .iter()
        .filter(|s| s.target == "floor")
        .map(|s| (s.metric.clone(), s.median))
        .collect();
    for s in series.iter_mut() {
        if let Some(f) = floor.get(&s.metric) {
            if *f > 0.0 {
                s.ratio_vs_floor = Some(s.median / f);
            }
        }
    }
}

pub(super) fn find<'a>(
    w: &'a [WorkloadResult],
    id: u32,
    target: &str,
    metric: &str,
) -> Option<&'a Series> {
    w.iter()
        .find(|x| x.id == id)?
        .series
        .iter()
        .find(|s| s.target == target && s.metric == metric)
}

pub(super) fn goals(w: &[WorkloadResult]) -> Vec<Goal> {
    let mut g = Vec::new();
    if let Some(s) = find(w, 1, "fake", "wall") {
        if let Some(r) = s.ratio_vs_floor {
            g.push(Goal {
                name: "workload 1: fake wall time vs the floor".into(),
                limit: "<= 1.2x".into(),
                measured: format!("{r:.2}x"),
                pass: r <= 1.2,
            });
        }
    }
    if let (Some(f), Some(c)) = (
        find(w, 1, "fake", "target_cpu"),
        find(w, 1, "fake", "client_cpu"),
    ) {
        let r = f.median / c.median;
        g.push(Goal {
            name: "workload 1: fake CPU / client CPU".into(),
            limit: "<= 10%".into(),
            measured: format!("{:.1}%", r * 100.0),
            pass: r <= 0.10,
        });
    }
    if let Some(s) = find(w, 4, "fake", "cases_per_minute") {
        g.push(Goal {
            name: format!(
                "workload 4: explore cases per minute with -j {}",
                super::explore_rate::JOBS
            ),
            limit: format!(">= {:.0}", super::explore_rate::GOAL_PER_MINUTE),
            measured: format!("{:.1}", s.median),
            pass: s.median >= super::explore_rate::GOAL_PER_MINUTE,
        });
    }
    if let Some(s) = find(w, 5, "fake", "peak_rss") {
        g.push(Goal {
            name: "workload 5: fake peak RSS".into(),
            limit: "<= 64 MiB".into(),
            measured: format!("{:.1} MiB", s.max),
            pass: s.max <= 64.0,
        });
    }
    if let Some(s) = find(w, 6, "codec", "apply_message") {
        g.push(Goal {
            name: "workload 6: codec on APPLY MESSAGE".into(),
            limit: ">= 1000 MB/s".into(),
            measured: format!("{:.0} MB/s", s.median),
            pass: s.median >= 1000.0,
        });
    }
    g
}

pub(super) fn render_md(r: &BenchResults) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "# backupd-sim benchmarks\n");
    let _ = writeln!(
        o,
        "Cyrus {}, {}, {} repetition(s), generated by `backupd-sim bench` (unix time {}).\n",
        r.cyrus_version, r.machine, r.reps, r.unix_time
    );
    let _ = writeln!(
        o,
        "## Goals\n\n| goal | limit | measured | |\n|---|---|---|---|"
    );
    for g in &r.goals {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} |",
            g.name,
            g.limit,
            g.measured,
            if g.pass { "pass" } else { "**miss**" }
        );
    }
    for w in &r.workloads {
        let _ = writeln!(o, "\n## {}. {}\n", w.id, w.name);
        if let Some(why) = &w.skipped {
            let _ = writeln!(o, "Skipped: {why}");
            continue;
        }
        let _ = writeln!(
            o,
            "| target | metric | min | median | max | vs floor | samples |\n|---|---|---|---|---|---|---|"
        );
        for s in &w.series {
            let _ = writeln!(
                o,
                "| {} | {} ({}) | {:.3} | {:.3} | {:.3} | {} | {} |",
                s.target,
                s.metric,
                s.unit,
                s.min,
                s.median,
                s.max,
                s.ratio_vs_floor
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.2}x")),
                s.samples.len()
            );
        }
        for n in &w.notes {
            let _ = writeln!(o, "\n- {n}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_stats() {
        let s = Series::new("fake", "wall", "s", vec![3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.min, s.median, s.max), (1.0, 2.5, 10.0));
    }

    /// `bench --workload N` reads the earlier results.json back: a series
    /// with no sample (NaN, written as null) must read back as NaN.
    #[test]
    fn results_read_back_with_empty_series() {
        let w = WorkloadResult {
            id: 4,
            name: "w".into(),
            skipped: None,
            series: vec![
                Series::new("fake", "wall", "s", vec![]),
                Series::new("fake", "x", "s", vec![1.0]),
            ],
            notes: vec!["n".into()],
        };
        let json = serde_json::to_string(&w).expect("json");
        assert!(json.contains("null"), "{json}");
        let back: WorkloadResult = serde_json::from_str(&json).expect("read back");
        assert!(back.series[0].median.is_nan());
        assert_eq!(back.series[1].samples, vec![1.0]);
    }
}
