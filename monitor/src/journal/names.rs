//! Text stored for enum values and integer conversions. The strings equal the serde
//! (`snake_case`) names of the types, so JSON output and the journal agree; they are part of the
//! schema: never rename one.

use jiff::Timestamp;

use crate::{
    enrich::Scope,
    identity::AppSource,
    tracker::record::{Direction, OwnerSource, PayloadSource, Protocol, RecordKind},
};

/// `scope` of a record without a remote address.
pub(super) const SCOPE_NONE: &str = "none";
/// `scope` of a record with a remote address but no [`Destination`](crate::enrich::Destination).
pub(super) const SCOPE_UNENRICHED: &str = "unenriched";

pub(super) fn record_kind(v: RecordKind) -> &'static str {
    match v {
        RecordKind::Update => "update",
        RecordKind::Close => "close",
        RecordKind::Shutdown => "shutdown",
    }
}

pub(super) fn protocol(v: Protocol) -> &'static str {
    match v {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "icmpv6",
        Protocol::Sctp => "sctp",
        Protocol::Raw => "raw",
    }
}

pub(super) fn direction(v: Direction) -> &'static str {
    match v {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
        Direction::Unconnected => "unconnected",
        Direction::Listen => "listen",
        Direction::Unknown => "unknown",
    }
}

pub(super) fn owner_source(v: OwnerSource) -> &'static str {
    match v {
        OwnerSource::Unknown => "unknown",
        OwnerSource::Procfs => "procfs",
        OwnerSource::Syscall => "syscall",
        OwnerSource::SockCreate => "sock_create",
    }
}

pub(super) fn payload_source(v: PayloadSource) -> &'static str {
    match v {
        PayloadSource::Syscall => "syscall",
        PayloadSource::IpLayer => "ip_layer",
        PayloadSource::TcpCounters => "tcp_counters",
        PayloadSource::WireMinusHeaders => "wire_minus_headers",
    }
}

pub(super) fn app_source(v: AppSource) -> &'static str {
    match v {
        AppSource::Proc => "proc",
        AppSource::Kernel => "kernel",
    }
}

/// Name of a scope as stored (`snake_case` serde name).
#[must_use]
pub(crate) fn scope(v: Scope) -> &'static str {
    match v {
        Scope::Public => "public",
        Scope::Loopback => "loopback",
        Scope::Private => "private",
        Scope::LinkLocal => "link_local",
        Scope::Cgnat => "cgnat",
        Scope::Multicast => "multicast",
        Scope::Documentation => "documentation",
        Scope::Reserved => "reserved",
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
