//! The writer's cache of counted records ([`Counted`]): which (socket, endpoint or service in
//! its week) the rollups already count, so that most records need no table lookup.

use foldhash::HashSet;

use super::fold::{EndpointId, ServiceId};

/// Bound of [`Counted`]: about 1 MiB of keys.
pub(super) const COUNTED_KEYS: usize = 16_384;
/// (cookie, endpoint or service in its week) of records written by this writer: a later record
/// with the same key is not the first of its socket there. A cache: emptied when full (the table
/// answers then) and when a flush is rolled back ([`super::Rollup::forget`]).
///
/// `whole`: sockets whose every stored record this writer wrote since the cache was last emptied
/// (their first record was a first write, [`super::cookies::Cookies`]), so that every key of
/// theirs is in the cache: a key missing from it is a first, without asking the table. This is
/// what an unconnected UDP server socket needs, a new peer (endpoint) in nearly every record.
#[derive(Debug, Default)]
pub(crate) struct Counted {
    pub(super) endpoints: HashSet<(u64, EndpointId)>,
    pub(super) services: HashSet<(u64, ServiceId)>,
    pub(super) whole: HashSet<u64>,
}

impl Counted {
    /// Empties the cache (and with it what `whole` claims).
    pub(super) fn clear(&mut self) {
        self.endpoints.clear();
        self.services.clear();
        self.whole.clear();
    }

    /// Remembers that `cookie`'s first record is being written (no record stored before).
    pub(super) fn whole_from_now(&mut self, cookie: u64) {
        if self.whole.len() >= COUNTED_KEYS {
            // Only a shortcut: forgetting it sends these sockets to the table again.
            self.whole.clear();
        }
        self.whole.insert(cookie);
    }
}

/// Adds a key; a full cache is emptied first (all of it: see `whole`).
pub(super) fn remember<K: std::hash::Hash + Eq>(
    counted: &mut Counted,
    set: impl Fn(&mut Counted) -> &mut HashSet<K>,
    key: K,
) {
    if set(counted).len() >= COUNTED_KEYS {
        counted.clear();
    }
    set(counted).insert(key);
}
