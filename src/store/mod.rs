//! The fake backupd's backup contents and its per-user locks.
//!
//! [`Store`] holds one [`UserBackup`] per userid (plus [`names::SHARED`] for
//! mailboxes with no owner), keyed and merged the way real backupd does it
//! (`backup/lcb_indexw.c` at 3.6.1), except that records are keyed by UID, not by
//! GUID (see `docs/sync-protocol.md` §3.3). Message bodies go to [`Bodies`].
//!
//! The store never sees a socket or a clock. It is shared by every connection
//! behind one mutex; a session "holds" a user between the first command that
//! opens the user's backup and RESTART, EXIT or the end of the connection, and
//! another session that tries to open it meanwhile gets `LOCKED`.

pub mod bodies;
mod corrupt;
mod holds;
mod state_file;

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::types::{
    bytes_serde, names, sha1_hex, AsGuid, Flags, Guid, GuidSet, Name, PackCache, PackedAnnotations,
    Recent, RecordAnnotation, SessionId, SmallBytes, EXTERNAL,
};
pub use bodies::{Bodies, MessageMeta};
pub use holds::{Holds, Locked};
pub use state_file::{load_state, save_state, StateError};

use crate::mailstate::{MailState, MailboxState, MessageState, UserState};
use crate::proto::{MailboxUpdate, RecordUpdate, SeenUpdate};
use crate::types::Annotation;

/// Every backup, the bodies and who holds what.
#[derive(Debug)]
pub struct Store {
    /// Backups by userid.
    users: BTreeMap<String, UserBackup>,
    /// Message bodies.
    bodies: Bodies,
    /// Who holds which backup.
    holds: Holds,
}

/// One user's backup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserBackup {
    /// Live mailboxes by internal name.
    pub mailboxes: BTreeMap<String, Mailbox>,
    /// Mailboxes removed by `APPLY UNMAILBOX` or replaced by a newer one of the
    /// same name; kept as backupd keeps them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted_mailboxes: Vec<Mailbox>,
    /// Subscribed mailbox names.
    #[serde(default)]
    pub subscriptions: BTreeSet<String>,
    /// Seen state for mailboxes this user does not own, by mailbox uniqueid.
    #[serde(default)]
    pub seen: BTreeMap<String, Seen>,
    /// Sieve scripts.
    #[serde(default)]
    pub sieve: Vec<Sieve>,
    /// Quota roots by root name (`user.alice`), as `APPLY QUOTA` sent them:
    /// kept by the sync_server personality only (backupd ignores quota).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub quotas: BTreeMap<String, Quota>,
    /// GUIDs of the bodies appended to this user's backup (backupd checks a
    /// record's GUID against these, not against every backup).
    #[serde(default)]
    pub guids: GuidSet,
}

/// One mailbox, with every field `APPLY MAILBOX` sent, echoed back verbatim.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mailbox {
    pub uniqueid: String,
    /// Internal name (the key it is stored under, repeated for tombstones).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mboxtype: Option<String>,
    pub uidvalidity: u32,
    pub last_uid: u32,
    pub highestmodseq: u64,
    #[serde(default)]
    pub recentuid: u32,
    #[serde(default)]
    pub recenttime: i64,
    #[serde(default)]
    pub last_appenddate: i64,
    #[serde(default)]
    pub pop3_last_login: i64,
    #[serde(default)]
    pub pop3_show_after: i64,
    #[serde(default)]
    pub partition: String,
    #[serde(default, with = "bytes_serde")]
    pub acl: Bytes,
    #[serde(default)]
    pub options: String,
    #[serde(default)]
    pub sync_crc: u32,
    #[serde(default)]
    pub sync_crc_annot: u32,
    #[serde(default)]
    pub xconvmodseq: u64,
    /// CREATEDMODSEQ/FOLDERMODSEQ as last sent (printed by the sync_server personality).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub createdmodseq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foldermodseq: Option<u64>,
    /// The quota root the mailbox counts against (`mailbox->h.quotaroot`),
    /// kept as sync_server keeps it: found by walking up the name when the
    /// mailbox is created or renamed (`quota_findroot`), changed by a new
    /// root above it and cleared when its root is removed (see
    /// [`UserBackup::add_quota_root`]). Always none on backupd, which keeps
    /// no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotaroot: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    /// When this backup first saw the mailbox (1, 2, … per user; 0 in state
    /// files written before it was kept). backupd lists a user's mailboxes in
    /// this order (its index's row order, `SELECT … FROM mailbox` with no
    /// ORDER BY), and the client's `APPLY RESERVE` repeats that order.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub backup_order: u64,
    /// Records sorted by UID; expunged ones are kept, marked.
    #[serde(default)]
    pub records: Vec<Record>,
}

/// One message record: 96 bytes plus its packed annotations, whatever its flags
/// (flag lists, flag names and annotation names are interned).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// UID.
    pub uid: u32,
    /// GUID (40 hex digits in the state file).
    pub guid: Guid,
    /// Flags without `\Expunged`, in wire order.
    pub flags: Flags,
    /// MODSEQ.
    pub modseq: u64,
    /// LAST_UPDATED.
    #[serde(default)]
    pub last_updated: i64,
    /// INTERNALDATE.
    pub internaldate: i64,
    /// SIZE.
    pub size: u64,
    /// Once true, stays true (backupd keeps the first expunge time).
    pub expunged: bool,
    /// Per-record annotations, verbatim.
    #[serde(default, skip_serializing_if = "PackedAnnotations::is_empty")]
    pub annotations: PackedAnnotations,
}

/// Seen state of one mailbox.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub lastread: i64,
    pub lastuid: u32,
    pub lastchange: i64,
    #[serde(with = "bytes_serde")]
    pub seenuids: Bytes,
}

/// One quota root as `APPLY QUOTA` sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// The limits in wire order (`LIMIT`, the legacy copy of `STORAGE`, first).
    pub limits: Vec<(String, u64)>,
    /// MODSEQ.
    pub modseq: u64,
}

/// One sieve script.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sieve {
    pub filename: String,
    pub last_update: i64,
    /// SHA-1 of the content.
    pub guid: String,
    #[serde(with = "bytes_serde")]
    pub content: Bytes,
}

impl Store {
    /// An empty store with its bodies in an anonymous temporary file.
    pub fn temporary() -> io::Result<Store> {
        Ok(Store::with_bodies(Bodies::temporary()?))
    }

    /// An empty store over `bodies`.
    pub fn with_bodies(bodies: Bodies) -> Store {
        Store {
            users: BTreeMap::new(),
            bodies,
            holds: Holds::default(),
        }
    }

    /// Open `user`'s backup for `session`, creating it when absent, as backupd's
    /// `backupd_open_backup` does. Fails when another session holds it.
    pub fn open(&mut self, session: SessionId, user: &str) -> Result<&mut UserBackup, Locked> {
        self.holds.claim(session, user)?;
        Ok(self.user_entry(user))
    }

    /// Who holds which backup.
    pub fn holds(&self) -> &Holds {
        &self.holds
    }

    /// The holds table, to change (sessions ending, lock windows).
    pub fn holds_mut(&mut self) -> &mut Holds {
        &mut self.holds
    }

    /// The session holding `user`, if any.
    pub fn holder(&self, user: &str) -> Option<SessionId> {
        self.holds.holder(user)
    }

    /// Release every backup `session` holds (RESTART, EXIT, disconnect).
    pub fn release(&mut self, session: SessionId) {
        self.holds.release(session);
    }

    /// Every backup, by userid.
    pub fn users(&self) -> &BTreeMap<String, UserBackup> {
        &self.users
    }

    /// `user`'s backup, if there is one.
    pub fn user(&self, user: &str) -> Option<&UserBackup> {
        self.users.get(user)
    }

    /// `user`'s backup to change, if there is one (no hold is taken: the
    /// sync_server personality does not lock).
    pub fn user_mut(&mut self, user: &str) -> Option<&mut UserBackup> {
        self.users.get_mut(user)
    }

    /// `user`'s backup, created empty when absent (no hold is taken).
    pub fn user_entry(&mut self, user: &str) -> &mut UserBackup {
        self.users.entry(user.to_owned()).or_default()
    }

    /// `user`'s backup (created empty when absent) beside the bodies, to
    /// check bodies while changing the backup.
    pub fn user_entry_and_bodies(&mut self, user: &str) -> (&mut UserBackup, &Bodies) {
        (self.users.entry(user.to_owned()).or_default(), &self.bodies)
    }

    /// Remove `user`'s backup.
    pub fn remove_user(&mut self, user: &str) -> Option<UserBackup> {
        self.users.remove(user)
    }

    /// The message bodies.
    pub fn bodies(&self) -> &Bodies {
        &self.bodies
    }

    /// The message bodies, to store into.
    pub fn bodies_mut(&mut self) -> &mut Bodies {
        &mut self.bodies
    }

    /// Store `bodies` and credit each to the backups of `users` (created when
    /// absent), as `APPLY MESSAGE` does. Each backup is looked up once, not
    /// once per body.
    pub fn add_bodies<'a>(
        &mut self,
        users: &[String],
        bodies: impl IntoIterator<Item = (&'a Guid, &'a [u8])>,
    ) -> io::Result<()> {
        for u in users {
            self.user_entry(u);
        }
        let mut backups: Vec<&mut UserBackup> = self
            .users
            .iter_mut()
            .filter(|(u, _)| users.contains(u))
            .map(|(_, b)| b)
            .collect();
        for (g, data) in bodies {
            self.bodies.insert(g, data)?;
            for b in &mut backups {
                b.guids.insert(*g);
            }
        }
        Ok(())
    }

    /// Apply `APPLY MAILBOX` to `user`'s backup, merging as backupd does: the
    /// mailbox is upserted by UNIQUEID, records are merged by UID (never removed),
    /// and a record whose body is not in this backup is skipped.
    ///
    /// The caller has opened `user` and checked [`MailboxUpdate::missing_required`].
    pub fn apply_mailbox(&mut self, user: &str, u: &MailboxUpdate) {
        let backup = self.users.entry(user.to_owned()).or_default();
        let (mut mbox, live) = backup.take_by_uniqueid(&u.uniqueid).unwrap_or_default();
        if !live || mbox.name != u.mboxname {
            // Created (mailbox_create) or renamed (mailbox_rename_nocopy):
            // its quota root is found from its name.
            mbox.quotaroot = renamed_quota_root(
                mbox.quotaroot.as_deref().filter(|_| live),
                backup.quota_root_of(&u.mboxname),
            );
        }
        if let Some(other) = backup.mailboxes.remove(&u.mboxname) {
            // A different mailbox of the same name: it was deleted and re-created.
            backup.deleted_mailboxes.push(other);
        }
        if mbox.backup_order == 0 {
            mbox.backup_order = backup
                .mailboxes
                .values()
                .chain(&backup.deleted_mailboxes)
                .map(|m| m.backup_order)
                .max()
                .unwrap_or(0)
                + 1;
        }
        mbox.uniqueid.clone_from(&u.uniqueid);
        mbox.name.clone_from(&u.mboxname);
        mbox.mboxtype.clone_from(&u.mboxtype);
        mbox.last_uid = u.last_uid.unwrap_or(mbox.last_uid);
        mbox.highestmodseq = u.highestmodseq.unwrap_or(mbox.highestmodseq);
        mbox.recentuid = u.recentuid.unwrap_or(mbox.recentuid);
        mbox.recenttime = u.recenttime.unwrap_or(mbox.recenttime);
        mbox.last_appenddate = u.last_appenddate.unwrap_or(mbox.last_appenddate);
        mbox.pop3_last_login = u.pop3_last_login.unwrap_or(mbox.pop3_last_login);
        mbox.pop3_show_after = u.pop3_show_after.unwrap_or(0);
        mbox.uidvalidity = u.uidvalidity.unwrap_or(mbox.uidvalidity);
        if let Some(p) = &u.partition {
            mbox.partition.clone_from(p);
        }
        if let Some(a) = &u.acl {
            // A copy: a slice would keep the whole command frame alive.
            mbox.acl = Bytes::copy_from_slice(a);
        }
        if let Some(o) = &u.options {
            mbox.options.clone_from(o);
        }
        mbox.sync_crc = u.sync_crc.unwrap_or(0);
        mbox.sync_crc_annot = u.sync_crc_annot.unwrap_or(0);
        mbox.xconvmodseq = u.xconvmodseq.unwrap_or(0);
        mbox.createdmodseq = u.createdmodseq;
        mbox.foldermodseq = u.foldermodseq;
        mbox.annotations = owned_annotations(u.annotations.as_deref().unwrap_or_default());
        let incoming = u.records.as_deref().unwrap_or_default();
        mbox.records.reserve_exact(incoming.len());
        let mut cache = PackCache::default();
        for r in incoming {
            if let Some(guid) = Guid::parse(&r.guid).filter(|g| backup.guids.contains(g)) {
                mbox.merge_record(r, guid, &mut cache);
            }
        }
        // `reserve_exact` over-reserves when records were updated, not added.
        if mbox.records.capacity() - mbox.records.len() > mbox.records.len() / 8 + 16 {
            mbox.records.shrink_to_fit();
        }
        backup.mailboxes.insert(mbox.name.clone(), mbox);
    }

    /// Project every backup onto the comparable [`MailState`]: live mailboxes
    /// (not deleted, not moved aside as `DELETED.*`), live records, subscriptions.
    pub fn mail_state(&self) -> MailState {
        MailState {
            users: self
                .users
                .iter()
                .filter(|(u, _)| u.as_str() != names::SHARED)
                .map(|(u, b)| (u.clone(), b.user_state(u)))
                .collect(),
        }
    }
}

impl UserBackup {
    /// Take the mailbox with `uniqueid` out of the live or the deleted ones;
    /// `true` when it was live.
    fn take_by_uniqueid(&mut self, uniqueid: &str) -> Option<(Mailbox, bool)> {
        if let Some(name) = self
            .mailboxes
            .iter()
            .find(|(_, m)| m.uniqueid == uniqueid)
            .map(|(n, _)| n.clone())
        {
            return self.mailboxes.remove(&name).map(|m| (m, true));
        }
        let i = self
            .deleted_mailboxes
            .iter()
            .position(|m| m.uniqueid == uniqueid)?;
        Some((self.deleted_mailboxes.remove(i), false))
    }

    /// Mark a mailbox deleted (`APPLY UNMAILBOX`); unknown names are ignored.
    pub fn unmailbox(&mut self, name: &str) {
        if let Some(m) = self.mailboxes.remove(name) {
            self.deleted_mailboxes.push(m);
        }
    }

    /// Rename the mailbox called `old` (`APPLY RENAME`).
    pub fn rename(&mut self, old: &str, new: &str, partition: &str, uidvalidity: Option<u32>) {
        if let Some(mut m) = self.mailboxes.remove(old) {
            if let Some(other) = self.mailboxes.remove(new) {
                self.deleted_mailboxes.push(other);
            }
            m.name = new.to_owned();
            m.partition = partition.to_owned();
            if let Some(v) = uidvalidity {
                m.uidvalidity = v;
            }
            m.quotaroot = renamed_quota_root(m.quotaroot.as_deref(), self.quota_root_of(new));
            self.mailboxes.insert(new.to_owned(), m);
        }
    }

    /// The quota root of a mailbox called `name`, as `quota_findroot`
    /// (`imap/quota_db.c` at 3.6.1) finds it: `name` itself if it is a root,
    /// else the nearest root above it, walking up the part after any
    /// `domain!`, then the domain's root (`domain!`). Only this backup's roots
    /// are looked at (a root is kept in its owner's backup).
    pub fn quota_root_of(&self, name: &str) -> Option<String> {
        let (domain, local) = match name.split_once('!') {
            Some((d, l)) => (Some(d), l),
            None => (None, name),
        };
        let full = |l: &str| domain.map_or_else(|| l.to_owned(), |d| format!("{d}!{l}"));
        let mut l = local;
        loop {
            let candidate = full(l);
            if self.quotas.contains_key(&candidate) {
                return Some(candidate);
            }
            match l.rfind('.') {
                Some(i) => l = &l[..i],
                None => break,
            }
        }
        let d = format!("{}!", domain?);
        self.quotas.contains_key(&d).then_some(d)
    }

    /// A new quota root `root` (`mboxlist_setquotas` of a root that did not
    /// exist, `imap/mboxlist.c` at 3.6.1): every mailbox at or under it takes
    /// it, except one whose root is `root` or a root below it
    /// (`mailbox_changequotaroot`, `imap/mailbox.c` 8189: "Part of a child
    /// quota root - skip"). The caller stores the limits.
    pub fn add_quota_root(&mut self, root: &str) {
        for m in self.mailboxes.values_mut() {
            if names::at_or_under(&m.name, root) {
                m.quotaroot = renamed_quota_root(m.quotaroot.as_deref(), Some(root.to_owned()));
            }
        }
    }

    /// Quota root `root` removed (`mboxlist_unsetquota` → `mboxlist_rmquota`,
    /// `imap/mboxlist.c` at 3.6.1): the mailboxes at or under it that counted
    /// against it have no quota root afterwards; none is moved to a root
    /// above. The caller removes the limits.
    pub fn remove_quota_root(&mut self, root: &str) {
        for m in self.mailboxes.values_mut() {
            if names::at_or_under(&m.name, root) && m.quotaroot.as_deref() == Some(root) {
                m.quotaroot = None;
            }
        }
    }

    /// Upsert seen state (`APPLY SEEN`).
    pub fn set_seen(&mut self, s: &SeenUpdate) {
        self.seen.insert(
            s.uniqueid.clone(),
            Seen {
                lastread: s.lastread,
                lastuid: s.lastuid,
                lastchange: s.lastchange,
                seenuids: Bytes::copy_from_slice(&s.seenuids),
            },
        );
    }

    /// Store a sieve script (`APPLY SIEVE`), replacing one of the same name.
    pub fn put_sieve(&mut self, filename: &str, last_update: i64, content: &Bytes) {
        self.sieve.retain(|s| s.filename != filename);
        self.sieve.push(Sieve {
            filename: filename.to_owned(),
            last_update,
            guid: sha1_hex(content),
            content: Bytes::copy_from_slice(content),
        });
    }

    /// Remove a sieve script (`APPLY UNSIEVE`).
    pub fn delete_sieve(&mut self, filename: &str) {
        self.sieve.retain(|s| s.filename != filename);
    }

    /// The comparable view of `owner`'s backup: live mailboxes, the
    /// `DELETED.*` ones apart, subscriptions raw, quota roots (stored by the
    /// sync_server personality only: backupd keeps no quota, see
    /// `docs/oracle.md`).
    fn user_state(&self, owner: &str) -> UserState {
        let (deleted, live): (Vec<_>, Vec<_>) = self
            .mailboxes
            .iter()
            .partition(|(n, _)| names::is_deleted_name(n));
        UserState {
            mailboxes: live
                .into_iter()
                .map(|(n, m)| (n.clone(), m.mailbox_state(owner)))
                .collect(),
            subscriptions: self.subscriptions.clone(),
            deleted: deleted
                .into_iter()
                .map(|(n, m)| {
                    let d = crate::mailstate::DeletedMailbox {
                        uidvalidity: m.uidvalidity,
                        last_uid: m.last_uid,
                        messages: u32::try_from(m.records.iter().filter(|r| !r.expunged).count())
                            .unwrap_or(u32::MAX),
                        highestmodseq: m.highestmodseq,
                    };
                    (n.clone(), d)
                })
                .collect(),
            quotas: self
                .quotas
                .iter()
                .map(|(root, q)| {
                    let limits = q
                        .limits
                        .iter()
                        .filter(|(r, _)| r != "LIMIT")
                        .map(|(r, l)| (r.clone(), *l))
                        .collect();
                    (root.clone(), limits)
                })
                .collect(),
        }
    }
}

impl Mailbox {
    fn merge_record(&mut self, r: &RecordUpdate, guid: Guid, cache: &mut PackCache) {
        let is_expunged = |f: &&String| f.eq_ignore_ascii_case("\\Expunged");
        let expunged = r.flags.iter().any(|f| is_expunged(&f));
        let kept = || r.flags.iter().filter(|f| !is_expunged(f));
        // Neighbours mostly carry the same flags: reuse theirs without a lookup.
        let flags = match self.records.last() {
            Some(x)
                if x.flags
                    .iter()
                    .map(|n| n.as_str())
                    .eq(kept().map(String::as_str)) =>
            {
                x.flags.clone()
            }
            _ => Flags::new(kept()),
        };
        let new = Record {
            uid: r.uid,
            guid,
            flags,
            modseq: r.modseq,
            last_updated: r.last_updated,
            internaldate: r.internaldate,
            size: r.size,
            expunged,
            annotations: PackedAnnotations::pack_with(
                cache,
                r.annotations
                    .iter()
                    .map(|a| (a.entry.as_str(), a.userid.as_str(), a.modseq, &a.value[..])),
            ),
        };
        let last = self.records.last().map(|x| x.uid);
        if last.is_none_or(|l| l < r.uid) {
            // The common case (a first sync): records arrive in UID order.
            self.records.push(new);
            return;
        }
        match self.records.binary_search_by_key(&r.uid, |x| x.uid) {
            Ok(i) => {
                let was_expunged = self.records[i].expunged;
                self.records[i] = new;
                self.records[i].expunged |= was_expunged;
            }
            Err(i) => self.records.insert(i, new),
        }
    }

    fn mailbox_state(&self, owner: &str) -> MailboxState {
        MailboxState {
            acl: crate::mailstate::parse_acl(&String::from_utf8_lossy(&self.acl)),
            annotations: self
                .annotations
                .iter()
                .filter_map(|a| {
                    let key = crate::mailstate::mailbox_annotation_key(&a.entry, &a.userid, owner)?;
                    Some((key, String::from_utf8_lossy(&a.value).into_owned()))
                })
                .collect(),
            uniqueid: Some(self.uniqueid.clone()),
            uidvalidity: self.uidvalidity,
            last_uid: self.last_uid,
            highestmodseq: self.highestmodseq,
            messages: self
                .records
                .iter()
                .filter(|r| !r.expunged)
                .map(|r| {
                    (
                        r.uid,
                        MessageState {
                            guid: r.guid.to_hex(),
                            flags: MessageState::normalize_flags(
                                r.flags.iter().map(|f| f.to_string()),
                            ),
                            internaldate: r.internaldate,
                            size: r.size,
                            annotations: r
                                .annotations
                                .iter()
                                .filter_map(|a| {
                                    let key = crate::mailstate::message_annotation_key(
                                        &a.entry, &a.userid, owner,
                                    )?;
                                    Some((key, String::from_utf8_lossy(&a.value).into_owned()))
                                })
                                .collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Annotations with their values copied out of the command frame they were
/// parsed from (a `Bytes` slice would keep the whole frame, megabytes for a
/// big `APPLY MAILBOX`, alive for as long as the record lives).
fn owned_annotations(a: &[Annotation]) -> Vec<Annotation> {
    a.iter()
        .map(|a| Annotation {
            entry: a.entry.clone(),
            userid: a.userid.clone(),
            modseq: a.modseq,
            value: Bytes::copy_from_slice(&a.value),
        })
        .collect()
}

impl Store {
    /// Check that every live record's body is stored and hashes to its GUID.
    /// Returns one line per problem (user, mailbox, UID, what).
    pub fn verify_bodies(&self) -> Vec<String> {
        self.verify_bodies_of(|_| true)
    }

    /// [`Store::verify_bodies`] for the users `of` selects only (a run's
    /// own, when earlier runs on the same fake left theirs).
    pub fn verify_bodies_of(&self, of: impl Fn(&str) -> bool) -> Vec<String> {
        let mut wanted: Vec<(String, String, u32, Guid)> = Vec::new();
        for (user, b) in self.users.iter().filter(|(u, _)| of(u)) {
            for (name, m) in &b.mailboxes {
                for r in m.records.iter().filter(|r| !r.expunged) {
                    wanted.push((user.clone(), name.clone(), r.uid, r.guid));
                }
            }
        }
        let mut problems = Vec::new();
        for (user, name, uid, guid) in wanted {
            match self.bodies.read(&guid) {
                Ok(Some(data)) if Guid::of(&data) == guid => {}
                Ok(Some(_)) => problems.push(format!(
                    "user {user}, mailbox {name}, UID {uid}: stored body does not hash to {guid}"
                )),
                Ok(None) => problems.push(format!(
                    "user {user}, mailbox {name}, UID {uid}: no body stored for {guid}"
                )),
                Err(e) => problems.push(format!(
                    "user {user}, mailbox {name}, UID {uid}: reading body {guid}: {e}"
                )),
            }
        }
        problems
    }
}

/// A mailbox's quota root after `mailbox_changequotaroot(mailbox, new)`
/// (`imap/mailbox.c` 8189 at 3.6.1), which renames and new roots go through:
/// a mailbox whose root `old` is `new` or under it keeps it ("Part of a child
/// quota root - skip"), any other takes `new`, none included.
pub fn renamed_quota_root(old: Option<&str>, new: Option<String>) -> Option<String> {
    match (old, new) {
        (Some(o), Some(n)) if names::at_or_under(o, &n) => Some(o.to_owned()),
        (_, n) => n,
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::{renamed_quota_root, Quota, UserBackup};

    #[test]
    fn a_record_stays_small() {
        assert_eq!(std::mem::size_of::<super::Record>(), 96);
    }

    /// `quota_findroot`: the name itself, else the nearest root above it;
    /// within a domain, then the domain's root.
    #[test]
    fn the_quota_root_of_a_name_is_found_walking_up() {
        let mut b = UserBackup::default();
        for r in ["user.a", "user.a.W", "d.org!user.b", "e.org!"] {
            b.quotas.insert(r.into(), Quota::default());
        }
        let root = |n: &str| b.quota_root_of(n);
        assert_eq!(root("user.a").as_deref(), Some("user.a"));
        assert_eq!(root("user.a.Sent.X").as_deref(), Some("user.a"));
        assert_eq!(root("user.a.W.X").as_deref(), Some("user.a.W"));
        assert_eq!(root("user.ab"), None);
        assert_eq!(root("DELETED.user.a.X.1F"), None);
        assert_eq!(root("d.org!user.b.X").as_deref(), Some("d.org!user.b"));
        assert_eq!(root("d.org!user.c"), None);
        assert_eq!(root("e.org!user.c").as_deref(), Some("e.org!"));
    }

    /// `mailbox_changequotaroot`: a mailbox whose root is the new one or
    /// under it keeps its root; any other takes the new one (none included).
    #[test]
    fn a_changed_quota_root_skips_child_roots() {
        let s = |x: &str| Some(x.to_owned());
        assert_eq!(renamed_quota_root(None, s("user.a")), s("user.a"));
        assert_eq!(
            renamed_quota_root(Some("user.a.W"), s("user.a")),
            s("user.a.W")
        );
        assert_eq!(
            renamed_quota_root(Some("user.a"), s("user.a.W")),
            s("user.a.W")
        );
        assert_eq!(
            renamed_quota_root(Some("user.ab"), s("user.a")),
            s("user.a")
        );
        assert_eq!(renamed_quota_root(Some("user.a"), None), None);
    }
}
