//! Weekly rollups: per ISO week in one time zone, the sums a weekly report reads, kept beside
//! the fine rows so that a weekly report reads thousands of rows instead of millions.
//!
//! Owns `residency_week`, `endpoint_week` and `rollup_state` (schema version 2), and
//! `service_week` and `endpoint_name_week` (schema version 11). Does not decide
//! when a report may use them (`report` does, from [`RollupState`] and the retention horizons).
//!
//! # Tables
//! Weeks are keyed by `week_start`: Unix seconds of Monday 00:00 in the rollup time zone
//! (`rollup_state.time_zone`, given to `JournalWriter::open`). One zone at a time: opening the
//! writer with another zone rebuilds the rollups for it.
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `residency_week` | week × the `residency` key without interval | `week_start`, `app`, `scope`, `country`, `asn`, `as_org`, `country_db`, `asn_db`, `payload_source`; sums of the residency rows whose interval **starts** in the week: `payload_tx`, `payload_rx`, `wire_tx`, `wire_rx`, `packets_tx`, `packets_rx`, `new_flows`, `incomplete_flows`, `flow_intervals` (sum of `connections`); `first_interval` (min `interval_start`), `last_interval_end` (max `interval_start + interval_secs`) |
//! | `endpoint_week` | week × app × remote endpoint | `week_start`, `app`, `remote_ip`, `port` (-1: inbound, reported as `null`), `protocol`; sums of the `delta_*` of the connection records whose time is in the week: `payload_tx`, `payload_rx`, `wire_tx`, `wire_rx`; `flows` (distinct sockets, exactly `COUNT(DISTINCT cookie)`: a record counts when no earlier record of its socket at that endpoint is in the week, looked up through the index `connections_cookie`); `latest_ms`, `scope`, `country`, `asn`, `as_org`, `consensus`, `answers_id` (of the latest record; `answer_sets` holds each distinct `country_answers` text once; the first written wins a tie); `rtt_min_us` (smallest positive kernel RTT minimum); `new` (1 when the previous week has no row for the endpoint) |
//! | `service_week` | week × app × host name × name source × destination | `week_start`, `app`, `hostname`, `registrable_domain`, `name_source`, `country`, `asn`, `as_org` (NULL stored as '' and -1); sums of the `delta_payload_*` of the non-listening connection records whose time is in the week: `payload_tx`, `payload_rx`; `flows` (distinct (socket, remote end) pairs with that key, counted as for `endpoint_week`: each peer of an unconnected socket is a flow; schema 18) |
//! | `endpoint_name_week` | week × app × remote address × host name | the host names of the week's records at that address |
//! | `timeline_quarter` | quarter hour × app | `quarter_start` (Unix s, a multiple of 900), `app`; `payload_tx`, `payload_rx` of the residency rows whose interval starts in it (intervals divide 900 s: each lies in one quarter), for the weeks covered |
//! | `rollup_state` | – (single row) | `time_zone`, `covered_from` (`week_start` of the first week whose rollups are complete), `built_ms` |
//!
//! # Invariants
//! - Every flush folds what it writes to `connections` and `residency` into the rollups in the
//!   **same transaction**, for weeks starting at or after `covered_from` (earlier weeks are not
//!   folded: their rollups would be partial). Records dropped by the buffer are in neither.
//! - Sums are additive and `new` is kept exact whatever the order records arrive in: inserting a
//!   week's row clears `new` on the next week's row.
//! - `covered_from`: a new journal covers everything (`i64::MIN`). On a journal that has data
//!   (migrated from version 1, or another time zone), opening the writer backfills the rollups
//!   from the fine tables for the week of the latest data and the week before it, in one
//!   transaction, and `covered_from` is the start of that previous week: older weeks keep being
//!   reported from the fine tables. The backfill streams the fine rows once (sorted by time)
//!   and sums them in memory one week at a time.
//! - Flush cost: the socket lookup is skipped for a cookie above every cookie stored at open
//!   and not written since (`cookies::Cookies`: sockets close out of cookie order), and the
//!   next week's `new` correction for a week that is the latest: a flush of 100,000 records
//!   takes ~2.7 s instead of ~1.8 s without rollups (release build; the ignored test
//!   `flush_of_100k_records`), for weekly reports in under a second over 10 million records.
//! - Retention deletes the rollups of every week that starts before the purge horizon of its
//!   fine table; a report never uses the rollups of a week touched by a purge.

mod backfill;
mod cookies;
mod counted;
#[cfg(test)]
pub(crate) use counted::FILTER_KEYS as FILTER_KEYS_IN_TESTS;
mod fold;
mod read;
mod read_names;
mod rows;
mod strings;
mod weeks;

use std::time::Instant;

pub(crate) use fold::{Fold, Unwritten};
use jiff::Timestamp;
use log::info;
pub(super) use read::destination_row;
use read::state;
pub use read::{AppEndpoints, DestinationRow, RollupState};
pub use read_names::{NAMES_ROLLUP_SCHEMA, SERVICE_FLOWS_SCHEMA};
pub use rows::QUARTER;
use rusqlite::{Connection, TransactionBehavior, params};
pub(crate) use weeks::{Week, Weeks};

use super::names::ms;
use crate::zone::Zone;

/// The writer's rollups: their zone and the first covered week.
#[derive(Debug)]
pub(crate) struct Rollup {
    /// Week lookups in the rollup time zone.
    pub weeks: Weeks,
    /// Start (Unix s) of the first week whose rollups are complete and maintained.
    pub covered_from: i64,
    /// The cookies that may have records in `connections`: the first record of any other socket
    /// needs no table lookup.
    pub cookies: cookies::Cookies,
    /// Latest `week_start` in `endpoint_week` (`i64::MIN`: none): a record's endpoint row has
    /// no next week's row to correct while its week is the latest.
    pub latest_endpoint_week: i64,
    /// Records known to have an earlier record of their socket at their endpoint in their week
    /// (`counted::Counted`): spares the table lookup for sockets with many records, e.g. the peers of
    /// a busy UDP server socket.
    pub counted: counted::Counted,
    /// `answer_sets` ids by text, of committed flushes.
    pub answer_ids: foldhash::HashMap<String, i64>,
    /// The strings of the keys in `counted` and in the flush's fold.
    pub strings: strings::Strings,
    /// Lookups in `connections` the probe made (records `counted` could not answer).
    pub lookups: u64,
}

impl Rollup {
    /// Loads the rollup state; when the journal has none for `zone` (by name), builds it
    /// (deleting the rollups of another zone and backfilling from the fine tables).
    pub(crate) fn open(conn: &mut Connection, zone: &Zone) -> rusqlite::Result<Self> {
        let time_zone = zone.name.as_str();
        let mut weeks = Weeks::new(zone.tz.clone());
        if let Some(s) = state(conn)?.filter(|s| s.time_zone == time_zone) {
            let (max_cookie, latest_endpoint_week) = bounds(conn)?;
            return Ok(Self {
                weeks,
                covered_from: s.covered_from,
                cookies: cookies::Cookies::above(max_cookie),
                latest_endpoint_week,
                counted: counted::Counted::default(),
                answer_ids: foldhash::HashMap::default(),
                strings: strings::Strings::default(),
                lookups: 0,
            });
        }
        let started = Instant::now();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM residency_week", [])?;
        tx.execute("DELETE FROM endpoint_week", [])?;
        tx.execute("DELETE FROM service_week", [])?;
        tx.execute("DELETE FROM endpoint_name_week", [])?;
        tx.execute("DELETE FROM timeline_quarter", [])?;
        let covered_from = backfill::covered_from(&tx, &mut weeks)?;
        let rows = backfill::run(&tx, &mut weeks, covered_from)?;
        // Records not flagged for the probe were not firsts in the weeks of the previous time
        // zone; in this zone's weeks they may be: every covered record may be looked for now.
        tx.execute(
            concat!(
                "UPDATE connection_rows SET lookup = 1 WHERE lookup IS NULL AND time_ms >= ?1 AND id >= ",
                crate::journal::spans::from_id!("?1")
            ),
            [covered_from.saturating_mul(1000)],
        )?;
        tx.execute(
            "INSERT OR REPLACE INTO rollup_state (id, time_zone, covered_from, built_ms) VALUES (1, ?1, ?2, ?3)",
            params![time_zone, covered_from, ms(Timestamp::now())],
        )?;
        tx.commit()?;
        info!(
            "journal rollups built time_zone={time_zone} covering={} residency_rows={} connection_records={} in {:?}",
            describe_covered(covered_from),
            rows.residency,
            rows.connections,
            started.elapsed()
        );
        let (max_cookie, latest_endpoint_week) = bounds(conn)?;
        Ok(Self {
            weeks,
            covered_from,
            cookies: cookies::Cookies::above(max_cookie),
            latest_endpoint_week,
            counted: counted::Counted::default(),
            answer_ids: foldhash::HashMap::default(),
            strings: strings::Strings::default(),
            lookups: 0,
        })
    }
}

/// `covered_from` for people: "all weeks (no data yet)" on a new journal, else the first week's
/// start as a timestamp.
fn describe_covered(covered_from: i64) -> String {
    if covered_from == i64::MIN {
        return "all weeks (no data yet)".to_string();
    }
    match Timestamp::from_second(covered_from) {
        Ok(t) => format!("weeks from {t}"),
        Err(_) => format!("weeks from Unix second {covered_from}"),
    }
}

/// `max_cookie` and `latest_endpoint_week` of the journal as it is (indexed lookups). Cookies
/// are stored as signed integers: a negative one (a cookie of 2^63 or more) disables the shortcut.
fn bounds(conn: &Connection) -> rusqlite::Result<(u64, i64)> {
    let (min, max): (Option<i64>, Option<i64>) =
        conn.query_row("SELECT MIN(cookie), MAX(cookie) FROM connections", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let max_cookie = match (min, max) {
        (None, _) | (_, None) => 0,
        (Some(min), Some(max)) if min >= 0 => max.cast_unsigned(),
        _ => u64::MAX,
    };
    let latest: Option<i64> = conn.query_row("SELECT MAX(week_start) FROM endpoint_week", [], |r| r.get(0))?;
    Ok((max_cookie, latest.unwrap_or(i64::MIN)))
}
