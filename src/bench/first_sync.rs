//! Workload 1: the first `sync_client -u` of one user with many small messages
//! into an empty target, on every target in turn.

use std::collections::BTreeMap;
use std::time::Instant;

use super::fill::{bulk_append, sandbox, small_bodies, source};
use super::results::{record, target_series, WorkloadResult};
use super::targets::{timed_sync, Measure, Running};
use super::{log, BenchOptions, Result, SYNC_TIMEOUT};

pub(super) fn run(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let n = opts.sizes.w1_messages;
    log(
        opts,
        format!("workload 1: filling one user with {n} messages"),
    );
    let dir = sandbox(opts, "w1")?;
    let mut src = source(opts, dir.path())?;
    src.create_user("bench1")?;
    let t = Instant::now();
    bulk_append(
        src.imap_addr(),
        "bench1",
        "INBOX",
        &small_bodies("bench1", n),
    )?;
    let fill = t.elapsed().as_secs_f64();
    let mut runs: BTreeMap<&str, Vec<Measure>> = BTreeMap::new();
    let mut failures = Vec::new();
    for rep in 0..reps {
        for name in opts.targets() {
            let tdir = dir.path().join(format!("{name}-{rep}"));
            let target = Running::start(name, opts, &tdir)?;
            let m = timed_sync(&opts.bins, &src, &target, &["-u", "bench1"], SYNC_TIMEOUT);
            target.stop()?;
            let _ = std::fs::remove_dir_all(&tdir);
            record(opts, 1, name, rep, m, &mut runs, &mut failures);
        }
    }
    src.stop()?;
    let series = target_series(&runs);
    let mut notes = failures;
    Ok(WorkloadResult {
        id: 1,
        name: format!("first `sync_client -u` of one user with {n} small messages (empty target)"),
        skipped: None,
        series,
        notes: {
            notes.extend([
                format!("source filled with MULTIAPPEND in {fill:.1} s (not measured)"),
                "a fresh, empty target per run; targets interleaved per repetition".into(),
                "target_cpu: the fake's own process; backupd/sync_server: master and its service children".into(),
            ]);
            notes
        },
    })
}
