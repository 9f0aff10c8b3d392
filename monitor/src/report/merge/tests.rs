//! Merging three machines' exports of one week: exact sums, per-host columns, clear refusals.

use serde_json::Value;

use super::{Error, merge, merge_exports};
use crate::{
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{Format, Period, Report, ReportQuery},
    tracker::record::RecordKind::Close,
    zone::Zone,
};

/// Monday 2026-11-16 00:00 UTC: start of 2026-W47.
const W: i64 = 1_794_787_200;

/// One machine's weekly export: `(app, remote, country, (tx, rx))` flows in 2026-W47.
pub(super) fn export(flows: &[(&str, &str, &str, (u64, u64))]) -> Value {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    for (i, (app, remote, country, (tx, rx))) in flows.iter().enumerate() {
        let dest = fixtures::public(Some(country), Some(64_500), Some("Example Net"));
        let t = W + 3600 + i64::try_from(i).unwrap();
        let mut f = Flow::new(i as u64 + 1, remote, at(t));
        w.append(&f.record(Close, at(t), *tx, *rx), &fixtures::app(app), Some(&dest));
    }
    w.flush().unwrap();
    let reader = JournalReader::open(&dir.path().join("state/journal.db")).unwrap();
    let zone = Zone::get("UTC").unwrap();
    let report = Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W47", &zone).unwrap())).unwrap();
    let mut out = Vec::new();
    report.render(Format::Json, &mut out).unwrap();
    serde_json::from_slice(&out).unwrap()
}

fn app<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["apps"].as_array().unwrap().iter().find(|a| a["app"] == name).unwrap()
}

fn country(a: &Value, key: &str) -> (u64, u64) {
    let s = a["by_country"].as_array().unwrap().iter().find(|s| s["key"] == key).unwrap();
    (s["traffic"]["payload_tx"].as_u64().unwrap(), s["traffic"]["payload_rx"].as_u64().unwrap())
}

pub(super) fn inputs() -> Vec<(String, Value)> {
    vec![
        (
            "lab-01".into(),
            export(&[("browser", "203.0.113.10:443", "US", (1000, 200)), ("sync", "198.51.100.1:443", "DE", (30, 40))]),
        ),
        (
            "lab-02".into(),
            export(&[("browser", "203.0.113.10:443", "US", (500, 50)), ("browser", "192.0.2.7:443", "SE", (7, 9))]),
        ),
        ("lab-03".into(), export(&[("sync", "198.51.100.1:443", "DE", (3, 4))])),
    ]
}

#[test]
fn three_exports_of_a_week_sum_exactly_with_per_host_columns() {
    let merged = merge(&inputs()).unwrap();
    assert_eq!(merge_exports(&inputs()).unwrap(), merged, "exports read by the typed report merge the same");
    assert_eq!(merged["schema"], "monitor.report/1");
    assert_eq!(merged["period"]["label"], "2026-W47");
    let t = &merged["totals"];
    assert_eq!((t["payload_tx"].as_u64(), t["payload_rx"].as_u64()), (Some(1540), Some(303)));
    let browser = app(&merged, "browser");
    assert_eq!(browser["traffic"]["payload_tx"], 1507);
    assert_eq!(country(browser, "US"), (1500, 250));
    assert_eq!(country(browser, "SE"), (7, 9));
    assert_eq!(browser["flows"], 3);
    // 1750 of 1766 payload bytes.
    let us = browser["by_country"].as_array().unwrap().iter().find(|s| s["key"] == "US").unwrap();
    assert_eq!(us["share_pct"], 99.09);
    let endpoint = &browser["top_endpoints"][0];
    assert_eq!((endpoint["ip"].as_str(), endpoint["payload_tx"].as_u64()), (Some("203.0.113.10"), Some(1500)));
    let sync = app(&merged, "sync");
    assert_eq!(country(sync, "DE"), (33, 44));
    let by_host: Vec<(String, u64)> = sync["by_host"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap().to_owned(), h["traffic"]["payload_tx"].as_u64().unwrap()))
        .collect();
    assert_eq!(by_host, [("lab-01".to_owned(), 30), ("lab-03".to_owned(), 3)]);
    let hosts: Vec<&str> = merged["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["lab-01", "lab-02", "lab-03"]);
    assert_eq!(merged["hosts"][1]["totals"]["payload_tx"], 507);
    // Each host's notes, prefixed with it.
    let notes: Vec<&str> =
        merged["completeness"]["notes"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    for host in ["lab-01: ", "lab-02: ", "lab-03: "] {
        assert!(notes.iter().any(|n| n.starts_with(host)), "{host} in {notes:?}");
    }
    assert!(notes.iter().all(|n| n.starts_with("lab-0")), "{notes:?}");
    // A merge of merges gives the same figures.
    let mut parts = inputs();
    let last = parts.pop().unwrap();
    let first_two = merge(&parts).unwrap();
    let again = merge(&[("fleet".into(), first_two), last]).unwrap();
    assert_eq!(again["totals"], merged["totals"]);
    assert_eq!(again["hosts"], merged["hosts"]);
    assert_eq!(again["completeness"]["notes"], merged["completeness"]["notes"]);
}

#[test]
fn overlapping_hosts_other_schemas_and_other_weeks_are_refused() {
    let mut same_host = inputs();
    same_host[2].0 = "lab-01".into();
    assert!(matches!(merge(&same_host), Err(Error::Overlap { host }) if host == "lab-01"));
    let mut other_schema = inputs();
    other_schema[1].1["schema"] = "monitor.report/2".into();
    let err = merge(&other_schema).unwrap_err();
    assert!(err.to_string().contains("schema monitor.report/2"), "{err}");
    let mut other_week = inputs();
    other_week[2].1["period"]["label"] = "2026-W48".into();
    assert!(matches!(merge(&other_week), Err(Error::Period { .. })));
    // The same week cut in another time zone: same label, another window (it was summed and
    // labelled with the first input's window: found by an adversarial pass).
    let mut other_zone = inputs();
    other_zone[1].1["period"]["since"] = "2026-11-15T15:00:00Z".into();
    other_zone[1].1["period"]["until"] = "2026-11-22T15:00:00Z".into();
    let err = merge_exports(&other_zone).unwrap_err();
    assert!(matches!(err, Error::Period { .. }) && err.to_string().contains("2026-11-15T15:00:00Z"), "{err}");
    // One export given twice under two labels (or copied): its figures would count twice.
    let mut copied = inputs();
    copied[2].1 = copied[0].1.clone();
    let err = merge_exports(&copied).unwrap_err();
    assert!(matches!(&err, Error::Copy { host, first } if host == "lab-03" && first == "lab-01"), "{err}");
    // Two idle machines write the same document: merged (found by a review).
    let mut idle = inputs();
    for (_, r) in &mut idle[1..] {
        r["apps"] = serde_json::json!([]);
    }
    let same = idle[1].1.clone();
    idle[2].1 = same;
    assert!(merge_exports(&idle).is_ok());
    assert!(matches!(merge(&[("x".into(), serde_json::json!({"a": 1}))]), Err(Error::NotAReport { .. })));
    assert!(matches!(merge(&[]), Err(Error::Empty)));
}

#[test]
fn fields_of_the_wrong_kind_are_refused_not_a_crash() {
    let mut scalar = inputs();
    scalar[1].1["completeness"] = serde_json::json!(5);
    let err = merge_exports(&scalar).unwrap_err();
    assert!(matches!(&err, Error::Invalid { host, .. } if host == "lab-02"), "{err}");
    let mut strings = inputs();
    strings[2].1["apps"] = serde_json::json!(["x"]);
    assert!(matches!(merge_exports(&strings), Err(Error::Invalid { .. })));
    let mut first = inputs();
    first[0].1["totals"] = serde_json::json!([1, 2]);
    assert!(matches!(merge_exports(&first), Err(Error::Invalid { .. })));
}

/// JSON pointers of every object and array in `v` (where the merge descends and adds fields).
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    if v.is_object() || v.is_array() {
        out.push(at.to_owned());
    }
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, c)| pointers(c, &format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, &format!("{at}/{i}"), out)),
        _ => {}
    }
}

mod damaged {
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::{inputs, merge_exports, pointers};

    fn fleet() -> &'static Vec<(String, Value)> {
        static INPUTS: OnceLock<Vec<(String, Value)>> = OnceLock::new();
        INPUTS.get_or_init(inputs)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        /// Any object or array of any input replaced by a value of any kind: the merge answers
        /// (a report or an error), it never panics.
        #[test]
        fn any_container_replaced_by_any_kind_never_panics(
            host in 0..3usize,
            node in any::<prop::sample::Index>(),
            kind in 0..7u8,
            n in any::<i64>(),
        ) {
            let mut all = fleet().clone();
            let mut nodes = Vec::new();
            pointers(&all[host].1, "", &mut nodes);
            let at = &nodes[node.index(nodes.len())];
            let value = match kind {
                0 => Value::Null,
                1 => json!(n),
                2 => json!(n.to_string()),
                3 => json!([n]),
                4 => json!({"x": n}),
                5 => json!(n % 2 == 0),
                _ => json!(-1.5),
            };
            if let Some(slot) = all[host].1.pointer_mut(at) {
                *slot = value;
            }
            let _ = merge_exports(&all);
        }
    }
}
