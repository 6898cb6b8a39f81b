//! `backupd-sim explore`: property-based convergence testing with the real
//! client. proptest strategies generate scenarios (source changes over several
//! users and folders, lock windows, faults the client is expected to survive,
//! client runs and triggers, interleaved); each case runs as a scenario on one
//! shared harness (fresh users per case); a failing case is shrunk by
//! proptest and written as a scenario file that `backupd-sim run` replays.
//!
//! Properties checked on every case (after the catch-up: locks and faults
//! cleared, rolling passes until the channel log is drained): the backup
//! equals the source, and the ledger has no lost change. No case can hang:
//! every client run and wait is bounded.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{
    Config, FileFailurePersistence, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

use crate::harness::Harness;
use crate::rng::Seed;
use crate::runner::{run_on, RunOptions, ScenarioReport, Verdict};
use crate::scenario::Scenario;

/// Which client modes cases use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExploreMode {
    /// Only one-shot rolling passes (`-R -1`).
    Rolling,
    /// Only `-u`.
    User,
    /// Only `-A`.
    All,
    /// Any of them, per sync step.
    Mixed,
}

impl std::str::FromStr for ExploreMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rolling" => ExploreMode::Rolling,
            "user" => ExploreMode::User,
            "all" => ExploreMode::All,
            "mixed" => ExploreMode::Mixed,
            _ => return Err(format!("`{s}`: expected rolling, user, all or mixed")),
        })
    }
}

/// Fault kinds a generated case may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Close before executing.
    DropBefore,
    /// Execute, close without replying.
    DropAfter,
    /// Execute, send part of the reply, close.
    PartialReply,
    /// Execute, reply 100 ms late.
    Delay,
    /// Answer `NO IMAP_MAILBOX_LOCKED` (a lock on one command).
    NoLocked,
    /// Answer OK, store nothing (never survivable: proves the checks).
    Lie,
    /// Hide one GUID from `* MISSING` (never survivable: proves the checks).
    HideMissing,
}

/// One generated step (indices are resolved against the case's users).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GenStep {
    /// Append `count` messages to a folder.
    Append {
        user: usize,
        folder: usize,
        count: usize,
    },
    /// Add a flag to a UID of INBOX.
    Flag { user: usize, uid: u32, flag: usize },
    /// Expunge a UID of INBOX.
    Expunge { user: usize, uid: u32 },
    /// Create folder `INBOX.G{n}` and subscribe it.
    CreateSubscribed { user: usize, n: u32 },
    /// Lock a user (hold mode).
    Lock { user: usize },
    /// Unlock a user.
    Unlock { user: usize },
    /// A fault on the nth command with this verb.
    Fault {
        kind: FaultKind,
        verb: usize,
        nth: u64,
    },
    /// A client run.
    Sync { mode: usize },
    /// Hold the user's next GET MAILBOXES and append a message meanwhile.
    Trigger { user: usize },
    /// Rename the subscribed folder INBOX.Work (only with `renames`).
    RenameSubscribed { user: usize, n: u32 },
}

const FOLDERS: [&str; 3] = ["INBOX", "INBOX.Sent", "INBOX.Work"];
const FLAGS: [&str; 3] = ["\\Flagged", "\\Seen", "$Label1"];
const VERBS: [&str; 5] = [
    "GET MAILBOXES",
    "APPLY RESERVE",
    "APPLY MESSAGE",
    "APPLY MAILBOX",
    "APPLY SUB",
];

/// A generated case: how many users and the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenCase {
    /// Users (2 or 3).
    pub users: usize,
    /// Steps in order.
    pub steps: Vec<GenStep>,
}

/// What may be generated.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Client modes.
    pub mode: ExploreMode,
    /// Allow `lie` and `hide-missing` (cases then fail, on purpose).
    pub allow_loss_faults: bool,
    /// Most steps a case has.
    pub steps_max: usize,
    /// Also rename subscribed folders (the old name stays subscribed on the
    /// source, raw, and the backup must hold the same set).
    pub renames: bool,
}

fn step_strategy(opts: &GenOptions) -> BoxedStrategy<GenStep> {
    let modes: Vec<usize> = match opts.mode {
        ExploreMode::Rolling => vec![0],
        ExploreMode::User => vec![1],
        ExploreMode::All => vec![2],
        ExploreMode::Mixed => vec![0, 1, 2],
    };
    let mut kinds = vec![
        FaultKind::DropBefore,
        FaultKind::DropAfter,
        FaultKind::PartialReply,
        FaultKind::Delay,
        FaultKind::NoLocked,
    ];
    if opts.allow_loss_faults {
        // As likely as all the others together: the point is to find them.
        kinds.extend([FaultKind::Lie, FaultKind::HideMissing].repeat(3));
    }
    let u = 0..3usize;
    let base = prop_oneof![
        4 => (u.clone(), 0..FOLDERS.len(), 1..=3usize).prop_map(|(user, folder, count)| GenStep::Append { user, folder, count }),
        2 => (u.clone(), 1..=6u32, 0..FLAGS.len()).prop_map(|(user, uid, flag)| GenStep::Flag { user, uid, flag }),
        1 => (u.clone(), 1..=6u32).prop_map(|(user, uid)| GenStep::Expunge { user, uid }),
        1 => (u.clone(), 1..=3u32).prop_map(|(user, n)| GenStep::CreateSubscribed { user, n }),
        2 => u.clone().prop_map(|user| GenStep::Lock { user }),
        2 => u.clone().prop_map(|user| GenStep::Unlock { user }),
        2 => (proptest::sample::select(kinds), 0..VERBS.len(), 1..=2u64).prop_map(|(kind, verb, nth)| GenStep::Fault { kind, verb, nth }),
        3 => proptest::sample::select(modes).prop_map(|mode| GenStep::Sync { mode }),
        1 => u.clone().prop_map(|user| GenStep::Trigger { user }),
    ];
    // Only present when asked for: proptest shrinks a union towards its
    // earlier arms, so even a zero-weight arm would appear in shrunk cases.
    if opts.renames {
        prop_oneof![
            18 => base,
            2 => (u, 1..=3u32).prop_map(|(user, n)| GenStep::RenameSubscribed { user, n }),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

/// The case strategy: 2-3 users, 1..=`steps_max` steps.
pub fn case_strategy(opts: &GenOptions) -> BoxedStrategy<GenCase> {
    (
        2..=3usize,
        proptest::collection::vec(step_strategy(opts), 1..=opts.steps_max.max(1)),
    )
        .prop_map(|(users, steps)| GenCase { users, steps })
        .boxed()
}

impl GenCase {
    /// The scenario file text, with users named `{prefix}u{i}`.
    pub fn to_toml(&self, prefix: &str, header: &str) -> String {
        let user = |i: usize| format!("{prefix}u{}", i % self.users);
        let mut t = String::new();
        for line in header.lines() {
            let _ = writeln!(t, "# {line}");
        }
        let _ = writeln!(t, "description = \"generated by backupd-sim explore\"\n");
        for i in 0..self.users {
            let _ = writeln!(t, "[[user]]\nname = \"{}\"\nmessages = 6\n", user(i));
        }
        let modes = ["rolling-once", "user", "all"];
        let mut locked = std::collections::BTreeSet::new();
        // A user's INBOX.Work after its rename, for the appends that follow.
        let mut renamed: std::collections::BTreeMap<usize, String> = Default::default();
        for (i, s) in self.steps.iter().enumerate() {
            // An unlock of a user that is not locked would be a scenario error,
            // and a trigger with no client run after it can never be reached.
            let next_mode = self.steps[i + 1..].iter().find_map(|x| match x {
                GenStep::Sync { mode } => Some(*mode),
                _ => None,
            });
            let later_sync = next_mode.is_some();
            match s {
                GenStep::Trigger { .. } if !later_sync => continue,
                GenStep::Lock { user: u } => {
                    locked.insert(u % self.users);
                }
                GenStep::Unlock { user: u } if !locked.remove(&(u % self.users)) => continue,
                _ => {}
            }
            let line = match s {
                GenStep::Append { user: u, folder, count } => format!(
                    "append = {{ user = \"{}\", folder = \"{}\", count = {count} }}",
                    user(*u),
                    match renamed.get(&(u % self.users)) {
                        Some(now) if FOLDERS[*folder] == "INBOX.Work" => now.as_str(),
                        _ => FOLDERS[*folder],
                    }
                ),
                GenStep::Flag { user: u, uid, flag } => format!(
                    "flag = {{ user = \"{}\", uids = \"{uid}\", add = [\"{}\"] }}",
                    user(*u),
                    FLAGS[*flag].replace('\\', "\\\\")
                ),
                GenStep::Expunge { user: u, uid } => format!("expunge = {{ user = \"{}\", uids = \"{uid}\" }}", user(*u)),
                GenStep::CreateSubscribed { user: u, n } => format!(
                    "create = {{ user = \"{0}\", folder = \"INBOX.G{n}\" }}\n[[step]]\nsubscribe = {{ user = \"{0}\", folder = \"INBOX.G{n}\" }}",
                    user(*u)
                ),
                GenStep::Lock { user: u } => format!("lock = {{ user = \"{}\" }}", user(*u)),
                GenStep::Unlock { user: u } => format!("unlock = \"{}\"", user(*u)),
                GenStep::Fault { kind, verb, nth } => {
                    // The loss faults only bite where they lose data: a lie about
                    // an upload or a mailbox, a hidden GUID in RESERVE's answer.
                    let verb = match kind {
                        FaultKind::Lie if !matches!(VERBS[*verb], "APPLY MESSAGE" | "APPLY MAILBOX") => 2,
                        FaultKind::HideMissing => 1,
                        _ => *verb,
                    };
                    let verb = &verb;
                    let (action, extra) = match kind {
                        FaultKind::DropBefore => ("drop-before", String::new()),
                        FaultKind::DropAfter => ("drop-after", String::new()),
                        FaultKind::PartialReply => ("partial-reply", ", bytes = 3".to_owned()),
                        FaultKind::Delay => ("delay", ", delay_ms = 100".to_owned()),
                        FaultKind::NoLocked => ("no", ", code = \"IMAP_MAILBOX_LOCKED\"".to_owned()),
                        FaultKind::Lie => ("lie", String::new()),
                        FaultKind::HideMissing => ("hide-missing", String::new()),
                    };
                    format!(
                        "fault = {{ when = {{ verb = \"{}\" }}, nth = {nth}, action = \"{action}\"{extra} }}",
                        VERBS[*verb]
                    )
                }
                GenStep::Sync { mode } => format!("sync = {{ mode = \"{}\" }}", modes[*mode]),
                GenStep::RenameSubscribed { user: u, n } => {
                    if renamed.contains_key(&(u % self.users)) {
                        continue;
                    }
                    renamed.insert(u % self.users, format!("INBOX.W{n}"));
                    format!("rename = {{ user = \"{}\", from = \"INBOX.Work\", to = \"INBOX.W{n}\" }}", user(*u))
                }
                // The pass must touch the user: a rolling pass only does when
                // the channel log names it, so a change goes first.
                GenStep::Trigger { user: u } => match next_mode {
                    Some(0) => format!(
                        "append = {{ user = \"{0}\", folder = \"INBOX.Sent\" }}\n[[step]]\ntrigger = {{ when = {{ verb = \"GET MAILBOXES\", user = \"{0}\" }}, then = [ {{ append = {{ user = \"{0}\" }} }} ], timeout_ms = 5000, required = false }}",
                        user(*u)
                    ),
                    _ => format!(
                        "trigger = {{ when = {{ verb = \"GET USER\", user = \"{0}\" }}, then = [ {{ append = {{ user = \"{0}\" }} }} ], timeout_ms = 5000, required = false }}",
                        user(*u)
                    ),
                },
            };
            let _ = writeln!(t, "[[step]]\n{line}");
        }
        let _ = writeln!(t, "\n[expect]\nconverged = true\nlost = 0");
        t
    }
}

/// How an exploration ended.
#[derive(Debug)]
pub struct ExploreOutcome {
    /// Cases run (shrinking runs included).
    pub cases_run: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// The shrunk failing case, written as a scenario file, with its report.
    pub failure: Option<(PathBuf, ScenarioReport)>,
}

/// Everything `explore` needs.
#[derive(Debug, Clone)]
pub struct ExploreOptions {
    /// Cases to generate.
    pub cases: u32,
    /// The seed.
    pub seed: Seed,
    /// What may be generated.
    pub gen: GenOptions,
    /// Where a shrunk failure is written.
    pub out_dir: PathBuf,
    /// proptest's own regression file.
    pub regressions: PathBuf,
    /// The run settings (Cyrus, version).
    pub run: RunOptions,
}

fn rng_for(seed: Seed) -> TestRng {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut r = crate::rng::Rng::new(seed).fork(&format!("explore-{i}"));
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// The first `n` cases the seed generates (no shrinking, nothing run).
pub fn generate(seed: Seed, gen: &GenOptions, n: u32) -> Vec<GenCase> {
    let mut runner = TestRunner::new_with_rng(Config::default(), rng_for(seed));
    let strategy = case_strategy(gen);
    (0..n)
        .filter_map(|_| strategy.new_tree(&mut runner).ok().map(|t| t.current()))
        .collect()
}

/// Run the exploration on `h`, reporting progress through `progress(done, failures, cases_per_minute)`.
pub fn explore(
    h: &Harness,
    opts: &ExploreOptions,
    mut progress: impl FnMut(usize, usize, f64) + Send,
) -> Result<ExploreOutcome, String> {
    let started = Instant::now();
    let config = Config {
        cases: opts.cases,
        max_shrink_iters: 200,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(leak_path(
            &opts.regressions,
        )))),
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng_for(opts.seed));
    let counter = Mutex::new((0usize, 0usize, None::<ScenarioReport>));
    let progress = Mutex::new(&mut progress);
    let result = runner.run(&case_strategy(&opts.gen), |case| {
        let n = counter.lock().map(|c| c.0).unwrap_or(0);
        let prefix = format!("x{n}");
        let text = case.to_toml(&prefix, "");
        let scenario = Scenario::parse(&text, Path::new("explore-case.toml")).map_err(|e| {
            TestCaseError::fail(format!("generated an invalid scenario: {e}\n{text}"))
        })?;
        let report = run_on(h, &scenario, &opts.run, opts.seed);
        let bad = report.verdict != Verdict::Pass;
        if let Ok(mut c) = counter.lock() {
            c.0 += 1;
            if bad {
                c.1 += 1;
                c.2 = Some(report.clone());
            }
            let per_min = c.0 as f64 / started.elapsed().as_secs_f64().max(1e-3) * 60.0;
            if let Ok(mut p) = progress.lock() {
                (p)(c.0, c.1, per_min);
            }
        }
        if bad {
            Err(TestCaseError::fail(report.failures().join("\n")))
        } else {
            Ok(())
        }
    });
    let cases_run = counter.lock().map(|c| c.0).unwrap_or(0);
    let failure = match result {
        Ok(()) => None,
        Err(TestError::Abort(why)) => return Err(format!("exploration aborted: {why}")),
        Err(TestError::Fail(why, minimal)) => {
            std::fs::create_dir_all(&opts.out_dir)
                .map_err(|e| format!("creating `{}`: {e}", opts.out_dir.display()))?;
            let name = format!("explore-{}-{}", opts.seed, minimal.steps.len());
            let path = opts.out_dir.join(format!("{name}.toml"));
            let header = format!(
                "Found by `backupd-sim explore --seed {} --cases {}`{}, shrunk to {} step(s).\nWhy it failed:\n{}\nReplay: backupd-sim run {}",
                opts.seed,
                opts.cases,
                if opts.gen.allow_loss_faults { " --allow-loss-faults" } else { "" },
                minimal.steps.len(),
                why,
                path.display()
            );
            let text = minimal.to_toml("r", &header).replacen(
                "description = \"generated by backupd-sim explore\"",
                &format!(
                    "description = \"explore seed {}: shrunk failing case\"\nseed = {}",
                    opts.seed, opts.seed.0
                ),
                1,
            );
            std::fs::write(&path, text)
                .map_err(|e| format!("writing `{}`: {e}", path.display()))?;
            let report = counter.lock().ok().and_then(|mut c| c.2.take());
            report.map(|r| (path, r))
        }
    };
    Ok(ExploreOutcome {
        cases_run,
        seconds: started.elapsed().as_secs_f64(),
        failure,
    })
}

fn leak_path(p: &Path) -> &'static str {
    Box::leak(p.display().to_string().into_boxed_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> GenOptions {
        GenOptions {
            mode: ExploreMode::Mixed,
            allow_loss_faults: false,
            steps_max: 8,
            renames: true,
        }
    }

    #[test]
    fn same_seed_same_cases_and_every_case_is_a_valid_scenario() {
        let a = generate(Seed(3), &gen(), 40);
        let b = generate(Seed(3), &gen(), 40);
        assert_eq!(a, b);
        assert_ne!(a, generate(Seed(4), &gen(), 40));
        for (i, c) in a.iter().enumerate() {
            let text = c.to_toml(&format!("c{i}"), "header");
            Scenario::parse(&text, Path::new("gen.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        }
    }

    /// After a user's INBOX.Work is renamed, appends meant for it go to its new
    /// name (an append to the old name would fail on the source).
    #[test]
    fn appends_follow_a_renamed_folder() {
        let case = GenCase {
            users: 2,
            steps: vec![
                GenStep::RenameSubscribed { user: 0, n: 2 },
                GenStep::Append {
                    user: 0,
                    folder: 2,
                    count: 1,
                },
                GenStep::Append {
                    user: 1,
                    folder: 2,
                    count: 1,
                },
            ],
        };
        let text = case.to_toml("p", "");
        assert!(
            text.contains(r#"append = { user = "pu0", folder = "INBOX.W2", count = 1 }"#)
                && text.contains(r#"append = { user = "pu1", folder = "INBOX.Work", count = 1 }"#),
            "{text}"
        );
    }

    #[test]
    fn loss_faults_only_when_allowed() {
        let has_loss = |cases: &[GenCase]| {
            cases.iter().flat_map(|c| &c.steps).any(|s| {
                matches!(
                    s,
                    GenStep::Fault {
                        kind: FaultKind::Lie | FaultKind::HideMissing,
                        ..
                    }
                )
            })
        };
        assert!(!has_loss(&generate(Seed(1), &gen(), 200)));
        let allowed = GenOptions {
            allow_loss_faults: true,
            ..gen()
        };
        assert!(has_loss(&generate(Seed(1), &allowed, 200)));
    }
}
