//! The `monitor` binary as a user runs it: bad input gives one clear error and a documented exit
//! code, never a panic or a backtrace.
#![expect(clippy::unwrap_used, reason = "test helpers panic on failure (house style R16)")]

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::Path,
    process::{Command, Output},
};

fn monitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_monitor")).args(args).env_remove("RUST_LOG").output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &Output, code: i32, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in:\n{err}");
    assert!(!err.contains("panicked") && !err.contains("stack backtrace"), "no panic:\n{err}");
}

fn config(text: &str) -> tempfile::NamedTempFile {
    let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    fs::write(f.path(), text).unwrap();
    f
}

#[test]
fn unknown_config_key_is_a_usage_error_naming_key_and_file() {
    let f = config("[probe]\nring_bufer_kib = 8\n");
    let out = monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]);
    assert_clean_failure(&out, 2, "ring_bufer_kib");
    assert!(stderr(&out).contains(f.path().to_str().unwrap()));
}

#[test]
fn wrong_type_and_out_of_range_values_are_usage_errors() {
    let f = config("[probe]\nupdate_interval_secs = \"often\"\n");
    assert_clean_failure(&monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]), 2, "update_interval_secs");
    let f = config("[probe]\nring_buffer_kib = 3\n");
    assert_clean_failure(&monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]), 2, "probe.ring_buffer_kib");
    let f = config("[[apps]]\nname = \"x\"\n");
    assert_clean_failure(&monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]), 2, "no exe, comm");
}

#[test]
fn missing_or_unreadable_config_file_is_a_usage_error() {
    assert_clean_failure(&monitor(&["--config", "/nonexistent/monitor.toml", "config", "dump"]), 2, "/nonexistent/monitor.toml");
}

#[test]
fn config_dump_prints_the_effective_configuration() {
    let f = config("cgroup = \"system.slice\"\n");
    let out = monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cgroup = \"system.slice\""), "{text}");
    assert!(text.contains("ring_buffer_kib = 4096"), "defaults filled in: {text}");
}

#[test]
fn check_reports_every_feature_as_json() {
    let out = monitor(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["checks"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    for needed in ["bpf() syscall", "cgroup v2 mount", "kernel BTF", "ring buffer map", "socket storage map"] {
        assert!(names.contains(&needed), "{needed} missing from {names:?}");
    }
    assert!(matches!(out.status.code(), Some(0 | 3 | 4)), "documented codes only: {:?}", out.status);
}

/// `monitor run` without root or capabilities: one clear message, exit 3. As root, the test runs
/// a copy of the binary as `nobody` (the copy sits in a directory `nobody` can enter).
#[test]
fn run_without_privileges_exits_3_with_one_clear_message() {
    let is_root = nix::unistd::geteuid().is_root();
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = if is_root {
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.path().join("monitor");
        fs::copy(env!("CARGO_BIN_EXE_monitor"), &copy).unwrap();
        let mut cmd = Command::new(&copy);
        cmd.uid(65534).gid(65534);
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_monitor"))
    };
    let out = cmd.args(["run"]).current_dir(Path::new("/")).env_remove("RUST_LOG").output().unwrap();
    assert_clean_failure(&out, 3, "CAP_BPF");
    assert_eq!(stderr(&out).lines().filter(|l| !l.trim().is_empty()).count(), 1, "one message:\n{}", stderr(&out));
}

#[test]
fn report_with_bad_period_or_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("none.db");
    let j = journal.to_str().unwrap();
    assert_clean_failure(&monitor(&["report", "--week", "2026-47", "--journal", j]), 2, "2026-47");
    assert_clean_failure(&monitor(&["report", "--format", "xml", "--journal", j]), 2, "xml");
    assert_clean_failure(&monitor(&["report", "--time-zone", "Mars/Olympus", "--journal", j]), 2, "Mars/Olympus");
    assert_clean_failure(&monitor(&["report", "--since", "yesterday", "--until", "2026-11-20", "--journal", j]), 2, "yesterday");
}

#[test]
fn report_and_status_without_a_journal_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("none.db");
    let out = monitor(&["report", "--week", "2026-W47", "--journal", journal.to_str().unwrap()]);
    assert_clean_failure(&out, 5, "none.db");
    assert!(!journal.exists(), "a reader never creates a journal");
    assert_clean_failure(&monitor(&["status", "--journal", journal.to_str().unwrap()]), 5, "none.db");
}

#[test]
fn report_on_a_corrupt_journal_is_a_journal_error() {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), vec![7u8; 4096]).unwrap();
    assert_clean_failure(&monitor(&["report", "--journal", f.path().to_str().unwrap()]), 5, f.path().to_str().unwrap());
}
