//! Verdicts beside the weekly export: when the daemon has exported a week's report, the claims
//! are judged over that week and written as `<week>.verdicts.json` / `<week>.verdicts.md` in the
//! export directory (for the export formats `json` and `markdown`), atomically like the report.

use std::path::{Path, PathBuf};

use super::{ClaimSet, Error, evaluate};
use crate::{
    journal::JournalReader,
    report::{Format, Period, Report, ReportQuery, write_atomic},
    zone::Zone,
};

/// Judges `claims` over ISO week `week` (cut in `zone`) and writes the verdicts to `dir`
/// in the JSON and Markdown formats among `formats`. Returns the files written.
///
/// # Errors
/// Journal errors, an invalid week, or a file that cannot be written.
pub fn export_verdicts(
    reader: &JournalReader,
    week: &str,
    zone: &Zone,
    dir: &Path,
    formats: &[Format],
    claims: &ClaimSet,
    claims_file: &Path,
) -> Result<Vec<PathBuf>, Error> {
    let period = Period::iso_week(week, zone)?;
    let mut query = ReportQuery::new(period);
    query.evidence = true;
    let report = Report::build(reader, &query)?;
    let verdicts = evaluate(claims, &report, Some(claims_file));
    let mut written = Vec::new();
    for format in [Format::Json, Format::Markdown] {
        if !formats.contains(&format) {
            continue;
        }
        let mut text = Vec::new();
        verdicts.render(format, &mut text)?;
        let path = dir.join(format!("{week}.verdicts.{}", format.extension()));
        write_atomic(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}
