//! What a generated case is made of, and the proptest strategies that draw it.
//!
//! A [`GenCase`] is abstract: users and folders are indices, resolved by the
//! renderer ([`super::render`]) against a model of the source as the case
//! goes (which folders exist, which users were deleted, whether the
//! continuous client runs, which locks are open). Any list of steps renders to
//! a valid scenario, so shrinking (which removes steps and lowers values)
//! always yields one.
//!
//! The weights lean toward where races live: client runs, locks, faults and
//! triggers holding a command while the source changes.

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};

use crate::rng::Seed;

/// Which client modes the one-shot runs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExploreMode {
    /// Only one-shot rolling passes (`-R -1`).
    Rolling,
    /// Only `-u`.
    User,
    /// Only `-A`.
    All,
    /// Only `-m`.
    Mailbox,
    /// Any of them per run, and the continuous client (`-R`) beside them.
    Mixed,
}

impl std::str::FromStr for ExploreMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "rolling" => ExploreMode::Rolling,
            "user" => ExploreMode::User,
            "all" => ExploreMode::All,
            "mailbox" => ExploreMode::Mailbox,
            "mixed" => ExploreMode::Mixed,
            _ => {
                return Err(format!(
                    "`{s}`: expected rolling, user, all, mailbox or mixed"
                ))
            }
        })
    }
}

/// A one-shot client run's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncMode {
    /// `-R -1`.
    RollingOnce,
    /// `-u` of the users in this bit mask (0: every user).
    User(u8),
    /// `-A`.
    All,
    /// `-m` of one or two mailboxes (folder indices of user 0 and 1).
    Mailbox(u8, Option<u8>),
}

/// Fault actions a case may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FaultKind {
    /// Close before executing.
    DropBefore,
    /// Execute, close without replying.
    DropAfter,
    /// Execute, send the first bytes of the reply, close.
    PartialReply(u8),
    /// Execute, reply late (milliseconds).
    Delay(u16),
    /// Answer `NO` with one of [`NO_CODES`].
    No(u8),
    /// Answer `BAD`.
    Bad,
    /// Answer `BYE` and close.
    Bye,
    /// Restart the target (drop every connection), refusing for this long.
    Restart(u16),
    /// Never answer: the client's `sync_timeout` (3 s) ends it.
    Stall,
    /// Refuse new connections for this long (3.6.1 then waits 15 s to retry).
    RefuseConnections(u16),
    /// Answer OK, store nothing (loss: only with `allow_loss_faults`).
    Lie,
    /// Leave a GUID out of `* MISSING` (loss).
    HideMissing,
    /// Break one row of stored state after acknowledging (loss): an index
    /// into `fault::Corruption::ROWS`.
    Corrupt(u8),
}

impl FaultKind {
    /// `lie`, `hide-missing` or `corrupt`: a fault that loses data on purpose.
    pub fn is_loss(&self) -> bool {
        matches!(
            self,
            FaultKind::Lie | FaultKind::HideMissing | FaultKind::Corrupt(_)
        )
    }
}

/// `NO` codes a fault may answer with: those the real backupd can send
/// (`backupd_response`, backup/backupd.c:1378 in 3.6.1, answers every other
/// error `NO Unknown error`). `IMAP_SYNC_CHECKSUM` was drawn here once: no
/// real target answers it to APPLY MESSAGE, and sync_client's retry after it
/// sends the records without their bodies (docs/findings/checksum-on-apply-message.md).
pub const NO_CODES: [&str; 3] = [
    "IMAP_MAILBOX_LOCKED",
    "IMAP_PROTOCOL_ERROR",
    "IMAP_MAILBOX_NONEXISTENT",
];

/// The commands locks, faults and triggers pick from.
pub const VERBS: [&str; 14] = [
    "APPLY MAILBOX",
    "GET MAILBOXES",
    "GET USER",
    "APPLY RESERVE",
    "APPLY MESSAGE",
    "APPLY SUB",
    "APPLY UNSUB",
    "APPLY UNMAILBOX",
    "APPLY RENAME",
    "APPLY SEEN",
    "GET FULLMAILBOX",
    "GET META",
    "APPLY QUOTA",
    "APPLY UNUSER",
];

/// What a lock window locks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockTarget {
    /// A user (`hold` or `reject`).
    User {
        /// `hold` (as another connection holding the backup) or `reject`.
        hold: bool,
    },
    /// One mailbox of the user (a folder index), `reject`.
    Mailbox(u8),
    /// A command kind (a [`VERBS`] index), for every user, `reject`.
    Verb(u8),
    /// A command kind for the user only, `reject`.
    UserVerb(u8),
}

/// When a lock window opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Open {
    /// Now.
    Start,
    /// At mark `m{n}`.
    Mark(u8),
    /// On the nth command of a kind (a [`VERBS`] index).
    On(u8, u8),
}

/// When a lock window closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Close {
    /// Never (the catch-up clears it).
    Never,
    /// By an `unlock` step.
    Manual,
    /// At mark `m{n}`.
    Mark(u8),
    /// On the nth command of a kind.
    On(u8, u8),
    /// After this many milliseconds.
    AfterMs(u16),
    /// After this many `LOCKED` answers.
    Attempts(u8),
}

/// One source change (also what a trigger does while it holds a command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Append `count` messages to a folder (more than the batch size of 3
    /// makes the client upload in several batches).
    Append { user: u8, folder: u8, count: u8 },
    /// Add or remove a flag on a UID.
    Flag {
        user: u8,
        folder: u8,
        uid: u8,
        flag: u8,
        remove: bool,
    },
    /// Mark a UID `\Seen` (the owner's seen state).
    Seen { user: u8, folder: u8, uid: u8 },
    /// Expunge a UID.
    Expunge { user: u8, folder: u8, uid: u8 },
    /// `UID MOVE` a UID to another folder.
    Move {
        user: u8,
        folder: u8,
        uid: u8,
        to: u8,
    },
    /// Create `INBOX.G{n}`, subscribed or not.
    Create { user: u8, n: u8, subscribe: bool },
    /// Delete a folder (one without children).
    Delete { user: u8, folder: u8 },
    /// Rename a folder (one without children) to `INBOX.R{n}`.
    Rename { user: u8, folder: u8, n: u8 },
    /// Subscribe or unsubscribe a folder.
    Subscribe { user: u8, folder: u8, on: bool },
    /// Set or remove a mailbox annotation.
    Metadata {
        user: u8,
        folder: u8,
        shared: bool,
        value: Option<u8>,
    },
    /// Set or remove a message annotation.
    Annotate {
        user: u8,
        folder: u8,
        uid: u8,
        shared: bool,
        value: Option<u8>,
    },
    /// Set (or remove) the user's quota.
    Quota {
        user: u8,
        storage: Option<u16>,
        message: Option<u16>,
    },
    /// Delete the user (never user 0).
    DeleteUser { user: u8 },
}

/// One generated step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GenStep {
    /// A source change.
    Change(Change),
    /// A one-shot client run.
    Sync(SyncMode),
    /// Start the continuous client (`-R`).
    Start,
    /// Stop it (SIGTERM).
    Stop,
    /// Kill it (SIGKILL): the operator policy decides what follows.
    Kill,
    /// Let the continuous client work this many milliseconds.
    Wait(u16),
    /// Open a lock window on a user.
    Lock {
        user: u8,
        target: LockTarget,
        open: Open,
        close: Close,
    },
    /// Close a manual lock (the nth opened).
    Unlock(u8),
    /// Reach mark `m{n}`.
    Mark(u8),
    /// A fault on the nth command of a kind (of one user, or any).
    Fault {
        kind: FaultKind,
        verb: u8,
        user: Option<u8>,
        nth: u8,
    },
    /// Remove every lock and fault.
    Clear,
    /// Hold the nth command of a kind (of one user) and change the source,
    /// lock or fault meanwhile.
    Trigger {
        verb: u8,
        user: Option<u8>,
        nth: u8,
        then: Vec<TriggerAction>,
    },
}

/// What a trigger does while it holds a command: changes that leave the
/// renderer's model of folders as it was (the trigger may never fire), a
/// lock, a fault, a mark.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggerAction {
    /// Append to INBOX.
    Append { user: u8, count: u8 },
    /// Flag or seen a UID of INBOX.
    Flag { user: u8, uid: u8, flag: u8 },
    /// Expunge a UID of INBOX.
    Expunge { user: u8, uid: u8 },
    /// A user lock (reject), closing after 1-2 `LOCKED` answers.
    Lock { user: u8, attempts: u8 },
    /// A fault.
    Fault { kind: FaultKind, verb: u8 },
    /// A mark.
    Mark(u8),
}

/// The operator policy for the continuous client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// Nothing: a killed client stays dead.
    None,
    /// Restart it (as master's DAEMON entry).
    Restart,
    /// Delete its `log-run`, then restart it (the 2016 watcher script).
    RestartDiscardLog,
}

/// A generated case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenCase {
    /// Users (2 or 3).
    pub users: u8,
    /// What the operator does when the continuous client exits.
    pub policy: Policy,
    /// Steps in order.
    pub steps: Vec<GenStep>,
}

/// What may be generated.
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Client modes of the one-shot runs (and whether the continuous client
    /// takes part: `mixed` only).
    pub mode: ExploreMode,
    /// Allow `lie`, `hide-missing` and `corrupt` (cases then fail, on purpose).
    pub allow_loss_faults: bool,
    /// Most steps a case has.
    pub steps_max: usize,
    /// Also rename folders.
    pub renames: bool,
}

fn fault_kind(allow_loss: bool) -> BoxedStrategy<FaultKind> {
    let survivable = prop_oneof![
        4 => Just(FaultKind::DropBefore),
        4 => Just(FaultKind::DropAfter),
        3 => (1..24u8).prop_map(FaultKind::PartialReply),
        3 => (20..300u16).prop_map(FaultKind::Delay),
        4 => (0..NO_CODES.len() as u8).prop_map(FaultKind::No),
        2 => Just(FaultKind::Bad),
        2 => Just(FaultKind::Bye),
        2 => (0..400u16).prop_map(FaultKind::Restart),
        // Each costs seconds of wall time (the client's sync_timeout, or
        // 3.6.1's 15 s before it connects again): rare.
        1 => Just(FaultKind::Stall),
        1 => (100..800u16).prop_map(FaultKind::RefuseConnections),
    ];
    if !allow_loss {
        return survivable.boxed();
    }
    let corrupt = crate::fault::Corruption::ROWS.len() as u8;
    // As likely as all the others together: the point is to find them.
    prop_oneof![
        1 => survivable,
        1 => prop_oneof![
            Just(FaultKind::Lie),
            Just(FaultKind::HideMissing),
            (0..corrupt).prop_map(FaultKind::Corrupt),
        ],
    ]
    .boxed()
}

fn change(renames: bool) -> BoxedStrategy<Change> {
    let u = 0..3u8;
    let f = 0..8u8;
    let uid = 1..10u8;
    let base = prop_oneof![
        8 => (u.clone(), f.clone(), 1..=5u8).prop_map(|(user, folder, count)| Change::Append { user, folder, count }),
        3 => (u.clone(), f.clone(), uid.clone(), 0..3u8, any::<bool>()).prop_map(|(user, folder, uid, flag, remove)| Change::Flag { user, folder, uid, flag, remove }),
        2 => (u.clone(), f.clone(), uid.clone()).prop_map(|(user, folder, uid)| Change::Seen { user, folder, uid }),
        2 => (u.clone(), f.clone(), uid.clone()).prop_map(|(user, folder, uid)| Change::Expunge { user, folder, uid }),
        2 => (u.clone(), f.clone(), uid.clone(), f.clone()).prop_map(|(user, folder, uid, to)| Change::Move { user, folder, uid, to }),
        2 => (u.clone(), 1..4u8, any::<bool>()).prop_map(|(user, n, subscribe)| Change::Create { user, n, subscribe }),
        1 => (u.clone(), f.clone()).prop_map(|(user, folder)| Change::Delete { user, folder }),
        1 => (u.clone(), f.clone(), any::<bool>()).prop_map(|(user, folder, on)| Change::Subscribe { user, folder, on }),
        1 => (u.clone(), f.clone(), any::<bool>(), proptest::option::of(0..3u8)).prop_map(|(user, folder, shared, value)| Change::Metadata { user, folder, shared, value }),
        1 => (u.clone(), f.clone(), uid, any::<bool>(), proptest::option::of(0..3u8)).prop_map(|(user, folder, uid, shared, value)| Change::Annotate { user, folder, uid, shared, value }),
        1 => (u.clone(), proptest::option::of(1000..50000u16), proptest::option::of(200..5000u16)).prop_map(|(user, storage, message)| Change::Quota { user, storage, message }),
        1 => (1..3u8).prop_map(|user| Change::DeleteUser { user }),
    ];
    // Only present when asked for: proptest shrinks a union towards its
    // earlier arms, so even a zero-weight arm would appear in shrunk cases.
    if renames {
        prop_oneof![
            24 => base,
            2 => (u, f, 1..4u8).prop_map(|(user, folder, n)| Change::Rename { user, folder, n }),
        ]
        .boxed()
    } else {
        base.boxed()
    }
}

fn sync_mode(mode: ExploreMode) -> BoxedStrategy<SyncMode> {
    let user = (0..8u8).prop_map(SyncMode::User);
    let mailbox = (0..8u8, proptest::option::of(0..8u8)).prop_map(|(a, b)| SyncMode::Mailbox(a, b));
    match mode {
        ExploreMode::Rolling => Just(SyncMode::RollingOnce).boxed(),
        ExploreMode::User => user.boxed(),
        ExploreMode::All => Just(SyncMode::All).boxed(),
        ExploreMode::Mailbox => mailbox.boxed(),
        ExploreMode::Mixed => prop_oneof![
            4 => Just(SyncMode::RollingOnce),
            3 => user,
            2 => Just(SyncMode::All),
            2 => mailbox,
        ]
        .boxed(),
    }
}

fn lock() -> impl Strategy<Value = GenStep> {
    let v = 0..VERBS.len() as u8;
    let target = prop_oneof![
        3 => any::<bool>().prop_map(|hold| LockTarget::User { hold }),
        2 => (0..8u8).prop_map(LockTarget::Mailbox),
        2 => v.clone().prop_map(LockTarget::Verb),
        1 => v.clone().prop_map(LockTarget::UserVerb),
    ];
    let open = prop_oneof![
        4 => Just(Open::Start),
        1 => (1..3u8).prop_map(Open::Mark),
        2 => (v.clone(), 1..3u8).prop_map(|(v, n)| Open::On(v, n)),
    ];
    let close = prop_oneof![
        2 => Just(Close::Never),
        5 => Just(Close::Manual),
        1 => (1..3u8).prop_map(Close::Mark),
        1 => (v, 1..3u8).prop_map(|(v, n)| Close::On(v, n)),
        2 => (100..1500u16).prop_map(Close::AfterMs),
        2 => (1..4u8).prop_map(Close::Attempts),
    ];
    (0..3u8, target, open, close).prop_map(|(user, target, open, close)| GenStep::Lock {
        user,
        target,
        open,
        close,
    })
}

fn trigger_action(allow_loss: bool) -> impl Strategy<Value = TriggerAction> {
    let u = 0..3u8;
    prop_oneof![
        4 => (u.clone(), 1..=3u8).prop_map(|(user, count)| TriggerAction::Append { user, count }),
        2 => (u.clone(), 1..10u8, 0..3u8).prop_map(|(user, uid, flag)| TriggerAction::Flag { user, uid, flag }),
        1 => (u.clone(), 1..10u8).prop_map(|(user, uid)| TriggerAction::Expunge { user, uid }),
        1 => (u, 1..3u8).prop_map(|(user, attempts)| TriggerAction::Lock { user, attempts }),
        1 => (fault_kind(allow_loss), 0..VERBS.len() as u8).prop_map(|(kind, verb)| TriggerAction::Fault { kind, verb }),
        1 => (1..3u8).prop_map(TriggerAction::Mark),
    ]
}

fn step(opts: &GenOptions) -> BoxedStrategy<GenStep> {
    let v = 0..VERBS.len() as u8;
    let u = proptest::option::of(0..3u8);
    let fault = (
        fault_kind(opts.allow_loss_faults),
        v.clone(),
        u.clone(),
        1..=3u8,
    )
        .prop_map(|(kind, verb, user, nth)| GenStep::Fault {
            kind,
            verb,
            user,
            nth,
        });
    let trigger = (
        v,
        u,
        1..=2u8,
        proptest::collection::vec(trigger_action(opts.allow_loss_faults), 1..=2),
    )
        .prop_map(|(verb, user, nth, then)| GenStep::Trigger {
            verb,
            user,
            nth,
            then,
        });
    let one_shot = prop_oneof![
        10 => change(opts.renames).prop_map(GenStep::Change),
        6 => sync_mode(opts.mode).prop_map(GenStep::Sync),
        3 => lock(),
        3 => (0..4u8).prop_map(GenStep::Unlock),
        1 => (1..3u8).prop_map(GenStep::Mark),
        3 => fault,
        1 => Just(GenStep::Clear),
        3 => trigger,
    ];
    if opts.mode != ExploreMode::Mixed {
        return one_shot.boxed();
    }
    prop_oneof![
        27 => one_shot,
        2 => Just(GenStep::Start),
        1 => Just(GenStep::Stop),
        1 => Just(GenStep::Kill),
        2 => (200..1500u16).prop_map(GenStep::Wait),
    ]
    .boxed()
}

/// The case strategy: 2-3 users, a policy, 1..=`steps_max` steps.
pub fn case_strategy(opts: &GenOptions) -> BoxedStrategy<GenCase> {
    let policy = prop_oneof![
        Just(Policy::None),
        Just(Policy::Restart),
        Just(Policy::RestartDiscardLog),
    ];
    (
        2..=3u8,
        policy,
        proptest::collection::vec(step(opts), 1..=opts.steps_max.max(1)),
    )
        .prop_map(|(users, policy, steps)| GenCase {
            users,
            policy,
            steps,
        })
        .boxed()
}

/// The random stream of case `index` of campaign `seed`: each case has its
/// own, so which worker runs it, and in which order, changes nothing.
pub fn case_rng(seed: Seed, index: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    let mut r = crate::rng::Rng::new(seed).fork(&format!("explore-case-{index}"));
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Case `index` of campaign `seed` as a value tree (for shrinking), or the
/// reason proptest gave none.
pub fn case_tree(
    seed: Seed,
    index: u64,
    gen: &GenOptions,
) -> Result<Box<dyn ValueTree<Value = GenCase>>, String> {
    let mut runner = TestRunner::new_with_rng(Config::default(), case_rng(seed, index));
    case_strategy(gen)
        .new_tree(&mut runner)
        .map(|t| Box::new(t) as Box<dyn ValueTree<Value = GenCase>>)
        .map_err(|e| format!("generating case {index}: {e}"))
}

/// Case `index` of campaign `seed`.
pub fn case(seed: Seed, index: u64, gen: &GenOptions) -> Result<GenCase, String> {
    case_tree(seed, index, gen).map(|t| t.current())
}

/// Cases `0..n` of campaign `seed` (nothing run).
pub fn generate(seed: Seed, gen: &GenOptions, n: u32) -> Vec<GenCase> {
    (0..u64::from(n))
        .filter_map(|i| case(seed, i, gen).ok())
        .collect()
}
