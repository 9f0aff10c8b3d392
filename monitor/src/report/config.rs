//! `[report]` configuration section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Error, Format};
use crate::zone::Zone;

/// The documented `[report]` section: every key with its default. Parses to
/// [`ReportConfig::default`] (checked by a test); meant to be pasted into `config/monitor.toml`.
pub const CONFIG_DOC: &str = r#"[report]
# IANA time zone in which report weeks are cut (ISO 8601 weeks: Monday 00:00 to the next Monday
# 00:00 local time, so a week with a daylight-saving change lasts 167 or 169 hours), e.g.
# "Europe/Berlin". An unknown name is an error at startup. The journal keeps its weekly rollups
# (what makes weekly reports fast) in this zone; changing it rebuilds them at the next start.
time_zone = "UTC"
# Directory where the daemon writes the report of each completed week once, as <week>.<ext>
# (e.g. 2026-W47.json). Created with mode 0700 when missing; files have mode 0600. A directory
# other users can write to is refused unless it is sticky and owned by the user running the monitor.
export_dir = "/var/lib/monitor/reports"
# Formats of the weekly export: any of "json" (schema monitor.report/1), "markdown", "csv",
# "table", "html" (a self-contained page with maps and charts). An empty list disables the
# weekly export.
export_formats = ["json", "markdown", "html"]
"#;

/// `[report]` as written: how reports are cut and where weekly exports go. Validated into
/// [`ReportSettings`] by `Settings::resolve`; nothing else reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReportConfig {
    /// IANA time zone name.
    pub time_zone: String,
    /// Directory of weekly exports.
    pub export_dir: PathBuf,
    /// Formats of weekly exports.
    pub export_formats: Vec<Format>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            // UTC: the same weeks on every host unless configured.
            time_zone: "UTC".into(),
            // Beside the journal (FHS variable state).
            export_dir: PathBuf::from("/var/lib/monitor/reports"),
            // JSON for machines, Markdown and the HTML page for people.
            export_formats: vec![Format::Json, Format::Markdown, Format::Html],
        }
    }
}

impl ReportConfig {
    /// Checks the export directory (the time zone is looked up by `Settings::resolve`).
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty directory.
    pub fn validate(&self) -> Result<(), Error> {
        if self.export_dir.as_os_str().is_empty() {
            return Err(Error::Invalid { key: "export_dir", reason: "must not be empty".into() });
        }
        Ok(())
    }
}

/// `[report]` validated (built by `Settings::resolve`): what reports and the daemon's weekly
/// export use.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// `report.time_zone`, looked up once: weeks of reports, weekly exports and the journal's
    /// rollups, unless a command's `--time-zone` overrides it.
    pub time_zone: Zone,
    /// `report.export_dir`: directory of weekly exports.
    pub export_dir: PathBuf,
    /// `report.export_formats`: formats of weekly exports (empty: no weekly export).
    pub export_formats: Vec<Format>,
    /// `evidence.secret_key`: signs each weekly export (`<file>.minisig`).
    pub sign_with: Option<PathBuf>,
    /// `[device] location`: weekly exports judge plausibility like `monitor report`.
    pub device: Option<crate::residency::DeviceLocation>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        report: ReportConfig,
    }

    #[test]
    fn config_doc_parses_to_default() {
        let file: File = toml::from_str(CONFIG_DOC).expect("CONFIG_DOC parses");
        assert_eq!(file.report, ReportConfig::default());
        file.report.validate().expect("defaults are valid");
    }

    #[test]
    fn config_rejects_unknown_formats_and_an_empty_export_dir() {
        assert!(toml::from_str::<File>("[report]\nexport_formats = [\"pdf\"]\n").is_err());
        let file: File = toml::from_str("[report]\nexport_dir = \"\"\n").expect("parses");
        assert!(matches!(file.report.validate(), Err(Error::Invalid { key: "export_dir", .. })));
    }
}
