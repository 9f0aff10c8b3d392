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

/// Traffic of processes gone before the monitor read them (named from the kernel's 15-character
/// name, executable unknown) is said in the completeness notes, naming those apps only; an
/// `--app` report names only its app (two programs showed as two apps with nothing to say why:
/// found by an adversarial pass).
#[test]
fn apps_named_from_the_kernel_record_are_said_in_the_notes() {
    use std::sync::Arc;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(15169), Some("Google LLC"));
    let gone = |name: &str| {
        let mut app = (*fixtures::app(name)).clone();
        (app.exe, app.cmdline, app.source) = (None, None, crate::identity::AppSource::Kernel);
        Arc::new(app)
    };
    for (cookie, app) in [(1, fixtures::app("curl")), (2, gone("long-program-na")), (3, gone("python3"))] {
        let mut f = Flow::new(cookie, "192.0.2.1:443", at(W + 3600));
        w.append(&f.record(Close, at(W + 3600), 100, 200), &app, Some(&us));
    }
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    let week = || ReportQuery::new(Period::iso_week("2026-W47", &super::ny()).expect("week"));
    let notes = |query: &ReportQuery| Report::build(&reader, query).expect("build").completeness.notes;
    let all = notes(&week());
    let note =
        all.iter().find(|n| n.contains("exited before the monitor read them")).unwrap_or_else(|| panic!("{all:#?}"));
    assert!(note.starts_with("some traffic of long-program-na, python3 is charged"), "{note}");
    let mut curl = week();
    curl.app = Some("curl".into());
    assert!(!notes(&curl).iter().any(|n| n.contains("exited before")), "curl was read from /proc");
    let mut python = week();
    python.app = Some("python3".into());
    assert!(notes(&python).iter().any(|n| n.starts_with("some traffic of python3 is charged")));
}
