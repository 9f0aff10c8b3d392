//! Sockets → processes through /proc, in one pass: the net tables of each network namespace
//! (`/proc/<pid>/net/{tcp,udp,udplite}{,6}`, read once per namespace) give every inet socket's inode,
//! state and addresses; the descriptors of every process (`/proc/<pid>/fd`) give who holds each
//! inode. One pass answers many questions: every socket older than the monitor at start, or a
//! whole batch of owner lookups. Works across network namespaces.

use std::{
    collections::{HashMap, HashSet, hash_map::Entry},
    net::SocketAddr,
    os::unix::fs::MetadataExt as _,
};

use monitor_common::{IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, event::Event};
use procfs::{
    net::{TcpState, UdpNetEntries},
    process::{FDTarget, Process},
};

use crate::tracker::record::{Owner, OwnerSource};

/// A process holding a socket, and the descriptor it holds it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    /// Process id.
    pub pid: i32,
    /// Descriptor number in that process.
    pub fd: i32,
}

/// One TCP, UDP or UDP-Lite socket held by at least one process.
#[derive(Debug, Clone)]
pub struct InetSocket {
    /// Socket inode.
    pub inode: u64,
    /// IP protocol number: `IPPROTO_TCP`, `IPPROTO_UDP` or `IPPROTO_UDPLITE`.
    pub protocol: u16,
    /// A TCP socket in `LISTEN`.
    pub listening: bool,
    /// Local address as the net table shows it.
    pub local: SocketAddr,
    /// Remote address (unspecified, port 0, when none).
    pub remote: SocketAddr,
    /// Socket uid.
    pub uid: u32,
    /// Processes holding it.
    pub holders: Vec<Holder>,
}

/// What the scan read about a process holding inet sockets.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// `comm`.
    pub comm: String,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
    /// The same start as an owner carries it ([`monitor_common::sock::Owner::start_cs`]).
    pub start_cs: u32,
    /// Where the program it runs has its stack (`/proc/<pid>/stat`'s `startstack`, 0 when
    /// withheld): the source of [`monitor_common::sock::Owner::exec_mark`].
    pub start_stack: u64,
    /// cgroup v2 path (`0::` line of `/proc/<pid>/cgroup`), relative to the hierarchy's root.
    pub cgroup: Option<String>,
}

/// Every inet socket held by a process, and those processes.
#[derive(Debug, Default)]
pub struct SocketScan {
    /// Sockets with at least one holder.
    pub sockets: Vec<InetSocket>,
    /// Holders of the sockets, by pid.
    pub processes: HashMap<i32, ProcessInfo>,
    /// Indices into `sockets` by local port.
    by_port: HashMap<u16, Vec<usize>>,
}

/// One row of a net table: (protocol, listening, local, remote, uid).
type Row = (u16, bool, SocketAddr, SocketAddr, u32);

/// Inet sockets of the network namespace `p` lives in, by inode; `None` when `p` vanished
/// (the namespace is then read through its next process).
fn net_tables(p: &Process) -> Option<HashMap<u64, Row>> {
    let mut rows = HashMap::new();
    // IPv6 tables are absent on kernels without IPv6: only the IPv4 one must be readable.
    for e in p.tcp().ok()?.into_iter().chain(p.tcp6().into_iter().flatten()) {
        // TIME_WAIT and request sockets have no inode and no holder.
        if e.inode != 0 {
            rows.insert(e.inode, (IPPROTO_TCP, e.state == TcpState::Listen, e.local_address, e.remote_address, e.uid));
        }
    }
    // UDP-Lite tables have the UDP format; they are absent without the module (or IPv6).
    let udplite = |name: &str| p.read_si::<_, UdpNetEntries>(name).map(|UdpNetEntries(e)| e);
    let udp = [(IPPROTO_UDP, p.udp()), (IPPROTO_UDP, p.udp6())];
    for (protocol, table) in
        udp.into_iter().chain([(IPPROTO_UDPLITE, udplite("net/udplite")), (IPPROTO_UDPLITE, udplite("net/udplite6"))])
    {
        for e in table.into_iter().flatten() {
            if e.inode != 0 {
                rows.insert(e.inode, (protocol, false, e.local_address, e.remote_address, e.uid));
            }
        }
    }
    Some(rows)
}

fn process_info(p: &Process) -> Option<ProcessInfo> {
    let stat = p.stat().ok()?;
    let status = p.status().ok()?;
    let cgroup = p.cgroups().ok().and_then(|list| list.0.into_iter().find(|g| g.hierarchy == 0).map(|g| g.pathname));
    let start_cs = super::process::start_cs_of_ticks(stat.starttime);
    Some(ProcessInfo {
        comm: stat.comm,
        uid: status.ruid,
        gid: status.rgid,
        start_time: stat.starttime,
        start_cs,
        start_stack: stat.startstack,
        cgroup,
    })
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl SocketScan {
    /// One pass over /proc. Processes that vanish or cannot be read meanwhile are skipped.
    #[must_use]
    pub fn run() -> Self {
        let mut scan = Self::default();
        let Ok(all) = procfs::process::all_processes() else { return scan };
        let mut tables: HashMap<u64, HashMap<u64, Row>> = HashMap::new();
        let mut index: HashMap<u64, usize> = HashMap::new();
        for p in all.flatten() {
            let Ok(netns) = std::fs::metadata(format!("/proc/{}/ns/net", p.pid)).map(|m| m.ino()) else { continue };
            let rows = match tables.entry(netns) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => match net_tables(&p) {
                    Some(rows) => e.insert(rows),
                    None => continue,
                },
            };
            let Ok(fds) = p.fd() else { continue };
            let mut holds = false;
            for fd in fds.flatten() {
                let FDTarget::Socket(inode) = fd.target else { continue };
                let Some(&(protocol, listening, local, remote, uid)) = rows.get(&inode) else { continue };
                holds = true;
                let holder = Holder { pid: p.pid, fd: fd.fd };
                match index.get(&inode) {
                    Some(&i) => scan.sockets[i].holders.push(holder),
                    None => {
                        index.insert(inode, scan.sockets.len());
                        scan.sockets.push(InetSocket {
                            inode,
                            protocol,
                            listening,
                            local,
                            remote,
                            uid,
                            holders: vec![holder],
                        });
                    }
                }
            }
            if holds && let Some(info) = process_info(&p) {
                scan.processes.insert(p.pid, info);
            }
        }
        for (i, s) in scan.sockets.iter().enumerate() {
            scan.by_port.entry(s.local.port()).or_default().push(i);
        }
        scan
    }

    /// The holder a socket is charged to: the oldest process whose uid is the socket's (the
    /// creator of a socket shared after `fork` is usually the oldest holder), else the oldest.
    #[must_use]
    pub fn holder(&self, socket: &InetSocket, uid: u32) -> Option<(Holder, &ProcessInfo)> {
        let known = socket.holders.iter().filter_map(|h| self.processes.get(&h.pid).map(|p| (*h, p)));
        let oldest = |a: &(Holder, &ProcessInfo), b: &(Holder, &ProcessInfo)| {
            (a.1.start_time, a.0.pid).cmp(&(b.1.start_time, b.0.pid))
        };
        known.clone().filter(|(_, p)| p.uid == uid).min_by(oldest).or_else(|| known.min_by(oldest))
    }

    /// The owner of `socket` as a flow owner.
    #[must_use]
    pub fn owner(&self, socket: &InetSocket, uid: u32) -> Option<Owner> {
        let (h, p) = self.holder(socket, uid)?;
        let pid = u32::try_from(h.pid).ok()?;
        Some(Owner {
            tgid: pid,
            pid,
            uid: p.uid,
            gid: p.gid,
            comm: p.comm.as_str().into(),
            cgroup_id: 0,
            source: OwnerSource::Procfs,
            start_cs: p.start_cs,
            exec_mark: monitor_common::sock::exec_mark_number(p.start_stack),
        })
    }

    /// The socket an event describes. When the event names no remote address (a listener or an
    /// unconnected UDP socket), a socket without one is preferred to the connections sharing
    /// its local port.
    #[must_use]
    pub fn find(&self, ev: &Event) -> Option<&InetSocket> {
        let protocol = ev.tuple.protocol;
        if ![IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE].contains(&protocol) {
            // Ping and raw sockets: their "port" (echo identifier, protocol number) would match
            // UDP sockets of the tables read here. Their owner comes from their next syscall.
            return None;
        }
        let (local, remote) = addresses(ev);
        let candidates = self.by_port.get(&local.port())?;
        let mut found = candidates
            .iter()
            .filter_map(|&i| self.sockets.get(i))
            .filter(|s| s.protocol == protocol && matches(local, remote, s.local, s.remote));
        let first = found.next()?;
        if remote.is_some() || first.remote.port() == 0 {
            return Some(first);
        }
        Some(found.find(|s| s.remote.port() == 0).unwrap_or(first))
    }

    /// Owners of a batch of sockets (cookie, event), from this one pass: unknown ones are left
    /// out (closed meanwhile, or no longer held by any process).
    #[must_use]
    pub fn owners<'a>(&self, queries: impl IntoIterator<Item = (u64, &'a Event)>) -> Vec<(u64, Owner)> {
        let mut seen = HashSet::new();
        queries
            .into_iter()
            .filter(|(cookie, _)| seen.insert(*cookie))
            .filter_map(|(cookie, ev)| self.find(ev).and_then(|s| self.owner(s, ev.owner.uid)).map(|o| (cookie, o)))
            .collect()
    }
}

/// Local and remote address of the socket an event describes.
fn addresses(ev: &Event) -> (SocketAddr, Option<SocketAddr>) {
    let t = &ev.tuple;
    let ip = |words| crate::tracker::ip_of(t.family, words);
    let local = SocketAddr::new(ip(t.local_addr), t.local_port);
    let remote = (t.remote_port != 0).then(|| SocketAddr::new(ip(t.remote_addr), t.remote_port));
    (local, remote)
}

fn matches(local: SocketAddr, remote: Option<SocketAddr>, entry_local: SocketAddr, entry_remote: SocketAddr) -> bool {
    let (el, er) = (canonical(entry_local), canonical(entry_remote));
    let local = canonical(local);
    let local_ok =
        el.port() == local.port() && (el.ip() == local.ip() || el.ip().is_unspecified() || local.ip().is_unspecified());
    let remote_ok = remote.is_none_or(|r| er == canonical(r));
    local_ok && remote_ok
}

#[cfg(test)]
mod tests {
    use std::{
        net::{TcpListener, TcpStream, UdpSocket},
        os::fd::AsRawFd as _,
    };

    use monitor_common::{AF_INET, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, event::Tuple};

    use super::*;

    fn words(addr: SocketAddr) -> [u32; 4] {
        monitor_common::event::addr_words(addr.ip())
    }

    fn event(protocol: u16, local: SocketAddr, remote: Option<SocketAddr>) -> Event {
        Event {
            tuple: Tuple {
                local_addr: words(local),
                remote_addr: remote.map_or([0; 4], words),
                local_port: local.port(),
                remote_port: remote.map_or(0, |r| r.port()),
                family: AF_INET,
                protocol,
            },
            ..Event::default()
        }
    }

    #[test]
    fn one_pass_finds_a_listener_its_connection_and_a_udp_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let scan = SocketScan::run();
        let me = std::process::id();
        let inode = |fd: &dyn std::os::fd::AsRawFd| {
            std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino()
        };

        let l = scan.find(&event(IPPROTO_TCP, listener.local_addr().unwrap(), None)).expect("listener");
        assert!(l.listening && l.protocol == IPPROTO_TCP);
        assert_eq!(l.inode, inode(&listener), "the listener, not a connection on its port");
        assert_eq!(l.holders, vec![Holder { pid: i32::try_from(me).unwrap(), fd: listener.as_raw_fd() }]);
        let accepted = event(IPPROTO_TCP, server.local_addr().unwrap(), Some(server.peer_addr().unwrap()));
        assert_eq!(scan.find(&accepted).map(|s| s.inode), Some(inode(&server)));
        let c = event(IPPROTO_TCP, client.local_addr().unwrap(), Some(client.peer_addr().unwrap()));
        assert_eq!(scan.find(&c).map(|s| s.inode), Some(inode(&client)));
        let u = scan.find(&event(IPPROTO_UDP, udp.local_addr().unwrap(), None)).expect("udp socket");
        assert!(u.protocol == IPPROTO_UDP && !u.listening);
        assert!(scan.find(&event(IPPROTO_UDP, listener.local_addr().unwrap(), None)).is_none(), "protocol matters");

        let owners = scan.owners([(1, &c), (2, &accepted), (1, &c)]);
        assert_eq!(owners.len(), 2, "one answer per cookie: {owners:?}");
        for (_, owner) in owners {
            assert_eq!((owner.tgid, owner.source), (me, OwnerSource::Procfs));
            assert_eq!(owner.uid, nix::unistd::getuid().as_raw());
        }
    }

    /// A UDP-Lite socket bound to 127.0.0.1 (any port), or `None` on a kernel without UDP-Lite.
    /// `socket(2)` through libc: nix's `SockProtocol` has no UDP-Lite.
    fn udplite_socket() -> Option<(std::os::fd::OwnedFd, SocketAddr)> {
        use std::os::fd::FromRawFd as _;
        // SAFETY: plain syscall; the descriptor is owned below.
        let fd = unsafe {
            nix::libc::socket(
                nix::libc::AF_INET,
                nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
                nix::libc::IPPROTO_UDPLITE,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor nobody else owns.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let loopback = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, 0);
        nix::sys::socket::bind(fd.as_raw_fd(), &loopback).unwrap();
        let bound: nix::sys::socket::SockaddrIn = nix::sys::socket::getsockname(fd.as_raw_fd()).unwrap();
        Some((fd, SocketAddr::from(([127, 0, 0, 1], bound.port()))))
    }

    #[test]
    fn a_udplite_socket_is_found_in_its_own_table_not_in_udps() {
        let Some((fd, local)) = udplite_socket() else {
            eprintln!("SKIPPED: this kernel has no UDP-Lite ({})", std::io::Error::last_os_error());
            return;
        };
        // A UDP socket on the same port: a lookup of either protocol finds its own.
        let udp = UdpSocket::bind(local);
        let scan = SocketScan::run();
        let inode = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino();
        let found = scan.find(&event(IPPROTO_UDPLITE, local, None)).expect("the UDP-Lite socket");
        assert_eq!((found.inode, found.protocol), (inode, IPPROTO_UDPLITE));
        let owners = scan.owners([(3, &event(IPPROTO_UDPLITE, local, None))]);
        assert_eq!(owners.first().map(|(_, o)| o.tgid), Some(std::process::id()));
        if let Ok(udp) = udp {
            let u = scan.find(&event(IPPROTO_UDP, local, None)).expect("the UDP socket");
            assert_eq!(u.protocol, IPPROTO_UDP);
            assert_ne!(u.inode, inode);
            drop(udp);
        }
    }
}
