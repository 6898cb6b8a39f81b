//! Channel-log entries that backupd cannot serve halt a rolling client's
//! replication (docs/findings/halted-rolling-replication.md): a `QUOTA` entry
//! whose root is gone, and a server annotation. The pass bails out, `log-run`
//! is replayed for ever, and every later change waits in `log`. Shown with the
//! real sync_client against the fake and the real backupd; a replica (the fake
//! as sync_server) converges.

use std::path::Path;

use backupd_sim::cyrus::TargetKind;
use backupd_sim::explore::known;
use backupd_sim::harness::Target;
use backupd_sim::runner::{run_scenario, ScenarioReport, Verdict};
use backupd_sim::scenario::ledger::{Change, Class};
use backupd_sim::scenario::{Scenario, Step};

use crate::util::run_options;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn show(r: &ScenarioReport) -> String {
    format!(
        "{} {} on {}: {:?}\nstats: {:?}\nchecks: {:#?}\nledger: {:?}",
        r.verdict, r.name, r.target, r.error, r.stats, r.checks, r.ledger
    )
}

const HALTING: [&str; 2] = [
    "scenarios/operators/quota-entry-halts-backup.toml",
    "scenarios/operators/server-annotation-halts-backup.toml",
];

/// `server_metadata` parses to its step; an entry outside /private/ and
/// /shared/ is refused with the file and line.
#[test]
fn server_metadata_parses_and_a_bad_entry_is_refused() {
    let head = "description = \"d\"\n[[user]]\nname = \"u\"\n";
    let s = Scenario::parse(
        &format!(
            "{head}[[step]]\nserver_metadata = {{ entry = \"/shared/comment\", value = \"x\" }}\n"
        ),
        Path::new("s.toml"),
    )
    .expect("parses");
    match &s.steps[0] {
        Step::ServerMetadata(m) => {
            assert_eq!(
                (m.entry.as_str(), m.value.as_deref()),
                ("/shared/comment", Some("x"))
            )
        }
        other => panic!("{other:?}"),
    }
    let err = Scenario::parse(
        &format!("{head}[[step]]\nserver_metadata = {{ entry = \"comment\" }}\n"),
        Path::new("s.toml"),
    )
    .expect_err("a bad entry")
    .to_string();
    assert!(
        err.starts_with("s.toml:4:") && err.contains("must start with /private/ or /shared/"),
        "{err}"
    );
}

/// Against backupd, the fake and the real one, each scenario is its known
/// failure, and for exactly the reason it names: every difference is rhea's
/// mailbox, and the message appended after the entry is missing from the
/// backup and still queued in the channel log, after the catch-up's three
/// passes; on the fake the report names the refused command, and explore
/// would count the case as the known halt. Against the fake as sync_server
/// the same file passes.
#[test]
fn a_quota_or_server_annotation_entry_halts_rolling_replication_to_backupd() {
    let scratch = tempfile::tempdir().expect("tempdir");
    for rel in HALTING {
        let scenario = Scenario::load(&root().join(rel)).expect("scenario");
        for target in [Target::Fake, Target::Real(TargetKind::Backupd)] {
            let on_fake = matches!(target, Target::Fake);
            let Some(opts) = run_options(target, scratch.path()) else {
                return;
            };
            let r = run_scenario(&scenario, &opts);
            assert_eq!(r.verdict, Verdict::Xfail, "{}", show(&r));
            let converged = r
                .checks
                .iter()
                .find(|c| c.name == "converged")
                .unwrap_or_else(|| panic!("no convergence check: {}", show(&r)));
            assert!(!converged.ok, "{}", show(&r));
            let differences: Vec<&str> = converged
                .detail
                .lines()
                .filter(|l| l.starts_with("  - "))
                .collect();
            assert!(
                !differences.is_empty()
                    && differences
                        .iter()
                        .all(|l| l.contains("user rhea, mailbox user.rhea")),
                "{}",
                show(&r)
            );
            assert!(
                differences.iter().any(|l| l.contains(": lost: message")),
                "{}",
                show(&r)
            );
            assert!(
                r.ledger.iter().any(|e| e.class == Class::Queued
                    && matches!(&e.entry.change, Change::Append { user, .. } if user == "rhea")),
                "{}",
                show(&r)
            );
            // On the fake the report names the refusal, and explore counts
            // such a case as this known halt, not as a new failure.
            if on_fake {
                let halting = if rel.contains("quota") {
                    "APPLY UNQUOTA: NO "
                } else {
                    "GET ANNOTATION: NO "
                };
                assert!(
                    r.stats.refused.iter().any(|x| x.starts_with(halting)),
                    "{}",
                    show(&r)
                );
                assert_eq!(
                    known::explain(&scenario, &r),
                    Some(known::HALTED_ROLLING_REPLICATION),
                    "{}",
                    show(&r)
                );
            }
        }
        let Some(opts) = run_options(Target::FakeSyncServer, scratch.path()) else {
            return;
        };
        let r = run_scenario(&scenario, &opts);
        assert_eq!(r.verdict, Verdict::Pass, "{}", show(&r));
        assert!(r.stats.connections <= 3, "{}", show(&r));
    }
}

/// The sweep of docs/findings/halted-rolling-replication.md as a test, with
/// no fixed wait: for each kind `cyr_synclog` can queue, the entry (for quin's
/// `INBOX.Sent`) is read by one `sync_client -R -1` pass, a message is then
/// appended for rhea, and a second pass runs. Only `quota` (quin has no
/// quota root) and `annotation` (a mailbox annotation) halt: the second pass
/// replays `log-run` and never reaches rhea's append, which stays queued. The
/// seven other kinds converge. On the fake and on real backupd alike; the two
/// halting kinds are also what makes this test able to fail.
#[test]
fn of_the_nine_synclog_kinds_only_quota_and_annotation_halt_backupd() {
    use backupd_sim::scenario::SYNCLOG_KINDS;
    let scratch = tempfile::tempdir().expect("tempdir");
    for target in [Target::Fake, Target::Real(TargetKind::Backupd)] {
        let on_fake = matches!(target, Target::Fake);
        let Some(opts) = run_options(target, scratch.path()) else {
            return;
        };
        for (kind, _, _) in SYNCLOG_KINDS {
            let text = format!(
                "description = \"a {kind} entry, then rhea's append\"\n\
                 [[user]]\nname = \"quin\"\n[[user]]\nname = \"rhea\"\n\
                 [[step]]\nsynclog = {{ kind = \"{kind}\", user = \"quin\", folder = \"INBOX.Sent\" }}\n\
                 [[step]]\nsync = {{ mode = \"rolling-once\" }}\n\
                 [[step]]\nappend = {{ user = \"rhea\", count = 1 }}\n\
                 [[step]]\nsync = {{ mode = \"rolling-once\" }}\n\
                 [expect]\nconverged = true\n"
            );
            let scenario =
                Scenario::parse(&text, Path::new(&format!("sweep-{kind}.toml"))).expect("scenario");
            let r = run_scenario(&scenario, &opts);
            let halts = matches!(kind, "quota" | "annotation");
            if !halts {
                assert_eq!(r.verdict, Verdict::Pass, "{kind}: {}", show(&r));
                continue;
            }
            assert_eq!(r.verdict, Verdict::Fail, "{kind}: {}", show(&r));
            // The halt leaves the backup short of the source: convergence is
            // what fails.
            assert!(
                r.checks.iter().any(|c| c.name == "converged" && !c.ok),
                "{kind}: {}",
                show(&r)
            );
            assert!(
                r.ledger.iter().any(|e| e.class == Class::Queued
                    && matches!(&e.entry.change, Change::Append { user, .. } if user == "rhea")),
                "{kind}: {}",
                show(&r)
            );
            if on_fake {
                let refused = if kind == "quota" {
                    "APPLY UNQUOTA: NO "
                } else {
                    "GET ANNOTATION: NO "
                };
                assert!(
                    r.stats.refused.iter().any(|x| x.starts_with(refused)),
                    "{kind}: {}",
                    show(&r)
                );
                // What the real client's halt refuses, and leaves different,
                // is all explore's classifier excuses.
                assert_eq!(
                    known::explain(&scenario, &r),
                    Some(known::HALTED_ROLLING_REPLICATION),
                    "{kind}: {}",
                    show(&r)
                );
            }
        }
    }
}
