//! A [`GenCase`] as a scenario file. Indices are resolved against a model of
//! the source as the steps go (folders, UIDs, subscriptions, deleted users,
//! the continuous client, open locks), so every step is valid where it stands:
//! a step that would not be (a delete of a folder with children, a stop with
//! no client running, an unlock of nothing) is left out.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::gen::{
    Change, Close, GenCase, GenStep, LockTarget, Open, Policy, SyncMode, TriggerAction,
};
use crate::cyrus::to_internal_name;

use super::aim::{aim, change_verbs, fault, loss_aim, loss_rule, next_run_verbs, verb};

mod change;
mod loss;

use change::render_change;
use loss::{first_verb, flush_loss, PendingLoss};

/// Every generated case's client settings: a small `sync_batchsize` so that
/// appends of more than 3 messages are uploaded in several batches, and the
/// shortest `sync_timeout` Cyrus allows, so that a stall costs 3 s.
pub const BATCHSIZE: u32 = 3;
/// `sync_timeout`, seconds.
pub const SYNC_TIMEOUT: u32 = 3;
/// Deadline of each one-shot run, seconds (3.6.1 waits 15 s before it
/// connects again after a refused connection).
pub const RUN_TIMEOUT: u64 = 40;
/// Messages each user starts with.
pub const MESSAGES: usize = 6;

const FLAGS: [&str; 3] = ["\\Flagged", "$Label1", "\\Answered"];

#[derive(Debug, Clone)]
struct Folder {
    name: String,
    uids: Vec<u32>,
    next: u32,
}

impl Folder {
    fn new(name: &str, uids: &[u32], next: u32) -> Folder {
        Folder {
            name: name.to_owned(),
            uids: uids.to_vec(),
            next,
        }
    }

    fn uid(&self, i: u8) -> Option<u32> {
        (!self.uids.is_empty()).then(|| self.uids[usize::from(i) % self.uids.len()])
    }

    fn append(&mut self, n: u32) {
        for _ in 0..n {
            self.uids.push(self.next);
            self.next += 1;
        }
    }
}

/// What a user holds after the set-up (`populate::fill_user` with 6
/// messages: all in INBOX, 3 and 6 expunged; Archive renamed; Trash deleted).
fn initial_folders() -> Vec<Folder> {
    vec![
        Folder::new("INBOX", &[1, 2, 4, 5], 7),
        Folder::new("INBOX.Sent", &[], 1),
        Folder::new("INBOX.Work", &[], 1),
        Folder::new("INBOX.Work.Projects", &[], 1),
        Folder::new("INBOX.Archive2025", &[], 1),
    ]
}

struct Model {
    names: Vec<String>,
    folders: Vec<Vec<Folder>>,
    subscribed: Vec<BTreeSet<String>>,
    deleted: Vec<bool>,
    /// Users deleted somewhere in the case: triggers (which may fire after
    /// the deletion) leave them alone.
    doomed: BTreeSet<usize>,
    continuous: bool,
    started: bool,
    locks: Vec<String>,
    /// Locks an `unlock` can close: open from the start and closed by
    /// nothing else (one that opens on a mark or a command, or closes by
    /// itself, may not be open when the unlock comes, which is an error).
    unlockable: Vec<String>,
    unlocked: BTreeSet<String>,
    /// A lock, fault or trigger was set up since the last client run.
    armed: bool,
    /// Loss faults drawn since the last client run.
    loss: Vec<PendingLoss>,
    names_used: usize,
    policy: Policy,
}

impl Model {
    fn user(&self, u: u8) -> usize {
        usize::from(u) % self.names.len()
    }

    /// A user for a trigger's change: never one the case deletes.
    fn safe_user(&self, u: u8) -> usize {
        let u = self.user(u);
        if self.doomed.contains(&u) {
            0
        } else {
            u
        }
    }

    fn folder(&self, u: usize, f: u8) -> usize {
        usize::from(f) % self.folders[u].len()
    }

    fn internal(&self, u: usize, f: usize) -> String {
        to_internal_name(&self.names[u], &self.folders[u][f].name)
    }

    /// Non-INBOX folders without children.
    fn leaves(&self, u: usize) -> Vec<usize> {
        let fs = &self.folders[u];
        (1..fs.len())
            .filter(|&i| {
                let prefix = format!("{}.", fs[i].name);
                !fs.iter().any(|g| g.name.starts_with(&prefix))
            })
            .collect()
    }

    fn exists(&self, u: usize, name: &str) -> bool {
        self.folders[u].iter().any(|f| f.name == name)
    }

    fn fresh_name(&mut self, kind: &str) -> String {
        self.names_used += 1;
        format!("{kind}{}", self.names_used)
    }
}

pub(super) fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl GenCase {
    /// The scenario file, with users named `{prefix}u{i}` and `header` as a
    /// comment on top.
    pub fn to_toml(&self, prefix: &str, header: &str) -> String {
        let users = usize::from(self.users.clamp(2, 3));
        let names: Vec<String> = (0..users).map(|i| format!("{prefix}u{i}")).collect();
        let doomed = self
            .steps
            .iter()
            .filter_map(|s| match s {
                GenStep::Change(Change::DeleteUser { user }) => Some(deleted_user(*user, users)),
                _ => None,
            })
            .collect();
        let mut m = Model {
            folders: vec![initial_folders(); users],
            subscribed: vec![
                ["INBOX", "INBOX.Sent", "INBOX.Work", "INBOX.Archive2025"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                users
            ],
            deleted: vec![false; users],
            doomed,
            names,
            continuous: false,
            started: false,
            locks: Vec::new(),
            unlockable: Vec::new(),
            unlocked: BTreeSet::new(),
            armed: false,
            loss: Vec::new(),
            names_used: 0,
            policy: self.policy,
        };
        let mut steps: Vec<String> = Vec::new();
        // Verbs the changes since the last one-shot run make the next run send.
        let mut pending: BTreeSet<&'static str> = BTreeSet::new();
        for (i, s) in self.steps.iter().enumerate() {
            let later_client = self.steps[i + 1..]
                .iter()
                .any(|x| matches!(x, GenStep::Sync(_) | GenStep::Start));
            let client_ahead = m.continuous || later_client;
            match s {
                GenStep::Change(c) => pending.extend(change_verbs(c)),
                GenStep::Sync(_) => pending.clear(),
                _ => {}
            }
            let expected = next_run_verbs(&pending, &self.steps[i + 1..]);
            steps.extend(render_step(&mut m, s, client_ahead, &expected));
        }
        // A loss fault drawn after the last run gets one of its own (even
        // beside the continuous client, which the runner may stop first).
        if !m.loss.is_empty() {
            steps.extend(flush_loss(&mut m, None));
            steps.push("sync = { mode = \"rolling-once\" }".into());
            m.armed = false;
        }
        // What the last steps set up meets a client run (the catch-up clears
        // every lock and fault before it runs).
        if m.armed && !m.continuous {
            steps.push("sync = { mode = \"rolling-once\" }".into());
        }
        // Every step left out: the case still runs the client once.
        if steps.is_empty() {
            steps.push("sync = { mode = \"rolling-once\" }".into());
        }
        // The watcher that discards log-run loses what it held by design
        // (scenarios/operators/watcher-discards-log-run.toml); a full `-u`
        // after it must bring everything back.
        if m.started && self.policy == Policy::RestartDiscardLog {
            steps.push("sync = { mode = \"user\" }".into());
        }
        let mut t = String::new();
        for line in header.lines() {
            let _ = writeln!(t, "# {line}");
        }
        let _ = writeln!(t, "description = \"generated by backupd-sim explore\"\n");
        let _ = writeln!(
            t,
            "[client]\nsync_timeout = {SYNC_TIMEOUT}\nbatchsize = {BATCHSIZE}\ntimeout = {RUN_TIMEOUT}"
        );
        if m.started && self.policy != Policy::None {
            let p = match self.policy {
                Policy::Restart => "restart",
                _ => "restart-discard-log",
            };
            let _ = writeln!(t, "policy = \"{p}\"");
        }
        let _ = writeln!(t);
        for n in &m.names {
            let _ = writeln!(t, "[[user]]\nname = \"{n}\"\nmessages = {MESSAGES}\n");
        }
        for s in steps {
            let _ = writeln!(t, "[[step]]\n{s}");
        }
        let _ = writeln!(t, "\n[expect]\nconverged = true\nlost = 0");
        t
    }
}

/// The user a `DeleteUser { user }` deletes: never user 0, which triggers use.
fn deleted_user(u: u8, users: usize) -> usize {
    1 + usize::from(u) % (users - 1)
}

fn render_step(
    m: &mut Model,
    s: &GenStep,
    client_ahead: bool,
    expected: &[&'static str],
) -> Vec<String> {
    match s {
        GenStep::Change(c) => render_change(m, c),
        GenStep::Sync(mode) => {
            let mut out = flush_loss(m, Some(*mode));
            m.armed = false;
            out.push(render_sync(m, *mode));
            out
        }
        GenStep::Start if !m.continuous => {
            m.continuous = true;
            m.started = true;
            vec!["start = true".into()]
        }
        GenStep::Stop if m.continuous => {
            m.continuous = false;
            vec!["stop = true".into()]
        }
        // With no policy the killed client stays dead: wait until it is seen
        // so (a restarted one would never be).
        GenStep::Kill if m.continuous && m.policy == Policy::None => vec![
            "kill = true".into(),
            "wait_for = { event = \"client-exit\", timeout_ms = 10000 }".into(),
        ],
        GenStep::Kill if m.continuous => vec!["kill = true".into()],
        GenStep::Wait(ms) if m.continuous => vec![format!("wait_ms = {ms}")],
        GenStep::Start | GenStep::Stop | GenStep::Kill | GenStep::Wait(_) => Vec::new(),
        GenStep::Lock {
            user,
            target,
            open,
            close,
        } => {
            let u = m.user(*user);
            let kind = match target {
                LockTarget::User { hold: true } => "user-hold",
                LockTarget::User { hold: false } => "user-reject",
                LockTarget::Mailbox(_) => "mailbox",
                LockTarget::Verb(_) => "verb",
                LockTarget::UserVerb(_) => "user-verb",
            };
            // The kind in the name: the coverage reads it from lock hits.
            let name = format!("{}-{kind}", m.fresh_name("L"));
            let surely_open =
                matches!(open, Open::Start) && matches!(close, Close::Never | Close::Manual);
            let who = q(&m.names[u]);
            let what = match target {
                LockTarget::User { hold: true } => format!("user = {who}, mode = \"hold\""),
                LockTarget::User { hold: false } => format!("user = {who}, mode = \"reject\""),
                LockTarget::Mailbox(f) => {
                    let f = m.folder(u, *f);
                    format!("mailbox = {}", q(&m.internal(u, f)))
                }
                LockTarget::Verb(v) => format!("verb = {}", q(verb(*v))),
                LockTarget::UserVerb(v) => format!("user = {who}, verb = {}", q(verb(*v))),
            };
            let open = match open {
                Open::Start => "\"start\"".to_owned(),
                Open::Mark(n) => format!("{{ mark = \"m{n}\" }}"),
                Open::On(v, n) => format!("{{ on = {{ verb = {}, nth = {n} }} }}", q(verb(*v))),
            };
            let close = match close {
                Close::Never => "\"never\"".to_owned(),
                Close::Manual => "\"manual\"".to_owned(),
                Close::Mark(n) => format!("{{ mark = \"m{n}\" }}"),
                Close::On(v, n) => format!("{{ on = {{ verb = {}, nth = {n} }} }}", q(verb(*v))),
                Close::AfterMs(ms) => format!("{{ after_ms = {ms} }}"),
                Close::Attempts(n) => format!("{{ attempts = {n} }}"),
            };
            if surely_open {
                m.unlockable.push(name.clone());
            }
            m.locks.push(name.clone());
            m.armed = true;
            vec![format!(
                "lock = {{ name = \"{name}\", {what}, open = {open}, close = {close} }}"
            )]
        }
        GenStep::Unlock(i) => {
            let open: Vec<&String> = m
                .unlockable
                .iter()
                .filter(|l| !m.unlocked.contains(*l))
                .collect();
            if open.is_empty() {
                return Vec::new();
            }
            let name = open[usize::from(*i) % open.len()].clone();
            m.unlocked.insert(name.clone());
            vec![format!("unlock = \"{name}\"")]
        }
        GenStep::Mark(n) => vec![format!("mark = \"m{n}\"")],
        // A loss fault waits for the next run: written just before it, on
        // data that run carries (see `flush_loss`).
        GenStep::Fault {
            kind,
            verb: v,
            user,
            ..
        } if kind.is_loss() => {
            m.loss.push(PendingLoss {
                kind: *kind,
                verb: *v,
                user: *user,
                aim: None,
            });
            m.armed = true;
            Vec::new()
        }
        GenStep::Fault {
            kind,
            verb: v,
            user,
            nth,
        } => {
            let name = m.fresh_name("F");
            let aimed = aim(*v, expected);
            // Remapped: the first such command (the next run may send one).
            let nth = if aimed == verb(*v) { *nth } else { 1 };
            // APPLY MESSAGE names no user: a user filter would never match.
            let user = user
                .filter(|_| aimed != "APPLY MESSAGE")
                .map(|u| m.names[m.user(u)].clone());
            m.armed = true;
            vec![format!(
                "fault = {}",
                fault(&name, *kind, aimed, user.as_deref(), Some(nth))
            )]
        }
        GenStep::Clear => {
            m.unlocked.extend(m.locks.iter().cloned());
            m.armed = false;
            vec!["clear = true".into()]
        }
        // A trigger with no client run after it can never be reached.
        GenStep::Trigger { .. } if !client_ahead => Vec::new(),
        GenStep::Trigger {
            verb: v,
            user,
            nth,
            then,
        } => {
            // One setting up a loss fault holds the first command of the next
            // run, which then carries the data the fault breaks.
            let loss = then
                .iter()
                .any(|a| matches!(a, TriggerAction::Fault { kind, .. } if kind.is_loss()));
            let (aimed, user, nth) = if loss {
                (first_verb(expected), None, 1)
            } else {
                (aim(*v, expected), *user, *nth)
            };
            let mut when = format!("verb = {}", q(aimed));
            if let Some(u) = user.filter(|_| aimed != "APPLY MESSAGE") {
                let _ = write!(when, ", user = {}", q(&m.names[m.user(u)]));
            }
            let _ = write!(when, ", nth = {nth}");
            let actions: Vec<String> = then.iter().map(|a| trigger_action(m, a)).collect();
            m.armed = true;
            vec![format!(
                "trigger = {{ when = {{ {when} }}, then = [ {} ], timeout_ms = 60000, required = false }}",
                actions.join(", ")
            )]
        }
    }
}

fn trigger_action(m: &mut Model, a: &TriggerAction) -> String {
    match a {
        TriggerAction::Append { user, count } => format!(
            "{{ append = {{ user = {}, count = {count} }} }}",
            q(&m.names[m.safe_user(*user)])
        ),
        TriggerAction::Flag { user, uid, flag } => format!(
            "{{ flag = {{ user = {}, uids = \"{uid}\", add = [{}] }} }}",
            q(&m.names[m.safe_user(*user)]),
            q(FLAGS[usize::from(*flag) % FLAGS.len()])
        ),
        TriggerAction::Expunge { user, uid } => format!(
            "{{ expunge = {{ user = {}, uids = \"{uid}\" }} }}",
            q(&m.names[m.safe_user(*user)])
        ),
        TriggerAction::Lock { user, attempts } => {
            let name = format!("{}-user-reject", m.fresh_name("T"));
            format!(
                "{{ lock = {{ name = \"{name}\", user = {}, mode = \"reject\", close = {{ attempts = {attempts} }} }} }}",
                q(&m.names[m.user(*user)])
            )
        }
        TriggerAction::Fault { kind, verb: v } if kind.is_loss() => {
            let name = m.fresh_name("F");
            let aimed = loss_aim(*kind, *v, false);
            m.loss.push(PendingLoss {
                kind: *kind,
                verb: *v,
                user: None,
                aim: Some(aimed),
            });
            format!("{{ fault = {} }}", loss_rule(&name, *kind, &aimed, None))
        }
        TriggerAction::Fault { kind, verb: v } => {
            let name = m.fresh_name("F");
            format!(
                "{{ fault = {} }}",
                fault(&name, *kind, verb(*v), None, Some(1))
            )
        }
        TriggerAction::Mark(n) => format!("{{ mark = \"m{n}\" }}"),
    }
}

fn render_sync(m: &Model, mode: SyncMode) -> String {
    match mode {
        SyncMode::RollingOnce => "sync = { mode = \"rolling-once\" }".into(),
        SyncMode::All => "sync = { mode = \"all\" }".into(),
        SyncMode::User(mask) => {
            let chosen: Vec<String> = (0..m.names.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| q(&m.names[i]))
                .collect();
            if chosen.is_empty() {
                "sync = { mode = \"user\" }".into()
            } else {
                format!(
                    "sync = {{ mode = \"user\", users = [{}] }}",
                    chosen.join(", ")
                )
            }
        }
        SyncMode::Mailbox(a, b) => {
            let mut boxes = vec![m.internal(0, m.folder(0, a))];
            if let Some(b) = b {
                let u = 1 % m.names.len();
                if !m.deleted[u] {
                    boxes.push(m.internal(u, m.folder(u, b)));
                }
            }
            let boxes: Vec<String> = boxes.iter().map(|b| q(b)).collect();
            format!(
                "sync = {{ mode = \"mailbox\", mailboxes = [{}] }}",
                boxes.join(", ")
            )
        }
    }
}
