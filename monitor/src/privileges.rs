//! Privilege check, done before anything else so that a missing capability gives one clear
//! message instead of an EPERM from deep inside the loader (and before the journal is created).
//!
//! What counts is the *effective* capability set, for root too: root started with a reduced
//! bounding set (`capsh --drop=cap_bpf`, `setpriv --bounding-set -bpf`, a container) lacks
//! what it lacks. `CAP_SYS_ADMIN` stands in for `CAP_BPF` and `CAP_PERFMON` only on kernels
//! that predate them (before 5.8); the loader creates maps and programs that the kernel checks
//! against `CAP_BPF`/`CAP_PERFMON` themselves.

use caps::{CapSet, Capability};

/// Capabilities `monitor run` needs.
pub const NEEDED: [Capability; 3] = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN, Capability::CAP_PERFMON];

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
        .filter(|c| {
            let predates_kernel = known.is_some_and(|k| !k.contains(c));
            !(effective.contains(c) || (predates_kernel && sys_admin))
        })
        .map(|c| match c {
            Capability::CAP_BPF => "CAP_BPF",
            Capability::CAP_NET_ADMIN => "CAP_NET_ADMIN",
            _ => "CAP_PERFMON",
        })
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
        use Capability::{CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN};
        let all = caps::all();
        assert_eq!(missing(&set(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]), Some(&all)), Ok(()));
        assert_eq!(missing(&set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_PERFMON]), Some(&all)), Err(vec!["CAP_BPF"]));
        assert_eq!(missing(&set(&[]), None), Err(vec!["CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON"]));
        // A kernel without CAP_BPF/CAP_PERFMON (before 5.8): CAP_SYS_ADMIN covers them.
        let old_kernel = set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]);
        assert_eq!(missing(&set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]), Some(&old_kernel)), Ok(()));
    }
}
