//! Who holds which user's backup: a session between the first command that
//! opens the backup and RESTART, EXIT or the end of its connection, or
//! [`EXTERNAL`] (a `hold` lock window, like `ctl_backups lock` on real
//! backupd). Another session that opens a held backup gets [`Locked`].

use std::collections::BTreeMap;

use crate::types::{SessionId, EXTERNAL};

/// The opening of a user's backup failed because another session holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backup of `{user}` is held by session {holder}")]
pub struct Locked {
    /// The userid (or [`crate::types::names::SHARED`]).
    pub user: String,
    /// The session holding it.
    pub holder: SessionId,
}

/// The holds table: user → the session holding its backup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holds {
    holders: BTreeMap<String, SessionId>,
}

impl Holds {
    /// Hold `user` for `session`, unless another session holds it.
    pub fn claim(&mut self, session: SessionId, user: &str) -> Result<(), Locked> {
        match self.holders.get(user) {
            Some(&holder) if holder != session => Err(Locked {
                user: user.to_owned(),
                holder,
            }),
            Some(_) => Ok(()),
            None => {
                self.holders.insert(user.to_owned(), session);
                Ok(())
            }
        }
    }

    /// The session holding `user`, if any.
    pub fn holder(&self, user: &str) -> Option<SessionId> {
        self.holders.get(user).copied()
    }

    /// Release every backup `session` holds (RESTART, EXIT, disconnect).
    pub fn release(&mut self, session: SessionId) {
        self.holders.retain(|_, s| *s != session);
    }

    /// Hold `user` as [`EXTERNAL`] if nobody holds it. True when held by
    /// `EXTERNAL` afterwards; false while a session still holds it.
    pub fn hold_external(&mut self, user: &str) -> bool {
        match self.holders.get(user) {
            Some(&EXTERNAL) => true,
            Some(_) => false,
            None => {
                self.holders.insert(user.to_owned(), EXTERNAL);
                true
            }
        }
    }

    /// Release an [`EXTERNAL`] hold on `user` (no-op when a session holds it).
    pub fn release_external(&mut self, user: &str) {
        if self.holders.get(user) == Some(&EXTERNAL) {
            self.holders.remove(user);
        }
    }

    /// Users held by [`EXTERNAL`].
    pub fn external_holds(&self) -> Vec<String> {
        self.holders
            .iter()
            .filter(|(_, s)| **s == EXTERNAL)
            .map(|(u, _)| u.clone())
            .collect()
    }
}
