//! Configuration: the TOML file (`config/monitor.toml` documents every key and its default),
//! parsed strictly into [`RawConfig`], then validated into [`Settings`].
//!
//! Precedence: built-in defaults < config file < command-line flags. An explicit file that is
//! missing or does not parse is an error, never a silent fallback to defaults.
//!
//! Every command takes [`Settings`]. The sections' own types are also what their components take,
//! so each component checks its section again where a wrong value would do harm (the journal's
//! ranges, the geo labels, the name table's sizes, the metrics endpoint's loopback rule, the
//! alert command's timeout, a device point): a config built in code cannot skip these checks.

use std::{
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::residency::DeviceConfig;
use crate::{
    claims::ClaimsConfig,
    enrich::GeoConfig,
    evidence::EvidenceConfig,
    files,
    identity::{AppRule, AppRules},
    journal::JournalConfig,
    metrics::MetricsConfig,
    names::table::NameTableConfig,
    report::{ReportConfig, ReportSettings},
    zone::{UnknownZone, Zone},
};

/// Default config file, read when it exists and no `--config` is given.
pub const SYSTEM_CONFIG: &str = "/etc/monitor/monitor.toml";

/// The documented defaults (this repository's `config/monitor.toml`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../../config/monitor.toml");

/// Largest config file read (1 MiB): a documented config is ~6 KiB; thousands of `[[apps]]`
/// rules fit. Larger files, FIFOs and devices are refused (see [`files::read_regular`]).
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// Configuration errors (exit code 2).
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("the config file")]
    Read {
        path: PathBuf,
        #[source]
        source: files::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type...).
    #[error("invalid config file `{}`", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    /// A section's value is invalid; its error names the key and says why.
    #[error(transparent)]
    Section(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A section's or key's value is invalid (the source, its owner's error, says why).
    #[error("invalid value for `{key}`")]
    Value {
        key: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// A time zone name that is not in the time zone database (the source names it).
    #[error("invalid value for `{key}`")]
    TimeZone {
        key: &'static str,
        #[source]
        source: UnknownZone,
    },
    /// A database named in `[geo]` cannot serve its role (the source names the file and why).
    #[error("invalid value in `[geo]`")]
    Geo(#[source] crate::enrich::Error),
    /// The claims file `[claims] file` names is missing or invalid (the source says why).
    #[error("invalid value for `claims.file`")]
    Claims(#[source] crate::claims::Error),
}

/// The file as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[names]`: sizes and freshness of the per-app name table.
    pub names: NameTableConfig,
    /// `[[apps]]`: grouping of processes into named apps.
    pub apps: Vec<AppRule>,
    /// `[claims]`: the claims file and live alerts.
    pub claims: ClaimsConfig,
    /// `[android]`: app identity inside an Android guest.
    pub android: RawAndroid,
    /// `[device]`: where this device is (plausibility of database countries).
    pub device: DeviceConfig,
    /// `[evidence]`: signing key of evidence bundles and weekly exports.
    pub evidence: EvidenceConfig,
}

/// `[android]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAndroid {
    /// `packages.list` naming app UIDs by package; unset: `/data/system/packages.list` when it
    /// exists.
    pub packages_list: Option<PathBuf>,
}

/// `[probe]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProbe {
    /// Ring buffer size in KiB.
    pub ring_buffer_kib: u32,
    /// Seconds between periodic updates.
    pub update_interval_secs: u64,
    /// Copy DNS, TLS and QUIC payloads for host names.
    pub copy_payloads: bool,
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

/// How `monitor run` shows records. The names ([`OutputFormat::name`], the variants' names in
/// lower case, derived) are the only spelling: config (serde), `--output` (clap) and messages
/// use them; [`OutputFormat::ALL`] is derived from the variants too.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Default,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(serialize_all = "lowercase")]
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

impl OutputFormat {
    /// Every format.
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// Name in the config and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for OutputFormat {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        name.parse().map_err(|_: strum::ParseError| {
            let expected = crate::variant::or_list(Self::ALL.iter().map(|f| f.name()));
            format!("unknown output format `{name}` (expected {expected})")
        })
    }
}

impl clap::ValueEnum for OutputFormat {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
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
            metrics: MetricsConfig::default(),
            names: NameTableConfig::default(),
            apps: Vec::new(),
            claims: ClaimsConfig::default(),
            android: RawAndroid::default(),
            device: DeviceConfig::default(),
            evidence: EvidenceConfig::default(),
        }
    }
}

impl Default for RawProbe {
    fn default() -> Self {
        // 2 MiB: ~9,360 events of slack for the daemon, which drains the ring at most 4 ms apart
        // while events flow, at once after a read of an eighth of it (`probe::ring::BUSY_SHARE`;
        // a queue behind it absorbs bursts); resident memory counts it twice.
        Self { ring_buffer_kib: 2048, update_interval_secs: 10, copy_payloads: true }
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
        let text = files::read_regular_to_string(&path, CONFIG_MAX_BYTES)
            .map_err(|source| Error::Read { path: path.clone(), source })?;
        Ok((Self::parse(&text, &path)?, Some(path)))
    }
}

/// Validated settings: what every command uses (never the [`RawConfig`]).
#[derive(Debug, Clone)]
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
    /// Reports and weekly exports, with `report.time_zone` looked up: the one zone the
    /// journal's rollups, the weekly export and every report use (commands may override it
    /// with `--time-zone`).
    pub report: ReportSettings,
    /// Sizes and freshness of the per-app name table.
    pub names: NameTableConfig,
    /// Copy DNS, TLS and QUIC payloads in the kernel for host names (`probe.copy_payloads`).
    pub copy_payloads: bool,
    /// The Prometheus endpoint (validated: loopback unless explicitly allowed).
    pub metrics: MetricsConfig,
    /// App grouping rules, compiled.
    pub apps: AppRules,
    /// Claims file and alert command.
    pub claims: ClaimsConfig,
    /// `android.packages_list` (unset: the Android default when it exists).
    pub android_packages_list: Option<PathBuf>,
    /// `[device]`, validated.
    pub device: DeviceConfig,
    /// Evidence signing keys.
    pub evidence: EvidenceConfig,
}

impl Settings {
    /// Reads what `run` reads at start beyond the config file and the databases: the metrics
    /// token file, when `[metrics]` is on. `check` and `config dump` call it, so that neither
    /// passes a config that `run` refuses (other commands never serve metrics, and need not be
    /// able to read the token).
    ///
    /// # Errors
    /// [`Error::Invalid`] (`metrics.token_file`) for an unreadable or short token file.
    ///
    /// A token file this user may not read (root's, mode 0600, read by a user's `check`) is not
    /// judged: `run` reads it as root.
    pub fn check_run_files(&self) -> Result<(), Error> {
        if !self.metrics.enabled {
            return Ok(());
        }
        match self.metrics.token() {
            Ok(_) => Ok(()),
            Err(crate::metrics::Error::Token { source: crate::files::Error::Io { source, .. }, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied && !nix::unistd::geteuid().is_root() =>
            {
                Ok(())
            }
            Err(e) => Err(invalid("metrics.token_file")(e)),
        }
    }
}

/// [`Error::Value`] for `key`, its source the error of the component that judged it.
fn invalid<E: std::error::Error + Send + Sync + 'static>(key: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Value { key, source: Box::new(e) }
}

fn positive_secs(key: &'static str, secs: u64) -> Result<Duration, Error> {
    if secs == 0 {
        return Err(Error::Invalid { key, reason: "must be at least 1 second".into() });
    }
    Ok(Duration::from_secs(secs))
}

/// A timer of the tracker: 1 second to [`crate::tracker::MAX_TIMER_SECS`] (a day).
fn timer_secs(key: &'static str, secs: u64) -> Result<Duration, Error> {
    if secs > crate::tracker::MAX_TIMER_SECS {
        return Err(Error::Invalid {
            key,
            reason: format!("must be at most {} seconds (a day)", crate::tracker::MAX_TIMER_SECS),
        });
    }
    positive_secs(key, secs)
}

/// `[report]` validated: the one place `report.time_zone` is parsed. The evidence key and the
/// device location are copied in for the weekly export.
fn resolve_report(
    report: ReportConfig,
    evidence: &EvidenceConfig,
    device: &DeviceConfig,
) -> Result<ReportSettings, Error> {
    report.validate().map_err(invalid("report"))?;
    let ReportConfig { time_zone, export_dir, export_formats } = report;
    let time_zone = Zone::get(&time_zone).map_err(|source| Error::TimeZone { key: "report.time_zone", source })?;
    Ok(ReportSettings {
        time_zone,
        export_dir,
        export_formats,
        sign_with: evidence.secret_key.clone(),
        device: device.location.clone(),
    })
}

impl Settings {
    /// Validates a raw config.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key.
    pub fn resolve(raw: RawConfig, source: Option<PathBuf>) -> Result<Self, Error> {
        let RawConfig {
            cgroup,
            probe,
            tracker,
            output,
            geo,
            journal,
            report,
            metrics,
            names,
            apps,
            claims,
            android,
            device,
            evidence,
        } = raw;
        let mut claims = claims;
        claims.groups = apps.iter().map(|a| a.name.clone()).collect();
        claims.validate().map_err(invalid("claims"))?;
        // Read here, once, for every command: `report` and `verify` judge it, the daemon alerts.
        claims.keep_loaded().map_err(Error::Claims)?;
        metrics.validate().map_err(invalid("metrics"))?;
        names.validate().map_err(invalid("names"))?;
        geo.check_labels().map_err(invalid("geo.extra_country"))?;
        geo.check_files().map_err(Error::Geo)?;
        if let Some(location) = &device.location {
            location.validate().map_err(invalid("device.location"))?;
        }
        // Its errors name their `journal.` key already.
        journal.validate().map_err(|e| Error::Section(Box::new(e)))?;
        let report = resolve_report(report, &evidence, &device)?;
        let apps = AppRules::compile(&apps).map_err(invalid("apps"))?;
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
            update_interval: timer_secs("probe.update_interval_secs", probe.update_interval_secs)?,
            copy_payloads: probe.copy_payloads,
            tcp_close_grace: timer_secs("tracker.tcp_close_grace_secs", tracker.tcp_close_grace_secs)?,
            stats_interval: timer_secs("tracker.stats_interval_secs", tracker.stats_interval_secs)?,
            output: output.format,
            geo,
            journal,
            report,
            names,
            metrics,
            apps,
            claims,
            android_packages_list: android.packages_list,
            device,
            evidence,
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
        for section in [
            crate::enrich::CONFIG_DOC,
            crate::journal::CONFIG_DOC,
            crate::report::CONFIG_DOC,
            crate::claims::CONFIG_DOC,
            crate::metrics::CONFIG_DOC,
            crate::names::table::CONFIG_DOC,
            crate::residency::CONFIG_DOC,
            crate::evidence::CONFIG_DOC,
        ] {
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
    fn non_loopback_metrics_listen_is_refused_at_config_load() {
        let raw =
            RawConfig::parse("[metrics]\nenabled = true\nlisten = \"0.0.0.0:9464\"\n", Path::new("x.toml")).unwrap();
        let err = Settings::resolve(raw, None).unwrap_err();
        let text = crate::errors::chain(&err);
        assert!(text.contains("metrics") && text.contains("allow_remote"), "{text}");
        let text = "[metrics]\nenabled = true\nlisten = \"0.0.0.0:9464\"\nallow_remote = true\n";
        assert!(Settings::resolve(RawConfig::parse(text, Path::new("x.toml")).unwrap(), None).is_ok());
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let raw = RawConfig::parse("[probe]\nring_buffer_kib = 6\n", Path::new("x.toml")).unwrap();
        let err = Settings::resolve(raw, None).unwrap_err();
        assert!(err.to_string().contains("probe.ring_buffer_kib"), "{err}");
        let raw = RawConfig::parse("[tracker]\nstats_interval_secs = 0\n", Path::new("x.toml")).unwrap();
        assert!(Settings::resolve(raw, None).unwrap_err().to_string().contains("stats_interval_secs"));
        for (section, key) in
            [("probe", "update_interval_secs"), ("tracker", "tcp_close_grace_secs"), ("tracker", "stats_interval_secs")]
        {
            let resolve = |secs: u64| {
                Settings::resolve(
                    RawConfig::parse(&format!("[{section}]\n{key} = {secs}\n"), Path::new("x.toml")).unwrap(),
                    None,
                )
            };
            let err = resolve(crate::tracker::MAX_TIMER_SECS + 1).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("at most 86400"), "{err}");
            assert!(resolve(crate::tracker::MAX_TIMER_SECS).is_ok(), "{key}");
        }
        // At most an hour of records lost to a kill.
        let flush = |secs: u64| {
            let text = format!("[journal]\nflush_interval_secs = {secs}\n");
            Settings::resolve(RawConfig::parse(&text, Path::new("x.toml")).unwrap(), None)
        };
        let err = crate::errors::chain(&flush(3601).unwrap_err());
        assert!(err.contains("flush_interval_secs") && err.contains("3600"), "{err}");
        assert!(flush(3600).is_ok() && flush(u64::MAX).is_err() && flush(0).is_err());
        // An alert command's timeout: a huge one overflowed its deadline and panicked the alert
        // thread (review finding).
        let alert = |secs: u64| {
            let text = format!("[claims]\nalert_timeout_secs = {secs}\n");
            Settings::resolve(RawConfig::parse(&text, Path::new("x.toml")).unwrap(), None)
        };
        let err = crate::errors::chain(&alert(u64::MAX).unwrap_err());
        assert!(err.contains("alert_timeout_secs") && err.contains("3600"), "{err}");
        assert!(alert(3600).is_ok() && alert(3601).is_err() && alert(0).is_err());
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let err = RawConfig::load(Some(Path::new("/nonexistent/monitor.toml"))).unwrap_err();
        assert!(matches!(err, Error::Read { .. }));
    }

    #[test]
    fn output_format_names_agree_in_config_cli_and_display() {
        use clap::ValueEnum as _;
        for &format in OutputFormat::ALL {
            let raw = RawConfig::parse(&format!("[output]\nformat = \"{format}\"\n"), Path::new("x.toml")).unwrap();
            assert_eq!(raw.output.format, format);
            assert_eq!(OutputFormat::from_str(format.name(), false), Ok(format));
            assert_eq!(toml::to_string(&raw.output).unwrap(), format!("format = \"{}\"\n", format.name()));
        }
        let err = RawConfig::parse("[output]\nformat = \"xml\"\n", Path::new("x.toml")).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::new(err)).contains("expected log, json or none"));
    }

    #[test]
    fn report_format_names_agree_in_config_cli_and_display() {
        use crate::report::Format;
        use clap::ValueEnum as _;
        let names: Vec<String> = Format::ALL.iter().map(|f| format!("\"{f}\"")).collect();
        let text = format!("[report]\nexport_formats = [{}]\n", names.join(", "));
        let raw = RawConfig::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(raw.report.export_formats, Format::ALL);
        for &format in Format::ALL {
            assert_eq!(Format::from_str(format.name(), false), Ok(format));
            assert_eq!(format.name().parse::<Format>().unwrap(), format);
        }
        let err = RawConfig::parse("[report]\nexport_formats = [\"pdf\"]\n", Path::new("x.toml")).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::new(err)).contains("unknown report format `pdf`"));
    }

    #[test]
    fn resolved_settings_carry_the_time_zone_and_compiled_rules() {
        let text = "[report]\ntime_zone = \"Europe/Berlin\"\n[[apps]]\nname = \"web\"\ncomm = [\"nginx\"]\n";
        let settings = Settings::resolve(RawConfig::parse(text, Path::new("x.toml")).unwrap(), None).unwrap();
        assert_eq!(settings.report.time_zone.name, "Europe/Berlin");
        assert_eq!(settings.report.time_zone.tz.iana_name(), Some("Europe/Berlin"));
        let subject = crate::identity::rules::Subject { comm: "nginx", ..Default::default() };
        assert_eq!(settings.apps.name_for(&subject), Some("web"));
    }

    #[test]
    fn an_unknown_time_zone_is_refused_at_resolution_naming_key_and_value() {
        let raw = RawConfig::parse("[report]\ntime_zone = \"Mars/Olympus\"\n", Path::new("x.toml")).unwrap();
        let err = Settings::resolve(raw, None).unwrap_err();
        assert!(
            matches!(&err, Error::TimeZone { key: "report.time_zone", source } if source.name == "Mars/Olympus"),
            "{err:?}"
        );
        let text = crate::errors::chain(&err);
        let expected = "invalid value for `report.time_zone`: unknown time zone `Mars/Olympus` (expected an IANA name \
                        such as Europe/Berlin)";
        assert!(text.starts_with(expected), "{text}");
    }
}
