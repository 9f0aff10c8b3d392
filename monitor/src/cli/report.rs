//! `monitor report`: per-app residency for a week or a time range, from the journal.

use std::process::ExitCode;

use anyhow::Context as _;
use jiff::Timestamp;
use monitor::{
    journal::JournalReader,
    report::{Format, Period, Report, ReportQuery, promql},
    settings::Settings,
};

use super::{args::ReportArgs, exit};

/// Prints the report.
pub fn execute(args: ReportArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let ReportArgs {
        fleet,
        week,
        session,
        since,
        until,
        app,
        format,
        time_zone,
        journal,
        top,
        prometheus,
        hosts,
        host_label,
        join,
    } = args;
    if let Some(command) = fleet {
        return super::report_merge::execute(command);
    }
    let zone = super::zone(time_zone.as_deref(), settings)?;
    let journal = journal.unwrap_or_else(|| settings.journal.path.clone());
    if let Some(name) = session {
        let reader = open_journal(&journal)?;
        let (period, info) = super::session::window(&reader, &name, &zone)?;
        let mut query = ReportQuery::new(period);
        query.session = Some(info);
        return render(&reader, query, app, top, format, settings, &join);
    }
    let period = match (week, since, until) {
        (Some(week), None, None) => Period::iso_week(&week, &zone)?,
        (None, Some(since), Some(until)) => Period::range(zone.parse_time(&since)?, zone.parse_time(&until)?, &zone)?,
        (None, None, None) => Period::week_containing(Timestamp::now(), &zone)?,
        _ => anyhow::bail!(UsageError("give either --week, or both --since and --until".into())),
    };
    if let Some(url) = prometheus {
        // Only plain HTTP is spoken (README): anything else is a usage error, not a failed fetch.
        if !url.get(..7).is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://")) {
            anyhow::bail!(UsageError(format!(
                "--prometheus {}: give the base URL of the Prometheus HTTP API starting with http:// (https is not \
                 spoken: query a local listener or a proxy)",
                monitor::escape::terminal(&url)
            )));
        }
        let source = promql::Source { url, host_label: host_label.unwrap_or_else(|| "instance".into()), hosts };
        let fleet = promql::fleet_report(&source, &period)?;
        let report = Report::from_json(fleet).context("the fleet report from Prometheus does not follow the schema")?;
        return super::report_merge::print_fleet(&report, format);
    }
    // After the arguments: a bad period is a usage error even without a journal.
    let reader = open_journal(&journal)?;
    render(&reader, ReportQuery::new(period), app, top, format, settings, &join)
}

fn render(
    reader: &JournalReader,
    mut query: ReportQuery,
    app: Option<String>,
    top: Option<u32>,
    format: Format,
    settings: &Settings,
    join: &super::report_join::JoinArgs,
) -> anyhow::Result<ExitCode> {
    query.app = app.map(|shown| reader.app_name_shown_as(&shown)).transpose()?;
    query.device = settings.device.location.clone();
    if let Some(top) = top {
        query.top_endpoints = usize::try_from(top).unwrap_or(usize::MAX);
    }
    let mut report = Report::build(reader, &query)?;
    if let Some(file) = settings.claims.file() {
        let set = settings.claims.load(file)?;
        monitor::claims::annotate(reader, &query, (&set, file), &mut report)?;
    }
    report.emulator_join = super::report_join::join(join, reader, &query)?;
    let mut text = Vec::new();
    report.render(format, &mut text)?;
    super::write_stdout(&text).context("cannot write the report")?;
    Ok(ExitCode::from(exit::OK))
}

/// A usage error (exit code 2) detected by a subcommand.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Opens the journal read-only (the journal's own errors say what is wrong: missing, with a hint,
/// not a journal, damaged). A file that has the journal's schema version but not its tables
/// (another application's database) is refused here, with the same message and exit code (5) for
/// `report` and `status`.
pub fn open_journal(path: &std::path::Path) -> anyhow::Result<JournalReader> {
    let reader = JournalReader::open(path)?;
    reader
        .state()
        .and_then(|_| reader.check_tables())
        .with_context(|| format!("`{}` is not a monitor journal, or it is damaged", path.display()))?;
    Ok(reader)
}
