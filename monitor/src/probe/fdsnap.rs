//! Counter snapshots where the kernel refuses the `COUNTERS` iterator (it is a tracing program;
//! some kernels permit none): the storage is read socket by socket through a duplicate of a
//! descriptor of the socket's owner (`pidfd_getfd(2)`, the way [`crate::daemon`] records owners of
//! older sockets), matched by socket cookie, and looked up by that descriptor
//! (`aya::maps::SkStorage::get`). Same events as the iterator's: `Update` with `FLAG_SNAPSHOT`.
//!
//! Costlier than the iterator (a few system calls per socket instead of one pass), so the daemon
//! asks for the flows it cannot otherwise refresh: idle ones, and all at shutdown. A socket its
//! owner does not hold (accepted by a forked worker from its master's listener, handed over
//! with `SCM_RIGHTS`, its owner gone) is looked for in every process's descriptors, one pass over
//! /proc for all such sockets: at shutdown, and by the periodic refresh of idle flows at most
//! once a minute, which remembers where it found them and reads them there after
//! ([`super::holders`]); one still not found at shutdown (held by no process) is returned with
//! the misses, and its `shutdown` record is marked incomplete. The duplicate is held only
//! for the lookup; a close by the app in that moment takes effect when it is dropped.

use std::{
    collections::HashSet,
    fs,
    io::BufRead as _,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd},
};

use aya::maps::{Map, MapData, MapError, SkStorage};
use log::debug;
use monitor_common::{
    IPPROTO_TCP,
    event::{
        Event, EventKind, FLAG_NO_OWNER, FLAG_SNAPSHOT, FLAG_TCP_COUNTERS, FLAG_UNANNOUNCED, TCP_ALL_ACKED,
        TCP_CONSUMED, TCP_FIN_RECEIVED, TcpCounters, Tuple, addr_words, tcp_state,
    },
    sock::{Counters, OwnerSource, PeerTable},
};

use super::holders::Holders;
use crate::{
    clock::Clock,
    sys::{
        peer_address, pidfd_getfd, pidfd_open, pidfd_open_thread, same_descriptor_table, socket_cookie, socket_family,
        socket_protocol, tcp_info, unread_bytes,
    },
};

/// `BPF_F_LOCK`: a lookup copies a value holding a `bpf_spin_lock` under that lock.
const BPF_F_LOCK: u64 = aya_obj::generated::BPF_F_LOCK as u64;

/// Where a pass looks for the sockets asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Among their owners' descriptors only (the periodic refresh of idle flows).
    Owners,
    /// Then, for those not found, among every process's (at shutdown).
    Everywhere,
    /// As `Everywhere`, and every socket of every process that has counters but was not asked
    /// for is read too (at shutdown: a socket no event announced yet, e.g. a connected UDP
    /// socket younger than an update interval, whose counters only the iterator would read).
    Discover,
}

/// A socket to refresh: its cookie and the process that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSocket {
    /// Socket cookie.
    pub cookie: u64,
    /// Thread-group id of the owner.
    pub tgid: u32,
}

/// Reads `COUNTERS` (and, at shutdown, `PEERS`) by socket descriptor.
pub struct FdSnapshots {
    storage: SkStorage<MapData, Counters>,
    peers: SkStorage<MapData, PeerTable>,
    /// Where sockets their owners do not hold were found.
    holders: std::sync::Mutex<Holders>,
}

/// Opens socket storage `map` from a duplicate of its descriptor.
fn storage<V: aya::Pod>(pidfd: BorrowedFd<'_>, map: BorrowedFd<'_>) -> std::io::Result<SkStorage<MapData, V>> {
    let fd = pidfd_getfd(pidfd, map.as_raw_fd())?;
    let data = MapData::from_fd(fd).map_err(std::io::Error::other)?;
    SkStorage::try_from(Map::SkStorage(data)).map_err(std::io::Error::other)
}

impl FdSnapshots {
    /// Opens the `COUNTERS` and `PEERS` storages from descriptors of them, after checking that
    /// this kernel has `pidfd_open`/`pidfd_getfd` (Linux 5.6) by duplicating our own descriptors.
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated, is not a socket storage of [`Counters`] or
    /// [`PeerTable`], or the kernel lacks the pidfd calls.
    pub fn new(counters: BorrowedFd<'_>, peers: BorrowedFd<'_>) -> std::io::Result<Self> {
        let pidfd = pidfd_open(std::process::id())?;
        Ok(Self {
            storage: storage(pidfd.as_fd(), counters)?,
            peers: storage(pidfd.as_fd(), peers)?,
            holders: std::sync::Mutex::default(),
        })
    }

    /// Current counters of `sockets` (see the module header), one `Update` event (flag
    /// `FLAG_SNAPSHOT`) per socket found passed to `each` (no list of events is built: a pass may
    /// cover every open socket), looked for as `search` says. Returns the cookies of the sockets
    /// not found.
    pub fn read(&self, sockets: &[OpenSocket], search: Search, each: &mut dyn FnMut(EventKind, &Event)) -> Vec<u64> {
        // Only a discovering pass asks which sockets were asked for (a periodic pass over 100,000
        // open sockets need not build a set of them).
        let asked: HashSet<u64> =
            if search == Search::Discover { sockets.iter().map(|s| s.cookie).collect() } else { HashSet::new() };
        let mut unannounced = HashSet::new();
        each_socket(sockets, search, &self.holders, &mut |socket, wanted| {
            if let Some(event) = self.read_socket(socket, wanted) {
                each(EventKind::Update, &event);
            } else if search == Search::Discover
                && let Some(event) = self.read_unannounced(socket, &asked, &mut unannounced)
            {
                each(EventKind::Update, &event);
            }
        })
    }

    /// The sockets of `sockets` held by no process: looked for among their owners' descriptors,
    /// then in every process's (one pass over /proc for all those not with their owners). One
    /// whose owner has an io_uring is not among them: an io_uring holds sockets in no descriptor
    /// table (registered files, direct descriptors), and an idle connection of an io_uring
    /// server ended as gone would come back (an adversarial pass). A socket in a message in
    /// flight is.
    pub fn held_by_none(&self, sockets: &[OpenSocket]) -> Vec<u64> {
        let mut missed = each_socket(sockets, Search::Everywhere, &self.holders, &mut |socket, wanted| {
            if let Ok(cookie) = socket_cookie(socket.as_fd()) {
                wanted.remove(&cookie);
            }
        });
        if missed.is_empty() {
            return missed;
        }
        let owners: std::collections::HashMap<u64, u32> = sockets.iter().map(|s| (s.cookie, s.tgid)).collect();
        let mut with_uring: std::collections::HashMap<u32, bool> = std::collections::HashMap::new();
        missed.retain(|cookie| {
            let Some(&tgid) = owners.get(cookie) else { return true };
            !*with_uring.entry(tgid).or_insert_with(|| has_io_uring(tgid))
        });
        missed
    }

    /// Every open peer slot of `sockets` (at shutdown: sockets counted per peer), one
    /// `PeerUpdate` event (flag `FLAG_SNAPSHOT`, with owner and both addresses) per slot, as
    /// the kernel's iterator over `PEERS` sends them. Returns the cookies of the sockets not
    /// found (looked for in every process's descriptors when their owners' do not hold them).
    pub fn read_peers(
        &self,
        sockets: &[OpenSocket],
        search: Search,
        each: &mut dyn FnMut(EventKind, &Event),
    ) -> Vec<u64> {
        each_socket(sockets, search, &self.holders, &mut |socket, wanted| {
            let Ok(cookie) = socket_cookie(socket.as_fd()) else { return };
            if !wanted.contains(&cookie) {
                return;
            }
            let table = match self.peers.get(socket, BPF_F_LOCK) {
                Ok(table) => table,
                // No table: the socket never had a peer slot.
                Err(MapError::KeyNotFound) => {
                    wanted.remove(&cookie);
                    return;
                }
                Err(e) => {
                    debug!("peer snapshot: peer slots of cookie {cookie}: {e}");
                    return;
                }
            };
            let (counters, protocol) = match (self.storage.get(socket, 0), socket_protocol(socket.as_fd())) {
                (Ok(c), Ok(p)) => (c, p),
                (Err(e), _) => {
                    debug!("peer snapshot: counters of cookie {cookie}: {e}");
                    return;
                }
                (_, Err(e)) => {
                    debug!("peer snapshot: protocol of cookie {cookie}: {e}");
                    return;
                }
            };
            wanted.remove(&cookie);
            let local = Tuple {
                local_addr: counters.local_addr,
                local_port: counters.local_port,
                protocol,
                ..Tuple::default()
            };
            for slot in table.slots.iter().filter(|s| s.active != 0) {
                let mut ev = Event {
                    kind: EventKind::PeerUpdate as u32,
                    flags: FLAG_SNAPSHOT | slot.event_flags() | counters.raw_flag(),
                    ts_ns: Clock::boot_ns(),
                    cookie,
                    generation: slot.generation,
                    first_ns: slot.first_ns,
                    tuple: Tuple { remote_addr: slot.addr, remote_port: slot.port, family: slot.family, ..local },
                    bytes: slot.bytes,
                    ..Event::default()
                };
                set_owner(&mut ev, &counters);
                each(EventKind::PeerUpdate, &ev);
            }
        })
    }
}

/// Whether process `tgid` holds an io_uring instance: a descriptor linked to
/// `anon_inode:[io_uring]`, or, for a ring whose descriptor the process registered and closed
/// (`io_uring_register_ring_fd`: an adversarial pass), the ring's memory mapped from it. A
/// process gone, or whose descriptors and mappings cannot be read, holds none.
fn has_io_uring(tgid: u32) -> bool {
    const URING: &str = "anon_inode:[io_uring]";
    let by_fd = fs::read_dir(format!("/proc/{tgid}/fd"))
        .is_ok_and(|entries| entries.flatten().any(|e| fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == URING)));
    // Line by line: a large process's mappings run to megabytes.
    by_fd
        || fs::File::open(format!("/proc/{tgid}/maps"))
            .is_ok_and(|maps| std::io::BufReader::new(maps).lines().map_while(Result::ok).any(|l| l.contains(URING)))
}

/// Finds `sockets` among their owners' descriptors (or where `holders` last found them): `read`
/// gets each socket descriptor of a process with the cookies still wanted, and removes the cookie
/// of a socket it read. Those not found are looked for in every process as `search` says (the
/// periodic [`Search::Owners`] too when [`Holders::pass_due`]), and `holders` learns where.
/// Returns the cookies of the sockets not found.
fn each_socket(
    sockets: &[OpenSocket],
    search: Search,
    holders: &std::sync::Mutex<Holders>,
    read: &mut dyn FnMut(&OwnedFd, &mut HashSet<u64>),
) -> Vec<u64> {
    // A poisoned lock (a panic while it was held) only holds where sockets were found.
    let mut holders = holders.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let redirected = holders.redirect(sockets);
    let sockets = redirected.as_deref().unwrap_or(sockets);
    // Grouped by process. The tracker lists them by owner already: a pass over 100,000 open
    // sockets then copies no list, unless some were found elsewhere before.
    let by_owner = |s: &OpenSocket| (s.tgid, s.cookie);
    let sorted: std::borrow::Cow<'_, [OpenSocket]> = if sockets.is_sorted_by_key(by_owner) {
        sockets.into()
    } else {
        let mut copy = sockets.to_vec();
        copy.sort_unstable_by_key(by_owner);
        copy.into()
    };
    let mut missed: HashSet<u64> = HashSet::new();
    for group in sorted.chunk_by(|a, b| a.tgid == b.tgid) {
        let Some(tgid) = group.first().map(|s| s.tgid) else { continue };
        let mut wanted: HashSet<u64> = group.iter().map(|s| s.cookie).collect();
        read_process(tgid, &mut wanted, true, read);
        missed.extend(wanted);
    }
    for cookie in &missed {
        holders.lost(*cookie);
    }
    let discover = search == Search::Discover;
    let elsewhere = !missed.is_empty()
        && match search {
            Search::Everywhere => true,
            Search::Owners => holders.pass_due(&missed, std::time::Instant::now()),
            Search::Discover => false,
        };
    if discover || elsewhere {
        // Held by a process other than its owner (which may own other sockets asked for: a
        // prefork worker owns its own connections too), or not asked for: one pass over every
        // process, for all of them at once.
        let me = std::process::id();
        let pids = fs::read_dir("/proc").into_iter().flatten().flatten();
        for pid in pids.filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())) {
            if missed.is_empty() && !discover {
                break;
            }
            if pid == me {
                continue;
            }
            read_process(pid, &mut missed, !discover, &mut |socket, wanted| {
                let before = wanted.len();
                read(socket, wanted);
                if wanted.len() < before
                    && let Ok(cookie) = socket_cookie(socket.as_fd())
                {
                    holders.found(cookie, pid);
                }
            });
        }
        if !discover {
            holders.unfound(&missed, std::time::Instant::now());
        }
    }
    missed.into_iter().collect()
}

/// Looks for `wanted` among the descriptors of process `tgid` (every socket descriptor goes to
/// `read`; `stop` ends the look once none is wanted): its main thread's table, then, while some
/// are wanted, the tables of its other threads that have one of their own (`unshare(CLONE_FILES)`,
/// a `clone` without `CLONE_FILES`), or of all of them once the main thread has exited
/// (`pthread_exit`: its table is gone, the process's sockets live on in the others'). An
/// adversarial pass: sockets in such tables were never refreshed, and a `kill -9` or a stop
/// lost every byte they moved after their last event. Threads need `PIDFD_THREAD` (Linux 6.9).
fn read_process(tgid: u32, wanted: &mut HashSet<u64>, stop: bool, read: &mut dyn FnMut(&OwnedFd, &mut HashSet<u64>)) {
    let main_table = read_table(tgid, None, wanted, stop, read);
    if stop && wanted.is_empty() {
        return;
    }
    let Ok(tasks) = fs::read_dir(format!("/proc/{tgid}/task")) else { return };
    // The threads whose tables were read: a thread on one of them holds nothing more, so each
    // table is read once however many threads share it (a re-check: once the main thread had
    // exited, 500 threads on one table read it 500 times per refresh, 64 % of a core).
    let mut read_from: Vec<u32> = if main_table == Some(true) { vec![tgid] } else { Vec::new() };
    for tid in tasks.flatten().filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok())) {
        if stop && wanted.is_empty() {
            return;
        }
        if tid == tgid {
            continue;
        }
        // Unknown (no `kcmp`): taken as shared, so that without the main thread's table the
        // first other thread's is read, and no more.
        // A thread gone since it was read (`ESRCH`) tells nothing: not shared with it.
        let shared = read_from.iter().any(|&other| match same_descriptor_table(other, tid) {
            Ok(same) => same,
            Err(e) => e.raw_os_error() != Some(nix::libc::ESRCH),
        });
        if !shared && read_table(tgid, Some(tid), wanted, stop, read).is_some() {
            read_from.push(tid);
        }
    }
}

/// Reads the descriptor table of process `tgid`'s main thread, or of its thread `tid`, as
/// [`read_process`]. `None` when it could not be opened; `Some(false)` when it holds no
/// descriptor (a main thread that exited), `Some(true)` otherwise.
fn read_table(
    tgid: u32,
    tid: Option<u32>,
    wanted: &mut HashSet<u64>,
    stop: bool,
    read: &mut dyn FnMut(&OwnedFd, &mut HashSet<u64>),
) -> Option<bool> {
    let (pidfd, path) = match tid {
        None => (pidfd_open(tgid), format!("/proc/{tgid}/fd")),
        Some(tid) => (pidfd_open_thread(tid), format!("/proc/{tgid}/task/{tid}/fd")),
    };
    let pidfd = pidfd.inspect_err(|e| debug!("snapshot: pidfd of {path}: {e}")).ok()?;
    let dir = fs::read_dir(&path).inspect_err(|e| debug!("snapshot: {path}: {e}")).ok()?;
    let mut any = false;
    for entry in dir.flatten() {
        any = true;
        if stop && wanted.is_empty() {
            return Some(true);
        }
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let is_socket = fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:["));
        if !is_socket {
            continue;
        }
        let Ok(dup) = pidfd_getfd(pidfd.as_fd(), fd) else { continue };
        read(&dup, wanted);
    }
    Some(any)
}

impl FdSnapshots {
    /// The event of one duplicated socket, when it is one of `wanted` and has counters.
    fn read_socket(&self, socket: &OwnedFd, wanted: &mut HashSet<u64>) -> Option<Event> {
        let cookie = socket_cookie(socket.as_fd()).ok()?;
        if !wanted.remove(&cookie) {
            return None;
        }
        let c = match self.storage.get(socket, 0) {
            Ok(c) => c,
            Err(e) => {
                debug!("snapshot: counters of cookie {cookie}: {e}");
                wanted.insert(cookie);
                return None;
            }
        };
        // Without its family the tracker leaves the flow's local address as it was.
        let family = socket_family(socket.as_fd()).unwrap_or(0);
        Some(counters_event(socket, cookie, &c, FLAG_NO_OWNER | FLAG_SNAPSHOT, family))
    }
}

/// The owner the kernel recorded in the socket's counters `c`, or `FLAG_NO_OWNER`.
fn set_owner(ev: &mut Event, c: &Counters) {
    if c.owner.source == OwnerSource::Unknown as u8 {
        ev.flags |= FLAG_NO_OWNER;
    } else {
        ev.owner = c.owner;
    }
}

/// The `Update` event of a socket's counters `c` (flags `flags` and the counters' own), with its
/// local address in `family` and, for TCP, the kernel's TCP counters.
fn counters_event(socket: &OwnedFd, cookie: u64, c: &Counters, flags: u32, family: u16) -> Event {
    let mut ev = Event {
        kind: EventKind::Update as u32,
        flags: flags | c.event_flags(),
        ts_ns: Clock::boot_ns(),
        cookie,
        first_ns: c.created_ns,
        bytes: c.bytes(),
        ..Event::default()
    };
    ev.tuple.local_addr = c.local_addr;
    ev.tuple.local_port = c.local_port;
    ev.tuple.family = family;
    let fin_seen = u32::from(c.tcp_flags) & TCP_FIN_RECEIVED != 0;
    // A connection older than the run (no state callback of this run: its handshake came before)
    // counts its sent bytes from what its process wrote, sent or queued: writes before its first
    // packet under the programs had no counters (an adversarial pass: a writer open at a restart
    // was charged 0 in both runs). Others' sends are their calls': no queue read for them.
    let reading = if c.flags & monitor_common::sock::COUNTER_STATE_CB == 0 {
        tcp_reading(socket.as_fd(), fin_seen)
    } else {
        tcp_counters(socket.as_fd(), fin_seen).map(|tcp| (tcp, None))
    };
    if let Some((mut tcp, written)) = reading {
        if let Some(written) = written {
            tcp.bytes_acked = written;
            tcp.flags |= monitor_common::event::TCP_WRITE_POSITION;
        }
        ev.flags |= FLAG_TCP_COUNTERS;
        ev.tcp = tcp;
    }
    ev
}

/// [`tcp_counters`] and the socket's write position
/// ([`monitor_common::event::write_position`]: `bytes_acked` with what waits in its send queue,
/// `SIOCOUTQ`). The queue is read before and after the counters and the position given only
/// where both agree: an acknowledgement or a write between the reads would move it.
pub fn tcp_reading(socket: BorrowedFd<'_>, fin_seen: bool) -> Option<(TcpCounters, Option<u64>)> {
    let before = crate::sys::unsent_bytes(socket).ok();
    let tcp = tcp_counters(socket, fin_seen)?;
    let written = match (before, crate::sys::unsent_bytes(socket).ok()) {
        (Some(before), Some(after)) if before == after => {
            monitor_common::event::write_position(tcp.bytes_acked, after, tcp.old_state, false)
        }
        _ => None,
    };
    Some((tcp, written))
}

impl FdSnapshots {
    /// The event of a socket with counters that was not asked for (no event announced it), with
    /// what the tracker needs to start its flow: owner, protocol, both addresses. `None` for one
    /// asked for, seen before in this pass, or without counters (not watched).
    fn read_unannounced(&self, socket: &OwnedFd, asked: &HashSet<u64>, seen: &mut HashSet<u64>) -> Option<Event> {
        let cookie = socket_cookie(socket.as_fd()).ok()?;
        if asked.contains(&cookie) || !seen.insert(cookie) {
            return None;
        }
        let c = self.storage.get(socket, 0).ok()?;
        let protocol = socket_protocol(socket.as_fd()).ok()?;
        let family = socket_family(socket.as_fd()).ok()?;
        let mut ev = counters_event(socket, cookie, &c, FLAG_SNAPSHOT | FLAG_UNANNOUNCED, family);
        set_owner(&mut ev, &c);
        ev.tuple.protocol = protocol;
        if let Ok(Some(peer)) = peer_address(socket.as_fd()) {
            ev.tuple.remote_addr = addr_words(peer.ip());
            ev.tuple.remote_port = peer.port();
        }
        debug!("snapshot: socket {cookie} found without an event (protocol {protocol})");
        Some(ev)
    }
}

/// The kernel's TCP counters of a TCP socket, as the packet path sends them with an `Update`
/// (`skb::tcp_counters`): bytes read or written without the syscall tracepoints (splice,
/// zero-copy receive) are in them. `fin_seen`: the kernel programs saw the peer's FIN. `None`
/// for other sockets, a closed one, and where `TCP_INFO` is too old. Also how the daemon reads
/// older sockets' counters at start.
pub fn tcp_counters(socket: BorrowedFd<'_>, fin_seen: bool) -> Option<TcpCounters> {
    if socket_protocol(socket).ok()? != IPPROTO_TCP {
        return None;
    }
    let info = tcp_info(socket).inspect_err(|e| debug!("TCP_INFO: {e}")).ok()?;
    // Closed: its `TcpClose` carries the final counters (with the state before the close).
    let state = u32::from(info.state);
    if state == tcp_state::CLOSE {
        return None;
    }
    // The state is read with the counters (under the socket's lock): a FIN that arrived after the
    // storage was copied shows in it.
    let fin_in_state = matches!(state, tcp_state::CLOSE_WAIT | tcp_state::LAST_ACK | tcp_state::CLOSING);
    let fin = if fin_seen || fin_in_state { TCP_FIN_RECEIVED } else { 0 };
    let mut tcp = TcpCounters {
        bytes_acked: info.bytes_acked,
        bytes_received: info.bytes_received,
        old_state: state,
        flags: fin | if info.unacked == 0 { TCP_ALL_ACKED } else { 0 },
        // The kernel keeps 8 × the smoothed RTT; `TCP_INFO` reports it in µs.
        srtt_us_x8: info.rtt_us.saturating_mul(8),
        rtt_min_us: info.min_rtt_us,
    };
    // What waits unread is not payload the process took (as the kernel programs' updates leave
    // it out, `TCP_CONSUMED`). Read after the counters: bytes arriving in between make it larger,
    // never the count too high.
    if let Ok(unread) = unread_bytes(socket)
        && unread <= tcp.bytes_received
    {
        tcp.bytes_received -= unread;
        tcp.flags |= TCP_CONSUMED;
    }
    Some(tcp)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd as _;

    use super::has_io_uring;

    /// An io_uring is found by its descriptor, and by its mapped rings once the descriptor is
    /// closed (a ring registered with `io_uring_register_ring_fd` and closed: an adversarial pass
    /// found such a server's sockets taken for gone).
    #[test]
    fn a_process_with_an_io_uring_is_found_with_or_without_its_descriptor() {
        let me = std::process::id();
        let ring = io_uring::IoUring::new(4).expect("io_uring");
        assert!(has_io_uring(me), "by its descriptor");
        // Close the descriptor, keep the mappings (the ring's own drop would close it again).
        let fd = ring.as_raw_fd();
        std::mem::forget(ring);
        nix::unistd::close(fd).expect("close");
        let linked = std::fs::read_dir("/proc/self/fd")
            .expect("fd list")
            .flatten()
            .any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:[io_uring]"));
        if !linked {
            assert!(has_io_uring(me), "by its mapped rings");
        }
        assert!(!has_io_uring(u32::MAX), "a process that does not exist holds none");
    }
}
