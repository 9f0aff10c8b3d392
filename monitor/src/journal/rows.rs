//! What [`JournalReader`](super::JournalReader) returns.

use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use super::names::StoredScope;

/// Half-open time range `[since, until)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TimeRange {
    /// First instant included.
    pub since: Timestamp,
    /// First instant excluded.
    pub until: Timestamp,
}

/// Residency sums over a range for one (app, destination, provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResidencyRow {
    /// App name.
    pub app: String,
    /// `public`, `private`, `loopback`... or `none` (no remote address) / `unenriched`.
    pub scope: StoredScope,
    /// ISO country code, `None` when unknown.
    pub country: Option<String>,
    /// ASN, `None` when unknown.
    pub asn: Option<u32>,
    /// AS organisation, `None` when unknown.
    pub as_org: Option<String>,
    /// `databases.id` that gave the country.
    pub country_db: Option<i64>,
    /// `databases.id` that gave the ASN.
    pub asn_db: Option<i64>,
    /// How payload was measured.
    pub payload_source: String,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// IP-layer bytes sent.
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Packets sent.
    pub packets_tx: u64,
    /// Packets received.
    pub packets_rx: u64,
    /// Flows whose first record falls in the range.
    pub new_flows: u64,
    /// Flows that ended incomplete in the range.
    pub incomplete_flows: u64,
    /// Sum over intervals of the flows active in each interval.
    pub flow_intervals: u64,
    /// Start of the first interval with data.
    pub first_interval: Timestamp,
    /// End of the last interval with data.
    pub last_interval_end: Timestamp,
}

/// Traffic of one app to one remote endpoint over a range (from connection records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    /// App name.
    pub app: String,
    /// Remote address.
    pub ip: String,
    /// Remote port; `None` for inbound flows (the remote port is ephemeral).
    pub port: Option<u16>,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Scope (of the latest record).
    pub scope: Option<StoredScope>,
    /// Country (of the latest record).
    pub country: Option<String>,
    /// ASN (of the latest record).
    pub asn: Option<u32>,
    /// AS organisation (of the latest record).
    pub as_org: Option<String>,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// IP-layer bytes sent.
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Distinct sockets.
    pub flows: u64,
}

/// Statistics increments over a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatsTotals {
    /// Statistics rows in the range (0: completeness unknown).
    pub rows: u64,
    /// Events the kernel produced.
    pub events_submitted: u64,
    /// Events lost (ring buffer full).
    pub events_lost: u64,
    /// Events read by the daemon.
    pub events_received: u64,
    /// Events that could not be decoded.
    pub decode_errors: u64,
    /// Sockets left uncounted (no storage).
    pub storage_failures: u64,
    /// Unconnected-UDP packets whose headers could not be read.
    pub peer_parse_failures: u64,
    /// Packets not charged to any socket.
    pub unattributed_packets: u64,
    /// IP-layer bytes not charged to any socket.
    pub unattributed_bytes: u64,
    /// Flows that ended incomplete (tracker count).
    pub incomplete_flows: u64,
    /// Daemon runs with statistics in the range.
    pub runs: u64,
    /// Payload copies the kernel made for the names stage (lost ones included).
    pub copies_submitted: u64,
    /// Payload copies lost (ring buffer full).
    pub copies_lost: u64,
    /// Payloads the names stage could not parse (DNS, TLS, QUIC).
    pub names_malformed: u64,
    /// Names learned: server names from ClientHellos and DNS answers recorded.
    pub names_learned: u64,
}

/// Data the journal buffer dropped, overlapping a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LossTotals {
    /// Connection records dropped.
    pub records: u64,
    /// Residency buckets dropped.
    pub buckets: u64,
    /// Payload bytes missing from residency rows.
    pub payload_bytes: u64,
}

/// A geo database known to the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseRow {
    /// Row id (referenced by records).
    pub id: i64,
    /// `country` or `asn`.
    pub role: String,
    /// MMDB `database_type`.
    pub database_type: String,
    /// MMDB `build_epoch` (seconds).
    pub build_epoch: u64,
    /// File, when registered by the daemon.
    pub path: Option<PathBuf>,
    /// Named by the running (or last) daemon.
    pub in_use: bool,
}

/// The `daemon_state` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonState {
    /// Daemon pid (may be gone).
    pub pid: u32,
    /// When it started.
    pub started_at: Timestamp,
    /// `monitor` version.
    pub version: String,
    /// Config file.
    pub config_path: Option<PathBuf>,
    /// Last successful flush.
    pub last_flush: Option<Timestamp>,
    /// Successful flushes in this run.
    pub flushes: u64,
    /// Rows written in this run.
    pub rows_written: u64,
    /// Configured flush interval.
    pub flush_interval_secs: u64,
    /// Configured residency interval.
    pub residency_interval_secs: u64,
    /// Databases in use.
    pub databases: Vec<DatabaseRow>,
    /// Degradations of the run (snake_case names); `None` when written by an older daemon.
    pub degradations: Option<Vec<String>>,
}

/// Row counts per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    /// `connections`.
    pub connections: u64,
    /// `residency`.
    pub residency: u64,
    /// `stats`.
    pub stats: u64,
    /// `apps`: app identities (an app name with its executable, command line, user, unit,
    /// container), not distinct app names.
    pub apps: u64,
    /// `exports`.
    pub exports: u64,
}
