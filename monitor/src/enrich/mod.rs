//! Enrichment: country and network owner (ASN, organisation) of remote addresses.

mod types;

pub use types::{DbInfo, DbRef, Destination, Scope};
