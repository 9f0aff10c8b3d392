//! Tests of the HTML page: every figure of the JSON report is on it, hostile names are escaped,
//! the busiest country is the darkest, and a big week stays small. The browser test is in
//! `browser.rs`.

mod browser;

use serde_json::Value;

use crate::{
    journal::{JournalReader, tests::tempdir},
    report::{
        Format, Period, Report, ReportQuery, Share, ShareKind, TimeBucket, Traffic,
        fmt::grouped,
        tests::{fixture_journal, ny},
    },
};

/// The fixture's 2026-W47 report.
pub(super) fn fixture_report() -> Report {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"))).expect("build")
}

pub(super) fn html(r: &Report) -> String {
    let mut out = Vec::new();
    r.render(Format::Html, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

/// Every number in a JSON value, with its path.
fn numbers(v: &Value, path: &str, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Number(_) => out.push((path.to_string(), v.clone())),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| numbers(x, &format!("{path}[{i}]"), out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| numbers(x, &format!("{path}.{k}"), out)),
        _ => {}
    }
}

#[test]
fn the_page_shows_every_figure_of_the_json_report() {
    let r = fixture_report();
    let mut json = Vec::new();
    r.render(Format::Json, &mut json).expect("json");
    let json: Value = serde_json::from_slice(&json).expect("valid json");
    let page = html(&r);
    let mut all = Vec::new();
    numbers(&json, "", &mut all);
    assert!(all.len() > 150, "the fixture has many figures: {}", all.len());
    for (path, n) in &all {
        let found = if let Some(i) = n.as_u64() {
            // Byte counts and counters grouped ("43,150,333"); epochs plain.
            page.contains(&format!(">{}", grouped(i)))
                || page.contains(&format!(" {}", grouped(i)))
                || page.contains(&format!(">{i}<"))
                || page.contains(&format!("AS{i}"))
                || page.contains(&format!(":{i}<"))
        } else if let Some(f) = n.as_f64() {
            page.contains(&format!("{f:.2} %")) || page.contains(&format!(">{f:.2}"))
        } else {
            false
        };
        assert!(found, "{path} = {n} is not on the page");
    }
    // Spot checks with context: the browser's upload, its share of the US, the lost events.
    assert!(
        page.contains("<tr><td>United States (US)<td>41,000,000<td>2,000,000<td>41,000,080<td>2,000,040"),
        "US row"
    );
    assert!(page.contains("<td>94.09<td>"), "US share");
    assert!(page.contains("<th>Kernel events lost</th><td class=\"n\">4</td>"), "lost events:\n{page}");
    assert!(page.contains("ByteDance Inc."));
    assert!(page.contains("IP geolocation by DB-IP (db-ip.com), CC BY 4.0."));
}

#[test]
fn a_week_without_traffic_renders_a_page_without_apps() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let r =
        Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W30", &ny()).expect("week"))).expect("build");
    assert!(r.apps.is_empty());
    let page = html(&r);
    assert!(page.contains("<p>No app traffic in this period.</p>"));
    assert!(!page.contains("<section class=\"app\""));
    assert!(page.contains("<h2 id=\"completeness\">") && page.contains("<h2 id=\"attribution\">"));
}

#[test]
fn a_day_long_range_has_an_hourly_timeline() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let zone = ny();
    let (since, until) = (zone.parse_time("2026-11-16").expect("since"), zone.parse_time("2026-11-17").expect("until"));
    let r =
        Report::build(&reader, &ReportQuery::new(Period::range(since, until, &zone).expect("range"))).expect("build");
    assert_eq!(r.timeline.unit, crate::report::TimelineUnit::Hour);
    let browser = r.apps.iter().find(|a| a.app == "browser").expect("browser");
    assert_eq!(browser.timeline.len(), 24);
    assert_eq!(browser.timeline[1].label, "2026-11-16T01:00");
    // 40,000,000 + 1,000,000 up at 01:00 and 01:01 local; 2,000,000 + 100,000 + 50,000 at 02:00.
    assert_eq!(browser.timeline[1].payload_tx, 41_000_000);
    assert_eq!(browser.timeline[2].payload_tx, 2_150_000);
    assert_eq!(browser.timeline.iter().map(|b| b.payload_tx).sum::<u64>(), browser.traffic.payload_tx);
    assert!(html(&r).contains("Timeline (per hour)"));
}

#[test]
fn the_timeline_has_a_bucket_per_day_adding_up_to_the_payload() {
    let r = fixture_report();
    let browser = r.apps.iter().find(|a| a.app == "browser").expect("browser");
    assert_eq!(browser.timeline.len(), 7);
    assert_eq!(browser.timeline[0].label, "2026-11-16");
    assert_eq!(browser.timeline.iter().map(|b| b.payload_tx).sum::<u64>(), browser.traffic.payload_tx);
    assert_eq!(browser.timeline.iter().map(|b| b.payload_rx).sum::<u64>(), browser.traffic.payload_rx);
    // 333 bytes to JP in the week's last minute: Sunday.
    assert_eq!(browser.timeline[6].payload_tx, 333);
    assert!(r.timeline.complete);
    let page = html(&r);
    assert!(page.contains("2026-11-22: 333 B up, 0 B down"), "Sunday's column has its exact title");
}

/// (country code, colour class of the default view) of every map region in `page`.
pub(super) fn regions(page: &str) -> Vec<(String, String)> {
    page.split("<g class=\"t")
        .skip(1)
        .map(|chunk| {
            let class = format!("t{}", chunk.split(' ').next().expect("class"));
            let code = chunk.split("<use href=\"#").nth(1).and_then(|t| t.split('"').next()).unwrap_or("(marker only)");
            (code.to_string(), class)
        })
        .collect()
}

/// The darkest colour class of the default view.
pub(super) fn darkest() -> String {
    format!("t{}", super::PALETTE.len() - 1)
}

#[test]
fn the_busiest_country_has_the_darkest_fill_and_small_ones_a_marker() {
    let mut r = fixture_report();
    // Singapore: invisible at this scale, so it needs a marker.
    let browser = &mut r.apps[0];
    browser.by_country.push(Share {
        kind: ShareKind::Country,
        key: "SG".into(),
        country: Some("SG".into()),
        asn: None,
        as_org: None,
        traffic: Traffic { payload_tx: 12_345, ..Traffic::default() },
        flows: 1,
        share_pct: 0.03,
        tx_share_pct: 0.03,
        rx_share_pct: 0.0,
    });
    let page = html(&r);
    // The class is drawn in the darkest colour of the palette.
    let rule = format!(".map .{},", darkest());
    let css = &page[page.find(&rule).expect("rule of the darkest class")..];
    assert!(css[..css.find('}').expect("rule end")].ends_with(&format!("{{fill:{}", super::PALETTE[5])));
    let first_app = &page[page.find("<section class=\"app\"").expect("app")..];
    let first_app = &first_app[..first_app.find("</section>").expect("end")];
    let regions = regions(first_app);
    assert_eq!(regions.len(), 4, "US, CN, JP, SG: {regions:?}");
    assert!(regions.iter().any(|(c, _)| c == "SG"), "Singapore's outline is drawn too (1:50m)");
    for (code, class) in &regions {
        assert_eq!(code == "US", *class == darkest(), "only the US (most bytes) is darkest: {regions:?}");
    }
    let sg = first_app.split("<g class=\"t").find(|g| g.contains("<title>Singapore:")).expect("SG drawn");
    assert!(sg.contains("<circle"), "Singapore has a marker: {sg}");
    assert!(sg.contains("<title>Singapore: 12,345 B</title>"), "{sg}");
    let us = first_app.split("<g class=\"t").find(|g| g.contains("<title>United States:")).expect("US drawn");
    assert!(us.contains("<use href=\"#US\"/>") && !us.contains("<circle"), "the US is big enough: {us}");
    assert!(first_app.contains("class=\"legend lt\""), "legend present");
    // sync sends to Germany only: its legend has the one class its value is drawn in.
    let sync = &page[page.rfind("<section class=\"app\"").expect("sync")..];
    let legend = &sync[sync.find("class=\"legend lt\"").expect("legend")..];
    let legend = &legend[..legend.find("</p>").expect("end")];
    assert_eq!(legend.matches("</i>≥").count(), 1, "{legend}");
    assert!(legend.contains(&format!("<i class=\"s{}\"></i>≥ 11.0 kB", super::PALETTE.len() - 1)), "{legend}");
}

const EVIL: &str = "<script>alert(\"x\")</script>\x1b]0;pwned\x07 ' \u{202e}";

/// The fixture report with hostile text in every kind of foreign string.
pub(super) fn hostile_report() -> Report {
    let mut r = fixture_report();
    r.app_filter = Some(EVIL.into());
    let app = &mut r.apps[0];
    app.app = EVIL.into();
    app.by_asn[0].as_org = Some(format!("Org {EVIL}"));
    app.by_country[0].key = "\"><svg onload=alert(1)>".into();
    app.top_endpoints[0].ip = "<img src=x onerror=alert(1)>".into();
    app.new_destinations.countries.push("<b>".into());
    r.completeness.notes.push(EVIL.into());
    r
}

#[test]
fn hostile_names_are_escaped_everywhere() {
    let page = html(&hostile_report());
    assert!(!page.contains("<script"), "no script element at all");
    assert!(!page.contains("<svg onload") && !page.contains("<img") && !page.contains("<b>"), "no injected element");
    assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt;"), "text escaped:\n{page}");
    assert!(page.contains("&quot;&gt;&lt;svg onload=alert(1)&gt;"), "attribute-breaking quote escaped");
    assert!(page.contains("&#x27;"), "apostrophe escaped");
    assert!(page.contains("\\x1b]0;pwned\\x07"), "controls made visible");
    assert!(page.contains("\\u{202e}"), "bidi override made visible");
    let bad: Vec<char> = page.chars().filter(|c| *c != '\n' && crate::escape::is_invisible(*c)).collect();
    assert!(bad.is_empty(), "raw invisible characters {bad:?}");
}

/// A week with `apps` apps, each exchanging data with `countries` countries over `networks`
/// networks, with ten endpoints and seven days each.
pub(super) fn big_report(apps: usize, countries: usize, networks: usize) -> Report {
    let mut r = fixture_report();
    let template = r.apps[0].clone();
    let codes: Vec<String> =
        crate::world::countries().expect("world").iter().take(countries).map(|c| c.alpha2.clone()).collect();
    r.apps = (0..apps)
        .map(|i| {
            let mut a = template.clone();
            a.app = format!("/usr/lib/app-{i}/bin/app-{i} --flag");
            let share = |kind, key: String, n: usize| Share {
                kind,
                country: (kind == ShareKind::Country).then(|| key.clone()),
                asn: (kind == ShareKind::Asn).then_some(64_500 + n as u32),
                as_org: (kind == ShareKind::Asn).then(|| format!("Example Networks {n} Ltd")),
                key,
                traffic: Traffic {
                    payload_tx: 1_000_003 * (n as u64 + 1),
                    payload_rx: 7_919_777 * (n as u64 + 1),
                    wire_tx: 1_040_007 * (n as u64 + 1),
                    wire_rx: 8_236_571 * (n as u64 + 1),
                    packets_tx: 1_733 * (n as u64 + 1),
                    packets_rx: 5_491 * (n as u64 + 1),
                },
                flows: n as u64 + 1,
                share_pct: 1.23,
                tx_share_pct: 1.23,
                rx_share_pct: 1.23,
            };
            a.by_country = codes.iter().enumerate().map(|(n, c)| share(ShareKind::Country, c.clone(), n)).collect();
            a.by_asn = (0..networks).map(|n| share(ShareKind::Asn, format!("AS{}", 64_500 + n), n)).collect();
            a.top_endpoints = (0..10).map(|_| template.top_endpoints[0].clone()).collect();
            a.timeline = (0..7)
                .map(|d| TimeBucket {
                    label: format!("2026-11-{}", 16 + d),
                    payload_tx: 1,
                    payload_rx: 2,
                    ..a.timeline[0].clone()
                })
                .collect();
            a
        })
        .collect();
    r
}

/// Issue 13: "a week with 50 apps and 100 countries stays under 2 MB". Every app sends to every
/// one of the 100 countries over 30 networks, with realistic (7–10 digit) byte counts.
#[test]
fn a_week_of_50_apps_and_100_countries_stays_under_2_mb() {
    let page = html(&big_report(50, 100, 30));
    eprintln!("html report, 50 apps × 100 countries × 30 networks: {} bytes", page.len());
    assert!(page.len() < 2_000_000, "{} bytes", page.len());
    assert_eq!(page.matches("<section class=\"app\"").count(), 50);
    assert_eq!(page.matches("<g class=\"t").count(), 50 * 100, "every country of every app on its map");
}

#[test]
fn the_default_weekly_export_writes_the_page_next_to_the_json() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let out = dir.path().join("reports");
    let formats = crate::report::ReportConfig::default().export_formats;
    let written = crate::report::export_week(
        &reader,
        "2026-W47",
        &crate::report::tests::ny(),
        &out,
        &formats,
        &Default::default(),
    )
    .expect("export");
    assert!(
        written.contains(&out.join("2026-W47.json")) && written.contains(&out.join("2026-W47.html")),
        "{written:?}"
    );
    assert_eq!(std::fs::read_to_string(out.join("2026-W47.html")).expect("page"), html(&fixture_report()));
}

/// The by-service section lists each host name with its bytes, countries, networks and name
/// sources, and the unnamed bytes last; hostile host names are escaped.
#[test]
fn services_section_lists_host_names_and_unnamed_bytes() {
    use crate::report::{
        AsnRef,
        services::{AppServices, Service, ServiceTraffic},
    };
    let mut r = fixture_report();
    let app = r.apps[0].app.clone();
    let svc = |name: &str, tx, rx| Service {
        name: name.into(),
        registrable_domain: Some("svc.test".into()),
        sources: vec!["dns".into(), "sni".into()],
        traffic: ServiceTraffic { payload_tx: tx, payload_rx: rx, flows: 3 },
        share_pct: 12.5,
        countries: vec!["US".into()],
        asns: vec![AsnRef { asn: 64_500, as_org: None }],
    };
    r.services = vec![AppServices {
        app,
        named: ServiceTraffic { payload_tx: 123_457, payload_rx: 9_877, flows: 4 },
        unnamed: ServiceTraffic { payload_tx: 4_321, payload_rx: 0, flows: 1 },
        unnamed_share_pct: 3.2,
        domains: Vec::new(),
        hostnames: vec![svc("api.svc.test", 123_456, 9_876), svc("<script>x.svc.test", 1, 1)],
    }];
    let page = html(&r);
    assert!(page.contains("api.svc.test") && page.contains("123,456") && page.contains("9,876"), "host and bytes");
    assert!(page.contains("(US; AS64500; name from dns, sni)"), "countries, networks and sources");
    assert!(page.contains("(unnamed)") && page.contains("4,321"), "unnamed bytes");
    assert!(!page.contains("<script>x") && page.contains("&lt;script&gt;x.svc.test"), "escaped");
}

/// Consensus and plausibility are drawn per app with their figures (the JSON report's).
#[test]
fn consensus_and_plausibility_sections_show_their_figures() {
    use crate::report::truth::{AnswerUse, AppConsensus, AppPlausibility, Disagreement, Implausible};
    let mut r = fixture_report();
    let answer = |label: &str, country: &str| AnswerUse {
        label: label.into(),
        country: Some(country.into()),
        database_type: "Test".into(),
        build_epoch: 1,
    };
    r.apps[0].consensus = Some(AppConsensus {
        databases: vec!["primary".into(), "registry".into()],
        public_bytes: 765_432,
        agree_bytes: 700_000,
        agree_share_pct: 91.45,
        partial_bytes: 0,
        disagree_bytes: 65_432,
        unchecked_bytes: 0,
        disagreements: vec![Disagreement {
            ip: "11.2.2.2".into(),
            payload_bytes: 65_432,
            answers: vec![answer("primary", "SG"), answer("registry", "US")],
        }],
    });
    r.apps[0].plausibility = Some(AppPlausibility {
        device_location: "US".into(),
        measured_bytes: 765_432,
        implausible_bytes: 54_321,
        implausible_share_pct: 7.1,
        implausible: vec![Implausible {
            ip: "11.3.3.2".into(),
            country: "SE".into(),
            payload_bytes: 54_321,
            min_rtt_us: 250,
            distance_km: 5_432.1,
            bound_km: 25.0,
            note: "anycast/CDN edge near the device",
        }],
    });
    let page = html(&r);
    assert!(page.contains("91.45 % of 765,432 B") && page.contains("65,432 B on answers they dispute"), "consensus");
    assert!(page.contains("primary: SG, registry: US"), "each database's answer");
    assert!(page.contains("54,321 B (7.10 %)") && page.contains("<td>0.250<td>5432<td>25.0"), "plausibility");
    assert!(page.contains("CDN edge near the device"), "the likely cause");
}
