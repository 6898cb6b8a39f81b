//! `backupd-sim run`: the bundled suite, invalid scenarios, a broken fake
//! caught, JUnit, shards.

use std::path::{Path, PathBuf};

use crate::util::cyrus_bins;

/// `backupd-sim run ARGS` in the crate root.
fn run(args: &[&str]) -> (i32, String, String) {
    crate::util::bin(&[&["run"], args].concat())
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The bundled suite (`scenarios/`) runs with every verdict as expected, and
/// its JUnit report is well-formed JUnit XML with one testcase per scenario.
#[test]
fn bundled_suite_passes_with_a_valid_junit_report() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let junit = dir.path().join("junit.xml");
    let json = dir.path().join("report.json");
    let (code, stdout, stderr) = run(&[
        "-j",
        "2",
        "--junit",
        junit.to_str().expect("path"),
        "--json",
        json.to_str().expect("path"),
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // One testcase per scenario, skipped ones too: those --list runs and
    // those it leaves out for the target.
    let (_, listed, left) = run(&["--list"]);
    let left_out = left.lines().filter(|l| l.starts_with("left out: ")).count();
    let count = listed.lines().count() + left_out;
    assert!(count >= 15, "{listed}");

    let xml = std::fs::read_to_string(&junit).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed XML");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suite = root
        .children()
        .find(|n| n.has_tag_name("testsuite"))
        .expect("testsuite");
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), count);
    assert_eq!(suite.attribute("tests"), Some(count.to_string().as_str()));
    assert_eq!(suite.attribute("failures"), Some("0"));
    assert_eq!(suite.attribute("errors"), Some("0"));
    for c in &cases {
        assert!(c.attribute("name").is_some() && c.attribute("classname").is_some());
        assert!(c
            .attribute("time")
            .and_then(|t| t.parse::<f64>().ok())
            .is_some());
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(report["passed"], true);
    assert_eq!(report["scenarios"].as_array().map(Vec::len), Some(count));
}

/// A transcript snapshot holds for every seed, not just the default one:
/// message contents (so GUIDs and sizes) come from the seed. Found by
/// `make soak`, whose run k uses seed SOAK_SEED+k. And the snapshot is really
/// compared: the same scenario beside a snapshot with one line changed fails.
#[test]
fn a_snapshot_scenario_passes_with_other_seeds() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let sandboxes = dir.path().join("sandboxes");
    std::fs::create_dir(&sandboxes).expect("mkdir");
    let sandbox_dir = sandboxes.to_str().expect("path");
    for seed in ["1", "1795897150"] {
        let (code, stdout, stderr) = run(&[
            "scenarios/locks/d-user-mode-bails-out.toml",
            "--seed",
            seed,
            "--sandbox-dir",
            sandbox_dir,
        ]);
        assert_eq!(code, 0, "seed {seed}\n{stdout}\n{stderr}");
    }

    let copy = dir.path().join("d-user-mode-bails-out.toml");
    std::fs::copy("scenarios/locks/d-user-mode-bails-out.toml", &copy).expect("copy");
    std::fs::create_dir(dir.path().join("snapshots")).expect("mkdir");
    for name in ["d-user-mode-bails-out", "d-user-mode-bails-out@3.12"] {
        let snap = std::fs::read_to_string(format!("scenarios/locks/snapshots/{name}.snap"))
            .expect("snapshot");
        assert!(snap.contains("C1: GET USER dora\n"), "{snap}");
        std::fs::write(
            dir.path().join(format!("snapshots/{name}.snap")),
            snap.replacen("C1: GET USER dora\n", "C1: GET USER nobody\n", 1),
        )
        .expect("write");
    }
    let (code, stdout, _) = run(&[copy.to_str().expect("path"), "--sandbox-dir", sandbox_dir]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("d-user-mode-bails-out.snap differs"),
        "{stdout}"
    );
}

/// A failing transcript snapshot is reported as a unified diff of the changed
/// lines with their context, and no colour code reaches the reports: not the
/// kept sandbox's `report.json`, not `--json`, not the JUnit file (the diff
/// used to come from `pretty_assertions`, which writes ANSI escapes even into
/// files).
#[test]
fn a_failing_snapshot_leaves_no_escape_code_in_the_reports() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let sandboxes = dir.path().join("sandboxes");
    std::fs::create_dir(&sandboxes).expect("mkdir");
    let copy = dir.path().join("d-user-mode-bails-out.toml");
    std::fs::copy("scenarios/locks/d-user-mode-bails-out.toml", &copy).expect("copy");
    std::fs::create_dir(dir.path().join("snapshots")).expect("mkdir");
    for name in ["d-user-mode-bails-out", "d-user-mode-bails-out@3.12"] {
        let snap = std::fs::read_to_string(format!("scenarios/locks/snapshots/{name}.snap"))
            .expect("snapshot");
        std::fs::write(
            dir.path().join(format!("snapshots/{name}.snap")),
            snap.replacen("C1: GET USER dora\n", "C1: GET USER nobody\n", 1),
        )
        .expect("write");
    }
    let (json, junit) = (dir.path().join("r.json"), dir.path().join("junit.xml"));
    let (code, stdout, stderr) = run(&[
        copy.to_str().expect("path"),
        "--sandbox-dir",
        sandboxes.to_str().expect("path"),
        "--json",
        json.to_str().expect("path"),
        "--junit",
        junit.to_str().expect("path"),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    let kept: Vec<PathBuf> = std::fs::read_dir(&sandboxes)
        .expect("sandboxes")
        .map(|e| e.expect("entry").path().join("report.json"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    for file in [&kept[0], &json, &junit] {
        let bytes = std::fs::read(file).expect("report");
        assert!(
            !bytes.contains(&0x1b),
            "ESC in {}:\n{}",
            file.display(),
            String::from_utf8_lossy(&bytes)
        );
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("d-user-mode-bails-out.snap differs"),
            "{text}"
        );
    }
    // The diff itself: a unified diff, the changed line and its context, not
    // the whole transcript.
    assert!(stdout.contains("--- snapshot"), "{stdout}");
    assert!(stdout.contains("+++ this run"), "{stdout}");
    assert!(stdout.contains("-C1: GET USER nobody"), "{stdout}");
    assert!(stdout.contains("+C1: GET USER dora"), "{stdout}");
    let snap_lines =
        std::fs::read_to_string("scenarios/locks/snapshots/d-user-mode-bails-out.snap")
            .expect("snapshot")
            .lines()
            .count();
    let diff_lines = stdout
        .lines()
        .skip_while(|l| !l.contains("--- snapshot"))
        .take_while(|l| !l.contains("sandbox:"))
        .count();
    assert!(
        diff_lines < snap_lines,
        "{diff_lines} diff lines for a {snap_lines}-line snapshot:\n{stdout}"
    );
    // The JUnit case carries the seed and the replay command as properties,
    // and the JSON report its format version.
    let xml = std::fs::read_to_string(&junit).expect("junit");
    let doc = roxmltree::Document::parse(&xml).expect("well-formed JUnit");
    let case = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase"))
        .expect("testcase");
    let prop = |name: &str| {
        case.descendants()
            .find(|n| n.has_tag_name("property") && n.attribute("name") == Some(name))
            .and_then(|n| n.attribute("value"))
            .unwrap_or_else(|| panic!("no property {name}: {xml}"))
            .to_owned()
    };
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(report["format_version"], 1, "{report:#}");
    let seed = report["scenarios"][0]["seed"].as_u64().expect("seed");
    assert_eq!(prop("seed"), seed.to_string());
    assert_eq!(prop("verdict"), "FAIL");
    assert!(
        prop("replay").contains(&format!("--seed {seed}")),
        "{}",
        prop("replay")
    );
    let failure = case
        .children()
        .find(|n| n.has_tag_name("failure"))
        .expect("failure");
    assert_eq!(failure.attribute("type"), Some("FAIL"));
    assert!(
        failure
            .text()
            .unwrap_or_default()
            .contains("+C1: GET USER dora"),
        "{xml}"
    );
}

/// A typo in a key fails with exit 2 before anything runs: `error:
/// FILE:LINE:COLUMN: message` (the shape CI problem matchers read), then
/// toml's own report with the line and a caret under the key.
#[test]
fn a_typo_in_a_key_is_exit_2_with_file_line_and_key() {
    let dir = scratch();
    let path = dir.path().join("typo.toml");
    std::fs::write(
        &path,
        "description = \"typo\"\n[[user]]\nname = \"a\"\n\n[[step]]\nappend = { user = \"a\", cuont = 2 }\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(&[path.to_str().expect("path")]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!(
            "error: {}:6:24: unknown field `cuont`",
            path.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("6 | append = { user = \"a\", cuont = 2 }\n"),
        "{stderr}"
    );
    assert!(stderr.contains("^^^^^"), "{stderr}");

    std::fs::write(&path, "description = \"x\"\n[[user]]\nname = \"a\"\n[[step]]\nsync = {}\nlock = { user = \"a\" }\n").expect("write");
    let (code, _, stderr) = run(&[path.to_str().expect("path")]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("typo.toml:4:1: step 1:") && stderr.contains("exactly one action"),
        "{stderr}"
    );

    let (code, _, stderr) = run(&["/nonexistent/dir"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/nonexistent/dir: no such file or directory"),
        "{stderr}"
    );
}

/// Breaking the fake on purpose (a `lie` on APPLY MESSAGE added to a scenario
/// that expects convergence) fails that scenario, with a diff naming the lost
/// message, a kept sandbox and the replay command.
#[test]
fn a_lying_fake_fails_a_convergence_scenario_naming_the_lost_message() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let original = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/basic/rolling-changes.toml"),
    )
    .expect("read");
    let broken = original.replacen(
        "[[step]]",
        "[[step]]\nfault = { when = { verb = \"APPLY MESSAGE\" }, action = \"lie\" }\n[[step]]",
        1,
    );
    let path = dir.path().join("rolling-changes-broken.toml");
    std::fs::write(&path, broken).expect("write");
    let (code, stdout, stderr) = run(&[
        path.to_str().expect("path"),
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("FAIL rolling-changes-broken"), "{stdout}");
    assert!(
        stdout.contains("lost: message "),
        "no lost message named:\n{stdout}"
    );
    assert!(
        stdout.contains("lost changes: expected 0, ledger says"),
        "{stdout}"
    );
    assert!(
        stdout.contains("replay:  backupd-sim run") && stdout.contains("--seed"),
        "{stdout}"
    );
    let sandbox: PathBuf = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("sandbox: "))
        .and_then(|l| l.split(' ').next())
        .map(PathBuf::from)
        .expect("sandbox line");
    assert!(sandbox.join("transcript.txt").exists() && sandbox.join("report.json").exists());
    let _ = std::fs::remove_dir_all(sandbox);
}

/// A client run whose exit is not the one a step expects fails the scenario,
/// naming the step, what was expected and what came (the README's first
/// scenario with `expect_exit = 1`, everything else as it was).
#[test]
fn a_wrong_expected_exit_fails_naming_the_step() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let text = r#"description = "the README's first scenario, expecting exit 1"
[[user]]
name = "anna"
[[step]]
lock = { user = "anna" }
[[step]]
append = { user = "anna", count = 2 }
[[step]]
sync = { mode = "rolling-once", expect_exit = 1 }
[[step]]
unlock = "anna"
[expect]
converged = true
deferrals = { min = 1 }
lost = 0
"#;
    let path = dir.path().join("wrong-exit.toml");
    std::fs::write(&path, text).expect("write");
    let (code, stdout, stderr) = run(&[
        path.to_str().expect("path"),
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("FAIL wrong-exit"), "{stdout}");
    assert!(
        stdout.contains("step 3: exit status: expected 1 (Cyrus ") && stdout.contains("), got 0"),
        "{stdout}"
    );
}

/// `--list` lists what a run on `--target` would run: a scenario with faults
/// is left out for real backupd, one meant for sync_server only for the fake,
/// each named on stderr with the reason; stdout stays one path a line.
#[test]
fn list_honours_the_target() {
    let (code, fake, fake_err) = run(&["--list"]);
    assert_eq!(code, 0, "{fake_err}");
    let (code, backupd, backupd_err) = run(&["--list", "--target", "backupd"]);
    assert_eq!(code, 0, "{backupd_err}");
    let storm = "scenarios/source-locks/skipuser-annotation-storm.toml";
    let lie = "scenarios/faults/lie-caught.toml";
    assert!(!fake.lines().any(|l| l == storm), "{fake}");
    assert!(
        fake_err.contains(&format!("left out: {storm} (")),
        "{fake_err}"
    );
    assert!(fake.lines().any(|l| l == lie), "{fake}");
    assert!(!backupd.lines().any(|l| l == lie), "{backupd}");
    assert!(
        backupd_err.contains(&format!("left out: {lie} (")),
        "{backupd_err}"
    );
    // Together, listed and left out are every scenario selected.
    let left = |err: &str| err.lines().filter(|l| l.starts_with("left out: ")).count();
    assert_eq!(
        fake.lines().count() + left(&fake_err),
        backupd.lines().count() + left(&backupd_err)
    );
}

/// `--shard 1/2` and `--shard 2/2` together select every scenario exactly once.
#[test]
fn shards_cover_the_suite_exactly_once() {
    let (_, all, _) = run(&["--list"]);
    let (c1, one, _) = run(&["--list", "--shard", "1/2"]);
    let (c2, two, _) = run(&["--list", "--shard", "2/2"]);
    assert_eq!((c1, c2), (0, 0));
    let mut union: Vec<&str> = one.lines().chain(two.lines()).collect();
    union.sort_unstable();
    let mut all: Vec<&str> = all.lines().collect();
    all.sort_unstable();
    assert!(!one.is_empty() && !two.is_empty());
    assert!(one.lines().all(|l| !two.lines().any(|m| m == l)), "overlap");
    assert_eq!(union, all);
    let (code, _, stderr) = run(&["--list", "--shard", "3/2"]);
    assert_eq!(code, 2, "{stderr}");
}

/// A suite that runs nothing does not pass: a filter that matches nothing is
/// exit 2 with `--list` and `--check` as without them, and a suite where every
/// scenario is SKIP (here: backupd-only scenarios on the sync_server
/// personality) is exit 2 too, with the reason.
#[test]
fn a_suite_where_nothing_ran_is_not_a_success() {
    for extra in [&[][..], &["--list"][..], &["--check"][..]] {
        let mut args = vec!["--filter", "zzz"];
        args.extend_from_slice(extra);
        let (code, stdout, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}\n{stdout}\n{stderr}");
        assert!(stderr.contains("no scenario to run"), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
    }
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let (code, stdout, stderr) = run(&[
        "scenarios/locks/a-rolling-once-defers.toml",
        "scenarios/locks/d-user-mode-bails-out.toml",
        "--target",
        "fake-sync_server",
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stdout.contains("2 skipped"), "{stdout}");
    assert!(
        stderr.contains("nothing ran: every selected scenario was SKIP on target fake-sync_server"),
        "{stderr}"
    );
    // One scenario that runs beside the skipped one, and the suite passes
    // (with `--color always`, its verdict green even into a pipe; without it,
    // into a pipe, no colour at all).
    let (code, stdout, stderr) = run(&[
        "scenarios/locks/a-rolling-once-defers.toml",
        "scenarios/basic/user-sync.toml",
        "--target",
        "fake-sync_server",
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
        "--color",
        "always",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("1 skipped"), "{stdout}");
    assert!(stdout.contains("\x1b[32mPASS\x1b[0m"), "{stdout:?}");
    assert!(stderr.contains("\x1b[32mPASS\x1b[0m"), "{stderr:?}");
    assert!(stdout.contains("\x1b[2mSKIP\x1b[0m"), "{stdout:?}");
    let (code, stdout, stderr) = run(&[
        "scenarios/basic/user-sync.toml",
        "--target",
        "fake-sync_server",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        !stdout.contains('\x1b') && !stderr.contains('\x1b'),
        "{stdout:?}\n{stderr:?}"
    );
}

/// `[expect] ignore` was removed with its only name, `stale-subscriptions` (a
/// false finding: the source's subscriptions were read through LSUB). An old
/// file that still uses it is exit 2, naming file, line and why.
#[test]
fn the_removed_ignore_key_is_refused_with_its_reason() {
    let dir = scratch();
    for (i, table) in ["[expect]", "[expect.versions.\"3.6\"]"].iter().enumerate() {
        let path = dir.path().join(format!("old{i}.toml"));
        std::fs::write(
            &path,
            format!(
                "description = \"d\"\n[[user]]\nname = \"u\"\n{table}\nignore = [\"stale-subscriptions\"]\n"
            ),
        )
        .expect("write");
        let (code, _, stderr) = run(&["--check", path.to_str().expect("path")]);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&format!("old{i}.toml:5:1:"))
                && stderr.contains("`ignore` was removed")
                && stderr.contains("through LSUB")
                && stderr.contains("docs/findings/subscriptions.md"),
            "{stderr}"
        );
    }
}

/// A file of the run that cannot be written is reported, in the summary and
/// in the JSON report, never dropped: here `--report-dir` holds a directory
/// where the transcript's copy should go. The verdict stands (it comes from
/// the target, not from the files).
#[test]
fn a_failed_artifact_write_is_reported() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(reports.join("user-sync/transcript.txt")).expect("mkdir");
    let json = dir.path().join("run.json");
    let (code, stdout, stderr) = run(&[
        "scenarios/basic/user-sync.toml",
        "--report-dir",
        reports.to_str().expect("path"),
        "--json",
        json.to_str().expect("path"),
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("NOT WRITTEN: files of user-sync")
            && stdout.contains("copying transcript.txt to")
            && stdout.contains("Is a directory"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let errors = report["scenarios"][0]["artifact_errors"]
        .as_array()
        .expect("artifact_errors listed");
    assert_eq!(errors.len(), 1, "{errors:?}");
    // The other files were copied.
    assert!(reports.join("user-sync/report.json").is_file());
}

/// A step on another user's folder (granted by an ACL, so the source takes
/// it) is an ERROR that says so: the ledger would look for the change in the
/// acting user's tree and call its loss something else.
#[test]
fn a_step_on_another_users_folder_is_refused() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = scratch();
    let file = dir.path().join("other.toml");
    std::fs::write(
        &file,
        "description = \"another user's folder\"\n\
         [[user]]\nname = \"oa\"\n[[user]]\nname = \"ob\"\n\
         [[step]]\nacl = { user = \"ob\", identifier = \"oa\", rights = \"lrsip\" }\n\
         [[step]]\nappend = { user = \"oa\", folder = \"user.ob\" }\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(&[
        file.to_str().expect("path"),
        "--color",
        "never",
        "--sandbox-dir",
        dir.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("`user.ob` is not one of oa's folders"),
        "{stdout}\n{stderr}"
    );
}
