//! Coexisting with Android's netd: exclusive cgroup programs (`BPF_PROG_ATTACH`, flags 0) on the
//! watched cgroup make the kernel refuse the monitor's programs of those types (EPERM). The
//! monitor must fall back (payload tracepoints, `sock_ops`, `fentry/inet_release`), say so, and
//! still attribute owner and exact payload bytes for TCP and connected UDP.
//!
//! The exclusive programs are two instructions (`r0 = 1; exit`: allow everything), loaded and
//! attached with raw `bpf()` calls: aya attaches through bpf_link on Linux 5.7+, which always
//! coexists, so it cannot reproduce netd's attachment.

use std::{
    fs::File,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    path::Path,
};

use aya_obj::generated::{bpf_attach_type, bpf_cmd, bpf_prog_type};
use monitor::probe::bpf_call::{bpf, zeroed_attr};
use monitor::tracker::{
    FlowRecord,
    record::{Direction, OwnerSource, Protocol, RecordKind},
};

use crate::{
    cases::{CLIENT_UID, addr, assert_owner, record_for_local, s, server_addr},
    daemon::Monitor,
    env::{Helper, Pair, Place, TestCgroup, spawn},
};

/// `r0 = 1; exit` as two `struct bpf_insn`.
const ALLOW_ALL: [u64; 2] = [
    // BPF_ALU64 | BPF_MOV | BPF_K (0xb7), dst r0, imm 1.
    0xb7 | (1 << 32),
    // BPF_JMP | BPF_EXIT.
    0x95,
];

/// Do-nothing programs attached exclusively to a cgroup, as netd attaches its own; detached on drop.
pub struct Exclusive {
    cgroup: File,
    attached: Vec<(OwnedFd, bpf_attach_type)>,
}

impl Exclusive {
    /// Attaches a do-nothing program of each of `hooks` to `cgroup` with flags 0.
    pub fn attach(cgroup: &Path, hooks: &[(bpf_prog_type, bpf_attach_type)]) -> Self {
        let file = File::open(cgroup).unwrap();
        let mut attached = Vec::new();
        let license = c"GPL";
        for &(prog_type, attach_type) in hooks {
            let mut attr = zeroed_attr();
            // SAFETY: writing the PROG_LOAD member of the union.
            unsafe {
                let u = &mut attr.__bindgen_anon_3;
                u.prog_type = prog_type as u32;
                u.expected_attach_type = attach_type as u32;
                u.insns = ALLOW_ALL.as_ptr() as u64;
                u.insn_cnt = 2;
                u.license = license.as_ptr() as u64;
            }
            let fd = bpf(bpf_cmd::BPF_PROG_LOAD, &mut attr).unwrap_or_else(|e| panic!("load {prog_type:?}: {e}"));
            // SAFETY: a new descriptor the kernel returned.
            let prog = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).unwrap()) };
            let mut attr = zeroed_attr();
            // SAFETY: a reference to the PROG_ATTACH member of a plain-data union.
            unsafe {
                let u = &mut attr.__bindgen_anon_5;
                u.__bindgen_anon_1.target_fd = file.as_raw_fd() as u32;
                u.attach_bpf_fd = prog.as_raw_fd() as u32;
                u.attach_type = attach_type as u32;
                u.attach_flags = 0; // exclusive: neither ALLOW_OVERRIDE nor ALLOW_MULTI
            }
            bpf(bpf_cmd::BPF_PROG_ATTACH, &mut attr).unwrap_or_else(|e| panic!("attach {attach_type:?}: {e}"));
            attached.push((prog, attach_type));
        }
        Self { cgroup: file, attached }
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        for (prog, attach_type) in &self.attached {
            let mut attr = zeroed_attr();
            // SAFETY: a reference to the PROG_DETACH member of a plain-data union.
            unsafe {
                let u = &mut attr.__bindgen_anon_5;
                u.__bindgen_anon_1.target_fd = self.cgroup.as_raw_fd() as u32;
                u.attach_bpf_fd = prog.as_raw_fd() as u32;
                u.attach_type = *attach_type as u32;
            }
            let _ = bpf(bpf_cmd::BPF_PROG_DETACH, &mut attr);
        }
    }
}

/// A server helper killed if the test fails before it finishes: an orphaned helper would keep
/// the root-test lock (inherited descriptor) held forever.
struct Reaped(Option<Helper>);

impl Reaped {
    fn get(&mut self) -> &mut Helper {
        self.0.as_mut().unwrap()
    }

    fn finish(mut self) -> Vec<serde_json::Value> {
        self.0.take().unwrap().finish()
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(h) = self.0.as_mut() {
            let _ = h.child.kill();
            let _ = h.child.wait();
        }
    }
}

/// What netd attaches on every release: packet hooks, `inet/create`, `inet_release`.
const NETD: [(bpf_prog_type, bpf_attach_type); 4] = [
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SKB, bpf_attach_type::BPF_CGROUP_INET_INGRESS),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SKB, bpf_attach_type::BPF_CGROUP_INET_EGRESS),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK, bpf_attach_type::BPF_CGROUP_INET_SOCK_CREATE),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK, bpf_attach_type::BPF_CGROUP_INET_SOCK_RELEASE),
];

/// What netd adds from Android 15: the sock_addr hooks.
const NETD_V: [(bpf_prog_type, bpf_attach_type); 6] = [
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_INET4_CONNECT),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_INET6_CONNECT),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_UDP4_SENDMSG),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_UDP6_SENDMSG),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_UDP4_RECVMSG),
    (bpf_prog_type::BPF_PROG_TYPE_CGROUP_SOCK_ADDR, bpf_attach_type::BPF_CGROUP_UDP6_RECVMSG),
];

/// Under netd's exclusive programs (`sock_addr`: Android 15's set), a TCP client and a
/// connected UDP client in the watched cgroup are attributed with exact payload bytes.
pub fn tcp_and_connected_udp_exact(sock_addr: bool, v6: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mut hooks = NETD.to_vec();
    if sock_addr {
        hooks.extend(NETD_V);
    }
    let exclusive = Exclusive::attach(&cg.path, &hooks);
    let tcp_server = server_addr(&pair, v6, 0, 5801);
    let udp_server = server_addr(&pair, v6, 1, 5802);
    let mut srv = Reaped(Some(spawn(
        "tcp-server",
        &[s(tcp_server), s(65_536), s(1)],
        Place { netns: Some(&pair.b), ..Place::default() },
    )));
    srv.get().line();
    let mut echo =
        Reaped(Some(spawn("udp-echo", &[s(udp_server), s(150)], Place { netns: Some(&pair.b), ..Place::default() })));
    echo.get().line();

    let mon = Monitor::start(&cg.path, "");
    let client = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let tcp = spawn("tcp-client", &[s(tcp_server), s(1_000_000), s(1)], client);
    let tcp_pid = tcp.pid();
    let tcp_lines = tcp.finish();
    let udp = spawn("udp-connected", &[s(udp_server), s(1100), s(150)], client);
    let udp_pid = udp.pid();
    let udp_lines = udp.finish();
    srv.finish();
    echo.finish();
    let out = mon.stop();
    drop(exclusive);

    let mut expected = vec!["no_socket_create_hook", "no_wire_counters", "no_unconnected_udp_peers"];
    if sock_addr {
        expected.push("no_sock_addr_hooks");
    }
    for d in &expected {
        assert!(out.degradations.iter().any(|x| x == d), "degradation {d} not announced: {:?}", out.degradations);
    }
    assert!(!out.degradations.iter().any(|x| x == "no_sock_ops"), "sock_ops stands: {:?}", out.degradations);
    // fentry/inet_release stands in for sock_release where tracing programs may attach to
    // functions; where not (the CI kernel), UDP flows end at shutdown with their final counters.
    let release_hook = !out.degradations.iter().any(|x| x == "no_release_hook");
    eprintln!("    release hook: {}", if release_hook { "fentry/inet_release" } else { "none" });
    assert!(out.log.contains("kernel refused"), "the refusal is logged: {}", out.log);

    let r = record_for_local(&out, addr(&tcp_lines[0]["local"]));
    assert_owner(r, tcp_pid, "mon-tcp-client", CLIENT_UID);
    assert_eq!(r.owner.source, OwnerSource::Syscall, "{r:#?}");
    assert_eq!((r.protocol, r.direction, r.remote), (Protocol::Tcp, Direction::Outbound, Some(tcp_server)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (1_000_000, 65_536));
    assert!(r.complete, "{r:#?}");
    assert_eq!(r.wire.tx_packets + r.wire.rx_packets, 0, "no packet path: {r:#?}");

    let udp_local = addr(&udp_lines[0]["local"]);
    let last_kind = if release_hook { RecordKind::Close } else { RecordKind::Shutdown };
    let found: Vec<&FlowRecord> =
        out.records.iter().filter(|r| r.local == Some(udp_local) && r.event == last_kind).collect();
    assert_eq!(found.len(), 1, "one {last_kind:?} record for {udp_local}: {:#?}", out.records);
    let r = found[0];
    assert_owner(r, udp_pid, "mon-udp-conn", CLIENT_UID);
    assert_eq!((r.protocol, r.direction, r.remote), (Protocol::Udp, Direction::Outbound, Some(udp_server)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (165_000, 165_000));
    assert_eq!(r.owner.source, OwnerSource::Syscall, "{r:#?}");
    assert!(
        out.records.iter().all(|r| r.owner.tgid == tcp_pid || r.owner.tgid == udp_pid),
        "only the watched cgroup is reported: {:#?}",
        out.records
    );
    out.assert_nothing_lost();
}

/// Under netd's exclusive programs without a release hook (the CI kernel refuses
/// `fentry/inet_release` too: degradation `no_release_hook`), a connected UDP client that closed
/// ends while the daemon runs, once its socket is found in no process at two checks: a `close`
/// with its exact bytes, complete (there every read and write is an event, and none was lost). A
/// review: such flows lived until the daemon's shutdown. Where `fentry` stands in, the release
/// ends it.
pub fn udp_without_a_release_hook_ends_while_running() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let exclusive = Exclusive::attach(&cg.path, &NETD);
    let udp_server = server_addr(&pair, false, 1, 5803);
    let mut echo =
        Reaped(Some(spawn("udp-echo", &[s(udp_server), s(20)], Place { netns: Some(&pair.b), ..Place::default() })));
    echo.get().line();
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let client = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let udp = spawn("udp-connected", &[s(udp_server), s(1100), s(20)], client);
    let udp_pid = udp.pid();
    let udp_lines = udp.finish();
    echo.finish();
    // Checks every 3 s: the first finds the socket nowhere, the next ends its flow.
    std::thread::sleep(std::time::Duration::from_secs(10));
    let out = mon.stop();
    drop(exclusive);
    let release_hook = !out.degradations.iter().any(|x| x == "no_release_hook");
    let udp_local = addr(&udp_lines[0]["local"]);
    let mine: Vec<&FlowRecord> = out.records.iter().filter(|r| r.local == Some(udp_local)).collect();
    let closes: Vec<&&FlowRecord> = mine.iter().filter(|r| r.event == RecordKind::Close).collect();
    assert_eq!(closes.len(), 1, "one close for {udp_local} before the stop: {mine:#?}");
    assert!(mine.iter().all(|r| r.event != RecordKind::Shutdown), "{mine:#?}");
    let r = closes[0];
    assert_owner(r, udp_pid, "mon-udp-conn", CLIENT_UID);
    assert_eq!((r.protocol, r.remote), (Protocol::Udp, Some(udp_server)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (22_000, 22_000));
    assert!(r.complete, "{r:#?}");
    let vanished = out.stats["tracker"]["vanished_flows"].as_u64().unwrap();
    assert_eq!(vanished, u64::from(!release_hook), "{}", out.stats);
    eprintln!("    release hook: {}", if release_hook { "fentry/inet_release" } else { "none: ended as gone" });
}
