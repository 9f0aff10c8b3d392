//! Payload copies: the first payload bytes of some packets, sent through the `EVENTS` ring buffer
//! for the names stage (DNS answers, TLS ClientHellos, QUIC Initials).
//!
//! A copy is one [`PayloadCopy`] record: a [`CopyHeader`] whose first field is the event kind
//! [`COPY_KIND`] (so the decoder tells it from an [`crate::event::Event`] by the first `u32`),
//! then up to [`COPY_MAX`] bytes of the transport payload (after the TCP or UDP header).
//!
//! What is copied (by `cgroup_skb`, bounded per socket by [`crate::sock::Counters::copy_state`]):
//! - TCP: the first [`COPY_TCP_EGRESS`] payload-bearing egress segments of a flow whose first
//!   payload starts a TLS ClientHello (the kernel looks at its first 9 bytes before copying; a
//!   flow that starts otherwise is never copied, and one whose first copy holds the whole
//!   ClientHello gets no second), and for remote port 53 the first payload-bearing segment of
//!   each direction, whatever it holds; segments of established connections longer than 72
//!   bytes (IP length) only: a shorter one is an ACK or a sliver;
//! - UDP to or from port 53: every datagram, both directions, up to [`COPY_DNS`] per socket;
//! - UDP to port 443: the first [`COPY_QUIC_EGRESS`] egress datagrams of the socket.
//!
//! A socket stops being looked at after [`COPY_PACKETS`] packets or when its limits are reached
//! (`COPY_STATE_DONE`), so ordinary packets pay one load and one branch. Accepted (server-side)
//! TCP sockets are done from the start (`sock_ops` sets it at `PASSIVE_ESTABLISHED`): servers
//! send no ClientHello.

use crate::{event::Tuple, sock::Owner};

/// Event kind of a payload copy (DNS/names group of the event kinds: 100–199).
pub const COPY_KIND: u32 = 100;
/// Most payload bytes one copy carries; a longer payload is cut ([`COPY_TRUNCATED`]).
pub const COPY_MAX: usize = 2048;
/// Payload-bearing egress TCP segments copied per flow (a ClientHello split in two fits).
pub const COPY_TCP_EGRESS: u32 = 2;
/// DNS datagrams (both directions) copied per UDP socket.
pub const COPY_DNS: u32 = 32;
/// Egress datagrams to port 443 copied per UDP socket (a QUIC ClientHello across two Initials,
/// plus one).
pub const COPY_QUIC_EGRESS: u32 = 3;
/// Packets of a connected socket looked at before copying stops (handshake included).
pub const COPY_PACKETS: u32 = 16;

/// [`CopyHeader::flags`]: the packet left the host (else it arrived).
pub const COPY_EGRESS: u32 = 1;
/// [`CopyHeader::flags`]: the payload was longer than [`COPY_MAX`]; `len` bytes were copied.
pub const COPY_TRUNCATED: u32 = 2;
/// [`CopyHeader::flags`]: TCP payload (else UDP).
pub const COPY_TCP: u32 = 4;
/// [`CopyHeader::flags`]: no owner storage existed; `owner` is empty.
pub const COPY_NO_OWNER: u32 = 8;

/// Fixed part of a [`PayloadCopy`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyHeader {
    /// [`COPY_KIND`]. The decoder depends on this being at offset 0 (as `Event::kind`).
    pub kind: u32,
    /// `COPY_*` flags.
    pub flags: u32,
    /// `bpf_ktime_get_boot_ns()` when the packet was seen.
    pub ts_ns: u64,
    /// Socket cookie.
    pub cookie: u64,
    /// Owner of the socket (empty with [`COPY_NO_OWNER`]).
    pub owner: Owner,
    /// Local and remote side of the packet's flow (remote from the packet for unconnected UDP).
    pub tuple: Tuple,
    /// Bytes of `data` that are valid (1..=[`COPY_MAX`]).
    pub len: u32,
    /// Payload length of the packet (may exceed `len`).
    pub wire_len: u32,
}
const _: () = assert!(core::mem::size_of::<CopyHeader>() == 128);

/// One ring-buffer record of kind [`COPY_KIND`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PayloadCopy {
    /// What was copied from where.
    pub header: CopyHeader,
    /// The payload bytes; only the first `header.len` are meaningful.
    pub data: [u8; COPY_MAX],
}
const _: () = assert!(core::mem::size_of::<PayloadCopy>() == 128 + COPY_MAX);
