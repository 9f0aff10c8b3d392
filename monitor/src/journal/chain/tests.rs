//! The hash chain against real journals edited behind the monitor's back with rusqlite.

use std::path::{Path, PathBuf};

use super::{Problem, verify};
use crate::{
    journal::tests::{
        fixtures::{self, Flow, at},
        raw, tempdir, writer_in,
    },
    stats::Stats,
    tracker::record::RecordKind::{Close, Update},
};

const T: i64 = 1_794_805_200;

/// Two flushes: batch 1 has connection rows 1–3 and stats row 1, batch 2 rows 4–5 and stats 2.
fn journal(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let app = fixtures::app("curl");
    let mut f = Flow::new(1, "203.0.113.10:443", at(T));
    w.append(&f.record(Update, at(T + 1), 100, 10), &app, Some(&us));
    w.append(&f.record(Update, at(T + 2), 100, 10), &app, Some(&us));
    w.append(&f.record(Close, at(T + 3), 100, 10), &app, Some(&us));
    w.record_stats(at(T + 3), &Stats::default());
    w.flush().unwrap();
    // A flush with nothing to seal adds no batch.
    w.flush().unwrap();
    let mut g = Flow::new(2, "203.0.113.11:443", at(T + 10));
    w.append(&g.record(Update, at(T + 11), 5, 5), &app, Some(&us));
    w.append(&g.record(Close, at(T + 12), 5, 5), &app, Some(&us));
    w.record_stats(at(T + 12), &Stats::default());
    w.flush().unwrap();
    w.path().to_path_buf()
}

#[test]
fn untouched_journal_verifies() {
    let dir = tempdir();
    let path = journal(dir.path());
    let v = verify(&path).unwrap();
    assert_eq!((v.batches, v.rows_intact, v.rows_purged, v.rows_before_chain), (2, 7, 0, 0));
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.head.as_ref().map(String::len), Some(64));
}

#[test]
fn one_changed_byte_is_named() {
    let dir = tempdir();
    let path = journal(dir.path());
    // One byte of a text column ("fixture" -> "fixturf"), one unit of a counter.
    raw(&path).execute("UPDATE connections SET owner_comm = 'fixturf' WHERE id = 2", []).unwrap();
    raw(&path).execute("UPDATE stats SET events_lost = 1 WHERE id = 2", []).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(
        v.problems,
        [
            Problem::RowChanged { table: "connections", id: 2, batch: 1 },
            Problem::RowChanged { table: "stats", id: 2, batch: 2 }
        ]
    );
    assert_eq!(v.rows_intact, 5);
}

#[test]
fn removed_and_added_rows_are_named() {
    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    conn.execute("DELETE FROM connections WHERE id = 4", []).unwrap();
    let rest = super::CONNECTION_COLUMNS.trim_start_matches("id,");
    conn.execute(&format!("INSERT INTO connections (id, {rest}) SELECT 9, {rest} FROM connections WHERE id = 1"), [])
        .unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(
        chain_problems(&v.problems),
        [
            Problem::RowRemoved { table: "connections", id: 4, batch: 2 },
            Problem::RowAdded { table: "connections", id: 9 }
        ]
    );
    // The interval sums no longer match the records either.
    assert!(v.problems.iter().any(|p| matches!(p, Problem::FiguresDiffer { table: "residency", .. })));
}

/// The problems of the chain itself (not of the sums checked against the rows).
fn chain_problems(problems: &[Problem]) -> Vec<Problem> {
    problems.iter().filter(|p| !matches!(p, Problem::FiguresDiffer { .. })).cloned().collect()
}

#[test]
fn edited_or_removed_batches_break_the_chain() {
    let dir = tempdir();
    let path = journal(dir.path());
    raw(&path).execute("UPDATE batches SET max_time_ms = max_time_ms + 1 WHERE id = 1", []).unwrap();
    assert_eq!(verify(&path).unwrap().problems, [Problem::BatchChanged { batch: 1 }]);

    let dir = tempdir();
    let path = journal(dir.path());
    // Removing batch 1 and its rows: what is left no longer starts the chain.
    let conn = raw(&path);
    conn.execute_batch(
        "DELETE FROM connections WHERE id <= 3; DELETE FROM stats WHERE id = 1; DELETE FROM batches WHERE id = 1",
    )
    .unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(chain_problems(&v.problems), [Problem::ChainBroken { batch: 2 }]);
}

#[test]
fn purged_rows_are_not_problems() {
    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    // What retention does: delete records before the horizon and remember it.
    let horizon = (T + 5) * 1000;
    conn.execute("DELETE FROM connections WHERE time_ms < ?1", [horizon]).unwrap();
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('connections_purged_before_ms', ?1)", [horizon])
        .unwrap();
    let v = verify(&path).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!((v.rows_purged, v.rows_intact), (3, 4));
}

#[test]
fn row_hasher_digest_is_sha256_of_the_canonical_bytes() {
    use rusqlite::types::ValueRef;
    use sha2::{Digest as _, Sha256};
    // Values past the hasher's buffer included: a long text, and many small values.
    let long = "x".repeat(1000);
    let mut values = vec![ValueRef::Integer(-5), ValueRef::Null, ValueRef::Text(long.as_bytes()), ValueRef::Real(1.5)];
    values.extend((0..100).map(ValueRef::Integer));
    values.push(ValueRef::Blob(b"\x00\xff"));
    let mut expected = Sha256::new();
    expected.update(b"connections\x00");
    let mut hasher = super::RowHasher::new("connections");
    for v in &values {
        hasher.push(*v);
        match v {
            ValueRef::Null => expected.update([0]),
            ValueRef::Integer(i) => {
                expected.update([1]);
                expected.update(i.to_be_bytes());
            }
            ValueRef::Real(r) => {
                expected.update([2]);
                expected.update(r.to_bits().to_be_bytes());
            }
            ValueRef::Text(b) | ValueRef::Blob(b) => {
                expected.update([if matches!(v, ValueRef::Text(_)) { 3 } else { 4 }]);
                expected.update(u32::try_from(b.len()).unwrap().to_be_bytes());
                expected.update(b);
            }
        }
    }
    assert_eq!(hasher.finish()[..], expected.finalize()[..super::DIGEST_LEN]);
}

/// Two destinations with two country databases' answers (agreeing, disagreeing), in two flushes.
fn journal_with_answers(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let agree = fixtures::public_with_answers("US", Some("US"));
    let differ = fixtures::public_with_answers("US", Some("CN"));
    let app = fixtures::app("curl");
    let mut f = Flow::new(1, "203.0.113.10:443", at(T));
    w.append(&f.record(Update, at(T + 1), 100, 10), &app, Some(&agree));
    w.append(&f.record(Close, at(T + 2), 100, 10), &app, Some(&agree));
    w.flush().unwrap();
    let mut g = Flow::new(2, "203.0.113.11:443", at(T + 10));
    w.append(&g.record(Close, at(T + 11), 5, 5), &app, Some(&differ));
    let mut h = Flow::new(3, "203.0.113.10:443", at(T + 20));
    w.append(&h.record(Close, at(T + 21), 7, 7), &app, Some(&agree));
    w.flush().unwrap();
    w.path().to_path_buf()
}

#[test]
fn answers_stored_once_are_covered_as_their_text() {
    let dir = tempdir();
    let path = journal_with_answers(dir.path());
    let conn = raw(&path);
    // Schema 13: no text in the rows, one `answer_sets` row per distinct list.
    let stored: Vec<(Option<String>, Option<i64>)> = conn
        .prepare("SELECT country_answers, answers_id FROM connections ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ids: Vec<i64> = stored
        .iter()
        .map(|(text, id)| {
            assert_eq!(text, &None);
            id.expect("an answers id")
        })
        .collect();
    assert_eq!((ids[0], ids[1], ids[3]), (ids[0], ids[0], ids[0]), "one list, one row: {ids:?}");
    assert_ne!(ids[2], ids[0]);
    assert_eq!(crate::journal::tests::int(&conn, "SELECT COUNT(*) FROM answer_sets"), 2);
    let v = verify(&path).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.rows_intact, 4);

    // The same text stored in the row itself (as before schema 13) hashes the same.
    conn.execute_batch(
        "UPDATE connections SET country_answers = (SELECT text FROM answer_sets WHERE id = answers_id),
             answers_id = NULL WHERE id = 1",
    )
    .unwrap();
    let v = verify(&path).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.rows_intact, 4);

    // A changed answer list shows in every row that refers to it; so does a row pointed at
    // another list.
    conn.execute("UPDATE answer_sets SET text = replace(text, '\"CN\"', '\"JP\"') WHERE id = ?1", [ids[2]]).unwrap();
    conn.execute("UPDATE connections SET answers_id = ?1 WHERE id = 4", [ids[2]]).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!(
        chain_problems(&v.problems),
        [
            Problem::RowChanged { table: "connections", id: 3, batch: 2 },
            Problem::RowChanged { table: "connections", id: 4, batch: 2 }
        ]
    );
}

#[test]
fn column_counts_match_the_lists() {
    assert_eq!(super::CONNECTION_COLUMNS.split(',').count(), super::CONNECTION_COLUMN_COUNT);
    assert_eq!(super::TABLES[1].1.split(',').count(), super::TABLES[1].2);
}

/// [`journal`] as schema 15 sealed it (format 1: every value of a row hashed), read-only as it
/// is; `then` runs before a writer migrates it and seals a third batch, of one record with the
/// country answers of two databases.
fn journal_of_both_formats(dir: &Path, then: impl FnOnce(&Path)) -> PathBuf {
    let path = journal(dir);
    let conn = raw(&path);
    super::as_schema_15_batches(&conn).unwrap();
    conn.execute_batch("PRAGMA user_version = 15").unwrap();
    then(&path);
    let mut w = writer_in(dir);
    let app = fixtures::app("curl");
    let mut f = Flow::new(3, "203.0.113.12:443", at(T + 20));
    w.append(&f.record(Close, at(T + 21), 7, 7), &app, Some(&fixtures::public_with_answers("US", Some("CN"))));
    w.flush().unwrap();
    path
}

/// A journal sealed before schema 16 verifies, read-only as it is and after a writer migrated it;
/// the writer's batches are format 3 (the row's own values, one digest per shared combination
/// and the app's identity), and the whole chain verifies, also with that batch sealed as format
/// 2 (as writers before the app identity was covered sealed it).
#[test]
fn batches_sealed_before_schema_16_verify_beside_format_2_and_3_batches() {
    let dir = tempdir();
    let path = journal_of_both_formats(dir.path(), |path| {
        let v = verify(path).unwrap();
        assert_eq!((v.batches, v.rows_intact), (2, 7), "schema 15 as it is, read-only");
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    });
    let formats: Vec<i64> = raw(&path)
        .prepare("SELECT row_format FROM batches ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // The writer's first batch, at its open: the first writer's last flush and its own start
    // (statistics rows: that run has no final snapshot); its second: its record.
    assert_eq!(formats, [1, 1, 3, 3]);
    let v = verify(&path).unwrap();
    assert_eq!((v.batches, v.rows_intact), (4, 10));
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    super::reseal_as(&raw(&path), 4, 2).unwrap();
    let v = verify(&path).unwrap();
    assert_eq!((v.batches, v.rows_intact), (4, 10));
    assert!(v.problems.is_empty(), "format 2: {:?}", v.problems);
}

/// An app's identity changed after the fact: its executable alone (the apps row no longer is
/// the identity it was written under), or renamed with its identity (every row of a format-3
/// batch that names it). Both verified intact before: found by an adversarial pass.
#[test]
fn an_app_changed_after_the_fact_is_found() {
    let dir = tempdir();
    let path = journal(dir.path());
    let conn = raw(&path);
    assert!(chain_problems(&verify(&path).unwrap().problems).is_empty());
    let exe: Option<String> = conn.query_row("SELECT exe FROM apps WHERE id = 1", [], |r| r.get(0)).unwrap();
    conn.execute("UPDATE apps SET exe = '/usr/bin/innocent' WHERE id = 1", []).unwrap();
    assert_eq!(chain_problems(&verify(&path).unwrap().problems), [Problem::AppChanged { id: 1 }]);
    let (identity, name): (String, String) =
        conn.query_row("SELECT identity, name FROM apps WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    conn.execute("UPDATE apps SET exe = ?1 WHERE id = 1", [&exe]).unwrap();
    let renamed = identity.replacen(&format!("\"{name}\""), "\"innocent\"", 1);
    assert_ne!(renamed, identity);
    conn.execute("UPDATE apps SET name = 'innocent', identity = ?1 WHERE id = 1", [&renamed]).unwrap();
    let problems = chain_problems(&verify(&path).unwrap().problems);
    let rows: Vec<i64> = conn
        .prepare("SELECT id FROM connections WHERE app_id = 1 ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(!rows.is_empty());
    assert!(!problems.iter().any(|p| matches!(p, Problem::AppChanged { .. })), "consistent: {problems:?}");
    for id in rows {
        assert!(
            problems.iter().any(|p| matches!(p, Problem::RowChanged { table: "connections", id: i, .. } if *i == id)),
            "row {id} of the renamed app: {problems:?}"
        );
    }
}

/// In both formats a value changed in a shared table shows in every row that reads it, and so
/// does a changed `country_answers` text; a batch whose format was changed shows as changed.
#[test]
fn shared_values_and_the_row_format_are_covered() {
    let dir = tempdir();
    let path = journal_of_both_formats(dir.path(), |_| {});
    let conn = raw(&path);
    let changed = |path: &Path| -> Vec<(i64, i64)> {
        chain_problems(&verify(path).unwrap().problems)
            .into_iter()
            .map(|p| match p {
                Problem::RowChanged { table: "connections", id, batch } => (id, batch),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    conn.execute("UPDATE connection_owners SET owner_comm = 'fixturf'", []).unwrap();
    assert_eq!(changed(&path), [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 4)], "the owner of every row");
    conn.execute("UPDATE connection_owners SET owner_comm = 'fixture'", []).unwrap();
    assert_eq!(changed(&path), [], "as sealed again");
    conn.execute("UPDATE answer_sets SET text = replace(text, 'CN', 'RU')", []).unwrap();
    assert_eq!(changed(&path), [(6, 4)], "the row whose country answers changed");
    conn.execute("UPDATE answer_sets SET text = replace(text, 'RU', 'CN')", []).unwrap();
    conn.execute("UPDATE connection_destinations SET country = 'CN' WHERE country = 'US'", []).unwrap();
    assert_eq!(changed(&path).len(), 6, "every row's destination");
    conn.execute("UPDATE connection_destinations SET country = 'US' WHERE country = 'CN'", []).unwrap();
    conn.execute("UPDATE batches SET row_format = 1 WHERE id = 4", []).unwrap();
    let problems = chain_problems(&verify(&path).unwrap().problems);
    assert_eq!(
        problems,
        [Problem::BatchChanged { batch: 4 }, Problem::RowChanged { table: "connections", id: 6, batch: 4 }]
    );
}
