//! Weekly exports: written once, atomically, and listed until done.

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use super::{DAY, NY, W, close, fixture_journal, ny};
use crate::{
    journal::{
        JournalReader, JournalWriter,
        tests::{
            fixtures::{self, at},
            run,
        },
    },
    report::{EXPORT_GRACE, Format, Period, Report, ReportQuery, ReportSettings, export_week, pending_exports},
    settings::{RawConfig, Settings},
};

#[test]
fn export_week_writes_each_format_once() {
    let dir = crate::journal::tests::tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let out = dir.path().join("reports");
    let formats = [Format::Json, Format::Markdown, Format::Json];
    let written = export_week(&reader, "2026-W47", &ny(), &out, &formats, &Default::default()).expect("export");
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
    let again = export_week(&reader, "2026-W47", &ny(), &out, &[Format::Json, Format::Markdown], &Default::default())
        .expect("export again");
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(fs::read(out.join("2026-W47.md")).expect("read"), b"edited by hand");
    let row = reader.export("2026-W47", NY, "json").expect("query").expect("recorded");
    assert_eq!(row.path, out.join("2026-W47.json"));
    // A format added later is written on its own.
    let csv = export_week(&reader, "2026-W47", &ny(), &out, &[Format::Json, Format::Csv], &Default::default())
        .expect("export csv");
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
    let early = pending_exports(&reader, at(end_of_w47 + grace - 1), &ny(), &formats).expect("pending");
    assert_eq!(early, vec!["2026-W46".to_string()]);
    let later = pending_exports(&reader, at(end_of_w47 + grace), &ny(), &formats).expect("pending");
    assert_eq!(later, vec!["2026-W46".to_string(), "2026-W47".to_string()]);
    export_week(&reader, "2026-W46", &ny(), &dir.path().join("out"), &formats, &Default::default()).expect("export");
    let after = pending_exports(&reader, at(end_of_w47 + 30 * DAY), &ny(), &formats).expect("pending");
    assert_eq!(after, vec!["2026-W47".to_string(), "2026-W48".to_string()], "W48 holds the 999-byte record");
    assert!(
        pending_exports(&reader, at(end_of_w47 + 30 * DAY), &ny(), &[]).expect("pending").is_empty(),
        "no formats, nothing to do"
    );
}

#[test]
fn planted_symlinks_in_the_export_directory_are_never_followed() {
    let dir = crate::journal::tests::tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let out = dir.path().join("reports");
    fs::create_dir(&out).expect("mkdir");
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").expect("write");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).expect("chmod");
    // The old temporary name, and the final name of another format.
    std::os::unix::fs::symlink(&victim, out.join(".2026-W47.json.tmp")).expect("symlink");
    std::os::unix::fs::symlink(&victim, out.join("2026-W47.md")).expect("symlink");
    let written = export_week(&reader, "2026-W47", &ny(), &out, &[Format::Json, Format::Markdown], &Default::default())
        .expect("export");
    assert_eq!(written, vec![out.join("2026-W47.json"), out.join("2026-W47.md")]);
    assert_eq!(fs::read(&victim).expect("read"), b"precious", "the symlinks' target is untouched");
    assert_eq!(fs::metadata(&victim).expect("stat").permissions().mode() & 0o777, 0o644);
    assert!(fs::symlink_metadata(out.join("2026-W47.md")).expect("stat").is_file(), "the link was replaced");
    assert!(fs::read(out.join("2026-W47.json")).expect("read").starts_with(b"{"), "the report was written");
}

#[test]
fn an_export_directory_others_can_write_is_refused_unless_sticky_and_ours() {
    let dir = crate::journal::tests::tempdir();
    let reader = JournalReader::open(&fixture_journal(dir.path())).expect("reader");
    let out = dir.path().join("shared");
    fs::create_dir(&out).expect("mkdir");
    for mode in [0o777, 0o770, 0o757] {
        fs::set_permissions(&out, fs::Permissions::from_mode(mode)).expect("chmod");
        let err = export_week(&reader, "2026-W47", &ny(), &out, &[Format::Json], &Default::default())
            .expect_err("must be refused");
        assert!(matches!(err, crate::report::Error::ExportDir { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("shared") && text.contains("writable by"), "{text}");
        assert_eq!(fs::read_dir(&out).expect("ls").count(), 0, "nothing written into {mode:o}");
    }
    // Sticky and ours (like a private /tmp): others cannot replace our files there.
    fs::set_permissions(&out, fs::Permissions::from_mode(0o1777)).expect("chmod");
    let written = export_week(&reader, "2026-W47", &ny(), &out, &[Format::Json], &Default::default())
        .expect("sticky and ours is fine");
    assert_eq!(written, vec![out.join("2026-W47.json")]);
}

/// The zone `Settings::resolve` looked up (once, from `report.time_zone`) is the zone the journal
/// writer cuts its rollups in and the weekly export cuts, names and records its weeks in: both
/// take the typed zone, never a name to parse again.
#[test]
fn the_zone_resolved_from_the_config_reaches_the_rollups_and_the_weekly_export() {
    let dir = crate::journal::tests::tempdir();
    let d = dir.path().display();
    let text = format!(
        "[journal]\npath = \"{d}/journal.db\"\n\
         [report]\ntime_zone = \"{NY}\"\nexport_dir = \"{d}/reports\"\nexport_formats = [\"json\"]\n"
    );
    let raw = RawConfig::parse(&text, Path::new("x.toml")).expect("parse");
    let settings = Settings::resolve(raw, None).expect("resolve");
    let ReportSettings { time_zone, export_dir, export_formats, .. } = &settings.report;
    let mut w = JournalWriter::open(&settings.journal, run(), time_zone).expect("writer");
    // Sunday 23:30 in New York: still 2026-W47 there, already 2026-W48 in UTC.
    let us = fixtures::public(Some("US"), None, None);
    close(&mut w, "browser", 1, "203.0.113.10:443", W + 7 * DAY - 1800, (1000, 0), &us);
    w.flush().expect("flush");
    let reader = JournalReader::open(&settings.journal.path).expect("reader");
    assert_eq!(reader.rollup_state().expect("state").expect("rollups").time_zone, NY);

    let pending = pending_exports(&reader, at(W + 14 * DAY), time_zone, export_formats).expect("pending");
    assert_eq!(pending, ["2026-W47"], "the record's week in New York");
    let written =
        export_week(&reader, "2026-W47", time_zone, export_dir, export_formats, &Default::default()).expect("export");
    assert_eq!(written, [export_dir.join("2026-W47.json")]);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&written[0]).expect("read")).expect("json");
    assert_eq!(json["period"]["time_zone"], NY);
    assert_eq!(json["period"]["since"], "2026-11-16T05:00:00Z");
    assert!(reader.export("2026-W47", NY, "json").expect("query").is_some(), "recorded under the zone's name");
}
