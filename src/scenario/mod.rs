//! Scenario files: TOML describing a source set-up, a client, steps and
//! expectations. `scenarios/README.md` documents every key.
//!
//! Parsing is strict: unknown keys, wrong types and impossible combinations are
//! rejected with the file, line, column and what was expected.

pub mod ledger;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::fault::{FaultSpec, LockSpec, MatchSpec};
use crate::rng::Seed;

/// An invalid scenario: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", match (line, column) {
    (Some(l), Some(c)) => format!(" line {l} column {c}"),
    (Some(l), None) => format!(" line {l}"),
    _ => String::new(),
})]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// How `sync_client` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `-u USER…`
    User,
    /// `-m MAILBOX…`
    Mailbox,
    /// `-A`
    All,
    /// `-R -1`: one rolling pass over the channel log.
    RollingOnce,
    /// `-R`: continuous rolling, supervised.
    Rolling,
}

/// What the operator does when a continuous client exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Nothing: it stays down.
    #[default]
    None,
    /// Restart it (as master's DAEMON entry does).
    Restart,
    /// Delete its `log-run`, then restart it (the 2016 watcher script).
    RestartDiscardLog,
}

/// The `[client]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// Default mode of `sync` steps.
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// `<channel>_sync_repeat_interval`, seconds.
    #[serde(default = "default_repeat")]
    pub repeat_interval: u32,
    /// `<channel>_sync_timeout`, seconds (the client's read timeout).
    pub sync_timeout: Option<u32>,
    /// Deadline of each one-shot run, seconds.
    #[serde(default = "default_run_timeout")]
    pub timeout: u64,
    /// Extra flags for every run.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Operator policy for the continuous client.
    #[serde(default)]
    pub policy: Policy,
    /// The source writes the channel log (`sync_log: 1`).
    #[serde(default = "yes")]
    pub sync_log: bool,
}

fn default_mode() -> Mode {
    Mode::RollingOnce
}
fn default_repeat() -> u32 {
    1
}
fn default_run_timeout() -> u64 {
    60
}
fn yes() -> bool {
    true
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            mode: default_mode(),
            repeat_interval: 1,
            sync_timeout: None,
            timeout: default_run_timeout(),
            flags: Vec::new(),
            policy: Policy::None,
            sync_log: true,
        }
    }
}

/// One `[[user]]` of the source set-up.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// Userid.
    pub name: String,
    /// Generated messages over the standard folders (INBOX, Sent, Work,
    /// Work.Projects, Archive→Archive2025, Trash (deleted)).
    #[serde(default = "default_messages")]
    pub messages: usize,
    /// `.eml` files from `fixtures/mail/` appended to INBOX.
    #[serde(default)]
    pub fixtures: Vec<String>,
    /// Replicate the set-up once (`-u`, then a rolling pass) before the steps.
    #[serde(default = "yes")]
    pub baseline: bool,
}

fn default_messages() -> usize {
    6
}

/// A bounded count expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    /// At least.
    pub min: Option<u64>,
    /// At most.
    pub max: Option<u64>,
}

impl Range {
    /// True when `n` is within the bounds.
    pub fn contains(&self, n: u64) -> bool {
        self.min.is_none_or(|m| n >= m) && self.max.is_none_or(|m| n <= m)
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) => write!(f, "{a}..={b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => write!(f, "any"),
        }
    }
}

/// A scenario expected to fail on some client versions.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// Why (shown in reports).
    pub reason: String,
    /// Version prefixes (`3.6`, `3.6.1`); empty means every version.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Targets it fails on (`fake`, `backupd`, `sync_server`, `remote`); empty
    /// means every target.
    #[serde(default)]
    pub targets: Vec<String>,
}

/// The `[expect]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// After the final catch-up, the backup equals the source.
    #[serde(default = "yes")]
    pub converged: bool,
    /// Run the catch-up (locks and faults cleared, client stopped, `-R -1`
    /// until the channel log is drained) before checking.
    #[serde(default = "yes")]
    pub catch_up: bool,
    /// Ledger entries classified lost (default: 0 when `converged`).
    pub lost: Option<u64>,
    /// Ledger entries still queued in a channel log at the end.
    pub queued: Option<u64>,
    /// `Deferred:` lines the client printed.
    pub deferrals: Option<Range>,
    /// Commands the fake answered `LOCKED`.
    pub lock_hits: Option<Range>,
    /// Connections the fake accepted after the set-up (catch-up included).
    pub connections: Option<Range>,
    /// Connections per second while any lock window was open, at most.
    pub reconnect_rate_max: Option<f64>,
    /// Restarts the operator policy made.
    pub restarts: Option<Range>,
    /// The scenario is known to fail here.
    pub known_failure: Option<KnownFailure>,
    /// Compare the normalized transcript with `scenarios/snapshots/NAME.snap`.
    #[serde(default)]
    pub snapshot: bool,
    /// The snapshot file's name without `.snap` (default: the scenario's name).
    pub snapshot_name: Option<String>,
    /// `[expect.versions."3.10"]`: keys that differ for client versions with
    /// this prefix (`3.10` matches 3.10.2; the longest matching prefix wins).
    #[serde(default)]
    pub versions: std::collections::BTreeMap<String, ExpectOverride>,
    /// Whether the file gave `lost` (else it follows `converged`).
    #[serde(skip)]
    pub lost_given: bool,
}

/// One `[expect.versions."PREFIX"]` table: any `[expect]` key but `versions`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ExpectOverride {
    pub converged: Option<bool>,
    pub catch_up: Option<bool>,
    pub lost: Option<u64>,
    pub queued: Option<u64>,
    pub deferrals: Option<Range>,
    pub lock_hits: Option<Range>,
    pub connections: Option<Range>,
    pub reconnect_rate_max: Option<f64>,
    pub restarts: Option<Range>,
    pub known_failure: Option<KnownFailure>,
    pub snapshot: Option<bool>,
    pub snapshot_name: Option<String>,
}

/// Whether `prefix` (`3`, `3.10`, `3.10.2`) names `version` (`3.10.2`): equal,
/// or a prefix ending at a `.` (so `3.1` does not match `3.10.2`).
pub fn version_matches(prefix: &str, version: &str) -> bool {
    version == prefix
        || version
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// A version prefix as scenario files write it: numbers joined by `.`.
fn valid_version_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

impl Expect {
    /// The expectations for client `version`: the `[expect.versions."PREFIX"]`
    /// tables whose prefix matches it, applied shortest prefix first.
    pub fn for_version(&self, version: &str) -> Expect {
        let mut out = self.clone();
        let mut matching: Vec<(&String, &ExpectOverride)> = self
            .versions
            .iter()
            .filter(|(p, _)| version_matches(p, version))
            .collect();
        matching.sort_by_key(|(p, _)| p.len());
        let mut lost_given = self.lost_given;
        for (_, o) in matching {
            macro_rules! take {
                ($($f:ident),*) => {$(
                    if let Some(v) = &o.$f { out.$f = v.clone().into(); }
                )*};
            }
            take!(converged, catch_up, snapshot);
            if let Some(v) = o.lost {
                out.lost = Some(v);
                lost_given = true;
            }
            for (dst, src) in [
                (&mut out.deferrals, &o.deferrals),
                (&mut out.lock_hits, &o.lock_hits),
                (&mut out.connections, &o.connections),
                (&mut out.restarts, &o.restarts),
            ] {
                if src.is_some() {
                    *dst = *src;
                }
            }
            if o.queued.is_some() {
                out.queued = o.queued;
            }
            if o.reconnect_rate_max.is_some() {
                out.reconnect_rate_max = o.reconnect_rate_max;
            }
            if o.known_failure.is_some() {
                out.known_failure.clone_from(&o.known_failure);
            }
            if o.snapshot_name.is_some() {
                out.snapshot_name.clone_from(&o.snapshot_name);
            }
        }
        if !lost_given {
            out.lost = out.converged.then_some(0);
        }
        out.versions.clear();
        out
    }
}

/// `expect_exit` of a `sync` step: a code, `"timeout"` (the run is expected to
/// be killed at the client's `timeout`), or per client version
/// `{ "3.6" = "timeout", other = 1 }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExitExpect {
    /// One answer for every version.
    One(ExitOne),
    /// By version prefix; `other` for the rest.
    PerVersion(std::collections::BTreeMap<String, ExitOne>),
}

/// One expected end of a run: an exit code, or `"timeout"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ExitOne {
    /// This exit status.
    Code(i32),
    /// `"timeout"`: still running at the deadline (and then killed).
    Word(String),
}

/// What a run must do, resolved for one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitWant {
    /// Exit with this status.
    Code(i32),
    /// Be killed at the timeout.
    Timeout,
}

impl std::fmt::Display for ExitWant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitWant::Code(c) => write!(f, "{c}"),
            ExitWant::Timeout => f.write_str("still running at the timeout"),
        }
    }
}

impl From<i32> for ExitExpect {
    fn from(code: i32) -> ExitExpect {
        ExitExpect::One(ExitOne::Code(code))
    }
}

impl ExitOne {
    fn want(&self) -> Result<ExitWant, String> {
        match self {
            ExitOne::Code(c) => Ok(ExitWant::Code(*c)),
            ExitOne::Word(w) if w == "timeout" => Ok(ExitWant::Timeout),
            ExitOne::Word(w) => Err(format!(
                "expect_exit \"{w}\": expected an exit code or \"timeout\""
            )),
        }
    }
}

impl ExitExpect {
    /// Check the form: known words, version prefixes, an `other` entry.
    fn validate(&self) -> Result<(), String> {
        match self {
            ExitExpect::One(o) => o.want().map(|_| ()),
            ExitExpect::PerVersion(map) => {
                for (k, v) in map {
                    if k != "other" && !valid_version_prefix(k) {
                        return Err(format!(
                            "expect_exit key `{k}`: expected a version prefix (`3.6`, `3.10.2`) or `other`"
                        ));
                    }
                    v.want()?;
                }
                if !map.contains_key("other") {
                    return Err(
                        "expect_exit by version needs an `other` entry for the remaining versions"
                            .into(),
                    );
                }
                Ok(())
            }
        }
    }

    /// The expectation for client `version` (longest matching prefix, else `other`).
    pub fn for_version(&self, version: &str) -> ExitWant {
        let one = match self {
            ExitExpect::One(o) => o,
            ExitExpect::PerVersion(map) => map
                .iter()
                .filter(|(k, _)| *k != "other" && version_matches(k, version))
                .max_by_key(|(k, _)| k.len())
                .or_else(|| map.get_key_value("other"))
                .map(|(_, v)| v)
                .expect("validated: `other` exists"),
        };
        one.want().unwrap_or(ExitWant::Code(0))
    }
}

/// Why `[expect] ignore` is refused. It had one name, `stale-subscriptions`,
/// which hid a difference the checker made up: the source's subscriptions were
/// read through LSUB (which hides subscriptions to folders that no longer
/// exist) and the backup's raw. Both sides are read raw now and agree.
pub const REMOVED_IGNORE: &str = "`ignore` was removed: its only name, `stale-subscriptions`, \
     hid a difference that came from reading the source's subscriptions through LSUB, which \
     hides subscriptions to renamed and deleted folders that Cyrus keeps; both sides are read \
     raw now and the backups agree with the source (docs/findings/subscriptions.md). Delete \
     this line";

impl Default for Expect {
    fn default() -> Self {
        Expect {
            converged: true,
            catch_up: true,
            lost: None,
            queued: None,
            deferrals: None,
            lock_hits: None,
            connections: None,
            reconnect_rate_max: None,
            restarts: None,
            known_failure: None,
            snapshot: false,
            snapshot_name: None,
            versions: std::collections::BTreeMap::new(),
            lost_given: false,
        }
    }
}

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

fn one_u64() -> u64 {
    1
}
fn default_wait() -> u64 {
    20_000
}

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
    pub subscribe: Option<FolderSpec>,
    pub unsubscribe: Option<FolderSpec>,
    pub sync: Option<SyncSpec>,
    pub start: Option<bool>,
    pub stop: Option<bool>,
    pub kill: Option<bool>,
    pub wait_ms: Option<u64>,
    pub wait_for: Option<WaitForSpec>,
    pub trigger: Option<Box<TriggerSpec>>,
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
    Subscribe(FolderSpec),
    Unsubscribe(FolderSpec),
    Sync(SyncSpec),
    Start,
    Stop,
    Kill,
    WaitMs(u64),
    WaitFor(WaitForSpec),
    Trigger {
        when: MatchSpec,
        then: Vec<Step>,
        timeout_ms: u64,
        required: bool,
    },
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
            Step::Subscribe(f) => format!("subscribe {}/{}", f.user, f.folder),
            Step::Unsubscribe(f) => format!("unsubscribe {}/{}", f.user, f.folder),
            Step::Sync(s) => format!("sync {:?}", s.mode),
            Step::Start => "start the continuous client".into(),
            Step::Stop => "stop the continuous client".into(),
            Step::Kill => "kill the continuous client (SIGKILL)".into(),
            Step::WaitMs(ms) => format!("wait {ms} ms"),
            Step::WaitFor(w) => format!("wait for {} x{}", w.event, w.count),
            Step::Trigger { .. } => "trigger".into(),
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
                | Step::Trigger { .. }
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: Option<String>,
    description: String,
    seed: Option<u64>,
    targets: Option<Vec<String>>,
    #[serde(default)]
    client: ClientSpec,
    #[serde(default)]
    user: Vec<UserSpec>,
    #[serde(default)]
    step: Vec<toml::Spanned<StepSpec>>,
    #[serde(default)]
    expect: Expect,
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name (file stem unless given).
    pub name: String,
    /// What it proves.
    pub description: String,
    /// The file it came from.
    pub path: PathBuf,
    /// Its own seed, when pinned.
    pub seed: Option<Seed>,
    /// The targets it is meaningful on (`fake`, `backupd`, `sync_server`,
    /// `remote`); empty means every target that supports its steps.
    pub targets: Vec<String>,
    /// The client.
    pub client: ClientSpec,
    /// The source set-up.
    pub users: Vec<UserSpec>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Expectations.
    pub expect: Expect,
}

const STEP_KEYS: &str = "lock, unlock, fault, clear, mark, append, flag, seen, expunge, create, delete, rename, subscribe, unsubscribe, sync, start, stop, kill, wait_ms, wait_for, trigger";

impl StepSpec {
    fn to_step(&self) -> Result<Step, String> {
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
        if let Some(v) = s.subscribe {
            found.push(Step::Subscribe(v));
        }
        if let Some(v) = s.unsubscribe {
            found.push(Step::Unsubscribe(v));
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

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        Scenario::parse(&text, path)
    }

    /// Validate scenario text; `path` names it and gives the default name.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let pos = |offset: usize| {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (Some(line), Some(column))
        };
        let raw: ScenarioFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((None, None), |s| pos(s.start));
            let message = if e.message().starts_with("unknown field `ignore`") {
                REMOVED_IGNORE.to_owned()
            } else {
                e.message().to_owned()
            };
            ScenarioError {
                file: file.clone(),
                line,
                column,
                message,
            }
        })?;
        let err_at = |offset: usize, message: String| {
            let (line, column) = pos(offset);
            ScenarioError {
                file: file.clone(),
                line,
                column,
                message,
            }
        };
        let mut steps = Vec::new();
        for (i, s) in raw.step.iter().enumerate() {
            let step = s
                .get_ref()
                .to_step()
                .map_err(|m| err_at(s.span().start, format!("step {}: {m}", i + 1)))?;
            steps.push(step);
        }
        let name = raw.name.unwrap_or_else(|| {
            path.file_stem()
                .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
        });
        let users: Vec<String> = raw.user.iter().map(|u| u.name.clone()).collect();
        if users.is_empty() {
            return Err(err_at(0, "a scenario needs at least one [[user]]".into()));
        }
        for u in &raw.user {
            if u.name.is_empty()
                || !u
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err_at(
                    0,
                    format!("user `{}`: use letters, digits, `_` and `-`", u.name),
                ));
            }
            for f in &u.fixtures {
                if crate::populate::fixture(f).is_none() {
                    return Err(err_at(
                        0,
                        format!(
                            "user `{}`: no fixture `{f}` (known: {})",
                            u.name,
                            crate::populate::FIXTURE_NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
        let expect_at = |key: &str| {
            // The line of `[expect.versions."KEY"]` (or of the key), for errors.
            let needle = format!("\"{key}\"");
            text.find(&needle).unwrap_or(0)
        };
        for prefix in raw.expect.versions.keys() {
            if !valid_version_prefix(prefix) {
                return Err(err_at(
                    expect_at(prefix),
                    format!(
                        "[expect.versions.\"{prefix}\"]: expected a version prefix such as \"3.10\" or \"3.6.1\""
                    ),
                ));
            }
        }
        let known_targets = |list: &[String], what: &str| -> Result<(), ScenarioError> {
            match list.iter().find(|t| !TARGET_NAMES.contains(&t.as_str())) {
                Some(t) => Err(err_at(
                    0,
                    format!(
                        "{what}: unknown target `{t}`; known: {}",
                        TARGET_NAMES.join(", ")
                    ),
                )),
                None => Ok(()),
            }
        };
        known_targets(raw.targets.as_deref().unwrap_or_default(), "targets")?;
        if let Some(k) = &raw.expect.known_failure {
            known_targets(&k.targets, "[expect] known_failure.targets")?;
        }
        let mut expect = raw.expect;
        expect.lost_given = expect.lost.is_some();
        if expect.converged && expect.lost.is_none() {
            expect.lost = Some(0);
        }
        Ok(Scenario {
            name,
            description: raw.description,
            path: path.to_owned(),
            seed: raw.seed.map(Seed),
            targets: raw.targets.unwrap_or_default(),
            client: raw.client,
            users: raw.user,
            steps,
            expect,
        })
    }

    /// This scenario as client `version` should behave: its `[expect]` with
    /// the matching `[expect.versions."PREFIX"]` tables applied.
    pub fn for_version(&self, version: &str) -> Scenario {
        let mut s = self.clone();
        s.expect = self.expect.for_version(version);
        s
    }

    /// Userids of the set-up.
    pub fn user_names(&self) -> Vec<&str> {
        self.users.iter().map(|u| u.name.as_str()).collect()
    }
}

/// Target names a scenario may restrict itself to (`remote` is any HOST:PORT;
/// `fake-sync_server` is the fake with its sync_server personality).
pub const TARGET_NAMES: [&str; 5] = [
    "fake",
    "fake-sync_server",
    "backupd",
    "sync_server",
    "remote",
];

/// Every `*.toml` under the given paths (files as given, directories
/// recursively), sorted; `snapshots/` and proptest data are skipped.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ScenarioError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out).map_err(|e| ScenarioError {
                file: p.display().to_string(),
                line: None,
                column: None,
                message: format!("cannot list: {e}"),
            })?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(ScenarioError {
                file: p.display().to_string(),
                line: None,
                column: None,
                message: "no such file or directory".into(),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "snapshots") {
                continue;
            }
            walk(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
    Ok(())
}
