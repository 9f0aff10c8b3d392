//! `cgroup/sock_create` and `cgroup/sock_release`: socket birth and the process letting go.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_socket_cookie, bpf_ktime_get_coarse_ns},
    },
    macros::cgroup_sock,
    programs::SockContext,
};
use monitor_common::{
    IPPROTO_MPTCP, IPPROTO_TCP, SOCK_RAW,
    event::{EventKind, FLAG_TCP_COUNTERS, TCP_FIN_RECEIVED, TCP_WRITE_POSITION, TcpCounters, write_position},
    maps::FALLBACK_DISCOVER,
    sock::{
        COPY_STATE_DONE, COUNTER_MPTCP, COUNTER_RAW, COUNTER_RELEASED, COUNTER_STATE_CB, COUNTER_TCP_CLOSED, Counters,
        OwnerSource,
    },
};

use super::{ALLOW, per_peer, release_tuple, tracked};
use crate::maps::{
    COUNTERS, EventData, coarse_ns, emit, fallback, mptcp_subflows, owner_with, record_owner, set_bits, socket_flags,
    stat, tcp_release_offsets, tcp_send_queue_offsets,
};

/// Records the owner of every new IPv4/IPv6 socket in its (new, zeroed) counters.
///
/// # Minimum kernel version
/// 5.9 (`bpf_sk_storage_get` in `cgroup_sock`); pid/comm helpers need 5.7.
#[cgroup_sock(sock_create)]
pub fn sock_create(ctx: SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: ctx field reads.
    let family = unsafe { (*sk).family };
    if !tracked(family) {
        return ALLOW;
    }
    // One socket storage for owner and counters (one allocation per socket).
    // SAFETY: map value returned non-null by the kernel; a helper without arguments.
    match unsafe { COUNTERS.get_or_create(sk.cast()).as_mut() } {
        Some(c) => {
            stat(monitor_common::maps::STAT_SOCKETS_CREATED, 1);
            record_owner(&mut c.owner, OwnerSource::SockCreate);
            // SAFETY: ctx field read.
            if unsafe { (*sk).type_ } == SOCK_RAW {
                c.flags |= COUNTER_RAW; // counted per peer whatever its protocol (`per_peer`)
            }
            // SAFETY: ctx field read.
            if mptcp_subflows() && unsafe { (*sk).protocol } == u32::from(IPPROTO_MPTCP) {
                c.flags |= COUNTER_MPTCP; // counts its subflows' packets (`mptcp`)
                c.copy_state |= COPY_STATE_DONE;
                // Its cookie is not read here: an MPTCP listener's would be copied into every
                // connection it accepts (the kernel clones the socket with it), which then could
                // not be told from each other. It is read at the first read or write and at the
                // release (`mptcp`).
            }
            // One clock read for both: the owner was recorded a moment ago.
            c.created_ns = c.owner.created_ns;
            // The update interval's start: the cached coarse clock (no helper call within a
            // tick; at most a tick early, so the first update may come a tick sooner).
            c.last_report_ns = coarse_ns();
        }
        None => storage_failed(&ctx),
    }
    ALLOW
}

/// Counts and logs (aya-log) a socket storage allocation failure: that socket goes uncounted.
#[inline(never)]
fn storage_failed(ctx: &SockContext) {
    stat(monitor_common::maps::STAT_STORAGE_FAIL, 1);
    aya_log_ebpf::warn!(ctx, "socket storage allocation failed; socket not counted");
}

/// Emits the final payload counters when the process releases a socket, and the final counters
/// of every peer of a socket counted per peer (unconnected UDP, ping, raw).
///
/// # Minimum kernel version
/// 5.9 (`cgroup/sock_release`); atomic fetch-or 5.12.
#[cgroup_sock(sock_release)]
pub fn sock_release(ctx: SockContext) -> i32 {
    let sk = ctx.sock;
    // SAFETY: ctx field reads.
    let family = unsafe { (*sk).family };
    if !tracked(family) {
        return ALLOW;
    }
    let counters = COUNTERS.get(sk.cast(), false);
    // SAFETY: ctx field read.
    let protocol = unsafe { (*sk).protocol };
    // SAFETY: non-null map value.
    match unsafe { counters.as_mut() } {
        Some(c) => released(sk, c, protocol),
        // Never seen: created before the monitor and silent since.
        None if protocol == u32::from(IPPROTO_TCP) => silent_tcp_released(sk),
        None => stat(monitor_common::maps::STAT_RELEASED_UNCOUNTED, 1),
    }
    ALLOW
}

/// [`sock_release`] of a socket with counters. A function of its own: its frame and that of
/// [`silent_tcp_released`] are never on the stack together (the verifier bounds the sum).
#[inline(never)]
fn released(sk: *mut aya_ebpf::bindings::bpf_sock, c: &mut Counters, protocol: u32) {
    stat(monitor_common::maps::STAT_SOCKETS_RELEASED, 1);
    // Without `bpf_skc_to_mptcp_sock` (before 5.19) an MPTCP socket's subflows are counted as TCP
    // sockets of their own (`mptcp`): its own record would count its bytes twice, unless the
    // packet path is missing (`FALLBACK_DISCOVER`) and its payload is all that is seen.
    if protocol == u32::from(IPPROTO_MPTCP) && !mptcp_subflows() && !fallback(FALLBACK_DISCOVER) {
        return;
    }
    // A TCP socket whose `TCP_CLOSE` `sock_ops` will report ends with that event instead (one
    // event per socket fewer; the process can no longer read or write, so the payload counters
    // are final either way). Atomic, paired with `sock_ops`: if `TCP_CLOSE` came first, its
    // event expects this `Release`.
    if protocol == u32::from(IPPROTO_TCP) {
        let before = set_bits(&raw mut c.flags, COUNTER_RELEASED);
        if before & (COUNTER_STATE_CB | COUNTER_TCP_CLOSED) == COUNTER_STATE_CB {
            return;
        }
    } else if protocol == u32::from(IPPROTO_MPTCP) && c.flags & COUNTER_MPTCP != 0 && mptcp_subflows() {
        // Its flow ends when its last subflow closes too (`mptcp`).
        // SAFETY: the context is a socket.
        let cookie = unsafe { bpf_get_socket_cookie(sk.cast()) };
        super::mptcp::released(sk, cookie, c);
        return;
    }
    // SAFETY: the context is a socket.
    let cookie = unsafe { bpf_get_socket_cookie(sk.cast()) };
    let tuple = release_tuple(sk, c);
    let owner = owner_with(c, sk.cast());
    // Peers first: when userspace sees `Release`, every peer of the socket has been reported.
    if per_peer(u32::from(tuple.protocol), u32::from(tuple.remote_port), c.flags) {
        super::skb::emit_slots(sk.cast(), EventKind::PeerClosed, cookie, owner, &tuple, c.raw_flag());
    }
    // A TCP socket ends here with the kernel's counters as its process left them: one whose end
    // no `TCP_CLOSE` of this monitor reports (one older than it: its handshake, where the state
    // callbacks are turned on, came before), or bytes read without `recvmsg` (splice) since its
    // last update were lost (an adversarial pass: splice readers open across a daemon restart);
    // and one whose `TCP_CLOSE` came first (a reset, or both FINs while the process held it):
    // that event counted what was still unread, which the process may have read since or never
    // will (a re-check: a splice reader reset by its peer was charged bytes it never read).
    let mut tcp = TcpCounters::default();
    let tcp_flag = if protocol == u32::from(IPPROTO_TCP) { released_tcp_counters(sk, c, &mut tcp) } else { 0 };
    emit_release(cookie, c, c.created_ns, owner, &tuple, (tcp_flag, tcp));
}

/// The `Release` of socket `cookie` (counters `c`, first seen at `first_ns`), with the TCP
/// counters its release read (`(FLAG_TCP_COUNTERS, counters)`, or none).
#[inline(always)]
fn emit_release(
    cookie: u64,
    c: &Counters,
    first_ns: u64,
    owner: *const monitor_common::sock::Owner,
    tuple: &monitor_common::event::Tuple,
    (tcp_flag, tcp): (u32, TcpCounters),
) {
    let bytes = c.bytes();
    emit(
        EventKind::Release,
        &EventData {
            cookie,
            flags: socket_flags(c) | tcp_flag,
            generation: 0,
            first_ns,
            owner,
            tuple,
            bytes: &raw const bytes,
            tcp,
        },
    );
}

/// The kernel's TCP counters of a socket its process releases, read at their BTF offsets
/// (`cgroup/sock_release` has neither `bpf_tcp_sock` nor `bpf_skc_to_tcp_sock`; its context is
/// the socket itself), what the process never read left out (`TCP_CONSUMED`: nothing more will
/// be), into `out`; `FLAG_TCP_COUNTERS`, or 0 (nothing) when an offset is unknown or a read
/// fails. Off the common path: a TCP socket whose `TCP_CLOSE` will end its flow returns before
/// it. (Written through `out`: a returned struct comes back through a pointer into the caller's
/// frame, which the verifier refuses.)
#[inline(never)]
fn released_tcp_counters(sk: *mut aya_ebpf::bindings::bpf_sock, c: &Counters, out: &mut TcpCounters) -> u32 {
    let [received, acked, rcv_nxt, copied, sk_flags] = tcp_release_offsets();
    if received == 0 || acked == 0 || rcv_nxt == 0 || copied == 0 || sk_flags == 0 {
        return 0;
    }
    let at = |offset: u32| (sk as usize).wrapping_add(offset as usize);
    // SAFETY: kernel reads at BTF offsets of `struct tcp_sock` (a TCP socket is one); a failed
    // read returns an error.
    let read = unsafe {
        (
            bpf_probe_read_kernel(at(received) as *const u64),
            bpf_probe_read_kernel(at(acked) as *const u64),
            bpf_probe_read_kernel(at(rcv_nxt) as *const u32),
            bpf_probe_read_kernel(at(copied) as *const u32),
            bpf_probe_read_kernel(at(sk_flags) as *const u64),
        )
    };
    let (Ok(bytes_received), Ok(bytes_acked), Ok(rcv_nxt), Ok(copied), Ok(flags)) = read else {
        return 0;
    };
    // SAFETY: ctx field read.
    let state = unsafe { (*sk).state };
    // The peer's FIN (counted as a byte in `bytes_received`): seen by this monitor's `sock_ops`,
    // or `SOCK_DONE`, which a reset does not set (its state, `CLOSE`, is also that of a socket
    // past both FINs: a re-check of the state alone counted that FIN as a byte).
    let fin = u32::from(c.tcp_flags) & TCP_FIN_RECEIVED != 0 || flags & super::SOCK_DONE != 0;
    let mut tcp = TcpCounters {
        bytes_acked,
        bytes_received,
        old_state: state,
        flags: if fin { TCP_FIN_RECEIVED } else { 0 },
        srtt_us_x8: 0,
        rtt_min_us: 0,
    };
    let unread = rcv_nxt.wrapping_sub(copied);
    super::leave_out(unread, &mut tcp);
    // What the process wrote (an adversarial pass: a connection older than the run whose peer's
    // window was closed wrote and closed, and had no record; a re-check: one that ended in
    // `CLOSE` was charged 0): its write position, sent or still queued (the kernel sends the
    // queue after the release; a reset discards it, as it discards a young socket's writes,
    // which their calls counted all the same). Not for one disconnected (`connect(AF_UNSPEC)`:
    // no destination port): the kernel zeroed its `bytes_acked` and moved `write_seq` past the
    // peer's window (a re-check: charged about that window).
    // SAFETY: ctx field read.
    let connected = unsafe { (*sk).dst_port } != 0;
    if connected && let Some(position) = release_position(sk, bytes_acked, state, fin) {
        tcp.bytes_acked = position;
        tcp.flags |= TCP_WRITE_POSITION;
    }
    *out = tcp;
    FLAG_TCP_COUNTERS
}

/// The write position of TCP socket `sk` at its release (`acked`: its `bytes_acked`;
/// `peer_fin`: the peer's FIN came), from `write_seq` and `snd_una` read at BTF offsets; `None`
/// where an offset is unknown, a read fails, or in a state with no stream.
#[inline(always)]
fn release_position(sk: *mut aya_ebpf::bindings::bpf_sock, acked: u64, state: u32, peer_fin: bool) -> Option<u64> {
    let [write_seq, snd_una] = tcp_send_queue_offsets();
    if write_seq == 0 || snd_una == 0 {
        return None;
    }
    let at = |offset: u32| (sk as usize).wrapping_add(offset as usize);
    // SAFETY: kernel reads at BTF offsets of `struct tcp_sock`; a failed read returns an error.
    let (Ok(written), Ok(unacked)) = (unsafe {
        (bpf_probe_read_kernel(at(write_seq) as *const u32), bpf_probe_read_kernel(at(snd_una) as *const u32))
    }) else {
        return None;
    };
    write_position(acked, written.wrapping_sub(unacked), state, peer_fin)
}

/// A TCP socket older than the monitor that sent no packet under it, released by its process:
/// its FIN and the packets after it (sent by the kernel, after the release) would otherwise be
/// discovered as a flow without an owner that no event ends. Counters marked released make
/// them part of no flow, as the closing packets of an older socket that did move bytes (the
/// tracker drops a released socket's `Update` or `Discovered` when it knows no flow of it).
/// Without storage (allocation failed) the packets are discovered as before.
///
/// One whose owner the daemon recorded at its start (held then by a process of the watched
/// cgroup) may still have moved bytes without a packet under the monitor: read data queued
/// before a restart (an adversarial pass: such readers had no record at all). Its release sends
/// a `Release` with the kernel's TCP counters, which the daemon compares with those it read at
/// start; a socket that moved nothing since has no record.
#[inline(never)]
fn silent_tcp_released(sk: *mut aya_ebpf::bindings::bpf_sock) {
    // SAFETY: null-checked map value.
    let Some(c) = (unsafe { COUNTERS.get_or_create(sk.cast()).as_mut() }) else { return };
    c.flags |= COUNTER_RELEASED;
    c.copy_state |= COPY_STATE_DONE;
    // Its next `Update` falls due an interval from now, not at its FIN.
    // SAFETY: helper without arguments.
    c.last_report_ns = unsafe { bpf_ktime_get_coarse_ns() };
    let owner = crate::maps::OWNER.get(sk.cast(), false).cast_const();
    // SAFETY: null-checked map value.
    if !unsafe { owner.as_ref() }.is_some_and(|o| o.source != OwnerSource::Unknown as u8) {
        return;
    }
    let mut tcp = TcpCounters::default();
    let flag = released_tcp_counters(sk, c, &mut tcp);
    if flag == 0 {
        return;
    }
    // SAFETY: the context is a socket.
    let cookie = unsafe { bpf_get_socket_cookie(sk.cast()) };
    emit_release(cookie, c, 0, owner, &release_tuple(sk, c), (flag, tcp));
}
