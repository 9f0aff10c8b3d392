//! App names as reports show them (escaped for the terminal) lead back to the journal's names.

use super::{
    fixtures::{self, Flow, at},
    raw, tempdir, writer_in,
};
use crate::{journal::JournalReader, tracker::record::RecordKind::Close};

/// Monday 2026-11-16T00:00:00Z.
const T0: i64 = 1_794_787_200;

/// An adversarial pass: a name copied from a report (`raw\\xff\\xfe` for the journal's
/// `raw\xff\xfe`, a file name that is not UTF-8) selected nothing with `report --app`.
#[test]
fn a_name_as_reports_show_it_selects_its_app() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let names = [r"raw\xff\xfe", "line1\nline2", r"back\\slash", "plain", r"shown\\twice"];
    for (cookie, name) in (1u64..).zip(names) {
        let mut f = Flow::new(cookie, "203.0.113.7:443", at(T0));
        w.append(&f.record(Close, at(T0 + 10), 100, 10), &fixtures::app(name), Some(&us));
    }
    w.flush().expect("flush");
    let reader = JournalReader::open(w.path()).expect("reader");
    for name in names {
        assert_eq!(reader.app_name_shown_as(name).expect("query"), name, "a journal name is its own");
        let shown = crate::escape::terminal(name);
        assert_eq!(reader.app_name_shown_as(&shown).expect("query"), name, "shown as {shown}");
    }
    // An app named as another's escaped form keeps its own name (`shown\\twice` is also how
    // reports show an app `shown\twice`, which this journal does not have).
    assert_eq!(reader.app_name_shown_as(r"shown\\twice").expect("query"), r"shown\\twice");
    assert_eq!(reader.app_name_shown_as(r"no\\such").expect("query"), r"no\\such", "no app: unchanged");
    // Past the records' retention the apps' rows are gone; the residency rows reports list
    // still name the apps (an adversarial pass: the shown names then selected nothing).
    drop(reader);
    raw(w.path()).execute_batch("PRAGMA foreign_keys = OFF; DELETE FROM apps;").expect("retention");
    let reader = JournalReader::open(w.path()).expect("reader");
    for name in names {
        assert_eq!(reader.app_name_shown_as(&crate::escape::terminal(name)).expect("query"), name);
    }
}
