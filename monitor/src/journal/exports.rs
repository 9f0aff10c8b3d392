//! The `exports` table: which weekly reports were written, so each is written exactly once.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Error, JournalReader, names, open};

/// One exported report file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportRow {
    /// ISO week, e.g. "2026-W47".
    pub week: String,
    /// IANA time zone the week was cut in.
    pub time_zone: String,
    /// Format name ("json", "markdown", ...).
    pub format: String,
    /// File written.
    pub path: PathBuf,
    /// When it was written.
    pub written_at: Timestamp,
}

/// Records an export in the journal at `journal` (a short read-write connection beside the
/// daemon's writer; WAL and the busy timeout let both proceed).
///
/// Returns `false` when the same (week, time zone, format) was already recorded (kept as is).
///
/// # Errors
/// When the journal cannot be opened or written.
pub fn record_export(journal: &Path, row: &ExportRow) -> Result<bool, Error> {
    let conn = open::open_existing_rw(journal)?;
    let ExportRow { week, time_zone, format, path, written_at } = row;
    let inserted = conn
        .execute(
            "INSERT INTO exports (week, time_zone, format, path, written_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (week, time_zone, format) DO NOTHING",
            params![week, time_zone, format, path.to_string_lossy(), names::ms(*written_at)],
        )
        .map_err(|source| Error::write(journal, source))?;
    Ok(inserted == 1)
}

impl JournalReader {
    /// The export of (week, time zone, format), if recorded.
    ///
    /// # Errors
    /// When the query fails.
    pub fn export(&self, week: &str, time_zone: &str, format: &str) -> Result<Option<ExportRow>, Error> {
        self.conn()
            .query_row(
                "SELECT path, written_ms FROM exports WHERE week = ?1 AND time_zone = ?2 AND format = ?3",
                params![week, time_zone, format],
                |row| {
                    Ok(ExportRow {
                        week: week.to_string(),
                        time_zone: time_zone.to_string(),
                        format: format.to_string(),
                        path: PathBuf::from(row.get::<_, String>(0)?),
                        written_at: names::ts(1, row.get(1)?)?,
                    })
                },
            )
            .optional()
            .map_err(|source| Error::read(self.path(), source))
    }
}
