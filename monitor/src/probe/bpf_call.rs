//! The `bpf(2)` system call, for the commands aya 0.14 does not wrap (a map-element iterator's
//! link, `BPF_PROG_QUERY` without attaching; the root tests' exclusive attachments, as Android's
//! netd makes them), with aya-obj's generated `bpf_attr`.

use std::mem::size_of;

use aya_obj::generated::{bpf_attr, bpf_cmd};

/// An all-zero `bpf_attr` (unused bytes must be zero for the kernel).
pub fn zeroed_attr() -> bpf_attr {
    // SAFETY: `bpf_attr` is a plain-data C union of integers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

/// `bpf(cmd, attr, sizeof attr)`: the kernel's non-negative result (a new descriptor, or 0),
/// after which `attr` holds what the command writes back.
///
/// # Errors
/// The kernel's error.
pub fn bpf(cmd: bpf_cmd, attr: &mut bpf_attr) -> std::io::Result<i64> {
    // SAFETY: `attr` is a fully initialised bpf_attr of the size passed; the kernel may write
    // into it.
    let ret = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            cmd as nix::libc::c_long,
            std::ptr::from_mut(attr),
            size_of::<bpf_attr>(),
        )
    };
    if ret < 0 { Err(std::io::Error::last_os_error()) } else { Ok(ret) }
}
