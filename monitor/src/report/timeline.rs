//! Per-app timelines: payload per local day (per hour for periods of two days or less), from the
//! same source as the period's figures ([`Figures`]): the journal's fine residency rows (a row
//! counts in the bucket its interval starts in; bucket bounds inside a period on whole intervals
//! are interval bounds too) or the connection records (by record time). So the buckets of an
//! app add up to its payload while the fine rows are there ([`TimelineInfo::complete`] says
//! whether they did).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::{AppReport, Error, ReportQuery, TimeBucket, TimelineInfo, TimelineUnit, source::Figures};
use crate::journal::QUARTER;
use crate::journal::{JournalReader, TimeRange};

/// Periods up to this long get hourly buckets.
const HOURLY_UP_TO: SignedDuration = SignedDuration::from_hours(48);
/// Buckets per timeline at most (a year of days fits); the last bucket of a longer range
/// extends to the end of the period.
const MAX_BUCKETS: usize = 400;

/// Bucket bounds of `[since, until)`: local midnights (or whole UTC hours) in between.
fn bounds(query: &ReportQuery, unit: TimelineUnit) -> Vec<(Timestamp, Timestamp)> {
    let p = &query.period;
    let mut out = Vec::new();
    let mut t = p.since;
    while t < p.until && out.len() < MAX_BUCKETS {
        let next = match unit {
            TimelineUnit::Hour => Timestamp::from_second((t.as_second().div_euclid(3600) + 1) * 3600).ok(),
            TimelineUnit::Day => t
                .to_zoned(p.time_zone.clone())
                .date()
                .tomorrow()
                .ok()
                .and_then(|d| d.to_zoned(p.time_zone.clone()).ok())
                .map(|z| z.timestamp()),
        };
        let end = next.filter(|n| *n > t).map_or(p.until, |n| n.min(p.until));
        out.push((t, end));
        t = end;
    }
    if let Some(last) = out.last_mut() {
        last.1 = p.until;
    }
    out
}

fn label(query: &ReportQuery, unit: TimelineUnit, t: Timestamp) -> String {
    let z = t.to_zoned(query.period.time_zone.clone());
    match unit {
        TimelineUnit::Day => z.strftime("%Y-%m-%d").to_string(),
        TimelineUnit::Hour => z.strftime("%Y-%m-%dT%H:%M").to_string(),
    }
}

/// Fills every app's timeline from `figures` and says how it was cut. `quarters`: the
/// journal's `timeline_quarter` rollup covers the period (its weeks are covered, schema 11):
/// buckets on quarter-hour bounds are summed from it, with the same figures as from the
/// residency rows.
///
/// # Errors
/// When the journal cannot be read.
pub(super) fn fill(
    reader: &JournalReader,
    query: &ReportQuery,
    figures: Figures,
    apps: &mut [AppReport],
    quarters: bool,
) -> Result<TimelineInfo, Error> {
    let p = &query.period;
    let unit = if p.until.duration_since(p.since) <= HOURLY_UP_TO { TimelineUnit::Hour } else { TimelineUnit::Day };
    let buckets = bounds(query, unit);
    for app in apps.iter_mut() {
        app.timeline = buckets
            .iter()
            .map(|&(since, until)| TimeBucket {
                since,
                until,
                label: label(query, unit, since),
                payload_tx: 0,
                payload_rx: 0,
            })
            .collect();
    }
    if apps.is_empty() {
        return Ok(TimelineInfo { unit, complete: true });
    }
    let index: BTreeMap<&str, usize> = apps.iter().enumerate().map(|(i, a)| (a.app.as_str(), i)).collect();
    let mut sums: Vec<Vec<(u64, u64)>> = vec![vec![(0, 0); buckets.len()]; apps.len()];
    let on_quarters = |t: Timestamp| t.subsec_nanosecond() == 0 && t.as_second().rem_euclid(QUARTER) == 0;
    if quarters && figures == Figures::Intervals && buckets.iter().all(|(s, u)| on_quarters(*s) && on_quarters(*u)) {
        let (Some(first), Some(last)) = (buckets.first(), buckets.last()) else {
            return Ok(TimelineInfo { unit, complete: true });
        };
        for (start, name, tx, rx) in
            reader.timeline_quarters(first.0.as_second(), last.1.as_second(), query.app.as_deref())?
        {
            let name = if name.is_empty() { crate::identity::UNKNOWN_APP } else { name.as_str() };
            let b = buckets.partition_point(|(_, until)| until.as_second() <= start);
            if let (Some(&i), true) = (index.get(name), b < buckets.len()) {
                sums[i][b].0 += tx;
                sums[i][b].1 += rx;
            }
        }
        return Ok(finish(apps, sums, unit));
    }
    for (b, &(since, until)) in buckets.iter().enumerate() {
        for (app, tx, rx) in figures.payload(reader, TimeRange { since, until }, query.app.as_deref())? {
            let name = if app.is_empty() { crate::identity::UNKNOWN_APP } else { app.as_str() };
            if let Some(&i) = index.get(name) {
                sums[i][b].0 += tx;
                sums[i][b].1 += rx;
            }
        }
    }
    Ok(finish(apps, sums, unit))
}

/// Writes the sums into the timelines; complete when they add up to each app's traffic.
fn finish(apps: &mut [AppReport], sums: Vec<Vec<(u64, u64)>>, unit: TimelineUnit) -> TimelineInfo {
    let mut complete = true;
    for (app, sums) in apps.iter_mut().zip(sums) {
        for (bucket, (tx, rx)) in app.timeline.iter_mut().zip(sums) {
            bucket.payload_tx = tx;
            bucket.payload_rx = rx;
        }
        let tx: u64 = app.timeline.iter().map(|b| b.payload_tx).sum();
        let rx: u64 = app.timeline.iter().map(|b| b.payload_rx).sum();
        complete &= tx == app.traffic.payload_tx && rx == app.traffic.payload_rx;
    }
    TimelineInfo { unit, complete }
}
