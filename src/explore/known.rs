//! Behaviours already triaged as real Cyrus behaviour, each kept as a bundled
//! scenario with `known_failure` and its evidence on a real target. A case
//! whose every failed check is explained by one of them is counted as known,
//! not shrunk again; anything it does not explain keeps the case a failure.

use crate::runner::ScenarioReport;
use crate::scenario::ledger::Class;
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
/// `APPLY UNQUOTA`, and a server annotation `GET ANNOTATION`; backupd answers
/// `NO`, the pass bails out, `log-run` is replayed for ever and every later
/// change waits in `log`. A Cyrus bug: docs/findings/halted-rolling-replication.md.
pub const HALTED_ROLLING_REPLICATION: Known = Known {
    name: "an UNQUOTA or server annotation entry halts rolling replication to backupd",
    scenario: "scenarios/operators/quota-entry-halts-backup.toml",
};

/// The commands whose refusal by backupd halts a rolling client.
const HALTING: [&str; 2] = ["APPLY UNQUOTA: NO ", "GET ANNOTATION: NO "];

/// Whether `report` is the halt: the fake as backupd refused a halting
/// command, and every failure is a difference of a user who still has a
/// change queued in the channel log (what a halted client never carries).
/// Lost changes, an acknowledged write lost, or anything else: not this.
fn halted(report: &ScenarioReport) -> bool {
    if report.target != "fake"
        || !report
            .stats
            .refused
            .iter()
            .any(|r| HALTING.iter().any(|h| r.starts_with(h)))
    {
        return false;
    }
    let queued = |user: &str| {
        report
            .ledger
            .iter()
            .any(|c| c.class == Class::Queued && c.entry.change.user() == user)
    };
    report.checks.iter().filter(|c| !c.ok).all(|c| {
        let mut any = false;
        let all = c.name == "converged"
            && items(&c.detail).all(|l| {
                any = true;
                // `- user U, mailbox M: …` or `- user U: …`
                l.strip_prefix("- user ")
                    .and_then(|rest| rest.split([',', ':']).next())
                    .is_some_and(queued)
            });
        any && all
    })
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
    /// when the fake as backupd refused APPLY UNQUOTA or GET ANNOTATION and
    /// every difference is of a user with a change still queued; not known
    /// without the refusal, for a user with nothing queued, on a replica, or
    /// with any other failed check.
    #[test]
    fn a_halt_is_known_only_by_its_refusal_and_queued_changes() {
        let s = case("[[step]]\nsync = { mode = \"rolling-once\" }");
        let missing =
            "not converged: 1 difference(s)\n  - user u2, mailbox user.u2, UID 1: lost: message g";
        let halted = |refused: &str, ledger: Vec<Classified>, checks: &[(&str, &str)]| {
            let mut r = failed(checks);
            r.stats.refused = vec![refused.to_owned()];
            r.ledger = ledger;
            r
        };
        let unquota = "APPLY UNQUOTA: NO IMAP_PROTOCOL_ERROR Protocol error";
        let annotation = "GET ANNOTATION: NO IMAP_PROTOCOL_ERROR Protocol error";
        for refused in [unquota, annotation] {
            let r = halted(
                refused,
                vec![queued("u2", Class::Queued)],
                &[("converged", missing)],
            );
            assert_eq!(explain(&s, &r), Some(HALTED_ROLLING_REPLICATION));
        }
        // Another refusal: not the halt.
        let other = halted(
            "APPLY MESSAGE: NO IMAP_PROTOCOL_ERROR Protocol error",
            vec![queued("u2", Class::Queued)],
            &[("converged", missing)],
        );
        assert_eq!(explain(&s, &other), None);
        // u2's change is lost, not queued; or only u1 has one queued.
        for ledger in [
            vec![queued("u2", Class::Lost)],
            vec![queued("u1", Class::Queued)],
        ] {
            let r = halted(unquota, ledger, &[("converged", missing)]);
            assert_eq!(explain(&s, &r), None);
        }
        // Another failed check beside the convergence.
        let acked = halted(
            unquota,
            vec![queued("u2", Class::Queued)],
            &[
                ("converged", missing),
                ("acknowledged writes kept", "acknowledged write lost: 1"),
            ],
        );
        assert_eq!(explain(&s, &acked), None);
        // A replica serves UNQUOTA: never this halt.
        let mut replica = halted(
            unquota,
            vec![queued("u2", Class::Queued)],
            &[("converged", missing)],
        );
        replica.target = "fake-sync_server".into();
        assert_eq!(explain(&s, &replica), None);
    }
}
