//! Multipath TCP. The process holds an MPTCP socket (`IPPROTO_MPTCP`); the kernel carries its
//! bytes over TCP subflows it creates itself (`sock_create_kern`: no `sock_create` hook and no
//! `sock_release` hook runs for them, later ones are made by the path manager in a kernel worker,
//! and an MPTCP-level retransmission sends data again on a subflow). So the flow is the MPTCP
//! socket: payload as the process wrote and read it (the payload tracepoints), wire bytes of all
//! its subflows, counted into its counters here (`COUNTER_MPTCP`); the subflows have no counters
//! and no flows of their own. The packet path cannot name the MPTCP socket in an event (its
//! cookie helper takes the packet's socket), so the first read or write announces the flow
//! ([`announce`]). The flow ends when both the process released the socket and its last subflow
//! reached `TCP_CLOSE` (data still queued at `close()` goes out after the release), whichever
//! comes last ([`end`]); subflow packets after that are unattributed bytes.
//!
//! Needs `bpf_skc_to_mptcp_sock` (Linux 5.19): with `MPTCP_SUBFLOWS` 0 (older kernels) every call
//! is in a branch the verifier drops, and subflows are counted as TCP sockets of their own.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{__sk_buff, BPF_TCP_LISTEN, BPF_TCP_NEW_SYN_RECV, BPF_TCP_SYN_RECV, BPF_TCP_SYN_SENT, bpf_sock},
    helpers::generated::{
        bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_skc_to_mptcp_sock,
    },
};
use monitor_common::{
    IPPROTO_MPTCP, IPPROTO_TCP,
    event::{EventKind, FLAG_PASSIVE, TcpCounters, Tuple},
    maps::{FALLBACK_DISCOVER, STAT_STORAGE_FAIL, STAT_UNATTRIBUTED_BYTES, STAT_UNATTRIBUTED_PACKETS},
    sock::{
        COPY_STATE_DONE, COUNTER_ANNOUNCED, COUNTER_DISCOVERED, COUNTER_MPTCP, COUNTER_MPTCP_ACTIVE,
        COUNTER_MPTCP_ENDED, COUNTER_MPTCP_PASSIVE, COUNTER_RELEASED, Counters, OwnerSource,
    },
};

use crate::maps::{
    COUNTERS, EventData, OWNER, add, emit, fallback, mptcp_subflows, owner_of, owner_with, set_bits, set_bits_ordered,
    stat,
};

/// Counts a packet (`skb`) of an MPTCP subflow `sk` (a TCP socket without counters) into its MPTCP
/// socket's counters. False when `sk` is no subflow.
#[inline(never)]
pub(crate) fn count_subflow(skb: *mut __sk_buff, sk: *mut bpf_sock, egress: bool, len: u64) -> bool {
    // SAFETY: full-socket field read.
    if !mptcp_subflows() || unsafe { (*sk).protocol } != u32::from(IPPROTO_TCP) {
        return false;
    }
    let msk = connection_of(sk.cast());
    if msk.is_null() {
        return false;
    }
    // SAFETY: null-checked map value; the cookie helper gets the packet's own context pointer.
    let c = match unsafe { connection_counters(msk, || bpf_get_socket_cookie(skb.cast())).as_mut() } {
        Some(c) if c.flags & COUNTER_MPTCP_ENDED == 0 => c,
        // No counters (storage failed, counted), or the flow's last event is sent: the bytes are
        // counted, as bytes no flow carries.
        _ => {
            stat(STAT_UNATTRIBUTED_PACKETS, 1);
            stat(STAT_UNATTRIBUTED_BYTES, len);
            return true;
        }
    };
    super::skb::add_packet(c, egress, len);
    super::remember_first_local(sk, c);
    true
}

/// `ESTABLISHED` of a TCP socket without counters: when it is an MPTCP subflow, records which
/// side its connection is on, counts it as open when `open` (still established, and its
/// `TCP_CLOSE` will be seen), and returns true (it gets no counters and no events of its own).
#[inline(always)]
pub(crate) fn subflow_established(sk: *mut c_void, cookie: u64, passive: bool, open: bool) -> bool {
    let msk = connection_of(sk);
    if msk.is_null() {
        return false;
    }
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { connection_counters(msk, || cookie).as_mut() } {
        if open {
            add(&raw mut c.subflows, 1);
        }
        // The flow's cookie is set once, by the first hook that can name it: here a subflow's (a
        // TCP child's cookie is its own, while an accepted MPTCP socket may carry its
        // listener's, which the kernel copies when it clones the listener).
        if c.cookie == 0 {
            c.cookie = cookie;
        }
        // The first subflow decides the side.
        if c.flags & (COUNTER_MPTCP_PASSIVE | COUNTER_MPTCP_ACTIVE) == 0 {
            set_bits_ordered(&raw mut c.flags, if passive { COUNTER_MPTCP_PASSIVE } else { COUNTER_MPTCP_ACTIVE });
        }
    }
    true
}

/// `TCP_CLOSE` of a TCP socket without counters: when it is an MPTCP subflow, its connection has
/// one open subflow fewer, and the last one ends a connection the process released.
#[inline(always)]
pub(crate) fn subflow_closed(sk: *mut bpf_sock, old_state: u32) {
    let msk = connection_of(sk.cast());
    if msk.is_null() {
        return;
    }
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { COUNTERS.get(msk, false).as_mut() }) else { return };
    // Only a subflow that reached ESTABLISHED was counted open (a handshake that failed was not).
    if matches!(old_state, BPF_TCP_SYN_SENT | BPF_TCP_SYN_RECV | BPF_TCP_LISTEN | BPF_TCP_NEW_SYN_RECV) {
        return;
    }
    // Taken from atomically, then read with fully ordered fetches (the compiler's BPF target
    // has no fetching add): two subflows closing at once may both read none open; `end` sends
    // once. Paired with `released`, which sets its bit before it reads the count.
    add(&raw mut c.subflows, u64::MAX);
    let open = set_bits_ordered(&raw mut c.subflows, 0);
    let flags = set_bits_ordered(&raw mut c.flags, 0);
    if none_open(open) && flags & COUNTER_RELEASED != 0 {
        // Announced: the addresses are left out, userspace keeps those it knew (a later
        // subflow's are not the connection's). Else this subflow's are the best known.
        let mut tuple = Tuple { protocol: IPPROTO_MPTCP, ..Tuple::default() };
        if flags & COUNTER_ANNOUNCED == 0 {
            tuple = super::tuple_of(sk);
            tuple.protocol = IPPROTO_MPTCP;
        }
        end(msk, c, &tuple);
    }
}

/// No subflow open: zero, or below zero (a subflow established before the monitor, whose close
/// was counted but not its start).
#[inline(always)]
fn none_open(subflows: u64) -> bool {
    subflows == 0 || subflows > u64::MAX / 2
}

/// The process released its MPTCP socket (`sock_release`): ends the flow now unless a subflow is
/// still open (the last one's `TCP_CLOSE` ends it).
#[inline(always)]
pub(crate) fn released(sk: *mut bpf_sock, cookie: u64, c: &mut Counters) {
    if c.cookie == 0 {
        c.cookie = cookie; // no subflow established (a listener, a failed connect)
    }
    // Ordered after the cookie and before the count is read (paired with `subflow_closed`).
    set_bits_ordered(&raw mut c.flags, COUNTER_RELEASED);
    let tuple = super::release_tuple(sk, c);
    if none_open(set_bits_ordered(&raw mut c.subflows, 0)) {
        end(sk.cast(), c, &tuple);
    }
}

/// Sends the `Release` that ends an MPTCP socket's flow, once (whoever sets
/// `COUNTER_MPTCP_ENDED` first).
#[inline(never)]
fn end(msk: *mut c_void, c: &mut Counters, tuple: &Tuple) {
    if set_bits(&raw mut c.flags, COUNTER_MPTCP_ENDED) & COUNTER_MPTCP_ENDED != 0 {
        return;
    }
    let bytes = c.bytes();
    emit(
        EventKind::Release,
        &EventData {
            cookie: c.cookie,
            flags: 0,
            generation: 0,
            first_ns: c.created_ns,
            owner: owner_with(c, msk),
            tuple,
            bytes: &raw const bytes,
            tcp: TcpCounters::default(),
        },
    );
}

/// A listening subflow (an MPTCP listener's): the owner of its MPTCP socket goes into that
/// socket's `OWNER` storage and the subflow's, which the sockets they accept inherit
/// (`BPF_F_CLONE`).
#[inline(always)]
pub(crate) fn listening(sk: *mut c_void) {
    let msk = connection_of(sk);
    if msk.is_null() {
        return;
    }
    // SAFETY: null-checked map value.
    let Some(owner) = (unsafe { owner_of(msk).as_ref() }) else { return };
    let owner = *owner;
    // Also the listening subflow's, which plain TCP connections (clients without MPTCP) are
    // cloned from, as from a TCP listener.
    for sock in [msk, sk] {
        // SAFETY: null-checked map value.
        if let Some(slot) = unsafe { OWNER.get_or_create(sock).as_mut() } {
            *slot = owner;
        }
    }
}

/// At the first read or write of an MPTCP socket (a payload tracepoint, in its process): tells
/// userspace about its flow, with its owner and addresses, once: `Established` for a connection
/// whose side is known (`FLAG_PASSIVE` when accepted), else `Discovered` (its subflows were
/// established before the monitor).
#[inline(never)]
pub(crate) fn announce(sk: *mut c_void, c: &mut Counters) {
    let flags = set_bits_ordered(&raw mut c.flags, COUNTER_ANNOUNCED);
    if flags & COUNTER_ANNOUNCED != 0 {
        return;
    }
    if c.cookie == 0 {
        // No subflow established yet (data sent with the SYN, TCP fast open): its own.
        // SAFETY: a BTF socket pointer.
        c.cookie = unsafe { bpf_get_socket_cookie(sk) };
    }
    let cookie = c.cookie;
    // A socket `sock_create` saw whose side is not known yet is connecting (an accepted one
    // comes from the kernel, with its subflow established).
    let created = c.owner.source == OwnerSource::SockCreate as u8;
    let (kind, passive) = if flags & COUNTER_MPTCP_PASSIVE != 0 {
        (EventKind::Established, FLAG_PASSIVE)
    } else if flags & COUNTER_MPTCP_ACTIVE != 0 || created {
        (EventKind::Established, 0)
    } else {
        (EventKind::Discovered, 0)
    };
    super::fallback::emit_traced(kind, sk, c, cookie, passive);
}

/// The counters of MPTCP socket `msk`, made for one the kernel accepted (no `sock_create`: its
/// owner is the listener's, in `OWNER`, else the process that first reads or writes it, as for a
/// discovered socket). Null when storage fails (counted).
#[inline(always)]
fn connection_counters(msk: *mut c_void, subflow_cookie: impl FnOnce() -> u64) -> *mut Counters {
    let counters = COUNTERS.get(msk, false);
    if !counters.is_null() {
        return counters;
    }
    let counters = COUNTERS.get(msk, true);
    // SAFETY: null-checked map value.
    match unsafe { counters.as_mut() } {
        Some(c) => {
            // SAFETY: helpers without arguments.
            unsafe {
                c.created_ns = bpf_ktime_get_boot_ns();
                c.last_report_ns = bpf_ktime_get_coarse_ns();
            }
            // Named by a subflow's cookie from the start (its own may be its listener's).
            c.cookie = subflow_cookie();
            c.copy_state |= COPY_STATE_DONE;
            set_bits(&raw mut c.flags, COUNTER_MPTCP | COUNTER_DISCOVERED);
        }
        None => stat(STAT_STORAGE_FAIL, 1),
    }
    counters
}

/// The MPTCP socket whose subflow `sk` is, or null (not a subflow, or a kernel without the
/// helper: the call is then in a branch the verifier drops).
#[inline(always)]
fn connection_of(sk: *mut c_void) -> *mut c_void {
    // Without the packet path (the fallback hook set) the subflows are not seen: the MPTCP socket
    // is counted as any socket there.
    if !mptcp_subflows() || sk.is_null() || fallback(FALLBACK_DISCOVER) {
        return core::ptr::null_mut();
    }
    // SAFETY: a helper taking any socket pointer the verifier accepts; null for other sockets.
    unsafe { bpf_skc_to_mptcp_sock(sk).cast() }
}
