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
use tokio::sync::mpsc;

use super::{FlowOutput, Output, notify, queue::SinkRx};
use crate::stats::Stats;
use crate::{
    claims::{ClaimsConfig, command::AlertCommand, live::Alerts},
    clock::Clock,
    enrich::Enricher,
    errors::chain,
    identity::Identities,
    journal::{self, JournalReader, JournalWriter},
    metrics::Metrics,
    naming::{self, Naming},
    report::{self, ReportSettings},
    tracker::FlowRecord,
};

/// How often retention is applied.
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// How often completed weeks are looked for.
const EXPORT_CHECK_EVERY: Duration = Duration::from_secs(60);
/// Repeated journal failures are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(60);
/// Least time between the logged errors of two failing episodes of the journal's writes.
const NEW_EPISODE_LOG_GAP: Duration = Duration::from_secs(10);

/// Messages from the tracker loop, in event order (so a process is observed before its records).
#[derive(Debug)]
pub enum SinkMsg {
    /// A process was seen (read it from /proc now, while it is alive); boxed, so that every
    /// queue slot stays small.
    Observe(Box<Observed>),
    /// The flow records of one event batch, in order (one message per batch: one wake-up of the
    /// sink, one hand-off to the printer).
    Records(Vec<FlowRecord>),
    /// Completeness counters (boxed: every message takes a slot of the largest variant).
    Stats(Box<Stats>),
    /// Payload copies for the names stage, in ring order (before the records of later events).
    Copies(Box<crate::probe::CopyBatch>),
    /// One second passed.
    Tick,
    /// Reopen the geolocation databases (SIGHUP).
    Reload,
    /// Shutdown: what follows (open flows closed as `shutdown`, the final statistics) is written
    /// even past the shutdown limit.
    Final,
}

/// A process seen by the tracker loop ([`SinkMsg::Observe`]).
#[derive(Debug)]
pub struct Observed {
    /// Process id.
    pub tgid: u32,
    /// Boot-time creation of the socket that revealed it.
    pub created_ns: u64,
    /// Name of the process that created it (its main thread's), as the kernel recorded it
    /// (another one than the cached entry's may be an `execve`: see `identity::process`).
    pub comm: [u8; 16],
    /// The process's start as the kernel recorded it (`Owner::start_cs`, 0 unknown).
    pub start_cs: u32,
    /// The program it ran then (`Owner::exec_mark`, 0 unknown).
    pub exec_mark: u32,
}

/// State of the sink thread.
pub struct Sink {
    /// Process identities.
    pub identities: Identities,
    /// Names stage (payload copies → host names).
    pub naming: Naming,
    /// Converts record times to the kernel's boot clock (the names stage's time).
    pub clock: Clock,
    /// Country and ASN lookups.
    pub enricher: Enricher,
    /// The journal.
    pub journal: JournalWriter,
    /// Flush interval of the journal.
    pub flush_every: Duration,
    /// Weekly export settings.
    pub report: ReportSettings,
    /// Where printed output goes: the outputs of one message in batches of at most
    /// [`super::OUTPUT_BATCH`].
    pub out: mpsc::Sender<Vec<Output>>,
    /// Outputs of the message being handled, sent to `out` when it is done.
    pub outputs: Vec<Output>,
    /// Set at shutdown: records and process lookups arriving after this instant are dropped
    /// (counted in a warning) so that exit takes bounded time.
    pub stop_by: Arc<std::sync::OnceLock<Instant>>,
    /// Live claims (empty without a claims file).
    pub alerts: Alerts,
    /// `[claims]`: the file reread on SIGHUP and the alert command.
    pub claims: ClaimsConfig,
    /// systemd's watchdog, pinged from [`SinkMsg::Tick`] (see [`notify`]).
    pub watchdog: notify::Watchdog,
    /// Flow records handled since start (for `STATUS=`).
    pub records: u64,
    /// Whether flow records go to the printer (`--output none`: no [`Output::Flow`] is built).
    pub print_flows: bool,
    /// The metric registry (`[metrics]` on): fed from the same records as the journal.
    pub metrics: Option<Arc<Metrics>>,
    /// Flows continued from an earlier run (see [`super::resume`]).
    pub resume: super::resume::Resume,
}

struct Timers {
    /// The last flush failed (full disk...): no early flushes until one succeeds.
    failing: bool,
    flush: Instant,
    purge: Instant,
    error_logged: Option<Instant>,
    /// An error of the current failing episode was logged (its end is then logged too).
    episode_logged: bool,
}

/// What the sink hands back when it stops.
pub struct SinkEnd {
    /// The identity stage (its statistics are logged).
    pub identities: Identities,
    /// Records the journal could not take before exit (a full or failing disk): lost, and the
    /// run ends with an error.
    pub unwritten: u64,
}

impl Sink {
    /// Runs until the sender side is dropped, then flushes the journal a last time.
    pub fn run(mut self, mut rx: SinkRx) -> SinkEnd {
        let now = Instant::now();
        let mut timers = Timers { failing: false, flush: now, purge: now, error_logged: None, episode_logged: false };
        let exporter = Exporter::spawn(self.journal.path().to_path_buf(), self.report.clone(), self.claims.clone());
        let command = self.start_alerts();
        let mut dropped = 0_u64;
        let mut final_part = false;
        while let Some(msg) = rx.recv() {
            let late = || !final_part && self.stop_by.get().is_some_and(|t| Instant::now() >= *t);
            match msg {
                SinkMsg::Observe(_) | SinkMsg::Records(_) if late() => {
                    if let SinkMsg::Records(records) = &msg {
                        dropped += records.len() as u64;
                    }
                }
                SinkMsg::Observe(o) => {
                    let comm = crate::tracker::comm_str(&o.comm);
                    self.identities.observe(o.tgid, o.created_ns, &comm, o.start_cs, o.exec_mark);
                }
                SinkMsg::Copies(copies) => self.copies(&copies),
                SinkMsg::Records(records) => {
                    self.outputs.reserve(records.len());
                    for record in records {
                        self.record(record, command.as_ref());
                        self.flush_if_full(&mut timers);
                        if self.resume.releases_due() {
                            self.close_earlier_peers(command.as_ref(), &mut timers, false);
                        }
                    }
                }
                SinkMsg::Stats(mut stats) => {
                    stats.names = self.naming.stats();
                    self.journal.record_stats(Timestamp::now(), &stats);
                    notify::status(&stats, self.records);
                    if let Some(m) = &self.metrics {
                        m.stats(&stats);
                    }
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
            if self.resume.closes_are_due() {
                // What released sockets' earlier peers still owe, a batch per message (ticks too).
                self.close_earlier_peers(command.as_ref(), &mut timers, false);
            }
            self.send_outputs();
        }
        self.close_earlier_peers_at_end(command.as_ref(), &mut timers);
        if dropped > 0 {
            warn!(
                "shutdown: {dropped} flow records still queued at the shutdown limit ({} s) were not written to the \
                 journal",
                super::SHUTDOWN_DRAIN.as_secs()
            );
        }
        self.flush(&mut timers);
        self.log_cpu();
        if let Some(exporter) = exporter {
            exporter.stop();
        }
        if let Some(command) = command {
            command.stop();
        }
        let unwritten = self.journal.buffered_records() as u64;
        if unwritten > 0 {
            error!("journal: {unwritten} records could not be written before exit and are lost");
        }
        SinkEnd { identities: self.identities, unwritten }
    }

    /// Remembers the alerts of the current week already in the journal (not raised again after a
    /// restart) and starts the alert command, if one is configured.
    fn start_alerts(&mut self) -> Option<AlertCommand> {
        if self.alerts.is_empty() {
            return None;
        }
        if let Some(week) = self.alerts.period_of(Timestamp::now()) {
            match self.journal.alerts_of_period(&week) {
                Ok(rows) => self.alerts.remember(rows),
                Err(e) => warn!("cannot read this week's alerts, they may be raised again: {}", chain(&e)),
            }
        }
        info!("claims watched live: {}", self.alerts.len());
        if self.claims.alert_command.is_empty() {
            return None;
        }
        match AlertCommand::spawn(self.claims.alert_command.clone(), self.claims.alert_timeout()) {
            Ok(c) => Some(c),
            Err(e) => {
                error!("cannot start the alert-command thread, alerts are only logged and journaled: {e}");
                None
            }
        }
    }

    fn record(&mut self, mut record: FlowRecord, command: Option<&AlertCommand>) {
        self.records += 1;
        let app = match self.resume.apply(&mut record, &self.journal, self.clock) {
            Some(earlier) => earlier,
            None => self.identities.app_for(&record.owner, record.first_seen),
        };
        let names = self.naming.name(naming::app_key(&app), &record, self.clock.boot_ns_of(record.first_seen));
        let destination = record.remote.map(|r| self.enricher.lookup(r.ip()));
        self.journal.append_named(&record, &app, destination.as_ref(), &names);
        if let Some(m) = &self.metrics {
            m.observe(&record, &app, destination.as_ref());
        }
        for alert in self.alerts.check_named(&record, &app, destination.as_ref(), Some(&names)) {
            super::alert::log(&alert);
            if let Some(command) = command {
                command.send(alert);
            }
        }
        if self.print_flows {
            self.emit(Output::Flow(Box::new(FlowOutput { record, app, destination, names })));
        }
    }

    /// Writes the `close` records of the peers an earlier run journaled of sockets older than
    /// this run whose release's peer closes all came (`all`: every one followed), which no run
    /// closed ([`super::resume::Resume::closes_due`]), a batch per call. A completed release is
    /// read after a flush: this run's closes of the socket's peers past the caps are then in the
    /// journal, and those peers are not closed again.
    fn close_earlier_peers(&mut self, command: Option<&AlertCommand>, timers: &mut Timers, all: bool) {
        if self.resume.releases_due() && !timers.failing {
            self.flush(timers);
        }
        let closes = self.resume.closes_due(&self.journal, self.clock, all, super::resume::CLOSES_PER_CALL);
        for close in closes {
            self.record(close, command);
            self.flush_if_full(timers);
        }
    }

    /// [`Self::close_earlier_peers`] at the sink's end, for every followed socket, for at most
    /// [`super::SHUTDOWN_DRAIN`]; what is left then is said.
    fn close_earlier_peers_at_end(&mut self, command: Option<&AlertCommand>, timers: &mut Timers) {
        let until = Instant::now() + super::SHUTDOWN_DRAIN;
        let mut all = true;
        while (all || self.resume.closes_are_due()) && Instant::now() < until {
            self.close_earlier_peers(command, timers, all);
            all = false;
        }
        let left = self.resume.closes_left();
        if left > 0 {
            warn!(
                "shutdown: {left} peers that earlier runs journaled of released sockets were not closed within {} s; \
                 their flows end on the earlier runs' records",
                super::SHUTDOWN_DRAIN.as_secs()
            );
        }
    }

    /// Early flush of a full buffer, unless the journal is failing (then only the regular retry).
    fn flush_if_full(&mut self, timers: &mut Timers) {
        if self.journal.buffered_records() >= journal::FLUSH_RECORDS && !timers.failing {
            self.flush(timers);
        }
    }

    /// Feeds payload copies to the names stage, each charged to its socket's app.
    fn copies(&mut self, copies: &crate::probe::CopyBatch) {
        for copy in copies {
            match naming::kernel_owner(&copy.header) {
                Some(owner) => {
                    let created = self.clock.wall(copy.header.owner.created_ns);
                    let app = self.identities.app_for(&owner, created);
                    self.naming.copy(naming::app_key(&app), copy);
                }
                None => self.naming.copy(crate::identity::UNKNOWN_APP, copy),
            }
        }
    }

    fn tick(&mut self, t: &mut Timers) {
        self.watchdog.tick(Instant::now());
        if flush_due(t.flush.elapsed(), self.flush_every) {
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

    /// Says where this thread's CPU went: the journal's flushes (SQLite) and the rest of the sink
    /// (identities, enrichment, names, buffering). `cargo xtask bench` reads this line.
    fn log_cpu(&self) {
        let totals = self.journal.flush_totals();
        let per_record = |d: Duration| match totals.connections {
            0 => 0.0,
            n => d.as_secs_f64() * 1e6 / n as f64,
        };
        let sink = crate::clock::thread_cpu();
        info!(
            "cpu account: sink_thread_s={:.6} journal_flush_s={:.6} journal_records={} flushes={} \
             (per record: {:.2} us in journal flushes, {:.2} us in the rest of the sink)",
            sink.as_secs_f64(),
            totals.cpu.as_secs_f64(),
            totals.connections,
            totals.flushes,
            per_record(totals.cpu),
            per_record(sink.saturating_sub(totals.cpu)),
        );
    }

    fn flush(&mut self, t: &mut Timers) {
        t.flush = Instant::now();
        let alerts = self.alerts.take_changed();
        if !alerts.is_empty()
            && let Err(e) = self.journal.save_alerts(&alerts)
        {
            warn!("cannot store {} alerts, retried at the next flush: {}", alerts.len(), chain(&e));
            self.alerts.restore(alerts);
        }
        let result = self.journal.flush();
        if let Some(m) = &self.metrics {
            m.flush(t.flush.elapsed(), result.is_ok());
        }
        match result {
            Ok(report) => {
                if t.failing && t.episode_logged {
                    // The end of a failing episode whose error was logged is said too.
                    info!(
                        "journal writes succeed again: {} records written, {} still kept for the next flushes",
                        report.connections,
                        self.journal.buffered_records()
                    );
                }
                t.failing = false;
                t.episode_logged = false;
            }
            Err(e) => {
                // Within an episode an error is logged once a minute; a new episode's first error
                // soon (not up to a minute after the last episode's), but not at every flush when
                // failures alternate with successes.
                let every = if t.failing { ERROR_LOG_EVERY } else { NEW_EPISODE_LOG_GAP };
                t.failing = true;
                if t.error_logged.is_none_or(|last| last.elapsed() >= every) {
                    t.error_logged = Some(Instant::now());
                    t.episode_logged = true;
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
        if let Some(path) = self.claims.file() {
            match self.claims.read(path) {
                Ok(set) => {
                    info!("reloaded claims file={} claims={}", path.display(), set.claims.len());
                    self.alerts.replace(set);
                }
                Err(e) => error!("claims reload failed, keeping the previous claims: {}", chain(&e)),
            }
        }
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
                if let Some(m) = &self.metrics {
                    m.databases(&databases, Timestamp::now().as_second().try_into().unwrap_or(0));
                }
                for w in self.enricher.warnings() {
                    warn!("{w}");
                }
            }
            Err(e) => error!("reload failed, keeping the previous databases: {}", chain(&e)),
        }
    }

    /// Queues `output` for the printer (sent when the current message is done).
    fn emit(&mut self, output: Output) {
        self.outputs.push(output);
    }

    /// Hands the outputs of the message just handled to the printer, in batches of at most
    /// [`super::OUTPUT_BATCH`].
    fn send_outputs(&mut self) {
        let mut outputs = std::mem::take(&mut self.outputs).into_iter();
        loop {
            let batch: Vec<Output> = outputs.by_ref().take(super::OUTPUT_BATCH).collect();
            if batch.is_empty() {
                return;
            }
            if self.out.blocking_send(batch).is_err() {
                warn!("output consumer gone; records are no longer printed");
                return;
            }
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
    fn spawn(journal: PathBuf, report: ReportSettings, claims: ClaimsConfig) -> Option<Self> {
        if report.export_formats.is_empty() {
            return None;
        }
        let (stop, stopped) = std_mpsc::channel::<()>();
        let spawned = thread::Builder::new().name("weekly-export".into()).spawn(move || {
            let mut reader = None;
            // Asked between weeks too: a backlog of weeks (a first start over an old journal)
            // must not hold a shutdown (systemd kills after `TimeoutStopSec`).
            let mut stop = false;
            let mut stopping = || {
                stop = stop || matches!(stopped.try_recv(), Ok(()) | Err(std_mpsc::TryRecvError::Disconnected));
                stop
            };
            loop {
                export_weeks(&journal, &report, &claims, &mut reader, &mut stopping);
                if stopping() {
                    break;
                }
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

/// Writes the report of every completed, not yet exported week (once, across restarts), until
/// `stopping` says so between two weeks (the rest are written at the next start). The reader is
/// opened on first use and reopened after a failure.
fn export_weeks(
    journal: &std::path::Path,
    config: &ReportSettings,
    claims: &ClaimsConfig,
    reader: &mut Option<JournalReader>,
    stopping: &mut dyn FnMut() -> bool,
) {
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
    // The claim verdicts go into the exported reports (the HTML page shows them).
    let annotate = |r: &JournalReader, query: &report::ReportQuery, rep: &mut report::Report| {
        // Read afresh, as the export's verdicts: the file as a SIGHUP last had the daemon take it.
        if let Some(file) = claims.file()
            && let Err(e) = claims.read(file).and_then(|set| crate::claims::annotate(r, query, (&set, file), rep))
        {
            warn!("weekly report {} without claim verdicts: {}", query.period.label, chain(&e));
        }
    };
    let extras = report::ExportExtras { device: config.device.clone(), annotate: Some(&annotate) };
    let result = report::pending_exports(r, Timestamp::now(), tz, formats).and_then(|weeks| {
        for week in weeks {
            if stopping() {
                info!("weekly export stopped before {week} (written at the next start)");
                break;
            }
            let written = report::export_week(r, &week, tz, &config.export_dir, formats, &extras)?;
            for path in &written {
                info!("weekly report {week} written to {}", path.display());
                if let Some(key) = &config.sign_with {
                    match crate::evidence::sign_file(path, key) {
                        Ok(sig) => info!("weekly report {week} signed: {}", sig.display()),
                        Err(e) => warn!("weekly report {week} left unsigned: {}", chain(&e)),
                    }
                }
            }
            if !written.is_empty() {
                export_verdicts(r, &week, config, claims);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        warn!("weekly export failed (retried in a minute): {}", chain(&e));
        *reader = None;
    }
}

/// Writes the claim verdicts of a week just exported, when a claims file is configured (read
/// afresh: the export thread does not share the sink's claims), signed like the reports when a
/// key is configured. Failures are logged: the report itself is written.
fn export_verdicts(r: &JournalReader, week: &str, config: &ReportSettings, claims: &ClaimsConfig) {
    let Some(file) = claims.file() else { return };
    let result = claims.read(file).and_then(|set| {
        crate::claims::export_verdicts(
            r,
            week,
            &config.time_zone,
            &config.export_dir,
            &config.export_formats,
            &set,
            file,
        )
    });
    match result {
        Ok(paths) => {
            for path in paths {
                info!("claim verdicts {week} written to {}", path.display());
                if let Some(key) = &config.sign_with {
                    match crate::evidence::sign_file(&path, key) {
                        Ok(sig) => info!("claim verdicts {week} signed: {}", sig.display()),
                        Err(e) => warn!("claim verdicts {week} left unsigned: {}", chain(&e)),
                    }
                }
            }
        }
        Err(e) => warn!("claim verdicts of {week} not written: {}", chain(&e)),
    }
}

/// Whether a flush is due at a tick, `since` the last one began: ticks come every
/// [`super::TICK`], a little late or early through the queue, so a flush interval of one tick
/// must not wait for two when a tick comes a moment early (a re-check: flushes every 1 to 2 s
/// with `flush_interval_secs = 1`, and a `kill -9` lost a second more).
fn flush_due(since: Duration, every: Duration) -> bool {
    since + super::TICK / 2 >= every
}

#[cfg(test)]
mod tests {
    use jiff::ToSpan as _;

    use super::*;
    use crate::{
        journal::tests::{
            fixtures::{self, Flow},
            tempdir, writer_in,
        },
        report::Format,
        tracker::record::RecordKind,
        zone::Zone,
    };

    /// A backlog of completed weeks stops between two weeks when the daemon stops (review
    /// finding: shutdown waited for the whole backlog); the rest are written at the next start.
    #[test]
    fn a_backlog_of_weekly_exports_stops_between_weeks() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let now = Timestamp::now();
        for weeks_ago in [2i64, 3, 4] {
            let t = now - (weeks_ago * 7 * 24).hours();
            let mut f = Flow::new(weeks_ago.unsigned_abs(), "203.0.113.10:443", t);
            w.append(&f.record(RecordKind::Close, t, 100, 10), &fixtures::app("backlog"), None);
        }
        w.flush().unwrap();
        let journal = dir.path().join("state/journal.db");
        let exports = dir.path().join("reports");
        let config = ReportSettings {
            time_zone: Zone::get("UTC").unwrap(),
            export_dir: exports.clone(),
            export_formats: vec![Format::Json],
            sign_with: None,
            device: None,
        };
        let count = || std::fs::read_dir(&exports).map_or(0, Iterator::count);
        let mut asked = 0;
        let mut stop_after_one = || {
            asked += 1;
            asked > 1
        };
        export_weeks(&journal, &config, &ClaimsConfig::default(), &mut None, &mut stop_after_one);
        assert_eq!(count(), 1, "one week written, then the stop");
        export_weeks(&journal, &config, &ClaimsConfig::default(), &mut None, &mut || false);
        assert_eq!(count(), 3, "the rest at the next start");
    }

    #[test]
    fn a_flush_is_due_at_the_tick_nearest_its_interval() {
        let ms = Duration::from_millis;
        assert!(flush_due(ms(990), ms(1000)), "a tick a moment early");
        assert!(flush_due(ms(1010), ms(1000)));
        assert!(!flush_due(ms(400), ms(1000)), "a tick right after a full buffer's flush");
        assert!(!flush_due(ms(3990), ms(5000)), "the fourth tick of five");
        assert!(flush_due(ms(4990), ms(5000)), "the fifth");
    }
}
