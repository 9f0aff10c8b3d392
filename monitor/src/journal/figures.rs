//! Checking the summed figures against the rows they are summed from. Reports read sums: the
//! `residency` intervals and the weekly rollups (`residency_week`, `timeline_quarter`,
//! `endpoint_week`, `service_week`). The hash chain seals the connection records, not these
//! tables (they are rewritten in place), so the chain check ([`super::chain::verify`]) also
//! recomputes them and names every sum that differs:
//!
//! - `residency`, per UTC day, app and destination (scope, country, ASN, organisation, the
//!   databases that answered, payload source), against the deltas of the chained connection
//!   records (each record adds its deltas to the interval of its last-seen time);
//! - `residency_week` per rollup week with the same key, and `timeline_quarter` per quarter hour
//!   and app, against `residency`;
//! - `endpoint_week` per week, app and endpoint (address, port, protocol: bytes and flows) and
//!   `service_week` per week, app and service (host name, domain, name source, country, ASN,
//!   organisation: payload and flows), against the connection records (listening sockets
//!   excluded; endpoints only of records with a remote address).
//!
//! Each pair of queries returns its rows in key order and is compared row by row (no table of
//! all keys in memory).
//!
//! Left out, because the journal says its rows are legitimately incomplete there: days and weeks
//! before a retention horizon, days of a recorded loss (a full buffer drops records but keeps
//! their interval sums), weeks before the rollups' coverage, and, in a journal with rows from
//! before the chain began, the days up to the first sealed batch.

use jiff::tz::TimeZone;
use rusqlite::{Connection, Rows, ToSql, types::ValueRef};
use serde::Serialize;

use super::{chain::Problem, rollup::Weeks};

/// What the figure check compared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FiguresChecked {
    /// UTC days whose `residency` sums were compared with the connection records.
    pub days: u64,
    /// UTC days not compared because the journal records a loss in them (`losses`).
    pub days_with_losses: u64,
    /// Rollup weeks whose sums were compared with the rows they are summed from.
    pub weeks: u64,
    /// Why the weekly rollups were not compared (no rollups yet, an unknown time zone).
    pub weeks_skipped: Option<String>,
    /// Why the sums could not be compared at all: SQLite's error reading them (a damaged page;
    /// the structural check then names it).
    pub failed: Option<String>,
    /// Sums that differ beyond the problems listed (`MAX_LISTED`).
    pub unlisted: u64,
}

/// Most differing sums listed as problems; the rest are counted.
pub const MAX_LISTED: usize = 1_000;

const DAY_MS: i64 = 86_400_000;

/// Where the checks start: the retention horizons and, for a journal with rows written before
/// the chain began, the chain's first sealed record time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Horizons {
    pub connections_ms: i64,
    pub residency_ms: i64,
    pub chain_start_ms: Option<i64>,
}

/// One column of a key, ordered as SQLite orders them (numbers before text, text bytewise).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Int(i64),
    Text(String),
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(v) => write!(f, "{v}"),
            Self::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// A row of a comparison: its key (the app first), then up to six sums.
type Row = (Vec<Part>, [i64; 6]);

/// Collects the problems of one check, up to [`MAX_LISTED`] in all.
struct Found<'a> {
    problems: &'a mut Vec<Problem>,
    unlisted: u64,
}

impl Found<'_> {
    /// A row of `table` at `time` (Unix seconds) outside the calendar.
    fn outside(&mut self, table: &'static str, time: i64) {
        if self.problems.len() >= MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        self.problems.push(Problem::OutsideCalendar { table, time });
    }

    fn differs(&mut self, tables: (&'static str, &'static str), period: &str, names: &[&str], key: &[Part]) {
        if self.problems.len() >= MAX_LISTED {
            self.unlisted += 1;
            return;
        }
        let app = match key.first() {
            Some(Part::Text(t)) => t.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let detail =
            names.iter().zip(key.iter().skip(1)).map(|(n, v)| format!("{n} {v}")).collect::<Vec<_>>().join(", ");
        self.problems.push(Problem::FiguresDiffer {
            table: tables.0,
            source: tables.1,
            period: period.to_owned(),
            app,
            key: detail,
        });
    }
}

/// Compares the sums with their rows (see the module docs), adding a [`Problem::FiguresDiffer`]
/// per key and period that differs.
pub(super) fn check(conn: &Connection, h: Horizons, problems: &mut Vec<Problem>) -> rusqlite::Result<FiguresChecked> {
    let mut found = Found { problems, unlisted: 0 };
    let (days, days_with_losses) = days(conn, h, &mut found)?;
    let mut out = FiguresChecked { days, days_with_losses, ..FiguresChecked::default() };
    match rollup_zone(conn)? {
        Ok((tz, covered_from)) => out.weeks = weeks(conn, h, &mut Weeks::new(tz), covered_from, &mut found)?,
        Err(why) => out.weeks_skipped = Some(why),
    }
    out.unlisted = found.unlisted;
    Ok(out)
}

/// Destination columns of `residency` and `residency_week`, after the app.
const RESIDENCY_KEY: &str = "scope, country, asn, as_org, country_db, asn_db, payload_source";
const RESIDENCY_NAMES: [&str; 7] = ["scope", "country", "asn", "as_org", "country_db", "asn_db", "payload_source"];
const SIX_SUMS: &str = "SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx), SUM(packets_tx), SUM(packets_rx)";

/// `table`'s residency sums per app and destination, of rows whose `time` column is in
/// `[?1, ?2)`, in key order (`residency` and `residency_week` share the columns).
fn residency_by_key(table: &str, time: &str) -> String {
    format!(
        "SELECT app, {RESIDENCY_KEY}, {SIX_SUMS} FROM {table} WHERE {time} >= ?1 AND {time} < ?2
         GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
    )
}

/// The UTC days (Unix day numbers) holding `residency` or `connections` rows from Unix second
/// `from` on, in order.
fn days_with_rows(conn: &Connection, from: i64) -> rusqlite::Result<std::collections::BTreeSet<i64>> {
    let mut stmt = conn.prepare(concat!(
        "SELECT DISTINCT interval_start / 86400 FROM residency WHERE interval_start >= ?1
         UNION SELECT DISTINCT time_ms / 86400000 FROM connections WHERE time_ms >= ?2 AND id >= ",
        super::spans::from_id!("?2")
    ))?;
    let days = stmt.query_map([from, from.saturating_mul(1000)], |r| r.get::<_, i64>(0))?;
    days.collect()
}

/// `residency` per UTC day against the connection records.
fn days(conn: &Connection, h: Horizons, found: &mut Found<'_>) -> rusqlite::Result<(u64, u64)> {
    let mut from = h.connections_ms.max(h.residency_ms).max(0);
    if let Some(start) = h.chain_start_ms {
        // Rows before the chain may share the first sealed day: start the day after.
        from = from.max((start.div_euclid(DAY_MS) + 1) * DAY_MS);
    }
    let first_day = from.div_euclid(DAY_MS) + i64::from(from.rem_euclid(DAY_MS) != 0);
    let mut losses = conn.prepare("SELECT first_ms, last_ms FROM losses")?;
    let losses: Vec<(i64, i64)> = losses.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let days = days_with_rows(conn, first_day.saturating_mul(86_400))?;
    let (mut checked, mut lossy) = (0, 0);
    for day in days {
        let (Some(start), Some(end)) =
            (day.checked_mul(DAY_MS), day.checked_add(1).and_then(|d| d.checked_mul(DAY_MS)))
        else {
            found.outside("residency/connections", day.saturating_mul(86_400));
            continue;
        };
        if losses.iter().any(|(first, last)| *first < end && *last >= start) {
            lossy += 1;
            continue;
        }
        checked += 1;
        let period = jiff::Timestamp::from_millisecond(start).map_or_else(|_| day.to_string(), |t| t.to_string());
        let period = period.get(..10).unwrap_or(&period).to_owned();
        merge(
            conn,
            (&residency_by_key("residency", "interval_start"), &[&(start / 1000), &(end / 1000)]),
            (
                concat!(
                    "SELECT coalesce(a.name, ''), coalesce(c.scope, ",
                    super::names::sql!(StoredScope::None),
                    "), coalesce(c.country, ''), coalesce(c.asn, 0),
                     coalesce(c.as_org, ''), coalesce(c.country_db, 0), coalesce(c.asn_db, 0), c.payload_source,
                     SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), SUM(c.delta_wire_tx), SUM(c.delta_wire_rx),
                     SUM(c.delta_packets_tx), SUM(c.delta_packets_rx)
                 FROM connections c LEFT JOIN apps a ON a.id = c.app_id WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                    super::spans::id_window!("c.id", "?1", "?2"),
                    "
                 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
                ),
                &[&start, &end],
            ),
            8,
            &mut |key| found.differs(("residency", "connections"), &period, &RESIDENCY_NAMES, key),
        )?;
    }
    Ok((checked, lossy))
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

/// The weeks to compare: every week from the rollups' coverage on that holds fine rows (a UTC
/// day may fall in two weeks) or rollup rows (a rollup row whose week start is no week start is
/// compared with the week it falls in), in order. A row outside the calendar is a problem.
fn weeks_to_check(
    conn: &Connection,
    weeks: &mut Weeks,
    covered_from: i64,
    found: &mut Found<'_>,
) -> rusqlite::Result<Vec<super::rollup::Week>> {
    let mut times: Vec<(&'static str, i64)> = Vec::new();
    for (table, sql) in [
        ("residency_week", "SELECT DISTINCT week_start FROM residency_week WHERE week_start >= ?1"),
        ("endpoint_week", "SELECT DISTINCT week_start FROM endpoint_week WHERE week_start >= ?1"),
        ("service_week", "SELECT DISTINCT week_start FROM service_week WHERE week_start >= ?1"),
        ("timeline_quarter", "SELECT DISTINCT quarter_start FROM timeline_quarter WHERE quarter_start >= ?1"),
    ] {
        let mut stmt = conn.prepare(sql)?;
        for t in stmt.query_map([covered_from], |r| r.get::<_, i64>(0))? {
            times.push((table, t?));
        }
    }
    // The first and last second of every UTC day with fine rows.
    for day in days_with_rows(conn, covered_from)? {
        let start = day.saturating_mul(86_400);
        times.push(("residency/connections", start.max(covered_from)));
        times.push(("residency/connections", start.saturating_add(86_399)));
    }
    let mut out = std::collections::BTreeSet::new();
    for (table, t) in times {
        match weeks.containing(t) {
            Some(week) if week.start >= covered_from => {
                out.insert(week);
            }
            Some(_) => {}
            None => found.outside(table, t),
        }
    }
    Ok(out.into_iter().collect())
}

/// The weekly rollups against their rows, week by week.
fn weeks(
    conn: &Connection,
    h: Horizons,
    weeks: &mut Weeks,
    covered_from: i64,
    found: &mut Found<'_>,
) -> rusqlite::Result<u64> {
    let list = weeks_to_check(conn, weeks, covered_from, found)?;
    // Before schema 18 `service_week` counted sockets, not (socket, endpoint) flows: a journal no
    // writer has migrated yet is not compared there (its next writer rebuilds the rollups).
    let schema: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let services = schema >= super::rollup::SERVICE_FLOWS_SCHEMA;
    let mut checked = 0;
    for week in list {
        let period =
            jiff::Timestamp::from_second(week.start).map_or_else(|_| week.start.to_string(), |t| t.to_string());
        let period = format!("the week from {period}");
        let range: [&dyn ToSql; 2] = [&week.start, &week.end];
        let range_ms: [&dyn ToSql; 2] = [&week.start_ms(), &week.end_ms()];
        let mut counted = false;
        if week.start_ms() >= h.residency_ms {
            counted = true;
            let fine = residency_by_key("residency", "interval_start");
            merge(conn, (&residency_by_key("residency_week", "week_start"), &range), (&fine, &range), 8, &mut |key| {
                found.differs(("residency_week", "residency"), &period, &RESIDENCY_NAMES, key)
            })?;
            merge(
                conn,
                (
                    "SELECT app, quarter_start, SUM(payload_tx), SUM(payload_rx) FROM timeline_quarter
                     WHERE quarter_start >= ?1 AND quarter_start < ?2 GROUP BY 1, 2 ORDER BY 1, 2",
                    &range,
                ),
                (
                    "SELECT app, interval_start - interval_start % 900, SUM(payload_tx), SUM(payload_rx) FROM residency
                     WHERE interval_start >= ?1 AND interval_start < ?2 GROUP BY 1, 2 ORDER BY 1, 2",
                    &range,
                ),
                2,
                &mut |key| found.differs(("timeline_quarter", "residency"), &period, &["quarter_start"], key),
            )?;
        }
        if week.start_ms() >= h.connections_ms {
            counted = true;
            merge(
                conn,
                (
                    "SELECT app, remote_ip, port, protocol, SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx),
                         SUM(flows)
                     FROM endpoint_week WHERE week_start >= ?1 AND week_start < ?2
                     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4",
                    &range,
                ),
                (
                    concat!(
                        "SELECT coalesce(a.name, ''), c.remote_ip, iif(c.direction = ", super::names::sql!(Direction::Inbound), ", -1, c.remote_port), c.protocol,
                         SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), SUM(c.delta_wire_tx), SUM(c.delta_wire_rx),
                         COUNT(DISTINCT c.cookie)
                     FROM connections c LEFT JOIN apps a ON a.id = c.app_id
                     WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                        super::spans::id_window!("c.id", "?1", "?2"),
                        " AND c.direction != ", super::names::sql!(Direction::Listen), " AND c.remote_ip IS NOT NULL
                     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4"
                    ),
                    &range_ms,
                ),
                4,
                &mut |key| found.differs(("endpoint_week", "connections"), &period, &["remote_ip", "port", "protocol"], key),
            )?;
            if services {
                merge(
                    conn,
                    (
                        "SELECT app, hostname, registrable_domain, name_source, country, asn, as_org, SUM(payload_tx),
                             SUM(payload_rx), SUM(flows)
                         FROM service_week WHERE week_start >= ?1 AND week_start < ?2
                         GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7",
                        &range,
                    ),
                    (
                        concat!(
                            "SELECT coalesce(a.name, ''), coalesce(c.hostname, ''), coalesce(c.registrable_domain, ''),
                             coalesce(c.name_source, ''), coalesce(c.country, ''), coalesce(c.asn, -1), coalesce(c.as_org, ''),
                             SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
                             COUNT(DISTINCT c.cookie || ' ' || COALESCE(c.remote_ip, '') || ' ' || CASE WHEN c.direction = ",
                            super::names::sql!(Direction::Inbound),
                    " THEN '' ELSE COALESCE(c.remote_port, '') END)
                         FROM connections c LEFT JOIN apps a ON a.id = c.app_id
                         WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                            super::spans::id_window!("c.id", "?1", "?2"),
                            " AND c.direction != ", super::names::sql!(Direction::Listen), "
                         GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7"
                        ),
                        &range_ms,
                    ),
                    7,
                    &mut |key| {
                        found.differs(
                            ("service_week", "connections"),
                            &period,
                            &["hostname", "registrable_domain", "name_source", "country", "asn", "as_org"],
                            key,
                        );
                    },
                )?;
            }
        }
        checked += u64::from(counted);
    }
    Ok(checked)
}

/// Runs both queries (rows in key order, `keys` key columns, then sums) and calls `differs` for
/// every key whose sums differ between them; a key on one side only differs unless its sums are
/// all zero.
fn merge(
    conn: &Connection,
    (summed, summed_args): (&str, &[&dyn ToSql]),
    (fine, fine_args): (&str, &[&dyn ToSql]),
    keys: usize,
    differs: &mut dyn FnMut(&[Part]),
) -> rusqlite::Result<()> {
    let mut a_stmt = conn.prepare(summed)?;
    let mut b_stmt = conn.prepare(fine)?;
    let mut a_rows = a_stmt.query(summed_args)?;
    let mut b_rows = b_stmt.query(fine_args)?;
    let (mut a, mut b) = (next(&mut a_rows, keys)?, next(&mut b_rows, keys)?);
    loop {
        let order = match (&a, &b) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => x.0.cmp(&y.0),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((key, sums)) = &a
                    && *sums != [0; 6]
                {
                    differs(key);
                }
                a = next(&mut a_rows, keys)?;
            }
            std::cmp::Ordering::Greater => {
                if let Some((key, sums)) = &b
                    && *sums != [0; 6]
                {
                    differs(key);
                }
                b = next(&mut b_rows, keys)?;
            }
            std::cmp::Ordering::Equal => {
                if let (Some((key, x)), Some((_, y))) = (&a, &b)
                    && x != y
                {
                    differs(key);
                }
                a = next(&mut a_rows, keys)?;
                b = next(&mut b_rows, keys)?;
            }
        }
    }
}

/// The next row: `keys` key columns, then up to six sums (NULL as 0).
fn next(rows: &mut Rows<'_>, keys: usize) -> rusqlite::Result<Option<Row>> {
    let Some(r) = rows.next()? else { return Ok(None) };
    let mut key = Vec::with_capacity(keys);
    for i in 0..keys {
        key.push(match r.get_ref(i)? {
            ValueRef::Null => Part::Text(String::new()),
            ValueRef::Integer(v) => Part::Int(v),
            ValueRef::Real(v) => Part::Int(v.to_bits().cast_signed()),
            ValueRef::Text(t) | ValueRef::Blob(t) => Part::Text(String::from_utf8_lossy(t).into_owned()),
        });
    }
    let mut sums = [0i64; 6];
    let n = r.as_ref().column_count().saturating_sub(keys);
    for (i, s) in sums.iter_mut().enumerate().take(n) {
        *s = r.get::<_, Option<i64>>(keys + i)?.unwrap_or(0);
    }
    Ok(Some((key, sums)))
}

#[cfg(test)]
mod tests;
