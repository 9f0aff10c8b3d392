//! Periods whose bounds are not on the journal's residency intervals (sessions of `session
//! start/stop`, `--since/--until` with seconds): their figures are the connection records' in
//! `[since, until)` by record time, exactly; records just outside, in the same minute, are not.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde_json::Value;

use crate::{
    enrich::Destination,
    journal::{
        JournalReader, JournalWriter,
        tests::{
            fixtures::{self, Flow},
            raw, tempdir, utc, writer_in,
        },
    },
    report::{Format, Period, Report, ReportQuery, SessionInfo},
    tracker::record::RecordKind::{Close, Update},
};

/// `hh:mm:ss[.f]` on Wednesday 2026-11-18, UTC.
fn t(time: &str) -> Timestamp {
    format!("2026-11-18T{time}Z").parse().expect("fixture time")
}

/// One flow of one record of `tx`/`rx` payload bytes at `time`.
fn close(w: &mut JournalWriter, cookie: u64, remote: &str, time: &str, (tx, rx): (u64, u64), dest: &Destination) {
    let mut f = Flow::new(cookie, remote, t(time));
    w.append(&f.record(Close, t(time), tx, rx), &fixtures::app("curl"), Some(dest));
}

/// Records around a session `s1` started at 10:23:47.1 and stopped at 10:24:05.2: 11 B just
/// before the start and 5 B at the stop (excluded) and 3,333 B just after it, in the same
/// minutes; inside, 2,222 B to US and 44 / 6 B to DE.
fn journal(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let de = fixtures::public(Some("DE"), Some(3320), Some("Deutsche Telekom AG"));
    close(&mut w, 1, "203.0.113.10:443", "10:23:47", (11, 0), &us);
    close(&mut w, 2, "203.0.113.10:443", "10:23:49", (2222, 0), &us);
    close(&mut w, 3, "198.51.100.7:443", "10:24:01", (44, 6), &de);
    close(&mut w, 4, "203.0.113.10:443", "10:24:05.2", (5, 0), &us);
    close(&mut w, 5, "203.0.113.10:443", "10:24:06", (3333, 0), &us);
    w.flush().expect("flush");
    w.path().to_path_buf()
}

fn json(reader: &JournalReader, query: &ReportQuery) -> Value {
    let mut out = Vec::new();
    Report::build(reader, query).expect("build").render(Format::Json, &mut out).expect("render");
    serde_json::from_slice(&out).expect("json")
}

fn range(since: &str, until: &str) -> ReportQuery {
    ReportQuery::new(Period::range(t(since), t(until), &utc()).expect("range"))
}

fn session(since: &str, until: &str) -> ReportQuery {
    let mut q = range(since, until);
    q.session = Some(SessionInfo { name: "s1".into(), cgroup_id: None });
    q
}

fn notes(v: &Value) -> Vec<String> {
    v["completeness"]["notes"].as_array().expect("notes").iter().filter_map(|n| n.as_str().map(String::from)).collect()
}

fn tx(v: &Value) -> u64 {
    v["totals"]["payload_tx"].as_u64().expect("payload_tx")
}

#[test]
fn a_session_inside_minutes_counts_exactly_its_records() {
    let dir = tempdir();
    let reader = JournalReader::open(&journal(dir.path())).expect("reader");
    let v = json(&reader, &session("10:23:47.1", "10:24:05.2"));
    assert_eq!((tx(&v), v["totals"]["payload_rx"].as_u64()), (2266, Some(6)), "{v:#}");
    let curl = &v["apps"][0];
    assert_eq!(curl["flows"], 2);
    let countries: Vec<(&str, u64)> = curl["by_country"]
        .as_array()
        .expect("by_country")
        .iter()
        .map(|s| (s["key"].as_str().expect("key"), s["traffic"]["payload_tx"].as_u64().expect("tx")))
        .collect();
    assert_eq!(countries, [("US", 2222), ("DE", 44)]);
    let endpoints: Vec<(&str, u64)> = curl["top_endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| (e["ip"].as_str().expect("ip"), e["payload_tx"].as_u64().expect("tx")))
        .collect();
    assert_eq!(endpoints, [("203.0.113.10", 2222), ("198.51.100.7", 44)]);
    let timeline: u64 =
        curl["timeline"].as_array().expect("timeline").iter().map(|b| b["payload_tx"].as_u64().unwrap_or(0)).sum();
    assert_eq!(timeline, 2266, "the timeline adds up");
    assert_eq!(v["timeline"]["complete"], true);
    assert_eq!(v["completeness"]["data_since"], "2026-11-18T10:23:49Z");
    assert_eq!(v["completeness"]["data_until"], "2026-11-18T10:24:01Z");
    let said = notes(&v);
    assert!(said.iter().any(|n| n.contains("summed from the connection records")), "{said:#?}");
    assert!(!said.iter().any(|n| n.contains("residency interval starts")), "nothing left out: {said:#?}");

    // A 1.3 s session holding one record reports it.
    let v = json(&reader, &session("10:23:48", "10:23:49.3"));
    assert_eq!((tx(&v), v["apps"].as_array().map(Vec::len)), (2222, Some(1)), "{v:#}");
}

#[test]
fn sub_minute_ranges_count_the_records_inside_them() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    close(&mut w, 1, "203.0.113.10:443", "10:17:52.4", (5000, 70), &us);
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    for (since, until, expected) in [
        ("10:17:52", "10:17:53", 5000),
        ("10:17:00", "10:17:30", 0),
        ("10:17:30", "10:18:00", 5000),
        ("10:17:52.5", "10:17:53", 0),
        ("10:17:52.4", "10:17:52.401", 5000),
    ] {
        let v = json(&reader, &range(since, until));
        assert_eq!(tx(&v), expected, "[{since}, {until})");
        assert_eq!(v["apps"].as_array().map(Vec::len), Some(usize::from(expected > 0)), "[{since}, {until})");
    }
    // Whole minutes read the residency rows, with the same figures and no note about records.
    let v = json(&reader, &range("10:17:00", "10:18:00"));
    assert_eq!(tx(&v), 5000);
    assert!(!notes(&v).iter().any(|n| n.contains("connection records")), "{:#?}", notes(&v));
}

/// Connection records purged (retention) while the residency rows are kept: an unaligned period
/// reaching back before the oldest record left says that its figures start there.
#[test]
fn an_unaligned_period_before_the_purged_records_says_so() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    close(&mut w, 1, "203.0.113.10:443", "10:23:49", (2222, 0), &us);
    close(&mut w, 2, "203.0.113.10:443", "10:30:10", (100, 0), &us);
    w.flush().expect("flush");
    let path = w.path().to_path_buf();
    drop(w);
    let conn = raw(&path);
    let horizon = t("10:30:00").as_millisecond();
    conn.execute("DELETE FROM connections WHERE time_ms < ?1", [horizon]).expect("purge");
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('connections_purged_before_ms', ?1)", [horizon])
        .expect("horizon");
    drop(conn);
    let reader = JournalReader::open(&path).expect("reader");

    let v = json(&reader, &range("10:20:00.5", "10:31:00"));
    assert_eq!(tx(&v), 100, "the records left");
    let said = notes(&v);
    assert!(
        said.iter().any(|n| n.starts_with("the figures cover only the time since 2026-11-18T10:30:00Z")),
        "{said:#?}"
    );
    // On whole minutes the residency rows still hold every byte.
    let v = json(&reader, &range("10:20:00", "10:31:00"));
    assert_eq!(tx(&v), 2322);
    assert!(!notes(&v).iter().any(|n| n.starts_with("the figures cover only")), "{:#?}", notes(&v));
}

/// On a period of whole intervals both sources answer, and must agree: the records' sums and new
/// flows equal the residency table's. Two peers of one unconnected socket share a cookie and are
/// two flows; a flow whose first record is an empty `update` is new at its first record with bytes.
#[test]
fn records_and_residency_rows_agree_on_whole_intervals() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(15_169), Some("Google LLC"));
    for (remote, tx) in [("8.8.8.8:53", 40), ("8.8.4.4:53", 41)] {
        let mut peer = Flow::new(7, remote, t("10:05:00"));
        w.append(&peer.record(Close, t("10:05:01"), tx, 60), &fixtures::app("resolver"), Some(&us));
    }
    let mut quiet = Flow::new(8, "203.0.113.10:443", t("10:06:00"));
    w.append(&quiet.record(Update, t("10:06:10"), 0, 0), &fixtures::app("curl"), Some(&us));
    w.append(&quiet.record(Update, t("10:07:10"), 500, 700), &fixtures::app("curl"), Some(&us));
    w.append(&quiet.record(Close, t("10:08:10"), 5, 0), &fixtures::app("curl"), Some(&us));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let hour = crate::journal::TimeRange { since: t("10:00:00"), until: t("11:00:00") };
    let key = |rows: Vec<crate::journal::ResidencyRow>| {
        let mut v: Vec<_> = rows
            .into_iter()
            .map(|r| (r.app, r.payload_tx, r.payload_rx, r.wire_tx, r.wire_rx, r.packets_tx, r.packets_rx, r.new_flows))
            .collect();
        v.sort();
        v
    };
    let table = key(reader.residency(hour, None).expect("residency"));
    let records = key(reader.residency_of_records(hour, None, None).expect("records"));
    assert_eq!(table, records);
    let flows = |app: &str| table.iter().find(|r| r.0 == app).map(|r| r.7);
    assert_eq!((flows("resolver"), flows("curl")), (Some(2), Some(1)), "{table:?}");
    // A report of the same hour from 1 ms after its start reads the records: the same flows.
    let aligned = json(&reader, &range("10:00:00", "11:00:00"));
    let shifted = json(&reader, &range("10:00:00.001", "11:00:00"));
    assert_eq!(aligned["totals"], shifted["totals"]);
    let figures = |v: &Value| -> Vec<Value> {
        let apps = v["apps"].as_array().expect("apps");
        let keys = ["app", "flows", "traffic", "by_country", "by_asn", "top_endpoints", "incomplete_flows"];
        apps.iter().map(|a| keys.iter().map(|k| a[*k].clone()).collect()).collect()
    };
    assert_eq!(figures(&aligned), figures(&shifted));
    assert_eq!(shifted["apps"][1]["flows"], 2, "the resolver's two peers");
}

/// New destinations compare with the previous period read from the same source as the
/// period's figures: a country met in the range before is not new, one met only in the
/// range is, whether the bounds are on whole intervals (residency table) or not (records).
#[test]
fn new_destinations_compare_with_the_period_before_from_either_source() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let de = fixtures::public(Some("DE"), Some(3320), Some("Deutsche Telekom AG"));
    let private = fixtures::scoped(crate::enrich::Scope::Private);
    close(&mut w, 1, "203.0.113.10:443", "10:00:30", (10, 0), &us);
    close(&mut w, 2, "10.0.0.2:443", "10:00:40", (10, 0), &private);
    // Public, but neither database knew it: stored as NULL in records, '' and 0 in residency rows.
    close(&mut w, 5, "192.0.2.1:443", "10:00:50", (10, 0), &fixtures::public(None, None, None));
    close(&mut w, 3, "198.51.100.7:443", "10:01:30", (20, 0), &de);
    close(&mut w, 4, "203.0.113.11:443", "10:01:40", (30, 0), &us);
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let hour = crate::journal::TimeRange { since: t("10:00:00"), until: t("11:00:00") };
    let table = reader.destinations(hour, None).expect("residency");
    assert_eq!(table, reader.destinations_of_records(hour, None, None).expect("records"));
    let countries: Vec<_> = table.iter().map(|d| (d.country.as_deref(), d.asn)).collect();
    assert_eq!(countries, [(None, None), (Some("DE"), Some(3320)), (Some("US"), Some(396_986))], "public ones only");
    for (since, until) in [("10:01:00", "10:02:00"), ("10:01:00.5", "10:02:00")] {
        let v = json(&reader, &range(since, until));
        let new = &v["apps"][0]["new_destinations"];
        assert_eq!(new["countries"], serde_json::json!(["DE"]), "{since}: US was met before");
        assert_eq!(new["asns"].as_array().map(Vec::len), Some(1), "{since}: {new}");
        assert_eq!(tx(&v), 50, "{since}");
    }
}
