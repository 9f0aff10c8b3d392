//! Reports of periods on whole residency intervals (ISO weeks, whole-minute ranges) keep their
//! bytes: the fixture journal's reports against files committed beside this one. A change to
//! these files is a change of what an existing report says, and needs a reason.

use std::path::PathBuf;

use super::{W, fixture_journal, ny};
use crate::{
    journal::{
        JournalReader,
        tests::{fixtures::at, tempdir, utc},
    },
    report::{Format, Period, Report, ReportQuery},
};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/report/tests/golden").join(name)
}

fn rendered(reader: &JournalReader, period: Period, format: Format) -> String {
    let mut out = Vec::new();
    Report::build(reader, &ReportQuery::new(period)).expect("build").render(format, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn reports_of_whole_intervals_keep_their_bytes() {
    let dir = tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let week = || Period::iso_week("2026-W47", &ny()).expect("week");
    let cases = [
        // New York weeks read the fine rows (the fixture's rollups are kept in UTC).
        ("2026-W47-ny.json", week(), Format::Json),
        ("2026-W47-ny.csv", week(), Format::Csv),
        ("2026-W47-ny.md", week(), Format::Markdown),
        // A UTC week reads the rollups.
        ("2026-W47-utc.json", Period::iso_week("2026-W47", &utc()).expect("week"), Format::Json),
        // Whole minutes: the residency rows.
        ("minutes.json", Period::range(at(W + 3600), at(W + 7260), &ny()).expect("range"), Format::Json),
    ];
    for (name, period, format) in cases {
        if std::env::var_os("MONITOR_UPDATE_GOLDEN").is_some() {
            // After a deliberate change of a format: rewrite, then read the diff before committing
            // (the run fails below, so that a rewrite never passes for a check).
            std::fs::write(golden(name), rendered(&reader, period.clone(), format)).expect("write golden");
        }
        let expected = std::fs::read_to_string(golden(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(rendered(&reader, period, format), expected, "{name} changed");
    }
    assert!(
        std::env::var_os("MONITOR_UPDATE_GOLDEN").is_none(),
        "golden files rewritten: read their diff, then run again without MONITOR_UPDATE_GOLDEN"
    );
}
