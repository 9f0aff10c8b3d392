//! Privilege check, done before anything else so that a missing capability gives one clear
//! message instead of an EPERM from deep inside the loader (and before the journal is created).
//!
//! What counts is the *effective* capability set, for root too: root started with a reduced
//! bounding set (`capsh --drop=cap_bpf`, `setpriv --bounding-set -bpf`, a container) lacks
//! what it lacks. `CAP_SYS_ADMIN` stands in for `CAP_BPF` and `CAP_PERFMON` only on kernels
//! that predate them (before 5.8); the loader creates maps and programs that the kernel checks
//! against `CAP_BPF`/`CAP_PERFMON` themselves.
//!
//! The set is the minimal one found by experiment (`setpriv --bounding-set -all,+…`, kernel
//! 6.18): without `CAP_BPF`/`CAP_PERFMON`/`CAP_NET_ADMIN` nothing loads or attaches; without
//! `CAP_SYS_PTRACE` other users' (and full-capability root's) `/proc/<pid>/exe` and
//! `pidfd_getfd(2)` are refused, so apps lose their executable and older sockets their owner;
//! without `CAP_DAC_READ_SEARCH` other users' `/proc/<pid>/fd` cannot be listed, so listeners
//! older than the monitor stay unowned. `CAP_SYS_RESOURCE` is not needed (the memlock limit is
//! raised only before 5.11, where it is already unlimited for root). `config/monitor.service`
//! grants exactly [`NEEDED`].

use caps::{CapSet, Capability};

/// Capabilities `monitor run` needs, with their names as printed (and as in the unit file).
pub const NEEDED: [(Capability, &str); 5] = [
    (Capability::CAP_BPF, "CAP_BPF"),
    (Capability::CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (Capability::CAP_PERFMON, "CAP_PERFMON"),
    (Capability::CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
    (Capability::CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
];

/// `Err` lists what is missing (e.g. `["CAP_BPF"]`).
///
/// # Errors
/// The names of the missing capabilities.
pub fn check() -> Result<(), Vec<&'static str>> {
    let effective = caps::read(None, CapSet::Effective).unwrap_or_default();
    let known = caps::runtime::procfs_all_supported(None).ok();
    missing(&effective, known.as_ref())
}

/// What `effective` lacks of [`NEEDED`]; `known` is what the kernel supports (None: unknown,
/// assume all).
fn missing(effective: &caps::CapsHashSet, known: Option<&caps::CapsHashSet>) -> Result<(), Vec<&'static str>> {
    let sys_admin = effective.contains(&Capability::CAP_SYS_ADMIN);
    let missing: Vec<&'static str> = NEEDED
        .iter()
        .filter(|(c, _)| {
            let predates_kernel = known.is_some_and(|k| !k.contains(c));
            let stands_in = predates_kernel && sys_admin && matches!(c, Capability::CAP_BPF | Capability::CAP_PERFMON);
            !(effective.contains(c) || stands_in)
        })
        .map(|(_, name)| *name)
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> caps::CapsHashSet {
        caps.iter().copied().collect()
    }

    #[test]
    fn every_needed_capability_must_be_effective_even_with_sys_admin() {
        use Capability::{CAP_BPF, CAP_DAC_READ_SEARCH, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE};
        let all = caps::all();
        let exact = [CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];
        assert_eq!(missing(&set(&exact), Some(&all)), Ok(()));
        // Each one dropped is named.
        for (cap, name) in NEEDED {
            let without: Vec<Capability> = exact.iter().copied().filter(|c| *c != cap).collect();
            assert_eq!(missing(&set(&without), Some(&all)), Err(vec![name]));
        }
        let sys_admin_for_bpf = [CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];
        assert_eq!(missing(&set(&sys_admin_for_bpf), Some(&all)), Err(vec!["CAP_BPF"]));
        assert_eq!(
            missing(&set(&[]), None),
            Err(vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"])
        );
        // A kernel without CAP_BPF/CAP_PERFMON (before 5.8): CAP_SYS_ADMIN covers them, not the others.
        let old_kernel = set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH]);
        assert_eq!(missing(&old_kernel, Some(&old_kernel)), Ok(()));
        let old_no_ptrace = set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_DAC_READ_SEARCH]);
        assert_eq!(missing(&old_no_ptrace, Some(&old_kernel)), Err(vec!["CAP_SYS_PTRACE"]));
    }
}
