//! State of one flow and how kernel events merge into it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use monitor_common::{
    AF_INET6,
    event::{Event, EventKind, FLAG_NO_OWNER, FLAG_PASSIVE, TcpCounters, Tuple},
    sock::{ByteCounters, OwnerSource as KernelSource},
};

use super::record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, Wire};

/// A flow: one socket, or one peer of an unconnected UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Socket cookie.
    pub cookie: u64,
    /// The peer, for unconnected UDP.
    pub peer: Option<SocketAddr>,
}

/// The owner as kept per flow: `comm` inline (no allocation per flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FlowOwner {
    tgid: u32,
    pid: u32,
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    comm: [u8; 16],
    pub(super) source: OwnerSource,
}

impl FlowOwner {
    pub(super) fn of(o: &Owner) -> Self {
        let mut comm = [0u8; 16];
        let bytes = o.comm.as_bytes();
        let n = bytes.len().min(15);
        comm[..n].copy_from_slice(&bytes[..n]);
        Self { tgid: o.tgid, pid: o.pid, uid: o.uid, gid: o.gid, cgroup_id: o.cgroup_id, comm, source: o.source }
    }

    pub(super) fn to_owner(self) -> Owner {
        Owner {
            tgid: self.tgid,
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
            comm: comm(&self.comm),
            cgroup_id: self.cgroup_id,
            source: self.source,
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) owner: FlowOwner,
    pub(super) protocol: Protocol,
    pub(super) ip_protocol: u8,
    pub(super) direction: Direction,
    pub(super) local: Option<SocketAddr>,
    pub(super) remote: Option<SocketAddr>,
    /// Generation of `bytes` (0 for sockets).
    pub(super) generation: u64,
    /// Cumulative counters of the socket, or of the flow's first peer-slot generation.
    pub(super) bytes: ByteCounters,
    /// Later peer-slot generations (slot reused for this peer); empty, without allocation, for
    /// sockets.
    pub(super) more: Vec<(u64, ByteCounters)>,
    pub(super) tcp: Option<TcpCounters>,
    pub(super) v6: bool,
    pub(super) established: bool,
    pub(super) released: bool,
    pub(super) tcp_closed: bool,
    pub(super) first_ns: u64,
    pub(super) last_ns: u64,
    /// When the flow was released and still waits for TCP_CLOSE.
    pub(super) released_ns: u64,
    /// Totals at the previous record.
    pub(super) reported: (Payload, Wire),
    pub(super) last_record_ns: u64,
}

/// Address from the kernel's network-order words; IPv4-mapped IPv6 becomes IPv4.
pub(crate) fn ip_of(family: u16, words: [u32; 4]) -> IpAddr {
    let bytes = |w: u32| w.to_ne_bytes();
    if family == AF_INET6 {
        let mut b = [0u8; 16];
        for (chunk, w) in b.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&bytes(w));
        }
        Ipv6Addr::from(b).to_canonical()
    } else {
        IpAddr::V4(Ipv4Addr::from(bytes(words[0])))
    }
}

fn endpoint(family: u16, words: [u32; 4], port: u16) -> Option<SocketAddr> {
    let ip = ip_of(family, words);
    (!ip.is_unspecified() || port != 0).then_some(SocketAddr::new(ip, port))
}

fn comm(raw: &[u8; 16]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into_owned()
}

/// Owner as recorded by the kernel; `None` when the event carried none.
pub(super) fn kernel_owner(ev: &Event) -> Option<Owner> {
    if ev.flags & FLAG_NO_OWNER != 0 {
        return None;
    }
    let o = &ev.owner;
    let source = match KernelSource::from_raw(o.source) {
        KernelSource::SockCreate => OwnerSource::SockCreate,
        KernelSource::Syscall => OwnerSource::Syscall,
        KernelSource::Unknown => OwnerSource::Unknown,
    };
    Some(Owner {
        tgid: o.tgid,
        pid: o.pid,
        uid: o.uid,
        gid: o.gid,
        comm: comm(&o.comm),
        cgroup_id: o.cgroup_id,
        source,
    })
}

fn max_counters(a: &mut ByteCounters, b: &ByteCounters) {
    a.wire_tx_bytes = a.wire_tx_bytes.max(b.wire_tx_bytes);
    a.wire_tx_packets = a.wire_tx_packets.max(b.wire_tx_packets);
    a.wire_rx_bytes = a.wire_rx_bytes.max(b.wire_rx_bytes);
    a.wire_rx_packets = a.wire_rx_packets.max(b.wire_rx_packets);
    a.app_tx_bytes = a.app_tx_bytes.max(b.app_tx_bytes);
    a.app_rx_bytes = a.app_rx_bytes.max(b.app_rx_bytes);
}

/// Key of the flow an event belongs to.
pub(super) fn key_of(kind: EventKind, ev: &Event) -> FlowKey {
    let peer = matches!(kind, EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed)
        .then(|| {
            SocketAddr::new(ip_of(ev.tuple.family, ev.tuple.remote_addr), ev.tuple.remote_port)
        });
    FlowKey { cookie: ev.cookie, peer }
}

impl Flow {
    pub(super) fn new(kind: EventKind, ev: &Event) -> Self {
        let protocol = super::protocols::protocol_of(ev.tuple.protocol);
        let owner = FlowOwner::of(&kernel_owner(ev).unwrap_or(Owner {
            tgid: 0,
            pid: 0,
            uid: ev.owner.uid,
            gid: 0,
            comm: String::new(),
            cgroup_id: 0,
            source: OwnerSource::Unknown,
        }));
        let first_ns = if ev.first_ns == 0 { ev.ts_ns } else { ev.first_ns };
        let mut flow = Self {
            owner,
            protocol,
            ip_protocol: u8::try_from(ev.tuple.protocol).unwrap_or(u8::MAX),
            direction: Direction::Unknown,
            local: None,
            remote: None,
            generation: ev.generation,
            bytes: ByteCounters::default(),
            more: Vec::new(),
            tcp: None,
            v6: ev.tuple.family == AF_INET6,
            established: false,
            released: false,
            tcp_closed: false,
            first_ns,
            last_ns: ev.ts_ns,
            released_ns: 0,
            reported: (Payload::default(), Wire::default()),
            last_record_ns: ev.ts_ns,
        };
        flow.absorb(kind, ev);
        flow
    }

    /// Merges one event. Counters are cumulative, so the larger value wins.
    pub(super) fn absorb(&mut self, kind: EventKind, ev: &Event) {
        if let Some(owner) = kernel_owner(ev)
            && owner.source > self.owner.source
        {
            self.owner = FlowOwner::of(&owner);
        }
        self.merge_tuple(kind, &ev.tuple);
        if ev.generation == self.generation {
            max_counters(&mut self.bytes, &ev.bytes);
        } else {
            match self.more.iter_mut().find(|(g, _)| *g == ev.generation) {
                Some((_, entry)) => max_counters(entry, &ev.bytes),
                None => self.more.push((ev.generation, ev.bytes)),
            }
        }
        self.last_ns = self.last_ns.max(ev.ts_ns);
        if ev.first_ns != 0 && ev.first_ns < self.first_ns {
            self.first_ns = ev.first_ns;
        }
        match kind {
            EventKind::Established => {
                self.established = true;
                self.direction =
                    if ev.flags & FLAG_PASSIVE != 0 { Direction::Inbound } else { Direction::Outbound };
            }
            EventKind::Connect => self.direction = Direction::Outbound,
            EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed => {
                self.direction = Direction::Unconnected;
            }
            EventKind::TcpClose => {
                self.tcp_closed = true;
                self.tcp = Some(ev.tcp);
            }
            EventKind::Release => {
                self.released = true;
                self.released_ns = ev.ts_ns;
            }
            EventKind::Discovered | EventKind::Update => {}
        }
    }

    fn merge_tuple(&mut self, kind: EventKind, t: &Tuple) {
        if let Some(local) = endpoint(t.family, t.local_addr, t.local_port)
            && (local.port() != 0 || self.local.is_none()) {
                self.local = Some(local);
            }
        let peer_kind = matches!(kind, EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed);
        if let Some(remote) = endpoint(t.family, t.remote_addr, t.remote_port)
            && (remote.port() != 0 || peer_kind) {
                self.remote = Some(remote);
            }
        if t.family == AF_INET6 {
            self.v6 = true;
        }
    }

    /// Direction, with TCP sockets that never connected and have no peer shown as listeners.
    pub(super) fn direction(&self) -> Direction {
        if self.direction == Direction::Unknown
            && self.protocol == Protocol::Tcp
            && !self.established
            && self.remote.is_none()
            && self.local.is_some()
        {
            Direction::Listen
        } else {
            self.direction
        }
    }

    /// True when `generation` is the only one the flow has seen.
    pub(super) fn only_generation(&self, generation: u64) -> bool {
        self.generation == generation && self.more.is_empty()
    }

    /// Sum over slot generations (a single entry for sockets).
    pub(super) fn totals(&self) -> ByteCounters {
        self.more.iter().map(|(_, c)| c).fold(self.bytes, |mut acc, c| {
            acc.wire_tx_bytes += c.wire_tx_bytes;
            acc.wire_tx_packets += c.wire_tx_packets;
            acc.wire_rx_bytes += c.wire_rx_bytes;
            acc.wire_rx_packets += c.wire_rx_packets;
            acc.app_tx_bytes += c.app_tx_bytes;
            acc.app_rx_bytes += c.app_rx_bytes;
            acc
        })
    }

    pub(super) fn wire(&self) -> Wire {
        let t = self.totals();
        Wire {
            tx_bytes: t.wire_tx_bytes,
            tx_packets: t.wire_tx_packets,
            rx_bytes: t.wire_rx_bytes,
            rx_packets: t.wire_rx_packets,
        }
    }

    /// Payload and where it comes from. `syscall_counters` tells whether the payload tracepoints
    /// are attached.
    pub(super) fn payload(&self, unconnected_peer: bool, syscall_counters: bool) -> (Payload, PayloadSource) {
        let t = self.totals();
        if unconnected_peer {
            return (Payload { tx_bytes: t.app_tx_bytes, rx_bytes: t.app_rx_bytes }, PayloadSource::IpLayer);
        }
        if syscall_counters {
            return (Payload { tx_bytes: t.app_tx_bytes, rx_bytes: t.app_rx_bytes }, PayloadSource::Syscall);
        }
        match self.protocol {
            Protocol::Tcp => (self.tcp.map(tcp_payload).unwrap_or_default(), PayloadSource::TcpCounters),
            Protocol::Udp => {
                let header: u64 = if self.v6 { 48 } else { 28 };
                (
                    Payload {
                        tx_bytes: t.wire_tx_bytes.saturating_sub(t.wire_tx_packets * header),
                        rx_bytes: t.wire_rx_bytes.saturating_sub(t.wire_rx_packets * header),
                    },
                    PayloadSource::WireMinusHeaders,
                )
            }
            Protocol::Icmp | Protocol::Icmpv6 | Protocol::Sctp | Protocol::Raw => {
                (super::protocols::wire_minus_ip_header(self.v6, &t), PayloadSource::WireMinusHeaders)
            }
        }
    }
}

/// Kernel TCP states (`include/net/tcp_states.h`).
mod tcp_state {
    pub(super) const FIN_WAIT2: u32 = 5;
    pub(super) const TIME_WAIT: u32 = 6;
    pub(super) const LAST_ACK: u32 = 9;
    pub(super) const CLOSING: u32 = 11;
}

/// `bytes_acked` counts the SYN and an acknowledged FIN; `bytes_received` counts a received FIN.
/// The state before `TCP_CLOSE` tells which FINs were exchanged (best effort).
fn tcp_payload(tcp: TcpCounters) -> Payload {
    use tcp_state::{CLOSING, FIN_WAIT2, LAST_ACK, TIME_WAIT};
    let fin_acked = u64::from(matches!(tcp.old_state, FIN_WAIT2 | TIME_WAIT | LAST_ACK | CLOSING));
    let fin_received = u64::from(matches!(tcp.old_state, TIME_WAIT | LAST_ACK | CLOSING));
    Payload {
        tx_bytes: tcp.bytes_acked.saturating_sub(1 + fin_acked),
        rx_bytes: tcp.bytes_received.saturating_sub(fin_received),
    }
}
