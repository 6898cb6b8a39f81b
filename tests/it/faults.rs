//! Every fault action and lock mode against an in-process [`FakeBackupd`] and a
//! scripted csync client over TCP: no Cyrus needed.
//!
//! Each test starts its own fake on `127.0.0.1:0` inside its own tokio runtime
//! and talks to it with blocking sockets. Every read has a deadline
//! ([`WAIT`]); waits for something the server does after the client has seen
//! its side (a `Closed` event, a refusal window ending) poll with a bounded
//! deadline. Timings are only checked as lower bounds.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backupd_sim::cyrus::process::wait_until;
use backupd_sim::events::EventKind;
use backupd_sim::fault::{LockMode, LockSpec, TriggerSpec, TriggerTable};
use backupd_sim::server::control::{self, Request};
use backupd_sim::store::sha1_hex;
use pretty_assertions::assert_eq;

use crate::util::{run_script, Sim, LOGIN, WAIT};

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
// One test per action
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

/// Proves: `drop-after` executes the command (the subscription is stored) and
/// closes without a reply, logging `Closed` with `fault drop-after`.
#[test]
fn drop_after_executes_then_closes() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "cut"
        when = { verb = "APPLY SUB", user = "alice" }
        action = "drop-after"
        "#,
    );
    assert_eq!(
        run_script(sim.addr(), &[&sub("alice", "user.alice")]),
        ["<closed>"]
    );
    assert_eq!(sim.subs("alice"), ["user.alice"]);
    let s1 = sim.session_events(1);
    assert_eq!(
        s1[s1.len() - 2..],
        [fault("cut", "drop-after"), closed("fault drop-after")]
    );
    // the user was released when the connection ended
    assert_eq!(sim.shared().store().holder("alice"), None);
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

/// Proves: `no` answers `NO <code> <text>` without executing, with the
/// default text for a code, a given text after the code, or a bare text; the
/// connection goes on.
#[test]
fn no_answers_without_executing() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "sum"
        when = { mailbox = "user.alice.A" }
        action = "no"
        code = "IMAP_SYNC_CHECKSUM"
        [[fault]]
        name = "sum-text"
        when = { mailbox = "user.alice.B" }
        action = "no"
        code = "IMAP_SYNC_CHECKSUM"
        text = "checksum mismatch"
        [[fault]]
        name = "text"
        when = { mailbox = "user.alice.C" }
        action = "no"
        text = "IMAP_AGAIN try later"
        "#,
    );
    let replies = run_script(
        sim.addr(),
        &[
            &sub("alice", "user.alice.A"),
            &sub("alice", "user.alice.B"),
            &sub("alice", "user.alice.C"),
            &sub("alice", "user.alice.D"),
        ],
    );
    assert_eq!(
        replies,
        [
            "NO IMAP_SYNC_CHECKSUM injected by backupd-sim",
            "NO IMAP_SYNC_CHECKSUM checksum mismatch",
            "NO IMAP_AGAIN try later",
            "OK Success",
        ]
    );
    assert_eq!(sim.subs("alice"), ["user.alice.D"]);
    let faults: Vec<EventKind> = sim
        .session_events(1)
        .into_iter()
        .filter(|k| matches!(k, EventKind::Fault { .. }))
        .collect();
    assert_eq!(
        faults,
        [
            fault("sum", "no"),
            fault("sum-text", "no"),
            fault("text", "no")
        ]
    );
}

/// Proves: `bad` answers `BAD <text>` (default or given) without executing;
/// the connection goes on.
#[test]
fn bad_answers_without_executing() {
    let sim = Sim::start(
        r#"
        [[fault]]
        when = { mailbox = "user.alice.A" }
        action = "bad"
        [[fault]]
        when = { mailbox = "user.alice.B" }
        action = "bad"
        text = "IMAP_PROTOCOL_ERROR nope"
        "#,
    );
    let replies = run_script(
        sim.addr(),
        &[
            &sub("alice", "user.alice.A"),
            &sub("alice", "user.alice.B"),
            &sub("alice", "user.alice.C"),
        ],
    );
    assert_eq!(
        replies,
        [
            "BAD IMAP_PROTOCOL_ERROR injected",
            "BAD IMAP_PROTOCOL_ERROR nope",
            "OK Success"
        ]
    );
    assert_eq!(sim.subs("alice"), ["user.alice.C"]);
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

/// Proves: `lie` answers `APPLY MAILBOX` and `APPLY SUB` with `OK Success`
/// and stores nothing (the mailbox and subscription are absent from the store
/// and from `GET USER`), while a user the rule does not match is stored.
#[test]
fn lie_answers_ok_and_stores_nothing() {
    let sim = Sim::start(
        r#"
        [[fault]]
        name = "liar"
        when = { verb = "APPLY", user = "alice" }
        action = "lie"
        "#,
    );
    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&mailbox_cmd("u1", "user.alice")), ["OK Success"]);
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    assert_eq!(c.cmd(&mailbox_cmd("u2", "user.bob")), ["OK Success"]);
    assert_eq!(c.cmd(&sub("bob", "user.bob")), ["OK Success"]);
    assert_eq!(sim.mailboxes("alice"), Vec::<String>::new());
    assert_eq!(sim.subs("alice"), Vec::<String>::new());
    assert_eq!(sim.mailboxes("bob"), ["user.bob"]);
    assert_eq!(sim.subs("bob"), ["user.bob"]);
    assert_eq!(c.cmd("GET USER alice"), ["OK Success"]);
    let lies = sim
        .session_events(1)
        .iter()
        .filter(|k| **k == fault("liar", "lie"))
        .count();
    assert_eq!(lies, 2);
}

/// Proves: `hide-missing` leaves `count` GUIDs out of `* MISSING` (3 unknown
/// GUIDs, count 1: only the first 2 are reported), drops the line when every
/// GUID is hidden, and the log's `data_lines` agrees; without the fault all 3
/// are reported.
#[test]
fn hide_missing_leaves_guids_out() {
    let sim = Sim::start(
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
    );
    let g: Vec<String> = ["one", "two", "three"]
        .iter()
        .map(|b| sha1_hex(b.as_bytes()))
        .collect();
    let reserve = format!(
        "APPLY RESERVE %(PARTITION default MBOXNAME (user.alice) GUID ({}))",
        g.join(" ")
    );
    let mut c = Client::login(sim.addr());
    assert_eq!(
        c.cmd(&reserve),
        [
            format!("* MISSING ({} {})", g[0], g[1]),
            "OK Success".into()
        ]
    );
    assert_eq!(c.cmd(&reserve), ["OK Success"]);
    assert_eq!(
        c.cmd(&reserve),
        [format!("* MISSING ({})", g.join(" ")), "OK Success".into()]
    );
    let reserve_replies: Vec<usize> = sim
        .session_events(1)
        .iter()
        .filter_map(|k| match k {
            EventKind::Reply { data_lines, .. } => Some(*data_lines),
            _ => None,
        })
        .skip(1) // AUTHENTICATE
        .collect();
    assert_eq!(reserve_replies, [1, 0, 1]);
    assert!(sim.shared().store().users()["alice"].guids.is_empty());
}

// ---------------------------------------------------------------------------
// Lock modes through the control API
// ---------------------------------------------------------------------------

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

/// Proves: a `reject` lock on a mailbox answers every command naming that
/// mailbox `LOCKED` (APPLY SUB, APPLY MAILBOX, GET MAILBOXES) while the same
/// commands on the user's other mailboxes pass.
#[test]
fn reject_lock_on_a_mailbox() {
    let sim = Sim::start("");
    sim.ctl(Request::Lock {
        lock: LockSpec {
            mailbox: Some("user.alice.Sent".into()),
            ..lock_spec()
        },
    });
    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&sub("alice", "user.alice.Sent")), [LOCKED]);
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    assert_eq!(c.cmd(&mailbox_cmd("u2", "user.alice.Sent")), [LOCKED]);
    assert_eq!(c.cmd(&mailbox_cmd("u1", "user.alice")), ["OK Success"]);
    assert_eq!(c.cmd("GET MAILBOXES (user.alice.Sent)"), [LOCKED]);
    assert_eq!(sim.subs("alice"), ["user.alice"]);
    assert_eq!(sim.mailboxes("alice"), ["user.alice"]);
    let hits = sim
        .session_events(1)
        .iter()
        .filter(|k| {
            **k == EventKind::LockHit {
                lock: "ctl-user.alice.Sent".into(),
            }
        })
        .count();
    assert_eq!(hits, 3);
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

/// Proves: `close = { attempts = 2 }` closes the window after two `LOCKED`
/// answers, and a window opened at start does not reopen by itself.
#[test]
fn lock_closes_after_attempts() {
    let sim = Sim::start("");
    sim.ctl(Request::Lock {
        lock: LockSpec {
            name: Some("twice".into()),
            verb: Some("GET USER".into()),
            close: Some(TriggerSpec::Table(TriggerTable {
                attempts: Some(2),
                ..TriggerTable::default()
            })),
            ..lock_spec()
        },
    });
    let mut c = Client::login(sim.addr());
    let replies: Vec<Vec<String>> = (0..4).map(|_| c.cmd("GET USER alice")).collect();
    assert_eq!(
        replies,
        [
            vec![LOCKED],
            vec![LOCKED],
            vec!["OK Success"],
            vec!["OK Success"]
        ]
    );
    let status = sim.ctl(Request::Status);
    assert!(!status.locks[0].active);
    assert_eq!(status.locks[0].hits, 2);
}

/// Proves: `open = { mark = "m" }` keeps the window shut until the mark is
/// reached with `Request::Mark`, then locks; the mark is logged and listed.
#[test]
fn lock_opens_at_a_mark() {
    let sim = Sim::start("");
    let status = sim.ctl(Request::Lock {
        lock: LockSpec {
            name: Some("at-m".into()),
            verb: Some("APPLY SUB".into()),
            open: Some(TriggerSpec::Table(TriggerTable {
                mark: Some("m".into()),
                ..TriggerTable::default()
            })),
            ..lock_spec()
        },
    });
    assert!(!status.locks[0].active);
    let mut c = Client::login(sim.addr());
    assert_eq!(c.cmd(&sub("alice", "user.alice")), ["OK Success"]);
    let status = sim.ctl(Request::Mark { name: "m".into() });
    assert!(status.locks[0].active);
    assert_eq!(status.marks, ["m"]);
    assert_eq!(c.cmd(&sub("alice", "user.alice.Sent")), [LOCKED]);
    assert_eq!(sim.subs("alice"), ["user.alice"]);
    assert!(sim
        .events()
        .contains(&(0, EventKind::Mark { name: "m".into() })));
}

// ---------------------------------------------------------------------------
// The transcript
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// The control endpoint over TCP
// ---------------------------------------------------------------------------

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
