//! In-memory buffer between flushes: pending records, residency buckets, statistics rows.
//!
//! Bounded: past [`MAX_BUFFERED_RECORDS`] records or [`MAX_BUFFERED_BUCKETS`] buckets (only
//! reached while flushes keep failing) the oldest entries are dropped and counted in [`Loss`].

use std::{
    collections::{BTreeMap, VecDeque},
    hash::BuildHasher,
    sync::Arc,
};

use foldhash::fast::FixedState;

use jiff::Timestamp;
use log::warn;
use serde::Serialize;

use super::{
    names,
    seen::{Mark, Seen},
};
use crate::{
    enrich::{DbInfo, DbRef, Destination},
    identity::App,
    names::Names,
    stats::{KernelStats, Stats, TrackerStats},
    tracker::{
        FlowRecord,
        record::{Payload, RecordKind, Wire},
    },
};

/// Records kept in memory while flushes fail (~100 MB at most), before the oldest are dropped.
pub const MAX_BUFFERED_RECORDS: usize = 200_000;
/// Residency buckets kept in memory while flushes fail, before the oldest are dropped.
pub const MAX_BUFFERED_BUCKETS: usize = 100_000;
/// Records buffered before the sink flushes early ([`crate::daemon`]'s sink asks
/// [`super::JournalWriter::buffered_records`]): 2,048 of 480 bytes, 0.94 MiB (4,096 took no less
/// CPU per record in the churn-shaped replay, and twice the memory). It was 8,192 when every
/// record of a UDP server's peers fed `connections_cookie` at scattered places, and larger
/// commits wrote fewer index pages per record (BENCHMARKS.md, "Journal commits"); since schema
/// 14 only a socket's first record at each endpoint (a client's address) or service in a week
/// does.
pub const FLUSH_RECORDS: usize = 2048;
/// Record slots kept after an early flush ([`FLUSH_RECORDS`] or more records: a busy daemon): one
/// early flush's worth, so a steady churn fills the same pages flush after flush instead of
/// growing a fresh mapping each time (those page faults cost 6 % of the daemon's CPU per record;
/// BENCHMARKS.md, "A buffer that keeps its room"). A buffer grown beyond it (flushes failing) is
/// a mapping of its own, given back whole.
const BUSY_RECORD_CAPACITY: usize = FLUSH_RECORDS;
/// Record slots kept after a flush of fewer records (the timer's: a quiet daemon, or the end of
/// a burst), 120 KiB: below the allocator's mmap threshold ([`crate::sys::MMAP_THRESHOLD`]), so
/// the room of a burst (a refresh of 100,000 open flows) is given back once it is over.
const QUIET_RECORD_CAPACITY: usize = 256;

/// What the buffer had to drop because it was full (flushes failing for a long time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Loss {
    /// Connection records dropped (their bytes are still in residency rows).
    pub records: u64,
    /// Residency buckets dropped (their bytes are missing from reports).
    pub buckets: u64,
    /// Payload bytes (up + down) of the dropped buckets.
    pub payload_bytes: u64,
    /// Wire bytes (up + down) of the dropped buckets.
    pub wire_bytes: u64,
    /// Earliest time of dropped data.
    pub first: Option<Timestamp>,
    /// Latest time of dropped data.
    pub last: Option<Timestamp>,
}

impl Loss {
    /// Whether anything was dropped.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.buckets == 0
    }

    fn at(&mut self, t: Timestamp) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
    }
}

/// Key of one residency row. Unknown values use the stored sentinels ('' and 0); text is shared
/// (`None` stands for ''): a record's key copies no string.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct BucketKey {
    /// Unix seconds, multiple of the interval (first: `BTreeMap` order is oldest first).
    pub interval_start: i64,
    pub app: Arc<str>,
    pub scope: &'static str,
    pub country: Option<Arc<str>>,
    pub asn: u32,
    pub as_org: Option<Arc<str>>,
    /// (database_type, build_epoch) of the country answer.
    pub country_db: Option<(Arc<str>, u64)>,
    /// (database_type, build_epoch) of the ASN answer.
    pub asn_db: Option<(Arc<str>, u64)>,
    pub payload_source: &'static str,
}

/// Sums of one residency row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Bucket {
    pub payload_tx: u64,
    pub payload_rx: u64,
    pub wire_tx: u64,
    pub wire_rx: u64,
    pub packets_tx: u64,
    pub packets_rx: u64,
    pub connections: u64,
    pub new_flows: u64,
    pub incomplete_flows: u64,
}

/// A record waiting for the next flush.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub record: FlowRecord,
    pub app: Arc<App>,
    pub dest: Option<Destination>,
    pub names: Names,
}

/// Monotonic counters of [`Stats`], as increments between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counters {
    pub events_submitted: u64,
    pub events_lost: u64,
    pub storage_failures: u64,
    pub peer_evictions: u64,
    pub peer_parse_failures: u64,
    pub unattributed_packets: u64,
    pub unattributed_bytes: u64,
    pub events_received: u64,
    pub decode_errors: u64,
    pub closed_flows: u64,
    pub silent_sockets: u64,
    pub incomplete_flows: u64,
    pub copies_submitted: u64,
    pub copies_lost: u64,
    pub names_malformed: u64,
    pub names_learned: u64,
}

impl Counters {
    /// Splits a snapshot into its counters and the `open_flows` gauge.
    fn of(stats: &Stats) -> (Self, u64) {
        let Stats { kernel, events_received, decode_errors, tracker, names, last: _ } = *stats;
        let KernelStats {
            events_submitted,
            events_lost,
            storage_failures,
            peer_evictions,
            peer_parse_failures,
            unattributed_packets,
            unattributed_bytes,
            copies_submitted,
            copies_lost,
            released_uncounted: _,
            sockets_created: _,
            sockets_released: _,
        } = kernel;
        let TrackerStats {
            open_flows,
            closed_flows,
            silent_sockets,
            incomplete_flows,
            split_peer_flows: _,
            vanished_flows: _,
        } = tracker;
        let counters = Self {
            events_submitted,
            events_lost,
            storage_failures,
            peer_evictions,
            peer_parse_failures,
            unattributed_packets,
            unattributed_bytes,
            events_received,
            decode_errors,
            closed_flows,
            silent_sockets,
            incomplete_flows,
            copies_submitted,
            copies_lost,
            names_malformed: names.malformed_total,
            // Server names read, and DNS names recorded in the per-app table.
            names_learned: names.sni.saturating_add(names.quic_sni).saturating_add(names.table.answers),
        };
        (counters, open_flows)
    }

    /// `self - prev` per counter; a counter that went down was reset, so its new value counts.
    fn since(&self, prev: &Self) -> Self {
        let d = |now: u64, before: u64| now.checked_sub(before).unwrap_or(now);
        Self {
            events_submitted: d(self.events_submitted, prev.events_submitted),
            events_lost: d(self.events_lost, prev.events_lost),
            storage_failures: d(self.storage_failures, prev.storage_failures),
            peer_evictions: d(self.peer_evictions, prev.peer_evictions),
            peer_parse_failures: d(self.peer_parse_failures, prev.peer_parse_failures),
            unattributed_packets: d(self.unattributed_packets, prev.unattributed_packets),
            unattributed_bytes: d(self.unattributed_bytes, prev.unattributed_bytes),
            events_received: d(self.events_received, prev.events_received),
            decode_errors: d(self.decode_errors, prev.decode_errors),
            closed_flows: d(self.closed_flows, prev.closed_flows),
            silent_sockets: d(self.silent_sockets, prev.silent_sockets),
            incomplete_flows: d(self.incomplete_flows, prev.incomplete_flows),
            copies_submitted: d(self.copies_submitted, prev.copies_submitted),
            copies_lost: d(self.copies_lost, prev.copies_lost),
            names_malformed: d(self.names_malformed, prev.names_malformed),
            names_learned: d(self.names_learned, prev.names_learned),
        }
    }
}

/// A statistics row waiting for the next flush.
#[derive(Debug, Clone, Copy)]
pub(super) struct StatsRow {
    pub time: Timestamp,
    pub last: bool,
    pub delta: Counters,
    pub open_flows: u64,
    /// The run the row is of, when not the writer's own: an earlier run's last sign of life.
    pub run: Option<Timestamp>,
}

/// Everything appended since the last successful flush, plus the state needed to count flows.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub records: VecDeque<Pending>,
    pub buckets: BTreeMap<BucketKey, Bucket>,
    pub stats: Vec<StatsRow>,
    /// Databases named by the last `register_databases`, not yet written.
    pub databases: Option<Vec<DbInfo>>,
    pub loss: Loss,
    /// Last snapshot passed to `record_stats` (baseline of the next increments).
    prev_stats: Counters,
    /// Per flow: the (interval, bucket hash) it was last counted in, so a flow counts once per
    /// interval and bucket in `connections`, across flushes.
    seen: Seen,
    /// Newest interval seen (prunes `seen`).
    newest_interval: i64,
    /// App names of bucket keys, shared (bounded: emptied at [`MAX_APP_NAMES`]).
    app_names: foldhash::HashSet<Arc<str>>,
    warned: bool,
}

/// App names [`Buffer`] shares at most before it forgets them (keys keep their copies).
const MAX_APP_NAMES: usize = 4096;

impl Buffer {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.buckets.is_empty() && self.stats.is_empty() && self.databases.is_none()
    }

    /// Buffers one record and folds its deltas into its residency bucket.
    pub fn add(
        &mut self,
        record: &FlowRecord,
        app: &Arc<App>,
        dest: Option<&Destination>,
        names: &Names,
        interval_secs: i64,
    ) {
        let interval_start = record.last_seen.as_second().div_euclid(interval_secs) * interval_secs;
        let app_name = match self.app_names.get(app.name.as_str()) {
            Some(name) => Arc::clone(name),
            None => {
                if self.app_names.len() >= MAX_APP_NAMES {
                    self.app_names.clear();
                }
                let name: Arc<str> = Arc::from(app.name.as_str());
                self.app_names.insert(Arc::clone(&name));
                name
            }
        };
        let key = bucket_key(interval_start, record, app_name, dest);
        let FlowRecord { event, delta_payload, delta_wire, complete, .. } = record;
        let first = record.is_first();
        let moved = *delta_payload != Payload::default() || *delta_wire != Wire::default();
        let finished = matches!(event, RecordKind::Close | RecordKind::Shutdown);
        // Fixed seed: equal keys hash alike across flushes.
        let hash = FixedState::default().hash_one(&key);
        let bucket = self.buckets.entry(key).or_default();
        bucket.payload_tx += delta_payload.tx_bytes;
        bucket.payload_rx += delta_payload.rx_bytes;
        bucket.wire_tx += delta_wire.tx_bytes;
        bucket.wire_rx += delta_wire.rx_bytes;
        bucket.packets_tx += delta_wire.tx_packets;
        bucket.packets_rx += delta_wire.rx_packets;
        if first {
            bucket.new_flows += 1;
        }
        if finished && !complete {
            bucket.incomplete_flows += 1;
        }
        // A record whose interval cannot be marked counts, as one of a flow never seen.
        if (moved || first)
            && Mark::new(interval_start, interval_secs, hash).is_none_or(|mark| self.seen.count(record, mark))
        {
            bucket.connections += 1;
        }
        if finished {
            self.seen.forget(record);
        }
        self.newest_interval = self.newest_interval.max(interval_start);
        self.records.push_back(Pending {
            record: record.clone(),
            app: Arc::clone(app),
            dest: dest.cloned(),
            names: names.clone(),
        });
        self.enforce_limits(MAX_BUFFERED_RECORDS, MAX_BUFFERED_BUCKETS);
    }

    /// Buffers a statistics snapshot as increments since the previous one.
    pub fn add_stats(&mut self, time: Timestamp, stats: &Stats) {
        let (now, open_flows) = Counters::of(stats);
        let delta = now.since(&self.prev_stats);
        self.prev_stats = now;
        self.stats.push(StatsRow { time, last: stats.last, delta, open_flows, run: None });
    }

    /// An empty statistics row of the earlier run started at `run`, at `time`: the last time
    /// that run is known to have been alive (its last flush), where no statistics row of its
    /// own says so (a run killed, or stopped before its first snapshot).
    pub fn mark_earlier_run(&mut self, run: Timestamp, time: Timestamp) {
        self.stats.push(StatsRow { time, last: false, delta: Counters::default(), open_flows: 0, run: Some(run) });
    }

    /// Drops the oldest records / buckets beyond the limits, counting the loss.
    pub fn enforce_limits(&mut self, max_records: usize, max_buckets: usize) {
        while self.records.len() > max_records {
            let Some(p) = self.records.pop_front() else { break };
            self.loss.records += 1;
            self.loss.at(p.record.last_seen);
            self.warn_once();
        }
        while self.buckets.len() > max_buckets {
            let Some((key, b)) = self.buckets.pop_first() else { break };
            self.loss.buckets += 1;
            self.loss.payload_bytes += b.payload_tx + b.payload_rx;
            self.loss.wire_bytes += b.wire_tx + b.wire_rx;
            if let Ok(t) = Timestamp::from_second(key.interval_start) {
                self.loss.at(t);
            }
            self.warn_once();
        }
    }

    fn warn_once(&mut self) {
        if !self.warned {
            self.warned = true;
            warn!(
                "journal buffer full (flushes failing?): dropping the oldest data, records_limit={MAX_BUFFERED_RECORDS} \
                 buckets_limit={MAX_BUFFERED_BUCKETS}; the loss is written to the journal by the next successful flush"
            );
        }
    }

    /// Forgets what a successful flush wrote (the flow counting state is kept).
    pub fn clear_written(&mut self, interval_secs: i64) {
        let kept = if self.records.len() >= FLUSH_RECORDS { BUSY_RECORD_CAPACITY } else { QUIET_RECORD_CAPACITY };
        self.records.clear();
        self.records.shrink_to(kept);
        self.buckets.clear();
        self.stats.clear();
        self.databases = None;
        self.loss = Loss::default();
        self.warned = false;
        // Records of one flow arrive in time order: a flow last counted before the previous
        // interval is counted again by its next record whatever the entry says.
        let horizon = self.newest_interval - interval_secs;
        if let Some(horizon) = Mark::new(horizon, interval_secs, 0) {
            self.seen.forget_before(horizon);
        }
    }
}

fn db_key(db: Option<&DbRef>) -> Option<(Arc<str>, u64)> {
    db.map(|d| (d.database_type.clone(), d.build_epoch))
}

fn bucket_key(interval_start: i64, record: &FlowRecord, app: Arc<str>, dest: Option<&Destination>) -> BucketKey {
    // '' and unknown are one key.
    let text = |t: &Option<Arc<str>>| t.as_ref().filter(|t| !t.is_empty()).map(Arc::clone);
    let (scope, country, asn, as_org, country_db, asn_db) = match (record.remote, dest) {
        (None, _) => (names::SCOPE_NONE, None, 0, None, None, None),
        (Some(_), None) => (names::SCOPE_UNENRICHED, None, 0, None, None, None),
        (Some(_), Some(d)) => (
            names::name(d.scope),
            text(&d.country),
            d.asn.unwrap_or(0),
            text(&d.as_org),
            db_key(d.country_db.as_ref()),
            db_key(d.asn_db.as_ref()),
        ),
    };
    BucketKey {
        interval_start,
        app,
        scope,
        country,
        asn,
        as_org,
        country_db,
        asn_db,
        payload_source: names::name(record.payload_source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::tests::fixtures::{Flow, app, at, public};

    /// A burst's records are written and forgotten; the buffer keeps room for one early flush
    /// ([`BUSY_RECORD_CAPACITY`]) while flushes are early, and for [`QUIET_RECORD_CAPACITY`]
    /// records after a smaller (the timer's) flush.
    #[test]
    fn a_flush_keeps_the_room_of_one_early_flush_and_a_quiet_one_gives_it_back() {
        let mut buf = Buffer::default();
        let (app, dest) = (app("burst"), public(Some("GB"), Some(64512), Some("Example")));
        let add = |buf: &mut Buffer, n: u64| {
            for cookie in 0..n {
                let record = Flow::new(cookie, "81.2.69.160:443", at(0)).record(RecordKind::Close, at(1), 10, 20);
                buf.add(&record, &app, Some(&dest), &Names::default(), 60);
            }
        };
        add(&mut buf, 20_000);
        assert_eq!(buf.records.len(), 20_000);
        assert!(buf.records.capacity() >= 20_000);
        buf.clear_written(60);
        assert!(buf.records.is_empty());
        let capacity = buf.records.capacity();
        assert!((BUSY_RECORD_CAPACITY..2 * BUSY_RECORD_CAPACITY).contains(&capacity), "capacity {capacity} kept");
        add(&mut buf, 100);
        buf.clear_written(60);
        let capacity = buf.records.capacity();
        assert!(capacity <= 2 * QUIET_RECORD_CAPACITY, "capacity {capacity} kept after a quiet flush");
    }
}
