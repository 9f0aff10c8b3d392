//! The pipeline loop's state, with one handler per kind of wake-up: an event batch, a run of
//! payload copies, the periodic tick, a refresh of idle flows, statistics, and shutdown. Records
//! go to the sink in messages ([`Running::hand_due`]).

use std::sync::Arc;

use log::{info, warn};
use monitor_common::event::Event;
use tokio::sync::{mpsc, watch};

use super::{
    OBSERVED_MAX, RECORDS_HELD, RECORDS_KEPT_ROOM, RECORDS_PER_MESSAGE, SHUTDOWN_DRAIN, SINK_QUEUE, SinkTx, heap,
    notify, owners,
    pipeline::Stages,
    shutdown::{refresh_from_kernel, stats_snapshot, warn_if_lost},
    sink::{Observed, SinkMsg},
    source::{Batch, EventSource},
    vanish,
};
use crate::{metrics::Metrics, probe};

/// Shutdown as the loop sees it: asked for, and how long the drain may take.
pub(super) struct Stop {
    stop_tx: watch::Sender<bool>,
    /// Shared with the sink: what arrives after this is dropped (counted).
    stop_by: Arc<std::sync::OnceLock<std::time::Instant>>,
    /// When the drain of what the kernel already produced is cut (`None`: not stopping).
    pub(super) deadline: Option<tokio::time::Instant>,
    /// The loop stopped at the deadline, not when the event task ended.
    pub(super) cut: bool,
}

impl Stop {
    pub(super) fn new(stop_tx: watch::Sender<bool>, stop_by: Arc<std::sync::OnceLock<std::time::Instant>>) -> Self {
        Self { stop_tx, stop_by, deadline: None, cut: false }
    }

    /// Stops reading new events; what the kernel already produced is drained until the deadline.
    pub(super) fn begin(&mut self) {
        info!("stopping: draining remaining events (at most {} s)", SHUTDOWN_DRAIN.as_secs());
        notify::stopping();
        self.deadline = Some(tokio::time::Instant::now() + SHUTDOWN_DRAIN);
        let _ = self.stop_by.set(std::time::Instant::now() + SHUTDOWN_DRAIN);
        let _ = self.stop_tx.send(true);
    }
}

/// The loop's state: the stages shutdown takes over, and what the loop keeps between wake-ups.
pub(super) struct Running<S> {
    pub(super) st: Stages<S>,
    /// The /proc owner lookups of sockets older than the monitor.
    lookups: owners::Lookups,
    metrics: Option<Arc<Metrics>>,
    /// Processes asked for, with the creation time of the newest socket that revealed them.
    observed: foldhash::HashMap<ObservedKey, u64>,
    trim: heap::Trim,
    /// When the records the pipeline holds are due at the sink (none held: `None`).
    pub(super) records_due: Option<tokio::time::Instant>,
    /// Copies waiting for the event batches before them in the ring, and the batches handled.
    copies: Copies,
    /// When a loss of kernel events last sent a statistics snapshot ([`LOSS_SNAPSHOT_GAP`]).
    loss_snapshot_at: Option<tokio::time::Instant>,
    /// The wall-clock step since start last warned of (nanoseconds; [`WALL_STEP_WARNED`]).
    wall_step_told: i128,
    /// Flows whose sockets are gone without their end ([`vanish`]).
    vanish: vanish::Vanish,
}

/// Wall-clock steps since the last one warned of that the tick warns of: the monitor's record
/// times follow the wall clock as it was at start.
const WALL_STEP_WARNED: i128 = 1_000_000_000;

/// Least time between two statistics snapshots sent because the kernel lost events (a ring
/// buffer full for hours must not write a statistics row a second).
const LOSS_SNAPSHOT_GAP: std::time::Duration = std::time::Duration::from_secs(10);

impl<S: EventSource> Running<S> {
    pub(super) fn new(st: Stages<S>, lookups: owners::Lookups, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            st,
            lookups,
            metrics,
            observed: foldhash::HashMap::default(),
            trim: heap::Trim::default(),
            records_due: None,
            copies: Copies::default(),
            loss_snapshot_at: None,
            wall_step_told: 0,
            vanish: vanish::Vanish::default(),
        }
    }

    /// After the loop: the copies and records still held go to the sink; returns the stages and
    /// the lookups for shutdown.
    pub(super) async fn finish(
        mut self,
        copies_rx: &mut mpsc::Receiver<probe::OrderedCopies>,
    ) -> (Stages<S>, owners::Lookups) {
        self.copies.queue(copies_rx);
        self.release_copies().await;
        self.hand_records().await;
        (self.st, self.lookups)
    }

    /// One batch of events, in ring order: copies that came before it go first (see
    /// `probe::drain`), after the records of the events before them.
    pub(super) async fn batch(&mut self, batch: &Batch, copies_rx: &mut mpsc::Receiver<probe::OrderedCopies>) {
        self.st.tell_losses(false);
        self.copies.queue(copies_rx);
        self.release_copies().await;
        for (kind, ev) in batch {
            log::trace!(
                "event {kind:?} cookie={} flags={} tuple={:?} owner={:?}",
                ev.cookie,
                ev.flags,
                ev.tuple,
                ev.owner
            );
            observe(&self.st.sink_tx, &mut self.observed, ev).await;
            self.st.tracker.handle(*kind, ev, &mut self.st.records);
            // A full message goes at once: the list keeps its room, never grown.
            if self.st.records.len() >= RECORDS_PER_MESSAGE {
                self.hand_records().await;
            }
        }
        self.copies.handled = self.copies.handled.saturating_add(1);
        self.release_copies().await;
        self.lookups.submit(self.st.tracker.take_owner_queries());
    }

    /// A run of payload copies from the drainer: handed on once the batches before it are.
    pub(super) async fn copies_arrived(&mut self, copies: probe::OrderedCopies) {
        self.copies.waiting.push_back(copies);
        self.release_copies().await;
    }

    /// The periodic tick: due updates and expired flows, lost events, queue depths.
    pub(super) async fn tick(&mut self, event_batches_queued: usize) {
        let st = &mut self.st;
        st.tracker.tick(st.source.now_ns(), &mut st.records);
        // New losses go to the journal with a statistics snapshot now, not at the next interval:
        // a daemon killed before it would leave its losses unknown to reports.
        let lost = warn_if_lost(&st.source, &mut st.lost_seen);
        let queued = st.sink_tx.len();
        if let Some(m) = &self.metrics {
            m.queue_depth(queued);
        }
        self.trim.tick(event_batches_queued, queued);
        if queued > st.sink_tx.max_len() / 2 {
            warn!("{queued} of {SINK_QUEUE} records wait for the journal: it is behind the traffic");
        }
        st.sink_tx.send(SinkMsg::Tick).await;
        let step = st.source.clock().wall_step_ns();
        if (step - self.wall_step_told).abs() > WALL_STEP_WARNED {
            self.wall_step_told = step;
            warn!(
                "the wall clock was set {:+.3} s since the monitor started: record times keep following the clock as \
                 it was at start (restart the monitor to follow it; as a service, order it after time-sync.target)",
                step as f64 / 1e9
            );
        }
        if lost && self.loss_snapshot_at.is_none_or(|at| at.elapsed() >= LOSS_SNAPSHOT_GAP) {
            self.loss_snapshot_at = Some(tokio::time::Instant::now());
            self.stats().await;
        }
    }

    /// Idle flows' counters from the kernel (they send no events); every few refreshes, the
    /// flows whose sockets are gone without their end are ended ([`vanish`]).
    pub(super) fn refresh(&mut self) {
        if refresh_from_kernel(&mut self.st, false).slow {
            self.trim.backlog();
        }
        self.vanish.refresh(&mut self.st);
    }

    /// Statistics for the sink (printed, journaled).
    pub(super) async fn stats(&mut self) {
        let stats = stats_snapshot(&self.st.source, self.st.tracker.stats(), false);
        self.st.sink_tx.send(SinkMsg::Stats(Box::new(stats))).await;
    }

    /// After every wake-up: records go to the sink as one message when they fill one, or when
    /// the first of them has been held for [`RECORDS_HELD`].
    pub(super) async fn hand_due(&mut self) {
        if self.st.records.len() >= RECORDS_PER_MESSAGE
            || self.records_due.is_some_and(|due| tokio::time::Instant::now() >= due)
        {
            self.hand_records().await;
        } else if !self.st.records.is_empty() && self.records_due.is_none() {
            self.records_due = Some(tokio::time::Instant::now() + RECORDS_HELD);
        }
    }

    /// Hands on the runs of copies whose events before them in the ring have all been handled:
    /// first the records of those events, then the copies. The sink then names those records
    /// before it learns from the copies (a newer answer for the same address must not name an
    /// older connection), and every later record after it.
    async fn release_copies(&mut self) {
        let handled = self.copies.handled;
        while let Some(run) = self.copies.waiting.pop_front_if(|run| run.after_batches <= handled) {
            self.hand_records().await;
            self.st.sink_tx.send(SinkMsg::Copies(Box::new(run.copies))).await;
        }
    }

    /// Hands the records the pipeline holds to the sink, as one message.
    async fn hand_records(&mut self) {
        self.records_due = None;
        let st = &mut self.st;
        if st.records.is_empty() {
            return;
        }
        let n = st.records.len();
        self.trim.records(n);
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
}

/// Payload copies on their way to the sink, in ring order with the events around them.
#[derive(Default)]
pub(super) struct Copies {
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
}

/// A process as [`observe`] tells them apart: pid, name, start and program mark as the kernel
/// recorded them.
type ObservedKey = (u32, [u8; 16], u32, [u8; 3]);

/// Asks the sink to read a process from /proc the first time it is seen with a thread name and
/// start (or, its start unknown, when a socket newer than the last one seen reveals it, which may
/// be a new process reusing the pid); a new thread name or program mark may be a new program
/// after an `execve`, read while it runs, and a new start is another process that reused the pid.
async fn observe(tx: &SinkTx, observed: &mut foldhash::HashMap<ObservedKey, u64>, ev: &Event) {
    if ev.flags & monitor_common::event::FLAG_NO_OWNER != 0 || ev.owner.tgid == 0 {
        return;
    }
    let created_ns = ev.owner.created_ns;
    let last = observed.entry((ev.owner.tgid, ev.owner.comm, ev.owner.start_cs, ev.owner.exec_mark)).or_insert(0);
    if *last != 0 && created_ns <= last.saturating_add(1_000_000_000) {
        return;
    }
    *last = created_ns;
    if observed.len() > OBSERVED_MAX {
        observed.clear();
    }
    let (tgid, comm, start_cs, exec_mark) = (ev.owner.tgid, ev.owner.comm, ev.owner.start_cs, ev.owner.exec_mark());
    let observed = Observed { tgid, created_ns, comm, start_cs, exec_mark };
    tx.send(SinkMsg::Observe(Box::new(observed))).await;
}
