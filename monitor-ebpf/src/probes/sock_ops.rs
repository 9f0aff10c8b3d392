//! `sockops`: TCP handshake and close.
//!
//! `ESTABLISHED` callbacks give the full 4-tuple, the baseline of the kernel's TCP byte counters
//! (with the handshake's RTT sample) and turn on state callbacks; the transition to `TCP_CLOSE` carries the final counters (it
//! comes after the FIN exchange, unlike `sock_release`) and the kernel's RTT estimates (smoothed and
//! windowed minimum, `srtt_us`/`rtt_min`): passive, read only in these callbacks. Accepted sockets already hold the
//! listener's owner (`BPF_F_CLONE`), copied into `OWNER` at `listen(2)`; they are marked
//! `COUNTER_INHERITED` so that their first read or write can charge them to the process that serves
//! them, if that is another one (see `payload`).
//!
//! `bytes_received` counts a received FIN. Whether one was received is tracked exactly: a FIN
//! in `ESTABLISHED` or `FIN_WAIT1` shows as a move to `CLOSE_WAIT`/`CLOSING`; for a FIN that
//! arrives in `FIN_WAIT2` (no state callback before `TCP_CLOSE`) the header callback is turned on
//! once this side has sent its FIN, so only the few closing segments of a connection pay for it.

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG, BPF_SOCK_OPS_PARSE_HDR_OPT_CB,
        BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG,
        BPF_SOCK_OPS_TCP_LISTEN_CB, BPF_TCP_CLOSE, BPF_TCP_CLOSE_WAIT, BPF_TCP_CLOSING, BPF_TCP_ESTABLISHED,
        BPF_TCP_FIN_WAIT1, BPF_TCP_FIN_WAIT2, BPF_TCP_SYN_RECV, bpf_sock,
    },
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_skc_to_tcp_sock},
    },
    macros::sock_ops,
    programs::SockOpsContext,
};
use monitor_common::{
    event::{
        EventKind, FLAG_NO_FILE, FLAG_PASSIVE, FLAG_RELEASED, FLAG_TCP_COUNTERS, TCP_ALL_ACKED, TCP_FIN_RECEIVED,
        TcpCounters,
    },
    sock::{
        COPY_STATE_DONE, COUNTER_CONNECTED, COUNTER_DISCOVERED, COUNTER_INHERITED, COUNTER_RELEASED, COUNTER_STATE_CB,
        COUNTER_TCP_CLOSED, OwnerSource,
    },
};

use super::{field, tuple_of};
use crate::maps::{COUNTERS, EventData, OWNER, emit, owner_with, set_bits, sk_socket_offset, socket_flags, stat};

/// `sock_ops` programs return 1; the value is ignored for these callbacks.
const SOCK_OPS_OK: u32 = 1;

/// # Minimum kernel version
/// 4.16 (`STATE_CB`, `bytes_acked`); SK_STORAGE in sock_ops 5.3; atomic fetch-or 5.12.
#[sock_ops]
pub fn sock_ops_tcp(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        // Failure only means no close callback; the release event then ends the flow.
        let state_cb = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32).is_ok();
        established(&ctx, op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, state_cb);
    } else if op == BPF_SOCK_OPS_STATE_CB {
        let new = ctx.arg(1);
        if new == BPF_TCP_CLOSE {
            closed(&ctx);
        } else if new == BPF_TCP_CLOSE_WAIT || new == BPF_TCP_CLOSING {
            fin_received(&ctx);
        } else if new == BPF_TCP_FIN_WAIT1 || new == BPF_TCP_FIN_WAIT2 {
            // Failure only means a FIN received in FIN_WAIT2 goes unnoticed (payload one byte high
            // when it comes from the TCP counters).
            let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG) as i32);
        }
    } else if op == BPF_SOCK_OPS_PARSE_HDR_OPT_CB && field!(ctx.ops, skb_tcp_flags) & TCPHDR_FIN != 0 {
        fin_received(&ctx);
    } else if op == BPF_SOCK_OPS_TCP_LISTEN_CB {
        listening(&ctx);
    }
    SOCK_OPS_OK
}

/// `listen(2)`: the owner `sock_create` recorded in the counters goes into the `OWNER` storage
/// too, which accepted sockets inherit (`BPF_F_CLONE`; counters are not cloned). One extra
/// storage per listening socket, none per connection.
///
/// The listener is announced (an `Update` with its counters): its packets (the handshakes it
/// receives) send an event only once an update interval is due, so one whose handshakes all came
/// within its first interval was known to the daemon only at its close, and its bytes were lost to
/// a daemon killed before that. Known, it is refreshed with the other idle flows.
#[inline(always)]
fn listening(ctx: &SockOpsContext) {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return;
    }
    // SAFETY: null-checked map values.
    let Some(c) = (unsafe { COUNTERS.get(sk.cast(), false).as_ref() }) else {
        // No `sock_create` for it: an MPTCP listener's subflow takes its connection's owner.
        super::mptcp::listening(sk.cast());
        return;
    };
    if c.owner.source == OwnerSource::Unknown as u8 {
        return; // created before the monitor: the daemon writes `OWNER` from /proc
    }
    // SAFETY: the context's socket; null-checked map value.
    match unsafe { OWNER.get_or_create(sk.cast()).as_mut() } {
        Some(owner) => *owner = c.owner,
        None => stat(monitor_common::maps::STAT_STORAGE_FAIL, 1),
    }
    announce_listener(ctx, sk, c);
}

/// The `Update` that makes a new listener known to the daemon (see [`listening`]). A lost one
/// (full ring buffer, counted) leaves the listener known at its first due update or its close,
/// as before. Off the common path.
#[inline(never)]
fn announce_listener(ctx: &SockOpsContext, sk: *mut bpf_sock, c: &monitor_common::sock::Counters) {
    let tuple = tuple_of(sk);
    let bytes = c.bytes();
    emit(
        EventKind::Update,
        &EventData {
            // SAFETY: the context is a sock_ops context.
            cookie: unsafe { bpf_get_socket_cookie(ctx.ops.cast()) },
            flags: socket_flags(c),
            generation: 0,
            first_ns: c.created_ns,
            owner: &raw const c.owner,
            tuple: &tuple,
            bytes: &raw const bytes,
            tcp: TcpCounters::default(),
        },
    );
}

/// FIN bit of the TCP header flags.
const TCPHDR_FIN: u32 = 1;

/// Marks the socket as having received the peer's FIN (only `sock_ops` writes `tcp_flags`; it
/// runs with the socket locked), and turns the header callback off: nothing after the FIN is
/// looked for, so the segments still to come (the ACK of this side's FIN) cost no callback.
#[inline(always)]
fn fin_received(ctx: &SockOpsContext) {
    let flags = ctx.cb_flags();
    if flags & BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG != 0 {
        // Failure only leaves the callback on (as before the FIN).
        let _ = ctx.set_cb_flags((flags & !BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG) as i32);
    }
    let sk = sock_of(ctx);
    if sk.is_null() {
        return;
    }
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { COUNTERS.get(sk.cast(), false).as_mut() } {
        c.tcp_flags |= TCP_FIN_RECEIVED as u8;
    }
}

/// Whether no `struct socket` holds `sk` (its `sk_socket` is null): a connection never accepted
/// (reset in the listener's queue, or forgotten when the listener closed: the kernel's
/// `inet_child_forget` closes it before orphaning it), or one whose release this program did not
/// see. Read only at a `TCP_CLOSE` not preceded by a release; false when the offset is unknown or
/// the read fails.
#[inline(always)]
fn without_file(sk: *mut bpf_sock) -> bool {
    let offset = sk_socket_offset();
    if offset == 0 {
        return false;
    }
    // SAFETY: a helper taking any socket pointer the verifier accepts; null for non-TCP sockets.
    let tp = unsafe { bpf_skc_to_tcp_sock(sk.cast()) };
    if tp.is_null() {
        return false;
    }
    // `struct tcp_sock` starts with `struct sock` (through `inet_connection_sock`, `inet_sock`).
    // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
    let socket = unsafe { bpf_probe_read_kernel(tp.cast::<u8>().wrapping_add(offset as usize).cast::<u64>()) };
    socket == Ok(0)
}

#[inline(always)]
fn sock_of(ctx: &SockOpsContext) -> *mut bpf_sock {
    // SAFETY: ctx field read (null-checked by callers).
    unsafe { (*ctx.ops).__bindgen_anon_2.sk }
}

#[inline(always)]
fn established(ctx: &SockOpsContext, passive: bool, state_cb: bool) {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return;
    }
    let mut counters = COUNTERS.get(sk.cast(), false);
    if counters.is_null() {
        // An MPTCP subflow (no `sock_create`, no counters) is part of its connection's flow.
        // SAFETY: the context is a sock_ops context.
        let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
        // Open only if its close will be seen and it is still being established (a join the
        // MPTCP socket refused is reset before the active side's callback; the passive side's
        // runs while still in SYN_RECV).
        let state = field!(ctx.ops, state);
        let open = state_cb && (state == BPF_TCP_ESTABLISHED || (passive && state == BPF_TCP_SYN_RECV));
        if super::mptcp::subflow_established(sk.cast(), cookie, passive, open) {
            return;
        }
        // Accepted sockets get their counters here (not cloned from the listener).
        counters = COUNTERS.get_or_create(sk.cast());
    }
    // SAFETY: non-null map value.
    let Some(c) = (unsafe { counters.as_mut() }) else {
        stat(monitor_common::maps::STAT_STORAGE_FAIL, 1);
        return;
    };
    if c.created_ns == 0 {
        // SAFETY: helpers without arguments.
        unsafe {
            c.created_ns = bpf_ktime_get_boot_ns();
            c.last_report_ns = bpf_ktime_get_coarse_ns();
        }
    }
    // A simultaneous open (both ends connect: a socket connected to its own address, TCP hole
    // punching) completes through the kernel's passive path: a socket that called `connect` is
    // the active side all the same (an accepted socket's counters are new here, without it).
    let passive = passive && c.flags & COUNTER_CONNECTED == 0;
    if passive {
        // The server side of a connection sends no ClientHello: nothing to copy for names
        // (`monitor_common::copy`), so its packets skip the copy checks from the first one.
        c.copy_state |= COPY_STATE_DONE;
    }
    let owner = owner_with(c, sk.cast());
    // Accepted from a listener nobody recorded (older than the monitor, not found at start):
    // the payload tracepoints record the owner at the first read or write, in its process.
    // Accepted with the listener's owner (its clone in `OWNER`): the first read or write tells
    // whether another process serves the connection (socket activation, a worker).
    let discovered = if owner.is_null() {
        COUNTER_DISCOVERED
    } else if passive && c.owner.source == OwnerSource::Unknown as u8 {
        COUNTER_INHERITED
    } else {
        0
    };
    // With the state callback on, `closed` reports `TCP_CLOSE` and `sock_release` may leave the
    // end of the flow to it. Atomic: `sock_release` sets its bit from the process's context.
    let bits = discovered | if state_cb { COUNTER_STATE_CB } else { 0 };
    if bits != 0 {
        set_bits(&raw mut c.flags, bits);
    }
    let tuple = tuple_of(sk);
    // SAFETY: the context is a sock_ops context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    // Baseline: the SYN (active side) and any handshake data are counted before this point.
    let tcp = TcpCounters {
        bytes_acked: field!(ctx.ops, bytes_acked),
        bytes_received: field!(ctx.ops, bytes_received),
        old_state: BPF_TCP_ESTABLISHED,
        flags: 0,
        srtt_us_x8: field!(ctx.ops, srtt_us),
        rtt_min_us: field!(ctx.ops, rtt_min),
    };
    let bytes = c.bytes();
    emit(
        EventKind::Established,
        &EventData {
            cookie,
            flags: FLAG_TCP_COUNTERS | if passive { FLAG_PASSIVE } else { 0 },
            generation: 0,
            first_ns: c.created_ns,
            owner,
            tuple: &tuple,
            bytes: &raw const bytes,
            tcp,
        },
    );
}

#[inline(always)]
fn closed(ctx: &SockOpsContext) {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return;
    }
    let counters = COUNTERS.get(sk.cast(), false);
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { counters.as_mut() }) else {
        super::mptcp::subflow_closed(sk, ctx.arg(0));
        return;
    };
    // Atomic, paired with `sock_release`: if the process released the socket already, it sent no
    // `Release` and this event ends the flow.
    let before = set_bits(&raw mut c.flags, COUNTER_TCP_CLOSED);
    if before & (COUNTER_RELEASED | COUNTER_STATE_CB) == COUNTER_RELEASED {
        // Released, and its `Release` ended the flow: this monitor never turned the state
        // callbacks on (a socket older than it, whose callbacks an earlier monitor's `sock_ops`
        // left on), so `sock_release` did not leave the end to this event. A second end would
        // be a second flow with the same bytes.
        return;
    }
    let released = if before & COUNTER_RELEASED != 0 {
        FLAG_RELEASED
    } else if without_file(sk) {
        FLAG_NO_FILE
    } else {
        0
    };
    let tuple = tuple_of(sk);
    let all_acked = field!(ctx.ops, snd_una) == field!(ctx.ops, snd_nxt);
    let fin = u32::from(c.tcp_flags) & TCP_FIN_RECEIVED;
    let mut tcp = TcpCounters {
        bytes_acked: field!(ctx.ops, bytes_acked),
        bytes_received: field!(ctx.ops, bytes_received),
        old_state: ctx.arg(0),
        flags: fin | if all_acked { TCP_ALL_ACKED } else { 0 },
        srtt_us_x8: field!(ctx.ops, srtt_us),
        rtt_min_us: field!(ctx.ops, rtt_min),
    };
    // What the process has taken so far: a socket its process released reads nothing more (what
    // it never took was discarded); one it still holds (a reset, both FINs) may read what waits,
    // which its release's reading then counts, or never will (a reset: the tracker's updates
    // while it waited for the release counted the unread bytes, and a total never goes back
    // down: an adversarial re-check).
    super::leave_out_unconsumed(sk, || field!(ctx.ops, rcv_nxt), &mut tcp);
    // SAFETY: a helper on the context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    let bytes = c.bytes();
    emit(
        EventKind::TcpClose,
        &EventData {
            cookie,
            flags: released,
            generation: 0,
            first_ns: c.created_ns,
            owner: owner_with(c, sk.cast()),
            tuple: &tuple,
            bytes: &raw const bytes,
            tcp,
        },
    );
}
