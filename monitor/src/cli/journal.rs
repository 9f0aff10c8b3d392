//! `monitor journal verify`: recomputes the journal's hash chain and names every row changed or
//! removed after it was written. [`integrity`] is the same check for other commands (e.g.
//! `verify --journal-integrity`).

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use monitor::{
    escape,
    journal::{Integrity, verify_chain},
    settings::Settings,
};

use super::exit;

/// `monitor journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JournalCommand,
}

/// `monitor journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check the hash chain over flushed batches (exit 13 when a row was changed or removed).
    /// Example: monitor journal verify --json
    Verify {
        /// JSON output. Example: --json
        #[arg(long)]
        json: bool,
        /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
        #[arg(long, value_name = "FILE")]
        journal: Option<PathBuf>,
    },
}

/// Runs the check and prints what it found.
pub fn execute(args: JournalArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let JournalArgs { command: JournalCommand::Verify { json, journal } } = args;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    let (found, code) = integrity(&journal)?;
    let mut out = String::new();
    if json {
        let mut bytes = Vec::new();
        escape::json::to_writer_pretty(&mut bytes, &found)?;
        bytes.push(b'\n');
        super::write_stdout(&bytes).context("cannot write the result")?;
        return Ok(code);
    }
    let Integrity { batches, rows_intact, rows_purged, rows_before_chain, head, problems } = &found;
    writeln!(out, "journal   {}", escape::terminal(&journal.to_string_lossy()))?;
    writeln!(out, "batches   {batches}, head {}", head.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "rows      {rows_intact} intact, {rows_purged} purged by retention, {rows_before_chain} before the chain"
    )?;
    for p in problems {
        writeln!(out, "PROBLEM   {p}")?;
    }
    writeln!(out, "{}", if problems.is_empty() { "intact" } else { "TAMPERED" })?;
    super::write_stdout(out.as_bytes()).context("cannot write the result")?;
    Ok(code)
}

/// The chain check of `journal` and the exit code it calls for: [`exit::OK`] when intact,
/// [`exit::TAMPERED`] when a row or batch was changed, removed or added.
///
/// # Errors
/// When the journal cannot be opened or read (exit code 5).
pub fn integrity(journal: &std::path::Path) -> anyhow::Result<(Integrity, ExitCode)> {
    let found = verify_chain(journal)?;
    let code = if found.problems.is_empty() { exit::OK } else { exit::TAMPERED };
    Ok((found, ExitCode::from(code)))
}
