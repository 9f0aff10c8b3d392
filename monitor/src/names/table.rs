//! Per-app address→name table: which name each app asked for that resolved to an address.
//!
//! An answer is recorded under the app that received it (`record_answer`, or
//! `record_getaddrinfo` for resolutions without DNS packets) and in a host-wide map. A lookup
//! for a connection first asks the app's own map (source `dns` or `getaddrinfo`), then the
//! host-wide map (source `dns_host`: another app's answer for the address).
//!
//! - **Many names, one address** (CDNs): each app's map keeps the name *that app* asked for; when
//!   one app's answers give the same address several names, the latest answer wins (it is the
//!   one a connection that follows is most likely to come from).
//! - **Freshness**: an answer names connections from its arrival (less [`CLOCK_GRACE_NS`]) until
//!   its last repetition plus `max(TTL, freshness_s)`. Apps keep using addresses past short
//!   TTLs (connection pools, happy eyeballs), so the window is at least `freshness_s` (600 s).
//! - **Bounds**: LRU maps of `entries_per_app` addresses per app, `apps` apps and `host_entries`
//!   host-wide addresses; every eviction is counted in [`NameTableStats`].
//!
//! Times are `CLOCK_BOOTTIME` nanoseconds, as in the kernel events.

use std::{borrow::Borrow, hash::Hash, net::IpAddr, num::NonZeroUsize};

use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{Hostname, NameSource};

/// Slack for events that reach userspace slightly out of order (per-CPU ring buffer writes):
/// an answer time-stamped up to this much after a connection still names it.
pub const CLOCK_GRACE_NS: u64 = 1_000_000_000;

const NS_PER_S: u64 = 1_000_000_000;

/// Sizes and freshness of a [`NameTable`], and the `getaddrinfo` probe (the `[names]`
/// configuration section).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NameTableConfig {
    /// Addresses remembered per app (LRU).
    pub entries_per_app: usize,
    /// Apps with a map of their own (LRU; an evicted app's names fall back to `dns_host`).
    pub apps: usize,
    /// Addresses remembered host-wide (LRU).
    pub host_entries: usize,
    /// Seconds an answer names connections after it was last seen, at least (the TTL when longer).
    pub freshness_s: u64,
    /// Attach the `getaddrinfo` uprobes to libc (names of resolutions without DNS packets).
    pub getaddrinfo: bool,
    /// The libc to probe; `None`: the one this host's programs use (found at start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub getaddrinfo_libc: Option<std::path::PathBuf>,
}

impl Default for NameTableConfig {
    fn default() -> Self {
        Self {
            entries_per_app: 4096, // a busy browser resolves a few hundred names per hour
            apps: 256,             // apps that resolve names; more are unusual on one host
            host_entries: 65_536,  // ~10 MiB at most
            freshness_s: 600,      // 10 minutes: pooled connections outlive short TTLs
            getaddrinfo: true,     // costs on getaddrinfo calls only; degrades when it cannot attach
            getaddrinfo_libc: None,
        }
    }
}

/// The `[names]` section of `config/monitor.toml`, documented; parses to the defaults.
pub const CONFIG_DOC: &str = r#"[names]
# Addresses remembered per app, least recently used first out.
entries_per_app = 4096
# Apps with a name map of their own; beyond this the least recently active app's map is dropped
# (its connections are then named from the host-wide map, as `dns_host`).
apps = 256
# Addresses remembered host-wide (answers seen by any app).
host_entries = 65536
# Seconds after an answer was last seen during which it names connections to its addresses
# (the answer's TTL when that is longer).
freshness_s = 600
# Read host names from libc's getaddrinfo (a uprobe on its return), for resolvers that send no DNS
# packets (glibc asking systemd-resolved over its varlink socket, /etc/hosts). Costs a few
# microseconds per getaddrinfo call of a watched process, nothing per packet. When it cannot attach
# (no uprobe support, libc not found) the monitor runs on with the degradation
# `no_getaddrinfo_names` and logs why. Flows named this way have the source `getaddrinfo`.
getaddrinfo = true
# The libc whose getaddrinfo is probed. Unset: the libc.so.6 the monitor itself is linked
# against (/proc/self/maps), else the one /etc/ld.so.cache names. Programs using another libc file
# (static binaries, Flatpak, containers with their own /usr) are not seen.
# getaddrinfo_libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
"#;

/// A configuration value out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A size is zero.
    #[error("names.{key} must be at least 1")]
    Zero {
        /// The key.
        key: &'static str,
    },
}

impl NameTableConfig {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`ConfigError::Zero`] for a zero size.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.sizes().map(|_| ())
    }

    fn sizes(&self) -> Result<(NonZeroUsize, NonZeroUsize, NonZeroUsize), ConfigError> {
        let nz = |v: usize, key| NonZeroUsize::new(v).ok_or(ConfigError::Zero { key });
        Ok((
            nz(self.entries_per_app, "entries_per_app")?,
            nz(self.apps, "apps")?,
            nz(self.host_entries, "host_entries")?,
        ))
    }
}

/// An LRU map bounded at `cap` that grows as filled: `LruCache::new` reserves all `cap` slots up
/// front, which for 256 apps × 4,096 addresses would be ~100 MiB for maps that mostly hold a
/// few dozen names.
pub(crate) fn lazy_lru<K: Hash + Eq, V>(cap: NonZeroUsize) -> LruCache<K, V> {
    let mut map = LruCache::unbounded();
    map.resize(cap);
    map
}

/// How the table learnt a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Dns,
    Getaddrinfo,
}

/// One remembered answer for one address.
#[derive(Debug, Clone)]
struct Entry {
    name: Hostname,
    origin: Origin,
    /// When the answer (for this name) was first seen.
    first_ns: u64,
    /// When it was last repeated.
    last_ns: u64,
    /// Its TTL in seconds (the largest seen).
    ttl_s: u32,
}

impl Entry {
    fn fresh(&self, at_ns: u64, freshness_s: u64) -> bool {
        let window = freshness_s.max(u64::from(self.ttl_s)).saturating_mul(NS_PER_S);
        at_ns.saturating_add(CLOCK_GRACE_NS) >= self.first_ns && at_ns <= self.last_ns.saturating_add(window)
    }

    /// Records a repetition of the answer, or replaces it with another name.
    fn update(&mut self, name: &Hostname, origin: Origin, ttl_s: u32, at_ns: u64) {
        if self.name == *name && self.origin == origin {
            self.last_ns = self.last_ns.max(at_ns);
            self.ttl_s = self.ttl_s.max(ttl_s);
        } else {
            *self = Entry { name: name.clone(), origin, first_ns: at_ns, last_ns: at_ns, ttl_s };
        }
    }
}

/// The answer a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameMatch {
    /// The name asked for (the question, not the CNAME target).
    pub name: Hostname,
    /// `Dns` or `Getaddrinfo` (the app's own answer) or `DnsHost` (another app's).
    pub source: NameSource,
    /// When the answer was first seen (boot-time ns).
    pub answered_ns: u64,
}

/// Counters of a [`NameTable`] (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameTableStats {
    /// Answers recorded (one per name and message).
    pub answers: u64,
    /// Addresses recorded (one per address of each answer).
    pub addresses: u64,
    /// An address already named for the app got another name (the latest answer won).
    pub renamed: u64,
    /// Lookups answered from the app's own DNS answers.
    pub hits_dns: u64,
    /// Lookups answered from the app's own `getaddrinfo` results.
    pub hits_getaddrinfo: u64,
    /// Lookups answered from another app's answer.
    pub hits_dns_host: u64,
    /// Lookups that found an answer outside its freshness window only.
    pub stale: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Addresses dropped from an app's full map.
    pub entry_evictions: u64,
    /// Apps whose whole map was dropped because the table had too many apps.
    pub app_evictions: u64,
    /// Addresses dropped from the full host-wide map.
    pub host_evictions: u64,
}

/// The per-app and host-wide name maps (see the module header). `K` identifies an app.
pub struct NameTable<K: Hash + Eq + Clone> {
    config: NameTableConfig,
    per_app_cap: NonZeroUsize,
    apps: LruCache<K, LruCache<IpAddr, Entry>>,
    host: LruCache<IpAddr, (K, Entry)>,
    stats: NameTableStats,
}

impl<K: Hash + Eq + Clone> std::fmt::Debug for NameTable<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameTable")
            .field("config", &self.config)
            .field("apps", &self.apps.len())
            .field("host", &self.host.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> NameTable<K> {
    /// An empty table.
    ///
    /// # Errors
    /// [`ConfigError`] when a size is zero.
    pub fn new(config: NameTableConfig) -> Result<Self, ConfigError> {
        let (per_app_cap, apps, host) = config.sizes()?;
        Ok(Self { config, per_app_cap, apps: lazy_lru(apps), host: lazy_lru(host), stats: NameTableStats::default() })
    }

    /// Records a DNS answer `app` received: `name` (the name it asked for) resolved to `addrs`.
    pub fn record_answer(&mut self, app: &K, name: &Hostname, addrs: &[IpAddr], ttl_s: u32, at_ns: u64) {
        self.record(app, name, addrs, ttl_s, at_ns, Origin::Dns);
    }

    /// Records a `getaddrinfo` result of `app` (no TTL: the freshness window applies).
    pub fn record_getaddrinfo(&mut self, app: &K, name: &Hostname, addrs: &[IpAddr], at_ns: u64) {
        self.record(app, name, addrs, 0, at_ns, Origin::Getaddrinfo);
    }

    fn record(&mut self, app: &K, name: &Hostname, addrs: &[IpAddr], ttl_s: u32, at_ns: u64, origin: Origin) {
        self.stats.answers += 1;
        if !self.apps.contains(app) {
            let map = lazy_lru(self.per_app_cap);
            if let Some((evicted, _)) = self.apps.push(app.clone(), map)
                && evicted != *app
            {
                self.stats.app_evictions += 1;
            }
        }
        let Some(map) = self.apps.get_mut(app) else { return };
        for &addr in addrs {
            self.stats.addresses += 1;
            if let Some(entry) = map.get_mut(&addr) {
                if entry.name != *name {
                    self.stats.renamed += 1;
                }
                entry.update(name, origin, ttl_s, at_ns);
            } else {
                let entry = Entry { name: name.clone(), origin, first_ns: at_ns, last_ns: at_ns, ttl_s };
                if map.push(addr, entry).is_some() {
                    self.stats.entry_evictions += 1;
                }
            }
            match self.host.get_mut(&addr) {
                Some((owner, entry)) => {
                    *owner = app.clone();
                    entry.update(name, origin, ttl_s, at_ns);
                }
                None => {
                    let entry = Entry { name: name.clone(), origin, first_ns: at_ns, last_ns: at_ns, ttl_s };
                    if self.host.push(addr, (app.clone(), entry)).is_some() {
                        self.stats.host_evictions += 1;
                    }
                }
            }
        }
    }

    /// The name `app` knew `addr` by at `at_ns` (its own answer first, then the host's). `app`
    /// may be any borrowed form of the key (`&str` for `String` keys).
    pub fn lookup<Q>(&mut self, app: &Q, addr: IpAddr, at_ns: u64) -> Option<NameMatch>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let freshness = self.config.freshness_s;
        let mut stale = false;
        if let Some(entry) = self.apps.get_mut(app).and_then(|m| m.get(&addr)) {
            if entry.fresh(at_ns, freshness) {
                let source = match entry.origin {
                    Origin::Dns => {
                        self.stats.hits_dns += 1;
                        NameSource::Dns
                    }
                    Origin::Getaddrinfo => {
                        self.stats.hits_getaddrinfo += 1;
                        NameSource::Getaddrinfo
                    }
                };
                return Some(NameMatch { name: entry.name.clone(), source, answered_ns: entry.first_ns });
            }
            stale = true;
        }
        if let Some((owner, entry)) = self.host.get(&addr) {
            // The app's own answer, evicted from its map but still host-wide, stays the app's.
            if owner.borrow() != app && entry.fresh(at_ns, freshness) {
                self.stats.hits_dns_host += 1;
                return Some(NameMatch {
                    name: entry.name.clone(),
                    source: NameSource::DnsHost,
                    answered_ns: entry.first_ns,
                });
            }
            if owner.borrow() == app && entry.fresh(at_ns, freshness) {
                let source = match entry.origin {
                    Origin::Dns => NameSource::Dns,
                    Origin::Getaddrinfo => NameSource::Getaddrinfo,
                };
                self.stats.hits_dns += u64::from(source == NameSource::Dns);
                self.stats.hits_getaddrinfo += u64::from(source == NameSource::Getaddrinfo);
                return Some(NameMatch { name: entry.name.clone(), source, answered_ns: entry.first_ns });
            }
            stale = true;
        }
        if stale {
            self.stats.stale += 1;
        } else {
            self.stats.misses += 1;
        }
        None
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> NameTableStats {
        self.stats
    }

    /// The configuration in force.
    #[must_use]
    pub fn config(&self) -> &NameTableConfig {
        &self.config
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
