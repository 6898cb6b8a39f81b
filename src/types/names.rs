//! Cyrus internal mailbox names: who owns a mailbox.

/// The backup bucket for mailboxes without an owner, as backupd names it.
pub const SHARED: &str = "%SHARED";

/// The userid owning an internal mailbox name (`user.alice.Sent` → `alice`,
/// `example.com!user.bob` → `bob@example.com`, `DELETED.user.alice.X.5F1C` →
/// `alice`), or `None` for a shared mailbox.
///
/// Assumes `unixhierarchysep: no` (the separator is `.`, and a `.` inside a
/// userid travels as `^`).
pub fn owner_of(mboxname: &str) -> Option<String> {
    let (domain, local) = match mboxname.split_once('!') {
        Some((d, l)) => (Some(d), l),
        None => (None, mboxname),
    };
    let local = local.strip_prefix("DELETED.").unwrap_or(local);
    let rest = local.strip_prefix("user.")?;
    let user = rest.split('.').next().filter(|u| !u.is_empty())?;
    let user = user.replace('^', ".");
    Some(match domain {
        Some(d) => format!("{user}@{d}"),
        None => user,
    })
}

/// The backup a mailbox belongs to: its owner, or [`SHARED`].
pub fn backup_of(mboxname: &str) -> String {
    owner_of(mboxname).unwrap_or_else(|| SHARED.to_owned())
}

/// True for a mailbox Cyrus has moved aside by a delayed delete.
pub fn is_deleted_name(mboxname: &str) -> bool {
    let local = mboxname.split_once('!').map_or(mboxname, |(_, l)| l);
    local.starts_with("DELETED.")
}

/// True when `name` is `root` or a mailbox under it (`user.alice.Sent` is
/// under `user.alice`; `user.alicex` is not), as Cyrus' name-prefix checks
/// test it (`mailbox_changequotaroot`, `mboxlist_mboxtree`).
pub fn at_or_under(name: &str, root: &str) -> bool {
    name.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners() {
        assert_eq!(owner_of("user.alice").as_deref(), Some("alice"));
        assert_eq!(owner_of("user.alice.Sent.Old").as_deref(), Some("alice"));
        assert_eq!(owner_of("user.john^doe.X").as_deref(), Some("john.doe"));
        assert_eq!(
            owner_of("example.com!user.bob.X").as_deref(),
            Some("bob@example.com")
        );
        assert_eq!(
            owner_of("DELETED.user.alice.X.5F1C").as_deref(),
            Some("alice")
        );
        assert_eq!(owner_of("shared.folder"), None);
        assert_eq!(owner_of("user."), None);
        assert_eq!(backup_of("shared"), SHARED);
        assert!(is_deleted_name("DELETED.user.a.X.1"));
        assert!(!is_deleted_name("user.a"));
    }

    #[test]
    fn at_or_under_a_root() {
        assert!(at_or_under("user.alice", "user.alice"));
        assert!(at_or_under("user.alice.Sent", "user.alice"));
        assert!(at_or_under("user.alice.Sent.Old", "user.alice.Sent"));
        assert!(!at_or_under("user.alicex", "user.alice"));
        assert!(!at_or_under("user.alice", "user.alice.Sent"));
        assert!(!at_or_under("DELETED.user.alice.X.1", "user.alice"));
        assert!(!at_or_under("user.alice", ""));
    }
}
