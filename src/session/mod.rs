//! One client connection to the fake backupd, as a state machine. Sans-IO.
//!
//! The driver ([`crate::server`]) pushes received bytes in with
//! [`Session::push`], takes complete commands out with [`Session::next_incoming`],
//! and has each one executed against the shared [`Store`] with
//! [`Session::execute`], which returns the reply lines and what to do next
//! ([`After`]). Between taking a command and executing it the driver may consult
//! a fault plan; the session neither knows nor cares.
//!
//! Replies follow real backupd 3.6.1 (`backup/backupd.c`), cited in
//! `docs/sync-protocol.md` §1 and §3, or, with [`Personality::SyncServer`],
//! real sync_server 3.6.1 (`imap/sync_server.c`, the server half of
//! `imap/sync_support.c`); the differences are listed in [`Personality`].

mod decoder;
mod render;
mod replica;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;

use crate::dlist::{FrameError, Limits, Value};
use crate::proto::{Apply, Command, Get, Reply};
use crate::store::{names, Guid, Locked, SessionId, Store, UserBackup};
use render::Dialect;

pub use decoder::{CommandLabel, Decoder, Incoming};

/// The credentials the fake accepts (the `sync_authname`/`sync_password` of the
/// client's channel).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Authentication id.
    pub user: String,
    /// Password.
    pub password: String,
}

/// Which real Cyrus server the fake imitates.
///
/// - [`Personality::Backupd`] (the default): `backupd` 3.6-3.10 (removed
///   upstream in 3.12). Per-user backups held by a session until RESTART, a busy
///   user answered `NO IMAP_MAILBOX_LOCKED Mailbox locked`, `OK Success`.
/// - [`Personality::SyncServer`]: `sync_server` (every version, the only target
///   left in 3.12+). Greets with `* SIEVE-MAILBOX` and answers
///   `APPLY CAPABILITIES` with `* ENABLED (…)`; `OK success`; no per-session
///   user holds, and a busy user makes the command *wait* (the driver blocks it
///   while a lock window matches) instead of `LOCKED`; message bodies go to a
///   per-session GUID cache (cleared by RESTART) and a new record whose body
///   was neither reserved nor uploaded is refused with `NO Unknown error`;
///   `* MAILBOX` lines in sync_server's field order, with the mailbox's
///   `QUOTAROOT` when it has one and without backupd's
///   `MBOXTYPE NIL`/`QUOTAROOT NIL`; `GET MAILBOXES` across users,
///   `APPLY EXPUNGE`, `UNUSER` (drops the user), `UNQUOTA`, `ANNOTATION`,
///   `UNANNOTATION` and `FORCE` served (quota stored per root, annotations
///   acknowledged, not stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Personality {
    /// Cyrus `backupd` 3.6.1.
    #[default]
    #[serde(rename = "backupd")]
    Backupd,
    /// Cyrus `sync_server` 3.6.1 (a replica).
    #[serde(rename = "sync_server")]
    SyncServer,
}

impl Personality {
    /// Every personality, by name.
    pub const ALL: [Personality; 2] = [Personality::Backupd, Personality::SyncServer];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Personality::Backupd => "backupd",
            Personality::SyncServer => "sync_server",
        }
    }

    /// True when a lock window makes matching commands wait (sync_server)
    /// rather than answer `LOCKED` (backupd).
    pub fn blocks_on_locks(self) -> bool {
        self == Personality::SyncServer
    }
}

impl std::fmt::Display for Personality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Personality {
    type Err = String;

    fn from_str(s: &str) -> Result<Personality, String> {
        Personality::ALL
            .into_iter()
            .find(|p| p.name() == s || (s == "sync-server" && *p == Personality::SyncServer))
            .ok_or_else(|| {
                format!("unknown personality `{s}`: expected `backupd` or `sync_server`")
            })
    }
}

/// What every session of one server shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Host name in the greeting.
    pub servername: String,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Advertise and accept `COMPRESS DEFLATE`.
    pub offer_compress: bool,
    /// Framing limits.
    pub limits: Limits,
    /// The server imitated.
    pub personality: Personality,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            servername: "backupd-sim".into(),
            credentials: Credentials {
                user: "repluser".into(),
                password: "secret".into(),
            },
            offer_compress: true,
            limits: Limits::default(),
            personality: Personality::Backupd,
        }
    }
}

/// What the driver must do after writing a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Read the next command.
    Continue,
    /// Switch both directions to raw DEFLATE from the next byte on.
    StartDeflate,
    /// Close the connection.
    Close,
}

/// The reply lines to one input, and what follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Lines to send, in order.
    pub replies: Vec<Reply>,
    /// What to do after sending them.
    pub after: After,
}

impl Response {
    fn one(r: Reply) -> Response {
        Response {
            replies: vec![r],
            after: After::Continue,
        }
    }

    /// The wire bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.replies {
            r.encode(&mut out);
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    PreAuth,
    SaslContinue,
    Authed,
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    id: SessionId,
    config: Arc<SessionConfig>,
    decoder: Decoder,
    phase: Phase,
    compressing: bool,
    /// Users this session holds, with the GUIDs reported MISSING for each.
    held: BTreeMap<String, BTreeSet<String>>,
    /// sync_server: `APPLY CAPABILITIES (SIEVE-MAILBOX)` was accepted.
    sieve_mailbox: bool,
    /// Why the last command was answered `LOCKED` by this session (a user
    /// another holder has), until [`Session::take_refusal`].
    refused: Option<Locked>,
    /// sync_server: GUIDs whose bodies this session may use in `APPLY MAILBOX`
    /// (found by `APPLY RESERVE` or uploaded by `APPLY MESSAGE`), until RESTART.
    reserved: BTreeSet<String>,
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(id: SessionId, config: Arc<SessionConfig>) -> Session {
        Session {
            id,
            decoder: Decoder::new(config.limits),
            config,
            phase: Phase::PreAuth,
            compressing: false,
            held: BTreeMap::new(),
            sieve_mailbox: false,
            refused: None,
            reserved: BTreeSet::new(),
        }
    }

    /// Why the last command executed was answered `LOCKED` by the session
    /// itself (another session or a `hold` window holds a user it opens):
    /// the typed lock verdict, taken once.
    pub fn take_refusal(&mut self) -> Option<Locked> {
        self.refused.take()
    }

    /// The size and a printable head of the last input taken by
    /// [`Session::next_incoming`]: its first line, shortened, with SASL data and
    /// literal bytes left out.
    pub fn last_frame(&self) -> (usize, &str) {
        self.decoder.last_frame()
    }

    /// This session's id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// True once authenticated.
    pub fn authenticated(&self) -> bool {
        self.phase == Phase::Authed
    }

    /// The server this session imitates.
    pub fn personality(&self) -> Personality {
        self.config.personality
    }

    /// True once `APPLY CAPABILITIES (SIEVE-MAILBOX)` was accepted (sync_server).
    pub fn sieve_mailbox(&self) -> bool {
        self.sieve_mailbox
    }

    /// The final line of a successful GET or APPLY: `OK Success` from backupd,
    /// `OK success` from sync_server.
    pub fn success(&self) -> Reply {
        match self.config.personality {
            Personality::Backupd => Reply::success(),
            Personality::SyncServer => Reply::Ok("success".into()),
        }
    }

    /// The greeting, as the imitated server sends it over TCP.
    pub fn greeting(&self) -> Response {
        let mut replies = vec![Reply::Raw("* SASL PLAIN".into())];
        if self.config.offer_compress {
            replies.push(Reply::Raw("* COMPRESS DEFLATE".into()));
        }
        let what = match self.config.personality {
            Personality::Backupd => "backup",
            Personality::SyncServer => {
                replies.push(Reply::Raw("* SIEVE-MAILBOX".into()));
                "sync"
            }
        };
        replies.push(Reply::Raw(format!(
            "* OK {} Cyrus {what} server 3.6.1 (backupd-sim)",
            self.config.servername
        )));
        Response {
            replies,
            after: After::Continue,
        }
    }

    /// Bytes received (already inflated when compression is on).
    pub fn push(&mut self, data: &[u8]) {
        self.decoder.push(data);
    }

    /// Bytes received but not yet taken as a command.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// The next complete input, `Ok(None)` when more bytes are needed. A
    /// [`FrameError`] means the stream cannot be followed any more: answer it
    /// with [`Session::frame_error`] and close.
    pub fn next_incoming(&mut self) -> Result<Option<Incoming>, FrameError> {
        self.decoder.next(self.phase == Phase::SaslContinue)
    }

    /// The answer to a framing error: `BAD`, then close.
    pub fn frame_error(&self, e: &FrameError) -> Response {
        Response {
            replies: vec![Reply::Bad(format!("IMAP_PROTOCOL_ERROR {e}"))],
            after: After::Close,
        }
    }

    /// Release everything this session holds (the connection ended).
    pub fn end(&mut self, store: &mut Store) {
        store.release(self.id);
        self.held.clear();
        self.reserved.clear();
    }

    /// Execute one input against the store.
    pub fn execute(&mut self, input: Incoming, store: &mut Store) -> Response {
        self.refused = None;
        let cmd = match input {
            Incoming::Invalid(e) if e.needs_auth() && self.phase != Phase::Authed => {
                return Response::one(Reply::No("Please authenticate first".into()))
            }
            Incoming::Invalid(e) if self.config.personality == Personality::SyncServer => {
                return Response::one(replica::parse_error_reply(&e))
            }
            Incoming::Invalid(e) => return Response::one(e.reply()),
            Incoming::SaslResponse(line) => {
                self.phase = Phase::PreAuth;
                if &line[..] == b"*" {
                    return Response::one(Reply::Bad("Client canceled authentication".into()));
                }
                return self.check_plain(&line);
            }
            Incoming::Command(c) => c,
        };
        match cmd {
            Command::Noop => Response::one(Reply::Ok("Noop completed".into())),
            Command::Exit => {
                self.end(store);
                Response {
                    replies: vec![Reply::Ok("Finished".into())],
                    after: After::Close,
                }
            }
            Command::Restart => {
                self.end(store);
                Response::one(Reply::Ok("Restarting".into()))
            }
            Command::Starttls | Command::Unknown { .. } => Response::one(Reply::Bad(
                "IMAP_PROTOCOL_ERROR Unrecognized command".into(),
            )),
            Command::ImapProbe { tag, command } => {
                if command == "LOGOUT" {
                    Response {
                        replies: vec![
                            Reply::Raw("* BYE not an IMAP server".into()),
                            Reply::Raw(format!("{tag} OK Completed")),
                        ],
                        after: After::Close,
                    }
                } else {
                    // Ends the client's probe at once instead of its 10 s wait.
                    Response::one(Reply::Raw(format!(
                        "{tag} NO backupd-sim speaks csync, not IMAP"
                    )))
                }
            }
            Command::Compress { algorithm } => self.compress(&algorithm),
            Command::Authenticate { mech, initial } => self.authenticate(&mech, initial),
            Command::Get(_) | Command::Apply(_) if self.phase != Phase::Authed => {
                Response::one(Reply::No("Please authenticate first".into()))
            }
            Command::Get(g) if self.config.personality == Personality::SyncServer => {
                self.replica_get(g, store)
            }
            Command::Apply(a) if self.config.personality == Personality::SyncServer => {
                self.replica_apply(a, store)
            }
            Command::Get(g) => self.get(g, store),
            Command::Apply(a) => self.apply(a, store),
        }
    }

    fn compress(&mut self, algorithm: &str) -> Response {
        if !self.config.offer_compress || !algorithm.eq_ignore_ascii_case("DEFLATE") {
            return Response::one(Reply::No(format!(
                "Unknown compression algorithm: {algorithm}"
            )));
        }
        if self.compressing {
            return Response::one(Reply::No("Compression already active: DEFLATE".into()));
        }
        self.compressing = true;
        Response {
            replies: vec![Reply::Ok("DEFLATE active".into())],
            after: After::StartDeflate,
        }
    }

    fn authenticate(&mut self, mech: &str, initial: Option<Bytes>) -> Response {
        if self.phase == Phase::Authed {
            return Response::one(Reply::Bad("Already authenticated".into()));
        }
        if mech != "PLAIN" {
            return Response::one(Reply::No(
                "authentication failure: mechanism not available".into(),
            ));
        }
        match initial {
            Some(ir) => self.check_plain(&ir),
            None => {
                self.phase = Phase::SaslContinue;
                Response::one(Reply::Raw("+ ".into()))
            }
        }
    }

    fn check_plain(&mut self, b64: &[u8]) -> Response {
        let decoded = if b64 == b"=" {
            Ok(Vec::new())
        } else {
            base64::engine::general_purpose::STANDARD.decode(b64)
        };
        let ok = decoded.ok().is_some_and(|raw| {
            let mut parts = raw.split(|&b| b == 0);
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(authz), Some(authc), Some(pw), None) => {
                    let c = &self.config.credentials;
                    authc == c.user.as_bytes()
                        && pw == c.password.as_bytes()
                        && (authz.is_empty() || authz == authc)
                }
                _ => false,
            }
        });
        if ok {
            self.phase = Phase::Authed;
            Response::one(Reply::Ok("Success (no protection)".into()))
        } else {
            Response::one(Reply::No("authentication failure".into()))
        }
    }

    /// Open `user`'s backup for this session, or the LOCKED reply.
    fn open<'s>(&mut self, store: &'s mut Store, user: &str) -> Result<&'s mut UserBackup, Reply> {
        let backup = store.open(self.id, user).map_err(|l| {
            self.refused = Some(l);
            Reply::locked()
        })?;
        self.held.entry(user.to_owned()).or_default();
        Ok(backup)
    }

    fn get(&mut self, g: Get, store: &mut Store) -> Response {
        let mut replies = Vec::new();
        let result = match g {
            Get::User(None) => Err(Reply::bad_parameters()),
            Get::User(Some(user)) => self.open(store, &user).map(|b| {
                // In the order the backup first saw them, as backupd lists them.
                let mut boxes: Vec<&crate::store::Mailbox> = b.mailboxes.values().collect();
                boxes.sort_by_key(|m| m.backup_order);
                for m in boxes {
                    replies.push(Reply::Data(
                        "MAILBOX".into(),
                        render::mailbox(m, false, Dialect::Backupd),
                    ));
                }
                render::meta(b, true, &mut replies);
            }),
            Get::Meta(user) => self
                .open(store, &user)
                .map(|b| render::meta(b, true, &mut replies)),
            Get::Mailboxes(list) => {
                let owners: BTreeSet<String> = list.iter().map(|n| names::backup_of(n)).collect();
                match owners.len() {
                    0 => Ok(()),
                    1 => {
                        let owner = owners.into_iter().next().unwrap_or_default();
                        self.open(store, &owner).map(|b| {
                            for name in &list {
                                if let Some(m) = b.mailboxes.get(name) {
                                    replies.push(Reply::Data(
                                        "MAILBOX".into(),
                                        render::mailbox(m, false, Dialect::Backupd),
                                    ));
                                }
                            }
                        })
                    }
                    _ => Err(Reply::bad_parameters()),
                }
            }
            Get::FullMailbox(name) => {
                let owner = names::backup_of(&name);
                self.open(store, &owner)
                    .and_then(|b| match b.mailboxes.get(&name) {
                        Some(m) => {
                            replies.push(Reply::Data(
                                "MAILBOX".into(),
                                render::mailbox(m, true, Dialect::Backupd),
                            ));
                            Ok(())
                        }
                        None if b.deleted_mailboxes.iter().any(|m| m.name == name) => Ok(()),
                        None => Err(Reply::nonexistent()),
                    })
            }
            Get::UniqueIds => Ok(()),
            // backupd's cmd_get serves no QUOTA.
            Get::Quota(_) | Get::Unsupported { .. } => Err(Reply::protocol_error()),
        };
        match result {
            Ok(()) => {
                replies.push(Reply::success());
                Response {
                    replies,
                    after: After::Continue,
                }
            }
            Err(r) => Response::one(r),
        }
    }

    fn apply(&mut self, a: Apply, store: &mut Store) -> Response {
        let result = match a {
            Apply::Reserve {
                mailboxes, guids, ..
            } => return self.reserve(&mailboxes, &guids, store),
            Apply::Message(files) => self.message(&files, store),
            Apply::Mailbox(u) => {
                let owner = names::backup_of(&u.mboxname);
                match self.open(store, &owner) {
                    Err(r) => Err(r),
                    Ok(_) if u.missing_required().is_some() => Err(Reply::bad_parameters()),
                    Ok(_) => {
                        store.apply_mailbox(&owner, &u);
                        Ok(())
                    }
                }
            }
            Apply::Unmailbox(name) => self
                .open(store, &names::backup_of(&name))
                .map(|b| b.unmailbox(&name)),
            Apply::Rename {
                old,
                new,
                partition,
                uidvalidity,
            } => self
                .open(store, &names::backup_of(&old))
                .map(|b| b.rename(&old, &new, &partition, uidvalidity)),
            Apply::Seen(s) => self.open(store, &s.user.clone()).map(|b| b.set_seen(&s)),
            Apply::Sub { user, mailbox } => self.open(store, &user).map(|b| {
                b.subscriptions.insert(mailbox);
            }),
            Apply::Unsub { user, mailbox } => self.open(store, &user).map(|b| {
                b.subscriptions.remove(&mailbox);
            }),
            Apply::Sieve {
                user,
                filename,
                last_update,
                content,
            } => self
                .open(store, &user)
                .map(|b| b.put_sieve(&filename, last_update, &content)),
            Apply::Unsieve { user, filename } => {
                self.open(store, &user).map(|b| b.delete_sieve(&filename))
            }
            // backupd answers these OK without opening anything.
            Apply::ActivateSieve { .. }
            | Apply::UnactivateSieve { .. }
            | Apply::Quota { .. }
            | Apply::Unuser(_) => Ok(()),
            Apply::Capabilities(_)
            | Apply::Expunge { .. }
            | Apply::Unquota(_)
            | Apply::Unsupported { .. } => Err(Reply::protocol_error()),
        };
        Response::one(result.map_or_else(|r| r, |()| Reply::success()))
    }

    fn reserve(&mut self, mailboxes: &[String], guids: &[String], store: &mut Store) -> Response {
        let owners: BTreeSet<String> = mailboxes.iter().map(|n| names::backup_of(n)).collect();
        let mut missing: Vec<String> = Vec::new();
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for owner in &owners {
            let backup = match self.open(store, owner) {
                Ok(b) => b,
                Err(r) => return Response::one(r),
            };
            let absent: Vec<&String> = guids
                .iter()
                .filter(|g| !backup.guids.contains(*g))
                .collect();
            let reserved = self.held.entry(owner.clone()).or_default();
            for g in absent {
                reserved.insert(g.clone());
                if seen.insert(g) {
                    missing.push(g.clone());
                }
            }
        }
        let mut replies = Vec::new();
        if !missing.is_empty() {
            replies.push(Reply::Data(
                "MISSING".into(),
                Value::List(missing.iter().map(Value::atom).collect()),
            ));
        }
        replies.push(Reply::success());
        Response {
            replies,
            after: After::Continue,
        }
    }

    fn message(&mut self, files: &[crate::dlist::File], store: &mut Store) -> Result<(), Reply> {
        if files.is_empty() || self.held.is_empty() {
            return Err(Reply::protocol_error());
        }
        // Each body's SHA-1 must be the GUID it was sent with, in either case
        // (`sha1_hex(body) == guid.to_ascii_lowercase()`).
        let mut guids = Vec::with_capacity(files.len());
        for f in files {
            let sha1 = Guid::of(&f.data);
            if Guid::parse_any_case(&f.guid) != Some(sha1) {
                // backupd's text: the whole command is refused, nothing is stored.
                return Err(Reply::protocol_error());
            }
            guids.push(sha1);
        }
        // Bodies go to every held backup that reserved one of them, else to all held.
        let reserved: Vec<String> = self
            .held
            .iter()
            .filter(|(_, r)| !r.is_empty() && guids.iter().any(|g| r.contains(&g.to_hex())))
            .map(|(u, _)| u.clone())
            .collect();
        let targets = if reserved.is_empty() {
            self.held.keys().cloned().collect()
        } else {
            reserved
        };
        store
            .add_bodies(
                &targets,
                guids.iter().zip(files.iter().map(|f| &f.data[..])),
            )
            .map_err(|_| Reply::No("Unknown error".into()))?;
        Ok(())
    }
}
