//! After the pipeline's loop: the last events, every open flow ended as `shutdown` with fresh
//! counters from the kernel, the final statistics; and the kernel reads the loop shares with it
//! (refreshing idle flows, lost-event warnings, statistics).

use std::{collections::HashSet, time::Duration};

use log::{debug, info, warn};
use tokio::sync::mpsc;

use super::{
    SHUTDOWN_DRAIN, owners,
    pipeline::Stages,
    sink::{SinkEnd, SinkMsg},
    source::{Batch, EventSource},
};
use crate::{
    errors::chain,
    probe,
    stats::{KernelStats, Stats, TrackerStats},
    tracker::record::Owner,
};

/// The event task and its channel, as the loop left them.
pub(super) struct Drain {
    pub(super) drainer: tokio::task::JoinHandle<Result<(), probe::Error>>,
    pub(super) events_rx: mpsc::Receiver<Batch>,
    /// The loop stopped at the shutdown limit, not when the event task ended.
    pub(super) cut: bool,
    /// The /proc owner lookups of sockets older than the monitor.
    pub(super) lookups: owners::Lookups,
}

/// After the loop: waits for the event task's last drain, applies owners found meanwhile, ends
/// every open flow as `shutdown` with fresh counters, sends the final statistics, waits for the
/// sink, and drops the source (detaching the programs). Returns the final statistics and the
/// records the journal could not take before exit.
pub(super) async fn shutdown_drain<S: EventSource>(
    mut st: Stages<S>,
    drain: Drain,
    owners_rx: &mut mpsc::Receiver<(u64, Owner)>,
    sink_thread: std::thread::JoinHandle<SinkEnd>,
) -> (Stats, u64) {
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
        Ok(Err(e)) => warn!("event drainer stopped: {}", chain(&e)),
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
    // Losses since the last batch handled, or batches read and not handled (a cut drain): the
    // open peers may lack what their slots' ends carried.
    st.tell_losses(cut && undrained > 0);
    st.tracker.shutdown_with_stale(st.source.now_ns(), &stale, &mut st.records);
    if !st.records.is_empty() {
        st.sink_tx.send(SinkMsg::Records(std::mem::take(&mut st.records))).await;
    }
    let _ = warn_if_lost(&st.source, &mut st.lost_seen);
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
    let mut unwritten = 0;
    match tokio::task::spawn_blocking(move || sink_thread.join()).await {
        Ok(Ok(end)) => {
            info!(
                "apps resolved from /proc={} from kernel data only={}",
                end.identities.stats.from_proc, end.identities.stats.from_kernel
            );
            unwritten = end.unwritten;
        }
        Ok(Err(panic)) => warn!("sink thread panicked: {}", panic_message(&*panic)),
        Err(e) => warn!("sink thread not joined: {e}"),
    }
    drop(st.source);
    info!("detached");
    (stats, unwritten)
}

/// A refresh pass this long is logged at `info` (events wait in the queues meanwhile).
const SLOW_REFRESH: Duration = Duration::from_millis(100);

/// What a refresh pass found.
pub(super) struct Refresh {
    /// Cookies of the sockets whose counters could not be read.
    pub(super) missed: HashSet<u64>,
    /// The pass took [`SLOW_REFRESH`] or longer: events waited meanwhile.
    pub(super) slow: bool,
}

/// Refreshes open flows from the kernel's counters (idle flows send no events): periodically
/// those idle for an update interval, at shutdown (`all`) every one. Returns the cookies of
/// sockets whose counters could not be read (their `shutdown` records are then incomplete) and
/// whether the pass was slow.
pub(super) fn refresh_from_kernel<S: EventSource>(st: &mut Stages<S>, all: bool) -> Refresh {
    let Stages { source, tracker, snapshots_by_socket, records, .. } = st;
    // Periodically, what had no event for an update interval; at shutdown everything.
    let interval = u64::try_from(tracker.update_interval().as_nanos()).unwrap_or(u64::MAX);
    let idle_since = (!all).then(|| source.now_ns().saturating_sub(interval));
    // Listed before the counters' snapshot, whose events make every socket it reads fresh.
    let idle_peers = idle_since.map(|t| tracker.idle_peer_sockets(t)).unwrap_or_default();
    let open = if *snapshots_by_socket { tracker.open_sockets(idle_since) } else { Vec::new() };
    let mut ignored = Vec::new();
    let mut found = 0usize;
    let mut refreshed = Vec::new();
    let started = std::time::Instant::now();
    let missed = source.snapshot(&open, all, &mut |kind, ev| {
        found += 1;
        // Flows idle until now (the iterator also reports busy ones, recorded at their ticks).
        if let Some(t) = idle_since
            && tracker.idle_since(ev.cookie, t)
        {
            refreshed.push(ev.cookie);
        }
        tracker.handle(kind, ev, &mut ignored);
    });
    // What moved since the flows' last records goes out now (the shutdown writes every flow).
    tracker.record_refreshed(&refreshed, source.now_ns(), records);
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
            warn!("counter snapshot failed: {}", chain(&e));
            tracker.open_sockets(None).iter().map(|s| s.cookie).collect()
        }
    };
    if !idle_peers.is_empty() {
        read_idle_peers(st, &idle_peers);
    }
    Refresh { missed, slow: slow || started.elapsed() >= SLOW_REFRESH }
}

/// Periodically: the peer slots of sockets counted per peer that were quiet for an update
/// interval. The kernel reports a slot at a packet once its interval is due, so the last bytes
/// of a peer that went quiet would otherwise wait in the slot for the socket's release or the
/// shutdown, and be lost with a daemon that is killed (the next tick writes them as the peer's
/// `update`).
fn read_idle_peers<S: EventSource>(st: &mut Stages<S>, sockets: &[probe::OpenSocket]) {
    let Stages { source, tracker, records, .. } = st;
    let mut found = 0usize;
    match source.peer_snapshot(sockets, false, &mut |kind, ev| {
        found += 1;
        tracker.handle(kind, ev, records);
    }) {
        None | Some(Ok(())) => debug!("idle peer slots sockets={} slots={found}", sockets.len()),
        Some(Err(e)) => debug!("idle peer slot read failed: {}", chain(&e)),
    }
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
    match source.peer_snapshot(&sockets, true, &mut |kind, ev| {
        found += 1;
        tracker.handle(kind, ev, records);
    }) {
        None => {}
        Some(Ok(())) => debug!("peer snapshot slots={found}"),
        Some(Err(e)) => {
            warn!(
                "peer slot snapshot failed: {}; peers' bytes since their last report are missing (records say so)",
                chain(&e)
            );
        }
    }
}

/// Warns once per increase of the kernel's lost-event counter; whether it grew.
pub(super) fn warn_if_lost(source: &impl EventSource, seen: &mut u64) -> bool {
    let lost = source.events_lost();
    if lost <= *seen {
        return false;
    }
    warn!("events lost: {lost} since start (ring buffer full; raise probe.ring_buffer_kib); flows may be incomplete");
    *seen = lost;
    true
}

/// The statistics as they are now: the kernel's counters, the drain's and the tracker's.
pub(super) fn stats_snapshot(source: &impl EventSource, tracker: TrackerStats, last: bool) -> Stats {
    let kernel = source.kernel_stats().unwrap_or_else(|e| {
        warn!("cannot read kernel statistics: {}", chain(&e));
        KernelStats::default()
    });
    let (events_received, decode_errors) = source.drained();
    Stats { kernel, events_received, decode_errors, tracker, names: crate::stats::NamingStats::default(), last }
}

/// The message of a thread's panic (`&str` or `String` payloads; others are named as such).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
