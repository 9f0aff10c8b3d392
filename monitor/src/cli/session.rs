//! `monitor session start|stop|list`: named time windows in the journal. Reports, `diff` and
//! `evidence` take `--session NAME`.

use std::{fmt::Write as _, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use jiff::{SignedDuration, Timestamp};
use monitor::{
    escape,
    journal::{JournalReader, Session, TimeRange, start_session, stop_session},
    report::{Period, SessionInfo},
    settings::Settings,
    zone::Zone,
};

use super::{exit, report::open_journal};

/// `monitor session`.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SessionCommand,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE", global = true)]
    pub journal: Option<PathBuf>,
}

/// `monitor session` subcommands.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session now: every flow until `stop` belongs to it. Example: monitor session start build-42
    Start {
        /// Unique name (A-Z a-z 0-9 . _ -, at most 64). Example: build-42
        name: String,
    },
    /// Stop a running session now. Example: monitor session stop build-42
    Stop {
        /// Its name. Example: build-42
        name: String,
    },
    /// List the sessions, oldest first. Example: monitor session list --json
    List {
        /// JSON output (an array of sessions). Example: --json
        #[arg(long)]
        json: bool,
    },
}

/// Runs the subcommand.
pub fn execute(args: SessionArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let SessionArgs { command, journal } = args;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    let mut out = String::new();
    match command {
        SessionCommand::Start { name } => {
            let s = start_session(&journal, &name, Timestamp::now(), None)?;
            writeln!(out, "session {} started at {}", s.name, s.started)?;
        }
        SessionCommand::Stop { name } => {
            let s = stop_session(&journal, &name, Timestamp::now(), None)?;
            let stopped = s.stopped.map_or_else(String::new, |t| t.to_string());
            writeln!(out, "session {} stopped at {stopped}", s.name)?;
        }
        SessionCommand::List { json } => {
            let sessions = open_journal(&journal)?.sessions()?;
            if json {
                let mut bytes = Vec::new();
                escape::json::to_writer_pretty(&mut bytes, &sessions)?;
                bytes.push(b'\n');
                super::write_stdout(&bytes).context("cannot write the session list")?;
                return Ok(ExitCode::from(exit::OK));
            }
            for s in &sessions {
                writeln!(out, "{}", line(s))?;
            }
        }
    }
    super::write_stdout(out.as_bytes()).context("cannot write the session list")?;
    Ok(ExitCode::from(exit::OK))
}

/// How far before its start and after its end records of a `monitor exec` session's cgroup are
/// looked for: the daemon's timestamps and `monitor exec`'s clock may differ by a clock step,
/// and a connection may close long after the command ended.
const CGROUP_BEFORE: SignedDuration = SignedDuration::from_secs(60);
const CGROUP_AFTER: SignedDuration = SignedDuration::from_hours(24);

/// The report period and filter of session `name`: its window (until now while it runs). For a
/// session of `monitor exec`, the period also covers every record of a socket created in its
/// cgroup (from a minute before the start to a day after the end): a connection that closes
/// after the command ended is counted in full.
///
/// # Errors
/// An unknown session, or a window the report cannot represent.
pub fn window(reader: &JournalReader, name: &str, zone: &Zone) -> anyhow::Result<(Period, SessionInfo)> {
    let s = reader.session(name)?;
    let (mut since, mut until) = (s.started, s.stopped.unwrap_or_else(Timestamp::now));
    if let Some(id) = s.cgroup_id {
        let search = TimeRange {
            since: since.checked_sub(CGROUP_BEFORE).unwrap_or(since),
            until: until.checked_add(CGROUP_AFTER).unwrap_or(until),
        };
        if let Some((first, last)) = reader.cgroup_span(id, search)? {
            since = since.min(first);
            // `until` is excluded from a period: one millisecond past the last record.
            until = until.max(last + SignedDuration::from_millis(1));
        }
    }
    // A report period is never empty: a session stopped in the millisecond it started is 1 ms long.
    let until = until.max(since + SignedDuration::from_millis(1));
    let period = Period::range(since, until, zone)?;
    Ok((period, SessionInfo { name: s.name, cgroup_id: s.cgroup_id }))
}

/// One line of `session list`: name, window, cgroup and command (foreign text escaped).
fn line(s: &Session) -> String {
    let Session { name, started, stopped, cgroup_id, cgroup_path: _, command, exit_code } = s;
    let until = stopped.map_or_else(|| "running".to_owned(), |t| t.to_string());
    let mut text = format!("{name}\t{started}\t{until}");
    if let Some(id) = cgroup_id {
        let _ = write!(text, "\tcgroup {id}");
    }
    if let Some(code) = exit_code {
        let _ = write!(text, "\texit {code}");
    }
    if let Some(command) = command {
        let _ = write!(text, "\t{}", escape::terminal(command));
    }
    text
}
