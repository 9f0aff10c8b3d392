//! Sink stage: gives every flow record its app (identity) and destination (enrichment), journals
//! it and hands it to the printer. Runs on its own thread: it reads /proc and database files and
//! writes the journal, none of which may block the async runtime.
//!
//! Journal duties, driven by the tracker loop's one-second `Tick`: flush every
//! `journal.flush_interval_secs` (a failed flush keeps the rows for the next one) and apply
//! retention hourly. The report of every completed week is written to `report.export_dir` once,
//! by a thread of its own with its own reader ([`Exporter`]): a slow report never stalls the sink.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        mpsc::{self as std_mpsc, RecvTimeoutError},
    },
    thread::{self, JoinHandle},
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
    /// Completeness counters (boxed: every message takes a slot of the largest variant).
    Stats(Box<Stats>),
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
    error_logged: Option<Instant>,
}

impl Sink {
    /// Runs until the sender side is dropped, then flushes the journal a last time.
    pub fn run(mut self, mut rx: SinkRx) -> Identities {
        let now = Instant::now();
        let mut timers = Timers { failing: false, flush: now, purge: now, error_logged: None };
        let exporter = Exporter::spawn(self.journal.path().to_path_buf(), self.report.clone());
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
                    self.emit(Output::Stats(*stats));
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
        if let Some(exporter) = exporter {
            exporter.stop();
        }
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

    fn reload(&mut self) {
        match self.enricher.reload() {
            Ok(()) => {
                let databases = self.enricher.databases();
                for db in &databases {
                    info!(
                        "reloaded {} database {} ({}, {} days old)",
                        db.role,
                        db.path.display(),
                        db.db.database_type,
                        db.age_days
                    );
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

/// The weekly-export thread: checks for completed weeks at start and every
/// [`EXPORT_CHECK_EVERY`], with its own [`JournalReader`] (SQLite connections only: the journal
/// file is never opened otherwise in the daemon, see `journal`).
struct Exporter {
    stop: std_mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Exporter {
    /// Starts the thread; `None` when exports are off (no formats) or the thread cannot start.
    fn spawn(journal: PathBuf, report: ReportConfig) -> Option<Self> {
        if report.export_formats.is_empty() {
            return None;
        }
        let (stop, stopped) = std_mpsc::channel::<()>();
        let spawned = thread::Builder::new().name("weekly-export".into()).spawn(move || {
            let mut reader = None;
            loop {
                export_weeks(&journal, &report, &mut reader);
                match stopped.recv_timeout(EXPORT_CHECK_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        match spawned {
            Ok(thread) => Some(Self { stop, thread }),
            Err(e) => {
                error!("cannot start the weekly-export thread, no weekly reports are written: {e}");
                None
            }
        }
    }

    /// Stops the thread after the export in progress, if any.
    fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            error!("the weekly-export thread panicked");
        }
    }
}

/// Writes the report of every completed, not yet exported week (once, across restarts). The
/// reader is opened on first use and reopened after a failure.
fn export_weeks(journal: &std::path::Path, config: &ReportConfig, reader: &mut Option<JournalReader>) {
    let formats = &config.export_formats;
    let tz = &config.time_zone;
    if reader.is_none() {
        match JournalReader::open(journal) {
            Ok(r) => *reader = Some(r),
            Err(e) => {
                warn!("weekly export failed (retried in a minute): {}", chain(&e));
                return;
            }
        }
    }
    let Some(r) = reader.as_ref() else { return };
    let result = report::pending_exports(r, Timestamp::now(), tz, formats).and_then(|weeks| {
        for week in weeks {
            for path in report::export_week(r, &week, tz, &config.export_dir, formats)? {
                info!("weekly report {week} written to {}", path.display());
                if let Some(key) = &config.sign_with {
                    match crate::evidence::sign_file(&path, key) {
                        Ok(sig) => info!("weekly report {week} signed: {}", sig.display()),
                        Err(e) => warn!("weekly report {week} left unsigned: {}", chain(&e)),
                    }
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        warn!("weekly export failed (retried in a minute): {}", chain(&e));
        *reader = None;
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
