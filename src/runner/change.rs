//! Changes made on the source over IMAP (a scenario's `change` steps), with
//! each one entered in the ledger the judge reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::cyrus::ImapClient;
use crate::populate;
use crate::scenario::ledger::{Change, Entry};
use crate::scenario::Step;
use crate::server::control::Request;

use super::Run;

impl Run<'_> {
    /// Steps that change the source or the fake (also run inside triggers).
    pub(super) fn change(&mut self, n: usize, step: &Step) -> Result<(), String> {
        let before = self.ledger.len();
        let result = self.change_inner(n, step);
        // The ledger judges a change in its user's tree: a folder of another
        // user's (`user.bob.X` in a step of alice's) would be looked for in
        // the wrong place, and its loss taken for something else.
        let outside = self.ledger[before..].iter().find_map(|e| {
            let inbox = crate::cyrus::user_inbox(e.change.user());
            e.change
                .mailboxes()
                .into_iter()
                .find(|m| !crate::types::names::at_or_under(m, &inbox))
                .map(|m| (e.change.user().to_owned(), m.to_owned()))
        });
        if let Some((user, m)) = outside {
            return Err(format!(
                "`{m}` is not one of {user}'s folders: a step acts in its user's own tree (INBOX, INBOX.…); give the folder's owner as `user`"
            ));
        }
        let new: Vec<(String, String)> = self.ledger[before..]
            .iter()
            .map(|e| (change_user(&e.change).to_owned(), e.change.to_string()))
            .collect();
        for (user, text) in new {
            self.note(crate::timeline::AnnotationKind::SourceChange { user }, text);
        }
        result
    }

    pub(super) fn change_inner(&mut self, n: usize, step: &Step) -> Result<(), String> {
        let ctl = |req: Request| self.h.ctl(&req).map(|_| ());
        match step {
            Step::SkipUser(user) => {
                let path = self.skipuser_path(user);
                if let Some(dir) = path.parent().filter(|d| !d.exists()) {
                    // The channel's directory, as Cyrus would make it: the cyrus user's.
                    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                    let (uid, gid) = self.opts.bins.cyrus_ids().map_err(|e| e.to_string())?;
                    crate::cyrus::master::chown_tree(dir, uid, gid).map_err(|e| e.to_string())?;
                }
                std::fs::write(&path, b"").map_err(|e| format!("{}: {e}", path.display()))?;
                let now = self.h.fake().now_us();
                if !self.skipped.iter().any(|(u, _)| u == user) {
                    self.skipped.push((user.clone(), now));
                }
                Ok(())
            }
            Step::UnskipUser(user) => {
                let path = self.skipuser_path(user);
                std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                let now = self.h.fake().now_us();
                if let Some(i) = self.skipped.iter().position(|(u, _)| u == user) {
                    let (_, since) = self.skipped.remove(i);
                    self.source_windows.push((since, now));
                }
                Ok(())
            }
            Step::Synclog(q) => self.synclog(q),
            Step::SharedSeen(x) => {
                // The owner shares the folder; the reader's \Seen goes to her
                // own seen database (no change of the owner's mail: no ledger entry).
                let mut c = self.login(&x.owner)?;
                c.setacl(&x.folder, &x.reader, "lrs")
                    .map_err(|e| e.to_string())?;
                c.logout().map_err(|e| e.to_string())?;
                let mut c = self.login(&x.reader)?;
                let mailbox = crate::cyrus::to_internal_name(&x.owner, &x.folder);
                c.select(&mailbox).map_err(|e| e.to_string())?;
                c.uid_store(&x.uids, "+FLAGS", &["\\Seen"])
                    .map_err(|e| e.to_string())?;
                c.logout().map_err(|e| e.to_string())
            }
            Step::Lock(l) => self.h.lock(l).map_err(|e| e.to_string()),
            Step::Unlock(name) => self.h.unlock(name).map_err(|e| e.to_string()),
            Step::Fault(_) if !self.h.target().is_fake() => {
                Err("faults are injected by the fake only".into())
            }
            Step::Fault(f) => ctl(Request::Fault { fault: f.clone() }),
            Step::Clear => self.h.clear().map_err(|e| e.to_string()),
            Step::Mark(m) => ctl(Request::Mark { name: m.clone() }),
            Step::Append(a) => {
                let mut c = self.login(&a.user)?;
                let flags: Vec<&str> = a.flags.iter().map(String::as_str).collect();
                for i in 0..a.count {
                    let body = match &a.fixture {
                        Some(f) => populate::fixture(f)
                            .ok_or_else(|| format!("no fixture `{f}`"))?
                            .to_vec(),
                        None => populate::message(
                            &format!("{}-s{n}", a.user),
                            i,
                            self.rng.below(1024) as usize,
                        ),
                    };
                    let uid = c
                        .append(&a.folder, &flags, None, &body)
                        .map_err(|e| e.to_string())?
                        .ok_or("the source gave no APPENDUID")?;
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Append {
                            user: a.user.clone(),
                            mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                            uid,
                            guid: crate::store::sha1_hex(&body),
                        },
                    });
                }
                c.logout().map_err(|e| e.to_string())
            }
            Step::Flag(f) => {
                let mut c = self.login(&f.user)?;
                c.select(&f.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &f.uids)?;
                let add: Vec<&str> = f.add.iter().map(String::as_str).collect();
                let remove: Vec<&str> = f.remove.iter().map(String::as_str).collect();
                if !add.is_empty() {
                    c.uid_store(&f.uids, "+FLAGS", &add)
                        .map_err(|e| e.to_string())?;
                }
                if !remove.is_empty() {
                    c.uid_store(&f.uids, "-FLAGS", &remove)
                        .map_err(|e| e.to_string())?;
                }
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Flags {
                        user: f.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&f.user, &f.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Expunge(x) => {
                let mut c = self.login(&x.user)?;
                c.select(&x.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &x.uids)?;
                c.uid_store(&x.uids, "+FLAGS", &["\\Deleted"])
                    .map_err(|e| e.to_string())?;
                c.uid_expunge(&x.uids).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Expunge {
                        user: x.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&x.user, &x.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Create(f) | Step::Delete(f) | Step::Subscribe(f) | Step::Unsubscribe(f) => {
                let mut c = self.login(&f.user)?;
                let mailbox = crate::cyrus::to_internal_name(&f.user, &f.folder);
                let user = f.user.clone();
                let change = match step {
                    Step::Create(_) => {
                        c.create(&f.folder).map_err(|e| e.to_string())?;
                        Change::Create { user, mailbox }
                    }
                    Step::Delete(_) => {
                        c.delete(&f.folder).map_err(|e| e.to_string())?;
                        Change::Delete { user, mailbox }
                    }
                    Step::Subscribe(_) => {
                        c.subscribe(&f.folder).map_err(|e| e.to_string())?;
                        Change::Subscription {
                            user,
                            mailbox,
                            on: true,
                        }
                    }
                    _ => {
                        c.unsubscribe(&f.folder).map_err(|e| e.to_string())?;
                        Change::Subscription {
                            user,
                            mailbox,
                            on: false,
                        }
                    }
                };
                self.ledger.push(Entry { step: n, change });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Rename(r) => {
                let mut c = self.login(&r.user)?;
                c.rename(&r.from, &r.to).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Rename {
                        user: r.user.clone(),
                        from: crate::cyrus::to_internal_name(&r.user, &r.from),
                        to: crate::cyrus::to_internal_name(&r.user, &r.to),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Move(m) => {
                let mut c = self.login(&m.user)?;
                c.select(&m.folder).map_err(|e| e.to_string())?;
                // The GUIDs of what moves, for the ledger's appends.
                let guids: BTreeMap<u32, String> = c
                    .uid_fetch_all()
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|f| (f.uid, crate::store::sha1_hex(&f.body)))
                    .collect();
                let uids = resolve_uids(&mut c, &m.uids)?;
                let pairs = if uids.is_empty() {
                    Vec::new()
                } else {
                    c.uid_move(&m.uids, &m.to).map_err(|e| e.to_string())?
                };
                if pairs.len() != uids.len() {
                    return Err(format!(
                        "moved {} message(s) but the source's COPYUID names {}",
                        uids.len(),
                        pairs.len()
                    ));
                }
                let (from, to) = (
                    crate::cyrus::to_internal_name(&m.user, &m.folder),
                    crate::cyrus::to_internal_name(&m.user, &m.to),
                );
                for (old, new) in &pairs {
                    // Without its GUID the copy would be judged superseded,
                    // never checked: the step fails instead.
                    let guid = guids.get(old).cloned().ok_or_else(|| {
                        format!("the source moved UID {old}, which the fetch before the move did not return")
                    })?;
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Append {
                            user: m.user.clone(),
                            mailbox: to.clone(),
                            uid: *new,
                            guid,
                        },
                    });
                }
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Expunge {
                        user: m.user.clone(),
                        mailbox: from,
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::DeleteUser(user) => {
                // As an administrator deletes an account: DELETE of the INBOX
                // deletes every mailbox of the user.
                let mut c = self.h.source().admin().map_err(|e| e.to_string())?;
                let inbox = crate::cyrus::user_inbox(user);
                let mut gone: Vec<String> = c
                    .list("", &format!("{inbox}*"))
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .map(|e| e.name)
                    .filter(|m| crate::types::names::at_or_under(m, &inbox))
                    .collect();
                gone.sort();
                // An admin holds only `l` and `a` implicitly: it gives itself
                // the delete right first, as `cyradm`'s users do.
                c.setacl(&inbox, "admin", "lrswipkxtecda")
                    .map_err(|e| e.to_string())?;
                c.delete(&inbox).map_err(|e| e.to_string())?;
                for mailbox in gone {
                    self.ledger.push(Entry {
                        step: n,
                        change: Change::Delete {
                            user: user.clone(),
                            mailbox,
                        },
                    });
                }
                c.logout().map_err(|e| e.to_string())
            }
            Step::Metadata(m) => {
                let mut c = self.login(&m.user)?;
                c.setmetadata(&m.folder, &m.entry, m.value.as_deref())
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Metadata {
                        user: m.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&m.user, &m.folder),
                        entry: m.entry.clone(),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            // Not a user's state: the convergence check does not read server
            // annotations, so the ledger has nothing to follow.
            Step::ServerMetadata(m) => {
                let mut c = self.h.source().admin().map_err(|e| e.to_string())?;
                c.setmetadata("", &m.entry, m.value.as_deref())
                    .map_err(|e| e.to_string())?;
                c.logout().map_err(|e| e.to_string())
            }
            Step::Annotate(a) => {
                let mut c = self.login(&a.user)?;
                c.select(&a.folder).map_err(|e| e.to_string())?;
                let uids = resolve_uids(&mut c, &a.uids)?;
                c.store_annotation(&a.uids, &a.entry, a.shared, a.value.as_deref())
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Annotations {
                        user: a.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                        uids,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Acl(a) => {
                let mut c = self.login(&a.user)?;
                c.setacl(&a.folder, &a.identifier, &a.rights)
                    .map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Acl {
                        user: a.user.clone(),
                        mailbox: crate::cyrus::to_internal_name(&a.user, &a.folder),
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            Step::Quota(q) => {
                let mut c = self.h.source().admin().map_err(|e| e.to_string())?;
                let root = crate::cyrus::user_inbox(&q.user);
                let mut limits = Vec::new();
                if let Some(v) = q.storage {
                    limits.push(("STORAGE".to_owned(), v));
                }
                if let Some(v) = q.message {
                    limits.push(("MESSAGE".to_owned(), v));
                }
                c.setquota(&root, &limits).map_err(|e| e.to_string())?;
                self.ledger.push(Entry {
                    step: n,
                    change: Change::Quota {
                        user: q.user.clone(),
                        root,
                    },
                });
                c.logout().map_err(|e| e.to_string())
            }
            other => Err(format!("`{}` is not a change", other.describe())),
        }
    }

    pub(super) fn login(&self, user: &str) -> Result<ImapClient, String> {
        self.h.source().login_as(user).map_err(|e| e.to_string())
    }
}

fn change_user(c: &Change) -> &str {
    match c {
        Change::Append { user, .. }
        | Change::Flags { user, .. }
        | Change::Expunge { user, .. }
        | Change::Create { user, .. }
        | Change::Delete { user, .. }
        | Change::Rename { user, .. }
        | Change::Metadata { user, .. }
        | Change::Annotations { user, .. }
        | Change::Quota { user, .. }
        | Change::Acl { user, .. }
        | Change::Subscription { user, .. } => user,
    }
}

/// Resolve a UID set (`1`, `2:4`, `1,3`, `5:*`) against the selected mailbox.
fn resolve_uids(c: &mut ImapClient, set: &str) -> Result<Vec<u32>, String> {
    let have: Vec<u32> = c
        .uid_fetch_all()
        .map_err(|e| e.to_string())?
        .iter()
        .map(|m| m.uid)
        .collect();
    let max = have.iter().copied().max().unwrap_or(0);
    let num = |s: &str| -> Result<u32, String> {
        if s == "*" {
            Ok(max)
        } else {
            s.parse().map_err(|_| format!("`{set}` is not a UID set"))
        }
    };
    let mut out = BTreeSet::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        let (lo, hi) = (a.min(b), a.max(b));
        out.extend(have.iter().copied().filter(|u| (lo..=hi).contains(u)));
    }
    Ok(out.into_iter().collect())
}
