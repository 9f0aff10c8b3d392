//! The residency-truth part of an app's section: consensus of the databases, implausible
//! destinations with their evidence.

use super::doc::{Block, Escape, table};
use crate::report::{
    AppReport,
    fmt::{bytes, grouped, pct},
};

/// Blocks for `a`'s consensus and plausibility (none when the report has neither).
pub(super) fn blocks(a: &AppReport, esc: Escape) -> Vec<Block> {
    let mut d = Vec::new();
    if let Some(c) = &a.consensus {
        d.push(Block::Heading(3, "Database consensus".into()));
        d.push(Block::Para(format!(
            "Country databases compared: {}. Of {} of public payload, {} ({}) rest on databases that all agree; {} \
             partly answered; {} disagree; {} not compared.",
            c.databases.iter().map(|l| esc(l)).collect::<Vec<_>>().join(", "),
            bytes(c.public_bytes),
            bytes(c.agree_bytes),
            pct(c.agree_share_pct),
            bytes(c.partial_bytes),
            bytes(c.disagree_bytes),
            bytes(c.unchecked_bytes),
        )));
        if !c.disagreements.is_empty() {
            let rows = c
                .disagreements
                .iter()
                .map(|x| {
                    let answers = x
                        .answers
                        .iter()
                        .map(|a| format!("{} {}", esc(&a.label), a.country.as_deref().map_or_else(|| "-".into(), esc)))
                        .collect::<Vec<_>>()
                        .join(", ");
                    vec![esc(&x.ip), answers, bytes(x.payload_bytes)]
                })
                .collect();
            d.push(table(&[("Destination", false), ("Answers", false), ("Payload", true)], rows));
        }
    }
    if let Some(p) = &a.plausibility {
        d.push(Block::Heading(3, "Physical plausibility".into()));
        d.push(Block::Para(format!(
            "Device at {}. {} of payload went to destinations that cannot be in their database country ({} of public \
             payload; {} measured).",
            esc(&p.device_location),
            bytes(p.implausible_bytes),
            pct(p.implausible_share_pct),
            bytes(p.measured_bytes),
        )));
        if !p.implausible.is_empty() {
            let rows = p
                .implausible
                .iter()
                .map(|x| {
                    vec![
                        esc(&x.ip),
                        esc(&x.country),
                        format!("{:.3} ms", f64::from(x.min_rtt_us) / 1000.0),
                        format!("{} km", grouped(x.distance_km.round() as u64)),
                        format!("{:.1} km", x.bound_km),
                        bytes(x.payload_bytes),
                        x.note.to_string(),
                    ]
                })
                .collect();
            d.push(table(
                &[
                    ("Destination", false),
                    ("Country", false),
                    ("Min RTT", true),
                    ("Distance", true),
                    ("Bound", true),
                    ("Payload", true),
                    ("Likely", false),
                ],
                rows,
            ));
        }
    }
    d
}
