//! The `monitor` binary as a user runs it: bad input gives one clear error and a documented exit
//! code, never a panic or a backtrace.
#![expect(clippy::unwrap_used, reason = "test helpers panic on failure (house style R16)")]

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
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

/// An empty journal, as the daemon creates it.
fn empty_journal(dir: &Path) -> PathBuf {
    use monitor::journal::{JournalConfig, JournalWriter, RunInfo};
    let path = dir.join("journal.db");
    let config = JournalConfig { path: path.clone(), ..JournalConfig::default() };
    drop(JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap()).unwrap());
    path
}

/// Runs `monitor args` with `Stdio::null()` as stdin and waits at most 20 s (a read of a FIFO
/// would block forever).
fn monitor_bounded(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!("monitor {args:?} still runs after 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

mod reports;
mod status;

#[test]
fn unknown_config_key_is_a_usage_error_naming_key_and_file() {
    let f = config("[probe]\nring_bufer_kib = 8\n");
    let out = monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]);
    assert_clean_failure(&out, 2, "ring_bufer_kib");
    assert!(stderr(&out).contains(f.path().to_str().unwrap()));
}

/// `[[geo.extra_country]]` labels are validated with the rest of the config, for every command
/// (not only when a command opens the databases); a configured database that is missing is a
/// configuration error for every command too (`config dump`, `report`, `status` and `check`
/// accepted it before; found by an adversarial pass), its cause said once.
#[test]
fn geo_labels_and_configured_databases_are_config_errors_for_every_command() {
    for (label, why) in [("BAD LABEL!", "only a-z"), ("primary", "built-in"), ("dup", "used twice")] {
        let f = config(&format!(
            "[[geo.extra_country]]\nlabel = \"{label}\"\npath = \"/x.mmdb\"\n\n\
             [[geo.extra_country]]\nlabel = \"dup\"\npath = \"/y.mmdb\"\n"
        ));
        for args in [&["config", "dump"][..], &["report", "--week", "2026-W47"], &["lookup", "192.0.2.1"]] {
            let mut all = vec!["--config", f.path().to_str().unwrap()];
            all.extend_from_slice(args);
            assert_clean_failure(&monitor(&all), 2, why);
        }
    }
    let f = config("[geo]\ncountry_db = \"/nonexistent/country.mmdb\"\n");
    let journal = tempfile::tempdir().unwrap();
    let journal = journal.path().join("journal.db");
    let journal = journal.to_str().unwrap();
    for args in [
        &["lookup", "192.0.2.1"][..],
        &["config", "dump"],
        &["report", "--journal", journal],
        &["status", "--journal", journal],
        &["check"],
    ] {
        let mut all = vec!["--config", f.path().to_str().unwrap()];
        all.extend_from_slice(args);
        let out = monitor(&all);
        assert_clean_failure(&out, 2, "/nonexistent/country.mmdb");
        assert_eq!(stderr(&out).matches("No such file or directory").count(), 1, "{args:?}: {}", stderr(&out));
    }
}

/// A claims file that `[claims] file` names and that is missing or not a valid claims file is
/// a configuration error for every command (only `report` and `verify` refused it; `config dump`
/// called such a config validated; found by an adversarial pass).
#[test]
fn a_missing_or_invalid_claims_file_is_a_config_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "this is = not [valid toml").unwrap();
    let journal = dir.path().join("journal.db");
    let journal = journal.to_str().unwrap();
    for (file, why) in [(dir.path().join("missing.toml"), "missing.toml"), (bad.clone(), "bad.toml")] {
        let f = config(&format!("[claims]\nfile = \"{}\"\n", file.display()));
        for args in [
            &["config", "dump"][..],
            &["status", "--journal", journal],
            &["lookup", "192.0.2.1"],
            &["report", "--journal", journal],
            &["check"],
        ] {
            let mut all = vec!["--config", f.path().to_str().unwrap()];
            all.extend_from_slice(args);
            let out = monitor(&all);
            assert_clean_failure(&out, 2, why);
            assert!(stderr(&out).contains("claims.file"), "{args:?}: {}", stderr(&out));
        }
    }
}

/// `check` refuses a cgroup that `run` would refuse (it said the exclusive-programs check was
/// unknown and passed; found by an adversarial pass): exit 2 naming the path.
#[test]
fn check_refuses_a_cgroup_that_is_not_one() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    if !mounts.lines().any(|l| l.split_whitespace().nth(2) == Some("cgroup2")) {
        eprintln!("SKIP: no cgroup v2 hierarchy mounted here");
        return;
    }
    for cgroup in ["/nonexistent-qa", "../.."] {
        let out = monitor(&["check", "--cgroup", cgroup]);
        assert_clean_failure(&out, 2, "is not a directory of the cgroup v2 hierarchy");
    }
}

/// An empty `--app` filter names no app: a usage error (it was accepted and matched nothing).
#[test]
fn an_empty_app_filter_is_a_usage_error() {
    let out = monitor(&["report", "--app", "", "--week", "2026-W47"]);
    assert_clean_failure(&out, 2, "--app");
}

/// `check` validates the config like every other command (it ignored it before).
#[test]
fn check_refuses_an_invalid_config() {
    for (text, key) in [
        ("[report]\ntime_zone = \"Mars/Olympus\"\n", "report.time_zone"),
        ("[probe]\nupdate_interval_secs = 0\n", "probe.update_interval_secs"),
    ] {
        let f = config(text);
        assert_clean_failure(&monitor(&["--config", f.path().to_str().unwrap(), "check", "--json"]), 2, key);
    }
}

#[test]
fn wrong_type_and_out_of_range_values_are_usage_errors() {
    let f = config("[probe]\nupdate_interval_secs = \"often\"\n");
    assert_clean_failure(
        &monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]),
        2,
        "update_interval_secs",
    );
    let f = config("[probe]\nring_buffer_kib = 3\n");
    assert_clean_failure(
        &monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]),
        2,
        "probe.ring_buffer_kib",
    );
    let f = config("[[apps]]\nname = \"x\"\n");
    assert_clean_failure(&monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]), 2, "no exe, comm");
}

#[test]
fn missing_or_unreadable_config_file_is_a_usage_error() {
    assert_clean_failure(
        &monitor(&["--config", "/nonexistent/monitor.toml", "config", "dump"]),
        2,
        "/nonexistent/monitor.toml",
    );
}

/// `config dump` prints the file's keys with the defaults filled in, only once they are valid,
/// says so, and is itself a config file that gives the same configuration.
#[test]
fn config_dump_prints_the_effective_configuration() {
    let f = config("cgroup = \"system.slice\"\n[report]\ntime_zone = \"Europe/Berlin\"\n");
    let out = monitor(&["--config", f.path().to_str().unwrap(), "config", "dump"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cgroup = \"system.slice\""), "{text}");
    assert!(text.contains("time_zone = \"Europe/Berlin\""), "{text}");
    assert!(text.contains("ring_buffer_kib = 2048"), "defaults filled in: {text}");
    assert!(text.starts_with("# configuration in effect") && text.contains("validated"), "{text}");
    let reread = monitor::settings::RawConfig::parse(&text, Path::new("dump.toml")).unwrap();
    let original = monitor::settings::RawConfig::parse(&fs::read_to_string(f.path()).unwrap(), f.path()).unwrap();
    assert_eq!(reread, original, "the dump reads back as the same configuration");
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
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = unprivileged_monitor(dir.path());
    cmd.args(["run"]).current_dir(Path::new("/")).env_remove("RUST_LOG");
    let out = output_retrying(&mut cmd);
    assert_clean_failure(&out, 3, "CAP_BPF");
    assert_eq!(stderr(&out).lines().filter(|l| !l.trim().is_empty()).count(), 1, "one message:\n{}", stderr(&out));
}

/// `monitor` as an unprivileged user: as root, a copy in `dir` (made traversable) run as
/// nobody (uid 65534); otherwise the binary itself.
fn unprivileged_monitor(dir: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
        let copy = dir.join("monitor");
        fs::copy(env!("CARGO_BIN_EXE_monitor"), &copy).unwrap();
        let mut cmd = Command::new(&copy);
        cmd.uid(65534).gid(65534);
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_monitor"))
    }
}

/// Runs `cmd`. A just-written copy is "text file busy" while another test thread's fork still
/// holds the descriptor it was written through (until that child execs): retried briefly.
fn output_retrying(cmd: &mut Command) -> Output {
    let mut tries = 0;
    loop {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => break other.unwrap(),
        }
    }
}

/// A journal copied to a directory its reader cannot write (a read-only mount, an archive): it
/// is read as it is (SQLite cannot create the shared-memory file WAL readers use), and nothing is
/// created next to it. With data in its write-ahead log, which such a read would miss, the
/// reader says so instead.
#[test]
fn a_journal_in_a_read_only_directory_can_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let original = empty_journal(dir.path());
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let journal = ro.join("journal.db");
    fs::copy(&original, &journal).unwrap();
    fs::set_permissions(&journal, fs::Permissions::from_mode(0o444)).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let report = |cmd: &mut Command| {
        cmd.args(["report", "--week", "2026-W47", "--format", "json", "--journal", journal.to_str().unwrap()])
            .current_dir(Path::new("/"))
            .env_remove("RUST_LOG");
        output_retrying(cmd)
    };
    let out = report(&mut unprivileged_monitor(dir.path()));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"2026-W47\""));
    let mut left: Vec<_> = fs::read_dir(&ro).unwrap().map(|e| e.unwrap().file_name()).collect();
    left.sort();
    assert_eq!(left, ["journal.db"], "nothing created beside the journal");

    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(ro.join("journal.db-wal"), [1u8; 100]).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    let out = report(&mut unprivileged_monitor(dir.path()));
    assert_clean_failure(&out, 5, "its write-ahead log or another writer's file");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).unwrap();
}

/// `--time-zone` is looked up by one helper for every command that has it: an unknown name is
/// a usage error naming it, before the journal is opened.
#[test]
fn an_unknown_time_zone_flag_is_a_usage_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let j = dir.path().join("none.db");
    let out = dir.path().join("bundle");
    let claims = dir.path().join("claims.toml");
    fs::write(&claims, "[[claims]]\nname = \"eu\"\napps = [\"web\"]\ndenied_countries = [\"US\"]\n").unwrap();
    let (j, out, claims) = (j.to_str().unwrap(), out.to_str().unwrap(), claims.to_str().unwrap());
    for command in [
        &["report", "--week", "2026-W47"][..],
        &["diff", "week:2026-W46", "week:2026-W47"],
        &["verify", "--claims", claims, "--week", "2026-W47"],
        &["evidence", "--week", "2026-W47", "--out", out],
    ] {
        let mut args = command.to_vec();
        args.extend(["--time-zone", "Mars/Olympus", "--journal", j]);
        assert_clean_failure(&monitor(&args), 2, "unknown time zone `Mars/Olympus`");
    }
}

#[test]
fn report_with_bad_period_or_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("none.db");
    let j = journal.to_str().unwrap();
    assert_clean_failure(&monitor(&["report", "--week", "2026-47", "--journal", j]), 2, "2026-47");
    assert_clean_failure(&monitor(&["report", "--format", "xml", "--journal", j]), 2, "xml");
    assert_clean_failure(&monitor(&["report", "--time-zone", "Mars/Olympus", "--journal", j]), 2, "Mars/Olympus");
    assert_clean_failure(
        &monitor(&["report", "--since", "yesterday", "--until", "2026-11-20", "--journal", j]),
        2,
        "yesterday",
    );
}

#[test]
fn report_and_status_without_a_journal_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("none.db");
    let out = monitor(&["report", "--week", "2026-W47", "--journal", journal.to_str().unwrap()]);
    assert_clean_failure(&out, 5, "none.db");
    assert_eq!(stderr(&out).matches("does not exist").count(), 1, "one reason, one hint: {}", stderr(&out));
    assert!(!stderr(&out).contains("written one?"), "no second hint before the reason: {}", stderr(&out));
    assert!(!journal.exists(), "a reader never creates a journal");
    assert_clean_failure(&monitor(&["status", "--journal", journal.to_str().unwrap()]), 5, "none.db");
}

#[test]
fn report_on_a_corrupt_journal_is_a_journal_error() {
    let f = tempfile::NamedTempFile::new().unwrap();
    fs::write(f.path(), vec![7u8; 4096]).unwrap();
    assert_clean_failure(&monitor(&["report", "--journal", f.path().to_str().unwrap()]), 5, f.path().to_str().unwrap());
}
