//! `monitor report`: per-app residency for a week or a time range, from the journal.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context as _;
use jiff::{Timestamp, civil::Date, tz::TimeZone};
use monitor::{
    journal::JournalReader,
    report::{Format, Period, Report, ReportQuery},
    settings::RawConfig,
};

use super::{args::ReportArgs, exit};

/// Prints the report.
pub fn execute(args: ReportArgs, raw: &RawConfig) -> anyhow::Result<ExitCode> {
    let ReportArgs { week, since, until, app, format, time_zone, journal, top } = args;
    let tz_name = time_zone.unwrap_or_else(|| raw.report.time_zone.clone());
    let journal = journal.unwrap_or_else(|| raw.journal.path.clone());
    let period = match (week, since, until) {
        (Some(week), None, None) => Period::iso_week(&week, &tz_name)?,
        (None, Some(since), Some(until)) => {
            let tz = TimeZone::get(&tz_name).with_context(|| format!("unknown time zone `{tz_name}`"))?;
            Period::range(parse_time(&since, &tz)?, parse_time(&until, &tz)?, &tz_name)?
        }
        (None, None, None) => Period::week_containing(Timestamp::now(), &tz_name)?,
        _ => anyhow::bail!(UsageError("give either --week, or both --since and --until".into())),
    };
    let format: Format = format.parse()?;
    let reader = open_journal(&journal)?;
    let mut query = ReportQuery::new(period);
    query.app = app;
    if let Some(top) = top {
        query.top_endpoints = top;
    }
    let report = Report::build(&reader, &query)?;
    let mut out = std::io::stdout().lock();
    match report.render(format, &mut out) {
        Ok(()) => {}
        // `monitor report | head` is not an error.
        Err(monitor::report::Error::Write { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => return Err(e.into()),
    }
    let _ = out.flush();
    Ok(ExitCode::from(exit::OK))
}

/// A usage error (exit code 2) detected by a subcommand.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// RFC 3339 timestamp, or a date (midnight in `tz`), or a civil date-time in `tz`.
fn parse_time(text: &str, tz: &TimeZone) -> anyhow::Result<Timestamp> {
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(date) = text.parse::<Date>() {
        return Ok(date.to_zoned(tz.clone())?.timestamp());
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return Ok(dt.to_zoned(tz.clone())?.timestamp());
    }
    Err(UsageError(format!("invalid time `{text}` (expected e.g. 2026-11-16, 2026-11-16T08:00 or 2026-11-16T08:00:00Z)")).into())
}

/// Opens the journal read-only, with a hint when it does not exist yet.
pub fn open_journal(path: &std::path::Path) -> anyhow::Result<JournalReader> {
    JournalReader::open(path).with_context(|| {
        format!("cannot read the journal `{}` (has `monitor run` written one? is the path right?)", path.display())
    })
}
