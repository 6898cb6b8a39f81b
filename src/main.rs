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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Serve(args) => serve(args),
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
