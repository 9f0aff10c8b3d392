//! `config/monitor.service`: its exposure as systemd rates it, and its capabilities against the
//! set `monitor run` checks for (monitor/src/privileges.rs). Runs without root; skips loudly
//! when systemd-analyze is missing (`cargo xtask setup` installs it), and fails instead when
//! `MONITOR_REQUIRE_ROOT_TESTS=1` says nothing may be skipped.
#![expect(clippy::unwrap_used, reason = "tests panic on failure (house style R16)")]

use std::{path::PathBuf, process::Command};

/// The goal: `systemd-analyze security` rates the unit at most this.
const MAX_EXPOSURE: f64 = 3.5;

fn unit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/monitor.service")
}

#[expect(clippy::print_stderr, reason = "a loud skip")]
fn skip(test: &str, reason: &str) {
    assert!(std::env::var_os("MONITOR_REQUIRE_ROOT_TESTS").is_none(), "{test} cannot run: {reason}");
    eprintln!("skipping {test}: {reason} (run `cargo xtask setup`)");
}

/// The value of every `key=` line of the unit (in order).
fn values(key: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit()).unwrap();
    let prefix = format!("{key}=");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_owned).collect()
}

#[test]
fn unit_exposure_is_at_most_3_5() {
    let out = match Command::new("systemd-analyze").args(["security", "--offline=yes"]).arg(unit()).output() {
        Ok(out) => out,
        Err(e) => return skip("unit_exposure_is_at_most_3_5", &format!("systemd-analyze: {e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "→ Overall exposure level for monitor.service: 2.7 OK 🙂"
    let line = text.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{text}"));
    let score: f64 = line.rsplit(": ").next().unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}:\n{text}");
    assert!(!text.contains("Unknown key") && !text.contains("Failed to parse"), "unit has errors:\n{text}");
}

#[test]
fn unit_grants_exactly_the_capabilities_monitor_checks() {
    let mut needed: Vec<&str> = monitor::privileges::NEEDED.iter().map(|(_, name)| *name).collect();
    needed.sort_unstable();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        let lines = values(key);
        assert_eq!(lines.len(), 1, "one {key}= line");
        let mut granted: Vec<&str> = lines[0].split_whitespace().collect();
        granted.sort_unstable();
        assert_eq!(granted, needed, "{key}");
    }
    assert_eq!(values("Type"), ["notify"]);
    assert_eq!(values("NoNewPrivileges"), ["yes"]);
    assert_eq!(values("ProtectSystem"), ["strict"]);
    assert_eq!(values("StateDirectory"), ["monitor"]);
}
