//! Reports, ranges, merges and outputs as a user runs them.

use std::{
    fs,
    process::{Command, Output, Stdio},
};

use super::{assert_clean_failure, config, empty_journal, monitor, monitor_bounded, stderr};
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
