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
//!   HIGHESTMODSEQ not lower; with records (`GET FULLMAILBOX`, the final
//!   read-back), every acknowledged record present with its GUID, flags and
//!   expunged state;
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
//!   not listed in those reads.
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
//!   checked, and afterwards the flags of the records it named are not;
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
//! - bodies themselves (the fake's store checks them, [`crate::store`]), quota,
//!   annotations and ACLs;
//! - `DELETED.*` mailboxes in the final read-back, which does not show them
//!   (the csync reads do, and are checked).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::facts::{Call, MailboxFacts, Observation, Outcome, Read, SeenFacts, Write};
use super::{History, Op};
use crate::mailstate::MailState;
use crate::store::names::owner_of;

/// What the checker is given.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The history of the target.
    pub history: &'a History,
    /// The target's contents read back after every command, when it can be
    /// read: what it holds of the users it was asked for (a user asked for
    /// and absent holds nothing).
    pub final_state: Option<FinalRead<'a>>,
    /// The mark that starts the catch-up passes, if there was one.
    pub catch_up_mark: Option<&'a str>,
    /// The target keeps every body it acknowledged, in the backup of the user
    /// that reserved it (backupd, and the fake as backupd): then a body
    /// acknowledged by `APPLY MESSAGE` must never be `* MISSING` for that
    /// user again. A replica keeps only bodies its records use.
    pub bodies_kept: bool,
}

/// What kind of state a violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum About {
    /// A mailbox as a whole: there or not, its identity and counters.
    Mailbox,
    /// Records of a mailbox (the UIDs say which).
    Records,
    /// The body of a record.
    Body,
    /// A subscription.
    Subscription,
    /// Seen state.
    Seen,
    /// A sieve script.
    Sieve,
}

/// The target's contents read back at the end.
#[derive(Debug, Clone, Copy)]
pub struct FinalRead<'a> {
    /// What it holds.
    pub state: &'a MailState,
    /// The users read.
    pub users: &'a [&'a str],
    /// Whether the read shows every field (`false`: only mailbox names,
    /// uniqueids and live UID -> GUID).
    pub full: bool,
}

/// One acknowledged write contradicted by a later read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// What kind of state was lost.
    pub about: About,
    /// The owner of what was lost.
    pub user: String,
    /// The mailbox, when it is about one.
    pub mailbox: Option<String>,
    /// The UIDs concerned (empty for the mailbox as a whole).
    pub uids: Vec<u32>,
    /// The body concerned, when it is about one.
    pub guid: Option<String>,
    /// The acknowledged command: `session 3, step 4: APPLY MAILBOX %(…)`.
    pub acknowledged: String,
    /// The read that contradicted it.
    pub contradicted_by: String,
    /// What the read showed instead.
    pub what: String,
    /// Later reads that contradicted the same write the same way.
    pub again: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}", self.user)?;
        if let Some(m) = &self.mailbox {
            write!(f, ", mailbox {m}")?;
        }
        if !self.uids.is_empty() {
            write!(f, ", UIDs {:?}", self.uids)?;
        }
        write!(
            f,
            ": {}\n      acknowledged: {}\n      contradicted by: {}",
            self.what, self.acknowledged, self.contradicted_by
        )?;
        if self.again > 0 {
            write!(f, " (and {} later read(s))", self.again)?;
        }
        Ok(())
    }
}

/// Why the catch-up carried a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryClass {
    /// The target had not acknowledged this before the catch-up: it was queued.
    Queued,
    /// Acknowledged before and still there: the client sent it again without
    /// asking (a rolling `APPLY SUB`, say). Harmless.
    Repeated,
    /// Acknowledged before and then lost: the catch-up healed a loss. A failure.
    PreviouslyAcknowledged,
}

/// One write of the catch-up passes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Carried {
    /// The command: `session 9: APPLY MAILBOX %(…)`.
    pub command: String,
    /// Why it was carried.
    pub class: CarryClass,
}

/// The checker's verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every contradiction found.
    pub violations: Vec<Violation>,
    /// What the catch-up passes carried, and why.
    pub carried: Vec<Carried>,
    /// Writes acknowledged.
    pub acknowledged: usize,
    /// Reads checked against at least one settled state.
    pub reads_checked: usize,
    /// Set when the history is incomplete: the verdict is then not trusted.
    pub incomplete: Option<String>,
}

impl Report {
    /// True when nothing acknowledged was lost and the history was complete.
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.incomplete.is_none()
    }
}

/// What one thing on the target is known to be.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fact {
    Mailbox(MailboxFacts),
    Gone,
    Sub(bool),
    Seen(SeenFacts),
    Sieve(Option<i64>),
}

/// One thing on the target a write can change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Obj {
    Mailbox(String),
    Sub(String, String),
    Seen(String, String),
    Sieve(String, String),
}

impl Obj {
    fn user(&self) -> Option<String> {
        match self {
            Obj::Mailbox(m) => owner_of(m),
            Obj::Sub(u, _) | Obj::Seen(u, _) | Obj::Sieve(u, _) => Some(u.clone()),
        }
    }
}

#[derive(Debug, Clone)]
struct Known {
    fact: Fact,
    op: usize,
    completed: u64,
}

/// What is known of one thing, and what keeps it from being checked.
#[derive(Debug, Clone, Default)]
struct Slot {
    known: Option<Known>,
    /// Writes sent and not answered yet.
    inflight: BTreeSet<usize>,
    /// Writes never answered, not yet superseded.
    unresolved: BTreeSet<usize>,
    /// Two acknowledged writes overlapped: their order is unknown.
    ambiguous: bool,
    /// Records whose flags a never-answered write may have changed.
    uncertain_uids: BTreeSet<u32>,
}

impl Slot {
    fn settled_before(&self, t: u64) -> Option<&Known> {
        let k = self.known.as_ref()?;
        let clear = self.inflight.is_empty() && self.unresolved.is_empty() && !self.ambiguous;
        (clear && k.completed < t).then_some(k)
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

struct Sweep<'a> {
    ops: &'a [Op],
    marks: &'a [super::Mark],
    slots: BTreeMap<Obj, Slot>,
    report: Report,
    /// The known facts when the catch-up began.
    at_catch_up: Option<BTreeMap<Obj, (Fact, usize)>>,
    bodies_kept: bool,
    /// Per connection since its last RESTART: the GUIDs it was told are
    /// missing, and for which users.
    reserved: BTreeMap<crate::store::SessionId, BTreeMap<String, BTreeSet<String>>>,
    /// Bodies acknowledged by `APPLY MESSAGE` after a reservation: (user,
    /// GUID) -> the op and when it was answered.
    bodies: BTreeMap<(String, String), (usize, u64)>,
}

impl Sweep<'_> {
    fn known_now(&self) -> BTreeMap<Obj, (Fact, usize)> {
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
                v
            }
            Write::Rename { old, new } => {
                let mut v = vec![Obj::Mailbox(old.clone()), Obj::Mailbox(new.clone())];
                v.extend(owner_of(old).map(|u| Obj::Sub(u, old.clone())));
                v.extend(owner_of(new).map(|u| Obj::Sub(u, new.clone())));
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
            Write::Message(_) => Vec::new(),
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
        for o in objs {
            // What `old` held before a rename moves to `new`.
            let moved = match (w, &o) {
                (Write::Rename { old, new }, Obj::Mailbox(n)) if n == new => self
                    .slots
                    .get(&Obj::Mailbox(old.clone()))
                    .and_then(|s| s.known.as_ref())
                    .and_then(|k| match &k.fact {
                        Fact::Mailbox(f) => Some(MailboxFacts {
                            name: new.clone(),
                            ..f.clone()
                        }),
                        _ => None,
                    }),
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
                (Write::Unmailbox(_), Obj::Mailbox(_)) => Fact::Gone,
                (Write::Rename { old, .. }, Obj::Mailbox(n)) if n == old => Fact::Gone,
                (Write::Rename { .. }, Obj::Mailbox(_)) => match moved {
                    Some(f) => Fact::Mailbox(f),
                    None => {
                        slot.known = None;
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

    /// Check one answered read; true when it covered a settled state.
    fn check_read(&mut self, i: usize, r: &Read, obs: &Observation) -> bool {
        if !obs.unreadable.is_empty() {
            return false;
        }
        let read = &self.ops[i];
        let t = read.invoked_us;
        let (mailboxes, meta_user): (Vec<String>, Option<&str>) = match r {
            Read::User(u) => {
                let names = self
                    .slots
                    .keys()
                    .filter_map(|o| match o {
                        Obj::Mailbox(m) if owner_of(m).as_deref() == Some(u) => Some(m.clone()),
                        _ => None,
                    })
                    .collect();
                // sync_server prints no meta data for a user without mailboxes.
                (names, (!obs.mailboxes.is_empty()).then_some(u.as_str()))
            }
            Read::Meta(u) => (Vec::new(), Some(u.as_str())),
            Read::Mailboxes(names) => (names.clone(), None),
            Read::FullMailbox(m) => (vec![m.clone()], None),
            Read::Reserve { mailboxes, guids } => {
                return self.check_reserve(i, mailboxes, guids, obs);
            }
        };
        let by = self.describe(i);
        let mut checked = false;
        for m in mailboxes {
            let Some(k) = self
                .slots
                .get(&Obj::Mailbox(m.clone()))
                .and_then(|s| s.settled_before(t))
            else {
                continue;
            };
            checked = true;
            let uncertain = self.slots[&Obj::Mailbox(m.clone())].uncertain_uids.clone();
            let (fact, op) = (k.fact.clone(), k.op);
            // Records are read only from `GET FULLMAILBOX`; other answers carry none.
            let mut shown = obs.mailboxes.get(&m).cloned();
            if !matches!(r, Read::FullMailbox(_)) {
                if let Some(s) = shown.as_mut() {
                    s.records = None;
                }
            }
            self.compare_mailbox(&m, &fact, op, shown.as_ref(), &uncertain, &by);
        }
        if let Some(u) = meta_user {
            checked |= self.check_meta(u, t, obs, &by);
        }
        checked
    }

    fn check_meta(&mut self, user: &str, t: u64, obs: &Observation, by: &str) -> bool {
        let subs: BTreeSet<&str> = obs
            .subscriptions
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let mut found = Vec::new();
        for (o, s) in &self.slots {
            if o.user().as_deref() != Some(user) {
                continue;
            }
            let Some(k) = s.settled_before(t) else {
                continue;
            };
            let lost = match (o, &k.fact) {
                (Obj::Sub(_, m), Fact::Sub(on)) => (subs.contains(m.as_str()) != *on).then(|| {
                    (
                        About::Subscription,
                        Some(m.clone()),
                        if *on {
                            "the subscription is not in `* LSUB`".to_owned()
                        } else {
                            "the unsubscribed mailbox is back in `* LSUB`".to_owned()
                        },
                    )
                }),
                (Obj::Seen(_, id), Fact::Seen(want)) => match obs.seen.get(id) {
                    None => Some((About::Seen, None, format!("no `* SEEN` for uniqueid {id}"))),
                    Some(have) if have != want => Some((
                        About::Seen,
                        None,
                        format!(
                            "`* SEEN` for uniqueid {id}: LASTUID {} SEENUIDS {:?}, acknowledged LASTUID {} SEENUIDS {:?}",
                            have.lastuid, have.seenuids, want.lastuid, want.seenuids
                        ),
                    )),
                    Some(_) => None,
                },
                (Obj::Sieve(_, f), Fact::Sieve(want)) => match (obs.sieve.get(f), want) {
                    (None, Some(_)) => Some((
                        About::Sieve,
                        None,
                        format!("sieve script {f} is not listed"),
                    )),
                    (Some(have), Some(w)) if have < w => Some((
                        About::Sieve,
                        None,
                        format!("sieve script {f}: LAST_UPDATE {have}, acknowledged {w}"),
                    )),
                    (Some(_), None) => Some((
                        About::Sieve,
                        None,
                        format!("deleted sieve script {f} is listed again"),
                    )),
                    _ => None,
                },
                _ => None,
            };
            found.push((k.op, lost));
        }
        let checked = !found.is_empty();
        for (op, lost) in found {
            if let Some((about, mailbox, what)) = lost {
                self.violate(about, user.to_owned(), mailbox, Vec::new(), op, by, what);
            }
        }
        checked
    }

    fn check_reserve(
        &mut self,
        i: usize,
        mailboxes: &[String],
        guids: &[String],
        obs: &Observation,
    ) -> bool {
        let t = self.ops[i].invoked_us;
        let missing: BTreeSet<&str> = obs.missing.iter().map(String::as_str).collect();
        let asked: BTreeSet<&str> = guids.iter().map(String::as_str).collect();
        let by = self.describe(i);
        let mut checked = false;
        let owners: BTreeSet<String> = mailboxes.iter().filter_map(|m| owner_of(m)).collect();
        // Bodies acknowledged by APPLY MESSAGE to one of these users.
        if self.bodies_kept {
            let mut gone = Vec::new();
            for g in asked.intersection(&missing) {
                for u in &owners {
                    if let Some(&(op, done)) = self.bodies.get(&(u.clone(), (*g).to_owned())) {
                        checked = true;
                        if done < t {
                            gone.push((u.clone(), (*g).to_owned(), op));
                        }
                    }
                }
            }
            for (u, g, op) in gone {
                let what = format!("the body {g}, acknowledged by APPLY MESSAGE, is `* MISSING`");
                self.violate(About::Body, u, None, Vec::new(), op, &by, what);
                if let Some(v) = self.report.violations.last_mut() {
                    v.guid.get_or_insert(g);
                }
            }
        }
        // What this connection may upload now, and for whom.
        let session = self.ops[i].session;
        let reserved = self.reserved.entry(session).or_default();
        for g in asked.intersection(&missing) {
            reserved
                .entry((*g).to_owned())
                .or_default()
                .extend(owners.iter().cloned());
        }
        let mut lost = Vec::new();
        for m in mailboxes {
            let Some(k) = self
                .slots
                .get(&Obj::Mailbox(m.clone()))
                .and_then(|s| s.settled_before(t))
            else {
                continue;
            };
            let Fact::Mailbox(f) = &k.fact else { continue };
            checked = true;
            for (uid, r) in f.records.iter().flatten() {
                let g = r.guid.as_str();
                if !r.expunged && asked.contains(g) && missing.contains(g) {
                    lost.push((m.clone(), *uid, g.to_owned(), k.op));
                }
            }
        }
        for (m, uid, g, op) in lost {
            let user = owner_of(&m).unwrap_or_default();
            let what = format!("the body {g} of an acknowledged record is `* MISSING`");
            self.violate(About::Body, user, Some(m), vec![uid], op, &by, what);
            if let Some(v) = self.report.violations.last_mut() {
                v.guid.get_or_insert(g);
            }
        }
        checked
    }

    fn compare_mailbox(
        &mut self,
        name: &str,
        fact: &Fact,
        op: usize,
        seen: Option<&MailboxFacts>,
        uncertain: &BTreeSet<u32>,
        by: &str,
    ) {
        let user = owner_of(name).unwrap_or_default();
        let mut lost: Vec<(Vec<u32>, String)> = Vec::new();
        match (fact, seen) {
            (Fact::Gone, Some(_)) => lost.push((
                Vec::new(),
                "the mailbox is there, after an acknowledged removal".into(),
            )),
            (Fact::Mailbox(f), None) => lost.push((
                Vec::new(),
                format!(
                    "the mailbox is missing (acknowledged with LAST_UID {})",
                    f.last_uid.map_or_else(|| "?".into(), |u| u.to_string())
                ),
            )),
            (Fact::Mailbox(f), Some(s)) => lost.extend(mailbox_differences(f, s, uncertain)),
            _ => {}
        }
        for (uids, what) in lost {
            let about = if uids.is_empty() {
                About::Mailbox
            } else {
                About::Records
            };
            self.violate(
                about,
                user.clone(),
                Some(name.to_owned()),
                uids,
                op,
                by,
                what,
            );
        }
    }

    fn final_read(&mut self, read: FinalRead<'_>) {
        let (state, full) = (read.state, read.full);
        let by = "the final read-back of the target".to_owned();
        let users: BTreeSet<String> = self
            .slots
            .keys()
            .filter_map(Obj::user)
            .filter(|u| read.users.contains(&u.as_str()))
            .collect();
        let nobody = crate::mailstate::UserState::default();
        for user in users {
            // A user the target lacks entirely holds nothing.
            let u = state.users.get(&user).unwrap_or(&nobody);
            let shown = |m: &str| !crate::store::names::is_deleted_name(m);
            let mut obs = Observation::default();
            for (name, mb) in &u.mailboxes {
                let records = mb
                    .messages
                    .iter()
                    .map(|(uid, m)| {
                        let r = super::RecordFact {
                            guid: m.guid.clone(),
                            flags: m.flags.clone(),
                            expunged: false,
                        };
                        (*uid, r)
                    })
                    .collect();
                let known = |n: u64| (full && n > 0).then_some(n);
                obs.mailboxes.insert(
                    name.clone(),
                    MailboxFacts {
                        name: name.clone(),
                        uniqueid: mb.uniqueid.clone().unwrap_or_default(),
                        uidvalidity: known(mb.uidvalidity.into()).map(|n| n as u32),
                        last_uid: full.then_some(mb.last_uid),
                        highestmodseq: full.then_some(mb.highestmodseq),
                        records: Some(records),
                    },
                );
            }
            let mut names = Vec::new();
            let mut subs = Vec::new();
            for (o, s) in &self.slots {
                match (o, s.settled_before(u64::MAX)) {
                    (Obj::Mailbox(m), Some(k))
                        if owner_of(m).as_deref() == Some(&user) && shown(m) =>
                    {
                        names.push((m.clone(), k.fact.clone(), k.op, s.uncertain_uids.clone()));
                    }
                    (Obj::Sub(su, m), Some(k)) if full && *su == user => {
                        subs.push((m.clone(), k.fact.clone(), k.op));
                    }
                    _ => {}
                }
            }
            for (m, fact, op, mut uncertain) in names {
                if !full {
                    // Flags are not read at this scope.
                    if let Some(o) = obs.mailboxes.get_mut(&m) {
                        for r in o.records.iter_mut().flat_map(|r| r.values_mut()) {
                            r.flags.clear();
                        }
                    }
                    if let Fact::Mailbox(f) = &fact {
                        uncertain.extend(f.records.iter().flatten().map(|(u, _)| *u));
                    }
                }
                self.compare_mailbox(&m, &fact, op, obs.mailboxes.get(&m), &uncertain, &by);
            }
            for (m, fact, op) in subs {
                if let Fact::Sub(on) = fact {
                    if u.subscriptions.contains(&m) != on {
                        let what = if on {
                            "the subscription is not on the target"
                        } else {
                            "the unsubscribed mailbox is subscribed on the target"
                        };
                        let (u, m) = (user.clone(), Some(m));
                        self.violate(About::Subscription, u, m, Vec::new(), op, &by, what.into());
                    }
                }
            }
        }
    }

    fn carried(&mut self, catch_up_t: u64, before: &BTreeMap<Obj, (Fact, usize)>) {
        let lost_objs: BTreeSet<(String, Option<String>)> = self
            .report
            .violations
            .iter()
            .map(|v| (v.user.clone(), v.mailbox.clone()))
            .collect();
        for (i, op) in self.ops.iter().enumerate() {
            let Call::Write(w) = &op.call else { continue };
            if op.invoked_us < catch_up_t {
                continue;
            }
            let implied = implied_by(w, before);
            let class = match implied {
                None => CarryClass::Queued,
                Some(_) => {
                    let key = (write_user(w).unwrap_or_default(), write_mailbox(w));
                    if lost_objs.contains(&key) || lost_objs.contains(&(key.0.clone(), None)) {
                        CarryClass::PreviouslyAcknowledged
                    } else {
                        CarryClass::Repeated
                    }
                }
            };
            let mut command = self.describe(i);
            if let (Some(j), CarryClass::PreviouslyAcknowledged) = (implied, class) {
                command.push_str(&format!(" (acknowledged before as {})", self.describe(j)));
            }
            self.report.carried.push(Carried { command, class });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn violate(
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
    fn describe(&self, i: usize) -> String {
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
fn merge(prev: Option<&Known>, f: &MailboxFacts) -> MailboxFacts {
    let mut out = f.clone();
    if let Some(Fact::Mailbox(p)) = prev.map(|k| &k.fact) {
        if p.uniqueid == f.uniqueid {
            out.uidvalidity = f.uidvalidity.or(p.uidvalidity);
            out.last_uid = f.last_uid.or(p.last_uid);
            out.highestmodseq = f.highestmodseq.or(p.highestmodseq);
            let mut records = p.records.clone().unwrap_or_default();
            records.extend(f.records.iter().flatten().map(|(u, r)| (*u, r.clone())));
            out.records = Some(records);
        }
    }
    out
}

/// How `seen` contradicts the acknowledged `want` (records only when `seen` has them).
fn mailbox_differences(
    want: &MailboxFacts,
    seen: &MailboxFacts,
    uncertain: &BTreeSet<u32>,
) -> Vec<(Vec<u32>, String)> {
    let mut out = Vec::new();
    if !seen.uniqueid.is_empty() && seen.uniqueid != want.uniqueid {
        out.push((
            Vec::new(),
            format!("uniqueid {}, acknowledged {}", seen.uniqueid, want.uniqueid),
        ));
        return out;
    }
    if let (Some(s), Some(w)) = (seen.uidvalidity, want.uidvalidity) {
        if s != w {
            out.push((Vec::new(), format!("UIDVALIDITY {s}, acknowledged {w}")));
        }
    }
    if let (Some(s), Some(w)) = (seen.last_uid, want.last_uid) {
        if s < w {
            out.push((Vec::new(), format!("LAST_UID {s}, acknowledged {w}")));
        }
    }
    if let (Some(s), Some(w)) = (seen.highestmodseq, want.highestmodseq) {
        if s < w {
            out.push((Vec::new(), format!("HIGHESTMODSEQ {s}, acknowledged {w}")));
        }
    }
    let (Some(have), Some(wanted)) = (&seen.records, &want.records) else {
        return out;
    };
    let mut missing = Vec::new();
    for (uid, w) in wanted {
        match have.get(uid) {
            None if !w.expunged => missing.push(*uid),
            None => {}
            Some(h) if h.guid != w.guid => out.push((
                vec![*uid],
                format!("GUID {}, acknowledged {}", h.guid, w.guid),
            )),
            Some(h) => {
                if h.expunged != w.expunged {
                    let what = if w.expunged {
                        "live, acknowledged expunged"
                    } else {
                        "expunged, acknowledged live"
                    };
                    out.push((vec![*uid], what.to_owned()));
                } else if !uncertain.contains(uid) && h.flags != w.flags {
                    out.push((
                        vec![*uid],
                        format!("flags {:?}, acknowledged {:?}", h.flags, w.flags),
                    ));
                }
            }
        }
    }
    if !missing.is_empty() {
        let what = format!("{} acknowledged record(s) missing", missing.len());
        out.push((missing, what));
    }
    out
}

fn written_uids(w: &Write) -> Vec<u32> {
    match w {
        Write::Mailbox(m) => m.records.iter().flatten().map(|(u, _)| *u).collect(),
        Write::Expunge { uids, .. } => uids.clone(),
        _ => Vec::new(),
    }
}

fn write_mailbox(w: &Write) -> Option<String> {
    match w {
        Write::Mailbox(m) => Some(m.name.clone()),
        Write::Unmailbox(m) | Write::Expunge { mailbox: m, .. } => Some(m.clone()),
        Write::Rename { old, .. } => Some(old.clone()),
        Write::Sub { mailbox, .. } => Some(mailbox.clone()),
        _ => None,
    }
}

/// The op that acknowledged, before the catch-up, what `w` carries again.
fn implied_by(w: &Write, before: &BTreeMap<Obj, (Fact, usize)>) -> Option<usize> {
    let get = |o: Obj| before.get(&o);
    match w {
        Write::Mailbox(f) => match get(Obj::Mailbox(f.name.clone()))? {
            (Fact::Mailbox(k), op) => {
                let same = k.uniqueid == f.uniqueid
                    && f.last_uid <= k.last_uid
                    && f.highestmodseq <= k.highestmodseq
                    && f.records
                        .iter()
                        .flatten()
                        .all(|(u, r)| k.records.as_ref().and_then(|rs| rs.get(u)) == Some(r));
                same.then_some(*op)
            }
            _ => None,
        },
        Write::Unmailbox(m) => match get(Obj::Mailbox(m.clone()))? {
            (Fact::Gone, op) => Some(*op),
            _ => None,
        },
        Write::Sub { user, mailbox, on } => match get(Obj::Sub(user.clone(), mailbox.clone()))? {
            (Fact::Sub(k), op) if k == on => Some(*op),
            _ => None,
        },
        Write::Seen { user, seen } => match get(Obj::Seen(user.clone(), seen.uniqueid.clone()))? {
            (Fact::Seen(k), op) if k == seen => Some(*op),
            _ => None,
        },
        Write::Sieve {
            user,
            filename,
            last_update,
        } => match get(Obj::Sieve(user.clone(), filename.clone()))? {
            (Fact::Sieve(k), op) if k == last_update => Some(*op),
            _ => None,
        },
        Write::Rename { .. } | Write::Unuser(_) | Write::Expunge { .. } | Write::Message(_) => None,
    }
}
