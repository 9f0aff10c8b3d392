//! Diffs of two sessions written to a real journal with a known difference.

use serde_json::{Value, json};

use super::{AppStatus, DEFAULT_THRESHOLD_PCT, Diff, DiffFormat, Error};
use crate::{
    enrich::Destination,
    journal::{
        JournalReader, JournalWriter,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{Format, Period, Report, ReportQuery, SessionInfo},
    tracker::record::RecordKind::Close,
    zone::Zone,
};

const T: i64 = 1_794_805_200;

/// One closed flow of `app` in `cgroup`: `tx` bytes up to `remote` at second `t`.
fn flow(
    w: &mut JournalWriter,
    (app, cgroup): (&str, u64),
    cookie: u64,
    remote: &str,
    t: i64,
    tx: u64,
    d: &Destination,
) {
    let mut f = Flow::new(cookie, remote, at(t));
    let mut r = f.record(Close, at(t), tx, 0);
    r.owner.cgroup_id = cgroup;
    w.append(&r, &fixtures::app(app), Some(d));
}

fn report(reader: &JournalReader, since: i64, cgroup: u64) -> Value {
    let period = Period::range(at(since), at(since + 100), &Zone::get("UTC").unwrap()).unwrap();
    let mut q = ReportQuery::new(period);
    q.session = Some(SessionInfo { name: format!("s{cgroup}"), cgroup_id: Some(cgroup) });
    q.top_endpoints = usize::MAX;
    let mut out = Vec::new();
    Report::build(reader, &q).unwrap().render(Format::Json, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

/// A: curl sends 1000 to US and 77 to CN. B: curl sends 1500 to the same US endpoint and 500 to
/// JP (CN gone), and a new app `sync` sends 10 to US. Outside both sessions' cgroups, noise.
fn two_sessions() -> (Value, Value) {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let cn = fixtures::public(Some("CN"), Some(4134), Some("Chinanet"));
    let jp = fixtures::public(Some("JP"), Some(2497), Some("IIJ"));
    flow(&mut w, ("curl", 42), 1, "203.0.113.10:443", T + 1, 1000, &us);
    flow(&mut w, ("curl", 42), 2, "198.51.100.20:443", T + 2, 77, &cn);
    flow(&mut w, ("curl", 9), 3, "192.0.2.99:443", T + 3, 5, &jp);
    flow(&mut w, ("curl", 43), 4, "203.0.113.10:443", T + 1001, 1500, &us);
    flow(&mut w, ("curl", 43), 5, "192.0.2.200:443", T + 1002, 500, &jp);
    flow(&mut w, ("sync", 43), 6, "203.0.113.10:443", T + 1003, 10, &us);
    flow(&mut w, ("other", 9), 7, "198.51.100.20:443", T + 1004, 5, &cn);
    w.flush().unwrap();
    let reader = JournalReader::open(w.path()).unwrap();
    (report(&reader, T, 42), report(&reader, T + 1000, 43))
}

#[test]
fn diff_of_two_sessions_lists_exactly_the_difference() {
    let (a, b) = two_sessions();
    let diff = Diff::of(("build-1", &a), ("build-2", &b), DEFAULT_THRESHOLD_PCT).unwrap();
    let v = serde_json::to_value(&diff).unwrap();
    assert_eq!(v["schema"], "monitor.diff/1");
    assert_eq!(v["anything_new"], true);
    assert_eq!(v["a"]["label"], "build-1");
    let none = json!({"new": [], "gone": []});
    assert_eq!(
        v["apps"],
        json!([
            {
                "app": "curl",
                "status": "changed",
                "countries": {"new": ["JP"], "gone": ["CN"]},
                "asns": {"new": [{"asn": 2497, "as_org": "IIJ"}], "gone": [{"asn": 4134, "as_org": "Chinanet"}]},
                "hostnames": none,
                "endpoints": {
                    "new": [{"ip": "192.0.2.200", "port": 443, "protocol": "tcp"}],
                    "gone": [{"ip": "198.51.100.20", "port": 443, "protocol": "tcp"}]
                },
                "bytes": [
                    {"key": "total", "a": 1077, "b": 2000, "change_pct": 85.7},
                    {"key": "US", "a": 1000, "b": 1500, "change_pct": 50.0},
                    {"key": "AS396986", "a": 1000, "b": 1500, "change_pct": 50.0}
                ]
            },
            {
                "app": "sync",
                "status": "new",
                "countries": {"new": ["US"], "gone": []},
                "asns": {"new": [{"asn": 396_986, "as_org": "ByteDance Inc."}], "gone": []},
                "hostnames": none,
                "endpoints": {"new": [{"ip": "203.0.113.10", "port": 443, "protocol": "tcp"}], "gone": []},
                "bytes": []
            }
        ])
    );
    // A threshold above the changes hides them; the same session twice has nothing at all.
    let quiet = Diff::of(("a", &a), ("b", &b), 90.0).unwrap();
    assert!(quiet.apps[0].bytes.is_empty());
    let same = Diff::of(("a", &a), ("a", &a), 0.0).unwrap();
    assert!(same.apps.is_empty() && !same.anything_new);
    // Gone destinations alone are not "new".
    let back = Diff::of(("b", &b), ("a", &a), DEFAULT_THRESHOLD_PCT).unwrap();
    assert!(back.anything_new, "CN is new when going back");
    assert_eq!(back.apps[1].status, AppStatus::Gone);
}

#[test]
fn diff_renders_markdown_and_table_with_escaped_names() {
    let (a, mut b) = two_sessions();
    b["apps"][1]["app"] = json!("evil|app\u{1b}[2J");
    let diff = Diff::of(("a", &a), ("b", &b), DEFAULT_THRESHOLD_PCT).unwrap();
    let mut md = Vec::new();
    diff.render(DiffFormat::Markdown, &mut md).unwrap();
    let md = String::from_utf8(md).unwrap();
    assert!(md.contains("| curl | new country | JP |  |  |"), "{md}");
    assert!(md.contains("| curl | bytes +50.00 % | US | 1000 | 1500 |"), "{md}");
    assert!(md.contains(r"| evil\|app\\x1b\[2J | app new |"), "{md}");
    let mut text = Vec::new();
    diff.render(DiffFormat::Table, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains('\u{1b}') && text.contains("gone ASN"), "{text}");
}

#[test]
fn a_file_that_is_not_a_report_is_refused() {
    let err = Diff::of(("x.json", &json!({"schema": "other"})), ("y", &json!({})), 1.0).unwrap_err();
    assert!(err.to_string().contains("x.json is not a monitor report"), "{err}");
}

/// The `--format` names (clap's derive), each parsing back, and messages use the same.
#[test]
fn format_names_are_the_ones_in_use() {
    use clap::ValueEnum as _;
    for (format, name) in [(DiffFormat::Table, "table"), (DiffFormat::Json, "json"), (DiffFormat::Markdown, "markdown")]
    {
        assert_eq!(format.to_string(), name);
        assert_eq!(DiffFormat::from_str(name, false), Ok(format));
    }
    assert_eq!(DiffFormat::value_variants().len(), 3, "every format is listed above");
}

/// A figure or name the diff needs that is missing or of the wrong type is an error naming it;
/// it was read as 0 (or the app skipped), so a hand-edited or truncated file gave a wrong diff.
#[test]
fn a_report_missing_a_figure_is_refused_naming_it() {
    let (a, b) = two_sessions();
    let broken = |path: &[&str], value: Value| {
        let mut v = b.clone();
        let mut at = &mut v;
        for key in &path[..path.len() - 1] {
            at = match key.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*key],
            };
        }
        at.as_object_mut().unwrap().insert(path[path.len() - 1].to_string(), value);
        v
    };
    for (v, what) in [
        (broken(&["apps", "0", "traffic", "payload_tx"], json!("12")), "apps[0].traffic.payload_tx"),
        (broken(&["apps", "1", "app"], json!(7)), "apps[1].app"),
        (broken(&["apps", "0", "by_country"], json!({})), "apps[0].by_country"),
        (broken(&["apps"], json!(null)), "apps"),
    ] {
        let err = Diff::of(("a", &a), ("b.json", &v), DEFAULT_THRESHOLD_PCT).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{what}: {err}");
        let text = err.to_string();
        assert!(text.contains("b.json") && text.contains(what), "{text}");
    }
    let mut country = b.clone();
    country["apps"][0]["by_country"][0]["traffic"].as_object_mut().unwrap().remove("payload_rx");
    let err = Diff::of(("a", &a), ("b", &country), DEFAULT_THRESHOLD_PCT).unwrap_err().to_string();
    assert!(err.contains("apps[0].by_country[0].traffic.payload_rx"), "{err}");
    // An app listed twice would have its second entry replace the first.
    let mut twice = b.clone();
    let first = twice["apps"][0].clone();
    twice["apps"].as_array_mut().unwrap().push(first);
    let err = Diff::of(("a", &a), ("b", &twice), DEFAULT_THRESHOLD_PCT).unwrap_err().to_string();
    assert!(err.contains("twice"), "{err}");
}
