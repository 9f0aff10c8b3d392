//! Traffic generators. The test binary re-executes itself with `MONITOR_TEST_HELPER=<role>`;
//! the child has already been moved into the test cgroup and network namespace (see spawn.rs).
//! Every role names its thread (`comm`) after itself and prints JSON lines on stdout: what it
//! sent and received, which is the ground truth the monitor's records are checked against.

use std::{
    io::{BufRead as _, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket},
    thread,
    time::Duration,
};

use serde_json::json;

pub(crate) fn say(v: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{v}").unwrap();
    out.flush().unwrap();
}

pub(crate) fn name(comm: &str) {
    nix::sys::prctl::set_name(&std::ffi::CString::new(comm).unwrap()).unwrap();
}

pub(crate) fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// Writes SEND bytes on `s`, shuts its side down, reads the reply to its end, reports (local
/// address, bytes each way, pid) and waits for "exit".
fn send_then_read_to_end(s: &mut TcpStream, send: usize) {
    s.write_all(&pattern(send)).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let rx = read_to_end(s);
    say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": send, "rx": rx, "pid": std::process::id()}));
    wait_stdin("exit");
}

pub(crate) fn read_to_end(s: &mut TcpStream) -> usize {
    let mut buf = vec![0u8; 65536];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

pub(crate) fn wait_stdin(word: &str) {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    assert_eq!(line.trim(), word, "unexpected control line");
}

/// Hands this process's sockets on to a child (fork): the parent reports `local`, its pid and the
/// child's, and exits; the child, named `heir`, waits for "go", runs `then`, reports what it
/// returns and waits for "exit".
fn hand_on(local: &str, heir: &str, then: impl FnOnce() -> serde_json::Value) {
    // SAFETY: the helper is single-threaded here; the child only uses its own copies.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Parent { child } => {
            say(&json!({"local": local, "pid": std::process::id(), "child": child.as_raw()}));
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Child => {
            name(heir);
            wait_stdin("go");
            say(&then());
            wait_stdin("exit");
        }
    }
}

/// Makes every datagram of IPv6 socket `s` carry a destination options header of 8 bytes (a
/// PadN option), as `setsockopt(IPV6_DSTOPTS)` does for applications that send options.
fn ipv6_destination_options(s: &UdpSocket) {
    use std::os::fd::AsRawFd;
    // next header (set by the kernel), length 0 (8 bytes), PadN of 4 bytes.
    let header: [u8; 8] = [0, 0, 1, 4, 0, 0, 0, 0];
    // SAFETY: a valid socket and an 8-byte buffer of the length given.
    let rc = unsafe {
        nix::libc::setsockopt(
            s.as_raw_fd(),
            nix::libc::IPPROTO_IPV6,
            nix::libc::IPV6_DSTOPTS,
            header.as_ptr().cast(),
            nix::libc::socklen_t::try_from(header.len()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "IPV6_DSTOPTS: {}", std::io::Error::last_os_error());
}

/// Entry point of a helper process.
pub fn main(role: &str) {
    if let Ok(uid) = std::env::var("MONITOR_TEST_HELPER_UID") {
        let id: u32 = uid.parse().unwrap();
        let net_raw = crate::raw_helpers::needs_net_raw(role);
        if net_raw {
            nix::sys::prctl::set_keepcaps(true).unwrap();
        }
        nix::unistd::setgid(id.into()).unwrap();
        nix::unistd::setuid(id.into()).unwrap();
        if net_raw {
            // Like ping(8) with file capabilities: an unprivileged user with CAP_NET_RAW.
            caps::raise(None, caps::CapSet::Effective, caps::Capability::CAP_NET_RAW).unwrap();
        }
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        "churn-server" | "churn-client" | "backlog-server" | "backlog-client" | "tcp-self-connect" => {
            crate::listeners::helper(role, &args)
        }
        "names-client" | "names-udp-sink" => crate::names::helper(role, &args),
        "emulator-relay" => crate::emulator::relay(&args),
        "gai-client" => crate::getaddrinfo::helper(role, &args),
        "gate-client" => crate::copy_gate::helper(role, &args),
        "inetd-serve" => crate::activation::serve(&args),
        "io-uring-tcp-client" | "io-uring-udp-client" => crate::uring::helper(role, &args),
        "udp-mmsg-client"
        | "udp-gso-client"
        | "udp-peek-client"
        | "tcp-peek-client"
        | "tcp-fastopen-client"
        | "tcp-fastopen-server"
        | "tcp-urgent-client"
        | "tcp-urgent-server" => crate::syscalls::helper(role, &args),
        "tcp-attempt" => crate::attempts::helper(&args),
        // tcp-server BIND REPLY CONNS [hold]: reads each connection to EOF, replies REPLY bytes,
        // closes; with `hold`, keeps listening after the last one until "exit" on stdin.
        "tcp-server" => {
            name("mon-tcp-server");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let reply: usize = arg(1).parse().unwrap();
            let conns: usize = arg(2).parse().unwrap();
            say(&json!({"ready": true, "pid": std::process::id(), "addr": listener.local_addr().unwrap().to_string()}));
            let handles: Vec<_> = (0..conns)
                .map(|_| {
                    let (mut s, peer) = listener.accept().unwrap();
                    thread::spawn(move || {
                        let rx = read_to_end(&mut s);
                        s.write_all(&pattern(reply)).unwrap();
                        s.shutdown(Shutdown::Write).unwrap();
                        json!({"local": s.local_addr().unwrap().to_string(), "peer": peer.to_string(), "rx": rx, "tx": reply})
                    })
                })
                .collect();
            for h in handles {
                say(&h.join().unwrap());
            }
            if args.get(3).is_some_and(|a| a == "hold") {
                crate::helper::wait_stdin("exit");
                drop(listener);
            }
        }
        // tcp-client SERVER SEND CONNS: CONNS concurrent connections, each sends SEND+i*7 bytes.
        "tcp-client" => {
            name("mon-tcp-client");
            let server: SocketAddr = arg(0).parse().unwrap();
            let send: usize = arg(1).parse().unwrap();
            let conns: usize = arg(2).parse().unwrap();
            let mut streams: Vec<TcpStream> = (0..conns).map(|_| TcpStream::connect(server).unwrap()).collect();
            for (i, s) in streams.iter_mut().enumerate() {
                s.write_all(&pattern(send + i * 7)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
            }
            for (i, mut s) in streams.into_iter().enumerate() {
                let rx = read_to_end(&mut s);
                say(
                    &json!({"local": s.local_addr().unwrap().to_string(), "tx": send + i * 7, "rx": rx, "pid": std::process::id()}),
                );
            }
        }
        // tcp-trickle SERVER CHUNK COUNT PAUSE_MS: a long-lived connection sending a chunk per pause.
        "tcp-trickle" => {
            name("mon-tcp-trickle");
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let chunk: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            let pause = Duration::from_millis(arg(3).parse().unwrap());
            for _ in 0..count {
                s.write_all(&pattern(chunk)).unwrap();
                thread::sleep(pause);
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": chunk * count, "rx": rx}));
        }
        // tcp-hold-server BIND N M: accepts one connection, reads N bytes, answers M, then holds
        // the idle connection until "exit".
        "tcp-hold-server" => {
            name("mon-hold-server");
            let listener = TcpListener::bind(arg(0)).unwrap();
            let (n, m): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            say(&json!({"ready": true}));
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&pattern(m)).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "rx": n, "tx": m}));
            wait_stdin("exit");
        }
        // tcp-hold-client SERVER N M: sends N bytes, reads M, then holds the idle connection.
        // tcp-hold-client-on-go: the same once told "go" (the test sees the process first).
        "tcp-hold-client" | "tcp-hold-client-on-go" => {
            name("mon-hold-client");
            if role == "tcp-hold-client-on-go" {
                wait_stdin("go");
            }
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let (n, m): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            s.write_all(&pattern(n)).unwrap();
            let mut buf = vec![0u8; m];
            s.read_exact(&mut buf).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": n, "rx": m}));
            wait_stdin("exit");
        }
        // tcp-then-exec FIRST SECOND SEND: one connection to FIRST (SEND bytes, closed), then
        // execs bash, which opens its own connection to SECOND (/dev/tcp), writes SEND bytes and
        // waits a second for a reply that does not come: one process (one pid and start time),
        // two programs.
        "tcp-then-exec" => {
            name("mon-pre-exec");
            let send: usize = arg(2).parse().unwrap();
            let mut s = TcpStream::connect(arg(0)).unwrap();
            s.write_all(&pattern(send)).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "pid": std::process::id()}));
            drop(s);
            // Long enough for the monitor to read this program from /proc before it is replaced.
            thread::sleep(Duration::from_millis(500));
            let second: SocketAddr = arg(1).parse().unwrap();
            let script = format!(
                "exec 3<>/dev/tcp/{}/{} && printf '%*s' {send} '' >&3 && read -r -t 1 <&3; exec 3>&-",
                second.ip(),
                second.port()
            );
            let err =
                std::os::unix::process::CommandExt::exec(std::process::Command::new("bash").args(["-c", &script]));
            panic!("exec bash: {err}");
        }
        // tcp-listen-exec ADDR N M PROGRAM: listens on ADDR (the listener kept across exec) and
        // execs PROGRAM (a link to this binary) as `tcp-serve-fd`, which accepts one connection,
        // reads N bytes, writes M, reports and waits for "exit": a launcher that listens and
        // starts the server in its own process (`systemd-socket-activate`, a server re-exec).
        "tcp-listen-exec" => {
            use std::os::{fd::IntoRawFd as _, unix::process::CommandExt as _};
            let listener = TcpListener::bind(arg(0)).unwrap();
            nix::fcntl::fcntl(&listener, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
            let fd = listener.into_raw_fd();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let mut next = std::process::Command::new(arg(3));
            let err = next.env("MONITOR_TEST_HELPER", "tcp-serve-fd").args([&fd.to_string(), arg(1), arg(2)]).exec();
            panic!("exec {}: {err}", arg(3));
        }
        "tcp-serve-fd" => {
            use std::os::fd::FromRawFd as _;
            let fd: i32 = arg(0).parse().unwrap();
            // SAFETY: the listener the program before the exec left open for this one.
            let listener = unsafe { TcpListener::from_raw_fd(fd) };
            let (n, m): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; n];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&pattern(m)).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "rx": n, "tx": m, "pid": std::process::id()}));
            wait_stdin("exit");
        }
        // tcp-exec-same SERVER SEND PROGRAM: makes a TCP socket and execs PROGRAM (another
        // executable of the same file name: a link to this binary elsewhere) as `tcp-on-fd`, which
        // connects that socket: one process, the socket made by one program and used by another.
        // tcp-on-fd FD SERVER SEND: connects socket FD to SERVER, writes SEND bytes, reads the
        // reply, reports and waits for "exit".
        "tcp-exec-same" => {
            use std::os::{fd::IntoRawFd as _, unix::process::CommandExt as _};
            let fd = nix::sys::socket::socket(
                nix::sys::socket::AddressFamily::Inet,
                nix::sys::socket::SockType::Stream,
                nix::sys::socket::SockFlag::empty(),
                None,
            )
            .unwrap()
            .into_raw_fd();
            let mut next = std::process::Command::new(arg(2));
            let err = next.env("MONITOR_TEST_HELPER", "tcp-on-fd").args([&fd.to_string(), arg(0), arg(1)]).exec();
            panic!("exec {}: {err}", arg(2));
        }
        "tcp-on-fd" => {
            use std::os::fd::FromRawFd as _;
            let fd: i32 = arg(0).parse().unwrap();
            let server: SocketAddr = arg(1).parse().unwrap();
            let send: usize = arg(2).parse().unwrap();
            // SAFETY: the socket the program before the exec made and left open for this one.
            let mut s = unsafe { TcpStream::from_raw_fd(fd) };
            let addr = match server {
                SocketAddr::V4(a) => nix::sys::socket::SockaddrIn::from(a),
                SocketAddr::V6(_) => panic!("tcp-on-fd: IPv4 only"),
            };
            nix::sys::socket::connect(fd, &addr).unwrap();
            send_then_read_to_end(&mut s, send);
        }
        // tcp-from-thread SERVER SEND: a thread named `conn-thr` connects and ends at once; the
        // main thread (`mon-threader`) sends SEND bytes on the connection, reads the reply, reports
        // and waits for "exit" (the process lives on, its connecting thread gone).
        // tcp-then-rename SERVER SEND: connects under the name its exec gave it (the first 15
        // bytes of the file name it was started by: its executable's or a link's), renames itself
        // `mon-renamed` at once, then the same.
        "tcp-from-thread" | "tcp-then-rename" => {
            let server: SocketAddr = arg(0).parse().unwrap();
            let send: usize = arg(1).parse().unwrap();
            let mut s = if role == "tcp-from-thread" {
                name("mon-threader");
                let connect = move || TcpStream::connect(server).unwrap();
                thread::Builder::new().name("conn-thr".into()).spawn(connect).unwrap().join().unwrap()
            } else {
                let started = std::path::PathBuf::from(std::env::args_os().next().unwrap());
                let file = started.file_name().unwrap().as_encoded_bytes();
                name(std::str::from_utf8(&file[..file.len().min(15)]).unwrap());
                let s = TcpStream::connect(server).unwrap();
                name("mon-renamed");
                s
            };
            send_then_read_to_end(&mut s, send);
        }
        // tcp-exit SERVER SEND: connects, writes, exits at once (close happens at exit).
        "tcp-exit" => {
            name("mon-tcp-exit");
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let send: usize = arg(1).parse().unwrap();
            s.write_all(&pattern(send)).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": send, "pid": std::process::id()}));
            std::process::exit(0);
        }
        // tcp-preexisting SERVER FIRST SECOND: sends FIRST, waits for "go", sends SECOND, reads the
        // reply, reports, waits for "exit".
        "tcp-preexisting" => {
            name("mon-tcp-old");
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let first: usize = arg(1).parse().unwrap();
            let second: usize = arg(2).parse().unwrap();
            s.write_all(&pattern(first)).unwrap();
            say(&json!({"connected": true, "local": s.local_addr().unwrap().to_string(), "pid": std::process::id()}));
            wait_stdin("go");
            s.write_all(&pattern(second)).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx_after_go": second, "rx": rx}));
            wait_stdin("exit");
        }
        // tcp-handed-on SERVER FIRST SECOND: as tcp-preexisting, but the socket is handed on to a
        // child (fork) and the process exits: the child waits for "go", sends SECOND, reads the
        // reply, reports and waits for "exit" (a socket outliving its creator in another process).
        "tcp-handed-on" => {
            name("mon-tcp-creator");
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let (first, second): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            s.write_all(&pattern(first)).unwrap();
            let local = s.local_addr().unwrap().to_string();
            hand_on(&local, "mon-tcp-heir", || {
                s.write_all(&pattern(second)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                let rx = read_to_end(&mut s);
                json!({"local": local, "tx_after_go": second, "rx": rx})
            });
        }
        // udp-handed-on SERVER SIZE FIRST SECOND: a connected UDP socket; FIRST request/response
        // pairs of SIZE bytes, then handed on to a child (fork) and the process exits: the child
        // waits for "go", makes SECOND more pairs, reports and waits for "exit".
        "udp-handed-on" => {
            name("mon-udp-creator");
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.connect(arg(0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let (size, first, second): (usize, usize, usize) =
                (arg(1).parse().unwrap(), arg(2).parse().unwrap(), arg(3).parse().unwrap());
            let exchange = |n: usize| {
                let mut buf = vec![0u8; 65536];
                for _ in 0..n {
                    s.send(&pattern(size)).unwrap();
                    s.recv(&mut buf).unwrap();
                }
            };
            exchange(first);
            let local = s.local_addr().unwrap().to_string();
            hand_on(&local, "mon-udp-heir", || {
                exchange(second);
                json!({"local": local, "tx_after_go": size * second})
            });
        }
        // udp-thread-table MODE DEST SIZE COUNT: a thread makes a connected UDP socket, exchanges
        // COUNT datagrams of SIZE with DEST, reports and holds it until "exit". MODE `unshare`:
        // the thread first takes a descriptor table of its own (`unshare(CLONE_FILES)`), so the
        // socket is in no other; `leader-exit`: the main thread exits (as `pthread_exit` does) once the
        // thread runs, so the process's descriptors live on in the thread's table only.
        "udp-thread-table" => {
            name("mon-udp-table");
            let (mode, dest) = (arg(0).to_owned(), arg(1).to_owned());
            let (size, count): (usize, usize) = (arg(2).parse().unwrap(), arg(3).parse().unwrap());
            let unshare = mode == "unshare";
            let worker = thread::spawn(move || {
                if unshare {
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FILES).unwrap();
                }
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                s.connect(&dest).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = vec![0u8; 65536];
                for _ in 0..count {
                    s.send(&pattern(size)).unwrap();
                    s.recv(&mut buf).unwrap();
                }
                say(
                    &json!({"local": s.local_addr().unwrap().to_string(), "tx": size * count, "pid": std::process::id()}),
                );
                wait_stdin("exit");
                std::process::exit(0);
            });
            if unshare {
                worker.join().unwrap();
            } else {
                // The main thread alone ends (the raw `exit` of the calling thread: `pthread_exit`
                // would unwind through Rust frames and abort), the worker owns all it uses.
                // SAFETY: a system call without memory arguments; nothing runs after it here.
                unsafe { nix::libc::syscall(nix::libc::SYS_exit, 0) };
            }
        }
        // tcp-preexisting-hold SERVER FIRST SECOND REPLY: as tcp-preexisting, but reads REPLY
        // bytes without shutting its side down, and closes only at "exit" (its FIN leaves after
        // the process released the socket).
        "tcp-preexisting-hold" => {
            name("mon-tcp-old");
            let mut s = TcpStream::connect(arg(0)).unwrap();
            let (first, second, reply): (usize, usize, usize) =
                (arg(1).parse().unwrap(), arg(2).parse().unwrap(), arg(3).parse().unwrap());
            s.write_all(&pattern(first)).unwrap();
            say(&json!({"connected": true, "local": s.local_addr().unwrap().to_string(), "pid": std::process::id()}));
            wait_stdin("go");
            s.write_all(&pattern(second)).unwrap();
            let mut got = vec![0u8; reply];
            s.read_exact(&mut got).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx_after_go": second, "rx": reply}));
            wait_stdin("exit");
        }
        // udp-echo BIND... COUNT: one socket per address; echoes COUNT datagrams in total per socket.
        // udp-echo-dstopts: the same, each datagram carrying an IPv6 destination options header.
        "udp-echo" | "udp-echo-dstopts" => {
            name("mon-udp-echo");
            let count: usize = arg(args.len() - 1).parse().unwrap();
            let sockets: Vec<UdpSocket> =
                args[..args.len() - 1].iter().map(|a| UdpSocket::bind(a.as_str()).unwrap()).collect();
            if role == "udp-echo-dstopts" {
                sockets.iter().for_each(ipv6_destination_options);
            }
            say(&json!({"ready": true, "pid": std::process::id()}));
            let handles: Vec<_> = sockets
                .into_iter()
                .map(|s| {
                    thread::spawn(move || {
                        let mut buf = vec![0u8; 65536];
                        for _ in 0..count {
                            let (n, peer) = s.recv_from(&mut buf).unwrap();
                            s.send_to(&buf[..n], peer).unwrap();
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
        }
        // udp-connected SERVER SIZE COUNT: connect(), then COUNT request/response pairs.
        // udp-connected-hold: the same, then keeps the socket open until "exit".
        "udp-connected" | "udp-connected-hold" => {
            name("mon-udp-conn");
            let s = UdpSocket::bind(if arg(0).starts_with('[') { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
            s.connect(arg(0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let size: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            let mut rx = 0;
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                s.send(&pattern(size)).unwrap();
                rx += s.recv(&mut buf).unwrap();
            }
            say(
                &json!({"local": s.local_addr().unwrap().to_string(), "tx": size * count, "rx": rx, "pid": std::process::id()}),
            );
            if role == "udp-connected-hold" {
                wait_stdin("exit");
            }
        }
        // udp-unconnected SIZE COUNT DEST...: one socket, sendto() each destination COUNT times.
        // udp-unconnected-dstopts: the same, each datagram carrying an IPv6 destination options
        // header (the IP header is then not followed by the UDP header).
        // udp-unconnected-hold: the same, then keeps the socket open until "exit".
        // udp-unconnected-later: as -hold, but the last destination only after "again" (a line
        // with the local port before it).
        "udp-unconnected" | "udp-unconnected-dstopts" | "udp-unconnected-hold" | "udp-unconnected-later" => {
            name("mon-udp-multi");
            let size: usize = arg(0).parse().unwrap();
            let count: usize = arg(1).parse().unwrap();
            let dests: Vec<SocketAddr> = args[2..].iter().map(|a| a.parse().unwrap()).collect();
            let s = UdpSocket::bind(if dests[0].is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }).unwrap();
            if role == "udp-unconnected-dstopts" {
                ipv6_destination_options(&s);
            }
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut per_peer = serde_json::Map::new();
            let later = if role == "udp-unconnected-later" { dests.len() - 1 } else { dests.len() };
            for (i, d) in dests.iter().enumerate() {
                if i == later {
                    say(&json!({"local_port": s.local_addr().unwrap().port()}));
                    wait_stdin("again");
                }
                let mut rx = 0;
                for _ in 0..count {
                    s.send_to(&pattern(size), d).unwrap();
                    let (n, from) = s.recv_from(&mut buf).unwrap();
                    assert_eq!(&from, d, "reply from an unexpected peer");
                    rx += n;
                }
                per_peer.insert(d.to_string(), json!({"tx": size * count, "rx": rx}));
            }
            say(&json!({"local_port": s.local_addr().unwrap().port(), "peers": per_peer, "pid": std::process::id()}));
            if role == "udp-unconnected-hold" || role == "udp-unconnected-later" {
                wait_stdin("exit");
            }
        }
        // udp-exit SERVER SIZE: one datagram, then exit.
        // udp-hold-silent: binds a UDP socket and sends nothing; closes it at "close", exits at
        // "exit".
        "udp-hold-silent" => {
            name("mon-udp-silent");
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            say(&json!({"local_port": s.local_addr().unwrap().port(), "pid": std::process::id()}));
            wait_stdin("close");
            drop(s);
            say(&json!({"closed": true}));
            wait_stdin("exit");
        }
        "udp-exit" => {
            name("mon-udp-exit");
            let dest: SocketAddr = arg(0).parse().unwrap();
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            let size: usize = arg(1).parse().unwrap();
            s.send_to(&pattern(size), dest).unwrap();
            say(&json!({"local_port": s.local_addr().unwrap().port(), "tx": size, "pid": std::process::id()}));
            std::process::exit(0);
        }
        // tcp-churn BIND|- SERVER|- SECS: for SECS seconds, serves on BIND (64 bytes echoed per
        // connection) and, from 2 threads, makes short connections to SERVER as fast as it can;
        // then prints the number of connections it made.
        "tcp-churn" => {
            name("mon-tcp-churn");
            let until = std::time::Instant::now() + Duration::from_secs(arg(2).parse().unwrap());
            if arg(0) != "-" {
                let listener = TcpListener::bind(arg(0)).unwrap();
                for _ in 0..2 {
                    let listener = listener.try_clone().unwrap();
                    thread::spawn(move || {
                        for mut s in listener.incoming().map_while(Result::ok) {
                            let mut buf = [0u8; 64];
                            let _ = s.read_exact(&mut buf).and_then(|()| s.write_all(&buf));
                        }
                    });
                }
            }
            say(&json!({"ready": true}));
            let server: Option<SocketAddr> = (arg(1) != "-").then(|| arg(1).parse().unwrap());
            let clients: Vec<_> = (0..if server.is_some() { 2 } else { 0 })
                .map(|_| {
                    thread::spawn(move || {
                        let mut n = 0_u64;
                        while let Some(server) = server.filter(|_| std::time::Instant::now() < until) {
                            let Ok(mut s) = TcpStream::connect(server) else { continue };
                            let mut buf = [7u8; 64];
                            if s.write_all(&buf).and_then(|()| s.read_exact(&mut buf)).is_ok() {
                                n += 1;
                            }
                        }
                        n
                    })
                })
                .collect();
            let made: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
            thread::sleep(until.saturating_duration_since(std::time::Instant::now()));
            say(&json!({"connections": made}));
        }
        other => {
            if !crate::paths_helper::run(other, &args)
                && !crate::rebind::run(other, &args)
                && !crate::mptcp::run(other, &args)
                && !crate::reconnect::run(other, &args)
                && !crate::older::helper(other, &args)
            {
                crate::raw_helpers::main(other, &args);
            }
        }
    }
}
