//! `backupd-sim demo`: one end-to-end replication, printing each fact verified.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use backupd_sim::cyrus::SyncRun;
use backupd_sim::harness::{Harness, HarnessOptions};
use backupd_sim::populate::{fill_user, more_changes};
use backupd_sim::rng::Rng;

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// Seed for the generated mail.
    #[arg(long, default_value = "1")]
    seed: backupd_sim::rng::Seed,
    /// Users to create.
    #[arg(long, default_value_t = 3)]
    users: usize,
    /// Messages per user.
    #[arg(long, default_value_t = 100)]
    messages: usize,
    /// Keep the sandbox directory afterwards.
    #[arg(long)]
    keep: bool,
}

fn step(what: &str) {
    println!("==> {what}");
}

fn ok(what: impl std::fmt::Display) {
    println!("    ok: {what}");
}

fn expect_exit(run: &SyncRun, code: i32) -> Result<()> {
    if run.status != Some(code) {
        bail!("sync_client did not exit {code}:\n{run}");
    }
    ok(format!(
        "`{}` exited {code} in {:.2} s",
        run.argv.join(" "),
        run.elapsed.as_secs_f64()
    ));
    Ok(())
}

fn expect_converged(h: &Harness, users: &[&str]) -> Result<()> {
    let c = h.compare(users)?;
    if !c.converged() {
        bail!("{c}");
    }
    let bodies = h.verify_bodies();
    if !bodies.is_empty() {
        bail!("message bodies:\n  {}", bodies.join("\n  "));
    }
    let state = h.backup_state();
    let (mailboxes, messages): (usize, usize) = state.users.values().fold((0, 0), |(a, b), u| {
        (
            a + u.mailboxes.len(),
            b + u
                .mailboxes
                .values()
                .map(|m| m.messages.len())
                .sum::<usize>(),
        )
    });
    ok(format!(
        "converged: the backup equals the source for {} user(s), {mailboxes} mailboxes, {messages} live messages (UIDs, GUIDs, flags, dates, sizes, subscriptions); every body stored and hashing to its GUID",
        users.len()
    ));
    Ok(())
}

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let bins = args.cyrus.single()?;
    let mut opts = HarnessOptions::new(bins);
    opts.keep = args.keep;
    step("starting the fake backupd and a real Cyrus source instance");
    let h = Harness::start(opts).context("starting the harness")?;
    ok(format!(
        "fake backupd on {}, source imapd on {}",
        h.fake_addr(),
        h.source().imap_addr()
    ));
    println!(
        "    sandbox: {}{}",
        h.sandbox().display(),
        if args.keep { " (kept)" } else { "" }
    );
    let result = scenario(&h, args);
    if let Err(e) = &result {
        println!("FAILED: {e:#}");
        println!(
            "replay: backupd-sim demo --seed {} --users {} --messages {} --keep",
            args.seed, args.users, args.messages
        );
        println!("fake transcript (last 40 lines):");
        let t = h.transcript();
        let lines: Vec<&str> = t.lines().collect();
        for l in &lines[lines.len().saturating_sub(40)..] {
            println!("    {l}");
        }
        return Ok(ExitCode::from(1));
    }
    println!(
        "PASSED in {:.1} s (seed {})",
        started.elapsed().as_secs_f64(),
        args.seed
    );
    Ok(ExitCode::SUCCESS)
}

fn scenario(h: &Harness, args: &DemoArgs) -> Result<()> {
    let names: Vec<String> = (0..args.users).map(|i| format!("user{}", i + 1)).collect();
    let users: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut rng = Rng::new(args.seed).fork("populate");

    step(&format!(
        "filling {} users with {} messages each over IMAP",
        users.len(),
        args.messages
    ));
    for u in &users {
        let s = fill_user(h.source(), u, args.messages, &mut rng)?;
        ok(format!(
            "{u}: {} folders, {} appended, {} expunged, a rename, a delete, subscriptions",
            s.folders, s.appended, s.expunged
        ));
    }

    step("sync_client -u (all users) into the fake");
    let mut argv = vec!["-u"];
    argv.extend(&users);
    expect_exit(&h.sync(&argv)?, 0)?;
    expect_converged(h, &users)?;
    let uploads = h.count("APPLY MESSAGE");
    ok(format!(
        "{uploads} APPLY MESSAGE, {} APPLY MAILBOX",
        h.count("APPLY MAILBOX")
    ));

    step("sync_client -u again: nothing to send");
    let mailboxes = h.count("APPLY MAILBOX");
    expect_exit(&h.sync(&argv)?, 0)?;
    if h.count("APPLY MESSAGE") != uploads || h.count("APPLY MAILBOX") != mailboxes {
        bail!("the second run sent APPLY commands again");
    }
    ok("no APPLY MESSAGE or APPLY MAILBOX sent");

    step(&format!(
        "more changes on {}, then one rolling pass: sync_client -R -1",
        users[0]
    ));
    more_changes(h.source(), users[0], &mut rng)?;
    expect_exit(&h.sync(&["-R", "-1"])?, 0)?;
    expect_converged(h, &users)?;
    if h.source().sync_log_path("backup").exists()
        || h.source().sync_log_run_path("backup").exists()
    {
        bail!("the channel log was not drained");
    }
    ok("channel log drained (no log, no log-run)");
    Ok(())
}
