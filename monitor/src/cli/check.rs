//! `monitor check`: what this kernel offers, without attaching anything.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::Context as _;

use std::path::Path;

use monitor::{
    probe::{
        self,
        exclusive::{self, Blocked},
        features::{self, Check},
    },
    settings::Settings,
};

use super::{args::CheckArgs, exit};

/// Prints one line per feature; exit 4 if a required one is missing, 3 if some could not be
/// determined for lack of privileges. The cgroup is `--cgroup`, else the configured one.
///
/// # Errors
/// [`probe::Error::NotACgroup`] (exit 2) when the cgroup is not a directory of the cgroup v2
/// hierarchy: `run` would refuse it.
pub fn execute(args: &CheckArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    settings.check_run_files()?;
    let cgroup = args.cgroup.as_deref().unwrap_or(&settings.cgroup);
    if let Err(e @ probe::Error::NotACgroup { .. }) = probe::resolve_cgroup(cgroup) {
        return Err(e.into());
    }
    let mut checks = features::check_all();
    let mut degradations = features::host_degradations();
    let (check, refused) = exclusive_check(cgroup);
    checks.push(check);
    let (check, degradation) = iterator_check();
    checks.push(check);
    degradations.extend(degradation);
    degradations.extend(features::refused_degradations(&refused, true));
    let mut out = String::new();
    if args.json {
        let doc = serde_json::json!({ "checks": checks, "degradations": degradations });
        writeln!(out, "{doc}")?;
    } else {
        for Check { name, ok, required, detail } in &checks {
            let mark = match ok {
                Some(true) => "ok     ",
                Some(false) if *required => "MISSING",
                Some(false) => "absent ",
                None => "unknown",
            };
            let need = if *required { "required" } else { "optional" };
            writeln!(out, "{mark}  {name:<48} {need:<9} {detail}")?;
        }
        for d in &degradations {
            writeln!(out, "note     {}", d.describe())?;
        }
    }
    let code = if checks.iter().any(|c| c.required && c.ok == Some(false)) {
        exit::KERNEL
    } else if checks.iter().any(|c| c.required && c.ok.is_none()) {
        writeln!(out, "some checks need privileges: run as root for a full report")?;
        exit::PRIVILEGES
    } else {
        exit::OK
    };
    // A failed write (a full disk) is an error, not a silent success.
    super::write_stdout(out.as_bytes()).context("cannot write the checks")?;
    Ok(ExitCode::from(code))
}

/// Whether the kernel runs the counter iterator, which refreshes idle flows in one pass, tried as
/// `run` tries it; and the degradation `run` takes without it (socket by socket, or none).
fn iterator_check() -> (Check, Option<probe::Degradation>) {
    use probe::{Degradation, SnapshotMode};
    let name = "socket storage iterator";
    let detail = "idle flows refreshed in one pass (else socket by socket: snapshots_by_descriptor)";
    // The reason's first sentence: the verifier's log follows it.
    let first = |reason: &str| {
        let line = reason.lines().next().unwrap_or_default().to_string();
        line.split(". Verifier output").next().map_or(line.clone(), str::to_string)
    };
    let absent = |detail: String| Check { name, ok: Some(false), required: false, detail };
    match probe::snapshot_mode() {
        Ok(SnapshotMode::Iterator) => (Check { name, ok: Some(true), required: false, detail: detail.into() }, None),
        Ok(SnapshotMode::ByDescriptor(reason)) => {
            (absent(format!("{detail}: {}", first(&reason))), Some(Degradation::SnapshotsByDescriptor))
        }
        Ok(SnapshotMode::None(reason, by_descriptor)) => (
            absent(format!("{detail}: {}; by descriptor: {by_descriptor}", first(&reason))),
            Some(Degradation::NoSnapshots),
        ),
        Err(e) => {
            let detail = format!("cannot load the programs: {}", monitor::errors::chain(&e));
            (Check { name, ok: None, required: false, detail }, None)
        }
    }
}

/// Hooks that exclusive programs (Android's netd) block for `cgroup`: the monitor falls back
/// for them (degradations), so this check is optional. `fentry/inet_release` is assumed to
/// stand in for `sock_release` (the `started` line says whether it did).
fn exclusive_check(cgroup: &Path) -> (Check, Vec<&'static str>) {
    let name = "no exclusive programs block our hooks";
    let unknown = |detail: String| Check { name, ok: None, required: false, detail };
    let (path, mount) = match (probe::resolve_cgroup(cgroup), probe::cgroup2_mount()) {
        (Ok(path), Ok(mount)) => (path, mount),
        (Err(e), _) | (_, Err(e)) => return (unknown(e.to_string()), Vec::new()),
    };
    match exclusive::blocked_hooks(&path, &mount) {
        Ok(blocked) if blocked.is_empty() => {
            (Check { name, ok: Some(true), required: false, detail: path.display().to_string() }, Vec::new())
        }
        Ok(blocked) => {
            let detail = blocked
                .iter()
                .map(|Blocked { hook, at }| format!("{hook} (at {})", at.display()))
                .collect::<Vec<_>>()
                .join(", ");
            let hooks = blocked.iter().map(|b| b.hook).collect();
            (Check { name, ok: Some(false), required: false, detail: format!("fallback for: {detail}") }, hooks)
        }
        Err(e) => (unknown(format!("BPF_PROG_QUERY on {}: {e}", path.display())), Vec::new()),
    }
}
