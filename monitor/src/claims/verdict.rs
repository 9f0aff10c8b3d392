//! Verdicts as data: the JSON form is schema [`VERDICTS_SCHEMA`](super::VERDICTS_SCHEMA),
//! documented in `SCHEMA.md` beside this file (fields only added within one version).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::Direction;
use crate::report::{DestinationDetail, PeriodInfo};

/// Verdicts of every claim of a claims file over one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdicts {
    /// [`VERDICTS_SCHEMA`](super::VERDICTS_SCHEMA).
    pub schema: &'static str,
    /// The period judged.
    pub period: PeriodInfo,
    /// Claims file, when read from one.
    pub claims_file: Option<String>,
    /// When the verdicts were made, if the caller asked for it.
    pub generated_at: Option<Timestamp>,
    /// Counts per verdict.
    pub summary: Summary,
    /// Events lost in the period (kernel ring buffer plus journal drops).
    pub lost_events: u64,
    /// One entry per claim, in file order.
    pub claims: Vec<ClaimVerdict>,
}

/// Counts per verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Claims that hold.
    pub pass: u64,
    /// Claims violated.
    pub fail: u64,
    /// Claims that cannot be judged.
    pub inconclusive: u64,
}

/// A verdict. Named by its serde derive (`pass`, `inconclusive`, `fail`: JSON, report summaries)
/// and, in capitals, by its strum derive ([`Verdict::label`]: tables and alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    /// The claim holds.
    Pass,
    /// The claim cannot be judged (unknowns or losses past its thresholds, no traffic).
    Inconclusive,
    /// The claim is violated.
    Fail,
}

impl Verdict {
    /// `PASS`, `FAIL`, `INCONCLUSIVE`.
    #[must_use]
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// Bytes of a claim (in its direction) by how they were judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ClaimBytes {
    /// All bytes of the selected apps in the claim's direction (exempt ones included).
    pub total: u64,
    /// Bytes to destinations that satisfy every rule.
    pub satisfying: u64,
    /// Bytes to destinations that break a rule.
    pub violating: u64,
    /// Bytes that could not be judged because a needed country was unknown (or disputed).
    pub unknown_country: u64,
    /// Bytes that could not be judged because a needed ASN/organisation was unknown.
    pub unknown_asn: u64,
    /// Bytes that could not be judged because a needed hostname was unknown.
    pub unnamed: u64,
    /// Bytes to non-public addresses (loopback, private, link-local...): not judged.
    pub exempt: u64,
    /// Bytes, to destinations that break a rule, of processes whose executable is unknown (they
    /// ended before /proc was read: named by the kernel's 15-character name only) where the claim
    /// selects by executable or unit: they may be the claim's, so the claim cannot pass. Not in
    /// `total`.
    pub unidentified_violating: u64,
}

/// The verdict of one claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClaimVerdict {
    /// Claim name.
    pub claim: String,
    /// Its description.
    pub description: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why, as sentences (empty for a plain pass).
    pub reasons: Vec<String>,
    /// Which bytes the claim is about (`upload` or `both`).
    pub direction: Direction,
    /// Apps with traffic selected by the claim.
    pub apps: Vec<String>,
    /// Bytes by judgement.
    pub bytes: ClaimBytes,
    /// Unknown-country bytes as a percentage of the judged (non-exempt) bytes.
    pub unknown_country_pct: f64,
    /// Unknown-ASN bytes as a percentage of the judged bytes.
    pub unknown_asn_pct: f64,
    /// Unnamed bytes as a percentage of the judged bytes.
    pub unnamed_pct: f64,
    /// With `min_share`: the share of the judged bytes going to its destinations.
    pub min_share_pct: Option<f64>,
    /// Every violating destination with its evidence, by bytes descending.
    pub violations: Vec<Violation>,
}

/// A destination that violates a claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// App of the traffic.
    pub app: String,
    /// Rule broken: `denied_countries`, `allowed_countries`, `denied_asns`, `denied_orgs`,
    /// `allowed_networks`, `denied_hosts`, `allowed_hosts` or `min_share`.
    pub rule: &'static str,
    /// Bytes in the claim's direction.
    pub bytes: u64,
    /// The destination, with only the selected processes' traffic.
    pub destination: DestinationDetail,
}
