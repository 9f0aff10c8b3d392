//! Journal tests: real SQLite files in temporary directories, exact numbers.

mod android;
mod compact;
mod failure;
pub(crate) mod fixtures;
mod literals;
mod paths;
mod row_cost;
mod session_rows;
mod shown;
mod timing;
mod wal;
mod writer;

use std::path::Path;

use jiff::Timestamp;
use tempfile::TempDir;

use super::{JournalConfig, JournalWriter, RunInfo};
use crate::zone::Zone;

/// A writer on `<tmp>/state/journal.db` with 60-second intervals.
pub(crate) fn writer_in(dir: &Path) -> JournalWriter {
    let config = JournalConfig { path: dir.join("state/journal.db"), ..JournalConfig::default() };
    JournalWriter::open(&config, run(), &utc()).expect("open journal")
}

/// The rollup zone of the tests' writers, looked up like `Settings::resolve` does.
pub(crate) fn utc() -> Zone {
    Zone::get("UTC").expect("zone")
}

/// A fixed run (pid 1, started 2026-11-16T00:00:00Z).
pub(crate) fn run() -> RunInfo {
    RunInfo { pid: 1, started_at: Timestamp::from_second(1_794_787_200).expect("valid"), config_path: None }
}

/// The writer of a later run on the journal in `dir` (as [`writer_in`]'s), started at `second`
/// (Unix seconds): a restart of the daemon.
pub(crate) fn writer_restarted(dir: &Path, second: i64) -> JournalWriter {
    let config = JournalConfig { path: dir.join("state/journal.db"), ..JournalConfig::default() };
    let run = RunInfo { pid: 2, started_at: Timestamp::from_second(second).expect("valid"), config_path: None };
    JournalWriter::open(&config, run, &utc()).expect("open journal")
}

pub(crate) fn tempdir() -> TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A plain connection for checking what is on disk independently of the reader.
pub(crate) fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

/// `SELECT`s one integer.
pub(crate) fn int(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).expect(sql)
}
