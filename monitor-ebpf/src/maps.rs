//! Maps, load-time globals and the small helpers every program shares.

use core::{
    ffi::c_void,
    intrinsics::{AtomicOrdering, atomic_and, atomic_or, atomic_xadd},
    ptr,
};

use aya_ebpf::{
    bindings::BPF_SK_STORAGE_GET_F_CREATE,
    helpers::{
        bpf_probe_read_kernel,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_get_current_pid_tgid,
            bpf_get_current_task, bpf_get_current_task_btf, bpf_get_current_uid_gid, bpf_jiffies64,
            bpf_ktime_get_boot_ns, bpf_ktime_get_coarse_ns, bpf_sk_storage_get,
        },
    },
    macros::{btf_map, map},
    maps::{Array, PerCpuArray, RingBuf},
};
use monitor_common::{
    event::{Event, EventKind, FLAG_NO_OWNER, TcpCounters, Tuple},
    maps::{EVENTS_DEFAULT_BYTES, STAT_COUNT, STAT_EVENTS, STAT_RINGBUF_FULL},
    sock::{ByteCounters, Counters, Owner, OwnerSource, PeerTable, exec_mark, start_units},
};

/// `BPF_F_NO_PREALLOC`.
const NO_PREALLOC: usize = 1;
/// `BPF_F_NO_PREALLOC | BPF_F_CLONE`.
const NO_PREALLOC_CLONE: usize = 1 | 512;

/// BTF definition of a `BPF_MAP_TYPE_SK_STORAGE` map with the given flags.
///
/// aya-ebpf 0.2.1's `btf_maps::SkStorage` hard-codes its flags (no `BPF_F_CLONE`) and only takes
/// `SockAddrContext`; the layout below is the one its `btf_map_def!` produces.
#[repr(C)]
pub(crate) struct SkStorage<V, const FLAGS: usize> {
    r#type: *const [i32; 24], // BPF_MAP_TYPE_SK_STORAGE
    key: *const i32,
    value: *const V,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; FLAGS],
}

// SAFETY: the fields are placeholders the loader patches; never dereferenced.
unsafe impl<V, const FLAGS: usize> Sync for SkStorage<V, FLAGS> {}

impl<V, const FLAGS: usize> SkStorage<V, FLAGS> {
    pub(crate) const fn new() -> Self {
        Self {
            r#type: ptr::null(),
            key: ptr::null(),
            value: ptr::null(),
            max_entries: ptr::null(),
            map_flags: ptr::null(),
        }
    }

    /// The value attached to `sk`, created zeroed when `create` is set. Null when absent or when
    /// the kernel could not allocate it.
    #[inline(always)]
    pub(crate) fn get(&self, sk: *mut c_void, create: bool) -> *mut V {
        let flags = if create { u64::from(BPF_SK_STORAGE_GET_F_CREATE) } else { 0 };
        let map = ptr::from_ref(self).cast_mut().cast();
        // SAFETY: `sk` comes from the program context; the helper checks it.
        unsafe { bpf_sk_storage_get(map, sk, ptr::null_mut(), flags) }.cast()
    }

    /// The value attached to `sk`, created zeroed when absent; null only when the kernel could
    /// not allocate it.
    ///
    /// A creation that races with another CPU creating storage for the same socket returns null
    /// although nothing failed: `bpf_sk_storage_get` (net/core/bpf_sk_storage.c) looks up, then
    /// calls `bpf_local_storage_update(..., BPF_NOEXIST, ...)` (kernel/bpf/bpf_local_storage.c),
    /// which returns `-EEXIST` when the other CPU linked this map's value in between (`check_flags`
    /// under `local_storage->lock`) and `-EAGAIN` when it installed the socket's first storage of
    /// any map first (`cmpxchg` on `sk->sk_bpf_storage` in `bpf_local_storage_alloc`). Seen on a
    /// listener older than the monitor, whose SYNs arrive on both CPUs at once. So: after a null,
    /// look up (the `-EEXIST` case), then create once more (the `-EAGAIN` case: the socket now has
    /// storage, so this takes the locked path).
    #[inline(always)]
    pub(crate) fn get_or_create(&self, sk: *mut c_void) -> *mut V {
        let value = self.get(sk, true);
        if !value.is_null() {
            return value;
        }
        let value = self.get(sk, false);
        if !value.is_null() {
            return value;
        }
        self.get(sk, true)
    }
}

// Names: monitor_common::maps::{OWNER, COUNTERS, PEERS}.
#[btf_map]
pub(crate) static OWNER: SkStorage<Owner, NO_PREALLOC_CLONE> = SkStorage::new();
#[btf_map]
pub(crate) static COUNTERS: SkStorage<Counters, NO_PREALLOC> = SkStorage::new();
#[btf_map]
pub(crate) static PEERS: SkStorage<PeerTable, NO_PREALLOC> = SkStorage::new();

// Name: monitor_common::maps::EVENTS. Userspace may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_DEFAULT_BYTES, 0);

// Name: monitor_common::maps::STATS.
#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STAT_COUNT, 0);

// Name: monitor_common::maps::FALLBACK. One u32 of FALLBACK_* bits, set by userspace.
#[map]
pub(crate) static FALLBACK: Array<u32> = Array::with_max_entries(1, 0);

/// The `FALLBACK_*` bits userspace set (see `monitor_common::maps`).
#[inline(always)]
pub(crate) fn fallback_bits() -> u32 {
    FALLBACK.get(0).map_or(0, |v| *v)
}

/// True when userspace asked for `bit`.
#[inline(always)]
pub(crate) fn fallback(bit: u32) -> bool {
    fallback_bits() & bit != 0
}

/// Offsets in `struct sock` of fields whose place depends on the kernel's configuration (set by
/// userspace at load time from kernel BTF; 0 when unknown).
#[unsafe(no_mangle)]
static SK_V6_DADDR_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static SK_V6_RCV_SADDR_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static SK_PROTOCOL_OFFSET: u32 = 0;

/// Offset of the `sk_socket` pointer in `struct sock` (set by userspace from kernel BTF; 0 when
/// unknown: `sock_ops` then never marks a close `FLAG_NO_FILE`).
#[unsafe(no_mangle)]
static SK_SOCKET_OFFSET: u32 = 0;

/// Offset of the 32-bit `copied_seq` in `struct tcp_sock` (set by userspace from kernel BTF; 0
/// when unknown or under a confidentiality lockdown: a `TcpClose` then never carries
/// `TCP_CONSUMED`).
#[unsafe(no_mangle)]
static TCP_COPIED_SEQ_OFFSET: u32 = 0;

/// [`TCP_COPIED_SEQ_OFFSET`], volatile so the compiler does not fold the default; the verifier
/// knows the value (read-only global data).
#[inline(always)]
pub(crate) fn tcp_copied_seq_offset() -> u32 {
    // SAFETY: a plain global.
    unsafe { ptr::read_volatile(&raw const TCP_COPIED_SEQ_OFFSET) }
}

/// Offsets of the 64-bit `bytes_received` and `bytes_acked` and the 32-bit `rcv_nxt` in `struct
/// tcp_sock` (set by userspace from kernel BTF; 0 when unknown or under a confidentiality
/// lockdown: the `Release` of a TCP socket older than the monitor then carries no TCP counters).
#[unsafe(no_mangle)]
static TCP_BYTES_RECEIVED_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TCP_BYTES_ACKED_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TCP_RCV_NXT_OFFSET: u32 = 0;
/// Offset of `sk_flags` in `struct sock` (as above).
#[unsafe(no_mangle)]
static SK_FLAGS_OFFSET: u32 = 0;
/// Offsets of the 32-bit `write_seq` and `snd_una` in `struct tcp_sock` (as above; 0: a `Release`
/// carries `bytes_acked` alone, without what waits in the send queue).
#[unsafe(no_mangle)]
static TCP_WRITE_SEQ_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TCP_SND_UNA_OFFSET: u32 = 0;
/// [`TCP_WRITE_SEQ_OFFSET`] and [`TCP_SND_UNA_OFFSET`], volatile as below.
#[inline(always)]
pub(crate) fn tcp_send_queue_offsets() -> [u32; 2] {
    // SAFETY: plain globals.
    unsafe { [ptr::read_volatile(&raw const TCP_WRITE_SEQ_OFFSET), ptr::read_volatile(&raw const TCP_SND_UNA_OFFSET)] }
}

/// [`TCP_BYTES_RECEIVED_OFFSET`], [`TCP_BYTES_ACKED_OFFSET`], [`TCP_RCV_NXT_OFFSET`],
/// [`TCP_COPIED_SEQ_OFFSET`] and [`SK_FLAGS_OFFSET`], volatile as above.
#[inline(always)]
pub(crate) fn tcp_release_offsets() -> [u32; 5] {
    // SAFETY: plain globals.
    unsafe {
        [
            ptr::read_volatile(&raw const TCP_BYTES_RECEIVED_OFFSET),
            ptr::read_volatile(&raw const TCP_BYTES_ACKED_OFFSET),
            ptr::read_volatile(&raw const TCP_RCV_NXT_OFFSET),
            tcp_copied_seq_offset(),
            sk_flags_offset(),
        ]
    }
}

/// [`SK_FLAGS_OFFSET`] alone (the packet path's updates read only it), volatile as above.
#[inline(always)]
pub(crate) fn sk_flags_offset() -> u32 {
    // SAFETY: a plain global.
    unsafe { ptr::read_volatile(&raw const SK_FLAGS_OFFSET) }
}

/// [`SK_SOCKET_OFFSET`], volatile so the compiler does not fold the default. The verifier knows
/// the value (read-only global data), so with 0 the branch that uses it is dropped at load.
#[inline(always)]
pub(crate) fn sk_socket_offset() -> u32 {
    // SAFETY: a plain global.
    unsafe { ptr::read_volatile(&raw const SK_SOCKET_OFFSET) }
}

/// Offsets of `group_leader`, `comm` and `start_boottime` in `struct task_struct` (set by
/// userspace from kernel BTF; 0 when unknown: [`record_owner`] keeps the current thread's
/// name, and owners carry no process start).
#[unsafe(no_mangle)]
static TASK_GROUP_LEADER_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_COMM_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_START_BOOTTIME_OFFSET: u32 = 0;

/// Offsets of the `mm` pointer in `struct task_struct` and of `start_stack` in `struct
/// mm_struct` (set by userspace from kernel BTF; 0 when unknown: owners carry no
/// [`Owner::exec_mark`]).
#[unsafe(no_mangle)]
static TASK_MM_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static MM_START_STACK_OFFSET: u32 = 0;

/// Offsets of `pid` (`tgid` right after it) and of the `cred` pointer in `struct task_struct`,
/// and of `uid` (`gid` right after it) in `struct cred` (set by userspace from kernel BTF, only
/// with [`TASK_BTF`]; 0 when unknown: the helpers give the ids).
#[unsafe(no_mangle)]
static TASK_PID_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static TASK_CRED_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static CRED_UID_OFFSET: u32 = 0;

/// 1: the task fields above are read through the kernel's BTF pointer to the current task, with
/// plain loads the verifier checks against the kernel's types (a fault reads 0); 0: one
/// `bpf_probe_read_kernel` per field. Set by userspace (`monitor_common::maps::GLOBAL_TASK_BTF`);
/// the verifier knows the value and leaves the other way out.
#[unsafe(no_mangle)]
static TASK_BTF: u32 = 0;

/// [`TASK_BTF`] set: the current task is walked with plain loads.
#[inline(always)]
fn task_btf() -> bool {
    // SAFETY: a plain global.
    unsafe { ptr::read_volatile(&raw const TASK_BTF) != 0 }
}

/// The current task: the kernel's BTF pointer with [`TASK_BTF`], else its address. Never null.
#[inline(always)]
fn current_task() -> usize {
    if task_btf() {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_task_btf() as usize }
    } else {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_task() as usize }
    }
}

/// The `u64` at `addr`, a field of a task or of its `mm` reached from [`current_task`] through
/// offsets from the kernel's BTF: a plain load with [`TASK_BTF`] (the verifier checks it against
/// the types; a fault reads 0), else `bpf_probe_read_kernel` (0 when it fails).
#[inline(always)]
fn task_read(addr: usize) -> u64 {
    if task_btf() {
        // SAFETY: a load the verifier checks against the kernel's BTF (see above).
        unsafe { ptr::read_volatile(addr as *const u64) }
    } else {
        // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
        unsafe { bpf_probe_read_kernel(addr as *const u64) }.unwrap_or(0)
    }
}

/// The 16-byte `comm` at `addr` (a task's, as [`task_read`]), or `None` when a read fails.
#[inline(always)]
fn comm_at(addr: usize) -> Option<[u8; 16]> {
    if task_btf() {
        let mut comm = [0_u8; 16];
        comm[..8].copy_from_slice(&task_read(addr).to_ne_bytes());
        comm[8..].copy_from_slice(&task_read(addr + 8).to_ne_bytes());
        Some(comm)
    } else {
        // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
        unsafe { bpf_probe_read_kernel(addr as *const [u8; 16]) }.ok()
    }
}

/// The three `struct sock` offsets above, volatile so the compiler does not fold the defaults.
#[inline(always)]
pub(crate) fn sock_offsets() -> (u32, u32, u32) {
    // SAFETY: plain globals.
    unsafe {
        (
            ptr::read_volatile(&raw const SK_V6_DADDR_OFFSET),
            ptr::read_volatile(&raw const SK_V6_RCV_SADDR_OFFSET),
            ptr::read_volatile(&raw const SK_PROTOCOL_OFFSET),
        )
    }
}

/// Minimum time between two `Update` events of one flow (set by userspace at load time).
#[unsafe(no_mangle)]
static UPDATE_INTERVAL_NS: u64 = 10_000_000_000;

/// `bpf_ktime_get_boot_ns()` when the programs were loaded (set by userspace at load time).
#[unsafe(no_mangle)]
static LOADED_BOOT_NS: u64 = 0;

/// 1 to copy payloads for the names stage, 0 not to (set by userspace at load time).
#[unsafe(no_mangle)]
static COPY_PAYLOADS: u32 = 1;

/// Whether payloads are copied for the names stage.
#[inline(always)]
pub(crate) fn copy_payloads() -> bool {
    // SAFETY: a plain global; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(&raw const COPY_PAYLOADS) != 0 }
}

/// 1 when the kernel has `bpf_skc_to_mptcp_sock` (set by userspace at load time, see
/// `monitor_common::maps::GLOBAL_MPTCP_SUBFLOWS`).
#[unsafe(no_mangle)]
static MPTCP_SUBFLOWS: u32 = 0;

/// Whether Multipath TCP subflows can be told from other TCP sockets.
#[inline(always)]
pub(crate) fn mptcp_subflows() -> bool {
    // SAFETY: a plain global; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(&raw const MPTCP_SUBFLOWS) != 0 }
}

/// cgroup v2 id of the watched cgroup, and its depth below the root (set by userspace at load
/// time): tracing programs, which are not attached to a cgroup, check the current task against it.
#[unsafe(no_mangle)]
static WATCHED_CGROUP_ID: u64 = 1;
#[unsafe(no_mangle)]
static WATCHED_CGROUP_LEVEL: u32 = 0;

/// True when the current task is in the watched cgroup or below it.
#[inline(always)]
pub(crate) fn current_task_watched() -> bool {
    // SAFETY: plain globals, volatile so the compiler does not fold the defaults.
    let (id, level) = unsafe {
        (ptr::read_volatile(&raw const WATCHED_CGROUP_ID), ptr::read_volatile(&raw const WATCHED_CGROUP_LEVEL))
    };
    // SAFETY: helper without pointer arguments; 0 when `level` is deeper than the task's cgroup.
    unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) == id }
}

/// The coarse clock's last reading and the jiffies count it was taken at (`.bss`, shared by all
/// CPUs; see [`coarse_ns`]).
#[repr(C)]
struct CoarseClock {
    jiffies: u64,
    ns: u64,
}

static mut COARSE_CLOCK: CoarseClock = CoarseClock { jiffies: 0, ns: 0 };

/// `bpf_ktime_get_coarse_ns()` without a helper call while the jiffies count has not moved.
///
/// The coarse clock only moves at a tick, where the kernel advances jiffies and then the clock,
/// and the verifier inlines `bpf_jiffies64` into one load on 64-bit JITs. So a reading taken at
/// the current jiffies count is the coarse clock's value until the next tick; only the first
/// packet after a tick pays the helper call, which every packet paid before (on a host where each
/// kernel return is dear, SRSO's safe RET, about as much as the rest of a TCP packet's work).
/// Racing CPUs store the same pair or pairs a tick apart: the value read is at most a tick old
/// (a CPU may pair a new count with the clock's previous reading), never ahead, so callers
/// compare with [`elapsed_ns`], which reads a clock behind a stamp as no time gone by.
#[inline(always)]
pub(crate) fn coarse_ns() -> u64 {
    let clock = &raw mut COARSE_CLOCK;
    // SAFETY: a helper without arguments; a plain global of this object, read and written with
    // volatile word accesses (no torn word; a torn pair is at most a tick old, see above).
    unsafe {
        let jiffies = bpf_jiffies64();
        if ptr::read_volatile(&raw const (*clock).jiffies) == jiffies {
            return ptr::read_volatile(&raw const (*clock).ns);
        }
        let now = bpf_ktime_get_coarse_ns();
        ptr::write_volatile(&raw mut (*clock).ns, now);
        ptr::write_volatile(&raw mut (*clock).jiffies, jiffies);
        now
    }
}

/// Time from `stamp` to `now` on the coarse clock; 0 when `now` is behind it (a reading of
/// [`coarse_ns`] up to a tick old against a stamp the helper gave).
#[inline(always)]
pub(crate) fn elapsed_ns(now: u64, stamp: u64) -> u64 {
    now.saturating_sub(stamp)
}

#[inline(always)]
pub(crate) fn loaded_boot_ns() -> u64 {
    // SAFETY: a plain global; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(&raw const LOADED_BOOT_NS) }
}

#[inline(always)]
pub(crate) fn update_interval_ns() -> u64 {
    // SAFETY: a plain global; volatile so the compiler does not fold the default value.
    unsafe { ptr::read_volatile(&raw const UPDATE_INTERVAL_NS) }
}

/// Adds `value` to `*dst` atomically.
#[inline(always)]
pub(crate) fn add(dst: *mut u64, value: u64) {
    // SAFETY: callers pass pointers into map values returned by the kernel.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, value) };
}

/// Sets `bits` in `*dst` atomically and returns the bits set before.
#[inline(always)]
pub(crate) fn set_bits(dst: *mut u64, bits: u64) -> u64 {
    // SAFETY: callers pass pointers into map values returned by the kernel.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(dst, bits) }
}

/// Clears `bits` in `*dst` atomically.
#[inline(always)]
pub(crate) fn clear_bits(dst: *mut u64, bits: u64) {
    // SAFETY: callers pass pointers into map values returned by the kernel.
    unsafe { atomic_and::<u64, u64, { AtomicOrdering::Relaxed }>(dst, !bits) };
}

/// [`set_bits`], sequentially consistent: neither the compiler nor the CPU moves a store before
/// it past it, and the instruction always fetches (fully ordered). For the few places where
/// another CPU must see an earlier store once it sees these bits (`mptcp`).
#[inline(always)]
pub(crate) fn set_bits_ordered(dst: *mut u64, bits: u64) -> u64 {
    // SAFETY: callers pass pointers into map values returned by the kernel.
    unsafe { atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(dst, bits) }
}

/// Adds `value` to statistics slot `index`.
#[inline(always)]
pub(crate) fn stat(index: u32, value: u64) {
    if let Some(slot) = STATS.get_ptr_mut(index) {
        add(slot, value);
    }
}

/// Fills `owner` from the current task, with its process's start (see [`Owner::start_cs`]), the
/// mark of the program it runs ([`Owner::exec_mark`]: two reads, `task->mm->start_stack`) and
/// its name: the thread group leader's `comm`, not the current thread's when another thread
/// makes the socket. Such a thread may be of the kernel's making (an io_uring worker,
/// `iou-wrk-<pid>`), or one the program named and ends soon after (an adversarial pass: a
/// connection made by a short-lived thread `conn-thr-2` was charged to an app of that name, the
/// process being read from /proc only when a thread of the socket's name still ran). Once per
/// socket; the thread's name when the offsets are unknown or a read fails.
#[inline(always)]
pub(crate) fn record_owner(owner: &mut Owner, source: OwnerSource) {
    let task = current_task();
    owner_fields(owner, source, task);
    owner.exec_mark = exec_mark(program_stack(task));
    let Some(leader) = group_leader(task) else { return };
    owner.start_cs = process_start(leader);
    if owner.pid == owner.tgid {
        return; // the leader itself: its name is the current one
    }
    // SAFETY: a plain global.
    let comm_offset = unsafe { ptr::read_volatile(&raw const TASK_COMM_OFFSET) };
    if comm_offset == 0 {
        return;
    }
    if let Some(comm) = comm_at(leader + comm_offset as usize) {
        owner.comm = comm;
    }
}

/// The fields of [`record_owner`] that helpers give, and the current thread's name (`task`:
/// [`current_task`]): read from the task with [`TASK_BTF`], else by the helper.
#[inline(always)]
fn owner_fields(owner: &mut Owner, source: OwnerSource, task: usize) {
    let (pid_tgid, uid_gid) = current_ids(task);
    // SAFETY: helpers without pointer arguments.
    let (cgroup_id, now) = unsafe { (bpf_get_current_cgroup_id(), bpf_ktime_get_boot_ns()) };
    owner.tgid = (pid_tgid >> 32) as u32;
    owner.pid = pid_tgid as u32;
    owner.uid = uid_gid as u32;
    owner.gid = (uid_gid >> 32) as u32;
    owner.cgroup_id = cgroup_id;
    owner.created_ns = now;
    // SAFETY: a plain global.
    let comm_offset = unsafe { ptr::read_volatile(&raw const TASK_COMM_OFFSET) };
    owner.comm = if task_btf() && comm_offset != 0 {
        comm_at(task + comm_offset as usize).unwrap_or_default()
    } else {
        aya_ebpf::helpers::bpf_get_current_comm().unwrap_or_default()
    };
    owner.source = source as u8;
    owner.exec_mark = [0; 3];
    owner.start_cs = 0;
}

/// The current task's ids as `bpf_get_current_pid_tgid` and `bpf_get_current_uid_gid` give them
/// (`tgid << 32 | pid`, `gid << 32 | uid`: the real ids, which the initial user namespace maps to
/// themselves): loaded through BTF where the offsets are known ([`TASK_BTF`]), else by the
/// helpers. Four loads of 32 bits (one load of 64 would span two fields, which the verifier
/// refuses on a trusted pointer).
#[inline(always)]
fn current_ids(task: usize) -> (u64, u64) {
    // SAFETY: plain globals.
    let (pid, cred, uid) = unsafe {
        (
            ptr::read_volatile(&raw const TASK_PID_OFFSET),
            ptr::read_volatile(&raw const TASK_CRED_OFFSET),
            ptr::read_volatile(&raw const CRED_UID_OFFSET),
        )
    };
    let pid_tgid = if task_btf() && pid != 0 {
        let at = task + pid as usize;
        u64::from(task_read32(at + 4)) << 32 | u64::from(task_read32(at))
    } else {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_pid_tgid() }
    };
    let creds = if task_btf() && cred != 0 && uid != 0 { task_read(task + cred as usize) as usize } else { 0 };
    let uid_gid = if creds != 0 {
        let at = creds + uid as usize;
        u64::from(task_read32(at + 4)) << 32 | u64::from(task_read32(at))
    } else {
        // SAFETY: a helper without arguments.
        unsafe { bpf_get_current_uid_gid() }
    };
    (pid_tgid, uid_gid)
}

/// The `u32` at `addr`, as [`task_read`] (only with [`TASK_BTF`]).
#[inline(always)]
fn task_read32(addr: usize) -> u32 {
    // SAFETY: a load the verifier checks against the kernel's BTF (only with `TASK_BTF`).
    unsafe { ptr::read_volatile(addr as *const u32) }
}

/// The mark of the program the current task runs ([`Owner::exec_mark`]; zero when unknown).
#[inline(always)]
pub(crate) fn current_exec_mark() -> [u8; 3] {
    exec_mark(program_stack(current_task()))
}

/// Where the stack of the program `task` runs was placed at its exec (`task->mm->start_stack`),
/// 0 when the offsets are unknown, a read fails or the task has no memory of its own (a kernel
/// thread). The task's own `mm`: a process whose main thread has exited keeps it in the others.
#[inline(always)]
fn program_stack(task: usize) -> u64 {
    // SAFETY: plain globals.
    let (mm_offset, stack_offset) = unsafe {
        (ptr::read_volatile(&raw const TASK_MM_OFFSET), ptr::read_volatile(&raw const MM_START_STACK_OFFSET))
    };
    if mm_offset == 0 || stack_offset == 0 {
        return 0;
    }
    let mm = task_read(task + mm_offset as usize) as usize;
    if mm == 0 {
        return 0;
    }
    task_read(mm + stack_offset as usize)
}

/// The thread group leader (the process) of the current `task`, or `None` when the offset is
/// unknown or the read fails. Once per socket, where an owner is recorded.
#[inline(always)]
fn group_leader(task: usize) -> Option<usize> {
    // SAFETY: a plain global.
    let offset = unsafe { ptr::read_volatile(&raw const TASK_GROUP_LEADER_OFFSET) };
    if offset == 0 {
        return None;
    }
    let leader = task_read(task + offset as usize) as usize;
    (leader != 0).then_some(leader)
}

/// The process's start in `START_UNIT_NS` units, wrapped to 32 bits (0 when unknown).
#[inline(always)]
fn process_start(leader: usize) -> u32 {
    // SAFETY: a plain global.
    let offset = unsafe { ptr::read_volatile(&raw const TASK_START_BOOTTIME_OFFSET) };
    if offset == 0 {
        return 0;
    }
    start_units(task_read(leader + offset as usize))
}

/// Everything an [`Event`] carries besides its kind.
pub(crate) struct EventData<'a> {
    pub(crate) cookie: u64,
    pub(crate) flags: u32,
    pub(crate) generation: u64,
    pub(crate) first_ns: u64,
    pub(crate) owner: *const Owner,
    pub(crate) tuple: &'a Tuple,
    pub(crate) bytes: *const ByteCounters,
    pub(crate) tcp: TcpCounters,
}

/// Writes one event into the ring buffer; counts it, or counts its loss. False when lost.
#[inline(always)]
pub(crate) fn emit(kind: EventKind, data: &EventData<'_>) -> bool {
    stat(STAT_EVENTS, 1);
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        stat(STAT_RINGBUF_FULL, 1);
        return false;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at a reservation of size_of::<Event>(); every field is written. The
    // owner and counter pointers are null-checked map values.
    unsafe {
        (*ev).kind = kind as u32;
        (*ev).ts_ns = bpf_ktime_get_boot_ns();
        (*ev).cookie = data.cookie;
        (*ev).generation = data.generation;
        (*ev).first_ns = data.first_ns;
        if data.owner.is_null() {
            (*ev).owner = Owner::default();
            (*ev).flags = data.flags | FLAG_NO_OWNER;
        } else {
            (*ev).owner = *data.owner;
            (*ev).flags = data.flags;
        }
        (*ev).tuple = *data.tuple;
        (*ev).bytes = if data.bytes.is_null() { ByteCounters::default() } else { *data.bytes };
        (*ev).tcp = data.tcp;
    }
    entry.submit(0);
    true
}

/// The flags every event about the socket carries ([`Counters::event_flags`]): connected by its
/// process (see `sock_addr`), counted per peer (see `rebind`).
#[inline(always)]
pub(crate) fn socket_flags(c: &Counters) -> u32 {
    c.event_flags()
}

/// Owner of a socket whose counters `c` the caller holds (no second lookup of them): the one
/// `sock_create` recorded there, else the `OWNER` storage.
#[inline(always)]
pub(crate) fn owner_with(c: &Counters, sk: *mut c_void) -> *const Owner {
    if c.owner.source != OwnerSource::Unknown as u8 {
        return &raw const c.owner;
    }
    OWNER.get(sk, false).cast_const()
}

/// Owner of `sk`, or null: the one `sock_create` recorded in its counters, else the `OWNER`
/// storage (accepted sockets, sockets older than the monitor).
#[inline(always)]
pub(crate) fn owner_of(sk: *mut c_void) -> *const Owner {
    // SAFETY: null-checked map value.
    if let Some(c) = unsafe { COUNTERS.get(sk, false).as_ref() }
        && c.owner.source != OwnerSource::Unknown as u8
    {
        return &raw const c.owner;
    }
    OWNER.get(sk, false).cast_const()
}
