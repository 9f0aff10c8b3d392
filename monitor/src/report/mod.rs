//! Reports: per-app residency summaries built from the journal.
//!
//! Owns turning journal rows into figures ([`Report::build`]) and presenting them
//! ([`Report::render`] as `table`, `json`, `csv`, `markdown` or `html`), plus the weekly export
//! ([`export_week`], [`pending_exports`]). Does not write journal rows (except the `exports`
//! bookkeeping) and does not look anything up: every figure comes from the journal, and the
//! report says from which rows, databases and statistics.
//!
//! Bytes are payload bytes (what the app sent and received), with IP-layer ("wire") bytes beside
//! them. Periods are ISO 8601 weeks cut in the configured time zone (Monday 00:00 to the next
//! Monday 00:00 local time) or explicit instants; bytes count when the time of the record that
//! reported them is in the period, whatever its bounds (periods on whole residency intervals
//! read the residency table, others the connection records: `source::Figures`). Output is
//! deterministic: same journal, same query, same bytes.
//! The JSON form is versioned ([`SCHEMA`]) and documented in `SCHEMA.md` beside this file.

mod build;
mod config;
mod destinations;
mod export;
mod fmt;
mod join;
pub mod merge;
mod model;
mod notes;
mod period;
pub mod promql;
pub(crate) mod render;
pub mod services;
mod source;
mod timeline;
mod truth;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use build::{DEFAULT_TOP_ENDPOINTS, ReportQuery};
pub use config::{CONFIG_DOC, ReportConfig, ReportSettings};
pub use destinations::{DatabaseAnswer, DestinationDetail, ProcessUse};
pub(crate) use export::write_atomic;
pub use export::{EXPORT_GRACE, ExportExtras, export_week, pending_exports};
pub use join::{
    DEFAULT_SKEW_SECS, EMULATOR_APP_PREFIX, EmulatorJoin, FlowBytes, JoinedEndpoint, JoinedPackage, PairDifference,
    UnexplainedTraffic,
};
pub use model::{
    AndroidApp, AppReport, AsnRef, Attribution, ClaimSummary, Completeness, DatabaseUse, Endpoint, HostApp,
    HostSummary, HostTraffic, NewDestinations, PeriodInfo, Report, SessionInfo, Share, ShareKind, SourceShare,
    TimeBucket, TimelineInfo, TimelineUnit, Traffic, Unknown,
};
pub use period::{Period, PeriodKind};
use serde::{Deserialize, Serialize};
pub use truth::{AnswerUse, AppConsensus, AppPlausibility, Disagreement, Implausible, disagreeing_destinations};

use crate::journal;

/// Version tag of the JSON report (`"schema"`): bumped only for incompatible changes.
pub const SCHEMA: &str = "monitor.report/1";

/// Attribution required by the licences of the default databases (DB-IP Country Lite and the
/// ip-location-db ASN data, CC BY 4.0).
pub const ATTRIBUTION: &str = "IP geolocation by DB-IP (db-ip.com), CC BY 4.0. ASN data: RouteViews (CC BY 4.0), NRO \
                               statistics (CC BY 4.0), DB-IP ASN Lite (CC BY 4.0), via ip-location-db.";

/// Output format. The names ([`Format::name`], the variants' names in lower case, derived) are
/// the only spelling: config (serde), `--format` (clap), the journal's `exports` rows and
/// messages use them; [`Format::ALL`] is derived from the variants too.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::VariantArray,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(into = "&'static str", try_from = "String")]
#[strum(serialize_all = "lowercase")]
pub enum Format {
    /// Terminal tables (default of `monitor report`).
    Table,
    /// JSON, schema [`SCHEMA`].
    Json,
    /// CSV: `#` comment lines with period, completeness, databases and attribution, then rows.
    Csv,
    /// Markdown document.
    Markdown,
    /// Self-contained HTML page with maps and charts (inline CSS and SVG, no script).
    Html,
}

impl Format {
    /// Every format.
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// Name as written in the configuration.
    #[must_use]
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// The names, for messages: "a, b or c".
    #[must_use]
    pub fn names() -> String {
        crate::variant::or_list(Self::ALL.iter().map(|f| f.name()))
    }

    /// File extension of exports.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Self::Table => "txt",
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Markdown => "md",
            Self::Html => "html",
        }
    }
}

impl Format {
    /// The format named `name`.
    ///
    /// # Errors
    /// An unknown name.
    pub fn parse_name(name: &str) -> Result<Self, Error> {
        name.parse().map_err(|_: strum::ParseError| Error::Format { name: name.to_owned(), expected: Self::names() })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<String> for Format {
    type Error = Error;

    fn try_from(name: String) -> Result<Self, Error> {
        Self::parse_name(&name)
    }
}

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// Report errors.
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the journal failed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// Not an ISO week such as "2026-W47".
    #[error("invalid ISO week `{week}` (expected e.g. 2026-W47): {reason}")]
    Week { week: String, reason: String },
    /// Not a date or date-time.
    #[error("invalid time `{text}`: {reason} (expected e.g. 2026-11-16, 2026-11-16T08:00 or 2026-11-16T08:00:00Z)")]
    Time { text: String, reason: String },
    /// A period whose end is not after its start.
    #[error("invalid report period: until ({until}) is not after since ({since})")]
    EmptyPeriod { since: jiff::Timestamp, until: jiff::Timestamp },
    /// A period that reaches beyond the range of times jiff represents.
    #[error("invalid report period: beyond the range of representable times")]
    Period(#[source] jiff::Error),
    /// Unknown format name.
    #[error("unknown report format `{name}` (expected {expected})")]
    Format { name: String, expected: String },
    /// Writing the output failed.
    #[error("cannot write the {format} report")]
    Write {
        format: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// JSON serialisation failed.
    #[error("cannot write the json report")]
    Json(#[source] serde_json::Error),
    /// The HTML template failed to render.
    #[error("cannot render the html report")]
    Html(#[source] minijinja::Error),
    /// CSV serialisation failed.
    #[error("cannot write the csv report")]
    Csv(#[source] csv::Error),
    /// Writing an export file failed.
    #[error("cannot write report export `{}`", path.display())]
    Export {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The export directory is not safe to write to (another user could plant files there).
    #[error("refusing to write reports to `{}`: {reason}", path.display())]
    ExportDir { path: PathBuf, reason: String },
    /// A configuration value is out of range.
    #[error("invalid value for `report.{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}
