//! The owner carried by a payload copy, in the tracker's record form (for the app lookup).

use monitor_common::{
    copy::{COPY_NO_OWNER, CopyHeader},
    sock::OwnerSource as KernelSource,
};

use crate::tracker::record::{Owner, OwnerSource};

/// Owner recorded by the kernel for the copy's socket; `None` when the socket had none.
#[must_use]
pub fn kernel_owner(h: &CopyHeader) -> Option<Owner> {
    if h.flags & COPY_NO_OWNER != 0 {
        return None;
    }
    let o = &h.owner;
    let source = OwnerSource::from(KernelSource::from_raw(o.source));
    let end = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len());
    let comm: std::sync::Arc<str> = String::from_utf8_lossy(o.comm.get(..end).unwrap_or_default()).into();
    Some(Owner { tgid: o.tgid, pid: o.pid, uid: o.uid, gid: o.gid, comm, cgroup_id: o.cgroup_id, source })
}
