//! The registry against records with known numbers; the exposition against `promtool`.

use std::{process::Command, time::Duration};

use super::*;
use crate::{
    journal::tests::fixtures::{Flow, app, at, public, scoped},
    tracker::record::RecordKind,
};

fn config(top_apps: usize, top_asns: usize) -> MetricsConfig {
    MetricsConfig { enabled: true, top_apps, top_asns, ..MetricsConfig::default() }
}

/// The value of the series written exactly as `series` (name and labels), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

#[test]
fn payload_and_flows_count_each_record_delta_once_with_report_keys() {
    let m = Metrics::new(&config(10, 10), 1_700_000_000.0);
    let (a, b) = (app("alpha"), app("beta"));
    let se = public(Some("SE"), Some(29518), Some("Bredband2 AB"));
    let mut f1 = Flow::new(1, "89.160.20.112:443", at(1_780_000_000));
    m.observe(&f1.record(RecordKind::Update, at(1_780_000_010), 1000, 200), &a, Some(&se));
    m.observe(&f1.record(RecordKind::Close, at(1_780_000_020), 500, 50), &a, Some(&se));
    let mut f2 = Flow::new(2, "10.1.2.3:53", at(1_780_000_000));
    m.observe(&f2.record(RecordKind::Close, at(1_780_000_001), 40, 80), &b, Some(&scoped(Scope::Private)));
    let mut f3 = Flow::new(3, "1.128.0.1:443", at(1_780_000_000));
    m.observe(&f3.record(RecordKind::Close, at(1_780_000_001), 7, 0), &b, Some(&public(None, None, None)));
    let text = m.encode().unwrap();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="alpha",direction="tx",country="SE"}"#), 1500.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="alpha",direction="rx",country="SE"}"#), 250.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="beta",direction="tx",country="private"}"#), 40.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="beta",direction="tx",country="unknown"}"#), 7.0);
    assert_eq!(
        value(&text, r#"monitor_app_payload_bytes_total{app="beta",direction="rx",country="unknown"}"#),
        Some(0.0)
    );
    assert_eq!(
        v(r#"monitor_app_asn_payload_bytes_total{app="alpha",direction="tx",asn="AS29518",as_org="Bredband2 AB"}"#),
        1500.0
    );
    // Wire bytes are the records' `delta_wire` (payload + 40 header bytes per packet here).
    assert_eq!(v(r#"monitor_app_wire_bytes_total{app="alpha",direction="tx"}"#), 1580.0);
    assert_eq!(v(r#"monitor_app_wire_bytes_total{app="alpha",direction="rx"}"#), 330.0);
    assert_eq!(v(r#"monitor_app_wire_bytes_total{app="beta",direction="tx"}"#), 127.0);
    assert_eq!(v(r#"monitor_app_wire_bytes_total{app="beta",direction="rx"}"#), 120.0);
    // One flow each: the second record of f1 is not a new flow.
    assert_eq!(v(r#"monitor_app_flows_total{app="alpha",protocol="tcp"}"#), 1.0);
    assert_eq!(v(r#"monitor_app_flows_total{app="beta",protocol="tcp"}"#), 2.0);
    assert!(text.contains("monitor_process_start_time_seconds 1.7e9") || text.contains("1700000000"), "{text}");
    assert!(!text.contains("10.1.2.3") && !text.contains("89.160"), "no addresses in labels");
}

#[test]
fn apps_and_asns_beyond_the_top_n_fold_into_other_and_are_counted() {
    let m = Metrics::new(&config(2, 1), 0.0);
    let se = public(Some("SE"), Some(29518), Some("Bredband2 AB"));
    let au = public(Some("AU"), Some(1221), Some("Telstra"));
    for (i, name) in ["a1", "a2", "a3", "a4"].into_iter().enumerate() {
        let mut f = Flow::new(i as u64, "89.160.20.112:443", at(1_780_000_000));
        let dest = if i % 2 == 0 { &se } else { &au };
        m.observe(&f.record(RecordKind::Close, at(1_780_000_001), 100, 0), &app(name), Some(dest));
    }
    let text = m.encode().unwrap();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="a1",direction="tx",country="SE"}"#), 100.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="a2",direction="tx",country="AU"}"#), 100.0);
    // a3 (SE) and a4 (AU) are beyond the top 2; countries stay exact.
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="other",direction="tx",country="SE"}"#), 100.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="other",direction="tx",country="AU"}"#), 100.0);
    assert_eq!(v(r#"monitor_metrics_folded_total{kind="app"}"#), 2.0);
    // One ASN with its own series (the first seen); the other folds.
    assert_eq!(v(r#"monitor_app_asn_payload_bytes_total{app="a2",direction="tx",asn="other",as_org="other"}"#), 100.0);
    assert_eq!(v(r#"monitor_metrics_folded_total{kind="asn"}"#), 2.0);
}

/// An app called `other` is not the bucket of the apps beyond the top N: its series is
/// `other (named)` (they were one series; found by an adversarial pass).
#[test]
fn an_app_called_other_is_not_the_folded_bucket() {
    let m = Metrics::new(&config(2, 1), 0.0);
    let se = public(Some("SE"), Some(29518), Some("Bredband2 AB"));
    for (i, name) in ["other", "a2", "a3"].into_iter().enumerate() {
        let mut f = Flow::new(i as u64, "89.160.20.112:443", at(1_780_000_000));
        m.observe(&f.record(RecordKind::Close, at(1_780_000_001), 100 + i as u64, 0), &app(name), Some(&se));
    }
    let text = m.encode().unwrap();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="other (named)",direction="tx",country="SE"}"#), 100.0);
    assert_eq!(v(r#"monitor_app_payload_bytes_total{app="other",direction="tx",country="SE"}"#), 102.0, "a3 alone");
}

#[test]
fn health_series_follow_cumulative_statistics_and_flushes() {
    let m = Metrics::new(&config(10, 10), 0.0);
    let mut s = Stats::default();
    s.kernel.events_submitted = 100;
    s.kernel.events_lost = 3;
    s.tracker.open_flows = 7;
    m.stats(&s);
    s.kernel.events_submitted = 250;
    s.tracker.open_flows = 2;
    m.stats(&s);
    m.flush(Duration::from_millis(3), true);
    m.flush(Duration::ZERO, false);
    m.queue_depth(12);
    let text = m.encode().unwrap();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("{s} missing in\n{text}"));
    assert_eq!(v("monitor_events_submitted_total"), 250.0);
    assert_eq!(v("monitor_events_lost_total"), 3.0);
    assert_eq!(v("monitor_open_flows"), 2.0);
    assert_eq!(v("monitor_journal_flush_failures_total"), 1.0);
    assert_eq!(v("monitor_journal_flush_duration_seconds_count"), 1.0);
    assert_eq!(v("monitor_sink_queue_depth"), 12.0);
}

/// `promtool check metrics` (Debian's prometheus package) accepts a real exposition.
#[test]
fn promtool_accepts_the_exposition() {
    let m = Metrics::new(&config(10, 10), 1_700_000_000.5);
    let mut f = Flow::new(1, "89.160.20.112:443", at(1_780_000_000));
    let hostile = app("we\"ird\\name\nx");
    m.observe(
        &f.record(RecordKind::Close, at(1_780_000_001), 10, 20),
        &hostile,
        Some(&public(Some("SE"), Some(1), Some("Org \"Q\""))),
    );
    let db = crate::enrich::DbInfo {
        role: "country".into(),
        path: "/x.mmdb".into(),
        db: crate::enrich::DbRef { database_type: "country ipvAll".into(), build_epoch: 1_780_000_000 },
        age_days: 0,
    };
    m.databases(&[db], 1_780_086_400);
    m.flush(Duration::from_millis(2), true);
    let text = m.encode().unwrap();
    assert_eq!(
        value(&text, r#"monitor_database_age_seconds{role="country",database_type="country ipvAll"}"#),
        Some(86_400.0)
    );
    let mut child = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            assert!(std::env::var_os("MONITOR_REQUIRE_ROOT_TESTS").is_none(), "promtool: {e}");
            eprintln!("skipping promtool_accepts_the_exposition: promtool: {e} (run `cargo xtask setup`)");
            return;
        }
    };
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // promtool reads the classic text format, where a counter's HELP names `x_total`; OpenMetrics
    // names the family `x` (as Prometheus itself reads it when scraping). Those findings, and only
    // those, are expected; anything else (a parse error, another lint) fails.
    let unexpected: Vec<&str> = said
        .lines()
        .filter(|l| {
            let family = l.strip_suffix("_total no help text");
            !family.is_some_and(|f| {
                text.contains(&format!("# HELP {f} ")) && text.contains(&format!("# TYPE {f} counter"))
            })
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(unexpected.is_empty(), "promtool findings:\n{said}\n{text}");
    assert!(said.contains("monitor_app_payload_bytes_total no help text"), "promtool parsed the series: {said}");
}
