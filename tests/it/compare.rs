//! `run --target` and `compare`: the same scenarios against real servers,
//! through the recording relay.

use std::path::{Path, PathBuf};

use backupd_sim::cyrus::TargetKind;
use backupd_sim::harness::Target;
use backupd_sim::runner::{run_scenario, unsupported, RunOptions, Verdict};
use backupd_sim::scenario::Scenario;

use crate::util::{bin, cyrus_bins, run_options, Served, Sim};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path as a CLI argument (temp paths are UTF-8).
fn arg(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn scenario(rel: &str) -> Scenario {
    Scenario::load(&root().join(rel)).expect("scenario")
}

/// Acceptance (issue 10): `run --target backupd` with the bundled case-A
/// scenario holds `ctl_backups lock` on the real backupd: its answers are
/// really `NO IMAP_MAILBOX_LOCKED` (counted by the relay), the real client
/// defers twice and exits 0, and after the unlock the backup, read back with
/// cyr_backup and its index, converges with nothing lost.
#[test]
fn run_target_backupd_reproduces_case_a_for_real() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("r.json");
    let (code, stdout, stderr) = bin(&[
        "run",
        "scenarios/locks/a-rolling-once-defers.toml",
        "--target",
        "backupd",
        "--json",
        arg(&json),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let r = &reports["scenarios"][0];
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(r["target"], "backupd");
    assert_eq!(r["stats"]["lock_hits"], 2, "{r:#}");
    assert!(r["stats"]["deferrals"].as_u64() >= Some(2), "{r:#}");
    assert_eq!(r["exits"], serde_json::json!([0, 0, 0]));
    let converged = r["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "converged")
        .expect("converged check");
    assert_eq!(converged["ok"], true, "{converged:#}");
}

/// What a real target cannot do makes a scenario SKIP with the step and the
/// reason, never a false PASS or FAIL.
#[test]
fn steps_a_target_lacks_are_skipped_with_the_reason() {
    let fault = scenario("scenarios/faults/lie-caught.toml");
    let why = unsupported(&fault, &Target::Real(TargetKind::Backupd)).expect("unsupported");
    assert!(
        why.contains("faults are injected by the fake only"),
        "{why}"
    );
    assert_eq!(unsupported(&fault, &Target::Fake), None);

    let by_verb = scenario("scenarios/locks/each-apply-kind.toml");
    let why = unsupported(&by_verb, &Target::Real(TargetKind::Backupd)).expect("unsupported");
    assert!(why.contains("ctl_backups lock -u USER"), "{why}");

    let case_a = scenario("scenarios/locks/a-rolling-once-defers.toml");
    assert_eq!(
        unsupported(&case_a, &Target::Real(TargetKind::Backupd)),
        None
    );
    let why = unsupported(&case_a, &Target::FakeSyncServer).expect("unsupported");
    assert!(why.contains("only meaningful on fake, backupd"), "{why}");
    let locking = Scenario::parse(
        "description = \"x\"\n[[user]]\nname = \"u\"\n[[step]]\nlock = { user = \"u\" }\n",
        Path::new("inline.toml"),
    )
    .expect("parse");
    assert_eq!(unsupported(&locking, &Target::FakeSyncServer), None);
    let why = unsupported(&locking, &Target::Real(TargetKind::SyncServer)).expect("unsupported");
    assert!(why.contains("blocks instead of answering LOCKED"), "{why}");

    let contend = scenario("scenarios/locks/two-clients-contend.toml");
    let why = unsupported(&contend, &Target::Real(TargetKind::SyncServer)).expect("unsupported");
    assert!(why.contains("only meaningful on fake, backupd"), "{why}");

    // A SKIP runs nothing and is not a failure.
    let scratch = tempfile::tempdir().expect("tempdir");
    let Some(opts) = run_options(Target::Real(TargetKind::Backupd), scratch.path()) else {
        return;
    };
    let r = run_scenario(&fault, &opts);
    assert_eq!(r.verdict, Verdict::Skip);
    assert!(!r.verdict.is_bad());
    assert_eq!(r.stats.client_runs, 0);
}

/// `--target HOST:PORT` cannot read the target, so the verdict comes from a
/// final `-u` that must send no APPLY, never from the client's exit code: an
/// honest server passes, and one that answers OK to APPLY MAILBOX and stores
/// nothing (exit codes all 0) fails. (A server that keeps every record but
/// drops message bodies is not caught this way: `GET USER` shows summaries,
/// not records or bodies; `docs/real-targets.md` says so.)
#[test]
fn a_host_port_target_is_judged_by_a_final_pass_not_by_exit_codes() {
    if cyrus_bins().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let s = scenario("scenarios/basic/rolling-changes.toml");

    // A fake in this process, standing in for "any csync server at HOST:PORT".
    let honest = Sim::start("");
    let opts = run_options(honest.target(), scratch.path()).expect("cyrus");
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.failures());
    assert!(r.target.starts_with("127.0.0.1:"));
    let last = r.checks.last().expect("checks");
    assert_eq!(last.name, "final -u sends no APPLY");
    assert!(last.ok && last.detail.contains("sent 0 APPLY"), "{last:?}");
    assert!(honest.shared().events().count("APPLY MESSAGE") > 0);

    let liar = Sim::start("[[fault]]\nwhen = { verb = \"APPLY MAILBOX\" }\naction = \"lie\"\n");
    let opts = run_options(liar.target(), scratch.path()).expect("cyrus");
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Fail, "{r:#?}");
    assert!(r.exits.iter().all(|e| *e == Some(0)), "{:?}", r.exits);
    let last = r.checks.last().expect("checks");
    assert!(
        last.name == "final -u sends no APPLY" && !last.ok && last.detail.contains("not converged"),
        "{last:?}"
    );
    drop((honest, liar));
}

/// A `HOST:PORT` target that refuses the runner's own reads of the records
/// (`GET FULLMAILBOX` answered `NO IMAP_MAILBOX_LOCKED`) does not pass: those
/// reads are the only look at the records a final `-u` cannot see (it trusts
/// the target's summaries), so a refusal fails the read check.
#[test]
fn a_host_port_target_that_refuses_the_runners_reads_fails() {
    if cyrus_bins().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let s = scenario("scenarios/basic/rolling-changes.toml");
    let refusing = Sim::start(
        "[[fault]]\nwhen = { verb = \"GET FULLMAILBOX\" }\naction = \"no\"\ncode = \"IMAP_MAILBOX_LOCKED\"\n",
    );
    let opts = run_options(refusing.target(), scratch.path()).expect("cyrus");
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    let read = r
        .checks
        .iter()
        .find(|c| !c.ok && c.name.ends_with("of the target"));
    assert!(
        read.is_some_and(
            |c| c.detail.contains("GET FULLMAILBOX") && c.detail.contains("the read shows nothing")
        ),
        "{:#?}",
        r.checks
    );
}

/// On a `HOST:PORT` target the counts the event log and the client runs
/// give (here connections) are checked as on any target: before, they were
/// dropped without a word.
#[test]
fn a_host_port_target_checks_its_counts() {
    if cyrus_bins().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut s = scenario("scenarios/basic/rolling-changes.toml");
    s.expect.connections = Some(backupd_sim::scenario::Range {
        min: None,
        max: Some(0),
    });
    let honest = Sim::start("");
    let opts = run_options(honest.target(), scratch.path()).expect("cyrus");
    let r = run_scenario(&s, &opts);
    let failed: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(failed, ["connections"], "{:#?}", r.checks);
}

/// `run --target HOST:PORT` against a `backupd-sim serve` started by hand,
/// in each personality, on the scenario that carries every compared row: it
/// passes as it does on the fake, the real backupd and the real sync_server.
/// The final `-u` used to fail both: to the sync_server personality it opens
/// with `APPLY CAPABILITIES` (a handshake), and to the backupd one it re-sends
/// `APPLY QUOTA` (a backupd keeps no quota, so its `GET USER` lists none and
/// sync_client sends the root on every `-u`). The run knows the kind from the
/// greeting: on the replica the history checks quota and the runner reads
/// `GET QUOTA`, so a replica that acknowledges the quota and drops it fails
/// the history's quota check (it used to fail only the final `-u`, where
/// `APPLY QUOTA` counts on a replica).
#[test]
fn a_served_fake_as_host_port_converges_on_every_compared_row() {
    if cyrus_bins().is_none() {
        return;
    }
    let scratch = tempfile::tempdir().expect("tempdir");
    let json = scratch.path().join("report.json");
    let run = |served: &Served| {
        bin(&[
            "run",
            "scenarios/basic/every-compared-row.toml",
            "--target",
            &format!("127.0.0.1:{}", served.port()),
            "--sandbox-dir",
            arg(scratch.path()),
            "--json",
            arg(&json),
            "--color",
            "never",
        ])
    };
    let checks = || {
        let report = std::fs::read_to_string(&json).expect("report.json");
        let v: serde_json::Value = serde_json::from_str(&report).expect("JSON");
        v["scenarios"][0]["checks"]
            .as_array()
            .expect("checks")
            .clone()
    };
    let final_pass = || {
        let checks = checks();
        let last = checks.last().expect("a check");
        assert_eq!(last["name"], "final -u sends no APPLY", "{last}");
        last["detail"].as_str().expect("detail").to_owned()
    };
    // The history check: whether it passed, and its detail.
    let history = || {
        let checks = checks();
        let c = checks
            .iter()
            .find(|c| c["name"] == "acknowledged writes kept")
            .unwrap_or_else(|| panic!("no history check in {checks:?}"));
        (
            c["ok"].as_bool().expect("ok"),
            c["detail"].as_str().expect("detail").to_owned(),
        )
    };
    for (personality, skipped, kind) in [
        (
            "backupd",
            "1 APPLY QUOTA",
            "a backupd by its greeting: quota not checked",
        ),
        (
            "sync_server",
            "1 APPLY CAPABILITIES",
            "a sync_server by its greeting: quota checked",
        ),
    ] {
        let served = Served::start(&["--listen", "127.0.0.1:0", "--personality", personality]);
        let (code, out, err) = run(&served);
        assert_eq!(code, 0, "{personality}:\n{out}\n{err}");
        let detail = final_pass();
        assert!(
            detail.contains("sent 0 APPLY") && detail.contains(skipped),
            "{personality}: {detail}"
        );
        let (ok, detail) = history();
        assert!(ok && detail.contains(kind), "{personality}: {detail}");
        if personality == "sync_server" {
            // The runner's reads asked GET QUOTA of the root (after the
            // steps, and after the catch-up), and they were checked.
            assert!(
                detail.contains("2 GET QUOTA read(s)"),
                "{personality}: {detail}"
            );
        }
        assert_eq!(served.terminate(), 0, "{personality}");
    }

    let plan = scratch.path().join("drop-quota.toml");
    std::fs::write(
        &plan,
        "[[fault]]\nwhen = { verb = \"APPLY QUOTA\" }\naction = \"lie\"\n",
    )
    .expect("plan");
    let served = Served::start(&["--personality", "sync_server", "--plan", arg(&plan)]);
    let (code, out, err) = run(&served);
    assert_eq!(code, 1, "{out}\n{err}");
    let detail = final_pass();
    assert!(
        detail.contains("not converged") && detail.contains("sent 1 APPLY"),
        "{detail}"
    );
    // The history fails it too: the runner's GET QUOTA found no quota on a
    // root the replica acknowledged.
    let (ok, detail) = history();
    assert!(
        !ok && detail.contains("acknowledged write lost")
            && detail.contains("no quota on the root"),
        "{detail}"
    );
    assert_eq!(served.terminate(), 0);
}

/// `compare` against the real backupd: every scenario both can run agrees on
/// verdict, exit codes and checks (or is a listed deviation), and the
/// normalized transcripts of the lock cases are written for both sides.
#[test]
fn compare_with_the_real_backupd_agrees() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("rows.json");
    let d = arg(dir.path());
    let (code, stdout, stderr) = bin(&[
        "compare",
        "scenarios/basic/user-sync.toml",
        "scenarios/basic/every-compared-row.toml",
        "scenarios/locks/d-user-mode-bails-out.toml",
        "scenarios/locks/two-clients-contend.toml",
        "scenarios/faults/lie-caught.toml",
        "-j",
        "2",
        "--sandbox-dir",
        d,
        "--out",
        d,
        "--json",
        arg(&json),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("4 of 5 scenario(s) compared (1 skipped on backupd); 0 with unexplained"),
        "{stdout}"
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let d = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["scenario"] == "d-user-mode-bails-out")
        .expect("row d");
    assert_eq!(d["fake"]["exits"], serde_json::json!([1, 0]));
    assert_eq!(d["real"]["exits"], d["fake"]["exits"]);
    assert_eq!(d["real"]["stats"]["lock_hits"], 1);
    for side in ["fake", "backupd"] {
        let t: PathBuf = dir
            .path()
            .join(side)
            .join("d-user-mode-bails-out/transcript.normalized.txt");
        let text = std::fs::read_to_string(&t).expect("transcript");
        assert!(
            text.contains(
                "C3: GET USER dora\n   ! locked\nS3: NO IMAP_MAILBOX_LOCKED Mailbox locked"
            ),
            "{side}:\n{text}"
        );
    }
}

/// An unknown `--target` is exit 2 naming what is accepted (clap's own
/// `[possible values: …]`, HOST:PORT included).
#[test]
fn a_bad_target_is_exit_2() {
    let (code, _, stderr) = bin(&[
        "run",
        "scenarios/basic/user-sync.toml",
        "--target",
        "nowhere",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("invalid value 'nowhere' for '--target <TARGET>'")
            && stderr.contains(
                "[possible values: fake, fake-sync_server, backupd, sync_server, HOST:PORT]"
            ),
        "{stderr}"
    );
}

/// A compare where the real target can run none of the scenarios compared
/// nothing: exit 2 and says so, as `run` does when nothing ran.
#[test]
fn a_compare_where_nothing_is_runnable_is_exit_2() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = arg(dir.path());
    let (code, stdout, stderr) = bin(&[
        "compare",
        "scenarios/faults/lie-caught.toml",
        "--against",
        "sync_server",
        "--sandbox-dir",
        d,
        "--out",
        d,
    ]);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing compared: every selected scenario was SKIP on sync_server"),
        "{stderr}"
    );
}

/// A scenario in ERROR on either side is not a comparison: the summary does
/// not count it as compared, prints each side's reason, and compare exits 1.
/// (A sandbox dir outside a chroot's root is such an error, before anything runs.)
#[test]
fn an_error_on_either_side_is_named_and_not_counted_as_compared() {
    if crate::util::chroot_bins("3.10").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = arg(dir.path());
    let (code, stdout, stderr) = bin(&[
        "compare",
        "scenarios/basic/user-sync.toml",
        "--against",
        "backupd",
        "--cyrus",
        "3.10",
        "--sandbox-dir",
        d,
        "--out",
        d,
    ]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("0 of 1 scenario(s) compared (0 skipped on backupd, 1 not compared: ERROR)"),
        "{stdout}"
    );
    for side in ["fake", "backupd"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("ERROR user-sync on {side}: "))
                    && l.contains("is outside the chroot")),
            "{side}: {stdout}"
        );
    }
}

/// Acceptance (issue 10): the runner's verdicts for the basic scenarios (first
/// `-u` of users, every change kind through a rolling pass, a rename and a
/// delete of subscribed folders under a rolling pass and under `-u`) are the
/// same on the fake's sync_server personality and on the real sync_server
/// 3.6.1, with no listed deviation: every one PASSes on both, so the raw
/// subscription reader finds the real replica equal to the source (issue 15).
#[test]
fn compare_the_sync_server_personality_with_the_real_sync_server() {
    if cyrus_bins().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = arg(dir.path());
    let (code, stdout, stderr) = bin(&[
        "compare",
        "scenarios/basic",
        "--against",
        "sync_server",
        "-j",
        "2",
        "--sandbox-dir",
        d,
        "--out",
        d,
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let n = std::fs::read_dir(root().join("scenarios/basic"))
        .expect("scenarios/basic")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "toml"))
        })
        .count();
    assert!(
        stdout.contains(&format!(
            "{n} of {n} scenario(s) compared (0 skipped on sync_server); 0 with unexplained"
        )),
        "{stdout}"
    );
    for name in [
        "user-sync",
        "rolling-changes",
        "rename-delete-subscribed-rolling",
        "rename-delete-subscribed-user",
        "every-compared-row",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.get(1..3), Some(&["PASS", "PASS"][..]), "{line}");
    }
    assert!(dir
        .path()
        .join("fake-sync_server/user-sync/transcript.normalized.txt")
        .exists());
}

/// The oracle checked against itself (issue 15 §3): on
/// `scenarios/basic/every-compared-row.toml`, the same readers applied to the
/// fake, a real backupd and a real replica find each equal to the source, and
/// not vacuously: every row the target keeps carries state on the source
/// (mailbox and message annotations, an ACL entry, the owner's `\Seen`, other flags, a
/// `DELETED.*` mailbox, subscriptions, and a quota root where the target
/// keeps quota: the replica and the sync_server personality).
#[test]
fn the_readers_find_every_row_equal_on_the_fake_and_real_targets() {
    use backupd_sim::cyrus::StateScope;
    use backupd_sim::harness::{Harness, HarnessOptions};
    let Some(bins) = cyrus_bins() else {
        return;
    };
    let s = scenario("scenarios/basic/every-compared-row.toml");
    for target in [
        Target::Fake,
        Target::FakeSyncServer,
        Target::Real(TargetKind::Backupd),
        Target::Real(TargetKind::SyncServer),
    ] {
        let mut hopts = HarnessOptions::new(bins.clone());
        hopts.target = target.clone();
        let h = Harness::start(hopts).expect("harness");
        let opts = RunOptions::new(bins.clone(), target.clone());
        let report = backupd_sim::runner::run_on(&h, &s, &opts, backupd_sim::rng::Seed(15));
        let name = target.name();
        assert_eq!(
            report.verdict,
            Verdict::Pass,
            "{name}: {:#?}",
            report.failures()
        );
        let (backup, scope) = h.read_backup(&["olga"]).expect("read backup");
        let source = h.source().read_state(&["olga"]).expect("read source");
        let (source, backup) = (scope.project(&source), scope.project(&backup));
        let c = backupd_sim::check::compare(&source, &backup);
        assert!(c.converged(), "{name}: {c}");
        assert!(scope >= StateScope::Backup, "{name}: {scope:?}");
        let u = &source.users["olga"];
        let inbox = &u.mailboxes["user.olga"];
        assert_eq!(
            inbox
                .annotations
                .get("/private/comment")
                .map(String::as_str),
            Some("changed"),
            "{name}"
        );
        assert_eq!(
            u.mailboxes["user.olga.Sent"]
                .annotations
                .get("/shared/comment")
                .map(String::as_str),
            Some("ours"),
            "{name}"
        );
        let m1 = &inbox.messages[&1];
        assert_eq!(
            m1.annotations
                .get("/comment value.priv")
                .map(String::as_str),
            Some("changed note"),
            "{name}"
        );
        assert!(
            m1.flags.contains(&"\\Seen".to_owned()) && m1.flags.contains(&"$Label1".to_owned())
        );
        assert_eq!(
            inbox.messages[&2]
                .annotations
                .get("/comment value.shared")
                .map(String::as_str),
            Some("shared note"),
            "{name}"
        );
        assert!(
            u.deleted
                .keys()
                .any(|n| n.starts_with("DELETED.user.olga.Work.Projects.")),
            "{name}: {:?}",
            u.deleted
        );
        assert!(u.subscriptions.contains("user.olga.Sent"), "{name}");
        assert_eq!(
            u.mailboxes["user.olga.Sent"]
                .acl
                .get("anyone")
                .map(String::as_str),
            Some("lr"),
            "{name}"
        );
        let quota = u.quotas.get("user.olga");
        if scope == StateScope::Full {
            assert_eq!(
                quota,
                // The second SETQUOTA gave STORAGE only: MESSAGE is unlimited now.
                Some(&[("STORAGE".to_owned(), 200_000)].into()),
                "{name}"
            );
        } else {
            assert_eq!(quota, None, "{name}: quota is not compared at {scope:?}");
        }
    }
}
