//! Types shared by the kernel programs (`monitor-ebpf`) and the daemon (`monitor`).
//!
//! Everything here is plain `#[repr(C)]` data: fixed-width integers, byte arrays and explicit
//! padding, so that the kernel and userspace agree on every byte. Sizes are asserted next to each
//! type. With the `user` feature the map value types implement [`aya::Pod`].
//!
//! # Layout
//! - [`event`]: the records the kernel sends through the `EVENTS` ring buffer.
//! - [`copy`]: payload copies (DNS, TLS, QUIC) sent through the same ring buffer.
//! - [`gai`]: `getaddrinfo` results (return uprobe), sent through the same ring buffer.
//! - [`sock`]: per-socket storage values (owner, counters, UDP peer table).
//! - [`maps`]: names of maps and programs, statistics slots and load-time globals.
//! - [`geo`]: location of the default geolocation databases (shared with xtask, not the kernel).
#![no_std]
#![warn(missing_docs)]

pub mod copy;
pub mod event;
pub mod gai;
pub mod geo;
pub mod maps;
pub mod sock;

/// `AF_INET` from `<sys/socket.h>`.
pub const AF_INET: u16 = 2;
/// `AF_INET6` from `<sys/socket.h>`.
pub const AF_INET6: u16 = 10;
/// `IPPROTO_TCP`.
pub const IPPROTO_TCP: u16 = 6;
/// `IPPROTO_UDP`.
pub const IPPROTO_UDP: u16 = 17;
/// `IPPROTO_ICMP`.
pub const IPPROTO_ICMP: u16 = 1;
/// `IPPROTO_ICMPV6`.
pub const IPPROTO_ICMPV6: u16 = 58;
/// `IPPROTO_SCTP`.
pub const IPPROTO_SCTP: u16 = 132;
/// `IPPROTO_UDPLITE`: UDP-Lite (RFC 3828), UDP's header with a checksum coverage in place of the
/// length.
pub const IPPROTO_UDPLITE: u16 = 136;
/// `IPPROTO_MPTCP`: a Multipath TCP socket; the kernel carries its bytes over TCP subflows of
/// its own (IP protocol 6).
pub const IPPROTO_MPTCP: u16 = 262;
/// `IPPROTO_RAW`: raw sockets of this protocol always send their own IP header.
pub const IPPROTO_RAW: u16 = 255;
/// `AF_PACKET`: link-layer sockets, which no cgroup socket or packet hook sees.
pub const AF_PACKET: u16 = 17;
/// `SOCK_RAW` from `<sys/socket.h>`.
pub const SOCK_RAW: u32 = 3;
