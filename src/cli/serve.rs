//! `backupd-sim serve`: the fake backupd over TCP until SIGTERM or SIGINT,
//! with its plan, state file, control endpoint, event log and timeline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::Args;

use backupd_sim::server::{FakeBackupd, ServerConfig};
use backupd_sim::session::{Credentials, SessionConfig};
use backupd_sim::store::{load_state, save_state, Store};

#[derive(Args)]
pub struct ServeArgs {
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
    #[arg(long, default_value = "backupd", value_name = "NAME", value_parser =
          clap::builder::PossibleValuesParser::new([
              clap::builder::PossibleValue::new("backupd"),
              clap::builder::PossibleValue::new("sync_server").alias("sync-server"),
          ])
          .try_map(|s| s.parse::<backupd_sim::session::Personality>()))]
    personality: backupd_sim::session::Personality,
    /// Close a connection idle this many seconds, or whose command is not
    /// whole this many seconds after its first byte.
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

pub fn run(args: ServeArgs) -> Result<ExitCode> {
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
        ..ServerConfig::default()
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
