//! Reading the rollups of the names and residency-truth sections (schema 11): a week's rows in
//! the shapes `JournalReader::services`, `truth` and `endpoint_hostnames` give for the same week
//! from the connection records.

use std::sync::Arc;

use foldhash::HashMap;

use jiff::Timestamp;
use rusqlite::params;

use crate::journal::{
    Error, JournalReader, ServiceRow, StoredAnswer, TruthRow,
    names::{self, count},
    truth::ParsedAnswers,
};

/// First schema with `service_week`, `endpoint_name_week` and the truth columns of `endpoint_week`.
pub const NAMES_ROLLUP_SCHEMA: u32 = 11;
/// First schema whose `service_week` counts a service's flows as (socket, endpoint) pairs, as the
/// connection records give them; a journal of an earlier schema counted sockets until a writer
/// opens (migrates) it, which rebuilds the rollups. Reports and `journal verify` use its
/// `service_week` from this schema on.
pub const SERVICE_FLOWS_SCHEMA: u32 = 18;

/// '' (the rollups' NULL) as `None`.
fn text(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl JournalReader {
    /// Payload per (quarter hour, app) of the residency rows whose interval starts in
    /// `[since, until)` (Unix s, multiples of 900), from `timeline_quarter`: valid for the weeks
    /// the rollups cover.
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn timeline_quarters(
        &self,
        since: i64,
        until: i64,
        app: Option<&str>,
    ) -> Result<Vec<(i64, String, u64, u64)>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT quarter_start, app, payload_tx, payload_rx FROM timeline_quarter
                 WHERE quarter_start >= ?1 AND quarter_start < ?2 AND (?3 IS NULL OR app = ?3)",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since, until, app], |row| {
                Ok((row.get(0)?, row.get(1)?, count(row.get(2)?), count(row.get(3)?)))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }

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
                    name_source: match text_ref(row, 3)? {
                        None | Some("") => None,
                        Some(t) => Some(names::parse(3, t)?),
                    },
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

    /// The host names of `app`'s records at address `ip` in the rollup week starting at `since`
    /// (what [`endpoint_hostnames`](Self::endpoint_hostnames) lists for them), sorted.
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn endpoint_hostnames_week(&self, since: Timestamp, app: &str, ip: &str) -> Result<Vec<String>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(
                "SELECT hostname FROM endpoint_name_week
                 WHERE week_start = ?1 AND app = ?2 AND remote_ip = ?3 ORDER BY hostname",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![since.as_second(), app, ip], |row| row.get(0))
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }

    /// [`truth`](Self::truth) of the rollup week starting at `since`, from `endpoint_week`: per
    /// (app, public address) the sums over its endpoints, the answers of the latest record and
    /// the smallest RTT to the address (any app). One pass in primary-key order (app, address),
    /// summed here: no sort.
    ///
    /// # Errors
    /// When the query fails (also before schema 11).
    pub fn truth_week(&self, since: Timestamp, app: Option<&str>) -> Result<Vec<TruthRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT app, remote_ip, payload_tx, payload_rx, latest_ms, country, consensus, answers_id, rtt_min_us
                 FROM endpoint_week WHERE week_start = ?1 AND scope = ",
                crate::journal::names::sql!(Scope::Public),
                " ORDER BY app, remote_ip"
            ))
            .map_err(err)?;
        // Each distinct answer list, parsed once.
        let mut parsed = ParsedAnswers::default();
        let sets: HashMap<i64, Arc<[StoredAnswer]>> = self
            .conn()
            .prepare_cached("SELECT id, text FROM answer_sets")
            .map_err(err)?
            .query_map([], |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?)))
            .map_err(err)?
            .map(|r| r.map(|(id, text)| (id, parsed.get(Some(&text)))))
            .collect::<rusqlite::Result<_>>()
            .map_err(err)?;
        let mut rows = stmt.query(params![since.as_second()]).map_err(err)?;
        let mut rtt: HashMap<String, u32> = HashMap::default();
        let mut out: Vec<TruthRow> = Vec::new();
        // Latest time of the last row of `out`.
        let mut latest = i64::MIN;
        while let Some(row) = rows.next().map_err(err)? {
            let name = text_ref(row, 0).map_err(err)?.unwrap_or_default();
            let ip = text_ref(row, 1).map_err(err)?.unwrap_or_default();
            let us: Option<i64> = row.get(8).map_err(err)?;
            if let Some(us) = us.filter(|u| *u > 0).and_then(|u| u32::try_from(u).ok()) {
                match rtt.get_mut(ip) {
                    Some(m) => *m = (*m).min(us),
                    None => {
                        rtt.insert(ip.to_owned(), us);
                    }
                }
            }
            if app.is_some_and(|a| a != name) {
                continue;
            }
            let (tx, rx, time_ms): (i64, i64, i64) =
                (row.get(2).map_err(err)?, row.get(3).map_err(err)?, row.get(4).map_err(err)?);
            let same = out.last().is_some_and(|last| last.app == name && last.ip == ip);
            if !same {
                out.push(TruthRow {
                    app: name.to_owned(),
                    ip: ip.to_owned(),
                    country: None,
                    consensus: None,
                    answers: Arc::default(),
                    payload_tx: 0,
                    payload_rx: 0,
                    min_rtt_us: None,
                });
                latest = i64::MIN;
            }
            let Some(r) = out.last_mut() else {
                continue;
            };
            r.payload_tx = r.payload_tx.saturating_add(count(tx));
            r.payload_rx = r.payload_rx.saturating_add(count(rx));
            // Strictly later only: on a tie the first row keeps it, as SQLite's bare columns
            // beside MAX() in `truth` do.
            if time_ms > latest {
                latest = time_ms;
                r.country = row.get(5).map_err(err)?;
                let consensus = text_ref(row, 6).map_err(err)?;
                r.consensus = consensus.map(|c| names::parse(6, c)).transpose().map_err(err)?;
                let id: Option<i64> = row.get(7).map_err(err)?;
                r.answers = id.and_then(|id| sets.get(&id).cloned()).unwrap_or_default();
            }
        }
        for r in &mut out {
            r.min_rtt_us = rtt.get(&r.ip).copied();
        }
        Ok(out)
    }
}

/// Text column `i` of `row`, borrowed (NULL as `None`).
fn text_ref<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    row.get_ref(i)?
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}
