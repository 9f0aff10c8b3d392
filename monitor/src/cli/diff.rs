//! `monitor diff A B`: what changed per app from A to B. Each side is a session, an ISO week or
//! an exported report file (`session:NAME`, `week:W`, `file:PATH`, or guessed: an existing file,
//! then a week such as 2026-W47, else a session name).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;
use monitor::{
    diff::{DEFAULT_THRESHOLD_PCT, Diff, DiffFormat},
    files,
    journal::JournalReader,
    report::{Format, Period, Report, ReportQuery},
    settings::Settings,
    zone::Zone,
};
use serde_json::Value;

use super::{exit, report::UsageError};

/// Largest report file read (64 MiB).
const MAX_REPORT_BYTES: u64 = 64 << 20;

/// `monitor diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older side: `session:NAME`, `week:2026-W47`, `file:PATH`, or just the name, week or
    /// file. Example: build-41
    pub a: String,
    /// The newer side, same forms. Example: build-42
    pub b: String,
    /// List byte changes of at least this many percent (default 20). Example: --threshold 50
    #[arg(long, value_name = "PERCENT", default_value_t = DEFAULT_THRESHOLD_PCT)]
    pub threshold: f64,
    /// Output format; json follows schema monitor.diff/1. Example: --format markdown
    #[arg(long, value_enum, default_value_t = DiffFormat::Table)]
    pub format: DiffFormat,
    /// IANA time zone of weeks (overrides `report.time_zone`). Example: --time-zone Europe/Berlin
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// Prints the diff. Exit code 0 when B has nothing A lacks, [`exit::NEW`] when it has.
pub fn execute(args: DiffArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let DiffArgs { a, b, threshold, format, time_zone, journal } = args;
    if !(threshold.is_finite() && threshold >= 0.0) {
        anyhow::bail!(UsageError(format!("--threshold must be a percentage of 0 or more, not {threshold}")));
    }
    let zone = super::zone(time_zone.as_deref(), settings)?;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    let mut reader = None;
    let mut side = |arg: &str| -> anyhow::Result<Value> {
        let (kind, value) = classify(arg);
        if kind == "file" {
            let bytes = files::read_regular(&PathBuf::from(value), MAX_REPORT_BYTES)
                .map_err(|e| UsageError(format!("{:#}", anyhow::Error::new(e))))?;
            return serde_json::from_slice(&bytes)
                .map_err(|e| UsageError(format!("`{}` is not a JSON report: {e}", value.escape_debug())).into());
        }
        if reader.is_none() {
            reader = Some(super::report::open_journal(&journal)?);
        }
        let reader: &JournalReader = reader.as_ref().context("journal")?;
        report_json(reader, kind, value, &zone)
    };
    let (va, vb) = (side(&a)?, side(&b)?);
    let diff = Diff::of((&a, &va), (&b, &vb), threshold)?;
    let mut out = Vec::new();
    diff.render(format, &mut out)?;
    super::write_stdout(&out).context("cannot write the diff")?;
    Ok(ExitCode::from(if diff.anything_new { exit::NEW } else { exit::OK }))
}

/// (`session` | `week` | `file`, the rest) of a side argument.
fn classify(arg: &str) -> (&'static str, &str) {
    for kind in ["session", "week", "file"] {
        if let Some(rest) = arg.strip_prefix(kind).and_then(|r| r.strip_prefix(':')) {
            return (kind, rest);
        }
    }
    if std::path::Path::new(arg).is_file() {
        return ("file", arg);
    }
    let b = arg.as_bytes();
    if b.len() == 8
        && b[..4].iter().all(u8::is_ascii_digit)
        && &b[4..6] == b"-W"
        && b[6..].iter().all(u8::is_ascii_digit)
    {
        return ("week", arg);
    }
    ("session", arg)
}

/// The report JSON of a week or session, with every endpoint (not only the top ones).
pub fn report_json(reader: &JournalReader, kind: &str, value: &str, zone: &Zone) -> anyhow::Result<Value> {
    let mut query = if kind == "week" {
        ReportQuery::new(Period::iso_week(value, zone)?)
    } else {
        let (period, info) = super::session::window(reader, value, zone)?;
        let mut q = ReportQuery::new(period);
        q.session = Some(info);
        q
    };
    query.top_endpoints = usize::MAX;
    let mut out = Vec::new();
    Report::build(reader, &query)?.render(Format::Json, &mut out)?;
    Ok(serde_json::from_slice(&out)?)
}
