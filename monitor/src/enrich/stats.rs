//! Lookup counters: every call is counted, unknown answers included.

use serde::Serialize;

use super::{Destination, Scope};

/// Counters since the [`super::Enricher`] was opened (kept across reloads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EnrichStats {
    /// Calls to `lookup`, every scope.
    pub lookups: u64,
    /// Public lookups answered from the cache.
    pub cache_hits: u64,
    /// Times the cache was emptied because it was full.
    pub cache_clears: u64,
    /// Answers currently cached.
    pub cache_len: usize,
    /// Public lookups without a country (not covered, no country field, or no database).
    pub unknown_country: u64,
    /// Public lookups without an ASN (not covered or no database).
    pub unknown_asn: u64,
    /// Lookups a database failed to answer (corrupt region); the field is reported unknown.
    pub lookup_errors: u64,
    /// Lookups per address class.
    pub scopes: ScopeCounts,
}

/// Lookups per [`Scope`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScopeCounts {
    /// [`Scope::Public`] (looked up).
    pub public: u64,
    /// [`Scope::Loopback`].
    pub loopback: u64,
    /// [`Scope::Private`].
    pub private: u64,
    /// [`Scope::LinkLocal`].
    pub link_local: u64,
    /// [`Scope::Cgnat`].
    pub cgnat: u64,
    /// [`Scope::Multicast`].
    pub multicast: u64,
    /// [`Scope::Documentation`].
    pub documentation: u64,
    /// [`Scope::Reserved`].
    pub reserved: u64,
}

impl EnrichStats {
    /// Counts one answer.
    pub(super) fn record(&mut self, answer: &Destination) {
        let Destination { scope, country, asn, as_org: _, country_db: _, asn_db: _, answers: _, consensus: _ } = answer;
        self.lookups += 1;
        let s = &mut self.scopes;
        let counter = match scope {
            Scope::Public => &mut s.public,
            Scope::Loopback => &mut s.loopback,
            Scope::Private => &mut s.private,
            Scope::LinkLocal => &mut s.link_local,
            Scope::Cgnat => &mut s.cgnat,
            Scope::Multicast => &mut s.multicast,
            Scope::Documentation => &mut s.documentation,
            Scope::Reserved => &mut s.reserved,
        };
        *counter += 1;
        if *scope == Scope::Public {
            self.unknown_country += u64::from(country.is_none());
            self.unknown_asn += u64::from(asn.is_none());
        }
    }
}
