//! The model of a timeline: the event log paired into commands (each with its
//! reply, lock hit and fault) and sessions (with their holds), faults, refused
//! connections, runner notes and lock hits; lock windows derived from the hits.

use std::collections::BTreeMap;

use super::{LockWindow, ReplyClass};
use crate::events::{Event, EventKind};

#[derive(Debug)]
pub(super) struct Cmd<'a> {
    pub(super) session: u64,
    pub(super) t_us: u64,
    pub(super) text: &'a str,
    pub(super) verb: &'a str,
    pub(super) users: &'a [String],
    pub(super) reply: Option<&'a str>,
    pub(super) data_lines: usize,
    pub(super) lock: Option<&'a str>,
    pub(super) fault: Option<(&'a str, &'a str)>,
    pub(super) class: ReplyClass,
}

#[derive(Debug, Default)]
pub(super) struct Sess<'a> {
    pub(super) id: u64,
    pub(super) peer: &'a str,
    pub(super) from_us: u64,
    pub(super) to_us: Option<u64>,
    pub(super) reason: Option<&'a str>,
    pub(super) cmds: Vec<usize>,
    pub(super) holds: Vec<(u64, u64, Option<u64>)>,
}

impl Sess<'_> {
    pub(super) fn abnormal_close(&self) -> bool {
        self.reason.is_some_and(|r| {
            r.starts_with("fault") || r.starts_with("error") || r.contains("restart")
        })
    }
}

#[derive(Debug)]
pub(super) struct FaultAt<'a> {
    pub(super) t_us: u64,
    pub(super) session: u64,
    pub(super) rule: &'a str,
    pub(super) action: &'a str,
    pub(super) cmd: Option<usize>,
}

#[derive(Debug, Default)]
pub(super) struct Model<'a> {
    pub(super) cmds: Vec<Cmd<'a>>,
    pub(super) sessions: BTreeMap<u64, Sess<'a>>,
    pub(super) faults: Vec<FaultAt<'a>>,
    pub(super) refused: Vec<(u64, &'a str)>,
    /// Marks and control requests: (time, kind, text).
    pub(super) notes: Vec<(u64, &'static str, &'a str)>,
    /// (time, lock, command).
    pub(super) lock_hits: Vec<(u64, &'a str, Option<usize>)>,
    pub(super) connected: u64,
}

impl<'a> Model<'a> {
    pub(super) fn build(events: &'a [Event]) -> Model<'a> {
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by_key(|e| (e.seq, e.t_us));
        let mut m = Model::default();
        // The command of each session still waiting for its reply.
        let mut pending: BTreeMap<u64, usize> = BTreeMap::new();
        for e in order {
            let sid = e.session;
            match &e.kind {
                EventKind::Connected { peer } => {
                    m.connected += 1;
                    let s = m.sess(sid, e.t_us);
                    s.peer = peer;
                    s.from_us = e.t_us;
                }
                EventKind::Command {
                    verb, users, text, ..
                } => {
                    m.sess(sid, e.t_us);
                    pending.remove(&sid);
                    let i = m.cmds.len();
                    m.cmds.push(Cmd {
                        session: sid,
                        t_us: e.t_us,
                        text,
                        verb,
                        users,
                        reply: None,
                        data_lines: 0,
                        lock: None,
                        fault: None,
                        class: ReplyClass::Dropped,
                    });
                    m.sess(sid, e.t_us).cmds.push(i);
                    pending.insert(sid, i);
                }
                EventKind::Reply { line, data_lines } => {
                    if let Some(i) = pending.remove(&sid) {
                        let c = &mut m.cmds[i];
                        c.reply = Some(line);
                        c.data_lines = *data_lines;
                        c.class = ReplyClass::of(Some(line), c.lock.is_some());
                    }
                }
                EventKind::LockHit { lock } => {
                    let cmd = pending.get(&sid).copied();
                    if let Some(i) = cmd {
                        m.cmds[i].lock = Some(lock);
                    }
                    m.lock_hits.push((e.t_us, lock, cmd));
                }
                EventKind::Fault { rule, action } => {
                    let cmd = pending.get(&sid).copied();
                    if let Some(i) = cmd {
                        m.cmds[i].fault = Some((rule, action));
                    }
                    m.faults.push(FaultAt {
                        t_us: e.t_us,
                        session: sid,
                        rule,
                        action,
                        cmd,
                    });
                }
                EventKind::Closed { reason } => {
                    pending.remove(&sid);
                    let s = m.sess(sid, e.t_us);
                    s.to_us = Some(e.t_us);
                    s.reason = Some(reason);
                }
                EventKind::Refused { peer } => m.refused.push((e.t_us, peer)),
                EventKind::Mark { name } => m.notes.push((e.t_us, "mark", name)),
                EventKind::Control { request } => m.notes.push((e.t_us, "ctl", request)),
                EventKind::Held { hold } => {
                    m.sess(sid, e.t_us).holds.push((*hold, e.t_us, None));
                }
                EventKind::Released { hold } => {
                    let s = m.sess(sid, e.t_us);
                    if let Some(h) = s
                        .holds
                        .iter_mut()
                        .rev()
                        .find(|h| h.0 == *hold && h.2.is_none())
                    {
                        h.2 = Some(e.t_us);
                    }
                }
                // sync_server personality: a command waiting for a lock window.
                EventKind::LockWait { lock } => m.notes.push((e.t_us, "wait", lock)),
                EventKind::LockWaited { lock, .. } => m.notes.push((e.t_us, "waited", lock)),
            }
        }
        m
    }

    fn sess(&mut self, id: u64, t_us: u64) -> &mut Sess<'a> {
        self.sessions.entry(id).or_insert_with(|| Sess {
            id,
            from_us: t_us,
            ..Sess::default()
        })
    }

    pub(super) fn session_class(&self, s: &Sess<'_>) -> ReplyClass {
        let worst = s
            .cmds
            .iter()
            .map(|&i| self.cmds[i].class)
            .max()
            .unwrap_or(ReplyClass::Ok);
        if s.abnormal_close() {
            ReplyClass::Dropped
        } else {
            worst
        }
    }

    pub(super) fn last_time(&self) -> Option<u64> {
        let a = self.cmds.iter().map(|c| c.t_us);
        let b = self
            .sessions
            .values()
            .flat_map(|s| [Some(s.from_us), s.to_us])
            .flatten();
        let c = self.notes.iter().map(|n| n.0);
        let d = self.refused.iter().map(|r| r.0);
        a.chain(b).chain(c).chain(d).max()
    }

    pub(super) fn first_time(&self) -> Option<u64> {
        let a = self.cmds.iter().map(|c| c.t_us);
        let b = self.sessions.values().map(|s| s.from_us);
        let c = self.notes.iter().map(|n| n.0);
        let d = self.refused.iter().map(|r| r.0);
        a.chain(b).chain(c).chain(d).min()
    }
}

pub(super) fn derived_windows(m: &Model<'_>) -> Vec<LockWindow> {
    let mut by_name: BTreeMap<&str, (u64, u64, Vec<String>)> = BTreeMap::new();
    for &(t, lock, cmd) in &m.lock_hits {
        let w = by_name.entry(lock).or_insert((t, t, Vec::new()));
        w.0 = w.0.min(t);
        w.1 = w.1.max(t);
        if let Some(i) = cmd {
            for u in m.cmds[i].users {
                if !w.2.contains(u) {
                    w.2.push(u.clone());
                }
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, (from, to, mut users))| {
            users.sort();
            LockWindow {
                name: name.to_owned(),
                users,
                from_us: from,
                to_us: Some(to),
                derived: true,
            }
        })
        .collect()
}
