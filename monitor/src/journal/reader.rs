//! [`JournalReader`]: read-only queries for reports and `monitor status`.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    DaemonState, DatabaseRow, EndpointRow, Error, LossTotals, ResidencyRow, RowCounts, StatsTotals, TimeRange,
    names::{count, ms, ts, ts_secs},
    open,
};

/// Read-only view of a journal; works while the daemon writes (WAL).
pub struct JournalReader {
    conn: Connection,
    path: PathBuf,
}

impl JournalReader {
    /// Opens an existing journal read-only.
    ///
    /// # Errors
    /// [`Error::Missing`], [`Error::NotJournal`], [`Error::Corrupt`], [`Error::TooNew`], or SQLite
    /// failing to open it.
    pub fn open(path: &Path) -> Result<Self, Error> {
        Ok(Self { conn: open::open_ro(path)?, path: path.to_path_buf() })
    }

    /// The journal file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The read-only connection (for the queries of sibling modules, e.g. `services`).
    pub(super) fn connection(&self) -> &Connection {
        &self.conn
    }

    pub(super) fn err(&self, source: rusqlite::Error) -> Error {
        Error::read(&self.path, source)
    }

    fn collect<T>(&self, rows: rusqlite::Result<Vec<T>>) -> Result<Vec<T>, Error> {
        rows.map_err(|e| self.err(e))
    }

    /// Schema version of the file.
    ///
    /// # Errors
    /// When the pragma cannot be read.
    pub fn schema_version(&self) -> Result<u32, Error> {
        open::check_version(&self.conn, &self.path)
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    ///
    /// # Errors
    /// When the check cannot run.
    pub fn integrity_check(&self) -> Result<String, Error> {
        open::integrity_check(&self.conn).map_err(|e| self.err(e))
    }

    /// Residency sums per (app, destination, provenance) over rows whose interval starts in
    /// `range`, sorted by those keys.
    ///
    /// # Errors
    /// When the query fails.
    pub fn residency(&self, range: TimeRange, app: Option<&str>) -> Result<Vec<ResidencyRow>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT app, scope, country, asn, as_org, country_db, asn_db, payload_source,
                     SUM(payload_tx), SUM(payload_rx), SUM(wire_tx), SUM(wire_rx), SUM(packets_tx),
                     SUM(packets_rx), SUM(new_flows), SUM(incomplete_flows), SUM(connections),
                     MIN(interval_start), MAX(interval_start + interval_secs)
                 FROM residency
                 WHERE interval_start >= (?1 + 999) / 1000 AND interval_start < (?2 + 999) / 1000
                     AND (?3 IS NULL OR app = ?3)
                 GROUP BY app, scope, country, asn, as_org, country_db, asn_db, payload_source
                 ORDER BY app, scope, country, asn, as_org, country_db, asn_db, payload_source",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app], residency_row)
            .map_err(|e| self.err(e))?
            .collect();
        self.collect(rows)
    }

    /// Traffic per (app, remote endpoint) from connection records whose time is in `range` (of
    /// sockets created in cgroup `cgroup` when given), sorted by app, address, port, protocol.
    ///
    /// # Errors
    /// When the query fails.
    pub fn endpoints(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<EndpointRow>, Error> {
        // One MAX() aggregate: SQLite takes the bare columns (scope, country...) from the latest row.
        let mut stmt = self
            .conn
            .prepare_cached(concat!(
                "SELECT a.name, c.remote_ip, CASE WHEN c.direction = ",
                super::names::sql!(Direction::Inbound),
                " THEN NULL ELSE c.remote_port END AS port,
                     c.protocol, SUM(c.delta_payload_tx), SUM(c.delta_payload_rx), SUM(c.delta_wire_tx),
                     SUM(c.delta_wire_rx), COUNT(DISTINCT c.cookie), MAX(c.time_ms),
                     c.scope, c.country, c.asn, c.as_org
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.remote_ip IS NOT NULL AND (?3 IS NULL OR c.owner_cgroup_id = ?3)
                     AND (?4 IS NULL OR a.name = ?4)
                 GROUP BY a.name, c.remote_ip, port, c.protocol
                 ORDER BY a.name, c.remote_ip, port, c.protocol"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), cgroup.map(u64::cast_signed), app], endpoint_row)
            .map_err(|e| self.err(e))?
            .collect();
        self.collect(rows)
    }

    /// Statistics increments of rows whose time is in `range`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn stats(&self, range: TimeRange) -> Result<StatsTotals, Error> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(events_submitted), 0), COALESCE(SUM(events_lost), 0),
                     COALESCE(SUM(events_received), 0), COALESCE(SUM(decode_errors), 0),
                     COALESCE(SUM(storage_failures), 0), COALESCE(SUM(peer_parse_failures), 0),
                     COALESCE(SUM(unattributed_packets), 0), COALESCE(SUM(unattributed_bytes), 0),
                     COALESCE(SUM(incomplete_flows), 0), COUNT(DISTINCT run_started_ms),
                     COALESCE(SUM(copies_submitted), 0), COALESCE(SUM(copies_lost), 0),
                     COALESCE(SUM(names_malformed), 0), COALESCE(SUM(names_learned), 0)
                 FROM stats WHERE time_ms >= ?1 AND time_ms < ?2",
                params![ms(range.since), ms(range.until)],
                |row| {
                    let f = |i: usize| row.get::<_, i64>(i).map(count);
                    Ok(StatsTotals {
                        rows: f(0)?,
                        events_submitted: f(1)?,
                        events_lost: f(2)?,
                        events_received: f(3)?,
                        decode_errors: f(4)?,
                        storage_failures: f(5)?,
                        peer_parse_failures: f(6)?,
                        unattributed_packets: f(7)?,
                        unattributed_bytes: f(8)?,
                        incomplete_flows: f(9)?,
                        runs: f(10)?,
                        copies_submitted: f(11)?,
                        copies_lost: f(12)?,
                        names_malformed: f(13)?,
                        names_learned: f(14)?,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Buffer losses whose time span overlaps `range`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn losses(&self, range: TimeRange) -> Result<LossTotals, Error> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(records), 0), COALESCE(SUM(buckets), 0), COALESCE(SUM(payload_bytes), 0)
                 FROM losses WHERE last_ms >= ?1 AND first_ms < ?2",
                params![ms(range.since), ms(range.until)],
                |row| {
                    let f = |i: usize| row.get::<_, i64>(i).map(count);
                    Ok(LossTotals { records: f(0)?, buckets: f(1)?, payload_bytes: f(2)? })
                },
            )
            .map_err(|e| self.err(e))
    }

    /// Names of the apps seen in `range` that were named from the kernel's record only (`source`
    /// `kernel`: processes gone before the monitor read them, their executable unknown), sorted.
    ///
    /// # Errors
    /// When the query fails.
    pub fn kernel_named_apps(&self, range: TimeRange) -> Result<Vec<String>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT name FROM apps WHERE source = ?1 AND last_seen_ms >= ?2 AND first_seen_ms < ?3
                 ORDER BY name",
            )
            .map_err(|e| self.err(e))?;
        let kernel = super::names::name(crate::identity::AppSource::Kernel);
        let rows = stmt
            .query_map(params![kernel, ms(range.since), ms(range.until)], |row| row.get::<_, String>(0))
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }

    /// The journal's name of the app that reports show as `shown` (they escape names for the
    /// terminal: a backslash doubled, control characters as `\n` or `\xNN`): `shown` when an app
    /// has that name, else the name whose escaped form is `shown`, if any; `shown` itself
    /// otherwise. So a name copied from a report selects its app with `report --app`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn app_name_shown_as(&self, shown: &str) -> Result<String, Error> {
        // Apps' rows go after the records' retention; the residency rows reports list stay longer
        // (an adversarial pass: names of weeks past 30 days selected nothing).
        let named = |sql: &str| {
            self.conn.prepare_cached(sql).and_then(|mut stmt| stmt.exists(params![shown])).map_err(|e| self.err(e))
        };
        let exact =
            named("SELECT 1 FROM apps WHERE name = ?1")? || named("SELECT 1 FROM residency WHERE app = ?1 LIMIT 1")?;
        // Only an escaped form has a backslash.
        if exact || !shown.contains('\\') {
            return Ok(shown.to_owned());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT name FROM apps UNION SELECT app FROM residency")
            .map_err(|e| self.err(e))?;
        let names = stmt.query_map([], |row| row.get::<_, String>(0)).map_err(|e| self.err(e))?;
        for name in names {
            let name = name.map_err(|e| self.err(e))?;
            if crate::escape::terminal(&name) == shown {
                return Ok(name);
            }
        }
        Ok(shown.to_owned())
    }

    /// Every geo database the journal knows, by id.
    ///
    /// # Errors
    /// When the query fails.
    pub fn databases(&self) -> Result<Vec<DatabaseRow>, Error> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT id, role, database_type, build_epoch, path, in_use FROM databases ORDER BY id")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(DatabaseRow {
                    id: row.get(0)?,
                    role: row.get(1)?,
                    database_type: row.get(2)?,
                    build_epoch: count(row.get(3)?),
                    path: row.get::<_, Option<String>>(4)?.map(PathBuf::from),
                    in_use: row.get(5)?,
                })
            })
            .map_err(|e| self.err(e))?
            .collect();
        self.collect(rows)
    }

    /// The daemon state row, if a daemon ever opened this journal.
    ///
    /// # Errors
    /// When the query fails.
    pub fn state(&self) -> Result<Option<DaemonState>, Error> {
        let state = self
            .conn
            .query_row(
                "SELECT pid, started_ms, version, config_path, last_flush_ms, flushes, rows_written,
                     flush_interval_secs, residency_interval_secs, degradations FROM daemon_state WHERE id = 1",
                [],
                |row| {
                    Ok(DaemonState {
                        pid: row.get(0)?,
                        started_at: ts(1, row.get(1)?)?,
                        version: row.get(2)?,
                        config_path: row.get::<_, Option<String>>(3)?.map(PathBuf::from),
                        last_flush: row.get::<_, Option<i64>>(4)?.map(|v| ts(4, v)).transpose()?,
                        flushes: count(row.get(5)?),
                        rows_written: count(row.get(6)?),
                        flush_interval_secs: count(row.get(7)?),
                        residency_interval_secs: count(row.get(8)?),
                        degradations: row
                            .get::<_, Option<String>>(9)?
                            .map(|s| s.split_whitespace().map(str::to_owned).collect()),
                        databases: Vec::new(),
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))?;
        let Some(mut state) = state else {
            return Ok(None);
        };
        state.databases = self.databases()?.into_iter().filter(|d| d.in_use).collect();
        Ok(Some(state))
    }

    /// Checks that the journal's main tables exist with the columns they have since version 1,
    /// without counting their rows (a `COUNT(*)` of millions of records takes seconds): an
    /// `SQLite` file of another application with the journal's schema version fails here.
    ///
    /// # Errors
    /// When a table or column is missing or cannot be read.
    pub fn check_tables(&self) -> Result<(), Error> {
        for sql in [
            "SELECT id, time_ms, app_id, cookie FROM connections LIMIT 1",
            "SELECT interval_start, app, payload_tx FROM residency LIMIT 1",
            "SELECT time_ms FROM stats LIMIT 1",
            "SELECT id, name FROM apps LIMIT 1",
            "SELECT * FROM exports LIMIT 1",
        ] {
            let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
            rows.next().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Rows per table.
    ///
    /// # Errors
    /// When a query fails.
    pub fn counts(&self) -> Result<RowCounts, Error> {
        let n = |table: &str| -> Result<u64, Error> {
            self.conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| row.get::<_, i64>(0))
                .map(count)
                .map_err(|e| self.err(e))
        };
        Ok(RowCounts {
            connections: n("connections")?,
            residency: n("residency")?,
            stats: n("stats")?,
            apps: n("apps")?,
            exports: n("exports")?,
        })
    }

    /// Time before which connection records were purged (retention), if a purge ran.
    ///
    /// # Errors
    /// When the query fails.
    pub fn connections_purged_before(&self) -> Result<Option<Timestamp>, Error> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'connections_purged_before_ms'", [], |row| row.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        v.map(|v| ts(0, v)).transpose().map_err(|e| self.err(e))
    }

    /// Earliest time with residency rows or statistics, if any.
    ///
    /// # Errors
    /// When the query fails.
    pub fn first_data(&self) -> Result<Option<Timestamp>, Error> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT MIN(t) FROM (SELECT MIN(interval_start) * 1000 AS t FROM residency
                                     UNION ALL SELECT MIN(time_ms) FROM stats)",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))?;
        v.map(|v| ts(0, v)).transpose().map_err(|e| self.err(e))
    }

    /// Whether any residency row or statistics row falls in `range`.
    ///
    /// # Errors
    /// When the query fails.
    pub fn has_data(&self, range: TimeRange) -> Result<bool, Error> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM residency WHERE interval_start >= (?1 + 999) / 1000
                                    AND interval_start < (?2 + 999) / 1000)
                     OR EXISTS (SELECT 1 FROM stats WHERE time_ms >= ?1 AND time_ms < ?2)",
                params![ms(range.since), ms(range.until)],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))
    }
}

/// An [`EndpointRow`] from the columns of the endpoint query.
fn endpoint_row(row: &Row<'_>) -> rusqlite::Result<EndpointRow> {
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
}

pub(super) fn residency_row(row: &Row<'_>) -> rusqlite::Result<ResidencyRow> {
    let country: String = row.get(2)?;
    let asn: u32 = row.get(3)?;
    let as_org: String = row.get(4)?;
    let db = |i: usize| row.get::<_, i64>(i).map(|v| (v != 0).then_some(v));
    Ok(ResidencyRow {
        app: row.get(0)?,
        scope: row.get(1)?,
        country: (!country.is_empty()).then_some(country),
        asn: (asn != 0).then_some(asn),
        as_org: (!as_org.is_empty()).then_some(as_org),
        country_db: db(5)?,
        asn_db: db(6)?,
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
        first_interval: ts_secs(17, row.get(17)?)?,
        last_interval_end: ts_secs(18, row.get(18)?)?,
    })
}
