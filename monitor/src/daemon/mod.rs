//! The daemon: wires probe → tracker → sink → output and runs until shutdown.
//!
//! Two halves, joined by the [`EventSource`] seam ([`source`]):
//! - start-up ([`run`]): resolve the cgroup, open the [`Pipeline`] (app rules, databases,
//!   journal), watch SIGHUP, load and attach the kernel programs ([`ProbeSource`]);
//! - the pipeline ([`Pipeline::run`]): the event task, the tracker loop, /proc lookups and the
//!   sink thread. It needs no root: tests feed it recorded events (`tests/pipeline.rs`).
//!
//! Shutdown: stop reading new events, drain what the kernel already produced (for at most
//! [`SHUTDOWN_DRAIN`]; what is left is counted in a warning), emit every open flow as
//! `shutdown`, report final statistics, detach.

mod alert;
mod heap;
pub mod notify;
mod output;
mod owners;
mod queue;
mod sink;
pub mod source;

use std::{collections::HashSet, future::Future, path::PathBuf, sync::Arc, time::Duration};

use log::{debug, info, warn};
use monitor_common::event::Event;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use output::{AppJson, FlowOutput};
pub use queue::{SINK_QUEUE, SinkRx, SinkTx, sink_queue};
use sink::Sink;
pub use sink::SinkMsg;
pub use source::{Batch, EventSource, ProbeSource, Reloads};

pub use crate::stats::Stats;

use crate::{
    claims::{ClaimSet, ClaimsConfig, live::Alerts},
    enrich::Enricher,
    identity::{self, AppRules, Identities},
    journal::{JournalWriter, RunInfo},
    metrics::Metrics,
    naming::{self, Naming},
    probe::Probe,
    probe::{self, Degradation, KernelStats, ProbeConfig},
    report::ReportConfig,
    settings::Settings,
    tracker::{FlowRecord, Tracker, TrackerConfig, TrackerStats, record::Owner},
};

/// Batches of events between the drainer and the tracker. Full ⇒ the drainer stops reading and
/// the kernel counts what it cannot queue.
pub const TRACKER_QUEUE: usize = 256;
/// Outputs (records and statistics, ~1 KB each) queued between the sink and the printer at most;
/// also the capacity of the owner lookups' queue.
pub const OUTPUT_QUEUE: usize = 1024;
/// Outputs per batch from the sink to the printer at most: the queue holds
/// `OUTPUT_QUEUE / OUTPUT_BATCH` batches, so a printer behind the sink holds back as many lines
/// as one message per line did (what is queued is printed before exit).
pub const OUTPUT_BATCH: usize = 64;

/// The queue from the sink to the printer, in batches of at most [`OUTPUT_BATCH`] outputs.
#[must_use]
pub fn output_channel() -> (mpsc::Sender<Vec<Output>>, mpsc::Receiver<Vec<Output>>) {
    mpsc::channel(OUTPUT_QUEUE / OUTPUT_BATCH)
}
/// Processes remembered as already observed (cleared beyond this).
const OBSERVED_MAX: usize = 65_536;
/// Longest time shutdown spends on what arrived before the stop: events the kernel produced and
/// records queued for the journal. Under heavy load the journal is behind the traffic, so
/// working everything off could take minutes; after this, events still unread and records still
/// queued are dropped and counted in warnings (open flows are still closed as `shutdown`).
pub const SHUTDOWN_DRAIN: Duration = Duration::from_secs(5);
/// How often the tracker looks for due updates and expired flows.
const TICK: Duration = Duration::from_secs(1);
/// Records the pipeline's list of records has room for when it starts an iteration (it grows past
/// it when needed): the size of a busy churn's iteration, below the allocator's mmap threshold.
const RECORDS_KEPT_ROOM: usize = 256;
/// Longest time the pipeline holds finished records before handing them to the sink: under a
/// burst of short connections one message per few milliseconds instead of one per drain (each a
/// wake-up of the sink thread). Records are printed and journaled this much later at most.
const RECORDS_HELD: Duration = Duration::from_millis(10);
/// Records that are handed to the sink at once, without waiting for [`RECORDS_HELD`]: the list
/// stays below the allocator's mmap threshold ([`crate::sys::MMAP_THRESHOLD`]).
const RECORDS_PER_MESSAGE: usize = RECORDS_KEPT_ROOM;
const _: () = assert!(RECORDS_PER_MESSAGE * size_of::<FlowRecord>() <= crate::sys::MMAP_THRESHOLD);

/// Daemon errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The probe stage failed.
    #[error(transparent)]
    Probe(#[from] probe::Error),
    /// `[[apps]]` rules are invalid.
    #[error(transparent)]
    Apps(#[from] identity::rules::Error),
    /// A geolocation database named in the config is unusable.
    #[error(transparent)]
    Geo(#[from] crate::enrich::Error),
    /// The journal cannot be opened.
    #[error(transparent)]
    Journal(#[from] crate::journal::Error),
    /// The claims file is unusable.
    #[error(transparent)]
    Claims(#[from] crate::claims::Error),
    /// The metrics endpoint cannot start (token file, address in use).
    #[error(transparent)]
    Metrics(#[from] crate::metrics::Error),
    /// The `[names]` table sizes are invalid.
    #[error("invalid [names] settings")]
    Names(#[source] crate::names::table::ConfigError),
    /// SIGHUP could not be watched.
    #[error("failed to watch SIGHUP")]
    Signal(#[source] std::io::Error),
    /// The sink thread could not be started.
    #[error("failed to start the sink thread")]
    Thread(#[source] std::io::Error),
    /// The owner lookup thread could not be started.
    #[error("failed to start the owner lookup thread")]
    OwnerThread(#[source] std::io::Error),
}

/// What the daemon reports.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Output {
    /// Programs attached; flows follow.
    Started {
        /// The watched cgroup directory.
        cgroup: PathBuf,
        /// Why fidelity is reduced on this host.
        degradations: Vec<Degradation>,
    },
    /// A flow record with its app.
    Flow(Box<FlowOutput>),
    /// Completeness counters.
    Stats(Box<Stats>),
}

/// Runs until `shutdown` completes; returns the final statistics.
///
/// Start-up: resolve the cgroup, open the pipeline (app rules, databases, journal), watch
/// SIGHUP, load and attach the kernel programs; then [`Pipeline::run`] with them.
///
/// # Errors
/// When the programs cannot be loaded or attached, or the pipeline cannot be opened.
pub async fn run(
    settings: &Settings,
    out: mpsc::Sender<Vec<Output>>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, Error> {
    let cgroup = probe::resolve_cgroup(&settings.cgroup)?;
    let pipeline = Pipeline::open(settings)?;
    // Its own thread, outside the pipeline; stopped after the pipeline's last records.
    let server = match pipeline.metrics() {
        Some(m) => Some(crate::metrics::Server::start(&settings.metrics, m)?),
        None => None,
    };
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(Error::Signal)?;
    let mut source = ProbeSource::load(&ProbeConfig {
        cgroup: cgroup.clone(),
        ring_buffer_bytes: settings.ring_buffer_bytes,
        update_interval: settings.update_interval,
        copy_payloads: settings.copy_payloads,
        getaddrinfo: settings.names.getaddrinfo,
        getaddrinfo_libc: settings.names.getaddrinfo_libc.clone(),
    })?;
    // Before `Started`: listeners older than the monitor carry their owner before its first accept.
    prefill_owners(source.probe_mut(), &cgroup);
    let stats = pipeline.run(source, hangup, out, shutdown).await;
    if let Some(server) = server {
        tokio::task::block_in_place(|| server.stop());
    }
    stats
}

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
    report: ReportConfig,
    claims: ClaimSet,
    claims_config: ClaimsConfig,
    time_zone: jiff::tz::TimeZone,
    metrics: Option<Arc<Metrics>>,
    naming: Naming,
    /// Whether flow records are printed (`--output` other than `none`); otherwise only the
    /// start line and statistics go to the printer.
    print_flows: bool,
}

/// The loop's state that shutdown takes over.
struct Stages<S> {
    source: S,
    tracker: Tracker,
    sink_tx: SinkTx,
    records: Vec<FlowRecord>,
    lost_seen: u64,
    /// Snapshots read socket by socket ([`Degradation::SnapshotsByDescriptor`]): they need the
    /// list of sockets to read; the iterator walks them all by itself.
    snapshots_by_socket: bool,
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
            Some(path) => ClaimSet::load(path)?,
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
            time_zone: settings.time_zone.tz.clone(),
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
    /// When the sink thread cannot be started.
    pub async fn run<S: EventSource>(
        self,
        mut source: S,
        mut reloads: impl Reloads,
        out: mpsc::Sender<Vec<Output>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stats, Error> {
        let degradations = source.degradations();
        for d in &degradations {
            warn!("degraded: {}", d.describe());
        }
        let syscall_payload = !degradations.contains(&Degradation::PayloadFromTcpCounters);
        let fresh_at_shutdown = !degradations.contains(&Degradation::NoSnapshots);
        let snapshots_by_socket = degradations.contains(&Degradation::SnapshotsByDescriptor);
        let release_events = !degradations.contains(&Degradation::NoReleaseHook);
        let peer_counting = !degradations.contains(&Degradation::NoUnconnectedUdpPeers);
        let clock = source.clock();
        let mut journal = self.journal;
        let names: Vec<String> = degradations
            .iter()
            .filter_map(|d| serde_json::to_value(d).ok().and_then(|v| v.as_str().map(str::to_owned)))
            .collect();
        if let Err(e) = journal.record_degradations(&names) {
            warn!("degradations not recorded in the journal: {e}");
        }
        let _ = out.send(vec![Output::Started { cgroup: source.cgroup(), degradations }]).await;
        // Programs attached (the source is loaded) and the journal open (`Pipeline::open`).
        notify::ready();
        let (sink_tx, sink_rx) = queue::sink_queue(SINK_QUEUE);
        let stop_by = Arc::new(std::sync::OnceLock::new());
        let sink = Sink {
            stop_by: Arc::clone(&stop_by),
            identities: match self.android {
                Some(packages) => Identities::new(self.rules, clock).with_android(packages),
                None => Identities::new(self.rules, clock),
            },
            naming: self.naming,
            clock,
            enricher: self.enricher,
            journal,
            flush_every: self.flush_every,
            report: self.report,
            out,
            outputs: Vec::new(),
            alerts: Alerts::new(self.claims, self.time_zone),
            claims: self.claims_config,
            watchdog: notify::Watchdog::from_env(),
            metrics: self.metrics.clone(),
            records: 0,
            print_flows: self.print_flows,
        };
        let sink_thread = std::thread::Builder::new()
            .name("monitor-sink".into())
            .spawn(move || sink.run(sink_rx))
            .map_err(Error::Thread)?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let (events_tx, mut events_rx) = mpsc::channel::<Batch>(TRACKER_QUEUE);
        let (copies_tx, mut copies_rx) = mpsc::channel::<probe::OrderedCopies>(naming::COPY_QUEUE);
        source.copies_to(copies_tx);
        let drainer = tokio::spawn(source.events(events_tx, stop_rx));

        let tracker = Tracker::new(
            TrackerConfig { syscall_payload, fresh_at_shutdown, release_events, peer_counting, ..self.tracker },
            clock,
        );
        let mut st = Stages {
            source,
            tracker,
            sink_tx,
            records: Vec::with_capacity(RECORDS_KEPT_ROOM),
            lost_seen: 0,
            snapshots_by_socket,
        };
        let (owners_tx, mut owners_rx) = mpsc::channel::<(u64, Owner)>(OUTPUT_QUEUE);
        let mut lookups = owners::Lookups::start(owners_tx).map_err(Error::OwnerThread)?;
        let mut tick = tokio::time::interval(TICK);
        let mut snapshot_tick = tokio::time::interval(self.tracker.update_interval);
        snapshot_tick.tick().await;
        let mut stats_tick = tokio::time::interval(self.stats_interval);
        stats_tick.tick().await;
        let mut observed: foldhash::HashMap<u32, u64> = foldhash::HashMap::default();
        tokio::pin!(shutdown);
        let mut stopping = false;
        let mut drain_deadline = None;
        let mut drain_cut = false;
        let mut trim = heap::Trim::default();
        // When the records the pipeline holds are due at the sink (none held: `None`).
        let mut records_due: Option<tokio::time::Instant> = None;
        // Copies waiting for the event batches before them in the ring, and the batches handled.
        let mut copies = Copies::default();

        loop {
            tokio::select! {
                batch = events_rx.recv() => {
                    let Some(batch) = batch else { break };
                    // Copies that came before this batch in the ring go first (see
                    // `probe::drain`), after the records of the events before them.
                    copies.queue(&mut copies_rx);
                    copies.release(&mut st, &mut trim, &mut records_due).await;
                    for (kind, ev) in &batch {
                        log::trace!(
                            "event {kind:?} cookie={} flags={} tuple={:?} owner={:?}",
                            ev.cookie, ev.flags, ev.tuple, ev.owner
                        );
                        observe(&st.sink_tx, &mut observed, ev).await;
                        st.tracker.handle(*kind, ev, &mut st.records);
                        // A full message goes at once: the list keeps its room, never grown.
                        if st.records.len() >= RECORDS_PER_MESSAGE {
                            hand_records(&mut st, &mut trim, &mut records_due).await;
                        }
                    }
                    copies.handled = copies.handled.saturating_add(1);
                    copies.release(&mut st, &mut trim, &mut records_due).await;
                    lookups.submit(st.tracker.take_owner_queries());
                }
                Some((cookie, owner)) = owners_rx.recv() => st.tracker.set_owner(cookie, &owner),
                Some(run) = copies_rx.recv() => {
                    copies.waiting.push_back(run);
                    copies.release(&mut st, &mut trim, &mut records_due).await;
                }
                Some(()) = reloads.next() => {
                    info!("SIGHUP: reloading the geolocation databases and the claims file");
                    st.sink_tx.send(SinkMsg::Reload).await;
                }
                _ = tick.tick() => {
                    st.tracker.tick(st.source.now_ns(), &mut st.records);
                    warn_if_lost(&st.source, &mut st.lost_seen);
                    let queued = st.sink_tx.len();
                    if let Some(m) = &self.metrics {
                        m.queue_depth(queued);
                    }
                    trim.tick(events_rx.len(), queued);
                    if queued > st.sink_tx.max_len() / 2 {
                        warn!("{queued} of {SINK_QUEUE} records wait for the journal: it is behind the traffic");
                    }
                    st.sink_tx.send(SinkMsg::Tick).await;
                }
                _ = snapshot_tick.tick() => {
                    if refresh_from_kernel(&mut st, false).slow {
                        trim.backlog();
                    }
                }
                _ = stats_tick.tick() => {
                    let stats = stats_snapshot(&st.source, st.tracker.stats(), false);
                    st.sink_tx.send(SinkMsg::Stats(Box::new(stats))).await;
                }
                () = &mut shutdown, if !stopping => {
                    info!("stopping: draining remaining events (at most {} s)", SHUTDOWN_DRAIN.as_secs());
                    stopping = true;
                    notify::stopping();
                    drain_deadline = Some(tokio::time::Instant::now() + SHUTDOWN_DRAIN);
                    let _ = stop_by.set(std::time::Instant::now() + SHUTDOWN_DRAIN);
                    let _ = stop_tx.send(true);
                }
                () = tokio::time::sleep_until(drain_deadline.unwrap_or_else(tokio::time::Instant::now)),
                    if drain_deadline.is_some() => {
                    drain_cut = true;
                    break;
                }
                // Held records are due: handed over below.
                () = tokio::time::sleep_until(records_due.unwrap_or_else(tokio::time::Instant::now)),
                    if records_due.is_some() => {}
            }
            // Records go to the sink as one message when they fill one, or when the first of them
            // has been held for `RECORDS_HELD`.
            if st.records.len() >= RECORDS_PER_MESSAGE
                || records_due.is_some_and(|due| tokio::time::Instant::now() >= due)
            {
                hand_records(&mut st, &mut trim, &mut records_due).await;
            } else if !st.records.is_empty() && records_due.is_none() {
                records_due = Some(tokio::time::Instant::now() + RECORDS_HELD);
            }
        }
        copies.queue(&mut copies_rx);
        copies.release(&mut st, &mut trim, &mut records_due).await;
        hand_records(&mut st, &mut trim, &mut records_due).await;
        let drain = Drain { drainer, events_rx, cut: drain_cut, lookups };
        Ok(shutdown_drain(st, drain, &mut owners_rx, sink_thread).await)
    }
}

/// Payload copies on their way to the sink, in ring order with the events around them.
#[derive(Default)]
struct Copies {
    /// Runs of copies received and not yet handed on (their events are still to come).
    waiting: std::collections::VecDeque<probe::OrderedCopies>,
    /// Event batches the loop has handled.
    handled: u64,
}

impl Copies {
    /// Takes the runs the drainer has queued so far.
    fn queue(&mut self, rx: &mut mpsc::Receiver<probe::OrderedCopies>) {
        while let Ok(run) = rx.try_recv() {
            self.waiting.push_back(run);
        }
    }

    /// Hands on the runs whose events before them in the ring have all been handled: first the
    /// records of those events, then the copies. The sink then names those records before it
    /// learns from the copies (a newer answer for the same address must not name an older
    /// connection), and every later record after it.
    async fn release<S>(&mut self, st: &mut Stages<S>, trim: &mut heap::Trim, due: &mut Option<tokio::time::Instant>) {
        let handled = self.handled;
        while let Some(run) = self.waiting.pop_front_if(|run| run.after_batches <= handled) {
            hand_records(st, trim, due).await;
            st.sink_tx.send(SinkMsg::Copies(Box::new(run.copies))).await;
        }
    }
}

/// Hands the records the pipeline holds to the sink, as one message.
async fn hand_records<S>(st: &mut Stages<S>, trim: &mut heap::Trim, due: &mut Option<tokio::time::Instant>) {
    *due = None;
    if st.records.is_empty() {
        return;
    }
    let n = st.records.len();
    trim.records(n);
    // The next list has a full message's room: one grown from a smaller one is copied at every
    // doubling, into memory it touches for the first time (page faults under a churn).
    let mut records = std::mem::replace(&mut st.records, Vec::with_capacity(RECORDS_KEPT_ROOM));
    // A short list gives its spare room back (glibc shrinks a block in place, without a copy):
    // the sink queue bounds records, not messages, so a stalled journal behind a trickle of
    // single records must not hold a full message's room for each.
    if records.len() < RECORDS_KEPT_ROOM / 2 {
        records.shrink_to_fit();
    }
    st.sink_tx.send(SinkMsg::Records(records)).await;
}

/// The event task and its channel, as the loop left them.
struct Drain {
    drainer: tokio::task::JoinHandle<Result<(), probe::Error>>,
    events_rx: mpsc::Receiver<Batch>,
    /// The loop stopped at the shutdown limit, not when the event task ended.
    cut: bool,
    /// The /proc owner lookups of sockets older than the monitor.
    lookups: owners::Lookups,
}

/// After the loop: waits for the event task's last drain, applies owners found meanwhile, ends
/// every open flow as `shutdown` with fresh counters, sends the final statistics, waits for the
/// sink, and drops the source (detaching the programs).
async fn shutdown_drain<S: EventSource>(
    mut st: Stages<S>,
    drain: Drain,
    owners_rx: &mut mpsc::Receiver<(u64, Owner)>,
    sink_thread: std::thread::JoinHandle<Identities>,
) -> Stats {
    let Drain { drainer, mut events_rx, cut, lookups } = drain;
    let mut undrained = 0;
    if cut {
        drainer.abort();
        events_rx.close();
        while let Ok(batch) = events_rx.try_recv() {
            undrained += batch.len() as u64;
        }
    }
    match drainer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("event drainer stopped: {e}"),
        Err(e) => warn!("event drainer panicked: {e}"),
    }
    while let Ok((cookie, owner)) = owners_rx.try_recv() {
        st.tracker.set_owner(cookie, &owner);
    }
    if lookups.dropped > 0 {
        warn!("owner lookups dropped (queue full): {}", lookups.dropped);
    }
    // Counters of open flows as they are now, not as of their last event.
    let stale = refresh_from_kernel(&mut st, true).missed;
    read_tcp_counters(&mut st);
    read_peers(&mut st);
    // What follows is written even past the shutdown limit: open flows and the final statistics.
    st.sink_tx.send(SinkMsg::Final).await;
    st.tracker.shutdown_with_stale(st.source.now_ns(), &stale, &mut st.records);
    if !st.records.is_empty() {
        st.sink_tx.send(SinkMsg::Records(std::mem::take(&mut st.records))).await;
    }
    warn_if_lost(&st.source, &mut st.lost_seen);
    let stats = stats_snapshot(&st.source, st.tracker.stats(), true);
    if cut {
        // Submitted counts lost events too; what was neither lost nor read is still in the ring.
        let in_ring = stats.kernel.events_submitted.saturating_sub(stats.kernel.events_lost + stats.events_received);
        warn!(
            "shutdown: stopped draining after {} s; {} events left undrained ({undrained} read but not handled, \
             ~{in_ring} still in the ring buffer); their flows end as `shutdown` records with the counters known",
            SHUTDOWN_DRAIN.as_secs(),
            undrained + in_ring,
        );
    }
    st.sink_tx.send(SinkMsg::Stats(Box::new(stats))).await;
    drop(st.sink_tx);
    match tokio::task::spawn_blocking(move || sink_thread.join()).await {
        Ok(Ok(identities)) => info!(
            "apps resolved from /proc={} from kernel data only={}",
            identities.stats.from_proc, identities.stats.from_kernel
        ),
        _ => warn!("sink thread failed"),
    }
    drop(st.source);
    info!("detached");
    stats
}

/// A refresh pass this long is logged at `info` (events wait in the queues meanwhile).
const SLOW_REFRESH: Duration = Duration::from_millis(100);

/// What a refresh pass found.
struct Refresh {
    /// Cookies of the sockets whose counters could not be read.
    missed: HashSet<u64>,
    /// The pass took [`SLOW_REFRESH`] or longer: events waited meanwhile.
    slow: bool,
}

/// Refreshes open flows from the kernel's counters (idle flows send no events): periodically
/// those idle for an update interval, at shutdown (`all`) every one. Returns the cookies of
/// sockets whose counters could not be read (their `shutdown` records are then incomplete) and
/// whether the pass was slow.
fn refresh_from_kernel<S: EventSource>(st: &mut Stages<S>, all: bool) -> Refresh {
    let Stages { source, tracker, snapshots_by_socket, .. } = st;
    let open = if *snapshots_by_socket {
        let interval = u64::try_from(tracker.update_interval().as_nanos()).unwrap_or(u64::MAX);
        tracker.open_sockets((!all).then(|| source.now_ns().saturating_sub(interval)))
    } else {
        Vec::new()
    };
    let mut ignored = Vec::new();
    let mut found = 0usize;
    let started = std::time::Instant::now();
    let missed = source.snapshot(&open, all, &mut |kind, ev| {
        found += 1;
        tracker.handle(kind, ev, &mut ignored);
    });
    let took = started.elapsed();
    let slow = took >= SLOW_REFRESH;
    let missed = match missed {
        None => HashSet::new(),
        Some(Ok(missed)) => {
            let level = if slow { log::Level::Info } else { log::Level::Debug };
            log::log!(
                level,
                "snapshot sockets={found} asked={} missed={} took_ms={}",
                open.len(),
                missed.len(),
                took.as_millis()
            );
            missed.into_iter().collect()
        }
        Some(Err(e)) => {
            warn!("counter snapshot failed: {e}");
            tracker.open_sockets(None).iter().map(|s| s.cookie).collect()
        }
    };
    Refresh { missed, slow }
}

/// At shutdown, after an iterator snapshot: the kernel's TCP counters of every open TCP socket
/// (by descriptor; one its owner does not hold, e.g. a server's child after accept, is looked for
/// in every process). A socket not found (held by no process) keeps the iterator's fresh counters
/// and the TCP counters of its last update: only bytes moved without the syscalls since then are
/// missing (counted in the log). The same pass finds the sockets no event announced yet (the
/// iterator's snapshot cannot start their flows: it carries no owner or peer).
fn read_tcp_counters<S: EventSource>(st: &mut Stages<S>) {
    let Stages { source, tracker, snapshots_by_socket, .. } = st;
    if *snapshots_by_socket {
        return; // the snapshot by descriptor read them
    }
    let sockets = tracker.open_tcp_sockets();
    let mut ignored = Vec::new();
    if let Some(missed) = source.tcp_snapshot(&sockets, &mut |kind, ev| tracker.handle(kind, ev, &mut ignored)) {
        debug!("TCP counters at shutdown sockets={} missed={}", sockets.len(), missed.len());
    }
}

/// At shutdown: every open peer slot as the kernel holds it, so that peers' `shutdown` records
/// hold their last bytes, and peers claimed within the last update interval have one at all.
fn read_peers<S: EventSource>(st: &mut Stages<S>) {
    let Stages { source, tracker, records, .. } = st;
    let sockets = tracker.peer_sockets();
    let mut found = 0usize;
    match source.peer_snapshot(&sockets, &mut |kind, ev| {
        found += 1;
        tracker.handle(kind, ev, records);
    }) {
        None => {}
        Some(Ok(())) => debug!("peer snapshot slots={found}"),
        Some(Err(e)) => {
            warn!("peer slot snapshot failed: {e}; peers' bytes since their last report are missing (records say so)");
        }
    }
}

/// Asks the sink to read a process from /proc the first time it is seen (or when a socket newer
/// than the last one seen reveals it, which may be a new process reusing the pid).
async fn observe(tx: &SinkTx, observed: &mut foldhash::HashMap<u32, u64>, ev: &Event) {
    if ev.flags & monitor_common::event::FLAG_NO_OWNER != 0 || ev.owner.tgid == 0 {
        return;
    }
    let created_ns = ev.owner.created_ns;
    let last = observed.entry(ev.owner.tgid).or_insert(0);
    if *last != 0 && created_ns <= last.saturating_add(1_000_000_000) {
        return;
    }
    *last = created_ns;
    if observed.len() > OBSERVED_MAX {
        observed.clear();
    }
    tx.send(SinkMsg::Observe { tgid: ev.owner.tgid, created_ns }).await;
}

/// Warns once per increase of the kernel's lost-event counter.
fn warn_if_lost(source: &impl EventSource, seen: &mut u64) {
    if let Ok(stats) = source.kernel_stats()
        && stats.events_lost > *seen
    {
        warn!(
            "events lost: {} since start (ring buffer full; raise probe.ring_buffer_kib); flows may be incomplete",
            stats.events_lost
        );
        *seen = stats.events_lost;
    }
}

fn stats_snapshot(source: &impl EventSource, tracker: TrackerStats, last: bool) -> Stats {
    let kernel = source.kernel_stats().unwrap_or_else(|e| {
        warn!("cannot read kernel statistics: {e}");
        KernelStats::default()
    });
    let (events_received, decode_errors) = source.drained();
    Stats { kernel, events_received, decode_errors, tracker, names: crate::stats::NamingStats::default(), last }
}

/// Records the owners of sockets older than the monitor in the kernel (see [`owners`]).
fn prefill_owners(probe: &mut Probe, cgroup: &std::path::Path) {
    let mount = match probe::cgroup2_mount() {
        Ok(m) => m,
        Err(e) => return warn!("owners of older sockets not recorded: {e}"),
    };
    match probe.owner_storage() {
        Ok(mut storage) => {
            let done = tokio::task::block_in_place(|| owners::prefill(&mut storage, cgroup, &mount));
            owners::report(&done);
        }
        Err(e) => warn!("owners of older sockets not recorded: {e}"),
    }
}
