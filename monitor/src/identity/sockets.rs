//! Socket → process through /proc: the socket's addresses give its inode in the net tables of its
//! network namespace (`/proc/<pid>/net/{tcp,udp}{,6}`), and the inode gives the process holding
//! it (`/proc/<pid>/fd`). Works across network namespaces.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
};

use monitor_common::{IPPROTO_TCP, IPPROTO_UDP, event::Event};
use procfs::process::{FDTarget, Process};

use crate::tracker::record::{Owner, OwnerSource};

/// Local and remote address of the socket an event describes.
fn addresses(ev: &Event) -> (SocketAddr, Option<SocketAddr>) {
    let t = &ev.tuple;
    let ip = |words| crate::tracker::ip_of(t.family, words);
    let local = SocketAddr::new(ip(t.local_addr), t.local_port);
    let remote = (t.remote_port != 0).then(|| SocketAddr::new(ip(t.remote_addr), t.remote_port));
    (local, remote)
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

fn matches(local: SocketAddr, remote: Option<SocketAddr>, entry_local: SocketAddr, entry_remote: SocketAddr) -> bool {
    let (el, er) = (canonical(entry_local), canonical(entry_remote));
    let local_ok = el.port() == local.port() && (el.ip() == local.ip() || el.ip().is_unspecified() || local.ip().is_unspecified());
    let remote_ok = remote.is_none_or(|r| er == r);
    local_ok && remote_ok
}

/// Inodes of sockets in one network namespace whose addresses match.
fn inodes_in_netns(p: &Process, tcp: bool, local: SocketAddr, remote: Option<SocketAddr>) -> HashSet<u64> {
    let mut found = HashSet::new();
    if tcp {
        for table in [p.tcp(), p.tcp6()] {
            for e in table.into_iter().flatten() {
                if matches(local, remote, e.local_address, e.remote_address) {
                    found.insert(e.inode);
                }
            }
        }
    } else {
        for table in [p.udp(), p.udp6()] {
            for e in table.into_iter().flatten() {
                if matches(local, remote, e.local_address, e.remote_address) {
                    found.insert(e.inode);
                }
            }
        }
    }
    found
}

/// The process holding the socket an event describes, or `None` (process gone, or no match).
/// Prefers a process whose uid is the socket's.
#[must_use]
pub fn find_socket_owner(ev: &Event) -> Option<Owner> {
    if ev.tuple.protocol != IPPROTO_TCP && ev.tuple.protocol != IPPROTO_UDP {
        // Ping and raw sockets: their "port" (echo identifier, protocol number) would match UDP
        // sockets of the tables read here. Their owner comes from their next syscall instead.
        return None;
    }
    let (local, remote) = addresses(ev);
    log::debug!("lookup local={local} remote={remote:?}");
    let tcp = ev.tuple.protocol == IPPROTO_TCP;
    let mut by_netns: HashMap<u64, HashSet<u64>> = HashMap::new();
    let mut candidates = Vec::new();
    for p in procfs::process::all_processes().ok()?.flatten() {
        let Ok(netns) = p.namespaces().map(|ns| ns.0.get(std::ffi::OsStr::new("net")).map(|n| n.identifier)) else {
            continue;
        };
        let Some(netns) = netns else { continue };
        let inodes = by_netns.entry(netns).or_insert_with(|| inodes_in_netns(&p, tcp, local, remote));
        if inodes.is_empty() {
            continue;
        }
        log::debug!("netns {netns} pid {} inodes {inodes:?}", p.pid);
        let Ok(fds) = p.fd() else { continue };
        let holds = fds.flatten().any(|fd| matches!(fd.target, FDTarget::Socket(inode) if inodes.contains(&inode)));
        if holds {
            candidates.push(p);
        }
    }
    let pick = candidates
        .iter()
        .find(|p| p.uid().is_ok_and(|uid| uid == ev.owner.uid))
        .or_else(|| candidates.first())?;
    let stat = pick.stat().ok()?;
    let status = pick.status().ok()?;
    Some(Owner {
        tgid: u32::try_from(pick.pid).ok()?,
        pid: u32::try_from(pick.pid).ok()?,
        uid: status.ruid,
        gid: status.rgid,
        comm: stat.comm,
        cgroup_id: 0,
        source: OwnerSource::Procfs,
    })
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use monitor_common::{AF_INET, IPPROTO_TCP, event::Tuple};

    use super::*;

    fn words(addr: SocketAddr) -> [u32; 4] {
        match addr.ip() {
            std::net::IpAddr::V4(v4) => [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
            std::net::IpAddr::V6(_) => unreachable!(),
        }
    }

    #[test]
    fn finds_the_process_holding_a_connected_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        let ev = Event {
            tuple: Tuple {
                local_addr: words(local),
                remote_addr: words(remote),
                local_port: local.port(),
                remote_port: remote.port(),
                family: AF_INET,
                protocol: IPPROTO_TCP,
            },
            ..Event::default()
        };
        let owner = find_socket_owner(&ev).expect("own socket found in /proc");
        assert_eq!(owner.tgid, std::process::id());
        assert_eq!(owner.source, OwnerSource::Procfs);
    }
}
