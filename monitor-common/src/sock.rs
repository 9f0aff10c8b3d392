//! Per-socket storage values (`BPF_MAP_TYPE_SK_STORAGE`).
//!
//! Three storages hang off every watched socket:
//! - [`Owner`] in `OWNER` (flags `NO_PREALLOC | CLONE`): who created the socket. `BPF_F_CLONE`
//!   copies it to sockets accepted from a listener, so inbound connections are charged to the
//!   server process (to the process that first reads or writes one, if that is another:
//!   [`OwnerSource::FirstIo`]).
//! - [`Counters`] in `COUNTERS` (`NO_PREALLOC`, not cloned): the only thing the per-packet path
//!   touches. Kept apart from `Owner` because a clone would copy the listener's counters.
//! - [`PeerTable`] in `PEERS` (`NO_PREALLOC`): per-destination counters of unconnected UDP
//!   sockets, which talk to several peers through one socket.

/// How the owner of a socket was learnt.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OwnerSource {
    /// No owner recorded (socket older than the monitor, seen first on the packet path).
    Unknown = 0,
    /// Recorded by `cgroup/sock_create` in the creating process.
    SockCreate = 1,
    /// Recorded lazily by a `connect`/`sendmsg`/`recvmsg` hook in the calling process, for a
    /// socket created before the monitor started.
    Syscall = 2,
    /// Written by the daemon at start, from /proc, for a socket created before the monitor
    /// started (its holder then); accepted sockets of such a listener inherit it.
    Procfs = 3,
    /// Recorded by the payload tracepoints at the first read or write of an accepted connection,
    /// in the calling process, when that is not the listener's owner, which the connection
    /// inherited (socket activation: systemd listens, the service reads and writes; a master
    /// process listens, a worker accepts; a connection passed on with `SCM_RIGHTS` before its
    /// first byte).
    FirstIo = 4,
}

impl OwnerSource {
    /// Decodes the raw value stored by the kernel.
    #[must_use]
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            1 => Self::SockCreate,
            2 => Self::Syscall,
            3 => Self::Procfs,
            4 => Self::FirstIo,
            _ => Self::Unknown,
        }
    }
}

/// Who owns a socket. Written in process context (never on the packet path).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// Process id (thread group id) of the creator.
    pub tgid: u32,
    /// Thread id of the creator.
    pub pid: u32,
    /// Real user id.
    pub uid: u32,
    /// Real group id.
    pub gid: u32,
    /// cgroup v2 id of the creating task.
    pub cgroup_id: u64,
    /// `bpf_ktime_get_boot_ns()` when the owner was recorded.
    pub created_ns: u64,
    /// `comm` of the creating process (its thread group leader's, when the kernel's task offsets
    /// are known; else the creating thread's), NUL padded.
    pub comm: [u8; 16],
    /// [`OwnerSource`] as `u8`.
    pub source: u8,
    /// Which program the process ran when the owner was recorded: [`exec_mark`] of its
    /// `mm->start_stack`, little endian (all zero: unknown). Every `execve` places the new
    /// program's stack afresh (at random, with address space layout randomization), and
    /// `/proc/<pid>/stat` shows the same value (`startstack`), so a process that exec'd since the
    /// socket was made is told from the program that made it, whatever either is called.
    pub exec_mark: [u8; 3],
    /// Start of the owning process (its thread group leader's `start_boottime`) in
    /// [`START_UNIT_NS`] units since boot, wrapped to 32 bits (497 days); 0 when not read (task
    /// offsets unknown, a read failed, a kernel locked down for confidentiality). A pid is
    /// reused: this tells which process that held it owns the socket.
    pub start_cs: u32,
}
const _: () = assert!(core::mem::size_of::<Owner>() == 56);

impl Owner {
    /// [`Owner::exec_mark`] as a number (0: unknown).
    #[must_use]
    pub const fn exec_mark(&self) -> u32 {
        mark_number(self.exec_mark)
    }
}

/// A mark as kept in an owner ([`Owner::exec_mark`], little endian) as a number (0: unknown).
#[must_use]
pub const fn mark_number(mark: [u8; 3]) -> u32 {
    let [a, b, c] = mark;
    u32::from_le_bytes([a, b, c, 0])
}

/// [`exec_mark`] as a number, as [`Owner::exec_mark`] reads it back (0: unknown).
#[must_use]
pub const fn exec_mark_number(start_stack: u64) -> u32 {
    mark_number(exec_mark(start_stack))
}

/// The mark of a program image with its stack at `start_stack` ([`Owner::exec_mark`]): the
/// address's 44 bits above its 16-byte alignment folded to 24 (the kernel randomizes the stack's
/// place in about 30 of them), never all zero unless `start_stack` is 0 (unknown: a kernel
/// thread, or `/proc` withholding it).
#[must_use]
pub const fn exec_mark(start_stack: u64) -> [u8; 3] {
    if start_stack == 0 {
        return [0; 3];
    }
    let bits = start_stack >> 4;
    let folded = (bits ^ (bits >> 24)) & 0xff_ffff;
    let mark = if folded == 0 { 1 } else { folded as u32 };
    let [a, b, c, _] = mark.to_le_bytes();
    [a, b, c]
}

/// Unit of [`Owner::start_cs`]: a hundredth of a second, the clock tick of `/proc/<pid>/stat`'s
/// start time on Linux (`USER_HZ` = 100).
pub const START_UNIT_NS: u64 = 10_000_000;

/// A boot-time instant in nanoseconds as [`Owner::start_cs`] keeps it.
#[must_use]
pub const fn start_units(boot_ns: u64) -> u32 {
    // Wrapped to 32 bits on purpose.
    (boot_ns / START_UNIT_NS) as u32
}

/// Byte and packet counters of one flow.
///
/// `wire_*` are IP-layer lengths (headers included, link layer excluded) as seen by the
/// `cgroup_skb` programs; a GSO/GRO super-packet counts once, as on the interface counters.
/// `app_*` are payload bytes: for sockets, what the process wrote and read (the `sock_send_length`
/// and `sock_recv_length` tracepoints); for unconnected UDP peers, the UDP payload at the IP layer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByteCounters {
    /// IP-layer bytes sent.
    pub wire_tx_bytes: u64,
    /// Packets sent.
    pub wire_tx_packets: u64,
    /// IP-layer bytes received.
    pub wire_rx_bytes: u64,
    /// Packets received.
    pub wire_rx_packets: u64,
    /// Payload bytes sent.
    pub app_tx_bytes: u64,
    /// Payload bytes received.
    pub app_rx_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<ByteCounters>() == 48);

/// `COUNTERS` storage value: the per-packet path adds to it.
///
/// The kernel places a storage value 8 bytes into a cache line, after its map pointer, which every
/// `bpf_sk_storage_get` reads. The fields are laid out by which CPU writes them, so that a packet
/// does not have to pull a line over from another CPU:
/// - line 0 (with the map pointer): what every packet reads and few write;
/// - line 1: what the application's own context writes: its sends (`wire_tx_*`, `app_tx_bytes`:
///   the data it sends and the ACKs of what it reads) and its reads (`app_rx_bytes`);
/// - line 2: what the receive softirq writes (`wire_rx_*`), often on another CPU.
///
/// The owner, read only for events, fills the rest of lines 1 and 2; two fields only MPTCP sockets
/// use and the destination port of a TCP `connect(2)` follow. The value is 184 bytes.
/// [`Counters::bytes`] gathers the counters as one [`ByteCounters`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `bpf_ktime_get_coarse_ns()` of the last `Update` event (or of creation).
    pub last_report_ns: u64,
    /// Local port (host byte order), 0 until the first packet.
    pub local_port: u16,
    /// TCP only, written by `sock_ops` alone: `event::TCP_FIN_RECEIVED` once the peer's FIN
    /// reached the socket.
    pub tcp_flags: u8,
    /// The socket's IP protocol (`IPPROTO_*` below 256), 0 until the packet path has seen it:
    /// written by `cgroup_skb` from the full socket at the socket's first packet (a byte of its
    /// own: `sock_ops` writes `tcp_flags` beside it), so that its later packets need not ask the
    /// kernel for the full socket (a helper call per packet) to know it.
    pub protocol: u8,
    /// Payload copying of this socket (`crate::copy`): `COPY_STATE_*` fields, written by the
    /// packet path without atomics (a race copies one packet too many, never a wrong one).
    pub copy_state: u32,
    /// `COUNTER_*` flags. 64 bits wide and aligned: the kernel programs set bits with a 64-bit
    /// atomic fetch-or (the only width the BPF instruction set has for it without ALU32).
    pub flags: u64,
    /// `bpf_ktime_get_boot_ns()` when the storage was created (socket creation or discovery).
    pub created_ns: u64,
    /// Local address (network byte order), copied from the first packet: `sock_release` may not
    /// read the socket's source fields.
    pub local_addr: [u32; 4],
    /// Sum of the byte counters at the last snapshot (`iter_counters` skips sockets that did not
    /// change).
    pub snapshot_mark: u64,
    /// [`ByteCounters::wire_tx_bytes`] (line 1).
    pub wire_tx_bytes: u64,
    /// [`ByteCounters::wire_tx_packets`].
    pub wire_tx_packets: u64,
    /// [`ByteCounters::app_tx_bytes`].
    pub app_tx_bytes: u64,
    /// [`ByteCounters::app_rx_bytes`].
    pub app_rx_bytes: u64,
    /// The creator, recorded by `sock_create` (one socket storage per new socket instead of two).
    /// Empty (`OwnerSource::Unknown`) for sockets whose counters were made elsewhere (accepted,
    /// discovered, created without the `sock_create` hook): their owner is in the `OWNER`
    /// storage, cloned from the listener, recorded lazily or written by the daemon.
    pub owner: Owner,
    /// [`ByteCounters::wire_rx_bytes`] (line 2).
    pub wire_rx_bytes: u64,
    /// [`ByteCounters::wire_rx_packets`].
    pub wire_rx_packets: u64,
    /// MPTCP sockets only ([`COUNTER_MPTCP`]): open subflows (added to at their `ESTABLISHED`,
    /// taken from at their `TCP_CLOSE`, atomically).
    pub subflows: u64,
    /// MPTCP sockets only: the socket's cookie, written where a hook can read it (the first read
    /// or write, the release), for the event that ends its flow when its last subflow closes
    /// (where no helper can name the MPTCP socket).
    pub cookie: u64,
    /// TCP only: the destination port `connect(2)` named (host byte order), 0 if none, written by
    /// the `connect` hooks with [`COUNTER_CONNECTED`]. The release reports it when the socket no
    /// longer holds one: a refused blocking `connect` clears the socket's destination port (not
    /// its address), and the attempt (its SYN and the peer's reset) must still show where it went.
    pub connect_port: u16,
    /// Padding (explicit: the value is copied to userspace whole). The value stays at 184 bytes:
    /// with the kernel's 72-byte element header that is a 256-byte allocation per socket; 8 bytes
    /// more would take the next size, 512.
    pub _pad: [u16; 3],
}
const _: () = assert!(core::mem::size_of::<Counters>() == 184);
// Value offset + 8 = offset in the kernel's cache-line-aligned storage data.
const _: () = assert!(core::mem::offset_of!(Counters, wire_tx_bytes) + 8 == 64);
// What a steady packet reads besides its counters' own line (`cgroup_skb`): line 0.
const _: () = assert!(core::mem::offset_of!(Counters, protocol) + 8 < 64);
const _: () = assert!(core::mem::offset_of!(Counters, copy_state) + 8 < 64);
const _: () = assert!(core::mem::offset_of!(Counters, app_rx_bytes) + 8 + 8 <= 128);
const _: () = assert!(core::mem::offset_of!(Counters, wire_rx_bytes) + 8 >= 128);
const _: () = assert!(core::mem::offset_of!(Counters, wire_rx_packets) + 8 + 8 <= 192);

impl Counters {
    /// The running totals as one [`ByteCounters`] (plain reads: a packet on another CPU may add
    /// to one of them meanwhile, as with any copy of live counters).
    #[must_use]
    #[inline(always)]
    pub fn bytes(&self) -> ByteCounters {
        ByteCounters {
            wire_tx_bytes: self.wire_tx_bytes,
            wire_tx_packets: self.wire_tx_packets,
            wire_rx_bytes: self.wire_rx_bytes,
            wire_rx_packets: self.wire_rx_packets,
            app_tx_bytes: self.app_tx_bytes,
            app_rx_bytes: self.app_rx_bytes,
        }
    }
}

/// [`Counters::copy_state`]: copying is over for this socket.
pub const COPY_STATE_DONE: u32 = 1 << 31;
/// [`Counters::copy_state`]: packets looked at (bits 0–7).
pub const COPY_STATE_PACKETS: u32 = 1;
/// [`Counters::copy_state`]: egress copies (bits 8–15).
pub const COPY_STATE_EGRESS: u32 = 1 << 8;
/// [`Counters::copy_state`]: ingress copies (bits 16–23).
pub const COPY_STATE_INGRESS: u32 = 1 << 16;

impl ByteCounters {
    /// Sum of every counter: changes whenever any of them does (they only grow).
    #[must_use]
    pub fn mark(&self) -> u64 {
        self.wire_tx_bytes
            .wrapping_add(self.wire_tx_packets)
            .wrapping_add(self.wire_rx_bytes)
            .wrapping_add(self.wire_rx_packets)
            .wrapping_add(self.app_tx_bytes)
            .wrapping_add(self.app_rx_bytes)
    }
}

impl Counters {
    /// The [`crate::event::Event::flags`] every event about this socket carries:
    /// `FLAG_CONNECTED` ([`COUNTER_CONNECTED`]), `FLAG_PEERS` ([`COUNTER_PEERS`]),
    /// `FLAG_RELEASED` ([`COUNTER_RELEASED`]) and `FLAG_RAW` ([`Self::raw_flag`]).
    #[inline(always)]
    #[must_use]
    pub fn event_flags(&self) -> u32 {
        let connected = if self.flags & COUNTER_CONNECTED != 0 { crate::event::FLAG_CONNECTED } else { 0 };
        let peers = if self.flags & COUNTER_PEERS != 0 { crate::event::FLAG_PEERS } else { 0 };
        let released = if self.flags & COUNTER_RELEASED != 0 { crate::event::FLAG_RELEASED } else { 0 };
        connected | peers | released | self.raw_flag()
    }

    /// `event::FLAG_RAW` for a `SOCK_RAW` socket ([`COUNTER_RAW`]), else 0: carried by its peer
    /// events too. Branch-free (the BPF programs' stack is tight): the bit moves to the flag's
    /// place.
    #[inline(always)]
    #[must_use]
    pub const fn raw_flag(&self) -> u32 {
        ((self.flags & COUNTER_RAW) / (COUNTER_RAW / crate::event::FLAG_RAW as u64)) as u32
    }
}

/// [`Counters::flags`]: the socket was first seen on the packet path (created before the monitor).
pub const COUNTER_DISCOVERED: u64 = 1;
/// [`Counters::flags`]: the owner of a discovered socket has been recorded by a syscall hook, or
/// the first read or write of an accepted one ([`COUNTER_INHERITED`]) has been looked at.
pub const COUNTER_OWNER_RECORDED: u64 = 2;
/// `Counters::flags`: `sock_ops` saw the TCP socket reach `TCP_CLOSE` (the fallback hook set
/// without a release hook then reports every later read or write).
pub const COUNTER_TCP_CLOSED: u64 = 4;
/// `Counters::flags`: `sock_ops` turned the state callback on at `ESTABLISHED`, so this TCP
/// socket's move to `TCP_CLOSE` will be reported (`TcpClose`).
pub const COUNTER_STATE_CB: u64 = 8;
/// `Counters::flags`: the process released the socket (`sock_release` ran). Set and read with
/// atomic fetch-or together with [`COUNTER_TCP_CLOSED`]: whichever of release and `TCP_CLOSE`
/// comes second sees the other's bit, so exactly one event ends the flow with both known (see
/// `event::FLAG_RELEASED`).
pub const COUNTER_RELEASED: u64 = 16;
/// `Counters::flags`: the process connected this (UDP or TCP) socket; its events carry
/// `event::FLAG_CONNECTED` instead of a `Connect` event of their own (an outbound flow, also
/// for a TCP connection that never established: refused or unanswered). Also set when a UDP
/// socket older than the monitor is found with a destination (only `connect()` gives a UDP
/// socket one), so that its disconnect is seen too. The peer-change logic (`rebind`) looks at
/// UDP sockets only.
pub const COUNTER_CONNECTED: u64 = 32;
/// `Counters::flags`: this UDP socket's peer changed (connected again to another address, sent
/// to another address while connected, disconnected, or connected after unconnected use): its
/// connected flow ended with a `PeerChanged` event, and every later packet is counted per peer,
/// as for an unconnected socket, whatever its destination port says.
pub const COUNTER_PEERS: u64 = 64;

/// `Counters::flags`: a Multipath TCP socket (`IPPROTO_MPTCP`, the one the process holds). Its
/// counters take the packets of its TCP subflows, which the kernel creates and releases itself
/// (no socket hook runs for them, and no process holds them): one flow per MPTCP connection,
/// payload as the process wrote and read it, wire bytes of every subflow.
pub const COUNTER_MPTCP: u64 = 128;
/// `Counters::flags`: the flow of an MPTCP socket was announced to userspace (at its first read
/// or write: the packet path, which counts its subflows, cannot name it); for a UDP socket, by
/// its first packets (`crate::maps::FALLBACK_ANNOUNCE`).
pub const COUNTER_ANNOUNCED: u64 = 256;
/// `Counters::flags`: the flow of an MPTCP socket ended (its `Release` event was sent, by its
/// release or by its last subflow's `TCP_CLOSE`, whichever came last: the one that sets this bit
/// sends it). Later subflow packets are unattributed bytes.
pub const COUNTER_MPTCP_ENDED: u64 = 512;
/// `Counters::flags`: an MPTCP socket whose subflows the kernel accepted (its flow is inbound).
pub const COUNTER_MPTCP_PASSIVE: u64 = 1024;
/// `Counters::flags`: an MPTCP socket whose subflows it connected (its flow is outbound).
pub const COUNTER_MPTCP_ACTIVE: u64 = 2048;
/// `Counters::flags`: a `SOCK_RAW` socket (set by `sock_create`). Counted per peer whatever its
/// protocol (a raw TCP or UDP socket writes its own transport header and may send anywhere), with
/// port 0 and the payload its process wrote and read; its events carry `event::FLAG_RAW`.
pub const COUNTER_RAW: u64 = 4096;
/// `Counters::flags`: an accepted TCP socket whose owner it inherited from its listener (set by
/// `sock_ops` at `ESTABLISHED`). Its first read or write ([`COUNTER_OWNER_RECORDED`] then set)
/// charges it to the calling process instead when that is another process
/// ([`OwnerSource::FirstIo`]).
pub const COUNTER_INHERITED: u64 = 8192;

/// Number of peer slots per unconnected UDP socket. When all are taken, the oldest claim is
/// flushed to userspace (`PeerEvicted`) and reused, so nothing is lost.
pub const PEER_SLOTS: usize = 8;

/// One remote endpoint of an unconnected UDP socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerSlot {
    /// Remote address, network byte order; IPv4 in word 0.
    pub addr: [u32; 4],
    /// Remote port, host byte order.
    pub port: u16,
    /// `AF_INET` or `AF_INET6` (of the packet, not the socket).
    pub family: u16,
    /// Nonzero when the slot is in use: [`SLOT_ACTIVE`], with [`SLOT_FIRST_IN`] when the datagram
    /// that claimed it came in.
    pub active: u32,
    /// Claim number, unique per socket: (cookie, generation) names one slot lifetime.
    pub generation: u64,
    /// `bpf_ktime_get_boot_ns()` at claim.
    pub first_ns: u64,
    /// `bpf_ktime_get_coarse_ns()` of the last `PeerUpdate` (or of the claim).
    pub last_report_ns: u64,
    /// Counters since the claim.
    pub bytes: ByteCounters,
}
const _: () = assert!(core::mem::size_of::<PeerSlot>() == 96);

/// [`PeerSlot::active`]: the slot is in use.
pub const SLOT_ACTIVE: u32 = 1;
/// [`PeerSlot::active`]: the slot was claimed by an incoming datagram (the peer sent first).
pub const SLOT_FIRST_IN: u32 = 2;

impl PeerSlot {
    /// The [`crate::event::Event::flags`] a peer event of this slot carries.
    #[must_use]
    #[inline(always)]
    pub const fn event_flags(&self) -> u32 {
        // Branch-free (the BPF programs' stack is tight): the bit moves to the flag's place.
        (self.active & SLOT_FIRST_IN) * (crate::event::FLAG_PEER_FIRST_IN / SLOT_FIRST_IN)
    }
}

/// The kernel's `struct bpf_spin_lock`. The verifier finds a lock in a map value by this BTF type
/// name, so it must be spelled exactly so.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types, reason = "BTF type name the verifier looks for")]
pub struct bpf_spin_lock {
    /// Lock word (kernel-owned).
    pub val: u32,
}

/// `PEERS` storage value. Every read and write of `slots`, `victim` and `generation` happens
/// under `lock`: packets of one socket arrive on several CPUs at once, and a slot reused for a
/// new peer must not take bytes of the old one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerTable {
    /// `bpf_spin_lock` guarding the table.
    pub lock: bpf_spin_lock,
    /// Next slot to evict when all are taken (round robin).
    pub victim: u32,
    /// Last generation handed out.
    pub generation: u64,
    /// The slots.
    pub slots: [PeerSlot; PEER_SLOTS],
}
const _: () = assert!(core::mem::size_of::<PeerTable>() == 16 + 96 * PEER_SLOTS);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only integers and integer arrays, no implicit padding (sizes asserted
    // above), so every bit pattern is a valid value. The same holds for the two types below.
    unsafe impl aya::Pod for super::Owner {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Counters {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PeerTable {}
}
