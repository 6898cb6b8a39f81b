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
/// Not a Cyrus bug: docs/findings/delete-user.md has the evidence.
pub const DELETED_USER_SUBSCRIPTIONS: Known = Known {
    name: "a deleted user's subscriptions stay in a backupd backup",
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
        mailbox == inbox || mailbox.starts_with(&format!("{inbox}."))
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
                l.split_once(": subscription to ")
                    .and_then(|(_, rest)| rest.strip_suffix(" on the backup only"))
                    .is_some_and(|m| of_deleted(m, &deleted))
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
                    })
                    .is_some_and(|m| of_deleted(m.trim(), &deleted))
            });
            any && all
        }
        _ => false,
    });
    explained.then_some(DELETED_USER_SUBSCRIPTIONS)
}
