//! No orphans, ever: `backupd-sim run` interrupted by SIGINT/SIGTERM, or with a
//! sync_client killed under it, or run many times, leaves no Cyrus process and no
//! sandbox behind (only the sandboxes of failed scenarios, which are kept on
//! purpose).
//!
//! Every check finds "our" processes by the sandbox path in `/proc/PID/cmdline`
//! (master, imapd and sync_client all run with `-C <sandbox>/source/etc/imapd.conf`),
//! so tests running beside these never interfere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use backupd_sim::cyrus::process::{pid_alive, wait_until};

/// Live processes (not zombies) whose command line contains `needle`, as
/// `(pid, command line)`.
fn processes_naming(needle: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            // A zombie (state Z) is dead: it only waits for its parent to reap it.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| Some(s[s.rfind(')')? + 2..].chars().next()? != 'Z'))
                .unwrap_or(false)
        })
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            cmd.contains(needle)
                .then_some((pid, cmd.trim_end().to_owned()))
        })
        .collect()
}

/// A `backupd-sim run` started by the test, with its output in files.
struct Runner {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Runner {
    fn start(args: &[&str], sandbox_dir: &Path, logs: &Path, tag: &str) -> Runner {
        Runner::start_command("run", args, sandbox_dir, logs, tag)
    }

    /// `backupd-sim SUBCOMMAND ARGS --sandbox-dir DIR`.
    fn start_command(
        subcommand: &str,
        args: &[&str],
        sandbox_dir: &Path,
        logs: &Path,
        tag: &str,
    ) -> Runner {
        let out = logs.join(format!("{tag}.stdout"));
        let err = logs.join(format!("{tag}.stderr"));
        let mut cmd = Command::new(crate::util::BIN);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .arg(subcommand)
            .args(args)
            .arg("--sandbox-dir")
            .arg(sandbox_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("stdout file"))
            .stderr(std::fs::File::create(&err).expect("stderr file"));
        // The CLI reads $CYRUS_PREFIX / $CYRUS_BIN itself.
        Runner {
            child: cmd.spawn().expect("start backupd-sim run"),
            out,
            err,
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Wait (bounded) for the exit; kill it and fail the test on timeout.
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        match status {
            Some(s) => s,
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "backupd-sim run did not exit within {timeout:?}\n{}",
                    self.output()
                );
            }
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        )
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The entries of `dir` (the sandboxes left in it).
fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(d) => d.filter_map(|e| Some(e.ok()?.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// A sandbox parent the cyrus user can enter, removed by the test at the end.
fn sandbox_parent() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("backupd-sim-hygiene-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(
        t.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    t
}

/// `parent/sandboxes`, created and readable by the `cyrus` user: the runs'
/// `--sandbox-dir`, whose path names every process a run starts.
fn sandboxes_in(parent: &tempfile::TempDir) -> PathBuf {
    let dir = parent.path().join("sandboxes");
    std::fs::create_dir(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    dir
}

/// Waits until a sync_client of this sandbox runs (so master and imapd do too).
fn wait_for_sync_client(runner: &mut Runner, needle: &str, count: usize) {
    let seen = wait_until(Duration::from_secs(60), || {
        processes_naming(needle)
            .iter()
            .filter(|(_, c)| c.contains("sync_client"))
            .count()
            >= count
            || matches!(runner.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        seen && matches!(runner.child.try_wait(), Ok(None)),
        "no running sync_client for `{needle}`\n{}",
        runner.output()
    );
}

/// After the runner is gone nothing of the sandbox may run (a short grace
/// for children still dying).
fn assert_no_process_of(needle: &str, runner: &Runner) {
    let clean = wait_until(Duration::from_secs(3), || {
        processes_naming(needle).is_empty()
    });
    assert!(
        clean,
        "processes of `{needle}` outlived the runner: {:#?}\n{}",
        processes_naming(needle),
        runner.output()
    );
}

/// Send `sig` to a runner of `scenarios` (`jobs` at a time, `extra` args)
/// once its sync_clients run; `instances` Cyrus masters must be stopped.
fn interrupt(
    sig: Signal,
    code: i32,
    scenarios: &[&str],
    jobs: usize,
    extra: &[&str],
    instances: usize,
) {
    let parent = sandbox_parent();
    let dir = sandboxes_in(&parent);
    let needle = dir.display().to_string();
    let jobs_arg = jobs.to_string();
    let mut args = scenarios.to_vec();
    args.extend(["-j", &jobs_arg]);
    args.extend(extra);
    let mut runner = Runner::start(&args, &dir, parent.path(), "run");
    wait_for_sync_client(&mut runner, &needle, jobs);
    let before = processes_naming(&needle);
    assert!(
        before.iter().any(|(_, c)| c.contains("/master ")),
        "no master seen: {before:#?}"
    );
    kill(runner.pid(), sig).expect("signal the runner");
    // The handler's own bound is ~15 s.
    let status = runner.wait(Duration::from_secs(20));
    let stderr = std::fs::read_to_string(&runner.err).unwrap_or_default();
    assert_eq!(status.code(), Some(code), "{}", runner.output());
    let expected = format!(
        "interrupted: stopped {instances} Cyrus instance{}",
        if instances == 1 { "" } else { "s" }
    );
    assert!(stderr.contains(&expected), "{}", runner.output());
    assert!(
        stderr.contains(&format!(
            "removed {jobs} sandbox{}",
            if jobs == 1 { "" } else { "es" }
        )),
        "{}",
        runner.output()
    );
    assert_no_process_of(&needle, &runner);
    assert_eq!(entries(&dir), Vec::<PathBuf>::new(), "sandboxes left");
}

/// SIGINT in the middle of a scenario: exit 130, master, imapd and sync_client
/// all gone, the sandbox removed, and the one line saying so.
#[test]
fn sigint_mid_scenario_stops_everything_and_removes_the_sandbox() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    interrupt(
        Signal::SIGINT,
        130,
        &["scenarios/locks/c-continuous-storm.toml"],
        1,
        &[],
        1,
    );
}

/// SIGINT with a real backupd as the target: its master and backupd go too
/// (they were once left running: a real target's master was not registered
/// for the interrupt handler).
#[test]
fn sigint_with_a_real_backupd_target_stops_it_too() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    interrupt(
        Signal::SIGINT,
        130,
        &["scenarios/locks/c-continuous-storm.toml"],
        1,
        &["--target", "backupd"],
        2,
    );
}

/// SIGINT during `compare`, while the real backupd side runs (a source master
/// and the target's master, each in its own process group): exit 130, every
/// Cyrus process of both sides gone, no sandbox left. `compare` once had no
/// interrupt handler, so Ctrl-C left the real masters running.
#[test]
fn sigint_during_compare_leaves_no_process_behind() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    let parent = sandbox_parent();
    let dir = sandboxes_in(&parent);
    let needle = dir.display().to_string();
    let out = parent.path().join("compare-out");
    let mut runner = Runner::start_command(
        "compare",
        &[
            "scenarios/locks/c-continuous-storm.toml",
            "--out",
            out.to_str().expect("path"),
        ],
        &dir,
        parent.path(),
        "compare",
    );
    // Wait for the real side: its line on stderr, then its sync_client.
    let real_side = wait_until(Duration::from_secs(120), || {
        std::fs::read_to_string(&runner.err)
            .unwrap_or_default()
            .contains("scenario(s) on backupd")
            || matches!(runner.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        real_side,
        "the real side never started\n{}",
        runner.output()
    );
    wait_for_sync_client(&mut runner, &needle, 1);
    let before = processes_naming(&needle);
    let masters = before
        .iter()
        .filter(|(_, c)| c.contains("/master "))
        .count();
    assert!(masters >= 2, "source and target masters: {before:#?}");
    kill(runner.pid(), Signal::SIGINT).expect("signal compare");
    let status = runner.wait(Duration::from_secs(20));
    let stderr = std::fs::read_to_string(&runner.err).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{}", runner.output());
    assert!(
        stderr.contains("interrupted: stopped 2 Cyrus instances"),
        "{}",
        runner.output()
    );
    assert_no_process_of(&needle, &runner);
    assert_eq!(entries(&dir), Vec::<PathBuf>::new(), "sandboxes left");
}

/// SIGTERM with two scenarios running at once (two instances, two clients):
/// exit 143 and both cleaned up.
#[test]
fn sigterm_with_two_jobs_stops_both_instances() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    interrupt(
        Signal::SIGTERM,
        143,
        &[
            "scenarios/locks/c-continuous-storm.toml",
            "scenarios/locks/c2-continuous-mailbox-only.toml",
        ],
        2,
        &[],
        2,
    );
}

/// A sync_client SIGKILLed under a running scenario: the scenario may fail, but
/// the runner ends normally (0 or 1) and nothing of that sandbox keeps running;
/// the sandbox is removed on a pass and kept (with its report) on a failure.
#[test]
fn a_killed_sync_client_leaves_no_process_behind() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    let parent = sandbox_parent();
    let dir = sandboxes_in(&parent);
    let needle = dir.display().to_string();
    let mut runner = Runner::start(
        &["scenarios/locks/c-continuous-storm.toml"],
        &dir,
        parent.path(),
        "run",
    );
    wait_for_sync_client(&mut runner, &needle, 1);
    let clients: Vec<i32> = processes_naming(&needle)
        .into_iter()
        .filter(|(_, c)| c.contains("sync_client"))
        .map(|(p, _)| p)
        .collect();
    for pid in &clients {
        // A grandchild of this test: the runner's sync_client for our sandbox.
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let status = runner.wait(Duration::from_secs(120));
    let code = status.code();
    assert!(matches!(code, Some(0 | 1)), "{}", runner.output());
    assert_no_process_of(&needle, &runner);
    let left = entries(&dir);
    if code == Some(0) {
        assert_eq!(
            left,
            Vec::<PathBuf>::new(),
            "a passing run keeps no sandbox"
        );
    } else {
        assert_eq!(left.len(), 1, "a failed run keeps its sandbox: {left:?}");
        assert!(
            left[0].join("report.json").exists(),
            "the kept sandbox has its report"
        );
    }
    eprintln!(
        "killed sync_client {clients:?}: runner exit {code:?}, {} sandbox(es) kept",
        left.len()
    );
    // `parent` removes what was kept.
}

/// `HYGIENE_RUNS` (default 5; `make hygiene` runs 50) runs of a short scenario:
/// after each, no process of its sandbox and no sandbox but a failed run's.
#[test]
fn repeated_runs_leave_nothing_behind() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    let runs: usize = std::env::var("HYGIENE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let parent = sandbox_parent();
    let dir = sandboxes_in(&parent);
    let needle = dir.display().to_string();
    let started = Instant::now();
    let (mut passed, mut failed) = (0, 0);
    for i in 0..runs {
        let seed = (i + 1).to_string();
        let mut runner = Runner::start(
            &[
                "scenarios/locks/a-rolling-once-defers.toml",
                "--seed",
                &seed,
            ],
            &dir,
            parent.path(),
            &format!("run-{i}"),
        );
        let status = runner.wait(Duration::from_secs(120));
        match status.code() {
            Some(0) => passed += 1,
            Some(1) => failed += 1,
            other => panic!("run {i}: exit {other:?}\n{}", runner.output()),
        }
        assert_no_process_of(&needle, &runner);
        assert_eq!(
            entries(&dir).len(),
            failed,
            "run {i}: only failed runs keep a sandbox\n{}",
            runner.output()
        );
    }
    eprintln!(
        "hygiene: {runs} runs ({passed} passed, {failed} failed, {failed} sandbox(es) kept), \
         no leftover process, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// The processes whose parent chain leads to `pid` (its descendants).
fn descendants_of(pid: i32) -> Vec<i32> {
    backupd_sim::cyrus::process::descendants(pid)
        .into_iter()
        .map(|s| s.pid)
        .collect()
}

/// SIGINT while a real backupd's user is locked by `ctl_backups lock` (case C
/// against `--target backupd`): the holder runs in a process group of its own,
/// so no terminal Ctrl-C reaches it; the interrupt cleanup kills it and its
/// `-x` shell at once, says so, and they are gone before the runner exits
/// (once, only the runner's exit closed their stdin, some time later).
#[test]
fn sigint_while_a_ctl_backups_lock_is_held_stops_the_holder_at_once() {
    let Some(_) = crate::util::cyrus_bins() else {
        return;
    };
    let parent = sandbox_parent();
    let dir = sandboxes_in(&parent);
    let needle = dir.display().to_string();
    let mut runner = Runner::start(
        &[
            "scenarios/locks/c-continuous-storm.toml",
            "--target",
            "backupd",
        ],
        &dir,
        parent.path(),
        "run",
    );
    // The holder: `ctl_backups -C <sandbox>/… lock -u cleo -x …`, with its
    // shell (`cat` once exec'd) below it.
    let mut holder = None;
    let seen = wait_until(Duration::from_secs(60), || {
        holder = processes_naming(&needle)
            .into_iter()
            .find(|(_, c)| c.contains("ctl_backups") && c.contains(" lock -u "))
            .map(|(p, _)| p);
        holder.is_some() && !descendants_of(holder.unwrap_or(0)).is_empty()
            || matches!(runner.child.try_wait(), Ok(Some(_)))
    });
    let holder = holder.filter(|_| seen).unwrap_or_else(|| {
        panic!(
            "no ctl_backups lock holder with its shell seen\n{}",
            runner.output()
        )
    });
    let group: Vec<i32> = std::iter::once(holder)
        .chain(descendants_of(holder))
        .collect();
    let sent = Instant::now();
    kill(runner.pid(), Signal::SIGINT).expect("signal the runner");
    let mut gone_after = None;
    let status = {
        // Watch the holder's group go while the runner cleans up.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if gone_after.is_none() && group.iter().all(|&p| !pid_alive(p)) {
                gone_after = Some(sent.elapsed());
            }
            if let Some(s) = runner.child.try_wait().expect("try_wait") {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "runner did not exit\n{}",
                runner.output()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let exited_after = sent.elapsed();
    // At the runner's exit, checked at once (no grace): the group is gone.
    let left: Vec<i32> = group.iter().copied().filter(|&p| pid_alive(p)).collect();
    assert!(
        left.is_empty(),
        "lock holder processes {left:?} outlived the runner"
    );
    assert_eq!(status.code(), Some(130), "{}", runner.output());
    let stderr = std::fs::read_to_string(&runner.err).unwrap_or_default();
    assert!(
        stderr.contains("killed 1 tool process group (ctl_backups lock -u cleo)"),
        "{}",
        runner.output()
    );
    assert_no_process_of(&needle, &runner);
    assert_eq!(entries(&dir), Vec::<PathBuf>::new(), "sandboxes left");
    eprintln!(
        "ctl_backups lock holder {group:?}: gone {:.0} ms after SIGINT, runner exited after {:.0} ms",
        gone_after.unwrap_or(exited_after).as_secs_f64() * 1000.0,
        exited_after.as_secs_f64() * 1000.0
    );
}
