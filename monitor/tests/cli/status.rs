//! `status`, `lookup`, `exec`, alerts and the metrics flags as a user runs them; hostile text escaped.

use std::{
    fs,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{assert_clean_failure, config, empty_journal, monitor, monitor_bounded, stderr};
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
