//! Workload 5: the fake's peak RSS (VmHWM) after receiving many messages.

use std::time::Instant;

use super::fill::{bulk_append, sandbox, small_bodies, source};
use super::results::{Series, WorkloadResult};
use super::targets::{timed_sync, Running};
use super::{failed, log, BenchOptions, Result, SYNC_TIMEOUT};
use crate::cyrus::procfs::status_kib;

pub(super) fn run(opts: &BenchOptions) -> Result<WorkloadResult> {
    let sz = opts.sizes;
    let total = sz.w5_users * sz.w5_per_user;
    log(
        opts,
        format!(
            "workload 5: {} users x {} messages into the fake",
            sz.w5_users, sz.w5_per_user
        ),
    );
    let dir = sandbox(opts, "w5")?;
    let mut src = source(opts, dir.path())?;
    let users: Vec<String> = (0..sz.w5_users).map(|i| format!("big{i}")).collect();
    let t = Instant::now();
    for u in &users {
        src.create_user(u)?;
        bulk_append(
            src.imap_addr(),
            u,
            "INBOX",
            &small_bodies(u, sz.w5_per_user),
        )?;
    }
    let fill = t.elapsed().as_secs_f64();
    let fake = Running::start("fake", opts, &dir.path().join("fake"))?;
    let Running::Fake(child) = &fake else {
        unreachable!()
    };
    let pid = child.pid();
    let rss_idle = status_kib(pid, "VmHWM").unwrap_or(0);
    let mut args = vec!["-u"];
    args.extend(users.iter().map(String::as_str));
    let m = timed_sync(&opts.bins, &src, &fake, &args, SYNC_TIMEOUT)?;
    let hwm = status_kib(pid, "VmHWM").ok_or_else(|| failed("no VmHWM for the fake"))?;
    let rss = status_kib(pid, "VmRSS").unwrap_or(0);
    fake.stop()?;
    src.stop()?;
    let bytes: usize = users
        .iter()
        .map(|u| {
            small_bodies(u, sz.w5_per_user)
                .iter()
                .map(Vec::len)
                .sum::<usize>()
        })
        .sum();
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(WorkloadResult {
        id: 5,
        name: format!("the fake's peak RSS holding {total} messages"),
        skipped: None,
        series: vec![
            Series::new("fake", "peak_rss", "MiB", vec![mib(hwm)]),
            Series::new("fake", "rss_at_end", "MiB", vec![mib(rss)]),
            Series::new("fake", "peak_rss_idle", "MiB", vec![mib(rss_idle)]),
            Series::new("fake", "upload_wall", "s", vec![m.wall]),
            Series::new("fake", "upload_client_cpu", "s", vec![m.client_cpu]),
            Series::new("fake", "upload_fake_cpu", "s", m.target_cpu.into_iter().collect()),
        ],
        notes: vec![
            format!(
                "{} users x {} messages ({:.1} MiB of bodies), one `-u` run of all users, one repetition; fill took {fill:.1} s",
                sz.w5_users,
                sz.w5_per_user,
                bytes as f64 / 1048576.0
            ),
            "VmHWM of the `backupd-sim serve` child (bodies go to its temporary on-disk body store)".into(),
        ],
    })
}
