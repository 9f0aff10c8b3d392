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
    let comm = crate::tracker::comm_str(&o.comm);
    let (tgid, pid, uid, gid, cgroup_id, start_cs) = (o.tgid, o.pid, o.uid, o.gid, o.cgroup_id, o.start_cs);
    Some(Owner { tgid, pid, uid, gid, comm, cgroup_id, source, start_cs, exec_mark: o.exec_mark() })
}
