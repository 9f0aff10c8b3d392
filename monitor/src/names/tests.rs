//! Tests of the record-facing types.

use super::*;
use crate::names::table::NameMatch;

fn host(s: &str) -> Hostname {
    Hostname::parse(s).unwrap()
}

fn sni(name: &str, ech: bool) -> Sni {
    Sni { hostname: host(name), ech }
}

fn answer(name: &str, source: NameSource) -> NameMatch {
    NameMatch { name: host(name), source, answered_ns: 1 }
}

#[test]
fn sni_wins_and_a_different_dns_name_is_kept_beside_it() {
    let dns = answer("www.example.com", NameSource::Dns);
    let names = Names::combine(Some(&sni("edge.example.net", false)), false, Some(&dns));
    assert_eq!(
        names,
        Names {
            hostname: Some(host("edge.example.net")),
            registrable_domain: Some("example.net".into()),
            source: NameSource::Sni,
            dns_name: Some(host("www.example.com")),
            ech_outer: false,
        }
    );
    let same = Names::combine(Some(&sni("www.example.com", false)), true, Some(&dns));
    assert_eq!((same.source, same.dns_name), (NameSource::QuicSni, None));
    // Another app's answer (the host-wide map) is not kept beside the SNI: nothing would tell
    // whose it was (it was: found by an adversarial pass).
    let other = answer("www.example.com", NameSource::DnsHost);
    let names = Names::combine(Some(&sni("edge.example.net", false)), false, Some(&other));
    assert_eq!((names.source, names.dns_name), (NameSource::Sni, None));
    let ech = Names::combine(Some(&sni("public.example.org", true)), false, None);
    assert!(ech.ech_outer);
    assert_eq!(ech.registrable_domain.as_deref(), Some("example.org"));
}

#[test]
fn dns_alone_names_the_flow_with_its_source_and_nothing_is_none() {
    let names = Names::combine(None, false, Some(&answer("api.tiktokv.com", NameSource::DnsHost)));
    assert_eq!(names.hostname, Some(host("api.tiktokv.com")));
    assert_eq!(names.registrable_domain.as_deref(), Some("tiktokv.com"));
    assert_eq!(names.source, NameSource::DnsHost);
    assert_eq!(Names::combine(None, true, None), Names::default());
    assert_eq!(Names::default().source, NameSource::None);
}

#[test]
fn names_serialise_with_snake_case_sources() {
    let names =
        Names::combine(Some(&sni("a.example.com", false)), true, Some(&answer("b.example.com", NameSource::Dns)));
    let json = serde_json::to_value(&names).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "hostname": "a.example.com",
            "registrable_domain": "example.com",
            "source": "quic_sni",
            "dns_name": "b.example.com",
            "ech_outer": false,
        })
    );
    assert_eq!(serde_json::from_value::<Names>(json).unwrap(), names);
    // Every source's name is pinned with the journal's (`journal::names`), which stores them.
    // No dns_name when absent.
    let plain = serde_json::to_value(Names::default()).unwrap();
    assert!(plain.get("dns_name").is_none());
    assert_eq!(plain["source"], "none");
}

/// The names of malformed kinds in use (JSON), each parsing back.
#[test]
fn malformed_kind_names_are_the_ones_in_use() {
    crate::variant::assert_names(&[
        (MalformedKind::Dns, "dns"),
        (MalformedKind::DnsTruncated, "dns_truncated"),
        (MalformedKind::Tls, "tls"),
        (MalformedKind::Quic, "quic"),
        (MalformedKind::QuicDecrypt, "quic_decrypt"),
        (MalformedKind::Hostname, "hostname"),
        (MalformedKind::TooLarge, "too_large"),
    ]);
}

#[test]
fn malformed_counts_are_kept_per_kind() {
    for (i, kind) in MalformedKind::ALL.iter().enumerate() {
        assert_eq!(*kind as usize, i, "ALL is in discriminant order");
    }
    let mut counts = MalformedCounts::default();
    assert!(counts.observe(&Progress::Malformed(MalformedKind::QuicDecrypt)));
    assert!(!counts.observe(&Progress::NotTls));
    counts.add(MalformedKind::Dns);
    counts.add(MalformedKind::Dns);
    assert_eq!(counts.get(MalformedKind::Dns), 2);
    assert_eq!(counts.get(MalformedKind::QuicDecrypt), 1);
    assert_eq!(counts.get(MalformedKind::Tls), 0);
    assert_eq!(counts.total(), 3);
}
