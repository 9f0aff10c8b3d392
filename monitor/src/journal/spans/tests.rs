//! The id window against a scan of every record: real journals written by the writer, with
//! records late by up to an hour, records written and deleted through the view between flushes,
//! ids reused after the highest records were deleted, and retention.

use rusqlite::Connection;

use crate::{
    journal::{
        JournalWriter,
        schema::migrations,
        tests::{
            fixtures::{self, Flow, Rng, at},
            int, raw, tempdir, writer_in,
        },
    },
    tracker::record::RecordKind::Close,
};

const T0: i64 = 1_794_787_200;

/// The ids of the records with `from <= time_ms < until` (ms), in order: by a scan of every
/// record (the truth), and through the window.
fn both(conn: &Connection, from: i64, until: i64) -> (Vec<i64>, Vec<i64>) {
    let read = |sql: &str| -> Vec<i64> {
        let mut stmt = conn.prepare(sql).expect(sql);
        stmt.query_map([from, until], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("ids")
    };
    let scan = read("SELECT id FROM connection_rows WHERE time_ms >= ?1 AND time_ms < ?2 ORDER BY id");
    let windowed = read(concat!(
        "SELECT id FROM connections WHERE time_ms >= ?1 AND time_ms < ?2 AND",
        id_window!("id", "?1", "?2"),
        "ORDER BY id"
    ));
    (scan, windowed)
}

/// The id window of `[from, until)`.
fn window(conn: &Connection, from: i64, until: i64) -> (i64, i64) {
    conn.query_row(concat!("SELECT ", from_id!("?1"), ", ", until_id!("?2")), [from, until], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("window")
}

/// A value in `0..n` from `rng`, as a time offset or count.
fn below(rng: &mut Rng, n: u64) -> i64 {
    i64::try_from(rng.below(n)).expect("small")
}

/// Writes `n` records of flush `k` (one minute each from `T0`), a few of them late.
fn write_flush(w: &mut JournalWriter, rng: &mut Rng, k: i64, n: i64, late: bool) {
    let app = fixtures::app("churn");
    let dest = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    for i in 0..n {
        let mut secs = T0 + k * 60 + below(rng, 50);
        if late && below(rng, 25) == 0 {
            secs -= below(rng, 3600);
        }
        let cookie = u64::try_from(k * 1000 + i).expect("positive");
        w.append(&Flow::new(cookie, "192.0.2.7:443", at(secs)).record(Close, at(secs), 10, 20), &app, Some(&dest));
    }
    w.flush().expect("flush");
}

/// Inserts a copy of the latest record through the view, at `time_ms` (as a user's SQL could).
fn insert_outside(conn: &Connection, time_ms: i64) {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('connections') WHERE name NOT IN ('id', 'time_ms')")
        .expect("columns")
        .query_map([], |r| r.get(0))
        .expect("columns")
        .collect::<Result<_, _>>()
        .expect("columns");
    let rest = columns.join(", ");
    conn.execute(
        &format!(
            "INSERT INTO connections (time_ms, {rest}) SELECT ?1, {rest} FROM connections
             WHERE id = (SELECT MAX(id) FROM connections)"
        ),
        [time_ms],
    )
    .expect("insert through the view");
}

/// Every boundary pair from an hour before the first flush to past the last: the window reads
/// exactly the records a scan reads.
fn assert_exact(conn: &Connection, flushes: i64) {
    let bounds: Vec<i64> = (-70..=flushes + 2).map(|m| (T0 + m * 60) * 1000).chain([i64::MIN, i64::MAX]).collect();
    let mut pairs = 0;
    for &from in &bounds {
        for &until in bounds.iter().filter(|&&u| u > from) {
            let (scan, windowed) = both(conn, from, until);
            assert_eq!(windowed, scan, "[{from}, {until})");
            pairs += 1;
        }
    }
    assert!(pairs > 1000, "{pairs}");
}

#[test]
fn a_time_range_reads_exactly_the_records_a_scan_reads() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let conn = raw(w.path());
    let mut rng = Rng(7);
    const FLUSHES: i64 = 60;
    for k in 0..FLUSHES {
        if k % 10 == 5 {
            // Written between flushes, an hour back or ahead.
            insert_outside(&conn, (T0 + k * 60 - 3600 + below(&mut rng, 7200)) * 1000);
            insert_outside(&conn, (T0 + k * 60) * 1000);
        }
        if k == 30 {
            // The highest records deleted: the next flush writes their ids again.
            conn.execute("DELETE FROM connections WHERE id > (SELECT MAX(id) - 5 FROM connections)", [])
                .expect("delete the latest");
        }
        if k == 45 {
            // Retention: 30 days after the 20th minute.
            let purged = w.purge_expired(at(T0 + 20 * 60 + 30 * 86_400)).expect("purge");
            assert!(purged.connections > 0);
        }
        let n = 1 + below(&mut rng, 40);
        write_flush(&mut w, &mut rng, k, n, true);
    }
    assert!(int(&conn, "SELECT COUNT(*) FROM connection_rows") > 500);
    assert!(int(&conn, "SELECT COUNT(*) FROM connection_spans") >= FLUSHES - 20);
    assert_exact(&conn, FLUSHES);
    // After the last flush, through the view: past every span.
    insert_outside(&conn, (T0 - 600) * 1000);
    assert_exact(&conn, FLUSHES);
}

/// With times that only go forward, the window of a minute is that minute's flush: a query reads
/// a few dozen records, not the journal.
#[test]
fn the_window_of_a_minute_is_its_flush() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let conn = raw(w.path());
    let mut rng = Rng(11);
    for k in 0..20 {
        write_flush(&mut w, &mut rng, k, 30, false);
    }
    let (first, last) = (T0 + 10 * 60, T0 + 11 * 60);
    let (lo, hi) = window(&conn, first * 1000, last * 1000);
    let expected: (i64, i64) = conn
        .query_row(
            "SELECT MIN(id), MAX(id) FROM connection_rows WHERE time_ms >= ?1 AND time_ms < ?2",
            [first * 1000, last * 1000],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("truth");
    assert_eq!((lo, hi), expected, "the 11th flush's 30 records of 600");
    assert_exact(&conn, 20);
    // A record through the view after the last flush: every later id is in every window.
    insert_outside(&conn, (T0 + 10 * 60) * 1000);
    let (_, hi) = window(&conn, first * 1000, last * 1000);
    assert_eq!(hi, i64::MAX);
    assert_exact(&conn, 20);
}

/// Version 17 builds spans for the records already there and drops `connections_time`; time
/// ranges through the view then seek record ids, not scan.
#[test]
fn the_migration_spans_existing_records_and_ranges_seek_ids() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    let mut conn = Connection::open(&path).expect("open");
    migrations().to_version(&mut conn, 16).expect("schema 16");
    conn.execute_batch(
        "INSERT INTO apps (id, identity, name, uid, source, first_seen_ms, last_seen_ms)
             VALUES (1, 'a', 'a', 0, 'test', 0, 0);",
    )
    .expect("app");
    let mut rng = Rng(3);
    for i in 0..10_000 {
        // Mostly forward, some late by up to an hour.
        let t = (T0 + i / 10) * 1000 - if below(&mut rng, 50) == 0 { below(&mut rng, 3_600_000) } else { 0 };
        conn.execute(
            "INSERT INTO connections (event, time_ms, first_seen_ms, cookie, app_id, app_pid, app_start_time,
                 owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol,
                 direction, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx,
                 delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, payload_source,
                 complete, name_source, ech_outer)
             VALUES ('close', ?1, ?1, ?2, 1, 1, 1, 1, 1, 0, 0, 'x', 1, 'sock_create', 'tcp', 'outbound', 1, 1, 1, 1,
                 1, 1, 1, 1, 1, 1, 1, 1, 'syscall', 1, 'none', 0)",
            [t, i],
        )
        .expect("record");
    }
    migrations().to_latest(&mut conn).expect("schema 17");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'connections_time'"), 0);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_spans"), 3, "ids 1-4095, 4096-8191, 8192-10000");
    for (from, until) in [(0, 200), (100, 101), (500, 900), (990, 1001), (-3600, 5)] {
        let (scan, windowed) = both(&conn, (T0 + from) * 1000, (T0 + until) * 1000);
        assert_eq!(windowed, scan, "[{from}, {until}) s");
    }
    let plan: Vec<String> = conn
        .prepare(concat!(
            "EXPLAIN QUERY PLAN SELECT c.payload_tx, a.name FROM connections c JOIN apps a ON a.id = c.app_id
             WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
            id_window!("c.id", "?1", "?2")
        ))
        .expect("plan")
        .query_map([0, 1], |r| r.get(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    let plan = plan.join("; ");
    assert!(plan.contains("SEARCH r USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), "{plan}");
    assert!(plan.contains("connection_spans_from") && plan.contains("connection_spans_until"), "{plan}");
}

/// `journal verify` names a span changed or removed outside the monitor, through which a time
/// range would miss records, and none of a journal the writer wrote.
#[test]
fn verify_names_spans_that_no_longer_bound_their_records() {
    use crate::journal::{IntegrityProblem as Problem, verify_chain};
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let mut rng = Rng(5);
    for k in 0..10 {
        write_flush(&mut w, &mut rng, k, 20, true);
    }
    let path = w.path().to_path_buf();
    drop(w);
    let spans = |path: &std::path::Path| -> Vec<i64> {
        verify_chain(path)
            .expect("verify")
            .problems
            .into_iter()
            .filter_map(|p| match p {
                Problem::SpanWrong { span } => Some(span),
                _ => None,
            })
            .collect()
    };
    assert_eq!(spans(&path), Vec::<i64>::new());
    let conn = raw(&path);
    // A later earliest time for span 4: a range before it would stop short of its records.
    conn.execute("UPDATE connection_spans SET min_after_ms = min_after_ms + 3600000 WHERE id = 4", []).expect("tamper");
    assert!(spans(&path).contains(&4), "{:?}", spans(&path));
    conn.execute("UPDATE connection_spans SET min_after_ms = min_after_ms - 3600000 WHERE id = 4", []).expect("undo");
    assert_eq!(spans(&path), Vec::<i64>::new());
    // A span removed: its records lie in no span, and a range of its minute misses them.
    conn.execute("DELETE FROM connection_spans WHERE id = 6", []).expect("remove");
    assert_eq!(spans(&path), vec![7]);
    let (scan, windowed) = both(&conn, (T0 + 5 * 60) * 1000, (T0 + 6 * 60) * 1000);
    assert!(windowed.len() < scan.len(), "{} of {}", windowed.len(), scan.len());
}
