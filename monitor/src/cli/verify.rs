//! `monitor verify`: judges the claims file over a week or a time range of the journal.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;
use jiff::Timestamp;
use monitor::{
    claims::{self, Verdict},
    report::{Format, Period, Report, ReportQuery},
    settings::Settings,
};

use super::{
    exit,
    report::{UsageError, open_journal},
};

/// `monitor verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Claims file (overrides `claims.file`; keys in config/claims.example.toml).
    /// Example: --claims /etc/monitor/claims.toml
    #[arg(long, value_name = "FILE")]
    pub claims: Option<PathBuf>,
    /// ISO week, cut in the report time zone (default: the current week). Example: --week 2026-W47
    #[arg(long, conflicts_with_all = ["since", "until", "session"])]
    pub week: Option<String>,
    /// A session (`monitor session`, `monitor exec --session`): its window, and for an `exec`
    /// session only its command's flows. Example: --session build-42
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub session: Option<String>,
    /// Check the journal's hash chain instead of claims (as `monitor journal verify`; exit 13
    /// when a row was changed or removed).
    #[arg(long, conflicts_with_all = ["claims", "week", "since", "until", "session"])]
    pub journal_integrity: bool,
    /// Start: a date or a date and time, in the report time zone unless an offset or `Z` follows.
    /// Example: --since 2026-11-19T08:00
    #[arg(long, requires = "until")]
    pub since: Option<String>,
    /// End, excluded; same forms as --since. Example: --until 2026-11-19T12:00
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Output format (with --journal-integrity: table or json). Example: --format json
    #[arg(long, value_enum, default_value_t = VerifyFormat::Table)]
    pub format: VerifyFormat,
    /// IANA time zone of the weeks and dates (overrides `report.time_zone`). Example: --time-zone Europe/Berlin
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// The formats verdicts are written in: the only values `verify --format` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VerifyFormat {
    /// A terminal table.
    Table,
    /// JSON, schema monitor.verdicts/1.
    Json,
    /// A Markdown document.
    Markdown,
}

impl From<VerifyFormat> for Format {
    fn from(format: VerifyFormat) -> Self {
        match format {
            VerifyFormat::Table => Self::Table,
            VerifyFormat::Json => Self::Json,
            VerifyFormat::Markdown => Self::Markdown,
        }
    }
}

/// Prints the verdicts; the exit code says whether every claim passed.
pub fn execute(args: VerifyArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let VerifyArgs { claims, week, session, since, until, format, time_zone, journal, journal_integrity } = args;
    if journal_integrity {
        let json = match format {
            VerifyFormat::Table => false,
            VerifyFormat::Json => true,
            VerifyFormat::Markdown => {
                anyhow::bail!(UsageError("--journal-integrity writes --format table or json".into()))
            }
        };
        let command = super::journal::JournalCommand::Verify { json, journal };
        return super::journal::execute(super::journal::JournalArgs { command }, settings);
    }
    let file = claims
        .or_else(|| settings.claims.file().map(std::path::Path::to_path_buf))
        .ok_or_else(|| UsageError("no claims file: give --claims FILE or set `file` in the [claims] section".into()))?;
    let set = settings.claims.load(&file)?;
    let zone = super::zone(time_zone.as_deref(), settings)?;
    let reader = open_journal(&journal.unwrap_or_else(|| settings.journal.path.clone()))?;
    let mut query = match (session, week, since, until) {
        (Some(name), None, None, None) => {
            let (period, info) = super::session::window(&reader, &name, &zone)?;
            let mut query = ReportQuery::new(period);
            query.session = Some(info);
            query
        }
        (None, Some(week), None, None) => ReportQuery::new(Period::iso_week(&week, &zone)?),
        (None, None, Some(since), Some(until)) => {
            ReportQuery::new(Period::range(zone.parse_time(&since)?, zone.parse_time(&until)?, &zone)?)
        }
        (None, None, None, None) => ReportQuery::new(Period::week_containing(Timestamp::now(), &zone)?),
        _ => anyhow::bail!(UsageError("give either --week, --session, or both --since and --until".into())),
    };
    query.evidence = true;
    let report = Report::build(&reader, &query)?;
    let verdicts = claims::evaluate(&set, &report, Some(&file));
    let mut text = Vec::new();
    verdicts.render(format.into(), &mut text)?;
    super::write_stdout(&text).context("cannot write the verdicts")?;
    let worst = verdicts.claims.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Pass);
    Ok(ExitCode::from(match worst {
        Verdict::Pass => exit::OK,
        Verdict::Inconclusive => exit::CLAIM_INCONCLUSIVE,
        Verdict::Fail => exit::CLAIM_FAILED,
    }))
}
