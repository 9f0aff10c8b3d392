//! `monitor report merge`: several machines' weekly JSON exports → one fleet report.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use monitor::report::{Format, Report, merge};

use super::{exit, report::UsageError};

/// Largest export read (a week of a busy machine is a few MiB).
const EXPORT_MAX_BYTES: u64 = 256 << 20;

/// `monitor report` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Merge weekly JSON exports of several machines (same week, same schema) into one fleet
    /// report: schema monitor.report/1 with `hosts` and per-app `by_host` columns.
    /// Example: monitor report merge lab-01=lab-01/2026-W47.json lab-02/2026-W47.json
    Merge(MergeArgs),
}

/// `monitor report merge`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Exports as HOST=FILE, or FILE (the host is then the name of the file's directory).
    /// Example: lab-01=/srv/exports/lab-01/2026-W47.json
    #[arg(required = true, value_name = "[HOST=]FILE")]
    pub files: Vec<String>,
    /// Output format (as `monitor report`): every format shows the per-host figures. Example: --format csv
    #[arg(long, default_value_t = Format::Table)]
    pub format: Format,
}

/// Host label and path of one argument.
fn host_and_path(arg: &str) -> anyhow::Result<(String, PathBuf)> {
    if let Some((host, path)) = arg.split_once('=')
        && !host.is_empty()
        && !host.contains('/')
    {
        return Ok((host.to_owned(), PathBuf::from(path)));
    }
    let path = PathBuf::from(arg);
    let host = std::fs::canonicalize(&path)
        .ok()
        .and_then(|p| p.parent()?.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| UsageError(format!("cannot tell the host of `{arg}`: give it as HOST=FILE")))?;
    Ok((host, path))
}

/// Prints a fleet report in `format`.
pub fn print_fleet(report: &Report, format: Format) -> anyhow::Result<ExitCode> {
    let mut text = Vec::new();
    report.render(format, &mut text)?;
    super::write_stdout(&text).context("cannot write the report")?;
    Ok(ExitCode::from(exit::OK))
}

/// Prints the merged report.
pub fn execute(command: ReportCommand) -> anyhow::Result<ExitCode> {
    let ReportCommand::Merge(MergeArgs { files, format }) = command;
    let mut inputs = Vec::with_capacity(files.len());
    for arg in &files {
        let (host, path) = host_and_path(arg)?;
        // A file that cannot be read is a bad argument, as one that is not a report (exit 2).
        let text = monitor::files::read_regular_to_string(&path, EXPORT_MAX_BYTES).map_err(|e| {
            UsageError(format!("cannot read the export `{}`: {}", path.display(), monitor::errors::chain(&e)))
        })?;
        let report: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| UsageError(format!("`{}` is not a JSON report: {e}", path.display())))?;
        inputs.push((host, report));
    }
    let merged = merge::merge_exports(&inputs).map_err(|e| UsageError(e.to_string()))?;
    // An input the report schema cannot read (a damaged or foreign export) is a usage error.
    let report = Report::from_json(merged)
        .map_err(|e| UsageError(format!("the exports do not follow the report schema: {e}")))?;
    print_fleet(&report, format)
}
