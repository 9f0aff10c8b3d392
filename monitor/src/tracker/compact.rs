//! Compact per-flow storage: owners interned once per process (flows share them), addresses
//! packed (IPv4 inline, IPv6 ones kept once in a table), timers kept in 32 bits. The tracker keeps one
//! [`super::flow::Flow`] per open socket, so every byte here counts 100,000 times on a busy host.

use std::{
    hash::BuildHasher,
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
    /// [`Owner::exec_mark`], 24 bits (`monitor_common::sock::Owner::exec_mark`), and
    /// [`Owner::start_cs`], both in what was padding: the size stays 48 bytes.
    exec_mark: [u8; 3],
    start_cs: u32,
}

/// `comm` as the kernel has it (NUL-terminated unless 16 bytes long), as text: bytes that are not
/// UTF-8 as `\xNN` and a backslash as `\\` ([`crate::escape::utf8_or_hex`], as executable
/// paths), so two names never give the same text (`U+FFFD` for any such byte merged them).
pub(crate) fn comm_str(raw: &[u8; 16]) -> Arc<str> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    crate::escape::utf8_or_hex(raw.get(..end).unwrap_or_default()).into()
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
        let (tgid, pid, uid, gid, cgroup_id, source, start_cs) =
            (o.tgid, o.pid, o.uid, o.gid, o.cgroup_id, o.source, o.start_cs);
        let [a, b, c, _] = o.exec_mark.to_le_bytes();
        Self { tgid, pid, uid, gid, cgroup_id, comm, source, exec_mark: [a, b, c], start_cs }
    }

    /// From the kernel's record, without building a `String`: `comm` up to its first NUL (at
    /// most 15 bytes, as the kernel keeps it), turned into text only when a record is built.
    pub(super) fn of_kernel(o: &KernelOwner) -> Self {
        let source = OwnerSource::from(KernelSource::from_raw(o.source));
        let end = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len()).min(15);
        let mut comm = [0u8; 16];
        comm[..end].copy_from_slice(&o.comm[..end]);
        let (tgid, pid, uid, gid, cgroup_id, start_cs) = (o.tgid, o.pid, o.uid, o.gid, o.cgroup_id, o.start_cs);
        Self { tgid, pid, uid, gid, cgroup_id, comm, source, exec_mark: o.exec_mark, start_cs }
    }

    /// Only the socket's uid known.
    pub(super) fn unknown(uid: u32) -> Self {
        Self {
            tgid: 0,
            pid: 0,
            uid,
            gid: 0,
            cgroup_id: 0,
            comm: [0; 16],
            source: OwnerSource::Unknown,
            exec_mark: [0; 3],
            start_cs: 0,
        }
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
            start_cs: self.start_cs,
            exec_mark: monitor_common::sock::mark_number(self.exec_mark),
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

/// The 16 bytes an address is kept as: IPv4 IPv4-mapped. The tracker turns mapped IPv6
/// addresses into IPv4 before it stores them ([`super::ip_of`]) and builds every address with
/// `SocketAddr::new` (no flow label or scope), so [`addr_of`] gives back exactly the address
/// stored.
fn octets_of(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn addr_of(octets: [u8; 16]) -> IpAddr {
    Ipv6Addr::from(octets).to_canonical()
}

/// Smallest size at which [`Addresses::rebuild_due`] says so.
const MIN_REBUILD_AT: usize = 1024;

/// The addresses of IPv6 flows, each kept once and named by a 32-bit id: a flow's two IPv6
/// addresses take 8 bytes in the flow instead of a 48-byte box, and the thousands of flows
/// between two hosts share theirs (a distinct address costs 16 bytes here and about 5 in the
/// index). Ids are never reused: addresses of closed flows stay until the next
/// [`Addresses::rebuild`], which the tracker makes at a tick once the table doubled since the
/// last one, renumbering every open flow's ends.
#[derive(Debug, Default)]
pub(super) struct Addresses {
    list: Vec<[u8; 16]>,
    /// Ids into `list`, by the hash of their address.
    index: hashbrown::HashTable<u32>,
    /// Seeded per process: remote addresses are chosen by others.
    hasher: foldhash::fast::RandomState,
    /// Size at which [`Addresses::rebuild_due`] holds.
    rebuild_at: usize,
}

/// The hash of an address: one 128-bit write.
fn hash_of(hasher: &foldhash::fast::RandomState, octets: [u8; 16]) -> u64 {
    hasher.hash_one(u128::from_ne_bytes(octets))
}

impl Addresses {
    /// The id of `octets`, added when new. (Past 2^32 addresses, 64 GiB, which the rebuilds keep
    /// far off, new addresses would share the last id.)
    fn intern(&mut self, octets: [u8; 16]) -> u32 {
        let hash = hash_of(&self.hasher, octets);
        let list = &self.list;
        if let Some(&id) = self.index.find(hash, |&id| list.get(id as usize) == Some(&octets)) {
            return id;
        }
        let id = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(octets);
        let (list, hasher) = (&self.list, &self.hasher);
        self.index.insert_unique(hash, id, |&id| hash_of(hasher, list.get(id as usize).copied().unwrap_or_default()));
        id
    }

    fn get(&self, id: u32) -> [u8; 16] {
        self.list.get(id as usize).copied().unwrap_or_default()
    }

    /// Addresses kept (those of closed flows until the next rebuild included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the table doubled since the last rebuild (and holds at least 1,024 addresses).
    pub(super) fn rebuild_due(&self) -> bool {
        self.list.len() >= self.rebuild_at.max(MIN_REBUILD_AT)
    }

    /// Keeps only the addresses of `ends` (every open flow's), renumbering them.
    pub(super) fn rebuild<'a>(&mut self, ends: impl Iterator<Item = &'a mut Endpoints>) {
        let room = self.list.len();
        let old = std::mem::replace(
            self,
            Self {
                list: Vec::with_capacity(room),
                index: hashbrown::HashTable::with_capacity(room),
                hasher: self.hasher.clone(),
                rebuild_at: 0,
            },
        );
        for e in ends {
            if let Endpoints::V6 { ips, .. } = e {
                *ips = ips.map(|id| self.intern(old.get(id)));
            }
        }
        self.list.shrink_to_fit();
        self.index.shrink_to_fit(|&id| hash_of(&self.hasher, self.list.get(id as usize).copied().unwrap_or_default()));
        self.rebuild_at = 2 * self.list.len();
    }

    /// Forgets every address (no flow is left).
    pub(super) fn clear(&mut self) {
        self.list = Vec::new();
        self.index = hashbrown::HashTable::new();
        self.rebuild_at = 0;
    }
}

/// Which end of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Local,
    Remote,
}

/// A flow's two endpoints in 16 bytes: IPv4 ones inline (most flows), IPv6 ones as ids of
/// [`Addresses`] (read and set through the tracker's table). An end never set reads as
/// `0.0.0.0:0`; the flow's flags say which ends are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Endpoints {
    V4 { ips: [[u8; 4]; 2], ports: [u16; 2] },
    V6 { ips: [u32; 2], ports: [u16; 2] },
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

    /// One end, its address read from `addrs` when IPv6.
    pub(super) fn get(&self, end: End, addrs: &Addresses) -> SocketAddr {
        let i = Self::index(end);
        match self {
            Self::V4 { ips, ports } => SocketAddr::new(IpAddr::from(ips[i]), ports[i]),
            Self::V6 { ips, ports } => SocketAddr::new(addr_of(addrs.get(ips[i])), ports[i]),
        }
    }

    /// Sets one end; the first IPv6 address moves both ends into `addrs`.
    pub(super) fn set(&mut self, end: End, addr: SocketAddr, addrs: &mut Addresses) {
        let i = Self::index(end);
        match (&mut *self, addr.ip()) {
            (Self::V4 { ips, ports }, IpAddr::V4(v4)) => {
                ips[i] = v4.octets();
                ports[i] = addr.port();
            }
            (Self::V6 { ips, ports }, ip) => {
                // Most events repeat the address: no hashing then.
                let octets = octets_of(ip);
                if addrs.get(ips[i]) != octets {
                    ips[i] = addrs.intern(octets);
                }
                ports[i] = addr.port();
            }
            (Self::V4 { ips: v4s, ports }, IpAddr::V6(v6)) => {
                // The other end moves to the table as it reads (0.0.0.0 when not set yet).
                let other = 1 - i;
                let mut ips = [0; 2];
                ips[other] = addrs.intern(octets_of(IpAddr::from(v4s[other])));
                ips[i] = addrs.intern(v6.octets());
                let mut ports = *ports;
                ports[i] = addr.port();
                *self = Self::V6 { ips, ports };
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
