//! `tp_btf/sock_send_length` and `tp_btf/sock_recv_length`: payload bytes per socket.
//!
//! The kernel fires these after every `sendmsg`/`recvmsg` on any socket (write(2), sendfile,
//! io_uring included), with the byte count the process got back. Only sockets that carry our
//! `COUNTERS` storage (i.e. watched ones) are counted; everything else costs one failed lookup.
//! They run in the process that reads or writes, so they also record the exact owner of sockets
//! created before the monitor started (first syscall after their discovery).

use core::ffi::c_void;

use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use monitor_common::sock::{COUNTER_DISCOVERED, COUNTER_OWNER_RECORDED, OwnerSource};

use crate::maps::{COUNTERS, OWNER, add, record_owner};

/// `MSG_PEEK`: data looked at, not consumed.
const MSG_PEEK: i32 = 2;

#[inline(always)]
fn count(ctx: &BtfTracePointContext, tx: bool) {
    let sk: *mut c_void = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if sk.is_null() || ret <= 0 || (!tx && flags & MSG_PEEK != 0) {
        return;
    }
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { COUNTERS.get(sk, false).as_mut() } {
        let dst = if tx { &raw mut c.bytes.app_tx_bytes } else { &raw mut c.bytes.app_rx_bytes };
        add(dst, ret as u64);
        if c.flags & (COUNTER_DISCOVERED | COUNTER_OWNER_RECORDED) == COUNTER_DISCOVERED {
            // SAFETY: null-checked map value.
            if let Some(owner) = unsafe { OWNER.get(sk, true).as_mut() }
                && owner.source == OwnerSource::Unknown as u32
            {
                record_owner(owner, OwnerSource::Syscall);
            }
            c.flags |= COUNTER_OWNER_RECORDED;
        }
    }
}

/// # Minimum kernel version
/// 6.3 (tracepoint `sock:sock_send_length`); needs kernel BTF.
#[btf_tracepoint(function = "sock_send_length")]
pub fn tp_sock_send_length(ctx: BtfTracePointContext) -> i32 {
    count(&ctx, true);
    0
}

/// # Minimum kernel version
/// 6.3 (tracepoint `sock:sock_recv_length`); needs kernel BTF.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn tp_sock_recv_length(ctx: BtfTracePointContext) -> i32 {
    count(&ctx, false);
    0
}
