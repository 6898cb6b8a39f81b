//! `backupd-sim completions SHELL` and `backupd-sim man`: generated from the
//! clap definition itself, so they cannot fall behind the options.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write backupd-sim.1 and one backupd-sim-SUBCOMMAND.1 per subcommand
    /// into DIR (created if missing) instead of printing backupd-sim.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Print the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "backupd-sim", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Print the man page, or write every page into `--out`.
pub fn man(args: &ManArgs) -> Result<ExitCode> {
    let cmd = super::Cli::command();
    let Some(dir) = &args.out else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    clap_mangen::generate_to(cmd, dir)
        .with_context(|| format!("writing man pages into `{}`", dir.display()))?;
    let mut pages: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.ends_with(".1"))
        .collect();
    pages.sort();
    println!(
        "wrote {} man page(s) into {}: {}",
        pages.len(),
        dir.display(),
        pages.join(" ")
    );
    Ok(ExitCode::SUCCESS)
}
