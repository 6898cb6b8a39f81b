//! The `backupd-sim` command line: one file per subcommand, each with its clap
//! arguments and the function that runs it. The work itself is in the library;
//! these files parse, print and choose the exit code (`anyhow` stays here).

mod bench;
mod compare;
mod ctl;
mod cyrus;
mod demo;
mod explore;
mod run;
mod serve;
mod source;

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{Args, Parser, Subcommand};

/// A fake Cyrus backupd speaking csync, for testing the real sync_client.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Serve the fake backupd until SIGTERM or SIGINT.
    Serve(serve::ServeArgs),
    /// Run scenario files (default: scenarios/) against the real sync_client
    /// and the fake; exit 0 when all went as expected, 1 when some failed,
    /// 2 on invalid input or environment.
    Run(run::RunArgs),
    /// Run scenarios on the fake and on a real target (default: backupd) and
    /// set verdicts, exit codes, counts and transcripts side by side; exit 1
    /// when a difference is not in the known-deviations file.
    Compare(compare::CompareArgs),
    /// Property-based convergence testing with the real sync_client: generate
    /// scenarios, run them, shrink a failure to a scenario file.
    Explore(explore::ExploreArgs),
    /// One built-in end-to-end replication with the real sync_client, and what it verified.
    Demo(demo::DemoArgs),
    /// Benchmark the fake against the real backupd, the real sync_server and a
    /// floor; writes bench/results.md and bench/results.json.
    Bench(bench::BenchArgs),
    /// Change locks and faults of a running `serve --control` at run time.
    Ctl(ctl::CtlArgs),
    /// Run a throwaway real Cyrus source instance in the foreground until SIGINT,
    /// with a `backup` channel pointing at a fake (for hand-run sync_client).
    Source(source::SourceArgs),
    /// Cyrus installations: build Debian chroots with newer versions, list them.
    Cyrus(cyrus::CyrusArgs),
}

impl Cmd {
    /// True for the commands that start Cyrus processes or sandboxes, which
    /// the interrupt handler stops or removes on SIGINT/SIGTERM/SIGHUP
    /// (`serve` handles its signals itself: it saves state).
    pub fn starts_cyrus(&self) -> bool {
        matches!(
            self,
            Cmd::Run(_) | Cmd::Demo(_) | Cmd::Source(_) | Cmd::Explore(_) | Cmd::Bench(_)
        )
    }

    /// Run the command: its exit code, or an error `main` prints (exit 2).
    pub fn run(self) -> Result<ExitCode> {
        match self {
            Cmd::Serve(args) => serve::run(args),
            Cmd::Run(args) => run::run(args),
            Cmd::Compare(args) => compare::run(args),
            Cmd::Explore(args) => explore::run(args),
            Cmd::Demo(args) => demo::run(&args),
            Cmd::Bench(args) => bench::run(args),
            Cmd::Source(args) => source::run(args),
            Cmd::Ctl(args) => ctl::run(args),
            Cmd::Cyrus(args) => cyrus::run(args),
        }
    }
}

/// `--target` and `--target-auth`, shared by `run` and `compare --against`.
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
