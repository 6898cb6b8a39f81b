//! Golden transcripts (issue 10): the key flows (first sync, incremental,
//! rename, delete, locked user; `fixtures/golden/*.toml`) run against the real
//! backupd 3.6.1, their normalized transcripts kept as insta snapshots in
//! `fixtures/golden/*.snap`; the fake's transcripts of the same flows must equal
//! them.
//!
//! Both tests assert on the same snapshot files, so they cannot both pass
//! unless the real backupd and the fake say the same things; the real side
//! also proves the files still describe the installed backupd. To recapture
//! after a deliberate change: `INSTA_UPDATE=always cargo test --test it
//! golden::real` (then review the diff), never from the fake's side.

use std::path::Path;

use backupd_sim::cyrus::TargetKind;
use backupd_sim::harness::Target;
use backupd_sim::runner::compare::comparable_transcript;
use backupd_sim::runner::{run_scenario, RunOptions, Verdict};
use backupd_sim::scenario::Scenario;

use crate::util::cyrus_bins;

const FLOWS: [&str; 5] = [
    "first-sync",
    "incremental",
    "rename",
    "delete",
    "locked-user",
];

/// The flow's normalized transcript on `target`; panics unless it passed.
fn transcript(flow: &str, target: Target) -> Option<String> {
    let bins = cyrus_bins()?;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(&root.join(format!("fixtures/golden/{flow}.toml"))).expect("flow");
    let opts = RunOptions {
        report_dir: Some(dir.path().to_owned()),
        ..RunOptions::new(bins, target)
    };
    let r = run_scenario(&s, &opts);
    assert_eq!(
        r.verdict,
        Verdict::Pass,
        "{flow} on {}: {:#?}",
        r.target,
        r.failures()
    );
    let text = std::fs::read_to_string(dir.path().join(&s.name).join("transcript.txt"))
        .expect("transcript");
    Some(comparable_transcript(&text))
}

fn assert_golden(flow: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => "../../fixtures/golden",
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(flow, text);
    });
}

#[test]
fn real_backupd_transcripts_match_the_golden_files() {
    for flow in FLOWS {
        let Some(t) = transcript(flow, Target::Real(TargetKind::Backupd)) else {
            return;
        };
        assert_golden(flow, &t);
    }
}

#[test]
fn the_fakes_transcripts_match_the_real_backupds() {
    for flow in FLOWS {
        let Some(t) = transcript(flow, Target::Fake) else {
            return;
        };
        assert_golden(flow, &t);
    }
}
