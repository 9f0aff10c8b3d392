//! `monitor journal verify`: runs SQLite's structural check over the whole file, recomputes the
//! journal's hash chain and names every row changed or removed after it was written.
//! [`integrity`] is the same check for other commands (e.g. `verify --journal-integrity`).

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use monitor::{
    escape,
    journal::{Integrity, JournalReader, verify_chain},
    settings::Settings,
};
use serde::Serialize;

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
    /// Check the file's structure (SQLite `integrity_check`; exit 5 when damaged), the hash
    /// chain over flushed batches and the sums reports read against the rows they are summed
    /// from (exit 13 when a row was changed or removed, or a sum differs).
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

/// What `journal verify` found: the file's structure and its hash chain.
#[derive(Debug, Serialize)]
pub struct Checked {
    /// The problems SQLite's `PRAGMA integrity_check` reports (pages, b-trees, indexes); empty
    /// when the file is sound.
    pub structure: Vec<String>,
    /// The hash chain (its fields at the top level of the JSON, as before).
    #[serde(flatten)]
    pub chain: Integrity,
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
    let Checked {
        structure,
        chain: Integrity { batches, rows_intact, rows_purged, rows_before_chain, head, problems, figures },
    } = &found;
    writeln!(out, "journal   {}", escape::terminal(&journal.to_string_lossy()))?;
    let sound = if structure.is_empty() { "ok".to_owned() } else { format!("{} problems", structure.len()) };
    writeln!(out, "structure {sound} (SQLite integrity_check)")?;
    writeln!(out, "batches   {batches}, head {}", head.as_deref().unwrap_or("-"))?;
    writeln!(
        out,
        "rows      {rows_intact} intact, {rows_purged} purged by retention, {rows_before_chain} before the chain"
    )?;
    if let Some(why) = &figures.failed {
        writeln!(out, "figures   not compared: the sums could not be read ({})", escape::terminal(why))?;
    } else {
        let mut notes = Vec::new();
        if figures.days_with_losses > 0 {
            notes.push(format!("{} days with a recorded loss not compared", figures.days_with_losses));
        }
        if let Some(why) = &figures.weeks_skipped {
            notes.push(format!("weeks not compared: {why}"));
        }
        let notes = if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) };
        writeln!(
            out,
            "figures   {} days and {} weeks of sums compared with the rows they are summed from{}",
            figures.days,
            figures.weeks,
            escape::terminal(&notes)
        )?;
    }
    for s in structure {
        writeln!(out, "CORRUPT   {}", escape::terminal(s))?;
    }
    for p in problems {
        writeln!(out, "PROBLEM   {p}")?;
    }
    if figures.unlisted > 0 {
        writeln!(out, "PROBLEM   {} more sums differ from their rows (not listed)", figures.unlisted)?;
    }
    let verdict = match (structure.is_empty() && figures.failed.is_none(), problems.is_empty()) {
        (true, true) => "intact",
        (true, false) => "TAMPERED",
        (false, true) => "CORRUPT",
        (false, false) => "CORRUPT, TAMPERED",
    };
    writeln!(out, "{verdict}")?;
    super::write_stdout(out.as_bytes()).context("cannot write the result")?;
    Ok(code)
}

/// The structural and chain checks of `journal` and the exit code they call for: [`exit::OK`]
/// when intact, [`exit::JOURNAL`] when SQLite finds the file damaged or the sums cannot be read
/// (whatever the chain says: a damaged file's rows cannot be trusted to be all there), else
/// [`exit::TAMPERED`] when a row or batch was changed, removed or added, or a sum reports read
/// differs from the rows it is summed from.
///
/// The structural check is `PRAGMA integrity_check`, not `quick_check`: only `integrity_check`
/// also checks that every index holds exactly its table's rows (`quick_check` skips that, and a
/// wrong index makes reports read wrong rows), and the chain check reads and hashes every chained
/// row anyway, so the whole-file read costs the same order of time.
///
/// # Errors
/// When the journal cannot be opened or read (exit code 5); the error names the structural
/// problems when SQLite found some.
pub fn integrity(journal: &std::path::Path) -> anyhow::Result<(Checked, ExitCode)> {
    let structure = JournalReader::open(journal)?.structure_problems()?;
    let chain = match verify_chain(journal) {
        Ok(chain) => chain,
        Err(e) if !structure.is_empty() => {
            return Err(
                anyhow::Error::new(e).context(format!("SQLite's integrity_check reports: {}", structure.join("; ")))
            );
        }
        Err(e) => return Err(e.into()),
    };
    let code = if !structure.is_empty() || chain.figures.failed.is_some() {
        exit::JOURNAL
    } else if chain.problems.is_empty() {
        exit::OK
    } else {
        exit::TAMPERED
    };
    Ok((Checked { structure, chain }, ExitCode::from(code)))
}
