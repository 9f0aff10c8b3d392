//! Program entry points, one file per hook family.

pub(crate) mod calibrate;
pub(crate) mod copy;
pub(crate) mod fallback;
pub(crate) mod getaddrinfo;
pub(crate) mod mptcp;
pub(crate) mod payload;
pub(crate) mod rebind;
pub(crate) mod reconnect;
pub(crate) mod skb;
pub(crate) mod snapshot;
pub(crate) mod sock;
pub(crate) mod sock_addr;
pub(crate) mod sock_ops;

use aya_ebpf::{bindings::bpf_sock, helpers::generated::bpf_skc_to_tcp_sock};
use monitor_common::{
    AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP,
    event::{TCP_CONSUMED, TCP_FIN_RECEIVED, TcpCounters, Tuple},
    sock::Counters,
};

/// Leaves what the kernel received and the process has not taken (`rcv_nxt − copied_seq`:
/// queued, or discarded by a close with unread data; whatever path the process read the rest
/// by) out of `tcp.bytes_received`, which then counts what the process consumed
/// (`TCP_CONSUMED`). A received FIN (`tcp.flags`) stays counted: it is the last sequence number,
/// so unread bytes leave it unread too. One helper call and one load through the BTF pointer to
/// the `tcp_sock`, at a TCP socket's updates and the close of a released one; nothing when the
/// offset is unknown (`TCP_COPIED_SEQ_OFFSET`). `rcv_nxt` reads the socket's `rcv_nxt`.
#[inline(always)]
pub(crate) fn leave_out_unconsumed(sk: *mut bpf_sock, rcv_nxt: impl Fn() -> u32, tcp: &mut TcpCounters) {
    let offset = crate::maps::tcp_copied_seq_offset();
    if offset == 0 {
        return;
    }
    // SAFETY: a helper taking any socket pointer the verifier accepts; null for non-TCP sockets.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk.cast()) };
    if tp.is_null() {
        return;
    }
    // SAFETY: a load at a BTF offset of `struct tcp_sock` from a BTF pointer to one: the verifier
    // checks it against the kernel's types.
    let copied = unsafe { core::ptr::read_volatile(tp.cast::<u8>().wrapping_add(offset as usize).cast::<u32>()) };
    // The peer's FIN, which `bytes_received` counts as a byte, also where no `sock_ops` of this
    // monitor saw it (a socket older than every run: its state callbacks were never on; an
    // adversarial re-check: a splice reader's update after its EOF read one byte high, and its
    // total could not go back down). `SOCK_DONE` in `sk_flags` (`__sk_common`, which a
    // `tcp_sock` starts with): set by the FIN only, not by a reset.
    let flags_at = crate::maps::sk_flags_offset();
    if flags_at != 0 {
        // SAFETY: as above, a load at a BTF offset within the `tcp_sock`.
        let flags = unsafe { core::ptr::read_volatile(tp.cast::<u8>().wrapping_add(flags_at as usize).cast::<u64>()) };
        if flags & SOCK_DONE != 0 {
            tcp.flags |= TCP_FIN_RECEIVED;
        }
    }
    // Read after `copied_seq`: both only grow and `copied_seq` never passes `rcv_nxt`, so an
    // unlocked reading (the packet path runs before the socket's lock) is never negative; one
    // that is anyway (wrapped) is no reading.
    leave_out(rcv_nxt().wrapping_sub(copied), tcp);
}

/// `SOCK_DONE` in `enum sock_flags` (include/net/sock.h), a bit of `sk_flags`: `tcp_fin` sets it.
pub(crate) const SOCK_DONE: u64 = 1 << 1;

/// Leaves `unread` (`rcv_nxt - copied_seq`, wrapping) out of `tcp.bytes_received` and marks the
/// counters `TCP_CONSUMED` (see [`leave_out_unconsumed`]).
#[inline(always)]
pub(crate) fn leave_out(unread: u32, tcp: &mut TcpCounters) {
    if unread > i32::MAX as u32 {
        return;
    }
    let mut unread = unread;
    if tcp.flags & TCP_FIN_RECEIVED != 0 && unread > 0 {
        unread -= 1; // the FIN: counted in `bytes_received`, never read as data
    }
    // A read position past what was received would be a broken read: keep the kernel's count.
    if u64::from(unread) <= tcp.bytes_received {
        tcp.bytes_received -= u64::from(unread);
        tcp.flags |= TCP_CONSUMED;
    }
}

/// Return value of cgroup programs that lets the operation (or packet) through. `0` would deny
/// the socket or DROP the packet; no program of the monitor ever returns it.
pub(crate) const ALLOW: i32 = 1;

/// True for the sockets the monitor tracks: every IPv4 and IPv6 socket (TCP, UDP, ping sockets,
/// raw sockets of any protocol, SCTP).
#[inline(always)]
pub(crate) fn tracked(family: u32) -> bool {
    family == u32::from(AF_INET) || family == u32::from(AF_INET6)
}

/// True when a socket's traffic is counted per peer (remote address read from each packet):
/// unconnected UDP (no destination port), and every socket that is neither TCP nor UDP (ping,
/// raw and SCTP sockets: the kernel runs `sendmsg` hooks for UDP only, `connect` hooks for ping
/// sockets but not raw ones, and one socket may talk to many hosts), a UDP socket whose peer
/// changed ([`rebind`]: `COUNTER_PEERS` in `flags`), and every raw socket, of TCP and UDP too
/// (`COUNTER_RAW`). A TCP socket's packets pay two comparisons.
#[inline(always)]
pub(crate) fn per_peer(protocol: u32, dst_port: u32, flags: u64) -> bool {
    (protocol != u32::from(IPPROTO_TCP)
        && (protocol != u32::from(IPPROTO_UDP) || dst_port == 0 || flags & monitor_common::sock::COUNTER_PEERS != 0))
        || flags & monitor_common::sock::COUNTER_RAW != 0
}

/// Reads one context field. Volatile, and every field read unconditionally, so LLVM never
/// turns two branches into one load through a computed context pointer (which the verifier
/// rejects: "dereference of modified ctx ptr").
macro_rules! field {
    ($sk:expr, $($f:tt)+) => {
        // SAFETY: `$sk` is a context or full-socket pointer, checked non-null by the caller.
        unsafe { core::ptr::read_volatile(&raw const (*$sk).$($f)+) }
    };
}
pub(crate) use field;

/// Remote address words: IPv6 as is, IPv4 in word 0.
#[inline(always)]
fn pick(family: u16, v4: u32, v6: [u32; 4]) -> [u32; 4] {
    if family == AF_INET6 { v6 } else { [v4, 0, 0, 0] }
}

/// Copies the local address of a full socket into counters that have none yet (an MPTCP
/// connection: the first subflow's, whichever subflows follow).
#[inline(always)]
pub(crate) fn remember_first_local(sk: *const bpf_sock, counters: &mut Counters) {
    if counters.local_port == 0 {
        remember_local(sk, counters);
    }
}

/// Remote address and port of a socket as `cgroup/sock_release` may read them (the kernel refuses
/// source-field reads there); the local side comes from the counters.
#[inline(always)]
pub(crate) fn release_tuple(sk: *const bpf_sock, counters: &Counters) -> Tuple {
    let family = field!(sk, family) as u16;
    let dst4 = field!(sk, dst_ip4);
    let dst6 = [field!(sk, dst_ip6[0]), field!(sk, dst_ip6[1]), field!(sk, dst_ip6[2]), field!(sk, dst_ip6[3])];
    let protocol = field!(sk, protocol);
    let mut remote_port = u16::from_be(field!(sk, dst_port));
    // A TCP connection that never established and lost its destination port (a refused blocking
    // `connect` disconnects the socket, which keeps its destination address): the port the
    // `connect` hook kept.
    if remote_port == 0 && protocol == u32::from(IPPROTO_TCP) {
        remote_port = counters.connect_port;
    }
    Tuple {
        family,
        protocol: protocol as u16,
        local_addr: counters.local_addr,
        local_port: counters.local_port,
        remote_addr: pick(family, dst4, dst6),
        remote_port,
    }
}

/// Copies the local address of a full socket into its counters (`cgroup/sock_release` cannot
/// read it), and again when it changed: a UDP socket connected after unconnected use gets its
/// source address then, one disconnected with `connect(AF_UNSPEC)` a new port at its next send.
/// An unbound socket (port 0) keeps the one it had.
#[inline(always)]
pub(crate) fn remember_local(sk: *const bpf_sock, counters: &mut Counters) {
    let port = field!(sk, src_port) as u16;
    if port == 0 {
        return;
    }
    let family = field!(sk, family) as u16;
    let src6 = [field!(sk, src_ip6[0]), field!(sk, src_ip6[1]), field!(sk, src_ip6[2]), field!(sk, src_ip6[3])];
    let addr = pick(family, field!(sk, src_ip4), src6);
    if port != counters.local_port || addr != counters.local_addr {
        counters.local_addr = addr;
        counters.local_port = port;
    }
}

/// Addresses and ports of a full socket.
#[inline(always)]
pub(crate) fn tuple_of(sk: *const bpf_sock) -> Tuple {
    let family = field!(sk, family) as u16;
    let src4 = field!(sk, src_ip4);
    let src6 = [field!(sk, src_ip6[0]), field!(sk, src_ip6[1]), field!(sk, src_ip6[2]), field!(sk, src_ip6[3])];
    let dst4 = field!(sk, dst_ip4);
    let dst6 = [field!(sk, dst_ip6[0]), field!(sk, dst_ip6[1]), field!(sk, dst_ip6[2]), field!(sk, dst_ip6[3])];
    Tuple {
        family,
        protocol: field!(sk, protocol) as u16,
        local_addr: pick(family, src4, src6),
        local_port: field!(sk, src_port) as u16,
        remote_addr: pick(family, dst4, dst6),
        remote_port: u16::from_be(field!(sk, dst_port)),
    }
}
