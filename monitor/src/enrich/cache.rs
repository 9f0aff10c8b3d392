//! Bounded per-address answer cache, and the cache of country answer lists ([`ListCache`]).
//!
//! A plain `HashMap` emptied when full rather than an LRU crate: an uncached lookup is one
//! walk of each MMDB tree, taken together (~0.25–0.5 µs for the three default databases), so
//! the cache only trims repeat work for the busy destinations, and after a clear those refill
//! within a few flows. No eviction order to maintain, no dependency, and memory is bounded by
//! the capacity.

use std::{collections::HashMap, net::IpAddr, sync::Arc};

use super::{
    Consensus, CountryAnswer, Destination,
    tree::{LANES, Walk},
};

/// Most answer lists kept by [`ListCache`]: one per combination of country records seen
/// together (a few thousand with the default databases; ~100 bytes each).
pub const LIST_CACHE_ENTRIES: usize = 16_384;

/// Which record every country database's walk reached, primary first: all the answer list of
/// an address depends on (records decode the same every time).
pub type ListKey = [Walk; LANES];

/// Answer lists of the country databases ([`Destination::answers`] and its verdict) by the
/// records they came from. Addresses whose databases reach the same records share one list:
/// built (one allocation, a reference count per label, database and country) once, then one
/// reference count per lookup. Emptied when full; only lists built without a lookup error are
/// kept.
#[derive(Debug, Default)]
pub struct ListCache {
    /// List and verdict per combination of records.
    map: foldhash::HashMap<ListKey, (Arc<[CountryAnswer]>, Option<Consensus>)>,
}

impl ListCache {
    /// The list cached for `key`.
    #[must_use]
    pub fn get(&self, key: &ListKey) -> Option<&(Arc<[CountryAnswer]>, Option<Consensus>)> {
        self.map.get(key)
    }

    /// Keeps `list` for `key`, first emptying the cache when it is full.
    pub fn insert(&mut self, key: ListKey, list: Arc<[CountryAnswer]>, consensus: Option<Consensus>) {
        if self.map.len() >= LIST_CACHE_ENTRIES {
            self.map.clear();
        }
        self.map.insert(key, (list, consensus));
    }

    /// Forgets every list (the databases changed).
    pub fn invalidate(&mut self) {
        self.map.clear();
    }
}

/// Answers for public addresses, keyed by canonical address.
#[derive(Debug)]
pub struct AnswerCache {
    /// Cached answers.
    map: HashMap<IpAddr, Destination>,
    /// Most answers held; 0 disables caching.
    capacity: usize,
    /// Times the map was emptied because it was full.
    clears: u64,
}

impl AnswerCache {
    /// An empty cache holding at most `capacity` answers (0: caches nothing).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), capacity, clears: 0 }
    }

    /// The cached answer for `ip`.
    #[must_use]
    pub fn get(&self, ip: &IpAddr) -> Option<&Destination> {
        self.map.get(ip)
    }

    /// Whether answers are kept at all (capacity above 0).
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// Stores an answer, first emptying the cache when it is full.
    pub fn insert(&mut self, ip: IpAddr, answer: Destination) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity && !self.map.contains_key(&ip) {
            self.map.clear();
            self.clears += 1;
        }
        self.map.insert(ip, answer);
    }

    /// Forgets every answer (the databases changed). Not counted as a clear.
    pub fn invalidate(&mut self) {
        self.map.clear();
    }

    /// Answers held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Times the cache was emptied because it was full.
    #[must_use]
    pub fn clears(&self) -> u64 {
        self.clears
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::Scope;

    fn answer(asn: u32) -> Destination {
        Destination {
            scope: Scope::Public,
            country: None,
            asn: Some(asn),
            as_org: None,
            country_db: None,
            asn_db: None,
            answers: Default::default(),
            consensus: None,
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn cache_is_emptied_when_full_and_never_exceeds_capacity() {
        let mut cache = AnswerCache::new(2);
        cache.insert(ip(1), answer(1));
        cache.insert(ip(2), answer(2));
        cache.insert(ip(2), answer(22)); // replacing an entry does not clear
        assert_eq!((cache.len(), cache.clears()), (2, 0));
        assert_eq!(cache.get(&ip(2)).and_then(|d| d.asn), Some(22));
        cache.insert(ip(3), answer(3));
        assert_eq!((cache.len(), cache.clears()), (1, 1));
        assert!(cache.get(&ip(1)).is_none());
        assert_eq!(cache.get(&ip(3)).and_then(|d| d.asn), Some(3));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = AnswerCache::new(0);
        cache.insert(ip(1), answer(1));
        assert_eq!(cache.len(), 0);
        assert!(cache.get(&ip(1)).is_none());
    }
}
