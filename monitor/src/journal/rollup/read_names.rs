//! Reading the rollups of the names and residency-truth sections (schema 11): a week's rows in
//! the shapes `JournalReader::services`, `truth` and `endpoint_hostnames` give for the same week
//! from the connection records.

use std::collections::HashMap;

use jiff::Timestamp;
use rusqlite::params;

use crate::{
    enrich::Consensus,
    journal::{Error, JournalReader, ServiceRow, TruthRow, names::count},
};

/// First schema with `service_week`, `endpoint_name_week` and the truth columns of `endpoint_week`.
pub const NAMES_ROLLUP_SCHEMA: u32 = 11;

/// '' (the rollups' NULL) as `None`.
fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl JournalReader {
    /// [`services`](Self::services) of the rollup week starting at `since`, from `service_week`:
    /// the same rows, sums and order.
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn services_week(&self, since: Timestamp, app: Option<&str>) -> Result<Vec<ServiceRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT app, hostname, registrable_domain, name_source, country, asn, as_org, payload_tx, payload_rx,
                     flows
                 FROM service_week WHERE week_start = ?1 AND (?2 IS NULL OR app = ?2)
                 ORDER BY app, hostname, registrable_domain, name_source, country, asn, as_org",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since.as_second(), app], |row| {
                let asn: i64 = row.get(5)?;
                Ok(ServiceRow {
                    app: row.get(0)?,
                    hostname: text(row.get(1)?),
                    registrable_domain: text(row.get(2)?),
                    name_source: text(row.get(3)?),
                    country: text(row.get(4)?),
                    asn: u32::try_from(asn).ok(),
                    as_org: text(row.get(6)?),
                    payload_tx: count(row.get(7)?),
                    payload_rx: count(row.get(8)?),
                    flows: count(row.get(9)?),
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }

    /// [`endpoint_hostnames`](Self::endpoint_hostnames) of the rollup week starting at `since`,
    /// from `endpoint_name_week`.
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn endpoint_hostnames_week(
        &self,
        since: Timestamp,
        app: Option<&str>,
    ) -> Result<Vec<(String, String, String)>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT app, remote_ip, hostname FROM endpoint_name_week
                 WHERE week_start = ?1 AND (?2 IS NULL OR app = ?2) ORDER BY 1, 2, 3",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since.as_second(), app], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }

    /// [`truth`](Self::truth) of the rollup week starting at `since`, from `endpoint_week`: per
    /// (app, public address) the sums over its endpoints, the answers of the latest record and
    /// the smallest RTT to the address (any app).
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn truth_week(&self, since: Timestamp, app: Option<&str>) -> Result<Vec<TruthRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let week = since.as_second();
        let rtt: HashMap<String, u32> = self
            .conn()
            .prepare_cached(
                "SELECT remote_ip, MIN(rtt_min_us) FROM endpoint_week
                 WHERE week_start = ?1 AND scope = 'public' AND rtt_min_us > 0 GROUP BY remote_ip",
            )
            .map_err(err)?
            .query_map(params![week], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))
            .map_err(err)?
            .filter_map(|r| r.ok().and_then(|(ip, us)| Some((ip, u32::try_from(us).ok()?))))
            .collect();
        // One MAX() aggregate: SQLite takes the bare columns from the endpoint of the latest record.
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT app, remote_ip, SUM(payload_tx), SUM(payload_rx), MAX(latest_ms), country, consensus,
                     country_answers
                 FROM endpoint_week WHERE week_start = ?1 AND scope = 'public' AND (?2 IS NULL OR app = ?2)
                 GROUP BY app, remote_ip ORDER BY app, remote_ip",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![week, app], |row| {
                let ip: String = row.get(1)?;
                let consensus: Option<String> = row.get(6)?;
                let answers: Option<String> = row.get(7)?;
                Ok(TruthRow {
                    app: row.get(0)?,
                    min_rtt_us: rtt.get(&ip).copied(),
                    ip,
                    payload_tx: count(row.get(2)?),
                    payload_rx: count(row.get(3)?),
                    country: row.get(5)?,
                    consensus: consensus.as_deref().and_then(Consensus::parse),
                    answers: answers.and_then(|a| serde_json::from_str(&a).ok()).unwrap_or_default(),
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }
}
