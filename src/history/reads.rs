//! The checks of one read against the settled state it covers: `GET USER`,
//! `GET META`, `GET MAILBOXES`, `GET FULLMAILBOX`, `APPLY RESERVE`, and the
//! final read-back (the rules are listed in [`super::check`]).

use std::collections::BTreeSet;

use super::check::{written_uids, Fact, Obj, Sweep};
use super::facts::{Annotations, Call, MailboxFacts, Observation, Read, Write};
use super::verdict::{About, FinalRead};
use crate::store::names::owner_of;

impl Sweep<'_> {
    /// What a read of mailbox `m` sent at `t` is checked against: its
    /// settled state, its op and the records whose flags are uncertain; or,
    /// when only unanswered `APPLY MAILBOX`es of the same mailbox keep it
    /// unsettled (they can add, not take away), the part of the known state
    /// they cannot change: no ACL or annotations, LAST_UID and HIGHESTMODSEQ
    /// at the lower of the known and the written, UIDVALIDITY only if none
    /// names another, and none of the records they name.
    pub(super) fn mailbox_check(&self, m: &str, t: u64) -> Option<(Fact, usize, BTreeSet<u32>)> {
        let slot = self.slots.get(&Obj::Mailbox(m.to_owned()))?;
        if let Some(k) = slot.settled_before(t) {
            return Some((k.fact.clone(), k.op, slot.uncertain_uids.clone()));
        }
        let k = slot.at_least_before(t)?;
        let Fact::Mailbox(known) = &k.fact else {
            return None;
        };
        let mut want = known.clone();
        // An unanswered APPLY MAILBOX that carries the ACL or the annotations
        // as known leaves them so, applied or not; one that carries others
        // may have changed them.
        let (mut acl_same, mut annotations_same) = (true, true);
        let lower = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, _) => a,
        };
        for &j in &slot.growing {
            let Call::Write(w) = &self.ops[j].call else {
                continue;
            };
            if let Write::Expunge { .. } = w {
                // The records it names may be expunged; nothing else changes.
                if let Some(records) = want.records.as_mut() {
                    for uid in written_uids(w) {
                        records.remove(&uid);
                    }
                }
                continue;
            }
            let Write::Mailbox(f) = w else {
                continue;
            };
            acl_same &= f.acl.is_none() || f.acl == known.acl;
            annotations_same &= f.annotations.is_none() || f.annotations == known.annotations;
            // Taken as growing against the uniqueid known when it ended; an
            // acknowledged write may have given the mailbox another since
            // (re-created on the source): then it could replace it.
            if f.uniqueid != known.uniqueid {
                return None;
            }
            if f.uidvalidity.is_some() && f.uidvalidity != want.uidvalidity {
                want.uidvalidity = None;
            }
            want.last_uid =
                lower(want.last_uid.map(u64::from), f.last_uid.map(u64::from)).map(|u| u as u32);
            want.highestmodseq = lower(want.highestmodseq, f.highestmodseq);
            if let Some(records) = want.records.as_mut() {
                for uid in written_uids(w) {
                    records.remove(&uid);
                }
            }
        }
        if !acl_same {
            want.acl = None;
        }
        if !annotations_same {
            want.annotations = None;
        }
        Some((Fact::Mailbox(want), k.op, slot.uncertain_uids.clone()))
    }

    /// Check one answered read; true when it covered a settled state.
    pub(super) fn check_read(&mut self, i: usize, r: &Read, obs: &Observation) -> bool {
        if let Some(line) = obs.unreadable.first() {
            self.report.reads_unreadable += 1;
            if self.report.first_unreadable.is_none() {
                self.report.first_unreadable = Some(format!("{}: {line}", self.describe(i)));
            }
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
            Read::Quota(root) => return self.check_quotas(i, Some(root), obs),
        };
        let by = self.describe(i);
        let mut checked = false;
        for m in mailboxes {
            let Some((fact, op, uncertain)) = self.mailbox_check(&m, t) else {
                continue;
            };
            checked = true;
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
        checked |= self.check_quotas(i, None, obs);
        checked
    }

    /// The `* QUOTA` items of one answer (and the root `asked` by `GET
    /// QUOTA`) against the settled quota of each root: the acknowledged
    /// limits, no quota once removed, and for `GET QUOTA` one there at all.
    /// Absence from a `GET USER` answer is not checked: sync_server lists only
    /// the roots its listed mailboxes name as their QUOTAROOT.
    fn check_quotas(&mut self, i: usize, asked: Option<&str>, obs: &Observation) -> bool {
        let t = self.ops[i].invoked_us;
        let roots: BTreeSet<&str> = obs.quotas.keys().map(String::as_str).chain(asked).collect();
        let mut found = Vec::new();
        for root in roots {
            let Some(k) = self
                .slots
                .get(&Obj::Quota(root.to_owned()))
                .and_then(|s| s.settled_before(t))
            else {
                continue;
            };
            let Fact::Quota(want) = &k.fact else { continue };
            let what = match (want, obs.quotas.get(root)) {
                (Some(w), Some(s)) if s != w => Some(format!(
                    "quota {}, acknowledged {}",
                    super::facts::describe_quota(s),
                    super::facts::describe_quota(w)
                )),
                (Some(_), None) if asked == Some(root) => Some("no quota on the root".to_owned()),
                (None, Some(s)) => Some(format!(
                    "quota {} on a root acknowledged removed",
                    super::facts::describe_quota(s)
                )),
                _ => None,
            };
            found.push((root.to_owned(), k.op, what));
        }
        let checked = !found.is_empty();
        let by = self.describe(i);
        for (root, op, what) in found {
            if let Some(what) = what {
                let user = owner_of(&root).unwrap_or_default();
                self.violate(About::Quota, user, Some(root), Vec::new(), op, &by, what);
            }
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
            let Some((Fact::Mailbox(f), op, uncertain)) = self.mailbox_check(m, t) else {
                continue;
            };
            checked = true;
            for (uid, r) in f.records.iter().flatten() {
                let g = r.guid.as_str();
                // A record an unanswered write may have expunged: a replica
                // may no longer keep its body.
                if !r.expunged
                    && !uncertain.contains(uid)
                    && asked.contains(g)
                    && missing.contains(g)
                {
                    lost.push((m.clone(), *uid, g.to_owned(), op));
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
        let mut lost: Vec<(About, Vec<u32>, String)> = Vec::new();
        match (fact, seen) {
            (Fact::Gone, Some(_)) => lost.push((
                About::Mailbox,
                Vec::new(),
                "the mailbox is there, after an acknowledged removal".into(),
            )),
            // Every acknowledged record went with it: the violation names
            // their UIDs, so that a message the target never acknowledged
            // (a later, unanswered APPLY's) is not counted as lost with them.
            (Fact::Mailbox(f), None) => lost.push((
                About::Mailbox,
                f.records
                    .as_ref()
                    .map(|r| r.keys().copied().collect())
                    .unwrap_or_default(),
                format!(
                    "the mailbox is missing (acknowledged with LAST_UID {})",
                    f.last_uid.map_or_else(|| "?".into(), |u| u.to_string())
                ),
            )),
            (Fact::Mailbox(f), Some(s)) => lost.extend(mailbox_differences(f, s, uncertain)),
            _ => {}
        }
        for (about, uids, what) in lost {
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

    pub(super) fn final_read(&mut self, read: FinalRead<'_>) {
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
                            annotations: None,
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
                        // Read over IMAP or from backupd's index: not the
                        // csync form; the csync reads check these.
                        acl: None,
                        annotations: None,
                    },
                );
            }
            let mut names = Vec::new();
            let mut subs = Vec::new();
            for (o, s) in &self.slots {
                match o {
                    Obj::Mailbox(m) if owner_of(m).as_deref() == Some(&user) && shown(m) => {
                        if let Some((fact, op, uncertain)) = self.mailbox_check(m, u64::MAX) {
                            names.push((m.clone(), fact, op, uncertain));
                        }
                    }
                    Obj::Sub(su, m) if full && *su == user => {
                        if let Some(k) = s.settled_before(u64::MAX) {
                            subs.push((m.clone(), k.fact.clone(), k.op));
                        }
                    }
                    _ => {}
                }
            }
            for (m, mut fact, op, uncertain) in names {
                if !full {
                    // Flags are not read at this scope: compared empty on
                    // both sides (the records themselves still are).
                    if let Some(o) = obs.mailboxes.get_mut(&m) {
                        for r in o.records.iter_mut().flat_map(|r| r.values_mut()) {
                            r.flags.clear();
                        }
                    }
                    if let Fact::Mailbox(f) = &mut fact {
                        for r in f.records.iter_mut().flat_map(|r| r.values_mut()) {
                            r.flags.clear();
                        }
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
}

/// `/comment (shared) missing, /x (alice) has another value, /y (shared) not
/// acknowledged`: how the annotations `seen` differ from the acknowledged `want`.
fn annotation_differences(seen: &Annotations, want: &Annotations) -> String {
    let who = |userid: &str| {
        if userid.is_empty() {
            "shared".to_owned()
        } else {
            userid.to_owned()
        }
    };
    let mut parts = Vec::new();
    for ((entry, userid), value) in want {
        match seen.get(&(entry.clone(), userid.clone())) {
            Some(v) if v == value => {}
            Some(_) => parts.push(format!("{entry} ({}) has another value", who(userid))),
            None => parts.push(format!("{entry} ({}) missing", who(userid))),
        }
    }
    for (entry, userid) in seen.keys().filter(|k| !want.contains_key(*k)) {
        parts.push(format!("{entry} ({}) not acknowledged", who(userid)));
    }
    parts.join(", ")
}

/// How `seen` contradicts the acknowledged `want` (records only when `seen` has them).
fn mailbox_differences(
    want: &MailboxFacts,
    seen: &MailboxFacts,
    uncertain: &BTreeSet<u32>,
) -> Vec<(About, Vec<u32>, String)> {
    let mut out = Vec::new();
    let mut whole = |what: String| out.push((About::Mailbox, Vec::new(), what));
    if !seen.uniqueid.is_empty() && seen.uniqueid != want.uniqueid {
        whole(format!(
            "uniqueid {}, acknowledged {}",
            seen.uniqueid, want.uniqueid
        ));
        return out;
    }
    if let (Some(s), Some(w)) = (seen.uidvalidity, want.uidvalidity) {
        if s != w {
            whole(format!("UIDVALIDITY {s}, acknowledged {w}"));
        }
    }
    if let (Some(s), Some(w)) = (seen.last_uid, want.last_uid) {
        if s < w {
            whole(format!("LAST_UID {s}, acknowledged {w}"));
        }
    }
    if let (Some(s), Some(w)) = (seen.highestmodseq, want.highestmodseq) {
        if s < w {
            whole(format!("HIGHESTMODSEQ {s}, acknowledged {w}"));
        }
    }
    // Every acknowledged ACL entry and annotation must be there as written
    // (what the target adds of its own is the convergence check's business).
    if let (Some(s), Some(w)) = (&seen.acl, &want.acl) {
        for (id, rights) in w {
            let what = match s.get(id) {
                Some(r) if r == rights => continue,
                Some(r) => format!("ACL entry {id} has rights {r}, acknowledged {rights}"),
                None => format!("ACL entry {id} {rights} missing"),
            };
            out.push((About::Acl, Vec::new(), what));
        }
    }
    if let (Some(s), Some(w)) = (&seen.annotations, &want.annotations) {
        for ((entry, userid), value) in w {
            let who = if userid.is_empty() { "shared" } else { userid };
            let what = match s.get(&(entry.clone(), userid.clone())) {
                Some(v) if v == value => continue,
                Some(_) => format!("annotation {entry} ({who}) has another value"),
                None => format!("annotation {entry} ({who}) missing"),
            };
            out.push((About::Annotation, Vec::new(), what));
        }
    }
    let (Some(have), Some(wanted)) = (&seen.records, &want.records) else {
        return out;
    };
    let mut missing = Vec::new();
    // An uncertain record (one an unanswered write named, since superseded)
    // may have been expunged by it, or had its flags changed: only its GUID
    // is held to.
    for (uid, w) in wanted {
        let sure = !uncertain.contains(uid);
        match have.get(uid) {
            None if !w.expunged && sure => missing.push(*uid),
            None => {}
            Some(h) if h.guid != w.guid => out.push((
                About::Records,
                vec![*uid],
                format!("GUID {}, acknowledged {}", h.guid, w.guid),
            )),
            Some(_) if !sure => {}
            Some(h) => {
                if h.expunged != w.expunged {
                    let what = if w.expunged {
                        "live, acknowledged expunged"
                    } else {
                        "expunged, acknowledged live"
                    };
                    out.push((About::Records, vec![*uid], what.to_owned()));
                } else {
                    if h.flags != w.flags {
                        out.push((
                            About::Flags,
                            vec![*uid],
                            format!("flags {:?}, acknowledged {:?}", h.flags, w.flags),
                        ));
                    }
                    if let (Some(s), Some(w)) = (&h.annotations, &w.annotations) {
                        if s != w {
                            let what = annotation_differences(s, w);
                            out.push((
                                About::MessageAnnotation,
                                vec![*uid],
                                format!("message annotations: {what}"),
                            ));
                        }
                    }
                }
            }
        }
    }
    if !missing.is_empty() {
        let what = format!("{} acknowledged record(s) missing", missing.len());
        out.push((About::Records, missing, what));
    }
    out
}
