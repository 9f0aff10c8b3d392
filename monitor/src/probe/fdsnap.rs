//! Counter snapshots where the kernel refuses the `COUNTERS` iterator (it is a tracing program;
//! some kernels permit none): the storage is read socket by socket through a duplicate of a
//! descriptor of the socket's owner (`pidfd_getfd(2)`, the way [`crate::daemon`] records owners of
//! older sockets), matched by socket cookie, and looked up by that descriptor
//! (`aya::maps::SkStorage::get`). Same events as the iterator's: `Update` with `FLAG_SNAPSHOT`.
//!
//! Costlier than the iterator (a few system calls per socket instead of one pass), so the daemon
//! asks for the flows it cannot otherwise refresh: idle ones, and all at shutdown. A socket whose
//! owner no longer holds it (passed to another process, owner gone) is not found: it is returned
//! in [`FdSnapshot::missed`], and its `shutdown` record is marked incomplete. The duplicate is
//! held only for the lookup; a close by the app in that moment takes effect when it is dropped.

use std::{
    collections::HashSet,
    fs,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd},
};

use aya::maps::{Map, MapData, SkStorage};
use log::debug;
use monitor_common::{
    event::{Event, EventKind, FLAG_NO_OWNER, FLAG_SNAPSHOT},
    sock::Counters,
};

use crate::{
    clock::Clock,
    sys::{pidfd_getfd, pidfd_open, socket_cookie},
};

/// A socket to refresh: its cookie and the process that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSocket {
    /// Socket cookie.
    pub cookie: u64,
    /// Thread-group id of the owner.
    pub tgid: u32,
}

/// Reads `COUNTERS` by socket descriptor.
pub struct FdSnapshots {
    storage: SkStorage<MapData, Counters>,
}

impl FdSnapshots {
    /// Opens the `COUNTERS` storage from a descriptor of it, after checking that this kernel
    /// has `pidfd_open`/`pidfd_getfd` (Linux 5.6) by duplicating one of our own descriptors.
    ///
    /// # Errors
    /// When the descriptor cannot be duplicated, is not a socket storage of [`Counters`], or the
    /// kernel lacks the pidfd calls.
    pub fn new(map: BorrowedFd<'_>) -> std::io::Result<Self> {
        let pidfd = pidfd_open(std::process::id())?;
        let fd = pidfd_getfd(pidfd.as_fd(), map.as_raw_fd())?;
        let data = MapData::from_fd(fd).map_err(std::io::Error::other)?;
        let storage = SkStorage::try_from(Map::SkStorage(data)).map_err(std::io::Error::other)?;
        Ok(Self { storage })
    }

    /// Current counters of `sockets` (see the module header), one `Update` event (flag
    /// `FLAG_SNAPSHOT`) per socket found passed to `each` (no list of events is built: a pass may
    /// cover every open socket). Returns the cookies of the sockets not found.
    pub fn read(&self, sockets: &[OpenSocket], each: &mut dyn FnMut(EventKind, &Event)) -> Vec<u64> {
        let mut sorted = sockets.to_vec();
        sorted.sort_unstable_by_key(|s| (s.tgid, s.cookie));
        sorted.dedup();
        let mut missed = Vec::new();
        for group in sorted.chunk_by(|a, b| a.tgid == b.tgid) {
            let Some(tgid) = group.first().map(|s| s.tgid) else { continue };
            let mut wanted: HashSet<u64> = group.iter().map(|s| s.cookie).collect();
            self.read_process(tgid, &mut wanted, each);
            missed.extend(wanted);
        }
        missed
    }

    /// Looks for `wanted` among the descriptors of `tgid`, removing each socket found.
    fn read_process(&self, tgid: u32, wanted: &mut HashSet<u64>, each: &mut dyn FnMut(EventKind, &Event)) {
        let Some(pidfd) = pidfd_open(tgid).inspect_err(|e| debug!("snapshot: pidfd_open({tgid}): {e}")).ok() else {
            return;
        };
        let dir = match fs::read_dir(format!("/proc/{tgid}/fd")) {
            Ok(dir) => dir,
            Err(e) => {
                debug!("snapshot: /proc/{tgid}/fd: {e}");
                return;
            }
        };
        for entry in dir.flatten() {
            if wanted.is_empty() {
                return;
            }
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let is_socket = fs::read_link(entry.path())
                .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:["));
            if !is_socket {
                continue;
            }
            let Ok(dup) = pidfd_getfd(pidfd.as_fd(), fd) else { continue };
            if let Some(event) = self.read_socket(&dup, wanted) {
                each(EventKind::Update, &event);
            }
        }
    }

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
        let mut ev = Event {
            kind: EventKind::Update as u32,
            flags: FLAG_NO_OWNER | FLAG_SNAPSHOT | c.event_flags(),
            ts_ns: Clock::boot_ns(),
            cookie,
            first_ns: c.created_ns,
            bytes: c.bytes(),
            ..Event::default()
        };
        ev.tuple.local_addr = c.local_addr;
        ev.tuple.local_port = c.local_port;
        Some(ev)
    }
}
