//! What a campaign covered: the features its generated cases contain (read
//! back from the scenario files, so what is counted is what runs), and which
//! combinations of command x lock or fault x client mode actually fired.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};
use crate::fault::{Action, TriggerSpec};
use crate::scenario::{Policy, Scenario, Step};
use crate::timeline::{Annotation, AnnotationKind};

use super::gen::VERBS;
use super::render::BATCHSIZE;

/// Every feature the issue asks a 500-case dry run to reach (the loss faults
/// only with `--allow-loss-faults`).
pub const REQUIRED: &[&str] = &[
    "step:append",
    "step:flag",
    "step:seen",
    "step:expunge",
    "step:move",
    "step:create",
    "step:delete",
    "step:rename",
    "step:subscribe",
    "step:unsubscribe",
    "step:metadata",
    "step:annotate",
    "step:quota",
    "step:delete_user",
    "step:sync",
    "step:start",
    "step:stop",
    "step:kill",
    "step:wait_ms",
    "step:wait_for",
    "step:lock",
    "step:unlock",
    "step:fault",
    "step:clear",
    "step:mark",
    "step:trigger",
    "mode:rolling-once",
    "mode:user",
    "mode:all",
    "mode:mailbox",
    "mode:continuous",
    "policy:none",
    "policy:restart",
    "policy:restart-discard-log",
    "lock:user-hold",
    "lock:user-reject",
    "lock:mailbox",
    "lock:verb",
    "lock:user-verb",
    "open:start",
    "open:mark",
    "open:on",
    "close:never",
    "close:manual",
    "close:mark",
    "close:on",
    "close:after_ms",
    "close:attempts",
    "fault:drop-before",
    "fault:drop-after",
    "fault:partial-reply",
    "fault:delay",
    "fault:stall",
    "fault:no",
    "fault:bad",
    "fault:bye",
    "fault:refuse-connections",
    "fault:restart",
    "trigger:source-change",
    "trigger:lock",
    "trigger:fault",
    "append-over-batchsize",
    "two-clients",
];

/// The loss faults, required with `--allow-loss-faults`.
pub const LOSS: &[&str] = &["fault:lie", "fault:hide-missing", "fault:corrupt"];

/// Fault actions explore never draws (kept for scenarios): no row in its summary.
/// `drop-corrupt` may break what the dropped write itself named (a record's
/// flags), which no check can hold to until a later write, and the catch-up
/// then repairs it: a fired one need not fail, so explore's rule that every
/// fired loss fault fails could not hold.
const NOT_DRAWN: &[&str] = &["drop-corrupt"];

/// The client modes a fired lock or fault is attributed to.
pub const MODES: [&str; 6] = ["-R -1", "-u", "-A", "-m", "-R", "catch-up"];

/// A campaign's coverage; shards' coverages merge by adding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Feature -> cases that contain it.
    pub generated: BTreeMap<String, u64>,
    /// `what|mode|verb` -> times it fired (`what`: `fault:ACTION`,
    /// `lock:KIND`, `trigger`).
    pub reached: BTreeMap<String, u64>,
    /// Commands the client sent, per verb.
    pub commands: BTreeMap<String, u64>,
}

fn lock_kind(user: bool, mailbox: bool, verb: bool, hold: bool) -> &'static str {
    match (user, mailbox, verb) {
        (true, false, false) if hold => "user-hold",
        (true, false, false) => "user-reject",
        (_, true, _) => "mailbox",
        (true, false, true) => "user-verb",
        _ => "verb",
    }
}

fn trigger_word(t: &Option<TriggerSpec>, default: &str) -> String {
    match t {
        None => default.to_owned(),
        Some(TriggerSpec::Word(w)) => w.clone(),
        Some(TriggerSpec::Table(t)) => {
            if t.mark.is_some() {
                "mark".into()
            } else if t.on.is_some() {
                "on".into()
            } else if t.after_ms.is_some() {
                "after_ms".into()
            } else {
                "attempts".into()
            }
        }
    }
}

/// The features scenario `s` contains.
pub fn features(s: &Scenario) -> BTreeSet<String> {
    let mut f = BTreeSet::new();
    let mut continuous = false;
    walk(&s.steps, &mut f, &mut continuous, false);
    if f.contains("step:start") {
        f.insert(format!(
            "policy:{}",
            match s.client.policy {
                Policy::None => "none",
                Policy::Restart => "restart",
                Policy::RestartDiscardLog => "restart-discard-log",
            }
        ));
        f.insert("mode:continuous".into());
    }
    f
}

fn walk(steps: &[Step], f: &mut BTreeSet<String>, continuous: &mut bool, in_trigger: bool) {
    for step in steps {
        let key = match step {
            Step::Lock(_) => "lock",
            Step::Unlock(_) => "unlock",
            Step::Fault(_) => "fault",
            Step::Clear => "clear",
            Step::Mark(_) => "mark",
            Step::Append(_) => "append",
            Step::Flag(x) if x.add == ["\\Seen"] && x.remove.is_empty() => "seen",
            Step::Flag(_) => "flag",
            Step::Expunge(_) => "expunge",
            Step::Create(_) => "create",
            Step::Delete(_) => "delete",
            Step::Rename(_) => "rename",
            Step::Move(_) => "move",
            Step::DeleteUser(_) => "delete_user",
            Step::Subscribe(_) => "subscribe",
            Step::Unsubscribe(_) => "unsubscribe",
            Step::Metadata(_) => "metadata",
            Step::ServerMetadata(_) => "server_metadata",
            Step::Annotate(_) => "annotate",
            Step::Quota(_) => "quota",
            Step::Acl(_) => "acl",
            Step::Sync(_) => "sync",
            Step::Start => "start",
            Step::Stop => "stop",
            Step::Kill => "kill",
            Step::WaitMs(_) => "wait_ms",
            Step::WaitFor(_) => "wait_for",
            Step::ExpectCount(_) => "expect_count",
            Step::Trigger { .. } => "trigger",
            Step::HoldSyncLock(_) => "hold_sync_lock",
            Step::ReleaseSyncLock { .. } => "release_sync_lock",
            Step::SkipUser(_) => "skip_user",
            Step::UnskipUser(_) => "unskip_user",
            Step::Synclog(_) => "synclog",
            Step::SharedSeen(_) => "shared_seen",
        };
        if in_trigger {
            let kind = match step {
                Step::Lock(_) => "lock",
                Step::Fault(_) => "fault",
                Step::Mark(_) => "mark",
                _ => "source-change",
            };
            f.insert(format!("trigger:{kind}"));
        }
        f.insert(format!("step:{key}"));
        match step {
            Step::Append(a) if a.count > BATCHSIZE as usize => {
                f.insert("append-over-batchsize".into());
            }
            Step::Sync(s) => {
                let mode = s.mode.map_or("rolling-once", |m| match m {
                    crate::scenario::Mode::User => "user",
                    crate::scenario::Mode::Mailbox => "mailbox",
                    crate::scenario::Mode::All => "all",
                    _ => "rolling-once",
                });
                f.insert(format!("mode:{mode}"));
                if *continuous {
                    f.insert("two-clients".into());
                }
            }
            Step::Start => *continuous = true,
            Step::Stop => *continuous = false,
            Step::Lock(l) => {
                let hold = l.mode.as_deref() == Some("hold");
                f.insert(format!(
                    "lock:{}",
                    lock_kind(
                        l.user.is_some(),
                        l.mailbox.is_some(),
                        l.verb.is_some(),
                        hold
                    )
                ));
                f.insert(format!("open:{}", trigger_word(&l.open, "start")));
                f.insert(format!("close:{}", trigger_word(&l.close, "never")));
            }
            Step::Fault(x) => {
                f.insert(format!("fault:{}", x.action));
            }
            Step::Trigger { then, .. } => walk(then, f, continuous, true),
            _ => {}
        }
    }
}

/// The client mode of each connection (by session), from the runner's
/// annotations: a connection opened while a one-shot run was going belongs
/// to it, else to the continuous client if one was running, else to the
/// catch-up.
fn modes(events: &[Event], notes: &[Annotation]) -> BTreeMap<u64, &'static str> {
    let mode_of = |label: &str| -> Option<&'static str> {
        if label.contains("(continuous)") {
            Some("-R")
        } else if label.contains(" -u") {
            Some("-u")
        } else if label.contains(" -A") {
            Some("-A")
        } else if label.contains(" -m") {
            Some("-m")
        } else if label.contains("-R -1") {
            Some("-R -1")
        } else {
            None
        }
    };
    let mut out = BTreeMap::new();
    for e in events {
        let EventKind::Connected { .. } = e.kind else {
            continue;
        };
        let (mut one_shot, mut continuous) = (None, false);
        for n in notes.iter().take_while(|n| n.t_us <= e.t_us) {
            match (&n.kind, mode_of(&n.label)) {
                (AnnotationKind::ClientStart, Some("-R")) => continuous = true,
                (AnnotationKind::ClientStart, Some(m)) => one_shot = Some(m),
                (AnnotationKind::ClientExit { .. }, _) if n.label.starts_with("continuous") => {
                    continuous = false;
                }
                (AnnotationKind::ClientExit { .. }, _) => one_shot = None,
                _ => {}
            }
        }
        let m = one_shot.unwrap_or(if continuous { "-R" } else { "catch-up" });
        out.insert(e.session, m);
    }
    out
}

/// What a lock's name says of its kind (generated locks are named
/// `L3-user-hold`, trigger locks `T2-user-reject`).
fn lock_of(name: &str) -> String {
    match name.split_once('-') {
        Some((_, kind)) if !kind.is_empty() => format!("lock:{kind}"),
        _ if name == "another connection" => "lock:another-connection".into(),
        _ => "lock".into(),
    }
}

impl Coverage {
    /// Count a generated case's features.
    pub fn add_generated(&mut self, s: &Scenario) {
        for f in features(s) {
            *self.generated.entry(f).or_default() += 1;
        }
    }

    /// Count what fired in one run: its events and the runner's annotations.
    /// Returns the combinations this run reached first.
    pub fn add_run(&mut self, events: &[Event], notes: &[Annotation]) -> Vec<String> {
        let modes = modes(events, notes);
        let mut last_verb: BTreeMap<u64, &str> = BTreeMap::new();
        let mut new = Vec::new();
        for e in events {
            let what = match &e.kind {
                EventKind::Command { verb, .. } => {
                    last_verb.insert(e.session, verb);
                    *self.commands.entry(verb.clone()).or_default() += 1;
                    continue;
                }
                EventKind::Fault { action, .. } => {
                    format!("fault:{}", crate::events::fault_action_name(action))
                }
                EventKind::LockHit { lock } | EventKind::LockWait { lock } => lock_of(lock),
                EventKind::Held { .. } => "trigger".into(),
                _ => continue,
            };
            let verb = last_verb.get(&e.session).copied().unwrap_or("(connection)");
            let mode = modes.get(&e.session).copied().unwrap_or("catch-up");
            let key = format!("{what}|{mode}|{verb}");
            let n = self.reached.entry(key.clone()).or_default();
            if *n == 0 {
                new.push(key);
            }
            *n += 1;
        }
        new
    }

    /// Add another coverage (a shard's) to this one.
    pub fn merge(&mut self, other: &Coverage) {
        for (k, v) in &other.generated {
            *self.generated.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.reached {
            *self.reached.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.commands {
            *self.commands.entry(k.clone()).or_default() += v;
        }
    }

    /// The required features never generated (`loss`: the loss faults too).
    pub fn missing(&self, loss: bool) -> Vec<&'static str> {
        REQUIRED
            .iter()
            .chain(if loss { LOSS } else { &[] })
            .filter(|f| !self.generated.contains_key(**f))
            .copied()
            .collect()
    }

    /// The summary: what fired, by lock or fault and client mode (the number
    /// of distinct commands it fired on), what never did, and the generated
    /// features never drawn.
    pub fn summary(&self, loss: bool) -> String {
        let mut rows: Vec<String> = Action::NAMES
            .iter()
            .filter(|a| !NOT_DRAWN.contains(a))
            .filter(|a| loss || !LOSS.contains(&format!("fault:{a}").as_str()))
            .map(|a| format!("fault:{a}"))
            .collect();
        for k in ["user-hold", "user-reject", "mailbox", "verb", "user-verb"] {
            rows.push(format!("lock:{k}"));
        }
        rows.push("trigger".into());
        let mut grid: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for key in self.reached.keys() {
            let mut parts = key.splitn(3, '|');
            let (w, m, v) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            if !rows.iter().any(|r| r == w) {
                rows.push(w.to_owned());
            }
            grid.entry((w.to_owned(), m.to_owned()))
                .or_default()
                .insert(v.to_owned());
        }
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Fired (distinct commands hit), by lock or fault x client mode:\n"
        );
        let _ = write!(t, "| lock or fault |");
        for m in MODES {
            let _ = write!(t, " {m} |");
        }
        let _ = writeln!(t, "\n|---|{}", "---|".repeat(MODES.len()));
        let mut never = Vec::new();
        for r in &rows {
            let _ = write!(t, "| {r} |");
            for m in MODES {
                match grid.get(&(r.clone(), m.to_owned())) {
                    Some(v) => {
                        let _ = write!(t, " {} |", v.len());
                    }
                    None => {
                        let _ = write!(t, " · |");
                        never.push(format!("{r} under {m}"));
                    }
                }
            }
            let _ = writeln!(t);
        }
        let hit: BTreeSet<&str> = self
            .reached
            .keys()
            .filter_map(|k| k.rsplit('|').next())
            .collect();
        let untouched: Vec<&str> = VERBS
            .iter()
            .filter(|v| !hit.contains(**v))
            .copied()
            .collect();
        let unsent: Vec<&str> = VERBS
            .iter()
            .filter(|v| !self.commands.contains_key(**v))
            .copied()
            .collect();
        let _ = writeln!(
            t,
            "\nNever reached ({} of {} lock/fault x mode pairs): {}",
            never.len(),
            rows.len() * MODES.len(),
            if never.is_empty() {
                "none".into()
            } else {
                never.join(", ")
            }
        );
        let _ = writeln!(
            t,
            "Commands no lock, fault or trigger fired on: {}",
            if untouched.is_empty() {
                "none".into()
            } else {
                untouched.join(", ")
            }
        );
        let _ = writeln!(
            t,
            "Commands the client never sent: {}",
            if unsent.is_empty() {
                "none".into()
            } else {
                unsent.join(", ")
            }
        );
        let missing = self.missing(loss);
        let _ = writeln!(
            t,
            "Generated features never drawn: {}",
            if missing.is_empty() {
                "none".into()
            } else {
                missing.join(", ")
            }
        );
        t
    }
}
