//! Owners of sockets older than the monitor.
//!
//! At start, [`prefill`]: one /proc pass finds every TCP, UDP and UDP-Lite socket held by a process of the
//! watched cgroup; the daemon takes a duplicate of each (pidfd_getfd(2)) and writes its holder
//! into the kernel's `OWNER` storage, unless the kernel already recorded one. Connections
//! accepted from such a listener then inherit the owner (`BPF_F_CLONE`) exactly as from a
//! listener started after the monitor: no /proc work per connection. It also reads each TCP
//! connection's counters through the duplicate (`TCP_INFO`, unread bytes left out): the tracker
//! counts such a connection from them ([`crate::tracker::Tracker::read_at_start`]), so what a
//! splice reader takes before its socket's first packet under the new programs counts too.
//!
//! Sockets still without owner later (created in the moment between attach and the pass, or
//! held by a process that could not be duplicated from) are looked up by [`Lookups`]: one worker
//! thread, a bounded queue, duplicates dropped, one /proc pass per batch and at most one pass per
//! [`MIN_PASS_INTERVAL`]. Never a thread or a pass per socket.

use std::{
    collections::{HashMap, HashSet},
    fs::File,
    os::{
        fd::{AsFd as _, BorrowedFd, OwnedFd},
        unix::fs::MetadataExt as _,
    },
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{MapData, MapError, SkStorage};
use log::{debug, info, warn};
use monitor_common::sock;
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::{
    clock::Clock,
    identity::{InetSocket, SocketScan},
    tracker::{OlderConnection, OwnerQuery, record::Owner},
};

/// Owner lookups waiting for the worker. Full ⇒ further sockets stay unattributed until a
/// syscall of their owner records it in the kernel (counted and logged).
pub const LOOKUP_QUEUE: usize = 4096;
/// Minimum time between two /proc passes of the worker (bounds its CPU under churn).
pub const MIN_PASS_INTERVAL: Duration = Duration::from_millis(250);
/// `BPF_NOEXIST`: keep an owner the kernel recorded itself.
const BPF_NOEXIST: u64 = 1;

/// What [`prefill`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefilled {
    /// TCP, UDP and UDP-Lite sockets held by processes of the watched cgroup.
    pub sockets: usize,
    /// Owners written into the kernel's storage.
    pub recorded: usize,
    /// ... of which TCP listeners.
    pub listeners: usize,
    /// Sockets that already had an owner (created after the programs were attached).
    pub already: usize,
    /// Sockets that could not be recorded (process gone, descriptor reused, permission).
    pub failed: usize,
    /// TCP connections whose counters were read (their base: see [`prefill`]).
    pub tcp_counters: usize,
    /// Length of the /proc pass and the writes.
    pub elapsed: Duration,
}

/// The watched cgroup as a path of the hierarchy (`/` for its root).
fn relative(cgroup: &Path, mount: &Path) -> String {
    let rel = cgroup.strip_prefix(mount).unwrap_or(cgroup);
    format!("/{}", rel.to_string_lossy().trim_start_matches('/'))
}

/// Whether the cgroup path `of` is `watched` or below it.
fn inside(of: &str, watched: &str) -> bool {
    watched == "/" || of == watched || of.strip_prefix(watched).is_some_and(|rest| rest.starts_with('/'))
}

/// `comm` as the kernel stores it: at most 15 bytes and a NUL.
fn comm_bytes(comm: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().take(15).zip(comm.bytes()) {
        *o = b;
    }
    out
}

/// What the daemon reads at start of TCP connection `socket` (local address `local`): its
/// counters (`TCP_INFO`, unread bytes left out) and its write position (`bytes_acked` with its
/// send queue, where two reads of the queue agree: [`crate::probe::tcp_reading`]; a lower base
/// would count bytes written before the run). `None` for a socket that is not an open TCP
/// connection.
fn older_connection(socket: BorrowedFd<'_>, local: std::net::SocketAddr) -> Option<OlderConnection> {
    let (tcp, written) = crate::probe::tcp_reading(socket, false)?;
    let cookie = crate::sys::socket_cookie(socket).ok()?;
    Some(OlderConnection { cookie, tcp, local: Some(local), written })
}

/// Records the holders of every socket older than the monitor in `storage` (see the module
/// header). `cgroup` is the watched directory of the cgroup v2 hierarchy mounted at `mount`.
pub fn prefill(
    storage: &mut SkStorage<&mut MapData, sock::Owner>,
    cgroup: &Path,
    mount: &Path,
) -> (Prefilled, Vec<OlderConnection>) {
    let started = Instant::now();
    let watched = relative(cgroup, mount);
    let scan = SocketScan::run();
    let mut done = Prefilled::default();
    let mut tcp_counters = Vec::new();
    let mut pidfds: HashMap<i32, Option<OwnedFd>> = HashMap::new();
    let mut cgroup_ids: HashMap<String, u64> = HashMap::new();
    let now = Clock::boot_ns();
    for s in &scan.sockets {
        let Some((holder, info)) = scan.holder(s, s.uid) else { continue };
        let Some(path) = info.cgroup.as_deref().filter(|p| inside(p, &watched)) else { continue };
        done.sockets += 1;
        let cgroup_id = *cgroup_ids.entry(path.to_owned()).or_insert_with(|| {
            let dir: PathBuf = mount.join(path.trim_start_matches('/'));
            std::fs::metadata(dir).map_or(0, |m| m.ino())
        });
        let Ok(tgid) = u32::try_from(holder.pid) else { continue };
        let owner = sock::Owner {
            tgid,
            pid: tgid,
            uid: info.uid,
            gid: info.gid,
            cgroup_id,
            created_ns: now,
            comm: comm_bytes(&info.comm),
            source: sock::OwnerSource::Procfs as u8,
            exec_mark: sock::exec_mark(info.start_stack),
            start_cs: info.start_cs,
        };
        let pidfd = pidfds
            .entry(holder.pid)
            .or_insert_with(|| crate::sys::pidfd_open(tgid).inspect_err(|e| debug!("pidfd_open({tgid}): {e}")).ok());
        let file = match duplicate(pidfd.as_ref(), holder.fd, s) {
            Ok(file) => file,
            Err(why) => {
                debug!("socket inode {} of pid {tgid}: {}", s.inode, crate::errors::chain(&why));
                done.failed += 1;
                continue;
            }
        };
        if s.protocol == monitor_common::IPPROTO_TCP
            && !s.listening
            && let Some(older) = older_connection(file.as_fd(), s.local)
        {
            tcp_counters.push(older);
        }
        match record(&file, storage, &owner) {
            Ok(()) => {
                done.recorded += 1;
                done.listeners += usize::from(s.listening);
            }
            Err(Skip::Exists) => done.already += 1,
            Err(Skip::Failed(why)) => {
                debug!("socket inode {} of pid {tgid}: {}", s.inode, crate::errors::chain(&why));
                done.failed += 1;
            }
        }
    }
    done.elapsed = started.elapsed();
    done.tcp_counters = tcp_counters.len();
    (done, tcp_counters)
}

enum Skip {
    Exists,
    Failed(RecordError),
}

/// Why a scanned socket's owner was not recorded (logged at debug, counted as failed).
#[derive(Debug, thiserror::Error)]
enum RecordError {
    /// No process descriptor of the holder (`pidfd_open` failed, logged when it did).
    #[error("no pidfd")]
    NoPidfd,
    /// The descriptor could not be duplicated.
    #[error("pidfd_getfd")]
    GetFd(#[source] std::io::Error),
    /// The duplicate could not be inspected.
    #[error("fstat")]
    Fstat(#[source] std::io::Error),
    /// The holder closed the socket and reused the descriptor number since the scan.
    #[error("descriptor reused for another file")]
    Reused,
    /// The kernel refused the owner write.
    #[error("storage")]
    Storage(#[source] MapError),
}

/// Duplicates the descriptor and checks it is still the scanned socket.
fn duplicate(pidfd: Option<&OwnedFd>, fd: i32, s: &InetSocket) -> Result<File, RecordError> {
    let pidfd = pidfd.ok_or(RecordError::NoPidfd)?;
    let file = File::from(crate::sys::pidfd_getfd(pidfd.as_fd(), fd).map_err(RecordError::GetFd)?);
    let inode = file.metadata().map_err(RecordError::Fstat)?.ino();
    if inode != s.inode {
        return Err(RecordError::Reused);
    }
    Ok(file)
}

/// Writes the owner of the socket `file` is a duplicate of, unless the kernel has one.
fn record(file: &File, storage: &mut SkStorage<&mut MapData, sock::Owner>, owner: &sock::Owner) -> Result<(), Skip> {
    match storage.insert(file, owner, BPF_NOEXIST) {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {
            Err(Skip::Exists)
        }
        Err(e) => Err(Skip::Failed(RecordError::Storage(e))),
    }
}

/// The lookup worker's queue (see the module header).
pub struct Lookups {
    tx: mpsc::Sender<OwnerQuery>,
    /// Lookups refused because the queue was full.
    pub dropped: u64,
}

impl Lookups {
    /// Starts the worker; answers go to `results`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(results: mpsc::Sender<(u64, Owner)>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(LOOKUP_QUEUE);
        // In a PID namespace of its own the daemon's /proc pids are not the kernel's: no answers.
        let proc = crate::sys::initial_pid_namespace();
        let pass = move |batch: &[OwnerQuery]| {
            if proc { SocketScan::run().owners(batch.iter().map(|q| (q.cookie, &q.event))) } else { Vec::new() }
        };
        thread::Builder::new().name("monitor-owners".into()).spawn(move || worker(rx, &results, pass))?;
        Ok(Self { tx, dropped: 0 })
    }

    /// Queues lookups without waiting; what does not fit is counted in `dropped`.
    pub fn submit(&mut self, queries: Vec<OwnerQuery>) {
        for q in queries {
            match self.tx.try_send(q) {
                Ok(()) => {}
                Err(TrySendError::Full(q)) => {
                    if self.dropped == 0 {
                        warn!(
                            "owner lookup queue full ({LOOKUP_QUEUE}); sockets without owner wait for a syscall of it"
                        );
                    }
                    self.dropped += 1;
                    debug!("owner lookup dropped cookie={}", q.cookie);
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
    }
}

/// Takes everything queued (at least one query), answers the batch with one `pass` over /proc.
fn worker(
    mut rx: mpsc::Receiver<OwnerQuery>,
    results: &mpsc::Sender<(u64, Owner)>,
    mut pass: impl FnMut(&[OwnerQuery]) -> Vec<(u64, Owner)>,
) {
    let mut last_pass: Option<Instant> = None;
    while let Some(first) = rx.blocking_recv() {
        if let Some(wait) = last_pass.and_then(|t| MIN_PASS_INTERVAL.checked_sub(t.elapsed())) {
            thread::sleep(wait); // let the batch grow instead of passing over /proc again at once
        }
        let mut batch = vec![first];
        while let Ok(q) = rx.try_recv() {
            batch.push(q);
        }
        let mut seen = HashSet::new();
        batch.retain(|q| seen.insert(q.cookie));
        let started = Instant::now();
        last_pass = Some(started);
        let owners = pass(&batch);
        debug!(
            "owner lookups: {} asked, {} found, one /proc pass in {:?}",
            batch.len(),
            owners.len(),
            started.elapsed()
        );
        for answer in owners {
            if results.blocking_send(answer).is_err() {
                return;
            }
        }
    }
}

/// Logs what [`prefill`] did.
pub fn report(p: &Prefilled) {
    info!(
        "sockets older than the monitor: {} in the watched cgroup, owners recorded for {} ({} listeners), {} already known, {} failed, TCP counters read of {}, in {} ms",
        p.sockets,
        p.recorded,
        p.listeners,
        p.already,
        p.failed,
        p.tcp_counters,
        p.elapsed.as_millis()
    );
    if p.failed > 0 {
        warn!(
            "{} sockets older than the monitor could not be given an owner; their flows are looked up in /proc",
            p.failed
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The write position read at start is what was acknowledged and what waits in the send
    /// queue, the SYN counted as in `bytes_acked`, our FIN left out (a loopback connection whose
    /// reader reads nothing: its window holds what was written).
    #[test]
    fn an_older_connection_s_write_position_counts_its_queue() {
        use std::io::Write as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut writer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_reader, _) = listener.accept().unwrap();
        writer.write_all(&[7; 30_000]).unwrap();
        let local = writer.local_addr().unwrap();
        let wait_acked = |w: &std::net::TcpStream, acked: u64| {
            for _ in 0..200 {
                let c = older_connection(w.as_fd(), local).unwrap();
                if c.tcp.bytes_acked >= acked {
                    return c;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panic!("not acknowledged");
        };
        let c = wait_acked(&writer, 30_001);
        assert_eq!((c.tcp.bytes_acked, c.written, c.local), (30_001, Some(30_001), Some(local)), "{c:?}");
        // Our FIN, sent and acknowledged: in `bytes_acked`, not in the position.
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        let c = wait_acked(&writer, 30_002);
        assert_eq!(c.written, Some(30_001), "{c:?}");
        // A reader with a small window: what it cannot take waits in the writer's queue.
        let small = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        nix::sys::socket::setsockopt(&small, nix::sys::socket::sockopt::RcvBuf, &4096).unwrap();
        let mut writer = std::net::TcpStream::connect(small.local_addr().unwrap()).unwrap();
        let (_reader, _) = small.accept().unwrap();
        writer.set_nonblocking(true).unwrap();
        let mut written = 0;
        while let Ok(n) = writer.write(&[7; 65_536]) {
            written += n as u64;
        }
        std::thread::sleep(Duration::from_millis(300));
        let c = older_connection(writer.as_fd(), writer.local_addr().unwrap()).unwrap();
        assert!(c.tcp.bytes_acked < written, "the window holds less than was written: {c:?}");
        assert_eq!(c.written, Some(written + 1), "{c:?}");
    }

    #[test]
    fn watched_subtree_is_the_cgroup_and_its_descendants_only() {
        let mount = Path::new("/sys/fs/cgroup/unified");
        assert_eq!(relative(Path::new("/sys/fs/cgroup/unified"), mount), "/");
        let w = relative(Path::new("/sys/fs/cgroup/unified/test.slice/a"), mount);
        assert_eq!(w, "/test.slice/a");
        assert!(inside("/test.slice/a", &w));
        assert!(inside("/test.slice/a/b", &w));
        assert!(!inside("/test.slice/ab", &w));
        assert!(!inside("/", &w));
        assert!(inside("/anything", "/"));
    }

    fn query(cookie: u64) -> OwnerQuery {
        OwnerQuery { cookie, event: monitor_common::event::Event::default() }
    }

    #[test]
    fn lookups_are_bounded_deduplicated_and_answered_by_one_pass_per_batch() {
        let (tx, rx) = mpsc::channel(LOOKUP_QUEUE);
        let mut lookups = Lookups { tx, dropped: 0 };
        // Twice the same 2,000 sockets, then more than the queue holds.
        lookups.submit((0..2_000).chain(0..2_000).map(query).collect());
        assert_eq!(lookups.dropped, 0);
        lookups.submit((10_000..10_200).map(query).collect());
        assert_eq!(lookups.dropped, 4_000 + 200 - LOOKUP_QUEUE as u64, "beyond the queue: counted, not queued");
        drop(lookups);
        let (results_tx, mut results_rx) = mpsc::channel(LOOKUP_QUEUE);
        let mut batches = Vec::new();
        worker(rx, &results_tx, |batch| {
            batches.push(batch.len());
            batch.iter().map(|q| (q.cookie, owner_for_test())).collect()
        });
        assert_eq!(batches, [2_000 + (LOOKUP_QUEUE - 4_000)], "one pass for the whole queue, each socket once");
        drop(results_tx);
        let mut answered = 0;
        while results_rx.try_recv().is_ok() {
            answered += 1;
        }
        assert_eq!(answered, batches[0]);
    }

    fn owner_for_test() -> Owner {
        Owner {
            tgid: 1,
            pid: 1,
            uid: 0,
            gid: 0,
            comm: "init".into(),
            cgroup_id: 0,
            source: crate::tracker::record::OwnerSource::Procfs,
            start_cs: 0,
            exec_mark: 0,
        }
    }

    #[test]
    fn comm_is_cut_to_fifteen_bytes_and_nul_terminated() {
        assert_eq!(&comm_bytes("sshd")[..5], b"sshd\0");
        let long = comm_bytes("a-very-long-process-name");
        assert_eq!(&long[..15], b"a-very-long-pro");
        assert_eq!(long[15], 0);
    }
}
