//! Multipath TCP (`IPPROTO_MPTCP`): the process writes to and reads from its MPTCP socket, and the
//! kernel carries the bytes over TCP subflows it creates itself (no `sock_create` hook runs for
//! them, and no process holds them).

use std::{
    io::Write as _,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::FromRawFd as _,
};

use nix::sys::socket::SockaddrLike as _;
use serde_json::json;

use monitor::tracker::{
    FlowRecord,
    record::{Direction, PayloadSource, Protocol, RecordKind},
};

use crate::{
    cases::{CLIENT_UID, SERVER_UID, assert_owner, assert_within_1pct, s, server_addr},
    daemon::Monitor,
    env::{Netns, Pair, Place, TestCgroup, ip, spawn},
    helper::{name, pattern, read_to_end, say},
};

const IPPROTO_MPTCP: i32 = 262;

/// An MPTCP stream socket of `addr`'s family.
fn mptcp_socket(addr: SocketAddr) -> i32 {
    let family = if addr.is_ipv6() { nix::libc::AF_INET6 } else { nix::libc::AF_INET };
    // SAFETY: plain socket(2) call.
    let fd = unsafe { nix::libc::socket(family, nix::libc::SOCK_STREAM, IPPROTO_MPTCP) };
    assert!(fd >= 0, "socket(IPPROTO_MPTCP): {}", std::io::Error::last_os_error());
    fd
}

fn sockaddr(addr: SocketAddr) -> nix::sys::socket::SockaddrStorage {
    nix::sys::socket::SockaddrStorage::from(addr)
}

/// Helper roles of this file; false for another role.
pub fn run(role: &str, args: &[String]) -> bool {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // mptcp-server BIND REPLY CONNS: CONNS MPTCP connections one after the other, each read to
        // EOF and answered with REPLY bytes.
        "mptcp-server" => {
            name("mon-mptcp-srv");
            let addr: SocketAddr = arg(0).parse().unwrap();
            let fd = mptcp_socket(addr);
            let sa = sockaddr(addr);
            let one: nix::libc::c_int = 1;
            // SAFETY: valid descriptors, addresses and lengths.
            unsafe {
                nix::libc::setsockopt(fd, nix::libc::SOL_SOCKET, nix::libc::SO_REUSEADDR, (&raw const one).cast(), 4);
                assert_eq!(nix::libc::bind(fd, sa.as_ptr(), sa.len()), 0, "bind");
                assert_eq!(nix::libc::listen(fd, 8), 0, "listen");
                // Its cookie read before any connection, as `ss -e` or a counter snapshot may:
                // the kernel copies it into the connections it accepts from then on.
                let mut cookie = 0u64;
                let mut len = nix::libc::socklen_t::try_from(std::mem::size_of::<u64>()).unwrap();
                let rc = nix::libc::getsockopt(
                    fd,
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_COOKIE,
                    (&raw mut cookie).cast(),
                    &raw mut len,
                );
                assert_eq!(rc, 0, "SO_COOKIE");
            }
            // SAFETY: a listening stream socket we own.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            say(&json!({"ready": true}));
            for _ in 0..arg(2).parse::<usize>().unwrap() {
                let (mut s, _) = listener.accept().unwrap();
                let rx = read_to_end(&mut s);
                let reply: usize = arg(1).parse().unwrap();
                s.write_all(&pattern(reply)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                say(&json!({"rx": rx, "tx": reply}));
            }
        }
        // mptcp-client SERVER SEND WAIT_MS: one MPTCP connection, sends SEND bytes (the first
        // 1,000, then WAIT_MS for the path manager's subflows, which it opens once data was
        // acknowledged, then the rest), reads to EOF.
        "mptcp-client" => {
            name("mon-mptcp-cli");
            let server: SocketAddr = arg(0).parse().unwrap();
            let fd = mptcp_socket(server);
            let sa = sockaddr(server);
            // SAFETY: a valid descriptor and address.
            assert_eq!(unsafe { nix::libc::connect(fd, sa.as_ptr(), sa.len()) }, 0, "connect");
            // SAFETY: a connected stream socket we own.
            let mut s = unsafe { TcpStream::from_raw_fd(fd) };
            let send: usize = arg(1).parse().unwrap();
            let data = pattern(send);
            let (first, rest) = data.split_at(1000.min(send));
            s.write_all(first).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(arg(2).parse().unwrap()));
            s.write_all(rest).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            say(
                &json!({"local": s.local_addr().unwrap().to_string(), "tx": send, "rx": rx, "pid": std::process::id()}),
            );
        }
        _ => return false,
    }
    true
}

/// An MPTCP client sends 1,000,000 bytes to an MPTCP server, which answers 65,536, both watched:
/// one `close` record per connection side (protocol `mptcp`, charged to the process, payload as
/// it wrote and read it, wire bytes of its subflows) and the listener's, none for the subflows;
/// wire bytes within 1 % of each interface's. With `two_subflows` (IPv4), the client's path manager opens a second subflow from
/// a second address of its own (made by a kernel worker, not the process): still one flow each.
pub fn mptcp_exchange(v6: bool, two_subflows: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, v6, 0, 5301);
    if two_subflows {
        let (a, b) = (pair.a.name.as_str(), pair.b.name.as_str());
        ip(&["-n", a, "addr", "add", "10.77.0.11/32", "dev", "va"]);
        ip(&["-n", b, "route", "add", "10.77.0.11/32", "dev", "vb"]);
        ip(&["-n", a, "mptcp", "limits", "set", "subflow", "2"]);
        ip(&["-n", a, "mptcp", "endpoint", "add", "10.77.0.11", "dev", "va", "subflow"]);
        ip(&["-n", b, "mptcp", "limits", "set", "subflow", "2"]);
    }
    let mon = Monitor::start(&cg.path, "");
    let (before_a, before_b) = (pair.a.counters("va"), pair.b.counters("vb"));
    let mut srv = spawn(
        "mptcp-server",
        &[s(server), s(65_536), s(1)],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) },
    );
    srv.line();
    let client = spawn(
        "mptcp-client",
        &[s(server), s(1_000_000), s(if two_subflows { 500 } else { 0 })],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let (client_pid, server_pid) = (client.pid(), srv.pid());
    let truth = client.finish().remove(0);
    let served = srv.finish().remove(0);
    assert_eq!((served["rx"].as_u64(), truth["rx"].as_u64()), (Some(1_000_000), Some(65_536)), "helpers' own counts");
    if two_subflows {
        assert!(joins(&pair.a) >= 1, "the second subflow was not made: nothing to test");
    }
    let out = mon.stop();
    let iface = (pair.a.counters("va").ip_layer_since(before_a), pair.b.counters("vb").ip_layer_since(before_b));
    // Distinct flows: an accepted MPTCP socket is a clone of the listener's, cookie included
    // when the listener's was read before (which the monitor therefore does not do).
    let mut cookies: Vec<u64> = out.records.iter().map(|r| r.cookie).collect();
    cookies.sort_unstable();
    cookies.dedup();
    assert_eq!(cookies.len(), out.records.len(), "one cookie per flow: {:#?}", out.records);
    for r in &out.records {
        assert!(r.owner.tgid == client_pid || r.owner.tgid == server_pid, "a record of another process: {r:#?}");
        assert_eq!((r.event, r.protocol, r.ip_protocol), (RecordKind::Close, Protocol::Mptcp, 6), "{:#?}", out.records);
        assert!(r.complete, "{r:#?}");
    }
    let of = |pid: u32, direction: Direction| -> &FlowRecord {
        let mine: Vec<&FlowRecord> =
            out.records.iter().filter(|r| r.owner.tgid == pid && r.direction == direction).collect();
        assert_eq!(mine.len(), 1, "one {direction:?} flow of {pid}: {:#?}", out.records);
        mine[0]
    };
    let (c, sv) = (of(client_pid, Direction::Outbound), of(server_pid, Direction::Inbound));
    assert_owner(c, client_pid, "mon-mptcp-cli", CLIENT_UID);
    assert_owner(sv, server_pid, "mon-mptcp-srv", SERVER_UID);
    assert_eq!((c.remote, sv.local), (Some(server), Some(server)));
    assert_eq!((c.payload.tx_bytes, c.payload.rx_bytes), (1_000_000, 65_536), "client payload: {c:#?}");
    assert_eq!((sv.payload.tx_bytes, sv.payload.rx_bytes), (65_536, 1_000_000), "server payload: {sv:#?}");
    assert_eq!((c.payload_source, sv.payload_source), (PayloadSource::Syscall, PayloadSource::Syscall));
    // Wire bytes of each side's records against its interface, within 1 % as for TCP (packets
    // the kernel sends from its own control socket, e.g. in TIME_WAIT, pass no cgroup hook); the
    // subflows' packets after a process let go of its socket are unattributed bytes.
    for (pid, side, counters) in [(client_pid, "client", iface.0), (server_pid, "server", iface.1)] {
        let (tx, rx) = out
            .records
            .iter()
            .filter(|r| r.owner.tgid == pid)
            .fold((0, 0), |(tx, rx), r| (tx + r.wire.tx_bytes, rx + r.wire.rx_bytes));
        assert_within_1pct(&format!("{side} wire tx"), tx, counters.tx_bytes);
        assert_within_1pct(&format!("{side} wire rx"), rx, counters.rx_bytes);
    }
    // After a flow's end only its subflows' closing packets are unattributed, never data (a
    // flow ended while data was still queued lost about a segment here).
    let unattributed = out.stats["kernel"]["unattributed_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(unattributed < 600, "unattributed bytes {unattributed}: {}", out.stats);
    eprintln!("    one flow each side (and the listener's), payload exact; {unattributed} B unattributed");
    out.assert_nothing_lost();
}

/// Two MPTCP connections accepted one after the other by one listener whose cookie was read (the
/// kernel copies it into the connections it accepts from then on), with counter snapshots
/// meanwhile: two inbound flows of their own, each exact.
pub fn mptcp_accepts_after_a_snapshot() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, 5302);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let srv_place = Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) };
    let mut srv = spawn("mptcp-server", &[s(server), s(4_000), s(2)], srv_place);
    srv.line();
    let client_place = Place { netns: Some(&pair.a), ..Place::default() };
    // The first connection idles 2.5 s after its first 1,000 bytes: snapshots of the server's
    // sockets run meanwhile.
    for (send, wait) in [(50_000, 2_500), (70_000, 0)] {
        spawn("mptcp-client", &[s(server), s(send), s(wait)], client_place).finish();
    }
    let server_pid = srv.pid();
    srv.finish();
    let out = mon.stop();
    let inbound: Vec<&FlowRecord> = out
        .records
        .iter()
        .filter(|r| r.owner.tgid == server_pid && r.direction == Direction::Inbound && r.event == RecordKind::Close)
        .collect();
    let mut got: Vec<(u64, u64)> = inbound.iter().map(|r| (r.payload.rx_bytes, r.payload.tx_bytes)).collect();
    got.sort_unstable();
    assert_eq!(got, [(50_000, 4_000), (70_000, 4_000)], "one flow per connection: {:#?}", out.records);
    assert_ne!(inbound[0].cookie, inbound[1].cookie, "{:#?}", out.records);
    eprintln!("    two accepted connections, two flows, each exact");
    out.assert_nothing_lost();
}

/// Subflows that joined a connection, as the client's namespace counts them
/// (`MPTcpExtMPJoinSynAckRx`: SYN-ACKs of `MP_JOIN` handshakes received).
fn joins(ns: &Netns) -> u64 {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns.name, "nstat", "-az", "MPTcpExtMPJoinSynAckRx"])
        .output()
        .expect("nstat (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("MPTcpExtMPJoinSynAckRx"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
