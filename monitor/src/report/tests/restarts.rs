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
    // Run 1: snapshots at 10:00 and 10:01, then killed (no final snapshot).
    let mut w = writer_in(dir.path());
    w.record_stats(t("10:00:00"), &Stats::default());
    w.record_stats(t("10:01:00"), &Stats::default());
    w.flush().expect("flush");
    drop(w);
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
        (Some(3), Some(2), Some(49_000))
    );
    let notes = c["notes"].as_array().expect("notes");
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.contains("started again 2 time(s)") && n.contains("at most 49 s"))),
        "{notes:#?}"
    );
    // A period that holds only part of the first gap, and the second restart.
    let c = completeness(&reader, "10:01:30", "10:30:00");
    assert_eq!((c["restarts"].as_u64(), c["unwatched_ms"].as_u64()), (Some(2), Some(12_000 + 7_000)));
    // A period before the first restart: none, and no note of one.
    let c = completeness(&reader, "09:00:00", "10:01:30");
    assert_eq!((c["restarts"].as_u64(), c["unwatched_ms"].as_u64()), (Some(0), Some(0)));
    assert!(!c["notes"].to_string().contains("started again"), "{c:#?}");
}
