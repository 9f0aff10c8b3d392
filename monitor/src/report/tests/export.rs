//! Weekly exports: written once, atomically, and listed until done.

use std::{fs, os::unix::fs::PermissionsExt};

use super::{DAY, NY, W, fixture_journal, ny};
use crate::{
    journal::{JournalReader, tests::fixtures::at},
    report::{EXPORT_GRACE, Format, Period, Report, ReportQuery, export_week, pending_exports},
};

#[test]
fn export_week_writes_each_format_once() {
    let dir = crate::journal::tests::tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let out = dir.path().join("reports");
    let formats = [Format::Json, Format::Markdown, Format::Json];
    let written = export_week(&reader, "2026-W47", NY, &out, &formats).expect("export");
    assert_eq!(written, vec![out.join("2026-W47.json"), out.join("2026-W47.md")]);
    for path in &written {
        assert_eq!(fs::metadata(path).expect("stat").permissions().mode() & 0o777, 0o600);
    }
    let mut expected = Vec::new();
    let report =
        Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"))).expect("build");
    report.render(Format::Json, &mut expected).expect("render");
    assert_eq!(fs::read(out.join("2026-W47.json")).expect("read"), expected, "the export is the report");
    let names: Vec<String> =
        fs::read_dir(&out).expect("ls").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");

    // A restarted daemon asking again writes nothing and leaves the files alone.
    fs::write(out.join("2026-W47.md"), b"edited by hand").expect("write");
    let again = export_week(&reader, "2026-W47", NY, &out, &[Format::Json, Format::Markdown]).expect("export again");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(fs::read(out.join("2026-W47.md")).expect("read"), b"edited by hand");
    let row = reader.export("2026-W47", NY, "json").expect("query").expect("recorded");
    assert_eq!(row.path, out.join("2026-W47.json"));
    // A format added later is written on its own.
    let csv = export_week(&reader, "2026-W47", NY, &out, &[Format::Json, Format::Csv]).expect("export csv");
    assert_eq!(csv, vec![out.join("2026-W47.csv")]);
}

#[test]
fn pending_exports_lists_complete_unexported_weeks() {
    let dir = crate::journal::tests::tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let formats = [Format::Json, Format::Markdown];
    let end_of_w47 = W + 7 * DAY;
    let grace = EXPORT_GRACE.as_secs();
    // Just after W47 ends, inside the grace period: only W46 is complete.
    let early = pending_exports(&reader, at(end_of_w47 + grace - 1), NY, &formats).expect("pending");
    assert_eq!(early, vec!["2026-W46".to_string()]);
    let later = pending_exports(&reader, at(end_of_w47 + grace), NY, &formats).expect("pending");
    assert_eq!(later, vec!["2026-W46".to_string(), "2026-W47".to_string()]);
    export_week(&reader, "2026-W46", NY, &dir.path().join("out"), &formats).expect("export");
    let after = pending_exports(&reader, at(end_of_w47 + 30 * DAY), NY, &formats).expect("pending");
    assert_eq!(after, vec!["2026-W47".to_string(), "2026-W48".to_string()], "W48 holds the 999-byte record");
    assert!(
        pending_exports(&reader, at(end_of_w47 + 30 * DAY), NY, &[]).expect("pending").is_empty(),
        "no formats, nothing to do"
    );
}
