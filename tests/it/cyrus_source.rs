//! Integration tests against the real Cyrus installation (`$CYRUS_PREFIX`, `$CYRUS_BIN` or
//! `/usr/lib/cyrus/bin`). Each test owns a temp dir and its own instance.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use backupd_sim::cyrus::process::{free_port, pid_alive};
use backupd_sim::cyrus::{
    Channel, CyrusBins, CyrusError, ImapClient, SourceInstance, SourceOptions, SyncClient,
};
use backupd_sim::mailstate::{MailState, MailboxState, MessageState, UserState};
use pretty_assertions::assert_eq;
use sha1::{Digest, Sha1};
use tempfile::TempDir;

fn bins() -> Option<CyrusBins> {
    crate::util::cyrus_bins()
}

/// A fresh instance with a `backup` channel pointing at a port nobody listens on.
fn start() -> Option<(TempDir, SourceInstance)> {
    let dir = TempDir::new().expect("tempdir");
    let mut opts = SourceOptions::new(bins()?, dir.path().join("src"));
    opts.channels = vec![Channel::new("backup", free_port().expect("port"))];
    opts.start_timeout = Duration::from_secs(30);
    let inst = SourceInstance::start(&opts).expect("start source instance");
    Some((dir, inst))
}

fn message(tag: &str, i: u32) -> Vec<u8> {
    format!(
        "From: Sim Sender <sender@sim.test>\r\nTo: someone@sim.test\r\nSubject: {tag} {i}\r\n\
         Date: Thu, 01 Jan 2026 00:00:{:02} +0000\r\nMessage-ID: <{tag}-{i}@sim.test>\r\n\r\n\
         Body of {tag} message {i}.\r\n{}",
        i % 60,
        "x".repeat(i as usize * 7)
    )
    .into_bytes()
}

/// What the test expects, built alongside the changes it makes.
#[derive(Default)]
struct Model {
    /// (user, internal mailbox) -> uid -> message
    boxes: BTreeMap<(String, String), BTreeMap<u32, MessageState>>,
    last_uid: BTreeMap<(String, String), u32>,
}

impl Model {
    fn append(
        &mut self,
        imap: &mut ImapClient,
        user: &str,
        mailbox: &str,
        flags: &[&str],
        date: i64,
        body: &[u8],
    ) {
        let uid = imap
            .append(mailbox, flags, Some(date), body)
            .expect("append");
        let key = (
            user.to_string(),
            backupd_sim::cyrus::to_internal_name(user, mailbox),
        );
        let last = self.last_uid.entry(key.clone()).or_insert(0);
        *last += 1;
        assert_eq!(uid, Some(*last), "APPENDUID");
        self.boxes.entry(key).or_default().insert(
            *last,
            MessageState {
                guid: hex::encode(Sha1::digest(body)),
                flags: MessageState::normalize_flags(flags.iter().map(|f| f.to_string())),
                internaldate: date,
                size: body.len() as u64,
                ..MessageState::default()
            },
        );
    }
    fn mailbox(&mut self, user: &str, mailbox: &str) {
        let key = (
            user.to_string(),
            backupd_sim::cyrus::to_internal_name(user, mailbox),
        );
        self.boxes.entry(key.clone()).or_default();
        self.last_uid.entry(key).or_insert(0);
    }
    fn msg(&mut self, user: &str, mbox: &str, uid: u32) -> &mut MessageState {
        self.boxes
            .get_mut(&(user.to_string(), mbox.to_string()))
            .and_then(|b| b.get_mut(&uid))
            .expect("model message")
    }
    fn set_flags(&mut self, user: &str, mbox: &str, uid: u32, flags: &[&str]) {
        self.msg(user, mbox, uid).flags =
            MessageState::normalize_flags(flags.iter().map(|f| f.to_string()));
    }
}

const BASE_DATE: i64 = 1_767_225_600; // 2026-01-01 00:00:00 UTC

#[test]
fn fill_and_read_state() {
    let Some((_dir, inst)) = start() else { return };
    let mut model = Model::default();
    for u in ["alice", "bob"] {
        inst.create_user(u).expect("create user");
        model.mailbox(u, "INBOX");
    }

    let mut a = inst.login_as("alice").expect("login alice");
    for f in [
        "INBOX.Sent",
        "INBOX.Work",
        "INBOX.Work.Deep",
        "INBOX.Old",
        "INBOX.Trash",
    ] {
        a.create(f).expect("create folder");
        model.mailbox("alice", f);
    }
    let mut date = BASE_DATE;
    let mut next_date = || {
        date += 3599;
        date
    };
    for i in 1..=8 {
        let flags: &[&str] = match i {
            2 => &["\\Flagged", "$Label1"],
            3 | 6 => &["\\Seen"],
            _ => &[],
        };
        model.append(
            &mut a,
            "alice",
            "INBOX",
            flags,
            next_date(),
            &message("inbox", i),
        );
    }
    for i in 1..=4 {
        model.append(
            &mut a,
            "alice",
            "INBOX.Sent",
            &["\\Seen"],
            next_date(),
            &message("sent", i),
        );
    }
    for i in 1..=3 {
        model.append(
            &mut a,
            "alice",
            "INBOX.Work.Deep",
            &[],
            next_date(),
            &message("deep", i),
        );
    }
    for i in 1..=2 {
        model.append(
            &mut a,
            "alice",
            "INBOX.Old",
            &["\\Answered"],
            next_date(),
            &message("old", i),
        );
    }
    model.append(
        &mut a,
        "alice",
        "INBOX.Trash",
        &[],
        next_date(),
        &message("trash", 1),
    );

    // flag changes and expunges in INBOX
    let info = a.select("INBOX").expect("select");
    assert_eq!((info.exists, info.uidnext, info.read_only), (8, 9, false));
    a.uid_store("1:2", "+FLAGS", &["\\Seen"]).expect("store");
    model.set_flags("alice", "user.alice", 1, &["\\Seen"]);
    model.set_flags(
        "alice",
        "user.alice",
        2,
        &["\\Flagged", "$Label1", "\\Seen"],
    );
    a.uid_store("3", "-FLAGS", &["\\Seen"]).expect("store");
    model.set_flags("alice", "user.alice", 3, &[]);
    a.uid_store("4", "+FLAGS", &["\\Deleted"]).expect("store");
    a.expunge().expect("expunge");
    a.uid_store("5,7", "+FLAGS", &["\\Deleted"]).expect("store");
    a.uid_expunge("5").expect("uid expunge"); // 7 stays, flagged \Deleted
    a.uid_store("6", "+FLAGS", &["\\Answered", "$Label2"])
        .expect("store");
    model.set_flags(
        "alice",
        "user.alice",
        6,
        &["\\Seen", "\\Answered", "$Label2"],
    );
    model.set_flags("alice", "user.alice", 7, &["\\Deleted"]);
    for uid in [4, 5] {
        model
            .boxes
            .get_mut(&("alice".into(), "user.alice".into()))
            .map(|b| b.remove(&uid));
    }

    // rename (keeps the uniqueid), delete, subscriptions
    let old_id = a.examine("INBOX.Old").expect("examine").mailboxid;
    assert!(
        old_id.as_deref().is_some_and(|id| !id.is_empty()),
        "MAILBOXID on EXAMINE"
    );
    a.rename("INBOX.Old", "INBOX.Archive").expect("rename");
    let key = |m: &str| ("alice".to_string(), m.to_string());
    let moved = model.boxes.remove(&key("user.alice.Old")).expect("old");
    model.boxes.insert(key("user.alice.Archive"), moved);
    let moved = model.last_uid.remove(&key("user.alice.Old")).expect("old");
    model.last_uid.insert(key("user.alice.Archive"), moved);
    a.delete("INBOX.Trash").expect("delete");
    model.boxes.remove(&key("user.alice.Trash"));
    model.last_uid.remove(&key("user.alice.Trash"));
    for f in [
        "INBOX",
        "INBOX.Sent",
        "INBOX.Work",
        "INBOX.Work.Deep",
        "INBOX.Archive",
    ] {
        a.subscribe(f).expect("subscribe");
    }
    a.unsubscribe("INBOX.Work.Deep").expect("unsubscribe");
    // failures carry the command and server text
    let err = a.create("INBOX.Sent").expect_err("duplicate create");
    let text = err.to_string();
    assert!(
        text.contains("CREATE \"INBOX.Sent\"") && text.contains("NO"),
        "{text}"
    );
    a.logout().expect("logout");

    let mut b = inst.login_as("bob").expect("login bob");
    for i in 1..=3 {
        model.append(&mut b, "bob", "INBOX", &[], next_date(), &message("bob", i));
    }
    b.subscribe("INBOX").expect("subscribe");
    b.logout().expect("logout");

    let state = inst.read_state(&["alice", "bob"]).expect("read state");

    // identity fields cannot be predicted: check them, then copy them into the model
    let mut expected = MailState::default();
    for ((user, mbox), messages) in &model.boxes {
        let actual = &state.users[user].mailboxes[mbox];
        assert!(actual.uidvalidity > 0, "{mbox} uidvalidity");
        assert!(actual.highestmodseq > 0, "{mbox} highestmodseq");
        assert!(
            actual.uniqueid.as_deref().is_some_and(|u| u.len() > 8),
            "{mbox} uniqueid"
        );
        expected
            .users
            .entry(user.clone())
            .or_insert_with(UserState::default)
            .mailboxes
            .insert(
                mbox.clone(),
                MailboxState {
                    uniqueid: actual.uniqueid.clone(),
                    uidvalidity: actual.uidvalidity,
                    last_uid: model.last_uid[&(user.clone(), mbox.clone())],
                    highestmodseq: actual.highestmodseq,
                    messages: messages.clone(),
                    // The owner's default rights, as Cyrus grants them on CREATE.
                    acl: [(
                        user.clone(),
                        backupd_sim::mailstate::sorted_rights("lrswipkxtecdan"),
                    )]
                    .into(),
                    ..MailboxState::default()
                },
            );
    }
    let subs = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    expected
        .users
        .get_mut("alice")
        .expect("alice")
        .subscriptions = subs(&[
        "user.alice",
        "user.alice.Sent",
        "user.alice.Work",
        "user.alice.Archive",
    ]);
    expected.users.get_mut("bob").expect("bob").subscriptions = subs(&["user.bob"]);
    // The delayed delete of INBOX.Trash (1 message) left DELETED.user.alice.Trash.<hex>,
    // which only the admin sees.
    let deleted = &state.users["alice"].deleted;
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    let (name, d) = deleted.iter().next().expect("one");
    assert!(name.starts_with("DELETED.user.alice.Trash."), "{name}");
    assert_eq!((d.messages, d.last_uid), (1, 1), "{d:?}");
    assert!(d.uidvalidity > 0);
    expected.users.get_mut("alice").expect("alice").deleted = deleted.clone();
    assert_eq!(state, expected);

    // spot checks that do not depend on the model
    let alice = &state.users["alice"];
    assert_eq!(alice.mailboxes["user.alice"].last_uid, 8);
    assert_eq!(
        alice.mailboxes["user.alice"]
            .messages
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 6, 7, 8]
    );
    assert_eq!(
        alice.mailboxes["user.alice.Archive"].uniqueid, old_id,
        "rename keeps uniqueid"
    );
    assert_eq!(
        alice.mailboxes["user.alice"].messages[&2].flags,
        vec!["$Label1", "\\Flagged", "\\Seen"]
    );
    let uids: Vec<&String> = alice
        .mailboxes
        .values()
        .filter_map(|m| m.uniqueid.as_ref())
        .collect();
    let distinct: std::collections::BTreeSet<_> = uids.iter().collect();
    assert_eq!(uids.len(), distinct.len(), "uniqueids are distinct");

    // reading again gives the same state
    assert_eq!(
        inst.read_state(&["alice", "bob"]).expect("read again"),
        state
    );
}

#[test]
fn reading_changes_nothing() {
    let Some((_dir, inst)) = start() else { return };
    inst.create_user("carol").expect("create user");
    let mut c = inst.login_as("carol").expect("login");
    c.create("INBOX.Sub").expect("create");
    for i in 1..=3 {
        c.append(
            "INBOX",
            &[],
            Some(BASE_DATE + i64::from(i)),
            &message("c", i),
        )
        .expect("append");
        c.append("INBOX.Sub", &["\\Flagged"], None, &message("s", i))
            .expect("append");
    }
    let modseqs = |c: &mut ImapClient| {
        ["INBOX", "INBOX.Sub"].map(|m| {
            let s = c.status(m, &["UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ", "MESSAGES"]);
            s.expect("status")
        })
    };
    let before = modseqs(&mut c);
    assert_eq!(before[0].uidnext, Some(4));
    assert_eq!(before[0].messages, Some(3));
    assert!(before[0].highestmodseq.is_some_and(|m| m > 0));
    let first = inst.read_state(&["carol"]).expect("read");
    let second = inst.read_state(&["carol"]).expect("read");
    assert_eq!(first, second);
    assert_eq!(modseqs(&mut c), before, "STATUS unchanged by reading");
    // messages were unseen and stay unseen (BODY.PEEK, EXAMINE)
    let inbox = &first.users["carol"].mailboxes["user.carol"];
    assert!(inbox.messages.values().all(|m| m.flags.is_empty()));
    assert_eq!(inbox.highestmodseq, before[0].highestmodseq.unwrap_or(0));
    assert_eq!(inbox.uidvalidity, before[0].uidvalidity.unwrap_or(0));
    c.logout().expect("logout");
}

/// New lines of the channel log since the last call.
fn new_log_lines(inst: &SourceInstance, seen: &mut usize) -> Vec<String> {
    let text = std::fs::read_to_string(inst.sync_log_path("backup")).unwrap_or_default();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let new = lines[(*seen).min(lines.len())..].to_vec();
    *seen = lines.len();
    new
}

#[test]
fn sync_log_records_changes() {
    let Some((_dir, inst)) = start() else { return };
    let log = inst.sync_log_path("backup");
    assert!(log.ends_with("conf/sync/backup/log"));
    assert!(inst
        .sync_log_run_path("backup")
        .ends_with("conf/sync/backup/log-run"));
    let mut seen = 0;
    let mut steps: Vec<(&str, Vec<String>)> = Vec::new();
    inst.create_user("alice").expect("create user");
    steps.push(("create user", new_log_lines(&inst, &mut seen)));
    let mut a = inst.login_as("alice").expect("login");
    a.create("INBOX.F").expect("create");
    steps.push(("create folder", new_log_lines(&inst, &mut seen)));
    a.append("INBOX", &[], None, &message("m", 1))
        .expect("append");
    steps.push(("append", new_log_lines(&inst, &mut seen)));
    a.select("INBOX").expect("select");
    a.uid_store("1", "+FLAGS", &["\\Flagged"]).expect("store");
    steps.push(("store flag", new_log_lines(&inst, &mut seen)));
    a.uid_store("1", "+FLAGS", &["\\Seen"]).expect("store");
    steps.push(("store \\Seen", new_log_lines(&inst, &mut seen)));
    a.uid_store("1", "+FLAGS", &["\\Deleted"]).expect("store");
    a.expunge().expect("expunge");
    steps.push(("delete+expunge", new_log_lines(&inst, &mut seen)));
    a.subscribe("INBOX.F").expect("sub");
    steps.push(("subscribe", new_log_lines(&inst, &mut seen)));
    a.unsubscribe("INBOX.F").expect("unsub");
    steps.push(("unsubscribe", new_log_lines(&inst, &mut seen)));
    a.rename("INBOX.F", "INBOX.G").expect("rename");
    steps.push(("rename", new_log_lines(&inst, &mut seen)));
    a.setmetadata("INBOX.G", "/private/comment", Some("hello"))
        .expect("setmetadata");
    steps.push(("setmetadata", new_log_lines(&inst, &mut seen)));
    a.delete("INBOX.G").expect("delete");
    steps.push(("delete folder", new_log_lines(&inst, &mut seen)));
    a.logout().expect("logout");
    for (what, lines) in &steps {
        eprintln!("{what:>15}: {lines:?}");
    }
    let all: Vec<&String> = steps.iter().flat_map(|(_, l)| l).collect();
    let has = |p: &str| all.iter().any(|l| l.starts_with(p));
    assert!(log.exists());
    assert!(has("APPEND user.alice"), "{all:?}");
    assert!(has("MAILBOX user.alice.F"), "{all:?}");
    assert!(has("RENAME user.alice.F user.alice.G"), "{all:?}");
    assert!(has("SUB alice user.alice.F"), "{all:?}");
    // Cyrus 3.6.1 logs UNSUBSCRIBE as `SUB` too (sync_client looks the state up).
    let unsub = &steps
        .iter()
        .find(|(w, _)| *w == "unsubscribe")
        .expect("step")
        .1;
    assert_eq!(unsub, &vec!["SUB alice user.alice.F".to_string()]);
    assert!(has("RENAME user.alice.G DELETED.user.alice.G."), "{all:?}");
    for (what, lines) in &steps {
        assert!(!lines.is_empty(), "`{what}` logged nothing");
    }
}

#[test]
fn stop_leaves_no_process() {
    let Some((_dir, mut inst)) = start() else {
        return;
    };
    // an open session means a live imapd child of master
    let mut a = inst.admin().expect("admin");
    let pids = inst.pids();
    assert!(pids.len() >= 2, "master and an imapd: {pids:?}");
    assert!(pids.iter().all(|&p| pid_alive(p)));
    let t = Instant::now();
    inst.stop().expect("stop");
    eprintln!("stop took {:?}", t.elapsed());
    for p in &pids {
        assert!(!pid_alive(*p), "pid {p} survived stop");
    }
    inst.stop().expect("second stop is a no-op");
    assert!(!inst.is_running());
    assert!(a.create("user.zed").is_err(), "the session is gone");
}

#[test]
fn drop_during_panic_leaves_no_process() {
    if bins().is_none() {
        return;
    }
    let pids = Mutex::new(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (_dir, mut inst) = start().expect("cyrus");
        let _session = inst.admin().expect("admin");
        *pids.lock().expect("lock") = inst.pids();
        panic!("test panic with a running instance");
    }));
    assert!(result.is_err());
    let pids = pids.into_inner().expect("lock");
    assert!(pids.len() >= 2, "{pids:?}");
    for p in &pids {
        assert!(!pid_alive(*p), "pid {p} survived the panic");
    }
}

#[test]
fn sync_client_is_killed_at_timeout() {
    let Some((_dir, inst)) = start() else { return };
    inst.create_user("alice").expect("create user");
    let client = SyncClient::new(&bins().expect("cyrus"), inst.config_path());
    let args: Vec<String> = ["-v", "-v", "-n", "backup", "-u", "alice"]
        .map(String::from)
        .to_vec();
    let run = client.run(&args, Duration::from_secs(2)).expect("run");
    eprintln!("{run}");
    assert!(run.timed_out, "{run}");
    assert_eq!(run.status, None, "{run}");
    assert!(run.elapsed >= Duration::from_secs(2) && run.elapsed < Duration::from_secs(10));
    assert!(run.to_string().contains("killed after timeout"));
    assert!(run.argv.iter().any(|a| a == "-C"));
    assert_eq!(client.alive(), 0, "a finished run is not alive");

    // the rolling mode, stopped by us; counted alive (by every clone) until reaped
    let mut rolling = client
        .spawn(&["-v", "-v", "-n", "backup", "-R"].map(String::from))
        .expect("spawn");
    assert_eq!((client.alive(), client.clone().alive()), (1, 1));
    let pid = rolling.pid().expect("pid") as i32;
    std::thread::sleep(Duration::from_millis(300));
    assert!(rolling.is_running());
    let run = rolling.stop(Duration::from_secs(5)).expect("stop");
    eprintln!("{run}");
    assert!(!pid_alive(pid));
    assert_eq!(client.alive(), 0, "a stopped client is not alive");
    assert!(
        rolling.stop(Duration::from_secs(1)).is_err(),
        "already stopped"
    );

    // dropping a running client kills it
    let dropped = client
        .spawn(&["-n", "backup", "-R"].map(String::from))
        .expect("spawn");
    let pid = dropped.pid().expect("pid") as i32;
    assert_eq!(client.alive(), 1);
    drop(dropped);
    assert!(!pid_alive(pid));
    assert_eq!(client.alive(), 0, "a dropped client is not alive");
    // a supervisor's hold counts as a client until dropped
    let hold = client.hold();
    assert_eq!(client.alive(), 1);
    drop(hold);
    assert_eq!(client.alive(), 0);

    // -r would escape supervision
    assert!(client.spawn(&["-r".to_string()]).is_err());
}

#[test]
fn locate_reports_what_is_missing() {
    let dir = TempDir::new().expect("tempdir");
    let err = CyrusBins::locate(dir.path()).expect_err("empty dir");
    let text = err.to_string();
    assert!(matches!(err, CyrusError::MissingBinaries { .. }));
    assert!(
        text.contains("`master`") && text.contains("`sync_client`"),
        "{text}"
    );
    assert!(
        text.contains("apt-get install cyrus-common cyrus-imapd cyrus-replication")
            && text.contains("or pass --cyrus-prefix DIR")
            && text.contains("--cyrus-bin DIR")
            && !text.contains("make"),
        "{text}"
    );
    let Some(b) = bins() else { return };
    assert!(b.path("imapd").is_file());
}

/// A fake installation whose `master` is the given shell script body.
fn fake_bins(dir: &std::path::Path, master: &str) -> CyrusBins {
    for name in ["master", "imapd", "sync_client", "ctl_cyrusdb"] {
        let body = if name == "master" { master } else { "exit 0" };
        crate::util::write_executable(&dir.join(name), format!("#!/bin/sh\n{body}\n").as_bytes());
    }
    CyrusBins::locate(dir).expect("fake bins")
}

#[test]
fn start_failures_are_reported_and_cleaned_up() {
    let dir = TempDir::new().expect("tempdir");
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).expect("mkdir");

    // master dies at once: the error says so and shows its output
    let bins = fake_bins(&bin_dir, "echo 'fake master: cannot start' >&2; exit 3");
    let opts = SourceOptions::new(bins, dir.path().join("a"));
    let err = SourceInstance::start(&opts).expect_err("must fail");
    let text = err.to_string();
    assert!(matches!(err, CyrusError::StartFailed { .. }), "{text}");
    assert!(
        text.contains("master exited early") && text.contains("fake master: cannot start"),
        "{text}"
    );

    // master runs but never listens: stopped at the start timeout, nothing left
    let bins = fake_bins(
        &bin_dir,
        "echo $$ > \"$(dirname \"$0\")/pid\"; exec sleep 600",
    );
    let mut opts = SourceOptions::new(bins, dir.path().join("b"));
    opts.start_timeout = Duration::from_secs(2);
    let t = Instant::now();
    let err = SourceInstance::start(&opts).expect_err("must time out");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(
        err.to_string()
            .contains("not ready within the start timeout"),
        "{err}"
    );
    let pid: i32 = std::fs::read_to_string(bin_dir.join("pid"))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(!pid_alive(pid), "fake master {pid} survived");
}
