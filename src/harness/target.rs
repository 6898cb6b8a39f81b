//! Which server the source replicates to ([`Target`]), as `--target` and
//! scenario files name it.

use crate::cyrus::TargetKind;

/// Which server the source replicates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The fake backupd (the default).
    Fake,
    /// The fake with its `sync_server` personality (a replica's greeting and
    /// replies; lock windows block instead of answering LOCKED).
    FakeSyncServer,
    /// A real Cyrus `backupd` or `sync_server`, started in the sandbox.
    Real(TargetKind),
    /// Any csync server; its contents cannot be read, so convergence is judged
    /// by a final `-u` pass that must send no `APPLY` showing a difference
    /// (`src/runner/judge.rs`). Its kind comes from its greeting
    /// ([`kind_from_greeting`], [`crate::harness::Harness::target_kind`]).
    Remote {
        /// Where it listens.
        addr: std::net::SocketAddr,
        /// The replication user.
        authname: String,
        /// Its password.
        password: String,
    },
}

impl Target {
    /// `fake`, `fake-sync_server`, `backupd`, `sync_server` or `HOST:PORT`, as
    /// `--target` takes it.
    pub fn name(&self) -> String {
        match self {
            Target::Fake => "fake".into(),
            Target::FakeSyncServer => "fake-sync_server".into(),
            Target::Real(k) => k.name().into(),
            Target::Remote { addr, .. } => addr.to_string(),
        }
    }

    /// Parse `--target`: `fake`, `fake-sync_server`, `backupd`, `sync_server`
    /// (or `sync-server`), or `HOST:PORT` with the credentials to use there.
    pub fn parse(text: &str, authname: &str, password: &str) -> Result<Target, String> {
        match text {
            "fake" => Ok(Target::Fake),
            "fake-sync_server" | "fake-sync-server" => Ok(Target::FakeSyncServer),
            "backupd" => Ok(Target::Real(TargetKind::Backupd)),
            "sync_server" | "sync-server" => Ok(Target::Real(TargetKind::SyncServer)),
            other => {
                use std::net::ToSocketAddrs;
                let addr = other
                    .to_socket_addrs()
                    .map_err(|e| {
                        format!(
                            "`{other}`: expected `fake`, `fake-sync_server`, `backupd`, `sync_server` or HOST:PORT ({e})"
                        )
                    })?
                    .next()
                    .ok_or_else(|| format!("`{other}` resolves to no address"))?;
                Ok(Target::Remote {
                    addr,
                    authname: authname.to_owned(),
                    password: password.to_owned(),
                })
            }
        }
    }

    /// `fake`, `backupd`, `sync_server` or `remote`: the kind, as scenario
    /// files name it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Target::Fake => "fake",
            Target::FakeSyncServer => "fake-sync_server",
            Target::Real(k) => k.name(),
            Target::Remote { .. } => "remote",
        }
    }

    /// True for the fake, whatever its personality.
    pub fn is_fake(&self) -> bool {
        matches!(self, Target::Fake | Target::FakeSyncServer)
    }
}

/// What a server is by its greeting's `* OK` line: backupd says `* OK host
/// Cyrus backup server 3.6.1`, sync_server `* OK host Cyrus sync server
/// 3.6.1` (the fake in either personality says the same, with
/// `(backupd-sim)` after it). `None` for anything else: a `HOST:PORT` target
/// is then of unknown kind.
pub fn kind_from_greeting(line: &str) -> Option<TargetKind> {
    if line.contains(" Cyrus backup server") {
        Some(TargetKind::Backupd)
    } else if line.contains(" Cyrus sync server") {
        Some(TargetKind::SyncServer)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{kind_from_greeting, TargetKind};

    #[test]
    fn a_server_is_known_by_its_greeting() {
        let kind = kind_from_greeting;
        assert_eq!(
            kind("* OK bak.lab.test Cyrus backup server 3.6.1-Debian-3.6.1-4+deb12u5"),
            Some(TargetKind::Backupd)
        );
        assert_eq!(
            kind("* OK rep.lab.test Cyrus sync server 3.6.1-Debian-3.6.1-4+deb12u5"),
            Some(TargetKind::SyncServer)
        );
        assert_eq!(
            kind("* OK host Cyrus sync server 3.6.1 (backupd-sim)"),
            Some(TargetKind::SyncServer)
        );
        assert_eq!(kind("* OK mail.example.com IMAP4rev1 ready"), None);
    }
}
