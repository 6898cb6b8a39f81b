//! Workload 2: a rolling `-R -1` pass after many changes over a few users,
//! on every target in turn.

use std::collections::BTreeMap;

use super::fill::{bulk_append, sandbox, small_bodies, source};
use super::results::{record, target_series, WorkloadResult};
use super::targets::{timed_sync, Measure, Running};
use super::{chain, log, BenchOptions, Result, PASS_TIMEOUT, SYNC_TIMEOUT};

pub(super) fn run(opts: &BenchOptions, reps: usize) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    log(
        opts,
        format!(
            "workload 2: {} users x {} messages, then {} changes",
            sz.w2_users, sz.w2_base, sz.w2_changes
        ),
    );
    let dir = sandbox(opts, "w2")?;
    let mut src = source(opts, dir.path())?;
    let users: Vec<String> = (0..sz.w2_users).map(|i| format!("roll{i}")).collect();
    for u in &users {
        src.create_user(u)?;
        bulk_append(src.imap_addr(), u, "INBOX", &small_bodies(u, sz.w2_base))?;
    }
    let per_user = sz.w2_changes / sz.w2_users.max(1);
    let appends = per_user / 2;
    let flags = per_user - appends;
    let mut runs: BTreeMap<&str, Vec<Measure>> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut round = 0usize;
    for rep in 0..reps {
        for name in opts.targets() {
            let tdir = dir.path().join(format!("{name}-{rep}"));
            let target = Running::start(name, opts, &tdir)?;
            let mut args = vec!["-u"];
            args.extend(users.iter().map(String::as_str));
            if let Err(e) = timed_sync(&opts.bins, &src, &target, &args, SYNC_TIMEOUT) {
                failures.push(format!(
                    "FAILED {name} rep {}: initial -u: {}",
                    rep + 1,
                    chain(&e)
                ));
                target.stop()?;
                continue;
            }
            for f in ["log", "log-run"] {
                let _ = std::fs::remove_file(src.root().join("conf/sync/backup").join(f));
            }
            round += 1;
            for u in &users {
                let tag = format!("{u}-r{round}");
                bulk_append(src.imap_addr(), u, "INBOX", &small_bodies(&tag, appends))?;
                let mut c = src.login_as(u)?;
                c.select("INBOX")?;
                // `flags` distinct messages get a new keyword (one change each).
                c.uid_store(
                    &format!("1:{flags}"),
                    "+FLAGS",
                    &[format!("$Round{round}").as_str()],
                )?;
                c.logout()?;
            }
            let m = timed_sync(&opts.bins, &src, &target, &["-R", "-1"], PASS_TIMEOUT);
            target.stop()?;
            let _ = std::fs::remove_dir_all(&tdir);
            record(opts, 2, name, rep, m, &mut runs, &mut failures);
        }
    }
    src.stop()?;
    let series = target_series(&runs);
    let mut notes = failures;
    Ok(WorkloadResult {
        id: 2,
        name: format!(
            "rolling `-R -1` pass after {} changes over {} users ({appends} appends + {flags} flag changes each)",
            per_user * sz.w2_users,
            sz.w2_users
        ),
        skipped: None,
        series,
        notes: {
            notes.extend([
                "each run: fresh target, untimed `-u` of every user, channel log cleared, changes, timed `-R -1`".to_string(),
                "the floor answers every GET empty and stores nothing, so its pass does different work: \
                 compare fake, backupd and sync_server with each other".into(),
            ]);
            notes
        },
    })
}
