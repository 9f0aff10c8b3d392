//! `uprobe`/`uretprobe` on libc's `getaddrinfo(node, service, hints, res)`: host names of
//! resolutions that send no DNS packets (see `monitor_common::gai`).
//!
//! The entry probe keeps `node` and `res` per thread (only for tasks in the watched cgroup); the
//! return probe, when `getaddrinfo` returned 0, reads the name and walks the `struct addrinfo`
//! list at `*res` with `bpf_probe_read_user*` only (what lockdown allows) and sends one
//! [`GaiRecord`]. Cost: on `getaddrinfo` calls only (a cgroup check at entry, one hash lookup at
//! return); nothing on the packet path.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns, bpf_probe_read_user_str},
    },
    macros::{map, uprobe, uretprobe},
    maps::LruHashMap,
    programs::{ProbeContext, RetProbeContext},
};
use monitor_common::{
    AF_INET, AF_INET6,
    event::Tuple,
    gai::{
        AI_ADDR_OFFSET, AI_FAMILY_OFFSET, AI_NEXT_OFFSET, GAI_ADDRS_MAX, GAI_KIND, GAI_NAME_MAX, GAI_WALK_MAX, GaiData,
        GaiRecord, SIN_ADDR_OFFSET, SIN6_ADDR_OFFSET,
    },
    maps::{STAT_COPIES, STAT_COPIES_LOST},
    sock::OwnerSource,
};

use crate::maps::{EVENTS, current_task_watched, record_owner, stat};

/// Arguments of a pending call (user-space pointers).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct GaiCall {
    node: u64,
    res: u64,
}

// Name: monitor_common::maps::GAI_CALLS. Keyed by pid_tgid; LRU so that calls that never return
// (a thread killed inside getaddrinfo) age out.
#[map]
static GAI_CALLS: LruHashMap<u64, GaiCall> = LruHashMap::with_max_entries(4096, 0);

/// Entry of `getaddrinfo`: remembers `node` and `res` of a watched thread.
///
/// # Minimum kernel version
/// 4.17 (uprobe PMU through `perf_event_open`, as aya attaches); `bpf_get_current_ancestor_cgroup_id` 5.6.
#[uprobe]
pub fn uprobe_getaddrinfo(ctx: ProbeContext) -> u32 {
    if !current_task_watched() {
        return 0;
    }
    let node: Option<*const c_void> = ctx.arg(0);
    let res: Option<*const c_void> = ctx.arg(3);
    let (Some(node), Some(res)) = (node, res) else { return 0 };
    if node.is_null() || res.is_null() {
        return 0;
    }
    // SAFETY: helper without pointer arguments.
    let id = unsafe { bpf_get_current_pid_tgid() };
    let _ = GAI_CALLS.insert(id, GaiCall { node: node as u64, res: res as u64 }, 0);
    0
}

/// Return of `getaddrinfo`: sends the name and addresses of a successful call.
///
/// # Minimum kernel version
/// As [`uprobe_getaddrinfo`]; ring buffer 5.8.
#[uretprobe]
pub fn uretprobe_getaddrinfo(ctx: RetProbeContext) -> u32 {
    // SAFETY: helper without pointer arguments.
    let id = unsafe { bpf_get_current_pid_tgid() };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(call) = (unsafe { GAI_CALLS.get(id) }).copied() else { return 0 };
    let _ = GAI_CALLS.remove(id);
    // Only watched threads' calls are remembered: an entry met by an unwatched one is a killed
    // thread's, whose pid and thread id this one reuses (its pointers are not this process's; a
    // review).
    if !current_task_watched() {
        return 0;
    }
    let ret: i32 = ctx.ret();
    if ret == 0 {
        send(&call);
    }
    0
}

/// Reads a value at `base + offset` in user memory.
#[inline(always)]
fn user<T>(base: u64, offset: usize) -> Option<T> {
    // SAFETY: `bpf_probe_read_user` checks the address; a bad one is an error, not a fault.
    unsafe { bpf_probe_read_user((base.wrapping_add(offset as u64)) as *const T) }.ok()
}

#[inline(always)]
fn send(call: &GaiCall) {
    let Some(mut entry) = EVENTS.reserve::<GaiRecord>(0) else {
        stat(STAT_COPIES, 1);
        stat(STAT_COPIES_LOST, 1);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reservation of size_of::<GaiRecord>(); the name is read into its
    // own array with that array's size.
    let name_len = unsafe {
        bpf_probe_read_user_str((&raw mut (*ev).data.name).cast(), GAI_NAME_MAX as u32, call.node as *const c_void)
    };
    // The helper returns the length with the NUL; 1 is an empty name.
    if name_len <= 1 {
        entry.discard(0);
        return;
    }
    let Some(mut ai) = user::<u64>(call.res, 0) else {
        entry.discard(0);
        return;
    };
    // SAFETY: as above; every header field is written, the arrays are written up to `count`
    // and zeroed first.
    unsafe {
        let h = &mut (*ev).header;
        h.kind = GAI_KIND;
        h.flags = 0;
        h.ts_ns = bpf_ktime_get_boot_ns();
        h.cookie = 0;
        record_owner(&mut h.owner, OwnerSource::Syscall);
        h.tuple = Tuple::default();
        h.len = core::mem::size_of::<GaiData>() as u32;
        h.wire_len = h.len;
        let d = &mut (*ev).data;
        d.name_len = (name_len - 1) as u32;
        d.families = [0; GAI_ADDRS_MAX];
        d.addrs = [[0; 16]; GAI_ADDRS_MAX];
    }
    let mut count: usize = 0;
    let mut last_family = 0_u16;
    let mut last = [0_u8; 16];
    for _ in 0..GAI_WALK_MAX {
        if ai == 0 || count >= GAI_ADDRS_MAX {
            break;
        }
        let Some(family) = user::<i32>(ai, AI_FAMILY_OFFSET) else { break };
        let Some(addr) = user::<u64>(ai, AI_ADDR_OFFSET) else { break };
        let Some(next) = user::<u64>(ai, AI_NEXT_OFFSET) else { break };
        ai = next;
        let family = family as u16;
        // The socket address must say the same family: a libc with another `struct addrinfo`
        // layout (bionic and the BSDs put `ai_canonname` first) yields nothing, not garbage.
        let fam = family.to_ne_bytes();
        let bytes = if addr == 0 {
            None
        } else if family == AF_INET {
            user::<[u8; 8]>(addr, 0).filter(|sa| sa[0] == fam[0] && sa[1] == fam[1]).map(|sa| {
                let a = &sa[SIN_ADDR_OFFSET..];
                [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            })
        } else if family == AF_INET6 {
            user::<[u8; 24]>(addr, 0).filter(|sa| sa[0] == fam[0] && sa[1] == fam[1]).map(|sa| {
                let mut a = [0_u8; 16];
                a.copy_from_slice(&sa[SIN6_ADDR_OFFSET..]);
                a
            })
        } else {
            None
        };
        let Some(bytes) = bytes else { continue };
        // glibc lists an address once per socket type: keep it once.
        if family == last_family && bytes == last {
            continue;
        }
        last_family = family;
        last = bytes;
        // SAFETY: `count < GAI_ADDRS_MAX` (checked above), inside the reservation.
        unsafe {
            let d = &mut (*ev).data;
            if let (Some(f), Some(a)) = (d.families.get_mut(count), d.addrs.get_mut(count)) {
                *f = family;
                *a = bytes;
            }
        }
        count += 1;
    }
    // SAFETY: inside the reservation.
    unsafe { (*ev).data.count = count as u32 };
    stat(STAT_COPIES, 1);
    entry.submit(0);
}
