//! Text stored for enum values and integer conversions. The strings are the serde (`snake_case`)
//! names of the types, taken from serde itself ([`crate::variant`]), so JSON output and the
//! journal cannot disagree; they are part of the schema: never rename one (a test pins them).

use std::net::IpAddr;

use jiff::Timestamp;
use rusqlite::{
    ToSql,
    types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    enrich::{Consensus, Role, Scope},
    identity::{AppSource, android::UidKind},
    names::NameSource,
    tracker::record::{Direction, OwnerSource, PayloadSource, Protocol, RecordKind},
};

/// `scope` of a record without a remote address.
pub(super) const SCOPE_NONE: &str = "none";
/// `scope` of a record with a remote address but no [`Destination`](crate::enrich::Destination).
pub const SCOPE_UNENRICHED: &str = "unenriched";

/// A `scope` column read back: a [`Scope`], or one of the two values the journal stores beside
/// the scopes. Serialised, compared in messages and written as its stored text ([`Self::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoredScope {
    /// [`SCOPE_NONE`]: a record without a remote address.
    None,
    /// [`SCOPE_UNENRICHED`]: a remote address no lookup was made for.
    Unenriched,
    /// The scope of the remote address.
    Known(Scope),
}

impl StoredScope {
    /// The stored text (a [`Scope`]'s serde name, or `none` / `unenriched`).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::None => SCOPE_NONE,
            Self::Unenriched => SCOPE_UNENRICHED,
            Self::Known(scope) => name(scope),
        }
    }

    /// The scope of the address, when it was classified.
    #[must_use]
    pub fn scope(self) -> Option<Scope> {
        match self {
            Self::Known(scope) => Some(scope),
            Self::None | Self::Unenriched => None,
        }
    }

    /// Whether the address is [`Scope::Public`].
    #[must_use]
    pub fn is_public(self) -> bool {
        self == Self::Known(Scope::Public)
    }

    /// Whether the address is public or was not looked up (`unenriched`: judged as public).
    #[must_use]
    pub fn public_or_unenriched(self) -> bool {
        matches!(self, Self::Unenriched | Self::Known(Scope::Public))
    }
}

impl From<Scope> for StoredScope {
    fn from(scope: Scope) -> Self {
        Self::Known(scope)
    }
}

/// A text that is not a stored scope (a newer writer, an edited file).
#[derive(Debug, thiserror::Error)]
#[error("unknown scope `{text}`, expected `{SCOPE_NONE}`, `{SCOPE_UNENRICHED}` or a scope")]
pub struct UnknownScope {
    text: String,
    #[source]
    source: serde::de::value::Error,
}

impl std::str::FromStr for StoredScope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            SCOPE_NONE => Ok(Self::None),
            SCOPE_UNENRICHED => Ok(Self::Unenriched),
            _ => crate::variant::parse(text)
                .map(Self::Known)
                .map_err(|source| UnknownScope { text: text.to_owned(), source }),
        }
    }
}

impl Serialize for StoredScope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl FromSql for StoredScope {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_str()?.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

impl ToSql for StoredScope {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.name().as_bytes())))
    }
}

/// Defines [`sql!`] from one list: each variant the journal's queries compare a column with, and
/// its stored name as an SQL string literal (checked against [`name`] by a test).
macro_rules! sql_names {
    ($($ty:ident :: $variant:ident => $literal:literal,)*) => {
        /// The stored name of a variant as an SQL string literal, for `concat!`:
        /// `concat!("... c.direction = ", sql!(Direction::Inbound), " ...")`. The queries spell
        /// no name themselves (only migrations in `schema.rs` keep theirs: frozen history).
        macro_rules! sql {
            $(($ty::$variant) => { $literal };)*
        }
        pub(super) use sql;

        /// Every literal of [`sql!`] with the stored name of its variant.
        #[cfg(test)]
        pub(super) fn sql_names() -> Vec<(&'static str, &'static str)> {
            vec![$(($literal, tests::stored_text($ty::$variant))),*]
        }
    };
}

sql_names! {
    Direction::Inbound => "'inbound'",
    Direction::Outbound => "'outbound'",
    Direction::Listen => "'listen'",
    RecordKind::Update => "'update'",
    RecordKind::Close => "'close'",
    Scope::Public => "'public'",
    Consensus::Disagree => "'disagree'",
    StoredScope::None => "'none'",
    StoredScope::Unenriched => "'unenriched'",
}

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
impl Stored for Role {}

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

/// The variant stored as text in column `column` of `row` (read without a copy), `None` for
/// NULL: a conversion error as in [`parse`] for a name this build does not know.
pub(super) fn get_opt<T: Stored>(row: &rusqlite::Row<'_>, column: usize) -> Result<Option<T>, rusqlite::Error> {
    match row.get_ref(column)?.as_str_or_null().map_err(|e| from_sql(column, e))? {
        Some(text) => parse(column, text).map(Some),
        None => Ok(None),
    }
}

fn from_sql(column: usize, e: FromSqlError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
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

    /// The stored text of a variant [`sql!`] spells.
    pub(super) trait StoredText {
        fn text(self) -> &'static str;
    }

    impl<T: Stored> StoredText for T {
        fn text(self) -> &'static str {
            name(self)
        }
    }

    impl StoredText for StoredScope {
        fn text(self) -> &'static str {
            self.name()
        }
    }

    pub(super) fn stored_text(v: impl StoredText) -> &'static str {
        v.text()
    }

    #[test]
    fn sql_literals_are_the_stored_names_of_their_variants() {
        let names = sql_names();
        assert!(!names.is_empty());
        for (literal, name) in names {
            assert_eq!(literal, format!("'{name}'"), "sql! spells {literal}; the stored name is {name:?}");
        }
        assert_eq!(concat!("x = ", sql!(Direction::Inbound)), "x = 'inbound'");
    }

    #[test]
    fn stored_scopes_read_back_and_unknown_text_is_an_error() {
        for scope in [StoredScope::None, StoredScope::Unenriched, StoredScope::Known(Scope::Public)] {
            assert_eq!(scope.name().parse::<StoredScope>().ok(), Some(scope));
            assert_eq!(serde_json::to_value(scope).expect("json"), scope.name());
        }
        assert_eq!("link_local".parse::<StoredScope>().ok(), Some(StoredScope::Known(Scope::LinkLocal)));
        let e = "galactic".parse::<StoredScope>().expect_err("unknown");
        assert!(e.to_string().starts_with("unknown scope `galactic`, expected `none`, `unenriched` or a scope"), "{e}");
        let conn = rusqlite::Connection::open_in_memory().expect("sqlite");
        let read = |text: &str| conn.query_row("SELECT ?1", [text], |row| row.get::<_, StoredScope>(0));
        assert_eq!(read("unenriched").ok(), Some(StoredScope::Unenriched));
        let e = read("galactic").expect_err("unknown");
        assert!(matches!(e, rusqlite::Error::FromSqlConversionFailure(0, _, _)), "{e:?}");
    }

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
        check(&[(Role::Country, "country"), (Role::Asn, "asn")]);
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
