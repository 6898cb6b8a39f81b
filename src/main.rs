//! The `backupd-sim` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};

use backupd_sim::server::{FakeBackupd, ServerConfig};
use backupd_sim::session::{Credentials, SessionConfig};
use backupd_sim::store::{load_state, save_state, Store};

/// A fake Cyrus backupd speaking csync, for testing the real sync_client.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the fake backupd until SIGTERM or SIGINT.
    Serve(ServeArgs),
    /// Run scenario files (default: scenarios/) against the real sync_client
    /// and the fake; exit 0 when all went as expected, 1 when some failed,
    /// 2 on invalid input or environment.
    Run(RunArgs),
    /// Run scenarios on the fake and on a real target (default: backupd) and
    /// set verdicts, exit codes, counts and transcripts side by side; exit 1
    /// when a difference is not in the known-deviations file.
    Compare(CompareArgs),
    /// Property-based convergence testing with the real sync_client: generate
    /// scenarios, run them, shrink a failure to a scenario file.
    Explore(ExploreArgs),
    /// One built-in end-to-end replication with the real sync_client, and what it verified.
    Demo(DemoArgs),
    /// Benchmark the fake against the real backupd, the real sync_server and a
    /// floor; writes bench/results.md and bench/results.json.
    Bench(BenchArgs),
    /// Change locks and faults of a running `serve --control` at run time.
    Ctl(CtlArgs),
    /// Run a throwaway real Cyrus source instance in the foreground until SIGINT,
    /// with a `backup` channel pointing at a fake (for hand-run sync_client).
    Source(SourceArgs),
    /// Cyrus installations: build Debian chroots with newer versions, list them.
    Cyrus(CyrusArgs),
}

#[derive(Args)]
struct CyrusArgs {
    /// Where the chroots live (default: $BACKUPD_SIM_CYRUS_CACHE, else /var/cache/backupd-sim/cyrus).
    #[arg(long, value_name = "DIR", global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    op: CyrusOp,
}

#[derive(Subcommand)]
enum CyrusOp {
    /// Build the chroot of each VERSION (3.10: Debian trixie, 3.12: sid) unless
    /// it is complete already. Needs root and the host's Debian mirror.
    Install {
        /// 3.10, 3.12 (or trixie, sid).
        #[arg(required = true)]
        versions: Vec<String>,
    },
    /// Show the host's Cyrus and every chroot: version, location, size.
    List,
}

#[derive(Args)]
struct SourceArgs {
    /// Cyrus binaries to use.
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
    /// Port of the fake backupd the `backup` channel replicates to.
    #[arg(long)]
    backup_port: u16,
    /// `backup_sync_authname`.
    #[arg(long, default_value = "repluser")]
    user: String,
    /// `backup_sync_password`.
    #[arg(long, default_value = "secret")]
    password: String,
    /// Directory for the instance (default: a new temp dir, removed at exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Create USER with N generated messages (repeatable), e.g. `--fill alice:20`.
    #[arg(long, value_name = "USER:N")]
    fill: Vec<String>,
}

#[derive(Args)]
struct RunArgs {
    /// Scenario files or directories (searched for *.toml).
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Scenarios run at once (each has its own source instance and fake).
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// Run only shard K of N (e.g. 1/2), to split a suite across machines.
    #[arg(long, value_name = "K/N")]
    shard: Option<backupd_sim::runner::suite::Shard>,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Seed for every scenario (default: the scenario's own, else one derived from its name).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    /// Cyrus binaries to use (a Debian install or a build directory).
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
    /// Cyrus installation(s) to run on, instead of --cyrus-bin (repeatable):
    /// 3.6 (the host's), 3.10, 3.12 (chroots from `cyrus install`), `all` (every
    /// installed one), a chroot root or a directory of Cyrus executables.
    /// Several print a version x scenario table.
    #[arg(long, value_name = "VERSION|DIR")]
    cyrus: Vec<String>,
    /// Write every report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write JUnit XML to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Keep every sandbox (failed ones are always kept).
    #[arg(long)]
    keep: bool,
    /// Where sandboxes go (default: the system temp dir).
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Write missing or changed transcript snapshots instead of failing.
    #[arg(long)]
    update_snapshots: bool,
    /// Only validate the scenario files.
    #[arg(long)]
    check: bool,
    /// Only list the selected scenarios (after --filter and --shard), one path a line.
    #[arg(long)]
    list: bool,
    /// Copy every scenario's artifacts (transcript, events, report, timeline.svg/html) to DIR/<scenario>/.
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    #[command(flatten)]
    target: TargetArgs,
}

#[derive(Args)]
struct CompareArgs {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// The real target compared with the fake: backupd, sync_server or HOST:PORT.
    #[arg(long, value_name = "TARGET", default_value = "backupd")]
    against: String,
    /// Credentials for a HOST:PORT target.
    #[arg(long, value_name = "USER:PASSWORD", default_value = "repluser:secret")]
    target_auth: String,
    /// Only scenarios whose name contains this.
    #[arg(long)]
    filter: Option<String>,
    /// Scenarios run at once, per target.
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// Cyrus binaries to use.
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
    /// The known deviations (TOML, `[[deviation]]` tables).
    #[arg(long, value_name = "FILE", default_value = "fixtures/deviations.toml")]
    deviations: PathBuf,
    /// Where the reports and normalized transcripts of both sides go.
    #[arg(long, value_name = "DIR", default_value = "target/compare")]
    out: PathBuf,
    /// Where sandboxes go (default: the system temp dir); failed ones are kept.
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
    /// Write the rows as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct TargetArgs {
    /// The server to replicate to: `fake`, `backupd` or `sync_server` (real Cyrus
    /// servers started in the sandbox, recorded through a relay), or HOST:PORT (any
    /// csync server; judged by a final `-u` pass that must send no APPLY).
    #[arg(long, value_name = "TARGET", default_value = "fake")]
    target: String,
    /// Credentials for a HOST:PORT target.
    #[arg(long, value_name = "USER:PASSWORD", default_value = "repluser:secret")]
    target_auth: String,
}

impl TargetArgs {
    fn parse(&self) -> Result<backupd_sim::harness::Target> {
        let (user, password) = self.target_auth.split_once(':').ok_or_else(|| {
            anyhow!(
                "--target-auth `{}`: expected USER:PASSWORD",
                self.target_auth
            )
        })?;
        backupd_sim::harness::Target::parse(&self.target, user, password)
            .map_err(|e| anyhow!("--target {e}"))
    }
}

#[derive(Args)]
struct ExploreArgs {
    /// Cases to generate and run.
    #[arg(long, default_value_t = 50)]
    cases: u32,
    /// Seed (default: drawn now and printed).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    /// Client modes: rolling, user, all or mixed.
    #[arg(long, default_value = "mixed")]
    mode: backupd_sim::explore::ExploreMode,
    /// Most steps per case.
    #[arg(long, default_value_t = 8)]
    steps_max: usize,
    /// Let `lie` and `hide-missing` into the generated faults (cases then fail on purpose).
    #[arg(long)]
    allow_loss_faults: bool,
    /// Also rename subscribed folders (Cyrus 3.6.1 violates convergence there:
    /// see `--off stale-subscriptions`).
    #[arg(long)]
    renames: bool,
    /// Switch off a property the Cyrus version is known to violate, by name
    /// (repeatable): stale-subscriptions.
    #[arg(long, value_name = "NAME")]
    off: Vec<String>,
    /// Where a shrunk failing case is written.
    #[arg(long, default_value = "scenarios/regressions")]
    out: PathBuf,
    /// proptest's regression file.
    #[arg(long, default_value = "proptest-regressions/explore.txt")]
    regressions: PathBuf,
    /// Only write the generated cases as scenario files into DIR; run nothing.
    #[arg(long, value_name = "DIR")]
    dry_run: Option<PathBuf>,
    /// Cyrus binaries to use.
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
}

#[derive(Args)]
struct BenchArgs {
    /// Cyrus binaries to use.
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
    /// Repetitions of each workload.
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Small sizes (a smoke run).
    #[arg(long)]
    quick: bool,
    /// Where results.md and results.json go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The scenario suite timed by workload 3.
    #[arg(long, default_value = "scenarios")]
    scenarios: PathBuf,
    /// Skip workload 3 (the scenario suite).
    #[arg(long)]
    no_suite: bool,
    /// Where sandboxes go.
    #[arg(long, value_name = "DIR")]
    sandbox_dir: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Cyrus binaries to use (a Debian install or a build directory).
    #[arg(long, value_name = "DIR", default_value = backupd_sim::cyrus::DEFAULT_CYRUS_BIN)]
    cyrus_bin: PathBuf,
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

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on; port 0 lets the OS choose. The first line on
    /// stdout is `listening on ADDR`.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Accept a non-loopback --listen address.
    #[arg(long)]
    allow_remote: bool,
    /// Authentication id the client must use (its `sync_authname`).
    #[arg(long, default_value = "repluser")]
    user: String,
    /// Password the client must use (its `sync_password`).
    #[arg(long, default_value = "secret")]
    password: String,
    /// Load backups from FILE at start (when it exists) and write them there on
    /// SIGTERM/SIGINT. Bodies go to FILE.bodies beside it.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Do not offer COMPRESS DEFLATE.
    #[arg(long)]
    no_compress: bool,
    /// The server to imitate: `backupd` (Cyrus 3.6-3.10; answers LOCKED) or
    /// `sync_server` (every version, the only target in 3.12+; blocks).
    #[arg(long, default_value = "backupd", value_name = "NAME")]
    personality: backupd_sim::session::Personality,
    /// Close a connection idle this many seconds.
    #[arg(long, default_value_t = 1800)]
    idle_timeout: u64,
    /// Lock windows and faults (TOML; see scenarios/README.md).
    #[arg(long, value_name = "FILE")]
    plan: Option<PathBuf>,
    /// Seed for every random choice (default: drawn now, printed on stderr).
    #[arg(long)]
    seed: Option<backupd_sim::rng::Seed>,
    /// Serve the run-time control endpoint here (e.g. 127.0.0.1:0); the second
    /// stdout line is then `control on ADDR`.
    #[arg(long, value_name = "ADDR")]
    control: Option<SocketAddr>,
    /// Accept a non-loopback --control address.
    #[arg(long)]
    allow_remote_control: bool,
    /// Write every event as a JSON line to FILE.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// When stopped, write the run's timeline.svg and timeline.html into DIR.
    #[arg(long, value_name = "DIR")]
    timeline: Option<PathBuf>,
}

#[derive(Args)]
struct CtlArgs {
    /// The control endpoint (`control on ADDR` from `serve --control`).
    #[arg(long)]
    addr: SocketAddr,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
    #[command(subcommand)]
    op: CtlOp,
}

#[derive(Subcommand)]
enum CtlOp {
    /// Lock a user (as another connection holding its backup), or with
    /// --mailbox/--verb answer matching commands LOCKED.
    Lock {
        /// The user.
        user: Option<String>,
        /// Only this mailbox (internal name).
        #[arg(long)]
        mailbox: Option<String>,
        /// Only this command (`APPLY MAILBOX`, `GET`, …).
        #[arg(long)]
        verb: Option<String>,
        /// `hold` or `reject`.
        #[arg(long)]
        mode: Option<String>,
        /// Close after this many milliseconds.
        #[arg(long)]
        for_ms: Option<u64>,
        /// Close after this many LOCKED answers.
        #[arg(long)]
        attempts: Option<u64>,
        /// Lock name (default `ctl-<target>`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Close locks by name, or every lock on exactly this user.
    Unlock {
        /// Lock name or user.
        name: String,
    },
    /// Add a fault rule.
    Fault(Box<FaultArgs>),
    /// Reach a named mark.
    Mark {
        /// Its name.
        name: String,
    },
    /// Remove every lock and fault.
    Clear,
    /// Show locks, faults and per-user counters.
    Status,
}

#[derive(Args)]
struct FaultArgs {
    /// What to do: drop-before, drop-after, partial-reply, delay, stall, no, bad, bye,
    /// refuse-connections, restart, lie, hide-missing.
    action: String,
    /// Only commands with this label or leading words.
    #[arg(long)]
    verb: Option<String>,
    /// Only commands touching this user.
    #[arg(long)]
    user: Option<String>,
    /// Only commands naming this mailbox.
    #[arg(long)]
    mailbox: Option<String>,
    /// Fire on the nth match only.
    #[arg(long)]
    nth: Option<u64>,
    /// Fire on each match with this probability.
    #[arg(long)]
    probability: Option<f64>,
    /// Fire at most this many times.
    #[arg(long)]
    times: Option<u64>,
    /// partial-reply: bytes to send.
    #[arg(long)]
    bytes: Option<usize>,
    /// delay: milliseconds.
    #[arg(long)]
    delay_ms: Option<u64>,
    /// no: error code word.
    #[arg(long)]
    code: Option<String>,
    /// no, bad, bye: reply text.
    #[arg(long)]
    text: Option<String>,
    /// refuse-connections, restart: milliseconds.
    #[arg(long)]
    for_ms: Option<u64>,
    /// hide-missing: how many GUIDs.
    #[arg(long)]
    count: Option<usize>,
    /// Rule name.
    #[arg(long)]
    name: Option<String>,
}

mod demo;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Every Cyrus process and sandbox we start is stopped or removed on
    // SIGINT/SIGTERM/SIGHUP (`serve` handles its signals itself: it saves state).
    if matches!(
        cli.command,
        Cmd::Run(_) | Cmd::Demo(_) | Cmd::Source(_) | Cmd::Explore(_) | Cmd::Bench(_)
    ) {
        if let Err(e) = backupd_sim::cyrus::process::install_interrupt_handler() {
            eprintln!("backupd-sim: error: installing the interrupt handler: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Cmd::Serve(args) => serve(args),
        Cmd::Run(args) => run(args),
        Cmd::Compare(args) => compare(args),
        Cmd::Explore(args) => explore(args),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Bench(args) => bench(args),
        Cmd::Source(args) => source(args),
        Cmd::Ctl(args) => ctl(args),
        Cmd::Cyrus(args) => cyrus_cmd(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backupd-sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() && !args.allow_remote {
        anyhow::bail!(
            "refusing to listen on non-loopback address `{}` (pass --allow-remote if you mean it)",
            args.listen
        );
    }
    let plan = match &args.plan {
        Some(p) => backupd_sim::fault::Plan::load(p)?,
        None => backupd_sim::fault::Plan::default(),
    };
    let seed = args.seed.unwrap_or_else(backupd_sim::rng::Seed::from_clock);
    eprintln!("backupd-sim: seed {seed} (replay with --seed {seed})");
    let store = match &args.state {
        Some(path) => load_state(path)?,
        None => Store::temporary().context("creating the temporary body store")?,
    };
    let config = ServerConfig {
        session: SessionConfig {
            credentials: Credentials {
                user: args.user,
                password: args.password,
            },
            offer_compress: !args.no_compress,
            personality: args.personality,
            ..SessionConfig::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
        plan,
        seed,
    };
    // One thread: connections take turns, which costs nothing here (a client
    // waits for each reply anyway) and saves the cross-thread wake-ups and
    // work stealing of a multi-thread runtime, per read.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let fake = FakeBackupd::start(args.listen, store, config)
            .await
            .with_context(|| format!("binding `{}`", args.listen))?;
        println!("listening on {}", fake.addr());
        if let Some(addr) = args.control {
            let listener =
                backupd_sim::server::control::bind(addr, args.allow_remote_control).await?;
            println!("control on {}", listener.local_addr()?);
            tokio::spawn(backupd_sim::server::control::serve_control(
                listener,
                std::sync::Arc::clone(fake.shared()),
            ));
        }
        if let Some(path) = &args.events {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating `{}`", path.display()))?;
            fake.shared()
                .events()
                .set_sink(Box::new(std::io::BufWriter::new(file)));
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        wait_for_signal().await?;
        let shared = std::sync::Arc::clone(fake.shared());
        fake.stop().await;
        shared.events().flush()?;
        if let Some(dir) = &args.timeline {
            let events: Vec<_> = shared.events().events().cloned().collect();
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating `{}`", dir.display()))?;
            backupd_sim::timeline::write_files(
                dir,
                &backupd_sim::timeline::TimelineInput::new("backupd-sim serve", &events),
            )
            .with_context(|| format!("writing the timeline to `{}`", dir.display()))?;
            eprintln!(
                "backupd-sim: timeline written to {}",
                dir.join("timeline.html").display()
            );
        }
        if let Some(path) = &args.state {
            save_state(&mut shared.store(), path)?;
            eprintln!("backupd-sim: state written to {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn compare(args: CompareArgs) -> Result<ExitCode> {
    use backupd_sim::runner::{compare, suite, RunOptions};
    let scenarios = match suite::load(&args.paths, None, args.filter.as_deref()) {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => {
            eprintln!(
                "backupd-sim: no scenario to compare (paths: {:?})",
                args.paths
            );
            return Ok(ExitCode::from(2));
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("backupd-sim: invalid scenario: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let target = TargetArgs {
        target: args.against.clone(),
        target_auth: args.target_auth.clone(),
    }
    .parse();
    let target = match target {
        Ok(t) if !t.is_fake() => t,
        Ok(_) => {
            eprintln!(
                "backupd-sim: --against must be a real target (backupd, sync_server or HOST:PORT)"
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("backupd-sim: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let deviations = match compare::load_deviations(&args.deviations) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("backupd-sim: invalid deviations file: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let bins = backupd_sim::cyrus::CyrusBins::locate(&args.cyrus_bin)?;
    let version = bins.version();
    let opts = RunOptions {
        bins,
        version,
        seed: None,
        keep: false,
        sandbox_parent: args.sandbox_dir.clone(),
        update_snapshots: false,
        report_dir: None,
        target: backupd_sim::harness::Target::Fake,
    };
    let rows = compare::compare(
        &scenarios,
        &opts,
        &target,
        args.jobs.max(1),
        &args.out,
        &deviations,
    );
    print!("{}", compare::summary(&rows, &target, &args.out));
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing `{}`", p.display()))?;
    }
    let bad = rows.iter().any(|r| {
        r.unexplained()
            || r.fake.verdict == backupd_sim::runner::Verdict::Error
            || r.real.verdict == backupd_sim::runner::Verdict::Error
    });
    Ok(if bad {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn run(args: RunArgs) -> Result<ExitCode> {
    use backupd_sim::runner::{report, suite, RunOptions};
    let scenarios = match suite::load(&args.paths, args.shard, args.filter.as_deref()) {
        Ok(s) => s,
        Err(errors) => {
            for e in &errors {
                eprintln!("backupd-sim: invalid scenario: {e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    if args.check {
        println!("{} scenario file(s) valid", scenarios.len());
        return Ok(ExitCode::SUCCESS);
    }
    if args.list {
        for s in &scenarios {
            println!("{}", s.path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if scenarios.is_empty() {
        eprintln!(
            "backupd-sim: no scenario to run (paths: {:?}, filter: {:?}, shard: {:?})",
            args.paths,
            args.filter,
            args.shard.map(|s| format!("{}/{}", s.index, s.count))
        );
        return Ok(ExitCode::from(2));
    }
    let target = match args.target.parse() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("backupd-sim: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    // A missing installation is an environment error: `main` prints it, exit 2.
    let installations = installations(&args.cyrus, &args.cyrus_bin)?;
    if let Some(dir) = &args.sandbox_dir {
        for bins in &installations {
            // A chroot'd Cyrus only reaches its sandbox below the root.
            let dir = std::fs::canonicalize(dir)
                .with_context(|| format!("--sandbox-dir `{}`", dir.display()))?;
            bins.inside(&dir)?;
        }
    }
    // Several installations: a header per version, a version x scenario table,
    // and report dirs per version.
    let multi = installations.len() > 1;
    let mut matrix: Vec<(String, Vec<backupd_sim::runner::ScenarioReport>)> = Vec::new();
    for bins in installations {
        let version = bins.version();
        eprintln!(
            "backupd-sim: {} scenario(s), Cyrus {version} from {}, target {}, {} at a time",
            scenarios.len(),
            bins.describe(),
            target.name(),
            args.jobs.max(1)
        );
        let opts = RunOptions {
            bins,
            version: version.clone(),
            seed: args.seed,
            keep: args.keep,
            sandbox_parent: args.sandbox_dir.clone(),
            update_snapshots: args.update_snapshots,
            report_dir: args.report_dir.as_ref().map(|d| {
                if multi {
                    d.join(&version)
                } else {
                    d.clone()
                }
            }),
            target: target.clone(),
        };
        let reports = suite::run_all(&scenarios, &opts, args.jobs.max(1));
        if multi {
            println!("== Cyrus {version} ({})", opts.bins.describe());
        }
        print!("{}", report::summary(&reports));
        matrix.push((version, reports));
    }
    if matrix.len() > 1 {
        print!("\n{}", report::matrix(&matrix));
    }
    if let Some(p) = &args.json {
        let text = match matrix.as_slice() {
            [(_, reports)] => report::json(reports),
            _ => report::json_matrix(&matrix),
        };
        std::fs::write(p, text).with_context(|| format!("writing `{}`", p.display()))?;
    }
    if let Some(p) = &args.junit {
        let text = match matrix.as_slice() {
            [(_, reports)] => report::junit(reports),
            _ => report::junit_matrix(&matrix),
        };
        std::fs::write(p, text).with_context(|| format!("writing `{}`", p.display()))?;
    }
    Ok(
        if matrix
            .iter()
            .any(|(_, reports)| reports.iter().any(|r| r.verdict.is_bad()))
        {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The installations `--cyrus` names (`all`: the host's and every installed
/// chroot), else `--cyrus-bin`.
fn installations(
    specs: &[String],
    cyrus_bin: &std::path::Path,
) -> Result<Vec<backupd_sim::cyrus::CyrusBins>> {
    use backupd_sim::cyrus::{install, CyrusBins};
    let cache = install::cache_dir();
    if specs.is_empty() {
        return Ok(vec![CyrusBins::locate(cyrus_bin)?]);
    }
    let mut out: Vec<CyrusBins> = Vec::new();
    for spec in specs {
        if spec == "all" {
            out.push(CyrusBins::locate(backupd_sim::cyrus::DEFAULT_CYRUS_BIN)?);
            for s in install::SUITES {
                if let Some(root) = install::installed_root(&cache, s) {
                    out.push(CyrusBins::locate_chroot(root)?);
                }
            }
        } else {
            out.push(CyrusBins::resolve(spec, &cache)?);
        }
    }
    out.dedup();
    Ok(out)
}

/// `backupd-sim cyrus install|list`.
fn cyrus_cmd(args: CyrusArgs) -> Result<ExitCode> {
    use backupd_sim::cyrus::install;
    let cache = args.cache.unwrap_or_else(install::cache_dir);
    match args.op {
        CyrusOp::Install { versions } => {
            let mut suites = Vec::new();
            for v in &versions {
                match install::suite_for(v) {
                    Some(s) => suites.push(s),
                    None => {
                        let known: Vec<&str> = install::SUITES.iter().map(|s| s.version).collect();
                        eprintln!(
                            "backupd-sim: cyrus install `{v}`: expected one of {} (3.6 is the host's: `make setup`)",
                            known.join(", ")
                        );
                        return Ok(ExitCode::from(2));
                    }
                }
            }
            for s in suites {
                let started = std::time::Instant::now();
                let mut progress = |line: &str| {
                    eprintln!(
                        "[{:>6.1} s] cyrus {}: {line}",
                        started.elapsed().as_secs_f64(),
                        s.version
                    );
                };
                let done = install::install(s, &cache, &mut progress)
                    .map_err(|e| anyhow::anyhow!("cyrus install {}: {e}", s.version))?;
                let size = install::disk_usage(&done.root);
                if done.built {
                    println!(
                        "Cyrus {} installed in {} ({:.0} MiB) in {:.1} s",
                        done.version,
                        done.root.display(),
                        size as f64 / 1048576.0,
                        done.seconds
                    );
                } else {
                    println!(
                        "Cyrus {} already installed in {} ({:.0} MiB)",
                        done.version,
                        done.root.display(),
                        size as f64 / 1048576.0
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CyrusOp::List => {
            println!("{:<6} {:<10} {:>9}  location", "cyrus", "version", "size");
            for l in install::list(&cache) {
                let (version, note) = if l.usable {
                    (l.version.clone(), String::new())
                } else {
                    ("-".to_owned(), format!("  ({})", l.version))
                };
                println!(
                    "{:<6} {:<10} {:>9}  {}{note}",
                    l.name,
                    version,
                    l.bytes.map_or_else(
                        || "-".into(),
                        |b| format!("{:.0} MiB", b as f64 / 1048576.0)
                    ),
                    l.location.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn explore(args: ExploreArgs) -> Result<ExitCode> {
    use backupd_sim::explore::{generate, ExploreOptions, GenOptions};
    let seed = args.seed.unwrap_or_else(backupd_sim::rng::Seed::from_clock);
    for name in &args.off {
        match backupd_sim::scenario::ignorable_reason(name) {
            Some(reason) => eprintln!("backupd-sim explore: property off: {name}: {reason}"),
            None => {
                eprintln!("backupd-sim: --off `{name}`: unknown; known: stale-subscriptions");
                return Ok(ExitCode::from(2));
            }
        }
    }
    let gen = GenOptions {
        mode: args.mode,
        allow_loss_faults: args.allow_loss_faults,
        steps_max: args.steps_max,
        renames: args.renames,
        off: args.off.clone(),
    };
    if let Some(dir) = &args.dry_run {
        std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
        for (i, case) in generate(seed, &gen, args.cases).iter().enumerate() {
            let path = dir.join(format!("case-{i:04}.toml"));
            std::fs::write(
                &path,
                case.to_toml_with(
                    &format!("c{i}"),
                    &format!("explore --seed {seed}, case {i}"),
                    &gen.off,
                ),
            )?;
        }
        println!(
            "wrote {} generated case(s) to {} (seed {seed})",
            args.cases,
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // A missing installation is an environment error: `main` prints it, exit 2.
    let bins = backupd_sim::cyrus::CyrusBins::locate(&args.cyrus_bin)?;
    let version = bins.version();
    let mut hopts = backupd_sim::harness::HarnessOptions::new(bins.clone());
    hopts.server.seed = seed;
    hopts.sync_timeout = Duration::from_secs(60);
    let h = backupd_sim::harness::Harness::start(hopts).context("starting the harness")?;
    eprintln!(
        "backupd-sim explore: seed {seed}, {} cases, mode {:?}, Cyrus {version}",
        args.cases, args.mode
    );
    let opts = ExploreOptions {
        cases: args.cases,
        seed,
        gen,
        out_dir: args.out.clone(),
        regressions: args.regressions.clone(),
        run: backupd_sim::runner::RunOptions {
            bins,
            version,
            seed: Some(seed),
            keep: false,
            sandbox_parent: None,
            update_snapshots: false,
            report_dir: None,
            target: backupd_sim::harness::Target::Fake,
        },
    };
    if let Some(parent) = args.regressions.parent() {
        std::fs::create_dir_all(parent).ok();
    }
    let live = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = backupd_sim::explore::explore(&h, &opts, |done, failures, per_min| {
        if live {
            eprint!("\r\x1b[K{done} cases, {failures} failing, {per_min:.1} cases/min");
        } else if done % 10 == 0 || failures > 0 {
            eprintln!("{done} cases, {failures} failing, {per_min:.1} cases/min");
        }
    })
    .map_err(|e| anyhow::anyhow!(e))?;
    if live {
        eprintln!();
    }
    println!(
        "{} case(s) run in {:.1} s: {:.1} cases/min (seed {seed})",
        outcome.cases_run,
        outcome.seconds,
        outcome.cases_run as f64 / outcome.seconds.max(1e-3) * 60.0
    );
    match outcome.failure {
        None => {
            println!("no failure");
            Ok(ExitCode::SUCCESS)
        }
        Some((path, report)) => {
            println!("FAILURE, shrunk and written to {}", path.display());
            for f in report.failures() {
                println!("  - {}", f.lines().next().unwrap_or(""));
            }
            println!("replay: backupd-sim run {}", path.display());
            let mut again = format!(
                "backupd-sim explore --seed {seed} --cases {} --mode {} --steps-max {}",
                args.cases,
                format!("{:?}", args.mode).to_lowercase(),
                args.steps_max
            );
            if args.allow_loss_faults {
                again.push_str(" --allow-loss-faults");
            }
            if args.renames {
                again.push_str(" --renames");
            }
            for o in &args.off {
                again.push_str(&format!(" --off {o}"));
            }
            println!("explore again: {again}");
            Ok(ExitCode::from(1))
        }
    }
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    let bins = backupd_sim::cyrus::CyrusBins::locate(&args.cyrus_bin)?;
    let exe = std::env::current_exe().context("locating the backupd-sim executable")?;
    let mut opts = backupd_sim::bench::BenchOptions::new(bins, exe);
    if args.quick {
        opts = opts.quick();
    }
    opts.reps = args.reps;
    opts.out_dir = args.out;
    opts.scenarios = (!args.no_suite && args.scenarios.is_dir()).then_some(args.scenarios);
    if let Some(d) = args.sandbox_dir {
        opts.sandbox_parent = d;
    }
    let r = backupd_sim::bench::run_bench(&opts)?;
    for g in &r.goals {
        println!(
            "{} {}: {} (limit {})",
            if g.pass { "pass" } else { "MISS" },
            g.name,
            g.measured,
            g.limit
        );
    }
    println!(
        "wrote {0}/results.md and {0}/results.json",
        opts.out_dir.display()
    );
    // Missed goals are reported, not an error.
    Ok(ExitCode::SUCCESS)
}

fn ctl(args: CtlArgs) -> Result<ExitCode> {
    use backupd_sim::fault::{FaultSpec, LockSpec, MatchSpec, TriggerSpec, TriggerTable};
    use backupd_sim::server::control::{request, Request};
    let req = match args.op {
        CtlOp::Lock {
            user,
            mailbox,
            verb,
            mode,
            for_ms,
            attempts,
            name,
        } => Request::Lock {
            lock: LockSpec {
                name,
                user,
                mailbox,
                verb,
                mode,
                open: None,
                close: match (for_ms, attempts) {
                    (Some(ms), _) => Some(TriggerSpec::Table(TriggerTable {
                        after_ms: Some(ms),
                        ..TriggerTable::default()
                    })),
                    (None, Some(n)) => Some(TriggerSpec::Table(TriggerTable {
                        attempts: Some(n),
                        ..TriggerTable::default()
                    })),
                    (None, None) => None,
                },
            },
        },
        CtlOp::Unlock { name } => Request::Unlock { name },
        CtlOp::Fault(f) => Request::Fault {
            fault: FaultSpec {
                name: f.name,
                when: MatchSpec {
                    verb: f.verb,
                    user: f.user,
                    mailbox: f.mailbox,
                    ..MatchSpec::default()
                },
                nth: f.nth,
                probability: f.probability,
                times: f.times,
                action: f.action,
                bytes: f.bytes,
                delay_ms: f.delay_ms,
                code: f.code,
                text: f.text,
                for_ms: f.for_ms,
                count: f.count,
            },
        },
        CtlOp::Mark { name } => Request::Mark { name },
        CtlOp::Clear => Request::Clear,
        CtlOp::Status => Request::Status,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = rt
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(10), request(args.addr, &req)).await
        })
        .map_err(|_| anyhow::anyhow!("no answer from `{}` within 10 s", args.addr))?
        .with_context(|| format!("talking to the control endpoint `{}`", args.addr))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else if let Some(e) = &answer.error {
        eprintln!("backupd-sim ctl: {e}");
    } else if let Some(status) = &answer.status {
        print!("{}", describe_status(status));
    }
    Ok(if answer.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A readable summary of a control status.
fn describe_status(s: &serde_json::Value) -> String {
    let mut out = format!("seed {}\n", s["seed"]);
    let locks = s["locks"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("locks: {}\n", locks.len()));
    for l in &locks {
        out.push_str(&format!(
            "  {} [{}] {} target {} hits {}\n",
            l["name"].as_str().unwrap_or("?"),
            l["mode"].as_str().unwrap_or("?"),
            if l["active"] == true {
                "OPEN"
            } else {
                "closed"
            },
            l["target"],
            l["hits"]
        ));
    }
    let faults = s["faults"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("faults: {}\n", faults.len()));
    for f in &faults {
        out.push_str(&format!(
            "  {} {} when {} matches {} fires {}\n",
            f["name"].as_str().unwrap_or("?"),
            f["action"]["kind"].as_str().unwrap_or("?"),
            f["when"],
            f["matches"],
            f["fires"]
        ));
    }
    if let Some(users) = s["users"].as_object() {
        out.push_str("users:\n");
        for (u, c) in users {
            out.push_str(&format!(
                "  {u}: {} commands, {} locked, {} faults\n",
                c["commands"], c["locked"], c["faults"]
            ));
        }
    }
    if s["refusing_ms"].as_u64().unwrap_or(0) > 0 {
        out.push_str(&format!(
            "refusing connections for {} ms\n",
            s["refusing_ms"]
        ));
    }
    out
}

fn source(args: SourceArgs) -> Result<ExitCode> {
    use backupd_sim::cyrus::{Channel, CyrusBins, SourceInstance, SourceOptions};
    let bins = CyrusBins::locate(&args.cyrus_bin)?;
    let mut fills = Vec::new();
    for f in &args.fill {
        let (user, n) = f
            .split_once(':')
            .and_then(|(u, n)| Some((u.to_owned(), n.parse::<usize>().ok()?)))
            .with_context(|| format!("--fill `{f}`: expected USER:N, e.g. alice:20"))?;
        fills.push((user, n));
    }
    let (_tmp, root) = match &args.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::Builder::new()
                .prefix("backupd-sim-source-")
                .tempdir()?;
            let p = t.path().to_owned();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&root)?;
    // Removed on Ctrl-C by the interrupt handler (a --dir is the user's: kept).
    let _reg = backupd_sim::cyrus::process::SandboxRegistration::new(&root, args.dir.is_some());
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut channel = Channel::new("backup", args.backup_port);
    channel.authname = args.user;
    channel.password = args.password;
    let mut opts = SourceOptions::new(bins.clone(), root.join("source"));
    opts.channels = vec![channel];
    let source = SourceInstance::start(&opts)?;
    let mut rng = backupd_sim::rng::Rng::new(backupd_sim::rng::Seed(1));
    for (user, n) in &fills {
        backupd_sim::populate::fill_user(&source, user, *n, &mut rng)?;
    }
    let conf = source.config_path().display().to_string();
    println!(
        "source imapd on {} (any password; `admin` is an admin)",
        source.imap_addr()
    );
    println!("config: {conf}");
    println!("channel log: {}", source.sync_log_path("backup").display());
    println!(
        "try: {} -C {conf} -n backup -v -u USER",
        bins.path("sync_client").display()
    );
    println!(
        "Ctrl-C stops the instance{}.",
        if args.dir.is_some() {
            ""
        } else {
            " and removes it"
        }
    );
    use std::io::Write;
    std::io::stdout().flush()?;
    let _keep_running = source;
    // The interrupt handler stops the instance, removes the temp dir and exits.
    backupd_sim::cyrus::process::park_until_interrupted()
}

async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
