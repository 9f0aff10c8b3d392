//! io_uring's socket operations: payload moved through a submission ring instead of a send or
//! receive system call of the process. `IORING_OP_SEND`/`RECV`, `SENDMSG`/`RECVMSG`,
//! `SEND_ZC` (zero-copy send, with its completion notifications) and `READ`/`WRITE` on the
//! socket's descriptor, over TCP and connected UDP, and a ring whose submissions a kernel thread
//! polls (`IORING_SETUP_SQPOLL`: the sends run in that thread, not the process's). Every figure
//! against the bytes the helper moved and the other end counted. UDP has no kernel byte counters
//! to fall back on, so its cases show the payload tracepoints see every ring operation.

use std::{
    net::{Shutdown, SocketAddr, TcpStream, UdpSocket},
    os::fd::AsRawFd as _,
};

use io_uring::{IoUring, cqueue, opcode, squeue, types::Fd};
use monitor::tracker::record::{Direction, PayloadSource, Protocol};
use serde_json::{Value, json};

use crate::{
    cases::{CLIENT_UID, addr, assert_owner, record_for_local, s, server_addr},
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, say},
};

/// Largest piece one ring operation sends or receives.
const CHUNK: usize = 1 << 16;

/// How a helper moves its bytes through the ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `IORING_OP_SEND` / `IORING_OP_RECV`.
    Send,
    /// `IORING_OP_SEND_ZC` / `IORING_OP_RECV`.
    SendZc,
    /// `IORING_OP_SENDMSG` / `IORING_OP_RECVMSG`.
    Msg,
    /// `IORING_OP_WRITE` / `IORING_OP_READ` on the socket's descriptor.
    ReadWrite,
}

impl Mode {
    fn parse(s: &str) -> Self {
        match s {
            "send" => Self::Send,
            "send-zc" => Self::SendZc,
            "msg" => Self::Msg,
            "rw" => Self::ReadWrite,
            other => panic!("unknown io_uring mode {other}"),
        }
    }
}

/// A ring that runs one operation at a time.
struct Ring {
    ring: IoUring,
    /// Zero-copy completion notifications seen.
    notifications: u64,
}

impl Ring {
    fn new(sqpoll: bool) -> Self {
        let ring =
            if sqpoll { IoUring::builder().setup_sqpoll(2_000).build(8) } else { IoUring::new(8) }.expect("io_uring");
        Self { ring, notifications: 0 }
    }

    /// Submits `sqe` and waits for its result (and a zero-copy send's notification); panics on
    /// an error result. The caller keeps every buffer `sqe` points to alive until it returns.
    fn run(&mut self, sqe: &squeue::Entry) -> usize {
        // SAFETY: the entry's buffers outlive the operation: this call waits for its completion.
        unsafe { self.ring.submission().push(sqe).expect("submission queue full") };
        let mut result = None;
        let mut notification_due = false;
        loop {
            self.ring.submit_and_wait(1).expect("io_uring_enter");
            for cqe in self.ring.completion() {
                if cqueue::notif(cqe.flags()) {
                    self.notifications += 1;
                    notification_due = false;
                } else {
                    result = Some(cqe.result());
                    notification_due = cqueue::more(cqe.flags());
                }
            }
            if result.is_some() && !notification_due {
                break;
            }
        }
        let r = result.unwrap_or_default();
        assert!(r >= 0, "io_uring operation: {}", std::io::Error::from_raw_os_error(-r));
        usize::try_from(r).unwrap()
    }

    /// Sends `data[..]` once (one operation; a stream socket may take part of it).
    fn send(&mut self, fd: i32, mode: Mode, data: &[u8]) -> usize {
        let (ptr, len) = (data.as_ptr(), u32::try_from(data.len()).unwrap());
        match mode {
            Mode::Send => self.run(&opcode::Send::new(Fd(fd), ptr, len).build()),
            Mode::SendZc => self.run(&opcode::SendZc::new(Fd(fd), ptr, len).build()),
            Mode::ReadWrite => self.run(&opcode::Write::new(Fd(fd), ptr, len).build()),
            Mode::Msg => {
                let mut iov = nix::libc::iovec { iov_base: ptr.cast_mut().cast(), iov_len: data.len() };
                // SAFETY: all-zero is a valid msghdr.
                let mut msg: nix::libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                self.run(&opcode::SendMsg::new(Fd(fd), &raw const msg).build())
            }
        }
    }

    /// Receives once into `buf` (0: end of stream).
    fn recv(&mut self, fd: i32, mode: Mode, buf: &mut [u8]) -> usize {
        let (ptr, len) = (buf.as_mut_ptr(), u32::try_from(buf.len()).unwrap());
        match mode {
            Mode::Send | Mode::SendZc => self.run(&opcode::Recv::new(Fd(fd), ptr, len).build()),
            Mode::ReadWrite => self.run(&opcode::Read::new(Fd(fd), ptr, len).build()),
            Mode::Msg => {
                let mut iov = nix::libc::iovec { iov_base: ptr.cast(), iov_len: buf.len() };
                // SAFETY: all-zero is a valid msghdr.
                let mut msg: nix::libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = &raw mut iov;
                msg.msg_iovlen = 1;
                self.run(&opcode::RecvMsg::new(Fd(fd), &raw mut msg).build())
            }
        }
    }
}

/// The helper roles (each prints one JSON line: the bytes it moved).
///
/// - `io-uring-tcp-client SERVER SIZE MODE [sqpoll]`: connects, sends SIZE bytes through the
///   ring, half-closes, receives through the ring to the end.
/// - `io-uring-udp-client SERVER SIZE COUNT MODE`: a connected UDP socket; COUNT datagrams of
///   SIZE bytes, each followed by receiving the echo, all through the ring.
pub fn helper(role: &str, args: &[String]) {
    let arg = |i: usize| args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str);
    let server: SocketAddr = arg(0).parse().unwrap();
    let size: usize = arg(1).parse().unwrap();
    let mut buf = vec![0u8; CHUNK];
    match role {
        "io-uring-tcp-client" => {
            name("mon-uring-tcp");
            let mode = Mode::parse(arg(2));
            let mut ring = Ring::new(args.get(3).is_some_and(|a| a == "sqpoll"));
            let stream = TcpStream::connect(server).unwrap();
            let fd = stream.as_raw_fd();
            let data = pattern(size);
            let mut sent = 0;
            while sent < size {
                let end = (sent + CHUNK).min(size);
                sent += ring.send(fd, mode, &data[sent..end]);
            }
            stream.shutdown(Shutdown::Write).unwrap();
            let mut rx = 0;
            loop {
                let n = ring.recv(fd, mode, &mut buf);
                if n == 0 {
                    break;
                }
                rx += n;
            }
            let local = stream.local_addr().unwrap().to_string();
            let extra = json!({"notifications": ring.notifications});
            say(&json!({"local": local, "tx": sent, "rx": rx, "pid": std::process::id(), "extra": extra}));
        }
        "io-uring-udp-client" => {
            name("mon-uring-udp");
            let count: usize = arg(2).parse().unwrap();
            let mode = Mode::parse(arg(3));
            let mut ring = Ring::new(false);
            let socket = UdpSocket::bind(if server.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
            socket.connect(server).unwrap();
            let fd = socket.as_raw_fd();
            let data = pattern(size);
            let (mut tx, mut rx) = (0, 0);
            for _ in 0..count {
                tx += ring.send(fd, mode, &data);
                rx += ring.recv(fd, mode, &mut buf);
            }
            let local = socket.local_addr().unwrap().to_string();
            let extra = json!({"notifications": ring.notifications});
            say(&json!({"local": local, "tx": tx, "rx": rx, "pid": std::process::id(), "extra": extra}));
        }
        other => panic!("unknown role {other}"),
    }
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A TCP client moving its payload through the ring (`mode`); the server replies `REPLY` bytes.
/// Payload exact both ways, counted by the payload tracepoints (`syscall`), owned by the client
/// process (also when a kernel thread polls the ring).
pub fn tcp(mode: &str, sqpoll: bool) {
    const SIZE: usize = 3_000_017;
    const REPLY: usize = 1_000_003;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = server_addr(&pair, false, 0, 5421);
    let mut srv = spawn("tcp-server", &[s(server), s(REPLY), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = Monitor::start(&cg.path, "");
    let mut args = vec![s(server), s(SIZE), s(mode)];
    if sqpoll {
        args.push(s("sqpoll"));
    }
    let client =
        spawn("io-uring-tcp-client", &args, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) });
    let pid = client.pid();
    let line = client.finish().remove(0);
    let server_line = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!(
        (n(&line["tx"]), n(&line["rx"]), n(&server_line["rx"])),
        (SIZE as u64, REPLY as u64, SIZE as u64),
        "the helpers moved the bytes"
    );
    let r = record_for_local(&out, addr(&line["local"]));
    assert_owner(r, pid, "mon-uring-tcp", CLIENT_UID);
    assert_eq!((r.protocol, r.direction, r.remote), (Protocol::Tcp, Direction::Outbound, Some(server)));
    assert!(r.complete, "{r:#?}");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (SIZE as u64, REPLY as u64), "{r:#?}");
    assert_eq!(
        (r.payload_sources.tx, r.payload_sources.rx),
        (PayloadSource::Syscall, PayloadSource::Syscall),
        "{r:#?}"
    );
    eprintln!(
        "    {mode}{}: payload tx {} rx {} exact ({} zero-copy notifications)",
        if sqpoll { " (SQPOLL)" } else { "" },
        r.payload.tx_bytes,
        r.payload.rx_bytes,
        line["extra"]["notifications"]
    );
}

/// A connected UDP socket whose datagrams go through the ring (`mode`) to an echo server: the
/// payload is exact both ways with no TCP counters behind it, one datagram per packet.
pub fn udp(mode: &str, v6: bool) {
    const SIZE: usize = 1_200;
    const COUNT: usize = 100;
    let total = (SIZE * COUNT) as u64;
    let (r, _) = crate::syscalls::udp_echo_exchange(
        ("io-uring-udp-client", "mon-uring-udp"),
        (v6, 5422),
        &[s(SIZE), s(COUNT), s(mode)],
        COUNT,
        total,
    );
    assert_eq!((r.wire.tx_packets, r.wire.rx_packets), (COUNT as u64, COUNT as u64), "{r:#?}");
    eprintln!("    {mode} over UDP{}: payload {total} B each way, exact", if v6 { "/IPv6" } else { "" });
}
