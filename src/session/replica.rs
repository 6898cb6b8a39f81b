//! The `sync_server` personality: GET and APPLY as real sync_server 3.6.1
//! answers them (`imap/sync_support.c`: `sync_get`, `sync_apply`,
//! `sync_response`), over the same [`Store`] as backupd's.
//!
//! What is modelled, and what is only acknowledged:
//! - mailboxes, records, bodies, subscriptions, seen state and sieve scripts are
//!   stored and reported back, as for backupd; subscriptions raw, as the
//!   replica's sub.db keeps them (`APPLY UNMAILBOX` and `APPLY RENAME` leave
//!   them alone);
//! - `APPLY QUOTA` is stored per root and reported back, by `GET QUOTA` and
//!   after the mailboxes in `GET USER` (`* QUOTA %(ROOT … LIMIT … MODSEQ …)`),
//!   as sync_server does;
//!   `APPLY UNQUOTA` removes it. Each mailbox names its quota root
//!   (`QUOTAROOT` in `* MAILBOX`) as sync_server's does, and `GET USER` lists
//!   only the roots its mailboxes name; roots are looked for in the backup of
//!   their owner only (a root above `user.NAME`, such as `user` or a domain's,
//!   reaches no user's mailboxes);
//! - `APPLY ANNOTATION`/`UNANNOTATION` (server and mailbox entries
//!   sent outside `APPLY MAILBOX`), `ACTIVATE_SIEVE`/`UNACTIVATE_SIEVE` and
//!   `FORCE` are answered `OK success` and not stored: `GET ANNOTATION` reports
//!   nothing;
//! - intermediate mailboxes (`APPLY MAILBOX` without RECORD) are accepted and not
//!   stored;
//! - `GET FETCH`, `GET FETCH_SIEVE`, `LOCAL_*` and `RESTORE` are not modelled:
//!   `NO IMAP_PROTOCOL_ERROR Protocol error`.

use std::collections::BTreeSet;

use crate::dlist::Value;
use crate::proto::{Apply, Get, ParseError, Reply};
use crate::store::{names, sha1_hex, Store};

use super::render::{self, Dialect};
use super::{After, Response, Session};

/// sync_server's `NO IMAP_PROTOCOL_BAD_PARAMETERS` (no text after the code).
fn bad_parameters() -> Reply {
    Reply::No("IMAP_PROTOCOL_BAD_PARAMETERS".into())
}

/// `IMAP_IOERROR` and every code `sync_response` does not name.
fn unknown_error() -> Reply {
    Reply::No("Unknown error".into())
}

/// `IMAP_MAILBOX_MOVED`.
fn moved() -> Reply {
    Reply::No("IMAP_MAILBOX_MOVED Mailbox exists with another name or uniqueid".into())
}

/// How sync_server answers a line it cannot use (`imap/sync_server.c` cmdloop):
/// a dlist it cannot parse is `BAD … Failed to parse APPLY line`, a field the
/// handler cannot find is `NO IMAP_PROTOCOL_BAD_PARAMETERS`; the rest as backupd.
pub(super) fn parse_error_reply(e: &ParseError) -> Reply {
    match e {
        ParseError::Malformed { verb, .. } => Reply::Bad(format!(
            "IMAP_PROTOCOL_ERROR Failed to parse {} line",
            verb.to_ascii_uppercase()
        )),
        ParseError::BadFields { .. } => bad_parameters(),
        other => other.reply(),
    }
}

impl Session {
    fn replica_meta(&self, store: &Store, user: &str, replies: &mut Vec<Reply>) {
        let Some(b) = store.user(user) else {
            return;
        };
        // With SIEVE-MAILBOX the scripts travel as the #sieve mailbox instead.
        render::meta(b, !self.sieve_mailbox, replies);
    }

    fn done(&self, replies: Vec<Reply>, result: Result<(), Reply>) -> Response {
        match result {
            Ok(()) => {
                let mut replies = replies;
                replies.push(self.success());
                Response {
                    replies,
                    after: After::Continue,
                }
            }
            Err(r) => Response::one(r),
        }
    }

    /// `GET` as sync_server answers it.
    pub(super) fn replica_get(&mut self, g: Get, store: &mut Store) -> Response {
        let mut replies = Vec::new();
        let result = match g {
            Get::User(None) => Err(bad_parameters()),
            Get::User(Some(user)) => {
                // Nothing at all for a user without mailboxes (not even LSUB).
                // The user's own tree first, its DELETED.* mailboxes after it,
                // each in name order, as mboxlist_usermboxtree walks them
                // (MBOXTREE_DELETED): a name-ordered map would put DELETED.*
                // first, and the client reserves in the order it is told.
                let mut roots: Vec<&str> = Vec::new();
                let mut mailboxes: Vec<Reply> = Vec::new();
                if let Some(b) = store.user(&user) {
                    let (deleted, live): (Vec<_>, Vec<_>) = b
                        .mailboxes
                        .values()
                        .partition(|m| m.name.starts_with("DELETED."));
                    for m in live.into_iter().chain(deleted) {
                        // sync_mailbox_byentry: the roots the listed
                        // mailboxes name, each once, in the order met.
                        if let Some(r) = m.quotaroot.as_deref() {
                            if !roots.contains(&r) {
                                roots.push(r);
                            }
                        }
                        mailboxes.push(Reply::Data(
                            "MAILBOX".into(),
                            render::mailbox(m, false, Dialect::SyncServer),
                        ));
                    }
                }
                if !mailboxes.is_empty() {
                    replies.extend(mailboxes);
                    // Then those roots' quotas (quota_work prints a root
                    // only when it exists), then the meta data: not every
                    // root the user has (sync_get_user, sync_support.c
                    // 3579-3600 at 3.6.1).
                    for root in roots {
                        if let Some(q) = store
                            .user(&names::backup_of(root))
                            .and_then(|b| b.quotas.get(root))
                        {
                            replies.push(Reply::Data("QUOTA".into(), render::quota(root, q)));
                        }
                    }
                    self.replica_meta(store, &user, &mut replies);
                }
                Ok(())
            }
            Get::Meta(user) => {
                self.replica_meta(store, &user, &mut replies);
                Ok(())
            }
            // Any mix of users; unknown names are skipped.
            Get::Mailboxes(list) => {
                for name in &list {
                    let m = store
                        .user(&names::backup_of(name))
                        .and_then(|b| b.mailboxes.get(name));
                    if let Some(m) = m {
                        replies.push(Reply::Data(
                            "MAILBOX".into(),
                            render::mailbox(m, false, Dialect::SyncServer),
                        ));
                    }
                }
                Ok(())
            }
            Get::FullMailbox(name) => match store
                .user(&names::backup_of(&name))
                .and_then(|b| b.mailboxes.get(&name))
            {
                Some(m) => {
                    replies.push(Reply::Data(
                        "MAILBOX".into(),
                        render::mailbox(m, true, Dialect::SyncServer),
                    ));
                    Ok(())
                }
                None => Err(Reply::nonexistent()),
            },
            Get::UniqueIds => Ok(()),
            Get::Quota(root) => {
                if let Some(q) = store
                    .user(&names::backup_of(&root))
                    .and_then(|b| b.quotas.get(&root))
                {
                    replies.push(Reply::Data("QUOTA".into(), render::quota(&root, q)));
                }
                Ok(())
            }
            // Annotations outside APPLY MAILBOX are not stored.
            Get::Unsupported { key } if key == "ANNOTATION" => Ok(()),
            Get::Unsupported { .. } => Err(Reply::protocol_error()),
        };
        self.done(replies, result)
    }

    /// `APPLY` as sync_server answers it.
    pub(super) fn replica_apply(&mut self, a: Apply, store: &mut Store) -> Response {
        let mut replies = Vec::new();
        let result = match a {
            Apply::Reserve {
                mailboxes, guids, ..
            } => {
                let owners: BTreeSet<String> =
                    mailboxes.iter().map(|n| names::backup_of(n)).collect();
                let mut missing: Vec<&String> = Vec::new();
                for g in &guids {
                    let g_lc = g.to_ascii_lowercase();
                    let found = self.reserved.contains(&g_lc)
                        || owners
                            .iter()
                            .any(|o| store.user(o).is_some_and(|b| b.guids.contains(&g_lc)));
                    if found {
                        self.reserved.insert(g_lc);
                    } else if !missing.contains(&g) {
                        missing.push(g);
                    }
                }
                if !missing.is_empty() {
                    replies.push(Reply::Data(
                        "MISSING".into(),
                        Value::List(missing.into_iter().map(Value::atom).collect()),
                    ));
                }
                Ok(())
            }
            Apply::Message(files) => {
                // A body that does not hash to its GUID is not kept; the record
                // that needs it fails later, as sync_server's parse of the
                // staged file does.
                let mut result = Ok(());
                for f in &files {
                    let guid = f.guid.to_ascii_lowercase();
                    if sha1_hex(&f.data) != guid {
                        continue;
                    }
                    if store.bodies_mut().insert(&guid, &f.data).is_err() {
                        result = Err(unknown_error());
                        break;
                    }
                    self.reserved.insert(guid);
                }
                result
            }
            Apply::Mailbox(u) => self.replica_mailbox(&u, store),
            Apply::Unmailbox(name) => {
                let owner = names::backup_of(&name);
                match store.user_mut(&owner) {
                    Some(b) if b.mailboxes.contains_key(&name) => {
                        // The subscription stays: sync_server's mboxlist_deletemailbox
                        // drops none (imapd unsubscribes only with
                        // `delete_unsubscribe`, off by default), and the replica's
                        // sub.db keeps it, like the source's and backupd's (measured:
                        // docs/findings/subscriptions.md).
                        b.unmailbox(&name);
                        Ok(())
                    }
                    _ => Err(Reply::nonexistent()),
                }
            }
            Apply::Rename {
                old,
                new,
                partition,
                uidvalidity,
            } => {
                let owner = names::backup_of(&old);
                let new_owner = names::backup_of(&new);
                let exists = store
                    .user(&owner)
                    .is_some_and(|b| b.mailboxes.contains_key(&old));
                if !exists {
                    Err(Reply::nonexistent())
                } else if owner == new_owner {
                    if let Some(b) = store.user_mut(&owner) {
                        // No subscription moves: sync_server renames with
                        // move_subscription = 0, so the old name's subscription
                        // stays in the replica's sub.db and none is added for the
                        // new name, as on the source (measured:
                        // docs/findings/subscriptions.md).
                        b.rename(&old, &new, &partition, uidvalidity);
                        // sync_server's rename stamps the folder with its
                        // HIGHESTMODSEQ (seen in replica-03: FOLDERMODSEQ 1 -> 3).
                        if let Some(m) = b.mailboxes.get_mut(&new) {
                            m.foldermodseq = Some(m.highestmodseq);
                        }
                    }
                    Ok(())
                } else {
                    // A move to another user: take it out of one backup, into the other.
                    let moved = store
                        .user_mut(&owner)
                        .and_then(|b| b.mailboxes.remove(&old));
                    if let Some(mut m) = moved {
                        m.name.clone_from(&new);
                        m.partition = partition;
                        if let Some(v) = uidvalidity {
                            m.uidvalidity = v;
                        }
                        m.foldermodseq = Some(m.highestmodseq);
                        let guids: Vec<String> =
                            m.records.iter().map(|r| r.guid.to_hex()).collect();
                        let target = store.user_entry(&new_owner);
                        m.quotaroot = crate::store::renamed_quota_root(
                            m.quotaroot.as_deref(),
                            target.quota_root_of(&new),
                        );
                        target.guids.extend(guids);
                        target.mailboxes.insert(new, m);
                    }
                    Ok(())
                }
            }
            Apply::Seen(s) => {
                store.user_entry(&s.user).set_seen(&s);
                Ok(())
            }
            Apply::Sub { user, mailbox } => {
                store.user_entry(&user).subscriptions.insert(mailbox);
                Ok(())
            }
            Apply::Unsub { user, mailbox } => {
                if let Some(b) = store.user_mut(&user) {
                    b.subscriptions.remove(&mailbox);
                }
                Ok(())
            }
            Apply::Sieve {
                user,
                filename,
                last_update,
                content,
            } => {
                store
                    .user_entry(&user)
                    .put_sieve(&filename, last_update, &content);
                Ok(())
            }
            Apply::Unsieve { user, filename } => {
                if let Some(b) = store.user_mut(&user) {
                    b.delete_sieve(&filename);
                }
                Ok(())
            }
            Apply::ActivateSieve { .. } | Apply::UnactivateSieve { .. } => Ok(()),
            // sync_apply_quota: mboxlist_setquotas(root, limits, modseq).
            Apply::Quota {
                root,
                limits,
                modseq,
            } => {
                let b = store.user_entry(&names::backup_of(&root));
                // A new root takes the mailboxes at and under it; a changed
                // one only gets its limits.
                if !b.quotas.contains_key(&root) {
                    b.add_quota_root(&root);
                }
                b.quotas
                    .insert(root, crate::store::Quota { limits, modseq });
                Ok(())
            }
            // sync_apply_unquota: mboxlist_unsetquota(root); OK for an unknown
            // root. The mailboxes that counted against it have none after.
            Apply::Unquota(root) => {
                if let Some(b) = store.user_mut(&names::backup_of(&root)) {
                    if b.quotas.remove(&root).is_some() {
                        b.remove_quota_root(&root);
                    }
                }
                Ok(())
            }
            // sync_apply_unuser: the user's subscriptions, its mailboxes
            // (mboxlist_usermboxtree without MBOXTREE_DELETED: the DELETED.*
            // ones stay), then user_deletedata (seen, sieve, quota roots).
            Apply::Unuser(user) => {
                if let Some(mut b) = store.remove_user(&user) {
                    b.mailboxes.retain(|name, _| name.starts_with("DELETED."));
                    if !b.mailboxes.is_empty() {
                        b.subscriptions.clear();
                        b.seen.clear();
                        b.sieve.clear();
                        b.quotas.clear();
                        *store.user_entry(&user) = b;
                    }
                }
                Ok(())
            }
            Apply::Capabilities(names) => {
                let enabled: Vec<&String> = names
                    .iter()
                    .filter(|n| n.eq_ignore_ascii_case("SIEVE-MAILBOX"))
                    .collect();
                if !enabled.is_empty() {
                    self.sieve_mailbox = true;
                }
                replies.push(Reply::Data(
                    "ENABLED".into(),
                    Value::List(enabled.into_iter().map(Value::atom).collect()),
                ));
                Ok(())
            }
            Apply::Expunge {
                mailbox,
                uniqueid,
                uids,
            } => match store
                .user_mut(&names::backup_of(&mailbox))
                .and_then(|b| b.mailboxes.get_mut(&mailbox))
            {
                None => Err(Reply::nonexistent()),
                Some(m) if m.uniqueid != uniqueid => Err(moved()),
                Some(m) => {
                    for r in m.records.iter_mut().filter(|r| uids.contains(&r.uid)) {
                        r.expunged = true;
                    }
                    Ok(())
                }
            },
            Apply::Unsupported { key }
                if matches!(key.as_str(), "ANNOTATION" | "UNANNOTATION" | "FORCE") =>
            {
                Ok(())
            }
            Apply::Unsupported { .. } => Err(Reply::protocol_error()),
        };
        self.done(replies, result)
    }

    /// `APPLY MAILBOX`: every new, live record's body must be in this user's
    /// backup or in the session's GUID cache, else `NO Unknown error` and
    /// nothing changes (sync_server's `sync_append_copyfile` fails with
    /// IMAP_IOERROR and the mailbox transaction is aborted).
    fn replica_mailbox(
        &mut self,
        u: &crate::proto::MailboxUpdate,
        store: &mut Store,
    ) -> Result<(), Reply> {
        if u.records.is_none() {
            // An intermediate mailbox: accepted, not stored.
            return Ok(());
        }
        if u.missing_required().is_some() {
            return Err(bad_parameters());
        }
        let owner = names::backup_of(&u.mboxname);
        let (backup, bodies) = store.user_entry_and_bodies(&owner);
        let mut needed: Vec<String> = Vec::new();
        for r in u.records.iter().flatten() {
            let guid = r.guid.to_ascii_lowercase();
            let expunged = r.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Expunged"));
            if backup.guids.contains(&guid) || expunged {
                continue;
            }
            if !self.reserved.contains(&guid) || !bodies.contains(&guid) {
                return Err(unknown_error());
            }
            needed.push(guid);
        }
        backup.guids.extend(needed);
        let owner = names::backup_of(&u.mboxname);
        store.apply_mailbox(&owner, u);
        Ok(())
    }
}
