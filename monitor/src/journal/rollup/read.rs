//! Reading the rollups: the state, and a week's rows in the shapes the fine-table queries return.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::fold::INBOUND_PORT;
use crate::journal::{
    EndpointRow, Error, JournalReader, ResidencyRow, TimeRange,
    names::{count, ts},
    reader::residency_row,
};

/// Which rollups the journal keeps (`rollup_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollupState {
    /// IANA time zone the weeks are cut in.
    pub time_zone: String,
    /// Start (Unix s) of the first week whose rollups are complete.
    pub(super) covered_from: i64,
}

impl RollupState {
    /// Whether the rollups of the week starting at `since` (and of every later week) are complete.
    #[must_use]
    pub fn covers(&self, since: Timestamp) -> bool {
        since.as_second() >= self.covered_from
    }
}

/// The endpoints of one app in one week, from `endpoint_week`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEndpoints {
    /// App name.
    pub app: String,
    /// Endpoints of the app in the week.
    pub total: u64,
    /// Those absent from the previous week.
    pub new: u64,
    /// The first endpoints by payload (up + down) descending, then address, port, protocol;
    /// each with whether it is absent from the previous week.
    pub top: Vec<(EndpointRow, bool)>,
}

/// A public destination of an app in a week (from `residency_week`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationRow {
    /// App name.
    pub app: String,
    /// Country, when known.
    pub country: Option<String>,
    /// ASN, when known.
    pub asn: Option<u32>,
}

/// A [`DestinationRow`] from `app, country, asn` columns that write an unknown country as ''
/// and an unknown ASN as 0 (`residency`, `residency_week`).
pub(in crate::journal) fn destination_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DestinationRow> {
    let country: String = row.get(1)?;
    let asn: u32 = row.get(2)?;
    Ok(DestinationRow {
        app: row.get(0)?,
        country: (!country.is_empty()).then_some(country),
        asn: (asn != 0).then_some(asn),
    })
}

/// The rollup state; `None` before schema version 2 or before a writer built the rollups.
pub(super) fn state(conn: &Connection) -> rusqlite::Result<Option<RollupState>> {
    let version: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version < 2 {
        return Ok(None);
    }
    conn.query_row("SELECT time_zone, covered_from FROM rollup_state WHERE id = 1", [], |row| {
        Ok(RollupState { time_zone: row.get(0)?, covered_from: row.get(1)? })
    })
    .optional()
}

impl JournalReader {
    /// The rollups the journal keeps, if any.
    ///
    /// # Errors
    /// When the query fails.
    pub fn rollup_state(&self) -> Result<Option<RollupState>, Error> {
        state(self.conn()).map_err(|e| Error::read(self.path(), e))
    }

    /// Time before which residency rows were purged (retention), if a purge ran.
    ///
    /// # Errors
    /// When the query fails.
    pub fn residency_purged_before(&self) -> Result<Option<Timestamp>, Error> {
        let v: Option<i64> = self
            .conn()
            .query_row("SELECT value FROM meta WHERE key = 'residency_purged_before_ms'", [], |row| row.get(0))
            .optional()
            .map_err(|e| Error::read(self.path(), e))?;
        v.map(|v| ts(0, v)).transpose().map_err(|e| Error::read(self.path(), e))
    }

    /// [`residency`](Self::residency) of the rollup week `week` (its exact bounds), from
    /// `residency_week`: the same rows, sums and order.
    ///
    /// # Errors
    /// When a query fails.
    pub fn residency_week(&self, week: TimeRange, app: Option<&str>) -> Result<Vec<ResidencyRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT app, scope, country, asn, as_org, country_db, asn_db, payload_source, payload_tx, payload_rx,
                     wire_tx, wire_rx, packets_tx, packets_rx, new_flows, incomplete_flows, flow_intervals,
                     first_interval, last_interval_end
                 FROM residency_week WHERE week_start = ?1 AND (?2 IS NULL OR app = ?2)
                 ORDER BY app, scope, country, asn, as_org, country_db, asn_db, payload_source",
            )
            .map_err(err)?;
        stmt.query_map(params![week.since.as_second(), app], residency_row)
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)
    }

    /// The public destinations (country, ASN) per app in the rollup week starting at `since`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn destinations_week(&self, since: Timestamp, app: Option<&str>) -> Result<Vec<DestinationRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT DISTINCT app, country, asn FROM residency_week
                 WHERE week_start = ?1 AND scope = ",
                crate::journal::names::sql!(Scope::Public),
                " AND (?2 IS NULL OR app = ?2) ORDER BY app, country, asn"
            ))
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since.as_second(), app], destination_row)
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        Ok(rows)
    }

    /// Endpoints per app in the rollup week starting at `since`: counts and the first `top`
    /// (as [`endpoints`](Self::endpoints) would give them, sorted as reports list them).
    ///
    /// # Errors
    /// When a query fails.
    pub fn endpoints_week(&self, since: Timestamp, app: Option<&str>, top: usize) -> Result<Vec<AppEndpoints>, Error> {
        let err = |e| Error::read(self.path(), e);
        let week = since.as_second();
        let mut counts = self
            .conn()
            .prepare_cached(
                "SELECT app, COUNT(*), SUM(new) FROM endpoint_week WHERE week_start = ?1 AND (?2 IS NULL OR app = ?2)
                 GROUP BY app ORDER BY app",
            )
            .map_err(err)?;
        let apps: BTreeMap<String, (u64, u64)> = counts
            .query_map(params![week, app], |row| Ok((row.get(0)?, (count(row.get(1)?), count(row.get(2)?)))))
            .map_err(err)?
            .collect::<Result<_, _>>()
            .map_err(err)?;
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT remote_ip, port, protocol, payload_tx, payload_rx, wire_tx, wire_rx, flows, scope, country, asn,
                     as_org, new
                 FROM endpoint_week WHERE week_start = ?1 AND app = ?2
                 ORDER BY payload_tx + payload_rx DESC, remote_ip, port, protocol LIMIT ?3",
            )
            .map_err(err)?;
        let limit = i64::try_from(top).unwrap_or(i64::MAX);
        let mut out = Vec::with_capacity(apps.len());
        for (name, (total, new)) in apps {
            let top = stmt
                .query_map(params![week, name, limit], |row| {
                    let port: i64 = row.get(1)?;
                    let endpoint = EndpointRow {
                        app: name.clone(),
                        ip: row.get(0)?,
                        port: if port == INBOUND_PORT { None } else { Some(row.get(1)?) },
                        protocol: row.get(2)?,
                        payload_tx: count(row.get(3)?),
                        payload_rx: count(row.get(4)?),
                        wire_tx: count(row.get(5)?),
                        wire_rx: count(row.get(6)?),
                        flows: count(row.get(7)?),
                        scope: row.get(8)?,
                        country: row.get(9)?,
                        asn: row.get(10)?,
                        as_org: row.get(11)?,
                    };
                    Ok((endpoint, row.get(12)?))
                })
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?;
            out.push(AppEndpoints { app: name, total, new, top });
        }
        Ok(out)
    }
}
