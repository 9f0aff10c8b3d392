//! Text stored for enum values and integer conversions. The strings are the serde (`snake_case`)
//! names of the types, taken from serde itself ([`crate::variant`]), so JSON output and the
//! journal cannot disagree; they are part of the schema: never rename one (a test pins them).

use std::net::IpAddr;

use jiff::Timestamp;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    enrich::{Consensus, Scope},
    identity::{AppSource, android::UidKind},
    names::NameSource,
    tracker::record::{Direction, OwnerSource, PayloadSource, Protocol, RecordKind},
};

/// `scope` of a record without a remote address.
pub(super) const SCOPE_NONE: &str = "none";
/// `scope` of a record with a remote address but no [`Destination`](crate::enrich::Destination).
pub const SCOPE_UNENRICHED: &str = "unenriched";

/// Enums stored as text: unit variants only, named by serde (`rename_all = "snake_case"`).
pub(crate) trait Stored: Serialize + DeserializeOwned + Copy {}

impl Stored for RecordKind {}
impl Stored for Protocol {}
impl Stored for Direction {}
impl Stored for OwnerSource {}
impl Stored for PayloadSource {}
impl Stored for AppSource {}
impl Stored for Scope {}
impl Stored for Consensus {}
impl Stored for UidKind {}
impl Stored for NameSource {}

/// The stored name of `v`: its serde name, the one JSON output uses (no allocation).
pub(crate) fn name<T: Stored>(v: T) -> &'static str {
    crate::variant::name(v)
}

/// The variant stored as `text` in result column `column`. A name this build does not know (a
/// newer writer, an edited file) is a conversion error naming the column and the known names,
/// never a guess at a variant.
pub(super) fn parse<T: Stored>(column: usize, text: &str) -> Result<T, rusqlite::Error> {
    crate::variant::parse(text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e)))
}

/// `ip` as stored text (its `Display` form) in `text`, emptied first. IPv4, nearly every
/// address, without the formatting machinery (a fifth of the address cost of a row).
pub(super) fn ip_text(ip: IpAddr, text: &mut String) {
    text.clear();
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(digits.format(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = write!(text, "{v6}");
        }
    }
}

/// A counter as an SQLite integer (saturating: byte counts never reach `i64::MAX` in practice).
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An SQLite integer read back as a counter (negative values, impossible unless the file was
/// edited, read as 0).
pub(super) fn count(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Unix milliseconds.
pub(super) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// Unix milliseconds back to a timestamp, as a rusqlite conversion error when out of range.
pub(super) fn ts(column: usize, v: i64) -> Result<Timestamp, rusqlite::Error> {
    Timestamp::from_millisecond(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Integer, Box::new(e)))
}

/// Unix seconds back to a timestamp.
pub(super) fn ts_secs(column: usize, v: i64) -> Result<Timestamp, rusqlite::Error> {
    Timestamp::from_second(v)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Integer, Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored address text is `Display`'s, for every IPv4 octet value in every position
    /// and for IPv6 (mapped, compressed, full).
    #[test]
    fn address_text_is_the_display_form() {
        let mut text = String::from("left over");
        for v in 0..=255u8 {
            for ip in [[v, 0, 0, 0], [1, v, 9, 10], [10, 99, v, 100], [255, 254, 7, v]] {
                let ip = IpAddr::from(ip);
                ip_text(ip, &mut text);
                assert_eq!(text, ip.to_string());
            }
        }
        for ip in ["::", "::1", "::ffff:192.0.2.1", "2001:db8::2", "2001:db8:1:2:3:4:5:6", "fe80::1:0:0:1"] {
            let ip: IpAddr = ip.parse().unwrap();
            ip_text(ip, &mut text);
            assert_eq!(text, ip.to_string());
        }
    }

    /// Every variant, with the name stored in journals written so far; each reads back.
    #[test]
    fn stored_names_are_the_serde_names_and_never_change() {
        fn check<T: Stored + PartialEq + std::fmt::Debug>(pairs: &[(T, &str)]) {
            for (v, stored) in pairs {
                assert_eq!(name(*v), *stored, "{v:?}");
                assert_eq!(parse::<T>(0, stored).ok(), Some(*v), "{stored} reads back");
            }
            crate::variant::assert_names(pairs);
        }
        check(&[(RecordKind::Update, "update"), (RecordKind::Close, "close"), (RecordKind::Shutdown, "shutdown")]);
        check(&[
            (Protocol::Tcp, "tcp"),
            (Protocol::Udp, "udp"),
            (Protocol::Icmp, "icmp"),
            (Protocol::Icmpv6, "icmpv6"),
            (Protocol::Sctp, "sctp"),
            (Protocol::UdpLite, "udplite"),
            (Protocol::Mptcp, "mptcp"),
            (Protocol::Raw, "raw"),
        ]);
        check(&[
            (Direction::Outbound, "outbound"),
            (Direction::Inbound, "inbound"),
            (Direction::Unconnected, "unconnected"),
            (Direction::Listen, "listen"),
            (Direction::Unknown, "unknown"),
        ]);
        check(&[
            (OwnerSource::Unknown, "unknown"),
            (OwnerSource::Procfs, "procfs"),
            (OwnerSource::Syscall, "syscall"),
            (OwnerSource::SockCreate, "sock_create"),
            (OwnerSource::FirstIo, "first_io"),
        ]);
        check(&[
            (PayloadSource::Syscall, "syscall"),
            (PayloadSource::IpLayer, "ip_layer"),
            (PayloadSource::TcpCounters, "tcp_counters"),
            (PayloadSource::WireMinusHeaders, "wire_minus_headers"),
        ]);
        check(&[(AppSource::Proc, "proc"), (AppSource::Kernel, "kernel")]);
        check(&[
            (Scope::Public, "public"),
            (Scope::Loopback, "loopback"),
            (Scope::Private, "private"),
            (Scope::LinkLocal, "link_local"),
            (Scope::Cgnat, "cgnat"),
            (Scope::Multicast, "multicast"),
            (Scope::Documentation, "documentation"),
            (Scope::Reserved, "reserved"),
        ]);
        check(&[(Consensus::Agree, "agree"), (Consensus::Disagree, "disagree"), (Consensus::Partial, "partial")]);
        check(&[
            (UidKind::App, "app"),
            (UidKind::SdkSandbox, "sdk_sandbox"),
            (UidKind::Isolated, "isolated"),
            (UidKind::System, "system"),
        ]);
        check(&[
            (NameSource::Sni, "sni"),
            (NameSource::QuicSni, "quic_sni"),
            (NameSource::Dns, "dns"),
            (NameSource::DnsHost, "dns_host"),
            (NameSource::Getaddrinfo, "getaddrinfo"),
            (NameSource::None, "none"),
        ]);
    }

    #[test]
    fn an_unknown_stored_name_is_a_conversion_error_not_a_variant() {
        let e = parse::<Consensus>(6, "unanimous").expect_err("unknown");
        assert!(matches!(&e, rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, _)), "{e:?}");
        assert!(e.to_string().contains("unknown variant `unanimous`"), "{e}");
    }
}
