//! Enrichment: country and network owner (ASN, organisation) of remote addresses.
//!
//! Owns the MMDB (`MaxMind` DB format) readers (country, ASN, and the further country databases
//! compared for [`Consensus`]: registry and `[[geo.extra_country]]`), the address classification ([`Scope`]), a
//! bounded answer cache and the lookup counters. Does not decide what an app is, store
//! anything or fetch data: `cargo xtask setup` installs the default databases in
//! [`DEFAULT_GEO_DIR`].
//!
//! Invariants:
//! - Addresses are canonicalised (`::ffff:a.b.c.d` → `a.b.c.d`) and only [`Scope::Public`]
//!   ones are looked up.
//! - "Not found" is an answer (`None` fields), never an error; unknowns are counted in
//!   [`EnrichStats`], never dropped.
//! - Every answer names the database that gave it ([`DbRef`]: `database_type` + `build_epoch`).
//! - A database named in the config must be valid; a missing *default* database only disables
//!   its field and yields one warning ([`Enricher::warnings`]).
//! - Files are memory-mapped read-only, not copied into the heap; only regular files of at most
//!   [`MAX_DB_BYTES`] are opened (checked on the opened descriptor: a FIFO would block). A file
//!   replaced by rename under a running daemon is safe (the mapping keeps the old inode until
//!   [`Enricher::reload`] picks the new file up); rewriting or truncating a mapped file in place
//!   is not (reads would fault): the README says so.
//!
//! An uncached lookup walks every database's search tree in lockstep, one address bit per step
//! in all trees (module `tree`: the trees' cache misses overlap), starting 16 bits down from a jump
//! table, to the record each database holds for the address. Records decoded before are
//! answered from per-database record caches, and the country answer list from a cache keyed by
//! the records it came from; anything else is found and decoded by `maxminddb` itself.
//!
//! Both country schemas are read: `GeoIP2` / DB-IP official (`country.iso_code`) and
//! ip-location-db (`country_code`). ASN uses the GeoLite2-ASN field names
//! (`autonomous_system_number`, `autonomous_system_organization`), which the converted
//! ip-location-db file shares.

mod cache;
mod config;
pub mod consensus;
mod db;
mod enricher;
mod scope;
mod stats;
#[cfg(test)]
mod tests;
mod tree;
mod types;

use std::path::PathBuf;

pub use config::{
    ASN_DB_FILE, CONFIG_DOC, COUNTRY_DB_FILE, DEFAULT_GEO_DIR, ExtraCountryDb, GeoConfig, REGISTRY_DB_FILE,
    SETUP_COMMAND,
};
pub use consensus::{Consensus, CountryAnswer};
pub use db::{MAX_DB_BYTES, Role};
pub use enricher::{Enricher, default_path};
pub use scope::classify;
pub use stats::{EnrichStats, ScopeCounts};
pub use types::{DbInfo, DbRef, Destination, Scope};

/// Why a database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is missing, unreadable or not an MMDB file.
    #[error("cannot open {role} database `{}`", path.display())]
    Open {
        /// Role of the database.
        role: Role,
        /// File.
        path: PathBuf,
        /// Reader error.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// The file is not a regular file (FIFO, device...) or is larger than [`MAX_DB_BYTES`].
    #[error("cannot use {role} database `{}`", path.display())]
    Unusable {
        /// Role of the database.
        role: Role,
        /// File.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: crate::files::Error,
    },
    /// The file only covers IPv4 (`ip_version` 4): IPv6 peers could not be looked up.
    #[error(
        "{role} database `{}` ({database_type}) is IPv4-only; use a file that covers IPv4 and IPv6",
        path.display()
    )]
    Ipv4Only {
        /// Role of the database.
        role: Role,
        /// File.
        path: PathBuf,
        /// `database_type` from its metadata.
        database_type: String,
    },
    /// The file has none of the fields its role needs (e.g. an ASN file given as `country_db`).
    #[error("`{}` ({database_type}) cannot serve as the {role} database: its records have no {}", path.display(), role.fields())]
    WrongKind {
        /// Role it was given for.
        role: Role,
        /// File.
        path: PathBuf,
        /// `database_type` from its metadata.
        database_type: String,
    },
    /// An `[[geo.extra_country]]` label that is empty, reserved, repeated or not
    /// `[a-z0-9_-]{1,32}`.
    #[error("[[geo.extra_country]] label `{label}` is not usable: {reason}")]
    Label {
        /// The label as configured.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The file opened but its search tree or data is broken.
    #[error("{role} database `{}` is corrupt", path.display())]
    Corrupt {
        /// Role of the database.
        role: Role,
        /// File.
        path: PathBuf,
        /// Reader error.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
}
