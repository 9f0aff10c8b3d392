//! Payload through the less common forms of the send and receive calls, each against the bytes
//! the helpers moved: UDP batches (`sendmmsg`/`recvmmsg`), UDP segmentation offload
//! (`UDP_SEGMENT`: one send, many datagrams), peeking (`MSG_PEEK`: the process reads the same
//! bytes twice, they count once) over UDP and TCP, TCP Fast Open (payload in the SYN, on both
//! ends of the connection), and TCP urgent data (`MSG_OOB`) read out of band, inline, or not at
//! all (README: the one case that counts more than the process read).

use std::{
    io::Write as _,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _},
    process::Command,
    time::Duration,
};

use monitor::tracker::{
    FlowRecord,
    record::{Direction, PayloadSource, Protocol},
};
use serde_json::{Value, json};

use crate::{
    cases::{CLIENT_UID, SERVER_UID, addr, assert_owner, record_for_local, s, server_addr},
    daemon::Monitor,
    env::{Netns, Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, read_to_end, say},
    paths::client_run,
};

/// `net.ipv4.tcp_fastopen`: client and server on (1, 2), data in the SYN without a cookie from
/// an earlier connection (4, 0x200).
const FASTOPEN_NO_COOKIES: &str = "519";
/// `TCPI_OPT_SYN_DATA` in `tcp_info.tcpi_options`: the SYN carried data the peer acknowledged.
const TCPI_OPT_SYN_DATA: u8 = 32;

fn check(ret: isize, what: &str) -> usize {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    usize::try_from(ret).unwrap()
}

fn connected_udp(server: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind(if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
    socket.connect(server).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket
}

/// One `mmsghdr` per buffer of `iovs` (which must outlive the headers' use).
fn headers(iovs: &mut [nix::libc::iovec]) -> Vec<nix::libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr.
            let mut m: nix::libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// One `sendmmsg` of `count` datagrams of `data` (looping on a partial batch); bytes sent.
fn send_batch(fd: i32, data: &[u8], count: usize) -> usize {
    let mut iovs: Vec<nix::libc::iovec> = (0..count)
        .map(|_| nix::libc::iovec { iov_base: data.as_ptr().cast_mut().cast(), iov_len: data.len() })
        .collect();
    let mut msgs = headers(&mut iovs);
    let mut done = 0;
    while done < count {
        let left = u32::try_from(count - done).unwrap();
        // SAFETY: `msgs[done..]` holds `left` headers whose buffers outlive the call.
        let n = unsafe { nix::libc::sendmmsg(fd, msgs[done..].as_mut_ptr(), left, 0) };
        done += check(n as isize, "sendmmsg");
    }
    msgs.iter().map(|m| m.msg_len as usize).sum()
}

/// `recvmmsg` until `count` datagrams came; bytes received.
fn receive_batch(fd: i32, count: usize) -> usize {
    let mut bufs = vec![[0u8; 2048]; count];
    let mut iovs: Vec<nix::libc::iovec> =
        bufs.iter_mut().map(|b| nix::libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: b.len() }).collect();
    let mut msgs = headers(&mut iovs);
    let (mut got, mut bytes) = (0, 0);
    while got < count {
        let left = u32::try_from(count - got).unwrap();
        // SAFETY: `msgs[got..]` holds `left` headers whose buffers outlive the call.
        let n = unsafe {
            nix::libc::recvmmsg(fd, msgs[got..].as_mut_ptr(), left, nix::libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        let n = check(n as isize, "recvmmsg");
        bytes += msgs[got..got + n].iter().map(|m| m.msg_len as usize).sum::<usize>();
        got += n;
    }
    bytes
}

/// `recv(2)` with `flags` into `buf`; bytes returned.
fn recv(fd: i32, buf: &mut [u8], flags: nix::libc::c_int) -> usize {
    // SAFETY: `buf` is writable for its length.
    check(unsafe { nix::libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) }, "recv")
}

fn set_int(fd: i32, level: nix::libc::c_int, option: nix::libc::c_int, value: nix::libc::c_int, what: &str) {
    // SAFETY: setsockopt with an int.
    let r = unsafe { nix::libc::setsockopt(fd, level, option, (&raw const value).cast(), 4) };
    assert_eq!(r, 0, "{what}: {}", std::io::Error::last_os_error());
}

fn report(local: SocketAddr, tx: usize, rx: usize, extra: &Value) {
    say(&json!({"local": local.to_string(), "tx": tx, "rx": rx, "pid": std::process::id(), "extra": extra}));
}

/// The helper roles (each prints one JSON line: the bytes it moved).
///
/// - `udp-mmsg-client SERVER SIZE COUNT`: a connected UDP socket; COUNT datagrams of SIZE in
///   one `sendmmsg`, the echoes with `recvmmsg`.
/// - `udp-gso-client SERVER SIZE COUNT`: `UDP_SEGMENT` SIZE, one send of SIZE × COUNT bytes (COUNT
///   datagrams), the echoes with recv(2).
/// - `udp-peek-client SERVER SIZE COUNT`: each datagram sent, its echo peeked, then read.
/// - `tcp-peek-client SERVER SIZE`: sends SIZE, half-closes, peeks at the reply before each read.
/// - `tcp-fastopen-client SERVER SIZE`: SIZE bytes with `sendto(MSG_FASTOPEN)` (the SYN carries
///   the first of them), half-closes, reads the reply.
/// - `tcp-fastopen-server BIND REPLY`: a `TCP_FASTOPEN` listener; one connection read to the end,
///   answered with REPLY bytes.
/// - `tcp-urgent-client SERVER SIZE COUNT`: COUNT times SIZE bytes, then one urgent byte
///   (`MSG_OOB`), a pause after each; half-closes and reads to the end.
/// - `tcp-urgent-server BIND SIZE MODE`: one connection read to the end; its urgent bytes read
///   with `recv(MSG_OOB)` (`oob`), inline (`inline`, `SO_OOBINLINE`) or not at all (`ignore`).
pub fn helper(role: &str, args: &[String]) {
    let arg = |i: usize| args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str);
    let size: usize = arg(1).parse().unwrap();
    let count = || -> usize { arg(2).parse().unwrap() };
    let mut buf = vec![0u8; 1 << 16];
    match role {
        "udp-mmsg-client" => {
            name("mon-udp-mmsg");
            let socket = connected_udp(arg(0).parse().unwrap());
            let fd = socket.as_raw_fd();
            let tx = send_batch(fd, &pattern(size), count());
            let rx = receive_batch(fd, count());
            report(socket.local_addr().unwrap(), tx, rx, &json!({}));
        }
        "udp-gso-client" => {
            name("mon-udp-gso");
            let socket = connected_udp(arg(0).parse().unwrap());
            let fd = socket.as_raw_fd();
            set_int(fd, nix::libc::SOL_UDP, nix::libc::UDP_SEGMENT, i32::try_from(size).unwrap(), "UDP_SEGMENT");
            let tx = socket.send(&pattern(size * count())).unwrap();
            let rx: usize = (0..count()).map(|_| socket.recv(&mut buf).unwrap()).sum();
            report(socket.local_addr().unwrap(), tx, rx, &json!({}));
        }
        "udp-peek-client" => {
            name("mon-udp-peek");
            let socket = connected_udp(arg(0).parse().unwrap());
            let fd = socket.as_raw_fd();
            let (mut tx, mut rx, mut peeked) = (0, 0, 0);
            for _ in 0..count() {
                tx += socket.send(&pattern(size)).unwrap();
                peeked += recv(fd, &mut buf, nix::libc::MSG_PEEK);
                rx += recv(fd, &mut buf, 0);
            }
            report(socket.local_addr().unwrap(), tx, rx, &json!({"peeked": peeked}));
        }
        "tcp-peek-client" => {
            name("mon-tcp-peek");
            let mut stream = TcpStream::connect(arg(0)).unwrap();
            stream.write_all(&pattern(size)).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let fd = stream.as_raw_fd();
            let (mut rx, mut peeked) = (0, 0);
            loop {
                let n = recv(fd, &mut buf, nix::libc::MSG_PEEK);
                if n == 0 {
                    break;
                }
                peeked += n;
                rx += recv(fd, &mut buf[..n], 0);
            }
            report(stream.local_addr().unwrap(), size, rx, &json!({"peeked": peeked}));
        }
        "tcp-fastopen-client" => {
            name("mon-tcp-tfo");
            let server: SocketAddr = arg(0).parse().unwrap();
            let SocketAddr::V4(v4) = server else { panic!("IPv4 only: {server}") };
            // SAFETY: a new socket, owned by the stream below.
            let fd =
                unsafe { nix::libc::socket(nix::libc::AF_INET, nix::libc::SOCK_STREAM | nix::libc::SOCK_CLOEXEC, 0) };
            check(fd as isize, "socket");
            // SAFETY: `fd` is a new descriptor nothing else owns.
            let mut stream = unsafe { TcpStream::from_raw_fd(fd) };
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut to: nix::libc::sockaddr_in = unsafe { std::mem::zeroed() };
            to.sin_family = nix::libc::AF_INET as nix::libc::sa_family_t;
            to.sin_port = v4.port().to_be();
            to.sin_addr.s_addr = u32::from(*v4.ip()).to_be();
            let data = pattern(size);
            let len = nix::libc::socklen_t::try_from(size_of::<nix::libc::sockaddr_in>()).unwrap();
            // SAFETY: `data` and `to` outlive the call.
            let first = unsafe {
                nix::libc::sendto(fd, data.as_ptr().cast(), size, nix::libc::MSG_FASTOPEN, (&raw const to).cast(), len)
            };
            let first = check(first, "sendto(MSG_FASTOPEN)");
            stream.write_all(&data[first..]).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut stream);
            report(stream.local_addr().unwrap(), size, rx, &json!({"syn_data": syn_data(fd), "first": first}));
        }
        "tcp-fastopen-server" => {
            name("mon-tcp-tfo-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            set_int(listener.as_raw_fd(), nix::libc::IPPROTO_TCP, nix::libc::TCP_FASTOPEN, 16, "TCP_FASTOPEN");
            say(&json!({"ready": true, "pid": std::process::id()}));
            let (mut stream, _) = listener.accept().unwrap();
            let rx = read_to_end(&mut stream);
            stream.write_all(&pattern(size)).unwrap();
            stream.shutdown(Shutdown::Write).unwrap();
            report(stream.local_addr().unwrap(), size, rx, &json!({}));
        }
        "tcp-urgent-client" => {
            name("mon-tcp-urg");
            let mut stream = TcpStream::connect(arg(0)).unwrap();
            let (fd, mut tx) = (stream.as_raw_fd(), 0);
            for _ in 0..count() {
                stream.write_all(&pattern(size)).unwrap();
                std::thread::sleep(URGENT_PAUSE);
                // SAFETY: one byte of a static buffer.
                tx += size
                    + check(
                        unsafe { nix::libc::send(fd, b"U".as_ptr().cast(), 1, nix::libc::MSG_OOB) },
                        "send(MSG_OOB)",
                    );
                std::thread::sleep(URGENT_PAUSE);
            }
            stream.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut stream);
            report(stream.local_addr().unwrap(), tx, rx, &json!({}));
        }
        "tcp-urgent-server" => {
            name("mon-tcp-urg-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let (mut stream, _) = listener.accept().unwrap();
            let fd = stream.as_raw_fd();
            let (rx, urgent) = match arg(2) {
                "inline" => {
                    set_int(fd, nix::libc::SOL_SOCKET, nix::libc::SO_OOBINLINE, 1, "SO_OOBINLINE");
                    (read_to_end(&mut stream), 0)
                }
                "ignore" => (read_to_end(&mut stream), 0),
                "oob" => read_out_of_band(fd, &mut buf),
                other => panic!("unknown urgent mode {other}"),
            };
            report(stream.local_addr().unwrap(), 0, rx, &json!({"urgent": urgent}));
        }
        other => panic!("unknown role {other}"),
    }
}

/// Pause after each part the urgent client sends, so that each urgent byte has a mark of its
/// own (a second one before the first is read would replace it).
const URGENT_PAUSE: Duration = Duration::from_millis(50);

/// Reads `fd` to the end, each urgent byte with `recv(MSG_OOB)` when `poll` reports it
/// (`POLLPRI`). Returns (all bytes read, urgent bytes among them).
fn read_out_of_band(fd: i32, buf: &mut [u8]) -> (usize, usize) {
    let (mut rx, mut urgent) = (0, 0);
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(10), "out-of-band reader stuck at {rx} B");
        let mut p = nix::libc::pollfd { fd, events: nix::libc::POLLIN | nix::libc::POLLPRI, revents: 0 };
        // SAFETY: one pollfd.
        let ready = unsafe { nix::libc::poll(&raw mut p, 1, 5_000) };
        assert!(ready > 0, "poll: {}", std::io::Error::last_os_error());
        if p.revents & nix::libc::POLLPRI != 0 {
            // SAFETY: `buf` is writable for one byte.
            let n = unsafe { nix::libc::recv(fd, buf.as_mut_ptr().cast(), 1, nix::libc::MSG_OOB) };
            if n > 0 {
                urgent += 1;
                rx += 1;
                continue;
            }
        }
        // A read stops at the urgent mark, so each urgent byte is taken before what follows it.
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { nix::libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), nix::libc::MSG_DONTWAIT) };
        if n < 0 {
            // Only the urgent pointer has come so far (`POLLPRI` before its byte): wait for more.
            let e = std::io::Error::last_os_error();
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "recv: {e}");
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        if n == 0 && p.revents & nix::libc::POLLPRI == 0 {
            return (rx, urgent);
        }
        rx += usize::try_from(n).unwrap();
    }
}

/// Whether the connection's SYN carried data the peer acknowledged (`tcp_info`).
fn syn_data(fd: i32) -> bool {
    // SAFETY: all-zero is a valid tcp_info; getsockopt writes at most `len` bytes into it.
    unsafe {
        let mut info: nix::libc::tcp_info = std::mem::zeroed();
        let mut len = nix::libc::socklen_t::try_from(size_of::<nix::libc::tcp_info>()).unwrap();
        let r = nix::libc::getsockopt(
            fd,
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_INFO,
            (&raw mut info).cast(),
            &raw mut len,
        );
        assert_eq!(r, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
        info.tcpi_options & TCPI_OPT_SYN_DATA != 0
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A connected UDP client (`role SERVER args...` in the watched cgroup, comm `comm`) against an
/// echo server of `count` datagrams on `port`: one record of the client's process, outbound to
/// the server, payload `total` both ways exactly, from the payload tracepoints. Returns the
/// record and the helper's line.
pub(crate) fn udp_echo_exchange(
    (role, comm): (&str, &str),
    (v6, port): (bool, u16),
    args: &[String],
    count: usize,
    total: u64,
) -> (FlowRecord, Value) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, v6, 0, port);
    let mut echo = spawn("udp-echo", &[s(server), s(count)], Place { netns: Some(&pair.b), ..Place::default() });
    echo.line();
    let mon = Monitor::start(&cg.path, "");
    let mut all = vec![s(server)];
    all.extend_from_slice(args);
    let client = spawn(role, &all, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) });
    let pid = client.pid();
    let line = client.finish().remove(0);
    echo.finish();
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!((n(&line["tx"]), n(&line["rx"])), (total, total), "the helper moved the bytes");
    let r = record_for_local(&out, addr(&line["local"]));
    assert_owner(r, pid, comm, CLIENT_UID);
    assert_eq!((r.protocol, r.direction, r.remote), (Protocol::Udp, Direction::Outbound, Some(server)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (total, total), "{r:#?}");
    assert_eq!(r.payload_source, PayloadSource::Syscall, "{r:#?}");
    (r.clone(), line)
}

/// `role` with 40 datagrams of 1,200 bytes ([`udp_echo_exchange`]); one echo received per
/// datagram. Returns the record's wire packets (tx, rx) and the helper's line.
fn udp(role: &str, comm: &str, v6: bool) -> ((u64, u64), Value) {
    const SIZE: usize = 1_200;
    const COUNT: usize = 40;
    let total = (SIZE * COUNT) as u64;
    let (r, line) = udp_echo_exchange((role, comm), (v6, 5431), &[s(SIZE), s(COUNT)], COUNT, total);
    assert_eq!(r.wire.rx_packets, COUNT as u64, "one echo per datagram: {r:#?}");
    eprintln!(
        "    {role}{}: payload {total} B each way, exact; wire tx {} B in {} packets",
        if v6 { " (IPv6)" } else { "" },
        r.wire.tx_bytes,
        r.wire.tx_packets
    );
    ((r.wire.tx_packets, r.wire.rx_packets), line)
}

/// 40 datagrams in one `sendmmsg`, the echoes by `recvmmsg`: each datagram counts.
pub fn udp_batches(v6: bool) {
    let ((tx_packets, _), _) = udp("udp-mmsg-client", "mon-udp-mmsg", v6);
    assert_eq!(tx_packets, 40, "one packet per datagram of the batch");
}

/// One send of 40 segments (`UDP_SEGMENT`): the payload is the whole send, and the segmentation
/// offload's super-packet counts once in `wire`, as on the interface counters (README, `wire`).
pub fn udp_segmentation_offload(v6: bool) {
    let ((tx_packets, _), _) = udp("udp-gso-client", "mon-udp-gso", v6);
    assert_eq!(tx_packets, 1, "the sender's super-packet counts once");
}

/// Each echo peeked (`MSG_PEEK`), then read: received once, not twice.
pub fn udp_peek(v6: bool) {
    let (_, line) = udp("udp-peek-client", "mon-udp-peek", v6);
    assert_eq!(n(&line["extra"]["peeked"]), 40 * 1_200, "the helper peeked at every echo: {line}");
}

/// A TCP reply peeked at before every read: counted once, from the reads.
pub fn tcp_peek() {
    const SIZE: usize = 50_000;
    const REPLY: usize = 1_000_003;
    let run = client_run(5432, REPLY, "tcp-peek-client", &[s(SIZE)]);
    let r = &run.record;
    assert_eq!((n(&run.client["rx"]), n(&run.server["rx"])), (REPLY as u64, SIZE as u64), "helpers moved the bytes");
    assert_eq!(n(&run.client["extra"]["peeked"]), REPLY as u64, "the helper peeked at all of it");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (SIZE as u64, REPLY as u64), "{r:#?}");
    assert_eq!(r.payload_source, PayloadSource::Syscall, "{r:#?}");
}

fn fast_open(ns: &Netns) {
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-qw", &format!("net.ipv4.tcp_fastopen={FASTOPEN_NO_COOKIES}")])
        .status()
        .unwrap();
    assert!(status.success(), "sysctl net.ipv4.tcp_fastopen");
}

/// TCP Fast Open: the client's first bytes travel in its SYN. Both ends of the connection
/// (client, and the connection the listener accepted) in the watched cgroup, payload exact each
/// way, the SYN's data included.
pub fn tcp_fast_open() {
    const SIZE: usize = 100_003;
    const REPLY: usize = 20_011;
    let pair = Pair::private();
    fast_open(&pair.a);
    fast_open(&pair.b);
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, 5433);
    let mon = Monitor::start(&cg.path, "");
    let mut srv = spawn(
        "tcp-fastopen-server",
        &[s(server), s(REPLY)],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) },
    );
    srv.line();
    let client = spawn(
        "tcp-fastopen-client",
        &[s(server), s(SIZE)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let (client_pid, server_pid) = (client.pid(), srv.pid());
    let c = client.finish().remove(0);
    let sv = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!(c["extra"]["syn_data"], json!(true), "the SYN carried data: {c}");
    assert_eq!((n(&c["rx"]), n(&sv["rx"])), (REPLY as u64, SIZE as u64), "the helpers moved the bytes");
    for (who, line, pid, comm, uid, tx, rx) in [
        ("client", &c, client_pid, "mon-tcp-tfo", CLIENT_UID, SIZE, REPLY),
        ("server", &sv, server_pid, "mon-tcp-tfo-srv", SERVER_UID, REPLY, SIZE),
    ] {
        let r = record_for_local(&out, addr(&line["local"]));
        assert_owner(r, pid, comm, uid);
        assert!(r.complete, "{who}: {r:#?}");
        assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (tx as u64, rx as u64), "{who}: {r:#?}");
        eprintln!("    {who}: tx {tx} rx {rx} exact ({:?})", r.direction);
    }
    eprintln!("    {} bytes sent by sendto(MSG_FASTOPEN), the SYN's share included", c["extra"]["first"]);
}

/// TCP urgent data: 5 times 10,000 bytes and one urgent byte, both ends in the watched cgroup.
/// Read out of band (`oob`) or inline (`inline`), the receiver's payload is exact; never read
/// (`ignore`), the kernel drops each urgent byte before the stream the process reads, and the
/// receiver's record counts one byte more per urgent byte (README, "TCP payload on every path").
pub fn tcp_urgent(mode: &str) {
    const SIZE: usize = 10_000;
    const COUNT: usize = 5;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, 5434);
    let mon = Monitor::start(&cg.path, "");
    let mut srv = spawn(
        "tcp-urgent-server",
        &[s(server), s(SIZE), s(mode)],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) },
    );
    srv.line();
    let client = spawn(
        "tcp-urgent-client",
        &[s(server), s(SIZE), s(COUNT)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let c = client.finish().remove(0);
    let sv = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    let sent = ((SIZE + 1) * COUNT) as u64;
    let read = if mode == "ignore" { (SIZE * COUNT) as u64 } else { sent };
    assert_eq!((n(&c["tx"]), n(&sv["rx"])), (sent, read), "the helpers moved the bytes: {c} {sv}");
    if mode == "oob" {
        assert_eq!(n(&sv["extra"]["urgent"]), COUNT as u64, "every urgent byte read out of band: {sv}");
    }
    let client_record = record_for_local(&out, addr(&c["local"]));
    assert_eq!(client_record.payload.tx_bytes, sent, "{client_record:#?}");
    let r = record_for_local(&out, addr(&sv["local"]));
    let recorded = if mode == "ignore" { sent } else { read };
    assert_eq!(r.payload.rx_bytes, recorded, "{r:#?}");
    eprintln!(
        "    {mode}: the server read {read} B, its record says {} ({:?})",
        r.payload.rx_bytes, r.payload_sources.rx
    );
}
