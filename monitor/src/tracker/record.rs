//! What the tracker emits: one [`FlowRecord`] per closed flow, plus periodic updates of open
//! ones. The JSON form of this type is the `flow` line of `monitor run --json` (schema in
//! README.md); change it only by adding fields.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Why a record was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Periodic update of a flow that is still open.
    Update,
    /// The flow ended; totals are final.
    Close,
    /// The monitor stopped while the flow was open; totals are as far as seen.
    Shutdown,
}

/// Transport protocol. The IP protocol number is in [`FlowRecord::ip_protocol`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP (ping sockets and raw ICMP sockets).
    Icmp,
    /// ICMPv6 (ping sockets and raw ICMPv6 sockets).
    Icmpv6,
    /// SCTP.
    Sctp,
    /// UDP-Lite (`SOCK_DGRAM`, IP protocol 136): per peer with ports, as unconnected UDP; its
    /// payload is the datagram's data, the 8-byte UDP-Lite header left out.
    #[serde(rename = "udplite")]
    UdpLite,
    /// Multipath TCP: one flow per connection (the process's MPTCP socket), its wire bytes those
    /// of every TCP subflow the kernel carried it over (`ip_protocol` 6).
    Mptcp,
    /// Any other IP protocol: raw sockets; `ip_protocol` tells which (255 = `IPPROTO_RAW`).
    Raw,
}

/// Who opened the flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This host connected (TCP client, connected UDP).
    Outbound,
    /// Accepted from a local listener (TCP server side), or a peer that sent first to a socket
    /// counted per peer (a client of an unconnected UDP server socket).
    Inbound,
    /// One peer of a socket counted per peer (an unconnected UDP socket, QUIC/DNS style
    /// `sendto`/`recvfrom`; a ping, raw or SCTP socket) that this host sent to first.
    Unconnected,
    /// A TCP listening socket (its bytes are the handshakes it received).
    Listen,
    /// Not known (socket older than the monitor, or lost events).
    Unknown,
}

/// How the owner was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// Only the socket's uid is known.
    Unknown,
    /// Found in /proc (socket older than the monitor).
    Procfs,
    /// Recorded by the kernel in a `connect`/`sendmsg`/`recvmsg` of the owner (older socket).
    Syscall,
    /// Recorded by the kernel when the socket was created (exact), or, for an accepted
    /// connection, the listener's.
    SockCreate,
    /// An accepted connection served by another process than the listener's (socket activation,
    /// a worker accepting from its master's listener): recorded by the kernel at the
    /// connection's first read or write, in that process (exact). Ranked above `sock_create`:
    /// it replaces the listener's owner the connection's first events carried.
    FirstIo,
}

impl From<monitor_common::sock::OwnerSource> for OwnerSource {
    fn from(kernel: monitor_common::sock::OwnerSource) -> Self {
        use monitor_common::sock::OwnerSource as K;
        match kernel {
            K::Unknown => Self::Unknown,
            K::SockCreate => Self::SockCreate,
            K::Syscall => Self::Syscall,
            K::Procfs => Self::Procfs,
            K::FirstIo => Self::FirstIo,
        }
    }
}

/// The process a flow is charged to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id.
    pub tgid: u32,
    /// Thread id that created the socket.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Command name (`comm`) of the creating process, its main thread's (shared: the tracker keeps one copy per
    /// name, and a record's copy costs no allocation).
    pub comm: Arc<str>,
    /// cgroup v2 id of the creating task (1 = root, e.g. on hybrid hosts).
    pub cgroup_id: u64,
    /// How this was learnt.
    pub source: OwnerSource,
    /// The process's start as the kernel recorded it ([`monitor_common::sock::Owner::start_cs`]:
    /// hundredths of a second since boot, wrapped to 32 bits; 0 unknown). Tells the process
    /// that holds the pid now from one that held it before. Not in the record's JSON: the app's
    /// `start_time` says the same.
    #[serde(skip)]
    pub start_cs: u32,
    /// The program the process ran when the socket was made
    /// ([`monitor_common::sock::Owner::exec_mark`]: 24 bits of where its stack was placed at its
    /// exec; 0 unknown). Tells the program that made the socket from one the process exec'd since.
    /// Not in the record's JSON.
    #[serde(skip)]
    pub exec_mark: u32,
}

/// Where the payload figures come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PayloadSource {
    /// Bytes the process wrote and read (`sock_send_length`/`sock_recv_length`).
    #[default]
    Syscall,
    /// UDP payload of each datagram at the IP layer (unconnected UDP peers).
    IpLayer,
    /// The kernel's TCP counters (`bytes_acked`/`bytes_received` less SYN and FIN): TCP bytes
    /// that bypass the syscalls (splice, zero-copy receive, kTLS records), and kernels without
    /// the tracepoints (there only known at close).
    TcpCounters,
    /// IP length less IP and UDP headers (UDP on kernels without the tracepoints).
    WireMinusHeaders,
    /// `payload_source` only: the two directions were measured differently (see
    /// [`FlowRecord::payload_sources`]).
    Mixed,
}

/// Where each direction of the payload comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadSources {
    /// Source of `payload.tx_bytes`.
    pub tx: PayloadSource,
    /// Source of `payload.rx_bytes`.
    pub rx: PayloadSource,
}

impl PayloadSources {
    /// The same source both ways.
    #[must_use]
    pub fn both(source: PayloadSource) -> Self {
        Self { tx: source, rx: source }
    }

    /// The single value of `payload_source` for `payload`: the common source of the directions
    /// that moved bytes (both when neither did), `mixed` when they differ. A download read with
    /// splice that sent nothing is `tcp_counters`, not `mixed` (an adversarial pass: reports,
    /// which keep this one value, named no byte `tcp_counters`).
    #[must_use]
    pub fn overall(self, payload: Payload) -> PayloadSource {
        match (payload.tx_bytes, payload.rx_bytes) {
            (0, rx) if rx > 0 => self.rx,
            (tx, 0) if tx > 0 => self.tx,
            _ if self.tx == self.rx => self.tx,
            _ => PayloadSource::Mixed,
        }
    }
}

/// Application payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// Sent by this host.
    pub tx_bytes: u64,
    /// Received by this host.
    pub rx_bytes: u64,
}

/// IP-layer traffic (headers included, link layer excluded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wire {
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent (a GSO super-packet counts once).
    pub tx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
}

/// One flow, as of this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// Why this record was emitted.
    pub event: RecordKind,
    /// Socket cookie (unique per socket per boot). Peers of one unconnected UDP socket share it.
    pub cookie: u64,
    /// Process the flow is charged to.
    pub owner: Owner,
    /// Transport.
    pub protocol: Protocol,
    /// IP protocol number of the socket (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP, or the
    /// protocol of a raw socket). 0 in records written before the field existed.
    #[serde(default)]
    pub ip_protocol: u8,
    /// Who opened the flow.
    pub direction: Direction,
    /// Local address, when known.
    pub local: Option<SocketAddr>,
    /// Remote address, when known (IPv4-mapped IPv6 addresses shown as IPv4).
    pub remote: Option<SocketAddr>,
    /// Payload totals since the monitor first saw the flow.
    pub payload: Payload,
    /// How `payload` was measured (`mixed` when the directions differ).
    pub payload_source: PayloadSource,
    /// How each direction of `payload` was measured.
    #[serde(default)]
    pub payload_sources: PayloadSources,
    /// IP-layer totals.
    pub wire: Wire,
    /// Payload since the previous record of this flow.
    pub delta_payload: Payload,
    /// IP-layer traffic since the previous record of this flow.
    pub delta_wire: Wire,
    /// When the flow started (socket creation, first datagram to this peer, or discovery).
    pub first_seen: Timestamp,
    /// Latest kernel event of the flow.
    pub last_seen: Timestamp,
    /// When it ended (`close` records).
    pub closed: Option<Timestamp>,
    /// False when a part of the flow's history is missing (lost events, close never seen).
    pub complete: bool,
    /// The kernel's RTT estimates of a TCP flow (absent for other protocols, and before the
    /// kernel has a sample). Passive: read in callbacks that run anyway, no packet is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Rtt>,
    /// The socket's last record: a TCP socket the kernel has both released and closed, or a
    /// connected UDP socket released, so no event of it can follow and the tracker writes no
    /// further record of its cookie. The journal
    /// then leaves the record out of the rollups' probe index (`connections_cookie`): nothing
    /// will look for it. Not part of the record's output.
    #[serde(skip)]
    pub final_of_socket: bool,
    /// A peer's `close` that came with its socket's release (the tracker closes a socket's
    /// peers together when the socket is released), the last of them marked: the sink then knows
    /// every peer this run closed; or one past the caps, while the socket is open (`Split`: the
    /// journal indexes it, see [`Release::Split`]). Not part of the record's output.
    #[serde(skip)]
    pub release: Release,
    /// An earlier run of the daemon journaled this socket's flow: a socket older than this run,
    /// whose direction the kernel could not give, continued (the sink takes its direction from
    /// the journal). Its first record in this run is not a new flow. In the output when set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resumed: bool,
}

/// Whether a record is a peer's `close` at its socket's release, or past the caps while the
/// socket stays open ([`FlowRecord::release`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Release {
    /// Not a close at a release.
    #[default]
    No,
    /// One peer's close at its socket's release.
    Peer,
    /// The last peer's close at its socket's release.
    LastPeer,
    /// A peer's close at its slot's flush, the socket still open: past the tracker's caps of
    /// peer flows ([`crate::tracker::MAX_PEER_FLOWS_PER_SOCKET`]). The journal keeps such a
    /// close findable by its socket when it is not its flow's first record, so that a restart
    /// does not close the flow a second time with its socket.
    Split,
}

impl FlowRecord {
    /// Whether the record is of one peer of a socket counted per peer (an unconnected UDP or
    /// UDP-Lite socket, a ping, raw or SCTP socket): such a socket has a flow per peer, and its
    /// `close` records all come when it closes. Their direction is `unconnected`, or `inbound`
    /// when the peer sent first (TCP's `inbound` is an accepted connection, one flow per socket).
    #[must_use]
    pub fn of_one_peer(&self) -> bool {
        match self.direction {
            Direction::Unconnected => true,
            Direction::Inbound => !matches!(self.protocol, Protocol::Tcp | Protocol::Mptcp),
            Direction::Outbound | Direction::Listen | Direction::Unknown => false,
        }
    }

    /// Whether this is the first record of its flow: its totals equal its deltas (totals count
    /// from when the monitor first saw the flow). A record without any byte only counts when it
    /// is also the last. The journal's residency rows and the metrics count new flows by it.
    #[must_use]
    pub fn is_first(&self) -> bool {
        if self.resumed {
            return false;
        }
        let totals_are_deltas = self.payload == self.delta_payload && self.wire == self.delta_wire;
        let empty = self.payload == Payload::default() && self.wire == Wire::default();
        totals_are_deltas && (!empty || self.event != RecordKind::Update)
    }
}

/// `local` as a flow to `remote` can have it: of the remote's family (an IPv4-mapped address
/// reads as IPv4). An IPv6 socket's peer events carry the socket's local address at the time
/// of the event, which may be another peer's: the socket connected to an IPv4-mapped address
/// since it sent to a native IPv6 peer, or the reverse. A local address of the other family
/// never carried this flow, so its address is unknown (the unspecified address of the remote's
/// family); the port stays.
#[must_use]
pub fn local_beside(local: SocketAddr, remote: SocketAddr) -> SocketAddr {
    let ip = match (local.ip().to_canonical(), remote.ip().to_canonical()) {
        (ip @ IpAddr::V4(_), IpAddr::V4(_)) | (ip @ IpAddr::V6(_), IpAddr::V6(_)) => ip,
        (IpAddr::V6(_), IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (IpAddr::V4(_), IpAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, local.port())
}

/// Round-trip time of a TCP flow as the kernel estimates it (`struct tcp_sock`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rtt {
    /// Smallest of the kernel's windowed minimum RTT (`rtt_min`) seen for the flow, in µs: the
    /// best physical bound the flow gives.
    pub min_us: u32,
    /// The kernel's smoothed RTT (`srtt`) at the flow's latest record, in µs.
    pub smoothed_us: u32,
}

impl Rtt {
    /// Merges one kernel sample (`rtt_min`, `srtt`, either may be missing) into `rtt`.
    pub fn merge(rtt: &mut Option<Self>, min_us: Option<u32>, smoothed_us: Option<u32>) {
        let Some(sample_min) = min_us.or(smoothed_us) else {
            return;
        };
        let smoothed = smoothed_us.unwrap_or(sample_min);
        *rtt = Some(match *rtt {
            Some(old) => Self { min_us: old.min_us.min(sample_min), smoothed_us: smoothed },
            None => Self { min_us: sample_min, smoothed_us: smoothed },
        });
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    fn at(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    /// `payload_source` names the source of the bytes there are: a download read with splice that
    /// sent nothing is `tcp_counters`; bytes both ways from two sources are `mixed`.
    #[test]
    fn the_overall_source_is_that_of_the_directions_that_moved_bytes() {
        use super::{Payload, PayloadSource::*, PayloadSources};
        let sources = PayloadSources { tx: Syscall, rx: TcpCounters };
        let p = |tx_bytes, rx_bytes| Payload { tx_bytes, rx_bytes };
        assert_eq!(sources.overall(p(0, 8_388_608)), TcpCounters);
        assert_eq!(sources.overall(p(100, 0)), Syscall);
        assert_eq!(sources.overall(p(100, 8_388_608)), Mixed);
        assert_eq!(sources.overall(p(0, 0)), Mixed);
        assert_eq!(PayloadSources::both(IpLayer).overall(p(0, 0)), IpLayer);
    }

    #[test]
    fn a_local_side_of_the_other_family_is_unknown_but_keeps_its_port() {
        let beside = super::local_beside;
        assert_eq!(beside(at("[::ffff:10.0.0.9]:5000"), at("192.0.2.1:53")), at("10.0.0.9:5000"));
        assert_eq!(beside(at("10.0.0.9:5000"), at("[::ffff:192.0.2.1]:53")), at("10.0.0.9:5000"));
        assert_eq!(beside(at("[::]:5000"), at("192.0.2.1:53")), at("0.0.0.0:5000"));
        assert_eq!(beside(at("[2001:db8::9]:5000"), at("192.0.2.1:53")), at("0.0.0.0:5000"));
        // A native IPv6 peer beside the IPv4-mapped local of a later connect.
        assert_eq!(beside(at("10.0.0.9:5000"), at("[2001:db8::1]:53")), at("[::]:5000"));
        assert_eq!(beside(at("[::ffff:10.0.0.9]:5000"), at("[2001:db8::1]:53")), at("[::]:5000"));
        assert_eq!(beside(at("0.0.0.0:5000"), at("[2001:db8::1]:53")), at("[::]:5000"));
        assert_eq!(beside(at("[2001:db8::9]:5000"), at("[2001:db8::1]:53")), at("[2001:db8::9]:5000"));
    }
}
