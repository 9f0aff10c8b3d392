//! The seam between start-up and the pipeline: where the kernel's data comes from.
//!
//! The pipeline (tracker loop, sink, output; [`super::Pipeline`]) reads an [`EventSource`]: event
//! batches, kernel statistics, counter snapshots, degradations, and the clock of the event
//! timestamps. [`ProbeSource`] is the loaded kernel programs (needs root); tests replay recorded
//! events through the same trait without root (`tests/pipeline.rs`). Reload requests come
//! through [`Reloads`]: SIGHUP in the daemon, a channel in tests.

use std::{future::Future, path::PathBuf, sync::Arc};

use aya::maps::{MapData, RingBuf};
use monitor_common::event::{Event, EventKind};
use tokio::sync::{mpsc, watch};

use crate::{
    clock::Clock,
    probe::{self, Degradation, DrainCounters, Probe, ProbeConfig, StatsReader},
    stats::KernelStats,
    tracker::OlderConnection,
};

/// Decoded kernel events, in the order the kernel produced them.
pub type Batch = Vec<(EventKind, Event)>;

/// What the pipeline reads from the kernel (or from a recording).
pub trait EventSource: Send + 'static {
    /// The watched cgroup, as reported in [`super::Output::Started`].
    fn cgroup(&self) -> PathBuf;

    /// Why fidelity is reduced on this host.
    fn degradations(&self) -> Vec<Degradation>;

    /// Converts event timestamps to wall-clock time.
    fn clock(&self) -> Clock;

    /// Now, on the clock of the event timestamps (boot-time nanoseconds for the kernel): drives
    /// periodic updates, the TCP close grace and `shutdown` records.
    fn now_ns(&self) -> u64;

    /// The event task (spawned once by the pipeline): sends batches to `tx` until `stop` turns
    /// true, then what was produced before the stop, then returns (dropping `tx` ends the
    /// pipeline's loop). When `tx` is full it waits; what the source cannot hold meanwhile is its
    /// own loss to count (the kernel counts `events_lost`).
    fn events(
        &mut self,
        tx: mpsc::Sender<Batch>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), probe::Error>> + Send + 'static;

    /// Where the event task sends payload copies (names stage); called once, before
    /// [`Self::events`]. Sources without copies ignore it.
    fn copies_to(&mut self, tx: mpsc::Sender<probe::OrderedCopies>) {
        let _ = tx;
    }

    /// The TCP counters and local addresses of connections older than the run that the source
    /// read at start, handed to the tracker once, before the first event
    /// ([`crate::tracker::Tracker::read_at_start`]). None by default.
    fn read_at_start(&mut self) -> Vec<OlderConnection> {
        Vec::new()
    }

    /// Kernel-side counters, cumulative since start.
    ///
    /// # Errors
    /// When they cannot be read.
    fn kernel_stats(&self) -> Result<KernelStats, probe::Error>;

    /// Events the kernel could not hand over so far (`KernelStats::events_lost`; 0 unreadable).
    /// Read at every event batch: sources make it cheap.
    fn events_lost(&self) -> u64 {
        self.kernel_stats().map_or(0, |s| s.events_lost)
    }

    /// Events the event task read and could not decode so far: `(received, decode_errors)`.
    fn drained(&self) -> (u64, u64);

    /// Current counters, passed to `each` as `Update` events with `FLAG_SNAPSHOT`: of the sockets
    /// whose counters changed since the previous call, or (where the kernel refuses the iterator)
    /// of the `open` sockets asked for (`at_shutdown`: searched for in every process when their
    /// owners do not hold them). Returns the cookies of sockets asked for and not found; `None`
    /// when the host cannot take snapshots.
    fn snapshot(
        &mut self,
        open: &[probe::OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<Vec<u64>>>;

    /// At shutdown, where the counter iterator took the snapshot: the kernel's TCP counters of
    /// the open TCP `sockets`, read by descriptor (`Update` events with `FLAG_TCP_COUNTERS`), so
    /// that bytes moved without the syscalls (splice) are in their `shutdown` records; and the
    /// sockets no event announced (`FLAG_UNANNOUNCED` snapshots that start their flows). `None`
    /// when not needed (snapshots by descriptor carry them already) or not possible (the default).
    fn tcp_snapshot(
        &mut self,
        sockets: &[probe::OpenSocket],
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<Vec<u64>> {
        let _ = (sockets, each);
        None
    }

    /// Of the open `sockets`, those held by no process (looked for in every process's
    /// descriptors): gone, unless an io_uring or a message in flight holds them. `None` when the
    /// host cannot tell (the default).
    fn held_by_none(&mut self, sockets: &[probe::OpenSocket]) -> Option<Vec<u64>> {
        let _ = sockets;
        None
    }

    /// Reads every open peer slot of the sockets counted per peer (`PeerUpdate` events with
    /// `FLAG_SNAPSHOT`): periodically those with an idle peer, at shutdown (`at_shutdown`: also
    /// looked for in every process) all; `sockets` are those the tracker names (a read by
    /// descriptor looks for them only). `None` when the host cannot (the default).
    fn peer_snapshot(
        &mut self,
        sockets: &[probe::OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<()>> {
        let _ = (sockets, at_shutdown, each);
        None
    }
}

/// Requests to reopen the geolocation databases.
pub trait Reloads: Send {
    /// Completes with the next request; `None` when no more can come.
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send;
}

impl Reloads for tokio::signal::unix::Signal {
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send {
        self.recv()
    }
}

impl Reloads for mpsc::Receiver<()> {
    fn next(&mut self) -> impl Future<Output = Option<()>> + Send {
        self.recv()
    }
}

/// The kernel programs, loaded and attached: the ring buffer drainer, the `STATS` reader and the
/// counter snapshotter. Dropping it detaches the programs.
pub struct ProbeSource {
    probe: Probe,
    ring: Option<RingBuf<MapData>>,
    stats: StatsReader,
    counters: Arc<DrainCounters>,
    clock: Clock,
    copies: Option<mpsc::Sender<probe::OrderedCopies>>,
    /// The ring buffer's size (`probe.ring_buffer_kib`), for the drain's pacing.
    ring_bytes: usize,
    /// Older connections' TCP counters and local addresses read at start, until the pipeline
    /// takes them.
    at_start: Vec<OlderConnection>,
}

impl ProbeSource {
    /// Loads and attaches the programs (see [`Probe::load`]).
    ///
    /// # Errors
    /// As [`Probe::load`], and when the ring buffer or statistics map is missing.
    pub fn load(config: &ProbeConfig) -> Result<Self, probe::Error> {
        let clock = Clock::now();
        let mut probe = Probe::load(config)?;
        let ring = probe.take_events()?;
        let stats = probe.take_stats()?;
        Ok(Self {
            probe,
            ring: Some(ring),
            stats,
            counters: Arc::new(DrainCounters::default()),
            clock,
            copies: None,
            ring_bytes: config.ring_buffer_bytes as usize,
            at_start: Vec::new(),
        })
    }

    /// The loaded programs (e.g. to write into their maps before the pipeline starts).
    pub fn probe_mut(&mut self) -> &mut Probe {
        &mut self.probe
    }

    /// Keeps older connections' TCP counters read at start for the pipeline
    /// ([`EventSource::read_at_start`]).
    pub fn keep_read_at_start(&mut self, connections: Vec<OlderConnection>) {
        self.at_start = connections;
    }
}

impl EventSource for ProbeSource {
    fn read_at_start(&mut self) -> Vec<OlderConnection> {
        std::mem::take(&mut self.at_start)
    }

    fn cgroup(&self) -> PathBuf {
        self.probe.cgroup().to_path_buf()
    }

    fn degradations(&self) -> Vec<Degradation> {
        self.probe.degradations().to_vec()
    }

    fn clock(&self) -> Clock {
        self.clock
    }

    fn now_ns(&self) -> u64 {
        Clock::boot_ns()
    }

    fn events(
        &mut self,
        tx: mpsc::Sender<Batch>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = Result<(), probe::Error>> + Send + 'static {
        let ring = self.ring.take();
        let counters = Arc::clone(&self.counters);
        let copies = self.copies.take();
        let ring_bytes = self.ring_bytes;
        async move {
            let ring = ring.ok_or(probe::Error::MapNotFound { name: monitor_common::maps::EVENTS })?;
            probe::drain(ring, ring_bytes, tx, copies, counters, stop).await
        }
    }

    fn copies_to(&mut self, tx: mpsc::Sender<probe::OrderedCopies>) {
        self.copies = Some(tx);
    }

    fn kernel_stats(&self) -> Result<KernelStats, probe::Error> {
        self.stats.read()
    }

    fn events_lost(&self) -> u64 {
        self.stats.events_lost().unwrap_or(0)
    }

    fn drained(&self) -> (u64, u64) {
        self.counters.snapshot()
    }

    /// One iterator pass (a syscall that walks every socket): run off the async workers with
    /// `block_in_place`, so this source needs the multi-threaded runtime.
    fn snapshot(
        &mut self,
        open: &[probe::OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<Vec<u64>>> {
        tokio::task::block_in_place(|| self.probe.snapshot(open, at_shutdown, each))
    }

    fn peer_snapshot(
        &mut self,
        sockets: &[probe::OpenSocket],
        at_shutdown: bool,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<std::io::Result<()>> {
        tokio::task::block_in_place(|| self.probe.peer_snapshot(sockets, at_shutdown, each))
    }

    fn tcp_snapshot(
        &mut self,
        sockets: &[probe::OpenSocket],
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Option<Vec<u64>> {
        tokio::task::block_in_place(|| self.probe.tcp_snapshot(sockets, each))
    }

    fn held_by_none(&mut self, sockets: &[probe::OpenSocket]) -> Option<Vec<u64>> {
        tokio::task::block_in_place(|| self.probe.held_by_none(sockets))
    }
}
