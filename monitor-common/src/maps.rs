//! Names that cross the kernel/userspace boundary, defined once.
//!
//! The kernel's `#[map]`/`#[btf_map]` statics carry these names; userspace looks maps and
//! programs up only through these constants (a test checks each resolves in the object).

/// Ring buffer of [`crate::event::Event`]s.
pub const EVENTS: &str = "EVENTS";
/// Per-CPU array of `u64` statistics, indexed by `STAT_*`.
pub const STATS: &str = "STATS";
/// Socket storage of [`crate::sock::Owner`].
pub const OWNER: &str = "OWNER";
/// Socket storage of [`crate::sock::Counters`].
pub const COUNTERS: &str = "COUNTERS";
/// Socket storage of [`crate::sock::PeerTable`].
pub const PEERS: &str = "PEERS";

/// Hash map (LRU) of pending `getaddrinfo` calls per thread (`node` and `res` pointers), between
/// the entry uprobe and the return uprobe. Kernel-internal; named here for the object check.
pub const GAI_CALLS: &str = "GAI_CALLS";

/// Array of one `u32` of `FALLBACK_*` bits, written by userspace after attaching (the hooks the
/// kernel refused are known only then).
pub const FALLBACK: &str = "FALLBACK";
/// `FALLBACK` bit: no `sock_create` hook, so the payload tracepoints give a watched IPv4/IPv6
/// socket without counters its counters and owner and report it (`Connect`/`Discovered`), and
/// send periodic `Update`s (no packet path either).
pub const FALLBACK_DISCOVER: u32 = 1;
/// `FALLBACK` bit: no release hook at all, so the last event of a socket must carry its final
/// counters: the payload tracepoints send an `Update` after every read or write of a non-TCP
/// socket, and of a TCP socket once it reached `TCP_CLOSE`.
pub const FALLBACK_EVERY_CALL: u32 = 2;
/// `FALLBACK` bit: snapshots are read by descriptor (no counter iterator), which finds only the
/// sockets userspace knows, so the packet path announces a UDP socket that no event announced
/// yet at its first packets (one `Update`, `crate::sock::COUNTER_ANNOUNCED`): a connected UDP
/// socket busy only within its first update interval would otherwise reach userspace at its
/// release only (TCP sockets are announced by `Established`, unconnected ones by their first
/// peer).
pub const FALLBACK_ANNOUNCE: u32 = 4;

/// Default ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_DEFAULT_BYTES: u32 = 4 << 20;

/// Load-time global: minimum nanoseconds between two `Update` events of one flow.
pub const GLOBAL_UPDATE_INTERVAL_NS: &str = "UPDATE_INTERVAL_NS";
/// Load-time global: `CLOCK_BOOTTIME` nanoseconds when the programs were loaded (`u64`): a
/// datagram from a new peer of a socket older than the monitor that comes a second after it sent
/// first (one sooner may answer what the socket sent before).
pub const GLOBAL_LOADED_BOOT_NS: &str = "LOADED_BOOT_NS";
/// Load-time global: 1 to copy payloads for the names stage (`crate::copy`), 0 not to (`u32`).
pub const GLOBAL_COPY_PAYLOADS: &str = "COPY_PAYLOADS";
/// Load-time global: 1 when the kernel has `bpf_skc_to_mptcp_sock` (Linux 5.19), so Multipath TCP
/// subflows are charged to their connection's owner and end at `TCP_CLOSE`; 0 keeps the call
/// out of the programs (the verifier drops the branch on the frozen value) (`u32`).
pub const GLOBAL_MPTCP_SUBFLOWS: &str = "MPTCP_SUBFLOWS";
/// Load-time global: cgroup v2 id of the watched cgroup (`u64`).
pub const GLOBAL_WATCHED_CGROUP_ID: &str = "WATCHED_CGROUP_ID";
/// Load-time global: depth of the watched cgroup below the root (`u32`).
pub const GLOBAL_WATCHED_CGROUP_LEVEL: &str = "WATCHED_CGROUP_LEVEL";
/// Load-time global: offset of `skc_v6_daddr` in `struct sock` (`u32`, from kernel BTF; 0 unknown).
pub const GLOBAL_SK_V6_DADDR_OFFSET: &str = "SK_V6_DADDR_OFFSET";
/// Load-time global: offset of `skc_v6_rcv_saddr` in `struct sock` (`u32`; 0 unknown).
pub const GLOBAL_SK_V6_RCV_SADDR_OFFSET: &str = "SK_V6_RCV_SADDR_OFFSET";
/// Load-time global: offset of the 16-bit `sk_protocol` in `struct sock` (`u32`; 0 unknown).
pub const GLOBAL_SK_PROTOCOL_OFFSET: &str = "SK_PROTOCOL_OFFSET";
/// Load-time global: offset of the `sk_socket` pointer in `struct sock` (`u32`; 0 unknown: no
/// `TcpClose` is marked `FLAG_NO_FILE`).
pub const GLOBAL_SK_SOCKET_OFFSET: &str = "SK_SOCKET_OFFSET";

/// Load-time global: offset of the `group_leader` pointer in `struct task_struct` (`u32`; 0
/// unknown: an owner recorded at a read or write keeps the name of the thread that made it).
pub const GLOBAL_TASK_GROUP_LEADER_OFFSET: &str = "TASK_GROUP_LEADER_OFFSET";
/// Load-time global: offset of `comm` in `struct task_struct` (`u32`; 0 unknown, as above).
pub const GLOBAL_TASK_COMM_OFFSET: &str = "TASK_COMM_OFFSET";
/// Load-time global: offset of the 64-bit `start_boottime` in `struct task_struct` (`u32`; 0
/// unknown: owners carry no process start, `crate::sock::Owner::start_cs` is 0).
pub const GLOBAL_TASK_START_BOOTTIME_OFFSET: &str = "TASK_START_BOOTTIME_OFFSET";
/// Load-time global: offset of the `mm` pointer in `struct task_struct` (`u32`; 0 unknown:
/// owners carry no program mark, `crate::sock::Owner::exec_mark` is 0).
pub const GLOBAL_TASK_MM_OFFSET: &str = "TASK_MM_OFFSET";
/// Load-time global: offset of the 64-bit `start_stack` in `struct mm_struct` (`u32`; 0 unknown,
/// as above).
pub const GLOBAL_MM_START_STACK_OFFSET: &str = "MM_START_STACK_OFFSET";
/// Load-time global: offset of the 32-bit `pid` in `struct task_struct`, `tgid` right after it
/// (`u32`; 0 unknown: `bpf_get_current_pid_tgid` gives them). Read through BTF only.
pub const GLOBAL_TASK_PID_OFFSET: &str = "TASK_PID_OFFSET";
/// Load-time global: offset of the `cred` pointer in `struct task_struct` (`u32`; 0 unknown:
/// `bpf_get_current_uid_gid` gives the ids). Read through BTF only.
pub const GLOBAL_TASK_CRED_OFFSET: &str = "TASK_CRED_OFFSET";
/// Load-time global: offset of the 32-bit `uid` in `struct cred`, `gid` right after it (`u32`; 0
/// unknown, as above).
pub const GLOBAL_CRED_UID_OFFSET: &str = "CRED_UID_OFFSET";
/// Load-time global: offset of the 32-bit `copied_seq` in `struct tcp_sock` (`u32`; 0 unknown:
/// a `TcpClose` never carries `crate::event::TCP_CONSUMED`).
pub const GLOBAL_TCP_COPIED_SEQ_OFFSET: &str = "TCP_COPIED_SEQ_OFFSET";
/// Load-time global: offset of the 64-bit `bytes_received` in `struct tcp_sock` (`u32`; 0
/// unknown, or under a confidentiality lockdown). With the two below and
/// [`GLOBAL_TCP_COPIED_SEQ_OFFSET`], read by `cgroup/sock_release` for a TCP socket whose end no
/// `TCP_CLOSE` of this monitor reports (one older than it): its `Release` then carries the
/// kernel's counters, so bytes read without `recvmsg` (splice) since its last update count.
pub const GLOBAL_TCP_BYTES_RECEIVED_OFFSET: &str = "TCP_BYTES_RECEIVED_OFFSET";
/// Load-time global: offset of the 64-bit `bytes_acked` in `struct tcp_sock` (`u32`; as above).
pub const GLOBAL_TCP_BYTES_ACKED_OFFSET: &str = "TCP_BYTES_ACKED_OFFSET";
/// Load-time global: offset of the 32-bit `rcv_nxt` in `struct tcp_sock` (`u32`; as above).
pub const GLOBAL_TCP_RCV_NXT_OFFSET: &str = "TCP_RCV_NXT_OFFSET";
/// Load-time global: offset of the `unsigned long sk_flags` in `struct sock` (`u32`; as above):
/// its `SOCK_DONE` bit says the peer's FIN was received (not set by a reset), which
/// `bytes_received` counts as one byte.
pub const GLOBAL_SK_FLAGS_OFFSET: &str = "SK_FLAGS_OFFSET";
/// Load-time global: offset of the 32-bit `write_seq` in `struct tcp_sock` (`u32`; 0 unknown, or
/// under a confidentiality lockdown). With [`GLOBAL_TCP_SND_UNA_OFFSET`], read with the counters
/// above: what the process wrote that waits in the send queue at its release, which the kernel
/// sends after it (`TCP_WRITE_POSITION`).
pub const GLOBAL_TCP_WRITE_SEQ_OFFSET: &str = "TCP_WRITE_SEQ_OFFSET";
/// Load-time global: offset of the 32-bit `snd_una` in `struct tcp_sock` (`u32`; as above).
pub const GLOBAL_TCP_SND_UNA_OFFSET: &str = "TCP_SND_UNA_OFFSET";
/// Load-time global: 1 when the task fields behind the offsets above are read through the
/// kernel's BTF pointer to the current task (`bpf_get_current_task_btf` and plain loads the
/// verifier checks against the kernel's types: no helper call per field), 0 for one
/// `bpf_probe_read_kernel` per field (`u32`). The loader sets 1 where the offsets are known and
/// falls back to 0 when the kernel refuses a program so built.
pub const GLOBAL_TASK_BTF: &str = "TASK_BTF";

/// Events that could not be reserved in the ring buffer (lost).
pub const STAT_RINGBUF_FULL: u32 = 0;
/// Events submitted (received + lost must equal this).
pub const STAT_EVENTS: u32 = 1;
/// Socket storage could not be created (socket not counted).
pub const STAT_STORAGE_FAIL: u32 = 2;
/// Peer slots reused for another peer (not a loss: the old slot is flushed).
pub const STAT_PEER_EVICTIONS: u32 = 3;
/// Unconnected-UDP packets whose headers could not be read (counted on the socket only).
pub const STAT_PEER_PARSE_FAIL: u32 = 4;
/// Packets with no full socket (request/time-wait sockets, RST replies), and frames watched
/// processes send through `AF_PACKET` sockets: not attributable.
pub const STAT_UNATTRIBUTED_PACKETS: u32 = 5;
/// IP-layer bytes of those packets (for `AF_PACKET` frames: the bytes written, see README.md).
pub const STAT_UNATTRIBUTED_BYTES: u32 = 6;
/// Payload copies (`crate::copy`) and `getaddrinfo` results (`crate::gai`) submitted to the ring
/// buffer, lost ones included.
pub const STAT_COPIES: u32 = 7;
/// Payload copies and `getaddrinfo` results that did not fit in the ring buffer (lost).
pub const STAT_COPIES_LOST: u32 = 8;
/// Sockets other than TCP released without counters: created before the monitor and silent
/// since, or (none expected) sockets whose storage the kernel did not give back at their release.
pub const STAT_RELEASED_UNCOUNTED: u32 = 9;
/// Sockets `cgroup/sock_create` gave counters (IPv4 and IPv6 sockets created under the monitor).
pub const STAT_SOCKETS_CREATED: u32 = 10;
/// Sockets `cgroup/sock_release` found counters in. Once every socket of a workload is closed,
/// this minus [`STAT_SOCKETS_CREATED`] is the number of its sockets older than the monitor that
/// got counters; fewer would be creations whose release the kernel did not report (none expected).
pub const STAT_SOCKETS_RELEASED: u32 = 11;
/// Number of `STAT_*` slots.
pub const STAT_COUNT: u32 = 12;

/// Program names (the Rust function names in `monitor-ebpf`), in attach order.
pub mod programs {
    /// `cgroup/sock_create`.
    pub const SOCK_CREATE: &str = "sock_create";
    /// `cgroup/sock_release`.
    pub const SOCK_RELEASE: &str = "sock_release";
    /// `cgroup/connect4`.
    pub const CONNECT4: &str = "sock_addr_connect4";
    /// `cgroup/connect6`.
    pub const CONNECT6: &str = "sock_addr_connect6";
    /// `cgroup/sendmsg4`.
    pub const SENDMSG4: &str = "sock_addr_sendmsg4";
    /// `cgroup/sendmsg6`.
    pub const SENDMSG6: &str = "sock_addr_sendmsg6";
    /// `cgroup/recvmsg4`.
    pub const RECVMSG4: &str = "sock_addr_recvmsg4";
    /// `cgroup/recvmsg6`.
    pub const RECVMSG6: &str = "sock_addr_recvmsg6";
    /// `sockops`.
    pub const SOCK_OPS: &str = "sock_ops_tcp";
    /// `cgroup_skb/egress`.
    pub const SKB_EGRESS: &str = "cgroup_skb_egress";
    /// `cgroup_skb/ingress`.
    pub const SKB_INGRESS: &str = "cgroup_skb_ingress";
    /// `tp_btf/sock_send_length`.
    pub const SEND_LENGTH: &str = "tp_sock_send_length";
    /// `tp_btf/sock_recv_length`.
    pub const RECV_LENGTH: &str = "tp_sock_recv_length";
    /// `fentry/inet_release`: the release hook when `cgroup/sock_release` is refused.
    pub const FENTRY_RELEASE: &str = "fentry_inet_release";
    /// Kernel function behind [`FENTRY_RELEASE`].
    pub const FENTRY_RELEASE_FN: &str = "inet_release";
    /// `iter/bpf_sk_storage_map` over `COUNTERS`.
    pub const ITER_COUNTERS: &str = "iter_counters";
    /// `iter/bpf_sk_storage_map` over `PEERS` (read at shutdown).
    pub const ITER_PEERS: &str = "iter_peers";
    /// `uprobe` on libc's `getaddrinfo` (entry: remembers the arguments).
    pub const GAI_ENTRY: &str = "uprobe_getaddrinfo";
    /// `uretprobe` on libc's `getaddrinfo` (return: sends the result).
    pub const GAI_RETURN: &str = "uretprobe_getaddrinfo";
    /// The libc function both attach to.
    pub const GAI_FN: &str = "getaddrinfo";
    /// Kernel tracepoint behind [`SEND_LENGTH`] (Linux 6.3+).
    pub const SEND_LENGTH_TP: &str = "sock_send_length";
    /// Kernel tracepoint behind [`RECV_LENGTH`] (Linux 6.3+).
    pub const RECV_LENGTH_TP: &str = "sock_recv_length";
    /// Environment variable that, set to `1` for the daemon, also attaches the `CALIBRATE_*`
    /// programs (`cargo xtask bench` sets it for its kernel-cost runs only).
    pub const CALIBRATION_ENV: &str = "MONITOR_BPF_CALIBRATION";
    /// Empty `cgroup_skb/egress` program: the measurement floor of the benchmark (attached only
    /// with [`CALIBRATION_ENV`]` = 1`).
    pub const CALIBRATE_EGRESS: &str = "calibrate_egress";
    /// Empty `cgroup_skb/ingress` program (as [`CALIBRATE_EGRESS`]).
    pub const CALIBRATE_INGRESS: &str = "calibrate_ingress";
    /// Empty `sockops` program (as [`CALIBRATE_EGRESS`]).
    pub const CALIBRATE_SOCK_OPS: &str = "calibrate_sock_ops";
    /// Empty `cgroup/sock_create` program (as [`CALIBRATE_EGRESS`]).
    pub const CALIBRATE_SOCK_CREATE: &str = "calibrate_sock_create";
}
