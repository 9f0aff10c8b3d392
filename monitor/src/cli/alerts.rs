//! `monitor alerts`: the live alerts the daemon raised (first violation of a claim by a
//! destination per ISO week, repeats counted).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use monitor::{escape, settings::Settings};

use super::{exit, report::open_journal};

/// `monitor alerts`.
#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Only alerts with a violation at or after this time (a date or date and time in the report
    /// time zone, or with an offset or `Z`). Example: --since 2026-11-16
    #[arg(long)]
    pub since: Option<String>,
    /// JSON output (an array of alert objects). Example: --json
    #[arg(long)]
    pub json: bool,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// Lists the alerts.
pub fn execute(args: AlertsArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let AlertsArgs { since, json, journal } = args;
    let since = since.map(|s| settings.report.time_zone.parse_time(&s)).transpose()?;
    let reader = open_journal(&journal.unwrap_or_else(|| settings.journal.path.clone()))?;
    let alerts = reader.alerts(since)?;
    let mut out = Vec::new();
    if json {
        escape::json::to_writer_pretty(&mut out, &alerts).context("cannot write the alerts")?;
        out.push(b'\n');
    } else {
        let mut table = Table::new();
        table.load_style(UTF8_FULL_CONDENSED);
        table.set_header([
            "Week",
            "Claim",
            "Destination",
            "App",
            "Country",
            "ASN",
            "Rule",
            "First",
            "Last",
            "Repeats",
            "Up",
            "Down",
        ]);
        let t = escape::terminal;
        for a in &alerts {
            table.add_row([
                t(&a.period),
                t(&a.claim),
                t(&a.destination),
                t(&a.app),
                a.country.as_deref().map_or_else(|| "-".into(), t),
                a.asn.map_or_else(
                    || "-".into(),
                    |n| format!("AS{n} {}", a.as_org.as_deref().map_or_else(String::new, t)),
                ),
                t(&a.rule),
                a.first_seen.to_string(),
                a.last_seen.to_string(),
                a.repeats.to_string(),
                a.payload_tx.to_string(),
                a.payload_rx.to_string(),
            ]);
        }
        out.extend_from_slice(format!("{table}\n{} alerts\n", alerts.len()).as_bytes());
    }
    super::write_stdout(&out).context("cannot write the alerts")?;
    Ok(ExitCode::from(exit::OK))
}
