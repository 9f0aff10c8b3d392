//! Which cgroup hooks exclusive programs block, for `monitor check`, without attaching anything.
//!
//! Android's netd attaches its programs to the cgroup root with `BPF_PROG_ATTACH` and flags 0.
//! The kernel then refuses a bpf_link or `BPF_F_ALLOW_MULTI` attachment of the same type on that
//! cgroup, and any attachment of that type below it, unless the program above allows override or
//! multi (`kernel/bpf/cgroup.c`: `hierarchy_allows_attach`, the flags check in
//! `__cgroup_bpf_attach`). `BPF_PROG_QUERY` on each cgroup from the watched one up to the root
//! gives the programs and their flags per attach type.

use std::{
    fs::File,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
};

use aya_obj::generated::{bpf_attach_type, bpf_cmd};
use monitor_common::maps::programs;

use super::bpf_call::{bpf, zeroed_attr};

/// `BPF_F_ALLOW_OVERRIDE`, `BPF_F_ALLOW_MULTI`.
const ALLOW_OVERRIDE: u32 = 1;
const ALLOW_MULTI: u32 = 2;

/// The monitor's cgroup programs and the attach type each needs.
pub const HOOKS: [(&str, bpf_attach_type); 11] = [
    (programs::SOCK_CREATE, bpf_attach_type::BPF_CGROUP_INET_SOCK_CREATE),
    (programs::SOCK_RELEASE, bpf_attach_type::BPF_CGROUP_INET_SOCK_RELEASE),
    (programs::CONNECT4, bpf_attach_type::BPF_CGROUP_INET4_CONNECT),
    (programs::CONNECT6, bpf_attach_type::BPF_CGROUP_INET6_CONNECT),
    (programs::SENDMSG4, bpf_attach_type::BPF_CGROUP_UDP4_SENDMSG),
    (programs::SENDMSG6, bpf_attach_type::BPF_CGROUP_UDP6_SENDMSG),
    (programs::RECVMSG4, bpf_attach_type::BPF_CGROUP_UDP4_RECVMSG),
    (programs::RECVMSG6, bpf_attach_type::BPF_CGROUP_UDP6_RECVMSG),
    (programs::SOCK_OPS, bpf_attach_type::BPF_CGROUP_SOCK_OPS),
    (programs::SKB_EGRESS, bpf_attach_type::BPF_CGROUP_INET_EGRESS),
    (programs::SKB_INGRESS, bpf_attach_type::BPF_CGROUP_INET_INGRESS),
];

/// A hook an exclusive program blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// The monitor's program (a `monitor_common::maps::programs` name).
    pub hook: &'static str,
    /// The cgroup the exclusive program sits on.
    pub at: PathBuf,
}

/// Number of programs and attach flags of `attach_type` on the cgroup `dir`.
fn query(dir: &File, attach_type: bpf_attach_type) -> std::io::Result<(u32, u32)> {
    let mut attr = zeroed_attr();
    // The PROG_QUERY member, without an id buffer: the kernel only reports count and flags.
    attr.query.__bindgen_anon_1.target_fd = u32::try_from(dir.as_raw_fd()).unwrap_or(u32::MAX);
    attr.query.attach_type = attach_type as u32;
    bpf(bpf_cmd::BPF_PROG_QUERY, &mut attr)?;
    // SAFETY: the kernel filled the PROG_QUERY member.
    Ok(unsafe { (attr.query.__bindgen_anon_2.prog_cnt, attr.query.attach_flags) })
}

/// Whether programs with `flags` on the watched cgroup itself (`own`) or an ancestor block a
/// multi attachment of the same type.
fn blocks(count: u32, flags: u32, own: bool) -> bool {
    if count == 0 {
        return false;
    }
    if own { flags != ALLOW_MULTI } else { flags & (ALLOW_OVERRIDE | ALLOW_MULTI) == 0 }
}

/// The hooks exclusive programs block for `cgroup` (inside the hierarchy mounted at `mount`).
///
/// # Errors
/// When a cgroup directory cannot be opened or queried (no privileges, no bpf()).
pub fn blocked_hooks(cgroup: &Path, mount: &Path) -> std::io::Result<Vec<Blocked>> {
    let mut found = Vec::new();
    let mut dir = Some(cgroup);
    let mut own = true;
    while let Some(d) = dir {
        let file = File::open(d)?;
        for (hook, attach_type) in HOOKS {
            if found.iter().any(|b: &Blocked| b.hook == hook) {
                continue;
            }
            let (count, flags) = query(&file, attach_type)?;
            if blocks(count, flags, own) {
                found.push(Blocked { hook, at: d.to_path_buf() });
            }
        }
        if d == mount {
            break;
        }
        dir = d.parent().filter(|p| p.starts_with(mount));
        own = false;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_programs_block_multi_attachments_here_and_below() {
        // netd: flags 0 at the root blocks everything below and at the root.
        assert!(blocks(1, 0, true));
        assert!(blocks(1, 0, false));
        // Another multi program coexists, here and above.
        assert!(!blocks(3, ALLOW_MULTI, true));
        assert!(!blocks(3, ALLOW_MULTI, false));
        // An override program above lets children attach; on the cgroup itself flags differ.
        assert!(!blocks(1, ALLOW_OVERRIDE, false));
        assert!(blocks(1, ALLOW_OVERRIDE, true));
        // Nothing attached blocks nothing, whatever the flags.
        assert!(!blocks(0, 0, true));
    }
}
