//! Consensus and plausibility figures (issue 15): destinations enriched by two test databases
//! that agree on some ranges and disagree on others (`consensus-{a,b}.mmdb`), records with known
//! bytes and kernel RTTs; exact shares, disagreement list and implausible destinations.

use serde_json::{Value, json};

use super::{W, ny};
use crate::{
    enrich::{Enricher, GeoConfig},
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{Format, Period, Report, ReportQuery, disagreeing_destinations},
    residency::DeviceLocation,
    tracker::record::{RecordKind::Close, Rtt},
};

const GEO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geo");

/// (app, cookie, remote, payload up, payload down, min RTT in µs).
type TestFlow = (&'static str, u64, &'static str, u64, u64, Option<u32>);

/// Writes the journal; returns its path (in `dir`).
fn journal(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = GeoConfig {
        country_db: Some(format!("{GEO}/consensus-a.mmdb").into()),
        registry_db: Some(format!("{GEO}/consensus-b.mmdb").into()),
        max_age_days: 0,
        ..GeoConfig::default()
    };
    let mut enricher = Enricher::open_in(&cfg, dir).expect("test databases");
    let mut w = writer_in(dir);
    // (app, cookie, remote, tx, rx, min RTT µs)
    let flows: [TestFlow; 6] = [
        ("browser", 1, "11.1.1.10:443", 1000, 500, Some(300)),    // US / US
        ("browser", 2, "11.2.2.10:443", 2000, 0, Some(300)),      // SG / US
        ("browser", 3, "11.3.3.10:443", 700, 300, Some(250_000)), // SE / SE, 250 ms
        ("browser", 4, "11.4.4.10:443", 400, 0, None),            // DE / -
        ("browser", 5, "192.168.1.10:443", 50, 50, Some(10)),     // private: not public traffic
        ("sync", 6, "11.2.2.11:443", 100, 0, Some(200)),          // SG / US
    ];
    for (app, cookie, remote, tx, rx, rtt) in flows {
        let mut f = Flow::new(cookie, remote, at(W + 3600));
        let mut record = f.record(Close, at(W + 3600 + i64::try_from(cookie).expect("small")), tx, rx);
        record.rtt = rtt.map(|min_us| Rtt { min_us, smoothed_us: min_us + 50 });
        let dest = enricher.lookup(f.remote.ip());
        w.append(&record, &fixtures::app(app), Some(&dest));
    }
    w.flush().expect("flush");
    w.path().to_path_buf()
}

fn report(reader: &JournalReader, device: Option<DeviceLocation>) -> Value {
    let mut q = ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"));
    q.device = device;
    let mut out = Vec::new();
    Report::build(reader, &q).expect("build").render(Format::Json, &mut out).expect("render");
    serde_json::from_slice(&out).expect("json")
}

fn app<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["apps"].as_array().expect("apps").iter().find(|a| a["app"] == name).expect("app")
}

#[test]
fn consensus_shares_and_disagreements_are_exact() {
    let dir = tempdir();
    let reader = JournalReader::open(&journal(dir.path())).expect("reader");
    let v = report(&reader, None);
    let c = &app(&v, "browser")["consensus"];
    assert_eq!(c["databases"], json!(["primary", "registry"]));
    // Public: 1500 + 2000 + 1000 + 400; agree: US and SE.
    assert_eq!(
        (&c["public_bytes"], &c["agree_bytes"], &c["partial_bytes"], &c["disagree_bytes"], &c["unchecked_bytes"]),
        (&json!(4900), &json!(2500), &json!(400), &json!(2000), &json!(0))
    );
    assert_eq!(c["agree_share_pct"], 51.02);
    let answers = |label: &str, country: &str, db: &str| json!({ "label": label, "country": country, "database_type": db, "build_epoch": 1_780_000_000 });
    assert_eq!(
        c["disagreements"],
        json!([{
            "ip": "11.2.2.10",
            "payload_bytes": 2000,
            "answers": [answers("primary", "SG", "consensus-test-a"), answers("registry", "US", "consensus-test-b")]
        }])
    );
    let s = &app(&v, "sync")["consensus"];
    assert_eq!((&s["agree_share_pct"], &s["disagree_bytes"]), (&json!(0.0), &json!(100)));
    // No device location: no plausibility figures, and the report says why once.
    assert!(app(&v, "browser").get("plausibility").is_none());
    let notes: Vec<&str> =
        v["completeness"]["notes"].as_array().expect("notes").iter().filter_map(Value::as_str).collect();
    assert_eq!(notes.iter().filter(|n| n.contains("[device] location")).count(), 1, "{notes:?}");
}

#[test]
fn destinations_farther_than_their_rtt_allows_are_implausible() {
    let dir = tempdir();
    let reader = JournalReader::open(&journal(dir.path())).expect("reader");
    let v = report(&reader, Some(DeviceLocation::Country("US".into())));
    let p = &app(&v, "browser")["plausibility"];
    assert_eq!(p["device_location"], "US");
    // Measured: US (0 km, plausible), SG at 0.3 ms (implausible), SE at 250 ms (plausible).
    assert_eq!((&p["measured_bytes"], &p["implausible_bytes"]), (&json!(4500), &json!(2000)));
    assert_eq!(p["implausible_share_pct"], 40.82);
    let list = p["implausible"].as_array().expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    let sg = &list[0];
    assert_eq!((&sg["ip"], &sg["country"], &sg["min_rtt_us"]), (&json!("11.2.2.10"), &json!("SG"), &json!(300)));
    assert_eq!(sg["bound_km"], 30.0);
    assert!(sg["distance_km"].as_f64().expect("km") > 3000.0, "{sg}");
    assert_eq!(sg["note"], "anycast/CDN edge near the device");
    // The smallest RTT to an address counts (sync's own flow: 200 µs).
    let sync = &app(&v, "sync")["plausibility"]["implausible"][0];
    assert_eq!((&sync["min_rtt_us"], &sync["bound_km"]), (&json!(200), &json!(20.0)));
    let notes = v["completeness"]["notes"].to_string();
    assert!(!notes.contains("[device] location"), "{notes}");
    // Text rendering carries the evidence.
    let mut q = ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"));
    q.device = Some(DeviceLocation::Country("US".into()));
    let mut out = Vec::new();
    Report::build(&reader, &q).expect("build").render(Format::Markdown, &mut out).expect("render");
    let md = String::from_utf8(out).expect("utf-8");
    assert!(md.contains("Database consensus") && md.contains("Physical plausibility"), "{md}");
    assert!(md.contains("11.2.2.10") && md.contains("30.0 km") && md.contains("anycast/CDN edge"), "{md}");
}

#[test]
fn disagreeing_destinations_are_listed_for_claims() {
    let dir = tempdir();
    let reader = JournalReader::open(&journal(dir.path())).expect("reader");
    let period = Period::iso_week("2026-W47", &ny()).expect("week");
    let rows = disagreeing_destinations(&reader, period.time_range(), None).expect("rows");
    let got: Vec<(&str, &str, u64)> = rows.iter().map(|r| (r.app.as_str(), r.ip.as_str(), r.payload_tx)).collect();
    assert_eq!(got, [("browser", "11.2.2.10", 2000), ("sync", "11.2.2.11", 100)]);
    let only_sync = disagreeing_destinations(&reader, period.time_range(), Some("sync")).expect("rows");
    assert_eq!(only_sync.len(), 1);
    // The per-address minimum for `monitor lookup`.
    assert_eq!(reader.min_rtt_us("11.2.2.10", period.time_range()).expect("rtt"), Some(300));
    assert_eq!(reader.min_rtt_us("11.4.4.10", period.time_range()).expect("rtt"), None);
}
