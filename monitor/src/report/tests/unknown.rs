//! Flows charged to nobody: a clear app name in every format, never an empty `## ` section.

use super::W;
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
};

#[test]
fn an_app_with_an_empty_name_is_reported_as_unknown() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    // An empty name, as journals written before unattributed flows were named `unknown` hold.
    let mut f = Flow::new(1, "192.0.2.1:443", at(W + 3600));
    w.append(&f.record(Close, at(W + 3600), 111, 222), &fixtures::app(""), Some(&us));
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let report = Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W47", &super::ny()).expect("week")))
        .expect("build");
    assert_eq!(report.apps.iter().map(|a| a.app.as_str()).collect::<Vec<_>>(), ["unknown"]);
    let mut md = Vec::new();
    report.render(Format::Markdown, &mut md).expect("render");
    let md = String::from_utf8(md).expect("utf-8");
    assert!(md.contains("unknown"), "{md}");
    assert!(!md.lines().any(|l| l.trim_end() == "##" || l.trim_end() == "###"), "empty heading:\n{md}");
}
