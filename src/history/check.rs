//! The checker: every write a target acknowledged must stay visible in every
//! later read of that target, until a later write supersedes it.
//!
//! # What it verifies
//!
//! It sweeps the history in time order. A write answered `OK` becomes the
//! *known* state of what it touched ([`Slot`]). A read answered `OK` is checked
//! against every known state it covers, when that state is *settled* at the
//! read: the write was acknowledged before the read was sent, and no other
//! write to the same thing was in flight, unanswered or acknowledged in the
//! meantime. A contradiction is a [`Violation`], reported as
//! `acknowledged write lost`. Checked:
//! - a mailbox acknowledged by `APPLY MAILBOX`: present in every later
//!   `GET USER` of its owner, `GET MAILBOXES` naming it, `GET FULLMAILBOX` of
//!   it and the final read-back; same uniqueid and UIDVALIDITY; LAST_UID and
//!   HIGHESTMODSEQ not lower; every acknowledged ACL entry with its rights
//!   and every acknowledged mailbox annotation (those the convergence check
//!   compares) with its value, when the read shows the ACL or annotations
//!   (csync reads do; the final read-back is not in csync form); with records (`GET FULLMAILBOX`, the final
//!   read-back), every acknowledged record present with its GUID, flags and
//!   expunged state, and in the csync reads with exactly the per-message
//!   annotations it was acknowledged with (those the convergence check
//!   compares);
//! - a mailbox removed by an acknowledged `APPLY UNMAILBOX` or `APPLY RENAME`
//!   (its old name): absent from those reads;
//! - the GUID of a live acknowledged record: never `* MISSING` in a later
//!   `APPLY RESERVE` naming its mailbox;
//! - on a target that keeps every body (backupd, the fake as backupd): a body
//!   a connection reserved for a user (`* MISSING`) and then uploaded with an
//!   acknowledged `APPLY MESSAGE` is never `* MISSING` for that user again;
//! - `APPLY SUB`/`UNSUB`: the mailbox in (or not in) the `* LSUB` of every
//!   later `GET USER`/`GET META` of the user, and the final read-back;
//! - `APPLY SEEN`: a `* SEEN` with the same uniqueid, LASTUID, LASTCHANGE and
//!   SEENUIDS in later `GET USER`/`GET META` of the user;
//! - `APPLY SIEVE`/`UNSIEVE`: the script listed (LAST_UPDATE not lower) or
//!   not listed in those reads;
//! - on a target that keeps quota (a replica), `APPLY QUOTA`/`UNQUOTA`: every
//!   later `* QUOTA` of the root (`GET USER`, `GET QUOTA`) with the
//!   acknowledged limits, none once removed, and one in every `GET QUOTA` of
//!   the root (the runner's reads ask it).
//!
//! What supersedes: a later acknowledged write of the same thing, UNMAILBOX,
//! RENAME, UNUSER (everything of the user is forgotten), APPLY EXPUNGE (the
//! records it names). A `restart` fault of the fake keeps its store, so it
//! supersedes nothing: what was acknowledged before must still be there.
//!
//! # What it does not verify
//!
//! - a write answered `NO` or `BAD` is taken as not applied; one left without
//!   a reply (a dropped connection, a partial reply) may or may not have been:
//!   until a later acknowledged write supersedes it, nothing it touched is
//!   checked, and afterwards of the records it named only the GUID is (their
//!   flags, annotations, expunged state and presence may be its doing). Except an unanswered `APPLY MAILBOX` of a mailbox already
//!   acknowledged with the same uniqueid, which can add but not take away:
//!   meanwhile the mailbox must still be there with that uniqueid, LAST_UID
//!   and HIGHESTMODSEQ not below the lower of the two, UIDVALIDITY unchanged
//!   unless the write names another, and every acknowledged record it does not
//!   name as before (its ACL and annotations are not checked);
//! - two acknowledged writes of the same thing whose commands overlapped in
//!   time (two clients): their order is unknown, so the thing is not checked
//!   until a later write settles it;
//! - subscriptions of a renamed or removed mailbox: Cyrus moves none, but
//!   whether a target does is the convergence check's business, not this one's;
//! - the seen state, sieve scripts and subscriptions of a `GET USER` answer
//!   listing no mailbox (sync_server prints no meta data for a user without
//!   mailboxes);
//! - a body uploaded without being reserved first (backupd then adds it to
//!   every backup the connection holds; which those are is not tracked), and
//!   on a replica, bodies no acknowledged record uses;
//! - bodies themselves (the fake's store checks them, [`crate::store`]);
//! - quota on backupd, which acknowledges `APPLY QUOTA` and keeps nothing,
//!   and a quota root missing from a `GET USER` answer (sync_server lists
//!   only the roots its listed mailboxes name);
//! - `DELETED.*` mailboxes in the final read-back, which does not show them
//!   (the csync reads do, and are checked).

use std::collections::{BTreeMap, BTreeSet};

use super::facts::{Call, MailboxFacts, Outcome, QuotaLimits, Read, SeenFacts, Write};
use super::verdict::{About, Input, Report, Violation};
use super::Op;
use crate::store::names::owner_of;

/// What one thing on the target is known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fact {
    Mailbox(MailboxFacts),
    Gone,
    Sub(bool),
    Seen(SeenFacts),
    Sieve(Option<i64>),
    Quota(Option<QuotaLimits>),
}

/// One thing on the target a write can change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Obj {
    Mailbox(String),
    Sub(String, String),
    Seen(String, String),
    Sieve(String, String),
    /// A quota root (tracked only on a target that keeps quota).
    Quota(String),
}

impl Obj {
    pub(super) fn user(&self) -> Option<String> {
        match self {
            Obj::Mailbox(m) | Obj::Quota(m) => owner_of(m),
            Obj::Sub(u, _) | Obj::Seen(u, _) | Obj::Sieve(u, _) => Some(u.clone()),
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Known {
    pub(super) fact: Fact,
    pub(super) op: usize,
    pub(super) completed: u64,
}

/// What is known of one thing, and what keeps it from being checked.
#[derive(Debug, Clone, Default)]
pub(super) struct Slot {
    pub(super) known: Option<Known>,
    /// Writes sent and not answered yet.
    pub(super) inflight: BTreeSet<usize>,
    /// Writes never answered, not yet superseded.
    pub(super) unresolved: BTreeSet<usize>,
    /// Two acknowledged writes overlapped: their order is unknown.
    pub(super) ambiguous: bool,
    /// Records a never-answered write named (since superseded): it may have
    /// changed their flags or annotations, or expunged them; only their GUID
    /// is held to.
    pub(super) uncertain_uids: BTreeSet<u32>,
    /// Those of `unresolved` that are `APPLY MAILBOX` of the known mailbox
    /// (the same uniqueid) or `APPLY EXPUNGE` of it: applied or not, they
    /// cannot take away what it was acknowledged to hold (but the records
    /// they name).
    pub(super) growing: BTreeSet<usize>,
}

impl Slot {
    pub(super) fn settled_before(&self, t: u64) -> Option<&Known> {
        let k = self.known.as_ref()?;
        let clear = self.inflight.is_empty() && self.unresolved.is_empty() && !self.ambiguous;
        (clear && k.completed < t).then_some(k)
    }

    /// The known state before `t` when all that keeps it from being settled
    /// is unanswered writes in `growing`: then what they cannot change is
    /// still checked.
    pub(super) fn at_least_before(&self, t: u64) -> Option<&Known> {
        let k = self.known.as_ref()?;
        let only_growing = self.inflight.is_empty()
            && !self.ambiguous
            && !self.unresolved.is_empty()
            && self.unresolved.is_subset(&self.growing);
        (only_growing && k.completed < t).then_some(k)
    }
}

/// The owner of what a write touches (for [`History::users_written`]).
pub(crate) fn write_user(w: &Write) -> Option<String> {
    match w {
        Write::Mailbox(m) => owner_of(&m.name),
        Write::Unmailbox(m) | Write::Expunge { mailbox: m, .. } => owner_of(m),
        Write::Rename { new, .. } => owner_of(new),
        Write::Sub { user, .. } | Write::Seen { user, .. } | Write::Sieve { user, .. } => {
            Some(user.clone())
        }
        Write::Unuser(u) => Some(u.clone()),
        Write::Quota { root, .. } => owner_of(root),
        Write::Message(_) => None,
    }
}

/// Check a history (and the final read-back, if any).
pub fn check(input: Input<'_>) -> Report {
    let h = input.history;
    if let Some(why) = h.truncated() {
        return Report {
            incomplete: Some(format!("the history is incomplete ({why})")),
            ..Report::default()
        };
    }
    let mut sweep = Sweep {
        ops: h.ops(),
        marks: h.marks(),
        slots: BTreeMap::new(),
        report: Report::default(),
        at_catch_up: None,
        bodies_kept: input.bodies_kept,
        quota_kept: input.quota_kept,
        reserved: BTreeMap::new(),
        bodies: BTreeMap::new(),
    };
    let catch_up_t = input
        .catch_up_mark
        .and_then(|name| h.marks().iter().find(|m| m.name == name))
        .map(|m| m.t_us);
    // Completions sort before invocations at the same instant: a reply is
    // written before the next command can arrive.
    let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(h.ops().len() * 2);
    for (i, op) in h.ops().iter().enumerate() {
        events.push((op.invoked_us, 1, i));
        if let Some(t) = op.completed_us {
            events.push((t, 0, i));
        }
    }
    for (i, (_, t)) in h.restarts().iter().enumerate() {
        events.push((*t, 2, i));
    }
    events.sort_unstable();
    for (t, kind, i) in events {
        if catch_up_t.is_some_and(|c| t >= c) && sweep.at_catch_up.is_none() {
            sweep.at_catch_up = Some(sweep.known_now());
        }
        match kind {
            0 => sweep.complete(i),
            1 => sweep.invoke(i),
            _ => {
                sweep.reserved.remove(&h.restarts()[i].0);
            }
        }
    }
    if let Some(f) = input.final_state {
        sweep.final_read(f);
    }
    if let Some(c) = catch_up_t {
        let before = sweep
            .at_catch_up
            .take()
            .unwrap_or_else(|| sweep.known_now());
        sweep.carried(c, &before);
    }
    sweep.report
}

pub(super) struct Sweep<'a> {
    pub(super) ops: &'a [Op],
    pub(super) marks: &'a [super::Mark],
    pub(super) slots: BTreeMap<Obj, Slot>,
    pub(super) report: Report,
    /// The known facts when the catch-up began.
    pub(super) at_catch_up: Option<BTreeMap<Obj, (Fact, usize)>>,
    pub(super) bodies_kept: bool,
    /// The target keeps quota (a replica): `APPLY QUOTA`/`UNQUOTA` are tracked.
    pub(super) quota_kept: bool,
    /// Per connection since its last RESTART: the GUIDs it was told are
    /// missing, and for which users.
    pub(super) reserved: BTreeMap<crate::store::SessionId, BTreeMap<String, BTreeSet<String>>>,
    /// Bodies acknowledged by `APPLY MESSAGE` after a reservation: (user,
    /// GUID) -> the op and when it was answered.
    pub(super) bodies: BTreeMap<(String, String), (usize, u64)>,
}

impl Sweep<'_> {
    pub(super) fn known_now(&self) -> BTreeMap<Obj, (Fact, usize)> {
        self.slots
            .iter()
            .filter_map(|(o, s)| {
                s.known
                    .as_ref()
                    .map(|k| (o.clone(), (k.fact.clone(), k.op)))
            })
            .collect()
    }

    /// The things a write touches.
    fn touched(&self, w: &Write) -> Vec<Obj> {
        match w {
            Write::Mailbox(m) => vec![Obj::Mailbox(m.name.clone())],
            Write::Unmailbox(m) => {
                let mut v = vec![Obj::Mailbox(m.clone())];
                v.extend(owner_of(m).map(|u| Obj::Sub(u, m.clone())));
                // A quota root removed or renamed with its mailbox: not known.
                v.extend(self.quota_kept.then(|| Obj::Quota(m.clone())));
                v
            }
            Write::Rename { old, new } => {
                let mut v = vec![Obj::Mailbox(old.clone()), Obj::Mailbox(new.clone())];
                v.extend(owner_of(old).map(|u| Obj::Sub(u, old.clone())));
                v.extend(owner_of(new).map(|u| Obj::Sub(u, new.clone())));
                if self.quota_kept {
                    v.extend([Obj::Quota(old.clone()), Obj::Quota(new.clone())]);
                }
                v
            }
            Write::Sub { user, mailbox, .. } => vec![Obj::Sub(user.clone(), mailbox.clone())],
            Write::Seen { user, seen } => vec![Obj::Seen(user.clone(), seen.uniqueid.clone())],
            Write::Sieve { user, filename, .. } => {
                vec![Obj::Sieve(user.clone(), filename.clone())]
            }
            Write::Unuser(u) => self
                .slots
                .keys()
                .filter(|o| o.user().as_deref() == Some(u))
                .cloned()
                .collect(),
            Write::Expunge { mailbox, .. } => vec![Obj::Mailbox(mailbox.clone())],
            Write::Quota { root, .. } if self.quota_kept => vec![Obj::Quota(root.clone())],
            Write::Quota { .. } | Write::Message(_) => Vec::new(),
        }
    }

    fn invoke(&mut self, i: usize) {
        let Call::Write(w) = &self.ops[i].call else {
            return;
        };
        for o in self.touched(w) {
            self.slots.entry(o).or_default().inflight.insert(i);
        }
    }

    fn complete(&mut self, i: usize) {
        let op = &self.ops[i];
        match &op.call {
            Call::Write(w) => self.complete_write(i, w),
            Call::Read(r) => {
                let nonexistent = matches!(&op.outcome, Outcome::No(t) if t.starts_with("IMAP_MAILBOX_NONEXISTENT"));
                let answered =
                    op.outcome == Outcome::Ok || (nonexistent && matches!(r, Read::FullMailbox(_)));
                if let (true, Some(obs)) = (answered, &op.observed) {
                    let before = self.report.violations.len();
                    let checked = self.check_read(i, r, obs);
                    if checked || self.report.violations.len() > before {
                        self.report.reads_checked += 1;
                    }
                }
            }
        }
    }

    fn complete_write(&mut self, i: usize, w: &Write) {
        let op = &self.ops[i];
        if let (Write::Message(guids), Outcome::Ok) = (w, &op.outcome) {
            let completed = op.completed_us.unwrap_or(op.invoked_us);
            if let Some(reserved) = self.reserved.get(&op.session) {
                for g in guids {
                    for u in reserved.get(g).into_iter().flatten() {
                        self.bodies
                            .entry((u.clone(), g.clone()))
                            .or_insert((i, completed));
                    }
                }
            }
        }
        let objs = self.touched(w);
        for o in &objs {
            let slot = self.slots.entry(o.clone()).or_default();
            slot.inflight.remove(&i);
            match op.outcome {
                Outcome::Ok => {}
                Outcome::Unanswered | Outcome::Pending => {
                    slot.unresolved.insert(i);
                    match (w, slot.known.as_ref().map(|k| &k.fact)) {
                        (Write::Mailbox(f), Some(Fact::Mailbox(k)))
                            if !f.uniqueid.is_empty() && f.uniqueid == k.uniqueid =>
                        {
                            slot.growing.insert(i);
                        }
                        // It can only expunge the UIDs it names.
                        (Write::Expunge { .. }, Some(Fact::Mailbox(_))) => {
                            slot.growing.insert(i);
                        }
                        _ => {}
                    }
                }
                Outcome::No(_) | Outcome::Bad(_) => {}
            }
        }
        if op.outcome != Outcome::Ok {
            return;
        }
        self.report.acknowledged += 1;
        let completed = op.completed_us.unwrap_or(op.invoked_us);
        let own_uids = written_uids(w);
        // What `old` held before a rename moves to `new`, with the records
        // a dropped write left uncertain; taken before `old` becomes gone
        // (it comes first in `objs`).
        let moved: Option<(MailboxFacts, BTreeSet<u32>)> = match w {
            Write::Rename { old, new } => {
                self.slots.get(&Obj::Mailbox(old.clone())).and_then(|s| {
                    match s.settled_before(u64::MAX).map(|k| &k.fact) {
                        Some(Fact::Mailbox(f)) => Some((
                            MailboxFacts {
                                name: new.clone(),
                                ..f.clone()
                            },
                            s.uncertain_uids.clone(),
                        )),
                        _ => None,
                    }
                })
            }
            _ => None,
        };
        for o in objs {
            let moved = match (w, &o) {
                (Write::Rename { new, .. }, Obj::Mailbox(n)) if n == new => moved.clone(),
                _ => None,
            };
            let ops = self.ops;
            let slot = self.slots.entry(o.clone()).or_default();
            // Unanswered writes that ended before this one was sent are superseded.
            let superseded: Vec<usize> = slot
                .unresolved
                .iter()
                .copied()
                .filter(|&j| ops[j].completed_us.is_some_and(|c| c < op.invoked_us))
                .collect();
            for j in superseded {
                slot.unresolved.remove(&j);
                slot.growing.remove(&j);
                if let Call::Write(wj) = &ops[j].call {
                    slot.uncertain_uids.extend(written_uids(wj));
                }
            }
            for u in &own_uids {
                slot.uncertain_uids.remove(u);
            }
            let prev = slot.known.take();
            slot.ambiguous = prev.as_ref().is_some_and(|k| k.completed > op.invoked_us);
            let fact = match (w, &o) {
                (Write::Mailbox(f), _) => Fact::Mailbox(merge(prev.as_ref(), f)),
                (Write::Unmailbox(_), Obj::Mailbox(_)) => {
                    slot.uncertain_uids.clear();
                    Fact::Gone
                }
                (Write::Rename { old, .. }, Obj::Mailbox(n)) if n == old => {
                    slot.uncertain_uids.clear();
                    Fact::Gone
                }
                (Write::Rename { .. }, Obj::Mailbox(_)) => match moved {
                    Some((f, uncertain)) => {
                        slot.uncertain_uids = uncertain;
                        Fact::Mailbox(f)
                    }
                    None => {
                        slot.known = None;
                        slot.uncertain_uids.clear();
                        continue;
                    }
                },
                // Subscriptions of a renamed or removed mailbox: not known.
                (Write::Rename { .. } | Write::Unmailbox(_), _) | (Write::Unuser(_), _) => {
                    slot.known = None;
                    continue;
                }
                (Write::Sub { on, .. }, _) => Fact::Sub(*on),
                (Write::Seen { seen, .. }, _) => Fact::Seen(seen.clone()),
                (Write::Sieve { last_update, .. }, _) => Fact::Sieve(*last_update),
                (Write::Quota { limits, .. }, _) => Fact::Quota(limits.clone()),
                (Write::Expunge { uids, .. }, _) => match prev.as_ref().map(|k| &k.fact) {
                    Some(Fact::Mailbox(f)) => {
                        let mut f = f.clone();
                        if let Some(rs) = f.records.as_mut() {
                            for u in uids {
                                if let Some(r) = rs.get_mut(u) {
                                    r.expunged = true;
                                }
                            }
                        }
                        Fact::Mailbox(f)
                    }
                    _ => {
                        slot.known = None;
                        continue;
                    }
                },
                (Write::Message(_), _) => continue,
            };
            slot.known = Some(Known {
                fact,
                op: i,
                completed,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn violate(
        &mut self,
        about: About,
        user: String,
        mailbox: Option<String>,
        uids: Vec<u32>,
        op: usize,
        by: &str,
        what: String,
    ) {
        let acknowledged = self.describe(op);
        // One write lost one way is one violation, however many reads show it.
        if let Some(v) = self.report.violations.iter_mut().find(|v| {
            v.acknowledged == acknowledged
                && v.about == about
                && v.mailbox == mailbox
                && v.uids == uids
                && v.what == what
        }) {
            v.again += 1;
            return;
        }
        self.report.violations.push(Violation {
            about,
            user,
            mailbox,
            uids,
            guid: None,
            acknowledged,
            contradicted_by: by.to_owned(),
            what,
            again: 0,
        });
    }

    /// `session 3 (step 4): APPLY MAILBOX user.a.X (LAST_UID 2, …)`.
    pub(super) fn describe(&self, i: usize) -> String {
        let op = &self.ops[i];
        let phase = self
            .marks
            .iter()
            .rev()
            .find(|m| m.t_us <= op.invoked_us)
            .map_or_else(|| "set-up".to_owned(), |m| m.name.clone());
        format!(
            "{} ({phase}): {}",
            super::session_name(op.session),
            op.call.summary(&op.label)
        )
    }
}

/// A mailbox's state after an acknowledged `APPLY MAILBOX`: the new counters,
/// and the records of the same mailbox (same uniqueid) merged by UID.
pub(super) fn merge(prev: Option<&Known>, f: &MailboxFacts) -> MailboxFacts {
    let mut out = f.clone();
    if let Some(Fact::Mailbox(p)) = prev.map(|k| &k.fact) {
        if p.uniqueid == f.uniqueid {
            out.uidvalidity = f.uidvalidity.or(p.uidvalidity);
            out.last_uid = f.last_uid.or(p.last_uid);
            out.highestmodseq = f.highestmodseq.or(p.highestmodseq);
            out.acl = f.acl.clone().or_else(|| p.acl.clone());
            out.annotations = f.annotations.clone().or_else(|| p.annotations.clone());
            let mut records = p.records.clone().unwrap_or_default();
            records.extend(f.records.iter().flatten().map(|(u, r)| (*u, r.clone())));
            out.records = Some(records);
        }
    }
    out
}
pub(super) fn written_uids(w: &Write) -> Vec<u32> {
    match w {
        Write::Mailbox(m) => m.records.iter().flatten().map(|(u, _)| *u).collect(),
        Write::Expunge { uids, .. } => uids.clone(),
        _ => Vec::new(),
    }
}
