//! Configuration: the TOML file (`config/monitor.toml` documents every key and its default),
//! parsed strictly into [`RawConfig`], then validated into [`Settings`].
//!
//! Precedence: built-in defaults < config file < command-line flags. An explicit file that is
//! missing or does not parse is an error, never a silent fallback to defaults.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::{enrich::GeoConfig, identity::AppRule, journal::JournalConfig, report::ReportConfig};

/// Default config file, read when it exists and no `--config` is given.
pub const SYSTEM_CONFIG: &str = "/etc/monitor/monitor.toml";

/// The documented defaults (this repository's `config/monitor.toml`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/monitor.toml");

/// Configuration errors (exit code 2).
#[allow(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read config file `{}`", path.display())]
    Read { path: PathBuf, #[source] source: std::io::Error },
    /// The file is not valid TOML for this schema (unknown key, wrong type...).
    #[error("invalid config file `{}`", path.display())]
    Parse { path: PathBuf, #[source] source: Box<toml::de::Error> },
    /// A value is out of range.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// The file as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// cgroup v2 directory to watch.
    pub cgroup: PathBuf,
    /// `[probe]`.
    pub probe: RawProbe,
    /// `[tracker]`.
    pub tracker: RawTracker,
    /// `[output]`.
    pub output: RawOutput,
    /// `[geo]`: country and ASN databases.
    pub geo: GeoConfig,
    /// `[journal]`: the local database of records and residency rows.
    pub journal: JournalConfig,
    /// `[report]`: report periods and weekly exports.
    pub report: ReportConfig,
    /// `[[apps]]`: grouping of processes into named apps.
    pub apps: Vec<AppRule>,
}

/// `[probe]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProbe {
    /// Ring buffer size in KiB.
    pub ring_buffer_kib: u32,
    /// Seconds between periodic updates.
    pub update_interval_secs: u64,
}

/// `[tracker]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTracker {
    /// Seconds to wait for TCP_CLOSE after release.
    pub tcp_close_grace_secs: u64,
    /// Seconds between statistics lines.
    pub stats_interval_secs: u64,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOutput {
    /// "log" or "json".
    pub format: OutputFormat,
}

/// How `monitor run` shows records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Human-readable log lines on stderr.
    #[default]
    Log,
    /// JSON lines on stdout.
    Json,
    /// No per-flow output (services: records go to the journal); lifecycle and statistics lines
    /// are still logged.
    None,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            cgroup: PathBuf::from("/"),
            probe: RawProbe::default(),
            tracker: RawTracker::default(),
            output: RawOutput::default(),
            geo: GeoConfig::default(),
            journal: JournalConfig::default(),
            report: ReportConfig::default(),
            apps: Vec::new(),
        }
    }
}

impl Default for RawProbe {
    fn default() -> Self {
        // 4 MiB: ~20,000 events (~0.3 s of 20,000 connections/s) of slack for the daemon.
        Self { ring_buffer_kib: 4096, update_interval_secs: 10 }
    }
}

impl Default for RawTracker {
    fn default() -> Self {
        // 120 s covers FIN_WAIT/LAST_ACK retransmissions to an unresponsive peer.
        Self { tcp_close_grace_secs: 120, stats_interval_secs: 60 }
    }
}

impl Default for RawOutput {
    fn default() -> Self {
        Self { format: OutputFormat::Log }
    }
}

impl RawConfig {
    /// Parses TOML text; `path` only names the source in errors.
    ///
    /// # Errors
    /// [`Error::Parse`] for invalid TOML, unknown keys or wrong types.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        toml::from_str(text).map_err(|source| Error::Parse { path: path.to_path_buf(), source: Box::new(source) })
    }

    /// Reads the explicit file, or the system file when it exists, or the defaults.
    ///
    /// # Errors
    /// [`Error::Read`] / [`Error::Parse`] for a file that exists (or was named) but is unusable.
    pub fn load(explicit: Option<&Path>) -> Result<(Self, Option<PathBuf>), Error> {
        let path = match explicit {
            Some(p) => p.to_path_buf(),
            None if Path::new(SYSTEM_CONFIG).exists() => PathBuf::from(SYSTEM_CONFIG),
            None => return Ok((Self::default(), None)),
        };
        let text = fs::read_to_string(&path).map_err(|source| Error::Read { path: path.clone(), source })?;
        Ok((Self::parse(&text, &path)?, Some(path)))
    }
}

/// Validated settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Config file the settings came from, if any.
    pub source: Option<PathBuf>,
    /// cgroup to watch, as configured (resolved against the cgroup2 mount at start).
    pub cgroup: PathBuf,
    /// Ring buffer bytes.
    pub ring_buffer_bytes: u32,
    /// Update interval.
    pub update_interval: Duration,
    /// TCP close grace.
    pub tcp_close_grace: Duration,
    /// Statistics interval.
    pub stats_interval: Duration,
    /// Output format of `monitor run`.
    pub output: OutputFormat,
    /// Country and ASN databases.
    pub geo: GeoConfig,
    /// Journal.
    pub journal: JournalConfig,
    /// Reports and weekly exports.
    pub report: ReportConfig,
    /// App grouping rules (validated when the daemon compiles them).
    pub apps: Vec<AppRule>,
}

fn positive_secs(key: &'static str, secs: u64) -> Result<Duration, Error> {
    if secs == 0 {
        return Err(Error::Invalid { key, reason: "must be at least 1 second".into() });
    }
    Ok(Duration::from_secs(secs))
}

impl Settings {
    /// Validates a raw config.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key.
    pub fn resolve(raw: RawConfig, source: Option<PathBuf>) -> Result<Self, Error> {
        let RawConfig { cgroup, probe, tracker, output, geo, journal, report, apps } = raw;
        journal.validate().map_err(|e| Error::Invalid { key: "journal", reason: e.to_string() })?;
        report.validate().map_err(|e| Error::Invalid { key: "report", reason: e.to_string() })?;
        crate::identity::AppRules::compile(&apps).map_err(|e| Error::Invalid { key: "apps", reason: e.to_string() })?;
        let kib = probe.ring_buffer_kib;
        if kib < 4 || !kib.is_power_of_two() || kib > 1 << 20 {
            return Err(Error::Invalid {
                key: "probe.ring_buffer_kib",
                reason: format!("{kib} is not a power of two between 4 and 1048576"),
            });
        }
        Ok(Self {
            source,
            cgroup,
            ring_buffer_bytes: kib * 1024,
            update_interval: positive_secs("probe.update_interval_secs", probe.update_interval_secs)?,
            tcp_close_grace: positive_secs("tracker.tcp_close_grace_secs", tracker.tcp_close_grace_secs)?,
            stats_interval: positive_secs("tracker.stats_interval_secs", tracker.stats_interval_secs)?,
            output: output.format,
            geo,
            journal,
            report,
            apps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_file_equals_built_in_defaults() {
        let parsed = RawConfig::parse(DEFAULT_CONFIG_TOML, Path::new("config/monitor.toml")).unwrap();
        assert_eq!(parsed, RawConfig::default());
    }

    #[test]
    fn shipped_config_file_documents_every_section() {
        for section in [crate::enrich::CONFIG_DOC, crate::journal::CONFIG_DOC, crate::report::CONFIG_DOC] {
            assert!(DEFAULT_CONFIG_TOML.contains(section.trim()), "config/monitor.toml lacks:\n{section}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        let err = RawConfig::parse("[probe]\nring_bufer_kib = 8\n", Path::new("x.toml")).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::new(err)).contains("ring_bufer_kib"));
        let err = RawConfig::parse("[probe]\nring_buffer_kib = \"big\"\n", Path::new("x.toml")).unwrap_err();
        assert!(matches!(err, Error::Parse { .. }));
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let raw = RawConfig::parse("[probe]\nring_buffer_kib = 6\n", Path::new("x.toml")).unwrap();
        let err = Settings::resolve(raw, None).unwrap_err();
        assert!(err.to_string().contains("probe.ring_buffer_kib"), "{err}");
        let raw = RawConfig::parse("[tracker]\nstats_interval_secs = 0\n", Path::new("x.toml")).unwrap();
        assert!(Settings::resolve(raw, None).unwrap_err().to_string().contains("stats_interval_secs"));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = RawConfig::load(Some(Path::new("/nonexistent/monitor.toml"))).unwrap_err();
        assert!(matches!(err, Error::Read { .. }));
    }
}
