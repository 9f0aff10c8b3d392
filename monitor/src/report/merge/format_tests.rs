//! A fleet report in every format: the per-host figures are on the page and equal the JSON's,
//! hostile host labels and app names are escaped, and a single machine's JSON reads back to the
//! same bytes.

use serde_json::Value;

use super::{
    merge,
    tests::{export, inputs},
};
use crate::{
    escape,
    report::{Format, Report, fmt::bytes},
};

fn render(r: &Report, format: Format) -> String {
    let mut out = Vec::new();
    r.render(format, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn fleet() -> Report {
    Report::from_json(merge(&inputs()).unwrap()).unwrap()
}

/// CSV records of `section`, as (app, key, payload_tx, payload_rx, wire_tx, flows).
fn csv_rows(csv_text: &str, section: &str) -> Vec<(String, String, u64, u64, u64, u64)> {
    let mut r = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(csv_text.as_bytes());
    let n = |s: &str| s.parse::<u64>().unwrap();
    r.records()
        .map(Result::unwrap)
        .filter(|rec| &rec[0] == section)
        .map(|rec| (rec[1].to_owned(), rec[2].to_owned(), n(&rec[11]), n(&rec[12]), n(&rec[14]), n(&rec[16])))
        .collect()
}

#[test]
fn a_single_machines_json_reads_back_to_the_same_bytes() {
    let one =
        export(&[("browser", "203.0.113.10:443", "US", (1000, 200)), ("sync", "198.51.100.1:443", "DE", (30, 40))]);
    let text = serde_json::to_string_pretty(&one).unwrap();
    let report = Report::from_json(one).unwrap();
    assert!(report.hosts.is_none() && report.apps.iter().all(|a| a.by_host.is_empty()));
    let again: Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert_eq!(serde_json::to_string_pretty(&again).unwrap(), text);
    let mut other = serde_json::from_str::<Value>(&text).unwrap();
    other["schema"] = "monitor.report/2".into();
    let err = Report::from_json(other).unwrap_err();
    assert!(err.to_string().contains("schema `monitor.report/2`"), "{err}");
}

#[test]
fn merged_json_is_the_merge_and_csv_has_the_exact_sums_per_host() {
    let merged = merge(&inputs()).unwrap();
    let report = Report::from_json(merged.clone()).unwrap();
    let json: Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    for field in ["totals", "hosts", "period", "databases"] {
        assert_eq!(json[field], merged[field], "{field}");
    }
    for (a, b) in json["apps"].as_array().unwrap().iter().zip(merged["apps"].as_array().unwrap()) {
        for field in ["app", "traffic", "by_host", "flows", "by_country", "top_endpoints"] {
            assert_eq!(a[field], b[field], "{field} of {}", a["app"]);
        }
    }
    let csv_text = render(&report, Format::Csv);
    // Host totals: lab-01 browser 1000/200 + sync 30/40; lab-02 500/50 + 7/9; lab-03 3/4.
    // Wire = payload + 40 header bytes per packet (fixture), one packet each way per flow.
    let hosts = csv_rows(&csv_text, "host");
    assert_eq!(
        hosts,
        [
            (String::new(), "lab-01".into(), 1030, 240, 1030 + 80, 2),
            (String::new(), "lab-02".into(), 507, 59, 507 + 80, 2),
            (String::new(), "lab-03".into(), 3, 4, 3 + 40, 1),
        ]
    );
    let per_host = csv_rows(&csv_text, "app_host");
    assert_eq!(
        per_host,
        [
            ("browser".into(), "lab-01".into(), 1000, 200, 1040, 1),
            ("browser".into(), "lab-02".into(), 507, 59, 587, 2),
            ("sync".into(), "lab-01".into(), 30, 40, 70, 1),
            ("sync".into(), "lab-03".into(), 3, 4, 43, 1),
        ]
    );
    let apps = csv_rows(&csv_text, "app");
    assert_eq!(apps[0], ("browser".into(), "browser".into(), 1507, 259, 1507 + 120, 3));
    assert_eq!(apps[1], ("sync".into(), "sync".into(), 33, 44, 33 + 80, 2));
    // Timelines are summed per bucket: every flow of the fixture is on Monday 2026-11-16.
    let browser = &report.apps[0];
    assert_eq!((browser.timeline[0].label.as_str(), browser.timeline[0].payload_tx), ("2026-11-16", 1507));
    assert_eq!(browser.timeline.iter().map(|b| b.payload_rx).sum::<u64>(), 259);
    assert_eq!(browser.timeline.len(), 7);
    let us: Vec<_> = csv_rows(&csv_text, "country").into_iter().filter(|r| r.1 == "US").collect();
    assert_eq!((us[0].2, us[0].3), (1500, 250));
    // Every host row sums to the report's totals.
    let t = &report.totals;
    assert_eq!(hosts.iter().map(|h| h.2).sum::<u64>(), t.payload_tx);
    assert_eq!(hosts.iter().map(|h| h.3).sum::<u64>(), t.payload_rx);
}

#[test]
fn table_markdown_and_html_show_each_host_with_the_json_numbers() {
    let report = fleet();
    let lab01 = [bytes(1030), bytes(240), bytes(1110), bytes(320), "2".to_owned()];
    let table = render(&report, Format::Table);
    assert!(table.contains("Hosts\n-----"), "{table}");
    let line = table.lines().find(|l| l.contains("lab-01") && l.contains(&lab01[0])).expect("lab-01 line");
    for cell in &lab01 {
        assert!(line.contains(cell.as_str()), "{cell} in {line}");
    }
    assert!(table.contains("By host\n~~~~~~~"), "{table}");
    let md = render(&report, Format::Markdown);
    assert!(md.contains("## Hosts\n"), "{md}");
    assert!(md.contains(&format!("| lab-01 | {} |", lab01.join(" | "))), "{md}");
    assert!(
        md.contains(&format!("| lab-03 | {} | {} | {} | {} | 1 |", bytes(3), bytes(4), bytes(43), bytes(44))),
        "{md}"
    );
    assert!(md.contains("### By host\n"), "{md}");
    let html = render(&report, Format::Html);
    assert!(html.contains("<h2 id=\"hosts\">Hosts</h2>"), "hosts section");
    let cells: String = lab01.iter().map(|c| format!("<td class=\"n\">{c}</td>")).collect();
    assert!(html.contains(&format!("<tr><td>lab-01</td>{cells}</tr>")), "lab-01 row");
    assert_eq!(html.matches("<h3>By host</h3>").count(), 2, "one per app");
    // A single machine's report has none of it.
    let one = Report::from_json(inputs().remove(0).1).unwrap();
    assert!(!render(&one, Format::Table).contains("By host"));
    assert!(!render(&one, Format::Html).contains("id=\"hosts\""));
    assert!(!render(&one, Format::Csv).contains("\nhost,"));
}

/// A host label with a terminal sequence, a table pipe, a new Markdown line, HTML and a formula.
const HOST: &str = "=lab\x1b]0;x\x07|01\n## injected <b>x</b>";
/// An app name a spreadsheet would run, with a pipe and HTML.
const APP: &str = "@evil|app <u>";

#[test]
fn hostile_host_labels_and_app_names_are_escaped_in_every_format() {
    let inputs = vec![
        (HOST.to_owned(), export(&[(APP, "203.0.113.10:443", "US", (100, 10))])),
        ("lab-02".to_owned(), export(&[(APP, "203.0.113.10:443", "US", (5, 1))])),
    ];
    let report = Report::from_json(merge(&inputs).unwrap()).unwrap();
    let invisible = |out: &str| out.chars().any(|c| c != '\n' && escape::is_invisible(c));
    let table = render(&report, Format::Table);
    assert!(!invisible(&table) && table.contains(&escape::terminal(HOST)), "{table}");
    let md = render(&report, Format::Markdown);
    assert!(!invisible(&md), "{md}");
    assert!(!md.lines().any(|l| l.starts_with("## injected")), "{md}");
    assert!(!md.contains("<b>") && !md.contains("<u>"), "{md}");
    assert!(md.contains(&escape::markdown(HOST)) && md.contains(&escape::markdown(APP)), "{md}");
    let html = render(&report, Format::Html);
    assert!(!invisible(&html));
    assert!(!html.contains("<b>x</b>") && !html.contains("<u>"), "no tag from a name");
    assert!(html.contains("&lt;b&gt;x&lt;&#x2f;b&gt;") || html.contains("&lt;b&gt;x&lt;/b&gt;"), "escaped label");
    let csv_text = render(&report, Format::Csv);
    assert!(!invisible(&csv_text), "{csv_text}");
    assert!(!csv_text.lines().any(|l| l.starts_with("## injected")), "{csv_text}");
    let hosts = csv_rows(&csv_text, "host");
    assert_eq!(hosts[0].1, format!("'{}", escape::terminal(HOST)), "formula neutralised");
    assert_eq!((hosts[0].2, hosts[1].2), (100, 5));
    let per_host = csv_rows(&csv_text, "app_host");
    assert_eq!(per_host[0].0, format!("'{APP}"));
    // JSON keeps them exact.
    let json: Value = serde_json::from_str(&render(&report, Format::Json)).unwrap();
    assert_eq!(json["hosts"][0]["host"], HOST);
    assert_eq!(json["apps"][0]["by_host"][0]["host"], HOST);
}
