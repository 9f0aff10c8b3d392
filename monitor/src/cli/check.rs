//! `monitor check`: what this kernel offers, without attaching anything.

use std::{io::Write as _, process::ExitCode};

use monitor::probe::features::{self, Check};

use super::{args::CheckArgs, exit};

/// Prints one line per feature; exit 4 if a required one is missing, 3 if some could not be
/// determined for lack of privileges.
pub fn execute(args: &CheckArgs) -> ExitCode {
    let checks = features::check_all();
    let degradations = features::host_degradations();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({ "checks": checks, "degradations": degradations });
        let _ = writeln!(out, "{doc}");
    } else {
        for Check { name, ok, required, detail } in &checks {
            let mark = match ok {
                Some(true) => "ok     ",
                Some(false) if *required => "MISSING",
                Some(false) => "absent ",
                None => "unknown",
            };
            let need = if *required { "required" } else { "optional" };
            let _ = writeln!(out, "{mark}  {name:<48} {need:<9} {detail}");
        }
        for d in &degradations {
            let _ = writeln!(out, "note     {}", d.describe());
        }
    }
    if checks.iter().any(|c| c.required && c.ok == Some(false)) {
        ExitCode::from(exit::KERNEL)
    } else if checks.iter().any(|c| c.required && c.ok.is_none()) {
        let _ = writeln!(out, "some checks need privileges: run as root for a full report");
        ExitCode::from(exit::PRIVILEGES)
    } else {
        ExitCode::from(exit::OK)
    }
}
