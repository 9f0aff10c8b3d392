//! Normal operation: residency sums, flush accumulation, retention, reopen, statistics.

use std::os::unix::fs::PermissionsExt;

use super::{
    fixtures::{self, Flow, HEADER, at},
    int, raw, run, tempdir, writer_in,
};
use crate::{
    enrich::{DbInfo, DbRef, Scope},
    journal::{JournalConfig, JournalReader, JournalWriter, SCHEMA_VERSION, TimeRange},
    stats::Stats,
    tracker::record::{
        Direction,
        RecordKind::{Close, Update},
    },
};

/// Monday 2026-11-16T00:00:00Z (a multiple of 60).
const T0: i64 = 1_794_787_200;

/// One residency row as stored: (interval_start, app, country, asn, payload_tx, payload_rx,
/// wire_tx, wire_rx, connections, new_flows).
type Row = (i64, String, String, i64, i64, i64, i64, i64, i64, i64);

fn residency(path: &std::path::Path) -> Vec<Row> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare(
            "SELECT interval_start, app, country, asn, payload_tx, payload_rx, wire_tx, wire_rx, connections,
                 new_flows FROM residency ORDER BY interval_start, app, country, asn",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
        ))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[test]
fn residency_rows_sum_deltas_per_app_destination_and_interval() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let (browser, sync) = (fixtures::app("browser"), fixtures::app("sync"));
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let de = fixtures::public(Some("DE"), Some(3320), Some("Deutsche Telekom AG"));

    let mut a = Flow::new(1, "203.0.113.10:443", at(T0 + 5));
    w.append(&a.record(Update, at(T0 + 10), 1000, 200), &browser, Some(&us));
    w.append(&a.record(Update, at(T0 + 50), 3000, 0), &browser, Some(&us));
    w.append(&a.record(Update, at(T0 + 70), 500, 0), &browser, Some(&us));
    w.append(&a.record(Close, at(T0 + 75), 0, 50), &browser, Some(&us));
    // A second flow of the same app to the same destination in the first interval.
    let mut b = Flow::new(2, "203.0.113.11:443", at(T0 + 20));
    w.append(&b.record(Close, at(T0 + 30), 7, 9), &browser, Some(&us));
    let mut c = Flow::new(3, "198.51.100.7:443", at(T0));
    w.append(&c.record(Close, at(T0 + 59), 11, 13), &sync, Some(&de));
    let report = w.flush().expect("flush");
    assert_eq!((report.connections, report.residency_rows), (6, 3));

    let h = i64::try_from(HEADER).expect("small");
    let rows = residency(w.path());
    let expect: Vec<Row> = vec![
        // browser/US, interval T0: flow 1 (1000+3000 up, 200 down; 2 up packets, 1 down) + flow 2.
        (T0, "browser".into(), "US".into(), 396_986, 4007, 209, 4007 + 3 * h, 209 + 2 * h, 2, 2),
        (T0, "sync".into(), "DE".into(), 3320, 11, 13, 11 + h, 13 + h, 1, 1),
        // browser/US, interval T0+60: flow 1 only, counted once although it has two records.
        (T0 + 60, "browser".into(), "US".into(), 396_986, 500, 50, 500 + h, 50 + h, 1, 0),
    ];
    assert_eq!(rows, expect);
    let conn = raw(w.path());
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 6);
    assert_eq!(int(&conn, "SELECT SUM(delta_payload_tx) FROM connections"), 4507 + 11);
    assert_eq!(int(&conn, "SELECT payload_tx FROM connections WHERE cookie = 1 AND event = 'close'"), 4500);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM apps"), 2);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM databases"), 2, "one country and one ASN build");
}

#[test]
fn two_flushes_of_one_interval_add_up() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let mut f = Flow::new(7, "192.0.2.1:443", at(T0));
    w.append(&f.record(Update, at(T0 + 1), 100, 10), &app, Some(&us));
    w.flush().expect("first flush");
    w.append(&f.record(Update, at(T0 + 2), 200, 20), &app, Some(&us));
    w.flush().expect("second flush");
    w.append(&f.record(Close, at(T0 + 3), 300, 30), &app, Some(&us));
    w.flush().expect("third flush");
    let h = i64::try_from(HEADER).expect("small");
    let rows = residency(w.path());
    assert_eq!(rows, vec![(T0, "browser".into(), "US".into(), 15169, 600, 60, 600 + 3 * h, 60 + 3 * h, 1, 1)]);
    // The writer's account of its flushes (the daemon's closing `cpu account` line).
    let totals = w.flush_totals();
    assert_eq!((totals.flushes, totals.connections), (3, 3));
    assert!(totals.cpu > std::time::Duration::ZERO, "three commits cost CPU: {totals:?}");
}

#[test]
fn retention_deletes_only_expired_rows() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("FR"), Some(16276), Some("OVH SAS"));
    let day = 86_400;
    let now = T0;
    // Ages in days: 401 and 399 (residency: 400 days), 31 and 29 (connections: 30 days).
    for (cookie, age) in [(1, 401), (2, 399), (3, 31), (4, 29)] {
        let t = at(now - age * day);
        let mut f = Flow::new(cookie, "192.0.2.9:443", t);
        w.append(&f.record(Close, t, 1000, 1), &app, Some(&dest));
        w.record_stats(t, &Stats::default());
    }
    w.flush().expect("flush");
    let purged = w.purge_expired(at(now)).expect("purge");
    assert_eq!((purged.connections, purged.residency_rows, purged.stats_rows), (3, 1, 1));
    let conn = raw(w.path());
    let cookies: Vec<i64> = conn
        .prepare("SELECT cookie FROM connections ORDER BY cookie")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(cookies, vec![4], "records older than 30 days are gone");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM residency"), 3);
    assert_eq!(int(&conn, "SELECT MIN(interval_start) FROM residency"), now - 399 * day);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM stats"), 3);
    // The quarter-hour timeline goes with the residency it sums.
    assert_eq!(
        int(
            &conn,
            "SELECT COUNT(*) FROM timeline_quarter WHERE quarter_start < ?1"
                .replace("?1", &(now - 400 * day).to_string())
                .as_str()
        ),
        0
    );
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM timeline_quarter"), 3);
    // What is left still agrees with its rows: the purged statistics row is counted as purged,
    // not as removed; one removed after the first row left is named.
    let v = crate::journal::verify_chain(w.path()).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.rows_purged, 4, "3 records and 1 statistics row");
    let middle = int(&conn, "SELECT MAX(id) FROM stats") - 1;
    conn.execute("DELETE FROM stats WHERE id = ?1", [middle]).expect("delete");
    let v = crate::journal::verify_chain(w.path()).expect("verify");
    assert!(
        matches!(v.problems.as_slice(), [crate::journal::IntegrityProblem::RowRemoved { table: "stats", id, .. }] if *id == middle),
        "{:?}",
        v.problems
    );
    let reader = JournalReader::open(w.path()).expect("reader");
    let horizon = reader.connections_purged_before().expect("meta").expect("set");
    assert_eq!(horizon, at(now - 30 * day));
}

#[test]
fn reopen_after_drop_keeps_everything_and_records_schema_version() {
    let dir = tempdir();
    let config = JournalConfig { path: dir.path().join("a/b/journal.db"), ..JournalConfig::default() };
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("JP"), Some(2497), Some("Internet Initiative Japan Inc."));
    {
        let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("open");
        let mut f = Flow::new(1, "192.0.2.3:443", at(T0));
        w.append(&f.record(Close, at(T0 + 5), 123, 456), &app, Some(&dest));
        w.register_databases(&[DbInfo {
            role: "country".into(),
            path: "/var/lib/monitor/geo/dbip-country.mmdb".into(),
            db: DbRef { database_type: "country ipvAll".into(), build_epoch: fixtures::COUNTRY_BUILD },
            age_days: 168,
        }]);
        w.flush().expect("flush");
    }
    let mode = std::fs::metadata(&config.path).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "journal file mode");
    let dir_mode = std::fs::metadata(dir.path().join("a/b")).expect("stat").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "created directory mode");

    let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("reopen");
    let conn = raw(&config.path);
    assert_eq!(int(&conn, "SELECT SUM(payload_rx) FROM residency"), 456);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 1);
    assert_eq!(int(&conn, "PRAGMA user_version"), i64::from(SCHEMA_VERSION));
    let mut f = Flow::new(2, "192.0.2.3:443", at(T0 + 10));
    w.append(&f.record(Close, at(T0 + 20), 1, 1), &app, Some(&dest));
    w.flush().expect("flush after reopen");
    assert_eq!(int(&conn, "SELECT SUM(payload_rx) FROM residency"), 457);

    let reader = JournalReader::open(&config.path).expect("reader");
    assert_eq!(reader.schema_version().expect("version"), SCHEMA_VERSION);
    assert_eq!(reader.integrity_check().expect("check"), "ok");
    let state = reader.state().expect("state").expect("row");
    // Two flushes: at its open (the earlier run's last flush, a statistics row), and this one.
    assert_eq!((state.pid, state.started_at, state.flushes), (1, run().started_at, 2));
    assert!(state.last_flush.is_some());
    assert_eq!(state.databases.len(), 1, "registered database still marked in use");
    assert_eq!(
        state.databases[0].path.as_deref(),
        Some(std::path::Path::new("/var/lib/monitor/geo/dbip-country.mmdb"))
    );
    let wal = config.path.with_extension("db-wal");
    if wal.exists() {
        assert_eq!(std::fs::metadata(&wal).expect("stat").permissions().mode() & 0o777, 0o600, "WAL file mode");
    }
}

#[test]
fn statistics_are_stored_as_increments_per_run() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let snap = |lost: u64, unattributed: u64| {
        let mut s = Stats::default();
        s.kernel.events_lost = lost;
        s.kernel.unattributed_bytes = unattributed;
        s
    };
    w.record_stats(at(T0 + 60), &snap(0, 100));
    w.record_stats(at(T0 + 120), &snap(5, 300));
    w.flush().expect("flush");
    w.record_stats(at(T0 + 180), &snap(12, 300));
    w.flush().expect("flush");
    drop(w);
    // A new run: counters restart from zero.
    let mut w = writer_in(dir.path());
    w.record_stats(at(T0 + 240), &snap(3, 50));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let all = reader.stats(TimeRange { since: at(T0), until: at(T0 + 3600) }).expect("stats");
    // Five rows: the new run's start too (an empty row, written at its open after a run that
    // ended without a final snapshot).
    assert_eq!((all.rows, all.events_lost, all.unattributed_bytes), (5, 15, 350));
    let early = reader.stats(TimeRange { since: at(T0), until: at(T0 + 150) }).expect("stats");
    assert_eq!((early.rows, early.events_lost, early.unattributed_bytes), (3, 5, 300), "the new run's start is at T0");
}

#[test]
fn names_counters_are_stored_as_increments_and_read_as_zero_in_old_journals() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let snap = |copies: u64, lost: u64, malformed: u64, sni: u64, answers: u64| {
        let mut s = Stats::default();
        s.kernel.copies_submitted = copies;
        s.kernel.copies_lost = lost;
        s.names.malformed_total = malformed;
        s.names.sni = sni;
        s.names.quic_sni = 1;
        s.names.table.answers = answers;
        s
    };
    w.record_stats(at(T0 + 60), &snap(3, 0, 1, 2, 4));
    w.record_stats(at(T0 + 120), &snap(10, 2, 1, 5, 9));
    w.flush().expect("flush");
    let path = w.path().to_path_buf();
    drop(w);
    let conn = raw(&path);
    let second = "FROM stats ORDER BY id DESC LIMIT 1";
    let increments = (
        int(&conn, &format!("SELECT copies_submitted {second}")),
        int(&conn, &format!("SELECT copies_lost {second}")),
        int(&conn, &format!("SELECT names_malformed {second}")),
        int(&conn, &format!("SELECT names_learned {second}")),
    );
    assert_eq!(increments, (7, 2, 0, 8), "the second row holds increments");
    let range = TimeRange { since: at(T0), until: at(T0 + 3600) };
    let all = JournalReader::open(&path).expect("reader").stats(range).expect("stats");
    // names learned: server names (TLS 5 + QUIC 1) plus DNS answers (9).
    assert_eq!((all.copies_submitted, all.copies_lost, all.names_malformed, all.names_learned), (10, 2, 1, 15));

    // The same journal as a build before the names-stats migration left it: read-only readers
    // see the missing columns as zero (the file is not migrated by reading).
    for column in ["copies_submitted", "copies_lost", "names_malformed", "names_learned"] {
        conn.execute_batch(&format!("ALTER TABLE stats DROP COLUMN {column}")).expect("drop column");
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION - 1).expect("version");
    drop(conn);
    let old = JournalReader::open(&path).expect("reader of an old journal").stats(range).expect("stats");
    assert_eq!((old.rows, old.copies_submitted, old.names_learned), (2, 0, 0));
    assert_eq!(int(&raw(&path), "PRAGMA user_version"), i64::from(SCHEMA_VERSION - 1), "not migrated by reading");
}

#[test]
fn records_without_remote_or_destination_keep_their_scope() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("daemon");
    let mut lan = Flow::new(1, "192.168.1.20:22", at(T0));
    w.append(&lan.record(Close, at(T0 + 1), 10, 20), &app, Some(&fixtures::scoped(Scope::Private)));
    let mut unenriched = Flow::new(2, "192.0.2.50:80", at(T0));
    w.append(&unenriched.record(Close, at(T0 + 1), 30, 40), &app, None);
    let mut unknown = Flow::new(3, "192.0.2.51:80", at(T0));
    w.append(&unknown.record(Close, at(T0 + 1), 50, 60), &app, Some(&fixtures::public(None, None, None)));
    w.flush().expect("flush");
    let conn = raw(w.path());
    let scopes: Vec<(String, String, i64, i64)> = conn
        .prepare("SELECT scope, country, asn, payload_tx FROM residency ORDER BY scope")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        scopes,
        vec![
            ("private".into(), String::new(), 0, 10),
            ("public".into(), String::new(), 0, 50),
            ("unenriched".into(), String::new(), 0, 30)
        ]
    );
}

/// Batched inserts and the rollups' socket counting: 20,000 sockets of two records each, seven
/// records apart, in one flush. The counting cache empties itself twice on the way (16,384 keys),
/// so some second records are looked up while their first record still waits for its multi-row
/// insert (the probe finds it among the buffered rows, not in the table): each socket must still
/// count once per endpoint and service and week.
#[test]
fn batched_inserts_count_every_socket_once_in_the_rollups() {
    const SOCKETS: u64 = 20_000;
    const GAP: u64 = 7;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("load");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let mut flows: Vec<Flow> =
        (0..SOCKETS).map(|c| Flow::new(1 + c, &format!("192.0.2.{}:443", c % 4), at(T0))).collect();
    // Record n: the first record of socket n, and the second of socket n - GAP.
    for n in 0..SOCKETS + GAP {
        let t = at(T0 + i64::try_from(n / 1000).expect("small"));
        if let Some(f) = flows.get_mut(usize::try_from(n).expect("small")) {
            w.append(&f.record(Update, t, 10, 1), &app, Some(&us));
        }
        if let Some(f) = n.checked_sub(GAP).and_then(|m| flows.get_mut(usize::try_from(m).expect("small"))) {
            w.append(&f.record(Close, t, 20, 2), &app, Some(&us));
        }
    }
    w.flush().expect("flush");
    let conn = raw(w.path());
    let records = i64::try_from(2 * SOCKETS).expect("small");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), records);
    assert_eq!(
        int(&conn, "SELECT SUM(delta_payload_tx) FROM connections"),
        i64::try_from(30 * SOCKETS).expect("small")
    );
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM endpoint_week"), 4, "four endpoints, one week");
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week"), i64::try_from(SOCKETS).expect("small"));
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week"), i64::try_from(30 * SOCKETS).expect("small"));
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM service_week"), 1, "one service, one week");
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week"), i64::try_from(SOCKETS).expect("small"));
}

#[test]
fn equal_apps_behind_separate_arcs_are_one_app_row() {
    // Apps read from the kernel alone come in an `Arc` each: they must still share one id.
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let (first, second, other) = (fixtures::app("curl"), fixtures::app("curl"), fixtures::app("wget"));
    assert!(!std::sync::Arc::ptr_eq(&first, &second));
    let dest = fixtures::public(Some("US"), Some(64_500), Some("Org"));
    for (cookie, app) in [(1, &first), (2, &second), (3, &other), (4, &first)] {
        let mut flow = Flow::new(cookie, "203.0.113.10:443", at(T0 + 5));
        w.append(&flow.record(Close, at(T0 + 10), 100, 200), app, Some(&dest));
    }
    w.flush().expect("flush");
    let conn = raw(&dir.path().join("state/journal.db"));
    let apps: i64 = conn.query_row("SELECT count(*) FROM apps", [], |r| r.get(0)).expect("apps");
    let ids: Vec<(i64, String)> = conn
        .prepare("SELECT c.cookie, a.name FROM connections c JOIN apps a ON a.id = c.app_id ORDER BY c.cookie")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(apps, 2);
    let names: Vec<_> = ids.iter().map(|(c, n)| (*c, n.as_str())).collect();
    assert_eq!(names, [(1, "curl"), (2, "curl"), (3, "wget"), (4, "curl")]);
}

#[test]
fn an_unconnected_socket_counts_once_per_peer_across_flushes() {
    // One socket cookie, 300 peers round robin, three records each, flushed every 128 records:
    // every peer is a new endpoint of a socket written before (no table lookup needed), and a
    // record at a known peer is not a new flow there.
    const PEERS: u64 = 300;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("dns-server");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let mut peers: Vec<Flow> =
        (0..PEERS).map(|p| Flow::new(77, &format!("192.0.2.{}:{}", p % 200, 10_000 + p), at(T0))).collect();
    let mut n = 0;
    for round in 0..3 {
        for peer in &mut peers {
            let t = at(T0 + 1 + round);
            w.append(&peer.record(if round == 2 { Close } else { Update }, t, 10, 1), &app, Some(&us));
            n += 1;
            if n % 128 == 0 {
                w.flush().expect("flush");
            }
        }
    }
    w.flush().expect("flush");
    let conn = raw(w.path());
    let peers = i64::try_from(PEERS).expect("small");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 3 * peers);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM endpoint_week"), peers);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week"), peers, "one socket at each peer");
    assert_eq!(int(&conn, "SELECT MAX(flows) FROM endpoint_week"), 1);
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week"), 30 * peers);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM service_week"), 1);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week"), peers, "a flow per peer at the service");
}

/// A UDP server socket: one unconnected socket, more peers than the exact sets of the counting
/// cache hold (4,096), one record each, in flushes of 1,000. The filter still knows every key of
/// the socket (an endpoint and a service flow per peer: 28,000 keys, below the test build's
/// refill mark), so no record needs a lookup in the table (before the filter, every record after
/// the sets emptied did); a peer that comes back (a second record at a known peer) is not a new
/// flow there.
#[test]
fn a_udp_server_socket_with_more_peers_than_the_cache_needs_no_table_lookup() {
    const PEERS: u64 = 14_000;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("udp-server");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let peer = |p: u64| {
        let mut f = Flow::new(5, &format!("192.0.2.{}:{}", p % 200, 10_000 + p / 200), at(T0));
        f.direction = Direction::Unconnected;
        f
    };
    let mut peers: Vec<Flow> = (0..PEERS).map(peer).collect();
    for (n, f) in peers.iter_mut().enumerate() {
        w.append(&f.record(Close, at(T0 + 1), 10, 1), &app, Some(&us));
        if n % 1000 == 999 {
            w.flush().expect("flush");
        }
    }
    assert_eq!(w.rollup_lookups(), 0, "a key the filter never saw is a new peer");
    // Peers 3 and 13,500 again: their first records went in before and after the exact sets
    // emptied last. The sets know peer 13,500; peer 3 is in the filter only (as a key never
    // added could be), so the table answers for its endpoint and its service flow.
    for p in [3, 13_500] {
        let f = &mut peers[usize::try_from(p).expect("small")];
        w.append(&f.record(Close, at(T0 + 2), 5, 0), &app, Some(&us));
    }
    w.flush().expect("flush");
    assert_eq!(w.rollup_lookups(), 2);
    let conn = raw(w.path());
    let peers = i64::try_from(PEERS).expect("small");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), peers + 2);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM endpoint_week"), peers);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week"), peers, "one flow per peer");
    assert_eq!(int(&conn, "SELECT MAX(flows) FROM endpoint_week"), 1);
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week"), 10 * peers + 10);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week"), peers, "a flow per peer at the service");
}

/// Past the filter's refill mark (30,000 distinct keys in tests: an endpoint and a service flow
/// per peer), the socket leaves `whole`: its later peers' two keys are looked up in the table,
/// and every count stays exact.
#[test]
fn a_filter_refill_sends_the_socket_to_the_table_and_counts_stay_exact() {
    const PEERS: u64 = 40_000;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("udp-server");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    for p in 0..PEERS {
        let mut f = Flow::new(5, &format!("192.0.{}.{}:{}", p / 40_000, p % 250, 10_000 + p / 250), at(T0));
        f.direction = Direction::Unconnected;
        w.append(&f.record(Close, at(T0 + 1), 10, 1), &app, Some(&us));
        if p % 1000 == 999 {
            w.flush().expect("flush");
        }
    }
    w.flush().expect("flush");
    let filled = crate::journal::rollup::FILTER_KEYS_IN_TESTS as u64;
    let lookups = w.rollup_lookups();
    let after = 2 * (PEERS - filled / 2);
    assert!((after - 4..=after + 2).contains(&lookups), "{lookups} lookups");
    let conn = raw(w.path());
    let peers = i64::try_from(PEERS).expect("small");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM endpoint_week"), peers);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week"), peers, "one flow per peer");
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week"), peers, "a flow per peer at the service");
}

/// Short connections: one `close` record per socket, kept out of the counting cache (it is each
/// socket's last record). A record of the same socket that still comes later (a late event), in
/// the same flush or the next, finds the first one in the table: each socket counts once.
#[test]
fn a_record_after_a_sockets_close_does_not_count_it_again() {
    const SOCKETS: u64 = 100;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("curl");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let mut flows: Vec<Flow> = (0..SOCKETS).map(|c| Flow::new(1 + c, "192.0.2.7:443", at(T0))).collect();
    for f in &mut flows {
        w.append(&f.record(Close, at(T0 + 1), 10, 1), &app, Some(&us));
    }
    w.append(&flows[3].record(Update, at(T0 + 2), 5, 0), &app, Some(&us));
    w.flush().expect("flush");
    w.append(&flows[4].record(Close, at(T0 + 3), 5, 0), &app, Some(&us));
    w.flush().expect("flush");
    let conn = raw(w.path());
    let sockets = i64::try_from(SOCKETS).expect("small");
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), sockets + 2);
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM endpoint_week"), sockets, "one flow per socket");
    assert_eq!(int(&conn, "SELECT SUM(flows) FROM service_week"), sockets);
    assert_eq!(int(&conn, "SELECT SUM(payload_tx) FROM endpoint_week"), 10 * sockets + 10);
}

/// The bundled SQLite is built as `.cargo/config.toml` asks: without global memory statistics
/// (no mutex around each allocation) and without memory management (no page cache shared by
/// every connection behind a global mutex). A build that lost a flag fails here.
#[test]
fn bundled_sqlite_keeps_no_global_memory_statistics_nor_a_shared_page_cache() {
    let dir = tempdir();
    let conn = raw(&dir.path().join("j.db"));
    let options: Vec<String> = conn
        .prepare("PRAGMA compile_options")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
    assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
}

#[test]
fn country_answers_read_back_from_either_storage_form() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let differ = fixtures::public_with_answers("US", Some("CN"));
    let mut f = Flow::new(1, "203.0.113.10:443", at(T0));
    w.append(&f.record(Close, at(T0 + 1), 100, 10), &app, Some(&differ));
    w.flush().expect("flush");
    let range = TimeRange { since: at(T0), until: at(T0 + 60) };
    let read = || {
        let rows = JournalReader::open(w.path()).expect("reader").truth(range, None, None).expect("truth");
        assert_eq!(rows.len(), 1, "{rows:?}");
        rows[0].answers.iter().map(|a| (a.label.clone(), a.country.clone())).collect::<Vec<_>>()
    };
    let expected =
        vec![("primary".to_string(), Some("US".to_string())), ("registry".to_string(), Some("CN".to_string()))];
    assert_eq!(read(), expected, "through answers_id (schema 13)");
    assert_eq!(int(&raw(w.path()), "SELECT COUNT(*) FROM connections WHERE country_answers IS NULL"), 1);
    raw(w.path())
        .execute_batch(
            "UPDATE connections SET country_answers = (SELECT text FROM answer_sets WHERE id = answers_id),
                 answers_id = NULL",
        )
        .expect("the pre-13 form");
    assert_eq!(read(), expected, "from the row's own text (written before schema 13)");
}

/// The journal removed while its writer runs (`rm journal.db*`): the next flush creates a new
/// journal there with the run's databases and degradations and writes into it; nothing was said
/// and every later record went to the deleted file. Replaced by another file: nothing is written,
/// the records stay buffered, and the flush says why.
#[test]
fn a_removed_journal_is_created_again_and_a_replaced_one_left_alone() {
    let dir = tempdir();
    let config = JournalConfig { path: dir.path().join("journal.db"), ..JournalConfig::default() };
    let app = fixtures::app("browser");
    let dest = fixtures::public(Some("JP"), Some(2497), Some("Internet Initiative Japan Inc."));
    let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("open");
    w.record_degradations(&["no_kprobes".to_string()]).expect("degradations");
    w.register_databases(&[DbInfo {
        role: "country".into(),
        path: "/var/lib/monitor/geo/dbip-country.mmdb".into(),
        db: DbRef { database_type: "country ipvAll".into(), build_epoch: fixtures::COUNTRY_BUILD },
        age_days: 168,
    }]);
    let mut f = Flow::new(1, "192.0.2.3:443", at(T0));
    w.append(&f.record(Close, at(T0 + 5), 100, 1), &app, Some(&dest));
    w.flush().expect("flush");
    let remove_all = || {
        for suffix in ["", "-wal", "-shm", ".lock"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", config.path.display()));
        }
    };
    remove_all();
    let mut f = Flow::new(2, "192.0.2.3:443", at(T0 + 10));
    w.append(&f.record(Close, at(T0 + 20), 200, 2), &app, Some(&dest));
    w.flush().expect("a new journal is created and written");
    let conn = raw(&config.path);
    assert_eq!(int(&conn, "SELECT COUNT(*) FROM connections"), 1, "the record after the removal");
    assert_eq!(int(&conn, "SELECT SUM(payload_rx) FROM residency"), 2);
    let reader = JournalReader::open(&config.path).expect("reader");
    let state = reader.state().expect("state").expect("row");
    assert_eq!(state.databases.len(), 1, "the databases in use are recorded again");
    assert_eq!(state.degradations, Some(vec!["no_kprobes".to_string()]));
    drop((conn, reader));

    // Replaced by another file: left alone, the record kept.
    let other = dir.path().join("other.db");
    std::fs::write(&other, b"not a journal").expect("write");
    std::fs::rename(&other, &config.path).expect("rename");
    let mut f = Flow::new(3, "192.0.2.3:443", at(T0 + 30));
    w.append(&f.record(Close, at(T0 + 40), 300, 3), &app, Some(&dest));
    let err = w.flush().expect_err("another file is not written");
    assert!(matches!(err, crate::journal::Error::Replaced { .. }), "{err}");
    assert_eq!(std::fs::read(&config.path).expect("read"), b"not a journal");
    assert_eq!(w.buffered_records(), 1);
    // Its own log is not left beside the other file (the next reader would replay it into that
    // file: found by a review).
    assert!(!dir.path().join("journal.db-wal").exists() && !dir.path().join("journal.db-shm").exists());

    // The other file removed: a new journal, with the kept record (the replaced journal's
    // `-wal` and `-shm`, this writer's, are deleted as it closes).
    std::fs::remove_file(&config.path).expect("remove");
    w.flush().expect("created again");
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM connections"), 1, "the kept record");
    // Only the database file removed (`rm journal.db`): its `-wal` is this writer's.
    std::fs::remove_file(&config.path).expect("remove");
    assert!(dir.path().join("journal.db-wal").exists());
    let mut f = Flow::new(4, "192.0.2.3:443", at(T0 + 50));
    w.append(&f.record(Close, at(T0 + 60), 400, 4), &app, Some(&dest));
    w.flush().expect("created again beside no stale log");
    assert_eq!(int(&raw(&config.path), "SELECT SUM(payload_rx) FROM residency"), 4);
    // Moved away alone (`mv journal.db`), its newest rows still only in the log: they go into
    // the moved file before the log is deleted (the moved file held no tables: found by an
    // adversarial pass), and a new journal starts at the path.
    let moved = dir.path().join("moved.db");
    std::fs::rename(&config.path, &moved).expect("move");
    w.flush().expect("a new journal");
    assert_eq!(int(&raw(&moved), "SELECT SUM(payload_rx) FROM residency"), 4, "the moved journal keeps its rows");
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM connections"), 0);
    // Removed, and a write-ahead log that is not this writer's put there: refused (SQLite would
    // replay it into a new journal), the record kept until it is gone.
    remove_all();
    let wal = dir.path().join("journal.db-wal");
    std::fs::write(&wal, b"someone else's log").expect("write");
    let mut f = Flow::new(5, "192.0.2.3:443", at(T0 + 70));
    w.append(&f.record(Close, at(T0 + 80), 500, 5), &app, Some(&dest));
    let err = w.flush().expect_err("not beside another log");
    assert!(matches!(err, crate::journal::Error::RemovedLeaving { .. }), "{err}");
    assert!(!config.path.exists() && w.buffered_records() == 1);
    std::fs::remove_file(&wal).expect("remove");
    w.flush().expect("created once that log is gone");
    assert_eq!(int(&raw(&config.path), "SELECT SUM(payload_rx) FROM residency"), 5);
    // Moved away and another database put there: that one stays readable; the journal moved
    // back is written again.
    let away = dir.path().join("away.db");
    std::fs::rename(&config.path, &away).expect("move");
    let other = dir.path().join("other.db");
    let foreign = rusqlite::Connection::open(&other).expect("another database");
    foreign.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("fill");
    drop(foreign);
    std::fs::rename(&other, &config.path).expect("put in place");
    let mut f = Flow::new(6, "192.0.2.3:443", at(T0 + 90));
    w.append(&f.record(Close, at(T0 + 95), 600, 6), &app, Some(&dest));
    assert!(matches!(w.flush(), Err(crate::journal::Error::Replaced { .. })));
    assert_eq!(int(&raw(&config.path), "SELECT COUNT(*) FROM t"), 1, "the other database is intact");
    remove_all();
    std::fs::rename(&away, &config.path).expect("move back");
    w.flush().expect("the journal is back");
    assert_eq!(int(&raw(&config.path), "SELECT SUM(payload_rx) FROM residency"), 11, "its rows and the kept record");
}
