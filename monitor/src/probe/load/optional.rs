//! Optional stages and their fallbacks: what runs when the kernel refuses a hook (an exclusive
//! program above the cgroup, a missing hook or iterator), and what is recorded as lost.

use std::{os::fd::AsFd as _, path::Path};

use aya::{
    Btf, Ebpf,
    maps::{Array, Map, MapData},
    programs::{BtfTracePoint, FEntry, Iter, ProgramError},
};
use log::{info, warn};
use monitor_common::maps::{self, programs};

use super::{
    super::{
        Degradation, Error,
        btf_layout::{LayoutError, SockLayout},
        fdsnap::FdSnapshots,
        features,
        snapshot::Snapshotter,
    },
    Snapshots, program,
};

/// Why an optional stage did not start: the kernel refused it (degrade), or our object is broken
/// (a build bug: fail like a required stage).
pub(super) enum Optional {
    Kernel(String),
    Object(Error),
}

impl From<Error> for Optional {
    fn from(e: Error) -> Self {
        Self::Object(e)
    }
}

/// Whether the kernel refused an attachment because an exclusive program (attached without
/// `BPF_F_ALLOW_MULTI`, as Android's netd does) sits on the cgroup or an ancestor: EPERM
/// (`kernel/bpf/cgroup.c`, `hierarchy_allows_attach` and the flags check of `__cgroup_bpf_attach`).
fn refused_by_exclusive(e: &ProgramError) -> bool {
    matches!(e, ProgramError::SyscallError(s) if s.io_error.raw_os_error() == Some(nix::errno::Errno::EPERM as i32))
}

/// 1 when attached; 0 (and `name` in `refused`) when an exclusive program blocks it; otherwise
/// the error.
pub(super) fn outcome(
    name: &'static str,
    target: &Path,
    result: Result<(), ProgramError>,
    refused: &mut Vec<&'static str>,
) -> Result<u32, Error> {
    match result {
        Ok(()) => Ok(1),
        Err(e) if refused_by_exclusive(&e) => {
            warn!(
                "kernel refused {name} on {} (EPERM: an exclusive program is attached there or above)",
                target.display()
            );
            refused.push(name);
            Ok(0)
        }
        Err(source) => Err(Error::Attach { name, target: target.to_path_buf(), source }),
    }
}

/// Stands in for the hooks in `refused` with what still attributes exactly, and records what is
/// lost. Returns the number of programs it attached.
pub(super) fn fall_back(
    ebpf: &mut Ebpf,
    refused: &[&'static str],
    payload_tracepoints: bool,
    layout: Result<&SockLayout, &LayoutError>,
    degradations: &mut Vec<Degradation>,
) -> Result<u32, Error> {
    let is = |name: &str| refused.contains(&name);
    let mut attached = 0;
    let no_create = is(programs::SOCK_CREATE);
    let no_skb = is(programs::SKB_EGRESS) || is(programs::SKB_INGRESS);
    if no_create || no_skb {
        // The payload tracepoints find sockets and send updates in place of sock_create and the
        // packet path; they need their socket layout.
        let reason = if payload_tracepoints {
            layout.err().map(ToString::to_string)
        } else {
            Some("the payload tracepoints (Linux 6.3+ with BTF) are unavailable".to_owned())
        };
        if let Some(reason) = reason {
            return Err(Error::NoFallback { refused: refused.join(", "), reason });
        }
        set_fallback_bits(ebpf, maps::FALLBACK_DISCOVER)?;
    }
    let mut release_fallback = false;
    if is(programs::SOCK_RELEASE) {
        match attach_fentry_release(ebpf) {
            Ok(()) => {
                attached += 1;
                release_fallback = true;
            }
            Err(Optional::Kernel(reason)) => {
                warn!("release fallback unavailable ({reason}); flows end only when the monitor stops");
            }
            Err(Optional::Object(e)) => return Err(e),
        }
    }
    if is(programs::SOCK_RELEASE) && !release_fallback {
        if !payload_tracepoints {
            return Err(Error::NoFallback {
                refused: refused.join(", "),
                reason: "no release hook can stand in and the payload tracepoints are unavailable".to_owned(),
            });
        }
        // Without any release hook a socket's last event must carry its final counters.
        set_fallback_bits(ebpf, maps::FALLBACK_DISCOVER | maps::FALLBACK_EVERY_CALL)?;
    }
    degradations.extend(features::refused_degradations(refused, release_fallback));
    info!("fallback hook set: refused={} replacements={attached}", refused.join(","));
    Ok(attached)
}

/// Sets `value`'s `FALLBACK` bits (beside those set already) for the kernel programs to read.
pub(super) fn set_fallback_bits(ebpf: &mut Ebpf, value: u32) -> Result<(), Error> {
    let map = ebpf.map_mut(maps::FALLBACK).ok_or(Error::MapNotFound { name: maps::FALLBACK })?;
    let mut bits: Array<&mut MapData, u32> =
        Array::try_from(map).map_err(|source| Error::Map { name: maps::FALLBACK, source })?;
    let set = bits.get(&0, 0).map_err(|source| Error::Map { name: maps::FALLBACK, source })?;
    bits.set(0, set | value, 0).map_err(|source| Error::Map { name: maps::FALLBACK, source })
}

/// `fentry/inet_release` in place of `cgroup/sock_release` (needs BTF and BPF trampolines).
fn attach_fentry_release(ebpf: &mut Ebpf) -> Result<(), Optional> {
    let name = programs::FENTRY_RELEASE;
    let btf = Btf::from_sys_fs().map_err(|e| Optional::Kernel(format!("kernel BTF: {e}")))?;
    let prog: &mut FEntry = program(ebpf, name)?;
    prog.load(programs::FENTRY_RELEASE_FN, &btf).map_err(|e| Optional::Kernel(format!("{name}: {e}")))?;
    prog.attach().map_err(|e| Optional::Kernel(format!("{name}: {e}")))?;
    Ok(())
}

/// The payload tracepoints need kernel BTF and Linux 6.3+; a kernel refusal is a degradation.
pub(super) fn attach_payload_tracepoints(ebpf: &mut Ebpf) -> Result<(), Optional> {
    let btf = Btf::from_sys_fs().map_err(|e| Optional::Kernel(format!("kernel BTF: {e}")))?;
    for (name, tracepoint) in
        [(programs::SEND_LENGTH, programs::SEND_LENGTH_TP), (programs::RECV_LENGTH, programs::RECV_LENGTH_TP)]
    {
        let prog: &mut BtfTracePoint = program(ebpf, name)?;
        prog.load(tracepoint, &btf).map_err(|e| Optional::Kernel(format!("{name}: {e}")))?;
        prog.attach().map_err(|e| Optional::Kernel(format!("{name}: {e}")))?;
    }
    Ok(())
}

/// The `COUNTERS` iterator (needs kernel BTF and an iterator-capable kernel); a kernel refusal
/// is a degradation.
pub(super) fn snapshotter(ebpf: &mut Ebpf) -> Result<Snapshotter, Optional> {
    iterator(ebpf, programs::ITER_COUNTERS, maps::COUNTERS)
}

/// How the peer slots are read at shutdown: the `PEERS` iterator, else by descriptor; with
/// neither, peers' bytes since their last report stay unread (their `shutdown` records say so).
/// `iterators`: the kernel runs the counter iterator, so it should run this one too (a refusal
/// is then worth a warning).
pub(super) fn peer_snapshotter(ebpf: &mut Ebpf, iterators: bool) -> Result<Snapshots, Error> {
    match iterator(ebpf, programs::ITER_PEERS, maps::PEERS) {
        Ok(s) => Ok(Snapshots::Iterator(s)),
        Err(Optional::Kernel(reason)) => match by_descriptor(ebpf) {
            Ok(s) => {
                let said =
                    format!("peer slot iterator unavailable ({reason}); peer slots are read by descriptor at shutdown");
                if iterators {
                    warn!("{said}");
                } else {
                    info!("{said}");
                }
                Ok(Snapshots::ByDescriptor(Box::new(s)))
            }
            Err(e) => {
                warn!(
                    "peer slots cannot be read at shutdown (iterator: {reason}; by descriptor: {}): each unconnected \
                     peer's bytes since its last report are missing from its record, which says it is incomplete",
                    crate::errors::chain(&e)
                );
                Ok(Snapshots::None)
            }
        },
        Err(Optional::Object(e)) => Err(e),
    }
}

/// Program `name`, an `iter/bpf_sk_storage_map` program, over socket storage `map`.
fn iterator(ebpf: &mut Ebpf, name: &'static str, map_name: &'static str) -> Result<Snapshotter, Optional> {
    let kernel = |what: &str, e: &dyn std::fmt::Display| Optional::Kernel(format!("{what}: {e}"));
    let btf = Btf::from_sys_fs().map_err(|e| kernel("kernel BTF", &e))?;
    let prog: &mut Iter = program(ebpf, name)?;
    prog.load("bpf_sk_storage_map", &btf).map_err(|e| kernel(name, &e))?;
    let prog_fd =
        prog.fd().map_err(|e| kernel(name, &e))?.as_fd().try_clone_to_owned().map_err(|e| kernel(name, &e))?;
    let map = match ebpf.map(map_name) {
        Some(Map::SkStorage(map)) => map,
        Some(_) => {
            return Err(Error::MapKind { name: map_name, found: "not socket storage".to_owned() }.into());
        }
        None => return Err(Error::MapNotFound { name: map_name }.into()),
    };
    let snap = Snapshotter::new(prog_fd.as_fd(), map.fd().as_fd()).map_err(|e| kernel("descriptors", &e))?;
    // Try once now: a kernel that loads but cannot run the iterator degrades here, not later.
    snap.read().map_err(|e| kernel("iterator", &e))?;
    Ok(snap)
}

/// The `COUNTERS` and `PEERS` storages read by socket descriptor, where the iterator is refused.
///
/// # Errors
/// [`Error::MapNotFound`] or [`Error::MapKind`] when a storage is missing from our object or is
/// not socket storage (a build bug); [`Error::ByDescriptor`] when the kernel refuses the reads.
pub(super) fn by_descriptor(ebpf: &Ebpf) -> Result<FdSnapshots, Error> {
    let storage = |name: &'static str| match ebpf.map(name) {
        Some(Map::SkStorage(map)) => Ok(map),
        Some(_) => Err(Error::MapKind { name, found: "not socket storage".to_owned() }),
        None => Err(Error::MapNotFound { name }),
    };
    let (counters, peers) = (storage(maps::COUNTERS)?, storage(maps::PEERS)?);
    FdSnapshots::new(counters.fd().as_fd(), peers.fd().as_fd()).map_err(Error::ByDescriptor)
}
