//! Counter types shared by the pipeline stages (probe, tracker, daemon) and the journal, which
//! stores them. A shared leaf: besides the counter types of [`crate::names`] (another leaf) it
//! imports no module of the crate, so the journal does not depend on the daemon or the probe for
//! them. Used from here only (no re-exports elsewhere), so the compiler keeps it a leaf.

use serde::Serialize;

/// Counters that show what the monitor could not see or keep. All are cumulative since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KernelStats {
    /// Events the kernel produced.
    pub events_submitted: u64,
    /// Events lost because the ring buffer was full.
    pub events_lost: u64,
    /// Sockets left uncounted because their storage could not be allocated.
    pub storage_failures: u64,
    /// Unconnected-UDP peer slots reused (flushed first; not a loss).
    pub peer_evictions: u64,
    /// Unconnected-UDP packets whose headers could not be read (counted on the socket only).
    pub peer_parse_failures: u64,
    /// Packets on a watched cgroup with no full socket (handshake and time-wait replies).
    pub unattributed_packets: u64,
    /// IP-layer bytes of those packets.
    pub unattributed_bytes: u64,
    /// Payload copies and `getaddrinfo` results (names stage) the kernel produced, lost ones
    /// included.
    pub copies_submitted: u64,
    /// Payload copies and `getaddrinfo` results lost because the ring buffer was full.
    pub copies_lost: u64,
    /// Sockets other than TCP released without counters: created before the monitor and silent
    /// since, or (none expected) sockets whose storage the kernel did not give back at their
    /// release (log and JSON statistics only).
    pub released_uncounted: u64,
    /// Sockets `cgroup/sock_create` gave counters (0 with the fallback hooks; log and JSON
    /// statistics only).
    pub sockets_created: u64,
    /// Sockets `cgroup/sock_release` found counters in: with no socket of the workload open any
    /// more, at least `sockets_created` (more by the older sockets that got counters); fewer
    /// would be releases the kernel did not report (log and JSON statistics only).
    pub sockets_released: u64,
}

/// Counts of the tracker itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrackerStats {
    /// Flows currently open.
    pub open_flows: u64,
    /// Records emitted with `event = close`.
    pub closed_flows: u64,
    /// Sockets that ended without a single byte (e.g. UDP route probes); no record emitted.
    pub silent_sockets: u64,
    /// Flows that ended without their final kernel event, and open flows whose `shutdown` record
    /// is incomplete (their counters could not be read at the end).
    pub incomplete_flows: u64,
    /// Peer flows of unconnected UDP sockets closed when their kernel slot was flushed, because
    /// a peer-flow cap was reached (`tracker::MAX_PEER_FLOWS_PER_SOCKET`, `tracker::MAX_PEER_FLOWS`):
    /// such a peer can have several records.
    pub split_peer_flows: u64,
    /// Flows ended because their socket was found in no process and their end never came (its
    /// release lost with a full ring buffer or not run by the kernel, or no release hook): their
    /// `close` records are incomplete (counted in `incomplete_flows` too).
    pub vanished_flows: u64,
}

/// Completeness counters: what the kernel produced, what arrived, what was lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Kernel-side counters.
    pub kernel: KernelStats,
    /// Events read from the ring buffer.
    pub events_received: u64,
    /// Events that could not be decoded.
    pub decode_errors: u64,
    /// Tracker counters.
    pub tracker: TrackerStats,
    /// Names stage counters (filled by the sink, which runs the stage).
    pub names: NamingStats,
    /// True for the last statistics of a run.
    pub last: bool,
}

/// Counters of the names stage (in `stats` lines and `monitor status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct NamingStats {
    /// Payload copies handled (`getaddrinfo` results are counted apart, in `getaddrinfo`).
    pub copies: u64,
    /// Copies cut at the kernel's copy bound (`COPY_MAX`).
    pub truncated_copies: u64,
    /// DNS responses parsed.
    pub dns_responses: u64,
    /// Server names read from TLS ClientHellos.
    pub sni: u64,
    /// Server names read from QUIC Initials.
    pub quic_sni: u64,
    /// `getaddrinfo` results recorded (names resolved without DNS packets, `names.getaddrinfo`).
    pub getaddrinfo: u64,
    /// ClientHellos that carried an encrypted inner hello (ECH): the name is the outer one.
    pub ech: u64,
    /// Flows forgotten before their record closed (more than `naming::MAX_NAMED_FLOWS` at once).
    pub flow_evictions: u64,
    /// Records that got a name.
    pub named_records: u64,
    /// Records without a name.
    pub unnamed_records: u64,
    /// Malformed payloads, per kind (`crate::names::MalformedKind::ALL` order).
    pub malformed: crate::names::MalformedCounts,
    /// Malformed payloads in total.
    pub malformed_total: u64,
    /// The per-app table's counters.
    pub table: crate::names::table::NameTableStats,
}
