//! Verdicts as reports carry them ([`ClaimSummary`]): `monitor report` and the weekly exports
//! (the HTML page shows them) judge the configured claims over the report's period and add one
//! line per claim; the evidence stays with `monitor verify`.

use std::path::Path;

use super::{ClaimSet, Error, Verdicts, evaluate};
use crate::{
    journal::JournalReader,
    report::{ClaimSummary, Report, ReportQuery},
};

/// One summary per claim of `verdicts`.
#[must_use]
pub fn summaries(verdicts: &Verdicts) -> Vec<ClaimSummary> {
    verdicts
        .claims
        .iter()
        .map(|c| ClaimSummary {
            claim: c.claim.clone(),
            apps: c.apps.clone(),
            verdict: crate::variant::name(c.verdict).into(),
            reasons: c.reasons.clone(),
            total: c.bytes.total,
            satisfying: c.bytes.satisfying,
            violating: c.bytes.violating,
            unknown: c.bytes.unknown_country + c.bytes.unknown_asn + c.bytes.unnamed,
        })
        .collect()
}

/// Judges the claims `set` of `file` (as the config validated them, [`super::ClaimsConfig::load`], or
/// read again, [`super::ClaimsConfig::read`]) over `query`'s period (and session) and sets
/// `report.claims`.
///
/// # Errors
/// When the journal cannot be read.
pub fn annotate(
    reader: &JournalReader,
    query: &ReportQuery,
    (set, file): (&ClaimSet, &Path),
    report: &mut Report,
) -> Result<(), Error> {
    let mut evidence = query.clone();
    evidence.evidence = true;
    let judged = Report::build(reader, &evidence)?;
    report.claims = summaries(&evaluate(set, &judged, Some(file)));
    Ok(())
}
