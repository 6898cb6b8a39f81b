//! Scenario files: TOML describing a source set-up, a client, steps and
//! expectations. `scenarios/README.md` documents every key.
//!
//! Parsing is strict: unknown keys, wrong types and impossible combinations are
//! rejected with the file, line, column and what was expected.

mod expect;
pub mod ledger;
mod steps;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::rng::Seed;

pub use expect::{
    version_matches, ExitExpect, ExitOne, ExitWant, Expect, ExpectOverride, KnownFailure,
    KnownFailureSetting, Range, REMOVED_IGNORE,
};
pub use steps::{
    AclSpec, AnnotateSpec, AppendSpec, ExpectCountSpec, ExpungeSpec, FlagSpec, FolderSpec,
    MetadataSpec, QuotaSpec, ReleaseSpec, ReleaseTable, RenameSpec, ServerMetadataSpec,
    SharedSeenSpec, Step, StepSpec, SyncLockSpec, SyncSpec, SynclogSpec, TriggerSpec, WaitForSpec,
    SYNCLOG_KINDS,
};

use expect::valid_version_prefix;

/// An invalid scenario: where, and what was expected. Displays as
/// `FILE:LINE:COLUMN: message` (the shape compilers print and CI problem
/// matchers read), followed for a TOML syntax or type error by toml's own
/// report: the line with a caret under the offending span.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// toml's rendering of the error (`TOML parse error at line …`, the
    /// line, a caret), when the TOML parser found it.
    pub snippet: Option<String>,
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(s) = &self.snippet {
            write!(f, "\n{}", s.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

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
    /// `sync_batchsize`: the most messages one mailbox upload carries (Cyrus'
    /// default 8192); more are sent in several batches.
    pub batchsize: Option<u32>,
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
pub(super) fn yes() -> bool {
    true
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            mode: default_mode(),
            repeat_interval: 1,
            sync_timeout: None,
            batchsize: None,
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

impl Scenario {
    /// Read and validate a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.display().to_string(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
            snippet: None,
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
                e.message().trim_end().to_owned()
            };
            ScenarioError {
                file: file.clone(),
                line,
                column,
                message,
                snippet: Some(e.to_string()),
            }
        })?;
        let err_at = |offset: usize, message: String| {
            let (line, column) = pos(offset);
            ScenarioError {
                file: file.clone(),
                line,
                column,
                message,
                snippet: None,
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
                        "[expect.versions.\"{prefix}\"]: expected a version prefix such as \"3.10\", \"3.6.1\" or \"3.6+PATCH\" (a `cyrus build --patch PATCH.patch` build)"
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
        if let Some(k) = raw.expect.known_failure.as_ref() {
            known_targets(&k.targets, "[expect] known_failure.targets")?;
        }
        let mut expect = raw.expect;
        expect.lost_given = expect.lost.is_some();
        // A run expected to diverge may still lose nothing, or lose more than
        // the author saw: without `lost` its ledger would go unchecked.
        let unbounded = |e: &Expect| !e.converged && e.lost.is_none();
        if unbounded(&expect) {
            return Err(err_at(
                text.find("converged").unwrap_or(0),
                "[expect] converged = false needs `lost`: how many changes the ledger must find lost (0 if none may be)".into(),
            ));
        }
        for prefix in expect.versions.keys() {
            if unbounded(&expect.for_version(prefix)) {
                return Err(err_at(
                    expect_at(prefix),
                    format!(
                        "[expect.versions.\"{prefix}\"]: converged = false needs `lost` (here or in [expect]): how many changes the ledger must find lost"
                    ),
                ));
            }
        }
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
                snippet: None,
            })?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(ScenarioError {
                file: p.display().to_string(),
                line: None,
                column: None,
                message: "no such file or directory".into(),
                snippet: None,
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
