//! The checker on hand-made histories: each rule has a history that breaks it
//! and one that keeps it.

use bytes::Bytes;

use super::*;
use crate::dlist::{decode_value, Value};
use crate::mailstate::{MailState, MailboxState, MessageState, UserState};
use crate::proto::{Command, Reply};

const G1: &str = "1111111111111111111111111111111111111111";
const G2: &str = "2222222222222222222222222222222222222222";
const G3: &str = "3333333333333333333333333333333333333333";

fn value(s: &str) -> Value {
    decode_value(Bytes::copy_from_slice(s.as_bytes())).expect("test value")
}

fn mailbox_kv(name: &str, last_uid: u32, modseq: u64, records: &[(u32, &str, &str)]) -> String {
    let recs: Vec<String> = records
        .iter()
        .map(|(uid, guid, flags)| {
            format!(
                "%(UID {uid} MODSEQ {modseq} LAST_UPDATED 1 FLAGS ({flags}) INTERNALDATE 1 SIZE 10 GUID {guid})"
            )
        })
        .collect();
    format!(
        "%(UNIQUEID u-{name} MBOXNAME {name} LAST_UID {last_uid} HIGHESTMODSEQ {modseq} \
         RECENTUID 0 RECENTTIME 0 LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 7 \
         PARTITION default ACL \"\" OPTIONS P RECORD ({}))",
        recs.join(" ")
    )
}

/// A history written command by command, one microsecond apart.
struct Script {
    h: History,
    t: u64,
}

impl Script {
    fn new() -> Script {
        Script {
            h: History::new(),
            t: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.t += 10;
        self.t
    }

    fn send(&mut self, session: u64, line: &str) {
        let t = self.tick();
        let cmd = Command::parse(Bytes::from(format!("{line}\r\n"))).expect("test command");
        self.h.command(session, t, line, Some(&cmd));
    }

    fn answer(&mut self, session: u64, replies: Vec<Reply>) {
        let t = self.tick();
        self.h.reply(session, t, &replies);
    }

    fn ok(&mut self, session: u64, line: &str) {
        self.send(session, line);
        self.answer(session, vec![Reply::success()]);
    }

    fn read(&mut self, session: u64, line: &str, data: Vec<Reply>) {
        self.send(session, line);
        let mut all = data;
        all.push(Reply::success());
        self.answer(session, all);
    }

    fn mark(&mut self, name: &str) {
        let t = self.tick();
        self.h.mark(t, name);
    }

    /// The check on a replica (sync_server): no bodies kept, quota kept.
    fn check_replica(&self) -> Report {
        check(Input {
            history: &self.h,
            final_state: None,
            catch_up_mark: Some("catch-up"),
            bodies_kept: false,
            quota_kept: true,
        })
    }

    fn check(&self) -> Report {
        check(Input {
            history: &self.h,
            final_state: None,
            catch_up_mark: Some("catch-up"),
            bodies_kept: true,
            quota_kept: false,
        })
    }
}

fn apply_mailbox(name: &str, last_uid: u32, modseq: u64, records: &[(u32, &str, &str)]) -> String {
    format!(
        "APPLY MAILBOX {}",
        mailbox_kv(name, last_uid, modseq, records)
    )
}

fn mailbox_reply(name: &str, last_uid: u32, modseq: u64, records: &[(u32, &str, &str)]) -> Reply {
    Reply::Data(
        "MAILBOX".into(),
        value(&mailbox_kv(name, last_uid, modseq, records)),
    )
}

/// `mailbox_reply` of `name` keeping the uniqueid `from` had (a renamed mailbox).
fn renamed_reply(
    name: &str,
    from: &str,
    last_uid: u32,
    modseq: u64,
    records: &[(u32, &str, &str)],
) -> Reply {
    let kv = mailbox_kv(name, last_uid, modseq, records).replace(
        &format!("UNIQUEID u-{name} "),
        &format!("UNIQUEID u-{from} "),
    );
    Reply::Data("MAILBOX".into(), value(&kv))
}

/// The reproduction: `APPLY MAILBOX` answered OK and not stored; the
/// catch-up's `GET MAILBOXES` shows no such mailbox.
#[test]
fn a_mailbox_acknowledged_then_absent_is_lost() {
    let mut s = Script::new();
    s.mark("step 4");
    s.ok(
        1,
        &apply_mailbox("user.lu.Lied", 2, 5, &[(1, G1, ""), (2, G2, "")]),
    );
    s.mark("catch-up");
    s.read(2, "GET MAILBOXES (user.lu.Lied)", vec![]);
    s.ok(
        2,
        &apply_mailbox("user.lu.Lied", 2, 5, &[(1, G1, ""), (2, G2, "")]),
    );
    let r = s.check();
    assert!(!r.ok());
    assert_eq!(r.violations.len(), 1, "{r:#?}");
    let v = &r.violations[0];
    assert_eq!(v.user, "lu");
    assert_eq!(v.mailbox.as_deref(), Some("user.lu.Lied"));
    assert!(
        v.acknowledged
            .starts_with("session 1 (step 4): APPLY MAILBOX"),
        "{v}"
    );
    assert!(
        v.contradicted_by
            .starts_with("session 2 (catch-up): GET MAILBOXES"),
        "{v}"
    );
    assert!(v.what.contains("missing"), "{v}");
    assert_eq!(r.carried.len(), 1);
    assert_eq!(r.carried[0].class, CarryClass::PreviouslyAcknowledged);
    assert!(r.carried[0]
        .command
        .contains("acknowledged before as session 1"));
}

#[test]
fn a_read_that_agrees_is_checked_and_passes() {
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.X", 2, 5, &[(1, G1, "\\Seen"), (2, G2, "")]),
    );
    s.read(
        2,
        "GET MAILBOXES (user.a.X)",
        vec![mailbox_reply("user.a.X", 2, 5, &[])],
    );
    s.read(
        2,
        "GET FULLMAILBOX user.a.X",
        vec![mailbox_reply(
            "user.a.X",
            2,
            5,
            &[(1, G1, "\\Seen"), (2, G2, "")],
        )],
    );
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.reads_checked, 2);
    assert_eq!(r.acknowledged, 1);
}

#[test]
fn lower_counters_a_changed_uniqueid_and_lost_records_are_named() {
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox(
            "user.a.X",
            3,
            9,
            &[(1, G1, "\\Seen"), (2, G2, ""), (3, G2, "")],
        ),
    );
    s.read(
        2,
        "GET MAILBOXES (user.a.X)",
        vec![mailbox_reply("user.a.X", 2, 5, &[])],
    );
    s.read(
        2,
        "GET FULLMAILBOX user.a.X",
        vec![mailbox_reply("user.a.X", 3, 9, &[(1, G1, ""), (2, G1, "")])],
    );
    let whats: Vec<String> = s
        .check()
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(
        whats,
        [
            "LAST_UID 2, acknowledged 3",
            "HIGHESTMODSEQ 5, acknowledged 9",
            "flags [], acknowledged [\"\\\\Seen\"]",
            &format!("GUID {G1}, acknowledged {G2}"),
            "1 acknowledged record(s) missing",
        ]
    );
    let other = Reply::Data(
        "MAILBOX".into(),
        value(&mailbox_kv("user.a.X", 3, 9, &[]).replace("u-user.a.X", "other")),
    );
    let mut s2 = Script::new();
    s2.ok(1, &apply_mailbox("user.a.X", 3, 9, &[]));
    s2.read(2, "GET MAILBOXES (user.a.X)", vec![other]);
    let v = s2.check().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].what, "uniqueid other, acknowledged u-user.a.X");
}

#[test]
fn a_write_answered_no_is_not_applied() {
    let mut s = Script::new();
    s.send(1, &apply_mailbox("user.a.X", 2, 5, &[]));
    s.answer(1, vec![Reply::locked()]);
    s.read(2, "GET MAILBOXES (user.a.X)", vec![]);
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.acknowledged, 0);
}

/// An unanswered write may or may not have been applied: what it could have
/// changed is not checked until a later acknowledged write supersedes it,
/// and then not the flags of its records.
#[test]
fn an_unanswered_write_unsettles_until_superseded() {
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[(1, G1, "")]));
    s.send(1, &apply_mailbox("user.a.X", 1, 6, &[(1, G1, "\\Seen")]));
    let t = s.tick();
    s.h.closed(1, t);
    // Either state may be there.
    for flags in ["", "\\Seen"] {
        s.read(
            2,
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply("user.a.X", 1, 6, &[(1, G1, flags)])],
        );
        assert!(s.check().ok(), "{flags}: {:#?}", s.check());
    }
    // A later acknowledged write settles the mailbox again, flags of UID 1 excepted.
    s.ok(2, &apply_mailbox("user.a.X", 2, 7, &[(2, G2, "")]));
    s.read(
        3,
        "GET FULLMAILBOX user.a.X",
        vec![mailbox_reply(
            "user.a.X",
            2,
            7,
            &[(1, G1, "\\Seen"), (2, G2, "")],
        )],
    );
    assert!(s.check().ok(), "{:#?}", s.check());
    s.read(3, "GET MAILBOXES (user.a.X)", vec![]);
    assert_eq!(s.check().violations.len(), 1);
}

/// An `APPLY MAILBOX` left without a reply, of a mailbox acknowledged with
/// the same uniqueid, can add to it but not take it away: until it is
/// superseded, the mailbox must still be there, LAST_UID not lower, and the
/// acknowledged records it does not name as they were. (Before, nothing was
/// checked meanwhile: a target that lost the mailbox on the dropped
/// connection passed once the client sent it again.)
#[test]
fn an_unanswered_apply_mailbox_cannot_take_away_what_was_acknowledged() {
    let acked = || apply_mailbox("user.a.X", 2, 5, &[(1, G1, ""), (2, G2, "")]);
    let dropped = |s: &mut Script, line: &str| {
        s.send(1, line);
        let t = s.tick();
        s.h.closed(1, t);
    };
    let setup = || {
        let mut s = Script::new();
        s.ok(1, &acked());
        dropped(
            &mut s,
            &apply_mailbox("user.a.X", 2, 6, &[(1, G1, "\\Seen")]),
        );
        s
    };
    // Applied or not: both pass.
    for (modseq, flags) in [(6, "\\Seen"), (5, "")] {
        let mut s = setup();
        s.read(
            2,
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply(
                "user.a.X",
                2,
                modseq,
                &[(1, G1, flags), (2, G2, "")],
            )],
        );
        let r = s.check();
        assert!(r.ok() && r.reads_checked == 1, "{r:#?}");
    }
    // The mailbox gone, UID 2 (not named by the dropped write) gone, or
    // LAST_UID lower: each is a lost acknowledged write.
    let lost: [(&str, Vec<Reply>); 3] = [
        ("GET MAILBOXES (user.a.X)", vec![]),
        (
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply("user.a.X", 2, 6, &[(1, G1, "\\Seen")])],
        ),
        (
            "GET MAILBOXES (user.a.X)",
            vec![mailbox_reply("user.a.X", 1, 6, &[])],
        ),
    ];
    for (read, answer) in lost {
        let mut s = setup();
        s.read(2, read, answer.clone());
        let r = s.check();
        assert_eq!(r.violations.len(), 1, "{read} {answer:?}: {r:#?}");
    }
    // Another uniqueid (the source recreated the mailbox), or a removal,
    // left without a reply: nothing of the mailbox is known meanwhile.
    let other = apply_mailbox("user.a.X", 1, 9, &[]).replace("u-user.a.X", "u-other");
    for line in [other.as_str(), "APPLY UNMAILBOX user.a.X"] {
        let mut s = Script::new();
        s.ok(1, &acked());
        dropped(&mut s, line);
        s.read(2, "GET MAILBOXES (user.a.X)", vec![]);
        let r = s.check();
        assert!(r.ok() && r.reads_checked == 0, "{line}: {r:#?}");
    }
}

/// A read sent before the write was acknowledged may not see it.
#[test]
fn a_read_overlapping_the_write_is_not_checked() {
    let mut s = Script::new();
    s.send(1, &apply_mailbox("user.a.X", 2, 5, &[]));
    s.send(2, "GET MAILBOXES (user.a.X)");
    s.answer(1, vec![Reply::success()]);
    s.answer(2, vec![Reply::success()]);
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.reads_checked, 0);
}

#[test]
fn removal_and_rename_supersede_and_are_checked_too() {
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a.Old", 2, 5, &[]));
    s.ok(
        1,
        "APPLY RENAME %(OLDMBOXNAME user.a.Old NEWMBOXNAME user.a.New PARTITION default)",
    );
    s.read(
        2,
        "GET MAILBOXES (user.a.Old user.a.New)",
        vec![renamed_reply("user.a.New", "user.a.Old", 2, 5, &[])],
    );
    assert!(s.check().ok(), "{:#?}", s.check());
    s.ok(1, "APPLY UNMAILBOX user.a.New");
    s.read(2, "GET MAILBOXES (user.a.New)", vec![]);
    assert!(s.check().ok(), "{:#?}", s.check());
    // A removal acknowledged and undone is lost too.
    s.read(
        2,
        "GET MAILBOXES (user.a.New)",
        vec![mailbox_reply("user.a.New", 2, 5, &[])],
    );
    let v = s.check().violations;
    assert_eq!(v.len(), 1);
    assert!(v[0].acknowledged.contains("APPLY UNMAILBOX"), "{}", v[0]);
    assert_eq!(
        v[0].what,
        "the mailbox is there, after an acknowledged removal"
    );
}

#[test]
fn subscriptions_seen_and_sieve_in_get_user() {
    let lsub = |names: &str| Reply::Data("LSUB".into(), value(&format!("({names})")));
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a", 0, 1, &[]));
    s.ok(1, "APPLY SUB %(USERID a MBOXNAME user.a.Work)");
    s.ok(1, "APPLY UNSUB %(USERID a MBOXNAME user.a.Old)");
    s.ok(
        1,
        "APPLY SEEN %(USERID a UNIQUEID u9 LASTREAD 1 LASTUID 4 LASTCHANGE 2 SEENUIDS 1:4)",
    );
    s.ok(
        1,
        "APPLY SIEVE %(USERID a FILENAME s.script LAST_UPDATE 100 CONTENT \"x\")",
    );
    let good = vec![
        mailbox_reply("user.a", 0, 1, &[]),
        Reply::Data(
            "SEEN".into(),
            value("%(UNIQUEID u9 LASTREAD 1 LASTUID 4 LASTCHANGE 2 SEENUIDS 1:4)"),
        ),
        lsub("user.a.Work"),
        Reply::Data(
            "SIEVE".into(),
            value("%(FILENAME s.script LAST_UPDATE 100 GUID x ISACTIVE 0)"),
        ),
    ];
    s.read(2, "GET USER a", good);
    assert!(s.check().ok(), "{:#?}", s.check());
    s.read(
        2,
        "GET USER a",
        vec![mailbox_reply("user.a", 0, 1, &[]), lsub("user.a.Old")],
    );
    let whats: Vec<String> = s
        .check()
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(
        whats,
        [
            "the unsubscribed mailbox is back in `* LSUB`",
            "the subscription is not in `* LSUB`",
            "no `* SEEN` for uniqueid u9",
            "sieve script s.script is not listed",
        ]
    );
    // A user listed without mailboxes: sync_server prints no meta data then.
    let mut s2 = Script::new();
    s2.ok(1, "APPLY SUB %(USERID a MBOXNAME user.a.Work)");
    s2.read(2, "GET USER a", vec![]);
    assert!(s2.check().ok());
    s2.read(2, "GET META a", vec![]);
    assert_eq!(s2.check().violations.len(), 1);
}

#[test]
fn a_body_of_an_acknowledged_record_must_not_be_missing() {
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.X", 2, 5, &[(1, G1, ""), (2, G2, "\\Expunged")]),
    );
    let reserve =
        format!("APPLY RESERVE %(PARTITION default MBOXNAME (user.a.X) GUID ({G1} {G2}))");
    let missing = |g: &str| Reply::Data("MISSING".into(), value(&format!("({g})")));
    // An expunged record's body may be gone.
    s.read(2, &reserve, vec![missing(G2)]);
    assert!(s.check().ok(), "{:#?}", s.check());
    s.read(2, &reserve, vec![missing(G1)]);
    let v = s.check().violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].uids, [1]);
    assert!(v[0].what.contains(G1));
    assert!(v[0].contradicted_by.contains("APPLY RESERVE"));
}

#[test]
fn the_final_read_back_is_a_read_too() {
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.X", 2, 5, &[(1, G1, "\\Seen"), (2, G2, "")]),
    );
    s.ok(1, "APPLY SUB %(USERID a MBOXNAME user.a.X)");
    let mut mb = MailboxState {
        uniqueid: Some("u-user.a.X".into()),
        uidvalidity: 7,
        last_uid: 2,
        highestmodseq: 5,
        ..MailboxState::default()
    };
    mb.messages.insert(
        1,
        MessageState {
            guid: G1.into(),
            flags: vec![],
            ..MessageState::default()
        },
    );
    let mut u = UserState::default();
    u.mailboxes.insert("user.a.X".into(), mb);
    let mut state = MailState::default();
    state.users.insert("a".into(), u);
    let run = |full| {
        check(Input {
            history: &s.h,
            final_state: Some(FinalRead {
                state: &state,
                users: &["a"],
                full,
            }),
            catch_up_mark: None,
            bodies_kept: true,
            quota_kept: false,
        })
    };
    let whats: Vec<String> = run(true)
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(
        whats,
        [
            "flags [], acknowledged [\"\\\\Seen\"]",
            "1 acknowledged record(s) missing",
            "the subscription is not on the target",
        ]
    );
    // Read at UID -> GUID only: flags and subscriptions are not seen.
    let whats: Vec<String> = run(false)
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(whats, ["1 acknowledged record(s) missing"]);
    assert!(run(false).violations[0]
        .contradicted_by
        .contains("final read-back"));
    // A user the read did not cover is not judged by it; one it covered and
    // found absent lost everything.
    let other = check(Input {
        history: &s.h,
        final_state: Some(FinalRead {
            state: &MailState::default(),
            users: &["b"],
            full: true,
        }),
        catch_up_mark: None,
        bodies_kept: true,
        quota_kept: false,
    });
    assert!(other.ok(), "{other:#?}");
    let gone = check(Input {
        history: &s.h,
        final_state: Some(FinalRead {
            state: &MailState::default(),
            users: &["a"],
            full: true,
        }),
        catch_up_mark: None,
        bodies_kept: true,
        quota_kept: false,
    });
    assert_eq!(gone.violations.len(), 2, "{gone:#?}");
}

#[test]
fn what_the_catch_up_carried_and_why() {
    let mut s = Script::new();
    s.ok(1, "APPLY SUB %(USERID a MBOXNAME user.a.X)");
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[(1, G1, "")]));
    s.mark("catch-up");
    s.ok(2, "APPLY SUB %(USERID a MBOXNAME user.a.X)");
    s.ok(2, &apply_mailbox("user.a.X", 2, 6, &[(2, G2, "")]));
    let r = s.check();
    assert!(r.ok());
    let classes: Vec<CarryClass> = r.carried.iter().map(|c| c.class).collect();
    assert_eq!(classes, [CarryClass::Repeated, CarryClass::Queued]);
}

#[test]
fn an_incomplete_history_is_never_a_pass() {
    let mut s = Script {
        h: History::with_limits(2, 100),
        t: 0,
    };
    for _ in 0..3 {
        s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[]));
    }
    let r = s.check();
    assert!(!r.ok());
    assert!(r
        .incomplete
        .as_deref()
        .unwrap_or_default()
        .contains("more than 2 commands"));
}

/// A write left without a reply that expunged a record, superseded by a
/// later write that does not carry that record (sync_client sends only the
/// records changed since the replica's HIGHESTMODSEQ): the record may be
/// expunged or gone from a live-only read, and neither is a loss; its GUID
/// is still held to.
#[test]
fn a_record_an_unanswered_write_expunged_is_not_held_live() {
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[(1, G1, "")]));
    s.send(
        1,
        &apply_mailbox("user.a.X", 1, 6, &[(1, G1, "\\Expunged")]),
    );
    let t = s.tick();
    s.h.closed(1, t);
    s.ok(2, &apply_mailbox("user.a.X", 2, 7, &[(2, G2, "")]));
    for records in [&[(1, G1, "\\Expunged"), (2, G2, "")][..], &[(2, G2, "")]] {
        s.read(
            3,
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply("user.a.X", 2, 7, records)],
        );
        let r = s.check();
        assert!(r.ok(), "{records:?}: {r:#?}");
    }
    // Another GUID at UID 1 is still a loss.
    s.read(
        3,
        "GET FULLMAILBOX user.a.X",
        vec![mailbox_reply("user.a.X", 2, 7, &[(1, G2, ""), (2, G2, "")])],
    );
    assert_eq!(s.check().violations.len(), 1, "{:#?}", s.check());
}

/// An unanswered `APPLY MAILBOX` taken as growing the mailbox it knew, which
/// an acknowledged write then replaced by one with another uniqueid (the
/// source re-created it), proves nothing of the new one: if it was applied
/// last, the old uniqueid is back, and that is no loss.
#[test]
fn an_unanswered_write_of_a_replaced_mailbox_is_not_taken_as_growing_it() {
    let mut s = Script::new();
    let v = |line: String| line.replace("u-user.a.X", "u-V");
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[(1, G1, "")]));
    s.send(2, &apply_mailbox("user.a.X", 1, 5, &[(1, G1, "")]));
    s.send(1, &v(apply_mailbox("user.a.X", 1, 9, &[(1, G2, "")])));
    let t = s.tick();
    s.h.closed(2, t);
    s.answer(1, vec![Reply::success()]);
    s.read(
        3,
        "GET MAILBOXES (user.a.X)",
        vec![mailbox_reply("user.a.X", 1, 5, &[])],
    );
    let r = s.check();
    assert!(r.ok() && r.reads_checked == 0, "{r:#?}");
}

/// An answer with a data line not understood is not checked (an absence in
/// it may be that line), and the report counts it and names the first.
#[test]
fn a_read_with_a_line_not_understood_is_counted_not_checked() {
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[]));
    s.read(
        2,
        "GET USER a",
        vec![Reply::Data("SEEN".into(), value("%(FOO 1)"))],
    );
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!((r.reads_checked, r.reads_unreadable), (0, 1));
    let first = r.first_unreadable.unwrap_or_default();
    assert!(
        first.contains("GET USER a") && first.contains("* SEEN without its fields"),
        "{first}"
    );
}

/// A stream a relay could no longer decode leaves the history incomplete:
/// whatever it held, it is never a pass.
#[test]
fn a_stream_lost_to_the_relay_makes_the_history_incomplete() {
    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a.X", 1, 5, &[]));
    s.read(
        2,
        "GET MAILBOXES (user.a.X)",
        vec![mailbox_reply("user.a.X", 1, 5, &[])],
    );
    assert!(s.check().ok());
    s.h.lost(
        2,
        "relay: server stream no longer decoded: a literal too large",
    );
    let r = s.check();
    assert!(!r.ok());
    let why = r.incomplete.unwrap_or_default();
    assert!(why.contains("server stream no longer decoded"), "{why}");
}

#[test]
fn two_overlapping_acknowledged_writes_are_not_checked_until_settled() {
    let mut s = Script::new();
    s.send(1, &apply_mailbox("user.a.X", 1, 5, &[]));
    s.send(2, &apply_mailbox("user.a.X", 2, 6, &[]));
    s.answer(2, vec![Reply::success()]);
    s.answer(1, vec![Reply::success()]);
    s.read(
        3,
        "GET MAILBOXES (user.a.X)",
        vec![mailbox_reply("user.a.X", 2, 6, &[])],
    );
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.reads_checked, 0);
}

/// On backupd, a body reserved and uploaded is kept in the user's backup: a
/// later `* MISSING` for it is a loss, even with no record acknowledged (the
/// APPLY MAILBOX that would use it may have failed). A replica keeps only
/// bodies its records use, so there it is not checked.
#[test]
fn an_uploaded_body_reported_missing_again() {
    let reserve = format!("APPLY RESERVE %(PARTITION default MBOXNAME (user.a) GUID ({G1}))");
    let missing = || Reply::Data("MISSING".into(), value(&format!("({G1})")));
    let mut s = Script::new();
    s.read(1, &reserve, vec![missing()]);
    s.ok(1, &format!("APPLY MESSAGE (%{{default {G1} 3}}\r\nabc)"));
    s.send(1, &apply_mailbox("user.a", 1, 2, &[(1, G1, "")]));
    let t = s.tick();
    s.h.closed(1, t);
    s.read(2, &reserve, vec![missing()]);
    let r = s.check();
    assert_eq!(r.violations.len(), 1, "{r:#?}");
    let v = &r.violations[0];
    assert_eq!(v.about, About::Body);
    assert_eq!(v.guid.as_deref(), Some(G1));
    assert!(v.acknowledged.contains("APPLY MESSAGE"), "{v}");
    let replica = check(Input {
        history: &s.h,
        final_state: None,
        catch_up_mark: None,
        bodies_kept: false,
        quota_kept: false,
    });
    assert!(replica.ok(), "{replica:#?}");
    // Uploaded after a RESTART, unreserved: not tracked.
    let mut s = Script::new();
    s.read(1, &reserve, vec![missing()]);
    s.ok(1, "RESTART");
    s.ok(1, &format!("APPLY MESSAGE (%{{default {G1} 3}}\r\nabc)"));
    s.read(2, &reserve, vec![missing()]);
    assert!(s.check().ok(), "{:#?}", s.check());
}

/// `APPLY MAILBOX` of `user.ac.X` with this ACL and one `/comment` annotation.
fn acl_mailbox(acl: &str, comment: &str) -> String {
    format!(
        "%(UNIQUEID u-ac MBOXNAME user.ac.X LAST_UID 0 HIGHESTMODSEQ 3 RECENTUID 0 RECENTTIME 0 \
         LAST_APPENDDATE 0 POP3_LAST_LOGIN 0 UIDVALIDITY 7 PARTITION default ACL \"{acl}\" \
         OPTIONS P ANNOTATIONS (%(ENTRY /comment USERID \"\" MODSEQ 3 VALUE {comment})) RECORD ())"
    )
}

/// An acknowledged ACL entry or annotation a later read lacks or shows
/// otherwise is lost (the catch-up re-sending it healed that once unseen:
/// explore --seed 2 --allow-loss-faults, case 24); rights in another order,
/// an entry the target adds and annotations it computes are not.
#[test]
fn acknowledged_acl_entries_and_annotations_must_stay() {
    let acked = acl_mailbox("ac\tlrswipkxtecdan\tanyone\tlr\t", "hello");
    let cases = [
        // (what the read shows, the violation expected, if any)
        (acl_mailbox("anyone\tlr\t", "hello"), Some("ACL entry ac")),
        (
            acl_mailbox("ac\tlrs\tanyone\tlr\t", "hello"),
            Some("has rights lrs"),
        ),
        (
            acl_mailbox("ac\tlrswipkxtecdan\tanyone\tlr\t", "other"),
            Some("annotation /comment (shared) has another value"),
        ),
        (
            acl_mailbox("ac\tlrswipkxtecdan\tanyone\tlr\t", "hello")
                .replace("%(ENTRY /comment USERID \"\" MODSEQ 3 VALUE hello)", ""),
            Some("annotation /comment (shared) missing"),
        ),
        (
            acl_mailbox("anyone\tlr\tac\tadcelknprstwxi\tbob\tl\t", "hello").replace(
                "ANNOTATIONS (",
                "ANNOTATIONS (%(ENTRY /vendor/cmu/cyrus-imapd/x USERID \"\" MODSEQ 3 VALUE 1) ",
            ),
            None,
        ),
    ];
    for (shown, want) in cases {
        let mut s = Script::new();
        s.ok(1, &format!("APPLY MAILBOX {acked}"));
        s.read(
            2,
            "GET MAILBOXES (user.ac.X)",
            vec![Reply::Data("MAILBOX".into(), value(&shown))],
        );
        let r = s.check();
        assert_eq!(r.reads_checked, 1, "{r:#?}");
        match want {
            None => assert!(r.ok(), "{shown}: {r:#?}"),
            Some(what) => {
                assert_eq!(r.violations.len(), 1, "{shown}: {r:#?}");
                assert!(r.violations[0].what.contains(what), "{r:#?}");
            }
        }
    }
}

/// `user.a.X` with record 1 (`G1`) carrying these `ANNOTATIONS` items.
fn annotated_record(annotations: &str) -> String {
    mailbox_kv("user.a.X", 1, 5, &[(1, G1, "")]).replace(
        &format!("GUID {G1})"),
        &format!("GUID {G1} ANNOTATIONS ({annotations}))"),
    )
}

/// A per-message annotation an acknowledged record carried must stay with
/// the record in later csync reads, and one it did not carry (a removal)
/// must stay away; the entries Cyrus computes itself are not compared, and a
/// record a never-answered write named is not checked.
#[test]
fn acknowledged_message_annotations_must_stay() {
    let note = "%(ENTRY /comment USERID a MODSEQ 5 VALUE note)";
    let other = "%(ENTRY /comment USERID a MODSEQ 6 VALUE other)";
    let shared = "%(ENTRY /comment USERID \"\" MODSEQ 5 VALUE s)";
    let thrid = "%(ENTRY /vendor/cmu/cyrus-imapd/thrid USERID \"\" MODSEQ 5 VALUE 1)";
    let cases = [
        // (acknowledged, shown, the violation expected, if any)
        (note.to_owned(), note.to_owned(), None),
        (note.to_owned(), format!("{note} {thrid}"), None),
        (note.to_owned(), String::new(), Some("/comment (a) missing")),
        (
            note.to_owned(),
            other.to_owned(),
            Some("/comment (a) has another value"),
        ),
        (
            String::new(),
            shared.to_owned(),
            Some("/comment (shared) not acknowledged"),
        ),
    ];
    for (acked, shown, want) in cases {
        let mut s = Script::new();
        s.ok(1, &format!("APPLY MAILBOX {}", annotated_record(&acked)));
        s.read(
            2,
            "GET FULLMAILBOX user.a.X",
            vec![Reply::Data(
                "MAILBOX".into(),
                value(&annotated_record(&shown)),
            )],
        );
        let r = s.check();
        assert_eq!(r.reads_checked, 1, "{r:#?}");
        match want {
            None => assert!(r.ok(), "{acked} / {shown}: {r:#?}"),
            Some(what) => {
                assert_eq!(r.violations.len(), 1, "{acked} / {shown}: {r:#?}");
                let v = &r.violations[0];
                assert_eq!(v.uids, vec![1], "{v}");
                assert!(v.what.contains(what), "{v}");
            }
        }
    }
    // A write of the record that was never answered may have changed its
    // annotations: once a later write settles the mailbox again, the
    // record's annotations (like its flags) are not checked.
    let mut s = Script::new();
    s.ok(1, &format!("APPLY MAILBOX {}", annotated_record(note)));
    s.send(1, &format!("APPLY MAILBOX {}", annotated_record(other)));
    let t = s.tick();
    s.h.closed(1, t);
    s.ok(2, &apply_mailbox("user.a.X", 2, 7, &[(2, G2, "")]));
    let shown = annotated_record(other)
        .replace("LAST_UID 1 HIGHESTMODSEQ 5", "LAST_UID 2 HIGHESTMODSEQ 7")
        .replace(
            "RECORD (",
            &format!(
            "RECORD (%(UID 2 MODSEQ 7 LAST_UPDATED 1 FLAGS () INTERNALDATE 1 SIZE 10 GUID {G2}) "
        ),
        );
    s.read(
        3,
        "GET FULLMAILBOX user.a.X",
        vec![Reply::Data("MAILBOX".into(), value(&shown))],
    );
    let r = s.check();
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.reads_checked, 1, "{r:#?}");
}

/// `APPLY QUOTA` of `user.q` with this STORAGE limit.
fn apply_quota(storage: u64) -> String {
    format!("APPLY QUOTA %(ROOT user.q LIMIT {storage} STORAGE {storage} MODSEQ 3)")
}

/// `* QUOTA` of `root` with this STORAGE limit, as sync_server prints it.
fn quota_reply(root: &str, storage: u64) -> Reply {
    Reply::Data(
        "QUOTA".into(),
        value(&format!(
            "%(ROOT {root} LIMIT {storage} STORAGE {storage} MODSEQ 4)"
        )),
    )
}

/// On a replica, an acknowledged quota must show with its limits in later
/// `* QUOTA` items (`GET USER`, `GET QUOTA`), `GET QUOTA` of its root must
/// show one, and one removed by `APPLY UNQUOTA` must not come back; MODSEQ
/// is not compared. On backupd, which keeps no quota, nothing is checked.
#[test]
fn acknowledged_quota_must_stay_on_a_replica() {
    let cases: [(&str, Vec<Reply>, Option<&str>); 5] = [
        ("GET QUOTA user.q", vec![quota_reply("user.q", 100)], None),
        ("GET USER q", vec![quota_reply("user.q", 100)], None),
        (
            "GET USER q",
            vec![quota_reply("user.q", 50)],
            Some("quota STORAGE 50, acknowledged STORAGE 100"),
        ),
        ("GET QUOTA user.q", vec![], Some("no quota on the root")),
        // Not listed in GET USER: sync_server lists only the roots its
        // listed mailboxes name; not checked.
        ("GET USER q", vec![], None),
    ];
    for (read, shown, want) in cases {
        let mut s = Script::new();
        s.ok(1, &apply_quota(100));
        s.read(2, read, shown.clone());
        let r = s.check_replica();
        match want {
            None => assert!(r.ok(), "{read} {shown:?}: {r:#?}"),
            Some(what) => {
                assert_eq!(r.violations.len(), 1, "{read}: {r:#?}");
                let v = &r.violations[0];
                assert_eq!(v.about, About::Quota, "{v}");
                assert_eq!(v.mailbox.as_deref(), Some("user.q"), "{v}");
                assert!(v.what.contains(what), "{v}");
                assert!(
                    v.acknowledged.contains("APPLY QUOTA user.q (STORAGE 100)"),
                    "{v}"
                );
            }
        }
        // backupd acknowledges APPLY QUOTA and keeps nothing: not checked.
        assert!(s.check().ok(), "{:#?}", s.check());
    }
    // A quota root whose mailbox was removed or renamed is not known any
    // more (Cyrus may remove or move the root with it): not checked.
    for gone in [
        "APPLY UNMAILBOX user.q",
        "APPLY RENAME %(OLDMBOXNAME user.q NEWMBOXNAME user.r PARTITION default)",
    ] {
        let mut s = Script::new();
        s.ok(1, &apply_quota(100));
        s.ok(1, gone);
        s.read(2, "GET QUOTA user.q", vec![]);
        assert!(s.check_replica().ok(), "{gone}: {:#?}", s.check_replica());
    }
    // Removed, then shown again.
    let mut s = Script::new();
    s.ok(1, &apply_quota(100));
    s.ok(1, "APPLY UNQUOTA user.q");
    s.read(2, "GET QUOTA user.q", vec![]);
    assert!(s.check_replica().ok(), "{:#?}", s.check_replica());
    s.read(2, "GET QUOTA user.q", vec![quota_reply("user.q", 100)]);
    let r = s.check_replica();
    assert_eq!(r.violations.len(), 1, "{r:#?}");
    assert!(
        r.violations[0].what.contains("acknowledged removed"),
        "{r:#?}"
    );
}

/// What an acknowledged rename moves is held to under the new name: the
/// records acknowledged under the old one (and which of them a dropped
/// write left uncertain) go with it.
#[test]
fn a_rename_carries_the_known_state_and_its_uncertain_records() {
    let rename = "APPLY RENAME %(OLDMBOXNAME user.a.Old NEWMBOXNAME user.a.New PARTITION default)";
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.Old", 2, 5, &[(1, G1, ""), (2, G2, "")]),
    );
    s.ok(1, rename);
    s.read(2, "GET MAILBOXES (user.a.New)", vec![]);
    let r = s.check();
    assert_eq!(r.violations.len(), 1, "{r:#?}");
    assert_eq!(r.violations[0].mailbox.as_deref(), Some("user.a.New"));

    // UID 1 expunged by a write left without a reply, then superseded: it
    // stays uncertain under the new name.
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.Old", 2, 5, &[(1, G1, ""), (2, G2, "")]),
    );
    s.send(
        1,
        &apply_mailbox("user.a.Old", 2, 6, &[(1, G1, "\\Expunged")]),
    );
    let t = s.tick();
    s.h.closed(1, t);
    s.ok(2, &apply_mailbox("user.a.Old", 3, 7, &[(3, G3, "")]));
    s.ok(2, rename);
    s.read(
        3,
        "GET FULLMAILBOX user.a.New",
        vec![renamed_reply(
            "user.a.New",
            "user.a.Old",
            3,
            7,
            &[(2, G2, ""), (3, G3, "")],
        )],
    );
    let r = s.check();
    assert!(r.ok() && r.reads_checked == 1, "{r:#?}");
}

/// The violations an audit found no test making: a changed UIDVALIDITY, a
/// record's expunged state flipped either way, a `* SEEN` that differs, a
/// sieve script older than acknowledged, a deleted one listed again.
#[test]
fn uidvalidity_expunged_state_seen_and_sieve_differences_are_named() {
    let mut s = Script::new();
    s.ok(
        1,
        &apply_mailbox("user.a.X", 2, 9, &[(1, G1, "\\Expunged"), (2, G2, "")]),
    );
    let changed = Reply::Data(
        "MAILBOX".into(),
        value(
            &mailbox_kv("user.a.X", 2, 9, &[(1, G1, ""), (2, G2, "\\Expunged")])
                .replace("UIDVALIDITY 7", "UIDVALIDITY 8"),
        ),
    );
    s.read(2, "GET FULLMAILBOX user.a.X", vec![changed]);
    let whats: Vec<String> = s
        .check()
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(
        whats,
        [
            "UIDVALIDITY 8, acknowledged 7",
            "live, acknowledged expunged",
            "expunged, acknowledged live",
        ]
    );

    let mut s = Script::new();
    s.ok(1, &apply_mailbox("user.a", 0, 1, &[]));
    s.ok(
        1,
        "APPLY SEEN %(USERID a UNIQUEID u9 LASTREAD 1 LASTUID 4 LASTCHANGE 2 SEENUIDS 1:4)",
    );
    s.ok(
        1,
        "APPLY SIEVE %(USERID a FILENAME s.script LAST_UPDATE 100 CONTENT \"x\")",
    );
    s.ok(
        1,
        "APPLY SIEVE %(USERID a FILENAME old.script LAST_UPDATE 50 CONTENT \"y\")",
    );
    s.ok(1, "APPLY UNSIEVE %(USERID a FILENAME old.script)");
    s.read(
        2,
        "GET USER a",
        vec![
            mailbox_reply("user.a", 0, 1, &[]),
            Reply::Data(
                "SEEN".into(),
                value("%(UNIQUEID u9 LASTREAD 1 LASTUID 4 LASTCHANGE 2 SEENUIDS 1:3)"),
            ),
            Reply::Data(
                "SIEVE".into(),
                value("%(FILENAME s.script LAST_UPDATE 99 GUID x ISACTIVE 0)"),
            ),
            Reply::Data(
                "SIEVE".into(),
                value("%(FILENAME old.script LAST_UPDATE 50 GUID y ISACTIVE 0)"),
            ),
        ],
    );
    let whats: Vec<String> = s
        .check()
        .violations
        .iter()
        .map(|v| v.what.clone())
        .collect();
    assert_eq!(whats.len(), 3, "{whats:#?}");
    assert!(
        whats[0].starts_with("`* SEEN` for uniqueid u9: LASTUID 4 SEENUIDS")
            && whats[0].contains("acknowledged LASTUID 4"),
        "{whats:#?}"
    );
    assert_eq!(
        whats[1..],
        [
            "deleted sieve script old.script is listed again",
            "sieve script s.script: LAST_UPDATE 99, acknowledged 100",
        ]
    );
}

/// An unanswered `APPLY EXPUNGE` of a known mailbox can only expunge the
/// UIDs it names: meanwhile the mailbox, its other records and its counters
/// are still held to (before, nothing of it was checked until the expunge
/// was superseded).
#[test]
fn an_unanswered_apply_expunge_can_only_take_the_uids_it_names() {
    let setup = || {
        let mut s = Script::new();
        s.ok(
            1,
            &apply_mailbox("user.a.X", 2, 5, &[(1, G1, ""), (2, G2, "")]),
        );
        s.send(
            1,
            "APPLY EXPUNGE %(MBOXNAME user.a.X UNIQUEID u-user.a.X UID (1))",
        );
        let t = s.tick();
        s.h.closed(1, t);
        s
    };
    // UID 1 expunged or not: both pass, and the read is checked.
    for records in [vec![(1, G1, ""), (2, G2, "")], vec![(2, G2, "")]] {
        let mut s = setup();
        s.read(
            2,
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply("user.a.X", 2, 6, &records)],
        );
        let r = s.check();
        assert!(r.ok() && r.reads_checked == 1, "{records:?}: {r:#?}");
    }
    // The mailbox gone, or UID 2 gone: a lost acknowledged write.
    for (read, answer) in [
        ("GET MAILBOXES (user.a.X)", vec![]),
        (
            "GET FULLMAILBOX user.a.X",
            vec![mailbox_reply("user.a.X", 2, 6, &[(1, G1, "")])],
        ),
    ] {
        let mut s = setup();
        s.read(2, read, answer.clone());
        let r = s.check();
        assert_eq!(r.violations.len(), 1, "{read} {answer:?}: {r:#?}");
    }
}

/// An unanswered `APPLY MAILBOX` that carries the acknowledged ACL and
/// annotations unchanged leaves them so: their loss meanwhile is caught. One
/// that carries others may have applied them: they are not held.
#[test]
fn an_unanswered_apply_mailbox_holds_the_acl_it_does_not_change() {
    let acked = acl_mailbox("ac\tlrswipkxtecdan\tanyone\tlr\t", "hello");
    for (dropped, caught) in [
        (acked.replace("HIGHESTMODSEQ 3", "HIGHESTMODSEQ 4"), true),
        (
            acl_mailbox("ac\tlrswipkxtecdan\t", "bye")
                .replace("HIGHESTMODSEQ 3", "HIGHESTMODSEQ 4"),
            false,
        ),
    ] {
        let mut s = Script::new();
        s.ok(1, &format!("APPLY MAILBOX {acked}"));
        s.send(1, &format!("APPLY MAILBOX {dropped}"));
        let t = s.tick();
        s.h.closed(1, t);
        // The read lacks `anyone` and shows another comment.
        s.read(
            2,
            "GET FULLMAILBOX user.ac.X",
            vec![Reply::Data(
                "MAILBOX".into(),
                value(&acl_mailbox("ac\tlrswipkxtecdan\t", "bye")),
            )],
        );
        let whats: Vec<String> = s
            .check()
            .violations
            .iter()
            .map(|v| v.what.clone())
            .collect();
        if caught {
            assert_eq!(
                whats,
                [
                    "ACL entry anyone lr missing",
                    "annotation /comment (shared) has another value"
                ],
                "{dropped}"
            );
        } else {
            assert!(whats.is_empty(), "{dropped}: {whats:?}");
        }
    }
}
