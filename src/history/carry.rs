//! What the catch-up passes carried, and why: queued, repeated, or
//! previously acknowledged (a loss the catch-up healed).

use std::collections::{BTreeMap, BTreeSet};

use super::check::{write_user, Fact, Obj, Sweep};
use super::facts::{Call, Write};
use super::verdict::{Carried, CarryClass};

impl Sweep<'_> {
    pub(super) fn carried(&mut self, catch_up_t: u64, before: &BTreeMap<Obj, (Fact, usize)>) {
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
        Write::Quota { root, limits } => match get(Obj::Quota(root.clone()))? {
            (Fact::Quota(k), op) if k == limits => Some(*op),
            _ => None,
        },
        Write::Rename { .. } | Write::Unuser(_) | Write::Expunge { .. } | Write::Message(_) => None,
    }
}
