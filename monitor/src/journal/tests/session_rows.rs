//! Rows from connection records: of a `monitor exec` session, only sockets created in its cgroup,
//! including records written after the command ended (a connection that closes late), and a
//! timeline that adds up; and which instants are bounds of the residency intervals (where the
//! residency table can be cut instead).

use super::{
    fixtures::{self, Flow, at},
    raw, tempdir, writer_in,
};
use crate::{
    journal::{JournalReader, TimeRange},
    report::{Period, Report, ReportQuery, SessionInfo},
    tracker::record::RecordKind::{Close, Update},
    zone::Zone,
};

/// Monday 2026-11-16T00:00:00Z.
const T0: i64 = 1_794_787_200;
/// The fixture records' owner cgroup (the session's).
const SESSION_CGROUP: u64 = 9;

#[test]
fn a_sessions_cgroup_rows_include_late_closes_and_nothing_else() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let app = fixtures::app("curl");
    // The session's socket: an update during the command, the close 2 s after it ended.
    let mut inside = Flow::new(1, "192.0.2.1:443", at(T0 + 10));
    w.append(&inside.record(Update, at(T0 + 20), 1_000, 100), &app, Some(&us));
    w.append(&inside.record(Close, at(T0 + 32), 234, 5), &app, Some(&us));
    // The same app outside the session (another cgroup), at the same time.
    let mut outside = Flow::new(2, "192.0.2.1:443", at(T0 + 5));
    let mut other = outside.record(Close, at(T0 + 25), 50_000, 7);
    other.owner.cgroup_id = 77;
    w.append(&other, &app, Some(&us));
    w.flush().expect("flush");

    let reader = JournalReader::open(w.path()).expect("reader");
    let range = |a: i64, b: i64| TimeRange { since: at(T0 + a), until: at(T0 + b) };
    assert_eq!(reader.cgroup_span(SESSION_CGROUP, range(0, 100)).expect("query"), Some((at(T0 + 20), at(T0 + 32))));
    assert_eq!(reader.cgroup_span(SESSION_CGROUP, range(21, 100)).expect("query"), Some((at(T0 + 32), at(T0 + 32))));
    assert_eq!(reader.cgroup_span(SESSION_CGROUP, range(33, 100)).expect("query"), None);
    assert_eq!(reader.cgroup_span(12_345, range(0, 100)).expect("query"), None);

    // The command ran 10..30 s; the period reaches one millisecond past the late close.
    let rows = reader
        .residency_of_records(TimeRange { since: at(T0 + 10), until: at(T0 + 30) }, None, Some(SESSION_CGROUP))
        .expect("rows");
    assert_eq!(rows.iter().map(|r| r.payload_tx).sum::<u64>(), 1_000, "the close is after the command's end");
    let zone = Zone::get("UTC").expect("zone");
    let until = at(T0 + 32) + jiff::SignedDuration::from_millis(1);
    let mut query = ReportQuery::new(Period::range(at(T0 + 10), until, &zone).expect("period"));
    query.session = Some(SessionInfo { name: "s".into(), cgroup_id: Some(SESSION_CGROUP) });
    let report = Report::build(&reader, &query).expect("build");
    assert_eq!(report.apps.len(), 1);
    let a = &report.apps[0];
    assert_eq!((a.traffic.payload_tx, a.traffic.payload_rx), (1_234, 105), "only the session's socket");
    let tx: u64 = a.timeline.iter().map(|b| b.payload_tx).sum();
    let rx: u64 = a.timeline.iter().map(|b| b.payload_rx).sum();
    assert_eq!((tx, rx), (1_234, 105), "the timeline counts the session's cgroup only");
    assert!(report.timeline.complete);
}

/// Whole multiples of the journal's interval (60 s here) are bounds, unless a row of a longer
/// interval (an earlier configuration's) spans them; anything inside a minute is not.
#[test]
fn interval_bounds_are_whole_intervals_that_no_row_spans() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let mut f = Flow::new(1, "192.0.2.1:443", at(T0 + 10));
    w.append(&f.record(Close, at(T0 + 10), 5, 0), &fixtures::app("curl"), None);
    w.flush().expect("flush");
    let path = w.path().to_path_buf();
    drop(w);
    // A 300 s row from [T0 + 600, T0 + 900), as a daemon with `residency_interval_secs = 300` wrote.
    raw(&path)
        .execute(
            "INSERT INTO residency SELECT ?1, 300, app, scope, country, asn, as_org, country_db, asn_db,
                 payload_source, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, connections,
                 new_flows, incomplete_flows FROM residency",
            [T0 + 600],
        )
        .expect("insert");
    let reader = JournalReader::open(&path).expect("reader");
    let bound = |t: jiff::Timestamp| reader.is_interval_bound(t).expect("query");
    for whole in [0, 60, 120, 600, 900, 7 * 86_400] {
        assert!(bound(at(T0 + whole)), "T0 + {whole}");
    }
    for inside in [1, 30, 59, 660, 720, 899] {
        assert!(!bound(at(T0 + inside)), "T0 + {inside}");
    }
    assert!(!bound(at(T0 + 60) + jiff::SignedDuration::from_millis(1)), "a millisecond past a minute");
}
