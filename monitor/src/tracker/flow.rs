//! State of one flow and how kernel events merge into it.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use monitor_common::{
    AF_INET, AF_INET6,
    event::{
        Event, EventKind, FLAG_CONNECTED, FLAG_NO_OWNER, FLAG_PASSIVE, FLAG_PEER_FIRST_IN, FLAG_RAW, FLAG_SNAPSHOT,
        FLAG_TCP_COUNTERS, TCP_CONSUMED, TCP_FIN_RECEIVED, TCP_WRITE_POSITION, TcpCounters, Tuple,
    },
    sock::ByteCounters,
};

use super::{
    compact::{Addresses, End, Endpoints, FlowOwner, Owners, Stamp},
    record::{Direction, Payload, PayloadSource, PayloadSources, Protocol, Rtt, Wire},
    tcp::tcp_payload,
};

/// A flow: one socket, or one peer of an unconnected UDP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Socket cookie.
    pub cookie: u64,
    /// The peer, for unconnected UDP.
    pub peer: Option<SocketAddr>,
}

/// `Flow::flags` bits.
mod bit {
    pub(super) const V6: u8 = 1;
    pub(super) const ESTABLISHED: u8 = 1 << 1;
    pub(super) const RELEASED: u8 = 1 << 2;
    pub(super) const TCP_CLOSED: u8 = 1 << 3;
    pub(super) const HAS_LOCAL: u8 = 1 << 4;
    pub(super) const HAS_REMOTE: u8 = 1 << 5;
    pub(super) const HAS_RTT: u8 = 1 << 6;
    /// A peer flow whose open slot generation a read of the kernel's peer slots (at shutdown)
    /// reported last.
    pub(super) const PEER_READ: u8 = 1 << 7;
}

/// One open flow. Kept compact (184 bytes, a 192-byte malloc chunk; pinned by a test): the
/// owner is shared per process, IPv4 addresses are inline and IPv6 ones ids of the tracker's
/// [`Addresses`], options and
/// booleans are bits of `flags`, timers are 32-bit [`Stamp`]s, what only TCP flows need is in
/// [`TcpState`], and peer state is boxed (peer flows are few).
#[derive(Debug, Clone)]
pub(super) struct Flow {
    pub(super) owner: Arc<FlowOwner>,
    pub(super) protocol: Protocol,
    pub(super) ip_protocol: u8,
    pub(super) direction: Direction,
    /// [`bit`] flags.
    flags: u8,
    /// The local end valid with [`bit::HAS_LOCAL`], the remote one with [`bit::HAS_REMOTE`].
    ends: Endpoints,
    /// Cumulative counters of the socket; for a peer flow, the sum of its finished slot
    /// generations.
    pub(super) bytes: ByteCounters,
    /// What only TCP sockets or only peer flows keep.
    pub(super) extra: Extra,
    pub(super) first_ns: u64,
    pub(super) last_ns: u64,
    /// Totals at the previous record.
    pub(super) reported: (Payload, Wire),
    /// When the previous record was made (or, for a flow with nothing new since, one update
    /// interval before the latest tick: [`Flow::keep_due`]).
    last_record: Stamp,
}

/// Number of finished slot generations a peer flow remembers (see [`PeerState`]).
const FINISHED_GENERATIONS: usize = 4;

/// Per-kind state of a flow.
#[derive(Debug, Clone)]
pub(super) enum Extra {
    /// A UDP socket.
    Socket,
    /// A TCP socket: the kernel's TCP byte counters.
    Tcp(TcpState),
    /// One peer of an unconnected UDP socket.
    Peer(Box<PeerState>),
}

/// The kernel's TCP byte counters and RTT estimates of a TCP flow, and when it was released
/// (40 bytes).
#[derive(Debug, Clone, Default)]
pub(super) struct TcpState {
    /// `bytes_acked`, `bytes_received` at `ESTABLISHED` (the SYN and handshake data), when the
    /// flow was seen from its handshake (`has_base`). At that point they count the SYN and data
    /// sent with it (TCP Fast Open), a few KiB at most: 32 bits hold them. Counters too large for
    /// that are not a handshake's, and are taken as no base.
    base: [u32; 2],
    /// Latest `bytes_acked`, `bytes_received`: from a TCP `Update`, final from `TcpClose`
    /// (`has_last`).
    last: [u64; 2],
    /// The kernel's RTT estimates, from `Established`, TCP `Update` and `TcpClose`; valid with
    /// the flow's `HAS_RTT` bit.
    rtt: Rtt,
    /// `old_state` (a kernel `TCP_*` number; `u8::MAX` for a value out of range) and the
    /// `TCP_*` flags of the latest counters.
    last_state: u8,
    last_flags: u8,
    /// `base` holds the counters at `ESTABLISHED`. A `bool`: its spare values are the niche that
    /// keeps [`Extra`]'s tag out of the flow's size.
    has_base: bool,
    /// [`tcp_mark`] bits.
    marks: u8,
    /// When the flow was released (with the flow's `RELEASED` bit) and waits for `TCP_CLOSE`.
    /// Only TCP flows wait: others end at their release.
    released: Stamp,
}

/// `TcpState::marks` bits.
mod tcp_mark {
    /// `last` holds counters.
    pub(super) const HAS_LAST: u8 = 1 << 1;
    /// Closed while no `struct socket` held it (`FLAG_NO_FILE`), and not released since: no
    /// process ever read or wrote it.
    pub(super) const NO_FILE: u8 = 1 << 2;
    /// Continues a flow ended at the grace after such a close (accepted after all): its records
    /// are not a new flow.
    pub(super) const CONTINUED: u8 = 1 << 3;
    /// `base` is the connection's first counters in this run, not its handshake's (it is older
    /// than the run): only the received side is taken from them. Sent bytes the kernel acknowledges
    /// now may have been written before the run (a closed socket still draining its queue: the
    /// earlier run counted them at the writes), and every way of sending is counted at its call.
    pub(super) const RX_BASE_ONLY: u8 = 1 << 4;
    /// With `RX_BASE_ONLY`: the sent side's base is the write position read at start
    /// (`bases::SentFrom::Written`), so a write position (`TCP_WRITE_POSITION`, a release's) less
    /// it is what the process wrote in the run.
    pub(super) const TX_WRITTEN_BASE: u8 = 1 << 5;
}

impl TcpState {
    fn has(&self, mark: u8) -> bool {
        self.marks & mark != 0
    }

    fn base(&self) -> Option<[u64; 2]> {
        self.has_base.then(|| self.base.map(u64::from))
    }

    /// Takes the counters at `ESTABLISHED` as the base (see [`TcpState::base`]), once.
    fn set_base(&mut self, tcp: &TcpCounters) {
        if let (Ok(acked), Ok(received)) = (u32::try_from(tcp.bytes_acked), u32::try_from(tcp.bytes_received)) {
            self.base = [acked, received];
            self.has_base = true;
        }
    }

    /// The latest counters, without their RTT fields (payload needs none).
    fn last(&self) -> Option<TcpCounters> {
        self.has(tcp_mark::HAS_LAST).then_some(TcpCounters {
            bytes_acked: self.last[0],
            bytes_received: self.last[1],
            old_state: u32::from(self.last_state),
            flags: u32::from(self.last_flags),
            ..TcpCounters::default()
        })
    }

    /// The received side of `tcp` (a later reading than the last: the release's) over the last
    /// counters: `bytes_received`, what the process consumed of it, and the peer's FIN.
    fn set_received(&mut self, tcp: &TcpCounters) {
        if !self.has(tcp_mark::HAS_LAST) {
            return self.set_last(tcp);
        }
        self.last[1] = tcp.bytes_received;
        let taken = u8::try_from(tcp.flags & (TCP_CONSUMED | TCP_FIN_RECEIVED)).unwrap_or_default();
        self.last_flags = (self.last_flags & !u8::try_from(TCP_CONSUMED).unwrap_or_default()) | taken;
    }

    fn set_last(&mut self, tcp: &TcpCounters) {
        self.last = [tcp.bytes_acked, tcp.bytes_received];
        self.last_state = u8::try_from(tcp.old_state).unwrap_or(u8::MAX);
        // Only the low bits are defined (`TCP_FIN_RECEIVED`, `TCP_ALL_ACKED`, `TCP_CONSUMED`).
        self.last_flags = u8::try_from(tcp.flags & 0xff).unwrap_or_default();
        self.marks |= tcp_mark::HAS_LAST;
    }
}

/// One peer of an unconnected UDP socket. The kernel reports it per slot generation (the slot
/// may be flushed and claimed again many times while the socket lives).
#[derive(Debug, Clone, Default)]
pub(super) struct PeerState {
    /// Generations still open in a kernel slot, with their latest counters (usually one).
    live: Vec<(u64, ByteCounters)>,
    /// The last finished generations (already added to `bytes`): a late update of one,
    /// reordered across CPUs, must not count it again.
    finished: [u64; FINISHED_GENERATIONS],
}

/// Address from the kernel's network-order words; IPv4-mapped IPv6 becomes IPv4.
///
/// The kernel writes an IPv4 address in word 0 and zeroes the rest. The local side of an IPv4
/// peer flow of an IPv6 socket (a peer reached at an IPv4-mapped address) carries the socket's
/// own IPv6 words under the peer's family: words other than 0 set are read as IPv6, so a mapped
/// local address is its IPv4 address, not `0.0.0.0`.
pub(crate) fn ip_of(family: u16, words: [u32; 4]) -> IpAddr {
    let bytes = |w: u32| w.to_ne_bytes();
    if family == AF_INET6 || words[1..] != [0; 3] {
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

/// Owner as recorded by the kernel; `None` when the event carried none.
fn kernel_owner(ev: &Event) -> Option<FlowOwner> {
    (ev.flags & FLAG_NO_OWNER == 0).then(|| FlowOwner::of_kernel(&ev.owner))
}

fn add_counters(a: &mut ByteCounters, b: &ByteCounters) {
    a.wire_tx_bytes = a.wire_tx_bytes.saturating_add(b.wire_tx_bytes);
    a.wire_tx_packets = a.wire_tx_packets.saturating_add(b.wire_tx_packets);
    a.wire_rx_bytes = a.wire_rx_bytes.saturating_add(b.wire_rx_bytes);
    a.wire_rx_packets = a.wire_rx_packets.saturating_add(b.wire_rx_packets);
    a.app_tx_bytes = a.app_tx_bytes.saturating_add(b.app_tx_bytes);
    a.app_rx_bytes = a.app_rx_bytes.saturating_add(b.app_rx_bytes);
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
fn peer_kind(kind: EventKind) -> bool {
    matches!(kind, EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed)
}

pub(super) fn key_of(kind: EventKind, ev: &Event) -> FlowKey {
    let peer =
        peer_kind(kind).then(|| SocketAddr::new(ip_of(ev.tuple.family, ev.tuple.remote_addr), ev.tuple.remote_port));
    FlowKey { cookie: ev.cookie, peer }
}

impl Flow {
    /// Lets go of what the flow shares or boxes (its owner becomes `placeholder`): kept as a
    /// spare allocation ([`super::table::Flows`]), a removed flow holds no owner alive.
    pub(super) fn vacate(&mut self, placeholder: &Arc<FlowOwner>) {
        self.owner = Arc::clone(placeholder);
        self.extra = Extra::Socket;
        self.ends = Endpoints::default();
    }

    pub(super) fn new(kind: EventKind, ev: &Event, owners: &mut Owners, addrs: &mut Addresses) -> Self {
        let protocol = super::protocols::protocol_of(ev.tuple.protocol, ev.flags & FLAG_RAW != 0);
        let owner = owners.intern(kernel_owner(ev).unwrap_or_else(|| FlowOwner::unknown(ev.owner.uid)));
        let first_ns = if ev.first_ns == 0 { ev.ts_ns } else { ev.first_ns };
        let mut flow = Self {
            owner,
            protocol,
            // MPTCP travels as TCP.
            ip_protocol: if ev.tuple.protocol == monitor_common::IPPROTO_MPTCP {
                6
            } else {
                u8::try_from(ev.tuple.protocol).unwrap_or(u8::MAX)
            },
            direction: Direction::Unknown,
            flags: if ev.tuple.family == AF_INET6 { bit::V6 } else { 0 },
            ends: Endpoints::default(),
            bytes: ByteCounters::default(),
            extra: if peer_kind(kind) {
                Extra::Peer(Box::default())
            } else if protocol == Protocol::Tcp {
                Extra::Tcp(TcpState::default())
            } else {
                Extra::Socket
            },
            first_ns,
            last_ns: ev.ts_ns,
            reported: (Payload::default(), Wire::default()),
            last_record: Stamp::at(ev.ts_ns),
        };
        flow.absorb(kind, ev, owners, addrs);
        flow
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The IPv6 family was seen.
    pub(super) fn v6(&self) -> bool {
        self.has(bit::V6)
    }

    /// The TCP handshake was seen.
    pub(super) fn established(&self) -> bool {
        self.has(bit::ESTABLISHED)
    }

    /// A TCP flow that takes its next TCP counters as its base: one older than the run, with no
    /// counters yet.
    pub(super) fn takes_first_counters_as_base(&self) -> bool {
        matches!(&self.extra, Extra::Tcp(state) if !state.has_base) && !self.has(bit::ESTABLISHED) && !self.tcp_closed()
    }

    /// A TCP flow counts from 0: its counters come less a base kept outside it
    /// ([`super::bases`]), and it has just taken their first as its base.
    pub(super) fn count_from_zero(&mut self, written_base: bool) {
        if let Extra::Tcp(state) = &mut self.extra {
            state.base = [0, 0];
            state.has_base = true;
            // Older than the run (its first event may be its release, which takes no base).
            state.marks |= tcp_mark::RX_BASE_ONLY;
            if written_base {
                state.marks |= tcp_mark::TX_WRITTEN_BASE;
            }
        }
    }

    /// The socket was released (or, without release events, closed).
    pub(super) fn released(&self) -> bool {
        self.has(bit::RELEASED)
    }

    /// `TCP_CLOSE` was seen.
    pub(super) fn tcp_closed(&self) -> bool {
        self.has(bit::TCP_CLOSED)
    }

    /// Whether the flow closed while no `struct socket` held it, and no release followed.
    pub(super) fn without_file(&self) -> bool {
        matches!(&self.extra, Extra::Tcp(state) if state.has(tcp_mark::NO_FILE))
    }

    /// Marks a TCP flow closed without a `struct socket` (`without`), or held by one after all
    /// (a release came: a connection reset in the listener's queue can still be accepted).
    pub(super) fn set_without_file(&mut self, without: bool) {
        if let Extra::Tcp(state) = &mut self.extra {
            if without {
                state.marks |= tcp_mark::NO_FILE;
            } else {
                state.marks &= !tcp_mark::NO_FILE;
            }
        }
    }

    /// Continues a flow whose record carried `reported` (ended at the grace after a close with no
    /// socket file, or as gone while no process held it): the next record counts from there, in
    /// `direction`, and is not a new flow (a TCP flow's records say so: `resumed`).
    pub(super) fn continue_from(&mut self, reported: (Payload, Wire), direction: Direction) {
        if let Extra::Tcp(state) = &mut self.extra {
            state.marks |= tcp_mark::CONTINUED;
        }
        self.reported = reported;
        self.direction = direction;
    }

    /// Whether the flow continues one ended earlier ([`Flow::continue_from`]).
    pub(super) fn continued(&self) -> bool {
        matches!(&self.extra, Extra::Tcp(state) if state.has(tcp_mark::CONTINUED))
    }

    /// Marks the flow released at `ts_ns`.
    pub(super) fn set_released(&mut self, ts_ns: u64) {
        self.flags |= bit::RELEASED;
        if let Extra::Tcp(state) = &mut self.extra {
            state.released = Stamp::at(ts_ns);
        }
    }

    /// Nanoseconds since the flow was released (in 64ths of a second); `u64::MAX` for a flow
    /// not released, or without TCP state (such a flow ends at its release, it never waits).
    pub(super) fn since_release_ns(&self, now_ns: u64) -> u64 {
        match &self.extra {
            Extra::Tcp(state) if self.released() => state.released.elapsed_ns(now_ns),
            _ if self.released() => u64::MAX,
            _ => 0,
        }
    }

    /// Nanoseconds since the flow's previous record (in 64ths of a second).
    pub(super) fn since_record_ns(&self, now_ns: u64) -> u64 {
        self.last_record.elapsed_ns(now_ns)
    }

    /// Notes a record made at `now_ns`, with these totals.
    pub(super) fn recorded(&mut self, now_ns: u64, totals: (Payload, Wire)) {
        self.reported = totals;
        self.last_record = Stamp::at(now_ns);
    }

    /// A flow due for an update that had nothing new stays due: its stamp moves up to one
    /// `interval_ns` before `now_ns`, so it never ages past what a [`Stamp`] holds.
    pub(super) fn keep_due(&mut self, now_ns: u64, interval_ns: u64) {
        self.last_record = Stamp::at(now_ns.saturating_sub(interval_ns));
    }

    /// Local endpoint, as far as seen (an IPv6 address read from `addrs`).
    pub(super) fn local(&self, addrs: &Addresses) -> Option<SocketAddr> {
        self.has(bit::HAS_LOCAL).then(|| self.ends.get(End::Local, addrs))
    }

    /// Remote endpoint, as far as seen (an IPv6 address read from `addrs`).
    pub(super) fn remote(&self, addrs: &Addresses) -> Option<SocketAddr> {
        self.has(bit::HAS_REMOTE).then(|| self.ends.get(End::Remote, addrs))
    }

    /// The endpoints, for [`Addresses::rebuild`].
    pub(super) fn ends_mut(&mut self) -> &mut Endpoints {
        &mut self.ends
    }

    /// The kernel's RTT estimates, when it had a sample.
    pub(super) fn rtt(&self) -> Option<Rtt> {
        match &self.extra {
            Extra::Tcp(state) if self.has(bit::HAS_RTT) => Some(state.rtt),
            _ => None,
        }
    }

    fn merge_rtt(&mut self, tcp: &TcpCounters) {
        let mut rtt = self.rtt();
        let Extra::Tcp(state) = &mut self.extra else { return };
        Rtt::merge(&mut rtt, tcp.min_rtt_us(), tcp.smoothed_rtt_us());
        if let Some(rtt) = rtt {
            state.rtt = rtt;
            self.flags |= bit::HAS_RTT;
        }
    }

    /// Merges one event. Counters are cumulative, so the larger value wins.
    pub(super) fn absorb(&mut self, kind: EventKind, ev: &Event, owners: &mut Owners, addrs: &mut Addresses) {
        if let Some(owner) = kernel_owner(ev)
            && owner.source > self.owner.source
        {
            self.owner = owners.intern(owner);
        }
        // A snapshot read from the counters alone (the iterator's) knows the local address but not
        // its family (family 0): it is the flow's own.
        if ev.flags & FLAG_SNAPSHOT != 0 && !matches!(ev.tuple.family, AF_INET | AF_INET6) {
            let family = if self.v6() { AF_INET6 } else { AF_INET };
            self.merge_tuple(kind, &Tuple { family, ..ev.tuple }, addrs);
        } else {
            self.merge_tuple(kind, &ev.tuple, addrs);
        }
        let mut rtt_sample = false;
        match &mut self.extra {
            Extra::Peer(peer) => {
                let PeerState { live, finished } = &mut **peer;
                if finished.contains(&ev.generation) {
                    return; // late update of a generation already counted
                }
                let index = match live.iter().position(|(g, _)| *g == ev.generation) {
                    Some(i) => i,
                    None => {
                        live.push((ev.generation, ByteCounters::default()));
                        live.len() - 1
                    }
                };
                if let Some((_, entry)) = live.get_mut(index) {
                    max_counters(entry, &ev.bytes);
                }
                if ev.flags & monitor_common::event::FLAG_SNAPSHOT != 0 {
                    self.flags |= bit::PEER_READ;
                }
                if matches!(kind, EventKind::PeerEvicted | EventKind::PeerClosed) {
                    // Final counters of the generation: fold them into the flow's total.
                    let (generation, done) = live.swap_remove(index);
                    add_counters(&mut self.bytes, &done);
                    finished.rotate_right(1);
                    finished[0] = generation;
                }
            }
            Extra::Tcp(state) => {
                max_counters(&mut self.bytes, &ev.bytes);
                let tcp_valid = ev.flags & FLAG_TCP_COUNTERS != 0;
                if tcp_valid || kind == EventKind::TcpClose {
                    rtt_sample = true;
                }
                match kind {
                    EventKind::Established if tcp_valid && !state.has_base => state.set_base(&ev.tcp),
                    // Also its discovery, whose counters are the socket's at its first packet.
                    EventKind::Update | EventKind::Discovered if tcp_valid && self.flags & bit::TCP_CLOSED == 0 => {
                        // A connection seen after its handshake (older than this run): its first
                        // counters are the base, so bytes moved without the syscalls since then
                        // (a splice reader's) count, not none (an adversarial pass: a splice
                        // download open across a restart recorded 0 B from it on).
                        if !state.has_base && self.flags & bit::ESTABLISHED == 0 {
                            state.set_base(&ev.tcp);
                            state.marks |= tcp_mark::RX_BASE_ONLY;
                        }
                        state.set_last(&ev.tcp);
                    }
                    EventKind::TcpClose => state.set_last(&ev.tcp),
                    // The release of a socket older than the monitor (no `TCP_CLOSE` of its own):
                    // its final counters.
                    EventKind::Release if tcp_valid && self.flags & bit::TCP_CLOSED == 0 => state.set_last(&ev.tcp),
                    // Released after its `TCP_CLOSE` (a reset, or both FINs while the process
                    // held it), which counted what was still unread: what the process took by
                    // its release. The close's sent side and state stay (its FIN accounting).
                    EventKind::Release if tcp_valid => state.set_received(&ev.tcp),
                    _ => {}
                }
            }
            Extra::Socket => max_counters(&mut self.bytes, &ev.bytes),
        }
        if rtt_sample {
            self.merge_rtt(&ev.tcp);
        }
        // A connect after the connection closed (`TcpClose` seen) is not an event of that
        // connection: its record ends at the close.
        if !(kind == EventKind::Reconnect && self.flags & bit::TCP_CLOSED != 0) {
            self.last_ns = self.last_ns.max(ev.ts_ns);
        }
        if ev.first_ns != 0 && ev.first_ns < self.first_ns {
            self.first_ns = ev.first_ns;
        }
        if ev.flags & FLAG_CONNECTED != 0 && self.direction == Direction::Unknown {
            // A connected UDP socket (no `Connect` event), or a TCP one that may never have
            // established (refused, unanswered): this host connected.
            self.direction = Direction::Outbound;
        }
        match kind {
            EventKind::Established => {
                self.flags |= bit::ESTABLISHED;
                self.direction = if ev.flags & FLAG_PASSIVE != 0 { Direction::Inbound } else { Direction::Outbound };
            }
            EventKind::Connect => self.direction = Direction::Outbound,
            // The first peer event of the flow says who sent first; a later generation of the
            // slot (the peer came back after an eviction) does not change it.
            EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed
                if self.direction == Direction::Unknown =>
            {
                self.direction =
                    if ev.flags & FLAG_PEER_FIRST_IN != 0 { Direction::Inbound } else { Direction::Unconnected };
            }
            EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed => {}
            EventKind::TcpClose => self.flags |= bit::TCP_CLOSED,
            EventKind::Release => self.set_released(ev.ts_ns),
            EventKind::Discovered | EventKind::Update | EventKind::PeerChanged | EventKind::Reconnect => {}
        }
    }

    fn merge_tuple(&mut self, kind: EventKind, t: &Tuple, addrs: &mut Addresses) {
        let peer_kind = matches!(kind, EventKind::PeerUpdate | EventKind::PeerEvicted | EventKind::PeerClosed);
        // A peer flow keeps the local address it was first seen with: the socket's may change
        // later (connected after unconnected use), and its slots' final events carry the new one.
        let kept = peer_kind && self.local(addrs).is_some_and(|l| l.port() != 0);
        if !kept
            && let Some(local) = endpoint(t.family, t.local_addr, t.local_port)
            && (local.port() != 0 || !self.has(bit::HAS_LOCAL))
        {
            self.ends.set(End::Local, local, addrs);
            self.flags |= bit::HAS_LOCAL;
        }
        if let Some(remote) = endpoint(t.family, t.remote_addr, t.remote_port)
            && (remote.port() != 0 || peer_kind)
        {
            self.ends.set(End::Remote, remote, addrs);
            self.flags |= bit::HAS_REMOTE;
        }
        if t.family == AF_INET6 {
            self.flags |= bit::V6;
        }
    }

    /// Direction, with TCP sockets that never connected and have no peer shown as listeners.
    pub(super) fn direction(&self) -> Direction {
        if self.direction == Direction::Unknown
            && matches!(self.protocol, Protocol::Tcp | Protocol::Mptcp)
            && !self.established()
            && !self.has(bit::HAS_REMOTE)
            && self.has(bit::HAS_LOCAL)
        {
            Direction::Listen
        } else {
            self.direction
        }
    }

    /// True for a peer flow with no generation open in a kernel slot (flushed, idle).
    pub(super) fn parked(&self) -> bool {
        matches!(&self.extra, Extra::Peer(peer) if peer.live.is_empty())
    }

    /// True for a peer flow whose one open slot generation was last reported by a read of the
    /// kernel's peer slots (`FLAG_SNAPSHOT`): its counters are as the kernel holds them. (A
    /// second open generation is one whose flush was lost: not known.)
    pub(super) fn peer_read(&self) -> bool {
        self.has(bit::PEER_READ) && matches!(&self.extra, Extra::Peer(peer) if peer.live.len() == 1)
    }

    /// Sum over slot generations (the socket's counters for sockets).
    pub(super) fn totals(&self) -> ByteCounters {
        let mut acc = self.bytes;
        if let Extra::Peer(peer) = &self.extra {
            for (_, c) in &peer.live {
                add_counters(&mut acc, c);
            }
        }
        acc
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

    /// Payload and where each direction comes from. `syscall_counters` tells whether the payload
    /// tracepoints are attached.
    ///
    /// TCP: the syscall counts miss bytes moved without `sendmsg`/`recvmsg` (splice and
    /// `tcp_read_sock`, `TCP_ZEROCOPY_RECEIVE`, io_uring zero-copy receive) and count kTLS
    /// plaintext, not the records on the stream. The kernel's TCP counters count the stream
    /// itself, so per direction the larger of the two wins. They count from the handshake for
    /// flows seen from it, else from the flow's first TCP counters (a connection older than this
    /// run: what it moved before is not this run's), and `bytes_acked` lags the bytes written
    /// by what is in flight, so on a plain socket the syscall count stays (equal at close).
    /// `bytes_received` runs ahead of the reads by what is queued (discarded at a reset), so a
    /// process that reads with recvmsg keeps that count received until an orderly end.
    pub(super) fn payload(&self, unconnected_peer: bool, syscall_counters: bool) -> (Payload, PayloadSources) {
        let t = self.totals();
        let app = Payload { tx_bytes: t.app_tx_bytes, rx_bytes: t.app_rx_bytes };
        if unconnected_peer {
            return (app, PayloadSources::both(PayloadSource::IpLayer));
        }
        match (&self.extra, syscall_counters) {
            // No process held it: what the kernel received was read by none, and nothing was
            // written (the processes' calls count nothing for it).
            (Extra::Tcp(state), true) if state.has(tcp_mark::NO_FILE) => {
                (app, PayloadSources::both(PayloadSource::Syscall))
            }
            (Extra::Tcp(state), true) => {
                let base = state.base();
                let Some(kernel) = state.last().filter(|_| base.is_some()).map(|tcp| tcp_payload(base, tcp)) else {
                    return (app, PayloadSources::both(PayloadSource::Syscall));
                };
                let pick = |syscall: u64, tcp: u64| {
                    if tcp > syscall { (tcp, PayloadSource::TcpCounters) } else { (syscall, PayloadSource::Syscall) }
                };
                let written =
                    state.has(tcp_mark::TX_WRITTEN_BASE) && u32::from(state.last_flags) & TCP_WRITE_POSITION != 0;
                let (tx_bytes, tx) = if state.has(tcp_mark::RX_BASE_ONLY) && !written {
                    (app.tx_bytes, PayloadSource::Syscall)
                } else {
                    pick(app.tx_bytes, kernel.tx_bytes)
                };
                // `bytes_received` counts bytes the process has not read yet, and at a reset
                // bytes it never will (the reset discards them); they cannot be told from bytes
                // read by splice or zero-copy receive. So a process that reads with recvmsg keeps
                // its own count until an orderly end, where the larger one wins (equal unless it
                // also read without recvmsg); one that read nothing that way (a splice reader)
                // takes the kernel's throughout. Where the kernel's count leaves out what was not
                // read (`TCP_CONSUMED`: the kernel programs' updates and a released socket's
                // close, the descriptor snapshots), it is what the process took by any path:
                // the larger one wins, while open and after a reset too.
                let consumed = state.last().is_some_and(|tcp| tcp.flags & TCP_CONSUMED != 0);
                let orderly_end =
                    self.has(bit::TCP_CLOSED) && state.last().is_some_and(|tcp| !super::tcp::ended_in_reset(&tcp));
                let (rx_bytes, rx) = if app.rx_bytes > 0 && !orderly_end && !consumed {
                    (app.rx_bytes, PayloadSource::Syscall)
                } else {
                    pick(app.rx_bytes, kernel.rx_bytes)
                };
                (Payload { tx_bytes, rx_bytes }, PayloadSources { tx, rx })
            }
            (Extra::Tcp(state), false) => (
                state.last().map(|tcp| tcp_payload(state.base(), tcp)).unwrap_or_default(),
                PayloadSources::both(PayloadSource::TcpCounters),
            ),
            (_, true) => (app, PayloadSources::both(PayloadSource::Syscall)),
            (_, false) if !matches!(self.protocol, Protocol::Udp | Protocol::UdpLite) => (
                super::protocols::wire_minus_ip_header(self.v6(), &t),
                PayloadSources::both(PayloadSource::WireMinusHeaders),
            ),
            (_, false) => {
                let header: u64 = if self.v6() { 48 } else { 28 };
                (
                    Payload {
                        tx_bytes: t.wire_tx_bytes.saturating_sub(t.wire_tx_packets * header),
                        rx_bytes: t.wire_rx_bytes.saturating_sub(t.wire_rx_packets * header),
                    },
                    PayloadSources::both(PayloadSource::WireMinusHeaders),
                )
            }
        }
    }
}
