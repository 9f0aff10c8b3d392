//! TCP sockets that connect again: after `connect(AF_UNSPEC)` ended a connection, or after a
//! refused or failed attempt, the same socket connects to another (or the same) destination.
//!
//! Each connection is a flow of its own. At the new `connect()` (`cgroup/connect4|6`, which runs
//! before the kernel starts the connection; no packet of the earlier one can follow, the socket
//! is closed), the earlier flow ends with a `Reconnect` event carrying its counters, taken with
//! atomic exchanges (the socket's counters start again from zero), its local address and its
//! remote one. What belonged to the earlier connection is reset: its local address (the next one
//! is learnt at its first packet), its state-callback and close bits, its FIN bits and its
//! payload copying. Every connection's flow keeps the socket's creation time as its first
//! sighting (the owner's pid is checked against it).
//! With the ring buffer full the counters are dropped with the event (counted as lost, as every
//! lost event is): kept, they would be charged to the next destination.

use core::intrinsics::{AtomicOrdering, atomic_and, atomic_xchg};

use aya_ebpf::bindings::bpf_sock;
use monitor_common::{
    event::{EventKind, FLAG_CLOSE_SENT, TcpCounters},
    sock::{ByteCounters, COUNTER_STATE_CB, COUNTER_TCP_CLOSED, Counters},
};

use super::release_tuple;
use crate::maps::{EventData, emit, owner_with, socket_flags};

/// Ends the earlier flow of TCP socket `sk` (`cookie`, counters `c`) and resets what belonged to
/// it. Off the common path.
#[inline(never)]
pub(crate) fn end_previous(cookie: u64, sk: *mut bpf_sock, c: &mut Counters) {
    let mut tuple = release_tuple(sk, c);
    if tuple.remote_addr == [0; 4] {
        // Forgotten by the kernel: userspace keeps the address it knew (port 0: no address).
        tuple.remote_port = 0;
    }
    let bytes = ByteCounters {
        wire_tx_bytes: take(&raw mut c.wire_tx_bytes),
        wire_tx_packets: take(&raw mut c.wire_tx_packets),
        wire_rx_bytes: take(&raw mut c.wire_rx_bytes),
        wire_rx_packets: take(&raw mut c.wire_rx_packets),
        app_tx_bytes: take(&raw mut c.app_tx_bytes),
        app_rx_bytes: take(&raw mut c.app_rx_bytes),
    };
    let close_sent = if c.flags & COUNTER_TCP_CLOSED != 0 { FLAG_CLOSE_SENT } else { 0 };
    emit(
        EventKind::Reconnect,
        &EventData {
            cookie,
            flags: socket_flags(c) | close_sent,
            generation: 0,
            // The socket's creation, for every connection of it (userspace checks a reused pid
            // against it).
            first_ns: c.created_ns,
            owner: owner_with(c, sk.cast()),
            tuple: &tuple,
            bytes: &raw const bytes,
            tcp: TcpCounters::default(),
        },
    );
    c.local_addr = [0; 4];
    c.local_port = 0;
    c.tcp_flags = 0;
    c.copy_state = 0;
    // SAFETY: a pointer into a map value returned by the kernel.
    unsafe {
        atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut c.flags, !(COUNTER_TCP_CLOSED | COUNTER_STATE_CB));
    }
}

#[inline(always)]
fn take(counter: *mut u64) -> u64 {
    // SAFETY: callers pass pointers into a map value returned by the kernel.
    unsafe { atomic_xchg::<u64, { AtomicOrdering::Relaxed }>(counter, 0) }
}
