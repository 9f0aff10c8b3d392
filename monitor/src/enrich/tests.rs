//! [`Enricher`] against real fixture files (`monitor/tests/data/geo/`, see `PROVENANCE.md`):
//! the official `MaxMind` test databases (known answers from their source data), a subset of
//! the DB-IP country file (`country_code` schema), and broken files.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/geo");

fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Provenance of a fixture, read independently of the code under test.
fn db_ref(path: &Path) -> DbRef {
    let reader = maxminddb::Reader::open_readfile(path).expect("fixture opens");
    DbRef { database_type: reader.metadata().database_type.as_str().into(), build_epoch: reader.metadata().build_epoch }
}

/// Explicit paths; no age warnings (the fixtures are older than the default limit).
fn config(country: Option<&Path>, asn: Option<&Path>) -> GeoConfig {
    GeoConfig {
        country_db: country.map(Path::to_path_buf),
        asn_db: asn.map(Path::to_path_buf),
        max_age_days: 0,
        ..GeoConfig::default()
    }
}

/// An empty directory standing in for the default data directory.
fn empty_default_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Country-Test + ASN-Test, explicit paths.
fn maxmind() -> Enricher {
    let cfg = config(Some(&fixture("GeoIP2-Country-Test.mmdb")), Some(&fixture("GeoLite2-ASN-Test.mmdb")));
    Enricher::open_in(&cfg, empty_default_dir().path()).expect("test databases open")
}

#[test]
fn geoip2_country_schema_gives_known_countries() {
    let mut e = maxmind();
    assert!(e.warnings().iter().all(|w| w.starts_with("registry database")), "{:?}", e.warnings());
    let provenance = Some(db_ref(&fixture("GeoIP2-Country-Test.mmdb")));
    assert_eq!(provenance.as_ref().map(|d| &*d.database_type), Some("GeoIP2-Country"));
    for (addr, want) in [
        ("81.2.69.160", Some("GB")),
        ("89.160.20.112", Some("SE")),
        ("216.160.83.56", Some("US")),
        ("2001:218::1", Some("JP")),
        ("175.16.199.1", Some("CN")),
        ("67.43.156.1", Some("BT")),
        ("214.1.1.1", None), // has a record (anycast), but no country
        ("8.8.8.8", None),   // not in the test data
    ] {
        let d = e.lookup(ip(addr));
        assert_eq!(d.scope, Scope::Public, "{addr}");
        assert_eq!(d.country.as_deref(), want, "{addr}");
        assert_eq!(d.country_db, provenance, "{addr}: provenance even when not found");
    }
}

#[test]
fn geolite2_asn_schema_gives_known_networks() {
    let mut e = maxmind();
    let provenance = Some(db_ref(&fixture("GeoLite2-ASN-Test.mmdb")));
    for (addr, asn, org) in [
        ("1.128.0.1", Some(1221), Some("Telstra Pty Ltd")),
        ("12.81.92.1", Some(7018), Some("AT&T Services")),
        ("12.81.96.1", Some(7018), None), // record without organisation
        ("89.160.20.112", Some(29518), Some("Bredband2 AB")),
        ("2001:1700::1", Some(6730), Some("Sunrise Communications AG")),
        ("::ffff:1.128.0.1", Some(1221), Some("Telstra Pty Ltd")),
        ("8.8.8.8", None, None),
        ("81.2.69.160", None, None),
    ] {
        let d = e.lookup(ip(addr));
        assert_eq!((d.asn, d.as_org.as_deref()), (asn, org), "{addr}");
        assert_eq!(d.asn_db, provenance, "{addr}");
    }
}

#[test]
fn ipv4_mapped_addresses_are_looked_up_as_ipv4() {
    let mut e = maxmind();
    let mapped = e.lookup(ip("::ffff:81.2.69.160"));
    let plain = e.lookup(ip("81.2.69.160"));
    assert_eq!(mapped, plain);
    assert_eq!(mapped.country.as_deref(), Some("GB"));
    // One address, so the second lookup came from the cache.
    assert_eq!(e.stats().cache_hits, 1);
}

/// An IPv6-only network reaches IPv4 servers through NAT64 addresses: one of the
/// well-known prefix is looked up as the IPv4 address it carries (81.2.69.142 is GB in the test
/// database; it read `unknown`), one of the local-use prefix is not looked up.
#[test]
fn nat64_addresses_are_looked_up_as_the_ipv4_address_they_carry() {
    let mut e = maxmind();
    let nat64 = e.lookup(ip("64:ff9b::5102:458e"));
    assert_eq!(nat64, e.lookup(ip("81.2.69.142")));
    assert_eq!((nat64.scope, nat64.country.as_deref()), (Scope::Public, Some("GB")));
    // 10.0.0.1 and 127.0.0.1 behind the well-known prefix (RFC 6052 forbids them): not exempt
    // as private or loopback, a public address no database answers for.
    for hidden in ["64:ff9b::a00:1", "64:ff9b::7f00:1"] {
        let d = e.lookup(ip(hidden));
        assert_eq!((d.scope, d.country), (Scope::Public, None), "{hidden}");
    }
    assert_eq!(e.lookup(ip("64:ff9b:1::5102:458e")).scope, Scope::Reserved);
    assert_eq!(e.lookup(ip("64:ff9b:0:0:0:1:5102:458e")).country, None, "outside the /96: not an IPv4 address");
}

#[test]
fn city_database_serves_as_country_database() {
    let path = fixture("GeoIP2-City-Test.mmdb");
    let mut e = Enricher::open_in(&config(Some(&path), None), empty_default_dir().path()).expect("opens");
    for (addr, want) in
        [("81.2.69.160", "GB"), ("89.160.20.128", "SE"), ("175.16.199.1", "CN"), ("216.160.83.56", "US")]
    {
        assert_eq!(e.lookup(ip(addr)).country.as_deref(), Some(want), "{addr}");
    }
    assert_eq!(&*e.databases()[0].db.database_type, "GeoIP2-City");
}

#[test]
fn ip_location_db_country_code_schema_is_read() {
    // Six networks copied from dbip-country.mmdb 2026-06-01; records are {"country_code": ".."}.
    let path = fixture("dbip-country-subset.mmdb");
    let mut e = Enricher::open_in(&config(Some(&path), None), empty_default_dir().path()).expect("opens");
    let provenance = DbRef { database_type: "country ipvAll".into(), build_epoch: 1_780_345_978 };
    for (addr, want) in [
        ("71.18.0.1", Some("US")),
        ("71.18.1.255", Some("US")), // last address of 71.18.0.0/23
        ("71.18.2.0", None),         // outside the copied network
        ("1.1.1.1", Some("AU")),
        ("81.2.69.160", Some("GB")),
        ("223.5.5.5", Some("CN")),
        ("2404:9dc0::1", Some("SG")),
        ("2a03:2880:f12f:83:face:b00c:0:25de", Some("IE")),
        ("::ffff:71.18.0.1", Some("US")), // ip-location-db files have no mapped alias
        ("8.8.8.8", None),
    ] {
        let d = e.lookup(ip(addr));
        assert_eq!(d.country.as_deref(), want, "{addr}");
        assert_eq!(d.country_db.as_ref(), Some(&provenance), "{addr}");
    }
}

#[test]
fn special_addresses_are_never_looked_up() {
    let mut e = maxmind();
    for (addr, scope) in [
        ("127.0.0.1", Scope::Loopback),
        ("::1", Scope::Loopback),
        ("::ffff:127.0.0.1", Scope::Loopback),
        ("10.1.2.3", Scope::Private),
        ("fc00::1", Scope::Private),
        ("100.64.0.1", Scope::Cgnat),
        ("169.254.1.1", Scope::LinkLocal),
        ("fe80::1", Scope::LinkLocal),
        ("224.0.0.1", Scope::Multicast),
        ("192.0.2.1", Scope::Documentation),
        ("2001:db8::1", Scope::Documentation),
        ("0.0.0.0", Scope::Reserved),
        ("::", Scope::Reserved),
    ] {
        let d = e.lookup(ip(addr));
        let expected = Destination {
            scope,
            country: None,
            asn: None,
            as_org: None,
            country_db: None,
            asn_db: None,
            answers: Default::default(),
            consensus: None,
        };
        assert_eq!(d, expected, "{addr}");
    }
    let s = e.stats();
    assert_eq!(s.lookups, 13);
    let ScopeCounts { public, loopback, private, link_local, cgnat, multicast, documentation, reserved } = s.scopes;
    assert_eq!(
        [public, loopback, private, link_local, cgnat, multicast, documentation, reserved],
        [0, 3, 2, 2, 1, 1, 2, 2]
    );
    assert_eq!((s.unknown_country, s.unknown_asn, s.cache_len), (0, 0, 0), "non-public addresses are not unknowns");
}

#[test]
fn unknowns_and_cache_hits_are_counted() {
    let mut e = maxmind();
    e.lookup(ip("8.8.8.8")); // neither country nor ASN
    e.lookup(ip("8.8.8.8")); // same, from the cache
    e.lookup(ip("81.2.69.160")); // country only
    e.lookup(ip("1.128.0.1")); // ASN only
    e.lookup(ip("10.0.0.1")); // private: not an unknown
    let s = e.stats();
    assert_eq!(
        s,
        EnrichStats {
            lookups: 5,
            cache_hits: 1,
            cache_clears: 0,
            cache_len: 3,
            unknown_country: 3,
            unknown_asn: 3,
            lookup_errors: 0,
            scopes: ScopeCounts { public: 4, private: 1, ..ScopeCounts::default() },
        }
    );
}

#[test]
fn full_cache_is_emptied_and_counted() {
    let cfg = GeoConfig { cache_entries: 2, ..config(Some(&fixture("GeoIP2-Country-Test.mmdb")), None) };
    let mut e = Enricher::open_in(&cfg, empty_default_dir().path()).expect("opens");
    for addr in ["81.2.69.160", "89.160.20.112", "175.16.199.1"] {
        e.lookup(ip(addr));
    }
    let s = e.stats();
    assert_eq!((s.cache_len, s.cache_clears, s.cache_hits), (1, 1, 0));
    assert_eq!(e.lookup(ip("175.16.199.1")).country.as_deref(), Some("CN"));
    assert_eq!(e.stats().cache_hits, 1);
}

#[test]
fn missing_default_databases_warn_and_leave_fields_unknown() {
    let dir = empty_default_dir();
    let mut e = Enricher::open_in(&GeoConfig::default(), dir.path()).expect("missing defaults are not an error");
    let d = e.lookup(ip("81.2.69.160"));
    assert_eq!(
        d,
        Destination {
            scope: Scope::Public,
            country: None,
            asn: None,
            as_org: None,
            country_db: None,
            asn_db: None,
            answers: Default::default(),
            consensus: None
        }
    );
    assert!(e.databases().is_empty());
    let w = e.warnings();
    assert_eq!(w.len(), 3, "{w:?}");
    for (line, file) in w.iter().zip([COUNTRY_DB_FILE, ASN_DB_FILE, REGISTRY_DB_FILE]) {
        assert!(line.contains(&dir.path().join(file).display().to_string()), "{line}");
        assert!(line.contains("`cargo xtask setup` (as root)"), "{line}");
    }
    let s = e.stats();
    assert_eq!((s.unknown_country, s.unknown_asn), (1, 1));
}

#[test]
fn default_databases_are_used_when_present() {
    let dir = empty_default_dir();
    fs::copy(fixture("GeoIP2-Country-Test.mmdb"), dir.path().join(COUNTRY_DB_FILE)).expect("copy");
    let mut e = Enricher::open_in(&config(None, None), dir.path()).expect("opens");
    assert_eq!(e.lookup(ip("81.2.69.160")).country.as_deref(), Some("GB"));
    assert_eq!(e.warnings().len(), 2, "only the ASN and registry files are missing: {:?}", e.warnings());
    let dbs = e.databases();
    assert_eq!(dbs.len(), 1);
    assert_eq!((dbs[0].role.as_str(), dbs[0].path.as_path()), ("country", dir.path().join(COUNTRY_DB_FILE).as_path()));
}

#[test]
fn explicit_missing_path_is_an_error_naming_it() {
    let path = Path::new("/nonexistent/geo/country.mmdb");
    let err = Enricher::open_in(&config(Some(path), None), empty_default_dir().path()).expect_err("must fail");
    assert!(matches!(err, Error::Open { role: Role::Country, .. }), "{err:?}");
    assert_eq!(err.to_string(), "cannot open country database `/nonexistent/geo/country.mmdb`");
}

#[test]
fn garbage_file_is_an_error() {
    let dir = empty_default_dir();
    let path = dir.path().join("garbage.mmdb");
    fs::write(&path, b"this is not a MaxMind DB file\n".repeat(100)).expect("write");
    let err = Enricher::open_in(&config(None, Some(&path)), dir.path()).expect_err("must fail");
    assert!(matches!(err, Error::Open { role: Role::Asn, .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn ipv4_only_database_is_an_error() {
    let path = fixture("MaxMind-DB-test-ipv4-24.mmdb");
    let err = Enricher::open_in(&config(Some(&path), None), empty_default_dir().path()).expect_err("must fail");
    assert!(matches!(err, Error::Ipv4Only { .. }), "{err:?}");
    assert!(err.to_string().contains("IPv4-only"), "{err}");
}

#[test]
fn database_of_the_wrong_kind_is_an_error() {
    let asn = fixture("GeoLite2-ASN-Test.mmdb");
    let country = fixture("dbip-country-subset.mmdb");
    let empty = empty_default_dir();
    let err = Enricher::open_in(&config(Some(&asn), None), empty.path()).expect_err("ASN file as country_db");
    assert!(
        matches!(&err, Error::WrongKind { role: Role::Country, database_type, .. } if database_type == "GeoLite2-ASN")
    );
    let err = Enricher::open_in(&config(None, Some(&country)), empty.path()).expect_err("country file as asn_db");
    assert!(matches!(err, Error::WrongKind { role: Role::Asn, .. }), "{err:?}");
    assert!(err.to_string().contains("autonomous_system_number"), "{err}");
}

#[test]
fn corrupt_database_is_an_error() {
    // MaxMind's fixture with a wrong node count in its metadata.
    let path = fixture("GeoIP2-City-Test-Invalid-Node-Count.mmdb");
    let err = Enricher::open_in(&config(Some(&path), None), empty_default_dir().path()).expect_err("must fail");
    assert!(matches!(err, Error::Open { .. } | Error::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn only_regular_files_are_mapped() {
    // A directory opens (O_RDONLY) but is refused before mapping; so would a FIFO or a device.
    let dir = empty_default_dir();
    let err = Enricher::open_in(&config(Some(dir.path()), None), dir.path()).expect_err("a directory");
    assert!(matches!(err, Error::Unusable { role: Role::Country, .. }), "{err:?}");
    let chain = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(chain.contains("a directory, not a regular file"), "{chain}");
}

#[test]
fn corrupt_default_database_is_an_error_not_a_warning() {
    let dir = empty_default_dir();
    fs::write(dir.path().join(ASN_DB_FILE), b"truncated").expect("write");
    let err = Enricher::open_in(&GeoConfig::default(), dir.path()).expect_err("must fail");
    assert!(matches!(err, Error::Open { role: Role::Asn, .. }), "{err:?}");
}

#[test]
fn failed_reload_keeps_the_old_databases() {
    let dir = empty_default_dir();
    let path = dir.path().join("country.mmdb");
    fs::copy(fixture("GeoIP2-Country-Test.mmdb"), &path).expect("copy");
    let mut e = Enricher::open_in(&config(Some(&path), None), dir.path()).expect("opens");
    assert_eq!(e.lookup(ip("81.2.69.160")).country.as_deref(), Some("GB"));

    // Replaced by rename (as installers do) with a broken file.
    let tmp = dir.path().join("new.mmdb");
    fs::write(&tmp, b"garbage").expect("write");
    fs::rename(&tmp, &path).expect("rename");
    let err = e.reload().expect_err("broken replacement");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    assert_eq!(e.lookup(ip("89.160.20.112")).country.as_deref(), Some("SE"), "old reader still answers");
    assert_eq!(&*e.databases()[0].db.database_type, "GeoIP2-Country");

    // A good replacement is picked up and the cache is emptied.
    fs::copy(fixture("GeoIP2-City-Test.mmdb"), &tmp).expect("copy");
    fs::rename(&tmp, &path).expect("rename");
    e.reload().expect("good replacement");
    assert_eq!(&*e.databases()[0].db.database_type, "GeoIP2-City");
    let d = e.lookup(ip("81.2.69.160"));
    assert_eq!(d.country.as_deref(), Some("GB"));
    assert_eq!(d.country_db.map(|r| r.database_type).as_deref(), Some("GeoIP2-City"), "not the cached answer");
}

#[test]
fn old_data_gives_a_warning_but_keeps_working() {
    let path = fixture("GeoIP2-Country-Test.mmdb");
    let stale = GeoConfig { max_age_days: 1, ..config(Some(&path), None) };
    let mut e = Enricher::open_in(&stale, empty_default_dir().path()).expect("stale data still opens");
    let w = e.warnings().iter().filter(|w| w.contains("days old")).collect::<Vec<_>>();
    assert_eq!(w.len(), 1, "{:?}", e.warnings());
    assert!(w[0].contains(&path.display().to_string()) && w[0].contains("max_age_days = 1"), "{}", w[0]);
    assert_eq!(e.lookup(ip("81.2.69.160")).country.as_deref(), Some("GB"));
    let never = GeoConfig { max_age_days: 0, ..config(Some(&path), None) };
    let e = Enricher::open_in(&never, empty_default_dir().path()).expect("opens");
    assert!(e.warnings().iter().all(|w| !w.contains("days old")), "{:?}", e.warnings());
}

#[test]
fn databases_report_role_path_provenance_and_age() {
    let e = maxmind();
    let dbs = e.databases();
    let roles: Vec<&str> = dbs.iter().map(|d| d.role.as_str()).collect();
    assert_eq!(roles, ["country", "asn"]);
    for (info, file) in dbs.iter().zip(["GeoIP2-Country-Test.mmdb", "GeoLite2-ASN-Test.mmdb"]) {
        assert_eq!(info.path, fixture(file));
        assert_eq!(info.db, db_ref(&fixture(file)));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        assert_eq!(info.age_days, (now - info.db.build_epoch) / 86_400);
    }
}

/// The installed default data (`cargo xtask setup`), when present. Data drifts between
/// releases; these answers hold for the pinned 2026-06 snapshot.
#[test]
#[allow(clippy::print_stderr, reason = "a skipped test says why (house style R16)")]
fn installed_default_data_gives_known_answers() {
    let dir = Path::new(DEFAULT_GEO_DIR);
    if !dir.join(COUNTRY_DB_FILE).exists() || !dir.join(ASN_DB_FILE).exists() {
        eprintln!(
            "skipping installed_default_data_gives_known_answers: no data in {DEFAULT_GEO_DIR} (run `{SETUP_COMMAND}` as root)"
        );
        return;
    }
    let mut e = Enricher::open(&GeoConfig::default()).expect("installed data opens");
    assert!(e.warnings().iter().all(|w| !w.contains("not found")), "{:?}", e.warnings());
    for (addr, country, asn, org) in [
        ("71.18.0.1", "US", 396_986, Some("Bytedance Inc.")),
        ("::ffff:71.18.0.1", "US", 396_986, Some("Bytedance Inc.")),
        ("1.1.1.1", "AU", 13335, None),
        ("8.8.8.8", "US", 15169, None),
        ("2404:9dc0::1", "SG", 138_699, None),
    ] {
        let d = e.lookup(ip(addr));
        assert_eq!((d.country.as_deref(), d.asn), (Some(country), Some(asn)), "{addr}");
        if org.is_some() {
            assert_eq!(d.as_org.as_deref(), org, "{addr}");
        }
    }
    assert_eq!(e.lookup(ip("10.0.0.1")).scope, Scope::Private);
    let types: Vec<(String, String)> =
        e.databases().into_iter().map(|d| (d.role, d.db.database_type.to_string())).collect();
    assert_eq!(types[..2], [("country".into(), "country ipvAll".into()), ("asn".into(), "ip-location-db-ASN".into())]);
    if !dir.join(REGISTRY_DB_FILE).exists() {
        return;
    }
    assert_eq!(types[2].0, "country:registry", "{types:?}");
    // A TikTok Pte. range: measured in Singapore (DB-IP), registered to a US company (registry).
    let d = e.lookup(ip("71.18.247.1"));
    let answers: Vec<(&str, Option<&str>)> = d.answers.iter().map(|a| (&*a.label, a.country.as_deref())).collect();
    assert_eq!(answers, [("primary", Some("SG")), ("registry", Some("US"))]);
    assert_eq!(d.consensus, Some(Consensus::Disagree));
    assert_eq!(e.lookup(ip("71.18.0.1")).consensus, Some(Consensus::Agree), "US in both");
}

#[test]
fn enricher_can_move_to_another_task() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Enricher>();
}

#[test]
fn fifo_or_device_as_database_is_refused_at_once_and_on_reload_the_old_one_stays() {
    let dir = empty_default_dir();
    let fifo = dir.path().join("fifo.mmdb");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    // No writer: a blocking open or read would never return.
    let err = Enricher::open_in(&config(Some(&fifo), None), dir.path()).expect_err("a FIFO is no database");
    assert!(matches!(err, Error::Unusable { role: Role::Country, .. }), "{err:?}");
    let text = format!("{:#}", anyhow::Error::new(err));
    assert!(text.contains(&fifo.display().to_string()) && text.contains("a FIFO, not a regular file"), "{text}");
    let err = Enricher::open_in(&config(None, Some(Path::new("/dev/zero"))), dir.path()).expect_err("device");
    assert!(format!("{:#}", anyhow::Error::new(err)).contains("a character device"));

    let path = dir.path().join("country.mmdb");
    fs::copy(fixture("GeoIP2-Country-Test.mmdb"), &path).expect("copy");
    let mut e = Enricher::open_in(&config(Some(&path), None), dir.path()).expect("opens");
    fs::remove_file(&path).expect("remove");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    assert!(matches!(e.reload(), Err(Error::Unusable { .. })), "reload refuses the FIFO");
    assert_eq!(e.lookup(ip("81.2.69.160")).country.as_deref(), Some("GB"), "old reader still answers");
}

#[test]
fn records_are_decoded_once_and_answers_share_their_strings() {
    // Answer cache off: every lookup walks the trees; the record cache alone shares answers.
    let cfg = GeoConfig {
        cache_entries: 0,
        ..config(Some(&fixture("GeoIP2-Country-Test.mmdb")), Some(&fixture("GeoLite2-ASN-Test.mmdb")))
    };
    let mut e = Enricher::open_in(&cfg, empty_default_dir().path()).expect("test databases open");
    let (a, b) = (e.lookup(ip("1.128.0.1")), e.lookup(ip("1.128.0.2")));
    assert_eq!((a.asn, a.as_org.as_deref()), (Some(1221), Some("Telstra Pty Ltd")));
    assert_eq!(a, b);
    let (Some(org_a), Some(org_b)) = (&a.as_org, &b.as_org) else { panic!("organisation expected") };
    assert!(Arc::ptr_eq(org_a, org_b), "one record, one shared organisation string");
    // Same AS, two records (one without organisation): cached per record, not per number.
    assert_eq!(
        (e.lookup(ip("12.81.92.1")).as_org.as_deref(), e.lookup(ip("12.81.96.1")).as_org.as_deref()),
        (Some("AT&T Services"), None)
    );
    assert_eq!(e.lookup(ip("12.81.92.1")).as_org.as_deref(), Some("AT&T Services"));
    let (gb, gb2, se) = (e.lookup(ip("81.2.69.160")), e.lookup(ip("81.2.69.161")), e.lookup(ip("89.160.20.112")));
    assert_eq!(
        (gb.country.as_deref(), gb2.country.as_deref(), se.country.as_deref()),
        (Some("GB"), Some("GB"), Some("SE"))
    );
    assert_eq!(e.stats().cache_len, 0, "the answer cache stayed off");
}

mod consensus;
