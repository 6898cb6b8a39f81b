//! [`StateScope`]: how much of a [`MailState`] a target's reader can see, and
//! the projection that cuts both sides of a comparison down to it.

use crate::mailstate::MailState;

/// How much of a [`MailState`] a target holds and its reader can see;
/// comparisons must be made at the scope of the weaker side (see
/// [`StateScope::project`]). `docs/oracle.md` has the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum StateScope {
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
    /// - [`StateScope::Backup`]: quota roots are cleared.
    pub fn project(self, state: &MailState) -> MailState {
        let mut out = state.clone();
        if self == StateScope::Full {
            return out;
        }
        for user in out.users.values_mut() {
            user.quotas.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailstate::{DeletedMailbox, MailboxState, MessageState, UserState};

    #[test]
    fn the_backup_scope_clears_quota_only() {
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
    }
}
