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

#[test]
fn config_that_is_a_fifo_a_device_or_too_large_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("monitor.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let out = monitor_bounded(&["--config", fifo.to_str().unwrap(), "config", "dump"]);
    assert_clean_failure(&out, 2, "is a FIFO, not a regular file");
    assert!(stderr(&out).contains(fifo.to_str().unwrap()), "{}", stderr(&out));
    let out = monitor_bounded(&["--config", "/dev/zero", "config", "dump"]);
    assert_clean_failure(&out, 2, "`/dev/zero` is a character device");
    let huge = dir.path().join("huge.toml");
    // 1 MiB + 1 of comment: valid TOML, but above the cap.
    fs::write(&huge, format!("#{}\n", "x".repeat(1 << 20))).unwrap();
    let out = monitor_bounded(&["--config", huge.to_str().unwrap(), "config", "dump"]);
    assert_clean_failure(&out, 2, "larger than the limit of 1048576 bytes");
    let many = dir.path().join("many.toml");
    fs::write(&many, "[[apps]]\nname = \"a\"\nuid = [1]\n".repeat(10_001)).unwrap();
    assert_clean_failure(&monitor_bounded(&["--config", many.to_str().unwrap(), "config", "dump"]), 2, "at most 10000");
}

#[test]
fn report_and_status_use_the_validated_config() {
    let f = config("[report]\ntime_zone = \"Mars/Olympus\"\n");
    let c = f.path().to_str().unwrap();
    assert_clean_failure(&monitor(&["--config", c, "status", "--journal", "/nonexistent/j.db"]), 2, "Mars/Olympus");
    assert_clean_failure(&monitor(&["--config", c, "report", "--journal", "/nonexistent/j.db"]), 2, "Mars/Olympus");
    let f = config("[[apps]]\nname = \"x\"\n");
    let c = f.path().to_str().unwrap();
    assert_clean_failure(&monitor(&["--config", c, "status", "--journal", "/nonexistent/j.db"]), 2, "no exe, comm");
}

#[test]
fn run_and_report_refuse_unknown_enum_values_listing_the_known_ones() {
    let out = monitor(&["run", "--output", "xml"]);
    assert_clean_failure(&out, 2, "[possible values: log, json, none]");
    let out = monitor(&["report", "--format", "pdf"]);
    assert_clean_failure(&out, 2, "[possible values: table, json, csv, markdown, html]");
}

#[test]
fn a_range_with_times_of_day_keeps_them_in_the_report_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let j = journal.to_str().unwrap();
    let period = |since: &str, until: &str| {
        let zone = ["--time-zone", "Europe/Berlin", "--format", "json", "--journal", j];
        let out = monitor(&[&["report", "--since", since, "--until", until][..], &zone[..]].concat());
        assert!(out.status.success(), "{since}..{until}: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (v["period"]["since"].as_str().unwrap().to_owned(), v["period"]["until"].as_str().unwrap().to_owned())
    };
    // The forms README and --help show: one hour is a range, not "empty".
    let utc = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(period("2026-11-19T11:00", "2026-11-19T12:00"), utc("2026-11-19T10:00:00Z", "2026-11-19T11:00:00Z"));
    assert_eq!(period("2026-11-19T11:00:30", "2026-11-19T12:00Z"), utc("2026-11-19T10:00:30Z", "2026-11-19T12:00:00Z"));
    assert_eq!(period("2026-11-19", "2026-11-19T12:00:00+03:00"), utc("2026-11-18T23:00:00Z", "2026-11-19T09:00:00Z"));
    let out = monitor(&["report", "--since", "2026-11-19T12:00", "--until", "2026-11-19T12:00", "--journal", j]);
    assert_clean_failure(&out, 2, "is not after");
    // A local time a daylight-saving change skips is moved forward, and the user is told.
    let zone = ["--time-zone", "Europe/Berlin", "--format", "json", "--journal", j];
    let out = monitor(&[&["report", "--since", "2026-03-29T02:30", "--until", "2026-03-30"][..], &zone[..]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["period"]["since"], "2026-03-29T01:30:00Z");
    assert!(
        stderr(&out).contains("2026-03-29T02:30 does not exist in Europe/Berlin")
            && stderr(&out).contains("2026-03-29T03:30:00+02:00"),
        "{}",
        stderr(&out)
    );
    // The zone in brackets: the same note.
    let out =
        monitor(&["report", "--since", "2026-10-25T02:30[Europe/Berlin]", "--until", "2026-10-26", "--journal", j]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("comes twice in Europe/Berlin"), "{}", stderr(&out));
}

#[test]
fn top_must_be_at_least_one() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let j = journal.to_str().unwrap();
    assert_clean_failure(&monitor(&["report", "--top", "0", "--journal", j]), 2, "--top");
    assert!(monitor(&["report", "--top", "1", "--journal", j]).status.success());
}

/// `monitor report ... | head -c0`: the reader is gone before the first byte; exit 0, silence.
#[test]
fn a_closed_stdout_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let j = journal.to_str().unwrap();
    for args in [
        vec!["report", "--format", "json", "--journal", j],
        vec!["report", "--format", "csv", "--journal", j],
        vec!["report", "--journal", j],
        vec!["status", "--json", "--journal", j],
        vec!["status", "--journal", j],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(&args)
            .env_remove("RUST_LOG")
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn report_and_status_agree_on_a_foreign_database() {
    let dir = tempfile::tempdir().unwrap();
    // Another application's SQLite file that happens to carry the journal's schema version.
    let foreign = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    conn.execute_batch("CREATE TABLE notes (text TEXT); PRAGMA user_version = 2;").unwrap();
    drop(conn);
    let f = foreign.to_str().unwrap();
    let report = monitor(&["report", "--journal", f]);
    let status = monitor(&["status", "--journal", f]);
    assert_clean_failure(&report, 5, "is not a monitor journal");
    assert_clean_failure(&status, 5, "is not a monitor journal");
    // The same message; the log prefix's time may differ when the two runs straddle a second.
    let message = |out: &Output| stderr(out).split_once("] ").map(|(_, m)| m.to_owned()).unwrap_or_default();
    assert!(!message(&report).is_empty(), "{}", stderr(&report));
    assert_eq!(message(&report), message(&status));
}

/// Root whose bounding set lacks CAP_BPF: exit 3 naming it, before the journal is created.
#[test]
fn root_without_cap_bpf_exits_3_before_creating_the_journal() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED root_without_cap_bpf_exits_3_before_creating_the_journal: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    let out = Command::new("setpriv")
        .args(["--inh-caps=-bpf", "--bounding-set=-bpf", env!("CARGO_BIN_EXE_monitor"), "run", "--journal"])
        .arg(&journal)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_clean_failure(&out, 3, "missing CAP_BPF");
    assert!(!stderr(&out).contains("CAP_NET_ADMIN,") && !stderr(&out).contains("PEERS"), "{}", stderr(&out));
    assert!(!journal.exists(), "no journal before the privilege check");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "nothing created");
}

#[test]
fn report_format_html_prints_one_self_contained_page() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let out = monitor(&["report", "--week", "2026-W47", "--format", "html", "--journal", journal.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.starts_with("<!DOCTYPE html>") && page.trim_end().ends_with("</html>"), "{page}");
    assert!(page.contains("Where the data went: 2026-W47") && page.contains("No app traffic in this period."));
    assert!(
        !page.contains("http://") && !page.contains("https://www") && !page.contains("<script"),
        "nothing to fetch"
    );
}

/// `monitor report merge`: hosts from HOST=FILE or the file's directory; sums in JSON and CSV;
/// overlap and exports that do not follow the schema refused.
#[test]
fn report_merge_sums_exports_and_refuses_a_host_twice() {
    let dir = tempfile::tempdir().unwrap();
    let doc = |tx: u64| {
        let traffic =
            format!(r#"{{"payload_tx":{tx},"payload_rx":1,"wire_tx":0,"wire_rx":0,"packets_tx":0,"packets_rx":0}}"#);
        let period = r#"{"label":"2026-W47","kind":"iso_week","time_zone":"UTC","since":"2026-11-16T00:00:00Z",
            "until":"2026-11-23T00:00:00Z","since_local":"2026-11-16T00:00:00+00:00",
            "until_local":"2026-11-23T00:00:00+00:00","seconds":604800}"#;
        format!(
            r#"{{"schema":"monitor.report/1","period":{period},"previous_period":{period},"app_filter":null,"session":null,
               "generated_at":null,"totals":{traffic},
               "apps":[{{"app":"a","traffic":{traffic},"flows":2,"by_country":[],"by_asn":[]}}],
               "completeness":{{"notes":[]}},"databases":[],"attribution":{{"text":"x","applies":false}}}}"#
        )
    };
    fs::create_dir(dir.path().join("lab-02")).unwrap();
    let (one, two) = (dir.path().join("one.json"), dir.path().join("lab-02/2026-W47.json"));
    fs::write(&one, doc(10)).unwrap();
    fs::write(&two, doc(32)).unwrap();
    let first = format!("lab-01={}", one.display());
    let out = monitor(&["report", "merge", &first, two.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["totals"]["payload_tx"], 42);
    assert_eq!(merged["hosts"][1]["host"], "lab-02");
    let out = monitor(&["report", "merge", &first, two.to_str().unwrap(), "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.contains("\nhost,,lab-01,,,,,,,,,10,1,11,0,0,2,,\n"), "{csv}");
    assert!(csv.contains("\napp_host,a,lab-02,,,,,,,,,32,1,33,0,0,2,,\n"), "{csv}");
    assert!(csv.contains("\napp,a,a,,,,,,,,,42,2,44,0,0,4,,\n"), "{csv}");
    let twice = format!("lab-02={}", one.display());
    let out = monitor(&["report", "merge", &twice, two.to_str().unwrap()]);
    assert_clean_failure(&out, 2, "host `lab-02` appears in more than one input");
    fs::write(&one, r#"{"schema":"monitor.report/1","period":{"label":"2026-W47"}}"#).unwrap();
    let out = monitor(&["report", "merge", &first, two.to_str().unwrap()]);
    assert_clean_failure(&out, 2, "`lab-01` does not follow the report schema");
    // A field of the wrong kind in a later input (the merge adds into it): refused, no panic.
    fs::write(&one, doc(10)).unwrap();
    fs::write(&two, doc(32).replace(r#""completeness":{"notes":[]}"#, r#""completeness":5"#)).unwrap();
    let out = monitor(&["report", "merge", &first, two.to_str().unwrap()]);
    assert_clean_failure(&out, 2, "`lab-02` does not follow the report schema: invalid type: integer `5`");
    // An input that cannot be read is a bad argument too (it was exit 1).
    let missing = dir.path().join("lab-03/2026-W47.json");
    let out = monitor(&["report", "merge", &first, &format!("lab-03={}", missing.display())]);
    assert_clean_failure(&out, 2, "cannot read the export");
}

#[test]
fn report_guest_journal_flags_are_checked_and_a_missing_guest_journal_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let host_dir = dir.path().join("host");
    let guest_dir = dir.path().join("guest");
    fs::create_dir_all(&host_dir).unwrap();
    fs::create_dir_all(&guest_dir).unwrap();
    let host = empty_journal(&host_dir);
    let guest = empty_journal(&guest_dir);
    let (h, g) = (host.to_str().unwrap(), guest.to_str().unwrap());
    let week = ["report", "--week", "2026-W47", "--format", "json", "--journal", h];
    let tolerance_alone = [&week[..], &["--skew-tolerance", "30"]].concat();
    assert_clean_failure(&monitor(&tolerance_alone), 2, "--guest-journal");
    let missing = dir.path().join("pulled/journal.db");
    let with_missing = [&week[..], &["--guest-journal", missing.to_str().unwrap()]].concat();
    assert_clean_failure(&monitor(&with_missing), 5, "pulled/journal.db");
    assert!(!missing.exists(), "a reader never creates a journal");
    let out = monitor(&[&week[..], &["--guest-journal", g, "--skew-tolerance", "30"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["emulator_join"],
        serde_json::json!({"guest_journal": g, "skew_tolerance_secs": 30, "emulators": [], "packages": [],
                           "unexplained": []})
    );
    let plain = monitor(&week);
    let doc: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(doc.get("emulator_join").is_none(), "absent without --guest-journal");
}

/// What a tampered journal can hold in a text column: a newline that would start a line of its
/// own, an SGR sequence, a table pipe and a bidi override.
const HOSTILE: &str = "h\nforged line\x1b[31m|x\u{202e}";

/// No raw control or bidi character in `text` other than line ends, and no line that starts
/// with the text after the hostile newline.
fn assert_escaped(text: &str) {
    let bad: Vec<char> = text.chars().filter(|c| *c != '\n' && monitor::escape::is_invisible(*c)).collect();
    assert!(bad.is_empty(), "raw {bad:?} in\n{text}");
    assert!(!text.lines().any(|l| l.trim_start_matches(['│', '┆', ' ']).starts_with("forged line")), "{text}");
    assert!(text.contains(&monitor::escape::terminal(HOSTILE)), "{text}");
}

#[test]
fn status_escapes_a_hostile_daemon_version_and_degradations() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let conn = rusqlite::Connection::open(&journal).unwrap();
    let n = conn.execute("UPDATE daemon_state SET version = ?1, degradations = ?1", [HOSTILE]).unwrap();
    assert_eq!(n, 1, "the daemon_state row");
    drop(conn);
    let out = monitor(&["status", "--journal", journal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_escaped(&text);
    assert!(text.contains(&format!("version {}\n", monitor::escape::terminal(HOSTILE))), "{text}");
}

#[test]
fn alerts_escape_a_hostile_rule() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let conn = rusqlite::Connection::open(&journal).unwrap();
    conn.execute(
        "INSERT INTO alerts (period, claim, destination, app, pid, rule, first_ms, last_ms, repeats, payload_tx,
                             payload_rx)
         VALUES ('2026-W47', 'eu-only', '192.0.2.1:443', 'curl', 7, ?1, 1794805200000, 1794805200000, 1, 10, 20)",
        [HOSTILE],
    )
    .unwrap();
    drop(conn);
    let out = monitor(&["alerts", "--journal", journal.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_escaped(&text);
    assert!(text.ends_with("\n1 alerts\n"), "{text}");
    // Header, one row, three rules: five lines of table.
    assert_eq!(text.lines().count(), 6, "{text}");
}

/// A mistyped address is said to be one (not looked up as a host name in the journal); a
/// target that is neither is a usage error too.
#[test]
fn lookup_names_a_mistyped_address_as_such() {
    let f = config("");
    for target in ["999.1.1.1", "10.1", "fe80::zz"] {
        let out = monitor(&["--config", f.path().to_str().unwrap(), "lookup", target]);
        assert_clean_failure(&out, 2, &format!("`{target}` is not a valid IP address"));
    }
    let out = monitor(&["--config", f.path().to_str().unwrap(), "lookup", "bad..name"]);
    assert_clean_failure(&out, 2, "neither an IP address nor a valid host name");
}

/// An internationalised host name is looked for in its ASCII form, which the answer shows
/// beside the name as given; one UTS 46 refuses is a usage error that says why.
#[test]
fn lookup_takes_an_internationalised_host_name_in_its_ascii_form() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let journal = journal.to_str().unwrap();
    let out = monitor(&["lookup", "--journal", journal, "Bücher.example"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("Bücher.example (xn--bcher-kva.example): not seen in the journal")
    );
    let out = monitor(&["lookup", "--json", "--journal", journal, "Bücher.example", "xn--bcher-kva.example"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answers"][0]["query"], "xn--bcher-kva.example", "{v}");
    assert_eq!(v["answers"][0]["unicode"], "Bücher.example", "{v}");
    assert_eq!(v["answers"][1]["query"], "xn--bcher-kva.example", "{v}");
    assert!(v["answers"][1].get("unicode").is_none(), "{v}");
    let out = monitor(&["lookup", "--journal", journal, "a\u{202e}b.example"]);
    assert_clean_failure(&out, 2, "not a valid internationalised host name");
}

/// `exec --cgroup` naming no cgroup is a usage error (exit 2), as for the daemon's `cgroup`.
#[test]
fn exec_with_a_cgroup_that_does_not_exist_is_a_usage_error() {
    let f = config("");
    let out = monitor(&[
        "--config",
        f.path().to_str().unwrap(),
        "exec",
        "--session",
        "s1",
        "--cgroup",
        "/monitor-test-no-such-cgroup",
        "--",
        "true",
    ]);
    assert_clean_failure(&out, 2, "monitor-test-no-such-cgroup");
}

/// A private address is never looked up: `lookup` says so instead of "country unknown (no
/// database)", whatever databases are installed.
#[test]
fn lookup_of_a_private_address_says_it_is_not_looked_up() {
    let journal = tempfile::tempdir().unwrap();
    let journal = journal.path().join("none.db");
    let out = monitor(&["lookup", "--journal", journal.to_str().unwrap(), "10.0.0.1", "fd00::1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for ip in ["10.0.0.1", "fd00::1"] {
        let line = text.lines().find(|l| l.starts_with(&format!("{ip}:"))).unwrap_or_else(|| panic!("{text}"));
        assert!(line.contains("not looked up") && !line.contains("unknown"), "{line}");
    }
}

/// A running daemon that has written nothing for many flush intervals (its journal's disk is
/// full, frozen or its file removed): `status` says so, and that it has not recorded its
/// databases yet, instead of calling the configured ones "not what the daemon uses" (found by an
/// adversarial pass).
#[test]
fn status_says_when_a_running_daemon_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    // A process holding the journal's lock stands in for the daemon (whatever its name).
    let mut daemon = hold_lock(&journal);
    let started = jiff::Timestamp::now().as_millisecond() - 600_000;
    let conn = rusqlite::Connection::open(&journal).unwrap();
    let n = conn
        .execute(
            "UPDATE daemon_state SET pid = ?1, started_ms = ?2, last_flush_ms = NULL, flushes = 0,
                 flush_interval_secs = 5",
            rusqlite::params![daemon.id(), started],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let out = monitor(&["status", "--journal", journal.to_str().unwrap()]);
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("(running)"), "{text}");
    assert!(text.contains("warning   the daemon has written nothing to this journal for 6"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("geo ")) {
        assert!(line.ends_with("the daemon has not recorded the databases it uses yet"), "{line}");
    }
}

/// Output that cannot be written (a full disk: /dev/full) is an error, for every command that
/// prints: `config dump > monitor.toml` on a full disk exited 0 with nothing written (found by an
/// adversarial pass). A closed pipe stays a quiet success (`| head`).
#[test]
fn output_to_a_full_disk_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let journal = journal.to_str().unwrap();
    let commands: [&[&str]; 4] = [
        &["config", "dump"],
        &["check", "--json"],
        &["status", "--journal", journal],
        &["lookup", "--journal", journal, "192.0.2.1"],
    ];
    for args in commands {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(full)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_clean_failure(&out, 1, "No space left on device");
    }
}

/// A metrics token file `run` refuses (missing, too short) is refused by `config dump` and
/// `check` too, and `run` refuses it before it creates or opens its journal: they passed it, and
/// a refused `run` left a `daemon_state` of a run that never was (found by an adversarial pass).
#[test]
fn a_metrics_token_file_run_refuses_is_refused_by_check_and_config_dump_too() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.token");
    fs::write(&short, "0123456789\n").unwrap();
    let journal = dir.path().join("journal.db");
    for token in [dir.path().join("missing.token"), short] {
        let f = config(&format!(
            "[journal]\npath = \"{}\"\n[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n",
            journal.display(),
            token.display()
        ));
        let cfg = f.path().to_str().unwrap();
        for args in [&["config", "dump"][..], &["check"]] {
            let out = monitor(&[&["--config", cfg][..], args].concat());
            assert_clean_failure(&out, 2, "metrics.token_file");
        }
        if nix::unistd::geteuid().is_root() {
            let out = monitor_bounded(&["--config", cfg, "run", "--output", "none"]);
            assert_clean_failure(&out, 2, "token");
            assert!(!journal.exists(), "a refused run created its journal");
        } else {
            eprintln!("SKIP (not root): `run` with a bad token file");
        }
    }
}

/// `flock` holding `journal`'s single-writer lock (as a daemon does), once it holds it.
fn hold_lock(journal: &Path) -> std::process::Child {
    let lock = format!("{}.lock", journal.display());
    // `-o`: its child `cat` does not hold the lock, and ends with its stdin when the test drops it.
    let child = Command::new("flock").args(["-x", "-o", &lock, "cat"]).stdin(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while Command::new("flock").args(["-n", &lock, "true"]).status().unwrap().success() {
        assert!(started.elapsed() < Duration::from_secs(10), "flock did not take {lock}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

/// `status` says a daemon runs when a process holds the journal's lock, not when its recorded
/// pid is a process named `monitor`: a daemon run from a renamed binary was "not running", and
/// any process named `monitor` reusing a dead daemon's pid "running" (found by an adversarial pass).
#[test]
fn status_says_running_when_the_lock_is_held_whatever_the_names() {
    let dir = tempfile::tempdir().unwrap();
    let journal = empty_journal(dir.path());
    let fake = dir.path().join("monitor");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let mut impostor = Command::new(&fake).arg("60").spawn().unwrap();
    let conn = rusqlite::Connection::open(&journal).unwrap();
    assert_eq!(conn.execute("UPDATE daemon_state SET pid = ?1", [impostor.id()]).unwrap(), 1);
    drop(conn);
    let status = || {
        let out = monitor(&["status", "--json", "--journal", journal.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["running"].clone()
    };
    assert_eq!(status(), false, "a process named monitor without the lock");
    let mut holder = hold_lock(&journal);
    assert_eq!(status(), true, "the lock held by a process named flock");
    // Not the recorded daemon's pid: the text says who holds the lock.
    let out = monitor(&["status", "--journal", journal.to_str().unwrap()]);
    let text = String::from_utf8(out.stdout).unwrap();
    let said = format!("pid {} (not running; process {} holds the journal's lock)", impostor.id(), holder.id());
    assert!(text.contains(&said), "{said} in {text}");
    for p in [&mut impostor, &mut holder] {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// `--prometheus` is a fleet report of a week or range: with `--session` (one machine's journal)
/// it is a usage error; the session's local report was printed as if it were the fleet's (found
/// by an adversarial pass).
/// A `--prometheus` URL that is not `http://` (https, no scheme) is a usage error that says what
/// to give, before anything is fetched (it was a failed fetch, exit 1, "http: invalid format").
#[test]
fn a_prometheus_url_other_than_http_is_a_usage_error() {
    for url in ["https://127.0.0.1:1", "127.0.0.1:9090", "ftp://x"] {
        let out = monitor(&["report", "--prometheus", url, "--week", "2026-W49"]);
        assert_clean_failure(&out, 2, "http://");
    }
}

#[test]
fn a_fleet_report_of_a_session_is_a_usage_error() {
    let out = monitor(&["report", "--prometheus", "http://127.0.0.1:1/", "--session", "build-42"]);
    assert_clean_failure(&out, 2, "--session");
}
