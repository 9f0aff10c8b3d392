//! One row per outbound socket (flow) for the emulator join (issue 12): who, to where, when and
//! how many payload bytes, from the connection records of a period. The join itself is the
//! report's (`report::join`); this module only reads.

use jiff::Timestamp;
use rusqlite::{Row, params};
use serde::Serialize;

use super::{
    Error, JournalReader, TimeRange,
    names::{count, ms, ts},
};

/// Which apps' flows [`JournalReader::outbound_flows`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowApps<'a> {
    /// Every app.
    All,
    /// Apps whose name starts with this prefix (compared byte for byte, no wildcards).
    Prefix(&'a str),
}

/// One outbound socket's traffic in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRow {
    /// App name.
    pub app: String,
    /// The app's Android package, when the journal has one (schema 6 and later).
    pub package: Option<String>,
    /// Socket cookie (unique per boot of the machine that wrote the journal).
    pub cookie: u64,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Remote address.
    pub ip: String,
    /// Remote port.
    pub port: u16,
    /// When the socket was first seen.
    pub first_seen: Timestamp,
    /// Time of its latest record in the period.
    pub last_seen: Timestamp,
    /// Payload bytes sent (records in the period).
    pub payload_tx: u64,
    /// Payload bytes received (records in the period).
    pub payload_rx: u64,
}

impl JournalReader {
    /// Outbound flows with a remote address and port whose records fall in `range`, one row per
    /// (app, socket), sorted by first seen, app, cookie. Bytes are the sums of the records in
    /// `range` (a flow crossing an edge of the range counts only its part inside).
    ///
    /// # Errors
    /// When the query fails.
    pub fn outbound_flows(&self, range: TimeRange, apps: FlowApps<'_>) -> Result<Vec<FlowRow>, Error> {
        let prefix = match apps {
            FlowApps::All => None,
            FlowApps::Prefix(p) => Some(p),
        };
        // Journals from before the Android columns read them as NULL (`legacy`).
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT a.name, a.android_package, c.cookie, c.protocol, c.remote_ip, c.remote_port, MIN(c.first_seen_ms),
                 MAX(c.time_ms), SUM(c.delta_payload_tx), SUM(c.delta_payload_rx)
             FROM connections c JOIN apps a ON a.id = c.app_id
             WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.direction = ", super::names::sql!(Direction::Outbound), "
                 AND c.remote_ip IS NOT NULL AND c.remote_port IS NOT NULL
                 AND (?3 IS NULL OR substr(a.name, 1, length(?3)) = ?3)
             GROUP BY c.app_id, c.cookie, c.protocol, c.remote_ip, c.remote_port
             ORDER BY MIN(c.first_seen_ms), a.name, c.cookie"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), prefix], flow_row)
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }
}

fn flow_row(row: &Row<'_>) -> rusqlite::Result<FlowRow> {
    let cookie: i64 = row.get(2)?;
    let port: i64 = row.get(5)?;
    Ok(FlowRow {
        app: row.get(0)?,
        package: row.get(1)?,
        // Cookies are u64 stored as SQLite's i64 (same bits).
        cookie: cookie.cast_unsigned(),
        protocol: row.get(3)?,
        ip: row.get(4)?,
        port: u16::try_from(port).unwrap_or(0),
        first_seen: ts(6, row.get(6)?)?,
        last_seen: ts(7, row.get(7)?)?,
        payload_tx: count(row.get(8)?),
        payload_rx: count(row.get(9)?),
    })
}
