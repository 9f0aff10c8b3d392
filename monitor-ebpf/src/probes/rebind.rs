//! UDP sockets whose peer changes.
//!
//! A connected UDP socket is counted in its socket counters, charged to its destination. When
//! the peer changes, those counters would be charged to the wrong address (or lost), so the
//! socket's connected flow ends there and the socket is counted per peer from then on
//! (`COUNTER_PEERS`):
//! - `connect()` again, to any address, after traffic (`cgroup/connect4|6`, which runs before the
//!   kernel changes the destination: the flow ends with its old peer);
//! - `sendto()` another address while connected (`cgroup/sendmsg4|6`, which runs only for sends
//!   that name an address);
//! - `connect(AF_UNSPEC)` (no hook runs): found at the socket's next packet, whose destination
//!   port is 0 although the process had connected; the old peer is gone from the socket, so the
//!   event carries none and userspace keeps the address it knew;
//! - `connect()` after unconnected use: the socket already counts per peer; the flag keeps it so.
//!
//! The flow's counters are taken with atomic exchanges (the socket's counters start again from
//! zero) after the flag is set, so a packet on another CPU in that instant is counted twice at
//! most, never lost. With the ring buffer full the flow's counters are dropped with the event
//! (counted as lost, as every lost event is), and the socket is counted per peer all the same.

use core::intrinsics::{AtomicOrdering, atomic_xchg};

use aya_ebpf::{bindings::bpf_sock, helpers::generated::bpf_ktime_get_boot_ns};
use monitor_common::{
    IPPROTO_UDP,
    event::{Event, EventKind, FLAG_NO_OWNER, TcpCounters},
    maps::{STAT_EVENTS, STAT_RINGBUF_FULL},
    sock::{COUNTER_CONNECTED, COUNTER_PEERS, Counters, Owner},
};

use super::tuple_of;
use crate::maps::{EVENTS, owner_with, set_bits, socket_flags, stat};

/// True when the socket has carried packets or payload (a flow to end; payload alone where the
/// packet programs are not attached).
#[inline(always)]
pub(crate) fn had_traffic(c: &Counters) -> bool {
    c.wire_tx_packets + c.wire_rx_packets + c.app_tx_bytes + c.app_rx_bytes > 0
}

/// True for a UDP socket not yet counted per peer.
#[inline(always)]
pub(crate) fn connected_udp(c: &Counters, protocol: u32) -> bool {
    protocol == u32::from(IPPROTO_UDP) && c.flags & COUNTER_PEERS == 0
}

/// A connected socket that lost its destination without a hook (`connect(AF_UNSPEC)`): the
/// process connected it, its destination port is now 0, and it is not yet counted per peer.
#[inline(always)]
pub(crate) fn disconnected(c: &Counters, protocol: u32, dst_port: u32) -> bool {
    protocol == u32::from(IPPROTO_UDP)
        && dst_port == 0
        && c.flags & (COUNTER_CONNECTED | COUNTER_PEERS) == COUNTER_CONNECTED
}

/// Counts the socket per peer from now on and, with `end_flow` (it was connected and carried
/// packets), ends its connected flow: a `PeerChanged` event with the counters so far and the
/// socket's current remote address (the old peer; zero after a disconnect). Off the common path;
/// the event is written straight into the ring buffer (the caller's stack is nearly full).
#[inline(never)]
pub(crate) fn change(cookie: u64, sk: *mut bpf_sock, c: &mut Counters, end_flow: bool) {
    if !end_flow {
        set_bits(&raw mut c.flags, COUNTER_PEERS);
        return;
    }
    stat(STAT_EVENTS, 1);
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        // The ring buffer is full: the flow's counters are dropped with the event, counted as
        // lost (kept, they would be counted again with the peers, or charged to the new peer).
        stat(STAT_RINGBUF_FULL, 1);
        if set_bits(&raw mut c.flags, COUNTER_PEERS) & COUNTER_PEERS == 0 {
            for counter in [
                &raw mut c.wire_tx_bytes,
                &raw mut c.wire_tx_packets,
                &raw mut c.wire_rx_bytes,
                &raw mut c.wire_rx_packets,
                &raw mut c.app_tx_bytes,
                &raw mut c.app_rx_bytes,
            ] {
                take(counter);
            }
        }
        return;
    };
    if set_bits(&raw mut c.flags, COUNTER_PEERS) & COUNTER_PEERS != 0 {
        entry.discard(0); // another CPU ended the flow
        return;
    }
    let ev = entry.as_mut_ptr();
    let owner = owner_with(c, sk.cast());
    // SAFETY: `ev` points at a reservation of size_of::<Event>(); every field is written. The
    // owner is a null-checked map value.
    unsafe {
        (*ev).kind = EventKind::PeerChanged as u32;
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).cookie = cookie;
        (*ev).generation = 0;
        (*ev).first_ns = c.created_ns;
        (*ev).flags = socket_flags(c);
        if owner.is_null() {
            (*ev).owner = Owner::default();
            (*ev).flags |= FLAG_NO_OWNER;
        } else {
            (*ev).owner = *owner;
        }
        // The old peer, and the flow's own local address: the socket may have a new port
        // already (the first send after `connect(AF_UNSPEC)` binds one; `remember_local`
        // records it after this event).
        (*ev).tuple = tuple_of(sk);
        if c.local_port != 0 {
            (*ev).tuple.local_addr = c.local_addr;
            (*ev).tuple.local_port = c.local_port;
        }
        (*ev).bytes.wire_tx_bytes = take(&raw mut c.wire_tx_bytes);
        (*ev).bytes.wire_tx_packets = take(&raw mut c.wire_tx_packets);
        (*ev).bytes.wire_rx_bytes = take(&raw mut c.wire_rx_bytes);
        (*ev).bytes.wire_rx_packets = take(&raw mut c.wire_rx_packets);
        (*ev).bytes.app_tx_bytes = take(&raw mut c.app_tx_bytes);
        (*ev).bytes.app_rx_bytes = take(&raw mut c.app_rx_bytes);
        (*ev).tcp = TcpCounters::default();
    }
    entry.submit(0);
}

#[inline(always)]
fn take(counter: *mut u64) -> u64 {
    // SAFETY: callers pass pointers into a map value returned by the kernel.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::Relaxed }>(counter, 0) }
}
