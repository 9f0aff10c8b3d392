//! `tp_btf/sock_send_length` and `tp_btf/sock_recv_length`: payload bytes per socket.
//!
//! The kernel fires these after every `sendmsg`/`recvmsg` on any socket (write(2), sendfile,
//! io_uring included), with the byte count the process got back. Only sockets that carry our
//! `COUNTERS` storage (i.e. watched ones) are counted; everything else costs one failed lookup.
//! They run in the process that reads or writes, so they also record the exact owner of sockets
//! created before the monitor started (first syscall after their discovery) and of accepted
//! connections another process than the listener's serves (first syscall), and they count the
//! frames watched processes send through `AF_PACKET` sockets, which no other hook sees.
//! When the kernel refused `sock_create` (netd), they also discover sockets ([`super::fallback`]).

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_get_current_pid_tgid, bpf_get_socket_cookie},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use monitor_common::{
    AF_PACKET,
    event::{EventKind, FLAG_PASSIVE},
    maps::{FALLBACK_DISCOVER, FALLBACK_EVERY_CALL, STAT_UNATTRIBUTED_BYTES, STAT_UNATTRIBUTED_PACKETS},
    sock::{
        COUNTER_ANNOUNCED, COUNTER_DISCOVERED, COUNTER_INHERITED, COUNTER_MPTCP, COUNTER_OWNER_RECORDED, OwnerSource,
    },
};

use crate::maps::{COUNTERS, OWNER, add, current_task_watched, fallback_bits, record_owner, stat};

/// `MSG_PEEK`: data looked at, not consumed.
const MSG_PEEK: i32 = 2;
/// `MSG_ERRQUEUE`: a read of the socket's error queue (ICMP errors, transmit timestamps,
/// zero-copy completions), whose data are copies of what the socket itself sent, not bytes
/// from the peer.
const MSG_ERRQUEUE: i32 = 0x2000;

/// Offset of `skc_family` in `struct sock` (`struct sock_common` comes first: an 8-byte address
/// pair, a 4-byte hash and two 2-byte port hashes precede it; unchanged since Linux 2.6). The
/// verifier checks the read against the kernel's BTF, so a different layout fails at load.
const SKC_FAMILY_OFFSET: usize = 16;

/// A frame written to an `AF_PACKET` socket by a watched process: it leaves without passing any
/// cgroup socket or packet hook (those run for IPv4/IPv6 sockets only), so it is counted here as
/// unattributed traffic: one packet per `sendmsg`, the bytes the process wrote (link-layer header
/// included for `SOCK_RAW` packet sockets).
#[inline(always)]
fn packet_socket_send(sk: *mut c_void, ret: i32) {
    // SAFETY: `sk` is the tracepoint's `struct sock *` (BTF-typed, non-null); the verifier checks
    // this read against the kernel's `struct sock`.
    let family = unsafe { core::ptr::read_volatile(sk.cast::<u8>().add(SKC_FAMILY_OFFSET).cast::<u16>()) };
    if family == AF_PACKET && current_task_watched() {
        stat(STAT_UNATTRIBUTED_PACKETS, 1);
        stat(STAT_UNATTRIBUTED_BYTES, ret as u64);
    }
}

#[inline(always)]
fn count(ctx: &BtfTracePointContext, tx: bool) {
    let sk: *mut c_void = ctx.arg(0);
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if sk.is_null() || ret <= 0 || (!tx && flags & (MSG_PEEK | MSG_ERRQUEUE) != 0) {
        return;
    }
    let mut counters = COUNTERS.get(sk, false);
    // One array lookup per call: whether the fallback hook set is on (see `fallback`).
    let bits = fallback_bits();
    let fallback_on = bits & FALLBACK_DISCOVER != 0;
    if counters.is_null() {
        if fallback_on {
            counters = super::fallback::discover(sk);
        }
        if counters.is_null() && tx {
            packet_socket_send(sk, ret);
        }
    }
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { counters.as_mut() } {
        let dst = if tx { &raw mut c.app_tx_bytes } else { &raw mut c.app_rx_bytes };
        add(dst, ret as u64);
        let owner_bits = c.flags & (COUNTER_DISCOVERED | COUNTER_INHERITED | COUNTER_OWNER_RECORDED);
        if owner_bits == COUNTER_DISCOVERED {
            // SAFETY: null-checked map value.
            if let Some(owner) = unsafe { OWNER.get(sk, true).as_mut() }
                && owner.source == OwnerSource::Unknown as u8
            {
                record_owner(owner, OwnerSource::Syscall);
            }
            // Atomic: `sock_ops` and `sock_release` set their bits from other contexts.
            crate::maps::set_bits(&raw mut c.flags, COUNTER_OWNER_RECORDED);
        } else if owner_bits == COUNTER_INHERITED {
            // The first read or write of an accepted connection: charged to this process if it
            // is not the listener's owner (the socket's own clone of it: the listener keeps its),
            // or runs another program than the one that made the listener (a launcher that
            // listens and execs the server, a server that re-execs itself: an adversarial pass
            // found such connections charged to the launcher).
            // SAFETY: null-checked map value.
            if let Some(owner) = unsafe { OWNER.get(sk, false).as_mut() }
                // SAFETY: helper without arguments.
                && ((unsafe { bpf_get_current_pid_tgid() } >> 32) as u32 != owner.tgid
                    || another_program(owner.exec_mark))
            {
                record_owner(owner, OwnerSource::FirstIo);
                // At once, not at the next update or the close: the daemon reads the process
                // from /proc while it lives (a service started per connection may not outlive it).
                // SAFETY: a BTF socket pointer.
                let cookie = unsafe { bpf_get_socket_cookie(sk) };
                super::fallback::emit_traced(EventKind::Update, sk, c, cookie, FLAG_PASSIVE);
            }
            crate::maps::set_bits(&raw mut c.flags, COUNTER_OWNER_RECORDED);
        }
        if c.flags & (COUNTER_MPTCP | COUNTER_ANNOUNCED) == COUNTER_MPTCP {
            super::mptcp::announce(sk, c);
        }
        if fallback_on {
            super::fallback::after_count(sk, c, bits & FALLBACK_EVERY_CALL != 0);
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

/// Whether the current task runs another program than the one of mark `recorded` (both known).
#[inline(always)]
fn another_program(recorded: [u8; 3]) -> bool {
    if recorded == [0; 3] {
        return false;
    }
    let now = crate::maps::current_exec_mark();
    now != [0; 3] && now != recorded
}
