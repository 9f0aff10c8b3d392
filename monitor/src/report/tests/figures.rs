//! Figures of the fixture report, rendering, determinism, week boundaries.

use serde_json::{Value, json};

use super::{fixture_journal, ny};
use crate::{
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{ATTRIBUTION, Format, Period, Report, ReportQuery},
    tracker::record::RecordKind::Close,
};

fn report(reader: &JournalReader, week: &str, app: Option<&str>) -> Report {
    let mut q = ReportQuery::new(Period::iso_week(week, &ny()).expect("week"));
    q.app = app.map(str::to_string);
    Report::build(reader, &q).expect("build")
}

fn json_of(r: &Report) -> Value {
    let mut out = Vec::new();
    r.render(Format::Json, &mut out).expect("render");
    serde_json::from_slice(&out).expect("valid json")
}

/// (key, payload_tx, payload_rx, share_pct) of a breakdown.
fn lines(v: &Value) -> Vec<(String, u64, u64, f64)> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().expect("key").to_string(),
                s["traffic"]["payload_tx"].as_u64().expect("tx"),
                s["traffic"]["payload_rx"].as_u64().expect("rx"),
                s["share_pct"].as_f64().expect("share"),
            )
        })
        .collect()
}

#[test]
fn json_report_has_exact_bytes_and_shares_per_app() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let v = json_of(&report(&reader, "2026-W47", None));
    assert_eq!(v["schema"], "monitor.report/1");
    assert_eq!(v["period"]["since"], "2026-11-16T05:00:00Z");
    assert_eq!(v["period"]["until_local"], "2026-11-23T00:00:00-05:00");
    assert_eq!(v["previous_period"]["label"], "2026-W46");
    assert_eq!(v["totals"]["payload_tx"], 43_150_333 + 5000);

    let browser = &v["apps"][0];
    assert_eq!(browser["app"], "browser");
    assert_eq!(
        browser["traffic"],
        json!({"payload_tx": 43_150_333, "payload_rx": 2_550_000, "wire_tx": 43_150_573, "wire_rx": 2_550_120,
               "packets_tx": 6, "packets_rx": 3})
    );
    assert_eq!((browser["flows"].as_u64(), browser["incomplete_flows"].as_u64()), (Some(5), Some(0)));
    assert_eq!(
        lines(&browser["by_country"]),
        vec![
            ("US".into(), 41_000_000, 2_000_000, 94.09),
            ("CN".into(), 2_000_000, 500_000, 5.47),
            ("unknown".into(), 100_000, 0, 0.22),
            ("private".into(), 50_000, 50_000, 0.22),
            ("JP".into(), 333, 0, 0.0),
        ]
    );
    assert_eq!(browser["by_country"][0]["tx_share_pct"], 95.02);
    assert_eq!(browser["by_country"][0]["rx_share_pct"], 78.43);
    assert_eq!(browser["by_country"][2]["kind"], "unknown");
    assert_eq!(browser["by_country"][3]["kind"], "scope", "private is a scope, not unknown");
    assert_eq!(
        lines(&browser["by_asn"]),
        vec![
            ("AS396986".into(), 41_000_000, 2_000_000, 94.09),
            ("AS4134".into(), 2_000_000, 500_000, 5.47),
            ("unknown".into(), 100_000, 0, 0.22),
            ("private".into(), 50_000, 50_000, 0.22),
            ("AS2497".into(), 333, 0, 0.0),
        ]
    );
    assert_eq!(browser["by_asn"][0]["as_org"], "ByteDance Inc.");
    assert_eq!(
        browser["unknown"],
        json!({"country_bytes": 100_000, "country_share_pct": 0.22, "asn_bytes": 100_000, "asn_share_pct": 0.22})
    );

    let top = &browser["top_endpoints"];
    assert_eq!(top.as_array().map(Vec::len), Some(5));
    assert_eq!(browser["endpoints_total"], 5);
    assert_eq!(
        (top[0]["ip"].as_str(), top[0]["port"].as_u64(), top[0]["payload_tx"].as_u64(), top[0]["flows"].as_u64()),
        (Some("203.0.113.10"), Some(443), Some(41_000_000), Some(1))
    );
    assert_eq!(
        (top[0]["country"].as_str(), top[0]["asn"].as_u64(), top[0]["new"].as_bool()),
        (Some("US"), Some(396_986), Some(false))
    );
    assert_eq!(top[1]["new"], true);

    let new = &browser["new_destinations"];
    assert_eq!(new["compared_with"], "2026-W46");
    assert_eq!(new["countries"], json!(["CN", "JP"]));
    assert_eq!(
        new["asns"],
        json!([{"asn": 2497, "as_org": "Internet Initiative Japan Inc."}, {"asn": 4134, "as_org": "Chinanet"}])
    );
    assert_eq!((new["endpoints"].as_u64(), new["endpoints_compared"].as_bool()), (Some(4), Some(true)));
    assert_eq!(
        browser["payload_sources"],
        json!([{"payload_source": "syscall", "payload_bytes": 45_700_333u64, "share_pct": 100.0}])
    );

    let sync = &v["apps"][1];
    assert_eq!((sync["app"].as_str(), sync["traffic"]["payload_rx"].as_u64()), (Some("sync"), Some(6000)));
    assert_eq!(sync["new_destinations"]["countries"], json!(["DE"]));

    let c = &v["completeness"];
    assert_eq!(
        (c["stats_rows"].as_u64(), c["events_submitted"].as_u64(), c["events_lost"].as_u64()),
        (Some(2), Some(3000), Some(4))
    );
    assert_eq!((c["unattributed_bytes"].as_u64(), c["attributed_wire_bytes"].as_u64()), (Some(4000), Some(45_711_773)));
    assert_eq!(c["unattributed_share_pct"], 0.01);
    assert!(c["notes"].as_array().expect("notes").iter().any(|n| n.as_str().is_some_and(|s| s.contains("4 lost"))));
    assert!(
        c["notes"].as_array().expect("notes").iter().any(|n| n.as_str().is_some_and(|s| s.starts_with("7 packets of"))),
        "{c}"
    );

    let dbs = v["databases"].as_array().expect("databases");
    assert_eq!(dbs.len(), 2);
    assert_eq!(
        (
            dbs[0]["role"].as_str(),
            dbs[0]["build_date"].as_str(),
            dbs[0]["age_days"].as_i64(),
            dbs[0]["payload_bytes"].as_u64()
        ),
        (Some("asn"), Some("2026-06-17"), Some(159), Some(45_511_333))
    );
    assert_eq!((dbs[1]["role"].as_str(), dbs[1]["age_days"].as_i64()), (Some("country"), Some(175)));
    assert_eq!(v["attribution"], json!({"text": ATTRIBUTION, "applies": true}));
}

#[test]
fn app_filter_keeps_one_app_and_says_stats_are_host_wide() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let v = json_of(&report(&reader, "2026-W47", Some("sync")));
    assert_eq!(v["apps"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["totals"]["payload_tx"], 5000);
    assert_eq!(v["completeness"]["attributed_wire_bytes"], 45_711_773, "host-wide denominator");
    let notes = v["completeness"]["notes"].as_array().expect("notes");
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|s| s.contains("host-wide: they are not filtered"))));
    assert!(!notes.iter().any(|n| n.as_str().is_some_and(|s| s.contains("no traffic of an app"))));
    // A name that matches no app (names are exact: `Sync` is not `sync`) says so.
    let v = json_of(&report(&reader, "2026-W47", Some("Sync")));
    assert_eq!((v["apps"].as_array().map(Vec::len), &v["totals"]["payload_tx"]), (Some(0), &serde_json::json!(0)));
    let notes = v["completeness"]["notes"].as_array().expect("notes");
    assert!(notes.iter().any(|n| n.as_str().is_some_and(|s| s.contains("no traffic of an app named \"Sync\""))), "{v}");
}

#[test]
fn every_format_renders_the_figures_deterministically() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let first = report(&reader, "2026-W47", None);
    let again = report(&reader, "2026-W47", None);
    for &format in Format::ALL {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        first.render(format, &mut a).expect("render");
        again.render(format, &mut b).expect("render");
        assert_eq!(a, b, "{format:?} output is reproducible");
        let text = String::from_utf8(a).expect("utf-8");
        assert!(text.contains("IP geolocation by DB-IP (db-ip.com), CC BY 4.0."), "{format:?} has the attribution");
        let expected =
            if format == Format::Csv || format == Format::Json { "43150333" } else { "43,150,333 B (43.2 MB)" };
        assert!(text.contains(expected), "{format:?} shows browser's upload:\n{text}");
        assert!(text.contains("ByteDance Inc."), "{format:?} names the organisation");
    }
    let mut csv = Vec::new();
    first.render(Format::Csv, &mut csv).expect("csv");
    let csv = String::from_utf8(csv).expect("utf-8");
    assert!(
        csv.contains(
            "\ncountry,browser,US,country,US,,,public,,,,41000000,2000000,43000000,41000080,2000040,1,94.09,\n"
        ),
        "{csv}"
    );
    assert!(csv.contains("\nasn,browser,unknown,unknown,,,,public,"), "{csv}");
    let mut md = Vec::new();
    first.render(Format::Markdown, &mut md).expect("markdown");
    let md = String::from_utf8(md).expect("utf-8");
    assert!(md.contains("| private (not public) | 50,000 B (50.0 kB) | 50,000 B (50.0 kB) | 0.22 % |"), "{md}");
    assert!(md.contains("- countries: CN, JP"), "{md}");
}

#[test]
fn a_week_with_a_dst_change_includes_its_extra_hour() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    // Sunday 2026-11-01 23:30 EST = 04:30 UTC on Monday: still 2026-W44 in New York.
    let mut inside = Flow::new(1, "192.0.2.1:443", at(1_793_593_800));
    w.append(&inside.record(Close, at(1_793_593_800), 111, 0), &app, Some(&us));
    // Sunday 2026-10-25 23:30 EDT = 03:30 UTC on Monday: 2026-W43.
    let mut before = Flow::new(2, "192.0.2.1:443", at(1_792_985_400));
    w.append(&before.record(Close, at(1_792_985_400), 222, 0), &app, Some(&us));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let v = json_of(&report(&reader, "2026-W44", None));
    assert_eq!(v["period"]["seconds"], 169 * 3600);
    assert_eq!(v["period"]["since_local"], "2026-10-26T00:00:00-04:00");
    assert_eq!(v["period"]["until_local"], "2026-11-02T00:00:00-05:00");
    assert_eq!(v["totals"]["payload_tx"], 111);
    assert_eq!(v["apps"][0]["new_destinations"]["countries"], json!([]), "US was seen in W43");
}

/// A range inside one residency interval (60 s here) counts the records inside it by their time,
/// and nothing else of the interval: no interval is cut, so nothing is left out.
#[test]
fn a_range_inside_an_interval_counts_its_records() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let notes_of = |since: i64, until: i64| {
        let period = Period::range(at(since), at(until), &ny()).expect("range");
        let v = json_of(&Report::build(&reader, &ReportQuery::new(period)).expect("build"));
        let notes: Vec<String> = v["completeness"]["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        (v["totals"]["payload_tx"].as_u64().expect("tx"), notes)
    };
    // The CN flow's record (2,000,000 / 500,000) is at W + 7200, in [W + 7200, W + 7260).
    for (since, until, tx) in [(7220, 7240, 0), (7200, 7240, 2_000_000), (7199, 7201, 2_000_000)] {
        let (counted, notes) = notes_of(super::W + since, super::W + until);
        assert_eq!(counted, tx, "[W + {since}, W + {until})");
        assert!(notes.iter().any(|n| n.contains("summed from the connection records")), "{notes:#?}");
        assert!(!notes.iter().any(|n| n.contains("residency interval starts")), "{notes:#?}");
    }
}

/// CSV endpoint keys: an IPv6 address in brackets before its port (`[2001:db8::1]:443`), never
/// `2001:db8::1:443`, which reads as another address.
#[test]
fn csv_keys_bracket_ipv6_endpoints() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let app = fixtures::app("browser");
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let t = super::W + 3600;
    let mut v6 = Flow::new(1, "[2001:db8::1]:443", at(t));
    w.append(&v6.record(Close, at(t), 100, 0), &app, Some(&us));
    let mut v4 = Flow::new(2, "192.0.2.1:443", at(t));
    w.append(&v4.record(Close, at(t), 50, 0), &app, Some(&us));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let mut out = Vec::new();
    report(&reader, "2026-W47", None).render(Format::Csv, &mut out).expect("render");
    let text = String::from_utf8(out).expect("utf-8");
    let keys: Vec<&str> =
        text.lines().filter(|l| l.starts_with("endpoint,")).filter_map(|l| l.split(',').nth(2)).collect();
    assert_eq!(keys, ["[2001:db8::1]:443", "192.0.2.1:443"], "{text}");
}

/// The monitor's own completeness notes hold no quote, so the CSV writes them as plain `#` lines
/// (a quote makes a comment one quoted cell, which a reader skipping `#` lines would not skip):
/// here a degraded daemon run's note.
#[test]
fn csv_own_notes_are_plain_comment_lines() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    w.record_degradations(&["no_counter_iterator".into(), "hybrid_cgroups".into()]).expect("degradations");
    let app = fixtures::app("browser");
    let mut f = Flow::new(1, "192.0.2.1:443", at(super::W + 60));
    w.append(&f.record(Close, at(super::W + 60), 100, 0), &app, None);
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let mut out = Vec::new();
    report(&reader, "2026-W47", None).render(Format::Csv, &mut out).expect("render");
    let text = String::from_utf8(out).expect("utf-8");
    let degraded: Vec<&str> = text.lines().filter(|l| l.contains("was degraded")).collect();
    assert_eq!(degraded.len(), 1, "{text}");
    assert!(degraded[0].starts_with("# ") && !degraded[0].contains('"'), "{text}");
}

/// Records the journal dropped (a full disk): a report over whole minutes reads the residency
/// rows, whose lost payload the note gives; one summed from the connection records says that it
/// lacks the dropped records' bytes (an adversarial pass: such a report was 23.8 MB short while
/// its note said "0 B of payload").
#[test]
fn a_report_from_records_says_it_lacks_the_dropped_records() {
    let dir = tempdir();
    let path = fixture_journal(dir.path());
    let conn = rusqlite::Connection::open(&path).expect("open");
    let (first, last) = ((super::W + 7000) * 1000, (super::W + 7300) * 1000);
    conn.execute(
        "INSERT INTO losses (time_ms, first_ms, last_ms, records, buckets, payload_bytes, wire_bytes)
         VALUES (?1, ?2, ?3, 40004, 0, 0, 0)",
        rusqlite::params![last, first, last],
    )
    .expect("loss row");
    drop(conn);
    let reader = JournalReader::open(&path).expect("reader");
    let notes_of = |since: i64, until: i64| {
        let period = Period::range(at(since), at(until), &ny()).expect("range");
        let v = json_of(&Report::build(&reader, &ReportQuery::new(period)).expect("build"));
        v["completeness"]["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    let lacks = |notes: &[String]| notes.iter().any(|n| n.contains("lack the bytes of the dropped records"));
    let records = notes_of(super::W + 7199, super::W + 7201);
    assert!(records.iter().any(|n| n.contains("dropped 40,004 connection records")), "{records:#?}");
    assert!(lacks(&records), "{records:#?}");
    let minutes = notes_of(super::W + 7140, super::W + 7260);
    assert!(minutes.iter().any(|n| n.contains("dropped 40,004 connection records")), "{minutes:#?}");
    assert!(!lacks(&minutes), "{minutes:#?}");
}

/// A database asked about an address it had no answer for is listed with none of those bytes:
/// its figure is the payload whose country or ASN it gave (an adversarial pass: every public byte
/// looked up was counted as answered).
#[test]
fn a_database_is_credited_only_with_the_bytes_it_answered() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let answered = fixtures::public(Some("SE"), Some(29_518), Some("Bredband2 AB"));
    // Asked, no answer: the enricher keeps the database it asked.
    let mut unknown_asn = fixtures::public(Some("GB"), None, None);
    unknown_asn.asn_db.clone_from(&answered.asn_db);
    let app = fixtures::app("curl");
    let mut a = Flow::new(1, "89.160.20.112:443", at(super::W + 3600));
    w.append(&a.record(Close, at(super::W + 3600), 1000, 0), &app, Some(&answered));
    let mut b = Flow::new(2, "81.2.69.142:443", at(super::W + 3700));
    w.append(&b.record(Close, at(super::W + 3700), 300, 0), &app, Some(&unknown_asn));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let v = json_of(&report(&reader, "2026-W47", None));
    let dbs = v["databases"].as_array().expect("databases");
    let bytes = |role: &str| dbs.iter().find(|d| d["role"] == role).and_then(|d| d["payload_bytes"].as_u64());
    assert_eq!((bytes("country"), bytes("asn")), (Some(1300), Some(1000)), "{dbs:#?}");
}

/// A report of a period that has not begun, or not ended, says so (an adversarial pass: a future
/// period read as a quiet one).
#[test]
fn a_period_not_over_yet_says_so() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let now = jiff::Timestamp::now();
    let notes = |since: jiff::Timestamp, until: jiff::Timestamp| {
        let q = ReportQuery::new(Period::range(since, until, &crate::journal::tests::utc()).expect("range"));
        json_of(&Report::build(&reader, &q).expect("build"))["completeness"]["notes"].to_string()
    };
    let day = jiff::SignedDuration::from_hours(24);
    assert!(notes(now + day, now + day * 2).contains("the period has not begun"));
    assert!(notes(now - day, now + day).contains("the period has not ended"));
    let past = notes(now - day * 2, now - day);
    assert!(!past.contains("has not begun") && !past.contains("has not ended"), "{past}");
}
