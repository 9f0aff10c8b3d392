//! Reports of a session: the window, and for `monitor exec` sessions only the records of sockets
//! created in the session's cgroup (same app, same destination outside the cgroup excluded), in
//! every section.

use serde_json::Value;

use crate::{
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    names::{Hostname, NameSource, Names},
    report::{
        Format, Period, Report, ReportQuery, SessionInfo,
        source::{self, Figures, Source},
    },
    tracker::record::RecordKind::{Close, Update},
    zone::Zone,
};

const T: i64 = 1_794_805_200;

fn json(reader: &JournalReader, cgroup_id: Option<u64>) -> Value {
    let period = Period::range(at(T), at(T + 100), &Zone::get("UTC").unwrap()).unwrap();
    let mut q = ReportQuery::new(period);
    q.session = Some(SessionInfo { name: "s".into(), cgroup_id });
    let mut out = Vec::new();
    Report::build(reader, &q).unwrap().render(Format::Json, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

#[test]
fn session_with_cgroup_reports_only_its_sockets() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let cn = fixtures::public(Some("CN"), Some(4134), Some("Chinanet"));
    let app = fixtures::app("curl");
    // In the session's cgroup (42): two records of one flow to US, one flow to CN.
    let mut a = Flow::new(1, "203.0.113.10:443", at(T + 1));
    let mut r = a.record(Update, at(T + 2), 1000, 10);
    r.owner.cgroup_id = 42;
    w.append(&r, &app, Some(&us));
    let mut r = a.record(Close, at(T + 3), 234, 5);
    r.owner.cgroup_id = 42;
    w.append(&r, &app, Some(&us));
    let mut b = Flow::new(2, "198.51.100.20:443", at(T + 4));
    let mut r = b.record(Close, at(T + 5), 77, 0);
    r.owner.cgroup_id = 42;
    w.append(&r, &app, Some(&cn));
    // Same app, same US endpoint, another cgroup (9), same window: not the session's.
    let mut c = Flow::new(3, "203.0.113.10:443", at(T + 1));
    w.append(&c.record(Close, at(T + 6), 5_000_000, 0), &app, Some(&us));
    // The session's cgroup after the window: excluded by time.
    let mut d = Flow::new(4, "203.0.113.10:443", at(T + 200));
    let mut r = d.record(Close, at(T + 200), 9, 9);
    r.owner.cgroup_id = 42;
    w.append(&r, &app, Some(&us));
    w.flush().unwrap();
    let reader = JournalReader::open(w.path()).unwrap();

    let v = json(&reader, Some(42));
    assert_eq!(v["session"]["name"], "s");
    assert_eq!(v["session"]["cgroup_id"], 42);
    assert_eq!(v["apps"].as_array().unwrap().len(), 1);
    let curl = &v["apps"][0];
    assert_eq!(
        (curl["traffic"]["payload_tx"].as_u64(), curl["traffic"]["payload_rx"].as_u64()),
        (Some(1311), Some(15))
    );
    assert_eq!(curl["flows"], 2);
    let countries: Vec<(&str, u64)> = curl["by_country"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["key"].as_str().unwrap(), s["traffic"]["payload_tx"].as_u64().unwrap()))
        .collect();
    assert_eq!(countries, [("US", 1234), ("CN", 77)]);
    let endpoints: Vec<(&str, u64)> = curl["top_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["ip"].as_str().unwrap(), e["payload_tx"].as_u64().unwrap()))
        .collect();
    assert_eq!(endpoints, [("203.0.113.10", 1234), ("198.51.100.20", 77)]);

    // Without a cgroup the session is its window: every flow in it.
    let v = json(&reader, None);
    assert_eq!(v["apps"][0]["traffic"]["payload_tx"], 1311 + 5_000_000);
    assert_eq!(v["session"]["cgroup_id"], Value::Null);
}

/// A session window that starts inside a residency interval: with a cgroup or without, the report
/// counts its connection records by their time and leaves nothing out, so it has no note about
/// intervals left out.
#[test]
fn a_session_with_a_cgroup_leaves_no_interval_out() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let mut a = Flow::new(1, "203.0.113.10:443", at(T + 40));
    let mut r = a.record(Close, at(T + 40), 1000, 10);
    r.owner.cgroup_id = 42;
    w.append(&r, &fixtures::app("curl"), Some(&us));
    w.flush().unwrap();
    let reader = JournalReader::open(w.path()).unwrap();
    let notes_of = |cgroup_id| {
        let period = Period::range(at(T + 30), at(T + 100), &Zone::get("UTC").unwrap()).unwrap();
        let mut q = ReportQuery::new(period);
        q.session = Some(SessionInfo { name: "s".into(), cgroup_id });
        let mut out = Vec::new();
        Report::build(&reader, &q).unwrap().render(Format::Json, &mut out).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let left_out = v["completeness"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().is_some_and(|s| s.contains("before the period and end")));
        (v["totals"]["payload_tx"].as_u64(), left_out)
    };
    assert_eq!(notes_of(Some(42)), (Some(1000), false));
    assert_eq!(notes_of(None), (Some(1000), false));
}

/// Every section of an exec session's report read from the connection records counts only the
/// session's cgroup: by service, the top endpoints' host names, the truth rows (consensus) and
/// the evidence destinations leave out the same app's traffic elsewhere in the same window.
#[test]
fn session_with_cgroup_names_and_truth_only_its_sockets() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let named = |host: &str| Names {
        hostname: Hostname::parse(host).ok(),
        registrable_domain: crate::names::domain::registrable(host),
        source: NameSource::Sni,
        ..Names::default()
    };
    let us = fixtures::public_with_answers("US", Some("US"));
    let app = fixtures::app("curl");
    // The session's cgroup (42): a.test at 203.0.113.10.
    let mut a = Flow::new(1, "203.0.113.10:443", at(T + 1));
    let mut r = a.record(Close, at(T + 2), 1000, 10);
    r.owner.cgroup_id = 42;
    w.append_named(&r, &app, Some(&us), &named("a.test"));
    // Another cgroup (9), later in the window: b.test at the same address, c.test elsewhere.
    let mut b = Flow::new(2, "203.0.113.10:443", at(T + 3));
    w.append_named(&b.record(Close, at(T + 4), 500, 0), &app, Some(&us), &named("b.test"));
    let mut c = Flow::new(3, "198.51.100.20:443", at(T + 5));
    let sg = fixtures::public_with_answers("SG", Some("US"));
    w.append_named(&c.record(Close, at(T + 6), 70, 0), &app, Some(&sg), &named("c.test"));
    w.flush().unwrap();
    let reader = JournalReader::open(w.path()).unwrap();

    let period = Period::range(at(T), at(T + 100), &Zone::get("UTC").unwrap()).unwrap();
    let mut q = ReportQuery::new(period);
    q.session = Some(SessionInfo { name: "s".into(), cgroup_id: Some(42) });
    q.evidence = true;
    let figures = Figures::of(&reader, &q).unwrap();
    assert_eq!(figures, Figures::Records { cgroup: Some(42) });
    let previous = q.period.previous().unwrap();
    let plan = source::plan(&reader, &q.period, &previous, None, Source::Auto).unwrap();
    let inputs = source::read(&reader, &q, &previous, figures, plan).unwrap();
    let truth: Vec<(&str, u64)> = inputs.truth.iter().map(|t| (t.ip.as_str(), t.payload_tx)).collect();
    assert_eq!(truth, [("203.0.113.10", 1000)]);

    let mut out = Vec::new();
    Report::build(&reader, &q).unwrap().render(Format::Json, &mut out).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    let curl = &v["apps"][0];
    assert_eq!(curl["traffic"]["payload_tx"], 1000);
    let hostnames: Vec<&str> =
        v["services"][0]["hostnames"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(hostnames, ["a.test"]);
    assert_eq!(v["services"][0]["named"]["payload_tx"], 1000);
    let endpoints: Vec<(&str, &Value)> = curl["top_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["ip"].as_str().unwrap(), &e["hostnames"]))
        .collect();
    assert_eq!(endpoints, [("203.0.113.10", &serde_json::json!(["a.test"]))]);
    assert_eq!(curl["consensus"]["public_bytes"], 1010);
    let destinations: Vec<(&str, &str, u64)> = curl["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["ip"].as_str().unwrap(), d["hostname"].as_str().unwrap(), d["payload_tx"].as_u64().unwrap()))
        .collect();
    assert_eq!(destinations, [("203.0.113.10", "a.test", 1000)]);
}
