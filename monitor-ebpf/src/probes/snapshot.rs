//! `iter/bpf_sk_storage_map` over `COUNTERS`: a snapshot of every watched socket's counters on
//! demand. The packet path only reports a flow when a packet arrives after the update interval,
//! so an idle connection's last bytes would otherwise wait for its close; the daemon reads this
//! iterator periodically and at shutdown.

use core::{ffi::c_void, mem::size_of, ptr};

use aya_ebpf::helpers::generated::{bpf_get_socket_cookie, bpf_ktime_get_boot_ns, bpf_seq_write};
use monitor_common::{
    event::{Event, EventKind, FLAG_NO_OWNER, FLAG_SNAPSHOT},
    sock::{COUNTER_MPTCP, Counters},
};

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
