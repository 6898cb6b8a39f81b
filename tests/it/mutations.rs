//! Every row the convergence check compares can fail (issue 15 §3,
//! `docs/oracle.md`): for each row, a `corrupt` fault makes the fake
//! acknowledge a command and then break exactly that kind of state, with the
//! real sync_client replicating a real change; the check must fail, and every
//! difference it lists must be that row's. A row without such a test is not a
//! row. So too for the `bodies` check: a `body` corruption flips a byte of a
//! stored body, and the check must name it.

use std::path::Path;

use backupd_sim::fault::Corruption;
use backupd_sim::harness::{Harness, HarnessOptions, Target};
use backupd_sim::rng::Seed;
use backupd_sim::runner::{run_on, RunOptions, Verdict};
use backupd_sim::scenario::Scenario;

use crate::util::cyrus_bins;

/// One mutation: the corruption, the source change that gives it something
/// to break, the command it fires on (after that command is acknowledged),
/// the check that must fail, and the words every line it reports must contain.
struct Case {
    what: Corruption,
    change: &'static str,
    when: &'static str,
    check: &'static str,
    named: &'static str,
}

/// `@` is replaced by the case's user.
const CASES: [Case; 18] = [
    Case {
        what: Corruption::ForgetMailbox,
        change: r#"append = { user = "@", folder = "INBOX.Sent" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@.Sent""#,
        check: "converged",
        named: "mailbox missing on the backup",
    },
    Case {
        what: Corruption::Uniqueid,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "uniqueid: source",
    },
    Case {
        what: Corruption::Uidvalidity,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "UIDVALIDITY: source",
    },
    Case {
        what: Corruption::LastUid,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "last UID: source",
    },
    Case {
        what: Corruption::Highestmodseq,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "HIGHESTMODSEQ: source",
    },
    Case {
        what: Corruption::ForgetMessage,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "lost: message",
    },
    Case {
        what: Corruption::Guid,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "GUID: source",
    },
    Case {
        what: Corruption::Flag,
        change: r#"flag = { user = "@", uids = "1", add = ["$Label1"] }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "flags: source",
    },
    Case {
        what: Corruption::Seen,
        change: r#"seen = { user = "@", folder = "INBOX", uids = "1" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "owner's \\Seen: source seen, backup unseen",
    },
    Case {
        what: Corruption::Internaldate,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "INTERNALDATE: source",
    },
    Case {
        what: Corruption::Size,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "size: source",
    },
    Case {
        what: Corruption::MailboxAnnotation,
        change: r#"metadata = { user = "@", entry = "/private/comment", value = "mine" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "mailbox annotation /private/comment = \"mine\" missing on the backup",
    },
    Case {
        what: Corruption::Acl,
        change: r#"acl = { user = "@", identifier = "anyone", rights = "lr" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "ACL of anyone (lr) missing on the backup",
    },
    Case {
        what: Corruption::MessageAnnotation,
        change: r#"annotate = { user = "@", uids = "1", entry = "/comment", value = "note" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "converged",
        named: "message annotation /comment value.priv = \"note\" missing on the backup",
    },
    Case {
        what: Corruption::Subscription,
        change: r#"subscribe = { user = "@", folder = "INBOX.Work.Projects" }"#,
        when: r#"verb = "APPLY SUB", mailbox = "user.@.Work.Projects""#,
        check: "converged",
        named: "subscription to user.@.Work.Projects missing on the backup",
    },
    Case {
        what: Corruption::DeletedMailbox,
        change: r#"delete = { user = "@", folder = "INBOX.Work.Projects" }"#,
        when: r#"verb = "APPLY MAILBOX""#,
        check: "converged",
        named: "deleted mailbox missing on the backup",
    },
    // Only the sync_server personality keeps quota (backupd ignores it): this
    // case runs there.
    Case {
        what: Corruption::Quota,
        change: r#"quota = { user = "@", storage = 5000 }"#,
        when: r#"verb = "APPLY QUOTA""#,
        check: "converged",
        named: "quota root user.@ {\"STORAGE\": 5000} missing on the backup",
    },
    // Not a row of the convergence check (the metadata still agrees): the
    // `bodies` check reads every body the fake stored back.
    Case {
        what: Corruption::Body,
        change: r#"append = { user = "@" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        check: "bodies",
        named: "stored body does not hash to",
    },
];

/// The personality a case runs on: quota only where it is kept.
fn target_of(c: &Case) -> Target {
    if c.what == Corruption::Quota {
        Target::FakeSyncServer
    } else {
        Target::Fake
    }
}

fn scenario(user: &str, c: &Case, with_fault: bool) -> Scenario {
    let fault = if with_fault {
        format!(
            "[[step]]\nfault = {{ when = {{ {} }}, nth = 1, action = \"corrupt\", what = \"{}\" }}\n",
            c.when.replace('@', user),
            c.what
        )
    } else {
        String::new()
    };
    let text = format!(
        "description = \"mutation {what}\"\n\
         [[user]]\nname = \"{user}\"\n\
         [[step]]\n{change}\n{fault}\
         [[step]]\nsync = {{ mode = \"rolling-once\", expect_exit = 0 }}\n\
         [expect]\nconverged = true\n",
        what = c.what,
        change = c.change.replace('@', user),
    );
    Scenario::parse(&text, Path::new("mutation.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Every corruption in the vocabulary has a case here, and each case fails its
/// check (the convergence check, with only its own row's differences; the
/// bodies check for a body); without the fault the same scenario passes.
#[test]
fn every_compared_row_fails_when_the_fake_corrupts_it() {
    let covered: Vec<Corruption> = CASES.iter().map(|c| c.what).collect();
    assert_eq!(
        covered,
        Corruption::ALL,
        "one case per corruption, in order"
    );
    let Some(bins) = cyrus_bins() else {
        return;
    };
    let mut missed = Vec::new();
    for target in [Target::Fake, Target::FakeSyncServer] {
        let (h, opts) = harness(&bins, &target);
        for (i, c) in CASES.iter().enumerate() {
            if target_of(c) != target {
                continue;
            }
            let user = format!("mut{i}");
            let report = run_on(&h, &scenario(&user, c, true), &opts, Seed(15));
            let failed = report.checks.iter().find(|k| k.name == c.check);
            let lines: Vec<&str> = failed
                .map(|k| {
                    k.detail
                        .lines()
                        .filter_map(|l| {
                            // The convergence check lists `  - difference`
                            // lines; the bodies check one problem a line.
                            if c.check == "converged" {
                                l.strip_prefix("  - ")
                            } else {
                                Some(l)
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let named = c.named.replace('@', &user);
            let ok = report.verdict == Verdict::Fail
                && failed.is_some_and(|k| !k.ok)
                && !lines.is_empty()
                && lines.iter().all(|l| l.contains(&named));
            if !ok {
                missed.push(format!(
                    "{}: want every difference to say `{named}`; verdict {:?}:\n{:#?}\n{}",
                    c.what,
                    report.verdict,
                    report.failures(),
                    h.transcript()
                        .lines()
                        .filter(|l| l.contains("corrupt"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
}

/// A harness on `target` and the options to run scenarios on it.
fn harness(bins: &backupd_sim::cyrus::CyrusBins, target: &Target) -> (Harness, RunOptions) {
    let mut hopts = HarnessOptions::new(bins.clone());
    hopts.target = target.clone();
    let opts = RunOptions::new(bins.clone(), target.clone());
    (Harness::start(hopts).expect("harness"), opts)
}

/// The control: the same scenarios without the fault pass, so each failure
/// above is the mutation's.
#[test]
fn the_mutation_scenarios_pass_without_the_fault() {
    let Some(bins) = cyrus_bins() else {
        return;
    };
    for target in [Target::Fake, Target::FakeSyncServer] {
        let (h, opts) = harness(&bins, &target);
        // One scenario per distinct change.
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in CASES.iter().enumerate() {
            if target_of(c) != target || !seen.insert(c.change) {
                continue;
            }
            let user = format!("ctl{i}");
            let report = run_on(&h, &scenario(&user, c, false), &opts, Seed(15));
            assert_eq!(
                report.verdict,
                Verdict::Pass,
                "{}: {:#?}",
                c.what,
                report.failures()
            );
        }
    }
}

/// A lie (`OK` without storing) on every command that carries a removal or
/// a new value leaves the backup with what the source no longer has: the
/// other direction of the rows above, which no corruption reaches (each
/// removes or lowers state). `before` is synced first; `change` is the
/// change the lies swallow. No catch-up: sync_client retries a failed
/// rename in its next pass, which would heal the state (the history check
/// still fails such a run: `history.rs`).
struct Lie {
    before: &'static str,
    change: &'static str,
    when: &'static str,
    target: Target,
    named: &'static str,
}

const LIES: [Lie; 7] = [
    Lie {
        before: r#"append = { user = "@", count = 2 }"#,
        change: r#"expunge = { user = "@", uids = "1" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        target: Target::Fake,
        named: "is live on the backup but expunged or absent on the source",
    },
    Lie {
        before: r#"subscribe = { user = "@", folder = "INBOX.Work.Projects" }"#,
        change: r#"unsubscribe = { user = "@", folder = "INBOX.Work.Projects" }"#,
        when: r#"verb = "APPLY UNSUB", mailbox = "user.@.Work.Projects""#,
        target: Target::Fake,
        named: "subscription to user.@.Work.Projects on the backup only",
    },
    Lie {
        before: r#"append = { user = "@", folder = "INBOX.Work.Projects" }"#,
        change: r#"delete = { user = "@", folder = "INBOX.Work.Projects" }"#,
        when: r#"verb = "APPLY RENAME""#,
        target: Target::Fake,
        named: "mailbox on the backup only",
    },
    Lie {
        before: r#"acl = { user = "@", identifier = "anyone", rights = "lr" }"#,
        change: r#"acl = { user = "@", identifier = "anyone", rights = "lrs" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        target: Target::Fake,
        named: "ACL of anyone: source lrs, backup lr",
    },
    Lie {
        before: r#"metadata = { user = "@", entry = "/private/comment", value = "mine" }"#,
        change: r#"metadata = { user = "@", entry = "/private/comment", value = "yours" }"#,
        when: r#"verb = "APPLY MAILBOX", mailbox = "user.@""#,
        target: Target::Fake,
        named: "mailbox annotation /private/comment: source \"yours\", backup \"mine\"",
    },
    // A flag set, then the folder deleted: the DELETED.* copy that missed
    // the flag is behind on HIGHESTMODSEQ (flags of a deleted mailbox are
    // not read: it is compared on its counters).
    Lie {
        before: r#"append = { user = "@", folder = "INBOX.Sent" }"#,
        change:
            "flag = { user = \"@\", folder = \"INBOX.Sent\", uids = \"1\", add = [\"$Label1\"] }\n\
                 [[step]]\ndelete = { user = \"@\", folder = \"INBOX.Sent\" }",
        when: r#"verb = "APPLY MAILBOX""#,
        target: Target::Fake,
        named: "deleted mailbox HIGHESTMODSEQ: source",
    },
    Lie {
        before: r#"quota = { user = "@", storage = 5000 }"#,
        change: r#"quota = { user = "@", storage = 6000 }"#,
        when: r#"verb = "APPLY QUOTA""#,
        target: Target::FakeSyncServer,
        named: "quota root user.@: limits: source {\"STORAGE\": 6000}, backup {\"STORAGE\": 5000}",
    },
];

fn lie_scenario(user: &str, l: &Lie, with_fault: bool) -> Scenario {
    let fault = if with_fault {
        format!(
            "[[step]]\nfault = {{ when = {{ {} }}, action = \"lie\" }}\n",
            l.when.replace('@', user)
        )
    } else {
        String::new()
    };
    let text = format!(
        "description = \"a lie\"\n\
         [[user]]\nname = \"{user}\"\n\
         [[step]]\n{before}\n\
         [[step]]\nsync = {{ mode = \"rolling-once\", expect_exit = 0 }}\n\
         {fault}\
         [[step]]\n{change}\n\
         [[step]]\nsync = {{ mode = \"rolling-once\" }}\n\
         [expect]\nconverged = true\ncatch_up = false\n",
        before = l.before.replace('@', user),
        change = l.change.replace('@', user),
    );
    Scenario::parse(&text, Path::new("lie.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Each lie fails the convergence check with its row among the differences
/// (a lie also fails the history check: both are fine here); without the
/// lie the same scenario passes.
#[test]
fn the_backups_extras_fail_the_convergence_check() {
    let Some(bins) = cyrus_bins() else {
        return;
    };
    let mut missed = Vec::new();
    for target in [Target::Fake, Target::FakeSyncServer] {
        let (h, opts) = harness(&bins, &target);
        for (i, l) in LIES.iter().enumerate() {
            if l.target != target {
                continue;
            }
            let user = format!("lie{i}");
            let named = l.named.replace('@', &user);
            let report = run_on(&h, &lie_scenario(&user, l, true), &opts, Seed(15));
            let converged = report.checks.iter().find(|k| k.name == "converged");
            let caught = report.verdict == Verdict::Fail
                && converged.is_some_and(|k| {
                    !k.ok
                        && k.detail
                            .lines()
                            .filter_map(|l| l.strip_prefix("  - "))
                            .any(|l| l.contains(&named))
                });
            if !caught {
                missed.push(format!(
                    "{}: want a difference saying `{named}`; verdict {:?}:\n{:#?}",
                    l.change,
                    report.verdict,
                    report.failures()
                ));
            }
            let user = format!("honest{i}");
            let control = run_on(&h, &lie_scenario(&user, l, false), &opts, Seed(15));
            if control.verdict != Verdict::Pass {
                missed.push(format!(
                    "{} without the lie: {:?}\n{:#?}",
                    l.change,
                    control.verdict,
                    control.failures()
                ));
            }
        }
    }
    assert!(missed.is_empty(), "{}", missed.join("\n\n"));
}

/// A known failure of `converged` excuses the differences it names, not a
/// new one in the same check: `basic/delete-user.toml` (XFAIL: backupd keeps
/// a deleted user's subscriptions) with one of dora's messages forgotten by
/// the fake is a FAIL, and the `known_failure` check names the new line.
#[test]
fn a_known_failure_does_not_hide_a_new_difference_in_its_check() {
    let Some(bins) = cyrus_bins() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text =
        std::fs::read_to_string(root.join("scenarios/basic/delete-user.toml")).expect("bundled");
    let opts = RunOptions::new(bins, Target::Fake);
    let known = backupd_sim::runner::run_scenario(
        &Scenario::parse(&text, Path::new("delete-user.toml")).expect("parse"),
        &opts,
    );
    assert_eq!(known.verdict, Verdict::Xfail, "{:#?}", known.failures());
    let faulty = text.replace(
        "[[step]]\nsync = ",
        "[[step]]\nappend = { user = \"dora\" }\n\
         [[step]]\nfault = { when = { verb = \"APPLY MAILBOX\", mailbox = \"user.dora\" }, nth = 1, action = \"corrupt\", what = \"forget-message\" }\n\
         [[step]]\nsync = ",
    );
    assert_ne!(faulty, text);
    let r = backupd_sim::runner::run_scenario(
        &Scenario::parse(&faulty, Path::new("delete-user.toml")).expect("parse"),
        &opts,
    );
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    let k = r.checks.iter().find(|c| c.name == "known_failure");
    assert!(
        k.is_some_and(|c| !c.ok
            && c.detail.contains("user dora, mailbox user.dora, UID")
            && c.detail.contains("lost: message")
            && !c.detail.contains("user dino")),
        "{:#?}",
        r.checks
    );
}
