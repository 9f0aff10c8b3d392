//! The daemon: wires probe → tracker → output and runs until shutdown.
//!
//! Startup order: (1) resolve the cgroup, (2) load and attach the kernel programs, (3) start the
//! drainer, tracker loop and /proc lookups. Shutdown: stop reading new events, drain what the
//! kernel already produced, emit every open flow as `shutdown`, report final statistics, detach.

mod owners;
mod queue;
mod sink;

use std::{collections::HashMap, future::Future, path::PathBuf, sync::Arc, time::Duration};

use log::{debug, info, warn};
use monitor_common::event::{Event, EventKind};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

pub use queue::SINK_QUEUE;
use queue::SinkTx;
use sink::Sink;
pub use sink::{FlowOutput, SinkMsg};

use crate::{
    clock::Clock,
    enrich::Enricher,
    identity::{self, AppRules, Identities},
    journal::{JournalWriter, RunInfo},
    probe::{self, Degradation, DrainCounters, KernelStats, Probe, ProbeConfig},
    settings::Settings,
    tracker::{Tracker, TrackerConfig, TrackerStats, record::Owner},
};

/// Batches of events between the drainer and the tracker. Full ⇒ the drainer stops reading and
/// the kernel counts what it cannot queue.
pub const TRACKER_QUEUE: usize = 256;
/// Records and statistics between the sink and the printer (~1 KB each).
pub const OUTPUT_QUEUE: usize = 1024;
/// Processes remembered as already observed (cleared beyond this).
const OBSERVED_MAX: usize = 65_536;
/// How often the tracker looks for due updates and expired flows.
const TICK: Duration = Duration::from_secs(1);

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
    Stats(Stats),
}

/// Completeness counters: what the kernel produced, what arrived, what was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Kernel-side counters.
    pub kernel: KernelStats,
    /// Events read from the ring buffer.
    pub events_received: u64,
    /// Events that could not be decoded.
    pub decode_errors: u64,
    /// Tracker counters.
    pub tracker: TrackerStats,
    /// True for the last statistics of a run.
    pub last: bool,
}

/// Runs until `shutdown` completes; returns the final statistics.
///
/// # Errors
/// When the programs cannot be loaded or attached.
pub async fn run(
    settings: &Settings,
    out: mpsc::Sender<Output>,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, Error> {
    let cgroup = probe::resolve_cgroup(&settings.cgroup)?;
    let rules = AppRules::compile(&settings.apps)?;
    let enricher = Enricher::open(&settings.geo)?;
    for w in enricher.warnings() {
        warn!("{w}");
    }
    for db in enricher.databases() {
        info!("{} database {} ({}, built {} days ago)", db.role, db.path.display(), db.db.database_type, db.age_days);
    }
    let mut journal =
        JournalWriter::open(&settings.journal, RunInfo::current(settings.source.clone()), &settings.report.time_zone)?;
    journal.register_databases(&enricher.databases());
    info!("journal {}", journal.path().display());
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(Error::Signal)?;
    let clock = Clock::now();
    let mut probe = Probe::load(&ProbeConfig {
        cgroup: cgroup.clone(),
        ring_buffer_bytes: settings.ring_buffer_bytes,
        update_interval: settings.update_interval,
    })?;
    let ring = probe.take_events()?;
    let kernel_stats = probe.take_stats()?;
    let degradations = probe.degradations().to_vec();
    for d in &degradations {
        warn!("degraded: {}", d.describe());
    }
    let syscall_payload = !degradations.contains(&Degradation::PayloadFromTcpCounters);
    // Before `Started`: listeners older than the monitor carry their owner before its first accept.
    prefill_owners(&mut probe, &cgroup);
    let _ = out.send(Output::Started { cgroup, degradations }).await;
    let (sink_tx, sink_rx) = queue::sink_queue(SINK_QUEUE);
    let sink = Sink {
        identities: Identities::new(rules, clock),
        enricher,
        journal,
        flush_every: settings.journal.flush_interval(),
        report: settings.report.clone(),
        out,
    };
    let sink_thread = std::thread::Builder::new()
        .name("monitor-sink".into())
        .spawn(move || sink.run(sink_rx))
        .map_err(Error::Thread)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (events_tx, mut events_rx) = mpsc::channel::<Vec<(EventKind, Event)>>(TRACKER_QUEUE);
    let counters = Arc::new(DrainCounters::default());
    let drainer = tokio::spawn(probe::drain(ring, events_tx, Arc::clone(&counters), stop_rx));

    let mut tracker = Tracker::new(
        TrackerConfig {
            update_interval: settings.update_interval,
            tcp_close_grace: settings.tcp_close_grace,
            syscall_payload,
        },
        clock,
    );
    let (owners_tx, mut owners_rx) = mpsc::channel::<(u64, Owner)>(OUTPUT_QUEUE);
    let mut lookups = owners::Lookups::start(owners_tx).map_err(Error::OwnerThread)?;
    let mut tick = tokio::time::interval(TICK);
    let mut snapshot_tick = tokio::time::interval(settings.update_interval);
    snapshot_tick.tick().await;
    let mut stats_tick = tokio::time::interval(settings.stats_interval);
    stats_tick.tick().await;
    let mut records = Vec::new();
    let mut lost_seen = 0;
    let mut observed: HashMap<u32, u64> = HashMap::new();
    tokio::pin!(shutdown);
    let mut stopping = false;

    loop {
        tokio::select! {
            batch = events_rx.recv() => {
                let Some(batch) = batch else { break };
                for (kind, ev) in &batch {
                    log::trace!("event {kind:?} cookie={} flags={} tuple={:?} owner={:?}", ev.cookie, ev.flags, ev.tuple, ev.owner);
                    observe(&sink_tx, &mut observed, ev);
                    tracker.handle(*kind, ev, &mut records);
                }
                lookups.submit(tracker.take_owner_queries());
            }
            Some((cookie, owner)) = owners_rx.recv() => tracker.set_owner(cookie, &owner),
            _ = hangup.recv() => {
                info!("SIGHUP: reloading the geolocation databases");
                sink_tx.send(SinkMsg::Reload);
            }
            _ = tick.tick() => {
                tracker.tick(Clock::boot_ns(), &mut records);
                warn_if_lost(&kernel_stats, &mut lost_seen);
                if sink_tx.len() > SINK_QUEUE / 2 {
                    warn!("{} of {SINK_QUEUE} records wait for the journal: it is behind the traffic", sink_tx.len());
                }
                sink_tx.send(SinkMsg::Tick);
            }
            _ = snapshot_tick.tick() => refresh_from_kernel(&probe, &mut tracker),
            _ = stats_tick.tick() => {
                let stats = stats_snapshot(&kernel_stats, &counters, tracker.stats(), false);
                sink_tx.send(SinkMsg::Stats(stats));
            }
            () = &mut shutdown, if !stopping => {
                info!("stopping: draining remaining events");
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
        for record in records.drain(..) {
            sink_tx.send(SinkMsg::Record(Box::new(record)));
        }
    }
    match drainer.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("event drainer stopped: {e}"),
        Err(e) => warn!("event drainer panicked: {e}"),
    }
    while let Ok((cookie, owner)) = owners_rx.try_recv() {
        tracker.set_owner(cookie, &owner);
    }
    if lookups.dropped > 0 {
        warn!("owner lookups dropped (queue full): {}", lookups.dropped);
    }
    // Counters of open flows as they are now, not as of their last event.
    refresh_from_kernel(&probe, &mut tracker);
    tracker.shutdown(Clock::boot_ns(), &mut records);
    for record in records.drain(..) {
        sink_tx.send(SinkMsg::Record(Box::new(record)));
    }
    warn_if_lost(&kernel_stats, &mut lost_seen);
    let stats = stats_snapshot(&kernel_stats, &counters, tracker.stats(), true);
    sink_tx.send(SinkMsg::Stats(stats));
    drop(sink_tx);
    match tokio::task::spawn_blocking(move || sink_thread.join()).await {
        Ok(Ok(identities)) => info!(
            "apps resolved from /proc={} from kernel data only={}",
            identities.stats.from_proc, identities.stats.from_kernel
        ),
        _ => warn!("sink thread failed"),
    }
    drop(probe);
    info!("detached");
    Ok(stats)
}

/// Refreshes open flows from the kernel's counters (idle flows send no events).
fn refresh_from_kernel(probe: &Probe, tracker: &mut Tracker) {
    let mut ignored = Vec::new();
    match tokio::task::block_in_place(|| probe.snapshot()) {
        None => {}
        Some(Ok(events)) => {
            debug!("snapshot sockets={}", events.len());
            for (kind, ev) in &events {
                tracker.handle(*kind, ev, &mut ignored);
            }
        }
        Some(Err(e)) => warn!("counter snapshot failed: {e}"),
    }
}

/// Asks the sink to read a process from /proc the first time it is seen (or when a socket newer
/// than the last one seen reveals it, which may be a new process reusing the pid).
fn observe(tx: &SinkTx, observed: &mut HashMap<u32, u64>, ev: &Event) {
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
    tx.send(SinkMsg::Observe { tgid: ev.owner.tgid, created_ns });
}

/// Warns once per increase of the kernel's lost-event counter.
fn warn_if_lost(kernel: &probe::StatsReader, seen: &mut u64) {
    if let Ok(stats) = kernel.read()
        && stats.events_lost > *seen
    {
        warn!(
            "events lost: {} since start (ring buffer full; raise probe.ring_buffer_kib); flows may be incomplete",
            stats.events_lost
        );
        *seen = stats.events_lost;
    }
}

fn stats_snapshot(kernel: &probe::StatsReader, drain: &DrainCounters, tracker: TrackerStats, last: bool) -> Stats {
    let kernel = kernel.read().unwrap_or_else(|e| {
        warn!("cannot read kernel statistics: {e}");
        KernelStats::default()
    });
    let (events_received, decode_errors) = drain.snapshot();
    Stats { kernel, events_received, decode_errors, tracker, last }
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
