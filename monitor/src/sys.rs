//! Thin, safe functions over the system calls nix (the monitor's syscall wrapper) does not wrap,
//! made through `libc`: `pidfd_open(2)` and `pidfd_getfd(2)` (Linux 5.6), which the snapshot of
//! open sockets and the owner scan use to take duplicates of other processes' socket
//! descriptors, and `kcmp(2)` to tell which threads have a descriptor table of their own; the socket options `SO_COOKIE`, `SO_PROTOCOL`, `SO_DOMAIN` and `TCP_INFO`; and
//! glibc's `mallopt`/`malloc_trim`. Beside them [`peer_address`], through nix. The other raw
//! calls are the `bpf(2)` commands of `probe::snapshot` and `probe::exclusive`.
//! A leaf module: it imports nothing of the crate.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd, RawFd},
};

use nix::{
    errno::Errno,
    libc,
    sys::socket::{SockaddrStorage, getpeername},
};

/// The inode of the initial PID namespace's `/proc/<pid>/ns/pid` (`PROC_PID_INIT_INO`, fixed by
/// the kernel).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// Whether this process runs in the host's (initial) PID namespace, where the pids the kernel
/// programs record are those of `/proc`. Unknown (no `/proc/self/ns/pid`): assumed so.
#[must_use]
pub fn initial_pid_namespace() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/pid").map_or(true, |m| m.ino() == PROC_PID_INIT_INO)
}

/// A descriptor returned by a system call, or the call's error.
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(ret).map_err(|_| io::Error::other(format!("descriptor {ret} out of range")))?;
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of pidfd_open/pidfd_getfd is a new descriptor that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A process descriptor of `pid` (`pidfd_open(pid, 0)`).
///
/// # Errors
/// `ESRCH` when no such process exists, `ENOSYS` before Linux 5.3, or what else the call says.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: pidfd_open takes a pid and flags (0) by value; no memory is passed.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// A descriptor of thread `tid` (`pidfd_open(tid, PIDFD_THREAD)`, Linux 6.9): its
/// [`pidfd_getfd`] takes descriptors from that thread's own table, which differs from its
/// process's after `unshare(CLONE_FILES)`, and stays readable after the main thread has exited.
///
/// # Errors
/// `EINVAL` before Linux 6.9 (known after the first: later calls answer it without the
/// syscall), `ESRCH` when no such thread exists, or what else the call says (6.9 to 6.14 answer
/// `EINVAL` for a thread exiting meanwhile too).
pub fn pidfd_open_thread(tid: u32) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicU8, Ordering};
    /// Whether the kernel takes `PIDFD_THREAD`: not known yet, yes, or no (before 6.9: a
    /// refresh then need not ask once per thread).
    static SUPPORT: AtomicU8 = AtomicU8::new(UNKNOWN);
    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;
    let open = |tid: libc::pid_t| {
        // SAFETY: pidfd_open takes a pid and flags by value; no memory is passed. `PIDFD_THREAD`
        // is `O_EXCL` (include/uapi/linux/pidfd.h).
        owned(unsafe { libc::syscall(libc::SYS_pidfd_open, tid, libc::O_EXCL) })
    };
    if SUPPORT.load(Ordering::Relaxed) == NO {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // Positive: `pidfd_open` answers `EINVAL` for 0 too.
    let tid =
        libc::pid_t::try_from(tid).ok().filter(|&t| t > 0).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    let result = open(tid);
    match &result {
        Ok(_) => SUPPORT.store(YES, Ordering::Relaxed),
        // An unknown flag, or (6.9 to 6.14) a thread that exited between its lookup and the
        // check of its task (a review): asked again for this thread, which is alive.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && SUPPORT.load(Ordering::Relaxed) == UNKNOWN => {
            // SAFETY: gettid has no arguments.
            let supported = open(unsafe { libc::gettid() }).is_ok();
            SUPPORT.store(if supported { YES } else { NO }, Ordering::Relaxed);
        }
        Err(_) => {}
    }
    result
}

/// Whether tasks `a` and `b` share one descriptor table (`kcmp(a, b, KCMP_FILES)`).
///
/// # Errors
/// `ENOSYS` on a kernel without `CONFIG_KCMP`, `EPERM` without the right to trace both, `ESRCH`
/// when one is gone.
pub fn same_descriptor_table(a: u32, b: u32) -> io::Result<bool> {
    /// `KCMP_FILES` (include/uapi/linux/kcmp.h).
    const KCMP_FILES: libc::c_int = 2;
    let (a, b) = (
        libc::pid_t::try_from(a).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?,
        libc::pid_t::try_from(b).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?,
    );
    // SAFETY: kcmp takes two pids, a type and two unused arguments by value; no memory is passed.
    match unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) } {
        0 => Ok(true),
        r if r > 0 => Ok(false),
        _ => Err(io::Error::last_os_error()),
    }
}

/// A duplicate, in this process, of descriptor `fd` of the process `pidfd` refers to
/// (`pidfd_getfd(pidfd, fd, 0)`).
///
/// # Errors
/// `EBADF` when the process has no such descriptor, `EPERM` without the right to trace the
/// process, `ESRCH` once it has exited, `ENOSYS` before Linux 5.6.
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes two descriptors and flags (0) by value; `pidfd` is borrowed
    // open for the call.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) })
}

/// An integer socket option of `fd` at level `SOL_SOCKET` (`u64` or `c_int`), checked to be
/// that size.
fn socket_option<T: SocketInt>(fd: BorrowedFd<'_>, name: libc::c_int, what: &str) -> io::Result<T> {
    let mut value = T::default();
    let mut len = libc::socklen_t::try_from(size_of::<T>()).map_err(io::Error::other)?;
    // SAFETY: `value` and `len` are valid for writes for the call, and `len` holds the size of
    // `value` (a plain integer); `fd` is borrowed open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            std::ptr::from_mut(&mut value).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(len).ok() != Some(size_of::<T>()) {
        return Err(io::Error::other(format!("{what} returned {len} bytes")));
    }
    Ok(value)
}

/// The integer types [`socket_option`] reads (every bit pattern is a value).
trait SocketInt: Default {}
impl SocketInt for u64 {}
impl SocketInt for libc::c_int {}

/// The cookie of socket `fd` (`getsockopt(SOL_SOCKET, SO_COOKIE)`).
///
/// # Errors
/// `ENOTSOCK` when `fd` is not a socket, or what else the call says.
pub fn socket_cookie(fd: BorrowedFd<'_>) -> io::Result<u64> {
    socket_option(fd, libc::SO_COOKIE, "SO_COOKIE")
}

/// The IP protocol of socket `fd` (`getsockopt(SOL_SOCKET, SO_PROTOCOL)`).
///
/// # Errors
/// `ENOTSOCK` when `fd` is not a socket, or what else the call says.
pub fn socket_protocol(fd: BorrowedFd<'_>) -> io::Result<u16> {
    let protocol: libc::c_int = socket_option(fd, libc::SO_PROTOCOL, "SO_PROTOCOL")?;
    u16::try_from(protocol).map_err(|_| io::Error::other(format!("SO_PROTOCOL returned {protocol}")))
}

/// The address family of socket `fd` (`getsockopt(SOL_SOCKET, SO_DOMAIN)`: `AF_INET`, ...).
///
/// # Errors
/// `ENOTSOCK` when `fd` is not a socket, or what else the call says.
pub fn socket_family(fd: BorrowedFd<'_>) -> io::Result<u16> {
    let family: libc::c_int = socket_option(fd, libc::SO_DOMAIN, "SO_DOMAIN")?;
    u16::try_from(family).map_err(|_| io::Error::other(format!("SO_DOMAIN returned {family}")))
}

/// The remote address of socket `fd` (`getpeername(2)`): `None` when it has none (`ENOTCONN`:
/// an unconnected datagram socket, a listener) or is not IPv4/IPv6.
///
/// # Errors
/// What the call says otherwise (`ENOTSOCK`, ...).
pub fn peer_address(fd: BorrowedFd<'_>) -> io::Result<Option<std::net::SocketAddr>> {
    let peer = match getpeername::<SockaddrStorage>(fd.as_raw_fd()) {
        Ok(peer) => peer,
        Err(Errno::ENOTCONN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Address and port only: the IPv6 flow label and scope id are left out.
    Ok(if let Some(sin) = peer.as_sockaddr_in() {
        Some(std::net::SocketAddr::from((sin.ip(), sin.port())))
    } else {
        peer.as_sockaddr_in6().map(|sin6| std::net::SocketAddr::from((sin6.ip(), sin6.port())))
    })
}

/// The fields of a TCP socket's `TCP_INFO` the monitor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Kernel TCP state (`TCP_ESTABLISHED` = 1, ...).
    pub state: u8,
    /// Segments sent and not yet acknowledged.
    pub unacked: u32,
    /// `bytes_acked`: bytes of the stream the peer acknowledged (SYN and an acked FIN included).
    pub bytes_acked: u64,
    /// `bytes_received`: bytes of the stream received (a received FIN included).
    pub bytes_received: u64,
    /// Smoothed RTT, µs.
    pub rtt_us: u32,
    /// Windowed minimum RTT, µs.
    pub min_rtt_us: u32,
}

/// Bytes received on TCP socket `fd` that its process has not taken yet (`ioctl(SIOCINQ)`: the
/// kernel's `tcp_inq`, `rcv_nxt − copied_seq` without a received FIN).
///
/// # Errors
/// `EINVAL` for a listening socket, or what else the call says.
pub fn unread_bytes(fd: BorrowedFd<'_>) -> io::Result<u64> {
    queue_ioctl(fd, libc::FIONREAD, "SIOCINQ")
}

/// Bytes TCP socket `fd`'s process wrote that are not acknowledged yet (`ioctl(SIOCOUTQ)`:
/// `write_seq − snd_una`, a FIN of ours in it; 0 while connecting).
///
/// # Errors
/// `EINVAL` for a listening socket, or what else the call says.
pub fn unsent_bytes(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let queued = queue_ioctl(fd, libc::TIOCOUTQ, "SIOCOUTQ")?;
    u32::try_from(queued).map_err(|_| io::Error::other(format!("SIOCOUTQ returned {queued}")))
}

/// One of the socket queue ioctls that write an `int` (`name` for errors).
fn queue_ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, name: &str) -> io::Result<u64> {
    let mut value: libc::c_int = 0;
    // SAFETY: the queue ioctls write one int into `value`, valid for writes for the call; `fd` is
    // borrowed open for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw mut value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    u64::try_from(value).map_err(|_| io::Error::other(format!("{name} returned {value}")))
}

/// `getsockopt(IPPROTO_TCP, TCP_INFO)` of TCP socket `fd`.
///
/// # Errors
/// What the call says (`ENOPROTOOPT` for a socket that is not TCP), or an error when the kernel's
/// `struct tcp_info` stops before `tcpi_min_rtt` (Linux < 4.9).
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    // SAFETY: `tcp_info` is plain integers: all zeroes is a value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>()).map_err(io::Error::other)?;
    // SAFETY: `info` and `len` are valid for writes for the call, and `len` holds the size of
    // `info`; `fd` is borrowed open for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_min_rtt) + size_of::<u32>();
    if usize::try_from(len).unwrap_or(0) < needed {
        return Err(io::Error::other(format!("TCP_INFO returned {len} bytes, fewer than {needed}")));
    }
    Ok(TcpInfo {
        state: info.tcpi_state,
        unacked: info.tcpi_unacked,
        bytes_acked: info.tcpi_bytes_acked,
        bytes_received: info.tcpi_bytes_received,
        rtt_us: info.tcpi_rtt,
        min_rtt_us: info.tcpi_min_rtt,
    })
}

/// Largest allocation glibc serves from a heap ([`tune_heap`]); larger ones are mapped.
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Sets glibc's allocator up for a long-running daemon whose memory is mostly one table of small
/// long-lived objects (open flows) beside passing buffers. Call it before any thread starts.
/// - A fixed mmap threshold ([`MMAP_THRESHOLD`], glibc's initial one): passing buffers (a batch
///   of records, a refresh pass's list of flows) are mapped, and given back when freed. By
///   default glibc raises the threshold to the size of each large block freed, after which such
///   buffers come from the heap, between long-lived objects, and the heap keeps their room.
/// - One arena: the threads share one heap instead of each keeping its own free memory.
///
/// Each setting is tried whatever became of the other; returns whether glibc took both.
/// Elsewhere (musl: static builds) a no-op.
pub fn tune_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let threshold = libc::c_int::try_from(MMAP_THRESHOLD).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt takes two integers by value; glibc documents both parameters.
        let (threshold_set, arenas_set) = unsafe {
            (libc::mallopt(libc::M_MMAP_THRESHOLD, threshold) == 1, libc::mallopt(libc::M_ARENA_MAX, 1) == 1)
        };
        threshold_set && arenas_set
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Gives the heap's free memory back to the system: glibc's `malloc_trim(0)`, which releases the
/// free pages of every arena, in the middle of a heap too (a plain `free` returns only the top of
/// a heap). Returns whether memory was released. Elsewhere (musl: static builds) a no-op: its
/// allocator returns freed memory itself.
#[must_use]
pub fn trim_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: takes a size by value; glibc locks each arena while it trims it.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use std::{
        fs::File,
        net::UdpSocket,
        os::{
            fd::{AsFd as _, AsRawFd as _},
            unix::fs::MetadataExt as _,
        },
    };

    use super::*;

    #[test]
    fn a_descriptor_taken_through_a_pidfd_is_the_same_file() {
        let file = tempfile::tempfile().expect("temp file");
        let me = pidfd_open(std::process::id()).expect("pidfd_open of this process");
        let dup = File::from(pidfd_getfd(me.as_fd(), file.as_raw_fd()).expect("pidfd_getfd"));
        assert_ne!(dup.as_raw_fd(), file.as_raw_fd(), "a new descriptor");
        let (a, b) = (file.metadata().expect("stat"), dup.metadata().expect("stat"));
        assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
    }

    #[test]
    fn a_thread_s_pidfd_is_opened_after_failures_for_threads_that_are_not_there() {
        // 0 is no thread: `ESRCH` (the kernel says `EINVAL`).
        assert_eq!(pidfd_open_thread(0).expect_err("no thread 0").raw_os_error(), Some(libc::ESRCH));
        // A thread that has exited (6.9 to 6.14 may say `EINVAL` for one exiting meanwhile).
        // SAFETY: gettid has no arguments.
        let gone = std::thread::spawn(|| unsafe { libc::gettid() }).join().expect("thread");
        assert!(pidfd_open_thread(u32::try_from(gone).expect("positive tid")).is_err(), "thread {gone} exited");
        // SAFETY: gettid has no arguments.
        let me = u32::try_from(unsafe { libc::gettid() }).expect("positive tid");
        match pidfd_open_thread(me) {
            Ok(_) => {}
            // Before Linux 6.9; later calls answer without asking.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                eprintln!("SKIPPED: this kernel has no PIDFD_THREAD (Linux 6.9)");
                assert_eq!(pidfd_open_thread(me).expect_err("still unsupported").raw_os_error(), Some(libc::EINVAL));
            }
            Err(e) => panic!("pidfd_open(PIDFD_THREAD) of this thread: {e}"),
        }
    }

    #[test]
    fn pidfd_errors_are_the_kernels() {
        // Above the kernel's pid limit (at most 2^22): no such process.
        let err = pidfd_open(1 << 23).expect_err("no such process");
        assert_eq!(err.raw_os_error(), Some(Errno::ESRCH as i32), "{err}");
        let err = pidfd_open(u32::MAX).expect_err("not a pid");
        assert_eq!(err.raw_os_error(), Some(Errno::ESRCH as i32), "{err}");
        let me = pidfd_open(std::process::id()).expect("pidfd_open");
        let err = pidfd_getfd(me.as_fd(), 1_000_000).expect_err("no such descriptor");
        assert_eq!(err.raw_os_error(), Some(Errno::EBADF as i32), "{err}");
    }

    #[test]
    fn a_socket_has_one_cookie_for_all_its_descriptors() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let b = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let cookie = socket_cookie(a.as_fd()).expect("cookie");
        assert_ne!(cookie, 0);
        let dup = a.try_clone().expect("dup");
        assert_eq!(socket_cookie(dup.as_fd()).expect("cookie"), cookie, "same socket");
        assert_ne!(socket_cookie(b.as_fd()).expect("cookie"), cookie, "another socket");
        let file = tempfile::tempfile().expect("temp file");
        let err = socket_cookie(file.as_fd()).expect_err("not a socket");
        assert_eq!(err.raw_os_error(), Some(Errno::ENOTSOCK as i32), "{err}");
    }

    #[test]
    fn a_socket_says_its_ip_protocol() {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("socket");
        assert_eq!(socket_protocol(udp.as_fd()).expect("protocol"), 17);
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("socket");
        assert_eq!(socket_protocol(tcp.as_fd()).expect("protocol"), 6);
        let file = tempfile::tempfile().expect("temp file");
        let err = socket_protocol(file.as_fd()).expect_err("not a socket");
        assert_eq!(err.raw_os_error(), Some(Errno::ENOTSOCK as i32), "{err}");
    }

    #[test]
    fn a_socket_says_its_family() {
        let v4 = UdpSocket::bind("127.0.0.1:0").expect("socket");
        assert_eq!(socket_family(v4.as_fd()).expect("family"), 2);
        match UdpSocket::bind("[::1]:0") {
            Ok(v6) => assert_eq!(socket_family(v6.as_fd()).expect("family"), 10),
            Err(e) => eprintln!("no IPv6 loopback here ({e}): the IPv6 case is not checked"),
        }
    }

    #[test]
    fn a_socket_says_its_peer() {
        let server = UdpSocket::bind("127.0.0.1:0").expect("socket");
        let client = UdpSocket::bind("127.0.0.1:0").expect("socket");
        assert_eq!(peer_address(client.as_fd()).expect("unconnected"), None);
        client.connect(server.local_addr().expect("addr")).expect("connect");
        assert_eq!(peer_address(client.as_fd()).expect("connected"), Some(server.local_addr().expect("addr")));
        if let (Ok(a), Ok(b)) = (UdpSocket::bind("[::1]:0"), UdpSocket::bind("[::1]:0")) {
            b.connect(a.local_addr().expect("addr")).expect("connect");
            assert_eq!(peer_address(b.as_fd()).expect("connected"), Some(a.local_addr().expect("addr")));
        }
    }

    /// Over loopback: the counters of `TCP_INFO` are the bytes this test moved.
    #[test]
    fn tcp_info_counts_the_bytes_of_the_stream() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let mut client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (mut server, _) = listener.accept().expect("accept");
        client.write_all(&[7; 1234]).expect("write");
        let mut got = [0; 1234];
        server.read_exact(&mut got).expect("read");
        server.write_all(&[8; 567]).expect("write");
        let mut back = [0; 567];
        client.read_exact(&mut back).expect("read");
        let info = tcp_info(client.as_fd()).expect("TCP_INFO");
        assert_eq!(info.state, 1, "established");
        assert_eq!(info.bytes_received, 567);
        // The SYN counts in `bytes_acked` of the side that connected; the server's ACK of the
        // last data may still be on its way.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tcp_info(client.as_fd()).expect("TCP_INFO").bytes_acked < 1235 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(tcp_info(client.as_fd()).expect("TCP_INFO").bytes_acked, 1 + 1234);
        let udp = UdpSocket::bind("127.0.0.1:0").expect("socket");
        assert!(tcp_info(udp.as_fd()).is_err(), "not TCP");
    }
}
