//! The fallback hook set, for hosts where an exclusive cgroup program (Android's netd attaches
//! `cgroup_skb`, `inet/create`, `inet_release` and, from Android 15, the sock_addr hooks to the
//! cgroup root with flags 0) makes the kernel refuse ours of the same types.
//!
//! Tracing programs are not cgroup programs, so nothing blocks them:
//! - the payload tracepoints ([`super::payload`]) give a watched IPv4/IPv6 socket without counters
//!   its counters and owner at its first read or write (they run in the calling process) and
//!   report it, then send periodic `Update`s (there is no packet path to do it);
//! - `fentry/inet_release` stands in for `cgroup/sock_release` (every IPv4 and IPv6 socket,
//!   `inet6_release` included, goes through `inet_release`).
//!
//! The tracepoints see a BTF `struct sock *`, not a `bpf_sock`: addresses are read with
//! `bpf_probe_read_kernel` at the offsets of `struct sock_common`. The first five fields have not
//! moved since Linux 2.6; the IPv6 addresses and `sk_protocol` depend on the kernel's
//! configuration, so userspace reads their offsets from kernel BTF and sets them at load time.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_ktime_get_ns},
    },
    macros::fentry,
    programs::FEntryContext,
};
use monitor_common::{
    AF_INET6, IPPROTO_TCP, IPPROTO_UDP,
    event::{EventKind, TcpCounters, Tuple},
    sock::{
        COUNTER_CONNECTED, COUNTER_OWNER_RECORDED, COUNTER_RELEASED, COUNTER_STATE_CB, COUNTER_TCP_CLOSED, Counters,
        OwnerSource,
    },
};

use super::tracked;
use crate::maps::{
    COUNTERS, EventData, OWNER, current_task_watched, emit, owner_with, record_owner, set_bits, sock_offsets,
    socket_flags, stat, update_interval_ns,
};

/// `skc_daddr`, `skc_rcv_saddr`, `skc_dport` (network order), `skc_num` (host order) and
/// `skc_family` in `struct sock_common`, which starts `struct sock`.
const SKC_DADDR: usize = 0;
const SKC_RCV_SADDR: usize = 4;
const SKC_DPORT: usize = 12;
const SKC_NUM: usize = 14;
const SKC_FAMILY: usize = 16;

/// Offset of `sk` in `struct socket` (`state`, `type`, `flags`, `file` precede it since Linux 5.3).
/// Read directly, so the verifier checks it against the kernel's BTF: on a kernel where it is
/// not `sk`, the program fails to load (and the monitor reports it) instead of misreading.
const SOCKET_SK: usize = 24;

/// Reads a `T` at `offset` in the kernel object `base`; zero when the read fails.
#[inline(always)]
fn read<T: Default>(base: *const c_void, offset: usize) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
    unsafe { bpf_probe_read_kernel(base.cast::<u8>().wrapping_add(offset).cast::<T>()) }.unwrap_or_default()
}

/// Family of a BTF socket.
#[inline(always)]
pub(crate) fn family_of(sk: *const c_void) -> u16 {
    read::<u16>(sk, SKC_FAMILY)
}

/// Protocol of a BTF socket (0 when its offset is unknown).
#[inline(always)]
fn protocol_of(sk: *const c_void) -> u16 {
    let (_, _, offset) = sock_offsets();
    if offset == 0 { 0 } else { read::<u16>(sk, offset as usize) }
}

/// Addresses, ports and protocol of a BTF socket.
#[inline(always)]
pub(crate) fn sock_tuple(sk: *const c_void) -> Tuple {
    let (v6_daddr, v6_saddr, _) = sock_offsets();
    let family = family_of(sk);
    let (local_addr, remote_addr) = if family == AF_INET6 && v6_daddr != 0 && v6_saddr != 0 {
        (read::<[u32; 4]>(sk, v6_saddr as usize), read::<[u32; 4]>(sk, v6_daddr as usize))
    } else {
        ([read::<u32>(sk, SKC_RCV_SADDR), 0, 0, 0], [read::<u32>(sk, SKC_DADDR), 0, 0, 0])
    };
    Tuple {
        family,
        protocol: protocol_of(sk),
        local_addr,
        local_port: read::<u16>(sk, SKC_NUM),
        remote_addr,
        remote_port: u16::from_be(read::<u16>(sk, SKC_DPORT)),
    }
}

/// A watched IPv4/IPv6 socket without counters, seen by a payload tracepoint in the process that
/// reads or writes it: gives it counters and an owner (this process, unless one is recorded) and
/// reports it, as `Connect` for connected UDP, else `Discovered`. Null when the socket is not
/// watched or storage fails.
#[inline(always)]
pub(crate) fn discover(sk: *mut c_void) -> *mut Counters {
    if !tracked(u32::from(family_of(sk))) || !current_task_watched() {
        return core::ptr::null_mut();
    }
    let counters = COUNTERS.get_or_create(sk);
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { counters.as_mut() }) else {
        stat(monitor_common::maps::STAT_STORAGE_FAIL, 1);
        return counters;
    };
    // SAFETY: helpers without arguments.
    unsafe {
        c.created_ns = bpf_ktime_get_boot_ns();
        c.last_report_ns = bpf_ktime_get_ns();
    }
    c.flags |= COUNTER_OWNER_RECORDED;
    // SAFETY: null-checked map value.
    let owner = match unsafe { OWNER.get_or_create(sk).as_mut() } {
        Some(owner) => {
            if owner.source == OwnerSource::Unknown as u8 {
                record_owner(owner, OwnerSource::Syscall);
            }
            core::ptr::from_ref(owner)
        }
        None => {
            stat(monitor_common::maps::STAT_STORAGE_FAIL, 1);
            core::ptr::null()
        }
    };
    let tuple = sock_tuple(sk);
    c.local_addr = tuple.local_addr;
    c.local_port = tuple.local_port;
    let kind = if tuple.protocol == IPPROTO_UDP && tuple.remote_port != 0 {
        // Connected by its process (as at discovery on the packet path, see `skb`).
        c.flags |= COUNTER_CONNECTED;
        EventKind::Connect
    } else {
        EventKind::Discovered
    };
    let bytes = c.bytes();
    let data = EventData {
        // SAFETY: a BTF socket pointer.
        cookie: unsafe { bpf_get_socket_cookie(sk) },
        flags: 0,
        generation: 0,
        first_ns: c.created_ns,
        owner,
        tuple: &tuple,
        bytes: &raw const bytes,
        tcp: TcpCounters::default(),
    };
    emit(kind, &data);
    counters
}

/// After a payload tracepoint counted: remembers the local address once it is bound, and sends
/// the periodic `Update` the packet path would send; with `every_call` (no release hook) also
/// after every call on a non-TCP socket or a TCP socket past `TCP_CLOSE`, so that the socket's
/// last event carries its final counters.
#[inline(always)]
pub(crate) fn after_count(sk: *mut c_void, c: &mut Counters, every_call: bool) {
    if c.local_port == 0 {
        let tuple = sock_tuple(sk);
        c.local_addr = tuple.local_addr;
        c.local_port = tuple.local_port;
    }
    // CLOCK_MONOTONIC like the coarse clock of the cgroup programs, which tracing programs may
    // not call. SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let due = now.wrapping_sub(c.last_report_ns) >= update_interval_ns()
        || (every_call && (c.flags & COUNTER_TCP_CLOSED != 0 || protocol_of(sk) != IPPROTO_TCP));
    if !due {
        return;
    }
    c.last_report_ns = now;
    // SAFETY: a BTF socket pointer.
    let cookie = unsafe { bpf_get_socket_cookie(sk) };
    emit_traced(EventKind::Update, sk, c, cookie, socket_flags(c));
}

/// Sends `kind` for socket `sk` seen by a tracing program: its addresses read from the socket,
/// its owner and counters from `c`.
#[inline(always)]
pub(crate) fn emit_traced(kind: EventKind, sk: *mut c_void, c: &Counters, cookie: u64, flags: u32) {
    let tuple = sock_tuple(sk);
    let bytes = c.bytes();
    let data = EventData {
        cookie,
        flags,
        generation: 0,
        first_ns: c.created_ns,
        owner: owner_with(c, sk),
        tuple: &tuple,
        bytes: &raw const bytes,
        tcp: TcpCounters::default(),
    };
    emit(kind, &data);
}

/// Final payload counters when the process releases a socket, in place of `cgroup/sock_release`,
/// with its rule for TCP: the socket is marked released, and the `TCP_CLOSE` event ends the flow
/// when the state callback will send one. Peers of a socket counted per peer are not flushed here
/// (without the packet path there are none).
///
/// # Minimum kernel version
/// 5.11 (`bpf_sk_storage_get` in tracing programs); BPF trampolines (x86_64 5.5, arm64 6.0).
#[fentry(function = "inet_release")]
pub fn fentry_inet_release(ctx: FEntryContext) -> i32 {
    let sock: *const c_void = ctx.arg(0);
    if sock.is_null() {
        return 0;
    }
    // SAFETY: a BTF-checked read of `sock->sk` (see SOCKET_SK).
    let sk = unsafe { core::ptr::read_volatile(sock.cast::<u8>().add(SOCKET_SK).cast::<*mut c_void>()) };
    if sk.is_null() {
        return 0;
    }
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { COUNTERS.get(sk, false).as_mut() }) else {
        return 0; // not watched, or never seen
    };
    // As `sock_release` does: a TCP socket whose `TCP_CLOSE` `sock_ops` will report (it stays
    // attached on these hosts) ends with that event, which then carries `FLAG_RELEASED`; if
    // `TCP_CLOSE` came first, its event expects this `Release`. Atomic, paired with `sock_ops`.
    if protocol_of(sk) == IPPROTO_TCP {
        let before = set_bits(&raw mut c.flags, COUNTER_RELEASED);
        if before & (COUNTER_STATE_CB | COUNTER_TCP_CLOSED) == COUNTER_STATE_CB {
            return 0;
        }
    }
    let mut tuple = sock_tuple(sk);
    if tuple.local_port == 0 {
        tuple.local_addr = c.local_addr;
        tuple.local_port = c.local_port;
    }
    let bytes = c.bytes();
    let data = EventData {
        // SAFETY: a BTF socket pointer.
        cookie: unsafe { bpf_get_socket_cookie(sk) },
        flags: socket_flags(c),
        generation: 0,
        first_ns: c.created_ns,
        owner: owner_with(c, sk),
        tuple: &tuple,
        bytes: &raw const bytes,
        tcp: TcpCounters::default(),
    };
    emit(EventKind::Release, &data);
    0
}
