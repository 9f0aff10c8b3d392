//! Exit codes (also in `--help` and README.md).

use std::process::ExitCode;

/// Success.
pub const OK: u8 = 0;
/// Runtime failure.
pub const FAILURE: u8 = 1;
/// Usage or configuration error.
pub const CONFIG: u8 = 2;
/// Insufficient privileges.
pub const PRIVILEGES: u8 = 3;
/// The kernel lacks a required feature.
pub const KERNEL: u8 = 4;
/// The journal cannot be used.
pub const JOURNAL: u8 = 5;
/// `monitor verify`: at least one claim failed.
pub const CLAIM_FAILED: u8 = 10;
/// `monitor verify`: no claim failed, at least one is inconclusive.
pub const CLAIM_INCONCLUSIVE: u8 = 11;
/// `monitor diff`: the newer side has something the older lacks.
pub const NEW: u8 = 12;
/// `monitor journal verify`, `monitor evidence verify`: something was changed or removed.
pub const TAMPERED: u8 = 13;

/// Exit code for an error that reached `main`.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<monitor::settings::Error>().is_some()
        || err.downcast_ref::<super::report::UsageError>().is_some()
        || err.downcast_ref::<monitor::zone::UnknownZone>().is_some()
        || err.downcast_ref::<monitor::claims::Error>().is_some()
        // A configured database that is missing or broken (`lookup`; the daemon's `Geo` below).
        || err.downcast_ref::<monitor::enrich::Error>().is_some()
        || err
            .downcast_ref::<monitor::report::Error>()
            .is_some_and(|e| !matches!(e, monitor::report::Error::Journal(_)))
    {
        return ExitCode::from(CONFIG);
    }
    match err.downcast_ref::<monitor::journal::SessionError>() {
        Some(monitor::journal::SessionError::Journal(_)) => return ExitCode::from(JOURNAL),
        Some(_) => return ExitCode::from(CONFIG),
        None => {}
    }
    match err.downcast_ref::<monitor::evidence::Error>() {
        Some(monitor::evidence::Error::Journal(_)) => return ExitCode::from(JOURNAL),
        Some(monitor::evidence::Error::Report(_) | monitor::evidence::Error::Sign(_)) => {
            return ExitCode::from(FAILURE);
        }
        Some(_) => return ExitCode::from(CONFIG),
        None => {}
    }
    if let Some(e) = err.downcast_ref::<super::exec::CgroupError>() {
        return ExitCode::from(if e.denied() { PRIVILEGES } else { FAILURE });
    }
    // `exec --cgroup`: the cgroup is resolved as the daemon does.
    if let Some(e) = err.downcast_ref::<monitor::probe::Error>() {
        return probe_code(e);
    }
    if err
        .downcast_ref::<monitor::diff::Error>()
        .is_some_and(|e| matches!(e, monitor::diff::Error::NotReport { .. } | monitor::diff::Error::Malformed { .. }))
    {
        return ExitCode::from(CONFIG);
    }
    // `report::Error::Journal` is transparent: the journal error is not a separate link.
    if err.chain().any(|e| {
        e.downcast_ref::<monitor::journal::Error>().is_some()
            || matches!(e.downcast_ref::<monitor::report::Error>(), Some(monitor::report::Error::Journal(_)))
    }) {
        return ExitCode::from(JOURNAL);
    }
    match err.downcast_ref::<monitor::daemon::Error>() {
        Some(monitor::daemon::Error::Probe(e)) => return probe_code(e),
        Some(
            monitor::daemon::Error::Geo(_)
            | monitor::daemon::Error::Apps(_)
            | monitor::daemon::Error::Claims(_)
            | monitor::daemon::Error::Metrics(_),
        ) => {
            return ExitCode::from(CONFIG);
        }
        Some(monitor::daemon::Error::Journal(_) | monitor::daemon::Error::Unwritten { .. }) => {
            return ExitCode::from(JOURNAL);
        }
        _ => {}
    }
    ExitCode::from(FAILURE)
}

/// Exit code for a probe error: a configured cgroup that is not one is a configuration error.
fn probe_code(e: &monitor::probe::Error) -> ExitCode {
    use monitor::probe::Error as P;
    ExitCode::from(match e {
        P::NotACgroup { .. } => CONFIG,
        P::NoCgroup2 | P::KernelLacks { .. } => KERNEL,
        _ => FAILURE,
    })
}
