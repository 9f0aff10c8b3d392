//! `iter/bpf_sk_storage_map` over `COUNTERS`: a snapshot of every watched socket's counters on
//! demand. The packet path only reports a flow when a packet arrives after the update interval,
//! so an idle connection's last bytes would otherwise wait for its close; the daemon reads this
//! iterator periodically and at shutdown. A second one over `PEERS` reads every open peer slot
//! at shutdown.

use core::{ffi::c_void, mem::size_of, ptr};

use aya_ebpf::helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_seq_write};
use monitor_common::{
    event::{Event, EventKind, FLAG_NO_OWNER, FLAG_SNAPSHOT},
    sock::{COUNTER_MPTCP, Counters, PEER_SLOTS},
};

use crate::maps::{COUNTERS, PEERS, owner_with};

/// `struct bpf_iter_meta` (`include/linux/bpf.h`): the seq_file comes first.
#[repr(C)]
pub struct IterMeta {
    seq: *mut c_void,
    session_id: u64,
    seq_num: u64,
}

/// `struct bpf_iter__bpf_sk_storage_map`: four pointers, each 8 bytes (`__bpf_md_ptr`).
#[repr(C)]
pub struct IterCtx {
    meta: *mut IterMeta,
    map: *mut c_void,
    sk: *mut c_void,
    value: *mut c_void,
}

/// Writes one `Update` event per socket whose counters changed since the previous snapshot.
///
/// # Minimum kernel version
/// 5.9 (sk_storage map iterator); `bpf_get_socket_cookie` on a BTF socket 5.12.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_sk_storage_map")]
pub extern "C" fn iter_counters(ctx: *mut IterCtx) -> i32 {
    // SAFETY: the kernel passes an iterator context; `sk` and `value` are null-checked.
    unsafe {
        let sk = (*ctx).sk;
        let value = (*ctx).value.cast::<Counters>();
        if sk.is_null() || value.is_null() {
            return 0;
        }
        let c = &mut *value;
        let bytes = c.bytes();
        let mark = bytes.mark();
        if mark == c.snapshot_mark {
            return 0;
        }
        c.snapshot_mark = mark;
        let mut ev = Event {
            kind: EventKind::Update as u32,
            flags: FLAG_NO_OWNER | FLAG_SNAPSHOT | c.event_flags(),
            ts_ns: bpf_ktime_get_boot_ns(),
            // An MPTCP socket's flow is named by its first subflow's cookie (`mptcp`).
            cookie: if c.flags & COUNTER_MPTCP != 0 && c.cookie != 0 { c.cookie } else { bpf_get_socket_cookie(sk) },
            first_ns: c.created_ns,
            bytes,
            ..Event::default()
        };
        ev.tuple.local_addr = c.local_addr;
        ev.tuple.local_port = c.local_port;
        let seq = (*(*ctx).meta).seq;
        bpf_seq_write(seq.cast(), ptr::from_ref(&ev).cast(), size_of::<Event>() as u32);
    }
    0
}

/// Writes one `PeerUpdate` event (flag `FLAG_SNAPSHOT`, with owner and both addresses) per open
/// peer slot of every socket counted per peer: what each slot counted since its claim. The
/// daemon reads it at shutdown, so a peer's bytes since its last report, and a peer claimed
/// within the last update interval (never reported yet), are in its `shutdown` record.
///
/// # Minimum kernel version
/// As [`iter_counters`]; `bpf_sk_storage_get` in iterator programs 5.11.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_sk_storage_map")]
pub extern "C" fn iter_peers(ctx: *mut IterCtx) -> i32 {
    // SAFETY: the kernel passes an iterator context; `sk` is null-checked.
    let (sk, seq) = unsafe { ((*ctx).sk, (*(*ctx).meta).seq) };
    if sk.is_null() {
        return 0;
    }
    // The same storage again, as a map value: the lock needs one (the iterator's `value` is a
    // plain buffer). SAFETY: null-checked map value.
    let Some(table) = (unsafe { PEERS.get(sk, false).as_mut() }) else {
        return 0;
    };
    // SAFETY: a BTF socket pointer from the iterator; helpers without other arguments.
    let (cookie, now) = unsafe { (bpf_get_socket_cookie(sk), bpf_ktime_get_boot_ns()) };
    // SAFETY: null-checked map value.
    let (owner, raw) = match unsafe { COUNTERS.get(sk, false).as_ref() } {
        Some(c) => (owner_with(c, sk), c.raw_flag()),
        None => (ptr::null(), 0),
    };
    // One event on the stack, its peer fields filled from each slot under the lock (no copy of
    // a slot: the stack is small).
    let mut ev = Event {
        kind: EventKind::PeerUpdate as u32,
        flags: FLAG_SNAPSHOT | raw,
        ts_ns: now,
        cookie,
        tuple: super::fallback::sock_tuple(sk),
        ..Event::default()
    };
    // SAFETY: a null-checked map value.
    match unsafe { owner.as_ref() } {
        Some(o) => ev.owner = *o,
        None => ev.flags |= FLAG_NO_OWNER,
    }
    let flags = ev.flags;
    for i in 0..PEER_SLOTS {
        super::skb::lock(table);
        let active = match table.slots.get(i) {
            Some(slot) if slot.active != 0 => {
                ev.flags = flags | slot.event_flags();
                ev.generation = slot.generation;
                ev.first_ns = slot.first_ns;
                ev.tuple.remote_addr = slot.addr;
                ev.tuple.remote_port = slot.port;
                ev.tuple.family = slot.family;
                ev.bytes = slot.bytes;
                true
            }
            _ => false,
        };
        super::skb::unlock(table);
        if active {
            // SAFETY: the iterator's seq_file and a stack event of the size passed.
            unsafe { bpf_seq_write(seq.cast(), ptr::from_ref(&ev).cast(), size_of::<Event>() as u32) };
        }
    }
    0
}
