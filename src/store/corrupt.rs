//! The store side of `corrupt` and `drop-corrupt` faults
//! ([`crate::fault::Corruption`]): break one kind of stored state right after
//! a command was executed and acknowledged, or as its connection drops.

use crate::types::Corruption;

use super::{names, Flags, Guid, Mailbox, PackedAnnotations, Record, Store};

impl Store {
    /// Apply `what` to the state the command named (`mailboxes`, else the
    /// `users` it touches). Returns what was broken, or why nothing was, for
    /// the fault's event.
    pub fn corrupt(&mut self, what: Corruption, users: &[String], mailboxes: &[String]) -> String {
        match what {
            Corruption::Subscription => {
                for user in users {
                    let Some(b) = self.users.get_mut(user) else {
                        continue;
                    };
                    let named = mailboxes.iter().find(|m| b.subscriptions.contains(*m));
                    let victim = named.cloned().or_else(|| b.subscriptions.first().cloned());
                    if let Some(m) = victim {
                        b.subscriptions.remove(&m);
                        return format!("dropped {user}'s subscription to {m}");
                    }
                }
                "no subscription to drop".into()
            }
            Corruption::Quota => {
                let touched = users
                    .iter()
                    .filter_map(|u| self.users.get(u).map(|b| (u, b)));
                let owner = touched
                    .chain(self.users.iter())
                    .find(|(_, b)| !b.quotas.is_empty())
                    .map(|(u, _)| u.clone());
                if let Some(b) = owner.and_then(|u| self.users.get_mut(&u)) {
                    if let Some(root) = b.quotas.keys().next().cloned() {
                        b.quotas.remove(&root);
                        return format!("dropped quota root {root}");
                    }
                }
                "no quota root to drop".into()
            }
            Corruption::Body => {
                // The named mailbox's highest-UID live message.
                let victim = mailboxes.iter().rev().find_map(|name| {
                    let b = self.users.get(&names::backup_of(name))?;
                    let r = b
                        .mailboxes
                        .get(name)?
                        .records
                        .iter()
                        .rfind(|r| !r.expunged)?;
                    Some((name.clone(), r.uid, r.guid))
                });
                let Some((name, uid, guid)) = victim else {
                    return format!("no live message among {mailboxes:?}");
                };
                match self.bodies.corrupt(&guid) {
                    Ok(true) => {
                        format!("{name} UID {uid}: flipped a byte of body {}", guid.to_hex())
                    }
                    Ok(false) => format!("{name} UID {uid}: no body stored for {}", guid.to_hex()),
                    Err(e) => format!("{name} UID {uid}: corrupting body {}: {e}", guid.to_hex()),
                }
            }
            Corruption::DeletedMailbox => {
                for user in users {
                    let Some(b) = self.users.get_mut(user) else {
                        continue;
                    };
                    let victim = b
                        .mailboxes
                        .keys()
                        .find(|n| names::is_deleted_name(n))
                        .cloned();
                    if let Some(n) = victim {
                        b.mailboxes.remove(&n);
                        return format!("forgot {n}");
                    }
                }
                "no DELETED.* mailbox to forget".into()
            }
            _ => {
                // The mailbox the command stored last: APPLY MAILBOX's, or a
                // RENAME's new name.
                for name in mailboxes.iter().rev() {
                    let owner = names::backup_of(name);
                    let Some(b) = self.users.get_mut(&owner) else {
                        continue;
                    };
                    if what == Corruption::ForgetMailbox {
                        if b.mailboxes.remove(name).is_some() {
                            return format!("forgot {name}");
                        }
                        continue;
                    }
                    let Some(m) = b.mailboxes.get_mut(name) else {
                        continue;
                    };
                    return corrupt_mailbox(what, name, m);
                }
                format!("no stored mailbox among {mailboxes:?}")
            }
        }
    }
}

fn corrupt_mailbox(what: Corruption, name: &str, m: &mut Mailbox) -> String {
    let is_seen = |f: &str| f.eq_ignore_ascii_case("\\Seen");
    let last_live = |m: &mut Mailbox, want: &dyn Fn(&Record) -> bool| -> Option<usize> {
        m.records.iter().rposition(|r| !r.expunged && want(r))
    };
    match what {
        Corruption::Uniqueid => {
            let old = std::mem::take(&mut m.uniqueid);
            m.uniqueid = format!("corrupt{old}");
            format!("{name}: uniqueid {old} -> {}", m.uniqueid)
        }
        Corruption::Uidvalidity => {
            m.uidvalidity = m.uidvalidity.wrapping_sub(1);
            format!("{name}: UIDVALIDITY lowered to {}", m.uidvalidity)
        }
        Corruption::LastUid => {
            m.last_uid = m.last_uid.wrapping_sub(1);
            format!("{name}: last UID lowered to {}", m.last_uid)
        }
        Corruption::Highestmodseq => {
            m.highestmodseq = m.highestmodseq.wrapping_sub(1);
            format!("{name}: HIGHESTMODSEQ lowered to {}", m.highestmodseq)
        }
        Corruption::Acl => {
            let text = String::from_utf8_lossy(&m.acl).into_owned();
            let mut fields: Vec<&str> = text.split('\t').filter(|f| !f.is_empty()).collect();
            if fields.len() < 2 {
                return format!("{name}: no ACL entry to drop");
            }
            let rights = fields.pop().unwrap_or_default();
            let id = fields.pop().unwrap_or_default();
            let mut kept = fields.join("\t");
            if !kept.is_empty() {
                kept.push('\t');
            }
            m.acl = bytes::Bytes::from(kept);
            format!("{name}: dropped the ACL entry {id} {rights}")
        }
        Corruption::MailboxAnnotation => {
            let i = m
                .annotations
                .iter()
                .position(|a| crate::mailstate::is_compared_entry(&a.entry));
            match i {
                Some(i) => {
                    let a = m.annotations.remove(i);
                    format!("{name}: dropped annotation {} of `{}`", a.entry, a.userid)
                }
                None => format!("{name}: no annotation to drop"),
            }
        }
        _ => {
            let want: Box<dyn Fn(&Record) -> bool> = match what {
                Corruption::Flag => Box::new(|r| r.flags.iter().any(|f| !is_seen(f))),
                Corruption::Seen => Box::new(|r| r.flags.iter().any(|f| is_seen(f))),
                Corruption::MessageAnnotation => Box::new(|r| {
                    r.annotations
                        .iter()
                        .any(|a| crate::mailstate::is_compared_entry(&a.entry))
                }),
                _ => Box::new(|_| true),
            };
            let Some(i) = last_live(m, &*want) else {
                return format!("{name}: no live message to corrupt ({what})");
            };
            let r = &mut m.records[i];
            let uid = r.uid;
            let done = match what {
                Corruption::ForgetMessage => {
                    m.records.remove(i);
                    "forgotten".to_owned()
                }
                Corruption::Guid => {
                    let mut bytes = r.guid.0;
                    bytes[0] ^= 0xff;
                    r.guid = Guid(bytes);
                    format!("GUID changed to {}", r.guid.to_hex())
                }
                Corruption::Flag | Corruption::Seen => {
                    let victim = r
                        .flags
                        .iter()
                        .map(|f| f.to_string())
                        .find(|f| is_seen(f) == (what == Corruption::Seen))
                        .unwrap_or_default();
                    r.flags = Flags::new(
                        r.flags
                            .iter()
                            .map(|f| f.to_string())
                            .filter(|f| *f != victim),
                    );
                    format!("dropped {victim}")
                }
                Corruption::Internaldate => {
                    r.internaldate += 1;
                    "INTERNALDATE moved by 1 s".to_owned()
                }
                Corruption::Size => {
                    r.size += 1;
                    "size grown by 1".to_owned()
                }
                Corruption::MessageAnnotation => {
                    let mut all: Vec<_> = r.annotations.iter().collect();
                    let j = all
                        .iter()
                        .position(|a| crate::mailstate::is_compared_entry(&a.entry))
                        .expect("chosen for one");
                    let a = all.remove(j);
                    r.annotations = PackedAnnotations::new(all);
                    format!("dropped annotation {} of `{}`", a.entry, a.userid)
                }
                other => format!("{other} is not a message corruption"),
            };
            format!("{name} UID {uid}: {done}")
        }
    }
}
