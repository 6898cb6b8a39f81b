//! Real Cyrus targets (a real `backupd`, a real `sync_server` replica) fed by the real
//! `sync_client` from a real source: convergence, a real backup lock (lab case A),
//! nothing left running; and a tiny benchmark run.

use std::path::Path;
use std::time::Duration;

use backupd_sim::check::compare;
use backupd_sim::cyrus::process::pid_alive;
use backupd_sim::cyrus::{
    Channel, RealTarget, SourceInstance, SourceOptions, StateScope, SyncClient, SyncRun, TargetKind,
};
use backupd_sim::populate::{append_random, fill_user, message};
use backupd_sim::rng::{Rng, Seed};

const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// A sandbox under /tmp (cyrus must traverse it); kept when BACKUPD_SIM_KEEP=1.
fn sandbox() -> tempfile::TempDir {
    let mut d = tempfile::Builder::new()
        .prefix("backupd-sim-target-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    if std::env::var("BACKUPD_SIM_KEEP").is_ok_and(|v| v == "1") {
        d.disable_cleanup(true);
    }
    d
}

fn source_for(
    bins: &backupd_sim::cyrus::CyrusBins,
    dir: &Path,
    target: &RealTarget,
) -> SourceInstance {
    let mut opts = SourceOptions::new(bins.clone(), dir.join("src"));
    opts.channels = vec![Channel::new("backup", target.addr().port())];
    SourceInstance::start(&opts).expect("source")
}

fn sync(bins: &backupd_sim::cyrus::CyrusBins, source: &SourceInstance, args: &[&str]) -> SyncRun {
    let mut argv: Vec<String> = vec!["-n".into(), "backup".into()];
    argv.extend(args.iter().map(|s| s.to_string()));
    SyncClient::new(bins, source.config_path())
        .run(&argv, SYNC_TIMEOUT)
        .expect("sync_client")
}

/// Compare at the target's scope (both sides cut down alike); panics with the diff.
fn assert_converged(source: &SourceInstance, target: &RealTarget, users: &[&str], what: &str) {
    let scope = target.state_scope();
    let s = scope.project(&source.read_state(users).expect("read source"));
    let t = scope.project(&target.read_state(users).expect("read target"));
    assert!(
        !s.users.values().all(|u| u.mailboxes.is_empty()),
        "empty source"
    );
    let c = compare(&s, &t);
    assert!(
        c.converged(),
        "{what}: {} in {} not converged with the source (scope {scope:?}):\n{c}",
        target.kind().name(),
        target.root().display()
    );
}

/// Like `populate::more_changes` but every new body is unique: real backupd keys
/// records by (mailbox, GUID), see `real_backupd_loses_a_live_duplicate`.
fn unique_changes(source: &SourceInstance, user: &str) {
    let mut c = source.login_as(user).expect("login");
    for i in 0..10 {
        let folder = if i % 2 == 0 { "INBOX" } else { "INBOX.Sent" };
        let body = message(&format!("{user}-more"), i, 300);
        c.append(folder, &["\\Seen"], Some(1_767_300_000 + i as i64), &body)
            .expect("append");
    }
    c.select("INBOX").expect("select");
    c.uid_store("1", "+FLAGS", &["\\Answered", "$Label1"])
        .expect("store");
    c.uid_store("2", "-FLAGS", &["\\Seen"]).expect("store");
    c.select("INBOX.Sent").expect("select");
    c.uid_store("1", "+FLAGS", &["\\Deleted"]).expect("store");
    c.expunge().expect("expunge");
    c.create("INBOX.New").expect("create");
    c.append(
        "INBOX.New",
        &[],
        None,
        &message(&format!("{user}-new"), 0, 100),
    )
    .expect("append");
    c.subscribe("INBOX.New").expect("subscribe");
    c.unsubscribe("INBOX.Sent").expect("unsubscribe");
    c.logout().expect("logout");
}

fn assert_all_gone(pids: &[i32]) {
    let alive: Vec<i32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
    assert!(alive.is_empty(), "processes left after stop: {alive:?}");
}

/// `-u` of 2 users (6 folders, flags, expunges, a rename, a delayed delete,
/// subscriptions) into the real target converges with the source, field by field
/// (flags, INTERNALDATE, size, counters, subscriptions included when the scope is
/// Full); more changes and one rolling `-R -1` pass converge too; stop leaves no
/// process (master, service children) behind.
fn converges(kind: TargetKind) {
    let Some(bins) = crate::util::cyrus_bins() else {
        return;
    };
    let dir = sandbox();
    let mut target = RealTarget::start(kind, &bins, &dir.path().join("target"), "repluser", "lab")
        .expect("target");
    assert_eq!(target.kind(), kind);
    if kind == TargetKind::SyncServer {
        assert!(target.imap_addr().is_some());
        assert_eq!(target.state_scope(), StateScope::Full);
    }
    let mut source = source_for(&bins, dir.path(), &target);
    let users = ["alice", "bob"];
    let mut rng = Rng::new(Seed(61)).fork("populate");
    for u in users {
        // At most 29 messages: each fixture body at most once (see unique_changes).
        fill_user(&source, u, 29, &mut rng).expect("fill");
    }
    // Nothing yet: the target reads as empty, not as an error.
    assert!(target
        .read_state(&users)
        .expect("read")
        .users
        .values()
        .all(|u| u.mailboxes.is_empty()));

    let run = sync(&bins, &source, &["-u", "alice", "bob"]);
    assert_eq!(run.status, Some(0), "{run}");
    assert_converged(&source, &target, &users, "after -u");

    unique_changes(&source, "alice");
    unique_changes(&source, "bob");
    let run = sync(&bins, &source, &["-R", "-1"]);
    assert_eq!(run.status, Some(0), "{run}");
    assert_converged(&source, &target, &users, "after -R -1");

    let mut pids = target.pids();
    pids.extend(source.pids());
    assert!(pids.iter().all(|p| pid_alive(*p)) || !pids.is_empty());
    target.stop().expect("stop target");
    source.stop().expect("stop source");
    assert!(!target.is_running());
    assert_all_gone(&pids);
}

#[test]
fn real_backupd_converges() {
    converges(TargetKind::Backupd);
}

#[test]
fn real_sync_server_converges() {
    converges(TargetKind::SyncServer);
}

/// Lab case A for real: with the user's backup held by `ctl_backups lock`, a
/// `-R -1` pass over APPEND/MAILBOX entries defers (`Deferred: MAILBOX user.X` on
/// stderr with `-v -v`, the entry re-appended to the channel log, exit 0) and the
/// backup does not change; after release the next pass converges and drains the log.
#[test]
fn real_backupd_lock_defers_then_converges() {
    let Some(bins) = crate::util::cyrus_bins() else {
        return;
    };
    let dir = sandbox();
    let mut target = RealTarget::start(
        TargetKind::Backupd,
        &bins,
        &dir.path().join("target"),
        "repluser",
        "lab",
    )
    .expect("target");
    let mut source = source_for(&bins, dir.path(), &target);
    let mut rng = Rng::new(Seed(62)).fork("populate");
    fill_user(&source, "anna", 12, &mut rng).expect("fill");
    // Create the backup and drain the channel log.
    assert_eq!(sync(&bins, &source, &["-u", "anna"]).status, Some(0));
    assert_eq!(sync(&bins, &source, &["-R", "-1"]).status, Some(0));
    assert!(!source.sync_log_path("backup").exists(), "log not drained");
    assert_converged(&source, &target, &["anna"], "before the lock");
    assert!(!target.is_locked("anna").expect("probe"));

    let mut lock = target.lock_user("anna").expect("lock");
    let lock_pid = lock.pid().expect("lock pid");
    assert!(target.is_locked("anna").expect("probe"));
    let mut c = source.login_as("anna").expect("login");
    for i in 0..3 {
        append_random(&mut c, "INBOX", "anna-locked", i, &mut rng).expect("append");
    }
    c.logout().expect("logout");
    let run = sync(&bins, &source, &["-v", "-v", "-R", "-1"]);
    assert_eq!(run.status, Some(0), "{run}");
    assert!(
        run.stderr.contains("Deferred: MAILBOX user.anna"),
        "no deferral:\n{run}"
    );
    let log = std::fs::read_to_string(source.sync_log_path("backup")).expect("channel log kept");
    assert!(log.contains("MAILBOX user.anna"), "not re-logged: {log}");
    assert!(
        !source.sync_log_run_path("backup").exists(),
        "case A counts as a success: log-run removed"
    );

    lock.release().expect("release");
    assert!(!pid_alive(lock_pid), "ctl_backups lock still running");
    assert!(!target.is_locked("anna").expect("probe"));
    let run = sync(&bins, &source, &["-R", "-1"]);
    assert_eq!(run.status, Some(0), "{run}");
    assert_converged(&source, &target, &["anna"], "after release");
    assert!(!source.sync_log_path("backup").exists(), "log not drained");

    let mut pids = target.pids();
    pids.extend(source.pids());
    target.stop().expect("stop");
    source.stop().expect("stop");
    assert_all_gone(&pids);
}

/// A finding about the real backupd 3.6.1, pinned: it keeps one record per
/// (mailbox, GUID). The same bytes appended twice to one folder share one row;
/// expunging the first copy marks that row expunged, so the backup loses the
/// second copy, which is still live on the source. (The fake keys records by UID
/// and keeps it; compare with the fake, not with this.)
#[test]
fn real_backupd_loses_a_live_duplicate() {
    let Some(bins) = crate::util::cyrus_bins() else {
        return;
    };
    let dir = sandbox();
    let target = RealTarget::start(
        TargetKind::Backupd,
        &bins,
        &dir.path().join("target"),
        "repluser",
        "lab",
    )
    .expect("target");
    let source = source_for(&bins, dir.path(), &target);
    source.create_user("dup").expect("user");
    let body = message("dup", 1, 200);
    let mut c = source.login_as("dup").expect("login");
    c.append("INBOX", &[], None, &body).expect("append");
    c.append("INBOX", &[], None, &message("dup", 2, 200))
        .expect("append");
    c.logout().expect("logout");
    assert_eq!(sync(&bins, &source, &["-u", "dup"]).status, Some(0));
    assert_converged(&source, &target, &["dup"], "before the duplicate");
    let mut c = source.login_as("dup").expect("login");
    c.append("INBOX", &[], None, &body)
        .expect("append the same bytes again");
    c.select("INBOX").expect("select");
    c.uid_store("1", "+FLAGS", &["\\Deleted"]).expect("store");
    c.expunge().expect("expunge");
    c.logout().expect("logout");
    assert_eq!(sync(&bins, &source, &["-R", "-1"]).status, Some(0));
    let scope = target.state_scope();
    let s = scope.project(&source.read_state(&["dup"]).expect("source"));
    let t = scope.project(&target.read_state(&["dup"]).expect("target"));
    let c = compare(&s, &t);
    assert_eq!(c.lost_messages(), 1, "{c}");
    assert_eq!(c.divergences.len(), 1, "{c}");
    assert_eq!(c.divergences[0].uid, Some(3), "{c}");
}

/// `run_bench` end to end at tiny sizes (one repetition, no scenario suite):
/// every workload runs against the floor, the fake (a `backupd-sim serve` child),
/// the real backupd and the real sync_server; both result files are written,
/// with a row per target and the goals evaluated.
#[test]
fn bench_smoke_quick() {
    let Some(bins) = crate::util::cyrus_bins() else {
        return;
    };
    let out = sandbox();
    let mut opts =
        backupd_sim::bench::BenchOptions::new(bins, env!("CARGO_BIN_EXE_backupd-sim")).quick();
    opts.reps = 1;
    opts.scenarios = None;
    opts.out_dir = out.path().join("bench");
    opts.verbose = false;
    let t = std::time::Instant::now();
    let r = backupd_sim::bench::run_bench(&opts).expect("bench");
    eprintln!("bench smoke took {:.1} s", t.elapsed().as_secs_f64());
    for id in [1, 2] {
        let w = r.workloads.iter().find(|w| w.id == id).expect("workload");
        for target in ["floor", "fake", "backupd", "sync_server"] {
            assert!(
                w.series
                    .iter()
                    .any(|s| s.target == target && s.metric == "wall" && s.median > 0.0),
                "workload {id}: no wall time for {target}"
            );
        }
        let fake_cpu = w
            .series
            .iter()
            .find(|s| s.target == "fake" && s.metric == "target_cpu");
        assert!(fake_cpu.is_some(), "workload {id}: no fake CPU");
    }
    assert!(r
        .workloads
        .iter()
        .any(|w| w.id == 4 && w.skipped.is_none() && !w.series.is_empty()));
    assert!(r.goals.iter().any(|g| g.name.contains("peak RSS")));
    let md = std::fs::read_to_string(opts.out_dir.join("results.md")).expect("md");
    assert!(md.contains("| fake | wall (s)"), "{md}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(opts.out_dir.join("results.json")).expect("json"),
    )
    .expect("valid json");
    assert_eq!(json["workloads"].as_array().map(Vec::len), Some(6));
}

/// Without the `sqlite3` tool a real backupd is not read (its `cyr_backup`
/// lists removed mailboxes as well, and only the index tells them apart): the
/// run is an ERROR that says what to install, not a comparison that reports
/// every removed mailbox as on the backup.
#[test]
fn a_real_backupd_is_not_read_without_sqlite3() {
    if crate::util::cyrus_bins().is_none() {
        return;
    }
    let empty = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = crate::util::bin_in(
        Path::new(env!("CARGO_MANIFEST_DIR")),
        &[
            "run",
            "--target",
            "backupd",
            "--color",
            "never",
            "scenarios/basic/user-sync.toml",
        ],
        &[("PATH", empty.path())],
    );
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("ERROR user-sync")
            && stdout.contains("reading a real backupd needs the `sqlite3` tool"),
        "{stdout}\n{stderr}"
    );
}
