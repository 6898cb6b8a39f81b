//! Real Cyrus versions side by side: the host's 3.6.1 and the 3.10.2 and
//! 3.12.4 chroots built by `backupd-sim cyrus install` (`make test` builds
//! them first). Per-version expectations in scenario files, the version x
//! scenario table, the 3.12 dialect as the fake sees it, and chroot'd
//! processes stopped by PID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use backupd_sim::cyrus::process;
use backupd_sim::harness::{Harness, HarnessOptions};
use backupd_sim::scenario::{ExitWant, Scenario};

use crate::util::{chroot_bins, cyrus_bins};

fn bin(args: &[&str], env: &[(&str, &Path)]) -> (i32, String, String) {
    crate::util::bin_in(Path::new(env!("CARGO_MANIFEST_DIR")), args, env)
}

fn parse(text: &str) -> Result<Scenario, String> {
    Scenario::parse(text, Path::new("v.toml")).map_err(|e| e.to_string())
}

/// `[expect.versions."X"]` overrides keys for versions with that prefix (the
/// longest prefix wins, `3.1` does not match 3.10.2) and `lost` keeps
/// following `converged` unless given.
#[test]
fn expectations_per_version() {
    let s = parse(
        r#"
description = "d"
[[user]]
name = "u"
[expect]
deferrals = { min = 1 }
snapshot = true
[expect.versions."3"]
lock_hits = { max = 9 }
[expect.versions."3.12"]
converged = false
lost = 1
snapshot_name = "x@3.12"
[expect.versions."3.12.4"]
deferrals = { min = 2 }
[expect.versions."3.1"]
queued = 7
"#,
    )
    .expect("valid");
    let e = s.expect.for_version("3.6.1");
    assert_eq!(e.deferrals.and_then(|r| r.min), Some(1));
    assert_eq!(e.lock_hits.and_then(|r| r.max), Some(9));
    assert_eq!((e.converged, e.lost, e.queued), (true, Some(0), None));
    assert_eq!(e.snapshot_name, None);
    let e = s.expect.for_version("3.12.4");
    assert_eq!(e.deferrals.and_then(|r| r.min), Some(2));
    assert_eq!((e.converged, e.lost), (false, Some(1)));
    assert_eq!(e.snapshot_name.as_deref(), Some("x@3.12"));
    let e = s.expect.for_version("3.12.3");
    assert_eq!(e.deferrals.and_then(|r| r.min), Some(1));
    assert_eq!(s.expect.for_version("3.10.2").queued, None);
}

/// A patched build (`cyrus build --patch sync-client-backoff.patch`, version
/// `3.6.1+sync-client-backoff`) gets the expectations of its number and of its
/// tags: `known_failure = false` in a tagged table drops the stock client's
/// known failure; a tagged prefix never matches a stock client.
#[test]
fn patched_builds_match_by_their_tags() {
    use backupd_sim::scenario::version_matches;
    assert!(version_matches("3.6", "3.6.1+sync-client-backoff"));
    assert!(version_matches(
        "3.6+sync-client-backoff",
        "3.6.1+sync-client-backoff"
    ));
    assert!(version_matches(
        "+sync-client-backoff",
        "3.12.4+x+sync-client-backoff"
    ));
    assert!(!version_matches("3.6+sync-client-backoff", "3.6.1"));
    assert!(!version_matches(
        "3.10+sync-client-backoff",
        "3.6.1+sync-client-backoff"
    ));
    assert!(!version_matches("+other", "3.6.1+sync-client-backoff"));
    let s = parse(
        r#"
description = "d"
[[user]]
name = "u"
[expect]
reconnect_rate_max = 3.0
known_failure = { reason = "stock storms", checks = ["reconnect rate"] }
[expect.versions."+sync-client-backoff"]
known_failure = false
[expect.versions."3.12"]
deferrals = { min = 2 }
"#,
    )
    .expect("valid");
    assert!(s.expect.for_version("3.6.1").known_failure.is_some());
    assert!(s.expect.for_version("3.12.4").known_failure.is_some());
    let patched = s.expect.for_version("3.6.1+sync-client-backoff");
    assert!(patched.known_failure.is_none());
    assert_eq!(patched.reconnect_rate_max, Some(3.0));
    let patched = s.expect.for_version("3.12.4+sync-client-backoff");
    assert!(patched.known_failure.is_none());
    assert_eq!(patched.deferrals.and_then(|r| r.min), Some(2));
    // `true` says nothing and is refused; so is a bad tag.
    for (tail, what) in [
        (
            "[expect.versions.\"+x\"]\nknown_failure = true\n",
            "known_failure = true says nothing",
        ),
        // A known failure names its checks, and for the two that list lines,
        // the lines: else a new failure would hide behind it.
        (
            "known_failure = { reason = \"r\" }\n",
            "known_failure needs `checks`",
        ),
        (
            "[expect.versions.\"3.10\"]\nknown_failure = { reason = \"r\", checks = [\"converged\"] }\n",
            "needs `differences`",
        ),
        (
            "[expect.versions.\"3.6+\"]\nconverged = false\n",
            "expected a version prefix",
        ),
        (
            "[expect.versions.\"3.6+a b\"]\nconverged = false\n",
            "expected a version prefix",
        ),
    ] {
        let err = parse(&format!(
            "description = \"d\"\n[[user]]\nname = \"u\"\n[expect]\n{tail}"
        ))
        .expect_err(tail);
        assert!(err.contains(what), "{tail}: {err}");
    }
}

/// `expect_exit` by version: the longest matching prefix, else `other`;
/// `"timeout"` means the run is expected to be killed at its deadline.
#[test]
fn exit_expectations_per_version() {
    let s = parse(
        r#"
description = "d"
[[user]]
name = "u"
[[step]]
sync = { flags = ["-o"], expect_exit = { "3.6" = "timeout", "3.12.4" = 2, other = 1 } }
[[step]]
sync = { expect_exit = 0 }
"#,
    )
    .expect("valid");
    let want = |i: usize, v: &str| match &s.steps[i] {
        backupd_sim::scenario::Step::Sync(spec) => {
            spec.expect_exit.as_ref().map(|e| e.for_version(v))
        }
        other => panic!("not a sync step: {other:?}"),
    };
    assert_eq!(want(0, "3.6.1"), Some(ExitWant::Timeout));
    assert_eq!(want(0, "3.10.2"), Some(ExitWant::Code(1)));
    assert_eq!(want(0, "3.12.4"), Some(ExitWant::Code(2)));
    assert_eq!(want(0, "3.12.3"), Some(ExitWant::Code(1)));
    assert_eq!(want(1, "3.12.4"), Some(ExitWant::Code(0)));
}

/// Bad per-version input is refused with the file, the line and what was expected.
#[test]
fn bad_version_keys_are_refused_with_their_line() {
    let head = "description = \"d\"\n[[user]]\nname = \"u\"\n";
    let cases = [
        (
            "[expect]\n[expect.versions.\"3.x\"]\nconverged = false\n",
            "5",
            "expected a version prefix",
        ),
        (
            "[expect]\n[expect.versions.\"3.10\"]\nconverge = false\n",
            "6",
            "unknown field `converge`",
        ),
        (
            "[[step]]\nsync = { expect_exit = { \"3.6\" = \"timeout\" } }\n",
            "4",
            "needs an `other` entry",
        ),
        // A divergence expected without `lost` would leave the ledger
        // unchecked, in [expect] or in a version's table.
        (
            "[expect]\nconverged = false\n",
            "5",
            "converged = false needs `lost`",
        ),
        (
            "[expect]\n[expect.versions.\"3.10\"]\nconverged = false\n",
            "5",
            "[expect.versions.\"3.10\"]: converged = false needs `lost`",
        ),
        (
            "[[step]]\nsync = { expect_exit = \"slow\" }\n",
            "4",
            "expected an exit code or \"timeout\"",
        ),
        (
            "[[step]]\nsync = { expect_exit = { \"3.1x\" = 1, other = 0 } }\n",
            "4",
            "expected a version prefix",
        ),
    ];
    for (tail, line, what) in cases {
        let err = parse(&format!("{head}{tail}")).expect_err(tail);
        assert!(
            err.starts_with(&format!("v.toml:{line}:")) && err.contains(what),
            "{tail}: {err}"
        );
    }
    // The CLI's --check: exit 2 naming the file.
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad.toml");
    std::fs::write(
        &f,
        format!("{head}[expect]\n[expect.versions.\"3.10\"]\nconverge = false\n"),
    )
    .expect("write");
    let (code, _, stderr) = bin(&["run", "--check", f.to_str().expect("path")], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.toml:6:"), "{stderr}");
}

/// An uninstalled version is an environment error (exit 2) that says how to
/// install it; `cyrus list` says what is missing; an unknown version is refused.
#[test]
fn missing_versions_are_reported() {
    let empty = tempfile::tempdir().expect("tempdir");
    let env = [("BACKUPD_SIM_CYRUS_CACHE", empty.path())];
    let (code, _, stderr) = bin(
        &["run", "scenarios/basic/user-sync.toml", "--cyrus", "3.10"],
        &env,
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("backupd-sim cyrus install 3.10"),
        "{stderr}"
    );
    let (code, stdout, stderr) = bin(&["cyrus", "list"], &env);
    assert_eq!(code, 0, "{stderr}");
    for v in ["3.10", "3.12"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(v))
            .unwrap_or_else(|| panic!("no line for {v}: {stdout}"));
        assert!(
            line.contains(&format!("not installed (`backupd-sim cyrus install {v}`)")),
            "{line}"
        );
    }
    let (code, _, stderr) = bin(&["cyrus", "install", "3.7"], &env);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expected one of 3.10, 3.12"), "{stderr}");
    // Nothing was created for the refused version.
    assert_eq!(std::fs::read_dir(empty.path()).expect("ls").count(), 0);
}

/// `cyrus list` shows the host's 3.6.1 and each installed chroot with the
/// version its `master -V` reports and its size.
#[test]
fn list_shows_every_installed_version() {
    if cyrus_bins().is_none() {
        return;
    }
    let (Some(b310), Some(b312)) = (chroot_bins("3.10"), chroot_bins("3.12")) else {
        return;
    };
    let (code, stdout, stderr) = bin(&["cyrus", "list"], &[]);
    assert_eq!(code, 0, "{stderr}");
    let line = |v: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(v))
            .unwrap_or_else(|| panic!("no line for {v}: {stdout}"))
            .to_owned()
    };
    assert!(line("3.6").contains(" 3.6.1 "), "{stdout}");
    for (v, full, bins) in [("3.10", "3.10.2", &b310), ("3.12", "3.12.4", &b312)] {
        let l = line(v);
        assert!(l.contains(&format!(" {full} ")), "{l}");
        assert!(l.contains(" MiB"), "{l}");
        let root = bins.chroot().expect("a chroot");
        assert!(l.ends_with(&root.display().to_string()), "{l}");
        assert_eq!(bins.version(), full);
    }
    // A sandbox dir outside the root is refused up front (exit 2), not per scenario.
    let (code, _, stderr) = bin(
        &[
            "run",
            "scenarios/basic/user-sync.toml",
            "--cyrus",
            "3.12",
            "--sandbox-dir",
            "/tmp",
        ],
        &[],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is outside the chroot"), "{stderr}");
}

/// The source and sync_client of a chroot installation run through `chroot`,
/// and their PIDs are the Cyrus programs' own (chroot execs them): the exe
/// seen from the host is under the root, the interrupt registry holds that
/// PID, and stopping by PID leaves nothing behind. The sandbox lives under
/// the root's tmp and is removed.
#[test]
fn chroot_processes_are_the_cyrus_programs_and_stop_by_pid() {
    let Some(bins) = chroot_bins("3.10") else {
        return;
    };
    let root = bins.chroot().expect("a chroot").to_owned();
    let exe = |pid: i32| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let h = Harness::start(HarnessOptions::new(bins.clone())).expect("harness on 3.10");
    let sandbox = h.sandbox().to_owned();
    assert!(
        sandbox.starts_with(root.join("tmp")),
        "{}",
        sandbox.display()
    );
    let master = h.source().master_pid();
    assert_eq!(exe(master), Some(root.join("usr/lib/cyrus/bin/master")));
    let mut client = h
        .client()
        .spawn(&["-n".into(), "backup".into(), "-R".into()])
        .expect("spawn -R");
    let pid = i32::try_from(client.pid().expect("running")).expect("pid");
    assert!(process::wait_until(Duration::from_secs(5), || exe(pid)
        == Some(root.join("usr/lib/cyrus/bin/sync_client"))));
    assert!(process::tracked().iter().any(|(t, _)| t.pid == pid));
    assert!(process::tracked().iter().any(|(t, _)| t.pid == master));
    let run = client.stop(Duration::from_secs(5)).expect("stop");
    assert_eq!(
        run.argv.first().map(String::as_str),
        Some("chroot"),
        "{run}"
    );
    assert!(
        run.argv
            .iter()
            .any(|a| a == "/usr/lib/cyrus/bin/sync_client"),
        "{run}"
    );
    assert!(!process::pid_alive(pid));
    let mut pids = Vec::new();
    pids.extend(process::descendants(master).iter().map(|s| s.pid));
    pids.push(master);
    drop(h);
    assert!(pids.iter().all(|&p| !process::pid_alive(p)), "{pids:?}");
    assert!(!sandbox.exists());
    // A path outside the root is refused, not silently misread inside it.
    assert!(bins.inside(Path::new("/tmp/x")).is_err());
    assert_eq!(
        bins.inside(&root.join("tmp/x")).expect("inside"),
        PathBuf::from("/tmp/x")
    );
}

/// A loopback relay in front of `to` that records what clients send.
fn recording_relay(
    to: std::net::SocketAddr,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the relay");
    let addr = listener.local_addr().expect("relay address");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let Ok(mut server) = TcpStream::connect(to) else {
                return;
            };
            let (mut c2, mut s2) = (
                client.try_clone().expect("clone"),
                server.try_clone().expect("clone"),
            );
            let record = Arc::clone(&record);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let mut r = record.lock().expect("lock");
                    // Bounded: the test's commands are a few KiB.
                    if r.len() < 1 << 20 {
                        r.extend_from_slice(&buf[..n]);
                    }
                }
                let _ = server.shutdown(Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, seen)
}

/// What each client sends in `-u` mode (recorded by a relay, compression
/// off): 3.12.4 adds `GET MAILBOXES` right after `GET USER` and `USERFLAGS`
/// in every `APPLY MAILBOX`; 3.6.1 and 3.10.2 do neither. The fake takes
/// both dialects: all converge.
#[test]
fn user_mode_dialect_per_version() {
    let (Some(b36), Some(b310), Some(b312)) =
        (cyrus_bins(), chroot_bins("3.10"), chroot_bins("3.12"))
    else {
        return;
    };
    for (bins, is_312) in [(b36, false), (b310, false), (b312, true)] {
        let version = bins.version();
        let mut opts = HarnessOptions::new(bins);
        opts.server.session.offer_compress = false;
        let h = Harness::start(opts).expect("harness");
        h.source().create_user("vera").expect("user");
        let mut imap = h.source().login_as("vera").expect("login");
        imap.create("INBOX.Work").expect("create");
        imap.append("INBOX", &["$Label1"], None, b"Subject: v\r\n\r\nbody\r\n")
            .expect("append");
        imap.logout().expect("logout");
        let (relay, seen) = recording_relay(h.fake_addr());
        let server = format!("127.0.0.1:{}", relay.port());
        let run = h.sync(&["-S", &server, "-u", "vera"]).expect("sync");
        assert!(run.success(), "{version}: {run}");
        assert!(
            h.compare(&["vera"]).expect("compare").converged(),
            "{version}: not converged"
        );
        let sent = String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned();
        let get_user = sent.find("GET USER vera").expect("GET USER sent");
        let after = &sent[get_user..];
        let first_apply = after.find("APPLY").unwrap_or(after.len());
        assert_eq!(
            after.find("GET MAILBOXES").is_some_and(|i| i < first_apply),
            is_312,
            "{version}: GET MAILBOXES between GET USER and the first APPLY:\n{sent}"
        );
        let apply_mailbox: Vec<&str> = sent
            .split("\r\n")
            .filter(|l| l.starts_with("APPLY MAILBOX"))
            .collect();
        assert_eq!(apply_mailbox.len(), 2, "{version}:\n{sent}");
        for l in &apply_mailbox {
            assert_eq!(l.contains(" USERFLAGS ("), is_312, "{version}: {l}");
        }
        if is_312 {
            assert!(
                apply_mailbox
                    .iter()
                    .any(|l| l.contains("USERFLAGS ($Label1)")),
                "{sent}"
            );
        }
    }
}

/// The reduced matrix of `make test`: lock cases A and D and a first `-u`
/// convergence on 3.10.2 and 3.12.4, each as its scenario expects, and the
/// version x scenario table with both columns.
#[test]
fn reduced_matrix_on_the_chroot_versions() {
    if chroot_bins("3.10").is_none() || chroot_bins("3.12").is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("m.json");
    let (code, stdout, stderr) = bin(
        &[
            "run",
            "scenarios/locks/a-rolling-once-defers.toml",
            "scenarios/locks/d-user-mode-bails-out.toml",
            "scenarios/basic/user-sync.toml",
            "scenarios/faults/connect-once-refused.toml",
            "--cyrus",
            "3.10",
            "--cyrus",
            "3.12",
            "-j",
            "2",
            "--json",
            json.to_str().expect("path"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("scenario") && l.contains("3.10.2"))
        .unwrap_or_else(|| panic!("no matrix table:\n{stdout}"));
    assert!(header.contains("3.12.4"), "{header}");
    for name in [
        "a-rolling-once-defers",
        "d-user-mode-bails-out",
        "user-sync",
        "connect-once-refused",
    ] {
        // The table's row: the name and one verdict per version.
        let row = stdout
            .lines()
            .find(|l| {
                l.split_whitespace().next() == Some(name) && l.split_whitespace().count() == 3
            })
            .unwrap_or_else(|| panic!("no row {name}:\n{stdout}"));
        assert_eq!(
            row.split_whitespace().skip(1).collect::<Vec<_>>(),
            ["PASS", "PASS"],
            "{row}"
        );
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(report["passed"], true);
    let versions = report["versions"].as_array().expect("versions");
    let names: Vec<&str> = versions
        .iter()
        .filter_map(|v| v["cyrus_version"].as_str())
        .collect();
    assert_eq!(names, ["3.10.2", "3.12.4"]);
    for v in versions {
        for s in v["scenarios"].as_array().expect("scenarios") {
            // Case A deferred and case D was refused once, on both versions.
            match s["name"].as_str() {
                Some("a-rolling-once-defers") => {
                    assert!(s["stats"]["deferrals"].as_u64() >= Some(1), "{s}")
                }
                Some("d-user-mode-bails-out") => {
                    assert_eq!(s["stats"]["lock_hits"].as_u64(), Some(1), "{s}")
                }
                _ => {}
            }
            // The replay names the chroot.
            assert!(
                s["replay"]
                    .as_str()
                    .is_some_and(|r| r.contains("--cyrus /")),
                "{s}"
            );
        }
    }
}

/// SIGINT in the middle of a run on a chroot version (the continuous client
/// storming a locked user) stops every chroot'd Cyrus process by PID and
/// removes the sandbox under the root: exit 130, nothing left.
#[test]
fn interrupt_leaves_no_chroot_process_or_sandbox() {
    use nix::sys::signal::{kill, Signal};
    let Some(bins) = chroot_bins("3.12") else {
        return;
    };
    let root = bins.chroot().expect("a chroot").to_owned();
    let parent = tempfile::Builder::new()
        .prefix("versions-hygiene-")
        .tempdir_in(root.join("tmp"))
        .expect("sandbox parent under the root");
    // Every Cyrus process of this run names this inside path in its command line.
    let needle = bins
        .inside(parent.path())
        .expect("inside")
        .display()
        .to_string();
    let ours = || -> Vec<(i32, String)> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|&pid| process::pid_alive(pid))
            .filter_map(|pid| {
                let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
                cmd.contains(&needle).then_some((pid, cmd))
            })
            .collect()
    };
    let logs = tempfile::tempdir().expect("logs");
    let mut child = Command::new(crate::util::BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/locks/c-continuous-storm.toml",
            "--cyrus",
            "3.12",
            "--sandbox-dir",
        ])
        .arg(parent.path())
        .stdout(std::fs::File::create(logs.path().join("out")).expect("out"))
        .stderr(std::fs::File::create(logs.path().join("err")).expect("err"))
        .spawn()
        .expect("start backupd-sim run");
    // Wait until a chroot'd sync_client runs for this sandbox.
    let started = process::wait_until(Duration::from_secs(60), || {
        ours()
            .iter()
            .any(|(_, c)| c.contains("sync_client") && c.contains(" -R"))
    });
    let err = || std::fs::read_to_string(logs.path().join("err")).unwrap_or_default();
    if !started {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no continuous sync_client appeared:\n{}", err());
    }
    let seen = ours();
    kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        Signal::SIGINT,
    )
    .expect("SIGINT");
    let mut status = None;
    process::wait_until(Duration::from_secs(30), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("no exit within 30 s after SIGINT:\n{}", err());
    };
    assert_eq!(status.code(), Some(130), "{}", err());
    assert!(
        err().contains("interrupted: stopped 1 Cyrus instance"),
        "{}",
        err()
    );
    assert!(
        seen.iter().all(|(pid, _)| !process::pid_alive(*pid)),
        "left alive: {seen:?}"
    );
    assert!(ours().is_empty(), "{:?}", ours());
    let left: Vec<_> = std::fs::read_dir(parent.path())
        .expect("ls")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "sandboxes left: {left:?}");
}

/// The subscription reader is raw on every version, host and chroot alike:
/// after a RENAME and a DELETE of subscribed folders, the user's sub.db still
/// holds both old names (Cyrus moves and drops no subscription), LSUB hides
/// them, `LIST (SUBSCRIBED)` lists them as `\NonExistent`, and the source
/// reader returns exactly the database's set. (docs/findings/subscriptions.md)
#[test]
fn subscriptions_are_read_raw_on_every_version() {
    let (Some(b36), Some(b310), Some(b312)) =
        (cyrus_bins(), chroot_bins("3.10"), chroot_bins("3.12"))
    else {
        return;
    };
    for bins in [b36, b310, b312] {
        let version = bins.version();
        let h = Harness::start(HarnessOptions::new(bins.clone())).expect("harness");
        let mut rng = backupd_sim::rng::Rng::new(backupd_sim::rng::Seed(7));
        backupd_sim::populate::fill_user(h.source(), "sue", 2, &mut rng).expect("fill");
        let mut imap = h.source().login_as("sue").expect("login");
        imap.rename("INBOX.Work", "INBOX.Job").expect("rename");
        imap.delete("INBOX.Archive2025").expect("delete");
        let lsub: Vec<String> = imap
            .lsub("", "*")
            .expect("lsub")
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(lsub, ["INBOX", "INBOX.Sent"], "{version}: LSUB");
        let raw = imap.list_subscribed("", "*").expect("list (subscribed)");
        let gone: Vec<&str> = raw
            .iter()
            .filter(|e| e.attributes.iter().any(|a| a == "\\NonExistent"))
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(
            gone,
            ["INBOX.Archive2025", "INBOX.Work"],
            "{version}: {raw:?}"
        );
        imap.logout().expect("logout");
        let read: Vec<String> = h.source().read_state(&["sue"]).expect("read").users["sue"]
            .subscriptions
            .iter()
            .cloned()
            .collect();
        let want = [
            "user.sue",
            "user.sue.Archive2025",
            "user.sue.Sent",
            "user.sue.Work",
        ];
        assert_eq!(read, want, "{version}: the source reader");
        // The database itself (cyr_dbtool, inside the chroot for 3.10/3.12).
        let db = find_file(&h.sandbox().join("source/conf/user"), "sub.db").expect("sub.db");
        let conf = h.source().config_path().to_owned();
        let out = bins
            .command("cyr_dbtool")
            .arg("-C")
            .arg(bins.inside(&conf).expect("conf inside"))
            .arg(bins.inside(&db).expect("db inside"))
            .args(["flat", "show"])
            .output()
            .expect("cyr_dbtool");
        assert!(out.status.success(), "{version}: {out:?}");
        let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('\t').next())
            .filter(|k| k.starts_with('N'))
            .map(|k| {
                format!(
                    "user.sue{}",
                    k[1..].replacen("INBOX", "", 1).replace('\x1f', ".")
                )
            })
            .collect();
        keys.sort();
        assert_eq!(keys, want, "{version}: sub.db");
    }
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// Every row the source reader reads is there on 3.6, 3.10 and 3.12 (host and
/// chroot): mailbox annotations (GETMETADATA), per-message annotations (FETCH
/// ANNOTATION), ACLs (GETACL), quota roots and limits (GETQUOTAROOT), a `DELETED.*` mailbox
/// (LIST-STATUS as the admin). (docs/oracle.md)
#[test]
fn every_row_is_read_on_every_version() {
    let (Some(b36), Some(b310), Some(b312)) =
        (cyrus_bins(), chroot_bins("3.10"), chroot_bins("3.12"))
    else {
        return;
    };
    for bins in [b36, b310, b312] {
        let version = bins.version();
        let h = Harness::start(HarnessOptions::new(bins)).expect("harness");
        let mut rng = backupd_sim::rng::Rng::new(backupd_sim::rng::Seed(7));
        backupd_sim::populate::fill_user(h.source(), "rita", 3, &mut rng).expect("fill");
        let mut imap = h.source().login_as("rita").expect("login");
        imap.setmetadata("INBOX", "/private/comment", Some("p"))
            .expect("setmetadata");
        imap.setmetadata("INBOX.Sent", "/shared/comment", Some("s"))
            .expect("setmetadata");
        imap.select("INBOX").expect("select");
        imap.store_annotation("1", "/comment", true, Some("note"))
            .expect("annotation");
        imap.delete("INBOX.Work.Projects").expect("delete");
        imap.setacl("INBOX.Sent", "anyone", "lr").expect("setacl");
        imap.logout().expect("logout");
        let mut admin = h.source().admin().expect("admin");
        admin
            .setquota("user.rita", &[("STORAGE".into(), 5000)])
            .expect("setquota");
        admin.logout().expect("logout");
        let state = h.source().read_state(&["rita"]).expect("read");
        let u = &state.users["rita"];
        let get = |m: &str, k: &str| u.mailboxes[m].annotations.get(k).cloned();
        assert_eq!(
            get("user.rita", "/private/comment").as_deref(),
            Some("p"),
            "{version}"
        );
        assert_eq!(
            get("user.rita.Sent", "/shared/comment").as_deref(),
            Some("s"),
            "{version}"
        );
        assert_eq!(
            u.mailboxes["user.rita"].messages[&1]
                .annotations
                .get("/comment value.shared")
                .map(String::as_str),
            Some("note"),
            "{version}"
        );
        assert_eq!(
            u.quotas.get("user.rita"),
            Some(&[("STORAGE".to_owned(), 5000)].into()),
            "{version}"
        );
        assert_eq!(
            u.mailboxes["user.rita.Sent"]
                .acl
                .get("anyone")
                .map(String::as_str),
            Some("lr"),
            "{version}"
        );
        let names: Vec<&String> = u.deleted.keys().collect();
        assert!(
            names
                .iter()
                .any(|n| n.starts_with("DELETED.user.rita.Work.Projects."))
                && names
                    .iter()
                    .any(|n| n.starts_with("DELETED.user.rita.Trash.")),
            "{version}: {names:?}"
        );
    }
}
