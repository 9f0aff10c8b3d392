//! `getaddrinfo` results: what libc's resolver answered a watched process, read by a return
//! uprobe (names without DNS packets, e.g. glibc asking systemd-resolved over its varlink socket).
//!
//! A result is one [`GaiRecord`] in the `EVENTS` ring buffer: a [`CopyHeader`] whose `kind` is
//! [`GAI_KIND`] (the decoder tells it from payload copies and events by the first `u32`), `owner`
//! the calling process, `cookie` and `tuple` zero, `len` the size of [`GaiData`]; then the
//! [`GaiData`]. It shares the payload copies' accounting (`STAT_COPIES`, `STAT_COPIES_LOST`).
//!
//! The kernel side (`monitor-ebpf/src/probes/getaddrinfo.rs`) reads only user memory
//! (`bpf_probe_read_user*`), as lockdown allows, and walks at most [`GAI_WALK_MAX`] entries of the
//! `struct addrinfo` list, keeping at most [`GAI_ADDRS_MAX`] addresses (consecutive duplicates, the
//! same address for several socket types, are kept once).

use crate::copy::CopyHeader;

/// Ring-buffer record kind of a `getaddrinfo` result (DNS/names group of the event kinds: 100–199).
pub const GAI_KIND: u32 = 101;
/// Bytes of the queried name kept, terminating NUL included (longer names are cut: a DNS name
/// has at most 253 characters).
pub const GAI_NAME_MAX: usize = 256;
/// Addresses kept per result.
pub const GAI_ADDRS_MAX: usize = 8;
/// `struct addrinfo` entries walked per result.
pub const GAI_WALK_MAX: u32 = 24;

/// Offsets in glibc's (and musl's) `struct addrinfo` on 64-bit targets (LP64: x86_64, aarch64):
/// `int ai_flags, ai_family, ai_socktype, ai_protocol; socklen_t ai_addrlen;` (4 bytes each,
/// then 4 of padding), `struct sockaddr *ai_addr; char *ai_canonname; struct addrinfo *ai_next;`.
/// An entry counts only when its socket address starts with the same family, so a libc with
/// another layout (bionic and the BSDs put `ai_canonname` before `ai_addr`) yields no addresses.
pub const AI_FAMILY_OFFSET: usize = 4;
/// Offset of `ai_addr`.
pub const AI_ADDR_OFFSET: usize = 24;
/// Offset of `ai_next`.
pub const AI_NEXT_OFFSET: usize = 40;
/// Offset of `sin_addr` in `struct sockaddr_in`.
pub const SIN_ADDR_OFFSET: usize = 4;
/// Offset of `sin6_addr` in `struct sockaddr_in6`.
pub const SIN6_ADDR_OFFSET: usize = 8;

/// The result part of a [`GaiRecord`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaiData {
    /// Bytes of `name` before its NUL (0..[`GAI_NAME_MAX`]).
    pub name_len: u32,
    /// Valid entries of `families` and `addrs` (0..=[`GAI_ADDRS_MAX`]).
    pub count: u32,
    /// `AF_INET` or `AF_INET6` per address.
    pub families: [u16; GAI_ADDRS_MAX],
    /// Addresses, network byte order; IPv4 in the first 4 bytes.
    pub addrs: [[u8; 16]; GAI_ADDRS_MAX],
    /// The `node` argument as the process passed it, NUL terminated (hostile: validate it).
    pub name: [u8; GAI_NAME_MAX],
}
const _: () = assert!(core::mem::size_of::<GaiData>() == 8 + 16 + 128 + GAI_NAME_MAX);

/// One ring-buffer record of kind [`GAI_KIND`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GaiRecord {
    /// Kind, time, calling process (`cookie` and `tuple` unused).
    pub header: CopyHeader,
    /// The result.
    pub data: GaiData,
}
const _: () = assert!(core::mem::size_of::<GaiRecord>() == 128 + core::mem::size_of::<GaiData>());
const _: () = assert!(core::mem::size_of::<GaiData>() <= crate::copy::COPY_MAX);
