//! `backupd-sim explore`: generation is deterministic, a short run against the
//! correct fake finds nothing, and a lying fake is found and shrunk to a small
//! scenario file that `backupd-sim run` fails again.

use std::path::Path;

use crate::util::cyrus_bins;

fn bin(dir: &Path, args: &[&str]) -> (i32, String, String) {
    crate::util::bin_in(dir, args, &[])
}

fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| {
            let p = e.expect("entry").path();
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).expect("read"),
            )
        })
        .collect();
    out.sort();
    out
}

/// The same seed writes the same scenario files; another seed others.
#[test]
fn same_seed_same_generated_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    for (d, seed) in [(&a, "9"), (&b, "9"), (&c, "10")] {
        let (code, out, err) = bin(
            dir.path(),
            &[
                "explore",
                "--cases",
                "20",
                "--seed",
                seed,
                "--dry-run",
                d.to_str().expect("path"),
            ],
        );
        assert_eq!(code, 0, "{out}{err}");
    }
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa.len(), 20);
    assert_eq!(fa, fb);
    assert_ne!(fa, fc);
    let (code, out, err) = bin(dir.path(), &["run", "--check", a.to_str().expect("path")]);
    assert_eq!(
        code, 0,
        "generated files must be valid scenarios: {out}{err}"
    );
}

/// A few cases against the correct fake, two workers: no failure, and the
/// rate and its split are printed. Renames of subscribed folders are drawn
/// by default (the backup keeps the old name's subscription as the source
/// does, so they converge: issue 15, no `stale-subscriptions` to switch off);
/// `--no-renames` leaves them out, and the old `--renames` still parses.
#[test]
fn a_short_exploration_of_the_correct_fake_finds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dry = |name: &str, extra: &[&str]| {
        let gen = dir.path().join(name);
        let args = [
            &["explore", "--cases", "40", "--seed", "5", "--dry-run"][..],
            &[gen.to_str().expect("path")],
            extra,
        ]
        .concat();
        let (code, out, err) = bin(dir.path(), &args);
        assert_eq!(code, 0, "{out}{err}");
        files(&gen)
            .iter()
            .filter(|(_, t)| t.contains("rename = { user"))
            .count()
    };
    assert!(dry("default", &[]) > 0, "no rename drawn by default");
    assert!(
        dry("old-flag", &["--renames"]) > 0,
        "no rename drawn with --renames"
    );
    assert_eq!(
        dry("without", &["--no-renames"]),
        0,
        "renames drawn with --no-renames"
    );
    let (code, _, err) = bin(dir.path(), &["explore", "--off", "stale-subscriptions"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--off was removed") && err.contains("LSUB"),
        "{err}"
    );
    if cyrus_bins().is_none() {
        return;
    }
    let sandbox = dir.path().join("sb");
    std::fs::create_dir_all(&sandbox).expect("sandbox dir");
    let (code, out, err) = bin(
        dir.path(),
        &[
            "explore",
            "--cases",
            "6",
            "--seed",
            "5",
            "-j",
            "2",
            "--no-compare",
            "--sandbox-dir",
            sandbox.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("no failure")
            && out.contains("cases/min")
            && out.contains("in the real client"),
        "{out}"
    );
}

/// With the loss faults allowed, explore finds failures, shrinks one to a
/// small scenario file with its seed and a Markdown report, and `backupd-sim
/// run` on the file fails again naming what was lost. Every failing case is
/// a loss (FAIL), never a harness error: the faults are aimed at commands
/// the next run sends, an unlock names an open lock, and the cases of a
/// batch after a failing one are set up again on the fresh harness.
///
/// The oracle checks itself here: every case whose loss fault fired must
/// fail, and the loss faults drawn must fire (seed 2's 30 cases draw one in
/// 8 cases; before they were aimed at the data of the next run, 1 fired).
#[test]
fn a_lying_fake_is_found_and_shrunk_to_a_replayable_scenario() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = dir.path().join("sb");
    std::fs::create_dir_all(&sandbox).expect("sandbox dir");
    let (code, out, err) = bin(
        dir.path(),
        &[
            "explore",
            "--cases",
            "30",
            "--seed",
            "2",
            "--allow-loss-faults",
            "-j",
            "2",
            "--no-compare",
            "--shrink-runs",
            "30",
            "--sandbox-dir",
            sandbox.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    // Each worker's batches after its first are set up ahead on a second
    // harness while the one before runs (a speed fix that would otherwise
    // fail unseen: it only makes explore slower).
    let (ahead, batches) = out
        .lines()
        .find_map(|l| {
            l.split("; ")
                .find_map(|p| p.strip_suffix(" batch(es) set up ahead"))
        })
        .and_then(|p| p.split_once(" of "))
        .map(|(a, b)| {
            (
                a.parse::<u64>().expect("a count"),
                b.parse::<u64>().expect("a count"),
            )
        })
        .unwrap_or_else(|| panic!("no batch line in:\n{out}"));
    assert!(ahead >= 1 && ahead < batches, "{ahead} of {batches}\n{out}");
    let failing: Vec<&str> = out.lines().filter(|l| l.starts_with("  - case ")).collect();
    assert!(!failing.is_empty(), "{out}");
    // `loss faults: drawn in D case(s), fired in F, of which X failed; …`
    let tally: Vec<u64> = out
        .lines()
        .find_map(|l| l.strip_prefix("loss faults: drawn in "))
        .map(|l| {
            l.split(|c: char| !c.is_ascii_digit())
                .filter(|w| !w.is_empty())
                .map(|w| w.parse().expect("a count"))
                .collect()
        })
        .unwrap_or_else(|| panic!("no loss-fault tally in:\n{out}"));
    let (drawn, fired, fired_failed) = (tally[0], tally[1], tally[2]);
    assert!(drawn >= 6, "{drawn} case(s) drew a loss fault\n{out}");
    // One may meet a lock that refuses its command (docs/usage.md).
    assert!(
        fired >= 6 && fired + 1 >= drawn,
        "drawn in {drawn} case(s), fired in {fired} only\n{out}"
    );
    assert_eq!(
        fired_failed, fired,
        "a loss fault fired and its case passed: an oracle gap\n{out}"
    );
    assert!(
        !out.contains("loss fault fired and the case passed"),
        "{out}"
    );
    for l in &failing {
        assert!(
            l.contains(": FAIL: "),
            "a failing case that is not a loss: {l}\n{out}"
        );
    }
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("FINDING: "))
        .and_then(|l| l.split(" (").next())
        .map(|p| dir.path().join(p))
        .expect("a written scenario");
    let text = std::fs::read_to_string(&file).expect("scenario file");
    let steps = text.matches("[[step]]").count();
    assert!((1..=6).contains(&steps), "{steps} steps:\n{text}");
    assert!(text.contains("seed = 2"), "{text}");
    let report = std::fs::read_to_string(file.with_extension("md")).expect("the Markdown report");
    assert!(
        report.contains("## Replay") && report.contains("backupd-sim run "),
        "{report}"
    );
    let (code, out, err) = bin(
        dir.path(),
        &[
            "run",
            file.to_str().expect("path"),
            "--sandbox-dir",
            sandbox.to_str().expect("path"),
        ],
    );
    assert_eq!(code, 1, "the written case must fail again:\n{out}\n{err}");
    assert!(
        out.contains("lost") || out.contains("acknowledged write lost"),
        "{out}"
    );
}

/// The same seed gives the same cases whatever `-j` and however the campaign
/// is sharded: each campaign's JSON lists every case it ran as (index,
/// Cyrus version, fingerprint of its scenario file).
#[test]
fn the_cases_of_a_seed_do_not_depend_on_jobs_or_shards() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = dir.path().join("sb");
    std::fs::create_dir_all(&sandbox).expect("sandbox dir");
    let ran = |name: &str, extra: &[&str]| -> Vec<serde_json::Value> {
        let json = dir.path().join(format!("{name}.json"));
        let args = [
            &[
                "explore",
                "--cases",
                "3",
                "--seed",
                "3",
                "--no-compare",
                "--no-corpus",
                "--sandbox-dir",
                sandbox.to_str().expect("path"),
                "--json",
                json.to_str().expect("path"),
            ][..],
            extra,
        ]
        .concat();
        let (code, out, err) = bin(dir.path(), &args);
        assert!(code == 0 || code == 1, "{out}\n{err}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
        v["ran"].as_array().expect("ran").clone()
    };
    let one = ran("j1", &["-j", "1"]);
    assert_eq!(one.len(), 3, "{one:?}");
    assert_eq!(ran("j2", &["-j", "2"]), one);
    let mut sharded = ran("s1", &["--shard", "1/2"]);
    sharded.extend(ran("s2", &["--shard", "2/2"]));
    sharded.sort_by_key(|r| r[0].as_u64());
    assert_eq!(sharded, one);
}

/// `--minutes` alone bounds a campaign: no case starts after the time, the
/// cases already claimed finish (here: one batch per worker).
#[test]
fn minutes_alone_end_a_campaign() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sandbox = dir.path().join("sb");
    std::fs::create_dir_all(&sandbox).expect("sandbox dir");
    let started = std::time::Instant::now();
    let (code, out, err) = bin(
        dir.path(),
        &[
            "explore",
            "--minutes",
            "0.01",
            "--seed",
            "4",
            "--no-compare",
            "--no-corpus",
            "--sandbox-dir",
            sandbox.to_str().expect("path"),
        ],
    );
    assert!(code == 0 || code == 1, "{out}\n{err}");
    let n: u64 = out
        .split(" case(s) run in ")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .expect("a case count");
    assert!((1..=3).contains(&n), "{n} cases:\n{out}");
    assert!(started.elapsed().as_secs() < 120, "{out}");
}
