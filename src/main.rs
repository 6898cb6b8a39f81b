//! The `backupd-sim` command line: parse (see [`cli`]), install the interrupt
//! handler when Cyrus processes may start, run the subcommand, print its error.

mod cli;

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("backupd-sim: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn try_main() -> Result<ExitCode> {
    let cli = cli::Cli::parse();
    backupd_sim::term::set_color_choice(cli.color.into());
    // Every Cyrus process and sandbox we start is stopped or removed on
    // SIGINT/SIGTERM/SIGHUP.
    if cli.command.starts_cyrus() {
        backupd_sim::cyrus::process::install_interrupt_handler()
            .context("installing the interrupt handler")?;
    }
    cli.command.run()
}
