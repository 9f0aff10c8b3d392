//! Opening the journal file: the directory, the single-writer lock, the file checked without
//! following symlinks, SQLite's settings for the writer and the readers, the schema check and the
//! migrations ([`super::schema`]), and the integrity checks.

use std::{
    fs::{DirBuilder, File},
    os::unix::fs::DirBuilderExt,
    path::Path,
    time::Duration,
};

use log::{debug, warn};
use rusqlite::{Connection, OpenFlags, OptionalExtension as _};

use super::{
    Error, files,
    schema::{SCHEMA_VERSION, migrations},
};

/// How long a statement waits for the other side's lock (reader vs writer) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Mode of directories created for the journal.
const DIR_MODE: u32 = 0o700;

/// Opens (creating when missing) the journal for writing and brings the schema up to date.
///
/// In this order: the directory; the single-writer lock on `<journal>.lock` (a second daemon is
/// refused before it touches the database); the file, checked without following symlinks
/// (`files`); SQLite; the schema, which must be empty or the monitor's (another application's
/// database is refused unchanged); only then modes, WAL, `quick_check` and migrations. Returns
/// the connection, the lock file (keep it open as long as the connection) and the file's
/// identity (a writer notices its removal or replacement).
pub(super) fn open_rw(path: &Path) -> Result<(Connection, File, files::FileId), Error> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(parent)
            .map_err(|source| Error::CreateDir { path: parent.to_path_buf(), source })?;
    }
    // The directory's links resolved once, first: every check below and SQLite see the same
    // file. SQLite's NOFOLLOW refuses a link anywhere in the path, and a directory reached
    // through one (`/var/lib/monitor` → `/data/monitor`) is an administrator's choice; the
    // journal file itself must not be a link (checked below, on its real path).
    let real = real_directory(path);
    let real = real.as_path();
    // A device node, symlink or foreign file is refused before even its lock file is created.
    files::precheck(real)?;
    let lock = files::lock(real)?;
    let created = std::fs::symlink_metadata(real).is_err();
    let checked = files::check_database(real)?;
    // NOFOLLOW: SQLite refuses a symlink too. The descriptor `check_database` used is closed.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_NOFOLLOW;
    let mut conn = match Connection::open_with_flags(real, flags) {
        Ok(conn) => conn,
        Err(source) => {
            // The empty file this call created is not left behind to look like a journal (if it
            // is still that file).
            if created && files::at_path(real, checked.id()) == files::AtPath::Same {
                let _ = std::fs::remove_file(real);
            }
            return Err(open_error(path, source));
        }
    };
    // The writer's connection only: readers bind few values.
    lookaside(&conn);
    files::verify_same(real, &checked)?;
    configure(&conn, path)?;
    if check_ours(&conn, path)? > 0 {
        refuse_running_writer(&conn, path)?;
    }
    files::fix_modes(real, &checked)?;
    if !checked.existed {
        // Only effective before the first table exists; lets `purge_expired` return space.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL").map_err(|source| open_error(path, source))?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|source| open_error(path, source))?;
    if !mode.eq_ignore_ascii_case("wal") {
        warn!("journal is not in WAL mode (journal_mode={mode}) path={}", path.display());
    }
    // FULL: a committed flush survives power loss too, at one fsync per flush.
    conn.pragma_update(None, "synchronous", "FULL").map_err(|source| open_error(path, source))?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES).map_err(|source| open_error(path, source))?;
    conn.pragma_update(None, "cache_size", WRITER_CACHE_SIZE).map_err(|source| open_error(path, source))?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    let started = std::time::Instant::now();
    let check = collect_check(&conn, "PRAGMA quick_check").map_err(|source| open_error(path, source))?;
    if check != "ok" {
        return Err(Error::Corrupt { path: path.to_path_buf(), reason: format!("quick_check: {check}") });
    }
    debug!("journal quick_check ok in {:?} path={}", started.elapsed(), path.display());
    migrations().to_latest(&mut conn).map_err(|source| Error::Migrate { path: path.to_path_buf(), source })?;
    Ok((conn, lock, checked.id()))
}

/// `path` with its directory's symbolic links resolved (the file name kept); `path` itself when
/// the directory cannot be resolved.
fn real_directory(path: &Path) -> std::path::PathBuf {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// [`Error::Locked`] when another process holds the journal's lock now, as [`open_rw`] would
/// find, without opening, creating or locking anything (`/proc/locks`, [`files::writer_pid`]).
/// A lock file removed or replaced while its daemon runs is not seen here; [`open_rw`] finds it.
pub(super) fn ensure_not_locked(path: &Path) -> Result<(), Error> {
    let real = real_directory(path);
    if files::writer_pid(&real).is_some() {
        return Err(Error::Locked { lock: files::lock_path(&real), path: real });
    }
    Ok(())
}

/// Opens an existing journal read-only.
pub(super) fn open_ro(path: &Path) -> Result<Connection, Error> {
    open_existing(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
}

/// Opens an existing journal read-write without migrating (short writes from report tools).
pub(super) fn open_existing_rw(path: &Path) -> Result<Connection, Error> {
    open_existing(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
}

/// Only SQLite opens the file here: readers run inside the daemon too (weekly exports), where
/// closing a plain descriptor of the database would drop the writer's locks.
fn open_existing(path: &Path, mode: OpenFlags) -> Result<Connection, Error> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::Missing { path: path.to_path_buf() }),
        Err(source) => return Err(Error::Open { path: path.to_path_buf(), source }),
        // A FIFO would block SQLite's open, a device would be read as a database.
        Ok(meta) if !meta.is_file() => {
            return Err(Error::NotJournal { path: path.to_path_buf(), reason: "not a regular file".into() });
        }
        Ok(_) => {}
    }
    let conn = Connection::open_with_flags(path, mode | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|source| open_error(path, source))?;
    match checked(conn, path) {
        // A reader in a read-only place (a copy on a read-only mount or in a directory this user
        // cannot write) of a file it may read: SQLite cannot create the shared-memory file WAL
        // readers use. A journal alone, without the files a writer keeps beside it (a live
        // writer's `-wal` and `-shm`, a rollback `-journal`), is all there is: read it immutable.
        // (`access`, not an open: a descriptor of the database closed here would drop the locks
        // of a writer in this process.)
        Err(Error::Sqlite { source, .. })
            if mode.contains(OpenFlags::SQLITE_OPEN_READ_ONLY)
                && matches!(
                    source.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
                )
                && nix::unistd::access(path, nix::unistd::AccessFlags::R_OK).is_ok() =>
        {
            let beside = |suffix: &str| {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                std::fs::symlink_metadata(p).is_ok()
            };
            if beside("-wal") || beside("-shm") || beside("-journal") {
                return Err(Error::ReadOnlyWal { path: path.to_path_buf() });
            }
            // A path that is not UTF-8 cannot be written as a URI: SQLite's error stands.
            let Some(escaped) = uri_path(path) else {
                return Err(Error::Sqlite { path: path.to_path_buf(), source });
            };
            // `file:///abs` (an absolute path after an empty authority), `file:rel` otherwise.
            let uri = if escaped.starts_with('/') {
                format!("file://{escaped}?immutable=1")
            } else {
                format!("file:{escaped}?immutable=1")
            };
            let flags = mode | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            let conn = Connection::open_with_flags(uri, flags).map_err(|source| open_error(path, source))?;
            checked(conn, path)
        }
        other => other,
    }
}

/// `conn` after the checks every reader's connection passes.
fn checked(conn: Connection, path: &Path) -> Result<Connection, Error> {
    configure(&conn, path)?;
    if check_ours(&conn, path)? == 0 {
        return Err(if wal_left_behind(path) {
            Error::WalMissing { path: path.to_path_buf() }
        } else {
            Error::Empty { path: path.to_path_buf() }
        });
    }
    super::legacy::shadow_missing_columns(&conn).map_err(|source| open_error(path, source))?;
    Ok(conn)
}

/// Whether the database at `path` is in write-ahead-log mode (its header's read and write
/// versions are 2) and has no log beside it: no `-wal` file, or an empty one (which this very
/// open may have created).
fn wal_left_behind(path: &Path) -> bool {
    use std::io::Read as _;
    let mut header = [0u8; 20];
    let wal_mode = std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok()
        && header.get(18..20) == Some(&[2, 2][..]);
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal_mode && std::fs::metadata(Path::new(&wal)).map_or(true, |m| m.len() == 0)
}

/// `path` for a `file:` URI (the characters a URI gives a meaning to escaped); `None` when it
/// is not UTF-8.
fn uri_path(path: &Path) -> Option<String> {
    let mut out = String::new();
    for c in path.to_str()?.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    Some(out)
}

fn configure(conn: &Connection, path: &Path) -> Result<(), Error> {
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|source| open_error(path, source))?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(|source| open_error(path, source))
}

/// Pages the write-ahead log collects before the writer copies them into the database
/// (`wal_autocheckpoint`; SQLite's default is 1,000). Every checkpoint writes each page changed
/// since the last one once, however often it changed: fewer checkpoints, fewer writes of the
/// same index pages. The log file (`journal.db-wal`) grows to ~33 MB (8,000 pages of 4 KiB and
/// their frame headers) and is reused from its start after each checkpoint.
const WAL_CHECKPOINT_PAGES: i64 = 8000;

/// The writer's page cache (`cache_size`; negative: KiB): 1 MiB, half SQLite's default. Writes
/// touch the tails of the tables and indexes; a larger cache (16 and 64 MiB) made no difference
/// to the CPU per record (BENCHMARKS.md), and the daemon's memory is counted with 100,000 open
/// sockets (issue 8).
const WRITER_CACHE_SIZE: i64 = -1024;

/// Prepared statements the writer's connection keeps (rusqlite's default is 16). A flush runs
/// more distinct statements than that (the rows' inserts, the interned groups, the rollups'
/// upserts and probes, the chain's), and one evicted is parsed again at the next flush.
const WRITER_STATEMENTS: usize = 64;

/// Slots of SQLite's per-connection allocator for small objects ("lookaside"), and their size.
/// The writer binds ~15 text values per row and up to 32 rows per statement, and SQLite copies
/// each text into memory of its own: more live small allocations than the default 40 + 100 slots
/// hold, so most went to `malloc` and `free`. 2,048 slots of 128 bytes: 256 KiB, for the writer's
/// connection only (SQLite links the slots into a list when configured: they are resident).
const LOOKASIDE_SLOTS: i32 = 2048;
/// Size of a [`LOOKASIDE_SLOTS`] slot.
const LOOKASIDE_SLOT_BYTES: i32 = 128;

/// Sizes the connection's lookaside allocator ([`LOOKASIDE_SLOTS`]). Only possible before
/// anything used it: call right after opening. A failure changes speed only, never a result.
fn lookaside(conn: &Connection) {
    // SAFETY: the handle of an open connection, used on this thread only, before any statement
    // exists; SQLITE_DBCONFIG_LOOKASIDE takes (void *buffer, int slot size, int slot count), and
    // a null buffer makes SQLite allocate the slots itself.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            LOOKASIDE_SLOT_BYTES,
            LOOKASIDE_SLOTS,
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        warn!(
            "journal: SQLite refused the writer's lookaside slots (sqlite3_db_config code {rc}); \
             writes work, with more allocations per record"
        );
    }
}

/// Reads the schema version, refusing files written by a newer schema. Reading `sqlite_schema`
/// first makes SQLite parse the header and schema, so a corrupt file fails here.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<u32, Error> {
    let _: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(|source| open_error(path, source))?;
    let found: u32 =
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|source| open_error(path, source))?;
    if found > SCHEMA_VERSION {
        return Err(Error::TooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    Ok(found)
}

/// Refuses a database that is not a monitor journal: tables without a `user_version` (another
/// application's database), or a `user_version` without the monitor's tables. Returns the
/// schema version (0: an empty database, which becomes a journal).
fn check_ours(conn: &Connection, path: &Path) -> Result<u32, Error> {
    let not_journal = |reason: String| Error::NotJournal { path: path.to_path_buf(), reason };
    let (objects, ours): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(CASE WHEN type IN ('table', 'view') AND name IN ('connections', 'daemon_state', 'meta')
                 THEN 1 END) FROM sqlite_schema",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(|source| open_error(path, source))?;
    let version: u32 =
        conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|source| open_error(path, source))?;
    if version == 0 && objects > 0 {
        return Err(not_journal(
            "a SQLite database of another application: it has tables but no journal schema".into(),
        ));
    }
    if version > 0 && ours != 3 {
        return Err(not_journal(format!(
            "a SQLite database with user_version {version} but without the journal tables"
        )));
    }
    check_version(conn, path)
}

/// The lock at the path was taken, but the daemon this journal last recorded may still write it
/// through a lock file renamed away, or reached through another path (a bind mount, another mount
/// namespace): that daemon still running and holding a lock ([`files::recorded_writer_runs`])
/// refuses this one ([`Error::LockRemoved`]).
fn refuse_running_writer(conn: &Connection, path: &Path) -> Result<(), Error> {
    let recorded: Option<(i64, i64)> = conn
        .query_row("SELECT pid, started_ms FROM daemon_state WHERE id = 1", [], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .map_err(|source| open_error(path, source))?;
    let Some((pid, started_ms)) = recorded else { return Ok(()) };
    let Ok(pid) = i32::try_from(pid) else { return Ok(()) };
    if files::recorded_writer_runs(pid, started_ms) {
        return Err(Error::LockRemoved { path: path.to_path_buf(), lock: files::lock_path(path), pid });
    }
    Ok(())
}

fn open_error(path: &Path, source: rusqlite::Error) -> Error {
    match source.sqlite_error_code() {
        // No SQLite header: any file at all (never suggest moving it).
        Some(rusqlite::ErrorCode::NotADatabase) => {
            Error::NotJournal { path: path.to_path_buf(), reason: source.to_string() }
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
            Error::Corrupt { path: path.to_path_buf(), reason: source.to_string() }
        }
        _ => Error::Sqlite { path: path.to_path_buf(), source },
    }
}

/// `PRAGMA integrity_check`: "ok", or the problems found, one per line.
pub(super) fn integrity_check(conn: &Connection) -> Result<String, rusqlite::Error> {
    collect_check(conn, "PRAGMA integrity_check")
}

fn collect_check(conn: &Connection, sql: &str) -> Result<String, rusqlite::Error> {
    let mut stmt = conn.prepare(sql)?;
    let lines = stmt.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's connection takes its settings: WAL, FULL sync, a 1 MiB page cache.
    #[test]
    fn the_writer_connection_is_configured() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (conn, _lock, _) = open_rw(&dir.path().join("journal.db")).expect("journal opens");
        let pragma = |name: &str| -> String {
            conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, rusqlite::types::Value>(0))
                .map(|v| format!("{v:?}"))
                .expect("pragma reads")
        };
        assert_eq!(pragma("journal_mode"), "Text(\"wal\")");
        assert_eq!(pragma("synchronous"), "Integer(2)");
        assert_eq!(pragma("cache_size"), format!("Integer({WRITER_CACHE_SIZE})"));
    }

    /// Lookaside status `op` of `conn`: (current, highwater).
    fn lookaside_status(conn: &Connection, op: i32) -> (i32, i32) {
        let (mut current, mut high) = (0, 0);
        // SAFETY: an open connection's handle; both out-pointers are valid for writes.
        let rc = unsafe { rusqlite::ffi::sqlite3_db_status(conn.handle(), op, &mut current, &mut high, 0) };
        assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
        (current, high)
    }

    /// The writer's connection holds a statement's worth of bound texts in lookaside slots
    /// (SQLite's default of 40 + 100 slots sent most of them to malloc).
    #[test]
    fn bound_texts_of_a_batch_fit_the_lookaside_slots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conn, _lock, _) = open_rw(&dir.path().join("journal.db")).expect("journal");
        // 32 rows of ~15 texts each, as one multi-row insert binds.
        let texts: Vec<String> = (0..480).map(|i| format!("text value {i}")).collect();
        let sql = format!("SELECT {}", (1..=texts.len()).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", "));
        let mut stmt = conn.prepare(&sql).expect("prepare");
        for (i, t) in texts.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, t.as_str()).expect("bind");
        }
        let (_, used_high) = lookaside_status(&conn, rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_USED);
        let (_, missed_full) = lookaside_status(&conn, rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_MISS_FULL);
        assert!(used_high >= 480, "every bound text in a slot: highwater {used_high}");
        assert_eq!(missed_full, 0, "no allocation found the slots full");
        assert!(used_high < LOOKASIDE_SLOTS);
    }
}
