//! The `alerts` table: the first violation of a claim by a destination in a period, with its
//! repeats counted in the same row. Written by the daemon's sink as the claims stage hands
//! alerts over; listed by `monitor alerts`.

use jiff::Timestamp;
use rusqlite::{Row, params};
use serde::Serialize;

use super::{
    Error, JournalReader, JournalWriter,
    names::{count, int, ms, ts},
};

/// One alert: a claim violated by a destination in a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertRow {
    /// ISO week of the violation ("2026-W48"), in the report time zone.
    pub period: String,
    /// Claim name.
    pub claim: String,
    /// Remote address.
    pub destination: String,
    /// App of the first violating record.
    pub app: String,
    /// Executable of that app, when known.
    pub exe: Option<String>,
    /// Process id of the first violating record.
    pub pid: u32,
    /// User name, when known.
    pub user: Option<String>,
    /// Country of the destination.
    pub country: Option<String>,
    /// ASN of the destination.
    pub asn: Option<u32>,
    /// AS organisation of the destination.
    pub as_org: Option<String>,
    /// The rule that was broken, e.g. `denied_countries`.
    pub rule: String,
    /// First violating record (its latest kernel event).
    pub first_seen: Timestamp,
    /// Latest violating record.
    pub last_seen: Timestamp,
    /// Violating records after the first one (counted, not re-alerted).
    pub repeats: u64,
    /// Payload bytes sent in the violating records.
    pub payload_tx: u64,
    /// Payload bytes received in the violating records.
    pub payload_rx: u64,
}

const COLUMNS: &str = "period, claim, destination, app, exe, pid, user, country, asn, as_org, rule, first_ms, \
                       last_ms, repeats, payload_tx, payload_rx";

impl JournalWriter {
    /// Inserts alerts, or updates the repeats, latest time and bytes of ones already stored
    /// (same period, claim and destination). One transaction.
    ///
    /// # Errors
    /// When the write fails (nothing is written then).
    pub fn save_alerts(&mut self, alerts: &[AlertRow]) -> Result<(), Error> {
        // Not into a journal that was removed or replaced (they would be lost with it).
        self.check_file()?;
        let path = self.path().to_path_buf();
        let map = |source| Error::write(&path, source);
        let tx = self.conn.transaction().map_err(map)?;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO alerts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, \
                     ?14, ?15, ?16)
                     ON CONFLICT (period, claim, destination) DO UPDATE SET last_ms = max(last_ms, excluded.last_ms),
                         repeats = excluded.repeats, payload_tx = excluded.payload_tx,
                         payload_rx = excluded.payload_rx"
                ))
                .map_err(map)?;
            for a in alerts {
                stmt.execute(params![
                    a.period,
                    a.claim,
                    a.destination,
                    a.app,
                    a.exe,
                    a.pid,
                    a.user,
                    a.country,
                    a.asn,
                    a.as_org,
                    a.rule,
                    ms(a.first_seen),
                    ms(a.last_seen),
                    int(a.repeats),
                    int(a.payload_tx),
                    int(a.payload_rx),
                ])
                .map_err(map)?;
            }
        }
        tx.commit().map_err(map)
    }

    /// Alerts stored for `period` (to resume counting after a restart without re-alerting).
    ///
    /// # Errors
    /// When the query fails.
    pub fn alerts_of_period(&self, period: &str) -> Result<Vec<AlertRow>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE period = ?1"))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt.query_map([period], alert_row).map_err(|e| Error::read(self.path(), e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| Error::read(self.path(), e))
    }
}

impl JournalReader {
    /// Alerts whose latest violation is at or after `since` (all when `None`), oldest first.
    /// A journal from before the `alerts` table (not yet migrated by a daemon) has none.
    ///
    /// # Errors
    /// When the query fails.
    pub fn alerts(&self, since: Option<Timestamp>) -> Result<Vec<AlertRow>, Error> {
        let exists: i64 = self
            .conn()
            .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'alerts'", [], |row| {
                row.get(0)
            })
            .map_err(|e| Error::read(self.path(), e))?;
        if exists == 0 {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn()
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM alerts WHERE ?1 IS NULL OR last_ms >= ?1
                 ORDER BY first_ms, claim, destination"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt.query_map([since.map(ms)], alert_row).map_err(|e| Error::read(self.path(), e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| Error::read(self.path(), e))
    }
}

fn alert_row(row: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        period: row.get(0)?,
        claim: row.get(1)?,
        destination: row.get(2)?,
        app: row.get(3)?,
        exe: row.get(4)?,
        pid: row.get(5)?,
        user: row.get(6)?,
        country: row.get(7)?,
        asn: row.get(8)?,
        as_org: row.get(9)?,
        rule: row.get(10)?,
        first_seen: ts(11, row.get(11)?)?,
        last_seen: ts(12, row.get(12)?)?,
        repeats: count(row.get(13)?),
        payload_tx: count(row.get(14)?),
        payload_rx: count(row.get(15)?),
    })
}
