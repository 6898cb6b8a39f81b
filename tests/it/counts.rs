//! The run-wide count checks fail when their count is off: for each, a
//! bundled scenario with the behaviour that produces its count taken away
//! (or, for the queued changes, left in place), and the failed checks must be
//! exactly the ones that count names. So too the step checks of a trigger
//! never reached and of a run killed at its deadline. A check that never
//! failed proves nothing (an audit in December 2026 found these never had).

use std::path::Path;

use backupd_sim::harness::Target;
use backupd_sim::runner::{run_scenario, RunOptions, ScenarioReport, Verdict};
use backupd_sim::scenario::{Scenario, Step};

use crate::util::cyrus_bins;

fn load(rel: &str) -> Scenario {
    Scenario::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).expect("scenario")
}

fn failed(r: &ScenarioReport) -> Vec<&str> {
    r.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn each_count_check_fails_when_its_count_is_off() {
    let Some(bins) = cyrus_bins() else { return };
    let opts = RunOptions::new(bins, Target::Fake);

    // Case A without its lock: no LOCKED answer, no deferral.
    let mut a = load("scenarios/locks/a-rolling-once-defers.toml");
    a.steps
        .retain(|s| !matches!(s, Step::Lock(_) | Step::Unlock(_)));
    let r = run_scenario(&a, &opts);
    assert_eq!(r.verdict, Verdict::Fail, "{:#?}", r.failures());
    assert_eq!(
        failed(&r),
        ["deferrals", "lock hits"],
        "{:#?}",
        r.failures()
    );

    // Case A with its lock never closed and no catch-up: the two appends stay
    // in the channel log, and a file expecting none queued fails on that.
    let mut queued = load("scenarios/locks/a-rolling-once-defers.toml");
    queued.steps.retain(|s| !matches!(s, Step::Unlock(_)));
    queued.expect.converged = false;
    queued.expect.lost = Some(0);
    queued.expect.queued = Some(0);
    // Its third pass meets the lock too: not this check's business.
    queued.expect.lock_hits = None;
    let r = run_scenario(&queued, &opts);
    assert_eq!(failed(&r), ["queued changes"], "{:#?}", r.failures());
    let detail = &r.checks.iter().find(|c| c.name == "queued changes");
    assert!(
        detail.is_some_and(|c| c.detail == "expected 0, ledger says 2"),
        "{detail:?}"
    );

    // The restart policy's scenario without the fault that cut the
    // connection: nothing for the operator policy to restart.
    let mut calm = load("scenarios/operators/restart-keeps-log-run.toml");
    calm.steps.retain(|s| {
        !matches!(s, Step::Fault(_)) && !matches!(s, Step::WaitFor(w) if w.event == "fault")
    });
    let r = run_scenario(&calm, &opts);
    assert_eq!(failed(&r), ["restarts"], "{:#?}", r.failures());

    // Case C3 on the stock client: a known failure of exactly its two checks,
    // both of which fail (the storm is fast and many).
    let c3 = load("scenarios/locks/c3-continuous-bounded-rate.toml");
    let r = run_scenario(&c3, &opts);
    assert_eq!(r.verdict, Verdict::Xfail, "{:#?}", r.failures());
    assert_eq!(
        failed(&r),
        ["connections", "reconnect rate"],
        "{:#?}",
        r.failures()
    );
}

/// A required trigger no command reaches fails `step N: trigger`; a one-shot
/// run killed at its deadline (a stall, no `expect_exit`) fails
/// `step N: finished`.
#[test]
fn a_trigger_never_reached_and_a_run_killed_at_its_deadline_fail_their_step() {
    let Some(bins) = cyrus_bins() else { return };
    let opts = RunOptions::new(bins, Target::Fake);
    let parse = |text: &str| Scenario::parse(text, Path::new("step.toml")).expect("scenario");

    let trigger = parse(
        "description = \"d\"\n[[user]]\nname = \"tr\"\n\
         [[step]]\ntrigger = { when = { verb = \"APPLY SIEVE\" }, then = [{ mark = \"m\" }], timeout_ms = 300 }\n\
         [[step]]\nappend = { user = \"tr\" }\n\
         [[step]]\nsync = { mode = \"rolling-once\", expect_exit = 0 }\n",
    );
    let r = run_scenario(&trigger, &opts);
    assert_eq!(failed(&r), ["step 1: trigger"], "{:#?}", r.failures());

    let mut stalled = load("scenarios/faults/stall-past-sync-timeout.toml");
    // No read timeout: the client waits on the stalled reply until the
    // run's own deadline kills it.
    stalled.client.sync_timeout = None;
    stalled.client.timeout = 3;
    for s in stalled.steps.iter_mut() {
        if let Step::Sync(spec) = s {
            spec.expect_exit = None;
        }
    }
    let r = run_scenario(&stalled, &opts);
    assert!(
        failed(&r).contains(&"step 3: finished"),
        "{:#?}",
        r.failures()
    );
}
