//! What this kernel offers, for `monitor check` and for degraded operation.

use std::path::Path;

use aya::{
    Btf,
    maps::MapType,
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported, is_map_supported, is_program_supported},
    util::KernelVersion,
};
use aya_obj::btf::BtfKind;
use serde::Serialize;

use super::cgroup::cgroup2_mount;

/// Oldest kernel the full hook set works on (`sock_release` 5.9, coarse clock in cgroup_skb 5.11,
/// atomic fetch-and-or in the socket programs 5.12: README's requirement).
pub const MIN_KERNEL: (u8, u8) = (5, 12);

/// Why the monitor runs below full fidelity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Degradation {
    /// No `sock_send_length`/`sock_recv_length` tracepoints (Linux < 6.3 or no kernel BTF):
    /// TCP payload comes from `bytes_acked`/`bytes_received` less SYN and FIN, which can be off
    /// by one byte when a FIN's fate is unknown; UDP payload is derived from the IP length.
    PayloadFromTcpCounters,
    /// No socket-storage iterator (no kernel BTF, or a kernel before 5.9/5.12): counters of an
    /// idle flow reach userspace only with its next packet (after the update interval) or its
    /// close, and flows still open when the monitor stops are reported as of their last event.
    NoSnapshots,
    /// The kernel refuses the socket-storage iterator, so snapshots read each idle or open flow's
    /// counters through a duplicate of its owner's descriptor (a few system calls per socket, at
    /// each update interval and at shutdown). A socket its owner no longer holds (passed to
    /// another process) is not found: its `shutdown` record is marked incomplete.
    SnapshotsByDescriptor,
    /// Hybrid cgroup layout: every process sits in the v2 root, so the kernel's cgroup id is the
    /// root's; services are resolved from `/proc/<pid>/cgroup` instead.
    HybridCgroups,
    /// `cgroup/sock_create` refused (an exclusive program above, e.g. Android's netd): a socket
    /// gets its owner and counters at its first connect, send or receive, in that process;
    /// sockets never used are not seen.
    NoSocketCreateHook,
    /// `cgroup/sock_release` refused and `fentry/inet_release` unavailable: a TCP flow ends
    /// `tcp_close_grace` after `TCP_CLOSE`, other flows when the monitor stops; every read or
    /// write of them is then an event (so their last event is final).
    NoReleaseHook,
    /// `connect`/`sendmsg`/`recvmsg` hooks refused: a UDP socket's destination is read from the
    /// socket at its first send (connected sockets only).
    NoSockAddrHooks,
    /// `sock_ops` refused: no TCP handshake or close events and no kernel TCP counters; TCP
    /// sockets are found at their first send or receive.
    NoSockOps,
    /// `cgroup_skb` refused: no wire bytes or packets; payload bytes come from the syscall
    /// tracepoints.
    NoWireCounters,
    /// `cgroup_skb` refused: unconnected UDP, ping and raw sockets are counted per socket, without
    /// their destinations.
    NoUnconnectedUdpPeers,
    /// No `getaddrinfo` probe (disabled, no uprobe support, libc not found or not probeable; the
    /// reason is logged at start): apps whose resolver sends no DNS packets (glibc asking
    /// systemd-resolved over its varlink socket, /etc/hosts, DoH, DoT) get names only from TLS
    /// and QUIC server names; their other flows are unnamed.
    NoGetaddrinfoNames,
    /// The daemon runs in a PID namespace other than the host's (a container without the host's
    /// PID namespace): the pids the kernel records are not those of its `/proc`, so apps are
    /// named from the kernel's records only (`source: kernel`: name, uid, start time) and sockets
    /// older than the monitor get their owner at their first read or write.
    ForeignPidNamespace,
}

impl Degradation {
    /// One-line explanation.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::PayloadFromTcpCounters => {
                "payload bytes from TCP counters (no sock_send_length tracepoint); may be off by one byte per FIN"
            }
            Self::HybridCgroups => "hybrid cgroups: services resolved from /proc/<pid>/cgroup",
            Self::NoSnapshots => "no counter snapshots: idle flows are updated at their next packet or close",
            Self::SnapshotsByDescriptor => {
                "no counter iterator: snapshots read socket by socket through the owners' descriptors"
            }
            Self::NoSocketCreateHook => {
                "no sock_create hook (exclusive program above the cgroup): owners taken at a socket's first \
                 connect, send or receive"
            }
            Self::NoReleaseHook => {
                "no release hook (exclusive program, no fentry): TCP flows end after TCP close plus the grace, \
                 others once their socket is found in no process"
            }
            Self::NoSockAddrHooks => {
                "no connect/sendmsg/recvmsg hooks (exclusive program): UDP destinations read at the first send"
            }
            Self::NoSockOps => "no sock_ops hook (exclusive program): no TCP handshake/close events or TCP counters",
            Self::NoWireCounters => "no packet hooks (exclusive program): no wire bytes or packets, payload only",
            Self::NoUnconnectedUdpPeers => {
                "no packet hooks (exclusive program): unconnected UDP, ping and raw sockets without destinations"
            }
            Self::NoGetaddrinfoNames => {
                "no getaddrinfo names (probe not attached, reason logged above): names only from DNS packets and \
                 TLS/QUIC server names (resolvers without DNS packets, e.g. systemd-resolved over varlink, leave \
                 flows unnamed)"
            }
            Self::ForeignPidNamespace => {
                "the daemon runs in a PID namespace of its own: apps named from the kernel's records only (no \
                 executable or command line); run it in the host's PID namespace (e.g. docker run --pid=host)"
            }
        }
    }
}

/// Degradations that follow from the kernel refusing the hooks in `refused` (program names of
/// `monitor_common::maps::programs`), when `fentry/inet_release` stands in for `sock_release`
/// (`release_fallback`) or not.
#[must_use]
pub fn refused_degradations(refused: &[&str], release_fallback: bool) -> Vec<Degradation> {
    use monitor_common::maps::programs as p;
    let is = |name: &str| refused.contains(&name);
    let mut out = Vec::new();
    if is(p::SOCK_CREATE) {
        out.push(Degradation::NoSocketCreateHook);
    }
    if is(p::SOCK_RELEASE) && !release_fallback {
        out.push(Degradation::NoReleaseHook);
    }
    if [p::CONNECT4, p::CONNECT6, p::SENDMSG4, p::SENDMSG6, p::RECVMSG4, p::RECVMSG6].iter().any(|n| is(n)) {
        out.push(Degradation::NoSockAddrHooks);
    }
    if is(p::SOCK_OPS) {
        out.push(Degradation::NoSockOps);
    }
    if is(p::SKB_EGRESS) || is(p::SKB_INGRESS) {
        out.push(Degradation::NoWireCounters);
        out.push(Degradation::NoUnconnectedUdpPeers);
    }
    out
}

/// Degradations that follow from the host layout alone.
#[must_use]
pub fn host_degradations() -> Vec<Degradation> {
    let hybrid = cgroup2_mount().is_ok_and(|m| m != Path::new("/sys/fs/cgroup"));
    let mut out = Vec::new();
    if hybrid {
        out.push(Degradation::HybridCgroups);
    }
    if !crate::sys::initial_pid_namespace() {
        out.push(Degradation::ForeignPidNamespace);
    }
    out
}

#[cfg(test)]
mod tests {
    use monitor_common::maps::programs as p;

    use super::{Degradation as D, refused_degradations};

    #[test]
    fn netd_hook_sets_map_to_their_degradations() {
        let before_v = [p::SKB_INGRESS, p::SKB_EGRESS, p::SOCK_CREATE, p::SOCK_RELEASE];
        assert_eq!(
            refused_degradations(&before_v, true),
            [D::NoSocketCreateHook, D::NoWireCounters, D::NoUnconnectedUdpPeers]
        );
        assert_eq!(
            refused_degradations(&before_v, false),
            [D::NoSocketCreateHook, D::NoReleaseHook, D::NoWireCounters, D::NoUnconnectedUdpPeers]
        );
        let mut v = before_v.to_vec();
        v.push(p::RECVMSG6);
        assert!(refused_degradations(&v, true).contains(&D::NoSockAddrHooks));
        assert_eq!(refused_degradations(&[p::SOCK_OPS], true), [D::NoSockOps]);
        assert!(refused_degradations(&[], false).is_empty());
        let names: Vec<String> = refused_degradations(&v, false)
            .iter()
            .map(|d| serde_json::to_value(d).unwrap().as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "no_socket_create_hook",
                "no_release_hook",
                "no_sock_addr_hooks",
                "no_wire_counters",
                "no_unconnected_udp_peers"
            ]
        );
    }
}

/// One line of `monitor check`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// `Some(true)` present, `Some(false)` missing, `None` could not be determined.
    pub ok: Option<bool>,
    /// Whether the monitor can run without it.
    pub required: bool,
    /// Detail (version, path, error).
    pub detail: String,
}

/// A line whose answer is known.
fn known(name: &'static str, required: bool, ok: bool, detail: &str) -> Check {
    Check { name, ok: Some(ok), required, detail: detail.to_owned() }
}

/// A line whose answer could not be determined: the error, causes included, is its detail (a
/// `Check` is shown and serialised, so text is the right data here).
fn unknown(name: &'static str, required: bool, e: &dyn std::error::Error) -> Check {
    Check { name, ok: None, required, detail: crate::errors::chain(e) }
}

/// A line for a probe that answers `result`.
fn check<E: std::error::Error>(name: &'static str, required: bool, result: Result<bool, E>, detail: &str) -> Check {
    match result {
        Ok(ok) => known(name, required, ok, detail),
        Err(e) => unknown(name, required, &e),
    }
}

/// Probes everything the monitor needs, without attaching anything.
#[must_use]
pub fn check_all() -> Vec<Check> {
    let mut out = Vec::new();
    let version = KernelVersion::current();
    out.push(match &version {
        Ok(v) => known(
            "kernel version",
            true,
            *v >= KernelVersion::new(MIN_KERNEL.0, MIN_KERNEL.1, 0),
            &format!("{v} (need {}.{}+)", MIN_KERNEL.0, MIN_KERNEL.1),
        ),
        Err(e) => unknown("kernel version", true, e),
    });
    out.push(check("bpf() syscall", true, is_map_supported(MapType::Array), ""));
    out.push(match cgroup2_mount() {
        Ok(p) => known("cgroup v2 mount", true, true, &p.display().to_string()),
        Err(e) => known("cgroup v2 mount", true, false, &crate::errors::chain(&e)),
    });
    let btf = Btf::from_sys_fs();
    out.push(known("kernel BTF", false, btf.is_ok(), "/sys/kernel/btf/vmlinux (needed for the payload tracepoints)"));
    out.push(check("ring buffer map", true, is_map_supported(MapType::RingBuf), "5.8+"));
    out.push(check("socket storage map", true, is_map_supported(MapType::SkStorage), "5.2+"));
    for (name, ty, detail) in [
        ("cgroup_sock programs", ProgramType::CgroupSock, "sock_create / sock_release"),
        ("cgroup_sock_addr programs", ProgramType::CgroupSockAddr, "connect / sendmsg / recvmsg"),
        ("sock_ops programs", ProgramType::SockOps, "TCP handshake and close"),
        ("cgroup_skb programs", ProgramType::CgroupSkb, "per-packet counters"),
    ] {
        out.push(check(name, true, is_program_supported(ty), detail));
    }
    for (name, ty, helper, detail) in [
        ("sk_storage in cgroup_sock", ProgramType::CgroupSock, BpfHelper::BPF_FUNC_sk_storage_get, "5.9+"),
        ("pid/comm in cgroup_sock_addr", ProgramType::CgroupSockAddr, BpfHelper::BPF_FUNC_get_current_pid_tgid, "5.7+"),
        ("coarse clock in cgroup_skb", ProgramType::CgroupSkb, BpfHelper::BPF_FUNC_ktime_get_coarse_ns, "5.11+"),
    ] {
        out.push(check(name, true, is_helper_supported(ty, helper), detail));
    }
    let tracepoints = btf.map(|btf| {
        ["btf_trace_sock_send_length", "btf_trace_sock_recv_length"]
            .iter()
            .all(|name| btf.id_by_type_name_kind(name, BtfKind::Typedef).is_ok())
    });
    out.push(check(
        "sock_send_length/sock_recv_length tracepoints",
        false,
        tracepoints,
        "6.3+; exact payload bytes per socket (else TCP counters)",
    ));
    // aya attaches uprobes through the perf `uprobe` PMU, which the kernel lists here.
    let uprobes = is_program_supported(ProgramType::KProbe)
        .map(|ok| ok && Path::new("/sys/bus/event_source/devices/uprobe/type").exists());
    out.push(check(
        "uprobes (perf uprobe PMU)",
        false,
        uprobes,
        "host names from libc's getaddrinfo (else degradation no_getaddrinfo_names)",
    ));
    out
}
