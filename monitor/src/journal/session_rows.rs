//! Report rows of one cgroup (a session of `monitor exec`), from connection records: the
//! residency table has no cgroup, so its rows are summed from the records' deltas instead.
//! Same keys and sums as [`JournalReader::residency`] and [`JournalReader::endpoints`].

use rusqlite::params;

use super::{
    EndpointRow, Error, JournalReader, ResidencyRow, TimeRange,
    names::{count, ms, ts},
};

impl JournalReader {
    /// Residency sums per (app, destination, provenance) of the records in `range` whose socket
    /// was created in cgroup `cgroup_id`. `new_flows` counts sockets first seen in the range,
    /// `flow_intervals` distinct sockets, `first_interval`/`last_interval_end` the first and last
    /// record times; nothing straddles.
    ///
    /// # Errors
    /// When the query fails.
    pub fn residency_of_cgroup(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup_id: u64,
    ) -> Result<Vec<ResidencyRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT a.name, COALESCE(c.scope, 'none') AS scope, c.country, c.asn, c.as_org, c.country_db,
                     c.asn_db, c.payload_source, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
                     SUM(c.delta_wire_tx), SUM(c.delta_wire_rx), SUM(c.delta_packets_tx), SUM(c.delta_packets_rx),
                     COUNT(DISTINCT CASE WHEN c.first_seen_ms >= ?1 THEN c.cookie END),
                     SUM(c.event != 'update' AND c.complete = 0), COUNT(DISTINCT c.cookie),
                     MIN(c.time_ms), MAX(c.time_ms)
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND c.owner_cgroup_id = ?3 AND (?4 IS NULL OR a.name = ?4)
                 GROUP BY a.name, scope, c.country, c.asn, c.as_org, c.country_db, c.asn_db, c.payload_source
                 ORDER BY a.name, scope, c.country, c.asn, c.as_org, c.country_db, c.asn_db, c.payload_source",
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup_id.cast_signed(), app], |row| {
                Ok(ResidencyRow {
                    app: row.get(0)?,
                    scope: row.get(1)?,
                    country: row.get(2)?,
                    asn: row.get(3)?,
                    as_org: row.get(4)?,
                    country_db: row.get(5)?,
                    asn_db: row.get(6)?,
                    payload_source: row.get(7)?,
                    payload_tx: count(row.get(8)?),
                    payload_rx: count(row.get(9)?),
                    wire_tx: count(row.get(10)?),
                    wire_rx: count(row.get(11)?),
                    packets_tx: count(row.get(12)?),
                    packets_rx: count(row.get(13)?),
                    new_flows: count(row.get(14)?),
                    incomplete_flows: count(row.get(15)?),
                    flow_intervals: count(row.get(16)?),
                    first_interval: ts(17, row.get(17)?)?,
                    last_interval_end: ts(18, row.get(18)?)?,
                    straddling_intervals: 0,
                })
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// [`JournalReader::endpoints`] of the sockets created in cgroup `cgroup_id`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn endpoints_of_cgroup(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup_id: u64,
    ) -> Result<Vec<EndpointRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT a.name, c.remote_ip, CASE WHEN c.direction = 'inbound' THEN NULL ELSE c.remote_port END AS port,
                     c.protocol, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), SUM(c.delta_wire_tx),
                     SUM(c.delta_wire_rx), COUNT(DISTINCT c.cookie), MAX(c.time_ms),
                     c.scope, c.country, c.asn, c.as_org
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND c.remote_ip IS NOT NULL AND c.owner_cgroup_id = ?3
                     AND (?4 IS NULL OR a.name = ?4)
                 GROUP BY a.name, c.remote_ip, port, c.protocol
                 ORDER BY a.name, c.remote_ip, port, c.protocol",
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup_id.cast_signed(), app], |row| {
                Ok(EndpointRow {
                    app: row.get(0)?,
                    ip: row.get(1)?,
                    port: row.get(2)?,
                    protocol: row.get(3)?,
                    payload_tx: count(row.get(4)?),
                    payload_rx: count(row.get(5)?),
                    wire_tx: count(row.get(6)?),
                    wire_rx: count(row.get(7)?),
                    flows: count(row.get(8)?),
                    scope: row.get(10)?,
                    country: row.get(11)?,
                    asn: row.get(12)?,
                    as_org: row.get(13)?,
                })
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }
}
