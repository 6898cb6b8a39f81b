//! Behaviours already triaged as real Cyrus behaviour, each kept as a bundled
//! scenario with `known_failure` and its evidence on a real target. A case
//! whose every failed check is explained by one of them is counted as known,
//! not shrunk again; anything it does not explain keeps the case a failure.

use crate::runner::ScenarioReport;
use crate::scenario::ledger::{Change, Class};
use crate::scenario::{Scenario, Step};

/// A triaged behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Short name.
    pub name: &'static str,
    /// The bundled scenario that shows it.
    pub scenario: &'static str,
}

/// backupd ignores `APPLY UNUSER` by design (a backup keeps a deleted user): a
/// deleted user's subscriptions stay in the backup, and its SUB/UNSUB changes
/// pending at the deletion are dropped by the client in favour of the UNUSER.
/// When the deletion reaches the target only as UNUSER (a rolling pass whose
/// mailbox step failed falls back to the user, finds it gone and sends
/// UNUSER alone: explore --seed 18, case 2354), the user's mailboxes stay too,
/// never renamed to `DELETED.*`. Not a Cyrus bug: docs/findings/delete-user.md
/// has the evidence.
pub const DELETED_USER_SUBSCRIPTIONS: Known = Known {
    name: "a deleted user stays in a backupd backup (its subscriptions, or all of it when only UNUSER reaches the backup)",
    scenario: "scenarios/basic/delete-user.toml",
};

/// A rolling client replicating to backupd halts on a channel-log entry that
/// backupd cannot serve: a `QUOTA` entry whose root is gone (a quota set, then
/// the user deleted or renamed before the client read it) makes it send
/// `APPLY UNQUOTA`, and an `ANNOTATION` entry (a server annotation, or a
/// mailbox's) `GET ANNOTATION`; backupd answers `NO`, the pass bails out,
/// `log-run` is replayed for ever and every later change waits in `log`. A
/// Cyrus bug: docs/findings/halted-rolling-replication.md.
pub const HALTED_ROLLING_REPLICATION: Known = Known {
    name: "an UNQUOTA or annotation entry halts rolling replication to backupd",
    scenario: "scenarios/operators/quota-entry-halts-backup.toml",
};

/// The commands whose refusal by backupd halts a rolling client.
const HALTING: [&str; 2] = ["APPLY UNQUOTA: NO ", "GET ANNOTATION: NO "];

/// The other refusals a halted pass brings: after the failed `UNQUOTA` the
/// client's `USER` loop sends `GET USER NIL`, which backupd refuses as a bad
/// parameter (the finding's transcript).
const HALT_ALSO_REFUSED: [&str; 1] = ["GET USER: NO IMAP_PROTOCOL_BAD_PARAMETERS"];

/// Whether `report` is the halt: the fake as backupd refused a halting
/// command and nothing else the halt does not bring, and every failure is a
/// difference in a mailbox (or of a user) with a change still queued in the
/// channel log (what a halted client never carries). Another refusal, lost
/// changes, an acknowledged write lost, a difference where nothing is queued,
/// or anything else: not this.
fn halted(report: &ScenarioReport) -> bool {
    let refused = &report.stats.refused;
    let halting = |r: &String| HALTING.iter().any(|h| r.starts_with(h));
    let brought = |r: &String| halting(r) || HALT_ALSO_REFUSED.iter().any(|h| r.starts_with(h));
    // A list that may miss refusals (events dropped, or the cap reached)
    // cannot show that nothing else was refused.
    let complete = report.stats.events_missed == 0 && refused.len() < crate::runner::REFUSED_MAX;
    if report.target != "fake"
        || !complete
        || !refused.iter().any(halting)
        || !refused.iter().all(brought)
    {
        return false;
    }
    let queued: Vec<&Change> = report
        .ledger
        .iter()
        .filter(|c| c.class == Class::Queued)
        .map(|c| &c.entry.change)
        .collect();
    report.checks.iter().filter(|c| !c.ok).all(|c| {
        let mut any = false;
        let all = c.name == "converged"
            && items(&c.detail).all(|l| {
                any = true;
                difference_place(l).is_some_and(|(user, mailbox)| {
                    queued
                        .iter()
                        .any(|q| q.user() == user && mailbox.is_none_or(|m| touches(q, m)))
                })
            });
        any && all
    })
}

/// The user and the mailbox a difference line names: `- user U, mailbox M,
/// UID N: …`, `- user U, mailbox M: …` or `- user U: …` (no mailbox). A line
/// of another shape names nothing.
fn difference_place(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix("- user ")?;
    let (head, _what) = rest.split_once(": ")?;
    match head.split_once(", mailbox ") {
        None => Some((head, None)),
        Some((user, place)) => {
            let mailbox = place.split_once(", UID ").map_or(place, |(m, _)| m);
            Some((user, Some(mailbox)))
        }
    }
}

/// Whether a queued `change` accounts for a difference in `mailbox`: it names
/// that mailbox; a rename, creation or deletion also accounts for the folders
/// under it, and a deletion for the mailbox's `DELETED.*` form.
fn touches(change: &Change, mailbox: &str) -> bool {
    use crate::types::names::at_or_under;
    match change {
        Change::Rename { from, to, .. } => at_or_under(mailbox, from) || at_or_under(mailbox, to),
        Change::Create { mailbox: m, .. } => at_or_under(mailbox, m),
        Change::Delete { mailbox: m, .. } => {
            at_or_under(mailbox, m)
                || mailbox
                    .strip_prefix("DELETED.")
                    .and_then(|d| d.rsplit_once('.'))
                    .is_some_and(|(name, _hex)| at_or_under(name, m))
        }
        Change::Quota { root, .. } => mailbox == root,
        Change::Append { mailbox: m, .. }
        | Change::Flags { mailbox: m, .. }
        | Change::Expunge { mailbox: m, .. }
        | Change::Metadata { mailbox: m, .. }
        | Change::Annotations { mailbox: m, .. }
        | Change::Acl { mailbox: m, .. }
        | Change::Subscription { mailbox: m, .. } => mailbox == m,
    }
}

fn deleted_users(s: &Scenario) -> Vec<String> {
    s.steps
        .iter()
        .filter_map(|st| match st {
            Step::DeleteUser(u) => Some(u.clone()),
            _ => None,
        })
        .collect()
}

/// `user.U` or one of its folders, for a deleted `U`.
fn of_deleted(mailbox: &str, deleted: &[String]) -> bool {
    deleted.iter().any(|u| {
        let inbox = format!("user.{u}");
        crate::types::names::at_or_under(mailbox, &inbox)
    })
}

/// The bullet lines of a check's detail (`- …` and `step N: …`).
fn items(detail: &str) -> impl Iterator<Item = &str> {
    detail
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("- user ") || (l.starts_with("step ") && l.contains(": ")))
}

/// The known behaviour that explains every failure of `report` (a run of
/// `s` on a backupd target), if one does.
pub fn explain(s: &Scenario, report: &ScenarioReport) -> Option<Known> {
    if report.error.is_some() || report.checks.iter().all(|c| c.ok) {
        return None;
    }
    if halted(report) {
        return Some(HALTED_ROLLING_REPLICATION);
    }
    let deleted = deleted_users(s);
    let failed: Vec<_> = report.checks.iter().filter(|c| !c.ok).collect();
    if deleted.is_empty() || failed.is_empty() || !report.target.starts_with("fake") {
        return None;
    }
    let explained = failed.iter().all(|c| match c.name.as_str() {
        "converged" => {
            let mut any = false;
            let all = items(&c.detail).all(|l| {
                any = true;
                // `- user U: subscription to MAILBOX on the backup only`
                let sub = l
                    .split_once(": subscription to ")
                    .and_then(|(_, rest)| rest.strip_suffix(" on the backup only"));
                // `- user U, mailbox MAILBOX: mailbox on the backup only`, and
                // `- user U, mailbox DELETED.MAILBOX.HEX: deleted mailbox
                // missing on the backup (N message(s))`
                let mailbox = l.split_once(", mailbox ").and_then(|(_, rest)| {
                    let (m, what) = rest.split_once(": ")?;
                    if what == "mailbox on the backup only" {
                        Some(m)
                    } else if what.starts_with("deleted mailbox missing on the backup") {
                        m.strip_prefix("DELETED.")
                    } else {
                        None
                    }
                });
                sub.or(mailbox).is_some_and(|m| of_deleted(m, &deleted))
            });
            any && all
        }
        "lost changes" => {
            let mut any = false;
            let all = items(&c.detail).all(|l| {
                any = true;
                // `step N: unsubscribe MAILBOX` / `step N: subscribe MAILBOX`
                l.split_once(": ")
                    .map(|(_, change)| change)
                    .and_then(|c| {
                        c.strip_prefix("unsubscribe ")
                            .or_else(|| c.strip_prefix("subscribe "))
                            .or_else(|| c.strip_prefix("delete "))
                    })
                    .is_some_and(|m| of_deleted(m.trim(), &deleted))
            });
            any && all
        }
        _ => false,
    });
    explained.then_some(DELETED_USER_SUBSCRIPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::{Check, Verdict};
    use crate::scenario::ledger::{Change, Classified, Entry};

    fn case(steps: &str) -> Scenario {
        let text = format!("description = \"k\"\n[[user]]\nname = \"u1\"\n[[user]]\nname = \"u2\"\n{steps}\n[expect]\nconverged = true\n");
        Scenario::parse(&text, std::path::Path::new("k.toml")).expect("scenario")
    }

    fn failed(checks: &[(&str, &str)]) -> ScenarioReport {
        let mut r = ScenarioReport::stub("k", Verdict::Fail);
        r.checks = checks
            .iter()
            .map(|(name, detail)| Check {
                name: (*name).into(),
                ok: false,
                detail: (*detail).into(),
            })
            .collect();
        r
    }

    /// The deleted user's subscriptions, and its whole tree when only UNUSER
    /// reached the backup (case 2354 of seed 18), are explained; anything of
    /// another user, or another kind of difference, is not.
    #[test]
    fn a_deleted_users_backup_is_known_and_nothing_else() {
        let deleted =
            case("[[step]]\ndelete_user = \"u1\"\n[[step]]\nsync = { mode = \"rolling-once\" }");
        let subs = "not converged: 1 difference(s)\n  - user u1: subscription to user.u1.Sent on the backup only";
        assert!(explain(&deleted, &failed(&[("converged", subs)])).is_some());
        let tree = "not converged: 3 difference(s)\n  - user u1, mailbox user.u1: mailbox on the backup only\n  \
                    - user u1, mailbox user.u1.Work: mailbox on the backup only\n  \
                    - user u1, mailbox DELETED.user.u1.Work.6B11B2C1: deleted mailbox missing on the backup (0 message(s))";
        let lost =
            "expected 0, ledger says 2:\n  step 1: delete user.u1\n  step 1: delete user.u1.Work";
        assert!(explain(
            &deleted,
            &failed(&[("converged", tree), ("lost changes", lost)])
        )
        .is_some());
        // Another user's mailbox, another difference, another check: not known.
        let other = "not converged: 1 difference(s)\n  - user u2, mailbox user.u2: mailbox on the backup only";
        assert!(explain(&deleted, &failed(&[("converged", other)])).is_none());
        let flags =
            "not converged: 1 difference(s)\n  - user u1, mailbox user.u1, UID 1: flags differ";
        assert!(explain(&deleted, &failed(&[("converged", flags)])).is_none());
        let acked = "acknowledged write lost: 1";
        assert!(explain(
            &deleted,
            &failed(&[("converged", subs), ("acknowledged writes kept", acked)])
        )
        .is_none());
        // No user deleted: nothing is known.
        let kept = case("[[step]]\nsync = { mode = \"rolling-once\" }");
        assert!(explain(&kept, &failed(&[("converged", tree)])).is_none());
    }

    fn queued(user: &str, class: Class) -> Classified {
        Classified {
            entry: Entry {
                step: 3,
                change: Change::Append {
                    user: user.into(),
                    mailbox: format!("user.{user}"),
                    uid: 1,
                    guid: "g".into(),
                },
            },
            class,
        }
    }

    /// A halted rolling client (tests/it/halts.rs runs the real one): known
    /// when the fake as backupd refused APPLY UNQUOTA or GET ANNOTATION (and
    /// nothing the halt does not bring) and every difference is in a mailbox
    /// with a change still queued; not known without the refusal, beside
    /// another refusal, for a mailbox or user with nothing queued, on a
    /// replica, or with any other failed check.
    #[test]
    fn a_halt_is_known_only_by_its_refusal_and_queued_changes() {
        let s = case("[[step]]\nsync = { mode = \"rolling-once\" }");
        let missing =
            "not converged: 1 difference(s)\n  - user u2, mailbox user.u2, UID 1: lost: message g";
        let halted = |refused: &[&str], ledger: Vec<Classified>, checks: &[(&str, &str)]| {
            let mut r = failed(checks);
            r.stats.refused = refused.iter().map(|x| (*x).to_owned()).collect();
            r.ledger = ledger;
            r
        };
        let unquota = "APPLY UNQUOTA: NO IMAP_PROTOCOL_ERROR Protocol error";
        let get_user_nil = "GET USER: NO IMAP_PROTOCOL_BAD_PARAMETERS Bad parameters";
        let annotation = "GET ANNOTATION: NO IMAP_PROTOCOL_ERROR Protocol error";
        let message = "APPLY MESSAGE: NO IMAP_PROTOCOL_ERROR Protocol error";
        let u2 = || vec![queued("u2", Class::Queued)];
        for refused in [&[unquota, get_user_nil][..], &[unquota], &[annotation]] {
            let r = halted(refused, u2(), &[("converged", missing)]);
            assert_eq!(
                explain(&s, &r),
                Some(HALTED_ROLLING_REPLICATION),
                "{refused:?}"
            );
        }
        // Another refusal, instead of the halting one or beside it; or only
        // the refusal a halt brings, without the halting one.
        for refused in [
            &[message][..],
            &[unquota, message],
            &[annotation, message],
            &[get_user_nil],
        ] {
            let r = halted(refused, u2(), &[("converged", missing)]);
            assert_eq!(explain(&s, &r), None, "{refused:?}");
        }
        // u2's change is lost, not queued; or only u1 has one queued.
        for ledger in [
            vec![queued("u2", Class::Lost)],
            vec![queued("u1", Class::Queued)],
        ] {
            let r = halted(&[unquota], ledger, &[("converged", missing)]);
            assert_eq!(explain(&s, &r), None);
        }
        // A difference in another of u2's mailboxes than the queued change's.
        let elsewhere = "not converged: 2 difference(s)\n  - user u2, mailbox user.u2, UID 1: lost: message g\n  \
                         - user u2, mailbox user.u2.Work, UID 4: flags differ";
        let r = halted(&[unquota], u2(), &[("converged", elsewhere)]);
        assert_eq!(explain(&s, &r), None);
        // A user-level difference of a user with a change queued: known.
        let user_level = "not converged: 1 difference(s)\n  - user u2: subscription to user.u2.Sent on the backup only";
        let r = halted(&[annotation], u2(), &[("converged", user_level)]);
        assert_eq!(explain(&s, &r), Some(HALTED_ROLLING_REPLICATION));
        // Another failed check beside the convergence.
        let acked = halted(
            &[unquota],
            u2(),
            &[
                ("converged", missing),
                ("acknowledged writes kept", "acknowledged write lost: 1"),
            ],
        );
        assert_eq!(explain(&s, &acked), None);
        // A refusal list that may be incomplete proves nothing.
        let mut missed = halted(&[unquota], u2(), &[("converged", missing)]);
        missed.stats.events_missed = 3;
        assert_eq!(explain(&s, &missed), None);
        let full: Vec<String> = (0..crate::runner::REFUSED_MAX)
            .map(|i| format!("APPLY UNQUOTA: NO IMAP_PROTOCOL_ERROR {i}"))
            .collect();
        let mut capped = halted(&[unquota], u2(), &[("converged", missing)]);
        capped.stats.refused = full;
        assert_eq!(explain(&s, &capped), None);
        // A replica serves UNQUOTA: never this halt.
        let mut replica = halted(&[unquota], u2(), &[("converged", missing)]);
        replica.target = "fake-sync_server".into();
        assert_eq!(explain(&s, &replica), None);
    }

    /// A queued change accounts for its own mailbox, and a rename, creation or
    /// deletion for the folders under it and a deletion's `DELETED.*` form.
    #[test]
    fn a_queued_change_accounts_for_the_mailboxes_it_touches() {
        let (user, m) = ("u".to_owned(), "user.u.A".to_owned());
        let append = Change::Append {
            user: user.clone(),
            mailbox: m.clone(),
            uid: 1,
            guid: "g".into(),
        };
        assert!(touches(&append, "user.u.A"));
        assert!(!touches(&append, "user.u.A.B"));
        assert!(!touches(&append, "user.u"));
        let delete = Change::Delete {
            user: user.clone(),
            mailbox: m.clone(),
        };
        assert!(touches(&delete, "user.u.A.B"));
        assert!(touches(&delete, "DELETED.user.u.A.6B11B2C1"));
        assert!(!touches(&delete, "DELETED.user.u.AB.6B11B2C1"));
        let rename = Change::Rename {
            user,
            from: m,
            to: "user.u.Z".into(),
        };
        assert!(touches(&rename, "user.u.A.B") && touches(&rename, "user.u.Z"));
        assert!(!touches(&rename, "user.u.B"));
        assert_eq!(
            difference_place("- user u, mailbox user.u.A, UID 3: flags differ"),
            Some(("u", Some("user.u.A")))
        );
        assert_eq!(
            difference_place("- user u: subscription to user.u.A on the backup only"),
            Some(("u", None))
        );
        assert_eq!(difference_place("step 3: append"), None);
    }
}
