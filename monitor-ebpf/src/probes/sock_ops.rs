//! `sockops`: TCP handshake and close.
//!
//! `ESTABLISHED` callbacks give the full 4-tuple and turn on state callbacks; the transition to
//! `TCP_CLOSE` carries the final wire counters (it comes after the FIN exchange, unlike
//! `sock_release`). Accepted sockets already hold the listener's owner (`BPF_F_CLONE`).

use aya_ebpf::{
    bindings::{
        BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB, BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB,
        BPF_SOCK_OPS_STATE_CB, BPF_SOCK_OPS_STATE_CB_FLAG, BPF_TCP_CLOSE, bpf_sock,
    },
    helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns},
    macros::sock_ops,
    programs::SockOpsContext,
};
use monitor_common::{
    event::{EventKind, FLAG_PASSIVE, TcpCounters},
    sock::COUNTER_DISCOVERED,
};

use super::tuple_of;
use crate::maps::{COUNTERS, EventData, emit, owner_of, stat};

/// `sock_ops` programs return 1; the value is ignored for these callbacks.
const SOCK_OPS_OK: u32 = 1;

/// # Minimum kernel version
/// 4.16 (`STATE_CB`, `bytes_acked`); SK_STORAGE in sock_ops 5.3.
#[sock_ops]
pub fn sock_ops_tcp(ctx: SockOpsContext) -> u32 {
    let op = ctx.op();
    if op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB || op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        // Failure only means no close callback; the release event still ends the flow.
        let _ = ctx.set_cb_flags((ctx.cb_flags() | BPF_SOCK_OPS_STATE_CB_FLAG) as i32);
        established(&ctx, op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB);
    } else if op == BPF_SOCK_OPS_STATE_CB && ctx.arg(1) == BPF_TCP_CLOSE {
        closed(&ctx);
    }
    SOCK_OPS_OK
}

#[inline(always)]
fn sock_of(ctx: &SockOpsContext) -> *mut bpf_sock {
    // SAFETY: ctx field read (null-checked by callers).
    unsafe { (*ctx.ops).__bindgen_anon_2.sk }
}

#[inline(always)]
fn established(ctx: &SockOpsContext, passive: bool) {
    let sk = sock_of(ctx);
    if sk.is_null() {
        return;
    }
    // Accepted sockets get their counters here (not cloned from the listener).
    let counters = COUNTERS.get(sk.cast(), true);
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
    let owner = owner_of(sk.cast());
    if owner.is_null() {
        // Accepted from a listener nobody recorded (older than the monitor, not found at start):
        // the payload tracepoints record the owner at the first read or write, in its process.
        c.flags |= COUNTER_DISCOVERED;
    }
    let tuple = tuple_of(sk);
    // SAFETY: the context is a sock_ops context.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.ops.cast()) };
    emit(
        EventKind::Established,
        &EventData {
            cookie,
            flags: if passive { FLAG_PASSIVE } else { 0 },
            generation: 0,
            first_ns: c.created_ns,
            owner,
            tuple: &tuple,
            bytes: &raw const c.bytes,
            tcp: TcpCounters::default(),
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
    let Some(c) = (unsafe { counters.as_ref() }) else {
        return;
    };
    let tuple = tuple_of(sk);
    // SAFETY: ctx field reads and a helper on the context.
    let (cookie, tcp) = unsafe {
        (
            bpf_get_socket_cookie(ctx.ops.cast()),
            TcpCounters {
                bytes_acked: (*ctx.ops).bytes_acked,
                bytes_received: (*ctx.ops).bytes_received,
                old_state: ctx.arg(0),
                _pad: 0,
            },
        )
    };
    emit(
        EventKind::TcpClose,
        &EventData {
            cookie,
            flags: 0,
            generation: 0,
            first_ns: c.created_ns,
            owner: owner_of(sk.cast()),
            tuple: &tuple,
            bytes: &raw const c.bytes,
            tcp,
        },
    );
}
