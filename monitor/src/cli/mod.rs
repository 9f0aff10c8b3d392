//! Subcommands. Each file has its `Args` and an `execute` returning the exit code.

mod alerts;
pub mod args;
mod check;
mod config;
mod diff;
mod evidence;
mod exec;
pub mod exit;
mod journal;
pub mod logging;
mod lookup;
mod report;
mod report_join;
mod report_merge;
mod run;
mod session;
mod status;
mod verify;

use std::{
    io::{self, Write as _},
    process::ExitCode,
};

use monitor::{
    settings::{RawConfig, Settings},
    zone::{UnknownZone, Zone},
};

use args::{Cli, Command};

/// Runs the chosen subcommand. The config is validated once ([`Settings::resolve`]) and every
/// command works from the result; `run` applies its flags to the file's values first.
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    let Cli { command, verbose: _, config } = cli;
    let (raw, source) = RawConfig::load(config.as_deref())?;
    // `run` resolves the file's values after its flags changed them.
    let command = match command {
        Command::Run(args) => return run::execute(args, raw, source),
        other => other,
    };
    let settings = Settings::resolve(raw.clone(), source)?;
    let settings = &settings;
    match command {
        Command::Run(_) => unreachable!("returned above"),
        Command::Check(args) => check::execute(&args, settings),
        Command::Report(args) => report::execute(args, settings),
        Command::Session(args) => session::execute(args, settings),
        Command::Diff(args) => diff::execute(args, settings),
        Command::Journal(args) => journal::execute(args, settings),
        Command::Evidence(args) => evidence::execute(args, &raw, settings),
        Command::Keygen(args) => evidence::keygen_execute(args, settings),
        Command::Exec(args) => exec::execute(args, settings),
        Command::Status(args) => status::execute(&args, settings),
        Command::Verify(args) => verify::execute(args, settings),
        Command::Alerts(args) => alerts::execute(args, settings),
        Command::Lookup(args) => lookup::execute(args, settings),
        Command::Config(args) => config::execute(&args, &raw, settings),
    }
}

/// The time zone of a command's weeks and dates: its `--time-zone` flag, looked up here (the one
/// place a flag's zone is parsed), else `report.time_zone` as [`Settings::resolve`] looked it up.
///
/// # Errors
/// [`UnknownZone`] (exit code 2) for a flag naming no zone in the time zone database.
fn zone(time_zone: Option<&str>, settings: &Settings) -> Result<Zone, UnknownZone> {
    time_zone.map_or_else(|| Ok(settings.report.time_zone.clone()), Zone::get)
}

/// Writes a command's whole output to stdout. A reader that closed the pipe early
/// (`monitor report | head`) is not an error: the rest is dropped silently.
///
/// # Errors
/// Other write errors (e.g. a full disk behind a redirection).
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => result,
    }
}
