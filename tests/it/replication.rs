//! End to end with the real `sync_client`: replication into the fake converges.

use std::time::Duration;

use backupd_sim::harness::{Harness, HarnessOptions};
use backupd_sim::populate::{fill_user, more_changes};
use backupd_sim::rng::{Rng, Seed};

use crate::util::cyrus_bins;

fn harness() -> Option<Harness> {
    Some(Harness::start(HarnessOptions::new(cyrus_bins()?)).expect("harness"))
}

/// Panic with the whole story when the backup differs from the source.
fn assert_converged(h: &Harness, users: &[&str]) {
    let c = h.compare(users).expect("compare");
    assert!(
        c.converged(),
        "{c}\nfake transcript:\n{}\nsandbox: {}",
        h.transcript(),
        h.sandbox().display()
    );
    let bad = h.verify_bodies();
    assert!(bad.is_empty(), "bodies: {bad:#?}");
}

fn assert_exit(run: &backupd_sim::cyrus::SyncRun, code: i32) {
    assert_eq!(run.status, Some(code), "{run}");
}

/// `-u` of 3 users (6 folders each, 300 messages, flags, expunges, a rename, a
/// delete, subscriptions) converges; a second `-u` uploads nothing; more
/// changes and one rolling pass converge and drain the channel log.
#[test]
fn user_mode_then_rolling_pass_converges() {
    let Some(h) = harness() else { return };
    let users = ["alice", "bob", "carol"];
    let mut rng = Rng::new(Seed(2)).fork("populate");
    let mut appended = 0;
    for u in users {
        let s = fill_user(h.source(), u, 100, &mut rng).expect("fill");
        assert!(s.folders >= 5);
        appended += s.appended;
    }
    assert_eq!(appended, 300);

    let run = h.sync(&["-u", "alice", "bob", "carol"]).expect("sync");
    assert_exit(&run, 0);
    assert_converged(&h, &users);
    let (messages, mailboxes) = (h.count("APPLY MESSAGE"), h.count("APPLY MAILBOX"));
    assert!(
        messages > 0 && mailboxes >= 15,
        "messages {messages}, mailboxes {mailboxes}"
    );

    let run = h
        .sync(&["-u", "alice", "bob", "carol"])
        .expect("second sync");
    assert_exit(&run, 0);
    assert_eq!(
        h.count("APPLY MESSAGE"),
        messages,
        "the second -u uploaded messages again"
    );
    assert_eq!(
        h.count("APPLY MAILBOX"),
        mailboxes,
        "the second -u re-sent mailboxes"
    );
    assert_converged(&h, &users);

    more_changes(h.source(), "alice", &mut rng).expect("changes");
    more_changes(h.source(), "carol", &mut rng).expect("changes");
    assert!(
        h.source().sync_log_path("backup").exists(),
        "imapd logged nothing"
    );
    let run = h.sync(&["-R", "-1"]).expect("rolling pass");
    assert_exit(&run, 0);
    assert_converged(&h, &users);
    assert!(
        h.count("APPLY MESSAGE") > messages,
        "the rolling pass uploaded nothing"
    );
    assert!(
        !h.source().sync_log_path("backup").exists(),
        "channel log not drained"
    );
    assert!(
        !h.source().sync_log_run_path("backup").exists(),
        "log-run left behind"
    );
}

/// `-m` for two mailboxes that changed after a full sync converges.
#[test]
fn mailbox_mode_converges() {
    let Some(h) = harness() else { return };
    let mut rng = Rng::new(Seed(3));
    fill_user(h.source(), "dora", 20, &mut rng).expect("fill");
    assert_exit(&h.sync(&["-u", "dora"]).expect("sync"), 0);
    let before = h.count("APPLY MAILBOX");
    let mut c = h.source().login_as("dora").expect("login");
    for (i, folder) in ["INBOX.Sent", "INBOX.Work", "INBOX.Sent"]
        .iter()
        .enumerate()
    {
        backupd_sim::populate::append_random(&mut c, folder, "dora-m", i, &mut rng)
            .expect("append");
    }
    c.select("INBOX.Work").expect("select");
    c.uid_store("1:*", "+FLAGS", &["\\Flagged"]).expect("store");
    c.logout().expect("logout");
    assert!(
        !h.compare(&["dora"]).expect("compare").converged(),
        "changes did not diverge"
    );

    let run = h
        .sync(&["-m", "user.dora.Sent", "user.dora.Work"])
        .expect("sync -m");
    assert_exit(&run, 0);
    assert_eq!(h.count("APPLY MAILBOX"), before + 2, "{}", h.transcript());
    assert_converged(&h, &["dora"]);
}

/// Wrong credentials: the fake answers `NO`, the client retries for ever (as it
/// does against real backupd, `docs/sync-protocol.md` §1.4), nothing is stored.
#[test]
fn wrong_credentials_store_nothing() {
    let Some(bins) = cyrus_bins() else { return };
    let mut opts = HarnessOptions::new(bins);
    opts.client_password = Some("not-the-password".into());
    let h = Harness::start(opts).expect("harness");
    fill_user(h.source(), "erin", 5, &mut Rng::new(Seed(4))).expect("fill");
    let run = h
        .sync_with_timeout(&["-u", "erin"], Duration::from_secs(3))
        .expect("sync");
    assert!(run.timed_out, "the client should retry for ever: {run}");
    assert!(run.stderr.contains("Can not connect to server"), "{run}");
    let t = h.transcript();
    assert!(
        t.contains("AUTHENTICATE PLAIN [initial response]")
            && t.contains("NO authentication failure"),
        "{t}"
    );
    assert_eq!(h.count("GET USER"), 0, "{t}");
    assert!(h.fake().store().users().is_empty(), "something was stored");
    assert!(h.fake().store().bodies().is_empty(), "a body was stored");
}

/// The `sync_try_imap` probe (`C01 CAPABILITY`) is answered at once, so the
/// client does not stall for its 10 s `client_timeout`.
#[test]
fn imap_probe_does_not_stall_the_client() {
    let Some(h) = harness() else { return };
    fill_user(h.source(), "fay", 3, &mut Rng::new(Seed(5))).expect("fill");
    let conf = std::fs::read_to_string(h.source().config_path()).expect("config");
    let probing = h.sandbox().join("imapd-probe.conf");
    std::fs::write(
        &probing,
        conf.replace("backup_sync_try_imap: 0", "backup_sync_try_imap: 1"),
    )
    .expect("write");
    let run = backupd_sim::cyrus::SyncClient::new(&cyrus_bins().expect("cyrus"), &probing)
        .run(
            &["-n".into(), "backup".into(), "-u".into(), "fay".into()],
            Duration::from_secs(8),
        )
        .expect("run");
    assert_exit(&run, 0);
    assert!(
        h.transcript().contains("C01 CAPABILITY"),
        "no probe was sent: {}",
        h.transcript()
    );
    assert!(
        run.elapsed < Duration::from_secs(5),
        "the probe stalled: {run}"
    );
    assert_converged(&h, &["fay"]);
}
