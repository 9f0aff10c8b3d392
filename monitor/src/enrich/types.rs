//! Enrichment results: what the journal stores and reports show for each remote address.

use std::{path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};

use super::consensus::{Consensus, CountryAnswer};

/// Address class, decided before any database lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Globally routed; looked up in the databases.
    Public,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, `fc00::/7` (unique local).
    Private,
    /// `169.254.0.0/16`, `fe80::/10`.
    LinkLocal,
    /// `100.64.0.0/10` (RFC 6598 carrier-grade NAT).
    Cgnat,
    /// `224.0.0.0/4`, `ff00::/8`, `255.255.255.255`.
    Multicast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`, `2001:db8::/32`, `3fff::/20`.
    Documentation,
    /// `0.0.0.0/8`, `::`, and other reserved ranges (`240.0.0.0/4`, benchmarking `198.18.0.0/15`,
    /// IPv6 outside `2000::/3` except the ranges above and NAT64 `64:ff9b::/96`).
    Reserved,
}

/// Which database answered (provenance kept with every enriched record).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DbRef {
    /// `database_type` from the MMDB metadata, e.g. "country ipvAll" (the default DB-IP file),
    /// "ip-location-db-ASN" (the converted default ASN file), "GeoLite2-ASN". Shared: every
    /// answer of a database carries it without copying it.
    pub database_type: Arc<str>,
    /// `build_epoch` from the metadata (seconds since the Unix epoch).
    pub build_epoch: u64,
}

/// A loaded database, for `monitor status` and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbInfo {
    /// "country" or "asn".
    pub role: String,
    /// File it was read from.
    pub path: PathBuf,
    /// Provenance.
    pub db: DbRef,
    /// Age of the data in whole days (now minus `build_epoch`) when the list was made.
    pub age_days: u64,
}

/// Country and network owner of one remote address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Destination {
    /// Address class. Non-public addresses are not looked up.
    pub scope: Scope,
    /// ISO 3166-1 alpha-2 code; `None` when unknown (not covered, or no database). Shared
    /// (serialized as a plain string): answers from the same database record share one copy.
    pub country: Option<Arc<str>>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Autonomous system organisation, shared like `country`.
    pub as_org: Option<Arc<str>>,
    /// Database asked for `country`, also when it had no answer (`country` is `None`): "not
    /// covered by build X". `None` when none was asked (address not public, or no database).
    pub country_db: Option<DbRef>,
    /// Database asked for `asn`/`as_org`, same rules as `country_db`.
    pub asn_db: Option<DbRef>,
    /// Every country database's answer, the primary (`country`) first, when two or more are
    /// loaded; empty otherwise. Shared: a cached answer is not copied.
    #[serde(default, skip_serializing_if = "<[_]>::is_empty")]
    pub answers: Arc<[CountryAnswer]>,
    /// Verdict of `answers` ([`super::consensus::verdict`]); `None` when fewer than two
    /// databases were asked (or the address is not public).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus: Option<Consensus>,
}

impl Destination {
    /// An address of `scope` that was not looked up (not public, or no database).
    #[must_use]
    pub fn unlooked(scope: Scope) -> Self {
        Self {
            scope,
            country: None,
            asn: None,
            as_org: None,
            country_db: None,
            asn_db: None,
            // The empty shared slice: no allocation.
            answers: Arc::default(),
            consensus: None,
        }
    }
}
