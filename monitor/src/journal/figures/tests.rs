//! The figure check against real journals whose sums were edited behind the monitor's back.

use std::path::{Path, PathBuf};

use crate::{
    journal::{
        Integrity, IntegrityProblem as Problem,
        tests::{
            fixtures::{self, Flow, at},
            raw, tempdir, writer_in,
        },
        verify_chain,
    },
    tracker::record::RecordKind::{Close, Update},
};

/// Monday 2026-11-16T00:00:00Z (UTC weeks start here).
const MONDAY: i64 = 1_794_787_200;
const DAY: i64 = 86_400;

/// Two apps over three days of two UTC weeks (Saturday, Sunday, Monday): flows with several
/// records, one of them spanning midnight, one without a remote address's enrichment.
fn journal(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let cn = fixtures::public(Some("CN"), Some(4134), Some("Chinanet"));
    let (curl, app) = (fixtures::app("curl"), fixtures::app("tiktok"));
    let start = MONDAY + 5 * DAY + 3600;
    for (i, day) in [0, 1, 2].into_iter().enumerate() {
        let t = start + day * DAY;
        let mut f = Flow::new(10 + i as u64, "203.0.113.10:443", at(t));
        w.append(&f.record(Update, at(t + 60), 1_000, 100), &curl, Some(&us));
        w.append(&f.record(Close, at(t + 200), 5_000, 700), &curl, Some(&us));
        let mut g = Flow::new(20 + i as u64, "198.51.100.7:443", at(t + 10));
        w.append(&g.record(Update, at(t + 100), 41_000, 2_000), &app, Some(&us));
        w.flush().expect("flush");
        // Still open at midnight: its close falls on the next day.
        w.append(&g.record(Close, at(t + DAY - 3600 + 30), 43_000, 2_500), &app, Some(&cn));
        let mut h = Flow::new(30 + i as u64, "192.0.2.1:53", at(t + 20));
        w.append(&h.record(Close, at(t + 30), 80, 120), &app, None);
    }
    w.flush().expect("flush");
    w.path().to_path_buf()
}

fn check(path: &Path) -> Integrity {
    verify_chain(path).expect("verify")
}

fn differs(table: &'static str, app: &str) -> impl Fn(&Problem) -> bool {
    move |p| matches!(p, Problem::FiguresDiffer { table: t, app: a, .. } if *t == table && a == app)
}

#[test]
fn an_untouched_journal_has_every_sum_equal_to_its_rows() {
    let dir = tempdir();
    let path = journal(dir.path());
    let v = check(&path);
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    // Saturday to Tuesday (the last close), in two weeks.
    assert_eq!((v.figures.days, v.figures.weeks, v.figures.weeks_skipped), (4, 2, None));
}

#[test]
fn an_edited_sum_in_any_table_reports_read_is_named_with_its_app() {
    for (table, column) in [
        ("residency", "payload_tx"),
        ("residency", "packets_rx"),
        ("residency_week", "wire_rx"),
        ("timeline_quarter", "payload_rx"),
        ("endpoint_week", "payload_tx"),
        ("service_week", "payload_rx"),
    ] {
        let dir = tempdir();
        let path = journal(dir.path());
        let changed = raw(&path)
            .execute(&format!("UPDATE {table} SET {column} = {column} + 1 WHERE app = 'tiktok'"), [])
            .unwrap();
        assert!(changed > 0, "{table}");
        let v = check(&path);
        assert!(v.problems.iter().any(differs(table, "tiktok")), "{table}: {:?}", v.problems);
        // Only sums of that app, only sums (the chain's rows are intact).
        assert!(
            v.problems.iter().all(|p| matches!(p, Problem::FiguresDiffer { app, .. } if app == "tiktok")),
            "{table}: {:?}",
            v.problems
        );
    }
}

#[test]
fn bytes_moved_from_one_app_or_country_to_another_are_found() {
    let dir = tempdir();
    let path = journal(dir.path());
    // Another app: both apps' sums differ.
    raw(&path).execute("UPDATE residency_week SET app = 'curl' WHERE app = 'tiktok' AND country = 'CN'", []).unwrap();
    let v = check(&path);
    assert!(v.problems.iter().any(differs("residency_week", "tiktok")), "{:?}", v.problems);
    assert!(v.problems.iter().any(differs("residency_week", "curl")), "{:?}", v.problems);
    let dir = tempdir();
    let path = journal(dir.path());
    // A row removed from the rollups (the CN bytes of a week gone from the report).
    raw(&path).execute("DELETE FROM residency_week WHERE country = 'CN'", []).unwrap();
    assert!(check(&path).problems.iter().any(differs("residency_week", "tiktok")));
    // The same bytes removed from the intervals too: the records still say where they went.
    raw(&path).execute("DELETE FROM residency WHERE country = 'CN'", []).unwrap();
    let v = check(&path);
    assert!(v.problems.iter().any(differs("residency", "tiktok")), "{:?}", v.problems);
    assert!(!v.problems.iter().any(differs("residency_week", "tiktok")), "rollups and intervals agree now");
}

/// Within one app: bytes moved from CN to SG in the intervals and the weekly rollups alike (so
/// that the two agree), or from one endpoint or service to another, are found against the records.
#[test]
fn bytes_moved_between_destinations_of_one_app_are_found() {
    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    for table in ["residency", "residency_week"] {
        let n = conn.execute(&format!("UPDATE {table} SET country = 'SG' WHERE country = 'CN'"), []).unwrap();
        assert!(n > 0, "{table}");
    }
    let v = check(&path);
    let named: Vec<&Problem> = v.problems.iter().filter(|p| differs("residency", "tiktok")(p)).collect();
    assert!(!named.is_empty(), "{:?}", v.problems);
    assert!(named.iter().any(|p| p.to_string().contains("country \"CN\"")), "{named:?}");
    assert!(!v.problems.iter().any(differs("residency_week", "tiktok")), "the two tables agree with each other");

    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    conn.execute("UPDATE endpoint_week SET remote_ip = '203.0.113.10' WHERE remote_ip = '198.51.100.7'", []).unwrap();
    conn.execute("UPDATE service_week SET country = 'US' WHERE country = 'CN'", []).unwrap();
    conn.execute("UPDATE endpoint_week SET flows = flows + 1 WHERE app = 'curl'", []).unwrap();
    let v = check(&path);
    assert!(v.problems.iter().any(differs("endpoint_week", "tiktok")), "{:?}", v.problems);
    assert!(v.problems.iter().any(differs("service_week", "tiktok")), "{:?}", v.problems);
    assert!(v.problems.iter().any(differs("endpoint_week", "curl")), "flow counts: {:?}", v.problems);
}

/// A rollup row moved to a week start that is no week start is compared with the week it falls
/// in (it is not skipped).
#[test]
fn a_rollup_row_off_its_week_is_compared_with_the_week_it_falls_in() {
    let dir = tempdir();
    let path = journal(dir.path());
    raw(&path).execute("UPDATE residency_week SET week_start = week_start + 3600 WHERE country = 'CN'", []).unwrap();
    let v = check(&path);
    assert!(v.problems.is_empty() || v.problems.iter().all(differs("residency_week", "tiktok")), "{:?}", v.problems);
    raw(&path)
        .execute("UPDATE residency_week SET week_start = week_start - 86400 * 30 WHERE country = 'CN'", [])
        .unwrap();
    assert!(check(&path).problems.iter().any(differs("residency_week", "tiktok")));
}

/// Rows forged far outside the calendar neither hang the check nor switch the weekly comparison
/// off: they are problems, and every other week is still compared.
#[test]
fn rows_outside_the_calendar_are_problems_and_the_rest_is_still_checked() {
    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    conn.execute(
        "INSERT INTO residency SELECT 9000000000000000000, interval_secs, app, scope, country, asn, as_org, country_db,
             asn_db, payload_source, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, connections,
             new_flows, incomplete_flows FROM residency LIMIT 1",
        [],
    )
    .unwrap();
    conn.execute("INSERT INTO timeline_quarter VALUES (300000000000, 'tiktok', 1, 1)", []).unwrap();
    conn.execute("INSERT INTO residency VALUES (-1000000000000000, 60, 'x', 'none', '', 0, '', 0, 0, 'syscall', 1, 1, 1, 1, 1, 1, 1, 1, 0)", []).unwrap();
    conn.execute("DELETE FROM residency_week WHERE country = 'CN'", []).unwrap();
    let started = std::time::Instant::now();
    let v = check(&path);
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "bounded");
    assert!(v.problems.iter().any(|p| matches!(p, Problem::OutsideCalendar { .. })), "{:?}", v.problems);
    assert!(v.problems.iter().any(differs("residency_week", "tiktok")), "still compared: {:?}", v.problems);
    assert_eq!(v.figures.weeks_skipped, None);
}

#[test]
fn the_output_escapes_an_app_name() {
    let p = Problem::FiguresDiffer {
        table: "residency",
        source: "connections",
        period: "2026-11-21".into(),
        app: "evil\u{1b}[2J\nPROBLEM none".into(),
        key: "country \"\u{1b}]0;x\u{7}\"".into(),
    };
    let text = p.to_string();
    assert!(!text.contains('\u{1b}') && !text.contains('\n') && !text.contains('\u{7}'), "{text}");
}

#[test]
fn days_with_a_recorded_loss_and_before_a_purge_horizon_are_not_compared() {
    let dir = tempdir();
    let path = journal(dir.path());
    let sunday = (MONDAY + 6 * DAY) * 1000;
    raw(&path)
        .execute(
            "INSERT INTO losses (time_ms, first_ms, last_ms, records, buckets, payload_bytes, wire_bytes)
             VALUES (?1, ?1, ?1, 1, 0, 0, 0)",
            [sunday + 7_200_000],
        )
        .unwrap();
    // A full buffer drops a record and keeps its interval's sums: the day cannot be compared.
    raw(&path)
        .execute(
            "UPDATE residency SET payload_tx = payload_tx + 1 WHERE interval_start >= ?1 AND interval_start < ?2",
            [sunday / 1000, sunday / 1000 + DAY],
        )
        .unwrap();
    let v = check(&path);
    assert_eq!((v.figures.days, v.figures.days_with_losses), (3, 1));
    assert!(v.problems.iter().all(|p| !matches!(p, Problem::FiguresDiffer { table: "residency", .. })));
    // Retention horizon on Monday: Saturday and Sunday are not compared (the loss day neither).
    raw(&path)
        .execute("INSERT INTO meta (key, value) VALUES ('residency_purged_before_ms', ?1)", [(MONDAY + 7 * DAY) * 1000])
        .unwrap();
    assert_eq!(check(&path).figures.days, 2);
}
