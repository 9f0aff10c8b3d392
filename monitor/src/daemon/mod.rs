//! The daemon: wires probe → tracker → sink → output and runs until shutdown.
//!
//! Two halves, joined by the [`EventSource`] seam ([`source`]):
//! - start-up ([`run`]): resolve the cgroup, open the [`Pipeline`] (app rules, databases,
//!   journal), watch SIGHUP, load and attach the kernel programs ([`ProbeSource`]);
//! - the pipeline ([`Pipeline::run`], `pipeline.rs`): the event task, the tracker loop, /proc
//!   lookups and the sink thread (`sink.rs`). It needs no root: tests feed it recorded events
//!   (`tests/pipeline.rs`). The loop's state and its handler for each kind of wake-up are in
//!   `running.rs`; what happens after the loop in `shutdown.rs`.
//!
//! Shutdown: stop reading new events, drain what the kernel already produced (for at most
//! [`SHUTDOWN_DRAIN`]; what is left is counted in a warning), emit every open flow as
//! `shutdown`, report final statistics, detach.

mod alert;
mod heap;
pub mod notify;
mod output;
mod owners;
mod pipeline;
mod queue;
mod resume;
mod running;
mod shutdown;
mod sink;
pub mod source;
mod vanish;

use std::{
    future::Future,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use log::warn;
use serde::Serialize;
use tokio::sync::mpsc;

pub use output::{AppJson, FlowOutput};
pub use pipeline::Pipeline;
pub use queue::{SINK_QUEUE, SinkRx, SinkTx, sink_queue};
pub use sink::SinkMsg;
pub use source::{Batch, EventSource, ProbeSource, Reloads};

use crate::{
    identity,
    probe::{self, Degradation, Probe, ProbeConfig},
    settings::Settings,
    stats::Stats,
    tracker::FlowRecord,
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
    /// The watched cgroup was removed and created again while the daemon ran (a restart of the
    /// service it is): the programs stay attached to the removed one.
    #[error(
        "the watched cgroup {} was removed and created again (a restart of its service?): the programs attached to \
         the removed one see nothing in the new one; stopped so that a restart attaches to it (the systemd unit \
         restarts by itself)",
        path.display()
    )]
    CgroupReplaced {
        /// The cgroup's directory.
        path: PathBuf,
    },
    /// The journal could not take every record before exit (a full or failing disk).
    #[error(
        "{records} flow records could not be written to the journal before exit and are lost (the journal write \
         errors above say why)"
    )]
    Unwritten {
        /// Records lost.
        records: u64,
    },
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
    // Bound before the journal is opened: a bad token file or a port in use stops the daemon
    // before it writes anything (its `daemon_state` would describe a run that never was). A
    // second daemon on the journal is told so first, not that the first one's port is taken.
    if settings.metrics.enabled {
        crate::journal::JournalWriter::ensure_not_locked(&settings.journal.path)?;
    }
    let bound = settings.metrics.enabled.then(|| crate::metrics::Server::bind(&settings.metrics)).transpose()?;
    let pipeline = Pipeline::open(settings)?;
    // Its own thread, outside the pipeline; stopped after the pipeline's last records.
    let server = match (pipeline.metrics(), bound) {
        (Some(m), Some(bound)) => Some(bound.serve(m)?),
        _ => None,
    };
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(Error::Signal)?;
    // Read before the programs attach: a cgroup replaced in between is then seen as replaced.
    let (cgroup_id, _) = probe::cgroup_id_and_level(&cgroup)?;
    let mut source = ProbeSource::load(&ProbeConfig {
        cgroup: cgroup.clone(),
        ring_buffer_bytes: settings.ring_buffer_bytes,
        update_interval: settings.update_interval,
        copy_payloads: settings.copy_payloads,
        getaddrinfo: settings.names.getaddrinfo,
        getaddrinfo_libc: settings.names.getaddrinfo_libc.clone(),
    })?;
    // Before `Started`: listeners older than the monitor carry their owner before its first accept.
    let counters = prefill_owners(source.probe_mut(), &cgroup);
    source.keep_read_at_start(counters);
    let replaced = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&replaced);
    let watched = cgroup.clone();
    let shutdown = async move {
        tokio::select! {
            () = shutdown => {}
            () = cgroup_replaced(&watched, cgroup_id) => flag.store(true, Ordering::Relaxed),
        }
    };
    let stats = pipeline.run(source, hangup, out, shutdown).await;
    if let Some(server) = server {
        tokio::task::block_in_place(|| server.stop());
    }
    let stats = stats?;
    if replaced.load(Ordering::Relaxed) {
        return Err(Error::CgroupReplaced { path: cgroup });
    }
    Ok(stats)
}

/// How often the daemon looks whether its cgroup is still the one its programs are attached to.
const CGROUP_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Completes once the cgroup at `path` is another one than the cgroup `id` the programs are
/// attached to: removed and created again (a systemd unit's restart does that to its cgroup).
/// The programs would see nothing in the new one, so the daemon stops (with everything recorded)
/// for a restart to attach to it. A cgroup removed and not created again is said once: nothing
/// can run in it.
async fn cgroup_replaced(path: &std::path::Path, id: u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut said_gone = false;
    loop {
        tokio::time::sleep(CGROUP_CHECK_EVERY).await;
        match std::fs::metadata(path) {
            Ok(m) if m.ino() == id => said_gone = false,
            Ok(_) => return,
            Err(e) if !said_gone => {
                said_gone = true;
                warn!(
                    "the watched cgroup {} is gone ({e}): nothing can run in it; if it is created again the monitor \
                     stops, for a restart to attach to the new one",
                    path.display()
                );
            }
            Err(_) => {}
        }
    }
}
/// Records the owners of sockets older than the monitor in the kernel (see [`owners`]).
/// Returns the TCP counters and local addresses it read of older connections.
fn prefill_owners(probe: &mut Probe, cgroup: &std::path::Path) -> Vec<crate::tracker::OlderConnection> {
    if !crate::sys::initial_pid_namespace() {
        warn!(
            "owners of older sockets not recorded: the daemon runs in a PID namespace of its own (its /proc does \
             not show the kernel's pids)"
        );
        return Vec::new();
    }
    let mount = match probe::cgroup2_mount() {
        Ok(m) => m,
        Err(e) => {
            warn!("owners of older sockets not recorded: {e}");
            return Vec::new();
        }
    };
    match probe.owner_storage() {
        Ok(mut storage) => {
            let (done, counters) = tokio::task::block_in_place(|| owners::prefill(&mut storage, cgroup, &mount));
            owners::report(&done);
            counters
        }
        Err(e) => {
            warn!("owners of older sockets not recorded: {e}");
            Vec::new()
        }
    }
}
