//! Root/BPF tests: the real kernel programs, the real `monitor` binary, real traffic between two
//! network namespaces, every figure checked against ground truth (bytes the helpers sent and
//! received, veth interface counters).
//!
//! Run by `cargo test` (and so by `cargo xtask test`). Without root they are reported as ignored
//! with the reason; with `MONITOR_REQUIRE_ROOT_TESTS=1` (set by `cargo xtask test` as root, i.e.
//! in CI) a test that cannot run fails instead.
#![expect(clippy::print_stderr, reason = "root tests print why they skip")]
#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test helpers panic on failure (house style R16)")]

mod activation;
mod android;
mod attempts;
mod cases;
mod claims;
mod comm;
mod copy_gate;
mod daemon;
mod delay_line;
mod durability;
mod emulator;
mod env;
mod fleet;
mod getaddrinfo;
mod helper;
mod lifecycle;
mod listeners;
mod mptcp;
mod names;
mod netd;
mod older;
mod paths;
mod paths_helper;
mod plausibility;
mod protocols;
mod raw_helpers;
mod rebind;
mod reconnect;
mod residency;
mod service;
mod sessions;
mod shutdown;
mod syscalls;
mod systemd;
mod uring;
mod wal;

use std::process::ExitCode;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// Why the running case cannot test what it should (a kernel feature is absent); see [`missing`].
static MISSING: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Marks the running case as missing: it returns at once and is reported as ignored with
/// `MISSING: <reason>` (loudly, never as passed).
pub fn missing(reason: String) {
    eprintln!("MISSING: {reason}");
    *MISSING.lock().unwrap() = Some(reason);
}

/// Runs a case; one that called [`missing`] becomes an ignored trial with its reason.
fn run_case(test: fn()) -> Completion {
    *MISSING.lock().unwrap() = None;
    test();
    match MISSING.lock().unwrap().take() {
        Some(reason) => Completion::ignored_with(format!("MISSING: {reason}")),
        None => Completion::Completed,
    }
}

/// Why the BPF tests cannot run here, if they cannot.
fn gate() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (run as root: `sudo -E cargo test`, or `cargo xtask test`)".into());
    }
    if std::process::Command::new("ip").arg("-V").output().is_err() {
        return Some("ip(8) not installed (`cargo xtask setup` installs iproute2)".into());
    }
    let missing: Vec<String> = monitor::probe::features::check_all()
        .into_iter()
        .filter(|c| c.required && c.ok != Some(true))
        .map(|c| format!("{} ({})", c.name, c.detail))
        .collect();
    if !missing.is_empty() {
        return Some(format!("kernel lacks: {}", missing.join(", ")));
    }
    None
}

fn main() -> ExitCode {
    if let Ok(role) = std::env::var("MONITOR_TEST_HELPER") {
        helper::main(&role);
        return ExitCode::SUCCESS;
    }
    let mut args = Arguments::from_args();
    // One monitor and one set of namespaces at a time: the tests compare interface counters.
    args.test_threads = Some(1);
    let gate = gate();
    let required = std::env::var("MONITOR_REQUIRE_ROOT_TESTS").is_ok_and(|v| v == "1");
    if let Some(reason) = &gate {
        eprintln!("skipping BPF tests: {reason}");
    }
    let trials = cases::all()
        .into_iter()
        .map(|(name, test)| match (&gate, required) {
            (None, _) => Trial::ignorable_test(name, move || Ok(run_case(test))),
            (Some(reason), true) => {
                let reason = reason.clone();
                Trial::test(name, move || Err(Failed::from(format!("required BPF test cannot run: {reason}"))))
            }
            (Some(_), false) => Trial::test(name, || Ok(())).with_ignored_flag(true),
        })
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}
