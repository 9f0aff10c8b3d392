//! Tests of the per-app name table.

use std::net::{IpAddr, Ipv4Addr};

use super::*;

const S: u64 = NS_PER_S;

fn host(s: &str) -> Hostname {
    Hostname::parse(s).unwrap()
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

fn table(config: NameTableConfig) -> NameTable<&'static str> {
    NameTable::new(config).unwrap()
}

fn small() -> NameTableConfig {
    NameTableConfig { entries_per_app: 2, apps: 2, host_entries: 3, freshness_s: 600, ..NameTableConfig::default() }
}

fn found(name: &str, source: NameSource, answered_ns: u64) -> Option<NameMatch> {
    Some(NameMatch { name: host(name), source, answered_ns })
}

#[test]
fn two_apps_resolving_different_names_to_one_address_get_their_own_names() {
    let mut t = table(NameTableConfig::default());
    t.record_answer(&"firefox", &host("www.example.com"), &[ip(1), ip(2)], 20, 10 * S);
    t.record_answer(&"curl", &host("static.example.net"), &[ip(1)], 20, 11 * S);
    assert_eq!(t.lookup(&"firefox", ip(1), 12 * S), found("www.example.com", NameSource::Dns, 10 * S));
    assert_eq!(t.lookup(&"curl", ip(1), 12 * S), found("static.example.net", NameSource::Dns, 11 * S));
    // A third app without an answer of its own gets the host's latest, marked as such.
    assert_eq!(t.lookup(&"wget", ip(1), 12 * S), found("static.example.net", NameSource::DnsHost, 11 * S));
    assert_eq!(t.lookup(&"wget", ip(2), 12 * S), found("www.example.com", NameSource::DnsHost, 10 * S));
    assert_eq!(t.lookup(&"wget", ip(3), 12 * S), None);
    let s = t.stats();
    assert_eq!((s.hits_dns, s.hits_dns_host, s.misses, s.answers, s.addresses), (2, 2, 1, 2, 3));
}

#[test]
fn answers_are_fresh_for_the_window_or_the_ttl_whichever_is_longer() {
    let mut t = table(NameTableConfig { freshness_s: 600, ..NameTableConfig::default() });
    t.record_answer(&"app", &host("short.example.test"), &[ip(1)], 30, 100 * S);
    t.record_answer(&"app", &host("long.example.test"), &[ip(2)], 3600, 100 * S);
    assert!(t.lookup(&"app", ip(1), 700 * S).is_some());
    assert_eq!(t.lookup(&"app", ip(1), 700 * S + 1), None);
    assert!(t.lookup(&"app", ip(2), 3700 * S).is_some());
    assert_eq!(t.lookup(&"app", ip(2), 3700 * S + 1), None);
    assert_eq!(t.stats().stale, 2);
    // A repeated answer extends the window from its last repetition, keeping the first sighting.
    t.record_answer(&"app", &host("short.example.test"), &[ip(1)], 30, 650 * S);
    assert_eq!(t.lookup(&"app", ip(1), 1200 * S), found("short.example.test", NameSource::Dns, 100 * S));
}

#[test]
fn answers_after_the_connection_do_not_name_it_beyond_the_clock_grace() {
    let mut t = table(NameTableConfig::default());
    t.record_answer(&"app", &host("later.example.test"), &[ip(1)], 60, 100 * S);
    assert!(t.lookup(&"app", ip(1), 100 * S - CLOCK_GRACE_NS).is_some());
    assert_eq!(t.lookup(&"app", ip(1), 100 * S - CLOCK_GRACE_NS - 1), None);
}

#[test]
fn latest_answer_wins_when_one_app_gets_two_names_for_an_address() {
    let mut t = table(NameTableConfig::default());
    t.record_answer(&"app", &host("a.example.test"), &[ip(1)], 60, S);
    t.record_answer(&"app", &host("b.example.test"), &[ip(1)], 60, 2 * S);
    assert_eq!(t.lookup(&"app", ip(1), 3 * S), found("b.example.test", NameSource::Dns, 2 * S));
    assert_eq!(t.stats().renamed, 1);
}

#[test]
fn getaddrinfo_results_are_named_as_such() {
    let mut t = table(NameTableConfig::default());
    t.record_getaddrinfo(&"app", &host("gai.example.test"), &[ip(1)], S);
    assert_eq!(t.lookup(&"app", ip(1), 2 * S), found("gai.example.test", NameSource::Getaddrinfo, S));
    assert_eq!(t.lookup(&"other", ip(1), 2 * S), found("gai.example.test", NameSource::DnsHost, S));
    assert_eq!(t.stats().hits_getaddrinfo, 1);
}

#[test]
fn maps_are_bounded_and_evictions_counted() {
    let mut t = table(small());
    t.record_answer(&"a", &host("one.test"), &[ip(1), ip(2), ip(3)], 60, S);
    let s = t.stats();
    assert_eq!((s.entry_evictions, s.host_evictions), (1, 0));
    // The app's map lost ip(1), but the host-wide map still has the app's own answer.
    assert_eq!(t.lookup(&"a", ip(1), S), found("one.test", NameSource::Dns, S));
    t.record_answer(&"b", &host("two.test"), &[ip(4)], 60, S);
    assert_eq!(t.stats().host_evictions, 1);
    // A third app pushes out the least recently used one: "a" (used before "b" was recorded).
    t.record_answer(&"c", &host("three.test"), &[ip(5)], 60, S);
    assert_eq!(t.stats().app_evictions, 1);
    assert_eq!(t.lookup(&"b", ip(4), S), found("two.test", NameSource::Dns, S));
    assert_eq!(t.stats().host_evictions, 2);
    // ip(3) lived only in a's map and in the host-wide map, which both dropped it.
    assert_eq!(t.lookup(&"a", ip(3), S), None);
}

#[test]
fn config_defaults_parse_from_the_documented_section_and_zero_sizes_are_rejected() {
    #[derive(serde::Deserialize)]
    struct File {
        names: NameTableConfig,
    }
    let parsed: File = toml::from_str(CONFIG_DOC).unwrap();
    assert_eq!(parsed.names, NameTableConfig::default());
    assert!(toml::from_str::<File>("[names]\nbogus = 1\n").is_err());
    let zero = NameTableConfig { apps: 0, ..NameTableConfig::default() };
    assert_eq!(zero.validate(), Err(ConfigError::Zero { key: "apps" }));
    assert!(NameTable::<u32>::new(zero).is_err());
}

#[test]
fn string_keyed_tables_are_looked_up_by_str() {
    let mut t: NameTable<String> = NameTable::new(NameTableConfig::default()).unwrap();
    t.record_answer(&"app".to_owned(), &host("str.example.test"), &[ip(1)], 60, S);
    assert_eq!(t.lookup("app", ip(1), S), found("str.example.test", NameSource::Dns, S));
    assert_eq!(t.lookup(&"app".to_owned(), ip(1), S), found("str.example.test", NameSource::Dns, S));
    assert_eq!(t.lookup("other", ip(1), S), found("str.example.test", NameSource::DnsHost, S));
}

#[test]
fn maps_grow_as_filled_and_stop_at_their_bound() {
    let mut map: LruCache<u32, u32> = lazy_lru(NonZeroUsize::new(4096).unwrap());
    assert_eq!(map.cap().get(), 4096);
    for i in 0..5000 {
        map.push(i, i);
    }
    assert_eq!(map.len(), 4096);
    assert!(map.contains(&4999) && !map.contains(&903));
}

mod properties {
    use std::collections::{HashMap, HashSet};

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Record { app: u8, name: u8, addrs: Vec<u8>, ttl: u32 },
        Lookup { app: u8, addr: u8 },
        Wait { s: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..5u8, 0..6u8, prop::collection::vec(0..10u8, 0..4), 0..1200u32)
                .prop_map(|(app, name, addrs, ttl)| Op::Record { app, name, addrs, ttl }),
            (0..6u8, 0..10u8).prop_map(|(app, addr)| Op::Lookup { app, addr }),
            (0..400u64).prop_map(|s| Op::Wait { s }),
        ]
    }

    proptest! {
        /// Whatever the sequence, a lookup names an address only with a name some app got for
        /// it, `dns` only with one this app got, and the maps stay within their bounds.
        #[test]
        fn lookups_only_return_names_answered_for_the_address(ops in prop::collection::vec(op(), 1..80)) {
            let config = NameTableConfig { entries_per_app: 3, apps: 3, host_entries: 5, freshness_s: 600, ..NameTableConfig::default() };
            let mut t: NameTable<u8> = NameTable::new(config).unwrap();
            let mut answered: HashMap<u8, HashSet<(u8, u8)>> = HashMap::new(); // addr -> (app, name)
            let mut now = S;
            for op in ops {
                match op {
                    Op::Record { app, name, addrs, ttl } => {
                        let addrs: Vec<IpAddr> = addrs.iter().map(|a| ip(*a)).collect();
                        t.record_answer(&app, &host(&format!("n{name}.test")), &addrs, ttl, now);
                        for a in addrs {
                            let IpAddr::V4(v4) = a else { unreachable!() };
                            answered.entry(v4.octets()[3]).or_default().insert((app, name));
                        }
                    }
                    Op::Lookup { app, addr } => {
                        if let Some(m) = t.lookup(&app, ip(addr), now) {
                            let seen = answered.get(&addr).cloned().unwrap_or_default();
                            let by_anyone = seen.iter().any(|(_, n)| m.name == host(&format!("n{n}.test")));
                            prop_assert!(by_anyone, "{m:?} never answered for {addr}");
                            if m.source == NameSource::Dns {
                                let by_app = seen.iter().any(|(a, n)| *a == app && m.name == host(&format!("n{n}.test")));
                                prop_assert!(by_app, "{m:?} is not app {app}'s answer");
                            }
                        }
                    }
                    Op::Wait { s } => now += s * S,
                }
                prop_assert!(t.apps.len() <= 3 && t.host.len() <= 5);
                prop_assert!(t.apps.iter().all(|(_, m)| m.len() <= 3));
            }
        }
    }
}
