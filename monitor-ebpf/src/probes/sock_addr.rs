//! `cgroup/connect4|6`, `sendmsg4|6`, `recvmsg4|6`: syscall-context hooks.
//!
//! They run in the calling process, so they can record the exact owner of a socket created
//! before the monitor started. `connect` on a UDP socket also announces its remote address.

use core::ffi::c_void;

use aya_ebpf::{
    bindings::bpf_sock,
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns},
    macros::cgroup_sock_addr,
    programs::SockAddrContext,
};
use monitor_common::{
    AF_INET6, IPPROTO_TCP, IPPROTO_UDP,
    event::{EventKind, TcpCounters, Tuple},
    maps::FALLBACK_DISCOVER,
    sock::{COUNTER_CONNECTED, COUNTER_OWNER_RECORDED, COUNTER_PEERS, Counters, Owner, OwnerSource},
};

use super::{ALLOW, field, rebind, skb::emit_slots, tuple_of};
use crate::maps::{COUNTERS, EventData, OWNER, emit, fallback, owner_of, owner_with, record_owner, set_bits, stat};

#[inline(always)]
fn sock_of(ctx: &SockAddrContext) -> *mut bpf_sock {
    // SAFETY: ctx field read; the kernel always sets `sk` for these hooks.
    unsafe { (*ctx.sock_addr).__bindgen_anon_1.sk }
}

/// The owner of the socket, recorded now if the socket predates the monitor.
#[inline(always)]
fn lazy_owner(sk: *mut bpf_sock) -> *const Owner {
    let known = owner_of(sk.cast());
    // SAFETY: null-checked map value.
    if unsafe { known.as_ref() }.is_some_and(|o| o.source != OwnerSource::Unknown as u8) {
        return known;
    }
    // SAFETY: non-null map value.
    match unsafe { OWNER.get_or_create(sk.cast()).as_mut() } {
        Some(owner) => {
            if owner.source == OwnerSource::Unknown as u8 {
                record_owner(owner, OwnerSource::Syscall);
            }
            owner
        }
        None => {
            stat(monitor_common::maps::STAT_STORAGE_FAIL, 1);
            core::ptr::null()
        }
    }
}

#[inline(always)]
fn on_connect(ctx: &SockAddrContext, v6: bool) -> i32 {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return ALLOW;
    }
    let protocol = field!(ctx.sock_addr, protocol);
    let udp = protocol == u32::from(IPPROTO_UDP);
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { COUNTERS.get(sk.cast(), false).as_mut() } {
        // Connecting again after traffic: the flow so far ends with its old peer (the kernel has
        // not changed the destination yet), and the socket is counted per peer from now on. A
        // socket its process connected and then disconnected (`connect(AF_UNSPEC)`: its
        // destination port is 0 now, and no packet since told the packet path) has a connected
        // flow to end all the same; only a socket used unconnected so far has none.
        if udp && rebind::connected_udp(c, u32::from(IPPROTO_UDP)) && rebind::had_traffic(c) {
            // SAFETY: the context carries a socket.
            let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
            let connected = field!(sk, dst_port) != 0 || c.flags & COUNTER_CONNECTED != 0;
            rebind::change(cookie, sk, c, connected);
        }
        if udp {
            set_bits(&raw mut c.flags, COUNTER_CONNECTED);
        } else if protocol == u32::from(IPPROTO_TCP) {
            // Connecting again after an earlier connection or attempt with traffic (the kernel
            // runs this hook only for a closed, unconnected socket, so whatever the counters
            // hold belongs to an earlier connection, an attempt, or a listener's handshakes;
            // also for a socket older than the monitor): that flow ends here (`reconnect`), the
            // next one counts from zero.
            if rebind::had_traffic(c) {
                // SAFETY: the context carries a socket.
                let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
                super::reconnect::end_previous(cookie, sk, c);
            }
            // TCP: the destination port is kept for the release, in case the connection never
            // establishes (a refused blocking `connect` clears the socket's own), and its events
            // say outbound. No event.
            c.connect_port = u16::from_be(field!(ctx.sock_addr, user_port) as u16);
            set_bits(&raw mut c.flags, COUNTER_CONNECTED);
        }
        // Counted per peer: no `Connect` (its counters are the peers'); the owner of a socket
        // older than the monitor is still recorded, for the peers' events.
        if c.flags & COUNTER_PEERS != 0 {
            let _: *const c_void = lazy_owner(sk).cast();
            local_moved(ctx, sk, c);
            return ALLOW;
        }
        // A socket with counters from its creation has its owner (one lookup, nothing to
        // record). A UDP one notes the connection in its counters and its events say so
        // (`FLAG_CONNECTED`): the remote address is the socket's own from then on. No event.
        if c.owner.source != OwnerSource::Unknown as u8 {
            return ALLOW;
        }
    }
    let owner = lazy_owner(sk);
    if !udp {
        return ALLOW; // TCP: the `Established` event carries the full 4-tuple
    }
    let mut tuple = tuple_of(sk);
    let sa = ctx.sock_addr;
    // connect4 may only read `user_ip4`, connect6 only `user_ip6` (`v6` is a constant per program).
    tuple.remote_port = u16::from_be(field!(sa, user_port) as u16);
    if v6 {
        tuple.remote_addr =
            [field!(sa, user_ip6[0]), field!(sa, user_ip6[1]), field!(sa, user_ip6[2]), field!(sa, user_ip6[3])];
        tuple.family = AF_INET6;
    } else {
        tuple.remote_addr = [field!(sa, user_ip4), 0, 0, 0];
    }
    let mut counters = COUNTERS.get(sk.cast(), false);
    if counters.is_null() && fallback(FALLBACK_DISCOVER) {
        // No sock_create hook: the socket gets its counters here (its address follows at the
        // first send, in the payload tracepoint).
        counters = COUNTERS.get_or_create(sk.cast());
        // SAFETY: null-checked map value.
        if let Some(c) = unsafe { counters.as_mut() } {
            // SAFETY: helpers without arguments.
            unsafe {
                c.created_ns = bpf_ktime_get_boot_ns();
                c.last_report_ns = bpf_ktime_get_coarse_ns();
            }
            c.flags |= COUNTER_OWNER_RECORDED;
        }
    }
    // SAFETY: the context carries a socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    // SAFETY: null-checked map value.
    let first_ns = unsafe { counters.as_ref() }.map_or(0, |c| c.created_ns);
    emit(
        EventKind::Connect,
        &EventData {
            cookie,
            flags: 0,
            generation: 0,
            first_ns,
            owner,
            tuple: &tuple,
            bytes: counters.cast_const().cast(),
            tcp: TcpCounters::default(),
        },
    );
    ALLOW
}

/// `sendmsg` naming an address: on a connected UDP socket, an address other than its peer
/// changes the socket's peer ([`rebind`]). Runs only for sends that name an address.
#[inline(always)]
fn on_sendmsg(ctx: &SockAddrContext, v6: bool) -> i32 {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return ALLOW;
    }
    // SAFETY: null-checked map value.
    let counters = unsafe { COUNTERS.get(sk.cast(), false).as_mut() };
    // The owner: in the counters of a socket created under the monitor (no second lookup), else
    // recorded now.
    if counters.as_ref().is_none_or(|c| c.owner.source == OwnerSource::Unknown as u8) {
        let _: *const c_void = lazy_owner(sk).cast();
    }
    let Some(c) = counters else {
        return ALLOW;
    };
    // Unconnected (every send names an address): only whether its local side moved, for a socket
    // counted per peer (flagged, or never connected). One its process connected and then
    // disconnected ends its connected flow at its next packet, with the local side its counters
    // still hold (`rebind::disconnected`).
    let dst_port = field!(sk, dst_port);
    if dst_port == 0 {
        if c.flags & (COUNTER_PEERS | COUNTER_CONNECTED) != COUNTER_CONNECTED {
            local_moved(ctx, sk, c);
        }
        return ALLOW;
    }
    let sa = ctx.sock_addr;
    if !rebind::connected_udp(c, field!(sa, protocol)) {
        return ALLOW;
    }
    // sendmsg4 may only read `user_ip4`, sendmsg6 only `user_ip6` (`v6` is a constant per program).
    let other = if v6 {
        field!(sa, user_ip6[0]) != field!(sk, dst_ip6[0])
            || field!(sa, user_ip6[1]) != field!(sk, dst_ip6[1])
            || field!(sa, user_ip6[2]) != field!(sk, dst_ip6[2])
            || field!(sa, user_ip6[3]) != field!(sk, dst_ip6[3])
    } else {
        field!(sa, user_ip4) != field!(sk, dst_ip4)
    };
    if other || field!(sa, user_port) as u16 != dst_port {
        // SAFETY: the context carries a socket.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
        let traffic = rebind::had_traffic(c);
        rebind::change(cookie, sk, c, traffic);
    }
    ALLOW
}

/// A socket counted per peer whose local side is no longer the one its packets showed: after
/// `connect(AF_UNSPEC)` gave up an automatic port (a send binds a new one before this hook runs; a
/// `connect` finds port 0) or reset the source address. Its open peer slots are reported now, with
/// the local side they were claimed with, so that a peer flow keeps the address it was first seen
/// with although none of its events left before the change (its first one would otherwise carry
/// the new port). Costs a compare per named send of a socket counted per peer (every reply of a UDP
/// server); the slots are read only when the side changed.
#[inline(always)]
fn local_moved(ctx: &SockAddrContext, sk: *mut bpf_sock, c: &mut Counters) {
    let now = tuple_of(sk);
    if c.local_port == 0 || (now.local_port == c.local_port && now.local_addr == c.local_addr) {
        return;
    }
    let old = Tuple { local_addr: c.local_addr, local_port: c.local_port, ..now };
    // SAFETY: the context carries a socket.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.sock_addr.cast()) };
    emit_slots(sk.cast(), EventKind::PeerUpdate, cookie, owner_with(c, sk.cast()), &old, c.raw_flag());
    // The new side from now on (a `connect` finds port 0: its first packet records it), so the
    // next send does not report the slots again.
    super::remember_local(sk, c);
}

#[inline(always)]
fn on_msg(ctx: &SockAddrContext) -> i32 {
    let sk = sock_of(ctx);
    if !sk.is_null() {
        let _: *const c_void = lazy_owner(sk).cast();
    }
    ALLOW
}

/// # Minimum kernel version
/// 5.7 (pid/comm helpers in `cgroup_sock_addr`).
#[cgroup_sock_addr(connect4)]
pub fn sock_addr_connect4(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, false)
}

/// # Minimum kernel version
/// 5.7.
#[cgroup_sock_addr(connect6)]
pub fn sock_addr_connect6(ctx: SockAddrContext) -> i32 {
    on_connect(&ctx, true)
}

/// # Minimum kernel version
/// 5.7.
#[cgroup_sock_addr(sendmsg4)]
pub fn sock_addr_sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sendmsg(&ctx, false)
}

/// # Minimum kernel version
/// 5.7.
#[cgroup_sock_addr(sendmsg6)]
pub fn sock_addr_sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sendmsg(&ctx, true)
}

/// Must return 1 (the kernel rejects other values for recvmsg hooks).
///
/// # Minimum kernel version
/// 5.7.
#[cgroup_sock_addr(recvmsg4)]
pub fn sock_addr_recvmsg4(ctx: SockAddrContext) -> i32 {
    on_msg(&ctx)
}

/// Must return 1.
///
/// # Minimum kernel version
/// 5.7.
#[cgroup_sock_addr(recvmsg6)]
pub fn sock_addr_recvmsg6(ctx: SockAddrContext) -> i32 {
    on_msg(&ctx)
}
