//! The `backupd-sim` command line: one file per subcommand, each with its clap
//! arguments and the function that runs it. The work itself is in the library;
//! these files parse, print and choose the exit code (`anyhow` stays here).

mod bench;
mod compare;
mod ctl;
mod cyrus;
mod demo;
mod explore;
mod gen;
mod run;
mod serve;
mod source;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

/// A fake Cyrus backupd speaking csync, for testing the real sync_client.
#[derive(Parser)]
#[command(name = "backupd-sim", version, about)]
pub struct Cli {
    /// Colour the verdicts: `auto` on a terminal unless NO_COLOR is set.
    /// Reports written to files are never coloured.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, value_name = "WHEN")]
    pub color: Color,
    #[command(subcommand)]
    pub command: Cmd,
}

/// `--color`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl From<Color> for backupd_sim::term::ColorChoice {
    fn from(c: Color) -> Self {
        match c {
            Color::Auto => Self::Auto,
            Color::Always => Self::Always,
            Color::Never => Self::Never,
        }
    }
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(gen::CompletionsArgs),
    /// Print the man page, or write one per subcommand into a directory.
    Man(gen::ManArgs),
}

impl Cmd {
    /// True for the commands that start Cyrus processes or sandboxes, which
    /// the interrupt handler stops or removes on SIGINT/SIGTERM/SIGHUP
    /// (`serve` handles its signals itself: it saves state).
    pub fn starts_cyrus(&self) -> bool {
        matches!(
            self,
            Cmd::Run(_)
                | Cmd::Compare(_)
                | Cmd::Demo(_)
                | Cmd::Source(_)
                | Cmd::Explore(_)
                | Cmd::Bench(_)
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
            Cmd::Completions(args) => gen::completions(&args),
            Cmd::Man(args) => gen::man(&args),
        }
    }
}

/// Which Cyrus installation a command runs on: `--cyrus-prefix`,
/// `--cyrus-bin`, `--cyrus` (shared by every command that runs Cyrus), else
/// `$CYRUS_PREFIX` or `$CYRUS_BIN`, else Debian's `/usr/lib/cyrus/bin`.
#[derive(Args, Clone, Default)]
struct CyrusSelect {
    /// An installed Cyrus tree as `make install` lays it out: servers in
    /// DIR/libexec, tools in DIR/sbin, some in DIR/bin (also $CYRUS_PREFIX).
    #[arg(long, value_name = "DIR")]
    cyrus_prefix: Option<PathBuf>,
    /// One directory holding every Cyrus executable (also $CYRUS_BIN; default
    /// /usr/lib/cyrus/bin).
    #[arg(long, value_name = "DIR")]
    cyrus_bin: Option<PathBuf>,
    /// A Cyrus version or installation: 3.6 (the host's), 3.10, 3.12 (chroots
    /// from `cyrus install`), a chroot root, an installed tree (a `cyrus build`
    /// prefix) or a directory of executables. `run` and `explore` take several
    /// (and `all`).
    #[arg(long, value_name = "VERSION|DIR")]
    cyrus: Vec<String>,
}

impl CyrusSelect {
    fn choice(&self) -> backupd_sim::cyrus::Choice {
        backupd_sim::cyrus::Choice {
            prefix: self.cyrus_prefix.clone(),
            bin: self.cyrus_bin.clone(),
            cyrus: self.cyrus.clone(),
        }
    }

    /// The one installation (every command but `run`).
    fn single(&self) -> Result<backupd_sim::cyrus::CyrusBins> {
        Ok(self.choice().single()?)
    }
}

/// `--target` and `--target-auth`, shared by `run` and `compare --against`.
#[derive(Args, Clone)]
struct TargetArgs {
    /// The server to replicate to: the fake (as backupd or as sync_server), a
    /// real Cyrus `backupd` or `sync_server` started in the sandbox and recorded
    /// through a relay, or HOST:PORT (any csync server, taken for a backupd or
    /// a sync_server by its greeting; judged by the history of what it
    /// acknowledged and answered, and by a final `-u` pass that must send no
    /// APPLY that shows a difference: APPLY CAPABILITIES, and APPLY QUOTA to
    /// a backupd, are not counted).
    #[arg(long, value_name = "TARGET", default_value = "fake",
          value_parser = TargetParser(&["fake", "fake-sync_server", "backupd", "sync_server"]))]
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

/// A target name (listed in `--help` and in completions) or HOST:PORT.
#[derive(Clone, Copy)]
struct TargetParser(&'static [&'static str]);

impl TypedValueParser for TargetParser {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        let text = value.to_string_lossy();
        let alias = text.replace('-', "_");
        let host_port = text
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if self
            .0
            .iter()
            .any(|n| *n == text || n.replace('-', "_") == alias)
            || host_port
        {
            return Ok(text.into_owned());
        }
        let mut err = clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd);
        use clap::error::{ContextKind, ContextValue};
        err.insert(
            ContextKind::InvalidArg,
            ContextValue::String(arg.map_or_else(|| "TARGET".into(), ToString::to_string)),
        );
        err.insert(
            ContextKind::InvalidValue,
            ContextValue::String(text.into_owned()),
        );
        let mut valid: Vec<String> = self.0.iter().map(|n| (*n).to_owned()).collect();
        valid.push("HOST:PORT".into());
        err.insert(ContextKind::ValidValue, ContextValue::Strings(valid));
        Err(err)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.0.iter().map(|n| PossibleValue::new(*n))))
    }
}

/// Names from a list (shown as `[possible values: …]` and completed), then
/// parsed into `T` by its `FromStr`.
fn names<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    PossibleValuesParser::new(names.iter().copied()).try_map(|s| s.parse::<T>())
}
