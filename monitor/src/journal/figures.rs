//! Checking the summed figures against the rows they are summed from. Reports read sums: the
//! `residency` intervals and the weekly rollups (`residency_week`, `timeline_quarter`,
//! `endpoint_week`, `service_week`). The hash chain seals the connection records, not these
//! tables (they are rewritten in place), so the chain check ([`super::chain::verify`]) also
//! recomputes them and names every sum that differs:
//!
//! - `residency`, per app and UTC day, against the deltas of the chained connection records
//!   (each record adds its deltas to the interval of its last-seen time);
//! - `residency_week` and `timeline_quarter`, per app and rollup week, against `residency`;
//! - `endpoint_week` and `service_week`, per app and rollup week, against the connection
//!   records (listening sockets excluded; endpoints only of records with a remote address).
//!
//! Left out, because the journal says its rows are legitimately incomplete there: days and weeks
//! before a retention horizon, days of a recorded loss (a full buffer drops records but keeps
//! their interval sums), weeks before the rollups' coverage, and, in a journal with rows from
//! before the chain began, the days up to the first sealed batch.

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use rusqlite::{Connection, ToSql};
use serde::Serialize;

use super::{chain::Problem, rollup::Weeks};

/// What the figure check compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FiguresChecked {
    /// UTC days whose `residency` sums were compared with the connection records.
    pub days: u64,
    /// Rollup weeks whose sums were compared with the rows they are summed from.
    pub weeks: u64,
    /// Why the weekly rollups were not compared (no rollups yet, an unknown time zone).
    pub weeks_skipped: Option<String>,
    /// Why the sums could not be compared at all: SQLite's error reading them (a damaged page;
    /// the structural check then names it).
    pub failed: Option<String>,
}

/// Sums per app: payload, wire and packets, sent then received (unused places 0).
type ByApp = BTreeMap<String, [i64; 6]>;

const DAY_MS: i64 = 86_400_000;
/// Most weeks walked (a journal spans years at most; a forged timestamp must not make it loop).
const MAX_WEEKS: usize = 5_000;

/// Where the checks start: the retention horizons and, for a journal with rows written before
/// the chain began, the chain's first sealed record time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Horizons {
    pub connections_ms: i64,
    pub residency_ms: i64,
    pub chain_start_ms: Option<i64>,
}

/// Compares the sums with their rows (see the module docs), adding a [`Problem::FiguresDiffer`]
/// per app and period that differs.
pub(super) fn check(conn: &Connection, h: Horizons, problems: &mut Vec<Problem>) -> rusqlite::Result<FiguresChecked> {
    let mut out = FiguresChecked { days: days(conn, h, problems)?, ..FiguresChecked::default() };
    match rollup_zone(conn)? {
        Ok((tz, covered_from)) => out.weeks = weeks(conn, h, &mut Weeks::new(tz), covered_from, problems)?,
        Err(why) => out.weeks_skipped = Some(why),
    }
    Ok(out)
}

/// `residency` per UTC day against the connection records.
fn days(conn: &Connection, h: Horizons, problems: &mut Vec<Problem>) -> rusqlite::Result<u64> {
    let mut from = h.connections_ms.max(h.residency_ms).max(0);
    if let Some(start) = h.chain_start_ms {
        // Rows before the chain may share the first sealed day: start the day after.
        from = from.max((start.div_euclid(DAY_MS) + 1) * DAY_MS);
    }
    let first_day = from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0);
    let sums = "SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx), SUM(packets_tx), SUM(packets_rx)";
    let residency = per_period(
        conn,
        &format!("SELECT interval_start / 86400, app, {sums} FROM residency WHERE interval_start >= ?1 GROUP BY 1, 2"),
        &[&(first_day * 86_400)],
    )?;
    let records = per_period(
        conn,
        "SELECT c.time_ms / 86400000, coalesce(a.name, ''), SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
             SUM(c.delta_wire_tx), SUM(c.delta_wire_rx), SUM(c.delta_packets_tx), SUM(c.delta_packets_rx)
         FROM connections c LEFT JOIN apps a ON a.id = c.app_id WHERE c.time_ms >= ?1 GROUP BY 1, 2",
        &[&(first_day * DAY_MS)],
    )?;
    let mut losses = conn.prepare("SELECT first_ms, last_ms FROM losses")?;
    let losses: Vec<(i64, i64)> = losses.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut checked = 0;
    let all: std::collections::BTreeSet<i64> = residency.keys().chain(records.keys()).copied().collect();
    for day in all {
        let (start, end) = (day * DAY_MS, (day + 1) * DAY_MS);
        if losses.iter().any(|(first, last)| *first < end && *last >= start) {
            continue;
        }
        checked += 1;
        let period = jiff::Timestamp::from_millisecond(start).map_or_else(|_| day.to_string(), |t| t.to_string());
        let period = period.get(..10).unwrap_or(&period).to_owned();
        compare(residency.get(&day), records.get(&day), ("residency", "connections"), &period, problems);
    }
    Ok(checked)
}

/// The rollups' time zone and first covered week, or why the weeks are not checked.
fn rollup_zone(conn: &Connection) -> rusqlite::Result<Result<(TimeZone, i64), String>> {
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'timeline_quarter')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(Err("the journal predates the weekly rollups".into()));
    }
    let state: Option<(String, i64)> = conn
        .query_row("SELECT time_zone, covered_from FROM rollup_state WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map(Some)
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let Some((zone, covered_from)) = state else {
        return Ok(Err("no weekly rollups yet".into()));
    };
    Ok(TimeZone::get(&zone)
        .map(|tz| (tz, covered_from))
        .map_err(|e| format!("the rollups' time zone {zone:?} is unknown here ({e})")))
}

/// The weekly rollups against their rows, week by week.
fn weeks(
    conn: &Connection,
    h: Horizons,
    weeks: &mut Weeks,
    covered_from: i64,
    problems: &mut Vec<Problem>,
) -> rusqlite::Result<u64> {
    let bounds: (Option<i64>, Option<i64>) = conn.query_row(
        "SELECT min(t), max(t) FROM (
             SELECT interval_start AS t FROM residency UNION ALL SELECT time_ms / 1000 FROM connections
             UNION ALL SELECT week_start FROM residency_week UNION ALL SELECT week_start FROM endpoint_week
             UNION ALL SELECT week_start FROM service_week UNION ALL SELECT quarter_start FROM timeline_quarter)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let (Some(lo), Some(hi)) = bounds else { return Ok(0) };
    let (Some(mut week), Some(last)) = (weeks.containing(lo.max(covered_from)), weeks.containing(hi)) else {
        return Ok(0);
    };
    let residency_sums =
        "SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx), SUM(packets_tx), SUM(packets_rx)";
    let mut checked = 0;
    for _ in 0..MAX_WEEKS {
        let period =
            jiff::Timestamp::from_second(week.start).map_or_else(|_| week.start.to_string(), |t| t.to_string());
        let period = format!("the week from {period}");
        let mut counted = false;
        if week.start_ms() >= h.residency_ms {
            counted = true;
            let fine = per_app(
                conn,
                &format!(
                    "SELECT app, {residency_sums} FROM residency WHERE interval_start >= ?1 AND interval_start < ?2
                     GROUP BY app"
                ),
                &[&week.start, &week.end],
            )?;
            let rolled = per_app(
                conn,
                &format!("SELECT app, {residency_sums} FROM residency_week WHERE week_start = ?1 GROUP BY app"),
                &[&week.start],
            )?;
            compare(Some(&rolled), Some(&fine), ("residency_week", "residency"), &period, problems);
            let quarters = per_app(
                conn,
                "SELECT app, SUM(payload_tx), SUM(payload_rx) FROM timeline_quarter
                 WHERE quarter_start >= ?1 AND quarter_start < ?2 GROUP BY app",
                &[&week.start, &week.end],
            )?;
            compare(Some(&quarters), Some(&payload_only(&fine)), ("timeline_quarter", "residency"), &period, problems);
        }
        if week.start_ms() >= h.connections_ms {
            counted = true;
            // One pass over the week's records: payload of all (services), and payload and wire
            // of those with a remote address (endpoints).
            let records = per_app(
                conn,
                "SELECT coalesce(a.name, ''), SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
                     SUM(iif(c.remote_ip IS NULL, 0, c.delta_payload_tx)),
                     SUM(iif(c.remote_ip IS NULL, 0, c.delta_payload_rx)),
                     SUM(iif(c.remote_ip IS NULL, 0, c.delta_wire_tx)),
                     SUM(iif(c.remote_ip IS NULL, 0, c.delta_wire_rx))
                 FROM connections c LEFT JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND c.direction != 'listen'
                 GROUP BY 1",
                &[&week.start_ms(), &week.end_ms()],
            )?;
            let with_remote: ByApp =
                records.iter().map(|(app, s)| (app.clone(), [s[2], s[3], s[4], s[5], 0, 0])).collect();
            let endpoints = per_app(
                conn,
                "SELECT app, SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx) FROM endpoint_week
                 WHERE week_start = ?1 GROUP BY app",
                &[&week.start],
            )?;
            compare(Some(&endpoints), Some(&with_remote), ("endpoint_week", "connections"), &period, problems);
            let services = per_app(
                conn,
                "SELECT app, SUM(payload_tx), SUM(payload_rx) FROM service_week WHERE week_start = ?1 GROUP BY app",
                &[&week.start],
            )?;
            compare(Some(&services), Some(&payload_only(&records)), ("service_week", "connections"), &period, problems);
        }
        checked += u64::from(counted);
        if week == last {
            break;
        }
        let Some(next) = weeks.next(week) else { break };
        week = next;
    }
    Ok(checked)
}

/// Keeps the first two sums (payload sent and received).
fn payload_only(sums: &ByApp) -> ByApp {
    sums.iter().map(|(app, s)| (app.clone(), [s[0], s[1], 0, 0, 0, 0])).collect()
}

/// Rows of `(app, sums...)`.
fn per_app(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<ByApp> {
    let mut stmt = conn.prepare(sql)?;
    let n = stmt.column_count() - 1;
    let rows = stmt.query_map(args, |r| {
        let mut sums = [0i64; 6];
        for (i, s) in sums.iter_mut().enumerate().take(n) {
            *s = r.get::<_, Option<i64>>(i + 1)?.unwrap_or(0);
        }
        Ok((r.get::<_, String>(0)?, sums))
    })?;
    rows.collect()
}

/// Rows of `(period, app, sums...)`, by period.
fn per_period(conn: &Connection, sql: &str, args: &[&dyn ToSql]) -> rusqlite::Result<BTreeMap<i64, ByApp>> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out: BTreeMap<i64, ByApp> = BTreeMap::new();
    while let Some(r) = rows.next()? {
        let mut sums = [0i64; 6];
        for (i, s) in sums.iter_mut().enumerate() {
            *s = r.get::<_, Option<i64>>(i + 2)?.unwrap_or(0);
        }
        out.entry(r.get(0)?).or_default().insert(r.get(1)?, sums);
    }
    Ok(out)
}

/// One problem per app whose sums differ between `summed` and `rows` (an app missing on one
/// side has zeros there; an app with zeros on both sides is no problem).
fn compare(
    summed: Option<&ByApp>,
    rows: Option<&ByApp>,
    (table, source): (&'static str, &'static str),
    period: &str,
    problems: &mut Vec<Problem>,
) {
    let empty = ByApp::new();
    let (summed, rows) = (summed.unwrap_or(&empty), rows.unwrap_or(&empty));
    let apps: std::collections::BTreeSet<&String> = summed.keys().chain(rows.keys()).collect();
    for app in apps {
        let (a, b) = (summed.get(app).copied().unwrap_or_default(), rows.get(app).copied().unwrap_or_default());
        if a != b {
            problems.push(Problem::FiguresDiffer { table, source, period: period.to_owned(), app: app.clone() });
        }
    }
}

#[cfg(test)]
mod tests;
