//! Hostile names through every report format (issue 9, "Hostile names in every output"): app
//! names made of terminal control sequences, Markdown/HTML and CSV formulas.

use std::path::{Path, PathBuf};

use comrak::{Arena, Options, nodes::NodeValue, parse_document};

use super::W;
use crate::{
    escape,
    journal::{
        JournalReader,
        tests::{
            fixtures::{self, Flow, at},
            tempdir, writer_in,
        },
    },
    report::{Format, Period, Report, ReportQuery},
    tracker::record::RecordKind::Close,
};

/// An OSC title sequence, a bell, a table pipe, a newline with a heading, HTML, a javascript:
/// link and a bidi override.
const EVIL: &str =
    "\x1b]0;pwned\x07evil|app\n## injected <img src=x onerror=alert(1)> [x](javascript:alert(1)) \u{202e}fdp.exe";
/// A name that a spreadsheet would run (a process `comm` can be anything).
const FORMULA: &str = "=HYPERLINK(\"x\")";
/// An organisation name from a database, with HTML and a pipe.
const ORG: &str = "Evil|Org <b>bold</b>";

fn hostile_journal(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let dest = fixtures::public(Some("US"), Some(64_500), Some(ORG));
    let mut evil = Flow::new(1, "203.0.113.10:443", at(W + 3600));
    w.append(&evil.record(Close, at(W + 3600), 1000, 2000), &fixtures::app(EVIL), Some(&dest));
    let mut formula = Flow::new(2, "203.0.113.11:443", at(W + 7200));
    w.append(&formula.record(Close, at(W + 7200), 500, 0), &fixtures::app(FORMULA), Some(&dest));
    w.flush().expect("flush");
    w.path().to_path_buf()
}

fn render(reader: &JournalReader, app: Option<&str>, format: Format) -> String {
    let mut q = ReportQuery::new(Period::iso_week("2026-W47", &super::ny()).expect("week"));
    q.app = app.map(str::to_string);
    let mut out = Vec::new();
    Report::build(reader, &q).expect("build").render(format, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

/// No raw control, C1 or bidi character; `\n` only as line ends.
pub(super) fn assert_no_raw_controls(out: &str) {
    let bad: Vec<char> = out.chars().filter(|c| *c != '\n' && escape::is_invisible(*c)).collect();
    assert!(bad.is_empty(), "raw {bad:?} in\n{out}");
}

#[test]
fn table_report_shows_hostile_names_escaped_on_one_line() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_journal(dir.path())).expect("reader");
    for app in [None, Some(EVIL)] {
        let out = render(&reader, app, Format::Table);
        assert_no_raw_controls(&out);
        assert!(out.contains(&escape::terminal(EVIL)), "{out}");
        assert!(out.contains("\\x1b]0;pwned\\x07evil|app\\n## injected"), "{out}");
        assert!(!out.lines().any(|l| l.starts_with("## injected")), "{out}");
    }
}

fn gfm() -> Options<'static> {
    let mut o = Options::default();
    o.extension.table = true;
    o.extension.autolink = true;
    o.extension.strikethrough = true;
    o
}

fn text_of<'a>(node: &'a comrak::nodes::AstNode<'a>) -> String {
    node.descendants()
        .filter_map(|n| match &n.data().value {
            NodeValue::Text(t) => Some(t.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn markdown_report_forms_no_tag_link_line_or_cell_from_hostile_names() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_journal(dir.path())).expect("reader");
    let evil = escape::terminal(EVIL);
    for app in [None, Some(EVIL)] {
        let md = render(&reader, app, Format::Markdown);
        assert_no_raw_controls(&md);
        assert!(!md.lines().any(|l| l.starts_with("## injected")), "{md}");
        let arena = Arena::new();
        let doc = parse_document(&arena, &md, &gfm());
        for n in doc.descendants() {
            let value = &n.data().value;
            let formed = matches!(
                value,
                NodeValue::HtmlInline(_) | NodeValue::HtmlBlock(_) | NodeValue::Link(_) | NodeValue::Image(_)
            );
            assert!(!formed, "{value:?} formed in\n{md}");
        }
        let headings: Vec<String> =
            doc.descendants().filter(|n| matches!(n.data().value, NodeValue::Heading(_))).map(|n| text_of(n)).collect();
        assert!(headings.contains(&format!("App {evil}")), "{headings:?}");
        assert!(!headings.iter().any(|h| h.starts_with("injected")), "{headings:?}");
        // Every table keeps its column count; the names are single cells, rendered as escaped.
        let mut cells = Vec::new();
        for table in doc.descendants().filter(|n| matches!(n.data().value, NodeValue::Table(_))) {
            let NodeValue::Table(t) = &table.data().value else { unreachable!() };
            let columns = t.num_columns;
            for row in table.children() {
                let row_cells: Vec<String> = row.children().map(|c| text_of(c)).collect();
                assert_eq!(row_cells.len(), columns, "{row_cells:?}");
                cells.extend(row_cells);
            }
        }
        assert!(cells.contains(&evil), "{cells:?}");
        assert!(cells.contains(&ORG.to_string()), "{cells:?}");
        if app.is_none() {
            assert!(cells.contains(&FORMULA.to_string()), "{cells:?}");
        } else {
            let intro = md.lines().find(|l| l.starts_with("Period: ")).expect("intro");
            assert!(intro.contains("Only app "), "{intro}");
        }
    }
}

#[test]
fn csv_report_neutralises_formulas_and_keeps_comments_one_line() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_journal(dir.path())).expect("reader");
    let evil = escape::terminal(EVIL);
    let out = render(&reader, None, Format::Csv);
    assert_no_raw_controls(&out);
    let mut r = csv::ReaderBuilder::new().comment(Some(b'#')).from_reader(out.as_bytes());
    let mut apps = Vec::new();
    for record in r.records() {
        let record = record.expect("record");
        assert_eq!(record.len(), 19, "{record:?}");
        for field in &record {
            assert!(!field.starts_with(['=', '+', '-', '@', '\t', '\r']), "formula cell {field:?}");
        }
        apps.push(record[1].to_string());
        if &record[0] == "asn" {
            assert_eq!(&record[6], ORG, "as_org");
        }
    }
    assert!(apps.contains(&evil), "{apps:?}");
    assert!(apps.contains(&format!("'{FORMULA}")), "{apps:?}");

    let filtered = render(&reader, Some(EVIL), Format::Csv);
    assert_no_raw_controls(&filtered);
    let comments: Vec<&str> = filtered.lines().take_while(|l| l.starts_with('#')).collect();
    assert!(comments.contains(&format!("# app_filter: {evil}").as_str()), "{comments:?}");
    assert!(!filtered.lines().any(|l| l.starts_with("## injected")), "{filtered}");
    let header = filtered.lines().position(|l| l.starts_with("section,")).expect("header");
    assert_eq!(header, comments.len(), "every line before the header is a comment");

    // The audit's filter: commas and quotes that, in a comment line a spreadsheet reads as a row,
    // made a HYPERLINK cell and swallowed the lines after it. Read without comment support, for
    // both separators: no cell starts a formula, and every comment line stays one row.
    let audit = r##"x,=HYPERLINK("http://evil","c"),"y"##;
    let csv_text = render(&reader, Some(audit), Format::Csv);
    let comment_lines = csv_text.lines().take_while(|l| l.starts_with(['#', '"'])).count();
    assert!(csv_text.lines().any(|l| l.starts_with("\"# app_filter: x,=HYPERLINK(")), "{csv_text}");
    for separator in [b',', b';'] {
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(separator)
            .from_reader(csv_text.as_bytes());
        let records: Vec<csv::StringRecord> = r.records().collect::<Result<_, _>>().expect("parses");
        assert_eq!(records.len(), csv_text.lines().count(), "one row per line: {csv_text}");
        for record in records.iter().take(comment_lines) {
            assert!(record[0].starts_with("# "), "{record:?}");
            for cell in record {
                assert!(!cell.trim_start().starts_with(['=', '+', '-', '@']), "formula cell {cell:?} in {record:?}");
            }
        }
    }
}

#[test]
fn json_report_keeps_names_exact_with_every_control_escaped() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_journal(dir.path())).expect("reader");
    for app in [None, Some(EVIL)] {
        let out = render(&reader, app, Format::Json);
        assert_no_raw_controls(&out);
        assert!(out.contains(r"\u001b]0;pwned\u0007evil|app\n## injected"), "{out}");
        assert!(out.contains(r"\u202efdp.exe"), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        let apps = v["apps"].as_array().expect("apps");
        let names: Vec<&str> = apps.iter().map(|a| a["app"].as_str().expect("app")).collect();
        assert!(names.contains(&EVIL), "names are exact in JSON: {names:?}");
        if app.is_some() {
            assert_eq!(v["app_filter"], EVIL);
        }
    }
}

/// What a tampered journal can hold in an address or protocol column: a newline, an SGR
/// sequence, HTML, a table pipe, Markdown emphasis and a link, a leading `=` and a bidi override.
const BAD_FIELD: &str = "h\n\x1b[31m<i>|*[l](x)=\u{202e}";

/// The hostile journal with [`BAD_FIELD`] as every remote address and protocol, in the
/// connection records and in the weekly endpoint rollups (the top-endpoints table reads both).
fn hostile_endpoint_journal(dir: &Path) -> PathBuf {
    let path = hostile_journal(dir);
    let conn = rusqlite::Connection::open(&path).expect("raw");
    for table in ["connections", "endpoint_week"] {
        conn.execute(&format!("UPDATE {table} SET remote_ip = ?1, protocol = ?1"), [BAD_FIELD]).expect("tamper");
    }
    path
}

#[test]
fn table_and_markdown_reports_escape_hostile_endpoint_addresses_and_protocols() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_endpoint_journal(dir.path())).expect("reader");
    let table = render(&reader, None, Format::Table);
    assert_no_raw_controls(&table);
    let bad = escape::terminal(BAD_FIELD);
    assert!(table.contains(&bad), "{table}");
    assert!(!table.lines().any(|l| l.contains("<i>|*[l](x)=") && !l.contains(&bad)), "a split row:\n{table}");

    let md = render(&reader, None, Format::Markdown);
    let cells = markdown_cells(&md);
    assert!(cells.contains(&bad), "protocol cell: {cells:?}");
    assert!(cells.iter().any(|c| c.starts_with(&bad) && c.ends_with(":443")), "endpoint cell: {cells:?}");
}

/// The payload sources and database roles of a tampered journal are escaped too.
#[test]
fn table_and_markdown_reports_escape_hostile_payload_sources_and_database_roles() {
    let dir = tempdir();
    let path = hostile_journal(dir.path());
    let conn = rusqlite::Connection::open(&path).expect("raw");
    for table in ["residency", "residency_week"] {
        conn.execute(&format!("UPDATE {table} SET payload_source = ?1"), [BAD_FIELD]).expect("tamper");
    }
    conn.execute("UPDATE databases SET role = ?1", [BAD_FIELD]).expect("tamper");
    drop(conn);
    let reader = JournalReader::open(&path).expect("reader");
    let table = render(&reader, None, Format::Table);
    assert_no_raw_controls(&table);
    assert!(table.contains(&escape::terminal(BAD_FIELD)), "{table}");
    let md = render(&reader, None, Format::Markdown);
    markdown_cells(&md);
}

/// The text of every table cell of `md`, after checking that `md` has no raw control character,
/// that every table row keeps its column count and that no tag, link or emphasis was formed.
pub(super) fn markdown_cells(md: &str) -> Vec<String> {
    assert_no_raw_controls(md);
    let arena = Arena::new();
    let doc = parse_document(&arena, md, &gfm());
    for n in doc.descendants() {
        let value = &n.data().value;
        let formed = matches!(
            value,
            NodeValue::HtmlInline(_)
                | NodeValue::HtmlBlock(_)
                | NodeValue::Link(_)
                | NodeValue::Image(_)
                | NodeValue::Emph
                | NodeValue::Strong
        );
        assert!(!formed, "{value:?} formed in\n{md}");
    }
    let mut cells = Vec::new();
    for table in doc.descendants().filter(|n| matches!(n.data().value, NodeValue::Table(_))) {
        let NodeValue::Table(t) = &table.data().value else { unreachable!() };
        for row in table.children() {
            let row_cells: Vec<String> = row.children().map(|c| text_of(c)).collect();
            assert_eq!(row_cells.len(), t.num_columns, "{row_cells:?}");
            cells.extend(row_cells);
        }
    }
    cells
}

/// Claim verdicts are in every format, as README says (an adversarial pass: table, Markdown and
/// CSV left them out), with the claim's and the apps' names escaped as every foreign text.
#[test]
fn claim_verdicts_are_in_table_markdown_and_csv() {
    let dir = tempdir();
    let reader = JournalReader::open(&hostile_journal(dir.path())).expect("reader");
    let q = ReportQuery::new(Period::iso_week("2026-W47", &super::ny()).expect("week"));
    let mut report = Report::build(&reader, &q).expect("build");
    report.claims = vec![crate::report::model::ClaimSummary {
        claim: format!("us-only {EVIL}"),
        apps: vec![EVIL.into(), FORMULA.into(), "grp-a,evil".into()],
        verdict: "fail".into(),
        reasons: vec![format!("1,000 B to CN by {EVIL}")],
        total: 3_500,
        satisfying: 2_500,
        violating: 1_000,
        unknown: 0,
    }];
    for format in [Format::Table, Format::Markdown, Format::Csv] {
        let mut out = Vec::new();
        report.render(format, &mut out).expect("render");
        let out = String::from_utf8(out).expect("utf-8");
        assert_no_raw_controls(&out);
        assert!(out.contains("FAIL"), "{format:?}: {out}");
        assert!(out.contains("us-only"), "{format:?}: {out}");
        assert!(out.contains("1,000 B to CN by"), "{format:?}: {out}");
        assert!(!out.lines().any(|l| l.starts_with("## injected")), "{format:?}: {out}");
        // An app name with a comma stays one name of the list.
        assert!(out.contains("\"grp-a,evil\""), "{format:?}: {out}");
    }
}
