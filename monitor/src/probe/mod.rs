//! Probe: loads the kernel programs, attaches them to the watched cgroup and hands out the
//! event ring buffer and the statistics map.
//!
//! Owns the [`aya::Ebpf`] object: dropping a [`Probe`] detaches every program. Does not interpret
//! events (that is the tracker's job).

pub mod bpf_call;
mod btf_layout;
mod cgroup;
mod error;
pub mod exclusive;
mod fdsnap;
pub mod features;
mod getaddrinfo;
mod holders;
mod load;
mod object;
mod ring;
mod snapshot;
mod stats;

use std::{path::PathBuf, time::Duration};

pub use cgroup::{cgroup_id_and_level, cgroup2_mount, resolve_cgroup};
pub use error::Error;
pub use fdsnap::{OpenSocket, tcp_counters, tcp_reading};
pub use features::Degradation;
pub use getaddrinfo::{Resolution, decode_gai};
pub use load::{Probe, SnapshotMode, snapshot_mode};
pub use object::object_bytes;
pub use ring::{Copied, CopyBatch, EVENT_BATCH, OrderedCopies, decode_copy, drain};
pub use stats::{DrainCounters, StatsReader};

/// What to load and where to attach it.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// cgroup v2 directory whose sockets (and its descendants') are watched.
    pub cgroup: PathBuf,
    /// Size of the event ring buffer in bytes (power of two, multiple of the page size).
    pub ring_buffer_bytes: u32,
    /// Minimum time between two periodic updates of one flow from the kernel.
    pub update_interval: Duration,
    /// Copy DNS, TLS and QUIC payloads for the names stage (`probe.copy_payloads`).
    pub copy_payloads: bool,
    /// Attach the `getaddrinfo` uprobes (`names.getaddrinfo`).
    pub getaddrinfo: bool,
    /// The libc to attach them to (`names.getaddrinfo_libc`; `None`: the host's, found).
    pub getaddrinfo_libc: Option<PathBuf>,
}
