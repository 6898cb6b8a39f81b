//! Every fault action and lock mode, in two layers:
//!
//! - through the sans-IO core ([`backupd_sim::effect`]) by tables: a plan, a
//!   command, the effect the driver must carry out, what is stored, what is
//!   logged; no sockets, no runtime;
//! - against an in-process [`FakeBackupd`] over TCP, for what only the
//!   driver shows: bytes on the wire, closes and EOF, timing, refused and
//!   restarted connections, the event log and transcript, the control API.
//!
//! The TCP tests start their own fake on `127.0.0.1:0` inside its own tokio
//! runtime and talk to it with blocking sockets. Every read has a deadline
//! ([`WAIT`]); waits for something the server does after the client has seen
//! its side (a `Closed` event, a refusal window ending) poll with a bounded
//! deadline. Timings are only checked as lower bounds.
//!
//! [`FakeBackupd`]: backupd_sim::server::FakeBackupd

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backupd_sim::cyrus::process::wait_until;
use backupd_sim::effect::{Effect, Judgement, World};
use backupd_sim::events::EventKind;
use backupd_sim::fault::{LockMode, LockSpec, Verdict};
use backupd_sim::proto::Reply;
use backupd_sim::server::control::{self, Request};
use backupd_sim::session::{After, Personality, SessionConfig};
use backupd_sim::store::sha1_hex;
use pretty_assertions::assert_eq;

use crate::util::{run_script, CoreWorld, Sim, LOGIN, WAIT};

const LOCKED: &str = "NO IMAP_MAILBOX_LOCKED Mailbox locked";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A raw csync client that sees every reply line, `*` lines included.
struct Client {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

/// True for the ways a peer's close shows up on a read.
fn is_close(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
    )
}

impl Client {
    /// Connect and read the greeting; `None` when the server closes the
    /// connection before any greeting byte (a refused connection).
    fn try_connect(addr: SocketAddr) -> Option<Client> {
        let s = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut c = Client {
            r: BufReader::new(s.try_clone().expect("clone")),
            w: s,
        };
        let mut greeting = Vec::new();
        loop {
            let mut line = String::new();
            match c.r.read_line(&mut line) {
                Ok(0) if greeting.is_empty() => return None,
                Err(e) if greeting.is_empty() && is_close(&e) => return None,
                Ok(0) => panic!("closed during the greeting: {greeting:?}"),
                Err(e) => panic!("reading the greeting: {e}"),
                Ok(_) => {}
            }
            let done = line.starts_with("* OK");
            greeting.push(line);
            if done {
                return Some(c);
            }
        }
    }

    fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).expect("refused")
    }

    /// Connected and authenticated.
    fn login(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr);
        assert_eq!(c.cmd(LOGIN), ["OK Success (no protection)"]);
        c
    }

    fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("send");
    }

    /// The reply lines up to the final one; `None` when the server closed
    /// first. Panics on a timeout.
    fn reply(&mut self) -> Option<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let mut line = String::new();
            match self.r.read_line(&mut line) {
                Ok(0) => return None,
                Err(e) if is_close(&e) => return None,
                Err(e) => panic!("no reply within {WAIT:?} ({e}); so far {out:?}"),
                Ok(_) => {}
            }
            let line = line.trim_end().to_owned();
            let last = !line.starts_with("* ");
            out.push(line);
            if last {
                return Some(out);
            }
        }
    }

    /// Send a line and return its reply lines; the connection must stay open.
    fn cmd(&mut self, line: &str) -> Vec<String> {
        self.send(line);
        self.reply()
            .unwrap_or_else(|| panic!("closed after `{line}`"))
    }

    /// Every byte until the server closes (bounded by the read timeout).
    fn rest(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self.r.read_to_end(&mut out) {
            Ok(_) => out,
            Err(e) if is_close(&e) => out,
            Err(e) => panic!("no EOF within {WAIT:?} ({e}); got {out:?}"),
        }
    }

    /// Asserts the server closes with nothing more to say.
    fn expect_eof(&mut self) {
        assert_eq!(String::from_utf8_lossy(&self.rest()), "");
    }
}

fn sub(user: &str, mailbox: &str) -> String {
    format!("APPLY SUB %(USERID {user} MBOXNAME {mailbox})")
}

/// `APPLY MAILBOX` for an empty mailbox `name` with every field backupd
/// requires (as `tests/it/session.rs` builds it).
fn mailbox_cmd(uniqueid: &str, name: &str) -> String {
    let owner = name.split('.').nth(1).unwrap_or("alice");
    format!(
        "APPLY MAILBOX %(UNIQUEID {uniqueid} MBOXNAME {name} SYNC_CRC 1 SYNC_CRC_ANNOT 2 \
         LAST_UID 0 HIGHESTMODSEQ 10 RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 1795874858 POP3_LAST_LOGIN 0 POP3_SHOW_AFTER 0 \
         UIDVALIDITY 1795874859 PARTITION default ACL \"{owner}\tlrswipkxtecdan\t\" \
         OPTIONS P CREATEDMODSEQ 1 FOLDERMODSEQ 1 RECORD ())"
    )
}

fn fault(rule: &str, action: &str) -> EventKind {
    EventKind::Fault {
        rule: rule.into(),
        action: action.into(),
    }
}

fn closed(reason: &str) -> EventKind {
    EventKind::Closed {
        reason: reason.into(),
    }
}

fn lock_spec() -> LockSpec {
    LockSpec::default()
}

/// Poll new connections until one gets a greeting; returns it.
fn connect_when_accepted(addr: SocketAddr) -> Client {
    let mut client = None;
    assert!(
        wait_until(WAIT, || {
            client = Client::try_connect(addr);
            client.is_some()
        }),
        "still refusing after {WAIT:?}"
    );
    client.expect("connected")
}

// ---------------------------------------------------------------------------
// Every action through the sans-IO core: plan, command, effect, what is stored
// ---------------------------------------------------------------------------

/// The effect a row expects, by its shape.
#[derive(Debug)]
enum Want {
    /// Send these reply lines, then go on (`false`) or close (`true`), after
    /// this many milliseconds.
    Send(&'static [&'static str], bool, u64),
    /// Write exactly these bytes, then close.
    Partial(&'static str),
    /// Close without a reply, for this reason.
    Close(&'static str),
    Stall,
    Restart,
}

/// One fault rule, one `APPLY SUB` (the subscription is stored when the
/// command was executed), the effect and the fault event.
struct Row {
    plan: &'static str,
    want: Want,
    executed: bool,
    /// The `Fault` event's action text.
    event: &'static str,
}

fn check_effect(row: &str, got: &Effect, want: &Want) {
    let lines = |r: &backupd_sim::session::Response| -> Vec<String> {
        r.replies.iter().map(Reply::to_line).collect()
    };
    match (got, want) {
        (Effect::Send { response, delay }, Want::Send(replies, close, ms)) => {
            assert_eq!(lines(response), *replies, "{row}");
            assert_eq!(response.after == After::Close, *close, "{row}");
            assert_eq!(*delay, Duration::from_millis(*ms), "{row}");
        }
        (Effect::Partial { bytes }, Want::Partial(b)) => {
            assert_eq!(String::from_utf8_lossy(bytes), *b, "{row}");
        }
        (Effect::Close { reason }, Want::Close(r)) => assert_eq!(reason, r, "{row}"),
        (Effect::Stall, Want::Stall) | (Effect::Restart, Want::Restart) => {}
        _ => panic!("{row}: got {got:?}, want {want:?}"),
    }
}

/// Proves, action by action through the core (no sockets): what each fault
/// does to the command it fires on (the effect the driver carries out), that
/// it executes the command or not (the subscription stored), and that it is
/// logged as a `Fault` event. `no` gets its default text for a code, the
/// given text after the code, or a bare text; `partial-reply` never sends a
/// whole reply (a large `bytes` stops one byte short).
#[test]
fn every_action_through_the_core() {
    let rows = [
        Row {
            plan: r#"action = "drop-before""#,
            want: Want::Close("fault drop-before"),
            executed: false,
            event: "drop-before",
        },
        Row {
            plan: r#"action = "drop-after""#,
            want: Want::Close("fault drop-after"),
            executed: true,
            event: "drop-after",
        },
        Row {
            plan: "action = \"partial-reply\"\nbytes = 4",
            want: Want::Partial("OK S"),
            executed: true,
            event: "partial-reply",
        },
        Row {
            plan: "action = \"partial-reply\"\nbytes = 100000",
            want: Want::Partial("OK Success\r"),
            executed: true,
            event: "partial-reply",
        },
        Row {
            plan: "action = \"delay\"\ndelay_ms = 300",
            want: Want::Send(&["OK Success"], false, 300),
            executed: true,
            event: "delay",
        },
        Row {
            plan: r#"action = "stall""#,
            want: Want::Stall,
            executed: false,
            event: "stall",
        },
        Row {
            plan: "action = \"no\"\ncode = \"IMAP_SYNC_CHECKSUM\"",
            want: Want::Send(&["NO IMAP_SYNC_CHECKSUM injected by backupd-sim"], false, 0),
            executed: false,
            event: "no",
        },
        Row {
            plan: "action = \"no\"\ncode = \"IMAP_SYNC_CHECKSUM\"\ntext = \"checksum mismatch\"",
            want: Want::Send(&["NO IMAP_SYNC_CHECKSUM checksum mismatch"], false, 0),
            executed: false,
            event: "no",
        },
        Row {
            plan: "action = \"no\"\ntext = \"IMAP_AGAIN try later\"",
            want: Want::Send(&["NO IMAP_AGAIN try later"], false, 0),
            executed: false,
            event: "no",
        },
        Row {
            plan: r#"action = "bad""#,
            want: Want::Send(&["BAD IMAP_PROTOCOL_ERROR injected"], false, 0),
            executed: false,
            event: "bad",
        },
        Row {
            plan: "action = \"bad\"\ntext = \"IMAP_PROTOCOL_ERROR nope\"",
            want: Want::Send(&["BAD IMAP_PROTOCOL_ERROR nope"], false, 0),
            executed: false,
            event: "bad",
        },
        Row {
            plan: "action = \"bye\"\ntext = \"going down\"",
            want: Want::Send(&["BYE going down"], true, 0),
            executed: false,
            event: "bye",
        },
        Row {
            plan: "action = \"refuse-connections\"\nfor_ms = 1500",
            want: Want::Send(&["OK Success"], false, 0),
            executed: true,
            event: "refuse-connections",
        },
        Row {
            plan: "action = \"restart\"\nfor_ms = 1000",
            want: Want::Restart,
            executed: false,
            event: "restart",
        },
        Row {
            plan: r#"action = "lie""#,
            want: Want::Send(&["OK Success"], false, 0),
            executed: false,
            event: "lie",
        },
    ];
    for row in &rows {
        let plan = format!(
            "[[fault]]\nname = \"f\"\nwhen = {{ verb = \"APPLY SUB\" }}\n{}\n",
            row.plan
        );
        let world = CoreWorld::new(&plan, SessionConfig::default());
        let mut s = world.session(1);
        let effect = world.command(&mut s, &sub("alice", "user.alice"));
        check_effect(row.plan, &effect, &row.want);
        let stored = if row.executed {
            vec!["user.alice"]
        } else {
            vec![]
        };
        assert_eq!(world.subs("alice"), stored, "{}", row.plan);
        assert_eq!(world.events_of(1), [fault("f", row.event)], "{}", row.plan);
    }
}

/// Proves: `refuse-connections` and `restart` open a refusal window of
/// `for_ms` from the command on (connections are refused until then, never
/// later); the other actions open none.
#[test]
fn refusal_windows_through_the_core() {
    for (action, ms) in [("refuse-connections", 1500), ("restart", 1000), ("no", 0)] {
        let plan = format!(
            "[[fault]]\nwhen = {{ verb = \"APPLY SUB\" }}\naction = \"{action}\"\nfor_ms = {ms}\n"
        );
        let plan = if ms == 0 {
            plan.replace("for_ms = 0\n", "")
        } else {
            plan
        };
        let world = CoreWorld::new(&plan, SessionConfig::default());
        let mut s = world.session(1);
        world.set_now(100);
        world.command(&mut s, &sub("alice", "user.alice"));
        let mut e = world.engine();
        assert_eq!(
            e.accept_connection(100 + ms.max(1) - 1),
            ms == 0,
            "{action}"
        );
        assert!(e.accept_connection(100 + ms), "{action}");
    }
}

/// Proves: `lie` answers `APPLY MAILBOX` and `APPLY SUB` of the user it
/// matches with OK and stores nothing, while another user's are stored; in
/// the sync_server personality it answers that personality's `OK success`.
#[test]
fn lie_stores_nothing_through_the_core() {
    for (config, ok) in [
        (SessionConfig::default(), &["OK Success"]),
        (
            SessionConfig {
                personality: Personality::SyncServer,
                ..SessionConfig::default()
            },
            &["OK success"],
        ),
    ] {
        let world = CoreWorld::new(
            "[[fault]]\nname = \"liar\"\nwhen = { verb = \"APPLY\", user = \"alice\" }\naction = \"lie\"\n",
            config,
        );
        let mut s = world.session(1);
        for cmd in [
            mailbox_cmd("u1", "user.alice"),
            sub("alice", "user.alice"),
            mailbox_cmd("u2", "user.bob"),
            sub("bob", "user.bob"),
        ] {
            check_effect(
                &cmd,
                &world.command(&mut s, &cmd),
                &Want::Send(ok, false, 0),
            );
        }
        let store = world.store();
        let mailboxes = |u: &str| -> Vec<String> {
            store
                .user(u)
                .map(|b| b.mailboxes.keys().cloned().collect())
                .unwrap_or_default()
        };
        assert_eq!(mailboxes("alice"), Vec::<String>::new());
        assert_eq!(mailboxes("bob"), ["user.bob"]);
        drop(store);
        assert_eq!(world.subs("alice"), Vec::<String>::new());
        assert_eq!(world.subs("bob"), ["user.bob"]);
        assert_eq!(
            world.events_of(1),
            [fault("liar", "lie"), fault("liar", "lie")]
        );
    }
}

/// Proves: `hide-missing` leaves `count` GUIDs out of `* MISSING` (3 unknown
/// GUIDs, count 1: the first 2 are reported), drops the line when every GUID
/// is hidden, and without the fault all 3 are reported.
#[test]
fn hide_missing_through_the_core() {
    let world = CoreWorld::new(
        r#"
        [[fault]]
        name = "hide-one"
        when = { verb = "APPLY RESERVE" }
        times = 1
        action = "hide-missing"
        count = 1
        [[fault]]
        name = "hide-all"
        when = { verb = "APPLY RESERVE" }
        times = 1
        action = "hide-missing"
        count = 3
        "#,
        SessionConfig::default(),
    );
    let g: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|b| sha1_hex(b.as_bytes()))
        .collect();
    let reserve = format!(
        "APPLY RESERVE %(PARTITION default MBOXNAME (user.alice) GUID ({}))",
        g.join(" ")
    );
    let mut s = world.session(1);
    let mut replies = || match world.command(&mut s, &reserve) {
        Effect::Send { response, .. } => response
            .replies
            .iter()
            .map(Reply::to_line)
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        replies(),
        [
            format!("* MISSING ({} {})", g[0], g[1]),
            "OK Success".into()
        ]
    );
    assert_eq!(replies(), ["OK Success"]);
    assert_eq!(
        replies(),
        [format!("* MISSING ({})", g.join(" ")), "OK Success".into()]
    );
    assert!(world.store().users()["alice"].guids.is_empty());
}

/// Proves: `corrupt` executes and acknowledges the command, then breaks the
/// named state (here the subscription it stored), and its event names what
/// it broke.
#[test]
fn corrupt_through_the_core() {
    let world = CoreWorld::new(
        "[[fault]]\nname = \"c\"\nwhen = { verb = \"APPLY SUB\" }\naction = \"corrupt\"\nwhat = \"subscription\"\n",
        SessionConfig::default(),
    );
    let mut s = world.session(1);
    let effect = world.command(&mut s, &sub("alice", "user.alice"));
    check_effect("corrupt", &effect, &Want::Send(&["OK Success"], false, 0));
    assert_eq!(world.subs("alice"), Vec::<String>::new());
    let events = world.events_of(1);
    assert!(
        matches!(&events[..], [EventKind::Fault { rule, action }]
            if rule == "c" && action.starts_with("corrupt subscription: ")),
        "{events:?}"
    );
}

// ---------------------------------------------------------------------------
// Lock windows through the core
// ---------------------------------------------------------------------------

/// Proves: a `reject` lock on a verb answers that verb `LOCKED` and stores
/// nothing, other verbs pass, and once the window is closed the verb works;
/// on a mailbox it answers every command naming that mailbox (APPLY SUB,
/// APPLY MAILBOX, GET MAILBOXES) and passes the user's other mailboxes. Each
/// refusal is a `LockHit` charged to the window.
#[test]
fn reject_locks_through_the_core() {
    let world = CoreWorld::new(
        r#"
        [[lock]]
        name = "subs"
        verb = "APPLY SUB"
        mode = "reject"
        [[lock]]
        name = "sent"
        mailbox = "user.alice.Sent"
        mode = "reject"
        "#,
        SessionConfig::default(),
    );
    let mut s = world.session(1);
    let locked = Want::Send(&[LOCKED], false, 0);
    let ok = Want::Send(&["OK Success"], false, 0);
    for (cmd, want) in [
        (sub("alice", "user.alice"), &locked),
        ("GET USER alice".to_owned(), &ok),
        (mailbox_cmd("u2", "user.alice.Sent"), &locked),
        (mailbox_cmd("u1", "user.alice"), &ok),
        ("GET MAILBOXES (user.alice.Sent)".to_owned(), &locked),
    ] {
        check_effect(&cmd, &world.command(&mut s, &cmd), want);
    }
    let hit = |lock: &str| EventKind::LockHit { lock: lock.into() };
    assert_eq!(world.events_of(1), [hit("subs"), hit("sent"), hit("sent")]);
    {
        let mut st = world.store();
        assert_eq!(world.engine().close_locks("subs", st.holds_mut()), 1);
    }
    check_effect(
        "after",
        &world.command(&mut s, &sub("alice", "user.alice")),
        &ok,
    );
    assert_eq!(world.subs("alice"), ["user.alice"]);
    let status = world.engine().status(0);
    assert_eq!(status.users["alice"].locked, 3);
}

/// Proves: a `hold` lock on a user behaves as another connection holding the
/// backup: the session already holding the user keeps working until RESTART
/// (then it is `LOCKED` too), another session gets `LOCKED` for that user
/// only, charged to the window by the session's typed refusal; a user held by
/// another session is charged to "another connection".
#[test]
fn hold_lock_through_the_core() {
    let world = CoreWorld::new(
        "[[lock]]\nname = \"alice\"\nuser = \"alice\"\nopen = \"manual\"\n",
        SessionConfig::default(),
    );
    let ok = Want::Send(&["OK Success"], false, 0);
    let locked = Want::Send(&[LOCKED], false, 0);
    let (mut a, mut b) = (world.session(1), world.session(2));
    check_effect("a first", &world.command(&mut a, "GET USER alice"), &ok);
    {
        let mut st = world.store();
        assert!(world.engine().open_lock("alice", 0, st.holds_mut()));
    }
    check_effect(
        "a holds",
        &world.command(&mut a, &sub("alice", "user.alice")),
        &ok,
    );
    check_effect("b", &world.command(&mut b, "GET USER alice"), &locked);
    check_effect("b bob", &world.command(&mut b, "GET USER bob"), &ok);
    check_effect(
        "a restart",
        &world.command(&mut a, "RESTART"),
        &Want::Send(&["OK Restarting"], false, 0),
    );
    check_effect("a again", &world.command(&mut a, "GET USER alice"), &locked);
    let hit = |lock: &str| EventKind::LockHit { lock: lock.into() };
    assert_eq!(world.events_of(2), [hit("alice")]);
    assert_eq!(world.events_of(1), [hit("alice")]);
    // Once the window closes, session 1 opens alice again: now session 2 is
    // refused by another connection.
    {
        let mut st = world.store();
        assert_eq!(world.engine().close_locks("alice", st.holds_mut()), 1);
    }
    check_effect(
        "a after",
        &world.command(&mut a, "GET USER alice"),
        &Want::Send(&["* LSUB (user.alice)", "OK Success"], false, 0),
    );
    check_effect("b other", &world.command(&mut b, "GET USER alice"), &locked);
    assert_eq!(
        world.events_of(2),
        [hit("alice"), hit("another connection")]
    );
}

/// Proves: `close = { attempts = 2 }` closes a window after two `LOCKED`
/// answers; `open = { mark = "m" }` keeps a window shut until the mark.
#[test]
fn lock_triggers_through_the_core() {
    let world = CoreWorld::new(
        r#"
        [[lock]]
        name = "twice"
        verb = "GET USER"
        mode = "reject"
        close = { attempts = 2 }
        [[lock]]
        name = "at-m"
        verb = "APPLY SUB"
        mode = "reject"
        open = { mark = "m" }
        "#,
        SessionConfig::default(),
    );
    let mut s = world.session(1);
    let locked = Want::Send(&[LOCKED], false, 0);
    let ok = Want::Send(&["OK Success"], false, 0);
    for want in [&locked, &locked, &ok, &ok] {
        check_effect("get", &world.command(&mut s, "GET USER alice"), want);
    }
    check_effect(
        "before m",
        &world.command(&mut s, &sub("alice", "user.alice")),
        &ok,
    );
    {
        let mut st = world.store();
        world.engine().mark("m", 0, st.holds_mut());
    }
    check_effect(
        "after m",
        &world.command(&mut s, &sub("alice", "user.alice.Sent")),
        &locked,
    );
    assert_eq!(world.subs("alice"), ["user.alice"]);
    let status = world.engine().status(0);
    assert!(!status.locks[0].active);
    assert_eq!(status.locks[0].hits, 2);
}

/// Proves: with the sync_server personality an open lock window does not
/// answer `LOCKED`: the command is blocked by it (and carried out once the
/// window is gone), and a scenario trigger holds a command before anything
/// else.
#[test]
fn blocks_and_holds_are_judgements() {
    let world = CoreWorld::new(
        "[[lock]]\nname = \"subs\"\nverb = \"APPLY SUB\"\nmode = \"reject\"\n",
        SessionConfig {
            personality: Personality::SyncServer,
            ..SessionConfig::default()
        },
    );
    let mut s = world.session(1);
    let (judgement, effect) = world.judge(&mut s, &sub("alice", "user.alice"));
    assert_eq!(
        judgement,
        Judgement::Block {
            lock: "subs".into(),
            verdict: Verdict::Pass
        }
    );
    assert_eq!(effect, None);

    let world = CoreWorld::new("", SessionConfig::default());
    let id = world.engine().add_hold(
        backupd_sim::fault::Match {
            verb: Some("APPLY SUB".into()),
            ..Default::default()
        },
        1,
    );
    let mut s = world.session(1);
    let (judgement, _) = world.judge(&mut s, &sub("alice", "user.alice"));
    assert_eq!(judgement, Judgement::Hold { id });
}

// ---------------------------------------------------------------------------
// What only TCP shows
// ---------------------------------------------------------------------------

/// Proves: `drop-before` closes the connection without executing the command
/// (the subscription is not stored) and without a reply; the log shows the
/// command, the fault and `Closed` with reason `fault drop-before`; the next
/// connection works.
#[test]
fn drop_before_closes_without_executing() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "cut"
        when = { verb = "APPLY SUB" }
        nth = 1
        action = "drop-before"
        "#,
    );
    let replies = run_script(
        sim.addr(),
        &[
            &sub("alice", "user.alice"),
            &sub("alice", "user.alice.Sent"),
        ],
    );
    assert_eq!(replies, ["<closed>", "OK Success"]);
    assert_eq!(sim.subs("alice"), ["user.alice.Sent"]);
    let s1 = sim.session_events(1);
    assert_eq!(
        s1[s1.len() - 3..],
        [
            EventKind::Command {
                verb: "APPLY SUB".into(),
                users: vec!["alice".into()],
                mailboxes: vec!["user.alice".into()],
                more: 0,
                bytes: sub("alice", "user.alice").len() + 2,
                text: sub("alice", "user.alice"),
            },
            fault("cut", "drop-before"),
            closed("fault drop-before"),
        ]
    );
    assert!(
        !s1.iter()
            .any(|k| matches!(k, EventKind::Reply { line, .. } if line == "OK Success")),
        "the dropped command was answered: {s1:?}"
    );
}

/// Proves: `partial-reply` sends exactly the first `bytes` bytes of the reply
/// and then EOF, after executing the command; and that it never sends the
/// whole reply (a large `bytes` stops one byte short, before the final LF).
#[test]
fn partial_reply_sends_a_prefix_then_eof() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "half"
        when = { verb = "APPLY SUB" }
        action = "partial-reply"
        bytes = 4
        [[fault]]
        name = "all-but-one"
        when = { verb = "GET USER" }
        action = "partial-reply"
        bytes = 100000
        "#,
    );
    let mut c = Client::login(sim.addr());
    c.send(&sub("alice", "user.alice"));
    assert_eq!(c.rest(), b"OK S");
    assert_eq!(sim.subs("alice"), ["user.alice"], "executed");
    assert_eq!(sim.closed_reason(1), "fault partial-reply after 4 bytes");

    let mut c = Client::login(sim.addr());
    c.send("GET USER alice");
    assert_eq!(
        String::from_utf8_lossy(&c.rest()),
        "* LSUB (user.alice)\r\nOK Success\r"
    );
    assert_eq!(sim.closed_reason(2), "fault partial-reply after 32 bytes");
}

/// Proves: `delay` answers normally, but no sooner than `delay_ms` after the
/// command was sent (lower bound only), and the command was executed.
#[test]
fn delay_holds_the_reply_back() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "slow"
        when = { verb = "APPLY SUB" }
        action = "delay"
        delay_ms = 300
        "#,
    );
    let mut c = Client::login(sim.addr());
    let t0 = Instant::now();
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(sim.subs("alice"), ["user.alice"]);
    assert!(sim.session_events(1).contains(&fault("slow", "delay")));
    // the connection goes on
    assert_eq!(c.cmd("NOOP"), ["OK Noop completed"]);
}

/// Proves: `stall` never answers (nothing within 500 ms, even to a further
/// command), does not execute the command, and when the client gives up the
/// server logs `Closed` with a reason naming the stall.
#[test]
fn stall_never_answers() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "hang"
        when = { verb = "APPLY SUB" }
        action = "stall"
        "#,
    );
    let mut c = Client::login(sim.addr());
    c.send(&sub("alice", "user.alice"));
    c.send("NOOP");
    c.w.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let t0 = Instant::now();
    let mut buf = [0u8; 64];
    match c.r.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("expected silence, got {other:?} {:?}", &buf[..8]),
    }
    assert!(t0.elapsed() >= Duration::from_millis(450));
    assert_eq!(sim.subs("alice"), Vec::<String>::new(), "not executed");
    drop(c);
    assert_eq!(sim.closed_reason(1), "fault stall, then end of stream");
    let s1 = sim.session_events(1);
    assert_eq!(
        s1.iter()
            .filter(|k| matches!(k, EventKind::Reply { .. }))
            .count(),
        1,
        "only AUTHENTICATE was answered: {s1:?}"
    );
    assert!(s1.contains(&fault("hang", "stall")));
}

/// Proves: `bye` answers `BYE <text>` without executing and closes the
/// connection right after it.
#[test]
fn bye_answers_then_closes() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "bye"
        when = { verb = "APPLY SUB" }
        action = "bye"
        text = "going down"
        "#,
    );
    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["BYE going down"]);
    c.expect_eof();
    assert_eq!(sim.subs("alice"), Vec::<String>::new());
    assert_eq!(sim.closed_reason(1), "closed by the server after its reply");
    let s1 = sim.session_events(1);
    assert_eq!(
        s1[s1.len() - 3..],
        [
            fault("bye", "bye"),
            EventKind::Reply {
                line: "BYE going down".into(),
                data_lines: 0
            },
            closed("closed by the server after its reply"),
        ]
    );
}

/// Proves: `refuse-connections` lets its own command go on normally, then new
/// connections are accepted and closed before any greeting (logged as
/// `Refused`) while the open connection keeps working; after `for_ms` new
/// connections are served again, never earlier.
#[test]
fn refuse_connections_for_a_while() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "refuse"
        when = { verb = "GET USER" }
        nth = 1
        action = "refuse-connections"
        for_ms = 1500
        "#,
    );
    let mut c = Client::login(sim.addr());
    let fired = Instant::now();
    assert_eq!(c.cmd("GET USER alice"), ["OK Success"]);
    assert!(Client::try_connect(sim.addr()).is_none(), "not refused");
    assert!(sim.refused_count() >= 1);
    // the open connection is not affected
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    assert!(Client::try_connect(sim.addr()).is_none(), "not refused");

    let mut c2 = connect_when_accepted(sim.addr());
    let waited = fired.elapsed();
    assert!(waited >= Duration::from_millis(1499), "{waited:?}");
    assert_eq!(c2.cmd(LOGIN), ["OK Success (no protection)"]);
    assert!(sim.refused_count() >= 2);
    assert!(sim
        .session_events(1)
        .contains(&fault("refuse", "refuse-connections")));
    // refused connections never became sessions
    let sessions: std::collections::BTreeSet<u64> = sim
        .events()
        .iter()
        .filter(|(_, k)| matches!(k, EventKind::Connected { .. }))
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(sessions.into_iter().collect::<Vec<_>>(), [1, 2]);
}

/// Proves: `restart` closes every open connection (the one that sent the
/// command, unanswered and not executed, and another idle one), keeps the
/// stored state (a subscription stored before is served afterwards), and
/// refuses new connections for `for_ms`, then serves them.
#[test]
fn restart_drops_every_connection_and_keeps_the_store() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "reboot"
        when = { verb = "APPLY SUB", user = "bob" }
        action = "restart"
        for_ms = 1000
        "#,
    );
    let mut a = Client::login(sim.addr());
    assert_eq!(a.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    assert_eq!(a.cmd("RESTART"), ["OK Restarting"]);
    let mut idle = Client::login(sim.addr());
    let fired = Instant::now();
    a.send(&sub("bob", "user.bob"));
    assert_eq!(a.reply(), None, "answered before the restart");
    idle.expect_eof();
    assert_eq!(sim.closed_reason(1), "fault restart");
    assert_eq!(sim.closed_reason(2), "server restart (fault)");
    assert_eq!(sim.subs("bob"), Vec::<String>::new(), "not executed");

    assert!(Client::try_connect(sim.addr()).is_none(), "not refused");
    assert!(sim.refused_count() >= 1);
    let mut c = connect_when_accepted(sim.addr());
    assert!(fired.elapsed() >= Duration::from_millis(999));
    assert_eq!(c.cmd(LOGIN), ["OK Success (no protection)"]);
    assert_eq!(
        c.cmd("GET USER alice"),
        ["* LSUB (user.alice)", "OK Success"]
    );
}

/// Proves: a `reject` lock on a verb answers that verb `LOCKED` and stores
/// nothing, other verbs for the same user pass, and after `unlock` the verb
/// works again.
#[test]
fn reject_lock_on_a_verb() {
    let sim = Sim::start("");
    let status = sim.ctl(Request::Lock {
        lock: LockSpec {
            verb: Some("APPLY SUB".into()),
            ..lock_spec()
        },
    });
    assert_eq!(status.locks.len(), 1);
    assert_eq!(status.locks[0].lock.name, "ctl-APPLY SUB");
    assert_eq!(status.locks[0].lock.mode, LockMode::Reject);
    assert!(status.locks[0].active);

    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&sub("alice", "user.alice")), [LOCKED]);
    assert_eq!(c.cmd("GET USER alice"), ["OK Success"]);
    assert_eq!(c.cmd(&sub("alice", "user.alice")), [LOCKED]);
    assert_eq!(sim.subs("alice"), Vec::<String>::new());
    let status = sim.ctl(Request::Status);
    assert_eq!(status.locks[0].hits, 2);
    assert_eq!(status.users["alice"].locked, 2);
    assert!(sim.session_events(1).contains(&EventKind::LockHit {
        lock: "ctl-APPLY SUB".into()
    }));

    sim.ctl(Request::Unlock {
        name: "ctl-APPLY SUB".into(),
    });
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    assert_eq!(sim.subs("alice"), ["user.alice"]);
}

/// Proves: a `hold` lock on a user behaves as another connection holding the
/// backup: the session already holding the user keeps working until RESTART
/// (then it is `LOCKED` too), a second connection gets `LOCKED` for that user
/// only, and `unlock` by user name releases it.
#[test]
fn hold_lock_on_a_user() {
    let sim = Sim::start("");
    let mut a = Client::login(sim.addr());
    assert_eq!(a.cmd("GET USER alice"), ["OK Success"]);
    let status = sim.ctl(Request::Lock {
        lock: LockSpec {
            user: Some("alice".into()),
            ..lock_spec()
        },
    });
    assert_eq!(status.locks[0].lock.name, "ctl-alice");
    assert_eq!(status.locks[0].lock.mode, LockMode::Hold);

    assert_eq!(a.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    let mut b = Client::login(sim.addr());
    assert_eq!(b.cmd("GET USER alice"), [LOCKED]);
    assert_eq!(b.cmd(&sub("alice", "user.alice.Sent")), [LOCKED]);
    assert_eq!(b.cmd("GET USER bob"), ["OK Success"]);
    assert!(sim.session_events(2).contains(&EventKind::LockHit {
        lock: "ctl-alice".into()
    }));

    assert_eq!(a.cmd("RESTART"), ["OK Restarting"]);
    assert_eq!(a.cmd("GET USER alice"), [LOCKED]);
    assert_eq!(sim.ctl(Request::Status).locks[0].hits, 3);

    sim.ctl(Request::Unlock {
        name: "alice".into(),
    });
    assert_eq!(
        b.cmd("GET USER alice"),
        ["* LSUB (user.alice)", "OK Success"]
    );
    assert_eq!(sim.subs("alice"), ["user.alice"]);
}

/// Proves: the fake's `transcript()` of a short session shows the `C:`/`S:`
/// lines with the `! locked by …` and `! fault …` annotations, deterministic
/// (fixed seed, no times or ports in it).
#[test]
fn transcript_with_a_lock_and_two_faults() {
    let sim = Sim::start(
        r#"
        [[lock]]
        name = "second-sub"
        verb = "APPLY SUB"
        open = { on = { verb = "APPLY SUB", nth = 2 } }
        close = { attempts = 1 }
        [[fault]]
        name = "checksum"
        when = { verb = "GET META" }
        action = "no"
        code = "IMAP_SYNC_CHECKSUM"
        [[fault]]
        name = "cut"
        when = { verb = "APPLY SUB", mailbox = "user.alice.Trash" }
        action = "drop-after"
        "#,
    );
    let replies = run_script(
        sim.addr(),
        &[
            "GET USER alice",
            &sub("alice", "user.alice"),
            &sub("alice", "user.alice.Sent"),
            "GET META alice",
            &sub("alice", "user.alice.Trash"),
            "GET USER alice",
            "EXIT",
        ],
    );
    assert_eq!(
        replies,
        [
            "OK Success",
            "OK Success",
            LOCKED,
            "NO IMAP_SYNC_CHECKSUM injected by backupd-sim",
            "<closed>",
            "OK Success",
            "OK Finished",
        ]
    );
    assert_eq!(sim.closed_reason(2), "closed by the server after its reply");
    let transcript = sim.transcript();
    assert!(!transcript.contains("127.0.0.1"), "{transcript}");
    insta::assert_snapshot!(transcript);
}

/// Proves: over real TCP the control endpoint applies a lock request (the
/// lock then answers `LOCKED` on the csync port) and reports it in its
/// status; a line that is not a valid request gets
/// `{"ok":false,"error":"bad request: …"}` and the connection goes on; a
/// refused request (unlocking nothing) gets its error; a line longer than
/// 64 KiB is refused and the connection closed.
#[test]
fn control_endpoint_over_tcp() {
    let sim = Sim::start("");
    let listener = sim
        .rt
        .block_on(control::bind("127.0.0.1:0".parse().expect("addr"), false))
        .expect("bind");
    let ctl_addr = listener.local_addr().expect("addr");
    let server = sim
        .rt
        .spawn(control::serve_control(listener, Arc::clone(sim.shared())));
    let ask = |req: Request| {
        sim.rt
            .block_on(async { tokio::time::timeout(WAIT, control::request(ctl_addr, &req)).await })
            .expect("answer in time")
            .expect("answer")
    };

    let answer = ask(Request::Lock {
        lock: LockSpec {
            verb: Some("APPLY SUB".into()),
            ..lock_spec()
        },
    });
    assert!(answer.ok, "{answer:?}");
    assert_eq!(answer.error, None);
    let status = answer.status.expect("status");
    assert_eq!(status["locks"][0]["name"], "ctl-APPLY SUB");
    assert_eq!(status["locks"][0]["mode"], "reject");
    assert_eq!(status["locks"][0]["active"], true);
    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&sub("alice", "user.alice")), [LOCKED]);
    let answer = ask(Request::Status);
    assert_eq!(answer.status.expect("status")["locks"][0]["hits"], 1);
    assert!(sim.events().iter().any(|(s, k)| *s == 0
        && matches!(k, EventKind::Control { request } if request.contains("\"cmd\":\"lock\""))));

    // raw lines
    let s = TcpStream::connect_timeout(&ctl_addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut r = BufReader::new(s);
    let mut line_answer = |line: &[u8]| -> serde_json::Value {
        w.write_all(line).expect("write");
        let mut out = String::new();
        r.read_line(&mut out).expect("answer");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"))
    };
    for bad in [
        &b"not json\n"[..],
        b"{\"cmd\":\"explode\"}\n",
        b"{\"cmd\":\"lock\"}\n",
    ] {
        let a = line_answer(bad);
        assert_eq!(a["ok"], false, "{a}");
        let err = a["error"].as_str().expect("error text");
        assert!(err.starts_with("bad request: "), "{err}");
    }
    let a = line_answer(b"{\"cmd\":\"unlock\",\"name\":\"nobody\"}\n");
    assert_eq!(
        a,
        serde_json::json!({"ok": false, "error": "no open lock named or targeting `nobody`"})
    );
    let a = line_answer(b"{\"cmd\":\"status\"}\n");
    assert_eq!(a["ok"], true);

    // an over-long line: exactly 64 KiB + 1 bytes, so nothing is left unread
    let s = TcpStream::connect_timeout(&ctl_addr, WAIT).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    w.write_all(&vec![b'x'; 64 * 1024 + 1]).expect("write");
    let mut r = BufReader::new(s);
    let mut out = String::new();
    r.read_line(&mut out).expect("answer");
    let a: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        a,
        serde_json::json!({"ok": false, "error": "request longer than 65536 bytes"})
    );
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "{rest:?}"),
        Err(e) => assert!(is_close(&e), "{e}"),
    }
    server.abort();
}

/// Proves: `bind` refuses a non-loopback address unless `allow_remote`, with
/// `PermissionDenied` and a message naming the flag; loopback is accepted.
#[test]
fn control_bind_refuses_non_loopback() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for addr in ["0.0.0.0:0", "192.0.2.1:0"] {
        let e = rt
            .block_on(control::bind(addr.parse().expect("addr"), false))
            .expect_err("non-loopback accepted");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{addr}");
        assert!(e.to_string().contains("non-loopback"), "{e}");
        assert!(e.to_string().contains("--allow-remote-control"), "{e}");
    }
    rt.block_on(control::bind("0.0.0.0:0".parse().expect("addr"), true))
        .expect("allowed with allow_remote");
    rt.block_on(control::bind("127.0.0.1:0".parse().expect("addr"), false))
        .expect("loopback");
}
