//! The pipeline after the kernel: the event task, the tracker loop, /proc lookups and the sink
//! thread. Fed by an [`EventSource`]; needs no root (tests feed it recorded events).
//!
//! [`Pipeline::run`] starts the stages, then runs the loop: each wake-up (an event batch, a run of
//! payload copies, an owner found in /proc, a tick, a reload, the shutdown signal) is handled by one
//! method of [`Running`], and records are handed to the sink in messages ([`Running::hand_due`]).
//! What happens after the loop is in [`super::shutdown`].

use std::{future::Future, sync::Arc, time::Duration};

use log::{info, warn};
use tokio::sync::{mpsc, watch};

use super::{
    Error, OUTPUT_QUEUE, Output, RECORDS_KEPT_ROOM, SINK_QUEUE, SinkTx, TICK, TRACKER_QUEUE, notify, owners, queue,
    running::{Running, Stop},
    shutdown::{Drain, shutdown_drain},
    sink::{Sink, SinkMsg},
    source::{Batch, EventSource, Reloads},
};
use crate::{
    claims::{ClaimSet, ClaimsConfig, live::Alerts},
    clock::Clock,
    enrich::Enricher,
    identity::{AppRules, Identities},
    journal::{JournalWriter, RunInfo},
    metrics::Metrics,
    naming::{self, Naming},
    probe::{self, Degradation},
    report::ReportSettings,
    settings::Settings,
    stats::Stats,
    tracker::{FlowRecord, Tracker, TrackerConfig, record::Owner},
};

/// Everything after the kernel: the tracker loop, the sink thread (identity, enrichment,
/// journal, weekly export) and the output. Fed by an [`EventSource`].
pub struct Pipeline {
    rules: AppRules,
    /// Android packages (`[android]`, or /data/system/packages.list when it exists).
    android: Option<crate::identity::android::Packages>,
    enricher: Enricher,
    journal: JournalWriter,
    tracker: TrackerConfig,
    stats_interval: Duration,
    flush_every: Duration,
    report: ReportSettings,
    claims: ClaimSet,
    claims_config: ClaimsConfig,
    metrics: Option<Arc<Metrics>>,
    naming: Naming,
    /// Whether flow records are printed (`--output` other than `none`); otherwise only the
    /// start line and statistics go to the printer.
    print_flows: bool,
}

/// The loop's state that shutdown takes over.
pub(super) struct Stages<S> {
    pub(super) source: S,
    pub(super) tracker: Tracker,
    pub(super) sink_tx: SinkTx,
    pub(super) records: Vec<FlowRecord>,
    pub(super) lost_seen: u64,
    /// Events the kernel had lost when the tracker was last told
    /// ([`crate::tracker::Tracker::events_lost`]).
    pub(super) lost_told: u64,
    /// Snapshots read socket by socket ([`Degradation::SnapshotsByDescriptor`]): they need the
    /// list of sockets to read; the iterator walks them all by itself.
    pub(super) snapshots_by_socket: bool,
}

impl<S: EventSource> Stages<S> {
    /// Tells the tracker of losses the kernel counted since it was last told (`also`: of losses
    /// the kernel cannot count, e.g. batches read and never handled). Read after a batch was
    /// drained, a loss before any of its events is counted by then, so the records it ends know
    /// of it.
    pub(super) fn tell_losses(&mut self, also: bool) {
        let lost = self.source.events_lost();
        if lost > self.lost_told || also {
            self.lost_told = lost;
            self.tracker.events_lost(self.source.now_ns());
        }
    }
}

impl Pipeline {
    /// Compiles the app rules, reads the claims file, opens the geolocation databases and the journal (no kernel, no
    /// root: a bad config fails here, before anything is attached).
    ///
    /// # Errors
    /// Invalid `[[apps]]` rules, unusable databases, a journal that cannot be opened.
    pub fn open(settings: &Settings) -> Result<Self, Error> {
        let rules = settings.apps.clone();
        let android = crate::identity::android::load(settings.android_packages_list.as_deref());
        let enricher = Enricher::open(&settings.geo)?;
        for w in enricher.warnings() {
            warn!("{w}");
        }
        for db in enricher.databases() {
            let (role, path, kind) = (&db.role, db.path.display(), &db.db.database_type);
            info!("{role} database {path} ({kind}, built {} days ago)", db.age_days);
        }
        let claims = match settings.claims.file() {
            Some(path) => std::sync::Arc::unwrap_or_clone(settings.claims.load(path)?),
            None => ClaimSet::default(),
        };
        let run = RunInfo::current(settings.source.clone());
        let mut journal = JournalWriter::open(&settings.journal, run, &settings.report.time_zone)?;
        journal.register_databases(&enricher.databases());
        info!("journal {}", journal.path().display());
        let metrics = settings.metrics.enabled.then(|| {
            let now = jiff::Timestamp::now();
            #[expect(clippy::cast_precision_loss, reason = "Unix seconds are far below 2^52")]
            let m = Metrics::new(&settings.metrics, now.as_millisecond() as f64 / 1000.0);
            m.databases(&enricher.databases(), now.as_second().try_into().unwrap_or(0));
            Arc::new(m)
        });
        Ok(Self {
            rules,
            android,
            enricher,
            journal,
            tracker: TrackerConfig {
                update_interval: settings.update_interval,
                tcp_close_grace: settings.tcp_close_grace,
                // These two follow the source's degradations, in `run`.
                syscall_payload: true,
                fresh_at_shutdown: true,
                release_events: true,
                peer_counting: true,
            },
            stats_interval: settings.stats_interval,
            flush_every: settings.journal.flush_interval(),
            report: settings.report.clone(),
            claims,
            claims_config: settings.claims.clone(),
            metrics,
            naming: Naming::new(settings.names.clone()).map_err(Error::Names)?,
            print_flows: settings.output != crate::settings::OutputFormat::None,
        })
    }

    /// The metric registry, when `[metrics]` is enabled.
    #[must_use]
    pub fn metrics(&self) -> Option<Arc<Metrics>> {
        self.metrics.clone()
    }

    /// Runs until `shutdown` completes (or the source's event task ends); returns the final
    /// statistics. Reload requests from `reloads` reopen the databases.
    ///
    /// # Errors
    /// When the sink thread or the owner lookup thread cannot be started.
    pub async fn run<S: EventSource>(
        mut self,
        mut source: S,
        mut reloads: impl Reloads,
        out: mpsc::Sender<Vec<Output>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stats, Error> {
        let degradations = source.degradations();
        let (tracker_config, snapshots_by_socket) = tracker_config(self.tracker, &degradations);
        self.announce(&source, &out, degradations).await;
        let (sink_tx, sink_rx) = queue::sink_queue(SINK_QUEUE);
        let clock = source.clock();
        let (sink, settings) = self.into_sink(clock, out);
        let stop_by = Arc::clone(&sink.stop_by);
        let sink_thread = std::thread::Builder::new()
            .name("monitor-sink".into())
            .spawn(move || sink.run(sink_rx))
            .map_err(Error::Thread)?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let (events_tx, mut events_rx) = mpsc::channel::<Batch>(TRACKER_QUEUE);
        let (copies_tx, mut copies_rx) = mpsc::channel::<probe::OrderedCopies>(naming::COPY_QUEUE);
        source.copies_to(copies_tx);
        let drainer = tokio::spawn(source.events(events_tx, stop_rx));
        let (owners_tx, mut owners_rx) = mpsc::channel::<(u64, Owner)>(OUTPUT_QUEUE);
        let mut tracker = Tracker::new(tracker_config, clock);
        tracker.read_at_start(source.read_at_start());
        let st = Stages {
            source,
            tracker,
            sink_tx,
            records: Vec::with_capacity(RECORDS_KEPT_ROOM),
            lost_seen: 0,
            lost_told: 0,
            snapshots_by_socket,
        };
        let lookups = owners::Lookups::start(owners_tx).map_err(Error::OwnerThread)?;
        let mut run = Running::new(st, lookups, settings.metrics);
        let mut stop = Stop::new(stop_tx, stop_by);
        let mut tick = tokio::time::interval(TICK);
        let mut snapshot_tick = tokio::time::interval(settings.update_interval);
        snapshot_tick.tick().await;
        let mut stats_tick = tokio::time::interval(settings.stats_interval);
        stats_tick.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                batch = events_rx.recv() => {
                    let Some(batch) = batch else { break };
                    run.batch(&batch, &mut copies_rx).await;
                }
                Some((cookie, owner)) = owners_rx.recv() => run.st.tracker.set_owner(cookie, &owner),
                Some(copies) = copies_rx.recv() => run.copies_arrived(copies).await,
                Some(()) = reloads.next() => {
                    info!("SIGHUP: reloading the geolocation databases and the claims file");
                    run.st.sink_tx.send(SinkMsg::Reload).await;
                }
                _ = tick.tick() => run.tick(events_rx.len()).await,
                _ = snapshot_tick.tick() => run.refresh(),
                _ = stats_tick.tick() => run.stats().await,
                () = &mut shutdown, if stop.deadline.is_none() => stop.begin(),
                () = tokio::time::sleep_until(stop.deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if stop.deadline.is_some() => {
                    stop.cut = true;
                    break;
                }
                // Held records are due: handed over below.
                () = tokio::time::sleep_until(run.records_due.unwrap_or_else(tokio::time::Instant::now)),
                    if run.records_due.is_some() => {}
            }
            run.hand_due().await;
        }
        let (st, lookups) = run.finish(&mut copies_rx).await;
        let drain = Drain { drainer, events_rx, cut: stop.cut, lookups };
        let (stats, unwritten) = shutdown_drain(st, drain, &mut owners_rx, sink_thread).await;
        if unwritten > 0 {
            return Err(Error::Unwritten { records: unwritten });
        }
        Ok(stats)
    }

    /// Logs the source's degradations, records them in the journal and sends the start line.
    async fn announce<S: EventSource>(
        &mut self,
        source: &S,
        out: &mpsc::Sender<Vec<Output>>,
        degradations: Vec<Degradation>,
    ) {
        for d in &degradations {
            warn!("degraded: {}", d.describe());
        }
        let names: Vec<String> = degradations.iter().map(|&d| crate::variant::name(d).to_owned()).collect();
        if let Err(e) = self.journal.record_degradations(&names) {
            warn!("degradations not recorded in the journal: {}", crate::errors::chain(&e));
        }
        let _ = out.send(vec![Output::Started { cgroup: source.cgroup(), degradations }]).await;
        // Programs attached (the source is loaded) and the journal open (`Pipeline::open`).
        notify::ready();
    }

    /// Hands the identity, names, enrichment, journal and claims stages to the sink; returns
    /// it with what the loop keeps.
    fn into_sink(self, clock: Clock, out: mpsc::Sender<Vec<Output>>) -> (Sink, LoopSettings) {
        // Live alerts are labelled with their week in the report zone, like the weekly export.
        let alerts = Alerts::new(self.claims, self.report.time_zone.tz.clone());
        let sink = Sink {
            stop_by: Arc::new(std::sync::OnceLock::new()),
            identities: {
                let ids = match self.android {
                    Some(packages) => Identities::new(self.rules, clock).with_android(packages),
                    None => Identities::new(self.rules, clock),
                };
                // In a PID namespace of its own /proc does not show the kernel's pids.
                if crate::sys::initial_pid_namespace() { ids } else { ids.without_proc() }
            },
            naming: self.naming,
            clock,
            enricher: self.enricher,
            journal: self.journal,
            flush_every: self.flush_every,
            report: self.report,
            out,
            outputs: Vec::new(),
            alerts,
            claims: self.claims_config,
            watchdog: notify::Watchdog::from_env(),
            metrics: self.metrics.clone(),
            records: 0,
            print_flows: self.print_flows,
            resume: super::resume::Resume::default(),
        };
        let settings = LoopSettings {
            update_interval: self.tracker.update_interval,
            stats_interval: self.stats_interval,
            metrics: self.metrics,
        };
        (sink, settings)
    }
}

/// The tracker's settings on a source with these degradations, and whether snapshots are read
/// socket by socket ([`Degradation::SnapshotsByDescriptor`]: they need the list of sockets to
/// read; the iterator walks them all by itself).
fn tracker_config(base: TrackerConfig, degradations: &[Degradation]) -> (TrackerConfig, bool) {
    let config = TrackerConfig {
        syscall_payload: !degradations.contains(&Degradation::PayloadFromTcpCounters),
        fresh_at_shutdown: !degradations.contains(&Degradation::NoSnapshots),
        release_events: !degradations.contains(&Degradation::NoReleaseHook),
        peer_counting: !degradations.contains(&Degradation::NoUnconnectedUdpPeers),
        ..base
    };
    (config, degradations.contains(&Degradation::SnapshotsByDescriptor))
}

/// What the loop keeps of the pipeline's settings once the sink has its stages.
struct LoopSettings {
    update_interval: Duration,
    stats_interval: Duration,
    metrics: Option<Arc<Metrics>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TrackerConfig {
        TrackerConfig {
            update_interval: Duration::from_secs(30),
            tcp_close_grace: Duration::from_secs(2),
            syscall_payload: true,
            fresh_at_shutdown: true,
            release_events: true,
            peer_counting: true,
        }
    }

    #[test]
    fn a_full_source_keeps_every_tracker_setting() {
        let (config, by_socket) = tracker_config(base(), &[]);
        assert!(config.syscall_payload && config.fresh_at_shutdown && config.release_events && config.peer_counting);
        assert_eq!(config.update_interval, Duration::from_secs(30));
        assert!(!by_socket);
    }

    #[test]
    fn each_degradation_turns_off_its_own_setting_only() {
        type Setting = fn(&TrackerConfig) -> bool;
        let cases: [(Degradation, Setting); 4] = [
            (Degradation::PayloadFromTcpCounters, |c| c.syscall_payload),
            (Degradation::NoSnapshots, |c| c.fresh_at_shutdown),
            (Degradation::NoReleaseHook, |c| c.release_events),
            (Degradation::NoUnconnectedUdpPeers, |c| c.peer_counting),
        ];
        for (degradation, setting) in cases {
            let (config, by_socket) = tracker_config(base(), &[degradation]);
            assert!(!setting(&config), "{degradation:?} must turn its setting off");
            let others =
                [config.syscall_payload, config.fresh_at_shutdown, config.release_events, config.peer_counting];
            assert_eq!(others.iter().filter(|on| !**on).count(), 1, "{degradation:?} turned off more than its own");
            assert!(!by_socket);
        }
        let (config, by_socket) = tracker_config(base(), &[Degradation::SnapshotsByDescriptor]);
        assert!(by_socket);
        assert!(config.fresh_at_shutdown, "snapshots by descriptor still refresh at shutdown");
    }
}
