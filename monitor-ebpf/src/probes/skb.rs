//! `cgroup_skb/egress|ingress`: the per-packet path.
//!
//! For TCP and connected UDP the work is: `COUNTERS` storage → two atomic adds → one coarse clock
//! read (`maps::coarse_ns`: a helper call only at the first packet after a tick): one helper call
//! in all. No keyed map lookup, no event (except one `Update` per interval). The
//! full socket (a third helper call) is asked for only at a socket's first packets (until its
//! protocol and local address are in its counters and its payload copying is over), for its
//! updates, and for sockets counted per peer ([`steady`]).
//! Unconnected UDP sockets (several peers behind one socket), and ping, raw and SCTP sockets
//! (no syscall hook gives their peers) also read the peer address from the IP header (and the
//! port from the UDP/SCTP header) and add to that peer's slot in the socket's `PEERS` storage.
//! Both programs return [`ALLOW`] on every path: a 0 would drop the packet.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::generated::{
        bpf_get_socket_cookie, bpf_get_socket_uid, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_sk_fullsock,
        bpf_spin_lock, bpf_spin_unlock, bpf_tcp_sock,
    },
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use monitor_common::{
    AF_INET, AF_INET6, IPPROTO_RAW, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, SOCK_RAW,
    event::{EventKind, FLAG_TCP_COUNTERS, TCP_ALL_ACKED, TCP_FIN_RECEIVED, TcpCounters, Tuple},
    maps::{
        FALLBACK_ANNOUNCE, STAT_PEER_EVICTIONS, STAT_PEER_PARSE_FAIL, STAT_STORAGE_FAIL, STAT_UNATTRIBUTED_BYTES,
        STAT_UNATTRIBUTED_PACKETS,
    },
    sock::{
        COPY_STATE_DONE, COUNTER_ANNOUNCED, COUNTER_CONNECTED, COUNTER_DISCOVERED, COUNTER_RAW, Counters, Owner,
        OwnerSource, PEER_SLOTS, PeerSlot, PeerTable, SLOT_ACTIVE, SLOT_FIRST_IN,
    },
};

use super::{ALLOW, field, per_peer, remember_local, tracked, tuple_of};
use crate::maps::{
    COUNTERS, EventData, PEERS, add, clear_bits, coarse_ns, elapsed_ns, emit, fallback, loaded_boot_ns, owner_of,
    owner_with, set_bits, socket_flags, stat, update_interval_ns,
};

/// # Minimum kernel version
/// 5.2 (`bpf_sk_storage_get` in `cgroup_skb`); coarse clock 5.11.
#[cgroup_skb(egress)]
pub fn cgroup_skb_egress(ctx: SkBuffContext) -> i32 {
    count(&ctx, true);
    ALLOW
}

/// # Minimum kernel version
/// 5.2; coarse clock 5.11.
#[cgroup_skb(ingress)]
pub fn cgroup_skb_ingress(ctx: SkBuffContext) -> i32 {
    count(&ctx, false);
    ALLOW
}

#[inline(always)]
fn count(ctx: &SkBuffContext, egress: bool) {
    let skb = ctx.skb.skb;
    // SAFETY: ctx field reads; `sk` is null-checked before use.
    let (len, sk) = unsafe { (u64::from((*skb).len), (*skb).__bindgen_anon_2.sk) };
    if sk.is_null() {
        unattributed(len);
        return;
    }
    // The storage helper takes any socket and finds counters on full sockets only, so a socket
    // past its first packets costs no `bpf_sk_fullsock` call: on a host whose every kernel
    // return is expensive (SRSO's safe RET), each helper call is a good part of a packet's cost.
    let counters = COUNTERS.get(sk.cast(), false);
    // SAFETY: null-checked map value; `dst_port` is a field of every socket (`sock_common`).
    let steady = unsafe { counters.as_ref() }.is_some_and(|c| steady(c, u32::from(unsafe { (*sk).dst_port })));
    let due = if steady {
        // SAFETY: non-null (`steady`) map value.
        let c = unsafe { &mut *counters };
        add_packet(c, egress, len);
        interval_due(c)
    } else {
        // SAFETY: a socket pointer of the context, non-null.
        let full = unsafe { bpf_sk_fullsock(sk) };
        if full.is_null() {
            unattributed(len);
            return;
        }
        first_packets(ctx, full, counters, egress, len)
    };
    // One call site: the program's stack is nearly full.
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { due.as_mut() } {
        // SAFETY: a socket pointer of the context; counters exist on full sockets only, so the
        // helper never returns null here.
        let full = unsafe { bpf_sk_fullsock(sk) };
        // A steady socket's `Update` is a periodic one (its next interval sends the next); a
        // socket at its first packets may have lost its announce.
        if !full.is_null() && !report(ctx, full, EventKind::Update, c) && !steady {
            announce_again(c);
        }
    }
}

/// True for a socket whose packet needs nothing but its counters and the update clock: its
/// protocol and local address known, its payload copying over, counted as one flow (TCP, or
/// connected UDP that kept its peer; not raw). Reads only the counters and the destination port.
#[inline(always)]
fn steady(c: &Counters, dst_port: u32) -> bool {
    let protocol = u32::from(c.protocol);
    protocol != 0
        && c.local_port != 0
        && c.copy_state & COPY_STATE_DONE != 0
        && !per_peer(protocol, dst_port, c.flags)
        && !super::rebind::disconnected(c, protocol, dst_port)
}

/// Whether a socket's `Update` is due (and then restarts its interval).
#[inline(always)]
fn interval_due(c: &mut Counters) -> *mut Counters {
    let now = coarse_ns();
    if elapsed_ns(now, c.last_report_ns) >= update_interval_ns() {
        c.last_report_ns = now;
        c
    } else {
        core::ptr::null_mut()
    }
}

/// A packet of a socket that is not [`steady`]: without counters yet (discovered, or an MPTCP
/// subflow), at its first packets, copying payload, counted per peer, or whose peer changed.
/// Returns the counters whose `Update` is due, or null.
#[inline(always)]
fn first_packets(
    ctx: &SkBuffContext,
    sk: *mut bpf_sock,
    mut counters: *mut Counters,
    egress: bool,
    len: u64,
) -> *mut Counters {
    if counters.is_null() {
        // An MPTCP subflow has no counters: its packets count for its connection (`mptcp`).
        if super::mptcp::count_subflow(ctx.skb.skb, sk, egress, len) {
            return core::ptr::null_mut();
        }
        counters = discover(ctx, sk);
    }
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { counters.as_mut() }) else {
        unattributed(len);
        return core::ptr::null_mut();
    };
    // SAFETY: full-socket field reads.
    let (protocol, dst_port) = unsafe { ((*sk).protocol, (*sk).dst_port) };
    if c.protocol == 0 && protocol < 256 {
        // Every packet of the socket writes the same byte: a race between two CPUs is harmless.
        c.protocol = protocol as u8;
    }
    if super::rebind::disconnected(c, protocol, u32::from(dst_port)) {
        // Before this packet is added: the connected flow ends with what came before it.
        // SAFETY: the context is an skb with a socket.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
        let traffic = super::rebind::had_traffic(c);
        super::rebind::change(cookie, sk, c, traffic);
    }
    add_packet(c, egress, len);
    remember_local(sk, c);
    if per_peer(protocol, u32::from(dst_port), c.flags) {
        // The socket's first peer: one socket-level `Update`, so that userspace knows the socket
        // (and its owner) before any peer is reported, and reads its peer slots at shutdown. Its
        // own record is never written while it is counted per peer.
        // Both calls, always (`|`): the announce claims its bit at the first peer too.
        if count_peer(ctx, sk, c, egress, len, protocol) | announce_due(c, protocol) {
            counters
        } else {
            core::ptr::null_mut()
        }
    } else {
        if c.copy_state & COPY_STATE_DONE == 0 {
            super::copy::connected(ctx, sk, c, egress);
        }
        if announce_due(c, protocol) { counters } else { interval_due(c) }
    }
}

/// Whether this packet announces a UDP socket no event announced yet, where snapshots are read by
/// descriptor (`FALLBACK_ANNOUNCE`: they find only sockets userspace knows). Without it a
/// connected UDP socket busy only within its first update interval, then idle, reached userspace
/// at its release only, and a daemon killed before that lost all its bytes. First packets only
/// (the socket is not `steady` until its protocol, local port and copy state are known).
#[inline(always)]
fn announce_due(c: &mut Counters, protocol: u32) -> bool {
    if protocol == u32::from(IPPROTO_TCP) || c.flags & COUNTER_ANNOUNCED != 0 || !fallback(FALLBACK_ANNOUNCE) {
        return false;
    }
    // Atomic: `sock_release` sets its bit in the same word from the process's context.
    set_bits(&raw mut c.flags, COUNTER_ANNOUNCED) & COUNTER_ANNOUNCED == 0
}

/// A socket-level event of a socket at its first packets that the ring buffer had no room for
/// (the daemon was slow or stopped). Where the packet path announces sockets ([`announce_due`]),
/// the announce is claimed again: the socket's next packet at its first packets tries again (one
/// counted per peer always is), a socket steady by then at its next update interval. If the lost
/// event was the announce, nothing else would tell userspace about the socket (a socket counted
/// per peer sends no event for a new peer, and snapshots by descriptor find only the sockets
/// userspace knows), and a daemon killed before the socket's release lost all its bytes. Each
/// failed try counts as a lost event.
#[inline(never)]
fn announce_again(c: &mut Counters) {
    if u32::from(c.protocol) == u32::from(IPPROTO_TCP) || !fallback(FALLBACK_ANNOUNCE) {
        return;
    }
    clear_bits(&raw mut c.flags, COUNTER_ANNOUNCED);
}

/// Adds one packet of `len` bytes to a socket's wire counters.
#[inline(always)]
pub(crate) fn add_packet(c: &mut Counters, egress: bool, len: u64) {
    if egress {
        add(&raw mut c.wire_tx_bytes, len);
        add(&raw mut c.wire_tx_packets, 1);
    } else {
        add(&raw mut c.wire_rx_bytes, len);
        add(&raw mut c.wire_rx_packets, 1);
    }
}

#[inline(always)]
fn unattributed(len: u64) {
    stat(STAT_UNATTRIBUTED_PACKETS, 1);
    stat(STAT_UNATTRIBUTED_BYTES, len);
}

#[inline(always)]
fn report(ctx: &SkBuffContext, sk: *mut bpf_sock, kind: EventKind, c: &Counters) -> bool {
    let tuple = tuple_of(sk);
    let (flags, tcp) = tcp_counters(sk, c);
    let bytes = c.bytes();
    emit(
        kind,
        &EventData {
            // SAFETY: the context is an skb with a socket.
            cookie: unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) },
            flags: flags | socket_flags(c),
            generation: 0,
            first_ns: c.created_ns,
            owner: owner_with(c, sk.cast()),
            tuple: &tuple,
            bytes: &raw const bytes,
            tcp,
        },
    )
}

/// The kernel's running TCP byte counters and RTT estimates of a TCP socket (once per `Update`,
/// not per packet):
/// payload that bypasses the syscall tracepoints (splice, zero-copy receive, kTLS) shows in
/// updates too, not only at close.
#[inline(always)]
fn tcp_counters(sk: *mut bpf_sock, c: &Counters) -> (u32, TcpCounters) {
    // SAFETY: `sk` is a full socket; the helper returns null for non-TCP sockets.
    let Some(tp) = (unsafe { bpf_tcp_sock(sk).as_ref() }) else {
        return (0, TcpCounters::default());
    };
    let all_acked = field!(tp, snd_una) == field!(tp, snd_nxt);
    let mut tcp = TcpCounters {
        bytes_acked: field!(tp, bytes_acked),
        bytes_received: field!(tp, bytes_received),
        old_state: field!(sk, state),
        flags: u32::from(c.tcp_flags) & TCP_FIN_RECEIVED | if all_acked { TCP_ALL_ACKED } else { 0 },
        srtt_us_x8: field!(tp, srtt_us),
        rtt_min_us: field!(tp, rtt_min),
    };
    // What waits unread is not payload the process took (an adversarial re-check: an update
    // counted a reply nobody read, and the journal kept it after the close said otherwise).
    super::leave_out_unconsumed(sk, || field!(tp, rcv_nxt), &mut tcp);
    (FLAG_TCP_COUNTERS, tcp)
}

/// First packet of a socket without counters: it predates the monitor. Give it counters and tell
/// userspace, which finds the owner in /proc unless a syscall hook already recorded it.
#[inline(always)]
fn discover(ctx: &SkBuffContext, sk: *mut bpf_sock) -> *mut Counters {
    // SAFETY: full-socket field reads.
    let family = unsafe { (*sk).family };
    if !tracked(family) {
        return core::ptr::null_mut();
    }
    let mut counters = COUNTERS.get(sk.cast(), true);
    if counters.is_null() {
        // Lost a creation race (see `SkStorage::get_or_create`): a packet of the same socket on
        // the other CPU created the counters first and reports the discovery; count into them.
        let other = COUNTERS.get(sk.cast(), false);
        if !other.is_null() {
            return other;
        }
        counters = COUNTERS.get(sk.cast(), true);
    }
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { counters.as_mut() }) else {
        stat(STAT_STORAGE_FAIL, 1);
        return counters;
    };
    // SAFETY: helpers without pointer arguments.
    unsafe {
        c.created_ns = bpf_ktime_get_boot_ns();
        c.last_report_ns = bpf_ktime_get_coarse_ns();
    }
    // A UDP socket with a destination was connected by its process: marked so, its disconnect
    // (`connect(AF_UNSPEC)`) is found at its next packet as for a socket connected under the
    // monitor (`rebind`), and its flow so far ends with its own record.
    // SAFETY: full-socket field reads.
    let (connected, raw) =
        unsafe { ((*sk).protocol == u32::from(IPPROTO_UDP) && (*sk).dst_port != 0, (*sk).type_ == SOCK_RAW) };
    // A raw socket is counted per peer whatever its protocol, as when `sock_create` saw it. The
    // `Discovered` event below announces the socket (`announce_due`).
    c.flags |= COUNTER_DISCOVERED
        | COUNTER_ANNOUNCED
        | if connected && !raw { COUNTER_CONNECTED } else { 0 }
        | if raw { COUNTER_RAW } else { 0 };
    let mut owner = owner_of(sk.cast());
    let partial;
    if owner.is_null() {
        // Only the socket's uid is known here; the packet path runs in an unrelated task.
        partial = Owner {
            // SAFETY: the context is an skb.
            uid: unsafe { bpf_get_socket_uid(ctx.skb.skb) },
            source: OwnerSource::Unknown as u8,
            ..Owner::default()
        };
        owner = &raw const partial;
    }
    let tuple = tuple_of(sk);
    // A TCP socket's counters now: the base its later counters count from, so that bytes read
    // without `recvmsg` (splice) from its first packet on count, also when it ends before its
    // first update (an adversarial pass: a splice reader open across a daemon restart that ended
    // within the update interval counted none).
    let (tcp_flag, tcp) = tcp_counters(sk, c);
    let sent = emit(
        EventKind::Discovered,
        &EventData {
            // SAFETY: the context is an skb with a socket.
            cookie: unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) },
            flags: socket_flags(c) | tcp_flag,
            generation: 0,
            first_ns: c.created_ns,
            owner,
            tuple: &tuple,
            bytes: core::ptr::null(),
            tcp,
        },
    );
    if !sent {
        // Announced again at a later packet (`announce_due`), where the packet path announces.
        clear_bits(&raw mut c.flags, COUNTER_ANNOUNCED);
    }
    counters
}

/// Remote endpoint of one packet of a socket counted per peer.
struct Peer {
    addr: [u32; 4],
    port: u16,
    family: u16,
    payload: u64,
    /// Offset of the transport header.
    l4_off: u32,
}

/// Bytes of the transport header a peer needs: the ports (UDP, SCTP) and UDP's length.
const L4_PEEK: usize = 8;

/// Reads the peer (destination on egress, source on ingress) and the payload length of one packet
/// of a socket of IP protocol `protocol` (see [`payload_of`] for what the payload is).
///
/// The headers are read in place (direct packet access: the skb's data starts at the IP header
/// on both hooks, and small datagrams are linear), with no helper call; a packet whose headers
/// are not all in the linear part goes through [`parse_peer_loaded`].
#[inline(always)]
fn parse_peer(ctx: &SkBuffContext, sk: *mut bpf_sock, egress: bool, protocol: u32) -> Option<Peer> {
    let udp = protocol == u32::from(IPPROTO_UDP);
    let ports = has_ports(sk, protocol);
    let skb = ctx.skb.skb;
    // SAFETY: ctx field reads; the verifier turns them into packet pointers.
    let (data, end) = unsafe { ((*skb).data as usize, (*skb).data_end as usize) };
    if data + 40 > end {
        return parse_peer_loaded(ctx, sk, egress, protocol);
    }
    let p = data as *const u8;
    // SAFETY: `data..data + 40` is within the packet (checked above).
    let first = unsafe { *p };
    let (addr, family, l4_off, ip_len) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let at = if egress { 16 } else { 12 };
            // SAFETY: within the 40 bytes checked above; unaligned reads of packet bytes.
            let (a, total) = unsafe { (p.add(at).cast::<u32>().read_unaligned(), [*p.add(2), *p.add(3)]) };
            ([a, 0, 0, 0], AF_INET, ihl, u64::from(u16::from_be_bytes(total)))
        }
        6 => {
            // SAFETY: within the 40 bytes checked above.
            let (next, payload) = unsafe { (*p.add(6), [*p.add(4), *p.add(5)]) };
            if ports && u32::from(next) != protocol {
                // Extension headers before the transport header: the slow path walks them.
                return parse_peer_loaded(ctx, sk, egress, protocol);
            }
            let at = if egress { 24 } else { 8 };
            let mut a = [0u32; 4];
            for (i, word) in a.iter_mut().enumerate() {
                // SAFETY: at most byte 40 of the 40 checked above; unaligned reads.
                *word = unsafe { p.add(at + 4 * i).cast::<u32>().read_unaligned() };
            }
            (a, AF_INET6, 40, 40 + u64::from(u16::from_be_bytes(payload)))
        }
        _ => return None,
    };
    if ports {
        // `l4_off` is at most 60: the verifier sees the bound of the 4-bit field.
        if data + l4_off + L4_PEEK > end {
            return parse_peer_loaded(ctx, sk, egress, protocol);
        }
        let h = (data + l4_off) as *const u8;
        // SAFETY: `h..h + 8` is within the packet (checked above).
        let head = unsafe { [*h, *h.add(1), *h.add(2), *h.add(3), *h.add(4), *h.add(5)] };
        return Some(peer_with_ports(addr, family, l4_off, ip_len, (udp, header_written(protocol)), egress, head));
    }
    let payload = payload_of(sk, egress, protocol, family, ip_len, l4_off as u64);
    Some(Peer { addr, port: 0, family, payload, l4_off: l4_off as u32 })
}

/// Whether the peer of a packet of `protocol` has a port: UDP, SCTP and UDP-Lite headers start
/// with source and destination ports, except on a raw socket, whose process writes (and reads)
/// the transport header as part of its payload (its peers are hosts, port 0).
#[inline(always)]
fn has_ports(sk: *mut bpf_sock, protocol: u32) -> bool {
    (protocol == u32::from(IPPROTO_UDP) || protocol == u32::from(IPPROTO_SCTP) || protocol == u32::from(IPPROTO_UDPLITE))
        // SAFETY: full-socket field read.
        && unsafe { (*sk).type_ } != SOCK_RAW
}

/// Bytes of the transport header that the kernel writes, not the process, for protocols whose
/// payload is the IP payload less that header: the 8 of UDP-Lite (on a datagram socket: raw
/// sockets have no ports, [`has_ports`]); 0 for SCTP, whose chunks count as payload.
#[inline(always)]
fn header_written(protocol: u32) -> u64 {
    if protocol == u32::from(IPPROTO_UDPLITE) { 8 } else { 0 }
}

/// The peer of a UDP, SCTP or UDP-Lite packet from the first six bytes of its transport header.
/// `(udp, header)`: UDP's payload is its length field less 8; the others' the IP payload less
/// `header` bytes ([`header_written`]).
#[inline(always)]
fn peer_with_ports(
    addr: [u32; 4],
    family: u16,
    l4_off: usize,
    ip_len: u64,
    (udp, header): (bool, u64),
    egress: bool,
    head: [u8; 6],
) -> Peer {
    let port = if egress { u16::from_be_bytes([head[2], head[3]]) } else { u16::from_be_bytes([head[0], head[1]]) };
    let payload = if udp {
        u64::from(u16::from_be_bytes([head[4], head[5]])).saturating_sub(8)
    } else {
        ip_len.saturating_sub(l4_off as u64).saturating_sub(header)
    };
    Peer { addr, port, family, payload, l4_off: l4_off as u32 }
}

/// [`parse_peer`] through `bpf_skb_load_bytes`, for headers outside the linear part.
#[inline(never)]
fn parse_peer_loaded(ctx: &SkBuffContext, sk: *mut bpf_sock, egress: bool, protocol: u32) -> Option<Peer> {
    let udp = protocol == u32::from(IPPROTO_UDP);
    let ports = has_ports(sk, protocol);
    let first: u8 = ctx.load(0).ok()?;
    let (addr, family, l4_off, ip_len) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20 {
                return None;
            }
            let a: u32 = ctx.load(if egress { 16 } else { 12 }).ok()?;
            let total: [u8; 2] = ctx.load(2).ok()?;
            ([a, 0, 0, 0], AF_INET, ihl, u64::from(u16::from_be_bytes(total)))
        }
        6 => {
            let next: u8 = ctx.load(6).ok()?;
            let l4_off =
                if ports && u32::from(next) != protocol { skip_ipv6_extensions(ctx, next, protocol)? } else { 40 };
            let a: [u32; 4] = ctx.load(if egress { 24 } else { 8 }).ok()?;
            let payload: [u8; 2] = ctx.load(4).ok()?;
            (a, AF_INET6, l4_off, 40 + u64::from(u16::from_be_bytes(payload)))
        }
        _ => return None,
    };
    if ports {
        // UDP, SCTP and UDP-Lite headers all start with the source and destination ports.
        let head: [u8; 6] = ctx.load(l4_off).ok()?;
        return Some(peer_with_ports(addr, family, l4_off, ip_len, (udp, header_written(protocol)), egress, head));
    }
    let payload = payload_of(sk, egress, protocol, family, ip_len, l4_off as u64);
    Some(Peer { addr, port: 0, family, payload, l4_off: l4_off as u32 })
}

/// Most IPv6 extension headers walked before the transport header (hop-by-hop, routing and
/// destination options, fragment, authentication).
const MAX_IPV6_EXTENSIONS: usize = 4;

/// Offset of the `protocol` header after the IPv6 extension headers that start with `next`, or
/// `None`: more than [`MAX_IPV6_EXTENSIONS`], an unknown header, a fragment after the first
/// (it carries no transport header), or a routing header with segments left (the destination
/// address is then a hop, not the peer). Off the common path: only packets with extension headers
/// call it (a function of its own, so the common path's code stays as it was).
#[inline(never)]
fn skip_ipv6_extensions(ctx: &SkBuffContext, mut next: u8, protocol: u32) -> Option<usize> {
    let mut off = 40usize;
    for _ in 0..MAX_IPV6_EXTENSIONS {
        let head: [u8; 4] = ctx.load(off).ok()?;
        let len = if next == IPV6_ROUTING && head[3] != 0 {
            // Segments left: the destination address is a hop on the way, not the peer.
            return None;
        } else if next == IPV6_HOP_BY_HOP || next == IPV6_ROUTING || next == IPV6_DEST_OPTS {
            (usize::from(head[1]) + 1) * 8
        } else if next == IPV6_FRAGMENT {
            // Fragment offset (13 bits, in 8-byte units) other than 0: no transport header.
            if u16::from_be_bytes([head[2], head[3]]) & 0xfff8 != 0 {
                return None;
            }
            8
        } else if next == IPV6_AUTH {
            (usize::from(head[1]) + 2) * 4
        } else {
            return None;
        };
        next = head[0];
        off += len;
        if u32::from(next) == protocol {
            return Some(off);
        }
    }
    None
}

/// IPv6 extension header numbers ([`skip_ipv6_extensions`]).
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;

/// What the application of a ping or raw socket wrote or read for one packet: the IP payload
/// (the ICMP message, or the data of the raw protocol), plus the IP header where the application
/// handles it itself: `IPPROTO_RAW` sockets send it, IPv4 raw sockets receive it. (Raw sockets of
/// another protocol that set `IP_HDRINCL` also send it; that option is invisible here, so such
/// sends count without it.) IPv6 extension headers count as payload.
#[inline(always)]
fn payload_of(sk: *mut bpf_sock, egress: bool, protocol: u32, family: u16, ip_len: u64, header: u64) -> u64 {
    // SAFETY: full-socket field read.
    let raw = unsafe { (*sk).type_ } == SOCK_RAW;
    if raw && ((egress && protocol == u32::from(IPPROTO_RAW)) || (!egress && family == AF_INET)) {
        ip_len
    } else {
        ip_len.saturating_sub(header)
    }
}

/// How long after the programs' load a datagram from a new peer of a socket older than the monitor
/// counts as the peer's first (an answer to what the socket sent before comes sooner).
const FIRST_IN_AFTER_NS: u64 = 1_000_000_000;

#[inline(always)]
fn same(slot: &PeerSlot, peer: &Peer) -> bool {
    slot.active != 0
        && slot.port == peer.port
        && slot.addr[0] == peer.addr[0]
        && slot.addr[1] == peer.addr[1]
        && slot.addr[2] == peer.addr[2]
        && slot.addr[3] == peer.addr[3]
}

/// Counts one packet of a socket counted per peer in its peer's slot. True at the socket's first
/// peer (the caller announces the socket).
#[inline(always)]
fn count_peer(ctx: &SkBuffContext, sk: *mut bpf_sock, c: &mut Counters, egress: bool, len: u64, protocol: u32) -> bool {
    let Some(peer) = parse_peer(ctx, sk, egress, protocol) else {
        stat(STAT_PEER_PARSE_FAIL, 1);
        return false;
    };
    // Only DNS and QUIC peers are candidates: other datagrams of an unconnected socket (a server
    // with many peers) skip the copy path after this comparison.
    if protocol == u32::from(IPPROTO_UDP)
        && (peer.port == 53 || (egress && peer.port == 443))
        && c.copy_state & COPY_STATE_DONE == 0
    {
        let local = tuple_of(sk);
        let tuple = Tuple { remote_addr: peer.addr, remote_port: peer.port, family: peer.family, ..local };
        super::copy::unconnected(ctx, sk, c, &tuple, peer.l4_off, egress);
    }
    // SAFETY: null-checked map value.
    let Some(table) = (unsafe { PEERS.get_or_create(sk.cast()).as_mut() }) else {
        stat(STAT_STORAGE_FAIL, 1);
        return false;
    };
    // Everything that calls a helper happens outside the lock (the verifier allows none inside).
    // SAFETY: a helper without arguments.
    let (now, boot) = (coarse_ns(), unsafe { bpf_ktime_get_boot_ns() });
    let interval = update_interval_ns();
    // At most one slot to report per packet, copied under the lock: the one a new peer evicted,
    // or the peer's own when its update is due (never a slot claimed now: its interval starts at
    // the claim). One copy on the stack, not two: the program's stack is tight.
    let mut report = PeerSlot::default();
    let mut kind = EventKind::PeerUpdate;
    // Who sent first is known for a socket seen from its creation. A socket older than the monitor
    // (or than its restart) may have sent before, unseen: a datagram that comes in within a second
    // of the programs' load may answer it. One that comes in from a new peer later did not: a UDP
    // server's new client sent first.
    let first_known = c.flags & COUNTER_DISCOVERED == 0 || elapsed_ns(boot, loaded_boot_ns()) >= FIRST_IN_AFTER_NS;
    let mut first_peer = false;
    lock(table);
    let mut index = find(table, &peer);
    let claimed = index == PEER_SLOTS;
    if claimed {
        index = claim(table, &peer, boot, now, &mut report);
        kind = EventKind::PeerEvicted;
        first_peer = table.generation == 1;
    }
    if let Some(slot) = table.slots.get_mut(index) {
        if egress {
            slot.bytes.wire_tx_bytes += len;
            slot.bytes.wire_tx_packets += 1;
            slot.bytes.app_tx_bytes += peer.payload;
        } else {
            slot.bytes.wire_rx_bytes += len;
            slot.bytes.wire_rx_packets += 1;
            slot.bytes.app_rx_bytes += peer.payload;
            if claimed && first_known {
                // Claimed by an incoming datagram: the peer sent first.
                slot.active |= SLOT_FIRST_IN;
            }
        }
        if !claimed && elapsed_ns(now, slot.last_report_ns) >= interval {
            slot.last_report_ns = now;
            report = *slot;
        }
    }
    unlock(table);
    if report.active != 0 {
        if claimed {
            stat(STAT_PEER_EVICTIONS, 1);
        }
        report_peer(ctx, sk, c, kind, &report);
    }
    first_peer
}

#[inline(always)]
pub(crate) fn lock(table: &mut PeerTable) {
    // SAFETY: the lock lives in a BTF-described map value; same layout as the kernel's.
    unsafe { bpf_spin_lock((&raw mut table.lock).cast()) };
}

#[inline(always)]
pub(crate) fn unlock(table: &mut PeerTable) {
    // SAFETY: as `lock`; called on every path after it.
    unsafe { bpf_spin_unlock((&raw mut table.lock).cast()) };
}

/// A copy of slot `i` of `table`, read under its lock (one slot at a time: copies of all of them
/// would not fit on the stack).
#[inline(always)]
pub(crate) fn slot_copy(table: &mut PeerTable, i: usize) -> PeerSlot {
    let mut slot = PeerSlot::default();
    lock(table);
    if let Some(s) = table.slots.get(i) {
        slot = *s;
    }
    unlock(table);
    slot
}

/// Emits one `kind` event for every open peer slot of a socket (at its release, or when its local
/// side changed), with `local` as the local side of each.
#[inline(always)]
pub(crate) fn emit_slots(
    sk: *mut c_void,
    kind: EventKind,
    cookie: u64,
    owner: *const Owner,
    local: &Tuple,
    flags: u32,
) {
    // SAFETY: non-null map value.
    let Some(table) = (unsafe { PEERS.get(sk, false).as_mut() }) else {
        return;
    };
    for i in 0..PEER_SLOTS {
        let slot = slot_copy(table, i);
        if slot.active != 0 {
            emit_peer(kind, cookie, owner, local, &slot, flags);
        }
    }
}

/// Index of the peer's slot, or `PEER_SLOTS`. Call with the lock held.
#[inline(always)]
fn find(table: &PeerTable, peer: &Peer) -> usize {
    let mut index = PEER_SLOTS;
    for i in 0..PEER_SLOTS {
        if let Some(slot) = table.slots.get(i)
            && same(slot, peer)
        {
            index = i;
            break;
        }
    }
    index
}

/// Takes a free slot, or the next victim (round robin), whose last state goes to `evicted` for
/// the caller to report after unlocking. Call with the lock held.
#[inline(always)]
fn claim(table: &mut PeerTable, peer: &Peer, boot: u64, now: u64, evicted: &mut PeerSlot) -> usize {
    let mut index = PEER_SLOTS;
    for i in 0..PEER_SLOTS {
        if let Some(slot) = table.slots.get(i)
            && slot.active == 0
        {
            index = i;
            break;
        }
    }
    if index == PEER_SLOTS {
        index = (table.victim as usize) % PEER_SLOTS;
        table.victim = table.victim.wrapping_add(1);
        if let Some(old) = table.slots.get(index) {
            *evicted = *old;
        }
    }
    table.generation += 1;
    let generation = table.generation;
    if let Some(slot) = table.slots.get_mut(index) {
        *slot = PeerSlot {
            addr: peer.addr,
            port: peer.port,
            family: peer.family,
            active: SLOT_ACTIVE,
            generation,
            first_ns: boot,
            last_report_ns: now,
            ..PeerSlot::default()
        };
    }
    index
}

/// The tuple of a peer flow: local side of the socket, remote side from the slot.
#[inline(always)]
pub(crate) fn peer_tuple(local: &Tuple, slot: &PeerSlot) -> Tuple {
    Tuple {
        local_addr: local.local_addr,
        local_port: local.local_port,
        remote_addr: slot.addr,
        remote_port: slot.port,
        family: slot.family,
        protocol: local.protocol,
    }
}

#[inline(always)]
fn report_peer(ctx: &SkBuffContext, sk: *mut bpf_sock, c: &Counters, kind: EventKind, slot: &PeerSlot) {
    // SAFETY: the context is an skb with a socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    emit_peer(kind, cookie, owner_with(c, sk.cast::<c_void>()), &tuple_of(sk), slot, c.raw_flag());
}

/// Emits the counters of one peer slot generation; `local` gives the socket's side, `flags` the
/// socket's own ([`Counters::raw_flag`]).
#[inline(always)]
pub(crate) fn emit_peer(kind: EventKind, cookie: u64, owner: *const Owner, local: &Tuple, slot: &PeerSlot, flags: u32) {
    let tuple = peer_tuple(local, slot);
    emit(
        kind,
        &EventData {
            cookie,
            flags: flags | slot.event_flags(),
            generation: slot.generation,
            first_ns: slot.first_ns,
            owner,
            tuple: &tuple,
            bytes: &raw const slot.bytes,
            tcp: TcpCounters::default(),
        },
    );
}
