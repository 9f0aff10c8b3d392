//! Residency truth per app (issue 15): how much of the app's public traffic rests on country
//! databases that agree, which destinations they disagree on, and which destinations cannot
//! physically be in their database country given the RTT the kernel measured.
//!
//! Read from the connection records of the period (`JournalReader::truth`) or, for a week the
//! rollups cover, from `endpoint_week` (`JournalReader::truth_week`, same rows): a destination's
//! answers and verdict are those of its latest record, its bytes the sum of its records' deltas,
//! its RTT the smallest the kernel measured to that address (any app). Journals older than
//! schema 4 have none of this: the figures are then absent.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{Error, fmt::share};
use crate::{
    enrich::Consensus,
    journal::{JournalReader, TimeRange, TruthRow},
    residency::{self, DeviceLocation, IMPLAUSIBLE_NOTE, Verdict},
};

/// First journal schema with answers, verdicts and RTTs.
pub(super) const TRUTH_SCHEMA: u32 = 4;

/// Consensus of the country databases over one app's public traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppConsensus {
    /// Labels of the databases compared (`primary`, `registry`, extra labels), sorted.
    pub databases: Vec<String>,
    /// Public payload bytes (up + down) in the connection records of the period.
    pub public_bytes: u64,
    /// Of which every database gave the same country.
    pub agree_bytes: u64,
    /// `agree_bytes` / `public_bytes`, percent.
    pub agree_share_pct: f64,
    /// Of which the databases that answered agree but some had no answer.
    pub partial_bytes: u64,
    /// Of which at least two databases gave different countries.
    pub disagree_bytes: u64,
    /// Of which no verdict was recorded (fewer than two databases, or older records).
    pub unchecked_bytes: u64,
    /// The destinations where the databases disagree, by bytes descending, then address.
    pub disagreements: Vec<Disagreement>,
}

/// A destination the databases put in different countries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    /// Remote address.
    pub ip: String,
    /// Payload bytes (up + down) of the app to it in the period.
    pub payload_bytes: u64,
    /// Every database's answer, the primary first.
    pub answers: Vec<AnswerUse>,
}

/// One database's answer, with provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnswerUse {
    /// `primary`, `registry` or an `[[geo.extra_country]]` label.
    pub label: String,
    /// Its country; `None`: not covered.
    pub country: Option<String>,
    /// `database_type` of the database.
    pub database_type: String,
    /// `build_epoch` of the database.
    pub build_epoch: u64,
}

/// Physical plausibility of one app's destinations.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppPlausibility {
    /// `[device] location` as configured (code or `lat,lon`).
    pub device_location: String,
    /// Public payload bytes to destinations with a measured RTT and a database country.
    pub measured_bytes: u64,
    /// Of which to destinations that cannot be in their database country.
    pub implausible_bytes: u64,
    /// `implausible_bytes` / the app's public bytes, percent.
    pub implausible_share_pct: f64,
    /// The implausible destinations, by bytes descending, then address.
    pub implausible: Vec<Implausible>,
}

/// A destination farther from the device than its round trip allows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Implausible {
    /// Remote address.
    pub ip: String,
    /// The primary database's country.
    pub country: String,
    /// Payload bytes (up + down) of the app to it in the period.
    pub payload_bytes: u64,
    /// Smallest RTT the kernel measured to the address in the period, µs.
    pub min_rtt_us: u32,
    /// Great-circle distance from the device to the nearest point of the country, km (0.1 km).
    pub distance_km: f64,
    /// Farthest the round trip reaches, km (`min_rtt_ms × 100`).
    pub bound_km: f64,
    /// The likely cause.
    pub note: &'static str,
}

/// Consensus and plausibility figures of every app, and whether plausibility was off for lack of
/// a device location while RTTs were measured (say so once).
pub(super) struct Figures {
    pub consensus: BTreeMap<String, AppConsensus>,
    pub plausibility: BTreeMap<String, AppPlausibility>,
    pub location_missing: bool,
}

/// The figures of the truth rows of a period (`source::read`).
pub(super) fn figures(rows: &[TruthRow], device: Option<&DeviceLocation>) -> Figures {
    let mut out = Figures { consensus: BTreeMap::new(), plausibility: BTreeMap::new(), location_missing: false };
    let mut by_app: BTreeMap<&str, Vec<&TruthRow>> = BTreeMap::new();
    for r in rows {
        by_app.entry(r.app.as_str()).or_default().push(r);
    }
    for (name, rows) in by_app {
        if let Some(c) = consensus(&rows) {
            out.consensus.insert(name.to_owned(), c);
        }
        match device {
            Some(d) => {
                if let Some(p) = plausibility(&rows, d) {
                    out.plausibility.insert(name.to_owned(), p);
                }
            }
            None => out.location_missing |= rows.iter().any(|r| r.min_rtt_us.is_some()),
        }
    }
    out
}

fn bytes(r: &TruthRow) -> u64 {
    r.payload_tx.saturating_add(r.payload_rx)
}

/// `None` when no record of the app had a verdict (nothing was compared).
fn consensus(rows: &[&TruthRow]) -> Option<AppConsensus> {
    if rows.iter().all(|r| r.consensus.is_none()) {
        return None;
    }
    let mut c = AppConsensus {
        databases: Vec::new(),
        public_bytes: 0,
        agree_bytes: 0,
        agree_share_pct: 0.0,
        partial_bytes: 0,
        disagree_bytes: 0,
        unchecked_bytes: 0,
        disagreements: Vec::new(),
    };
    let mut labels = BTreeSet::new();
    for r in rows {
        let b = bytes(r);
        c.public_bytes += b;
        labels.extend(r.answers.iter().map(|a| a.label.clone()));
        match r.consensus {
            Some(Consensus::Agree) => c.agree_bytes += b,
            Some(Consensus::Partial) => c.partial_bytes += b,
            Some(Consensus::Disagree) => {
                c.disagree_bytes += b;
                c.disagreements.push(Disagreement {
                    ip: r.ip.clone(),
                    payload_bytes: b,
                    answers: r
                        .answers
                        .iter()
                        .map(|a| AnswerUse {
                            label: a.label.clone(),
                            country: a.country.clone(),
                            database_type: a.database_type.clone(),
                            build_epoch: a.build_epoch,
                        })
                        .collect(),
                });
            }
            None => c.unchecked_bytes += b,
        }
    }
    c.databases = labels.into_iter().collect();
    c.agree_share_pct = share(c.agree_bytes, c.public_bytes);
    c.disagreements.sort_by(|a, b| b.payload_bytes.cmp(&a.payload_bytes).then_with(|| a.ip.cmp(&b.ip)));
    Some(c)
}

/// `None` when no destination of the app has both an RTT and a country.
fn plausibility(rows: &[&TruthRow], device: &DeviceLocation) -> Option<AppPlausibility> {
    let public: u64 = rows.iter().map(|r| bytes(r)).sum();
    let mut p = AppPlausibility {
        device_location: device.label(),
        measured_bytes: 0,
        implausible_bytes: 0,
        implausible_share_pct: 0.0,
        implausible: Vec::new(),
    };
    let mut any = false;
    for r in rows {
        let (Some(rtt), Some(country)) = (r.min_rtt_us, r.country.as_deref()) else {
            continue;
        };
        // A code without territory (e.g. "EU", "AP" in some databases) cannot be judged, nor can
        // anything from a device point off the Earth (the settings refuse one; built in code).
        let Ok(e) = residency::plausibility(device, country, rtt) else {
            continue;
        };
        any = true;
        p.measured_bytes += bytes(r);
        if e.verdict == Verdict::Implausible {
            p.implausible_bytes += bytes(r);
            p.implausible.push(Implausible {
                ip: r.ip.clone(),
                country: country.to_owned(),
                payload_bytes: bytes(r),
                min_rtt_us: rtt,
                distance_km: (e.distance_km * 10.0).round() / 10.0,
                bound_km: e.bound_km,
                note: IMPLAUSIBLE_NOTE,
            });
        }
    }
    p.implausible_share_pct = share(p.implausible_bytes, public);
    p.implausible.sort_by(|a, b| b.payload_bytes.cmp(&a.payload_bytes).then_with(|| a.ip.cmp(&b.ip)));
    any.then_some(p)
}

/// Destinations whose bytes rest on disagreeing database answers, per app (for claims: a claim
/// whose violating or satisfying bytes go there is inconclusive by default).
///
/// # Errors
/// When the journal cannot be read.
pub fn disagreeing_destinations(
    reader: &JournalReader,
    range: TimeRange,
    app: Option<&str>,
) -> Result<Vec<TruthRow>, Error> {
    if reader.schema_version()? < TRUTH_SCHEMA {
        return Ok(Vec::new());
    }
    Ok(reader.truth(range, app, None)?.into_iter().filter(|r| r.consensus == Some(Consensus::Disagree)).collect())
}
