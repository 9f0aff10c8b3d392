//! The time between daemon runs: a report says how often the daemon started again in its
//! period and how long, at most, nothing was watched (from the earlier run's last statistics
//! snapshot, which is its stop when it stopped cleanly, to the next run's start).

use jiff::Timestamp;
use serde_json::Value;

use crate::{
    journal::{
        JournalReader,
        tests::{tempdir, utc, writer_in, writer_restarted},
    },
    report::{Format, Period, Report, ReportQuery},
    stats::Stats,
};

/// `hh:mm:ss` on Wednesday 2026-11-18, UTC.
fn t(time: &str) -> Timestamp {
    format!("2026-11-18T{time}Z").parse().expect("fixture time")
}

fn completeness(reader: &JournalReader, since: &str, until: &str) -> Value {
    let query = ReportQuery::new(Period::range(t(since), t(until), &utc()).expect("range"));
    let mut out = Vec::new();
    Report::build(reader, &query).expect("build").render(Format::Json, &mut out).expect("render");
    let report: Value = serde_json::from_slice(&out).expect("json");
    report["completeness"].clone()
}

#[test]
fn a_report_says_how_long_nothing_was_watched_between_runs() {
    let dir = tempdir();
    // Run 1: snapshots at 10:00 and 10:01, its last flush at 10:01:20, then killed (no final
    // snapshot): the next run marks it alive until that flush.
    let mut w = writer_in(dir.path());
    w.record_stats(t("10:00:00"), &Stats::default());
    w.record_stats(t("10:01:00"), &Stats::default());
    w.flush().expect("flush");
    let first = w.path().to_path_buf();
    drop(w);
    crate::journal::tests::raw(&first)
        .execute("UPDATE daemon_state SET last_flush_ms = ?1", [t("10:01:20").as_millisecond()])
        .expect("the flush time, as a flush at that time sets it");
    // Run 2 starts at 10:01:42 and stops cleanly at 10:05 (its final snapshot).
    let mut w = writer_restarted(dir.path(), t("10:01:42").as_second());
    w.record_stats(t("10:02:42"), &Stats::default());
    w.record_stats(t("10:05:00"), &Stats { last: true, ..Stats::default() });
    w.flush().expect("flush");
    drop(w);
    // Run 3 starts at 10:05:07.
    let mut w = writer_restarted(dir.path(), t("10:05:07").as_second());
    w.record_stats(t("10:06:07"), &Stats::default());
    w.flush().expect("flush");
    let path = w.path().to_path_buf();
    drop(w);
    let reader = JournalReader::open(&path).expect("reader");

    let c = completeness(&reader, "09:00:00", "11:00:00");
    assert_eq!(
        (c["runs"].as_u64(), c["restarts"].as_u64(), c["unwatched_ms"].as_u64()),
        (Some(3), Some(2), Some(22_000 + 7_000))
    );
    let notes = c["notes"].as_array().expect("notes");
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("started again 2 time(s)") && n.contains("for about 29 s"))),
        "{notes:#?}"
    );
    // A period that holds only part of the first gap, and the second restart.
    let c = completeness(&reader, "10:01:30", "10:30:00");
    assert_eq!((c["restarts"].as_u64(), c["unwatched_ms"].as_u64()), (Some(2), Some(12_000 + 7_000)));
    // A period that ends in the first gap: no restart in it, but its part of the gap (an
    // adversarial re-check: it read as fully watched).
    let c = completeness(&reader, "09:00:00", "10:01:30");
    assert_eq!((c["restarts"].as_u64(), c["unwatched_ms"].as_u64()), (Some(0), Some(10_000)));
    let notes = c["notes"].to_string();
    assert!(notes.contains("the daemon was not running for about 10 s") && !notes.contains("started again"), "{c:#?}");
    // A period inside the gap: no run, no statistics row, still said.
    let c = completeness(&reader, "10:01:25", "10:01:35");
    assert_eq!((c["runs"].as_u64(), c["unwatched_ms"].as_u64()), (Some(0), Some(10_000)));
    // A period before the first run's last row: watched.
    let c = completeness(&reader, "09:00:00", "10:01:10");
    assert_eq!((c["runs"].as_u64(), c["restarts"].as_u64(), c["unwatched_ms"].as_u64()), (Some(1), Some(0), Some(0)));
    drop(reader);

    // Run 3's last flush at 10:06:30, then killed; run 4 starts at 10:07:00 and is killed before
    // its first flush (no row of its own: an adversarial re-check found such a run uncounted);
    // run 5 starts at 10:07:05. Run 4 wrote its own start row at its open (after a run killed),
    // so it counts although it died before a snapshot. (Its open's flush is stamped by this
    // machine's clock, not the fixture's, so the gap after it does not show here.)
    crate::journal::tests::raw(&path)
        .execute("UPDATE daemon_state SET last_flush_ms = ?1", [t("10:06:30").as_millisecond()])
        .expect("run 3's last flush");
    drop(writer_restarted(dir.path(), t("10:07:00").as_second()));
    let mut w = writer_restarted(dir.path(), t("10:07:05").as_second());
    w.flush().expect("flush");
    drop(w);
    let reader = JournalReader::open(&path).expect("reader");
    let c = completeness(&reader, "09:00:00", "11:00:00");
    assert_eq!(
        (c["runs"].as_u64(), c["restarts"].as_u64(), c["unwatched_ms"].as_u64()),
        (Some(5), Some(4), Some(22_000 + 7_000 + 30_000)),
        "{c:#?}"
    );
}

/// A flow open across a restart is one flow whether the report sums residency rows (whole
/// minutes) or connection records (any other bounds: sessions, seconds): the new run's first
/// record of it counts from the restart, like a new flow's, but keeps the flow's `first_seen`,
/// and the earlier run's records since then make it a continuation (an adversarial pass: bounds
/// off whole minutes counted it twice, in the app's flows and per country and ASN).
#[test]
fn a_flow_open_across_a_restart_is_one_flow_in_every_report() {
    use crate::{
        journal::tests::fixtures::{self, Flow},
        tracker::record::RecordKind::{Close, Shutdown, Update},
    };
    let dir = tempdir();
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let app = fixtures::app("uploader");
    let mut w = writer_in(dir.path());
    let mut before = Flow::new(7, "203.0.113.10:443", t("10:00:00"));
    w.append(&before.record(Update, t("10:00:30"), 1000, 10), &app, Some(&us));
    w.append(&before.record(Shutdown, t("10:01:00"), 500, 5), &app, Some(&us));
    w.flush().expect("flush");
    drop(w);
    let mut w = writer_restarted(dir.path(), t("10:01:05").as_second());
    // As the sink's resume step leaves it: counted from the restart, the flow's first_seen kept.
    let mut after = Flow::new(7, "203.0.113.10:443", t("10:00:00"));
    let mut r = after.record(Update, t("10:01:30"), 700, 7);
    r.resumed = true;
    w.append(&r, &app, Some(&us));
    // A new flow of another socket in the same minutes: counted.
    let mut other = Flow::new(8, "203.0.113.10:443", t("10:01:10"));
    w.append(&other.record(Update, t("10:01:40"), 30, 3), &app, Some(&us));
    // A socket connected again to the same address after its first connection closed: two flows
    // (the socket's creation is the first_seen of both).
    let mut first = Flow::new(9, "203.0.113.10:443", t("10:01:10"));
    w.append(&first.record(Close, t("10:01:20"), 40, 4), &app, Some(&us));
    let mut again = Flow::new(9, "203.0.113.10:443", t("10:01:10"));
    w.append(&again.record(Update, t("10:01:50"), 50, 5), &app, Some(&us));
    w.flush().expect("flush");
    let path = w.path().to_path_buf();
    drop(w);
    let reader = JournalReader::open(&path).expect("reader");
    for (since, until) in [("10:00:00", "10:02:00"), ("10:00:00.001", "10:02:00.001")] {
        let query = ReportQuery::new(Period::range(t(since), t(until), &utc()).expect("range"));
        let mut out = Vec::new();
        Report::build(&reader, &query).expect("build").render(Format::Json, &mut out).expect("render");
        let v: Value = serde_json::from_slice(&out).expect("json");
        let a = &v["apps"][0];
        assert_eq!((a["app"].as_str(), a["flows"].as_u64()), (Some("uploader"), Some(4)), "{since}: {a:#}");
        assert_eq!(a["by_country"][0]["flows"].as_u64(), Some(4), "{since}");
        assert_eq!(a["traffic"]["payload_tx"].as_u64(), Some(1000 + 500 + 700 + 30 + 40 + 50), "{since}");
    }
}
