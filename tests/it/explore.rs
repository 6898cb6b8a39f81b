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

/// A few cases against the correct fake: no failure, and the rate is printed.
/// With `--renames` (two of these six cases rename a subscribed folder): the
/// backup keeps the old name's subscription as the source does, so they
/// converge (issue 15: no `stale-subscriptions` to switch off any more).
#[test]
fn a_short_exploration_of_the_correct_fake_finds_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gen = dir.path().join("gen");
    let args = [
        "explore",
        "--cases",
        "6",
        "--seed",
        "5",
        "--mode",
        "mixed",
        "--renames",
    ];
    let (code, out, err) = bin(
        dir.path(),
        &[&args[..], &["--dry-run", gen.to_str().expect("path")]].concat(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let renames = files(&gen)
        .iter()
        .filter(|(_, t)| t.contains("rename = { user"))
        .count();
    assert_eq!(renames, 2, "cases renaming a subscribed folder");
    let (code, _, err) = bin(dir.path(), &["explore", "--off", "stale-subscriptions"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--off was removed") && err.contains("LSUB"),
        "{err}"
    );
    if cyrus_bins().is_none() {
        return;
    }
    let (code, out, err) = bin(dir.path(), &args);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("no failure") && out.contains("cases/min"),
        "{out}"
    );
}

/// With `lie` and `hide-missing` allowed, explore finds a failure, shrinks it
/// to at most 4 steps, writes it with its seed, and `backupd-sim run` on the
/// file fails again naming the lost message.
#[test]
fn a_lying_fake_is_found_and_shrunk_to_a_replayable_scenario() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, out, err) = bin(
        dir.path(),
        &[
            "explore",
            "--cases",
            "50",
            "--seed",
            "2",
            "--allow-loss-faults",
        ],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let file = out
        .lines()
        .find_map(|l| l.strip_prefix("FAILURE, shrunk and written to "))
        .map(|p| dir.path().join(p))
        .expect("a written scenario");
    let text = std::fs::read_to_string(&file).expect("scenario file");
    let steps = text.matches("[[step]]").count();
    assert!((1..=4).contains(&steps), "{steps} steps:\n{text}");
    assert!(text.contains("seed = 2"), "{text}");
    assert!(dir.path().join("proptest-regressions/explore.txt").exists());
    let (code, out, err) = bin(
        dir.path(),
        &[
            "run",
            file.to_str().expect("path"),
            "--sandbox-dir",
            dir.path().to_str().expect("path"),
        ],
    );
    assert_eq!(code, 1, "the written case must fail again:\n{out}\n{err}");
    assert!(
        out.contains("lost: message ") || out.contains("lost changes"),
        "{out}"
    );
}
