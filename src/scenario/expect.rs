//! The `[expect]` table: what a run must show, with per-version overrides
//! (`[expect.versions."3.10"]`), bounded counts, known failures, and the
//! expected end of each client run (`expect_exit`).

use std::collections::BTreeMap;

use serde::Deserialize;

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
    /// The checks it fails (`converged`, `lost changes`, …, as the report
    /// names them); empty means any. A failure of another check is a FAIL,
    /// not an XFAIL: a new loss in a scenario known to fail is not hidden.
    #[serde(default)]
    pub checks: Vec<String>,
    /// For `converged` and `lost changes`: a piece of each difference line it
    /// expects (`"user dino: subscription to"`). A line of those checks that
    /// none of them is in is a new failure: FAIL.
    #[serde(default)]
    pub differences: Vec<String>,
}

impl KnownFailure {
    /// The checks whose listed lines (differences, lost changes) a known
    /// failure must name one by one.
    pub const LISTING: [&'static str; 2] = ["converged", "lost changes"];

    fn validate(&self) -> Result<(), String> {
        if self.checks.is_empty() {
            return Err("known_failure needs `checks`: the checks it fails, as the report names them (a known failure of any check would hide a new one)".into());
        }
        if self.differences.is_empty()
            && self
                .checks
                .iter()
                .any(|c| Self::LISTING.contains(&c.as_str()))
        {
            return Err("known_failure excusing `converged` or `lost changes` needs `differences`: a piece of each line it expects those checks to list (e.g. \"user dino: subscription to\"), so that a new difference in the same check is not hidden".into());
        }
        Ok(())
    }
}

/// `known_failure`: `{ reason, versions, targets, checks, differences }`, or `false` (none: in a
/// `[expect.versions."…"]` table it drops the known failure `[expect]`
/// gives, e.g. for a patched build that fixes it). Reads as the
/// `Option<KnownFailure>` it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KnownFailureSetting(pub Option<KnownFailure>);

impl std::ops::Deref for KnownFailureSetting {
    type Target = Option<KnownFailure>;
    fn deref(&self) -> &Option<KnownFailure> {
        &self.0
    }
}

impl<'de> Deserialize<'de> for KnownFailureSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match toml::Value::deserialize(d)? {
            toml::Value::Boolean(false) => Ok(KnownFailureSetting(None)),
            toml::Value::Boolean(true) => Err(D::Error::custom(
                "known_failure = true says nothing: give { reason = \"…\" }, or false for none",
            )),
            v => {
                let k = KnownFailure::deserialize(v).map_err(D::Error::custom)?;
                k.validate().map_err(D::Error::custom)?;
                Ok(KnownFailureSetting(Some(k)))
            }
        }
    }
}

/// Declares the `[expect]` keys once: [`Expect`] with each key's default, and
/// [`ExpectOverride`], where each key is optional and replaces the plain one
/// when given.
macro_rules! expect_keys {
    ($($(#[doc = $doc:expr])* $key:ident: $ty:ty = $default:expr,)*) => {
        /// The `[expect]` table.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Expect {
            $($(#[doc = $doc])* pub $key: $ty,)*
            /// `[expect.versions."3.10"]`: keys that differ for client versions with
            /// this prefix (`3.10` matches 3.10.2; the longest matching prefix wins).
            pub versions: BTreeMap<String, ExpectOverride>,
            /// Whether the file gave `lost` (else it follows `converged`).
            #[serde(skip)]
            pub lost_given: bool,
        }

        impl Default for Expect {
            fn default() -> Self {
                Expect {
                    $($key: $default,)*
                    versions: BTreeMap::new(),
                    lost_given: false,
                }
            }
        }

        /// One `[expect.versions."PREFIX"]` table: any `[expect]` key but
        /// `versions`, each replacing the plain one when given.
        #[derive(Debug, Clone, PartialEq, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ExpectOverride {
            $($(#[doc = $doc])* pub $key: Option<$ty>,)*
        }

        impl Expect {
            /// Take every key `o` gives.
            fn apply(&mut self, o: &ExpectOverride) {
                $(if let Some(v) = &o.$key {
                    self.$key = v.clone();
                })*
            }
        }
    };
}

expect_keys! {
    /// After the final catch-up, the backup equals the source.
    converged: bool = true,
    /// Run the catch-up (locks and faults cleared, client stopped, `-R -1`
    /// until the channel log is drained) before checking.
    catch_up: bool = true,
    /// Ledger entries classified lost (default: 0 when `converged`).
    lost: Option<u64> = None,
    /// Ledger entries still queued in a channel log at the end.
    queued: Option<u64> = None,
    /// `Deferred:` lines the client printed.
    deferrals: Option<Range> = None,
    /// Commands the fake answered `LOCKED`.
    lock_hits: Option<Range> = None,
    /// Connections the fake accepted after the set-up (catch-up included).
    connections: Option<Range> = None,
    /// Connections per second while any lock window was open, at most.
    reconnect_rate_max: Option<f64> = None,
    /// Restarts the operator policy made.
    restarts: Option<Range> = None,
    /// Writes the target acknowledged and a later read showed lost
    /// ([`crate::history`]); default: none.
    acknowledged_lost: Option<Range> = None,
    /// The scenario is known to fail here (`false` in a version's table: not
    /// here, although `[expect]` says so).
    known_failure: KnownFailureSetting = KnownFailureSetting(None),
    /// Compare the normalized transcript with `scenarios/snapshots/NAME.snap`.
    snapshot: bool = false,
    /// The snapshot file's name without `.snap` (default: the scenario's name).
    snapshot_name: Option<String> = None,
}

/// Whether `prefix` (`3`, `3.10`, `3.10.2`) names `version` (`3.10.2`): equal,
/// or a prefix ending at a `.` (so `3.1` does not match `3.10.2`).
///
/// A build from `backupd-sim cyrus build --patch FILE` has tags, one per
/// patch (`3.6.1+sync-client-backoff`, see [`crate::cyrus::CyrusBins::version`]).
/// A prefix without tags matches tagged versions by their number; a prefix
/// with tags (`3.6+sync-client-backoff`, or `+sync-client-backoff` for every
/// version) matches only versions carrying each of them.
pub fn version_matches(prefix: &str, version: &str) -> bool {
    let (pnum, ptags) = split_tags(prefix);
    let (vnum, vtags) = split_tags(version);
    let number = pnum.is_empty()
        || vnum == pnum
        || vnum
            .strip_prefix(pnum)
            .is_some_and(|rest| rest.starts_with('.'));
    number && ptags.iter().all(|t| vtags.contains(t))
}

/// `3.6.1+a+b` -> (`3.6.1`, [`a`, `b`]).
fn split_tags(v: &str) -> (&str, Vec<&str>) {
    let mut parts = v.split('+');
    let num = parts.next().unwrap_or_default();
    (num, parts.collect())
}

/// A version prefix as scenario files write it: numbers joined by `.`,
/// optionally followed by `+TAG`s (letters, digits, `-`, `_`); the numbers
/// may be left out when a tag is given.
pub(super) fn valid_version_prefix(p: &str) -> bool {
    let (num, tags) = split_tags(p);
    let num_ok = if num.is_empty() {
        !tags.is_empty()
    } else {
        num.split('.')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    num_ok
        && tags.iter().all(|t| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
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
            out.apply(o);
            lost_given |= o.lost.is_some();
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
    pub(super) fn validate(&self) -> Result<(), String> {
        match self {
            ExitExpect::One(o) => o.want().map(|_| ()),
            ExitExpect::PerVersion(map) => {
                for (k, v) in map {
                    if k != "other" && !valid_version_prefix(k) {
                        return Err(format!(
                            "expect_exit key `{k}`: expected a version prefix (`3.6`, `3.10.2`, `3.6+PATCH`) or `other`"
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
