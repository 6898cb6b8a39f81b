//! Where the generator's faults and triggers go: the commands the next client
//! run will send (a rule on a command no run sends never fires), the verb a
//! drawn rule is aimed at, and the fault rule table as a scenario writes it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::gen::{Change, FaultKind, GenStep, SyncMode, NO_CODES, VERBS};
use super::render::q;

/// The commands a change makes the next client run send.
pub(super) fn change_verbs(c: &Change) -> &'static [&'static str] {
    match c {
        Change::Append { .. } | Change::Move { .. } => {
            &["APPLY MAILBOX", "APPLY RESERVE", "APPLY MESSAGE"]
        }
        Change::Create {
            subscribe: true, ..
        } => &["APPLY MAILBOX", "APPLY SUB"],
        Change::Flag { .. }
        | Change::Seen { .. }
        | Change::Expunge { .. }
        | Change::Create { .. }
        | Change::Metadata { .. }
        | Change::Annotate { .. } => &["APPLY MAILBOX"],
        Change::Delete { .. } => &["APPLY UNMAILBOX"],
        Change::Rename { .. } => &["APPLY RENAME"],
        Change::Subscribe { on: true, .. } => &["APPLY SUB"],
        Change::Subscribe { .. } => &["APPLY UNSUB"],
        Change::Quota { .. } => &["APPLY QUOTA"],
        Change::DeleteUser { .. } => &["APPLY UNUSER"],
    }
}

/// What the next one-shot run after `pending` changes and the `rest` of the
/// steps up to it will send (empty: no such run). A fault or trigger on a
/// command no run sends never fires, so the renderer points them at these.
pub(super) fn next_run_verbs(
    pending: &BTreeSet<&'static str>,
    rest: &[GenStep],
) -> Vec<&'static str> {
    let mut verbs = pending.clone();
    for s in rest {
        match s {
            GenStep::Change(c) => verbs.extend(change_verbs(c)),
            GenStep::Sync(mode) => {
                verbs.insert(match mode {
                    SyncMode::User(_) | SyncMode::All => "GET USER",
                    SyncMode::RollingOnce | SyncMode::Mailbox(..) => "GET MAILBOXES",
                });
                return verbs.into_iter().collect();
            }
            _ => {}
        }
    }
    Vec::new()
}

/// The verb a fault or trigger drawn as `v` waits for: `v` when the next run
/// sends it, else one the next run sends (`v` chooses which).
pub(super) fn aim(v: u8, expected: &[&'static str]) -> &'static str {
    let drawn = verb(v);
    if expected.is_empty() || expected.contains(&drawn) {
        drawn
    } else {
        expected[usize::from(v) % expected.len()]
    }
}

pub(super) fn verb(v: u8) -> &'static str {
    VERBS[usize::from(v) % VERBS.len()]
}

/// A fault rule table. The loss faults go where they lose data: a lie about
/// an upload or a mailbox, a hidden GUID in RESERVE's answer, a corruption
/// of what a mailbox (or a subscription) update stored.
pub(super) fn fault(
    name: &str,
    kind: FaultKind,
    v: &str,
    user: Option<&str>,
    nth: Option<u8>,
) -> String {
    let v = match kind {
        FaultKind::Lie if !matches!(v, "APPLY MESSAGE" | "APPLY MAILBOX") => "APPLY MAILBOX",
        FaultKind::HideMissing => "APPLY RESERVE",
        FaultKind::Corrupt(i) => corruption(i).1,
        _ => v,
    };
    let (action, extra) = match kind {
        FaultKind::DropBefore => ("drop-before", String::new()),
        FaultKind::DropAfter => ("drop-after", String::new()),
        FaultKind::PartialReply(b) => ("partial-reply", format!(", bytes = {b}")),
        FaultKind::Delay(ms) => ("delay", format!(", delay_ms = {ms}")),
        FaultKind::No(c) => (
            "no",
            format!(", code = \"{}\"", NO_CODES[usize::from(c) % NO_CODES.len()]),
        ),
        FaultKind::Bad => ("bad", ", text = \"Unrecognized command\"".to_owned()),
        FaultKind::Bye => ("bye", ", text = \"Fatal error: shutting down\"".to_owned()),
        FaultKind::Restart(ms) => ("restart", format!(", for_ms = {ms}")),
        FaultKind::Stall => ("stall", String::new()),
        FaultKind::RefuseConnections(ms) => ("refuse-connections", format!(", for_ms = {ms}")),
        FaultKind::Lie => ("lie", String::new()),
        FaultKind::HideMissing => ("hide-missing", String::new()),
        FaultKind::Corrupt(i) => ("corrupt", format!(", what = \"{}\"", corruption(i).0)),
    };
    let mut when = format!("verb = {}", q(v));
    if let Some(u) = user {
        let _ = write!(when, ", user = {}", q(u));
    }
    let nth = nth.map(|n| format!(", nth = {n}")).unwrap_or_default();
    format!("{{ name = \"{name}\", when = {{ {when} }}{nth}, action = \"{action}\"{extra} }}")
}

/// A corruption's name and the command whose stored state it breaks.
fn corruption(i: u8) -> (&'static str, &'static str) {
    let all = crate::fault::Corruption::ROWS;
    let c = all[usize::from(i) % all.len()];
    let verb = match c.name() {
        "subscription" => "APPLY SUB",
        "quota" => "APPLY QUOTA",
        _ => "APPLY MAILBOX",
    };
    (c.name(), verb)
}

/// The change a loss fault needs the run it waits for to carry, so that it
/// fires on a command that stores something and breaks what it stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LossData {
    /// One message appended (with these flags): `APPLY RESERVE` naming its
    /// mailbox and the body missing, `APPLY MESSAGE`, `APPLY MAILBOX`.
    Append(&'static [&'static str]),
    /// One message appended and annotated (a message annotation to drop).
    AppendAnnotated,
    /// One message appended, and a mailbox annotation set.
    AppendMetadata,
    /// A folder created and subscribed (`APPLY SUB` of it).
    Subscribe,
}

/// Where a loss fault goes: the command it fires on (the first of its kind
/// naming the mailbox the data goes to, but `APPLY MESSAGE`, which names
/// none), the corruption it makes, and the data the run must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LossAim {
    pub verb: &'static str,
    pub corruption: Option<crate::fault::Corruption>,
    pub data: LossData,
}

/// Aim a loss fault drawn as `kind` on verb index `v`. `subscriptions`: the
/// run it waits for sends `APPLY SUB` (`-m` does not). A corruption that
/// cannot break anything on a backupd target is drawn again among those of
/// a mailbox: quota (backupd keeps none), a subscription where no `APPLY
/// SUB` is sent.
pub(super) fn loss_aim(kind: FaultKind, v: u8, subscriptions: bool) -> LossAim {
    use crate::fault::Corruption as C;
    match kind {
        FaultKind::Lie if verb(v) == "APPLY MESSAGE" => LossAim {
            verb: "APPLY MESSAGE",
            corruption: None,
            data: LossData::Append(&[]),
        },
        FaultKind::HideMissing => LossAim {
            verb: "APPLY RESERVE",
            corruption: None,
            data: LossData::Append(&[]),
        },
        FaultKind::Corrupt(i) => {
            let all = C::ROWS;
            let mut c = all[usize::from(i) % all.len()];
            if c == C::Quota || (c == C::Subscription && !subscriptions) {
                let mailbox: Vec<C> = all
                    .iter()
                    .copied()
                    .filter(|c| !matches!(c, C::Quota | C::Subscription | C::DeletedMailbox))
                    .collect();
                c = mailbox[usize::from(i) % mailbox.len()];
            }
            let data = match c {
                C::Subscription => LossData::Subscribe,
                C::Flag => LossData::Append(&["\\Flagged"]),
                C::Seen => LossData::Append(&["\\Seen"]),
                C::MessageAnnotation => LossData::AppendAnnotated,
                C::MailboxAnnotation => LossData::AppendMetadata,
                _ => LossData::Append(&[]),
            };
            LossAim {
                verb: if c == C::Subscription {
                    "APPLY SUB"
                } else {
                    "APPLY MAILBOX"
                },
                corruption: Some(c),
                data,
            }
        }
        _ => LossAim {
            verb: "APPLY MAILBOX",
            corruption: None,
            data: LossData::Append(&[]),
        },
    }
}

/// A loss fault's rule: on the first command `aim` names (of `mailbox`,
/// when given).
pub(super) fn loss_rule(
    name: &str,
    kind: FaultKind,
    aim: &LossAim,
    mailbox: Option<&str>,
) -> String {
    let (action, extra) = match (kind, aim.corruption) {
        (FaultKind::HideMissing, _) => ("hide-missing", String::new()),
        (FaultKind::Corrupt(_), Some(c)) => ("corrupt", format!(", what = \"{}\"", c.name())),
        _ => ("lie", String::new()),
    };
    let mut when = format!("verb = {}", q(aim.verb));
    if let Some(m) = mailbox {
        let _ = write!(when, ", mailbox = {}", q(m));
    }
    format!("{{ name = \"{name}\", when = {{ {when} }}, nth = 1, action = \"{action}\"{extra} }}")
}
