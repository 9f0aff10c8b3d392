//! Address classification ([`Scope`]), decided before any database lookup.
//!
//! Ranges from the IANA special-purpose address registries (RFC 6890 and updates). Only
//! [`Scope::Public`] addresses are looked up; callers canonicalise IPv4-mapped IPv6 first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::Scope;

/// IPv4 special ranges, first match wins (hence 255.255.255.255 before 240.0.0.0/4).
const V4: &[(Ipv4Addr, u8, Scope)] = &[
    (Ipv4Addr::UNSPECIFIED, 8, Scope::Reserved), // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8, Scope::Private),
    (Ipv4Addr::new(100, 64, 0, 0), 10, Scope::Cgnat), // RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8, Scope::Loopback),
    (Ipv4Addr::new(169, 254, 0, 0), 16, Scope::LinkLocal),
    (Ipv4Addr::new(172, 16, 0, 0), 12, Scope::Private),
    (Ipv4Addr::new(192, 0, 0, 0), 24, Scope::Reserved), // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24, Scope::Documentation), // TEST-NET-1
    (Ipv4Addr::new(192, 168, 0, 0), 16, Scope::Private),
    (Ipv4Addr::new(198, 18, 0, 0), 15, Scope::Reserved), // benchmarking (RFC 2544)
    (Ipv4Addr::new(198, 51, 100, 0), 24, Scope::Documentation), // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24, Scope::Documentation), // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4, Scope::Multicast),
    (Ipv4Addr::BROADCAST, 32, Scope::Multicast), // limited broadcast
    (Ipv4Addr::new(240, 0, 0, 0), 4, Scope::Reserved),
];

/// IPv6 special ranges, first match wins. Addresses matching none are outside `2000::/3` (the
/// only global unicast block IANA has allocated) and NAT64, hence [`Scope::Reserved`].
const V6: &[(Ipv6Addr, u8, Scope)] = &[
    (Ipv6Addr::LOCALHOST, 128, Scope::Loopback),
    // NAT64 (RFC 6052): the lookup takes the IPv4 address a well-known-prefix address carries
    // when that is public; one carrying another is public too, and unknown to the databases.
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, Scope::Public),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, Scope::Documentation),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, Scope::Documentation), // RFC 9637
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, Scope::Private),        // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, Scope::LinkLocal),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, Scope::Multicast),
    (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3, Scope::Public),
];

/// Classifies `ip` (expected canonical: `::ffff:a.b.c.d` should already be `a.b.c.d`).
#[must_use]
pub fn classify(ip: IpAddr) -> Scope {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            V4.iter()
                .find(|(net, len, _)| (bits ^ u32::from(*net)).checked_shr(32 - u32::from(*len)).unwrap_or(0) == 0)
                .map_or(Scope::Public, |&(_, _, scope)| scope)
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            V6.iter()
                .find(|(net, len, _)| (bits ^ u128::from(*net)).checked_shr(128 - u32::from(*len)).unwrap_or(0) == 0)
                .map_or(Scope::Reserved, |&(_, _, scope)| scope)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        classify(s.parse::<IpAddr>().expect("test address").to_canonical())
    }

    #[test]
    fn special_ipv4_ranges_are_classified() {
        for (ip, want) in [
            ("127.0.0.1", Scope::Loopback),
            ("127.255.255.255", Scope::Loopback),
            ("10.1.2.3", Scope::Private),
            ("172.16.0.0", Scope::Private),
            ("172.31.255.255", Scope::Private),
            ("192.168.1.1", Scope::Private),
            ("100.64.0.1", Scope::Cgnat),
            ("100.127.255.255", Scope::Cgnat),
            ("169.254.1.1", Scope::LinkLocal),
            ("224.0.0.1", Scope::Multicast),
            ("239.255.255.250", Scope::Multicast),
            ("255.255.255.255", Scope::Multicast),
            ("192.0.2.1", Scope::Documentation),
            ("198.51.100.7", Scope::Documentation),
            ("203.0.113.255", Scope::Documentation),
            ("0.0.0.0", Scope::Reserved),
            ("192.0.0.8", Scope::Reserved),
            ("198.19.255.255", Scope::Reserved),
            ("240.0.0.1", Scope::Reserved),
            ("255.255.255.254", Scope::Reserved),
        ] {
            assert_eq!(scope(ip), want, "{ip}");
        }
    }

    #[test]
    fn neighbours_of_special_ipv4_ranges_are_public() {
        for ip in [
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.255",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "1.1.1.1",
            "8.8.8.8",
        ] {
            assert_eq!(scope(ip), Scope::Public, "{ip}");
        }
    }

    #[test]
    fn special_ipv6_ranges_are_classified() {
        for (ip, want) in [
            ("::1", Scope::Loopback),
            ("::", Scope::Reserved),
            ("::2", Scope::Reserved),
            ("100::1", Scope::Reserved),
            ("fc00::1", Scope::Private),
            ("fdff:ffff::1", Scope::Private),
            ("fe80::1", Scope::LinkLocal),
            ("febf:ffff::1", Scope::LinkLocal),
            ("ff02::1", Scope::Multicast),
            ("2001:db8::1", Scope::Documentation),
            ("3fff:fff::1", Scope::Documentation),
            ("fec0::1", Scope::Reserved),
            ("4000::1", Scope::Reserved),
        ] {
            assert_eq!(scope(ip), want, "{ip}");
        }
    }

    #[test]
    fn global_ipv6_is_public() {
        for ip in ["2001:218::1", "2001:1700::1", "2404:9dc0::1", "2001:db9::1", "3fff:1000::1", "64:ff9b::808:808"] {
            assert_eq!(scope(ip), Scope::Public, "{ip}");
        }
    }

    #[test]
    fn ipv4_mapped_ipv6_is_classified_as_ipv4_after_canonicalisation() {
        assert_eq!(scope("::ffff:127.0.0.1"), Scope::Loopback);
        assert_eq!(scope("::ffff:10.0.0.1"), Scope::Private);
        assert_eq!(scope("::ffff:1.128.0.1"), Scope::Public);
    }
}
