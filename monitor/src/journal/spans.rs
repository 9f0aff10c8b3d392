//! Where the connection records of a time range lie, without an index on their time (schema 17).
//!
//! A record's id grows with the order it was written in, and its `time_ms` (its flow's latest
//! event) almost does. `connection_spans` keeps, per flush that wrote records, the range of ids it
//! wrote and the smallest and largest `time_ms` among them, plus two bounds that make a time range
//! an id range with one index seek each:
//! - `max_before_ms`: the largest `time_ms` of this span and every span before it. It never
//!   decreases from span to span, so the first span whose `max_before_ms` reaches `from` is the
//!   first that can hold a record at or after `from` ([`from_id!`]).
//! - `min_after_ms`: the smallest `time_ms` of this span and every span after it (a new span
//!   lowers it on the spans before it that are above its own smallest time: rare, as times
//!   rarely go back). It never decreases either, so the last span whose `min_after_ms` is below
//!   `until` is the last that can hold a record before `until` ([`until_id!`]).
//!
//! The spans leave no record out from the first id to the last flush's last one: a flush also
//! covers records written between flushes through the writable view (tests, a user's own SQL),
//! reading their times. Records after the last span (written through the view
//! since) are always inside the range. A reader of a journal from before schema 17 sees no spans
//! (`legacy` stands an empty view in) and so every id.
//!
//! The id range only narrows the search: every query keeps its own condition on `time_ms`. A
//! record far from its neighbours' times (the clock stepped) widens the id ranges of the times
//! between: slower, never wrong. This replaces the index `connections_time`, which every record
//! paid for on insert (0.2 to 0.3 µs per record, `BENCHMARKS.md`), with one row per flush.

use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

/// SQL: the smallest id a record with `time_ms >= $from` can have (`$from`: an SQL expression
/// given as a string literal, e.g. `"?1"`).
macro_rules! from_id {
    ($from:literal) => {
        concat!(
            "COALESCE((SELECT first_id FROM connection_spans WHERE max_before_ms >= ",
            $from,
            " ORDER BY max_before_ms, first_id LIMIT 1), (SELECT last_id + 1 FROM connection_spans ORDER BY id DESC LIMIT 1), 0)"
        )
    };
}
pub(super) use from_id;

/// SQL: the largest id a record with `time_ms < $until` can have (`$until` as in [`from_id!`]).
macro_rules! until_id {
    ($until:literal) => {
        concat!(
            "CASE WHEN EXISTS (SELECT 1 FROM connections WHERE id > COALESCE((SELECT last_id FROM connection_spans ORDER BY id DESC LIMIT 1), 0))
                 THEN 9223372036854775807
                 ELSE COALESCE((SELECT last_id FROM connection_spans WHERE min_after_ms < ",
            $until,
            " ORDER BY min_after_ms DESC, last_id DESC LIMIT 1), 0) END"
        )
    };
}
pub(super) use until_id;

/// SQL condition: `$id` (the record id column, e.g. `"c.id"`) is in the id range of the records
/// with `$from <= time_ms < $until`. Add it beside the query's own condition on `time_ms`.
macro_rules! id_window {
    ($id:literal, $from:literal, $until:literal) => {
        concat!(
            " ",
            $id,
            " BETWEEN ",
            $crate::journal::spans::from_id!($from),
            " AND ",
            $crate::journal::spans::until_id!($until),
            " "
        )
    };
}
pub(super) use id_window;

/// Version 17's migration: the table and its indexes, filled for the records already there (one
/// span per 4,096 ids), and `connections_time` dropped.
pub(super) const MIGRATION: &str = "
CREATE TABLE connection_spans (
    id            INTEGER PRIMARY KEY,
    first_id      INTEGER NOT NULL,
    last_id       INTEGER NOT NULL,
    min_time_ms   INTEGER NOT NULL,
    max_time_ms   INTEGER NOT NULL,
    max_before_ms INTEGER NOT NULL,
    min_after_ms  INTEGER NOT NULL
);
INSERT INTO connection_spans (first_id, last_id, min_time_ms, max_time_ms, max_before_ms, min_after_ms)
    SELECT first_id, last_id, lo, hi,
        MAX(hi) OVER (ORDER BY first_id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
        MIN(lo) OVER (ORDER BY first_id ROWS BETWEEN CURRENT ROW AND UNBOUNDED FOLLOWING)
    FROM (SELECT MIN(id) AS first_id, MAX(id) AS last_id, MIN(time_ms) AS lo, MAX(time_ms) AS hi
          FROM connection_rows GROUP BY id / 4096)
    ORDER BY first_id;
CREATE INDEX connection_spans_from ON connection_spans (max_before_ms, first_id);
CREATE INDEX connection_spans_until ON connection_spans (min_after_ms, last_id);
DROP INDEX IF EXISTS connections_time;
";

/// Adds the span of a flush that found `before` as the highest record id and wrote the ids after
/// it up to `last` (`times`: the smallest and largest `time_ms` it wrote; `None`: no record).
/// Records written outside flushes since the last span join it (their times are read); when ids
/// went back (the highest records were deleted, e.g. by retention), the spans past `before` are
/// cut back first, as ids after it are written again.
pub(super) fn extend(tx: &Transaction<'_>, before: i64, last: i64, times: Option<(i64, i64)>) -> rusqlite::Result<()> {
    let latest = |tx: &Transaction<'_>| -> rusqlite::Result<Option<(i64, i64)>> {
        tx.prepare_cached("SELECT last_id, max_before_ms FROM connection_spans ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
    };
    let mut previous = latest(tx)?;
    if previous.is_some_and(|(spanned, _)| spanned > before) {
        tx.prepare_cached("DELETE FROM connection_spans WHERE first_id > ?1")?.execute([before])?;
        tx.prepare_cached("UPDATE connection_spans SET last_id = ?1 WHERE last_id > ?1")?.execute([before])?;
        previous = latest(tx)?;
    }
    let spanned = previous.map_or(0, |(spanned, _)| spanned);
    let mut times = times;
    if before > spanned {
        let outside: (Option<i64>, Option<i64>) = tx
            .prepare_cached("SELECT MIN(time_ms), MAX(time_ms) FROM connection_rows WHERE id > ?1 AND id <= ?2")?
            .query_row([spanned, before], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if let (Some(lo), Some(hi)) = outside {
            times = Some(times.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
    let Some((lo, hi)) = times else {
        return Ok(());
    };
    let max_before = previous.map_or(hi, |(_, m)| m.max(hi));
    tx.prepare_cached("UPDATE connection_spans SET min_after_ms = ?1 WHERE min_after_ms > ?1")?.execute([lo])?;
    tx.prepare_cached(
        "INSERT INTO connection_spans (first_id, last_id, min_time_ms, max_time_ms, max_before_ms, min_after_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?3)",
    )?
    .execute(params![spanned + 1, last.max(before), lo, hi, max_before])?;
    Ok(())
}

/// After retention deleted the records before `cut`: the spans whose records all were before it
/// (the ranges of later spans stay as they are; the bounds stay true for the records left).
pub(super) fn purge(tx: &Transaction<'_>, cut: i64) -> rusqlite::Result<usize> {
    tx.execute("DELETE FROM connection_spans WHERE max_before_ms < ?1", [cut])
}

/// The spans through which a time range could miss records (their ids): a journal changed outside
/// the monitor. Each span must start after the one before with no record between them, and its
/// `max_before_ms` and `min_after_ms` must bound the times of its records taken with those of
/// the spans before and after, and never decrease. Reads every record once (`journal verify`).
/// None in a journal without spans.
pub(super) fn check(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    type Span = (i64, i64, i64, i64, i64);
    let spans: Vec<Span> = conn
        .prepare("SELECT id, first_id, last_id, max_before_ms, min_after_ms FROM connection_spans ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if spans.is_empty() {
        return Ok(Vec::new());
    }
    // Through the view: the records of every schema a span can be in.
    // The times of the records from the end of the span before to this one's end, and whether
    // any of them lies before this span's first id (no span covers it).
    let mut times = conn.prepare(
        "SELECT MIN(time_ms), MAX(time_ms), COALESCE(SUM(id < ?2), 0) FROM connections WHERE id > ?1 AND id <= ?3",
    )?;
    let mut covered: Vec<(Option<i64>, Option<i64>)> = Vec::with_capacity(spans.len());
    let mut wrong = std::collections::BTreeSet::new();
    let mut end = i64::MIN;
    for &(id, first, last, _, _) in &spans {
        let (lo, hi, uncovered): (Option<i64>, Option<i64>, i64) =
            times.query_row([end, first, last.max(end)], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if first <= end || last < first || uncovered > 0 {
            wrong.insert(id);
        }
        covered.push((lo, hi));
        end = end.max(last);
    }
    let (mut latest, mut before) = (i64::MIN, i64::MIN);
    for (&(id, _, _, max_before, _), &(_, hi)) in spans.iter().zip(&covered) {
        latest = latest.max(hi.unwrap_or(i64::MIN));
        if max_before < latest || max_before < before {
            wrong.insert(id);
        }
        before = max_before;
    }
    let (mut earliest, mut after) = (i64::MAX, i64::MAX);
    for (&(id, _, _, _, min_after), &(lo, _)) in spans.iter().zip(&covered).rev() {
        earliest = earliest.min(lo.unwrap_or(i64::MAX));
        if min_after > earliest || min_after > after {
            wrong.insert(id);
        }
        after = min_after;
    }
    Ok(wrong.into_iter().collect())
}

/// Undoes [`MIGRATION`] (the time index back, no spans): for tests of older journals.
#[cfg(test)]
pub(super) fn as_schema_16(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "DROP TABLE IF EXISTS connection_spans; CREATE INDEX IF NOT EXISTS connections_time ON connection_rows (time_ms);",
    )
}

#[cfg(test)]
mod tests;
