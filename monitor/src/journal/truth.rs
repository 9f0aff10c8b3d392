//! Residency truth (issue 15) in the journal: the country answers of every country database
//! (`connections.country_answers`, JSON; since schema 13 `answer_sets.text` by
//! `connections.answers_id`), their verdict (`connections.consensus`) and the
//! kernel's RTT estimates (`rtt_min_us`, `rtt_srtt_us`), and the per-destination queries reports
//! build their consensus and plausibility figures from.

use std::{collections::HashMap, sync::Arc};

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{
    Error, JournalReader, TimeRange,
    names::{self, count, ms},
};
use crate::enrich::{Consensus, CountryAnswer};

/// The `country_answers` text of a connection record as SQL, for the table or alias given as a
/// string literal: the text itself in rows written before schema 13, else the `answer_sets` row
/// its `answers_id` names (NULL when it has neither).
macro_rules! answers_text {
    ($c:literal) => {
        concat!(
            "COALESCE(",
            $c,
            ".country_answers, (SELECT s.text FROM answer_sets s WHERE s.id = ",
            $c,
            ".answers_id))"
        )
    };
}
pub(super) use answers_text;

/// One database's answer as stored in `country_answers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    /// `primary`, `registry` or an `[[geo.extra_country]]` label.
    pub label: String,
    /// `database_type` of the database.
    pub database_type: String,
    /// `build_epoch` of the database.
    pub build_epoch: u64,
    /// Its country; `None`: not covered.
    pub country: Option<String>,
}

/// `country_answers` text of `answers`.
pub(super) fn answers_json(answers: &[CountryAnswer]) -> String {
    let stored: Vec<StoredAnswer> = answers
        .iter()
        .map(|a| StoredAnswer {
            label: a.label.to_string(),
            database_type: a.db.database_type.to_string(),
            build_epoch: a.db.build_epoch,
            country: a.country.as_deref().map(str::to_owned),
        })
        .collect();
    // Plain strings and integers: serialization cannot fail.
    serde_json::to_string(&stored).unwrap_or_default()
}

/// Parsed `country_answers` by their text: a journal holds few distinct answer lists (one per
/// combination of countries), so each is parsed once per query. A malformed value reads as empty.
#[derive(Default)]
pub(super) struct ParsedAnswers(HashMap<String, Arc<[StoredAnswer]>>);

impl ParsedAnswers {
    pub(super) fn get(&mut self, text: Option<&str>) -> Arc<[StoredAnswer]> {
        let Some(text) = text else {
            return Arc::default();
        };
        if let Some(list) = self.0.get(text) {
            return list.clone();
        }
        let list: Vec<StoredAnswer> = serde_json::from_str(text).unwrap_or_default();
        let list: Arc<[StoredAnswer]> = list.into();
        self.0.insert(text.to_owned(), list.clone());
        list
    }
}

/// `country_answers` text per answer list, with its `answer_sets` id, made once per flush:
/// records to one destination share one list (`Destination::answers` is reference-counted),
/// keyed by its address, which stays valid while the flushed buffer holds the records.
#[derive(Default)]
pub(super) struct AnswerTexts(HashMap<usize, (Arc<str>, i64)>);

impl AnswerTexts {
    /// The text stored for `answers` and its id (`None` without answers); `id_of` gives the id
    /// of a text not seen in this flush.
    pub(super) fn of(
        &mut self,
        answers: &Arc<[CountryAnswer]>,
        id_of: impl FnOnce(&str) -> rusqlite::Result<i64>,
    ) -> rusqlite::Result<Option<(Arc<str>, i64)>> {
        if answers.is_empty() {
            return Ok(None);
        }
        let key = Arc::as_ptr(answers).cast::<CountryAnswer>() as usize;
        if let Some(known) = self.0.get(&key) {
            return Ok(Some(known.clone()));
        }
        let text: Arc<str> = answers_json(answers).into();
        let id = id_of(&text)?;
        self.0.insert(key, (text.clone(), id));
        Ok(Some((text, id)))
    }
}

/// A public destination of one app over a period, with what the databases say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthRow {
    /// App name.
    pub app: String,
    /// Remote address.
    pub ip: String,
    /// Country of the primary database (latest record).
    pub country: Option<String>,
    /// Verdict of the latest record; `None`: fewer than two databases (or rows written before
    /// schema 4).
    pub consensus: Option<Consensus>,
    /// Every database's answer (latest record); empty as for `consensus`. A malformed stored
    /// value reads as empty.
    pub answers: Arc<[StoredAnswer]>,
    /// Payload bytes sent in the period.
    pub payload_tx: u64,
    /// Payload bytes received in the period.
    pub payload_rx: u64,
    /// Smallest kernel RTT minimum (µs) of any flow to this address in the period, of any app.
    pub min_rtt_us: Option<u32>,
}

impl JournalReader {
    /// Smallest kernel RTT minimum (µs) of any flow to `ip` in `range`, of any app; `None`
    /// without a measurement (non-TCP, or records older than schema 4). For `monitor lookup`.
    ///
    /// # Errors
    /// When the query fails (also on a journal older than schema 4).
    pub fn min_rtt_us(&self, ip: &str, range: TimeRange) -> Result<Option<u32>, Error> {
        let err = |e| Error::read(self.path(), e);
        let us: Option<i64> = self
            .conn()
            .prepare_cached(concat!(
                "SELECT MIN(rtt_min_us) FROM connections
                 WHERE remote_ip = ?1 AND time_ms >= ?2 AND time_ms < ?3 AND",
                super::spans::id_window!("id", "?2", "?3"),
                " AND rtt_min_us > 0"
            ))
            .map_err(err)?
            .query_row(params![ip, ms(range.since), ms(range.until)], |row| row.get(0))
            .map_err(err)?;
        Ok(us.and_then(|v| u32::try_from(v).ok()))
    }

    /// Per (app, public remote address): bytes, the latest consensus and answers, and the
    /// smallest RTT to the address, from connection records whose time is in `range` (bytes,
    /// consensus and answers of sockets created in cgroup `cgroup` when given; the RTT of any
    /// socket, as a measurement of the path); sorted by app and address.
    ///
    /// # Errors
    /// When the query fails.
    pub fn truth(&self, range: TimeRange, app: Option<&str>, cgroup: Option<u64>) -> Result<Vec<TruthRow>, Error> {
        let err = |e| Error::read(self.path(), e);
        let mut rtt_stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT remote_ip, MIN(rtt_min_us) FROM connections
                 WHERE time_ms >= ?1 AND time_ms < ?2 AND",
                super::spans::id_window!("id", "?1", "?2"),
                " AND scope = ",
                super::names::sql!(Scope::Public),
                " AND rtt_min_us > 0
                 GROUP BY remote_ip"
            ))
            .map_err(err)?;
        // An RTT beyond u32 microseconds (71 minutes) is no measurement: such an address has none.
        let rtt: HashMap<String, u32> = rtt_stmt
            .query_map(params![ms(range.since), ms(range.until)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(err)?
            .into_iter()
            .filter_map(|(ip, us)| Some((ip, u32::try_from(us).ok()?)))
            .collect();
        // One MAX() aggregate: SQLite takes the bare columns from the latest row.
        let mut stmt = self
            .conn()
            .prepare_cached(concat!(
                "SELECT a.name, c.remote_ip, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), MAX(c.time_ms),
                     c.country, c.consensus, ",
                answers_text!("c"),
                " FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.scope = ",
                super::names::sql!(Scope::Public),
                " AND (?3 IS NULL OR a.name = ?3)
                     AND (?4 IS NULL OR c.owner_cgroup_id = ?4)
                 GROUP BY a.name, c.remote_ip
                 ORDER BY a.name, c.remote_ip",
            ))
            .map_err(err)?;
        let mut parsed = ParsedAnswers::default();
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app, cgroup.map(u64::cast_signed)], |row| {
                let ip: String = row.get(1)?;
                let consensus = row.get_ref(6)?.as_str_or_null().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
                })?;
                let answers = row.get_ref(7)?.as_str_or_null().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, Box::new(e))
                })?;
                Ok(TruthRow {
                    app: row.get(0)?,
                    min_rtt_us: rtt.get(&ip).copied(),
                    ip,
                    payload_tx: count(row.get(2)?),
                    payload_rx: count(row.get(3)?),
                    country: row.get(5)?,
                    consensus: consensus.map(|c| names::parse(6, c)).transpose()?,
                    answers: parsed.get(answers),
                })
            })
            .map_err(err)?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(err)
    }
}
