//! Rows of a `monitor exec` session: only sockets created in its cgroup, including records
//! written after the command ended (a connection that closes late), and a timeline that adds up.

use super::{
    fixtures::{self, Flow, at},
    tempdir, writer_in,
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
