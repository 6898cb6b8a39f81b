//! The `[[step]]` tables: each action as written (`StepSpec`, exactly one key)
//! and validated into a [`Step`].

use serde::Deserialize;

use super::expect::ExitExpect;
use super::{yes, Mode};
use crate::fault::{FaultSpec, LockSpec, MatchSpec};

/// `append = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view (`INBOX`, `INBOX.Sent`).
    #[serde(default = "inbox")]
    pub folder: String,
    /// How many generated messages.
    #[serde(default = "one")]
    pub count: usize,
    /// Flags to set on them.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Append this fixture instead of generated messages.
    pub fixture: Option<String>,
}

fn inbox() -> String {
    "INBOX".into()
}
fn one() -> usize {
    1
}

/// `flag = { … }` (and `seen = { … }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlagSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// UID set (`1`, `2:4`, `1:*`).
    pub uids: String,
    /// Flags to add.
    #[serde(default)]
    pub add: Vec<String>,
    /// Flags to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// `expunge = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpungeSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// UID set to mark `\Deleted` and expunge.
    pub uids: String,
}

/// `create`, `delete`, `subscribe`, `unsubscribe = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view (`INBOX.New`).
    pub folder: String,
}

/// `metadata = { … }`: `SETMETADATA` of one mailbox entry, as the owner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// Entry (`/private/comment`, `/shared/comment`).
    pub entry: String,
    /// The value; absent removes the entry.
    pub value: Option<String>,
}

/// `server_metadata = { … }`: `SETMETADATA "" …`, a server annotation, as the
/// admin. Cyrus logs it as `ANNOTATION ""` in the channel log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerMetadataSpec {
    /// Entry (`/shared/comment`).
    pub entry: String,
    /// The value; absent removes the entry.
    pub value: Option<String>,
}

/// `annotate = { … }`: a per-message annotation (`UID STORE … ANNOTATION`,
/// RFC 5257), as the owner.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnnotateSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// UID set.
    pub uids: String,
    /// Entry (`/comment`, `/altsubject`).
    pub entry: String,
    /// `value.shared` when true, else `value.priv`.
    #[serde(default)]
    pub shared: bool,
    /// The value; absent removes it.
    pub value: Option<String>,
}

/// `acl = { … }`: `SETACL` on one of the user's folders, as the owner; empty
/// `rights` removes the identifier's entry (`DELETEACL`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// Who gets the rights (`anyone`, a userid).
    pub identifier: String,
    /// Right letters (`lrs`).
    pub rights: String,
}

/// `quota = { … }`: `SETQUOTA user.NAME (…)` as the admin: limits on the
/// user's quota root; none removes the quota.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaSpec {
    /// The user whose INBOX is the root.
    pub user: String,
    /// `STORAGE` limit, KiB.
    pub storage: Option<u64>,
    /// `MESSAGE` limit.
    pub message: Option<u64>,
}

/// `move = { … }`: `UID MOVE` (RFC 6851) of a UID set to another folder.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveSpec {
    /// Owner.
    pub user: String,
    /// Folder in the user's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// UID set.
    pub uids: String,
    /// Destination folder in the user's view.
    pub to: String,
}

/// `rename = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameSpec {
    /// Owner.
    pub user: String,
    /// Old folder name (user view).
    pub from: String,
    /// New folder name (user view).
    pub to: String,
}

/// `sync = { … }`: one `sync_client` run to its end.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSpec {
    /// Mode (default: the client's).
    pub mode: Option<Mode>,
    /// Users for `user` mode (default: every set-up user).
    pub users: Option<Vec<String>>,
    /// Internal mailbox names for `mailbox` mode.
    pub mailboxes: Option<Vec<String>>,
    /// Expected exit status, `"timeout"`, or per version (default: not checked).
    pub expect_exit: Option<ExitExpect>,
    /// Extra flags for this run.
    #[serde(default)]
    pub flags: Vec<String>,
}

/// `wait_for = { … }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForSpec {
    /// `lock-hit`, `fault`, `command`, `connections`, `converged`, `client-exit`.
    pub event: String,
    /// For `command`: the label or leading words.
    pub verb: Option<String>,
    /// How many (counted from the first step: the set-up does not count).
    #[serde(default = "one_u64")]
    pub count: u64,
    /// Give up (and fail) after this long.
    #[serde(default = "default_wait")]
    pub timeout_ms: u64,
}

/// `expect_count = { event, verb, min, max }`: a check, at this point of the
/// run, of how many events the fake's log holds since the first step. Unlike
/// the run-wide `[expect]` counts it pins a count to a moment (say, no
/// `APPLY` while a sync lock is held), so a race after that moment cannot
/// move it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectCountSpec {
    /// `lock-hit`, `fault`, `command`, `connections`.
    pub event: String,
    /// For `command`: the label or leading words.
    pub verb: Option<String>,
    /// At least.
    pub min: Option<u64>,
    /// At most.
    pub max: Option<u64>,
}

impl ExpectCountSpec {
    /// The events it may count.
    pub const EVENTS: [&'static str; 4] = ["lock-hit", "fault", "command", "connections"];

    /// The bounds as a [`crate::scenario::Range`].
    pub fn range(&self) -> crate::scenario::Range {
        crate::scenario::Range {
            min: self.min,
            max: self.max,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !Self::EVENTS.contains(&self.event.as_str()) {
            return Err(format!(
                "expect_count event \"{}\": expected one of {}",
                self.event,
                Self::EVENTS.join(", ")
            ));
        }
        if self.verb.is_some() && self.event != "command" {
            return Err(format!(
                "expect_count: `verb` goes with event \"command\", not \"{}\"",
                self.event
            ));
        }
        match (self.min, self.max) {
            (None, None) => Err("expect_count needs `min`, `max` or both".into()),
            (Some(a), Some(b)) if a > b => Err(format!("expect_count: min {a} > max {b}")),
            _ => Ok(()),
        }
    }

    /// How reports name it: `lock-hit`, `command APPLY`.
    pub fn label(&self) -> String {
        match &self.verb {
            Some(v) => format!("{} {v}", self.event),
            None => self.event.clone(),
        }
    }
}

fn one_u64() -> u64 {
    1
}
fn default_wait() -> u64 {
    20_000
}

/// `hold_sync_lock = { user, name, timeout_ms }`: the per-user sync lock held
/// on the source by a second, hand-run `sync_client -u USER` (as an operator's
/// beside the rolling daemon). sync_client takes the lock before it sends
/// `GET USER`; the fake holds that command, so the lock stays held until
/// `release_sync_lock`. The fake only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncLockSpec {
    /// The user whose sync lock is held.
    pub user: String,
    /// For `release_sync_lock` and reports (default `sync-lock-USER`).
    pub name: Option<String>,
    /// Fail if the hand-run client's `GET USER` has not arrived within this long.
    #[serde(default = "default_wait")]
    pub timeout_ms: u64,
}

impl SyncLockSpec {
    /// The lock's name.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("sync-lock-{}", self.user))
    }
}

/// `release_sync_lock = "NAME"` or `{ name, expect_exit }`: let the hand-run
/// client's held `GET USER` go on; it finishes its `-u` and exits (awaited).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ReleaseSpec {
    /// Just the name.
    Name(String),
    /// With the hand-run client's expected exit.
    Full(ReleaseTable),
}

/// The table form of [`ReleaseSpec`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseTable {
    /// The `hold_sync_lock` name.
    pub name: String,
    /// The hand-run client's expected exit (as a `sync` step's).
    pub expect_exit: Option<ExitExpect>,
}

/// `shared_seen = { owner, folder, reader, uids }`: the owner shares a folder
/// with the reader (`SETACL folder reader lrs`), and the reader marks messages
/// `\Seen` in it. Cyrus keeps a non-owner's seen state in the reader's own
/// seen database and logs `SEEN reader uniqueid` for the channels: the way a
/// SEEN action reaches the rolling client in production.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedSeenSpec {
    /// The folder's owner.
    pub owner: String,
    /// The folder in the owner's view.
    #[serde(default = "inbox")]
    pub folder: String,
    /// The user who reads it (a set-up user too).
    pub reader: String,
    /// UID set.
    #[serde(default = "all_uids")]
    pub uids: String,
}

fn all_uids() -> String {
    "1:*".into()
}

/// `synclog = { kind, user, folder }`: queue one sync log entry on the source
/// with Cyrus' own `cyr_synclog` (entries no IMAP change makes, such as
/// `ANNOTATION user.x` or `SEEN user uniqueid`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynclogSpec {
    /// `user`, `unuser`, `sieve`, `mailbox`, `unmailbox`, `quota`,
    /// `annotation`, `seen`, `sub`.
    pub kind: String,
    /// The user.
    pub user: String,
    /// The folder in the user's view, for the kinds that name a mailbox.
    #[serde(default = "inbox")]
    pub folder: String,
}

/// Every [`SynclogSpec::kind`], with its `cyr_synclog` flag and whether it
/// names a mailbox.
pub const SYNCLOG_KINDS: [(&str, &str, bool); 9] = [
    ("user", "-u", false),
    ("unuser", "-U", false),
    ("sieve", "-v", false),
    ("mailbox", "-m", true),
    ("unmailbox", "-M", true),
    ("quota", "-q", true),
    ("annotation", "-n", true),
    ("seen", "-s", true),
    ("sub", "-b", true),
];

/// `trigger = { when = { … }, then = [ … ] }`: hold the matching command,
/// run `then`, release it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// Which command (with `nth`).
    pub when: MatchSpec,
    /// Steps run while it is held: source changes, locks, faults, marks.
    pub then: Vec<StepSpec>,
    /// Fail if no command matches within this long.
    #[serde(default = "default_wait")]
    pub timeout_ms: u64,
    /// An unreached trigger fails the scenario (`false`: it is only dropped).
    #[serde(default = "yes")]
    pub required: bool,
}

/// One `[[step]]` as written: exactly one key.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StepSpec {
    pub lock: Option<LockSpec>,
    pub unlock: Option<String>,
    pub fault: Option<FaultSpec>,
    pub clear: Option<bool>,
    pub mark: Option<String>,
    pub append: Option<AppendSpec>,
    pub flag: Option<FlagSpec>,
    pub seen: Option<FlagSpec>,
    pub expunge: Option<ExpungeSpec>,
    pub create: Option<FolderSpec>,
    pub delete: Option<FolderSpec>,
    pub rename: Option<RenameSpec>,
    #[serde(rename = "move")]
    pub move_: Option<MoveSpec>,
    pub delete_user: Option<String>,
    pub subscribe: Option<FolderSpec>,
    pub unsubscribe: Option<FolderSpec>,
    pub metadata: Option<MetadataSpec>,
    pub server_metadata: Option<ServerMetadataSpec>,
    pub annotate: Option<AnnotateSpec>,
    pub quota: Option<QuotaSpec>,
    pub acl: Option<AclSpec>,
    pub sync: Option<SyncSpec>,
    pub start: Option<bool>,
    pub stop: Option<bool>,
    pub kill: Option<bool>,
    pub wait_ms: Option<u64>,
    pub wait_for: Option<WaitForSpec>,
    pub expect_count: Option<ExpectCountSpec>,
    pub trigger: Option<Box<TriggerSpec>>,
    pub hold_sync_lock: Option<SyncLockSpec>,
    pub release_sync_lock: Option<ReleaseSpec>,
    pub skip_user: Option<String>,
    pub unskip_user: Option<String>,
    pub synclog: Option<SynclogSpec>,
    pub shared_seen: Option<SharedSeenSpec>,
}

/// One validated step.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Step {
    Lock(LockSpec),
    Unlock(String),
    Fault(FaultSpec),
    Clear,
    Mark(String),
    Append(AppendSpec),
    Flag(FlagSpec),
    Expunge(ExpungeSpec),
    Create(FolderSpec),
    Delete(FolderSpec),
    Rename(RenameSpec),
    Move(MoveSpec),
    DeleteUser(String),
    Subscribe(FolderSpec),
    Unsubscribe(FolderSpec),
    Metadata(MetadataSpec),
    ServerMetadata(ServerMetadataSpec),
    Annotate(AnnotateSpec),
    Quota(QuotaSpec),
    Acl(AclSpec),
    Sync(SyncSpec),
    Start,
    Stop,
    Kill,
    WaitMs(u64),
    WaitFor(WaitForSpec),
    /// A check of an event count at this point of the run.
    ExpectCount(ExpectCountSpec),
    Trigger {
        when: MatchSpec,
        then: Vec<Step>,
        timeout_ms: u64,
        required: bool,
    },
    /// A hand-run `sync_client -u USER` holding the user's sync lock on the source.
    HoldSyncLock(SyncLockSpec),
    /// Its release (by name), and its expected exit.
    ReleaseSyncLock {
        name: String,
        expect_exit: Option<ExitExpect>,
    },
    /// `<configdirectory>/sync/<channel>/skipuser-USER` created (Cyrus 3.12:
    /// the client treats the user as locked).
    SkipUser(String),
    /// That file removed.
    UnskipUser(String),
    /// One sync log entry queued with `cyr_synclog`.
    Synclog(SynclogSpec),
    /// A reader's `\Seen` in a folder another user shares with her.
    SharedSeen(SharedSeenSpec),
}

impl Step {
    /// A short description for reports.
    pub fn describe(&self) -> String {
        match self {
            Step::Lock(l) => format!(
                "lock {}",
                l.user
                    .as_deref()
                    .or(l.mailbox.as_deref())
                    .or(l.verb.as_deref())
                    .unwrap_or("?")
            ),
            Step::Unlock(n) => format!("unlock {n}"),
            Step::Fault(f) => format!("fault {}", f.action),
            Step::Clear => "clear".into(),
            Step::Mark(m) => format!("mark {m}"),
            Step::Append(a) => format!("append {} to {}/{}", a.count, a.user, a.folder),
            Step::Flag(f) => format!("flag {}/{} {}", f.user, f.folder, f.uids),
            Step::Expunge(e) => format!("expunge {}/{} {}", e.user, e.folder, e.uids),
            Step::Create(f) => format!("create {}/{}", f.user, f.folder),
            Step::Delete(f) => format!("delete {}/{}", f.user, f.folder),
            Step::Rename(r) => format!("rename {}/{} to {}", r.user, r.from, r.to),
            Step::Move(m) => format!("move {}/{} {} to {}", m.user, m.folder, m.uids, m.to),
            Step::DeleteUser(u) => format!("delete user {u}"),
            Step::Subscribe(f) => format!("subscribe {}/{}", f.user, f.folder),
            Step::Unsubscribe(f) => format!("unsubscribe {}/{}", f.user, f.folder),
            Step::Metadata(m) => format!("metadata {}/{} {}", m.user, m.folder, m.entry),
            Step::ServerMetadata(m) => format!("server metadata {}", m.entry),
            Step::Annotate(a) => format!("annotate {}/{} {} {}", a.user, a.folder, a.uids, a.entry),
            Step::Quota(q) => format!("quota {}", q.user),
            Step::Acl(a) => format!("acl {}/{} {}", a.user, a.folder, a.identifier),
            Step::Sync(s) => format!("sync {:?}", s.mode),
            Step::Start => "start the continuous client".into(),
            Step::Stop => "stop the continuous client".into(),
            Step::Kill => "kill the continuous client (SIGKILL)".into(),
            Step::WaitMs(ms) => format!("wait {ms} ms"),
            Step::WaitFor(w) => format!("wait for {} x{}", w.event, w.count),
            Step::ExpectCount(c) => format!("expect {} count {}", c.label(), c.range()),
            Step::Trigger { .. } => "trigger".into(),
            Step::HoldSyncLock(l) => format!(
                "hold {}'s sync lock (a hand-run sync_client -u {}: {})",
                l.user,
                l.user,
                l.name()
            ),
            Step::ReleaseSyncLock { name, .. } => format!("release the sync lock {name}"),
            Step::SkipUser(u) => format!("skipuser-{u} file created"),
            Step::UnskipUser(u) => format!("skipuser-{u} file removed"),
            Step::Synclog(q) => format!(
                "queue {} for {}/{}",
                q.kind.to_uppercase(),
                q.user,
                q.folder
            ),
            Step::SharedSeen(x) => format!(
                "{} marks {}/{} {} seen (shared by {})",
                x.reader, x.owner, x.folder, x.uids, x.owner
            ),
        }
    }

    /// Steps allowed inside a trigger's `then` (no client runs, no waits).
    fn allowed_in_trigger(&self) -> bool {
        !matches!(
            self,
            Step::Sync(_)
                | Step::Start
                | Step::Stop
                | Step::Kill
                | Step::WaitFor(_)
                | Step::ExpectCount(_)
                | Step::Trigger { .. }
                | Step::HoldSyncLock(_)
                | Step::ReleaseSyncLock { .. }
        )
    }
}

/// A METADATA entry (RFC 5464) names its scope first: `/private/…` or `/shared/…`.
fn metadata_entry(key: &str, entry: &str) -> Result<(), String> {
    if entry.starts_with("/private/") || entry.starts_with("/shared/") {
        Ok(())
    } else {
        Err(format!(
            "{key}: entry `{entry}` must start with /private/ or /shared/"
        ))
    }
}

const STEP_KEYS: &str = "lock, unlock, fault, clear, mark, append, flag, seen, expunge, create, delete, rename, move, delete_user, subscribe, unsubscribe, metadata, server_metadata, annotate, quota, acl, sync, start, stop, kill, wait_ms, wait_for, expect_count, trigger, hold_sync_lock, release_sync_lock, skip_user, unskip_user, synclog, shared_seen";

impl StepSpec {
    pub(super) fn to_step(&self) -> Result<Step, String> {
        let mut found: Vec<Step> = Vec::new();
        let s = self.clone();
        if let Some(v) = s.lock {
            let mut v = v;
            v.open
                .get_or_insert_with(|| crate::fault::TriggerSpec::Word("start".into()));
            v.to_lock(0)?;
            found.push(Step::Lock(v));
        }
        if let Some(v) = s.unlock {
            found.push(Step::Unlock(v));
        }
        if let Some(v) = s.fault {
            v.to_rule(0)?;
            found.push(Step::Fault(v));
        }
        if let Some(v) = s.clear {
            if !v {
                return Err("`clear = false` does nothing; remove the step".into());
            }
            found.push(Step::Clear);
        }
        if let Some(v) = s.mark {
            found.push(Step::Mark(v));
        }
        if let Some(v) = s.append {
            found.push(Step::Append(v));
        }
        if let Some(v) = s.flag {
            found.push(Step::Flag(v));
        }
        if let Some(mut v) = s.seen {
            if v.add.is_empty() && v.remove.is_empty() {
                v.add.push("\\Seen".into());
            }
            found.push(Step::Flag(v));
        }
        if let Some(v) = s.expunge {
            found.push(Step::Expunge(v));
        }
        if let Some(v) = s.create {
            found.push(Step::Create(v));
        }
        if let Some(v) = s.delete {
            found.push(Step::Delete(v));
        }
        if let Some(v) = s.rename {
            found.push(Step::Rename(v));
        }
        if let Some(v) = s.move_ {
            found.push(Step::Move(v));
        }
        if let Some(v) = s.delete_user {
            found.push(Step::DeleteUser(v));
        }
        if let Some(v) = s.subscribe {
            found.push(Step::Subscribe(v));
        }
        if let Some(v) = s.unsubscribe {
            found.push(Step::Unsubscribe(v));
        }
        if let Some(v) = s.metadata {
            metadata_entry("metadata", &v.entry)?;
            found.push(Step::Metadata(v));
        }
        if let Some(v) = s.server_metadata {
            metadata_entry("server_metadata", &v.entry)?;
            found.push(Step::ServerMetadata(v));
        }
        if let Some(v) = s.annotate {
            if !v.entry.starts_with('/') {
                return Err(format!("annotate: entry `{}` must start with /", v.entry));
            }
            found.push(Step::Annotate(v));
        }
        if let Some(v) = s.quota {
            found.push(Step::Quota(v));
        }
        if let Some(v) = s.acl {
            found.push(Step::Acl(v));
        }
        if let Some(v) = s.sync {
            if v.mode == Some(Mode::Rolling) {
                return Err("`sync` runs the client to its end; continuous rolling uses `start = true` and `stop = true`".into());
            }
            if let Some(e) = &v.expect_exit {
                e.validate()?;
            }
            found.push(Step::Sync(v));
        }
        for (flag, step) in [
            (s.start, Step::Start),
            (s.stop, Step::Stop),
            (s.kill, Step::Kill),
        ] {
            if let Some(v) = flag {
                if !v {
                    return Err("`start`, `stop` and `kill` take `true`".into());
                }
                found.push(step);
            }
        }
        if let Some(v) = s.wait_ms {
            found.push(Step::WaitMs(v));
        }
        if let Some(v) = s.wait_for {
            const EVENTS: [&str; 6] = [
                "lock-hit",
                "fault",
                "command",
                "connections",
                "converged",
                "client-exit",
            ];
            if !EVENTS.contains(&v.event.as_str()) {
                return Err(format!(
                    "wait_for event \"{}\": expected one of {}",
                    v.event,
                    EVENTS.join(", ")
                ));
            }
            found.push(Step::WaitFor(v));
        }
        if let Some(v) = s.expect_count {
            v.validate()?;
            found.push(Step::ExpectCount(v));
        }
        if let Some(v) = s.hold_sync_lock {
            found.push(Step::HoldSyncLock(v));
        }
        if let Some(v) = s.release_sync_lock {
            let (name, expect_exit) = match v {
                ReleaseSpec::Name(n) => (n, None),
                ReleaseSpec::Full(t) => (t.name, t.expect_exit),
            };
            if let Some(e) = &expect_exit {
                e.validate()?;
            }
            found.push(Step::ReleaseSyncLock { name, expect_exit });
        }
        if let Some(v) = s.skip_user {
            found.push(Step::SkipUser(v));
        }
        if let Some(v) = s.unskip_user {
            found.push(Step::UnskipUser(v));
        }
        if let Some(v) = s.shared_seen {
            if v.owner == v.reader {
                return Err("shared_seen: the reader must be another user than the owner (an owner's \\Seen is a flag: use `seen`)".into());
            }
            found.push(Step::SharedSeen(v));
        }
        if let Some(v) = s.synclog {
            if !SYNCLOG_KINDS.iter().any(|(k, _, _)| *k == v.kind) {
                return Err(format!(
                    "synclog kind \"{}\": expected one of {}",
                    v.kind,
                    SYNCLOG_KINDS
                        .iter()
                        .map(|(k, _, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            found.push(Step::Synclog(v));
        }
        if let Some(t) = s.trigger {
            let mut then = Vec::new();
            for (i, sub) in t.then.iter().enumerate() {
                let step = sub
                    .to_step()
                    .map_err(|e| format!("trigger step {}: {e}", i + 1))?;
                if !step.allowed_in_trigger() {
                    return Err(format!(
                        "trigger step {}: `{}` cannot run while a command is held (only source changes, locks, faults, marks)",
                        i + 1,
                        step.describe()
                    ));
                }
                then.push(step);
            }
            found.push(Step::Trigger {
                when: t.when.clone(),
                then,
                timeout_ms: t.timeout_ms,
                required: t.required,
            });
        }
        match found.len() {
            1 => Ok(found.pop().expect("one step")),
            0 => Err(format!("a step needs one of: {STEP_KEYS}")),
            _ => Err(
                "a step has exactly one action; split this one into several [[step]] tables".into(),
            ),
        }
    }
}
