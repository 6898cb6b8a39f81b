//! The `backupd-sim` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
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
    /// One built-in end-to-end replication with the real sync_client, and what it verified.
    Demo(DemoArgs),
    /// Run a throwaway real Cyrus source instance in the foreground until SIGINT,
    /// with a `backup` channel pointing at a fake (for hand-run sync_client).
    Source(SourceArgs),
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
    /// Close a connection idle this many seconds.
    #[arg(long, default_value_t = 1800)]
    idle_timeout: u64,
}

mod demo;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => serve(args),
        Cmd::Demo(args) => demo::run(&args),
        Cmd::Source(args) => source(args),
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
            ..SessionConfig::default()
        },
        idle_timeout: Duration::from_secs(args.idle_timeout),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    rt.block_on(async move {
        let fake = FakeBackupd::start(args.listen, store, config)
            .await
            .with_context(|| format!("binding `{}`", args.listen))?;
        println!("listening on {}", fake.addr());
        use std::io::Write;
        std::io::stdout().flush()?;
        wait_for_signal().await?;
        let shared = std::sync::Arc::clone(fake.shared());
        fake.stop().await;
        if let Some(path) = &args.state {
            save_state(&mut shared.store(), path)?;
            eprintln!("backupd-sim: state written to {}", path.display());
        }
        Ok(ExitCode::SUCCESS)
    })
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(wait_for_signal())?;
    drop(source);
    Ok(ExitCode::SUCCESS)
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
