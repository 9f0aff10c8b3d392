//! Kernel-side statistics (`STATS`, a per-CPU array) and the drainer's own counters.

use std::sync::atomic::{AtomicU64, Ordering};

use aya::maps::{Map, MapData, PerCpuArray};
use monitor_common::maps::{self as names, STAT_COUNT};

use super::Error;
use crate::stats::KernelStats;

/// Reads `STATS`, summing over CPUs.
pub struct StatsReader {
    array: PerCpuArray<MapData, u64>,
}

impl StatsReader {
    pub(super) fn new(map: Map) -> Result<Self, Error> {
        let array = PerCpuArray::try_from(map).map_err(|source| Error::Map { name: names::STATS, source })?;
        Ok(Self { array })
    }

    /// Events lost so far (ring buffer full), summed over the CPUs: one read, not [`Self::read`]'s
    /// one per counter.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn events_lost(&self) -> Result<u64, Error> {
        let values =
            self.array.get(&names::STAT_RINGBUF_FULL, 0).map_err(|source| Error::Map { name: names::STATS, source })?;
        Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
    }

    /// Every counter, summed over the CPUs.
    ///
    /// # Errors
    /// When the map cannot be read.
    pub fn read(&self) -> Result<KernelStats, Error> {
        let mut sums = [0u64; STAT_COUNT as usize];
        for (index, sum) in (0..STAT_COUNT).zip(sums.iter_mut()) {
            let values = self.array.get(&index, 0).map_err(|source| Error::Map { name: names::STATS, source })?;
            *sum = values.iter().copied().fold(0u64, u64::wrapping_add);
        }
        let at = |i: u32| sums.get(i as usize).copied().unwrap_or(0);
        Ok(KernelStats {
            events_submitted: at(names::STAT_EVENTS),
            events_lost: at(names::STAT_RINGBUF_FULL),
            storage_failures: at(names::STAT_STORAGE_FAIL),
            peer_evictions: at(names::STAT_PEER_EVICTIONS),
            peer_parse_failures: at(names::STAT_PEER_PARSE_FAIL),
            unattributed_packets: at(names::STAT_UNATTRIBUTED_PACKETS),
            unattributed_bytes: at(names::STAT_UNATTRIBUTED_BYTES),
            copies_submitted: at(names::STAT_COPIES),
            copies_lost: at(names::STAT_COPIES_LOST),
            released_uncounted: at(names::STAT_RELEASED_UNCOUNTED),
            sockets_created: at(names::STAT_SOCKETS_CREATED),
            sockets_released: at(names::STAT_SOCKETS_RELEASED),
        })
    }
}

/// Counters of the userspace drainer.
#[derive(Debug, Default)]
pub struct DrainCounters {
    /// Records read from the ring buffer.
    pub received: AtomicU64,
    /// Records that were too short or of an unknown kind (dropped, counted).
    pub decode_errors: AtomicU64,
    /// Payload copies read (not in `received`).
    pub copies: AtomicU64,
    /// Payload copies dropped because the names stage's queue was full (or there is none).
    pub copies_dropped: AtomicU64,
}

impl DrainCounters {
    /// (received, decode errors).
    #[must_use]
    pub fn snapshot(&self) -> (u64, u64) {
        (self.received.load(Ordering::Relaxed), self.decode_errors.load(Ordering::Relaxed))
    }
}
