//! [`JournalWriter`]: buffers records in memory, writes them in one transaction per flush.

use std::{
    fs::File,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use log::{debug, error, warn};
use rusqlite::{Connection, TransactionBehavior, params};

use super::{
    Error, JournalConfig,
    buffer::{Buffer, Loss},
    files::{self, AtPath, FileId},
    flush,
    intern::Interned,
    names::{int, ms},
    open,
    rollup::Rollup,
};
use crate::{
    clock::thread_cpu,
    enrich::{DbInfo, Destination},
    identity::App,
    names::Names,
    stats::Stats,
    tracker::FlowRecord,
    zone::Zone,
};

/// The daemon run that writes: recorded in `daemon_state` for `monitor status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Process id of the daemon.
    pub pid: u32,
    /// When the daemon started; also tags statistics rows (their counters restart with each run).
    pub started_at: Timestamp,
    /// Config file in use, if any.
    pub config_path: Option<PathBuf>,
}

impl RunInfo {
    /// This process, starting now.
    #[must_use]
    pub fn current(config_path: Option<PathBuf>) -> Self {
        Self { pid: std::process::id(), started_at: Timestamp::now(), config_path }
    }
}

/// What one [`JournalWriter::flush`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    /// Connection records inserted.
    pub connections: usize,
    /// Residency rows inserted or added to.
    pub residency_rows: usize,
    /// Statistics rows inserted.
    pub stats_rows: usize,
    /// What the buffer had dropped before this flush (now recorded in `losses`).
    pub loss: Loss,
    /// Time spent, commit included.
    pub duration: Duration,
    /// CPU time of the calling thread spent in the flush (SQLite's rows, indexes, commit and
    /// checkpoint; not the time it waited for the disk).
    pub cpu: Duration,
}

/// What the flushes of this writer did since it was opened (for the daemon's closing line and
/// the benchmark's account of where a record's CPU goes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushTotals {
    /// Successful flushes.
    pub flushes: u64,
    /// Connection records they wrote.
    pub connections: u64,
    /// CPU time of the flushes, failed ones included.
    pub cpu: Duration,
}

/// What [`JournalWriter::purge_expired`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Connection records older than `connections_retention_days`.
    pub connections: usize,
    /// Residency rows whose interval ended more than `residency_retention_days` ago.
    pub residency_rows: usize,
    /// Statistics and loss rows older than `residency_retention_days`.
    pub stats_rows: usize,
    /// Apps no longer referenced by any connection record.
    pub apps: usize,
    /// Rollup rows of weeks that started before the purge horizon of their fine table.
    pub rollup_rows: usize,
}

/// Writes the journal. `Send`: the daemon keeps it in its task and runs [`flush`](Self::flush)
/// and [`purge_expired`](Self::purge_expired) on `spawn_blocking` (they block on disk I/O).
///
/// Dropping the writer does not flush: call `flush` at shutdown.
pub struct JournalWriter {
    pub(super) conn: Connection,
    path: PathBuf,
    interval_secs: i64,
    connections_retention_days: u32,
    residency_retention_days: u32,
    pub(super) run: RunInfo,
    /// Weekly rollups maintained by every flush.
    rollup: Rollup,
    /// Ids of the shared parts of connection records (schema 14) this writer knows.
    interned: Interned,
    /// `<journal>.lock`, locked (`flock`) while this writer lives: one daemon per journal. `None`
    /// only while [`JournalWriter::reopen`] replaces the journal.
    _lock: Option<File>,
    /// What is at the lock path cannot be a lock file (a symlink, a directory): said once.
    lock_unusable_said: bool,
    pub(super) buffer: Buffer,
    /// What the flushes did so far.
    totals: FlushTotals,
    /// The file opened: each flush checks the path still names it.
    file: FileId,
    /// What a journal created again at the path (the first was removed) is opened with.
    reopen: Reopen,
}

/// What [`JournalWriter::reopen`] needs to create the journal again as this run left it.
struct Reopen {
    config: JournalConfig,
    zone: Zone,
    degradations: Vec<String>,
    databases: Option<Vec<DbInfo>>,
}

const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<JournalWriter>();
};

impl JournalWriter {
    /// Refuses, as [`Self::open`] would, when another daemon writes the journal at `path` now,
    /// without creating or changing anything: a start that binds a port before it opens the
    /// journal (metrics) names the running daemon rather than the port it holds.
    ///
    /// # Errors
    /// [`Error::Locked`].
    pub fn ensure_not_locked(path: &std::path::Path) -> Result<(), Error> {
        super::open::ensure_not_locked(path)
    }

    /// Records the degradations of this run in `daemon_state` (for `monitor status` and reports).
    ///
    /// # Errors
    /// When the journal cannot be written.
    pub fn record_degradations(&mut self, names: &[String]) -> Result<(), Error> {
        self.reopen.degradations = names.to_vec();
        self.conn
            .execute("UPDATE daemon_state SET degradations = ?1 WHERE id = 1", params![names.join(" ")])
            .map(drop)
            .map_err(|source| Error::write(&self.path, source))
    }

    /// Takes the single-writer lock (`<journal>.lock`) first, then opens (or creates) the journal,
    /// checks it (`PRAGMA quick_check`: reads the whole file once), applies pending migrations and
    /// records this run in `daemon_state`. A journal left by a killed daemon is recovered by SQLite
    /// (WAL replay).
    ///
    /// Weekly rollups are kept for ISO weeks cut in `rollup_zone` (the daemon passes
    /// `report.time_zone`, looked up once by `Settings::resolve`). When the journal has none for
    /// that zone (first open after migrating to schema version 2, or another zone), they are
    /// built here from the fine rows of the latest two weeks with data (one transaction; seconds
    /// per million rows).
    ///
    /// # Errors
    /// Invalid configuration; another writer on the same
    /// journal ([`Error::Locked`]: readers never lock); an unwritable directory
    /// ([`Error::CreateDir`], [`Error::Open`]); a journal or lock path that is a symlink, device
    /// node, FIFO or another user's file ([`Error::Unsafe`], nothing changed); a file that is not
    /// a journal ([`Error::NotJournal`], left alone); a damaged journal ([`Error::Corrupt`], never
    /// replaced); a newer schema.
    pub fn open(config: &JournalConfig, run: RunInfo, rollup_zone: &Zone) -> Result<Self, Error> {
        config.validate()?;
        let path = config.path.clone();
        let (mut conn, lock, file) = open::open_rw(&path)?;
        let rollup = Rollup::open(&mut conn, rollup_zone).map_err(|source| Error::write(&path, source))?;
        let RunInfo { pid, started_at, config_path } = &run;
        let mut buffer = Buffer::default();
        // Every earlier run has a statistics row at its last sign of life, so reports see each
        // run and the time between runs (`runs.rs`): its final snapshot, or else its last flush
        // (its start, when it never flushed). Written at once (below): `daemon_state` describes
        // this run from now on, so a run killed before its own first flush would lose it.
        let earlier = super::runs::earlier_run_end(&conn).map_err(|source| Error::write(&path, source))?;
        if let Some((run, alive)) = earlier {
            buffer.mark_earlier_run(run, alive);
            // And this run's start, so that a run killed before its own first snapshot is seen
            // too (a crash loop): the next run marks its last flush in turn.
            buffer.add_stats(*started_at, &Stats::default());
        }
        conn.execute(
            "INSERT OR REPLACE INTO daemon_state (id, pid, started_ms, version, config_path, last_flush_ms, flushes,
                 rows_written, flush_interval_secs, residency_interval_secs)
             VALUES (1, ?1, ?2, ?3, ?4, NULL, 0, 0, ?5, ?6)",
            params![
                pid,
                ms(*started_at),
                env!("CARGO_PKG_VERSION"),
                config_path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                int(config.flush_interval_secs),
                int(config.residency_interval_secs),
            ],
        )
        .map_err(|source| Error::write(&path, source))?;
        let mut writer = Self {
            conn,
            path,
            interval_secs: int(config.residency_interval_secs),
            connections_retention_days: config.connections_retention_days,
            residency_retention_days: config.residency_retention_days,
            run,
            rollup,
            interned: Interned::default(),
            _lock: Some(lock),
            lock_unusable_said: false,
            buffer,
            totals: FlushTotals::default(),
            file,
            reopen: Reopen {
                config: config.clone(),
                zone: rollup_zone.clone(),
                degradations: Vec::new(),
                databases: None,
            },
        };
        if earlier.is_some()
            && let Err(e) = writer.flush()
        {
            // Kept buffered: the next flush writes it.
            warn!("journal {}: the earlier run's last sign of life not written yet: {e}", writer.path.display());
        }
        Ok(writer)
    }

    /// Before a flush (and before alerts are saved): the path must still name the file this
    /// writer opened.
    /// - Removed (deleted, or renamed away): the writer lets go of it ([`Self::release`]: its
    ///   write-ahead log copied into it, so a moved journal keeps every row), then creates a new
    ///   journal at the path, holding this run's degradations and databases, and the flush goes on
    ///   into it; unless a `-wal` that is not this writer's lies there (SQLite would replay it into
    ///   the new journal).
    /// - Replaced by another file: the writer lets go of its own (its `-wal` beside another file
    ///   would be replayed into it by the next reader), and nothing is written; the records stay
    ///   buffered until that file is moved away.
    /// - The journal back at the path after the writer let go of it: written again.
    pub(super) fn check_file(&mut self) -> Result<(), Error> {
        self.check_lock()?;
        let released = self._lock.is_none();
        match files::at_path(&self.path, self.file) {
            AtPath::Same if !released => Ok(()),
            AtPath::Same => {
                self.recreate()?;
                warn!("journal {} is back at its path: written again", self.path.display());
                Ok(())
            }
            AtPath::Replaced => {
                self.release()?;
                Err(Error::Replaced { path: self.path.clone() })
            }
            AtPath::Removed => {
                self.release()?;
                if let Some(left) = files::wal_left(&self.path) {
                    return Err(Error::RemovedLeaving { path: self.path.clone(), left });
                }
                self.recreate()?;
                error!(
                    "journal {} was removed while the daemon ran: a new journal was created there (what the removed \
                     one held is gone with it, or kept where it was moved; this run's records go on in the new one)",
                    self.path.display()
                );
                Ok(())
            }
        }
    }

    /// Takes the lock file back when it was removed (or replaced) under this writer: a second
    /// daemon started meanwhile is refused as long as this one holds the removed file
    /// ([`Error::LockRemoved`]), and after this by the lock itself.
    ///
    /// # Errors
    /// [`Error::LockLost`] when another process holds the lock at the path now (a daemon that
    /// started meanwhile, the lock file renamed away): nothing is written, the records stay
    /// buffered, and every flush tries again (two daemons never write one journal).
    fn check_lock(&mut self) -> Result<(), Error> {
        let path = files::lock_path(&self.path);
        let Some(held) = self._lock.as_ref() else { return Ok(()) };
        if files::lock_at_path(&path, held) {
            return Ok(());
        }
        match files::lock(&self.path) {
            Ok(lock) => {
                self._lock = Some(lock);
                warn!(
                    "the journal's lock file {} was removed or replaced while the daemon ran: taken again (a \
                     daemon's lock is never stale while it runs; it goes with the process)",
                    path.display()
                );
                Ok(())
            }
            // Nobody can hold a lock there (a daemon starting is refused the same way): this
            // one keeps writing under the lock it holds.
            Err(e @ Error::Unsafe { .. }) => {
                if !self.lock_unusable_said {
                    self.lock_unusable_said = true;
                    warn!(
                        "the journal's lock file was replaced by something that cannot be one ({e}): the daemon keeps writing under the lock it holds; put the lock file back or restart it"
                    );
                }
                Ok(())
            }
            Err(e) => Err(Error::LockLost { path: self.path.clone(), lock: path, reason: e.to_string() }),
        }
    }

    /// Lets go of a journal that is no longer at its path (once): copies its write-ahead log into
    /// it (wherever it now is), closes the connection, deletes its own `-wal` and `-shm` (SQLite
    /// leaves them for a database that was moved or unlinked; they would be replayed into
    /// whatever file takes the path), and only then drops the lock (a daemon starting meanwhile
    /// must not create a journal whose log this deletes). An in-memory connection stands in,
    /// never written: every flush first finds the path removed, another file, or the journal back.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the log cannot be copied now (a reader holds it): nothing is
    /// let go, and the next flush tries again.
    fn release(&mut self) -> Result<(), Error> {
        if self._lock.is_none() {
            return Ok(());
        }
        let copied = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get::<_, i64>(0))
            .is_ok_and(|busy| busy == 0);
        if !copied {
            return Err(Error::Checkpoint { path: self.path.clone() });
        }
        let own = files::own_sidecars(&self.path);
        let placeholder = Connection::open_in_memory().map_err(|source| Error::write(&self.path, source))?;
        drop(std::mem::replace(&mut self.conn, placeholder));
        for side in own {
            if let Err(e) = std::fs::remove_file(&side)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                warn!("cannot remove the journal's {}: {e}", side.display());
            }
        }
        self._lock = None;
        Ok(())
    }

    /// Creates the journal again at its path (after [`Self::release`]), with this run's state
    /// and buffered records.
    fn recreate(&mut self) -> Result<(), Error> {
        let mut fresh = Self::open(&self.reopen.config, self.run.clone(), &self.reopen.zone)?;
        fresh.record_degradations(&self.reopen.degradations)?;
        if let Some(databases) = &self.reopen.databases {
            fresh.register_databases(databases);
        }
        fresh.buffer = std::mem::take(&mut self.buffer);
        if let Some(databases) = &fresh.reopen.databases {
            fresh.buffer.databases.get_or_insert_with(|| databases.clone());
        }
        fresh.totals = self.totals;
        *self = fresh;
        Ok(())
    }

    /// What the flushes did since the journal was opened.
    #[must_use]
    pub fn flush_totals(&self) -> FlushTotals {
        self.totals
    }

    /// The journal file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lookups in `connections` the rollups' probe made so far.
    #[cfg(test)]
    pub(crate) fn rollup_lookups(&self) -> u64 {
        self.rollup.lookups
    }

    /// Buffers one record (no I/O): the row for `connections`, and its deltas added to the
    /// residency bucket of the interval containing `record.last_seen`.
    pub fn append(&mut self, record: &FlowRecord, app: &Arc<App>, dest: Option<&Destination>) {
        self.append_named(record, app, dest, &Names::default());
    }

    /// Buffers a record with its names (host name, registrable domain, source).
    pub fn append_named(&mut self, record: &FlowRecord, app: &Arc<App>, dest: Option<&Destination>, names: &Names) {
        self.buffer.add(record, app, dest, names, self.interval_secs);
    }

    /// Buffers a statistics snapshot (cumulative since the daemon started); stored as increments
    /// since the previous snapshot given to this writer.
    pub fn record_stats(&mut self, at: Timestamp, stats: &Stats) {
        self.buffer.add_stats(at, stats);
    }

    /// Records the databases in use (written by the next flush; replaces the previous list).
    pub fn register_databases(&mut self, databases: &[DbInfo]) {
        self.reopen.databases = Some(databases.to_vec());
        self.buffer.databases = Some(databases.to_vec());
    }

    /// Records waiting for the next flush.
    #[must_use]
    pub fn buffered_records(&self) -> usize {
        self.buffer.records.len()
    }

    /// Keeps SQLite's temporary storage in memory (`true`) or sets it back to the default (a
    /// prepared statement each: parsing a statement at every flush shows in the CPU per record).
    fn temp_store(&self, memory: bool) -> rusqlite::Result<()> {
        let sql = if memory { "PRAGMA temp_store = MEMORY" } else { "PRAGMA temp_store = DEFAULT" };
        self.conn.prepare_cached(sql)?.raw_execute().map(drop)
    }

    /// Writes everything buffered in one transaction (blocking; includes an fsync).
    ///
    /// # Errors
    /// [`Error::Full`] when the disk is full, [`Error::Write`] for other failures. In both cases
    /// nothing of this flush is written and the buffer is kept for the next attempt.
    pub fn flush(&mut self) -> Result<FlushReport, Error> {
        self.check_file()?;
        let started = Instant::now();
        let cpu_start = thread_cpu();
        let now = Timestamp::now();
        // The multi-row inserts keep a statement journal (to undo a failed statement alone): in
        // memory during the flush (one statement's pages), not in a temporary file; the default
        // again outside it, so that retention and migrations sort in files, not in memory.
        self.temp_store(true).map_err(|source| Error::write(&self.path, source))?;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| Error::write(&self.path, source))?;
        let written = flush::write(
            &tx,
            &self.buffer,
            &mut self.rollup,
            &mut self.interned,
            self.interval_secs,
            self.run.started_at,
            now,
        )
        .and_then(|written| tx.commit().map(|()| written))
        .map_err(|source| {
            self.rollup.forget();
            // Ids the flush added are gone with its transaction.
            self.interned.forget();
            Error::write(&self.path, source)
        });
        if let Err(e) = self.temp_store(false) {
            // The flush's outcome stands (committed or not); only later sorts stay in memory.
            warn!("journal temp_store not reset after a flush: {}", crate::errors::chain(&e));
        }
        let cpu = thread_cpu().saturating_sub(cpu_start);
        self.totals.cpu += cpu;
        let written = written?;
        self.totals.flushes += 1;
        self.totals.connections += written.connections as u64;
        let loss = self.buffer.loss;
        self.buffer.clear_written(self.interval_secs);
        if !loss.is_empty() {
            warn!(
                "journal recorded a loss: records={} buckets={} payload_bytes={} path={}",
                loss.records,
                loss.buckets,
                loss.payload_bytes,
                self.path.display()
            );
        }
        let report = FlushReport {
            connections: written.connections,
            residency_rows: written.residency,
            stats_rows: written.stats,
            loss,
            duration: started.elapsed(),
            cpu,
        };
        debug!(
            "journal flushed connections={} residency={} stats={} in {:?}",
            report.connections, report.residency_rows, report.stats_rows, report.duration
        );
        Ok(report)
    }

    /// Deletes rows past their retention (`now` minus the configured days), then returns freed
    /// pages to the file system (incremental vacuum).
    ///
    /// # Errors
    /// When the deletion fails (nothing is deleted then).
    pub fn purge_expired(&mut self, now: Timestamp) -> Result<PurgeReport, Error> {
        const DAY_MS: i64 = 86_400_000;
        let conn_cut = ms(now) - i64::from(self.connections_retention_days) * DAY_MS;
        let res_cut = ms(now) - i64::from(self.residency_retention_days) * DAY_MS;
        let path = self.path.clone();
        let map = |source| Error::write(&path, source);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(map)?;
        let connections = tx
            .execute(
                concat!("DELETE FROM connection_rows WHERE time_ms < ?1 AND id <= ", super::spans::until_id!("?1")),
                [conn_cut],
            )
            .map_err(map)?;
        super::spans::purge(&tx, conn_cut).map_err(map)?;
        // The shared parts no record refers to any more (schema 14), then their apps.
        for (table, column) in [
            ("connection_owners", "owner_id"),
            ("connection_destinations", "destination_id"),
            ("connection_names", "names_id"),
            ("connection_shapes", "shape_id"),
        ] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE id NOT IN
                         (SELECT DISTINCT {column} FROM connection_rows WHERE {column} IS NOT NULL)"
                ),
                [],
            )
            .map_err(map)?;
        }
        let residency_rows = tx
            .execute("DELETE FROM residency WHERE (interval_start + interval_secs) * 1000 <= ?1", [res_cut])
            .map_err(map)?;
        let stats_rows = tx.execute("DELETE FROM stats WHERE time_ms < ?1", [res_cut]).map_err(map)?
            + tx.execute("DELETE FROM losses WHERE last_ms < ?1", [res_cut]).map_err(map)?;
        let apps = tx
            .execute("DELETE FROM apps WHERE id NOT IN (SELECT DISTINCT app_id FROM connection_owners)", [])
            .map_err(map)?;
        // A week that started before a horizon lost rows: its rollups are never read again.
        let conn_week = conn_cut.div_euclid(1000);
        let rollup_rows = tx.execute("DELETE FROM endpoint_week WHERE week_start < ?1", [conn_week]).map_err(map)?
            + tx.execute("DELETE FROM service_week WHERE week_start < ?1", [conn_week]).map_err(map)?
            + tx.execute("DELETE FROM endpoint_name_week WHERE week_start < ?1", [conn_week]).map_err(map)?
            + tx.execute("DELETE FROM residency_week WHERE week_start < ?1", [res_cut.div_euclid(1000)])
                .map_err(map)?
            + tx.execute("DELETE FROM timeline_quarter WHERE quarter_start < ?1", [res_cut.div_euclid(1000)])
                .map_err(map)?;
        {
            let mut meta = tx
                .prepare(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                )
                .map_err(map)?;
            meta.execute(params!["connections_purged_before_ms", conn_cut]).map_err(map)?;
            meta.execute(params!["residency_purged_before_ms", res_cut]).map_err(map)?;
        }
        tx.commit().map_err(map)?;
        // Some ids it knew may be deleted now.
        self.interned.forget();
        self.conn.execute_batch("PRAGMA incremental_vacuum").map_err(map)?;
        Ok(PurgeReport { connections, residency_rows, stats_rows, apps, rollup_rows })
    }

    /// `PRAGMA integrity_check`: "ok" or the problems found.
    ///
    /// # Errors
    /// When the check cannot run.
    pub fn integrity_check(&self) -> Result<String, Error> {
        open::integrity_check(&self.conn).map_err(|source| Error::read(&self.path, source))
    }
}

impl Drop for JournalWriter {
    fn drop(&mut self) {
        if !self.buffer.is_empty() {
            warn!("journal closed with {} unflushed records path={}", self.buffer.records.len(), self.path.display());
        }
    }
}
