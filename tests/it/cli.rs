//! The `backupd-sim` binary as a user runs it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use backupd_sim::check::compare;
use backupd_sim::cyrus::{Channel, SourceInstance, SourceOptions, SyncClient};
use backupd_sim::populate::fill_user;
use backupd_sim::rng::{Rng, Seed};
use backupd_sim::store::load_state;

use crate::util::{cyrus_bins, Served};

const BIN: &str = env!("CARGO_BIN_EXE_backupd-sim");

fn run_bin(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = crate::util::bin(args);
    (code, stdout + &stderr)
}

fn sync(client: &SyncClient, args: &[&str]) -> backupd_sim::cyrus::SyncRun {
    let argv: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    client
        .run(&argv, Duration::from_secs(60))
        .expect("sync_client")
}

/// The hand-run flow of `docs/usage.md`: `serve --state s.json`, `sync_client -u alice`,
/// SIGTERM: s.json holds alice's mail in the documented shape; a restarted
/// server loads it and the next `-u alice` uploads nothing.
#[test]
fn serve_writes_and_reloads_the_state_file() {
    let Some(bins) = cyrus_bins() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let state = dir.path().join("s.json");
    let state_arg = state.to_str().expect("utf-8 path");

    let served = Served::start(&["--password", "lab", "--state", state_arg]);
    let mut opts = SourceOptions::new(bins.clone(), dir.path().join("source"));
    opts.channels = vec![Channel::new("backup", served.port())];
    let source = SourceInstance::start(&opts).expect("source");
    fill_user(&source, "alice", 12, &mut Rng::new(Seed(9))).expect("fill");
    let client = SyncClient::new(&bins, source.config_path());
    let run = sync(&client, &["-n", "backup", "-u", "alice"]);
    assert_eq!(run.status, Some(0), "{run}");
    assert_eq!(served.terminate(), 0);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state file")).expect("json");
    let inbox = &json["users"]["alice"]["mailboxes"]["user.alice"];
    assert!(
        inbox["uniqueid"].is_string() && inbox["uidvalidity"].as_u64() > Some(0),
        "{inbox:#}"
    );
    assert!(inbox["last_uid"].as_u64() >= Some(8) && inbox["highestmodseq"].as_u64() > Some(0));
    let records = inbox["records"].as_array().expect("records");
    assert!(records.len() >= 8, "{records:#?}");
    for r in records {
        let guid = r["guid"].as_str().expect("guid");
        assert!(
            guid.len() == 40 && guid.bytes().all(|b| b.is_ascii_hexdigit()),
            "{r}"
        );
        assert!(r["flags"].is_array() && r["modseq"].is_u64() && r["internaldate"].is_i64());
        assert!(r["size"].is_u64() && r["expunged"].is_boolean());
        assert_eq!(json["messages"][guid]["size"], r["size"], "{guid}");
    }
    assert!(
        records.iter().any(|r| r["expunged"] == true),
        "expunged records are kept"
    );
    assert!(json["users"]["alice"]["subscriptions"]
        .as_array()
        .is_some_and(|s| !s.is_empty()));
    assert!(
        json["users"]["alice"]["seen"].is_object() && json["users"]["alice"]["sieve"].is_array()
    );

    // What the file holds is what the source holds.
    let loaded = load_state(&state).expect("load");
    let c = compare(
        &source.read_state(&["alice"]).expect("read"),
        &loaded.mail_state(),
    );
    assert!(c.converged(), "{c}");
    assert!(loaded.verify_bodies().is_empty());

    // A restarted server answers from the file: nothing is uploaded again.
    let served = Served::start(&["--password", "lab", "--state", state_arg]);
    let target = format!("127.0.0.1:{}", served.port());
    let run = sync(
        &client,
        &["-n", "backup", "-S", &target, "-v", "-v", "-u", "alice"],
    );
    assert_eq!(run.status, Some(0), "{run}");
    assert!(
        run.stderr.contains("GET USER alice"),
        "no protocol trace: {run}"
    );
    assert!(
        !run.stderr.contains("APPLY"),
        "the reloaded state was incomplete: {run}"
    );
    assert_eq!(served.terminate(), 0);
}

/// Bad input to the CLI gets a clear error and exit 2, never a panic, and an
/// unreadable state file is left untouched.
#[test]
fn serve_refuses_bad_input() {
    let (code, text) = run_bin(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("refusing to listen on non-loopback address `0.0.0.0:0`"),
        "{text}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("s.json");
    std::fs::write(&state, "{\"users\": {}, \n \"messages\": 7}").expect("write");
    let (code, text) = run_bin(&["serve", "--state", state.to_str().expect("path")]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("s.json` line 2 column"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&state).expect("read"),
        "{\"users\": {}, \n \"messages\": 7}"
    );

    let (code, text) = run_bin(&["serve", "--listen", "nonsense"]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("invalid value 'nonsense'"), "{text}");
    assert!(!Path::new(BIN).with_file_name("core").exists());
}

/// Shell completions and man pages are generated from the clap definition:
/// the bash script is valid bash (`bash -n`) and completes `--target`'s
/// names; every shell's script names every subcommand; `man --out DIR`
/// writes one page per subcommand, and the page of `run` documents `--shard`.
#[test]
fn completions_and_man_pages_generate() {
    let subcommands = [
        "serve", "run", "compare", "explore", "demo", "bench", "ctl", "source", "cyrus",
    ];
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .expect("run");
        assert!(out.status.success(), "{shell}: {out:?}");
        let script = String::from_utf8(out.stdout).expect("utf-8");
        for sub in subcommands {
            assert!(script.contains(sub), "{shell} script lacks `{sub}`");
        }
        if shell == "bash" {
            assert!(script.contains("fake-sync_server"), "--target values");
            assert!(script.contains("hide-missing"), "fault actions");
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("backupd-sim.bash");
            std::fs::write(&path, &script).expect("write");
            let check = Command::new("bash")
                .arg("-n")
                .arg(&path)
                .output()
                .expect("bash -n");
            assert!(check.status.success(), "bash -n: {check:?}");
        }
    }
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is refused");

    let out = Command::new(BIN).arg("man").output().expect("run");
    assert!(out.status.success(), "{out:?}");
    let page = String::from_utf8(out.stdout).expect("utf-8");
    assert!(page.contains(".TH backupd-sim 1"), "{page}");

    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(out.status.success(), "{out:?}");
    for sub in subcommands {
        let page = dir.path().join(format!("backupd-sim-{sub}.1"));
        assert!(page.exists(), "no {}", page.display());
    }
    let run = std::fs::read_to_string(dir.path().join("backupd-sim-run.1")).expect("run page");
    assert!(run.contains("shard"), "{run}");
}

/// The Perl control client (`scripts/backupd-sim-ctl.pl`, documented in
/// `docs/control-protocol.md` for suites such as Cassandane) drives a served
/// fake while the real `sync_client` replicates: a lock it opens makes `-u`
/// bail out (exit 1) and shows as a `LOCKED` count in its status; after its
/// unlock `-u` converges. Errors: a refused request is exit 1 with the
/// server's message, a bad address exit 2. Loaded as a module, the same calls
/// return the status and die with the server's error.
#[test]
fn the_perl_control_client_drives_a_served_fake() {
    let Some(bins) = cyrus_bins() else { return };
    let perl_ok = Command::new("perl")
        .args(["-MJSON::PP", "-MIO::Socket::IP", "-e", "1"])
        .status()
        .is_ok_and(|s| s.success());
    // perl and its core modules come with the Cyrus packages (cyrus-common depends on perl).
    assert!(perl_ok, "perl with JSON::PP and IO::Socket::IP is required");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/backupd-sim-ctl.pl");
    let ctl = |args: &[&str]| {
        let out = Command::new(script)
            .args(args)
            .output()
            .expect("run the perl client");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let served = Served::start(&["--password", "lab", "--control", "127.0.0.1:0"]);
    let addr = served.control.clone().expect("control address");
    let mut opts = SourceOptions::new(bins.clone(), dir.path().join("source"));
    opts.channels = vec![Channel::new("backup", served.port())];
    let source = SourceInstance::start(&opts).expect("source");
    fill_user(&source, "alice", 4, &mut Rng::new(Seed(3))).expect("fill");
    let client = SyncClient::new(&bins, source.config_path());

    let (code, stdout, stderr) = ctl(&[&addr, "lock", "alice"]);
    assert_eq!(code, 0, "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["locks"][0]["name"], "ctl-alice", "{status:#}");
    assert_eq!(status["locks"][0]["mode"], "hold", "{status:#}");

    let run = sync(&client, &["-n", "backup", "-u", "alice"]);
    assert_eq!(run.status, Some(1), "a locked user bails -u out: {run}");
    let (code, stdout, _) = ctl(&[&addr, "status"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert!(
        status["users"]["alice"]["locked"].as_u64() >= Some(1),
        "{status:#}"
    );

    let (code, _, stderr) = ctl(&[&addr, "unlock", "bob"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("no open lock named or targeting `bob`"),
        "{stderr}"
    );
    let (code, _, stderr) = ctl(&[&addr, "unlock", "alice"]);
    assert_eq!(code, 0, "{stderr}");
    let run = sync(&client, &["-n", "backup", "-u", "alice"]);
    assert_eq!(run.status, Some(0), "{run}");

    let (code, stdout, stderr) = ctl(&[
        &addr,
        "fault",
        r#"{"action":"drop-after","when":{"verb":"APPLY MAILBOX"},"nth":1}"#,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(r#""verb":"APPLY MAILBOX""#), "{stdout}");
    let (code, _, stderr) = ctl(&[&addr, "fault", r#"{"action":"explode"}"#]);
    assert_eq!(code, 1, "{stderr}");
    let (code, _, stderr) = ctl(&["127.0.0.1:1", "status"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");

    // As a module.
    let out = Command::new("perl")
        .arg("-e")
        .arg(format!(
            r#"require "{script}"; my $c = BackupdSim::Control->new($ARGV[0]);
               my $s = $c->clear; print scalar(@{{$s->{{faults}}}}), " faults\n";
               eval {{ $c->unlock("nobody") }}; print "died: $@";"#
        ))
        .arg(&addr)
        .output()
        .expect("perl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(text.contains("0 faults\n"), "{text}");
    assert!(
        text.contains("died: backupd-sim control: no open lock named or targeting `nobody`"),
        "{text}"
    );
    drop(source);
    assert_eq!(served.terminate(), 0);
}

/// An installed copy (`cargo install --path .`) works outside the checkout:
/// the binary copied elsewhere and run from an empty directory lists, checks
/// and runs the bundled suite (snapshots included), and a missing Cyrus is
/// explained without sending the user to `make`.
#[test]
fn an_installed_copy_runs_the_bundled_suite_outside_the_checkout() {
    let place = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        place.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let bin = place.path().join("bin/backupd-sim");
    std::fs::create_dir_all(bin.parent().expect("bin dir")).expect("mkdir");
    crate::util::copy_executable(Path::new(BIN), &bin);
    let work = place.path().join("work");
    let cache = place.path().join("cache");
    std::fs::create_dir(&work).expect("mkdir");
    let installed = |args: &[&str]| {
        let out = Command::new(&bin)
            .current_dir(&work)
            .env("BACKUPD_SIM_BUNDLE_DIR", &cache)
            .env_remove("CYRUS_BIN")
            .args(args)
            .output()
            .expect("run the installed copy");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // As many scenarios as the checkout has.
    let mut here = Vec::new();
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() && !p.ends_with("regressions") {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                here.push(p);
            }
        }
    }
    let (code, stdout, stderr) = installed(&["run", "--list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("using the {} bundled scenarios in", here.len())),
        "{stderr}"
    );
    // Listed for the fake, or left out for it (on stderr): every one, from the cache.
    let mut listed: Vec<&str> = stdout.lines().collect();
    listed.extend(stderr.lines().filter_map(|l| l.strip_prefix("left out: ")));
    assert_eq!(listed.len(), here.len(), "{stdout}\n{stderr}");
    assert!(
        listed
            .iter()
            .all(|l| l.starts_with(&cache.display().to_string())),
        "{stdout}\n{stderr}"
    );
    let (code, stdout, stderr) = installed(&["run", "--check"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("{} scenario file(s) valid", here.len())),
        "{stdout}"
    );

    let (code, _, stderr) = installed(&["run", "--cyrus-bin", "/nonexistent/cyrus"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("apt-get install cyrus-common cyrus-imapd cyrus-replication")
            && !stderr.contains("make"),
        "{stderr}"
    );

    if cyrus_bins().is_none() {
        return;
    }
    // A bundled scenario with a transcript snapshot runs and passes.
    let (code, stdout, stderr) = installed(&[
        "run",
        "--filter",
        "d-user-mode-bails-out",
        "--sandbox-dir",
        place.path().to_str().expect("path"),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}");
    assert!(
        std::fs::read_dir(&work).expect("work").next().is_none(),
        "nothing is written to the working directory"
    );
}
