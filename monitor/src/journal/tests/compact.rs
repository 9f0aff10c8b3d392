//! Schema 14: connection records stored compactly behind the view `connections`.

use rusqlite::{Connection, types::Value};

use super::{
    fixtures::{self, Flow, at},
    int, raw, tempdir, writer_in,
};
use crate::journal::schema::{COMPACT_VIEW, SCHEMA_VERSION, migrations};

/// Every column of the view, as schema 13's table had them.
const COLUMNS: &str = "id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time,
    owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction,
    local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx,
    delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx,
    payload_source, complete, scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname,
    registrable_domain, name_source, dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus,
    COALESCE(country_answers, (SELECT text FROM answer_sets s WHERE s.id = answers_id))";

fn rows(conn: &Connection) -> Vec<Vec<Value>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM connections ORDER BY id")).expect("select");
    let n = stmt.column_count();
    stmt.query_map([], |row| (0..n).map(|i| row.get::<_, Value>(i)).collect::<Result<Vec<_>, _>>())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// Schema 13 rows of every shape: an unnamed flow without remote address, a named one with
/// country answers stored inline (schema 7 to 12) and by id, one from before the names columns,
/// two sharing owner and destination, text that needs escaping.
const V13_ROWS: &str = "
INSERT INTO apps (id, identity, name, uid, source, first_seen_ms, last_seen_ms) VALUES
    (1, 'a', 'curl', 1000, 'proc', 1, 2), (2, 'b', 'x''; DROP TABLE apps; --', 0, 'kernel', 1, 2);
INSERT INTO databases (id, role, database_type, build_epoch) VALUES (1, 'country', 'GeoLite2-Country', 7);
INSERT INTO answer_sets (id, text) VALUES (5, '[{\"country\":\"DE\"}]');
INSERT INTO connections (id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time,
    owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction,
    local_ip, local_port, remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx,
    delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx,
    payload_source, complete, scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname,
    registrable_domain, name_source, dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus, country_answers,
    answers_id) VALUES
    (1, 'close', 10, 5, 10, 77, 1, 100, 9, 100, 101, 1000, 1000, 'curl', 4, 'kernel', 'udp', 'outbound',
     '10.0.0.1', 5000, NULL, NULL, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6, 'syscall', 1, NULL, NULL, NULL, NULL,
     NULL, NULL, 17, NULL, NULL, 'none', NULL, 0, NULL, NULL, NULL, NULL, NULL),
    (2, 'update', 20, 5, NULL, 78, 1, 100, 9, 100, 101, 1000, 1000, 'curl', 4, 'kernel', 'tcp', 'outbound',
     '10.0.0.1', 5001, '81.2.69.142', 443, 100, 200, 300, 400, 5, 6, 100, 200, 300, 400, 5, 6, 'tcp_info', 0,
     'public', 'GB', 20712, 'Andrews & Arnold', 1, NULL, 6, 'api.example.com', 'example.com', 'sni', 'cdn.example.net',
     0, 1200, 1500, 'agree', '[{\"country\":\"GB\"}]', NULL),
    (3, 'close', 30, 5, 30, 78, 1, 100, 9, 100, 101, 1000, 1000, 'curl', 4, 'kernel', 'tcp', 'outbound',
     '10.0.0.1', 5001, '81.2.69.142', 443, 150, 250, 350, 450, 7, 8, 50, 50, 50, 50, 2, 2, 'tcp_info', 1,
     'public', 'GB', 20712, 'Andrews & Arnold', 1, NULL, 6, 'api.example.com', 'example.com', 'sni', 'cdn.example.net',
     0, 1100, 1400, 'agree', NULL, 5),
    (4, 'close', 40, 35, 40, 79, 2, 200, 8, 200, 200, 0, 0, 'x''\n<b>', 1, 'proc', 'raw', 'outbound',
     NULL, NULL, '2001:db8::1', 0, 9, 0, 29, 0, 1, 0, 9, 0, 29, 0, 1, 0, 'ip_layer', 1, 'unenriched', NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
";

/// Migrating schema 13 to 14 keeps every value of every record (the view reads them back; the
/// inline answers text moves to `answer_sets`), shares what repeats, and the view stays writable.
#[test]
fn migration_to_compact_rows_keeps_every_value() {
    let mut conn = Connection::open_in_memory().expect("memory");
    conn.execute_batch("PRAGMA foreign_keys = ON").expect("foreign keys");
    migrations().to_version(&mut conn, 13).expect("schema 13");
    conn.execute_batch(V13_ROWS).expect("rows");
    let before = rows(&conn);
    assert_eq!(before.len(), 4);
    migrations().to_latest(&mut conn).expect("schema 14");
    assert_eq!(rows(&conn), before, "every value reads back through the view");
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).expect(sql);
    assert_eq!(count("SELECT COUNT(*) FROM connection_rows"), 4);
    assert_eq!(count("SELECT COUNT(*) FROM connection_owners"), 2, "rows 1 to 3 share their owner");
    assert_eq!(count("SELECT COUNT(*) FROM connection_destinations"), 3, "row 1 has none, 2 and 3 differ in answers");
    assert_eq!(count("SELECT COUNT(*) FROM connection_names"), 2, "row 1 is unnamed, row 4 predates names");
    assert_eq!(count("SELECT COUNT(*) FROM connection_rows WHERE names_id IS NULL"), 1);
    assert_eq!(count("SELECT COUNT(*) FROM connections WHERE country_answers IS NOT NULL"), 0);
    assert_eq!(count("SELECT COUNT(*) FROM connections WHERE hostname = 'api.example.com'"), 2);

    // Writable as the table was: an update re-interns, a delete removes the row alone.
    conn.execute("UPDATE connections SET owner_comm = 'wget', payload_tx = payload_tx + 1 WHERE id = 3", [])
        .expect("update");
    let changed = rows(&conn);
    assert_eq!(changed[2][13], Value::Text("wget".into()));
    assert_eq!(changed[2][22], Value::Integer(151));
    assert_eq!(changed[1][13], Value::Text("curl".into()), "the shared owner of row 2 is untouched");
    assert_eq!(count("SELECT COUNT(*) FROM connection_owners"), 3);
    conn.execute("DELETE FROM connections WHERE id = 1", []).expect("delete");
    assert_eq!(count("SELECT COUNT(*) FROM connections"), 3);
    assert_eq!(count("SELECT MIN(id) FROM connection_rows"), 2);
}

/// Lookups through the view still find their indexes on `connection_rows`: a socket's records
/// at an endpoint (the rollups' probe), a time range (reports), a host name.
#[test]
fn lookups_through_the_view_use_the_indexes() {
    let mut conn = Connection::open_in_memory().expect("memory");
    migrations().to_latest(&mut conn).expect("schema");
    let plan = |sql: &str| -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect(sql);
        let rows = stmt.query_map([], |r| r.get::<_, String>(3)).expect("plan");
        rows.collect::<Result<Vec<_>, _>>().expect("plan rows").join("; ")
    };
    let probe = plan(
        "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id
             WHERE c.cookie = 1 AND c.lookup IS NOT NULL AND c.remote_ip = '192.0.2.1' AND c.remote_port = 443 AND c.time_ms >= 0
                 AND c.time_ms < 9 AND c.direction != 'inbound' AND c.protocol = 'tcp' AND a.name = 'curl')",
    );
    assert!(probe.contains("connections_cookie"), "{probe}");
    // Schema 17: a time range seeks record ids through `connection_spans` (`journal::spans`).
    let range = plan(concat!(
        "SELECT payload_tx, owner_comm FROM connections WHERE time_ms >= 5 AND",
        crate::journal::spans::id_window!("id", "5", "9"),
        "ORDER BY time_ms, id"
    ));
    assert!(range.contains("USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"), "{range}");
    let named = plan("SELECT id FROM connections WHERE hostname = 'api.example.com' AND time_ms >= 0");
    assert!(named.contains("connections_hostname"), "{named}");
}

/// Retention deletes the shared parts no record names any more, and the writer forgets their
/// ids: a later record of a purged owner and destination is stored whole again, and the chain
/// still verifies.
#[test]
fn purged_shared_parts_are_deleted_and_written_again_when_seen_again() {
    use crate::tracker::record::RecordKind::Close;
    const NOW: i64 = 1_794_787_200;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let (old_app, new_app) = (fixtures::app("old"), fixtures::app("new"));
    let (fr, de) =
        (fixtures::public(Some("FR"), Some(16276), Some("OVH SAS")), fixtures::public(Some("DE"), None, None));
    let old = at(NOW - 31 * 86_400);
    w.append(&Flow::new(1, "192.0.2.9:443", old).record(Close, old, 1000, 1), &old_app, Some(&fr));
    w.append(&Flow::new(2, "192.0.2.10:443", at(NOW)).record(Close, at(NOW), 2000, 2), &new_app, Some(&de));
    w.flush().expect("flush");
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_owners"), 2);
    let purged = w.purge_expired(at(NOW)).expect("purge");
    assert_eq!(purged.connections, 1);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_owners"), 1, "the old app's owner is gone");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_destinations"), 1, "so is FR");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM apps WHERE name = 'old'"), 0);
    let later = at(NOW + 60);
    w.append(&Flow::new(3, "192.0.2.9:443", later).record(Close, later, 3000, 3), &old_app, Some(&fr));
    w.flush().expect("flush after purge");
    let row: (String, String, i64, i64) = conn
        .query_row(
            "SELECT a.name, c.country, c.asn, c.payload_tx FROM connections c JOIN apps a ON a.id = c.app_id
             WHERE c.cookie = 3",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("the new record reads back whole");
    assert_eq!(row, ("old".into(), "FR".into(), 16276, 3000));
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections WHERE owner_comm IS NULL OR event IS NULL"), 0);
    let v = crate::journal::verify_chain(w.path()).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

/// Only a socket's first record at an endpoint or service in a week feeds `connections_cookie`
/// (`lookup`): a UDP server's later records from an address do not. A writer started again,
/// which knows nothing of the earlier records, still finds every socket's earlier record in the
/// table, and each socket counts once per endpoint and service.
#[test]
fn a_restarted_writer_finds_earlier_records_through_the_flagged_ones() {
    use crate::tracker::record::{
        Direction,
        RecordKind::{Close, Update},
    };
    const T0: i64 = 1_794_787_200;
    let dir = tempdir();
    let (server, client) = (fixtures::app("udp-server"), fixtures::app("curl"));
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let peer = |address: &str, port: u64| {
        let mut f = Flow::new(5, &format!("{address}:{port}"), at(T0));
        f.direction = Direction::Inbound;
        f
    };
    let mut tcp = Flow::new(9, "192.0.2.50:443", at(T0));
    {
        let mut w = writer_in(dir.path());
        for port in 0..50 {
            w.append(&peer("192.0.2.1", 20_000 + port).record(Close, at(T0 + 1), 10, 1), &server, Some(&us));
        }
        w.append(&tcp.record(Update, at(T0 + 2), 100, 0), &client, Some(&us));
        w.flush().expect("flush");
        let conn = raw(w.path());
        assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows"), 51);
        assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NOT NULL"), 2, "two firsts");
    }
    let mut w = writer_in(dir.path());
    w.append(&peer("192.0.2.1", 30_000).record(Close, at(T0 + 3), 10, 1), &server, Some(&us));
    w.append(&peer("192.0.2.2", 30_001).record(Close, at(T0 + 3), 10, 1), &server, Some(&us));
    w.append(&tcp.record(Close, at(T0 + 4), 50, 0), &client, Some(&us));
    w.flush().expect("flush");
    assert!(w.rollup_lookups() >= 2, "the table answered for sockets this writer did not write");
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NOT NULL"), 3, "192.0.2.2 is new");
    let flows = |ip: &str| int(&conn, &format!("SELECT SUM(flows) FROM endpoint_week WHERE remote_ip = '{ip}'"));
    assert_eq!(flows("192.0.2.1"), 1, "one socket at that address, across the restart");
    assert_eq!(flows("192.0.2.2"), 1);
    assert_eq!(flows("192.0.2.50"), 1, "the TCP socket's update and close are one flow");
    // A flow per (socket, endpoint): inbound peers grouped by address, as endpoints are.
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week WHERE app = 'udp-server'"), 2);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week WHERE app = 'curl'"), 1);
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week WHERE remote_ip = '192.0.2.1'"), 510);
    // Another time zone cuts other weeks: a record that was no first may be one now, so the
    // rebuild flags every covered record.
    drop(w);
    let config = crate::journal::JournalConfig {
        path: dir.path().join("state/journal.db"),
        ..crate::journal::JournalConfig::default()
    };
    let _tokyo = crate::journal::JournalWriter::open(
        &config,
        super::run(),
        &crate::zone::Zone::get("Asia/Tokyo").expect("zone"),
    )
    .expect("reopen");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NULL"), 0);
}

/// A socket's final record (`final_of_socket`: a TCP socket released and closed) stays out of
/// `connections_cookie` even when it is the socket's first, as every short connection's only
/// record is; its flow still counts once, and a later socket at the same endpoint counts again.
#[test]
fn a_sockets_final_record_feeds_no_probe_index() {
    use crate::tracker::record::RecordKind::Close;
    const T0: i64 = 1_794_787_200;
    let dir = tempdir();
    let curl = fixtures::app("curl");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let close = |cookie: u64, final_of_socket: bool| {
        let mut r = Flow::new(cookie, "192.0.2.60:443", at(T0)).record(Close, at(T0 + 1), 100, 1000);
        r.final_of_socket = final_of_socket;
        r
    };
    {
        let mut w = writer_in(dir.path());
        w.append(&close(21, true), &curl, Some(&us));
        w.append(&close(22, false), &curl, Some(&us));
        w.flush().expect("flush");
        let conn = raw(w.path());
        assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows"), 2);
        assert_eq!(
            int(&conn, "SELECT cookie FROM connection_rows WHERE lookup IS NOT NULL"),
            22,
            "only the record that is not final"
        );
    }
    let mut w = writer_in(dir.path());
    w.append(&close(23, true), &curl, Some(&us));
    w.flush().expect("flush");
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NOT NULL"), 1);
    let sum = |col: &str| int(&conn, &format!("SELECT SUM({col}) FROM endpoint_week WHERE remote_ip = '192.0.2.60'"));
    assert_eq!(sum("flows"), 3, "three sockets, one flow each");
    assert_eq!((sum("payload_tx"), sum("payload_rx")), (300, 3000));
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week WHERE app = 'curl'"), 3);
    let v = crate::journal::verify_chain(w.path()).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

/// The migration copies every record, so for a moment the file holds them twice. On a full disk
/// it fails whole: the journal stays at schema 13 with every record, and a later open with room
/// migrates it.
#[test]
fn a_migration_that_runs_out_of_room_leaves_schema_13_intact() {
    let dir = tempdir();
    let path = dir.path().join("journal.db");
    let mut conn = Connection::open(&path).expect("file");
    migrations().to_version(&mut conn, 13).expect("schema 13");
    conn.execute_batch(V13_ROWS).expect("rows");
    let before = rows(&conn);
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).expect("pages");
    conn.pragma_update(None, "max_page_count", pages).expect("limit");
    assert!(migrations().to_latest(&mut conn).is_err(), "no room for the copy");
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version");
    assert_eq!(version, 13);
    let kind: String = conn
        .query_row("SELECT type FROM sqlite_schema WHERE name = 'connections'", [], |r| r.get(0))
        .expect("connections");
    assert_eq!(kind, "table", "nothing of schema 14 is left behind");
    assert_eq!(rows(&conn), before, "every record as it was");
    conn.pragma_update(None, "max_page_count", 1_000_000).expect("room");
    migrations().to_latest(&mut conn).expect("schema 14 once there is room");
    assert_eq!(rows(&conn), before);
}

/// Turns a schema 15 journal into schema 14 as 570ac23 to 6b09668 wrote it, before `lookup` was
/// added to that migration: no column, a view and triggers without it, a full cookie index.
fn as_schema_14_without_lookup(conn: &Connection) {
    let view = COMPACT_VIEW
        .replace(", r.lookup AS lookup", "")
        .replace(", names_id, lookup)", ", names_id)")
        .replace(", COALESCE(NEW.lookup, 1))", ")")
        .replace(", answers_id, lookup)", ", answers_id)")
        .replace(", NEW.answers_id, NEW.lookup)", ", NEW.answers_id)");
    assert!(!view.contains("lookup"), "{view}");
    crate::journal::chain::as_schema_15_batches(conn).expect("batches of schema 15");
    conn.execute_batch(&format!(
        "DROP VIEW connections; DROP INDEX connections_cookie; ALTER TABLE connection_rows DROP COLUMN lookup;
         {view}
         CREATE INDEX connections_cookie ON connection_rows (cookie, remote_ip, remote_port, time_ms);
         PRAGMA user_version = 14;"
    ))
    .expect("schema 14 without lookup");
}

/// A journal at schema 14 without `lookup` (written by main before that column was added to the
/// migration) is repaired by version 15: the column is added and set on every record, the view
/// reads and writes it, the cookie index is partial again, every value reads back as before,
/// the chain verifies, and a writer started on it finds the socket's earlier record.
#[test]
fn schema_15_repairs_a_schema_14_journal_without_lookup() {
    use crate::tracker::record::RecordKind::{Close, Update};
    const T0: i64 = 1_794_787_200;
    let dir = tempdir();
    let (curl, us) = (fixtures::app("curl"), fixtures::public(Some("US"), Some(15169), Some("Google LLC")));
    let mut tcp = Flow::new(9, "192.0.2.50:443", at(T0));
    let path = {
        let mut w = writer_in(dir.path());
        w.append(&tcp.record(Update, at(T0 + 1), 100, 10), &curl, Some(&us));
        w.append(&Flow::new(10, "192.0.2.51:53", at(T0)).record(Close, at(T0 + 1), 30, 60), &curl, None);
        w.flush().expect("flush");
        w.path().to_path_buf()
    };
    let conn = raw(&path);
    let before = rows(&conn);
    as_schema_14_without_lookup(&conn);
    assert!(conn.prepare("SELECT lookup FROM connection_rows").is_err(), "the broken schema is reproduced");
    assert_eq!(rows(&conn), before, "the view without lookup reads every value");

    let mut w = writer_in(dir.path());
    assert_eq!(int(&conn, "PRAGMA user_version"), i64::from(SCHEMA_VERSION));
    assert_eq!(rows(&conn), before, "every value reads back after the repair");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup = 1"), 2, "every record may be probed");
    let index: String = conn
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'connections_cookie'", [], |r| r.get(0))
        .expect("index");
    assert!(index.ends_with("WHERE lookup IS NOT NULL"), "{index}");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections WHERE lookup = 1"), 2, "the view reads lookup");

    w.append(&tcp.record(Close, at(T0 + 2), 50, 5), &curl, Some(&us));
    w.flush().expect("a writer writes the repaired journal");
    assert!(w.rollup_lookups() >= 1, "the restarted writer asked the table");
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week WHERE remote_ip = '192.0.2.50'"), 1, "one socket");
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week WHERE remote_ip = '192.0.2.50'"), 150);
    conn.execute("UPDATE connections SET owner_comm = 'wget' WHERE cookie = 10", [])
        .expect("the view's triggers write lookup");
    assert_eq!(int(&conn, "SELECT lookup FROM connection_rows WHERE cookie = 10"), 1);
    drop(w);
    let v = crate::journal::verify_chain(&path).expect("verify");
    assert_eq!(v.problems.len(), 1, "only the row the test changed: {:?}", v.problems);
}

/// A schema 14 journal that has `lookup` keeps every value of it at version 15: records that
/// are no first stay out of the cookie index.
#[test]
fn schema_15_leaves_a_schema_14_journal_with_lookup_as_it_is() {
    use crate::tracker::record::{Direction, RecordKind::Close};
    const T0: i64 = 1_794_787_200;
    let dir = tempdir();
    let server = fixtures::app("udp-server");
    let path = {
        let mut w = writer_in(dir.path());
        for port in 0..5 {
            let mut f = Flow::new(5, &format!("192.0.2.1:{}", 20_000 + port), at(T0));
            f.direction = Direction::Inbound;
            w.append(&f.record(Close, at(T0 + 1), 10, 1), &server, None);
        }
        w.flush().expect("flush");
        w.path().to_path_buf()
    };
    let conn = raw(&path);
    crate::journal::chain::as_schema_15_batches(&conn).expect("batches of schema 15");
    conn.execute_batch("PRAGMA user_version = 14").expect("version");
    // `batches` gains `row_format` at version 16, version 17 replaces `connections_time` with
    // `connection_spans` (`journal::spans`).
    let schema_14 = |conn: &Connection| -> Vec<Vec<Value>> {
        let mut stmt = conn
            .prepare(
                "SELECT type, name, sql FROM sqlite_schema
                 WHERE name != 'batches' AND name != 'connections_time' AND tbl_name != 'connection_spans'
                 ORDER BY name",
            )
            .expect("schema");
        stmt.query_map([], |r| Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?]))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    let (before, objects) = (rows(&conn), schema_14(&conn));
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NULL"), 4);
    // Up to schema 17: 18 empties `rollup_state`, and a writer's rebuild then flags every covered
    // record (as for another time zone).
    let mut up = Connection::open(&path).expect("open");
    migrations().to_version(&mut up, 17).expect("schema 17");
    drop(up);
    assert_eq!(int(&conn, "PRAGMA user_version"), 17);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup IS NULL"), 4, "no first stays out");
    assert_eq!(rows(&conn), before);
    assert_eq!(schema_14(&conn), objects, "no table, view, trigger or index changed");
}

/// The repair runs in the migration's transaction: when one of its statements fails midway (as
/// on a full disk), it fails whole, the journal stays at schema 14 without `lookup` with every
/// record, and a later open repairs it.
#[test]
fn a_repair_that_fails_midway_leaves_the_journal_as_it_was() {
    use crate::tracker::record::RecordKind::Close;
    const T0: i64 = 1_794_787_200;
    let dir = tempdir();
    let path = {
        let mut w = writer_in(dir.path());
        let curl = fixtures::app("curl");
        for cookie in 1..=3 {
            let mut flow = Flow::new(cookie, &format!("192.0.2.{cookie}:443"), at(T0));
            w.append(&flow.record(Close, at(T0 + 1), 100, 10), &curl, None);
        }
        w.flush().expect("flush");
        w.path().to_path_buf()
    };
    let mut conn = raw(&path);
    as_schema_14_without_lookup(&conn);
    let before = rows(&conn);
    // The repair's update of every row fails after its column was added (a temporary trigger:
    // only this connection has it, the file does not).
    conn.execute_batch(
        "CREATE TEMP TRIGGER fail_repair BEFORE UPDATE ON main.connection_rows
         BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .expect("trigger");
    assert!(migrations().to_latest(&mut conn).is_err(), "the repair fails");
    assert_eq!(int(&conn, "PRAGMA user_version"), 14);
    assert!(conn.prepare("SELECT lookup FROM connection_rows").is_err(), "no column half added");
    assert_eq!(rows(&conn), before, "every record as it was");
    conn.execute_batch("DROP TRIGGER temp.fail_repair").expect("drop trigger");
    migrations().to_latest(&mut conn).expect("schema 15 when nothing fails");
    assert_eq!(rows(&conn), before);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connection_rows WHERE lookup = 1"), 3);
}
