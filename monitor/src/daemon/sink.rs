//! Sink stage: gives every flow record its app (identity) and destination (enrichment), journals
//! it and hands it to the printer. Runs on its own thread: it reads /proc and database files and
//! writes the journal, none of which may block the async runtime.
//!
//! Journal duties, driven by the tracker loop's one-second `Tick`: flush every
//! `journal.flush_interval_secs` (a failed flush keeps the rows for the next one), apply retention
//! hourly, and write the report of every completed week to `report.export_dir` once.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use jiff::Timestamp;
use log::{error, info, warn};
use serde::Serialize;
use tokio::sync::mpsc;

use super::{Output, Stats, queue::SinkRx};
use crate::{
    enrich::{Destination, Enricher},
    identity::{App, Identities},
    journal::{JournalReader, JournalWriter},
    report::{self, ReportConfig},
    tracker::FlowRecord,
};

/// How often retention is applied.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often completed weeks are looked for.
const EXPORT_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Repeated journal failures are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// Records buffered before the journal is flushed early (bounds memory: ~1 KB per record).
const FLUSH_BATCH: usize = 2048;

/// Messages from the tracker loop, in event order (so a process is observed before its records).
#[derive(Debug)]
pub enum SinkMsg {
    /// A process was seen (read it from /proc now, while it is alive).
    Observe {
        /// Process id.
        tgid: u32,
        /// Boot-time creation of the socket that revealed it.
        created_ns: u64,
    },
    /// A flow record.
    Record(Box<FlowRecord>),
    /// Completeness counters.
    Stats(Stats),
    /// One second passed.
    Tick,
    /// Reopen the geolocation databases (SIGHUP).
    Reload,
    /// Shutdown: what follows (open flows closed as `shutdown`, the final statistics) is written
    /// even past the shutdown limit.
    Final,
}

/// A flow record with its app and destination, as printed and journaled.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOutput {
    /// The record.
    #[serde(flatten)]
    pub record: FlowRecord,
    /// The app it is charged to.
    pub app: Arc<App>,
    /// Country and network owner of the remote address (`None` without a remote address).
    pub destination: Option<Destination>,
}

/// State of the sink thread.
pub struct Sink {
    /// Process identities.
    pub identities: Identities,
    /// Country and ASN lookups.
    pub enricher: Enricher,
    /// The journal.
    pub journal: JournalWriter,
    /// Flush interval of the journal.
    pub flush_every: Duration,
    /// Weekly export settings.
    pub report: ReportConfig,
    /// Where printed output goes.
    pub out: mpsc::Sender<Output>,
    /// Set at shutdown: records and process lookups arriving after this instant are dropped
    /// (counted in a warning) so that exit takes bounded time.
    pub stop_by: Arc<std::sync::OnceLock<Instant>>,
}

struct Timers {
    /// The last flush failed (full disk...): no early flushes until one succeeds.
    failing: bool,
    flush: Instant,
    purge: Instant,
    export: Option<Instant>,
    error_logged: Option<Instant>,
}

impl Sink {
    /// Runs until the sender side is dropped, then flushes the journal a last time.
    pub fn run(mut self, rx: SinkRx) -> Identities {
        let now = Instant::now();
        let mut timers = Timers { failing: false, flush: now, purge: now, export: None, error_logged: None };
        let mut dropped = 0_u64;
        let mut final_part = false;
        while let Some(msg) = rx.recv() {
            let late = || !final_part && self.stop_by.get().is_some_and(|t| Instant::now() >= *t);
            match msg {
                SinkMsg::Observe { .. } | SinkMsg::Record(_) if late() => {
                    dropped += u64::from(matches!(msg, SinkMsg::Record(_)));
                }
                SinkMsg::Observe { tgid, created_ns } => self.identities.observe(tgid, created_ns),
                SinkMsg::Record(record) => {
                    self.record(*record);
                    // Early flush, unless the journal is failing (then only the regular retry).
                    if self.journal.buffered_records() >= FLUSH_BATCH && !timers.failing {
                        self.flush(&mut timers);
                    }
                }
                SinkMsg::Stats(stats) => {
                    self.journal.record_stats(Timestamp::now(), &stats);
                    let e = self.enricher.stats();
                    info!(
                        "enrichment lookups={} public={} unknown_country={} unknown_asn={} lookup_errors={} cache_hits={}",
                        e.lookups, e.scopes.public, e.unknown_country, e.unknown_asn, e.lookup_errors, e.cache_hits
                    );
                    self.emit(Output::Stats(stats));
                }
                SinkMsg::Tick => self.tick(&mut timers),
                SinkMsg::Reload => self.reload(),
                SinkMsg::Final => final_part = true,
            }
        }
        if dropped > 0 {
            warn!(
                "shutdown: {dropped} flow records still queued at the shutdown limit ({} s) were not written to the \
                 journal",
                super::SHUTDOWN_DRAIN.as_secs()
            );
        }
        self.flush(&mut timers);
        if self.journal.buffered_records() > 0 {
            error!(
                "journal: {} records could not be written before exit and are lost",
                self.journal.buffered_records()
            );
        }
        self.identities
    }

    fn record(&mut self, record: FlowRecord) {
        let app = self.identities.app_for(&record.owner, record.first_seen);
        let destination = record.remote.map(|r| self.enricher.lookup(r.ip()));
        self.journal.append(&record, &app, destination.as_ref());
        self.emit(Output::Flow(Box::new(FlowOutput { record, app, destination })));
    }

    fn tick(&mut self, t: &mut Timers) {
        if t.flush.elapsed() >= self.flush_every {
            self.flush(t);
        }
        if t.purge.elapsed() >= PURGE_EVERY {
            t.purge = Instant::now();
            match self.journal.purge_expired(Timestamp::now()) {
                Ok(report) => info!("journal retention applied: {report:?}"),
                Err(e) => warn!("journal retention failed: {}", chain(&e)),
            }
        }
        if t.export.is_none_or(|last| last.elapsed() >= EXPORT_CHECK_EVERY) {
            t.export = Some(Instant::now());
            self.export_weeks();
        }
    }

    fn flush(&mut self, t: &mut Timers) {
        t.flush = Instant::now();
        match self.journal.flush() {
            Ok(_) => t.failing = false,
            Err(e) => {
                t.failing = true;
                if t.error_logged.is_none_or(|last| last.elapsed() >= ERROR_LOG_EVERY) {
                    t.error_logged = Some(Instant::now());
                    error!(
                        "journal write failed, {} records kept in memory for the next attempt: {}",
                        self.journal.buffered_records(),
                        chain(&e)
                    );
                }
            }
        }
    }

    /// Writes the report of every completed, not yet exported week (once, across restarts).
    fn export_weeks(&self) {
        let formats = &self.report.export_formats;
        if formats.is_empty() {
            return;
        }
        let tz = &self.report.time_zone;
        let result = JournalReader::open(self.journal.path()).map_err(report::Error::from).and_then(|reader| {
            for week in report::pending_exports(&reader, Timestamp::now(), tz, formats)? {
                for path in report::export_week(&reader, &week, tz, &self.report.export_dir, formats)? {
                    info!("weekly report {week} written to {}", path.display());
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            warn!("weekly export failed (retried in a minute): {}", chain(&e));
        }
    }

    fn reload(&mut self) {
        match self.enricher.reload() {
            Ok(()) => {
                let databases = self.enricher.databases();
                for db in &databases {
                    info!("reloaded {} database {} ({}, {} days old)", db.role, db.path.display(), db.db.database_type, db.age_days);
                }
                self.journal.register_databases(&databases);
                for w in self.enricher.warnings() {
                    warn!("{w}");
                }
            }
            Err(e) => error!("reload failed, keeping the previous databases: {}", chain(&e)),
        }
    }

    fn emit(&self, output: Output) {
        if self.out.blocking_send(output).is_err() {
            warn!("output consumer gone; records are no longer printed");
        }
    }
}

/// `error: cause: cause...` of an error chain, on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
