//! Report rows summed from connection records instead of the residency table: for a session of
//! `monitor exec` (the residency table has no cgroup) and for any period whose bounds are not on
//! the residency intervals (the table cannot be cut inside an interval). Same keys and sums as
//! [`JournalReader::residency`], counted by record time. Also the records themselves, as
//! evidence bundles list them.

use jiff::Timestamp;
use rusqlite::params;

use super::{
    Error, JournalConfig, JournalReader, ResidencyRow, TimeRange,
    names::{count, ms, ts},
};

impl JournalReader {
    /// Residency sums per (app, destination, provenance) of the connection records whose time
    /// is in `range` (of sockets created in cgroup `cgroup` when given), from their deltas.
    /// `new_flows` counts the flows' first records in the range, by the same rule as the
    /// residency table ([`crate::tracker::FlowRecord::is_first`]: totals equal deltas; an empty
    /// `update` is not one; a flow continued across a restart, whose first record of the new run
    /// counts from the restart, is not new: it has an earlier record with bytes of the same socket
    /// and remote end since its `first_seen`, which a continued flow keeps, and not a `close`: a
    /// socket connected again to the same address after an ended connection is a new flow), so a peer of an unconnected
    /// socket, which shares its socket's cookie, is a flow of its own; `flow_intervals` counts distinct flows (cookie and peer),
    /// `first_interval`/`last_interval_end` the first and last record times.
    ///
    /// # Errors
    /// When the query fails.
    pub fn residency_of_records(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<ResidencyRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT a.name, COALESCE(c.scope, ",
                super::names::sql!(StoredScope::None),
                ") AS scope, c.country, c.asn, c.as_org, c.country_db,
                     c.asn_db, c.payload_source, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
                     SUM(c.delta_wire_tx), SUM(c.delta_wire_rx), SUM(c.delta_packets_tx), SUM(c.delta_packets_rx),
                     SUM(CASE WHEN c.payload_tx = c.delta_payload_tx AND c.payload_rx = c.delta_payload_rx
                         AND c.wire_tx = c.delta_wire_tx AND c.wire_rx = c.delta_wire_rx
                         AND c.packets_tx = c.delta_packets_tx AND c.packets_rx = c.delta_packets_rx
                         AND (c.event != ",
                super::names::sql!(RecordKind::Update),
                " OR c.payload_tx + c.payload_rx + c.wire_tx + c.wire_rx
                             + c.packets_tx + c.packets_rx > 0)
                         THEN NOT EXISTS (SELECT 1 FROM connection_rows e WHERE e.cookie = c.cookie
                             AND e.remote_ip IS c.remote_ip AND e.remote_port IS c.remote_port
                             AND e.lookup IS NOT NULL AND e.time_ms >= c.first_seen_ms AND e.time_ms < c.time_ms
                             AND e.payload_tx + e.payload_rx + e.wire_tx + e.wire_rx + e.packets_tx + e.packets_rx > 0
                             AND (SELECT s.event FROM connection_shapes s WHERE s.id = e.shape_id) != ",
                super::names::sql!(RecordKind::Close),
                ")
                         ELSE 0 END),
                     SUM(c.event != ",
                super::names::sql!(RecordKind::Update),
                " AND c.complete = 0),
                     COUNT(DISTINCT c.cookie || ' ' || COALESCE(c.remote_ip, '') || ' ' || COALESCE(c.remote_port, '')),
                     MIN(c.time_ms), MAX(c.time_ms)
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND (?3 IS NULL OR c.owner_cgroup_id = ?3) AND (?4 IS NULL OR a.name = ?4)
                 GROUP BY a.name, scope, c.country, c.asn, c.as_org, c.country_db, c.asn_db, c.payload_source
                 ORDER BY a.name, scope, c.country, c.asn, c.as_org, c.country_db, c.asn_db, c.payload_source"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup.map(u64::cast_signed), app], |row| {
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
                })
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// Whether `t` is a bound of the journal's residency intervals, so that a period starting
    /// or ending there takes whole rows of the `residency` table: a whole multiple of the
    /// interval its latest daemon writes (`residency_interval_secs`; the default without a
    /// daemon) that no residency row spans (a row of a longer interval an earlier configuration
    /// wrote).
    ///
    /// # Errors
    /// When the query fails.
    pub fn is_interval_bound(&self, t: Timestamp) -> Result<bool, Error> {
        let (interval, spanned): (Option<i64>, bool) = self
            .conn()
            .query_row(
                // Intervals divide 900 s: only rows starting in the 15 minutes before `t` can span it.
                "SELECT (SELECT residency_interval_secs FROM daemon_state WHERE id = 1),
                     EXISTS (SELECT 1 FROM residency WHERE interval_start >= ?1 / 1000 - 900
                         AND interval_start < (?1 + 999) / 1000 AND (interval_start + interval_secs) * 1000 > ?1)",
                params![ms(t)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let default = i64::try_from(JournalConfig::default().residency_interval_secs).unwrap_or(i64::MAX);
        let interval_ms = interval.unwrap_or(default).saturating_mul(1000);
        Ok(interval_ms > 0 && ms(t).rem_euclid(interval_ms) == 0 && !spanned)
    }

    /// Times of the first and last records in `range` of sockets created in cgroup `cgroup_id`.
    /// A session's sockets may close after its command ended (a FIN still in flight, a child
    /// left running), and their records still belong to the session.
    ///
    /// # Errors
    /// When the query fails or a stored time is out of range.
    pub fn cgroup_span(
        &self,
        cgroup_id: u64,
        range: TimeRange,
    ) -> Result<Option<(jiff::Timestamp, jiff::Timestamp)>, Error> {
        let span: (Option<i64>, Option<i64>) = self
            .conn()
            .query_row(
                concat!(
                    "SELECT MIN(time_ms), MAX(time_ms) FROM connections
                 WHERE owner_cgroup_id = ?1 AND time_ms >= ?2 AND time_ms < ?3 AND",
                    super::spans::id_window!("id", "?2", "?3")
                ),
                params![cgroup_id.cast_signed(), ms(range.since), ms(range.until)],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let (Some(first), Some(last)) = span else { return Ok(None) };
        let first = ts(0, first).map_err(|e| Error::read(self.path(), e))?;
        let last = ts(1, last).map_err(|e| Error::read(self.path(), e))?;
        Ok(Some((first, last)))
    }
}

/// One connection record as evidence bundles list it (`connections.csv`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecordRow {
    /// `connections.id`.
    pub id: i64,
    /// Record time (RFC 3339).
    pub time: String,
    /// `update`, `close` or `shutdown`.
    pub event: String,
    /// Socket cookie.
    pub cookie: u64,
    /// App name.
    pub app: String,
    /// App executable.
    pub exe: Option<String>,
    /// Process id.
    pub pid: i64,
    /// User id.
    pub uid: i64,
    /// `comm` of the socket's creator.
    pub comm: String,
    /// cgroup id of the socket's creator.
    pub cgroup_id: u64,
    /// Protocol.
    pub protocol: String,
    /// Direction.
    pub direction: String,
    /// Local address.
    pub local_ip: Option<String>,
    /// Local port.
    pub local_port: Option<i64>,
    /// Remote address.
    pub remote_ip: Option<String>,
    /// Remote port.
    pub remote_port: Option<i64>,
    /// Payload bytes sent since the previous record of the socket.
    pub delta_payload_tx: u64,
    /// Payload bytes received since the previous record.
    pub delta_payload_rx: u64,
    /// IP-layer bytes sent since the previous record.
    pub delta_wire_tx: u64,
    /// IP-layer bytes received since the previous record.
    pub delta_wire_rx: u64,
    /// Scope.
    pub scope: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// ASN.
    pub asn: Option<i64>,
    /// AS organisation.
    pub as_org: Option<String>,
    /// `databases.id` that gave the country.
    pub country_db: Option<i64>,
    /// `databases.id` that gave the ASN.
    pub asn_db: Option<i64>,
}

impl JournalReader {
    /// The connection records in `range` (of cgroup `cgroup_id` when given), by id: the rows
    /// every figure of a report of that range is summed from.
    ///
    /// # Errors
    /// When the query fails.
    pub fn records(&self, range: TimeRange, cgroup_id: Option<u64>) -> Result<Vec<RecordRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT c.id, c.time_ms, c.event, c.cookie, a.name, a.exe, c.owner_tgid, c.owner_uid, c.owner_comm,
                     c.owner_cgroup_id, c.protocol, c.direction, c.local_ip, c.local_port, c.remote_ip, c.remote_port,
                     c.delta_payload_tx, c.delta_payload_rx, c.delta_wire_tx, c.delta_wire_rx, c.scope, c.country,
                     c.asn, c.as_org, c.country_db, c.asn_db
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND (?3 IS NULL OR c.owner_cgroup_id = ?3)
                 ORDER BY c.id"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup_id.map(u64::cast_signed)], |row| {
                Ok(RecordRow {
                    id: row.get(0)?,
                    time: ts(1, row.get(1)?)?.to_string(),
                    event: row.get(2)?,
                    cookie: row.get::<_, i64>(3)?.cast_unsigned(),
                    app: row.get(4)?,
                    exe: row.get(5)?,
                    pid: row.get(6)?,
                    uid: row.get(7)?,
                    comm: row.get(8)?,
                    cgroup_id: row.get::<_, i64>(9)?.cast_unsigned(),
                    protocol: row.get(10)?,
                    direction: row.get(11)?,
                    local_ip: row.get(12)?,
                    local_port: row.get(13)?,
                    remote_ip: row.get(14)?,
                    remote_port: row.get(15)?,
                    delta_payload_tx: count(row.get(16)?),
                    delta_payload_rx: count(row.get(17)?),
                    delta_wire_tx: count(row.get(18)?),
                    delta_wire_rx: count(row.get(19)?),
                    scope: row.get(20)?,
                    country: row.get(21)?,
                    asn: row.get(22)?,
                    as_org: row.get(23)?,
                    country_db: row.get(24)?,
                    asn_db: row.get(25)?,
                })
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }
}
