//! Helper roles for ping, raw IP, UDP-Lite and packet sockets (dispatched from helper.rs). std has none of
//! these socket kinds, so they use libc directly. Each prints the bytes it wrote and read, per
//! destination: the return values of `sendto`/`recv`, i.e. exactly what the application handled.

use std::{
    ffi::CString,
    io, mem,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
};

use serde_json::{Map, json};

/// `ICMP_FILTER` (level `SOL_RAW`): bit n set = drop ICMP type n on a raw ICMP socket.
const ICMP_FILTER: nix::libc::c_int = 1;
/// `ICMP6_FILTER` (level `IPPROTO_ICMPV6`): bit n set = drop ICMPv6 type n.
const ICMP6_FILTER: nix::libc::c_int = 1;
/// Ethertype of the frames `packet-send` writes (IEEE local experimental).
const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;
/// MAC addresses of the test veth pair (env.rs).
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];

/// Roles that open raw or packet sockets or send IPv6 options: they keep `CAP_NET_RAW` after
/// dropping to the test uid.
pub fn needs_net_raw(role: &str) -> bool {
    matches!(role, "ping" | "raw-send" | "raw-echo" | "packet-send" | "udp-unconnected-dstopts")
}

fn socket(domain: nix::libc::c_int, ty: nix::libc::c_int, protocol: nix::libc::c_int) -> OwnedFd {
    // SAFETY: plain syscall; the descriptor is owned from here on.
    let fd = unsafe { nix::libc::socket(domain, ty | nix::libc::SOCK_CLOEXEC, protocol) };
    assert!(fd >= 0, "socket({domain}, {ty}, {protocol}): {}", io::Error::last_os_error());
    // SAFETY: a fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = nix::libc::timeval { tv_sec: 5, tv_usec: 0 };
    setsockopt(&fd, nix::libc::SOL_SOCKET, nix::libc::SO_RCVTIMEO, &timeout);
    fd
}

fn setsockopt<T>(fd: &OwnedFd, level: nix::libc::c_int, name: nix::libc::c_int, value: &T) {
    // SAFETY: `value` is a live T of the given size.
    let ret = unsafe {
        nix::libc::setsockopt(fd.as_raw_fd(), level, name, std::ptr::from_ref(value).cast(), mem::size_of::<T>() as u32)
    };
    assert_eq!(ret, 0, "setsockopt({level}, {name}): {}", io::Error::last_os_error());
}

fn sockaddr(ip: IpAddr) -> (nix::libc::sockaddr_storage, nix::libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: nix::libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match ip {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<nix::libc::sockaddr_in>() };
            sin.sin_family = nix::libc::AF_INET as u16;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            mem::size_of::<nix::libc::sockaddr_in>()
        }
        IpAddr::V6(v6) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *std::ptr::from_mut(&mut ss).cast::<nix::libc::sockaddr_in6>() };
            sin6.sin6_family = nix::libc::AF_INET6 as u16;
            sin6.sin6_addr.s6_addr = v6.octets();
            mem::size_of::<nix::libc::sockaddr_in6>()
        }
    };
    (ss, len as nix::libc::socklen_t)
}

/// A UDP-Lite socket (`SOCK_DGRAM`, protocol 136) of `at`'s family, bound to `at` (port 0: an
/// ephemeral one), as a std socket: its `send_to`/`recv_from` serve any datagram socket.
fn udplite(at: SocketAddr) -> UdpSocket {
    // SAFETY: plain syscall; the descriptor is closed at once.
    let probe = unsafe {
        nix::libc::socket(family(at.ip()), nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC, nix::libc::IPPROTO_UDPLITE)
    };
    if probe < 0 {
        // A kernel without UDP-Lite (removed upstream, or not built): the test says so.
        super::helper::say(&json!({"udplite": false, "error": io::Error::last_os_error().to_string()}));
        std::process::exit(0);
    }
    // SAFETY: a descriptor this function owns.
    unsafe { nix::libc::close(probe) };
    let fd = socket(family(at.ip()), nix::libc::SOCK_DGRAM, nix::libc::IPPROTO_UDPLITE);
    let (mut ss, len) = sockaddr(at.ip());
    match at {
        // SAFETY: `sockaddr` wrote a sockaddr_in (sockaddr_storage is larger and aligned for it).
        SocketAddr::V4(_) => unsafe {
            (*std::ptr::from_mut(&mut ss).cast::<nix::libc::sockaddr_in>()).sin_port = at.port().to_be()
        },
        // SAFETY: as above, a sockaddr_in6.
        SocketAddr::V6(_) => unsafe {
            (*std::ptr::from_mut(&mut ss).cast::<nix::libc::sockaddr_in6>()).sin6_port = at.port().to_be();
        },
    }
    // SAFETY: valid address.
    let ret = unsafe { nix::libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&ss).cast(), len) };
    assert_eq!(ret, 0, "bind {at}: {}", io::Error::last_os_error());
    UdpSocket::from(fd)
}

fn send_to(fd: &OwnedFd, buf: &[u8], dest: IpAddr) -> usize {
    let (ss, len) = sockaddr(dest);
    // SAFETY: valid buffer and address.
    let n = unsafe {
        nix::libc::sendto(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0, std::ptr::from_ref(&ss).cast(), len)
    };
    assert!(n >= 0, "sendto {dest}: {}", io::Error::last_os_error());
    n as usize
}

/// One datagram, and who sent it (IP only).
fn recv_from(fd: &OwnedFd, buf: &mut [u8]) -> (usize, IpAddr) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: nix::libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<nix::libc::sockaddr_storage>() as nix::libc::socklen_t;
    // SAFETY: valid buffer and address storage.
    let n = unsafe {
        nix::libc::recvfrom(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            std::ptr::from_mut(&mut ss).cast(),
            &raw mut len,
        )
    };
    assert!(n >= 0, "recvfrom: {}", io::Error::last_os_error());
    let from = if i32::from(ss.ss_family) == nix::libc::AF_INET6 {
        // SAFETY: the kernel wrote a sockaddr_in6.
        let sin6 = unsafe { &*std::ptr::from_ref(&ss).cast::<nix::libc::sockaddr_in6>() };
        IpAddr::from(sin6.sin6_addr.s6_addr)
    } else {
        // SAFETY: the kernel wrote a sockaddr_in.
        let sin = unsafe { &*std::ptr::from_ref(&ss).cast::<nix::libc::sockaddr_in>() };
        IpAddr::from(sin.sin_addr.s_addr.to_ne_bytes())
    };
    (n as usize, from)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn family(ip: IpAddr) -> nix::libc::c_int {
    if ip.is_ipv6() { nix::libc::AF_INET6 } else { nix::libc::AF_INET }
}

/// Entry point for the roles of this file.
pub fn main(role: &str, args: &[String]) {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // ping KIND SIZE COUNT DEST...: one ICMP(v6) socket (KIND `dgram`: ping socket, `raw`: raw
        // socket); COUNT echo requests of SIZE bytes (ICMP header included) to each destination,
        // each answered before the next.
        "ping" => {
            super::helper::name("mon-ping");
            let raw = arg(0) == "raw";
            let size: usize = arg(1).parse().unwrap();
            let count: u16 = arg(2).parse().unwrap();
            let dests: Vec<IpAddr> = args[3..].iter().map(|a| a.parse().unwrap()).collect();
            let v6 = dests[0].is_ipv6();
            let protocol = if v6 { nix::libc::IPPROTO_ICMPV6 } else { nix::libc::IPPROTO_ICMP };
            let fd = socket(family(dests[0]), if raw { nix::libc::SOCK_RAW } else { nix::libc::SOCK_DGRAM }, protocol);
            if raw && v6 {
                // Only echo replies (type 129) reach the socket.
                let mut filter = [u32::MAX; 8];
                filter[129 >> 5] &= !(1 << (129 & 31));
                setsockopt(&fd, nix::libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter);
            } else if raw {
                setsockopt(&fd, nix::libc::SOL_RAW, ICMP_FILTER, &!1u32); // only echo replies (type 0)
            }
            let id = (std::process::id() & 0xffff) as u16;
            let mut peers = Map::new();
            let mut buf = vec![0u8; 65536];
            for dest in &dests {
                let (mut tx, mut rx) = (0, 0);
                for seq in 0..count {
                    let mut msg = super::helper::pattern(size);
                    msg[..8].copy_from_slice(&[if v6 { 128 } else { 8 }, 0, 0, 0, 0, 0, 0, 0]);
                    msg[4..6].copy_from_slice(&id.to_be_bytes());
                    msg[6..8].copy_from_slice(&seq.to_be_bytes());
                    if raw && !v6 {
                        let sum = checksum(&msg);
                        msg[2..4].copy_from_slice(&sum.to_be_bytes());
                    }
                    tx += send_to(&fd, &msg, *dest);
                    loop {
                        let (n, from) = recv_from(&fd, &mut buf);
                        rx += n;
                        let icmp = if raw && !v6 { usize::from(buf[0] & 0x0f) * 4 } else { 0 };
                        let reply = buf[icmp] == if v6 { 129 } else { 0 };
                        if from == *dest && reply && buf[icmp + 6..icmp + 8] == seq.to_be_bytes() {
                            break;
                        }
                    }
                }
                peers.insert(dest.to_string(), json!({"tx": tx, "rx": rx}));
            }
            super::helper::say(&json!({"pid": std::process::id(), "peers": peers}));
        }
        // raw-echo PROTO COUNT REPLY ADDR: a raw socket of protocol PROTO bound to ADDR (replies
        // leave from it); receives COUNT datagrams and, if REPLY is 1, sends each payload back.
        "raw-echo" => {
            super::helper::name("mon-raw-echo");
            let protocol: nix::libc::c_int = arg(0).parse().unwrap();
            let count: usize = arg(1).parse().unwrap();
            let reply = arg(2) == "1";
            let addr: IpAddr = arg(3).parse().unwrap();
            let v6 = addr.is_ipv6();
            let fd = socket(family(addr), nix::libc::SOCK_RAW, protocol);
            let (ss, len) = sockaddr(addr);
            // SAFETY: valid address.
            let ret = unsafe { nix::libc::bind(fd.as_raw_fd(), std::ptr::from_ref(&ss).cast(), len) };
            assert_eq!(ret, 0, "bind {addr}: {}", io::Error::last_os_error());
            let timeout = nix::libc::timeval { tv_sec: 20, tv_usec: 0 };
            setsockopt(&fd, nix::libc::SOL_SOCKET, nix::libc::SO_RCVTIMEO, &timeout);
            super::helper::say(&json!({"ready": true}));
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                let (n, from) = recv_from(&fd, &mut buf);
                // IPv4 raw sockets receive the IP header, IPv6 ones do not.
                let start = if v6 { 0 } else { usize::from(buf[0] & 0x0f) * 4 };
                if reply {
                    send_to(&fd, &buf[start..n], from);
                }
            }
        }
        // raw-send PROTO SIZE COUNT DEST HDRINCL: a raw socket of protocol PROTO sends COUNT
        // datagrams of SIZE bytes to DEST and reads each echo. With HDRINCL 1 (IPv4 only) the
        // socket is `IPPROTO_RAW` and each datagram is a 20-byte IPv4 header of protocol PROTO
        // plus SIZE bytes; nothing is read back. With a sixth argument `wait` the socket, once
        // created, waits for "go" on stdin before it sends (a socket older than the monitor).
        "raw-send" => {
            super::helper::name("mon-raw-send");
            let protocol: u8 = arg(0).parse().unwrap();
            let size: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            let dest: IpAddr = arg(3).parse().unwrap();
            let hdrincl = arg(4) == "1";
            let fd = socket(
                family(dest),
                nix::libc::SOCK_RAW,
                if hdrincl { nix::libc::IPPROTO_RAW } else { i32::from(protocol) },
            );
            if args.get(5).is_some_and(|a| a == "wait") {
                super::helper::say(&json!({"ready": true}));
                super::helper::wait_stdin("go");
            }
            let (mut tx, mut rx) = (0, 0);
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                let data = super::helper::pattern(size);
                if hdrincl {
                    let IpAddr::V4(d) = dest else { panic!("IP_HDRINCL test is IPv4 only") };
                    let total = u16::try_from(20 + size).unwrap();
                    let mut packet = vec![0x45, 0];
                    packet.extend_from_slice(&total.to_be_bytes());
                    packet.extend_from_slice(&[0, 0, 0x40, 0, 64, protocol, 0, 0, 0, 0, 0, 0]);
                    packet.extend_from_slice(&d.octets());
                    packet.extend_from_slice(&data);
                    tx += send_to(&fd, &packet, dest);
                } else {
                    tx += send_to(&fd, &data, dest);
                    rx += recv_from(&fd, &mut buf).0;
                }
            }
            super::helper::say(&json!({"pid": std::process::id(), "tx": tx, "rx": rx}));
        }
        // udplite-echo BIND COUNT: a UDP-Lite socket on BIND answers COUNT datagrams, each with
        // its first half.
        "udplite-echo" => {
            super::helper::name("mon-udplite-echo");
            let s = udplite(arg(0).parse().unwrap());
            let count: usize = arg(1).parse().unwrap();
            super::helper::say(&json!({"ready": true}));
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                s.send_to(&buf[..n / 2], from).unwrap();
            }
        }
        // udplite-send SERVER SIZE COUNT: an unbound UDP-Lite socket sends COUNT datagrams of SIZE
        // bytes to SERVER and reads each answer.
        "udplite-send" => {
            super::helper::name("mon-udplite");
            let server: SocketAddr = arg(0).parse().unwrap();
            let size: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            let any: IpAddr = if server.is_ipv6() { "::".parse().unwrap() } else { "0.0.0.0".parse().unwrap() };
            let s = udplite(SocketAddr::new(any, 0));
            s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
            let (mut tx, mut rx) = (0, 0);
            let mut buf = vec![0u8; 65536];
            for _ in 0..count {
                tx += s.send_to(&super::helper::pattern(size), server).unwrap();
                let (n, from) = s.recv_from(&mut buf).unwrap();
                assert_eq!(from, server, "answer from an unexpected peer");
                rx += n;
            }
            let local_port = s.local_addr().unwrap().port();
            super::helper::say(&json!({"pid": std::process::id(), "tx": tx, "rx": rx, "local_port": local_port}));
        }
        // packet-send IFNAME SIZE COUNT: COUNT Ethernet frames of SIZE bytes (header included,
        // ethertype 0x88b5, to the other end of the test veth pair) through an AF_PACKET socket.
        "packet-send" => {
            super::helper::name("mon-packet");
            let ifname = CString::new(arg(0)).unwrap();
            let size: usize = arg(1).parse().unwrap();
            let count: usize = arg(2).parse().unwrap();
            // SAFETY: valid C string.
            let ifindex = unsafe { nix::libc::if_nametoindex(ifname.as_ptr()) };
            assert!(ifindex > 0, "no interface {ifname:?}");
            // Protocol 0: the socket sends only, it receives nothing.
            let fd = socket(nix::libc::AF_PACKET, nix::libc::SOCK_RAW, 0);
            // SAFETY: all-zero is a valid sockaddr_ll.
            let mut sll: nix::libc::sockaddr_ll = unsafe { mem::zeroed() };
            sll.sll_family = nix::libc::AF_PACKET as u16;
            sll.sll_ifindex = ifindex as i32;
            sll.sll_halen = 6;
            sll.sll_addr[..6].copy_from_slice(&MAC_B);
            let mut frame = super::helper::pattern(size);
            frame[..6].copy_from_slice(&MAC_B);
            frame[6..12].copy_from_slice(&MAC_A);
            frame[12..14].copy_from_slice(&ETHERTYPE_EXPERIMENTAL.to_be_bytes());
            let mut tx = 0;
            for _ in 0..count {
                // SAFETY: valid buffer and address.
                let n = unsafe {
                    nix::libc::sendto(
                        fd.as_raw_fd(),
                        frame.as_ptr().cast(),
                        frame.len(),
                        0,
                        std::ptr::from_ref(&sll).cast(),
                        mem::size_of::<nix::libc::sockaddr_ll>() as u32,
                    )
                };
                assert!(n >= 0, "sendto: {}", io::Error::last_os_error());
                tx += n as usize;
            }
            super::helper::say(&json!({"pid": std::process::id(), "tx": tx, "frames": count}));
        }
        other => panic!("unknown helper role {other}"),
    }
}
