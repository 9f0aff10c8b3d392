//! Reading the `COUNTERS` iterator: a snapshot of every watched socket's counters on demand.
//!
//! aya 0.14 attaches iterators without a map (`Iter::attach`), and a map-element iterator needs
//! one, so the link is created here with `BPF_LINK_CREATE` and `iter_info.map.map_fd`, using
//! aya-obj's generated `bpf_attr` (the kernel's UAPI layout) rather than hand-placed offsets.

use std::{
    fs::File,
    io::Read as _,
    mem::size_of,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use aya_obj::generated::{bpf_attach_type, bpf_attr, bpf_cmd};
use monitor_common::event::{Event, EventKind};

use super::{
    bpf_call::{bpf, zeroed_attr},
    ring::decode,
};

/// `struct bpf_iter_link_info` (include/uapi/linux/bpf.h): the map a map-element iterator walks.
/// Not part of aya-obj's generated bindings.
#[repr(C)]
struct IterLinkInfo {
    map_fd: u32,
}

/// A new descriptor from a `bpf(2)` command that creates one.
fn bpf_fd(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<OwnedFd> {
    let fd = bpf(cmd, attr)?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?;
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> std::io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative file descriptor"))
}

/// A loaded iterator program and the map it walks.
pub struct Snapshotter {
    program: OwnedFd,
    map: OwnedFd,
}

impl Snapshotter {
    /// Keeps duplicates of the program and map descriptors.
    ///
    /// # Errors
    /// When a descriptor cannot be duplicated.
    pub fn new(program: BorrowedFd<'_>, map: BorrowedFd<'_>) -> std::io::Result<Self> {
        Ok(Self { program: program.try_clone_to_owned()?, map: map.try_clone_to_owned()? })
    }

    /// One pass over every socket with counters: `Update` events (flag `FLAG_SNAPSHOT`) of the
    /// sockets whose counters changed since the previous pass.
    ///
    /// # Errors
    /// When the kernel refuses the iterator or the read fails.
    pub fn read(&self) -> std::io::Result<Vec<(EventKind, Event)>> {
        let info = IterLinkInfo { map_fd: fd_u32(self.map.as_fd())? };
        let mut attr = zeroed_attr();
        // Writing `Copy` fields of a union is safe; the rest stays zero.
        attr.link_create.__bindgen_anon_1.prog_fd = fd_u32(self.program.as_fd())?;
        attr.link_create.attach_type = bpf_attach_type::BPF_TRACE_ITER as u32;
        attr.link_create.__bindgen_anon_3.__bindgen_anon_1.iter_info = std::ptr::from_ref(&info) as u64;
        attr.link_create.__bindgen_anon_3.__bindgen_anon_1.iter_info_len = size_of::<IterLinkInfo>() as u32;
        let link = bpf_fd(bpf_cmd::BPF_LINK_CREATE, &mut attr)?;
        let mut attr = zeroed_attr();
        attr.iter_create.link_fd = fd_u32(link.as_fd())?;
        let iter = bpf_fd(bpf_cmd::BPF_ITER_CREATE, &mut attr)?;
        let mut bytes = Vec::new();
        File::from(iter).read_to_end(&mut bytes)?;
        let chunks = bytes.chunks_exact(size_of::<Event>());
        let stray = chunks.remainder().len();
        let mut unknown = 0_usize;
        let events = chunks
            .filter_map(|chunk| {
                let event = decode(chunk);
                unknown += usize::from(event.is_none());
                event
            })
            .collect();
        // The iterator writes whole events of known kinds: anything else is said, not dropped
        // silently (those sockets keep the counters of their last event).
        if unknown > 0 || stray > 0 {
            log::warn!("counter snapshot: {unknown} records of an unknown kind and {stray} stray bytes dropped");
        }
        Ok(events)
    }
}
