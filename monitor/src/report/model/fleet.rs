//! Fleet reports in the model: the `hosts` list and the per-app `by_host` columns that
//! `monitor report merge` and `monitor report --prometheus` add (absent from a single machine's
//! report), and reading a report back from its JSON form to render it in any format.

use serde::{Deserialize, Deserializer, Serialize};

use super::{Report, Traffic};

/// One machine of a fleet report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostSummary {
    /// Host label.
    pub host: String,
    /// That machine's totals.
    pub totals: Traffic,
    /// That machine's apps.
    #[serde(default)]
    pub apps: Vec<HostApp>,
}

/// An app's figures on one machine of a fleet report (in [`HostSummary::apps`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostApp {
    /// App name.
    pub app: String,
    /// Its traffic on that machine.
    pub traffic: Traffic,
    /// Flows that started in the period on that machine.
    #[serde(default)]
    pub flows: u64,
}

/// A machine's share of an app in a fleet report (in an app's `by_host` column).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTraffic {
    /// Host label.
    pub host: String,
    /// The app's traffic on that machine.
    pub traffic: Traffic,
    /// Flows that started in the period on that machine.
    #[serde(default)]
    pub flows: u64,
}

/// `&'static str` under another name: serde's derive would borrow a field spelled `&'static str`
/// from the input (a `Deserialize<'static>` only); these fields are read by the functions below.
pub(super) type StaticText = &'static str;

/// Reads the `schema` tag: only [`SCHEMA`](crate::report::SCHEMA) is a report this build can read.
pub(super) fn schema_tag<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let tag = String::deserialize(d)?;
    if tag == crate::report::SCHEMA {
        Ok(crate::report::SCHEMA)
    } else {
        Err(serde::de::Error::custom(format!("schema `{tag}` is not {}", crate::report::SCHEMA)))
    }
}

/// Reads the attribution text: the licences' text of this build (the same within a schema).
pub(super) fn attribution_text<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    String::deserialize(d)?;
    Ok(crate::report::ATTRIBUTION)
}

impl Report {
    /// A report from its JSON form (e.g. a fleet report of [`merge`](crate::report::merge)), to render
    /// it in any format. Fields this build does not know are ignored; per-host evidence that a
    /// fleet report does not combine (`destinations`, `consensus`, `plausibility`) is not read.
    ///
    /// # Errors
    /// When the JSON is not a report of [`SCHEMA`](crate::report::SCHEMA).
    pub fn from_json(v: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(v)
    }
}
