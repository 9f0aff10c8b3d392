//! Records sent by the kernel programs through the `EVENTS` ring buffer.
//!
//! Every record is one [`Event`] (fixed size, so the decoder needs no framing). Which fields are
//! meaningful depends on [`Event::kind`]; see [`EventKind`]. Counters are cumulative: userspace
//! takes the latest value, so a lost update costs freshness, not bytes.

use crate::sock::{ByteCounters, Owner};

/// What happened. Values are append-only: never reuse a retired number. 100 is a payload copy
/// (`crate::copy::COPY_KIND`, a record of its own layout, decoded apart).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `connect()` on a UDP socket (`cgroup/connect4|6`): remote address known.
    Connect = 1,
    /// TCP handshake done (`sock_ops` `ACTIVE|PASSIVE_ESTABLISHED_CB`): full 4-tuple known.
    /// `FLAG_PASSIVE` marks accepted (inbound) connections.
    Established = 2,
    /// TCP socket entered `TCP_CLOSE` (`sock_ops` `STATE_CB`): final wire counters.
    TcpClose = 3,
    /// The process released the socket (`cgroup/sock_release`): final payload counters.
    Release = 4,
    /// First packet of a socket the monitor had not seen (created before it started).
    Discovered = 5,
    /// Periodic update of a socket's counters, from the packet path.
    Update = 6,
    /// Periodic update of one unconnected-UDP peer slot.
    PeerUpdate = 7,
    /// A peer slot was reused for another peer: final counters of that slot generation.
    PeerEvicted = 8,
    /// The socket was released: final counters of a peer slot generation.
    PeerClosed = 9,
    /// A UDP socket's peer changed (`sock::COUNTER_PEERS`): the counters of its connected flow
    /// until then, with that flow's remote address (zero when the socket was disconnected: the
    /// kernel has forgotten it). The kernel's counters of the socket start again from zero.
    PeerChanged = 10,
    /// A TCP socket connects again after an earlier connection or attempt (`cgroup/connect4|6`,
    /// before the kernel starts the new one): the counters of the earlier flow until then, with
    /// its remote address (port 0 where the kernel has forgotten the address) and local address.
    /// The kernel's counters of the socket start again from zero for the next connection.
    Reconnect = 11,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;

    fn try_from(raw: u32) -> Result<Self, u32> {
        Ok(match raw {
            1 => Self::Connect,
            2 => Self::Established,
            3 => Self::TcpClose,
            4 => Self::Release,
            5 => Self::Discovered,
            6 => Self::Update,
            7 => Self::PeerUpdate,
            8 => Self::PeerEvicted,
            9 => Self::PeerClosed,
            10 => Self::PeerChanged,
            11 => Self::Reconnect,
            other => return Err(other),
        })
    }
}

/// [`Event::flags`]: the connection was accepted from a listener (inbound).
pub const FLAG_PASSIVE: u32 = 1;
/// [`Event::flags`]: no owner storage existed; `owner` is empty or partial.
pub const FLAG_NO_OWNER: u32 = 2;
/// [`Event::flags`]: read by the `COUNTERS` iterator (a snapshot asked for by the daemon), not sent
/// through the ring buffer. Only counters and the local address are filled.
pub const FLAG_SNAPSHOT: u32 = 4;

/// [`Event::flags`]: `tcp` holds the socket's TCP counters (`Established`, TCP `Update`).
pub const FLAG_TCP_COUNTERS: u32 = 8;

/// [`Event::flags`] of a `TcpClose`: the process had already released the socket, and no
/// `Release` event was sent for it (one event per TCP socket fewer): this `TcpClose` ends the
/// flow. Without the flag, a `Release` follows (the socket reached `TCP_CLOSE` first).
/// On a socket's other events (`Update`, `Release`, snapshots): the process has released it
/// (`sock::COUNTER_RELEASED`, set for TCP and Multipath TCP sockets); packets of its close may
/// still follow.
pub const FLAG_RELEASED: u32 = 16;

/// [`Event::flags`]: the process connected the (UDP or TCP) socket, an outbound flow. Set on the
/// socket's `Update` and `Release` events; no `Connect` event is sent for a socket the monitor
/// saw being created (one event per connected UDP socket fewer). For TCP it is what makes a
/// connection that never established (refused, unanswered) an outbound flow.
pub const FLAG_CONNECTED: u32 = 32;

/// [`Event::flags`]: the (UDP) socket is counted per peer (`sock::COUNTER_PEERS`, its peer
/// changed): its socket-level counters hold bytes that its peer flows report, so userspace
/// reports no socket-level record while they do. Set on every socket-level event the kernel
/// or a snapshot sends from then on, so a lost `PeerChanged` event does not hide it.
pub const FLAG_PEERS: u32 = 64;

/// [`Event::flags`] of a peer event (`PeerUpdate`, `PeerEvicted`, `PeerClosed`): the datagram
/// that claimed the peer's slot came in: the peer sent first, as a client of a server socket
/// does ([`crate::sock::SLOT_FIRST_IN`]).
pub const FLAG_PEER_FIRST_IN: u32 = 128;

/// [`Event::flags`] of a snapshot read by descriptor at shutdown (with [`FLAG_SNAPSHOT`]) of a
/// socket no event had announced (e.g. a connected UDP socket younger than an update interval):
/// unlike other snapshots it carries the owner, the protocol and both addresses, and starts the
/// socket's flow.
pub const FLAG_UNANNOUNCED: u32 = 256;

/// [`Event::flags`]: the event is about a `SOCK_RAW` socket or one of its peers
/// ([`crate::sock::COUNTER_RAW`]): userspace names its flows `raw` whatever the IP protocol
/// (raw ICMP sockets excepted: they are `icmp`/`icmpv6`, as ping sockets).
pub const FLAG_RAW: u32 = 512;

/// [`Event::flags`] of a `Reconnect`: the earlier connection's `TcpClose` was sent. Without a
/// flow of it, userspace has ended that flow already (without release events, at the close
/// grace), and the event is dropped rather than write the connection twice.
pub const FLAG_CLOSE_SENT: u32 = 1024;

/// [`Event::flags`] of a `TcpClose` (without [`FLAG_RELEASED`]): the socket has no `struct
/// socket` at its close, so no process holds it. It was never accepted (reset in the listener's
/// queue, or forgotten when the listener closed) or its release went unseen: no process read or
/// wrote it, and none will release it unless it is still accepted from the queue. Userspace ends
/// its flow after the close grace, with the payload the processes' own calls moved.
pub const FLAG_NO_FILE: u32 = 2048;

/// Addresses and ports of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tuple {
    /// Local address, network byte order; IPv4 in word 0.
    pub local_addr: [u32; 4],
    /// Remote address, network byte order; IPv4 in word 0.
    pub remote_addr: [u32; 4],
    /// Local port, host byte order (0 when not yet bound).
    pub local_port: u16,
    /// Remote port, host byte order (0 when unconnected).
    pub remote_port: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// IP protocol of the socket (`IPPROTO_TCP`, `IPPROTO_UDP`, `IPPROTO_ICMP`, or the protocol of a
    /// raw socket).
    pub protocol: u16,
}
const _: () = assert!(core::mem::size_of::<Tuple>() == 40);

/// An address as [`Tuple`] carries it: IPv4 in word 0, IPv6 in all four, network byte order.
#[must_use]
pub fn addr_words(ip: core::net::IpAddr) -> [u32; 4] {
    match ip {
        core::net::IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        core::net::IpAddr::V6(v6) => {
            let o = v6.octets();
            let w = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// The kernel's own TCP byte counters and RTT estimates: final at `TcpClose` (from `struct bpf_sock_ops`), the
/// baseline at `Established`, a running value in TCP `Update` events (`bpf_tcp_sock`); valid in
/// the last two only with [`FLAG_TCP_COUNTERS`]. They count every byte of the stream, whichever
/// path moved it (splice, zero-copy receive, kTLS records), unlike the syscall tracepoints.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `bytes_acked` (RFC 4898 `tcpEStatsAppHCThruOctetsAcked`; includes SYN and an acked FIN).
    pub bytes_acked: u64,
    /// `bytes_received` (RFC 4898 `tcpEStatsAppHCThruOctetsReceived`; includes a received FIN).
    pub bytes_received: u64,
    /// State before `TCP_CLOSE` (`TcpClose`), or the current state (kernel `TCP_*` numbering).
    pub old_state: u32,
    /// `TCP_*` bits below.
    pub flags: u32,
    /// The kernel's smoothed RTT estimate (`srtt_us`, stored by the kernel as 8 × µs; this is
    /// that raw value, see [`TcpCounters::smoothed_rtt_us`]). 0: no sample yet.
    pub srtt_us_x8: u32,
    /// The kernel's windowed minimum RTT in µs (`rtt_min`, `tcp_min_rtt_wlen`, 5 minutes by
    /// default). `u32::MAX` (the kernel's reset value) or 0: no sample yet.
    pub rtt_min_us: u32,
}

impl TcpCounters {
    /// Smoothed RTT in µs, when the kernel has a sample.
    #[must_use]
    pub fn smoothed_rtt_us(&self) -> Option<u32> {
        (self.srtt_us_x8 != 0).then_some(self.srtt_us_x8 >> 3)
    }

    /// Minimum RTT in µs, when the kernel has a sample.
    #[must_use]
    pub fn min_rtt_us(&self) -> Option<u32> {
        (self.rtt_min_us != 0 && self.rtt_min_us != u32::MAX).then_some(self.rtt_min_us)
    }
}

/// Kernel TCP states (`include/net/tcp_states.h`), the numbering of [`TcpCounters::old_state`]
/// and of `TCP_INFO`'s `tcpi_state`: those the payload arithmetic depends on.
pub mod tcp_state {
    /// `TCP_ESTABLISHED`.
    pub const ESTABLISHED: u32 = 1;
    /// `TCP_SYN_RECV`.
    pub const SYN_RECV: u32 = 3;
    /// `TCP_FIN_WAIT1`.
    pub const FIN_WAIT1: u32 = 4;
    /// `TCP_FIN_WAIT2`.
    pub const FIN_WAIT2: u32 = 5;
    /// `TCP_TIME_WAIT`.
    pub const TIME_WAIT: u32 = 6;
    /// `TCP_CLOSE`.
    pub const CLOSE: u32 = 7;
    /// `TCP_CLOSE_WAIT`.
    pub const CLOSE_WAIT: u32 = 8;
    /// `TCP_LAST_ACK`.
    pub const LAST_ACK: u32 = 9;
    /// `TCP_CLOSING`.
    pub const CLOSING: u32 = 11;
}

/// [`TcpCounters::flags`]: the socket received the peer's FIN (counted in `bytes_received`).
pub const TCP_FIN_RECEIVED: u32 = 1;
/// [`TcpCounters::flags`]: everything sent was acknowledged (`snd_una == snd_nxt`): a FIN that
/// was sent is counted in `bytes_acked`.
pub const TCP_ALL_ACKED: u32 = 2;
/// [`TcpCounters::flags`] of a `TcpClose` after the process released the socket:
/// `bytes_received` leaves out what the process never consumed (`rcv_nxt − copied_seq`, the FIN
/// aside: bytes a close with unread data discarded, by any read path), so it is what the process
/// took from the stream, by recvmsg, splice or zero-copy receive alike.
pub const TCP_CONSUMED: u32 = 4;
/// [`TcpCounters::flags`] of a `Release`: `bytes_acked` is the stream's write position
/// ([`write_position`]): what was acknowledged and what the process wrote that still waits in the
/// send queue, which the kernel sends after the release, our FIN left out already.
pub const TCP_WRITE_POSITION: u32 = 8;
const _: () = assert!(core::mem::size_of::<TcpCounters>() == 32);

/// Where a TCP stream's writer is, in the measure of `bytes_acked` (the active side's SYN
/// counted, as there): `bytes_acked` plus `queued` (`write_seq − snd_una`: written, not yet
/// acknowledged; a reset leaves both as they were, so it still counts what the process wrote
/// before the kernel discarded it), less our FIN where it took a sequence number: in a state
/// past it, and in `CLOSE` where the peer's FIN came too (`peer_fin`: an orderly end, both FINs
/// exchanged; a reset is taken as coming before ours). `None` in a state with no stream
/// (`SYN_SENT`, `SYN_RECV`, `LISTEN`).
#[must_use]
pub const fn write_position(bytes_acked: u64, queued: u32, state: u32, peer_fin: bool) -> Option<u64> {
    use tcp_state::{CLOSE, CLOSE_WAIT, CLOSING, ESTABLISHED, FIN_WAIT1, FIN_WAIT2, LAST_ACK, TIME_WAIT};
    let fin = match state {
        ESTABLISHED | CLOSE_WAIT => 0,
        FIN_WAIT1 | FIN_WAIT2 | CLOSING | LAST_ACK | TIME_WAIT => 1,
        CLOSE if peer_fin => 1,
        CLOSE => 0,
        _ => return None,
    };
    Some(bytes_acked.saturating_add(queued as u64).saturating_sub(fin))
}

/// One ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// [`EventKind`] as `u32`. The decoder depends on this being at offset 0.
    pub kind: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` when the event was produced.
    pub ts_ns: u64,
    /// Socket cookie (`bpf_get_socket_cookie`), unique per socket for the boot.
    pub cookie: u64,
    /// Peer slot generation (`Peer*` kinds), else 0.
    pub generation: u64,
    /// When the flow started: slot claim (`Peer*`), else the owner's `created_ns` or discovery.
    pub first_ns: u64,
    /// Owner of the socket (may be empty, see `FLAG_NO_OWNER`).
    pub owner: Owner,
    /// Addresses and ports. For `Peer*` kinds `remote_*` is the peer.
    pub tuple: Tuple,
    /// Cumulative counters of the socket (or of the peer slot generation).
    pub bytes: ByteCounters,
    /// TCP counters (`TcpClose`; `Established` and `Update` with [`FLAG_TCP_COUNTERS`]).
    pub tcp: TcpCounters,
}
const _: () = assert!(core::mem::size_of::<Event>() == 40 + 56 + 40 + 48 + 32);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (size asserted above).
unsafe impl aya::Pod for Event {}
