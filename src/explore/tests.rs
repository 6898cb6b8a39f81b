//! The generator and renderer without Cyrus: determinism, validity, and what
//! a 500-case dry run reaches.

use std::path::Path;

use super::coverage::{features, Coverage, LOSS, REQUIRED};
use super::gen::{case, Change, FaultKind, GenCase, GenStep, Policy, SyncMode, TriggerAction};
use super::*;

fn opts(loss: bool) -> GenOptions {
    GenOptions {
        mode: ExploreMode::Mixed,
        allow_loss_faults: loss,
        steps_max: 8,
        renames: true,
    }
}

fn parse(c: &GenCase, prefix: &str) -> Scenario {
    let text = c.to_toml(prefix, "header");
    Scenario::parse(&text, Path::new("gen.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Case `i` of a seed does not depend on which cases were drawn before it,
/// nor on the order: workers (`-j`) and shards take cases in any order.
#[test]
fn a_case_depends_only_on_its_seed_and_index() {
    let g = opts(false);
    let forward: Vec<GenCase> = (0..40).map(|i| case(Seed(3), i, &g).expect("case")).collect();
    let backward: Vec<GenCase> = (0..40)
        .rev()
        .map(|i| case(Seed(3), i, &g).expect("case"))
        .collect();
    let mut backward = backward;
    backward.reverse();
    assert_eq!(forward, backward);
    assert_eq!(forward, generate(Seed(3), &g, 40));
    assert_ne!(forward, generate(Seed(4), &g, 40));
    // Odd and even shards together are the whole campaign.
    let odd: Vec<GenCase> = (0..40).step_by(2).map(|i| case(Seed(3), i, &g).expect("case")).collect();
    assert_eq!(odd[3], forward[6]);
}

#[test]
fn every_generated_case_is_a_valid_scenario() {
    for loss in [false, true] {
        for (i, c) in generate(Seed(11), &opts(loss), 300).iter().enumerate() {
            let s = parse(c, &format!("c{i}"));
            assert!(!s.steps.is_empty(), "case {i} has no step");
        }
    }
}

/// The acceptance's count: a 500-case dry run draws every step kind, client
/// mode (`-m`, the continuous client under each operator policy), lock kind
/// and window kind, fault action, MOVE, seen and metadata changes, user
/// deletion, appends larger than the batch size, and two clients at once;
/// the loss faults too when they are allowed.
#[test]
fn a_500_case_dry_run_reaches_the_whole_vocabulary() {
    for loss in [false, true] {
        let mut cov = Coverage::default();
        for (i, c) in generate(Seed(1), &opts(loss), 500).iter().enumerate() {
            cov.add_generated(&parse(c, &format!("c{i}")));
        }
        assert_eq!(cov.missing(loss), Vec::<&str>::new(), "loss faults: {loss}");
        for f in REQUIRED {
            assert!(cov.generated[*f] >= 2, "{f} drawn {} time(s)", cov.generated[*f]);
        }
        let has_loss = LOSS.iter().any(|f| cov.generated.contains_key(*f));
        assert_eq!(has_loss, loss, "loss faults only when allowed");
    }
}

/// The renderer's model keeps every step valid where it stands: a folder
/// renamed away is not appended to under its old name, a deleted user gets
/// no more changes, a stop needs a running client, an unlock a lock.
#[test]
fn steps_follow_the_model_of_the_source() {
    let c = GenCase {
        users: 2,
        policy: Policy::None,
        steps: vec![
            GenStep::Change(Change::Rename { user: 0, folder: 1, n: 2 }),
            GenStep::Change(Change::Append { user: 0, folder: 3, count: 4 }),
            GenStep::Change(Change::DeleteUser { user: 0 }),
            GenStep::Change(Change::Append { user: 1, folder: 0, count: 1 }),
            GenStep::Stop,
            GenStep::Unlock(0),
            GenStep::Start,
            GenStep::Kill,
            GenStep::Sync(SyncMode::Mailbox(3, Some(1))),
        ],
    };
    let text = c.to_toml("p", "");
    // Leaves of the initial layout: Sent, Work.Projects, Archive2025; the
    // second (Work.Projects) is renamed, and keeps its place (the fourth
    // folder) for the append and the -m after it.
    assert!(text.contains(r#"rename = { user = "pu0", from = "INBOX.Work.Projects", to = "INBOX.R2" }"#), "{text}");
    assert!(text.contains(r#"append = { user = "pu0", folder = "INBOX.R2", count = 4 }"#), "{text}");
    // DeleteUser never takes user 0: it deletes pu1, whose append is left out.
    assert!(text.contains(r#"delete_user = "pu1""#), "{text}");
    assert!(!text.contains(r#"append = { user = "pu1""#), "{text}");
    assert!(!text.contains("stop = true") && !text.contains("unlock ="), "{text}");
    // No policy: the killed client is waited for, seen gone.
    assert!(text.contains("kill = true\n[[step]]\nwait_for = { event = \"client-exit\""), "{text}");
    // -m of a deleted user's mailbox is left out.
    assert!(text.contains(r#"mailboxes = ["user.pu0.R2"]"#), "{text}");
    parse(&c, "p");
}

/// A lock's kind is in its name, for the coverage of what fired.
#[test]
fn features_are_read_back_from_the_scenario() {
    let c = GenCase {
        users: 2,
        policy: Policy::RestartDiscardLog,
        steps: vec![
            GenStep::Start,
            GenStep::Sync(SyncMode::User(1)),
            GenStep::Trigger {
                verb: 0,
                user: None,
                nth: 1,
                then: vec![TriggerAction::Fault { kind: FaultKind::Stall, verb: 1 }],
            },
            GenStep::Change(Change::Append { user: 0, folder: 0, count: 5 }),
        ],
    };
    let f = features(&parse(&c, "q"));
    for want in [
        "step:start",
        "mode:user",
        "two-clients",
        "trigger:fault",
        "step:trigger",
        "append-over-batchsize",
        "policy:restart-discard-log",
        "mode:continuous",
    ] {
        assert!(f.contains(want), "{want} missing from {f:?}");
    }
    // The watcher that discards log-run is followed by a full -u.
    assert!(c.to_toml("q", "").trim_end().ends_with("lost = 0"));
    assert!(c.to_toml("q", "").contains("[[step]]\nsync = { mode = \"user\" }\n\n[expect]"));
}

/// What fired is attributed to the client mode whose connection it was on.
#[test]
fn coverage_attributes_fires_to_the_client_mode() {
    use crate::events::{Event, EventKind};
    use crate::timeline::{Annotation, AnnotationKind};
    let ev = |seq, t_us, session, kind| Event {
        seq,
        t_us,
        session,
        kind,
    };
    let events = vec![
        ev(1, 10, 1, EventKind::Connected { peer: "p".into() }),
        ev(2, 11, 1, EventKind::Command {
            verb: "APPLY MAILBOX".into(),
            users: vec![],
            mailboxes: vec![],
            bytes: 1,
            text: String::new(),
        }),
        ev(3, 12, 1, EventKind::Fault { rule: "F1".into(), action: "drop-after".into() }),
        ev(4, 30, 2, EventKind::Connected { peer: "p".into() }),
        ev(5, 31, 2, EventKind::Command {
            verb: "GET USER".into(),
            users: vec![],
            mailboxes: vec![],
            bytes: 1,
            text: String::new(),
        }),
        ev(6, 32, 2, EventKind::LockHit { lock: "L1-user-hold".into() }),
    ];
    let notes = vec![
        Annotation::new(5, AnnotationKind::ClientStart, "sync_client -v -v -u a b"),
        Annotation::new(20, AnnotationKind::ClientExit { status: Some(0) }, "sync_client exited 0"),
    ];
    let mut cov = Coverage::default();
    let new = cov.add_run(&events, &notes);
    assert_eq!(
        new,
        vec![
            "fault:drop-after|-u|APPLY MAILBOX".to_owned(),
            "lock:user-hold|catch-up|GET USER".to_owned()
        ]
    );
    assert!(cov.add_run(&events, &notes).is_empty(), "nothing new the second time");
    assert!(cov.summary(false).contains("| fault:drop-after | · | 1 |"));
}
