//! Compact per-flow storage: owners interned once per process (flows share them), addresses
//! packed (IPv4 inline, IPv6 boxed), timers kept in 32 bits. The tracker keeps one
//! [`super::flow::Flow`] per open socket, so every byte here counts 100,000 times on a busy host.

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use monitor_common::sock::{Owner as KernelOwner, OwnerSource as KernelSource};

use super::record::{Owner, OwnerSource};

/// The owner as kept per flow: `comm` inline (no allocation per owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct FlowOwner {
    tgid: u32,
    pid: u32,
    uid: u32,
    gid: u32,
    cgroup_id: u64,
    comm: [u8; 16],
    pub(super) source: OwnerSource,
}

/// `comm` as the kernel has it: NUL-terminated unless 16 bytes long.
fn comm_str(raw: &[u8; 16]) -> Arc<str> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(raw.get(..end).unwrap_or_default()).into()
}

impl FlowOwner {
    pub(super) fn tgid(&self) -> u32 {
        self.tgid
    }

    /// From an owner found in /proc or kept elsewhere (`comm` cut to 15 bytes, as the kernel does).
    pub(super) fn of(o: &Owner) -> Self {
        let mut comm = [0u8; 16];
        let bytes = o.comm.as_bytes();
        let n = bytes.len().min(15);
        comm[..n].copy_from_slice(&bytes[..n]);
        Self { tgid: o.tgid, pid: o.pid, uid: o.uid, gid: o.gid, cgroup_id: o.cgroup_id, comm, source: o.source }
    }

    /// From the kernel's record, without building a `String`: `comm` up to its first NUL (at
    /// most 15 bytes, as the kernel keeps it), turned into text only when a record is built.
    pub(super) fn of_kernel(o: &KernelOwner) -> Self {
        let source = OwnerSource::from(KernelSource::from_raw(o.source));
        let end = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len()).min(15);
        let mut comm = [0u8; 16];
        comm[..end].copy_from_slice(&o.comm[..end]);
        Self { tgid: o.tgid, pid: o.pid, uid: o.uid, gid: o.gid, cgroup_id: o.cgroup_id, comm, source }
    }

    /// Only the socket's uid known.
    pub(super) fn unknown(uid: u32) -> Self {
        Self { tgid: 0, pid: 0, uid, gid: 0, cgroup_id: 0, comm: [0; 16], source: OwnerSource::Unknown }
    }

    /// The owner with its own copy of `comm` (tests; the tracker shares one per name through
    /// [`Owners::owner_of`]).
    #[cfg(test)]
    pub(super) fn to_owner(self) -> Owner {
        self.with_comm(comm_str(&self.comm))
    }

    fn with_comm(self, comm: Arc<str>) -> Owner {
        Owner {
            tgid: self.tgid,
            pid: self.pid,
            uid: self.uid,
            gid: self.gid,
            comm,
            cgroup_id: self.cgroup_id,
            source: self.source,
        }
    }
}

/// Owners of open flows, each kept once: a flow holds an `Arc` (8 bytes instead of 48), and all
/// sockets of one thread share it. Owners no flow holds any more are dropped by [`Owners::prune`]
/// (each tick, and whenever the table doubled since the last pruning).
#[derive(Debug, Default)]
pub(super) struct Owners {
    set: foldhash::HashSet<Arc<FlowOwner>>,
    /// Size at which [`Owners::intern`] prunes.
    prune_at: usize,
    /// The text of each `comm` records carried lately, shared by them (up to [`COMM_TEXTS`]).
    comms: foldhash::HashMap<[u8; 16], Arc<str>>,
}

/// Distinct `comm` texts kept; all are forgotten when there are more (then made again, once).
pub(super) const COMM_TEXTS: usize = 4096;

/// Smallest size at which [`Owners::intern`] prunes the table.
const MIN_PRUNE_AT: usize = 1024;

impl Owners {
    /// The shared copy of `owner`.
    pub(super) fn intern(&mut self, owner: FlowOwner) -> Arc<FlowOwner> {
        if let Some(shared) = self.set.get(&owner) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(owner);
        self.set.insert(Arc::clone(&shared));
        if self.set.len() >= self.prune_at {
            self.prune();
        }
        shared
    }

    /// `owner` for a record: its `comm` text made once per name, not per record.
    pub(super) fn owner_of(&mut self, owner: &FlowOwner) -> Owner {
        if let Some(comm) = self.comms.get(&owner.comm) {
            return owner.with_comm(Arc::clone(comm));
        }
        if self.comms.len() >= COMM_TEXTS {
            self.comms.clear();
        }
        let comm = comm_str(&owner.comm);
        self.comms.insert(owner.comm, Arc::clone(&comm));
        owner.with_comm(comm)
    }

    /// Drops the owners no flow holds.
    pub(super) fn prune(&mut self) {
        self.set.retain(|o| Arc::strong_count(o) > 1);
        self.prune_at = (2 * self.set.len()).max(MIN_PRUNE_AT);
    }

    /// `comm` texts kept.
    #[cfg(test)]
    pub(super) fn comm_texts(&self) -> usize {
        self.comms.len()
    }

    /// Owners kept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.set.len()
    }
}

/// An address and port in 18 bytes. IPv4 is stored IPv4-mapped; the tracker turns mapped
/// IPv6 addresses into IPv4 before it stores them ([`super::ip_of`]) and builds every address
/// with `SocketAddr::new` (no flow label or scope), so [`Endpoint::get`] gives back exactly the
/// address stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Endpoint {
    ip: [u8; 16],
    port: u16,
}

impl Endpoint {
    pub(super) fn new(addr: SocketAddr) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        Self { ip, port: addr.port() }
    }

    pub(super) fn get(self) -> SocketAddr {
        SocketAddr::new(Ipv6Addr::from(self.ip).to_canonical(), self.port)
    }
}

/// Which end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Local,
    Remote,
}

/// A flow's two endpoints in 16 bytes: IPv4 ones inline (most flows), IPv6 ones boxed (a 48-byte
/// allocation). An end never set reads as `0.0.0.0:0`; the flow's flags say which ends are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Endpoints {
    V4 { ips: [[u8; 4]; 2], ports: [u16; 2] },
    V6(Box<[Endpoint; 2]>),
}

impl Default for Endpoints {
    fn default() -> Self {
        Self::V4 { ips: [[0; 4]; 2], ports: [0; 2] }
    }
}

impl Endpoints {
    fn index(end: End) -> usize {
        match end {
            End::Local => 0,
            End::Remote => 1,
        }
    }

    pub(super) fn get(&self, end: End) -> SocketAddr {
        let i = Self::index(end);
        match self {
            Self::V4 { ips, ports } => SocketAddr::new(IpAddr::from(ips[i]), ports[i]),
            Self::V6(both) => both[i].get(),
        }
    }

    /// Sets one end; the first IPv6 address moves both ends into a box.
    pub(super) fn set(&mut self, end: End, addr: SocketAddr) {
        let i = Self::index(end);
        match (&mut *self, addr.ip()) {
            (Self::V4 { ips, ports }, IpAddr::V4(v4)) => {
                ips[i] = v4.octets();
                ports[i] = addr.port();
            }
            (Self::V6(both), _) => both[i] = Endpoint::new(addr),
            (Self::V4 { .. }, IpAddr::V6(_)) => {
                let mut both = [Endpoint::new(self.get(End::Local)), Endpoint::new(self.get(End::Remote))];
                both[i] = Endpoint::new(addr);
                *self = Self::V6(Box::new(both));
            }
        }
    }
}

/// A time in 32 bits: the event clock in 64ths of a second, modulo 2^32 (2.1 years). Only the
/// time elapsed since a stamp is read, and it is right while under 2^31 64ths (388 days); older
/// stamps do not last that long: an unchanged flow's stamp is moved up at each tick
/// ([`super::flow::Flow::keep_due`]), a released flow ends within the close grace, and both
/// timers are at most a day ([`super::MAX_TIMER_SECS`]). A host suspended for over a year would
/// see its older flows' timers late, never early.
///
/// The tracker's timers are whole seconds, multiples of a 64th: a timer read from stamps is
/// never late, and early by less than a 64th of a second (15.6 ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Stamp(u32);

impl Stamp {
    /// Nanoseconds per unit: a 64th of a second.
    const UNIT_NS: u64 = 1_000_000_000 / 64;

    pub(super) fn at(ns: u64) -> Self {
        let units = ns / Self::UNIT_NS;
        Self(u32::try_from(units & u64::from(u32::MAX)).unwrap_or_default())
    }

    /// Nanoseconds from the stamp to `now_ns`, in whole 64ths of a second; 0 for a `now_ns`
    /// before it.
    pub(super) fn elapsed_ns(self, now_ns: u64) -> u64 {
        let units = Self::at(now_ns).0.wrapping_sub(self.0);
        if units >= 1 << 31 { 0 } else { u64::from(units) * Self::UNIT_NS }
    }
}
