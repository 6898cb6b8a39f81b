//! `backupd-sim explore`: property-based convergence testing with the real
//! sync_client; failures shrunk to scenario files with a Markdown report.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use backupd_sim::explore::{ExploreMode, ExploreOptions, GenOptions, Installation, Outcome};

#[derive(Args)]
pub struct ExploreArgs {
    /// Cases to run (the whole campaign's, across shards); with --minutes,
    /// whichever ends first. Default 50 when --minutes is not given.
    #[arg(long)]
    cases: Option<u64>,
    /// Start no case after this many minutes (fractions allowed).
    #[arg(long)]
    minutes: Option<f64>,
    /// Run only case I of the seed (as a finding's report says).
    #[arg(long, value_name = "I", conflicts_with_all = ["cases", "minutes", "shard"])]
    case: Option<u64>,
    /// Seed (default: drawn now and printed).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    /// Workers: cases run at once, each worker with its own harness (source
    /// instance and fake) per Cyrus version. Which cases a seed gives does
    /// not depend on it.
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// Run shard K of N of the campaign: the cases I with I % N == K - 1,
    /// so that N machines share a campaign (merge their --json with --merge).
    #[arg(long, value_name = "K/N")]
    shard: Option<backupd_sim::runner::suite::Shard>,
    /// Client modes of the one-shot runs: rolling, user, all, mailbox or
    /// mixed (mixed also runs the continuous client under each operator policy).
    #[arg(long, default_value = "mixed",
          value_parser = super::names::<ExploreMode>(&["rolling", "user", "all", "mailbox", "mixed"]))]
    mode: ExploreMode,
    /// Most steps per case.
    #[arg(long, default_value_t = 8)]
    steps_max: usize,
    /// Let `lie`, `hide-missing` and `corrupt` into the generated faults
    /// (cases then fail on purpose: proves the checks find loss).
    #[arg(long)]
    allow_loss_faults: bool,
    /// Leave folder renames out of the generated changes (they are drawn by
    /// default, as every other change kind).
    #[arg(long)]
    no_renames: bool,
    /// Renames are drawn by default now; kept so that older command lines
    /// still run.
    #[arg(long, hide = true, conflicts_with = "no_renames")]
    renames: bool,
    /// Removed: its only property, stale-subscriptions, was a false finding
    /// (refused with the reason).
    #[arg(long, value_name = "NAME", hide = true)]
    off: Vec<String>,
    /// Where findings go: the shrunk scenario (.toml), its report (.md), the timeline (.svg).
    #[arg(long, default_value = "scenarios/regressions")]
    out: PathBuf,
    /// The corpus of interesting cases, replayed first and added to.
    #[arg(long, value_name = "DIR", default_value = "explore-corpus")]
    corpus: PathBuf,
    /// Neither replay nor add to a corpus.
    #[arg(long)]
    no_corpus: bool,
    /// Most runs spent shrinking one failure.
    #[arg(long, default_value_t = 40)]
    shrink_runs: usize,
    /// Do not run findings against a real backupd and sync_server.
    #[arg(long)]
    no_compare: bool,
    /// Cases whose users are set up together (one client run for all).
    #[arg(long, default_value_t = backupd_sim::explore::DEFAULT_BATCH)]
    batch: usize,
    /// Where sandboxes go (default: /dev/shm when it has room, else the
    /// system temp dir). A chroot installation (3.10, 3.12) uses its own
    /// tmp/ unless DIR is below its root.
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Write the campaign's outcome (timing, coverage, failures, findings) as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Merge these campaign JSON files (shards) and print their summary; run nothing.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    merge: Vec<PathBuf>,
    /// Only write the generated cases as scenario files into DIR; run nothing.
    #[arg(long, value_name = "DIR")]
    dry_run: Option<PathBuf>,
    /// Cyrus installation(s): `--cyrus` is repeatable (3.6, 3.10, 3.12, `all`,
    /// a chroot root, an installed tree, a directory of executables); case I
    /// runs on the (I mod count)th.
    #[command(flatten)]
    cyrus: super::CyrusSelect,
    /// Removed with proptest's own runner (the corpus replaces it); accepted and ignored.
    #[arg(long, hide = true)]
    regressions: Option<PathBuf>,
}

pub fn run(args: ExploreArgs) -> Result<ExitCode> {
    use backupd_sim::explore::{gen, render_case, Coverage};
    if let Some(name) = args.off.first() {
        eprintln!(
            "backupd-sim: --off `{name}`: --off was removed: its only property, \
             `stale-subscriptions`, was a false finding (the source's subscriptions were read \
             through LSUB, which hides those to renamed and deleted folders that Cyrus keeps; \
             both sides are read raw now and agree: docs/findings/subscriptions.md)"
        );
        return Ok(ExitCode::from(2));
    }
    if !args.merge.is_empty() {
        let mut all = Outcome::default();
        for f in &args.merge {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("reading `{}`", f.display()))?;
            let o: Outcome = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not an explore --json file", f.display()))?;
            all.merge(&o);
        }
        print_summary(&all, args.allow_loss_faults);
        return Ok(if all.failing.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let seed = args.seed.unwrap_or_else(backupd_sim::rng::Seed::from_clock);
    let gen = GenOptions {
        mode: args.mode,
        allow_loss_faults: args.allow_loss_faults,
        steps_max: args.steps_max,
        renames: !args.no_renames,
    };
    let cases = match (args.cases, args.minutes, args.case) {
        (_, _, Some(i)) => Some(i + 1),
        (None, None, None) => Some(50),
        (c, _, None) => c,
    };
    if let Some(dir) = &args.dry_run {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let n = cases.unwrap_or(50);
        let mut coverage = Coverage::default();
        for i in args.case.unwrap_or(0)..n {
            let case = gen::case(seed, i, &gen).map_err(anyhow::Error::msg)?;
            let header = format!("explore --seed {seed}, case {i}");
            let s = render_case(&case, &format!("c{i}"), &header).map_err(anyhow::Error::msg)?;
            coverage.add_generated(&s);
            let path = dir.join(format!("case-{i:04}.toml"));
            std::fs::write(&path, case.to_toml(&format!("c{i}"), &header))?;
        }
        println!(
            "wrote {} generated case(s) to {} (seed {seed})",
            n - args.case.unwrap_or(0),
            dir.display()
        );
        let missing = coverage.missing(args.allow_loss_faults);
        if !missing.is_empty() {
            println!("features never drawn: {}", missing.join(", "));
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A missing installation is an environment error: `main` prints it, exit 2.
    let installations: Vec<Installation> =
        backupd_sim::runner::matrix::installations(&args.cyrus.choice())?
            .into_iter()
            .map(|bins| Installation {
                version: bins.version(),
                bins,
            })
            .collect();
    let first = installations
        .first()
        .context("no Cyrus installation")?
        .clone();
    let shard = args
        .shard
        .map_or((1, 1), |s| (s.index as u64, s.count as u64));
    let opts = ExploreOptions {
        cases,
        minutes: args.minutes,
        seed,
        gen,
        jobs: args.jobs.max(1),
        installations: installations.clone(),
        shard: match args.case {
            Some(i) => (i + 1, u64::MAX),
            None => shard,
        },
        out_dir: args.out.clone(),
        corpus: (!args.no_corpus && args.case.is_none()).then(|| args.corpus.clone()),
        sandbox: args.sandbox_dir.clone(),
        shrink_runs: args.shrink_runs,
        compare_real: !args.no_compare,
        batch: args.batch.max(1),
        run: backupd_sim::runner::RunOptions {
            bins: first.bins,
            version: first.version,
            seed: Some(seed),
            keep: false,
            sandbox_parent: None,
            update_snapshots: false,
            report_dir: None,
            target: backupd_sim::harness::Target::Fake,
        },
    };
    let versions: Vec<&str> = installations.iter().map(|i| i.version.as_str()).collect();
    eprintln!(
        "backupd-sim explore: seed {seed}, {}{}, -j {}, shard {}/{}, mode {:?}, Cyrus {}",
        cases.map_or_else(|| "no case limit".to_owned(), |c| format!("{c} cases")),
        args.minutes
            .map(|m| format!(", {m} minute(s)"))
            .unwrap_or_default(),
        opts.jobs,
        shard.0,
        shard.1,
        args.mode,
        versions.join(", ")
    );
    // On a terminal: a bar (indicatif, width-aware; a spinner when only
    // --minutes bounds the campaign) with failures and findings printed above
    // it; otherwise a plain line every 10 cases and on each note.
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = match (live, cases) {
        (false, _) => indicatif::ProgressBar::hidden(),
        (true, Some(c)) => indicatif::ProgressBar::new(c),
        (true, None) => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{pos}/{len}] {bar:30} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let outcome = backupd_sim::explore::explore(&opts, |p| {
        if let Some(line) = &p.note {
            if live {
                bar.println(line);
            } else {
                eprintln!("{line}");
            }
        }
        if live {
            bar.set_position(p.done);
            bar.set_message(format!(
                "{} failing, {} finding(s), {:.1} cases/min",
                p.failing, p.findings, p.per_minute
            ));
        } else if p.note.is_none() && p.done % 10 == 0 {
            eprintln!(
                "{} cases, {} failing, {} finding(s), {:.1} cases/min",
                p.done, p.failing, p.findings, p.per_minute
            );
        }
    })
    .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&outcome)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing `{}`", path.display()))?;
    }
    print_summary(&outcome, args.allow_loss_faults);
    let mut again = format!(
        "backupd-sim explore --seed {seed} --mode {} --steps-max {}",
        format!("{:?}", args.mode).to_lowercase(),
        args.steps_max
    );
    if let Some(c) = args.cases {
        again.push_str(&format!(" --cases {c}"));
    }
    if let Some(m) = args.minutes {
        again.push_str(&format!(" --minutes {m}"));
    }
    if let Some(p) = &args.cyrus.cyrus_prefix {
        again.push_str(&format!(" --cyrus-prefix {}", p.display()));
    }
    if let Some(b) = &args.cyrus.cyrus_bin {
        again.push_str(&format!(" --cyrus-bin {}", b.display()));
    }
    for c in &args.cyrus.cyrus {
        again.push_str(&format!(" --cyrus {c}"));
    }
    if let Some(s) = args.shard {
        again.push_str(&format!(" --shard {}/{}", s.index, s.count));
    }
    if args.allow_loss_faults {
        again.push_str(" --allow-loss-faults");
    }
    if args.no_renames {
        again.push_str(" --no-renames");
    }
    println!("explore again: {again}");
    Ok(if outcome.failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_summary(o: &Outcome, loss: bool) {
    let n = o.cases_run.max(1) as f64;
    let t = &o.timing;
    println!(
        "{} case(s) run in {:.1} s: {:.1} cases/min (seed {}, shard {}/{}){}",
        o.cases_run,
        o.seconds,
        o.per_minute(),
        o.seed,
        o.shard.0,
        o.shard.1,
        if o.shrink_runs > 0 {
            format!(", and {} shrinking run(s)", o.shrink_runs)
        } else {
            String::new()
        }
    );
    let versions: Vec<String> = o
        .per_version
        .iter()
        .map(|(v, c)| format!("{v}: {c}"))
        .collect();
    println!("cases per Cyrus version: {}", versions.join(", "));
    println!(
        "per case: {:.2} s wall, {:.2} s in the real client ({:.0}%), {:.2} s beyond it; {} harness start(s) took {:.1} s; {} of {} batch(es) set up ahead",
        t.wall / n,
        t.client / n,
        t.client / t.wall.max(1e-9) * 100.0,
        t.overhead() / n,
        o.harness_starts.0,
        o.harness_starts.1,
        o.batches.1,
        o.batches.0
    );
    let top: Vec<String> = t
        .top()
        .iter()
        .take(6)
        .map(|(p, s)| format!("{p} {:.2} s", s / n))
        .collect();
    println!("where a case's time goes: {}", top.join(", "));
    println!("\n{}", o.coverage.summary(loss));
    for (k, n) in &o.known {
        println!("{n} case(s) failed only on a known behaviour: {k}");
    }
    if loss || !o.loss.is_empty() {
        println!("{}", backupd_sim::explore::loss::summary(&o.loss));
    }
    if o.failing.is_empty() {
        println!("no failure");
        return;
    }
    println!("{} failing case(s):", o.failing.len());
    for c in &o.failing {
        println!(
            "  - case {}{} on Cyrus {}: {}: {}",
            c.index,
            if c.corpus { " (corpus)" } else { "" },
            c.version,
            c.verdict,
            c.failures
                .first()
                .map_or("", |f| f.lines().next().unwrap_or(""))
        );
    }
    for f in &o.findings {
        println!(
            "FINDING: {} ({} step(s)): {}\n  report: {}\n  replay: backupd-sim run {}",
            f.path.display(),
            f.steps,
            f.reproduced_summary(),
            f.report.display(),
            f.path.display()
        );
    }
}
