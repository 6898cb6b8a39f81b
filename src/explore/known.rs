//! Behaviours already triaged as real Cyrus behaviour, each kept as a bundled
//! scenario with `known_failure` and its evidence on a real target. A case
//! whose every failed check is explained by one of them is counted as known,
//! not shrunk again; anything it does not explain keeps the case a failure.

use crate::runner::ScenarioReport;
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
    if report.error.is_some() {
        return None;
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
}
