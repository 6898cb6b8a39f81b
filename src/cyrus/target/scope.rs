//! [`StateScope`]: how much of a [`MailState`] a target's reader can see, and
//! the projection that cuts both sides of a comparison down to it.

use crate::mailstate::MailState;

/// How much of a [`MailState`] a target holds and its reader can see;
/// comparisons must be made at the scope of the weaker side (see
/// [`StateScope::project`]). `docs/oracle.md` has the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum StateScope {
    /// Only mailbox names, uniqueids, live UID -> GUID and the `DELETED.*`
    /// mailboxes' names and message counts (all `cyr_backup` prints).
    UidGuid,
    /// Everything a backupd keeps: all of [`MailState`] but quota (backupd
    /// acknowledges `APPLY QUOTA` and stores nothing: `backup/backupd.c`
    /// `cmd_apply`, "ignore and succeed"; the fake does the same).
    Backup,
    /// Every field of [`MailState`] (a replica).
    Full,
}

impl StateScope {
    /// Cut `state` down to what this scope can see. Apply it to *both* sides
    /// before comparing.
    /// - [`StateScope::Backup`]: quota roots are cleared;
    /// - [`StateScope::UidGuid`]: also flags, INTERNALDATE, size, annotations,
    ///   ACLs, UIDVALIDITY, last UID, HIGHESTMODSEQ, subscriptions and the
    ///   `DELETED.*` mailboxes' UIDVALIDITY and last UID.
    pub fn project(self, state: &MailState) -> MailState {
        let mut out = state.clone();
        if self == StateScope::Full {
            return out;
        }
        for user in out.users.values_mut() {
            user.quotas.clear();
            if self == StateScope::Backup {
                continue;
            }
            user.subscriptions.clear();
            for d in user.deleted.values_mut() {
                d.uidvalidity = 0;
                d.last_uid = 0;
                d.highestmodseq = 0;
            }
            for mb in user.mailboxes.values_mut() {
                mb.uidvalidity = 0;
                mb.last_uid = 0;
                mb.highestmodseq = 0;
                mb.annotations.clear();
                mb.acl.clear();
                for m in mb.messages.values_mut() {
                    m.flags.clear();
                    m.internaldate = 0;
                    m.size = 0;
                    m.annotations.clear();
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstate::{DeletedMailbox, MailboxState, MessageState, UserState};

    #[test]
    fn uid_guid_scope_clears_what_cyr_backup_cannot_show() {
        let mut s = MailState::default();
        let mut us = UserState::default();
        us.subscriptions.insert("user.a".into());
        let mut mb = MailboxState {
            uniqueid: Some("u".into()),
            uidvalidity: 7,
            last_uid: 3,
            highestmodseq: 9,
            ..MailboxState::default()
        };
        mb.messages.insert(
            3,
            MessageState {
                guid: "g".into(),
                flags: vec!["\\Seen".into()],
                internaldate: 5,
                size: 10,
                annotations: [("/comment value.priv".to_string(), "n".to_string())].into(),
            },
        );
        mb.annotations.insert("/private/comment".into(), "c".into());
        mb.acl.insert("anyone".into(), "lr".into());
        us.mailboxes.insert("user.a".into(), mb);
        us.quotas
            .insert("user.a".into(), [("STORAGE".to_string(), 10)].into());
        us.deleted.insert(
            "DELETED.user.a.T.1".into(),
            DeletedMailbox {
                uidvalidity: 4,
                last_uid: 2,
                messages: 1,
                highestmodseq: 6,
            },
        );
        s.users.insert("a".into(), us);
        assert_eq!(StateScope::Full.project(&s), s);
        let b = StateScope::Backup.project(&s);
        assert!(b.users["a"].quotas.is_empty());
        let mut without_quota = s.clone();
        without_quota.users.get_mut("a").expect("a").quotas.clear();
        assert_eq!(b, without_quota, "Backup clears quota only");
        let p = StateScope::UidGuid.project(&s);
        let pm = &p.users["a"].mailboxes["user.a"];
        assert_eq!(pm.uniqueid.as_deref(), Some("u"));
        assert_eq!((pm.uidvalidity, pm.last_uid, pm.highestmodseq), (0, 0, 0));
        assert_eq!(pm.messages[&3].guid, "g");
        assert!(pm.messages[&3].flags.is_empty());
        assert!(pm.messages[&3].annotations.is_empty() && pm.annotations.is_empty());
        assert!(pm.acl.is_empty());
        assert!(p.users["a"].subscriptions.is_empty());
        assert_eq!(
            p.users["a"].deleted["DELETED.user.a.T.1"],
            DeletedMailbox {
                uidvalidity: 0,
                last_uid: 0,
                messages: 1,
                highestmodseq: 0,
            }
        );
    }
}
