//! Per-destination evidence for claims: traffic per (app, remote address, host name, geolocation
//! answer, process) from connection records, with the databases that answered and the first and last
//! time each was seen. Read by `report` (the claims stage never reads SQLite itself).

use rusqlite::{Row, params};

use super::{
    Error, JournalReader, TimeRange,
    names::{self, StoredScope, count, ts},
};
use crate::names::NameSource;

/// A database as named in evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseRef {
    /// MMDB `database_type`.
    pub database_type: String,
    /// MMDB `build_epoch` (seconds).
    pub build_epoch: u64,
}

/// Traffic of one process of one app to one remote address with one geolocation answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceRow {
    /// App name.
    pub app: String,
    /// Remote address.
    pub ip: String,
    /// Scope (`unenriched` when no lookup was made).
    pub scope: StoredScope,
    /// Country.
    pub country: Option<String>,
    /// ASN.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<String>,
    /// Database asked for the country.
    pub country_db: Option<DatabaseRef>,
    /// Database asked for the ASN.
    pub asn_db: Option<DatabaseRef>,
    /// Executable of the process.
    pub exe: Option<String>,
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// User name.
    pub user: Option<String>,
    /// systemd unit.
    pub unit: Option<String>,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// IP-layer bytes sent.
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Distinct sockets.
    pub flows: u64,
    /// Earliest start of those flows.
    pub first_seen: jiff::Timestamp,
    /// Latest record of those flows in the range.
    pub last_seen: jiff::Timestamp,
    /// Host name of the flows (names stage), when known.
    pub hostname: Option<String>,
    /// Registrable domain of `hostname`.
    pub registrable_domain: Option<String>,
    /// The country databases disagreed on the address in at least one of these records.
    pub disputed: bool,
    /// Where `hostname` came from (`sni`, `quic_sni`, `dns`, `dns_host`, `getaddrinfo`); `None`
    /// without a name.
    pub name_source: Option<NameSource>,
}

impl JournalReader {
    /// Evidence rows of connection records whose time is in `range` (of app `app`, of sockets
    /// created in cgroup `cgroup`, when given), sorted by app, address, answer, executable and pid.
    ///
    /// # Errors
    /// When the query fails.
    pub fn evidence(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<EvidenceRow>, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT a.name, c.remote_ip, COALESCE(c.scope, ", super::names::sql!(StoredScope::Unenriched), "), c.country, c.asn, c.as_org,
                     cd.database_type, cd.build_epoch, ad.database_type, ad.build_epoch,
                     a.exe, c.app_pid, a.uid, a.user, a.unit,
                     SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), SUM(c.delta_wire_tx), SUM(c.delta_wire_rx),
                     COUNT(DISTINCT c.cookie), MIN(c.first_seen_ms), MAX(c.time_ms),
                     c.hostname, c.registrable_domain, COALESCE(MAX(c.consensus = ", super::names::sql!(Consensus::Disagree), "), 0), c.name_source
                 FROM connections c JOIN apps a ON a.id = c.app_id
                     LEFT JOIN databases cd ON cd.id = c.country_db
                     LEFT JOIN databases ad ON ad.id = c.asn_db
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.remote_ip IS NOT NULL AND (?3 IS NULL OR a.name = ?3)
                     AND (?4 IS NULL OR c.owner_cgroup_id = ?4)
                 GROUP BY a.name, c.remote_ip, c.hostname, c.registrable_domain, c.name_source, c.scope, c.country,
                     c.asn, c.as_org, c.country_db, c.asn_db, a.exe, c.app_pid, a.uid, a.user, a.unit
                 ORDER BY a.name, c.remote_ip, c.hostname, c.registrable_domain, c.name_source, c.scope, c.country, c.asn,
                     c.as_org, c.country_db, c.asn_db, a.exe, c.app_pid, a.uid"
            ))
            .map_err(|e| Error::read(self.path(), e))?;
        let rows = stmt
            .query_map(
                params![range.since.as_millisecond(), range.until.as_millisecond(), app, cgroup.map(u64::cast_signed)],
                evidence_row,
            )
            .map_err(|e| Error::read(self.path(), e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| Error::read(self.path(), e))
    }
}

fn evidence_row(row: &Row<'_>) -> rusqlite::Result<EvidenceRow> {
    let db = |t: usize, b: usize| -> rusqlite::Result<Option<DatabaseRef>> {
        let kind: Option<String> = row.get(t)?;
        let build: Option<i64> = row.get(b)?;
        Ok(kind.map(|database_type| DatabaseRef { database_type, build_epoch: count(build.unwrap_or(0)) }))
    };
    Ok(EvidenceRow {
        app: row.get(0)?,
        ip: row.get(1)?,
        scope: row.get(2)?,
        country: row.get(3)?,
        asn: row.get(4)?,
        as_org: row.get(5)?,
        country_db: db(6, 7)?,
        asn_db: db(8, 9)?,
        exe: row.get(10)?,
        pid: row.get(11)?,
        uid: row.get(12)?,
        user: row.get(13)?,
        unit: row.get(14)?,
        payload_tx: count(row.get(15)?),
        payload_rx: count(row.get(16)?),
        wire_tx: count(row.get(17)?),
        wire_rx: count(row.get(18)?),
        flows: count(row.get(19)?),
        first_seen: ts(20, row.get(20)?)?,
        last_seen: ts(21, row.get(21)?)?,
        hostname: row.get(22)?,
        registrable_domain: row.get(23)?,
        disputed: row.get::<_, i64>(24)? != 0,
        // `none` (no name): absent, as `hostname` is.
        name_source: names::get_opt(row, 25)?.filter(|s| *s != NameSource::None),
    })
}
