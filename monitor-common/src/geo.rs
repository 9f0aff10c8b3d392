//! Where the default geolocation databases live: written by `cargo xtask setup` / `cargo xtask geo
//! install`, read by the daemon when `[geo]` names no file. Defined once here because xtask cannot
//! depend on `monitor` (its build compiles the kernel programs).

/// Directory of the default databases.
pub const DEFAULT_DIR: &str = "/var/lib/monitor/geo";

/// File name of the default country database inside [`DEFAULT_DIR`]
/// (DB-IP "IP to Country Lite", CC BY 4.0, via ip-location-db; `country_code` schema).
pub const COUNTRY_DB_FILE: &str = "dbip-country.mmdb";

/// File name of the default ASN database inside [`DEFAULT_DIR`]
/// (ip-location-db ASN CSV converted to MMDB at setup; GeoLite2-ASN field names).
pub const ASN_DB_FILE: &str = "asn.mmdb";

/// File name of the default registry country database inside [`DEFAULT_DIR`]: the country of the
/// registry (RIR delegation / WHOIS) records, ip-location-db `geo-whois-asn-country` (CC0;
/// `country_code` schema). A second opinion for the consensus of country databases.
pub const REGISTRY_DB_FILE: &str = "geo-whois-asn-country.mmdb";
