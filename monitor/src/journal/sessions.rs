//! The `sessions` table: named time windows (`monitor session start/stop`), optionally with the
//! cgroup a command ran in (`monitor exec --session`). Written with short read-write
//! connections beside the daemon's writer (WAL and the busy timeout let both proceed).
//!
//! A name is unique for the journal's lifetime; a session stopped once stays stopped.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::{Error, JournalReader, names, open};

/// Longest session name.
pub const MAX_SESSION_NAME: usize = 64;

/// Session errors. [`SessionError::Journal`] is a journal failure (exit code 5); the others are
/// usage errors (exit code 2).
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading or writing the journal failed.
    #[error(transparent)]
    Journal(#[from] Error),
    /// A name that is empty, too long or has characters other than `A-Z a-z 0-9 . _ -`.
    #[error("invalid session name `{}`: {reason}", name.escape_debug())]
    Name { name: String, reason: &'static str },
    /// `start` with a name that is taken.
    #[error("session `{name}` already exists in `{}` (names are unique; pick another)", path.display())]
    Exists { name: String, path: PathBuf },
    /// No session of that name.
    #[error("no session `{name}` in `{}` (see `monitor session list`)", path.display())]
    Unknown { name: String, path: PathBuf },
    /// `stop` of a stopped session.
    #[error("session `{name}` was already stopped at {stopped}")]
    Stopped { name: String, stopped: Timestamp },
    /// The journal predates sessions (schema < 4) and no daemon has upgraded it yet.
    #[error("journal `{}` has no sessions table yet: run `monitor run` once with it to upgrade it", path.display())]
    Unsupported { path: PathBuf },
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Session {
    /// Unique name.
    pub name: String,
    /// Start of the window.
    pub started: Timestamp,
    /// End of the window (excluded); `None` while the session runs.
    pub stopped: Option<Timestamp>,
    /// cgroup v2 id the command of `monitor exec` ran in: only sockets created there belong to
    /// the session. `None`: every flow of the window belongs to it.
    pub cgroup_id: Option<u64>,
    /// That cgroup's directory (it may be gone).
    pub cgroup_path: Option<String>,
    /// Command line of `monitor exec` (arguments quoted for bash).
    pub command: Option<String>,
    /// Its exit code (128 + signal number when a signal ended it).
    pub exit_code: Option<i32>,
}

/// What `monitor exec` records with a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCgroup {
    /// cgroup v2 id (the directory's inode number).
    pub id: u64,
    /// The directory.
    pub path: String,
    /// Command line, quoted for bash.
    pub command: String,
}

/// Checks a session name: 1 to [`MAX_SESSION_NAME`] characters of `A-Z a-z 0-9 . _ -`, not
/// starting with `-` or `.`. Names end up in file names, cgroup names and reports.
///
/// # Errors
/// [`SessionError::Name`].
pub fn check_session_name(name: &str) -> Result<(), SessionError> {
    let bad = |reason| Err(SessionError::Name { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_SESSION_NAME {
        return bad("it is longer than 64 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return bad("only A-Z, a-z, 0-9, '.', '_' and '-' are allowed");
    }
    if name.starts_with(['-', '.']) {
        return bad("it must not start with '-' or '.'");
    }
    Ok(())
}

fn has_table(conn: &Connection, path: &Path) -> Result<bool, Error> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sessions')", [], |r| {
        r.get(0)
    })
    .map_err(|e| Error::read(path, e))
}

fn open_rw(journal: &Path) -> Result<Connection, SessionError> {
    let conn = open::open_existing_rw(journal)?;
    if !has_table(&conn, journal)? {
        return Err(SessionError::Unsupported { path: journal.to_path_buf() });
    }
    Ok(conn)
}

/// Starts session `name` at `at` in the journal at `journal`, with the cgroup of `monitor exec`.
///
/// # Errors
/// A bad or taken name, or the journal failing.
pub fn start_session(
    journal: &Path,
    name: &str,
    at: Timestamp,
    cgroup: Option<&SessionCgroup>,
) -> Result<Session, SessionError> {
    check_session_name(name)?;
    let conn = open_rw(journal)?;
    let inserted = conn
        .execute(
            "INSERT INTO sessions (name, started_ms, cgroup_id, cgroup_path, command) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO NOTHING",
            params![
                name,
                names::ms(at),
                cgroup.map(|c| c.id.cast_signed()),
                cgroup.map(|c| c.path.as_str()),
                cgroup.map(|c| c.command.as_str())
            ],
        )
        .map_err(|e| Error::write(journal, e))?;
    if inserted == 0 {
        return Err(SessionError::Exists { name: name.to_string(), path: journal.to_path_buf() });
    }
    get(&conn, journal, name)
}

/// Stops session `name` at `at` (with the exit code of `monitor exec`'s command).
///
/// # Errors
/// An unknown or stopped session, or the journal failing.
pub fn stop_session(
    journal: &Path,
    name: &str,
    at: Timestamp,
    exit_code: Option<i32>,
) -> Result<Session, SessionError> {
    check_session_name(name)?;
    let conn = open_rw(journal)?;
    let session = get(&conn, journal, name)?;
    if let Some(stopped) = session.stopped {
        return Err(SessionError::Stopped { name: name.to_string(), stopped });
    }
    // A clock that stepped back would give an empty window: end it at its start at the earliest.
    let at = at.max(session.started);
    conn.execute(
        "UPDATE sessions SET stopped_ms = ?2, exit_code = ?3 WHERE name = ?1 AND stopped_ms IS NULL",
        params![name, names::ms(at), exit_code],
    )
    .map_err(|e| Error::write(journal, e))?;
    get(&conn, journal, name)
}

const COLUMNS: &str = "name, started_ms, stopped_ms, cgroup_id, cgroup_path, command, exit_code";

fn session_row(row: &Row<'_>) -> rusqlite::Result<Session> {
    Ok(Session {
        name: row.get(0)?,
        started: names::ts(1, row.get(1)?)?,
        stopped: row.get::<_, Option<i64>>(2)?.map(|v| names::ts(2, v)).transpose()?,
        cgroup_id: row.get::<_, Option<i64>>(3)?.map(i64::cast_unsigned),
        cgroup_path: row.get(4)?,
        command: row.get(5)?,
        exit_code: row.get(6)?,
    })
}

fn get(conn: &Connection, path: &Path, name: &str) -> Result<Session, SessionError> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM sessions WHERE name = ?1"), [name], session_row)
        .optional()
        .map_err(|e| Error::read(path, e))?
        .ok_or_else(|| SessionError::Unknown { name: name.to_string(), path: path.to_path_buf() })
}

impl JournalReader {
    /// Every session, oldest first (none in a journal older than schema 4).
    ///
    /// # Errors
    /// When the query fails.
    pub fn sessions(&self) -> Result<Vec<Session>, Error> {
        if !has_table(self.conn(), self.path())? {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn()
            .prepare(&format!("SELECT {COLUMNS} FROM sessions ORDER BY started_ms, name"))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt.query_map([], session_row).and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// The session `name`.
    ///
    /// # Errors
    /// [`SessionError::Unknown`], or the query failing.
    pub fn session(&self, name: &str) -> Result<Session, SessionError> {
        check_session_name(name)?;
        if !has_table(self.conn(), self.path())? {
            return Err(SessionError::Unknown { name: name.to_string(), path: self.path().to_path_buf() });
        }
        get(self.conn(), self.path(), name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_checked() {
        for good in ["a", "build-1.2_rc", &"x".repeat(64)] {
            check_session_name(good).unwrap();
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "é", "a\nb", &"x".repeat(65)] {
            assert!(matches!(check_session_name(bad), Err(SessionError::Name { .. })), "{bad:?}");
        }
    }

    #[test]
    fn start_stop_list_round_trip_and_refuse_misuse() {
        let dir = crate::journal::tests::tempdir();
        let writer = crate::journal::tests::writer_in(dir.path());
        let path = writer.path().to_path_buf();
        let t = |s| Timestamp::from_second(s).unwrap();
        let cg = SessionCgroup { id: 77, path: "/sys/fs/cgroup/x".into(), command: "curl 'a b'".into() };
        let a = start_session(&path, "a", t(100), None).unwrap();
        assert_eq!((a.started, a.stopped, a.cgroup_id), (t(100), None, None));
        start_session(&path, "b", t(150), Some(&cg)).unwrap();
        assert!(matches!(start_session(&path, "a", t(160), None), Err(SessionError::Exists { .. })));
        let a = stop_session(&path, "a", t(200), None).unwrap();
        assert_eq!(a.stopped, Some(t(200)));
        assert!(matches!(stop_session(&path, "a", t(300), None), Err(SessionError::Stopped { .. })));
        assert!(matches!(stop_session(&path, "zz", t(300), None), Err(SessionError::Unknown { .. })));
        // A clock that went back: the window is empty, never reversed.
        let b = stop_session(&path, "b", t(120), Some(3)).unwrap();
        assert_eq!((b.stopped, b.exit_code, b.cgroup_id), (Some(t(150)), Some(3), Some(77)));
        let reader = JournalReader::open(&path).unwrap();
        let names: Vec<_> = reader.sessions().unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(reader.session("b").unwrap().command.as_deref(), Some("curl 'a b'"));
        assert!(matches!(reader.session("c"), Err(SessionError::Unknown { .. })));
    }
}
