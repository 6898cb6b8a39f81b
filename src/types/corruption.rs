//! Mutation faults: the fake executes a command, acknowledges it, and corrupts
//! exactly one kind of stored state right after. Each [`Corruption`] breaks one
//! row of the convergence check (`docs/oracle.md`), to prove the check catches
//! it and names it: a row without a mutation that makes it fail is not a row.
//!
//! The corruption itself is applied to the store
//! ([`crate::store::Store::corrupt`]), on what the command named: the mailbox of
//! `APPLY MAILBOX` (the new name of `APPLY RENAME`), the subscription of
//! `APPLY SUB`, or the users the command touches (for `APPLY QUOTA`, which
//! names no user, the first stored quota root).

use serde::Serialize;

/// One kind of stored state a `corrupt` fault breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corruption {
    /// Forget the named mailbox entirely (no tombstone).
    ForgetMailbox,
    /// Change the named mailbox's uniqueid.
    Uniqueid,
    /// Lower the named mailbox's UIDVALIDITY by one.
    Uidvalidity,
    /// Lower the named mailbox's last UID by one.
    LastUid,
    /// Lower the named mailbox's HIGHESTMODSEQ by one.
    Highestmodseq,
    /// Forget the named mailbox's highest-UID live message.
    ForgetMessage,
    /// Change the GUID of the named mailbox's highest-UID live message.
    Guid,
    /// Drop one flag other than `\Seen` from the highest-UID live message carrying one.
    Flag,
    /// Drop `\Seen` (the owner's seen state) from the highest-UID live message carrying it.
    Seen,
    /// Move the INTERNALDATE of the highest-UID live message by one second.
    Internaldate,
    /// Grow the size of the highest-UID live message by one byte.
    Size,
    /// Drop one compared annotation of the named mailbox.
    MailboxAnnotation,
    /// Drop one entry of the named mailbox's ACL (the last identifier).
    Acl,
    /// Drop one compared annotation of the highest-UID live message carrying one.
    MessageAnnotation,
    /// Drop the named subscription (`APPLY SUB`), else the user's first.
    Subscription,
    /// Forget one `DELETED.*` mailbox of the users the command touches.
    DeletedMailbox,
    /// Drop a quota root (kept by the sync_server personality only): one of the
    /// users the command touches, else the first stored (`APPLY QUOTA` names
    /// no user).
    Quota,
    /// Flip one byte of the stored body of the named mailbox's highest-UID
    /// live message (not a row of the convergence check: the `bodies` check,
    /// which only the fake can make, reads every stored body back).
    Body,
}

impl Corruption {
    /// The rows of the convergence check, in the order of `docs/oracle.md`:
    /// every corruption but [`Corruption::Body`]. Explore draws from these
    /// only: a body is stored once for every backup that holds it, so a
    /// broken one would fail the later cases of a shared fake too.
    pub const ROWS: [Corruption; 17] = [
        Corruption::ForgetMailbox,
        Corruption::Uniqueid,
        Corruption::Uidvalidity,
        Corruption::LastUid,
        Corruption::Highestmodseq,
        Corruption::ForgetMessage,
        Corruption::Guid,
        Corruption::Flag,
        Corruption::Seen,
        Corruption::Internaldate,
        Corruption::Size,
        Corruption::MailboxAnnotation,
        Corruption::Acl,
        Corruption::MessageAnnotation,
        Corruption::Subscription,
        Corruption::DeletedMailbox,
        Corruption::Quota,
    ];

    /// Every corruption, in the order of `docs/oracle.md`.
    pub const ALL: [Corruption; 18] = [
        Corruption::ForgetMailbox,
        Corruption::Uniqueid,
        Corruption::Uidvalidity,
        Corruption::LastUid,
        Corruption::Highestmodseq,
        Corruption::ForgetMessage,
        Corruption::Guid,
        Corruption::Flag,
        Corruption::Seen,
        Corruption::Internaldate,
        Corruption::Size,
        Corruption::MailboxAnnotation,
        Corruption::Acl,
        Corruption::MessageAnnotation,
        Corruption::Subscription,
        Corruption::DeletedMailbox,
        Corruption::Quota,
        Corruption::Body,
    ];

    /// The name written in plans (`what = "flag"`).
    pub fn name(self) -> &'static str {
        match self {
            Corruption::ForgetMailbox => "forget-mailbox",
            Corruption::Uniqueid => "uniqueid",
            Corruption::Uidvalidity => "uidvalidity",
            Corruption::LastUid => "last-uid",
            Corruption::Highestmodseq => "highestmodseq",
            Corruption::ForgetMessage => "forget-message",
            Corruption::Guid => "guid",
            Corruption::Flag => "flag",
            Corruption::Seen => "seen",
            Corruption::Internaldate => "internaldate",
            Corruption::Size => "size",
            Corruption::MailboxAnnotation => "mailbox-annotation",
            Corruption::Acl => "acl",
            Corruption::MessageAnnotation => "message-annotation",
            Corruption::Subscription => "subscription",
            Corruption::DeletedMailbox => "deleted-mailbox",
            Corruption::Quota => "quota",
            Corruption::Body => "body",
        }
    }

    /// The corruption called `name`, if any.
    pub fn from_name(name: &str) -> Option<Corruption> {
        Corruption::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Every name, for error messages.
    pub fn names() -> String {
        Corruption::ALL.map(Corruption::name).join(", ")
    }
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Corruption::ALL {
            assert_eq!(Corruption::from_name(c.name()), Some(c));
        }
        assert_eq!(Corruption::from_name("flags"), None);
    }

    /// The rows are every corruption but the body, in the same order.
    #[test]
    fn the_rows_are_all_but_the_body() {
        let rows: Vec<Corruption> = Corruption::ALL
            .into_iter()
            .filter(|c| *c != Corruption::Body)
            .collect();
        assert_eq!(rows, Corruption::ROWS);
    }
}
