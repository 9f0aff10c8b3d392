//! Privilege check, done before anything else so that a missing capability gives one clear
//! message instead of an EPERM from deep inside the loader.

use caps::{CapSet, Capability};

/// Capabilities `monitor run` needs (or CAP_SYS_ADMIN, or root).
pub const NEEDED: [Capability; 3] = [Capability::CAP_BPF, Capability::CAP_NET_ADMIN, Capability::CAP_PERFMON];

/// `Err` lists what is missing.
///
/// # Errors
/// The names of the missing capabilities.
pub fn check() -> Result<(), Vec<&'static str>> {
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    if rustix::process::geteuid().is_root() || has(Capability::CAP_SYS_ADMIN) {
        return Ok(());
    }
    let missing: Vec<&'static str> = NEEDED
        .iter()
        .filter(|c| !has(**c))
        .map(|c| match c {
            Capability::CAP_BPF => "CAP_BPF",
            Capability::CAP_NET_ADMIN => "CAP_NET_ADMIN",
            _ => "CAP_PERFMON",
        })
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(missing) }
}
