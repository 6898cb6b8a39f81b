//! The `sync_server` personality (`serve --personality sync_server`): its
//! greeting, `APPLY CAPABILITIES`, reply texts and blocking locks, by a scripted
//! client; the real 3.6.1 `sync_client` replicating into it, and the same flows
//! against the real sync_server with the same verdicts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backupd_sim::check::compare;
use backupd_sim::cyrus::{
    Channel, CyrusBins, RealTarget, SourceInstance, SourceOptions, SyncClient, SyncRun, TargetKind,
};
use backupd_sim::events::EventKind;
use backupd_sim::fault::Plan;
use backupd_sim::harness::{Harness, HarnessOptions};
use backupd_sim::populate::{append_random, fill_user, more_changes};
use backupd_sim::rng::{Rng, Seed};
use backupd_sim::server::{FakeBackupd, ServerConfig};
use backupd_sim::session::{After, Credentials, Personality, SessionConfig};
use backupd_sim::store::{sha1_hex, Store};
use pretty_assertions::assert_eq;

use crate::codec::load_capture;
use crate::util::{cyrus_bins, replay, run_script, Client};
use crate::util::{mailbox_cmd, message_cmd};

fn replica_config() -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        personality: Personality::SyncServer,
        ..SessionConfig::default()
    })
}

// ---------------------------------------------------------------------------
// Scripted: greeting, capabilities, replies (no sockets, no Cyrus)
// ---------------------------------------------------------------------------

/// Proves: replaying the client side of the three real sync_server 3.6.1 lab
/// captures (a first `-u`, a rolling pass over the initial log, a rolling pass
/// with renames, a delete, RESERVE/MISSING) into one store gives **exactly** the
/// bytes real sync_server answered: `* ENABLED (SIEVE-MAILBOX)`, `OK success`,
/// `* MAILBOX` lines in sync_server's field order (CREATEDMODSEQ/FOLDERMODSEQ,
/// no `MBOXTYPE NIL`), `* MISSING`; and the greeting's capability lines are
/// sync_server's. The backupd personality answers the same captures differently.
#[test]
fn replica_captures_replay_byte_for_byte() {
    let config = Arc::new(SessionConfig {
        servername: "rep.lab.test".into(),
        credentials: Credentials {
            user: "repluser".into(),
            password: "lab".into(),
        },
        personality: Personality::SyncServer,
        ..SessionConfig::default()
    });
    let mut store = Store::temporary().unwrap();
    let names = [
        "replica-01-user-sync-01.txt",
        "replica-02-rolling-initial-log-01.txt",
        "replica-03-rolling-after-changes-01.txt",
    ];
    for (id, name) in (1..).zip(names) {
        let conn = &load_capture(name)[0];
        assert!(!conn.is_backupd(), "{name}");
        let mut c = Client::new(id, &config);
        let real: Vec<String> = String::from_utf8_lossy(&conn.blocks[0].bytes)
            .lines()
            .map(str::to_owned)
            .collect();
        let ours = c.greeting();
        assert_eq!(ours[..3], real[..3], "{name}");
        assert_eq!(real[2], "* SIEVE-MAILBOX");
        for g in [&ours[3], &real[3]] {
            assert!(
                g.starts_with("* OK rep.lab.test Cyrus sync server 3.6.1"),
                "{g}"
            );
        }
        replay(conn, false, |bytes| c.send(&mut store, bytes).wire);
        c.session.end(&mut store);
    }
    assert_eq!(
        store.users()["erin"].mailboxes.keys().collect::<Vec<_>>(),
        [
            "DELETED.user.erin.Trash.6B0AE2A3",
            "DELETED.user.erin.Work.6B0AE2A4",
            "user.erin",
            "user.erin.Archive",
            "user.erin.SentMail",
            "user.erin.r1",
        ]
    );

    // The same first capture against the backupd personality: other words.
    let backupd = Arc::new(SessionConfig {
        credentials: Credentials {
            user: "repluser".into(),
            password: "lab".into(),
        },
        ..SessionConfig::default()
    });
    let mut store = Store::temporary().unwrap();
    let mut c = Client::new(1, &backupd);
    assert_eq!(
        c.greeting().len(),
        3,
        "backupd does not offer SIEVE-MAILBOX"
    );
    c.cmd(&mut store, "AUTHENTICATE PLAIN AHJlcGx1c2VyAGxhYg==");
    assert_eq!(
        c.cmd(&mut store, "APPLY CAPABILITIES (SIEVE-MAILBOX)"),
        ["NO IMAP_PROTOCOL_ERROR Protocol error"]
    );
    assert_eq!(c.cmd(&mut store, "GET USER erin"), ["OK Success"]);
}

/// Proves the sync_server replies a scripted client meets: the greeting with
/// and without COMPRESS; `APPLY CAPABILITIES` enabling only what it knows;
/// `GET USER` of an unknown user (only `OK success`); a record whose body was
/// neither reserved nor uploaded refused with `NO Unknown error` and nothing
/// stored; RESTART clearing the session's GUID cache; `GET MAILBOXES` across
/// users; FULLMAILBOX of an unknown mailbox; `NO IMAP_PROTOCOL_BAD_PARAMETERS`;
/// `APPLY EXPUNGE` and `APPLY UNUSER`; quota and annotations acknowledged.
#[test]
fn replica_replies_to_a_scripted_client() {
    let config = replica_config();
    let c = Client::new(1, &config);
    assert_eq!(
        c.greeting(),
        [
            "* SASL PLAIN",
            "* COMPRESS DEFLATE",
            "* SIEVE-MAILBOX",
            "* OK backupd-sim Cyrus sync server 3.6.1 (backupd-sim)"
        ]
    );
    let plain = Arc::new(SessionConfig {
        offer_compress: false,
        personality: Personality::SyncServer,
        ..SessionConfig::default()
    });
    assert_eq!(
        Client::new(1, &plain).greeting()[..2],
        ["* SASL PLAIN", "* SIEVE-MAILBOX"]
    );

    let mut store = Store::temporary().unwrap();
    let mut c = Client::authed_with(2, &config, &mut store);
    assert!(!c.session.sieve_mailbox());
    assert_eq!(
        c.cmd(&mut store, "APPLY CAPABILITIES (FOO)"),
        ["* ENABLED ()", "OK success"]
    );
    assert!(!c.session.sieve_mailbox());
    assert_eq!(
        c.cmd(&mut store, "APPLY CAPABILITIES (sieve-mailbox BAR)"),
        ["* ENABLED (sieve-mailbox)", "OK success"]
    );
    assert!(c.session.sieve_mailbox());
    assert_eq!(c.cmd(&mut store, "GET USER alice"), ["OK success"]);

    let (b1, b2): (&[u8], &[u8]) = (b"one\r\n", b"two\r\n");
    let (g1, g2) = (sha1_hex(b1), sha1_hex(b2));
    // No body for g1 yet: refused, nothing stored.
    let mb = mailbox_cmd("u1", "user.alice", &[(1, &g1, "")]);
    assert_eq!(c.cmd(&mut store, &mb), ["NO Unknown error"]);
    assert_eq!(
        c.cmd(&mut store, "GET MAILBOXES (user.alice)"),
        ["OK success"]
    );
    // Uploaded, then RESTART forgets it.
    assert_eq!(
        c.send(&mut store, &message_cmd(&[b1])).lines,
        ["OK success"]
    );
    assert_eq!(c.cmd(&mut store, "RESTART"), ["OK Restarting"]);
    assert_eq!(c.cmd(&mut store, &mb), ["NO Unknown error"]);
    assert_eq!(
        c.send(&mut store, &message_cmd(&[b1, b2])).lines,
        ["OK success"]
    );
    assert_eq!(c.cmd(&mut store, &mb), ["OK success"]);
    // An expunged record needs no body.
    let mb_bob = mailbox_cmd(
        "u2",
        "user.bob.Sent",
        &[(1, &g2, ""), (2, &"0".repeat(40), "\\Deleted \\Expunged")],
    );
    assert_eq!(c.cmd(&mut store, &mb_bob), ["OK success"]);

    // Across users, in request order, unknown names skipped.
    let out = c.cmd(
        &mut store,
        "GET MAILBOXES (user.bob.Sent user.carol user.alice)",
    );
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(out[0].starts_with("* MAILBOX %(UNIQUEID u2 MBOXNAME user.bob.Sent SYNC_CRC 1 SYNC_CRC_ANNOT 2 LAST_UID 2 "), "{}", out[0]);
    assert!(
        out[1].starts_with("* MAILBOX %(UNIQUEID u1 MBOXNAME user.alice "),
        "{}",
        out[1]
    );
    assert!(
        out[1].ends_with("OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1)"),
        "{}",
        out[1]
    );
    assert!(!out[1].contains("MBOXTYPE") && !out[1].contains("QUOTAROOT"));
    assert_eq!(out[2], "OK success");

    assert_eq!(
        c.cmd(&mut store, "GET FULLMAILBOX user.alice.Nope"),
        ["NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox"]
    );
    assert_eq!(
        c.cmd(&mut store, "APPLY SUB %(USERID alice)"),
        ["NO IMAP_PROTOCOL_BAD_PARAMETERS"]
    );
    assert_eq!(
        c.cmd(&mut store, "APPLY SUB %(USERID alice MBOXNAME user.alice)"),
        ["OK success"]
    );
    let user = c.cmd(&mut store, "GET USER alice");
    assert_eq!(user.len(), 3, "{user:?}");
    assert_eq!(user[1], "* LSUB (user.alice)");

    assert_eq!(
        c.cmd(
            &mut store,
            "APPLY EXPUNGE %(MBOXNAME user.alice UNIQUEID zz UID (1))"
        ),
        ["NO IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid"]
    );
    assert_eq!(
        c.cmd(
            &mut store,
            "APPLY EXPUNGE %(MBOXNAME user.alice UNIQUEID u1 UID (1))"
        ),
        ["OK success"]
    );
    let full = c.cmd(&mut store, "GET FULLMAILBOX user.alice");
    assert!(
        full[0].contains(
            "RECORD (%(UID 1 MODSEQ 2 LAST_UPDATED 1795874858 FLAGS (\\Expunged) INTERNALDATE"
        ),
        "{}",
        full[0]
    );

    // Quota is kept and reported back, as sync_server does; UNQUOTA removes it.
    let quota = "APPLY QUOTA %(ROOT user.alice LIMIT 100 STORAGE 100 MODSEQ 3)";
    assert_eq!(c.cmd(&mut store, quota), ["OK success"]);
    assert_eq!(
        c.cmd(&mut store, "GET QUOTA user.alice"),
        [
            "* QUOTA %(ROOT user.alice LIMIT 100 STORAGE 100 MODSEQ 3)",
            "OK success"
        ]
    );
    let user = c.cmd(&mut store, "GET USER alice");
    assert!(
        user.iter()
            .any(|l| l.starts_with("* QUOTA %(ROOT user.alice")),
        "{user:?}"
    );
    for acked in [
        "APPLY UNQUOTA user.alice",
        "APPLY ANNOTATION %(MBOXNAME \"\" ENTRY /comment USERID \"\" VALUE x)",
        "GET QUOTA user.alice",
    ] {
        assert_eq!(c.cmd(&mut store, acked), ["OK success"], "{acked}");
    }
    assert_eq!(
        c.cmd(&mut store, "GET FETCH_SIEVE %(USERID alice FILENAME x)"),
        ["NO IMAP_PROTOCOL_ERROR Protocol error"],
        "not modelled"
    );
    assert_eq!(c.cmd(&mut store, "APPLY UNUSER alice"), ["OK success"]);
    assert_eq!(c.cmd(&mut store, "GET USER alice"), ["OK success"]);
    let exit = c.send(&mut store, b"EXIT\r\n");
    assert_eq!(
        (exit.lines, exit.after),
        (vec!["OK Finished".to_owned()], After::Close)
    );
}

/// Proves: as real sync_server 3.6.1, every mailbox names its quota root in
/// `* MAILBOX` (`QUOTAROOT` between OPTIONS and CREATEDMODSEQ, left out when
/// it has none: `sync_prepare_dlists`), and `GET USER` lists the `* QUOTA` of
/// only the roots its mailboxes name, once each, in the order met
/// (`sync_get_user`): not a root no mailbox counts against, not another
/// user's. A new root takes the mailboxes under it except those of a deeper
/// root (`mailbox_changequotaroot`); a new or renamed mailbox finds its root
/// by its name (`quota_findroot`); `UNQUOTA` leaves the mailboxes that counted
/// against the root with none, not the enclosing root (`mboxlist_rmquota`).
/// Seen on the real sync_server: `… OPTIONS P QUOTAROOT user.olga
/// CREATEDMODSEQ 1 FOLDERMODSEQ 23 …` (`compare --against sync_server` on
/// `every-compared-row`).
#[test]
fn replica_mailboxes_name_their_quota_root_and_get_user_lists_only_those() {
    let config = replica_config();
    let mut store = Store::temporary().unwrap();
    let mut c = Client::authed_with(1, &config, &mut store);
    for (id, name) in [
        ("u1", "user.alice"),
        ("u2", "user.alice.Sent"),
        ("u3", "user.alice.Work"),
        ("u4", "user.alice.Work.Deep"),
        ("u5", "user.bob"),
    ] {
        assert_eq!(
            c.cmd(&mut store, &mailbox_cmd(id, name, &[])),
            ["OK success"]
        );
    }
    // No root yet: no QUOTAROOT, no `* QUOTA`.
    let user = c.cmd(&mut store, "GET USER alice");
    assert!(user.iter().all(|l| !l.contains("QUOTA")), "{user:?}");

    // The deeper root first, then the user's: Work and Work.Deep keep theirs.
    for root in [
        "user.alice.Work",
        "user.alice",
        "user.alice.Gone",
        "user.bob",
    ] {
        let q = format!("APPLY QUOTA %(ROOT {root} LIMIT 100 STORAGE 100 MODSEQ 3)");
        assert_eq!(c.cmd(&mut store, &q), ["OK success"], "{root}");
    }
    // A new mailbox takes the root above it.
    let new = mailbox_cmd("u6", "user.alice.Work.New", &[]);
    assert_eq!(c.cmd(&mut store, &new), ["OK success"]);

    let roots = |lines: &[String]| -> Vec<(String, Option<String>)> {
        lines
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix("* MAILBOX %(UNIQUEID ")?;
                let name = rest.split(' ').nth(2)?.to_owned();
                let root = l
                    .split_once(" QUOTAROOT ")
                    .map(|(_, r)| r.split(' ').next().unwrap_or_default().to_owned());
                Some((name, root))
            })
            .collect()
    };
    let quotas = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.starts_with("* QUOTA "))
            .cloned()
            .collect()
    };
    let some = |s: &str| Some(s.to_owned());
    let user = c.cmd(&mut store, "GET USER alice");
    assert_eq!(
        roots(&user),
        [
            ("user.alice".to_owned(), some("user.alice")),
            ("user.alice.Sent".to_owned(), some("user.alice")),
            ("user.alice.Work".to_owned(), some("user.alice.Work")),
            ("user.alice.Work.Deep".to_owned(), some("user.alice.Work")),
            ("user.alice.Work.New".to_owned(), some("user.alice.Work")),
        ]
    );
    assert!(
        user[0].contains(" OPTIONS P QUOTAROOT user.alice CREATEDMODSEQ 1 FOLDERMODSEQ 1"),
        "{}",
        user[0]
    );
    // Only the roots named above, in the order met: not user.alice.Gone
    // (no mailbox), not user.bob (another user's).
    assert_eq!(
        quotas(&user),
        [
            "* QUOTA %(ROOT user.alice LIMIT 100 STORAGE 100 MODSEQ 3)",
            "* QUOTA %(ROOT user.alice.Work LIMIT 100 STORAGE 100 MODSEQ 3)",
        ]
    );
    // GET MAILBOXES prints the root too; GET QUOTA still answers any root.
    let bob = c.cmd(&mut store, "GET MAILBOXES (user.bob)");
    assert!(bob[0].contains(" QUOTAROOT user.bob "), "{}", bob[0]);
    assert_eq!(c.cmd(&mut store, "GET QUOTA user.alice.Gone").len(), 2);

    // A rename takes the root of its new name.
    let rename = "APPLY RENAME %(OLDMBOXNAME user.alice.Sent NEWMBOXNAME user.alice.Work.Sent \
                  PARTITION default UIDVALIDITY 1795874859)";
    assert_eq!(c.cmd(&mut store, rename), ["OK success"]);
    // UNQUOTA: the mailboxes of that root have none after, not user.alice's.
    assert_eq!(
        c.cmd(&mut store, "APPLY UNQUOTA user.alice.Work"),
        ["OK success"]
    );
    let user = c.cmd(&mut store, "GET USER alice");
    assert_eq!(
        roots(&user),
        [
            ("user.alice".to_owned(), some("user.alice")),
            ("user.alice.Work".to_owned(), None),
            ("user.alice.Work.Deep".to_owned(), None),
            ("user.alice.Work.New".to_owned(), None),
            ("user.alice.Work.Sent".to_owned(), None),
        ]
    );
    assert_eq!(
        quotas(&user),
        ["* QUOTA %(ROOT user.alice LIMIT 100 STORAGE 100 MODSEQ 3)"]
    );
}

// ---------------------------------------------------------------------------
// Locks: sync_server blocks, backupd answers LOCKED (sockets, no Cyrus)
// ---------------------------------------------------------------------------

fn fake(
    personality: Personality,
    plan: &str,
    idle: Duration,
) -> (tokio::runtime::Runtime, FakeBackupd) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut config = ServerConfig {
        plan: Plan::parse(plan, "test plan").unwrap_or_else(|e| panic!("{e}")),
        seed: Seed(7),
        idle_timeout: idle,
        ..ServerConfig::default()
    };
    config.session.personality = personality;
    let f = rt
        .block_on(FakeBackupd::start(
            "127.0.0.1:0".parse().expect("addr"),
            Store::temporary().expect("store"),
            config,
        ))
        .expect("start");
    (rt, f)
}

fn waits(f: &FakeBackupd) -> Vec<(String, u64, bool)> {
    f.shared()
        .events()
        .events()
        .filter_map(|e| match &e.kind {
            EventKind::LockWaited {
                lock,
                waited_ms,
                timed_out,
            } => Some((lock.clone(), *waited_ms, *timed_out)),
            _ => None,
        })
        .collect()
}

/// Proves: with a `hold` window on alice open for 600 ms, the sync_server
/// personality answers `GET USER alice` at once (sync_server reads under
/// mailbox locks) but `APPLY UNMAILBOX user.alice.Old` (a user namespace lock
/// command) only after the window closed (it waited at least 500 ms; one
/// `LockWaited` event, no `LockHit`); bob is served at once; a `reject` window
/// on `APPLY SUB` also blocks;
/// the backupd personality answers the same `NO IMAP_MAILBOX_LOCKED` at once.
/// A window that never closes ends the waiting connection at the idle timeout.
#[test]
fn sync_server_blocks_where_backupd_answers_locked() {
    // Both windows open at the mark `go` and close 600 ms later.
    let plan = r#"
        [[lock]]
        name = "alice-busy"
        user = "alice"
        mode = "hold"
        open = { mark = "go" }
        close = { after_ms = 600 }

        [[lock]]
        name = "sub-busy"
        verb = "APPLY SUB"
        mode = "reject"
        open = { mark = "go" }
        close = { after_ms = 600 }
    "#;
    let (_rt, f) = fake(Personality::SyncServer, plan, Duration::from_secs(30));
    f.shared().mark("go");
    let opened = Instant::now();
    assert_eq!(run_script(f.addr(), &["GET USER bob"]), ["OK success"]);
    // hold: GETs go on (sync_server reads under mailbox locks) ...
    assert_eq!(run_script(f.addr(), &["GET USER alice"]), ["OK success"]);
    assert!(waits(&f).is_empty(), "a GET waited: {:?}", waits(&f));
    // ... the user namespace lock's commands wait for the window to close.
    let out = run_script(
        f.addr(),
        &[
            "APPLY UNMAILBOX user.alice.Old",
            "APPLY SUB %(USERID carol MBOXNAME user.carol)",
        ],
    );
    let answered = opened.elapsed();
    assert_eq!(
        out,
        ["NO IMAP_MAILBOX_NONEXISTENT No Such Mailbox", "OK success"]
    );
    assert!(answered >= Duration::from_millis(600), "{answered:?}");
    let w = waits(&f);
    assert_eq!(w.len(), 1, "{w:?}: the SUB came after both windows closed");
    assert_eq!(w[0].0, "alice-busy");
    assert!(w[0].1 > 0 && !w[0].2, "{w:?}");
    let hits = f
        .shared()
        .events()
        .events()
        .filter(|e| matches!(e.kind, EventKind::LockHit { .. }))
        .count();
    assert_eq!(hits, 0);
    assert!(!f.shared().events().transcript().contains("LOCKED"));
    assert_eq!(f.shared().engine().status(0).users["alice"].waited, 1);

    // The reject window on its own blocks too.
    let (_rt2, f2) = fake(Personality::SyncServer, plan, Duration::from_secs(30));
    f2.shared().mark("go");
    let opened = Instant::now();
    let out = run_script(
        f2.addr(),
        &["APPLY SUB %(USERID carol MBOXNAME user.carol)"],
    );
    assert_eq!(out, ["OK success"]);
    assert!(opened.elapsed() >= Duration::from_millis(600));
    assert_eq!(waits(&f2).first().map(|w| w.0.as_str()), Some("sub-busy"));

    // backupd: LOCKED, no waiting.
    let (_rt3, f3) = fake(Personality::Backupd, plan, Duration::from_secs(30));
    f3.shared().mark("go");
    assert_eq!(
        run_script(
            f3.addr(),
            &[
                "GET USER alice",
                "APPLY SUB %(USERID carol MBOXNAME user.carol)"
            ]
        ),
        [
            "NO IMAP_MAILBOX_LOCKED Mailbox locked",
            "NO IMAP_MAILBOX_LOCKED Mailbox locked"
        ]
    );
    assert!(waits(&f3).is_empty());

    // A window that never closes: the connection is closed at the idle timeout.
    let never = r#"
        [[lock]]
        name = "forever"
        user = "alice"
        open = "start"
        close = "never"
    "#;
    let (_rt4, f4) = fake(Personality::SyncServer, never, Duration::from_millis(700));
    let t = Instant::now();
    assert_eq!(
        run_script(f4.addr(), &["APPLY UNMAILBOX user.alice"]),
        ["<closed>"]
    );
    assert!(t.elapsed() >= Duration::from_millis(600));
    let w = waits(&f4);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].2, "not marked timed out: {w:?}");
}

// ---------------------------------------------------------------------------
// The real sync_client: into the personality and into the real sync_server
// ---------------------------------------------------------------------------

/// One step's verdict: (step, client exit status, converged).
type Verdict = (&'static str, Option<i32>, bool);

/// Three users filled alike from seed 10, `-u` of all, a second `-u`, more
/// changes, one rolling `-R -1` pass, `-A`, `-m` of two mailboxes: the verdict
/// of each step. `sync` runs the
/// client, `converged` compares the target with the source.
fn flow(
    source: &SourceInstance,
    sync: &dyn Fn(&[&str]) -> SyncRun,
    converged: &dyn Fn(&[&str]) -> bool,
) -> Vec<Verdict> {
    let users = ["alice", "bob", "carol"];
    let mut rng = Rng::new(Seed(10)).fork("populate");
    for u in users {
        fill_user(source, u, 30, &mut rng).expect("fill");
    }
    let mut out = Vec::new();
    let mut step = |name: &'static str, args: &[&str]| {
        let run = sync(args);
        eprintln!("{name}: {run}");
        out.push((name, run.status, converged(&users)));
    };
    step("-u", &["-u", "alice", "bob", "carol"]);
    step("-u again", &["-u", "alice", "bob", "carol"]);
    for u in users {
        more_changes(source, u, &mut rng).expect("changes");
    }
    step("-R -1", &["-R", "-1"]);
    step("-A", &["-A"]);
    step("-m", &["-m", "user.alice", "user.bob.Sent"]);
    out
}

fn expected_verdicts() -> Vec<Verdict> {
    vec![
        ("-u", Some(0), true),
        ("-u again", Some(0), true),
        ("-R -1", Some(0), true),
        ("-A", Some(0), true),
        ("-m", Some(0), true),
    ]
}

fn real_sync_server_verdicts(bins: &CyrusBins) -> Vec<Verdict> {
    let dir = tempfile::Builder::new()
        .prefix("backupd-sim-personality-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut target = RealTarget::start(
        TargetKind::SyncServer,
        bins,
        &dir.path().join("target"),
        "repluser",
        "lab",
    )
    .expect("real sync_server");
    let mut opts = SourceOptions::new(bins.clone(), dir.path().join("src"));
    opts.channels = vec![Channel::new("backup", target.addr().port())];
    let mut source = SourceInstance::start(&opts).expect("source");
    let client = SyncClient::new(bins, source.config_path());
    let sync = |args: &[&str]| {
        let mut argv: Vec<String> = vec!["-n".into(), "backup".into()];
        argv.extend(args.iter().map(|s| s.to_string()));
        client
            .run(&argv, Duration::from_secs(120))
            .expect("sync_client")
    };
    let converged = |users: &[&str]| {
        let scope = target.state_scope();
        let s = scope.project(&source.read_state(users).expect("read source"));
        let t = scope.project(&target.read_state(users).expect("read replica"));
        let c = compare(&s, &t);
        if !c.converged() {
            eprintln!("real sync_server not converged:\n{c}");
        }
        c.converged()
    };
    let v = flow(&source, &sync, &converged);
    target.stop().expect("stop target");
    source.stop().expect("stop source");
    v
}

/// Proves the acceptance of issue 10 part 3: the real 3.6.1 `sync_client`
/// replicates 3 users (`-u`, a repeated `-u`, `-R -1` after more changes, `-A`,
/// `-m`)
/// into the sync_server personality and converges at every step (read back
/// with the check code; every body stored under its GUID); the personality
/// was really spoken (`APPLY CAPABILITIES` on every connection, no `LOCKED`,
/// `OK success`); the repeated `-u` uploads nothing; and the same flow against
/// the real sync_server 3.6.1 gives the same verdicts (exit codes, converged).
#[test]
fn real_client_converges_into_sync_server_personality_as_into_the_real_one() {
    let Some(bins) = cyrus_bins() else { return };
    let mut opts = HarnessOptions::new(bins.clone());
    opts.personality = Personality::SyncServer;
    let h = Harness::start(opts).expect("harness");
    let messages = std::cell::Cell::new(0);
    let sync = |args: &[&str]| {
        if args == ["-u", "alice", "bob", "carol"] && messages.get() > 0 {
            // the repeated -u: nothing may be uploaded again
            let run = h.sync(args).expect("sync");
            assert_eq!(h.count("APPLY MESSAGE"), messages.get(), "re-uploaded");
            return run;
        }
        let run = h.sync(args).expect("sync");
        messages.set(h.count("APPLY MESSAGE"));
        run
    };
    let converged = |users: &[&str]| {
        let c = h.compare(users).expect("compare");
        if !c.converged() {
            eprintln!("fake not converged:\n{c}\n{}", h.transcript());
        }
        c.converged() && h.verify_bodies().is_empty()
    };
    let fake_verdicts = flow(h.source(), &sync, &converged);
    assert_eq!(
        fake_verdicts,
        expected_verdicts(),
        "sync_server personality"
    );
    let connections = h.count("AUTHENTICATE");
    assert!(connections >= 3, "{connections}");
    assert_eq!(h.count("APPLY CAPABILITIES"), connections);
    let transcript = h.transcript();
    assert!(!transcript.contains("LOCKED"), "{transcript}");
    assert!(!transcript.contains("OK Success\n"), "backupd's word");
    assert!(transcript.contains("OK success"));

    let real = real_sync_server_verdicts(&bins);
    assert_eq!(real, fake_verdicts, "real sync_server vs the personality");
}

/// What a client run that met a lock looked like: (mode, exit status, a
/// `Deferred:` or `bailing out` line, took at least 1 s, converged).
type LockVerdict = (&'static str, Option<i32>, bool, bool, bool);

/// `anna` replicated and drained; then twice: three appends, `lock()` makes
/// anna busy for 2.5 s, one client run (`-v -v -R -1`, then `-v -v -u anna`);
/// the verdict of each. The rolling pass must also drain the channel log.
fn runs_under_lock(
    source: &SourceInstance,
    sync: &dyn Fn(&[&str]) -> SyncRun,
    lock: &dyn Fn(),
    converged: &dyn Fn(&[&str]) -> bool,
) -> Vec<LockVerdict> {
    let mut rng = Rng::new(Seed(11)).fork("populate");
    fill_user(source, "anna", 12, &mut rng).expect("fill");
    assert_eq!(sync(&["-u", "anna"]).status, Some(0));
    assert_eq!(sync(&["-R", "-1"]).status, Some(0));
    let mut out = Vec::new();
    for (round, (mode, args)) in [
        ("-R -1", &["-v", "-v", "-R", "-1"][..]),
        ("-u", &["-v", "-v", "-u", "anna"][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let mut c = source.login_as("anna").expect("login");
        for i in 0..3 {
            let tag = format!("anna-locked-{round}");
            append_random(&mut c, "INBOX", &tag, i, &mut rng).expect("append");
        }
        c.logout().expect("logout");
        lock();
        let t = Instant::now();
        let run = sync(args);
        let took = t.elapsed();
        eprintln!("{mode} took {took:?}: {run}");
        if mode == "-R -1" {
            assert!(!source.sync_log_path("backup").exists(), "log not drained");
        }
        out.push((
            mode,
            run.status,
            run.stderr.contains("Deferred") || run.stderr.contains("bailing out"),
            took >= Duration::from_millis(1000),
            converged(&["anna"]),
        ));
    }
    out
}

/// Hold the real replica's user namespace lock of `user` (the fcntl write lock
/// on `<configdir>/lock/*U*<user>.lock` that sync_server's APPLY MAILBOX waits
/// for) for `hold`, from a thread; returns once it is taken.
fn hold_namespace_lock(
    target: &RealTarget,
    user: &str,
    hold: Duration,
) -> std::thread::JoinHandle<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::libc;
    use std::os::fd::AsRawFd;
    let path = target.root().join(format!("conf/lock/*U*{user}.lock"));
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The whole file, as Cyrus's lock_setlock takes it.
        let fl = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        fcntl(f.as_raw_fd(), FcntlArg::F_SETLKW(&fl)).expect("lock");
        tx.send(()).expect("send");
        std::thread::sleep(hold);
        drop(f); // closing the file releases the lock
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("namespace lock taken");
    t
}

/// Proves: a rolling `-R -1` pass and a `-u`, each meeting a 2.5 s lock on anna,
/// behave the same against the sync_server personality (a `hold` window) and
/// against the real sync_server 3.6.1 (its user namespace lock held by another
/// process): exit 0, no `Deferred:` or `bailing out` line (backupd gives both,
/// and exit 1 for `-u`), the run waited (at least 1 s), the channel log drained
/// by the rolling pass, converged right after each. The personality's transcript shows the wait and no
/// `LOCKED`.
#[test]
fn rolling_pass_and_user_sync_wait_for_a_lock_as_on_the_real_sync_server() {
    let Some(bins) = cyrus_bins() else { return };
    let mut opts = HarnessOptions::new(bins.clone());
    opts.personality = Personality::SyncServer;
    opts.server.plan = Plan::parse(
        r#"
        [[lock]]
        name = "busy"
        user = "anna"
        mode = "hold"
        open = { mark = "lock" }
        close = { after_ms = 2500 }
        "#,
        "test plan",
    )
    .expect("plan");
    let h = Harness::start(opts).expect("harness");
    let fake = runs_under_lock(
        h.source(),
        &|args| h.sync(args).expect("sync"),
        &|| h.fake().mark("lock"),
        &|users| {
            let c = h.compare(users).expect("compare");
            eprintln!("{c}");
            c.converged()
        },
    );
    assert_eq!(
        fake,
        [
            ("-R -1", Some(0), false, true, true),
            ("-u", Some(0), false, true, true)
        ],
        "{}",
        h.transcript()
    );
    assert!(!h.transcript().contains("LOCKED"));
    assert!(
        h.transcript().contains("waits for busy"),
        "{}",
        h.transcript()
    );
    drop(h);

    let dir = tempfile::Builder::new()
        .prefix("backupd-sim-personality-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut target = RealTarget::start(
        TargetKind::SyncServer,
        &bins,
        &dir.path().join("target"),
        "repluser",
        "lab",
    )
    .expect("real sync_server");
    let mut sopts = SourceOptions::new(bins.clone(), dir.path().join("src"));
    sopts.channels = vec![Channel::new("backup", target.addr().port())];
    let mut source = SourceInstance::start(&sopts).expect("source");
    let client = SyncClient::new(&bins, source.config_path());
    let holders = std::cell::RefCell::new(Vec::new());
    let real = runs_under_lock(
        &source,
        &|args| {
            let mut argv: Vec<String> = vec!["-n".into(), "backup".into()];
            argv.extend(args.iter().map(|s| s.to_string()));
            client
                .run(&argv, Duration::from_secs(120))
                .expect("sync_client")
        },
        &|| {
            holders.borrow_mut().push(hold_namespace_lock(
                &target,
                "anna",
                Duration::from_millis(2500),
            ))
        },
        &|users| {
            let scope = target.state_scope();
            let s = scope.project(&source.read_state(users).expect("read source"));
            let t = scope.project(&target.read_state(users).expect("read replica"));
            let c = compare(&s, &t);
            eprintln!("{c}");
            c.converged()
        },
    );
    for t in holders.borrow_mut().drain(..) {
        t.join().expect("lock thread");
    }
    target.stop().expect("stop target");
    source.stop().expect("stop source");
    assert_eq!(real, fake, "real sync_server vs the personality");
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

/// A `backupd-sim serve` child, killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Proves: `serve --personality sync_server` greets as sync_server over TCP
/// (`* SIEVE-MAILBOX`, `Cyrus sync server`) and `serve` without the option as
/// backupd; an unknown personality exits 2 naming the accepted values.
#[test]
fn serve_takes_a_personality() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_backupd-sim");

    let greeting = |args: &[&str]| -> Vec<String> {
        let mut child = Child(
            Command::new(BIN)
                .arg("serve")
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn backupd-sim"),
        );
        let mut first = String::new();
        BufReader::new(child.0.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("first line");
        let addr: std::net::SocketAddr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {first:?}"))
            .parse()
            .expect("address");
        let s =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut lines = Vec::new();
        let mut r = BufReader::new(s);
        loop {
            let mut l = String::new();
            assert!(
                r.read_line(&mut l).expect("greeting") > 0,
                "closed: {lines:?}"
            );
            lines.push(l.trim_end().to_owned());
            if l.starts_with("* OK") {
                return lines;
            }
        }
    };
    let g = greeting(&["--personality", "sync_server"]);
    assert_eq!(
        g[..3],
        ["* SASL PLAIN", "* COMPRESS DEFLATE", "* SIEVE-MAILBOX"]
    );
    assert!(g[3].contains("Cyrus sync server 3.6.1"), "{g:?}");
    let g = greeting(&[]);
    assert_eq!(g.len(), 3, "{g:?}");
    assert!(g[2].contains("Cyrus backup server 3.6.1"), "{g:?}");

    let out = Command::new(BIN)
        .args(["serve", "--personality", "imapd"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid value 'imapd' for '--personality <NAME>'")
            && err.contains("[possible values: backupd, sync_server]"),
        "{err}"
    );
}
