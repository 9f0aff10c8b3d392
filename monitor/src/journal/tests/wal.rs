//! The writer's WAL survives readers in the same process, a refused second writer and an
//! external `sqlite3` session (closing any plain descriptor of the database in the writer's
//! process would drop its POSIX locks, and the next process to close the file would delete the
//! live WAL).

use std::{fs, path::Path, process::Command};

use super::{
    fixtures::{self, Flow, at},
    run, tempdir,
};
use crate::{
    journal::{JournalConfig, JournalReader, JournalWriter},
    tracker::record::RecordKind::Close,
};

const T0: i64 = 1_794_787_200;

/// `SELECT COUNT(*) FROM connections` in another process, through the `sqlite3` CLI; `None`
/// when it is not installed (`cargo xtask setup` installs it).
fn external_count(path: &Path) -> Option<i64> {
    let out = Command::new("sqlite3").arg(path).arg("SELECT COUNT(*) FROM connections;").output().ok()?;
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8_lossy(&out.stdout).trim().parse().expect("a count"))
}

/// Descriptors of this process that point at deleted files.
fn deleted_fds() -> Vec<String> {
    fs::read_dir("/proc/self/fd")
        .expect("fds")
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.ends_with("(deleted)"))
        .collect()
}

fn write(w: &mut JournalWriter, cookies: std::ops::Range<u64>) {
    let app = fixtures::app("browser");
    for cookie in cookies {
        let mut f = Flow::new(cookie, "192.0.2.1:443", at(T0));
        w.append(&f.record(Close, at(T0 + 1), 10, 10), &app, None);
    }
    w.flush().expect("flush");
}

#[test]
fn readers_a_second_writer_and_an_external_session_leave_the_wal_alone() {
    let dir = tempdir();
    let config = JournalConfig { path: dir.path().join("journal.db"), ..JournalConfig::default() };
    let mut w = JournalWriter::open(&config, run(), &super::utc()).expect("writer");
    write(&mut w, 0..20);
    // What the daemon does besides writing: readers (weekly exports), a refused second writer.
    for _ in 0..3 {
        drop(JournalReader::open(&config.path).expect("reader"));
    }
    assert!(JournalWriter::open(&config, run(), &super::utc()).is_err(), "second writer refused");
    let Some(seen) = external_count(&config.path) else {
        eprintln!("SKIPPED: the `sqlite3` CLI is not installed (cargo xtask setup installs it)");
        return;
    };
    assert_eq!(seen, 20);
    // The writer keeps writing into the live WAL: another process sees every row.
    write(&mut w, 20..220);
    assert!(deleted_fds().iter().all(|t| !t.contains("journal.db")), "deleted journal files open: {:?}", deleted_fds());
    assert_eq!(external_count(&config.path), Some(220), "rows written after the session are visible to others");
    assert!(config.path.with_file_name("journal.db-wal").exists(), "the WAL file is still there");
}
