//! Helper roles that move TCP payload without `sendmsg`/`recvmsg` of the data itself (splice,
//! sendfile, vmsplice, `MSG_ZEROCOPY`, `TCP_ZEROCOPY_RECEIVE`, kTLS), and the many-peer UDP
//! sender. Like the roles in helper.rs, each prints JSON lines: the bytes it really moved.

use std::{
    io::{Read as _, Seek as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    thread,
    time::Duration,
};

use serde_json::json;

use crate::helper::{name, pattern, read_to_end, say};

/// 64 KiB: the default pipe capacity, and the chunk size of every loop below.
const CHUNK: usize = 1 << 16;

fn check(ret: isize, what: &str) -> usize {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    usize::try_from(ret).unwrap()
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for two descriptors.
    assert_eq!(unsafe { nix::libc::pipe(fds.as_mut_ptr()) }, 0, "pipe: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// Sends `send` bytes, half-closes, returns the stream.
fn request(server: &str, send: usize) -> TcpStream {
    let mut s = TcpStream::connect(server).unwrap();
    s.write_all(&pattern(send)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    s
}

fn report(s: &TcpStream, tx: usize, rx: usize, extra: serde_json::Value) {
    say(
        &json!({"local": s.local_addr().unwrap().to_string(), "tx": tx, "rx": rx, "pid": std::process::id(), "extra": extra}),
    );
}

/// Sets an int socket option.
fn set_int(s: &impl AsRawFd, level: nix::libc::c_int, option: nix::libc::c_int, value: nix::libc::c_int, what: &str) {
    // SAFETY: setsockopt with an int.
    let r = unsafe { nix::libc::setsockopt(s.as_raw_fd(), level, option, (&raw const value).cast(), 4) };
    assert_eq!(r, 0, "{what}: {}", std::io::Error::last_os_error());
}

/// Reads the error queue of `fd` until it is empty, into a 64 KiB data buffer (and a control
/// buffer): the data bytes recvmsg returned.
fn drain_error_queue(fd: i32) -> usize {
    let mut data = vec![0u8; CHUNK];
    let mut control = [0u8; 512];
    let mut total = 0;
    loop {
        // SAFETY: a msghdr whose buffers live across the call.
        let n = unsafe {
            let mut iov = nix::libc::iovec { iov_base: data.as_mut_ptr().cast(), iov_len: data.len() };
            let mut msg: nix::libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &raw mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control.len();
            nix::libc::recvmsg(fd, &raw mut msg, nix::libc::MSG_ERRQUEUE | nix::libc::MSG_DONTWAIT)
        };
        if n < 0 {
            return total;
        }
        total += n as usize;
    }
}

/// Says it is ready, accepts one connection on `listener`, reads `read` bytes, answers `reply`,
/// reports, and holds the connection until "exit".
fn serve_one_and_hold(listener: &TcpListener, read: usize, reply: usize) {
    let _held = serve_one(listener, read, reply);
    crate::helper::wait_stdin("exit");
}

/// Says it is ready, accepts one connection on `listener`, reads `read` bytes, answers `reply`
/// and reports; the connection.
fn serve_one(listener: &TcpListener, read: usize, reply: usize) -> TcpStream {
    say(&json!({"ready": true, "pid": std::process::id()}));
    let (mut s, _) = listener.accept().unwrap();
    let mut got = vec![0u8; read];
    s.read_exact(&mut got).unwrap();
    s.write_all(&pattern(reply)).unwrap();
    report(&s, reply, read, json!({}));
    s
}

/// Fixed kTLS test key (TLS 1.2, AES-128-GCM), the same for both ends.
fn ktls(s: &TcpStream, direction: nix::libc::c_int) -> Result<(), std::io::Error> {
    let fd = s.as_raw_fd();
    // SAFETY: plain setsockopt calls with correctly sized arguments.
    unsafe {
        if nix::libc::setsockopt(fd, nix::libc::SOL_TCP, nix::libc::TCP_ULP, b"tls".as_ptr().cast(), 3) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut info: nix::libc::tls12_crypto_info_aes_gcm_128 = std::mem::zeroed();
        info.info.version = nix::libc::TLS_1_2_VERSION;
        info.info.cipher_type = nix::libc::TLS_CIPHER_AES_GCM_128;
        info.key = [7; 16];
        info.iv = [1, 2, 3, 4, 5, 6, 7, 8];
        info.salt = [9, 10, 11, 12];
        let size = u32::try_from(std::mem::size_of_val(&info)).unwrap();
        if nix::libc::setsockopt(fd, nix::libc::SOL_TLS, direction, (&raw const info).cast(), size) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `struct tcp_zerocopy_receive` (include/uapi/linux/tcp.h).
#[repr(C)]
#[derive(Default)]
struct ZerocopyReceive {
    address: u64,
    length: u32,
    recv_skip_hint: u32,
    inq: u32,
    err: i32,
    copybuf_address: u64,
    copybuf_len: i32,
    flags: u32,
    msg_control: u64,
    msg_controllen: u64,
    msg_flags: u32,
    reserved: u32,
}

/// Reads the stream with `TCP_ZEROCOPY_RECEIVE` (pages mapped into an mmap of the socket, small
/// remainders copied into `copybuf` inside the getsockopt); only what the kernel asks to skip is
/// read with recv(2). Returns (bytes mapped or copied without recvmsg, bytes read with recv).
fn zerocopy_receive(s: &TcpStream) -> (usize, usize) {
    let fd = s.as_raw_fd();
    let map_len = 1usize << 20;
    // SAFETY: a fresh shared read-only mapping of the socket (what TCP_ZEROCOPY_RECEIVE needs).
    let map =
        unsafe { nix::libc::mmap(std::ptr::null_mut(), map_len, nix::libc::PROT_READ, nix::libc::MAP_SHARED, fd, 0) };
    assert_ne!(map, nix::libc::MAP_FAILED, "mmap of a TCP socket: {}", std::io::Error::last_os_error());
    let mut copybuf = vec![0u8; 16 * 1024];
    let mut buf = vec![0u8; CHUNK * 4];
    let (mut bypassed, mut received) = (0usize, 0usize);
    loop {
        let mut pfd = nix::libc::pollfd { fd, events: nix::libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        check(unsafe { nix::libc::poll(&raw mut pfd, 1, 10_000) } as isize, "poll");
        let mut zc = ZerocopyReceive {
            address: map as u64,
            length: u32::try_from(map_len).unwrap(),
            copybuf_address: copybuf.as_mut_ptr() as u64,
            copybuf_len: i32::try_from(copybuf.len()).unwrap(),
            ..ZerocopyReceive::default()
        };
        let mut len = nix::libc::socklen_t::try_from(std::mem::size_of::<ZerocopyReceive>()).unwrap();
        // SAFETY: `zc` is a tcp_zerocopy_receive of the size passed.
        let r = unsafe {
            nix::libc::getsockopt(
                fd,
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_ZEROCOPY_RECEIVE,
                (&raw mut zc).cast(),
                &raw mut len,
            )
        };
        if r != 0 {
            match std::io::Error::last_os_error().raw_os_error() {
                Some(nix::libc::EIO) => break, // end of stream
                Some(nix::libc::EINTR) => continue,
                _ => panic!("TCP_ZEROCOPY_RECEIVE: {}", std::io::Error::last_os_error()),
            }
        }
        assert_eq!(zc.err, 0, "TCP_ZEROCOPY_RECEIVE socket error");
        bypassed += zc.length as usize + usize::try_from(zc.copybuf_len.max(0)).unwrap();
        if zc.recv_skip_hint > 0 {
            let want = (zc.recv_skip_hint as usize).min(buf.len());
            // SAFETY: `buf` has room for `want` bytes.
            let n = unsafe { nix::libc::recv(fd, buf.as_mut_ptr().cast(), want, nix::libc::MSG_DONTWAIT) };
            if n == 0 {
                break;
            }
            if n > 0 {
                received += check(n, "recv");
            }
        }
    }
    // SAFETY: the mapping made above.
    unsafe { nix::libc::munmap(map, map_len) };
    (bypassed, received)
}

/// Reads a stream to its end with splice(2) into a pipe, drains the pipe with read(2) and checks
/// the bytes against [`pattern`]. Returns the byte count.
fn splice_to_end(s: &TcpStream) -> usize {
    splice_up_to(s, usize::MAX)
}

/// Reads `limit` bytes of `s` (or up to its end) with splice(2), checking them against the
/// pattern; returns how many it read.
fn splice_up_to(s: &TcpStream, limit: usize) -> usize {
    let (r, w) = pipe();
    let mut buf = vec![0u8; CHUNK];
    let expected = pattern(CHUNK * 2);
    let mut rx = 0usize;
    while rx < limit {
        let want = CHUNK.min(limit - rx);
        // SAFETY: valid descriptors, null offsets (socket and pipe have none).
        let n = unsafe {
            nix::libc::splice(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                w,
                std::ptr::null_mut(),
                want,
                nix::libc::SPLICE_F_MOVE,
            )
        };
        let n = check(n, "splice socket -> pipe");
        if n == 0 {
            return rx;
        }
        let mut left = n;
        while left > 0 {
            // SAFETY: `buf` has room for `left` bytes (left <= CHUNK).
            let got = check(unsafe { nix::libc::read(r, buf.as_mut_ptr().cast(), left) }, "read pipe");
            let at = rx % 251;
            assert_eq!(&buf[..got], &expected[at..at + got], "spliced bytes differ from what the peer sent");
            rx += got;
            left -= got;
        }
    }
    rx
}

/// Runs `role` if it is one of this file's; false otherwise.
pub fn run(role: &str, args: &[String]) -> bool {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // tcp-splice-client SERVER SEND: sends SEND bytes (write), then reads the whole reply with
        // splice(2) from the socket into a pipe (tcp_read_sock: no recvmsg).
        "tcp-splice-client" => {
            name("mon-tcp-splice");
            let send: usize = arg(1).parse().unwrap();
            let s = request(arg(0), send);
            let rx = splice_to_end(&s);
            report(&s, send, rx, json!({}));
        }
        // tcp-splice-hold-client SERVER SEND READ: sends SEND bytes (write), reads READ bytes of
        // the reply with splice(2), reports, and keeps the connection open until "exit".
        "tcp-splice-hold-client" => {
            name("mon-splice-hold");
            let send: usize = arg(1).parse().unwrap();
            let read: usize = arg(2).parse().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            s.write_all(&pattern(send)).unwrap();
            let rx = splice_up_to(&s, read);
            report(&s, send, rx, json!({}));
            crate::helper::wait_stdin("exit");
        }
        // tcp-splice-two-phase-client SERVER FIRST [THEN]: reads FIRST bytes (a multiple of the
        // pattern's 251) with splice(2), says where it is, waits for "go", reads the rest with
        // splice(2) to the end (or THEN bytes, without waiting for the end), closes the socket,
        // reports what it read after "go" and waits for "exit".
        "tcp-splice-two-phase-client" => {
            name("mon-splice-two");
            let first: usize = arg(1).parse().unwrap();
            let then: Option<usize> = args.get(2).map(|t| t.parse().unwrap());
            let s = TcpStream::connect(arg(0)).unwrap();
            assert_eq!(splice_up_to(&s, first), first);
            let local = s.local_addr().unwrap().to_string();
            say(&json!({"connected": true, "local": local, "pid": std::process::id()}));
            crate::helper::wait_stdin("go");
            let rx = then.map_or_else(|| splice_to_end(&s), |then| splice_up_to(&s, then));
            drop(s);
            say(&json!({"local": local, "rx_after_go": rx}));
            crate::helper::wait_stdin("exit");
        }
        // tcp-two-phase-server BIND FIRST SECOND: accepts one connection, writes FIRST bytes, waits
        // for "go", writes SECOND bytes (the pattern continued: FIRST is a multiple of 251), ends
        // its side and waits for "exit".
        "tcp-two-phase-server" => {
            name("mon-two-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let (first, second): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            say(&json!({"ready": true, "pid": std::process::id()}));
            let (mut s, _) = listener.accept().unwrap();
            // In pieces of whole patterns: FIRST may be gibibytes.
            let piece = pattern(251 * 4096);
            for _ in 0..first / piece.len() {
                s.write_all(&piece).unwrap();
            }
            s.write_all(&pattern(first % piece.len())).unwrap();
            crate::helper::wait_stdin("go");
            s.write_all(&pattern(second)).unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
            say(&json!({"sent": first + second}));
            crate::helper::wait_stdin("exit");
        }
        // tcp-hold-server-child BIND READ REPLY: binds and listens, then starts a child process
        // (`tcp-hold-accept`, sharing stdin and stdout) that accepts from the listener it
        // inherits: the prefork layout (a master holds the listener, a worker the connections).
        // Waits for the child, holding the listener.
        "tcp-hold-server-child" => {
            use std::os::unix::process::CommandExt as _;
            name("mon-hold-master");
            let listener = TcpListener::bind(arg(0)).unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let fd = listener.as_raw_fd();
            // Through /proc/self/exe: the test binary's directory may not be searchable by this
            // helper's user (a fresh clone in a private temporary directory).
            let mut cmd = std::process::Command::new("/proc/self/exe");
            cmd.env("MONITOR_TEST_HELPER", "tcp-hold-accept")
                .env_remove("MONITOR_TEST_HELPER_UID")
                .args([arg(1), arg(2)]);
            // SAFETY: only dup2/fcntl between fork and exec; fd 3 (without close-on-exec) is the
            // listener. dup2 onto itself keeps close-on-exec: where the listener already is fd 3,
            // the flag is cleared instead.
            unsafe {
                cmd.pre_exec(move || {
                    let ret = if fd == 3 { nix::libc::fcntl(3, nix::libc::F_SETFD, 0) } else { nix::libc::dup2(fd, 3) };
                    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
                });
            }
            let status = cmd.status().unwrap();
            assert!(status.success(), "the accepting child failed: {status}");
            drop(listener);
        }
        // tcp-hold-accept READ REPLY: `tcp-hold-server-child`'s child: sends a datagram from a UDP
        // socket of its own, accepts one connection from the listener at fd 3, reads READ bytes,
        // answers REPLY, reports, holds both until "exit".
        "tcp-hold-accept" => {
            use std::os::fd::FromRawFd as _;
            name("mon-hold-worker");
            // SAFETY: fd 3 is the listener the parent placed there for this process alone.
            let listener = unsafe { TcpListener::from_raw_fd(3) };
            // A socket of the worker's own, open at shutdown too (a worker's database or upstream
            // connection): the shutdown then asks the worker's descriptors for it as well.
            let own = UdpSocket::bind("0.0.0.0:0").unwrap();
            own.connect((listener.local_addr().unwrap().ip(), 9)).unwrap();
            own.send(b"worker").unwrap();
            serve_one_and_hold(&listener, arg(0).parse().unwrap(), arg(1).parse().unwrap());
            drop(own);
        }
        // tcp-unread-client SERVER SEND READ [WAIT_MS]: sends SEND bytes (write), reads READ bytes
        // of the reply (read), waits WAIT_MS (300) for the rest to arrive unread, reports it
        // (`unread`, FIONREAD) and closes: the kernel discards the unread bytes and resets the
        // connection.
        "tcp-unread-client" => {
            name("mon-unread");
            let send: usize = arg(1).parse().unwrap();
            let read: usize = arg(2).parse().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            s.write_all(&pattern(send)).unwrap();
            let mut got = vec![0u8; read];
            s.read_exact(&mut got).unwrap();
            let wait = args.get(3).map_or(300, |w| w.parse().unwrap());
            thread::sleep(Duration::from_millis(wait));
            let mut unread: nix::libc::c_int = 0;
            // SAFETY: FIONREAD writes one int.
            let ret = unsafe { nix::libc::ioctl(s.as_raw_fd(), nix::libc::FIONREAD, &raw mut unread) };
            assert_eq!(ret, 0, "FIONREAD: {}", std::io::Error::last_os_error());
            report(&s, send, read, json!({"unread": unread}));
            drop(s);
        }
        // tcp-reset-server BIND READ REPLY: as tcp-hold-server, but on "reset" it closes the
        // connection with `SO_LINGER` 0 (a reset to the peer), then waits for "exit".
        "tcp-reset-server" => {
            name("mon-reset-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let s = serve_one(&listener, arg(1).parse().unwrap(), arg(2).parse().unwrap());
            crate::helper::wait_stdin("reset");
            let linger = nix::libc::linger { l_onoff: 1, l_linger: 0 };
            // SAFETY: SO_LINGER takes one `linger`.
            let ret = unsafe {
                nix::libc::setsockopt(
                    s.as_raw_fd(),
                    nix::libc::SOL_SOCKET,
                    nix::libc::SO_LINGER,
                    (&raw const linger).cast(),
                    u32::try_from(std::mem::size_of::<nix::libc::linger>()).unwrap(),
                )
            };
            assert_eq!(ret, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
            drop(s);
            say(&json!({"reset": true}));
            crate::helper::wait_stdin("exit");
        }
        // tcp-hold-server BIND READ REPLY: accepts one connection, reads READ bytes (read),
        // answers REPLY bytes (write), reports, and keeps the connection open until "exit".
        "tcp-hold-server" => {
            name("mon-hold-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            serve_one_and_hold(&listener, arg(1).parse().unwrap(), arg(2).parse().unwrap());
        }
        // tcp-splice-server BIND REPLY: accepts one connection, reads it to the end with splice(2),
        // answers REPLY bytes (write) and closes.
        "tcp-splice-server" => {
            name("mon-splice-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let reply: usize = arg(1).parse().unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let (mut s, _) = listener.accept().unwrap();
            let rx = splice_to_end(&s);
            s.write_all(&pattern(reply)).unwrap();
            report(&s, reply, rx, json!({}));
        }
        // tcp-trickle-server BIND CHUNK COUNT PAUSE_MS: accepts one connection, reads the request to
        // the end, then writes a chunk per pause and closes.
        "tcp-trickle-server" => {
            name("mon-trickle-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let chunk: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            let pause = Duration::from_millis(arg(3).parse().unwrap());
            say(&json!({"ready": true}));
            let (mut s, _) = listener.accept().unwrap();
            let rx = read_to_end(&mut s);
            let data = pattern(chunk * count);
            for part in data.chunks(chunk) {
                s.write_all(part).unwrap();
                thread::sleep(pause);
            }
            report(&s, chunk * count, rx, json!({}));
        }
        // tcp-sendfile-client SERVER SIZE: sends SIZE bytes from a file with sendfile(2), reads the reply.
        "tcp-sendfile-client" => {
            name("mon-tcp-sendfile");
            let size: usize = arg(1).parse().unwrap();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(&pattern(size)).unwrap();
            file.rewind().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let mut offset: nix::libc::off_t = 0;
            let mut sent = 0usize;
            while sent < size {
                // SAFETY: valid descriptors; `offset` is updated by the kernel.
                let n = unsafe { nix::libc::sendfile(s.as_raw_fd(), file.as_raw_fd(), &raw mut offset, size - sent) };
                sent += check(n, "sendfile");
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            report(&s, sent, rx, json!({}));
        }
        // tcp-vmsplice-client SERVER SIZE: maps its buffer into a pipe with vmsplice(2), then
        // splices the pipe into the socket.
        "tcp-vmsplice-client" => {
            name("mon-tcp-vmsplice");
            let size: usize = arg(1).parse().unwrap();
            let data = pattern(size);
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let (r, w) = pipe();
            let mut sent = 0usize;
            while sent < size {
                let iov = nix::libc::iovec {
                    iov_base: data[sent..].as_ptr().cast_mut().cast(),
                    iov_len: (size - sent).min(CHUNK),
                };
                // SAFETY: `iov` points into `data`, alive until the end.
                let mut in_pipe = check(unsafe { nix::libc::vmsplice(w, &raw const iov, 1, 0) }, "vmsplice");
                while in_pipe > 0 {
                    // SAFETY: valid descriptors, null offsets.
                    let n = unsafe {
                        nix::libc::splice(
                            r,
                            std::ptr::null_mut(),
                            s.as_raw_fd(),
                            std::ptr::null_mut(),
                            in_pipe,
                            nix::libc::SPLICE_F_MOVE,
                        )
                    };
                    let n = check(n, "splice pipe -> socket");
                    in_pipe -= n;
                    sent += n;
                }
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            report(&s, sent, rx, json!({}));
        }
        // tcp-zerocopy-send-client SERVER SIZE: SO_ZEROCOPY + send(MSG_ZEROCOPY), reads the reply,
        // then collects the completion notifications from the error queue.
        "tcp-zerocopy-send-client" => {
            name("mon-tcp-zcsend");
            let size: usize = arg(1).parse().unwrap();
            let data = pattern(size);
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let fd = s.as_raw_fd();
            let one: nix::libc::c_int = 1;
            // SAFETY: setsockopt with an int.
            let r = unsafe {
                nix::libc::setsockopt(fd, nix::libc::SOL_SOCKET, nix::libc::SO_ZEROCOPY, (&raw const one).cast(), 4)
            };
            assert_eq!(r, 0, "SO_ZEROCOPY: {}", std::io::Error::last_os_error());
            let mut sent = 0usize;
            while sent < size {
                let len = (size - sent).min(CHUNK);
                // SAFETY: `data` outlives the notifications (it lives until exit).
                let n = unsafe { nix::libc::send(fd, data[sent..].as_ptr().cast(), len, nix::libc::MSG_ZEROCOPY) };
                sent += check(n, "send(MSG_ZEROCOPY)");
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            let mut notifications = 0;
            let mut control = [0u8; 256];
            loop {
                // SAFETY: a msghdr with only a control buffer, as the error queue needs.
                let n = unsafe {
                    let mut msg: nix::libc::msghdr = std::mem::zeroed();
                    msg.msg_control = control.as_mut_ptr().cast();
                    msg.msg_controllen = control.len();
                    nix::libc::recvmsg(fd, &raw mut msg, nix::libc::MSG_ERRQUEUE | nix::libc::MSG_DONTWAIT)
                };
                if n < 0 {
                    break;
                }
                notifications += 1;
            }
            report(&s, sent, rx, json!({"notifications": notifications}));
        }
        // tcp-timestamping-client SERVER SIZE: software transmit timestamps (SO_TIMESTAMPING
        // with OPT_ID: each one comes back on the error queue with a copy of the packet sent),
        // SIZE bytes sent, the reply read, then the error queue drained into a data buffer.
        "tcp-timestamping-client" => {
            name("mon-tcp-tstamp");
            let size: usize = arg(1).parse().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let flags: nix::libc::c_int = nix::libc::SOF_TIMESTAMPING_TX_SOFTWARE as nix::libc::c_int
                | nix::libc::SOF_TIMESTAMPING_SOFTWARE as nix::libc::c_int
                | nix::libc::SOF_TIMESTAMPING_OPT_ID as nix::libc::c_int;
            set_int(&s, nix::libc::SOL_SOCKET, nix::libc::SO_TIMESTAMPING, flags, "SO_TIMESTAMPING");
            for chunk in pattern(size).chunks(10_000) {
                s.write_all(chunk).unwrap();
                thread::sleep(Duration::from_millis(2));
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            let errqueue = drain_error_queue(s.as_raw_fd());
            report(&s, size, rx, json!({"errqueue_bytes": errqueue}));
        }
        // udp-recverr-client SERVER COUNT SIZE: a connected UDP socket with IP(V6)_RECVERR sends
        // COUNT datagrams of SIZE bytes to SERVER, where nothing listens: each ICMP error comes
        // back on the error queue with a copy of the datagram, read into a data buffer.
        "udp-recverr-client" => {
            name("mon-udp-recverr");
            let server: SocketAddr = arg(0).parse().unwrap();
            let (count, size): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            let s = UdpSocket::bind(if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).unwrap();
            s.connect(server).unwrap();
            let (level, name) = if server.is_ipv4() {
                (nix::libc::SOL_IP, nix::libc::IP_RECVERR)
            } else {
                (nix::libc::SOL_IPV6, nix::libc::IPV6_RECVERR)
            };
            set_int(&s, level, name, 1, "RECVERR");
            let mut errqueue = 0;
            for _ in 0..count {
                s.send(&pattern(size)).unwrap();
                thread::sleep(Duration::from_millis(50));
                errqueue += drain_error_queue(s.as_raw_fd());
            }
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": count * size, "rx": 0,
                "pid": std::process::id(), "extra": {"errqueue_bytes": errqueue}}));
        }
        // tcp-zerocopy-recv-client SERVER SEND: sends SEND bytes, reads the reply with
        // TCP_ZEROCOPY_RECEIVE.
        "tcp-zerocopy-recv-client" => {
            name("mon-tcp-zcrecv");
            let send: usize = arg(1).parse().unwrap();
            let s = request(arg(0), send);
            let (bypassed, received) = zerocopy_receive(&s);
            report(&s, send, bypassed + received, json!({"bypassed": bypassed, "recv": received}));
        }
        // ktls-client SERVER SIZE: kTLS transmit (TLS_TX); SIZE bytes of plaintext in records of
        // 16 KiB (one write each), then reads the plain reply.
        "ktls-client" => {
            name("mon-ktls-client");
            let size: usize = arg(1).parse().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            ktls(&s, nix::libc::TLS_TX).unwrap_or_else(|e| panic!("kTLS TLS_TX: {e}"));
            for chunk in pattern(size).chunks(16 * 1024) {
                s.write_all(chunk).unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            report(&s, size, rx, json!({"records": size.div_ceil(16 * 1024)}));
        }
        // ktls-server BIND: accepts one connection, kTLS receive (TLS_RX), reads the plaintext to
        // the end and checks it.
        "ktls-server" => {
            name("mon-ktls-server");
            let listener = TcpListener::bind(arg(0)).unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let (mut s, _) = listener.accept().unwrap();
            ktls(&s, nix::libc::TLS_RX).unwrap_or_else(|e| panic!("kTLS TLS_RX: {e}"));
            let mut plain = Vec::new();
            s.read_to_end(&mut plain).unwrap();
            assert_eq!(plain, pattern(plain.len()), "kTLS plaintext differs from what the client sent");
            report(&s, 0, plain.len(), json!({}));
        }
        // udp-round-robin SIZE ROUNDS DEST...: one unconnected socket; each round sends one
        // datagram to every destination in turn.
        "udp-round-robin" => {
            name("mon-udp-rr");
            let size: usize = arg(0).parse().unwrap();
            let rounds: usize = arg(1).parse().unwrap();
            let dests: Vec<SocketAddr> = args[2..].iter().map(|a| a.parse().unwrap()).collect();
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let data = pattern(size);
            for _ in 0..rounds {
                for d in &dests {
                    assert_eq!(s.send_to(&data, d).unwrap(), size);
                }
                // Let the receivers keep up (their queues, not the monitor, are the limit).
                thread::sleep(Duration::from_millis(2));
            }
            say(
                &json!({"local_port": s.local_addr().unwrap().port(), "tx_per_dest": size * rounds, "pid": std::process::id()}),
            );
        }
        // udp-sink IP FIRST_PORT N COUNT: N sockets on consecutive ports, each reads COUNT datagrams.
        "udp-sink" => {
            name("mon-udp-sink");
            let ip = arg(0).to_owned();
            let first: u16 = arg(1).parse().unwrap();
            let n: u16 = arg(2).parse().unwrap();
            let count: usize = arg(3).parse().unwrap();
            let sockets: Vec<UdpSocket> =
                (0..n).map(|i| UdpSocket::bind(format!("{ip}:{}", first + i)).unwrap()).collect();
            say(&json!({"ready": true}));
            let handles: Vec<_> = sockets
                .into_iter()
                .map(|s| {
                    thread::spawn(move || {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        let mut buf = vec![0u8; 65536];
                        (0..count).map_while(|_| s.recv_from(&mut buf).ok()).map(|(len, _)| len).sum::<usize>()
                    })
                })
                .collect();
            let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
            say(&json!({"rx": total}));
        }
        _ => return false,
    }
    true
}
