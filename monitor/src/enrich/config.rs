//! The `[geo]` section of the configuration file and the default data location.

use std::{collections::HashSet, path::PathBuf};

use serde::{Deserialize, Serialize};

use super::{
    Error,
    consensus::{PRIMARY_LABEL, REGISTRY_LABEL},
    db::{Database, Role},
};

/// Directory of the default databases, written by `cargo xtask setup` (as root) and
/// `cargo xtask geo install` (both take it from `monitor_common::geo`).
pub const DEFAULT_GEO_DIR: &str = monitor_common::geo::DEFAULT_DIR;

/// File name of the default country database inside [`DEFAULT_GEO_DIR`]
/// (DB-IP "IP to Country Lite", CC BY 4.0, via ip-location-db; `country_code` schema).
pub const COUNTRY_DB_FILE: &str = monitor_common::geo::COUNTRY_DB_FILE;

/// File name of the default ASN database inside [`DEFAULT_GEO_DIR`]
/// (ip-location-db ASN CSV converted to MMDB at setup; GeoLite2-ASN field names).
pub const ASN_DB_FILE: &str = monitor_common::geo::ASN_DB_FILE;

/// File name of the default registry country database inside [`DEFAULT_GEO_DIR`]
/// (ip-location-db `geo-whois-asn-country`, CC0; `country_code` schema).
pub const REGISTRY_DB_FILE: &str = monitor_common::geo::REGISTRY_DB_FILE;

/// Command that installs the default databases, quoted in warnings.
pub const SETUP_COMMAND: &str = "cargo xtask setup";

/// The `[geo]` section, documented (every key, a comment and its default). Parses to
/// [`GeoConfig::default()`]; `config/monitor.toml` carries a copy.
pub const CONFIG_DOC: &str = r#"[geo]
# Country database: a MaxMind DB (.mmdb) file covering IPv4 and IPv6, with either the
# GeoIP2/DB-IP field `country.iso_code` or the ip-location-db field `country_code`.
# Unset (the default): /var/lib/monitor/geo/dbip-country.mmdb, installed by
# `cargo xtask setup` (as root); if that file is missing the monitor runs without countries
# and warns. A file named here must exist and be valid, or the monitor does not start.
# country_db = "/var/lib/monitor/geo/dbip-country.mmdb"

# ASN database: a MaxMind DB file with `autonomous_system_number` and
# `autonomous_system_organization` (GeoLite2-ASN layout). Unset (the default):
# /var/lib/monitor/geo/asn.mmdb, converted from the ip-location-db ASN lists by
# `cargo xtask setup`; same rules as `country_db`.
# asn_db = "/var/lib/monitor/geo/asn.mmdb"

# Registry country database: a second country opinion, the country of the registry (RIR
# delegation / WHOIS) records rather than a measured location. Every public address is looked
# up in it too, and reports show where it and the country database disagree (consensus).
# Unset (the default): /var/lib/monitor/geo/geo-whois-asn-country.mmdb (ip-location-db, CC0),
# installed by `cargo xtask setup`; same rules as `country_db`.
# registry_db = "/var/lib/monitor/geo/geo-whois-asn-country.mmdb"

# Further country databases compared for consensus (GeoLite2-Country, a fresher or commercial
# DB-IP file...), each with a label shown in reports ([a-z0-9_-], at most 32 characters; not
# "primary" or "registry"). Each file must exist and be a valid country database.
# extra_country = [{ label = "geolite2", path = "/var/lib/GeoIP/GeoLite2-Country.mmdb" }]
extra_country = []

# Warn when a database was built more than this many days ago (0: never warn). The data
# installed by `cargo xtask setup` is a frozen snapshot from June 2026, hence 200.
max_age_days = 200

# Remote addresses whose answers are kept in memory (about 300 bytes each); the cache is
# emptied when full. 0 disables it.
cache_entries = 16384
"#;

/// `[geo]`: where the country and ASN databases are and how answers are cached.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GeoConfig {
    /// Country database. `None` (default): [`DEFAULT_GEO_DIR`]/[`COUNTRY_DB_FILE`], optional.
    /// `Some`: must exist and be a valid country database.
    pub country_db: Option<PathBuf>,
    /// ASN database. `None` (default): [`DEFAULT_GEO_DIR`]/[`ASN_DB_FILE`], optional.
    /// `Some`: must exist and be a valid ASN database.
    pub asn_db: Option<PathBuf>,
    /// Days after a database's `build_epoch` above which a warning is given; 0 never warns.
    /// Default 200: the bundled data is a frozen June 2026 snapshot.
    pub max_age_days: u64,
    /// Capacity of the lookup cache in addresses; 0 disables it. Default 16384 (~5 MB).
    pub cache_entries: usize,
    /// Registry country database. `None` (default): [`DEFAULT_GEO_DIR`]/[`REGISTRY_DB_FILE`],
    /// optional. `Some`: must exist and be a valid country database.
    pub registry_db: Option<PathBuf>,
    /// Further country databases compared for consensus, in order. Default: none.
    pub extra_country: Vec<ExtraCountryDb>,
}

/// One `[[geo.extra_country]]` entry.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExtraCountryDb {
    /// Name shown in reports and the journal (`[a-z0-9_-]{1,32}`, unique, not `primary` or
    /// `registry`).
    pub label: String,
    /// The MMDB file (must exist and have a country field).
    pub path: PathBuf,
}

impl GeoConfig {
    /// Checks the `[[geo.extra_country]]` labels (every command validates them with the
    /// config, before any database is opened).
    ///
    /// # Errors
    /// [`Error::Label`] for the first label that is empty, too long, not `[a-z0-9_-]`,
    /// `primary` or `registry`, or repeated.
    pub fn check_labels(&self) -> Result<(), Error> {
        let mut seen = HashSet::new();
        self.extra_country.iter().try_for_each(|extra| check_label(&extra.label, &mut seen))
    }

    /// Opens every database the config names (`country_db`, `asn_db`, `registry_db`,
    /// `[[geo.extra_country]]`) as [`super::Enricher`] would, and closes it again: the config's
    /// validation, the same for every command, so that a missing or unusable file named in the
    /// config is an error of `config dump`, `report` and `status` too, not only of `run`. The
    /// default files (none named) are not checked: a missing one is a warning where it is used.
    ///
    /// # Errors
    /// As [`super::Enricher::open`], for the first named file that cannot serve its role.
    pub fn check_files(&self) -> Result<(), Error> {
        let named = [(Role::Country, &self.country_db), (Role::Asn, &self.asn_db), (Role::Country, &self.registry_db)];
        for (role, path) in named {
            if let Some(path) = path {
                Database::open(role, path)?;
            }
        }
        self.extra_country.iter().try_for_each(|extra| Database::open(Role::Country, &extra.path).map(drop))
    }
}

/// Checks one `extra_country` label (and remembers it in `seen`).
fn check_label(label: &str, seen: &mut HashSet<String>) -> Result<(), Error> {
    let bad = |reason| Err(Error::Label { label: label.to_owned(), reason });
    if label.is_empty() || label.len() > 32 {
        return bad("it must have 1 to 32 characters");
    }
    if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return bad("only a-z, 0-9, '-' and '_' are allowed");
    }
    if label == PRIMARY_LABEL || label == REGISTRY_LABEL {
        return bad("`primary` and `registry` name the built-in databases");
    }
    if !seen.insert(label.to_owned()) {
        return bad("it is used twice");
    }
    Ok(())
}

impl Default for GeoConfig {
    fn default() -> Self {
        Self {
            country_db: None,
            asn_db: None,
            max_age_days: 200,
            cache_entries: 16_384,
            registry_db: None,
            extra_country: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        geo: GeoConfig,
    }

    #[test]
    fn config_doc_parses_to_the_defaults() {
        let file: File = toml::from_str(CONFIG_DOC).expect("CONFIG_DOC is valid TOML");
        assert_eq!(file.geo, GeoConfig::default());
    }

    #[test]
    fn config_doc_commented_paths_are_the_default_paths() {
        let country = format!("# country_db = \"{DEFAULT_GEO_DIR}/{COUNTRY_DB_FILE}\"");
        let asn = format!("# asn_db = \"{DEFAULT_GEO_DIR}/{ASN_DB_FILE}\"");
        assert!(CONFIG_DOC.contains(&country), "{country}");
        assert!(CONFIG_DOC.contains(&asn), "{asn}");
    }

    #[test]
    fn geo_section_accepts_extra_country_databases() {
        let file: File = toml::from_str(
            "[geo]\nregistry_db = \"/r.mmdb\"\nextra_country = [{ label = \"geolite2\", path = \"/g.mmdb\" }]\n",
        )
        .expect("valid");
        assert_eq!(file.geo.registry_db, Some(PathBuf::from("/r.mmdb")));
        assert_eq!(file.geo.extra_country, vec![ExtraCountryDb { label: "geolite2".into(), path: "/g.mmdb".into() }]);
        let err = toml::from_str::<File>("[geo]\nextra_country = [{ label = \"x\", file = \"/g.mmdb\" }]\n").err();
        assert!(err.is_some_and(|e| e.to_string().contains("unknown field")));
    }

    #[test]
    fn geo_section_rejects_unknown_keys() {
        let err = toml::from_str::<File>("[geo]\ncountry = \"x\"\n").err();
        assert!(err.is_some_and(|e| e.to_string().contains("unknown field")));
    }

    #[test]
    fn geo_section_accepts_explicit_paths() {
        let file: File = toml::from_str("[geo]\ncountry_db = \"/a.mmdb\"\nasn_db = \"/b.mmdb\"\n").expect("valid");
        assert_eq!(file.geo.country_db, Some(PathBuf::from("/a.mmdb")));
        assert_eq!(file.geo.asn_db, Some(PathBuf::from("/b.mmdb")));
        assert_eq!(file.geo.max_age_days, 200);
    }
}
