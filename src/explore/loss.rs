//! What became of the loss faults a campaign drew (`--allow-loss-faults`):
//! per case, the loss faults its scenario sets up, those that fired (the
//! fake's events), and whether the case failed. A loss fault that fired on a
//! command carrying data and left the case passing is a gap in the oracle;
//! one that never fired, or fired on nothing, is a gap in the generator.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::events::{fault_action_name, Event, EventKind};
use crate::scenario::{Scenario, Step};

/// The loss actions.
pub const ACTIONS: [&str; 3] = ["lie", "hide-missing", "corrupt"];

fn is_loss(action: &str) -> bool {
    ACTIONS.contains(&fault_action_name(action))
}

/// One case that set up a loss fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossCase {
    /// The case's index.
    pub index: u64,
    /// The loss faults its scenario sets up (triggers' included).
    pub drawn: usize,
    /// Those that fired, each as `RULE ACTION on VERB`.
    pub fired: Vec<String>,
    /// Of those, the ones that changed nothing (a `corrupt` with nothing to
    /// break).
    pub hollow: usize,
    /// Whether the case failed (a known behaviour counted as failing).
    pub failed: bool,
}

impl LossCase {
    /// Whether a loss fault fired and broke something.
    pub fn fired_with_effect(&self) -> bool {
        self.fired.len() > self.hollow
    }
}

/// The loss faults `s` sets up.
pub fn drawn(s: &Scenario) -> usize {
    fn walk(steps: &[Step]) -> usize {
        steps
            .iter()
            .map(|st| match st {
                Step::Fault(f) if is_loss(&f.action) => 1,
                Step::Trigger { then, .. } => walk(then),
                _ => 0,
            })
            .sum()
    }
    walk(&s.steps)
}

/// The loss faults that fired in `events`: `RULE ACTION on VERB`, and how
/// many of them changed nothing.
pub fn fired(events: &[Event]) -> (Vec<String>, usize) {
    let mut verb: BTreeMap<u64, &str> = BTreeMap::new();
    let mut out = Vec::new();
    let mut hollow = 0;
    for e in events {
        match &e.kind {
            EventKind::Command { verb: v, .. } => {
                verb.insert(e.session, v);
            }
            EventKind::Fault { rule, action } if is_loss(action) => {
                if action.starts_with("corrupt") && breaks_nothing(action) {
                    hollow += 1;
                }
                let on = verb.get(&e.session).copied().unwrap_or("(connection)");
                out.push(format!("{rule} {action} on {on}"));
            }
            _ => {}
        }
    }
    (out, hollow)
}

/// A `corrupt` event's text says it found nothing to break
/// (`corrupt flag: user.u0: no live message to corrupt (flag)`).
fn breaks_nothing(action: &str) -> bool {
    action
        .split(": ")
        .skip(1)
        .any(|p| p.starts_with("no ") || p.ends_with(" not a message corruption"))
}

/// A campaign's loss-fault figures: cases that drew one, in which one fired
/// (with an effect), and of those how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases that set up a loss fault.
    pub drawn: usize,
    /// Cases in which one fired and broke something.
    pub fired: usize,
    /// Of those, the failing ones.
    pub fired_failed: usize,
    /// Cases that failed (whether or not a loss fault fired).
    pub failed: usize,
}

/// Tally `cases`.
pub fn tally(cases: &[LossCase]) -> Tally {
    let mut t = Tally::default();
    for c in cases {
        t.drawn += usize::from(c.drawn > 0);
        t.failed += usize::from(c.failed);
        if c.fired_with_effect() {
            t.fired += 1;
            t.fired_failed += usize::from(c.failed);
        }
    }
    t
}

/// The summary lines: the tally, the cases whose loss fault fired and that
/// passed (oracle gaps), and those whose never fired.
pub fn summary(cases: &[LossCase]) -> String {
    let t = tally(cases);
    let mut s = format!(
        "loss faults: drawn in {} case(s), fired in {}, of which {} failed; {} case(s) failed in all",
        t.drawn, t.fired, t.fired_failed, t.failed
    );
    let passed: Vec<String> = cases
        .iter()
        .filter(|c| c.fired_with_effect() && !c.failed)
        .map(|c| format!("case {} ({})", c.index, c.fired.join("; ")))
        .collect();
    if !passed.is_empty() {
        let _ = write!(
            s,
            "\nloss fault fired and the case passed: {}",
            passed.join(", ")
        );
    }
    let idle: Vec<String> = cases
        .iter()
        .filter(|c| c.drawn > 0 && !c.fired_with_effect())
        .map(|c| c.index.to_string())
        .collect();
    if !idle.is_empty() {
        let _ = write!(
            s,
            "\nloss fault drawn and never fired with an effect: case(s) {}",
            idle.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::{fired, tally, LossCase};
    use crate::events::{Event, EventKind};

    fn ev(seq: u64, session: u64, kind: EventKind) -> Event {
        Event {
            seq,
            t_us: seq,
            session,
            kind,
        }
    }

    fn fault(rule: &str, action: &str) -> EventKind {
        EventKind::Fault {
            rule: rule.into(),
            action: action.into(),
        }
    }

    /// Only loss faults count, each named with the command it fired on, and
    /// a `corrupt` that found nothing to break is hollow.
    #[test]
    fn fired_names_loss_faults_and_counts_hollow_corruptions() {
        let events = [
            ev(1, 1, EventKind::command("APPLY MAILBOX")),
            ev(2, 1, fault("F1", "lie")),
            ev(3, 1, fault("F2", "drop-before")),
            ev(4, 2, EventKind::command("APPLY RESERVE")),
            ev(5, 2, fault("F3", "hide-missing")),
            ev(6, 1, fault("F4", "corrupt flag: user.u0: flag of uid 1")),
            ev(
                7,
                1,
                fault(
                    "F5",
                    "corrupt flag: user.u0: no live message to corrupt (flag)",
                ),
            ),
        ];
        let (out, hollow) = fired(&events);
        assert_eq!(
            out,
            [
                "F1 lie on APPLY MAILBOX",
                "F3 hide-missing on APPLY RESERVE",
                "F4 corrupt flag: user.u0: flag of uid 1 on APPLY MAILBOX",
                "F5 corrupt flag: user.u0: no live message to corrupt (flag) on APPLY MAILBOX",
            ]
        );
        assert_eq!(hollow, 1);
    }

    /// A case counts as fired only when a loss fault broke something, and a
    /// fired case that passed is not counted as failing.
    #[test]
    fn tally_counts_only_fired_with_an_effect() {
        let case = |index, drawn, fired: &[&str], hollow, failed| LossCase {
            index,
            drawn,
            fired: fired.iter().map(|s| (*s).to_owned()).collect(),
            hollow,
            failed,
        };
        let t = tally(&[
            case(0, 1, &["F1 lie on APPLY MAILBOX"], 0, true),
            case(1, 1, &["F1 corrupt seen: no live message"], 1, false),
            case(2, 1, &[], 0, true),
            case(3, 1, &["F1 lie on APPLY MESSAGE"], 0, false),
        ]);
        assert_eq!((t.drawn, t.fired, t.fired_failed, t.failed), (4, 2, 1, 2));
    }
}
