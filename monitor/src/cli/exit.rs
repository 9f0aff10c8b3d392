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

/// Exit code for an error that reached `main`.
pub fn code_for(err: &anyhow::Error) -> ExitCode {
    if err.downcast_ref::<monitor::settings::Error>().is_some() {
        return ExitCode::from(CONFIG);
    }
    if let Some(monitor::daemon::Error::Probe(e)) = err.downcast_ref::<monitor::daemon::Error>() {
        use monitor::probe::Error as P;
        return ExitCode::from(match e {
            P::NotACgroup { .. } => CONFIG,
            P::NoCgroup2 => KERNEL,
            _ => FAILURE,
        });
    }
    ExitCode::from(FAILURE)
}
