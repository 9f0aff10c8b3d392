//! Several country databases compared per address: answers with provenance, verdicts, labels.

use super::*;

/// Two databases that agree on some networks and disagree on others (`consensus-{a,b}.mmdb`,
/// see PROVENANCE.md): every answer with its provenance, and the verdict.
#[test]
fn country_databases_are_compared_per_address() {
    let cfg = GeoConfig {
        country_db: Some(fixture("consensus-a.mmdb")),
        asn_db: Some(fixture("GeoLite2-ASN-Test.mmdb")),
        registry_db: Some(fixture("consensus-b.mmdb")),
        extra_country: vec![ExtraCountryDb { label: "maxmind".into(), path: fixture("GeoIP2-Country-Test.mmdb") }],
        max_age_days: 0,
        ..GeoConfig::default()
    };
    let mut e = Enricher::open_in(&cfg, empty_default_dir().path()).expect("opens");
    assert!(e.warnings().is_empty(), "{:?}", e.warnings());
    let labels: Vec<String> = e.country_labels().iter().map(ToString::to_string).collect();
    assert_eq!(labels, ["primary", "registry", "maxmind"]);
    for (addr, primary, registry, verdict) in [
        ("11.1.1.7", Some("US"), Some("US"), Consensus::Partial), // maxmind: not covered
        ("11.2.2.7", Some("SG"), Some("US"), Consensus::Disagree),
        ("11.3.3.7", Some("SE"), Some("SE"), Consensus::Partial),
        ("11.4.4.7", Some("DE"), None, Consensus::Partial),
        ("11.5.5.7", None, Some("FR"), Consensus::Partial),
        ("11.6.6.7", None, None, Consensus::Partial),
    ] {
        let d = e.lookup(ip(addr));
        let got: Vec<(&str, &str, Option<&str>)> =
            d.answers.iter().map(|a| (&*a.label, &*a.db.database_type, a.country.as_deref())).collect();
        assert_eq!(
            got,
            [
                ("primary", "consensus-test-a", primary),
                ("registry", "consensus-test-b", registry),
                ("maxmind", "GeoIP2-Country", None)
            ],
            "{addr}"
        );
        assert_eq!(d.country.as_deref(), primary, "{addr}: the primary answer stays the country");
        assert_eq!(d.consensus, Some(verdict), "{addr}");
    }
    // A third database that answers: 81.2.69.160 is GB in MaxMind's test data only.
    let d = e.lookup(ip("81.2.69.160"));
    assert_eq!(d.consensus, Some(Consensus::Partial));
    // Cached answers carry the same answers.
    assert_eq!(e.lookup(ip("11.2.2.7")).consensus, Some(Consensus::Disagree));
    assert!(e.stats().cache_hits >= 1);
    let roles: Vec<String> = e.databases().into_iter().map(|d| d.role).collect();
    assert_eq!(roles, ["country", "asn", "country:registry", "country:maxmind"]);
}

#[test]
fn two_agreeing_databases_agree_and_one_database_gives_no_verdict() {
    let two = GeoConfig {
        country_db: Some(fixture("consensus-a.mmdb")),
        registry_db: Some(fixture("consensus-b.mmdb")),
        max_age_days: 0,
        ..GeoConfig::default()
    };
    let dir = empty_default_dir();
    let mut e = Enricher::open_in(&two, dir.path()).expect("opens");
    assert_eq!(e.lookup(ip("11.1.1.7")).consensus, Some(Consensus::Agree));
    assert_eq!(e.lookup(ip("11.3.3.7")).consensus, Some(Consensus::Agree));
    assert_eq!(e.lookup(ip("11.2.2.7")).consensus, Some(Consensus::Disagree));
    assert_eq!(e.lookup(ip("10.0.0.1")).consensus, None, "not public: not looked up");
    let mut one = Enricher::open_in(&config(Some(&fixture("consensus-a.mmdb")), None), dir.path()).expect("opens");
    let d = one.lookup(ip("11.2.2.7"));
    assert_eq!((d.consensus, d.answers.len()), (None, 0), "registry file absent: nothing to compare");
}

#[test]
fn extra_country_labels_are_checked() {
    for (label, reason) in [
        ("", "1 to 32"),
        ("Geo", "only a-z"),
        ("primary", "built-in"),
        ("registry", "built-in"),
        (&"x".repeat(33), "1 to 32"),
    ] {
        let cfg = GeoConfig {
            extra_country: vec![ExtraCountryDb { label: label.to_owned(), path: fixture("consensus-b.mmdb") }],
            ..config(Some(&fixture("consensus-a.mmdb")), None)
        };
        let err = Enricher::open_in(&cfg, empty_default_dir().path()).expect_err(label);
        assert!(err.to_string().contains(reason), "{label}: {err}");
    }
    let twice = ExtraCountryDb { label: "b".into(), path: fixture("consensus-b.mmdb") };
    let cfg = GeoConfig { extra_country: vec![twice.clone(), twice], ..config(None, None) };
    let err = Enricher::open_in(&cfg, empty_default_dir().path()).expect_err("twice");
    assert!(err.to_string().contains("used twice"), "{err}");
}

/// Answer cache off: addresses whose databases reach the same records share one answer list
/// (the list cache), each list is still exactly that address's answers, and more country
/// databases than the walker's lanes are still all asked.
#[test]
fn answer_lists_are_shared_per_record_combination_and_stay_exact() {
    let cfg = |extra: Vec<ExtraCountryDb>| GeoConfig {
        country_db: Some(fixture("consensus-a.mmdb")),
        registry_db: Some(fixture("consensus-b.mmdb")),
        extra_country: extra,
        cache_entries: 0,
        max_age_days: 0,
        ..GeoConfig::default()
    };
    let maxmind = ExtraCountryDb { label: "maxmind".into(), path: fixture("GeoIP2-Country-Test.mmdb") };
    let city = ExtraCountryDb { label: "city".into(), path: fixture("GeoIP2-City-Test.mmdb") };
    let mut e = Enricher::open_in(&cfg(vec![maxmind.clone()]), empty_default_dir().path()).expect("opens");
    let countries =
        |d: &Destination| d.answers.iter().map(|a| a.country.as_deref().map(str::to_owned)).collect::<Vec<_>>();
    let (a, b) = (e.lookup(ip("11.2.2.7")), e.lookup(ip("11.2.2.200")));
    assert!(Arc::ptr_eq(&a.answers, &b.answers), "same records, one list");
    assert_eq!(countries(&a), [Some("SG".into()), Some("US".into()), None]);
    assert_eq!(b.consensus, Some(Consensus::Disagree));
    let c = e.lookup(ip("11.1.1.7"));
    assert!(!Arc::ptr_eq(&a.answers, &c.answers), "other records, another list");
    assert_eq!(
        (countries(&c), c.consensus),
        (vec![Some("US".into()), Some("US".into()), None], Some(Consensus::Partial))
    );
    // 81.2.69.160 is GB in MaxMind's test data only; 81.2.69.1 in none (another record there).
    let gb = e.lookup(ip("81.2.69.160"));
    assert_eq!(countries(&gb), [None, None, Some("GB".into())]);
    assert_eq!(countries(&e.lookup(ip("11.2.2.9"))), countries(&a), "a cached list after others");
    assert_eq!(e.stats().lookup_errors, 0);

    // Four country databases: the fourth is not walked with the others, the library asks it.
    let mut e = Enricher::open_in(&cfg(vec![maxmind, city]), empty_default_dir().path()).expect("opens");
    for _ in 0..2 {
        let d = e.lookup(ip("81.2.69.160"));
        let labels: Vec<&str> = d.answers.iter().map(|a| &*a.label).collect();
        assert_eq!(labels, ["primary", "registry", "maxmind", "city"]);
        assert_eq!(countries(&d), [None, None, Some("GB".into()), Some("GB".into())]);
        assert_eq!(d.consensus, Some(Consensus::Partial));
        let d = e.lookup(ip("11.2.2.7"));
        assert_eq!(countries(&d), [Some("SG".into()), Some("US".into()), None, None]);
    }
}
