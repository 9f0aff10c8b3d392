//! Reading the `COUNTERS` iterator: a snapshot of every watched socket's counters on demand.
//!
//! aya 0.14 attaches iterators without a map (`Iter::attach`), and a map-element iterator needs
//! one, so the link is created here with `BPF_LINK_CREATE` and `iter_info.map.map_fd`.

use std::{
    fs::File,
    io::Read as _,
    mem::size_of,
    os::fd::{AsFd, AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd},
};

use monitor_common::event::{Event, EventKind};

use super::ring::decode;

const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_ITER_CREATE: libc::c_long = 33;
const BPF_TRACE_ITER: u32 = 28;

/// `union bpf_attr`, as large as the kernel may read (unused bytes must be zero).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_long, attr: &Attr) -> std::io::Result<OwnedFd> {
    // SAFETY: `attr` is a zero-initialised, 8-byte aligned bpf_attr of the given size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.0.as_ptr(), attr.0.len()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(|_| std::io::Error::other("fd out of range"))?) })
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
        // struct bpf_iter_link_info { struct { __u32 map_fd; } map; }
        let info: u32 = u32::try_from(self.map.as_raw_fd()).map_err(|_| std::io::Error::other("bad map fd"))?;
        let mut attr = Attr([0; 128]);
        attr.put_u32(0, u32::try_from(self.program.as_raw_fd()).map_err(|_| std::io::Error::other("bad prog fd"))?);
        attr.put_u32(8, BPF_TRACE_ITER);
        attr.put_u64(16, std::ptr::from_ref(&info) as u64);
        attr.put_u32(24, u32::try_from(size_of::<u32>()).unwrap_or(4));
        let link = bpf(BPF_LINK_CREATE, &attr)?;
        let mut attr = Attr([0; 128]);
        attr.put_u32(0, u32::try_from(link.as_fd().as_raw_fd()).map_err(|_| std::io::Error::other("bad link fd"))?);
        let iter = bpf(BPF_ITER_CREATE, &attr)?;
        let mut bytes = Vec::new();
        File::from(iter).read_to_end(&mut bytes)?;
        Ok(bytes.chunks_exact(size_of::<Event>()).filter_map(decode).collect())
    }
}
