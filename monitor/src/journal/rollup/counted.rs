//! The writer's cache of counted records ([`Counted`]): which (socket, endpoint or service in
//! its week) the rollups already count, so that most records need no table lookup.

use std::hash::Hash;

use fastbloom::BloomFilter;
use foldhash::HashSet;

use super::fold::{EndpointId, ServiceFlow};

/// Bound of [`Counted`]'s exact sets. Their tables then have 8,192 slots: about 0.4 MiB of
/// endpoint keys (48 bytes each) and 0.8 MiB of service flow keys (96 bytes); with the filter, about
/// 2 MiB in all. Records of one socket come close together (a short connection's first and last
/// within milliseconds), so the most recent keys are what the sets are for.
pub(super) const COUNTED_KEYS: usize = 4_096;
/// Bits of [`Counted::filter`]: 1 MiB, allocated with the first key remembered.
const FILTER_BITS: usize = 1 << 23;
/// Bits set per key in [`Counted::filter`].
const FILTER_HASHES: u32 = 4;
/// Distinct keys the filter takes before it starts again, and `whole` with it (the sockets then
/// ask the table for their keys the exact sets do not hold, as before the filter): at this fill
/// a key never added still looks added about once in 500 tries (a needless table lookup, never
/// a wrong count). Smaller in tests, to reach it.
#[cfg(not(test))]
const FILTER_KEYS: usize = 500_000;
#[cfg(test)]
pub(crate) const FILTER_KEYS: usize = 30_000;

/// (cookie, endpoint or service in its week) of records written by this writer: a later record
/// with the same key is not the first of its socket there. A cache: emptied when full (the table
/// answers then) and when a flush is rolled back ([`super::Rollup::forget`]).
///
/// `whole`: sockets whose every stored record this writer wrote since the filter was last
/// emptied (their first record was a first write, [`super::cookies::Cookies`]), so that every key
/// of theirs went into `filter`: a key the filter has never seen is a first, without asking the
/// table. This is what an unconnected UDP server socket needs, a new peer (endpoint) in nearly
/// every record, and more peers than the exact sets hold.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    pub(super) endpoints: HashSet<(u64, EndpointId)>,
    pub(super) services: HashSet<ServiceFlow>,
    pub(super) whole: HashSet<u64>,
    /// Every key remembered since it was last emptied (with `whole`). No false negatives: a
    /// key it does not contain was never remembered. `None` until the first key (a daemon that
    /// journals no records, e.g. one holding many open sockets, does not pay for it).
    filter: Option<BloomFilter<foldhash::fast::RandomState>>,
    /// Keys added to `filter` since it was emptied.
    filter_keys: usize,
}

impl Counted {
    /// Empties the cache (and with it what `whole` claims).
    pub(super) fn clear(&mut self) {
        self.endpoints.clear();
        self.services.clear();
        self.whole.clear();
        if self.filter_keys > 0 {
            if let Some(filter) = &mut self.filter {
                filter.clear();
            }
            self.filter_keys = 0;
        }
    }

    /// Remembers that `cookie`'s first record is being written (no record stored before).
    pub(super) fn whole_from_now(&mut self, cookie: u64) {
        if self.whole.len() >= COUNTED_KEYS {
            // Only a shortcut: forgetting it sends these sockets to the table again.
            self.whole.clear();
        }
        self.whole.insert(cookie);
    }

    /// Whether `key`, a key of a socket in `whole`, may have been remembered: `false` means it
    /// never was, so no record of the socket is at that key.
    pub(super) fn maybe_remembered<K: Hash>(&self, key: &K) -> bool {
        self.filter.as_ref().is_some_and(|f| f.contains(key))
    }
}

/// Adds `key` of socket `cookie`. A full exact set is emptied first (the filter still holds the
/// keys of the sockets in `whole`, so they stay there); a full filter empties everything. Only
/// keys of sockets in `whole` go into the filter: it is asked for no other.
pub(super) fn remember<K: Hash + Eq>(
    counted: &mut Counted,
    set: impl Fn(&mut Counted) -> &mut HashSet<K>,
    cookie: u64,
    key: K,
) {
    if set(counted).len() >= COUNTED_KEYS {
        set(counted).clear();
    }
    if counted.whole.contains(&cookie) {
        if counted.filter_keys >= FILTER_KEYS {
            counted.clear();
        } else {
            let filter = counted.filter.get_or_insert_with(|| {
                BloomFilter::with_num_bits(FILTER_BITS)
                    .hasher(foldhash::fast::RandomState::default())
                    .hashes(FILTER_HASHES)
            });
            // `insert` says whether the key may have been there: only new keys fill it.
            if !filter.insert(&key) {
                counted.filter_keys += 1;
            }
        }
    }
    set(counted).insert(key);
}
