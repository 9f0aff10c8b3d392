//! Subcommands. Each file has its `Args` and an `execute` returning the exit code.

pub mod args;
mod check;
mod config;
pub mod exit;
pub mod logging;
mod report;
mod run;
mod status;

use std::process::ExitCode;

use monitor::settings::{RawConfig, Settings};

use args::{Cli, Command};

/// Runs the chosen subcommand.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { command, verbose: _, config } = cli;
    let (raw, source) = RawConfig::load(config.as_deref())?;
    match command {
        Command::Run(args) => run::execute(args, raw, source),
        Command::Check(args) => Ok(check::execute(&args)),
        Command::Report(args) => report::execute(args, &raw),
        Command::Status(args) => status::execute(&args, &raw),
        Command::Config(args) => {
            let _ = Settings::resolve(raw.clone(), source.clone())?;
            config::execute(&args, &raw, source.as_deref())
        }
    }
}
