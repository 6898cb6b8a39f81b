//! The acknowledged-write history check with the real client: a target that
//! acknowledges a write and then lacks it fails, even when the catch-up heals
//! it, on the fake and behind `--target HOST:PORT` (a lying proxy in front of
//! the fake); an honest target passes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use backupd_sim::dlist::{Framer, Limits};
use backupd_sim::harness::Target;
use backupd_sim::history::{About, CarryClass};
use backupd_sim::runner::{run_scenario, ScenarioReport, Verdict};
use backupd_sim::scenario::ledger::Class;
use backupd_sim::scenario::Scenario;

use crate::util::{cyrus_bins, run_options, Sim};

/// The issue's reproduction: a lie to `APPLY MAILBOX` during `-u` while the
/// channel log still names the folder, so the catch-up sends it again.
const LIE_DURING_USER: &str = r#"
description = "a lie during -u while the channel log still names the folder"
[[user]]
name = "lu"
[[step]]
create = { user = "lu", folder = "INBOX.Lied" }
[[step]]
append = { user = "lu", count = 2, folder = "INBOX.Lied" }
[[step]]
fault = { when = { verb = "APPLY MAILBOX", mailbox = "user.lu.Lied" }, nth = 1, action = "lie" }
[[step]]
sync = { mode = "user", expect_exit = 0 }
[expect]
converged = true
"#;

fn scenario_from(dir: &Path, name: &str, text: &str) -> Scenario {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write scenario");
    Scenario::load(&path).expect("scenario")
}

/// The check line of the history.
fn acked_check(r: &ScenarioReport) -> &backupd_sim::runner::Check {
    r.checks
        .iter()
        .find(|c| c.name == "acknowledged writes kept")
        .unwrap_or_else(|| panic!("no history check in {:#?}", r.checks))
}

/// The failure names the acknowledged command (session, verb, mailbox) and
/// the read that contradicted it, whatever heals it afterwards.
fn assert_lie_caught(r: &ScenarioReport) {
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    let c = acked_check(r);
    assert!(!c.ok);
    assert!(
        c.detail.contains("acknowledged write lost: 1"),
        "{}",
        c.detail
    );
    assert_eq!(r.acknowledged_lost.len(), 1, "{:#?}", r.acknowledged_lost);
    let v = &r.acknowledged_lost[0];
    assert_eq!(v.about, About::Mailbox);
    assert_eq!(v.user, "lu");
    assert_eq!(v.mailbox.as_deref(), Some("user.lu.Lied"));
    assert!(
        v.acknowledged
            .contains("(step 4): APPLY MAILBOX user.lu.Lied"),
        "{}",
        v.acknowledged
    );
    assert!(v.acknowledged.starts_with("session "), "{}", v.acknowledged);
    assert!(
        v.contradicted_by
            .contains("(the runner's read before the catch-up): GET USER lu"),
        "{}",
        v.contradicted_by
    );
    // The catch-up carried it again: a write the target had acknowledged.
    assert!(
        r.carried
            .iter()
            .any(|c| c.class == CarryClass::PreviouslyAcknowledged
                && c.command.contains("APPLY MAILBOX user.lu.Lied")),
        "{:#?}",
        r.carried
    );
    // The create and both appends are their own ledger class.
    assert_eq!(r.count(Class::AcknowledgedLost), 3, "{:#?}", r.ledger);
    assert!(r.exits.iter().all(|e| *e == Some(0)), "{:?}", r.exits);
}

#[test]
fn a_lie_healed_by_the_catch_up_fails_on_the_fake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(opts) = run_options(Target::Fake, dir.path()) else {
        return;
    };
    let s = scenario_from(dir.path(), "lie-during-user", LIE_DURING_USER);
    let r = run_scenario(&s, &opts);
    assert_lie_caught(&r);
    // The end state is healed: convergence alone would have passed it.
    let converged = r
        .checks
        .iter()
        .find(|c| c.name == "converged")
        .expect("converged");
    assert!(converged.ok, "{converged:?}");

    // The same scenario without the lie passes, and its reads were checked.
    let honest = LIE_DURING_USER.replace("action = \"lie\"", "action = \"delay\", delay_ms = 1");
    let s = scenario_from(dir.path(), "honest", &honest);
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.failures());
    let c = acked_check(&r);
    assert!(
        c.ok && c.detail.contains("nothing acknowledged was lost"),
        "{c:?}"
    );
    assert!(!c.detail.contains(" 0 read(s) checked"), "{c:?}");
}

/// An ACL entry, a mailbox annotation or a message annotation the target
/// acknowledged, broken right after it acknowledged an `APPLY MAILBOX` of the
/// mailbox during `-A`, while the channel log still names the mailbox (so the
/// catch-up sends it again and the end state is healed; a message annotation
/// only with its record, so UID 2 gets a new keyword after `-A`: the
/// SYNC_CRC_ANNOT the fake reports is the client's own): explore --seed 2
/// --allow-loss-faults, case 24, which passed before the history checked ACLs
/// and annotations (message annotations: December 2026).
const CORRUPT_DURING_ALL: &str = r#"
description = "an ACL or annotation lost after -A acknowledged it, healed by the catch-up"
[[user]]
name = "co"
[[step]]
metadata = { user = "co", entry = "/shared/comment", value = "kept" }
[[step]]
annotate = { user = "co", uids = "2", entry = "/comment", value = "kept" }
[[step]]
sync = { mode = "user" }
[[step]]
expunge = { user = "co", folder = "INBOX", uids = "1" }
[[step]]
fault = { when = { verb = "APPLY MAILBOX", mailbox = "user.co" }, nth = 1, action = "corrupt", what = "WHAT" }
[[step]]
sync = { mode = "all" }
[[step]]
flag = { user = "co", uids = "2", add = ["$Touched"] }
[expect]
converged = true
"#;

#[test]
fn an_acl_or_an_annotation_lost_and_healed_by_the_catch_up_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(opts) = run_options(Target::Fake, dir.path()) else {
        return;
    };
    for (what, named, ledger) in [
        ("acl", "ACL entry co ", "ledger says 0"),
        (
            "mailbox-annotation",
            "annotation /comment (shared) missing",
            "ledger says 1:\n  step 1: metadata user.co /shared/comment (acknowledged",
        ),
        (
            "message-annotation",
            "message annotations: /comment (co) missing",
            "ledger says 1:\n  step 2: annotations user.co UIDs [2] (acknowledged",
        ),
    ] {
        let text = CORRUPT_DURING_ALL.replace("WHAT", what);
        let s = scenario_from(dir.path(), what, &text);
        let r = run_scenario(&s, &opts);
        assert_eq!(r.verdict, Verdict::Fail, "{what}: {:#?}", r.failures());
        assert!(!acked_check(&r).ok, "{what}: {:#?}", r.checks);
        assert_eq!(
            r.acknowledged_lost.len(),
            1,
            "{what}: {:#?}",
            r.acknowledged_lost
        );
        let v = &r.acknowledged_lost[0];
        assert_eq!(v.mailbox.as_deref(), Some("user.co"), "{what}: {v}");
        assert!(v.what.contains(named), "{what}: {v}");
        assert!(
            v.acknowledged.contains("(step 6): APPLY MAILBOX user.co"),
            "{v}"
        );
        // The ledger names the change whose state was lost, and only it
        // (the scenario makes no ACL change; the metadata change is not lost
        // with a message annotation).
        let lost = r.checks.iter().find(|c| c.name == "lost changes");
        let detail = lost.map_or("", |c| c.detail.as_str());
        assert!(detail.contains(ledger), "{what}: {detail}");
        // Healed: convergence alone would have passed it.
        let converged = r.checks.iter().find(|c| c.name == "converged");
        assert!(converged.is_some_and(|c| c.ok), "{what}: {:#?}", r.checks);
    }
    // Without the fault it passes, the same reads checked.
    let text = CORRUPT_DURING_ALL.replace(
        "action = \"corrupt\", what = \"WHAT\"",
        "action = \"delay\", delay_ms = 1",
    );
    let s = scenario_from(dir.path(), "honest-all", &text);
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.failures());
}

/// A quota a replica acknowledged and then dropped (the fake as sync_server,
/// during `-u`), which the catch-up sets again: the runner's `GET QUOTA` of
/// the root before the catch-up shows it gone, so the history fails it while
/// convergence passes. Without the fault it passes, and the quota was read.
const QUOTA_DROPPED: &str = r#"
description = "a quota lost after -u acknowledged it, healed by the catch-up"
[[user]]
name = "qu"
[[step]]
quota = { user = "qu", storage = 5000 }
[[step]]
fault = { when = { verb = "APPLY QUOTA" }, nth = 1, action = "corrupt", what = "quota" }
[[step]]
sync = { mode = "user" }
[expect]
converged = true
"#;

#[test]
fn a_quota_lost_on_a_replica_and_healed_by_the_catch_up_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(opts) = run_options(Target::FakeSyncServer, dir.path()) else {
        return;
    };
    let s = scenario_from(dir.path(), "quota", QUOTA_DROPPED);
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    assert!(!acked_check(&r).ok, "{:#?}", r.checks);
    assert_eq!(r.acknowledged_lost.len(), 1, "{:#?}", r.acknowledged_lost);
    let v = &r.acknowledged_lost[0];
    assert_eq!(v.mailbox.as_deref(), Some("user.qu"), "{v}");
    assert!(v.what.contains("no quota on the root"), "{v}");
    assert!(
        v.acknowledged.contains("APPLY QUOTA user.qu (STORAGE 5000"),
        "{v}"
    );
    assert!(v.contradicted_by.contains("GET QUOTA user.qu"), "{v}");
    let converged = r.checks.iter().find(|c| c.name == "converged");
    assert!(converged.is_some_and(|c| c.ok), "{:#?}", r.checks);

    let honest = QUOTA_DROPPED.replace(
        "action = \"corrupt\", what = \"quota\"",
        "action = \"delay\", delay_ms = 1",
    );
    let s = scenario_from(dir.path(), "quota-honest", &honest);
    let r = run_scenario(&s, &opts);
    assert_eq!(r.verdict, Verdict::Pass, "{:#?}", r.failures());
    assert!(
        !acked_check(&r).detail.contains(" 0 read(s) checked"),
        "{:?}",
        acked_check(&r)
    );
}

/// A proxy that answers `OK` to the first command containing `needle`
/// without forwarding it, refuses COMPRESS (so it can read the commands), and
/// forwards everything else both ways.
struct LyingProxy {
    addr: SocketAddr,
    lied: Arc<AtomicBool>,
}

impl LyingProxy {
    fn start(upstream: SocketAddr, needle: &'static str) -> LyingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let lied = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&lied);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || proxy_one(client, upstream, needle, &flag));
            }
        });
        LyingProxy { addr, lied }
    }
}

fn proxy_one(client: TcpStream, upstream: SocketAddr, needle: &str, lied: &AtomicBool) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut down_from), Ok(mut down_to)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    // Replies: straight through.
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut down_from, &mut down_to);
        let _ = down_to.shutdown(std::net::Shutdown::Both);
    });
    let (mut from, mut to_server, mut to_client) = (client, server, None::<TcpStream>);
    let mut framer = Framer::new(Limits::default());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        framer.push(&buf[..n]);
        while let Ok(Some(frame)) = framer.next_frame() {
            let text = String::from_utf8_lossy(&frame);
            let answer: Option<&[u8]> = if text.starts_with("COMPRESS") {
                Some(b"NO compression not offered here\r\n")
            } else if text.contains(needle) && !lied.swap(true, Ordering::SeqCst) {
                Some(b"OK Success\r\n")
            } else {
                None
            };
            let sent = match answer {
                Some(reply) => {
                    let c = to_client.get_or_insert_with(|| from.try_clone().expect("clone"));
                    c.write_all(reply)
                }
                None => to_server.write_all(&frame),
            };
            if sent.is_err() {
                return;
            }
        }
    }
    let _ = to_server.shutdown(std::net::Shutdown::Write);
}

/// `--target HOST:PORT` with a proxy that answers OK to `APPLY MAILBOX
/// user.lu.Lied` without forwarding it: every exit code is 0 and the final
/// `-u` finds nothing to send (the catch-up healed it), but the history of
/// what the target answered through the relay fails the run.
#[test]
fn a_lying_proxy_behind_host_port_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    if cyrus_bins().is_none() {
        return;
    }
    let fake = Sim::start("");
    let proxy = LyingProxy::start(fake.addr(), "MBOXNAME user.lu.Lied ");
    let target =
        Target::parse(&proxy.addr.to_string(), "repluser", "secret").expect("HOST:PORT target");
    let opts = run_options(target, dir.path()).expect("cyrus");
    // The fault step has no fake of its own to go to here: drop it, the proxy lies.
    let text = LIE_DURING_USER.replace(
        "[[step]]\nfault = { when = { verb = \"APPLY MAILBOX\", mailbox = \"user.lu.Lied\" }, nth = 1, action = \"lie\" }\n",
        "",
    );
    let s = scenario_from(dir.path(), "lie-behind-host-port", &text);
    let r = run_scenario(&s, &opts);
    assert!(proxy.lied.load(Ordering::SeqCst), "the proxy never lied");
    let last = r.checks.last().expect("checks");
    assert_eq!(last.name, "final -u sends no APPLY");
    assert!(last.ok, "{last:?}");
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    assert!(!acked_check(&r).ok, "{:#?}", r.checks);
    let v = &r.acknowledged_lost;
    assert_eq!(v.len(), 1, "{v:#?}");
    assert_eq!(v[0].mailbox.as_deref(), Some("user.lu.Lied"));
    assert!(
        v[0].acknowledged
            .contains("(step 3): APPLY MAILBOX user.lu.Lied"),
        "{}",
        v[0]
    );
    assert!(v[0].contradicted_by.contains("GET USER lu"), "{}", v[0]);
    // The honest fake behind the proxy received the catch-up's copy only.
    assert!(fake.shared().events().count("APPLY MAILBOX") > 0);
}

/// A target that loses an acknowledged mailbox when a later `APPLY MAILBOX`
/// of it is dropped (`drop-corrupt`, a target rolling back on disconnect):
/// the bundled `scenarios/faults/drop-loses-acknowledged.toml` on both fake
/// personalities. The dropped write, applied or not, could only add to the
/// mailbox, so the read before the catch-up that lacks it is a lost
/// acknowledged write although the catch-up heals the end state (before
/// December 2026 the dropped write kept the mailbox from being checked, and
/// this passed). The controls: the same drop losing nothing, before or after
/// executing the command, passes with nothing acknowledged lost.
#[test]
fn a_loss_behind_a_dropped_apply_mailbox_is_caught() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("scenarios/faults/drop-loses-acknowledged.toml"))
        .expect("bundled scenario");
    let dir = tempfile::tempdir().expect("tempdir");
    for target in [Target::Fake, Target::FakeSyncServer] {
        let Some(opts) = run_options(target.clone(), dir.path()) else {
            return;
        };
        let s = scenario_from(dir.path(), "drop-loses-acknowledged", &text);
        let r = run_scenario(&s, &opts);
        // Its expectations: one acknowledged write lost, converged in the end.
        assert_eq!(r.verdict, Verdict::Pass, "{target:?}: {:#?}", r.failures());
        assert_eq!(r.acknowledged_lost.len(), 1, "{:#?}", r.acknowledged_lost);
        let v = &r.acknowledged_lost[0];
        assert_eq!(
            (v.about, v.user.as_str(), v.mailbox.as_deref()),
            (About::Mailbox, "dora", Some("user.dora.Kept")),
            "{v:#?}"
        );
        assert!(
            v.acknowledged
                .contains("(step 3): APPLY MAILBOX user.dora.Kept"),
            "{}",
            v.acknowledged
        );
        assert!(v.what.contains("missing"), "{}", v.what);
        // It names the acknowledged UIDs only: UID 3's APPLY was dropped.
        assert_eq!(v.uids, [1, 2], "{v:#?}");
        let acked_lost: Vec<String> = r
            .ledger
            .iter()
            .filter(|c| c.class == Class::AcknowledgedLost)
            .map(|c| c.entry.change.to_string())
            .collect();
        assert_eq!(acked_lost.len(), 3, "{acked_lost:#?}");
        let converged = r.checks.iter().find(|c| c.name == "converged");
        assert!(converged.is_some_and(|c| c.ok), "{converged:?}");
        for drop in ["drop-before", "drop-after"] {
            let control = text
                .replace(
                    "action = \"drop-corrupt\", what = \"forget-mailbox\"",
                    &format!("action = \"{drop}\""),
                )
                .replace("lost = 3\nacknowledged_lost = { min = 1, max = 1 }\n", "");
            assert_ne!(control, text);
            let s = scenario_from(dir.path(), drop, &control);
            let r = run_scenario(&s, &opts);
            assert_eq!(
                r.verdict,
                Verdict::Pass,
                "{drop} on {target:?}: {:#?}",
                r.failures()
            );
            let c = acked_check(&r);
            assert!(c.detail.contains("nothing acknowledged was lost"), "{c:?}");
        }
    }
}
