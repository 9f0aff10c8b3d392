//! Narrow reads of a period: per app payload (the timeline's buckets) and the public
//! destinations met (a previous period's, for new destinations), from the `residency` table or
//! from the connection records, each the keys or sums of the corresponding full read
//! ([`JournalReader::residency`], [`JournalReader::residency_of_records`],
//! [`JournalReader::endpoints`]) without the rest.

use rusqlite::params;

use super::{
    DestinationRow, Error, JournalReader, TimeRange,
    names::{count, ms},
};

impl JournalReader {
    /// Payload per app of the `residency` rows of `range`: the payload sums of
    /// [`JournalReader::residency`] without its keys, for the timeline's buckets.
    ///
    /// # Errors
    /// When the query fails.
    pub fn payload_of_residency(&self, range: TimeRange, app: Option<&str>) -> Result<Vec<(String, u64, u64)>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT app, SUM(payload_tx), SUM(payload_rx)
                 FROM residency
                 WHERE interval_start >= (?1 + 999) / 1000 AND interval_start < (?2 + 999) / 1000
                     AND (?3 IS NULL OR app = ?3)
                 GROUP BY app ORDER BY app",
            )
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app], |row| {
                Ok((row.get(0)?, count(row.get(1)?), count(row.get(2)?)))
            })
            .map_err(|e| Error::read(self.path(), e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// The public destinations (country, ASN) per app of the `residency` rows of `range`: the
    /// keys of [`JournalReader::residency`]'s public rows, without their sums (a report's previous
    /// period, for its new destinations).
    ///
    /// # Errors
    /// When the query fails.
    pub fn destinations(&self, range: TimeRange, app: Option<&str>) -> Result<Vec<DestinationRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT DISTINCT app, country, asn FROM residency
                 WHERE interval_start >= (?1 + 999) / 1000 AND interval_start < (?2 + 999) / 1000
                     AND scope = ",
                super::names::sql!(Scope::Public),
                " AND (?3 IS NULL OR app = ?3)
                 ORDER BY app, country, asn"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app], super::rollup::destination_row)
            .map_err(|e| Error::read(self.path(), e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// Payload per app of the connection records whose time is in `range` (of sockets created in
    /// cgroup `cgroup` when given): the payload sums of [`JournalReader::residency_of_records`]
    /// without its keys and flow counts, for the timeline's buckets (a third of the work).
    ///
    /// # Errors
    /// When the query fails.
    pub fn payload_of_records(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<(String, u64, u64)>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT a.name, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx)
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND (?3 IS NULL OR c.owner_cgroup_id = ?3) AND (?4 IS NULL OR a.name = ?4)
                 GROUP BY a.name ORDER BY a.name"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup.map(u64::cast_signed), app], |row| {
                Ok((row.get(0)?, count(row.get(1)?), count(row.get(2)?)))
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// The public destinations (country, ASN) per app of the connection records whose time is in
    /// `range` (of sockets created in cgroup `cgroup` when given): the keys of
    /// [`JournalReader::residency_of_records`]' public rows, without their sums (a report's
    /// previous period, for its new destinations).
    ///
    /// # Errors
    /// When the query fails.
    pub fn destinations_of_records(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<DestinationRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT DISTINCT a.name, c.country, c.asn
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.scope = ",
                super::names::sql!(Scope::Public),
                " AND (?3 IS NULL OR c.owner_cgroup_id = ?3) AND (?4 IS NULL OR a.name = ?4)
                 ORDER BY 1, 2, 3"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup.map(u64::cast_signed), app], |row| {
                Ok(DestinationRow { app: row.get(0)?, country: row.get(1)?, asn: row.get(2)? })
            })
            .and_then(Iterator::collect);
        rows.map_err(|e| Error::read(self.path(), e))
    }

    /// The distinct endpoint keys (app, remote address, port, protocol) of the connection records
    /// whose time is in `range` (of sockets created in cgroup `cgroup` when given): the keys of
    /// [`JournalReader::endpoints`] without their sums and flow counts (a report's previous
    /// period, for which endpoints are new). Unsorted.
    ///
    /// # Errors
    /// When the query fails.
    pub fn endpoint_keys(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<EndpointKey>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT DISTINCT a.name, c.remote_ip,
                     CASE WHEN c.direction = ",
                super::names::sql!(Direction::Inbound),
                " THEN NULL ELSE c.remote_port END, c.protocol
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.remote_ip IS NOT NULL AND (?3 IS NULL OR c.owner_cgroup_id = ?3)
                     AND (?4 IS NULL OR a.name = ?4)"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup.map(u64::cast_signed), app], |row| {
                Ok(EndpointKey { app: row.get(0)?, ip: row.get(1)?, port: row.get(2)?, protocol: row.get(3)? })
            })
            .map_err(|e| Error::read(self.path(), e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| Error::read(self.path(), e))
    }
}

/// The key of an [`super::EndpointRow`]: an app's remote endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    /// App name.
    pub app: String,
    /// Remote address.
    pub ip: String,
    /// Remote port (`None`: inbound).
    pub port: Option<u16>,
    /// Transport protocol name.
    pub protocol: String,
}
