//! One TCP socket used for more than one connection: disconnected with `connect(AF_UNSPEC)` and
//! connected again, or connected again after a refused attempt. Each connection (and each
//! attempt) is its own flow with its own addresses and bytes, against the bytes the helper moved
//! and the servers' counts (the audit's cases: one record held both connections' bytes, with the
//! first one's local port and the second one's remote; a refused attempt had no record).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use monitor::tracker::{
    FlowRecord,
    record::{Direction, RecordKind},
};
use serde_json::{Value, json};

use crate::{
    cases::{CLIENT_UID, assert_owner, s, server_addr},
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, say},
};

/// `connect(2)` of `fd` to `addr`; the error, if any.
fn connect(fd: i32, addr: SocketAddr) -> Result<(), nix::errno::Errno> {
    nix::sys::socket::connect(fd, &nix::sys::socket::SockaddrStorage::from(addr))
}

/// `connect(fd, AF_UNSPEC)`: the kernel disconnects the socket (a reset for an open connection).
fn disconnect(fd: i32) {
    // SAFETY: an all-zero sockaddr whose family is AF_UNSPEC, of its own size.
    let rc = unsafe {
        let mut sa: nix::libc::sockaddr = std::mem::zeroed();
        sa.sa_family = nix::libc::AF_UNSPEC as nix::libc::sa_family_t;
        nix::libc::connect(fd, &raw const sa, nix::libc::socklen_t::try_from(size_of::<nix::libc::sockaddr>()).unwrap())
    };
    assert_eq!(rc, 0, "connect(AF_UNSPEC): {}", std::io::Error::last_os_error());
}

/// Sends `send` bytes on `s` and reads `reply`; the local address.
fn exchange(s: &mut TcpStream, send: usize, reply: usize) -> String {
    s.write_all(&pattern(send)).unwrap();
    let mut got = vec![0u8; reply];
    s.read_exact(&mut got).unwrap();
    s.local_addr().unwrap().to_string()
}

/// Helper roles of this file; false for another role.
pub fn run(role: &str, args: &[String]) -> bool {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // tcp-reuse MODE FIRST SECOND SEND REPLY: one TCP socket. `unspec`: connects to FIRST,
        // sends SEND and reads REPLY, disconnects with connect(AF_UNSPEC), then does the same
        // with SECOND. `refused`: connects to FIRST, where nothing listens (refused), then to
        // SECOND as above. `old-unspec`: connects to FIRST, says it is ready and waits for "go"
        // (the monitor starts meanwhile: a socket older than it), then as `unspec`. Reports each
        // connection's local address and bytes.
        "tcp-reuse" => {
            name("mon-tcp-reuse");
            let (first, second): (SocketAddr, SocketAddr) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            let (send, reply): (usize, usize) = (arg(3).parse().unwrap(), arg(4).parse().unwrap());
            let family = if first.is_ipv4() { nix::libc::AF_INET } else { nix::libc::AF_INET6 };
            // SAFETY: socket(2); the descriptor is owned below.
            let fd = unsafe { nix::libc::socket(family, nix::libc::SOCK_STREAM | nix::libc::SOCK_CLOEXEC, 0) };
            assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: a new descriptor that nothing else owns.
            let mut s = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
            let mut out = json!({"pid": std::process::id()});
            match arg(0) {
                "unspec" | "old-unspec" => {
                    connect(s.as_raw_fd(), first).unwrap();
                    if arg(0) == "old-unspec" {
                        say(&json!({"ready": true}));
                        crate::helper::wait_stdin("go");
                    }
                    out["first_local"] = json!(exchange(&mut s, send, reply));
                    disconnect(s.as_raw_fd());
                }
                "refused" => {
                    let refused = connect(s.as_raw_fd(), first);
                    assert_eq!(refused, Err(nix::errno::Errno::ECONNREFUSED), "nothing listens at {first}");
                }
                "nonblock" => {}
                other => panic!("tcp-reuse: unknown mode {other}"),
            }
            if arg(0) == "nonblock" {
                // connect(2) called until it says connected: EINPROGRESS, EALREADY while the
                // handshake runs, then 0 and EISCONN (repeats of one answer kept once).
                s.set_nonblocking(true).unwrap();
                let mut answers: Vec<String> = Vec::new();
                loop {
                    let answer = connect(s.as_raw_fd(), second);
                    let text = format!("{answer:?}");
                    if answers.last() != Some(&text) {
                        answers.push(text);
                    }
                    if answer == Err(nix::errno::Errno::EISCONN) {
                        break;
                    }
                }
                s.set_nonblocking(false).unwrap();
                out["answers"] = json!(answers);
            } else {
                connect(s.as_raw_fd(), second).unwrap();
            }
            out["second_local"] = json!(exchange(&mut s, send * 2, reply * 2));
            say(&out);
        }
        _ => return false,
    }
    true
}

fn closed_to(out: &crate::daemon::Output, remote: SocketAddr) -> Vec<&FlowRecord> {
    out.records.iter().filter(|r| r.event == RecordKind::Close && r.remote == Some(remote)).collect()
}

fn local(v: &Value) -> SocketAddr {
    v.as_str().unwrap().parse().unwrap()
}

const SEND: usize = 1000;
const REPLY: usize = 500;

/// One `tcp-reuse MODE FIRST SECOND` run in the watched cgroup: `tcp-hold-server`s outside it at
/// `FIRST` (unless nothing is to listen there: `refused`, `nonblock`) and `SECOND`, the monitor
/// started before the client (after it for `old-unspec`: the socket is older than the monitor).
/// The client's report, the servers' ones (FIRST's if any, SECOND's) and the monitor's output.
struct Reuse {
    line: Value,
    pid: u32,
    served: Vec<Value>,
    out: crate::daemon::Output,
}

fn reuse(mode: &str, first: SocketAddr, second: SocketAddr, pair: &Pair) -> Reuse {
    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let listen_first = matches!(mode, "unspec" | "old-unspec");
    let mut servers = Vec::new();
    if listen_first {
        servers.push(spawn("tcp-hold-server", &[s(first), s(SEND), s(REPLY)], b));
    }
    servers.push(spawn("tcp-hold-server", &[s(second), s(SEND * 2), s(REPLY * 2)], b));
    for srv in &mut servers {
        srv.line();
    }
    let args = [s(mode), s(first), s(second), s(SEND), s(REPLY)];
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let (mon, client) = if mode == "old-unspec" {
        let mut client = spawn("tcp-reuse", &args, place);
        client.line();
        let mon = Monitor::start(&cg.path, "");
        client.send("go");
        (mon, client)
    } else {
        let mon = Monitor::start(&cg.path, "");
        (mon, spawn("tcp-reuse", &args, place))
    };
    let line = client.finish().remove(0);
    let pid = u32::try_from(line["pid"].as_u64().unwrap()).unwrap();
    let served: Vec<Value> = servers.iter_mut().map(|srv| srv.line()).collect();
    for mut srv in servers {
        srv.send("exit");
        srv.finish();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = mon.stop();
    out.assert_nothing_lost();
    Reuse { line, pid, served, out }
}

/// `connect(AF_UNSPEC)` between two connections of one socket: two flows, each with its own
/// local port, remote and bytes.
pub fn disconnect_then_connect_again(v6: bool) {
    let pair = Pair::private();
    let (first, second) = (server_addr(&pair, v6, 0, 5221), server_addr(&pair, v6, 0, 5222));
    let Reuse { line, pid, served, out } = reuse("unspec", first, second, &pair);
    let (one, two) = (closed_to(&out, first), closed_to(&out, second));
    assert_eq!((one.len(), two.len()), (1, 1), "one flow per connection: {:#?}", out.records);
    let (one, two) = (one[0], two[0]);
    assert_eq!(one.cookie, two.cookie, "one socket");
    assert_eq!(one.local, Some(local(&line["first_local"])), "{one:#?}");
    assert_eq!(two.local, Some(local(&line["second_local"])), "{two:#?}");
    assert_eq!((one.payload.tx_bytes, one.payload.rx_bytes), (SEND as u64, REPLY as u64), "{one:#?}");
    assert_eq!((two.payload.tx_bytes, two.payload.rx_bytes), (2 * SEND as u64, 2 * REPLY as u64), "{two:#?}");
    assert_eq!((&served[0]["rx"], &served[1]["rx"]), (&json!(SEND), &json!(SEND * 2)));
    for r in [one, two] {
        assert_owner(r, pid, "mon-tcp-reuse", CLIENT_UID);
        assert_eq!(r.direction, Direction::Outbound, "{r:#?}");
        assert!(r.complete, "{r:#?}");
    }
    assert!(one.wire.tx_bytes > SEND as u64 && one.wire.tx_bytes < 2 * SEND as u64 + 1000, "{one:#?}");
}

/// A socket older than the monitor (connected before it started) that moves bytes under it,
/// disconnects and connects again: its first flow ends at the second `connect` with the bytes
/// moved under the monitor, the second has its own (review finding: the split needed the
/// monitor's own `connect`).
pub fn older_socket_disconnected_then_connected_again() {
    let pair = Pair::private();
    let (first, second) = (server_addr(&pair, false, 0, 5225), server_addr(&pair, false, 0, 5226));
    let Reuse { line, out, .. } = reuse("old-unspec", first, second, &pair);
    let (one, two) = (closed_to(&out, first), closed_to(&out, second));
    assert_eq!((one.len(), two.len()), (1, 1), "one flow per connection: {:#?}", out.records);
    let (one, two) = (one[0], two[0]);
    assert_eq!(one.local, Some(local(&line["first_local"])), "{one:#?}");
    assert_eq!(two.local, Some(local(&line["second_local"])), "{two:#?}");
    assert_eq!((one.payload.tx_bytes, one.payload.rx_bytes), (SEND as u64, REPLY as u64), "{one:#?}");
    assert_eq!((two.payload.tx_bytes, two.payload.rx_bytes), (2 * SEND as u64, 2 * REPLY as u64), "{two:#?}");
    assert_eq!(two.direction, Direction::Outbound, "{two:#?}");
}

/// A non-blocking `connect(2)` called again until it says connected (`EINPROGRESS`, `EALREADY`
/// while the handshake runs, then 0 and `EISCONN`): one connection, one flow (the kernel runs
/// the `connect` hook only for a closed socket, so the repeats end nothing).
pub fn nonblocking_connect_repeated_is_one_flow() {
    let pair = Pair::private();
    let (unused, server) = (server_addr(&pair, false, 0, 5227), server_addr(&pair, false, 0, 5228));
    let Reuse { line, out, .. } = reuse("nonblock", unused, server, &pair);
    let answers = line["answers"].as_array().unwrap();
    assert_eq!(answers.first().and_then(Value::as_str), Some("Err(EINPROGRESS)"), "{line}");
    assert_eq!(answers.last().and_then(Value::as_str), Some("Err(EISCONN)"), "{line}");
    let cookie = closed_to(&out, server).first().map(|r| r.cookie);
    let of_socket: Vec<&FlowRecord> = out.records.iter().filter(|r| Some(r.cookie) == cookie).collect();
    assert_eq!(of_socket.len(), 1, "one record of the socket: {of_socket:#?}");
    let r = of_socket[0];
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (2 * SEND as u64, 2 * REPLY as u64), "{r:#?}");
    assert_eq!(r.local, Some(local(&line["second_local"])), "{r:#?}");
    eprintln!("    connect(2) answers: {}", answers.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
}

/// A refused attempt, then a connection, on one socket: the attempt is its own outbound flow
/// (its SYN and the reset, no payload), the connection has only its own bytes.
pub fn refused_then_connect(v6: bool) {
    let pair = Pair::private();
    let (refused, second) = (server_addr(&pair, v6, 0, 5223), server_addr(&pair, v6, 0, 5224));
    let Reuse { line, pid, out, .. } = reuse("refused", refused, second, &pair);
    let (attempt, conn) = (closed_to(&out, refused), closed_to(&out, second));
    assert_eq!((attempt.len(), conn.len()), (1, 1), "one flow per attempt: {:#?}", out.records);
    let (attempt, conn) = (attempt[0], conn[0]);
    assert_eq!(attempt.cookie, conn.cookie, "one socket");
    assert_eq!((attempt.payload.tx_bytes, attempt.payload.rx_bytes), (0, 0), "{attempt:#?}");
    assert_eq!((attempt.wire.tx_packets, attempt.wire.rx_packets), (1, 1), "its SYN and the reset: {attempt:#?}");
    assert_eq!((conn.payload.tx_bytes, conn.payload.rx_bytes), (2 * SEND as u64, 2 * REPLY as u64), "{conn:#?}");
    assert_eq!(conn.local, Some(local(&line["second_local"])), "{conn:#?}");
    for r in [attempt, conn] {
        assert_owner(r, pid, "mon-tcp-reuse", CLIENT_UID);
        assert_eq!(r.direction, Direction::Outbound, "{r:#?}");
    }
}
