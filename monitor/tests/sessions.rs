//! Sessions, diffs, the journal check and evidence bundles through the `monitor` binary: exit
//! codes and messages as documented (README, *Sessions, diffs and evidence*).
#![expect(clippy::unwrap_used, reason = "test helpers panic on failure (house style R16)")]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::{
    path::Path,
    process::{Command, Output},
};

use jiff::Timestamp;
use monitor::{
    enrich::{Destination, Scope},
    identity::{App, AppSource},
    journal::{JournalConfig, JournalWriter, RunInfo},
    tracker::{
        FlowRecord,
        record::{Payload, Wire},
    },
};

fn monitor(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

fn err(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A journal as a daemon leaves it (schema, no records) and a config naming it and `extra`.
/// Opens the journal's writer, waiting a moment while its lock is held: a child that another
/// test of this binary forks between this test's last writer taking the lock and dropping it
/// holds the lock until its exec (the descriptor is close-on-exec); under load that took longer
/// than the next open (a flaky failure, `Locked`).
fn open_writer(config: &JournalConfig, run: &RunInfo) -> JournalWriter {
    let zone = monitor::zone::Zone::get("UTC").unwrap();
    let started = std::time::Instant::now();
    loop {
        match JournalWriter::open(config, run.clone(), &zone) {
            Err(monitor::journal::Error::Locked { .. }) if started.elapsed() < std::time::Duration::from_secs(5) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            opened => return opened.unwrap(),
        }
    }
}

fn setup(dir: &Path, extra: &str) -> std::path::PathBuf {
    let journal = dir.join("journal.db");
    let config = JournalConfig { path: journal.clone(), ..JournalConfig::default() };
    let run = RunInfo { pid: 1, started_at: jiff::Timestamp::now(), config_path: None };
    drop(open_writer(&config, &run));
    let path = dir.join("monitor.toml");
    std::fs::write(&path, format!("[journal]\npath = \"{}\"\n\n{extra}", journal.display())).unwrap();
    path
}

#[test]
fn sessions_diff_journal_check_and_bundles_exit_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("e.key");
    let cfg = setup(dir.path(), &format!("[evidence]\nsecret_key = \"{}\"\n", key.display()));

    assert_eq!(code(&monitor(&cfg, &["session", "start", "a"])), Some(0));
    let again = monitor(&cfg, &["session", "start", "a"]);
    assert_eq!(code(&again), Some(2), "{}", err(&again));
    assert!(err(&again).contains("session `a` already exists"), "{}", err(&again));
    let bad = monitor(&cfg, &["session", "start", "a/b"]);
    assert_eq!(code(&bad), Some(2));
    assert!(err(&bad).contains("invalid session name"));
    assert_eq!(code(&monitor(&cfg, &["session", "stop", "a"])), Some(0));
    assert_eq!(code(&monitor(&cfg, &["session", "stop", "nope"])), Some(2));
    let list = monitor(&cfg, &["session", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v[0]["name"], "a");

    // Nothing new between a session and itself; JSON report files work as sides too.
    let diff = monitor(&cfg, &["diff", "a", "session:a", "--format", "json"]);
    assert_eq!(code(&diff), Some(0), "{}", err(&diff));
    let not_report = dir.path().join("x.json");
    std::fs::write(&not_report, "{\"schema\": \"other\"}").unwrap();
    let diff = monitor(&cfg, &["diff", "a", not_report.to_str().unwrap()]);
    assert_eq!(code(&diff), Some(2), "{}", err(&diff));

    assert_eq!(code(&monitor(&cfg, &["journal", "verify"])), Some(0));

    // A configured key that does not exist: exit 2 before anything is written.
    let out = dir.path().join("bundle");
    let missing = monitor(&cfg, &["evidence", "--session", "a", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&missing), Some(2), "{}", err(&missing));
    assert!(err(&missing).contains("does not exist") && !out.exists(), "{}", err(&missing));
    assert_eq!(code(&monitor(&cfg, &["keygen"])), Some(0));
    assert_eq!(code(&monitor(&cfg, &["keygen"])), Some(2), "keygen keeps an existing key");
    let made = monitor(&cfg, &["evidence", "--session", "a", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&made), Some(0), "{}", err(&made));
    let check = monitor(
        &cfg,
        &["evidence", "verify", out.to_str().unwrap(), "--public-key", dir.path().join("e.pub").to_str().unwrap()],
    );
    assert_eq!(code(&check), Some(0), "{}", String::from_utf8_lossy(&check.stdout));
    // Writing into the same (now non-empty) directory is refused.
    let again = monitor(&cfg, &["evidence", "--session", "a", "--out", out.to_str().unwrap()]);
    assert_eq!(code(&again), Some(2));
    assert!(err(&again).contains("not empty"), "{}", err(&again));
    // One changed byte: exit 13, naming the file.
    let report = out.join("report.md");
    let mut bytes = std::fs::read(&report).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&report, bytes).unwrap();
    let check = monitor(&cfg, &["evidence", "verify", out.to_str().unwrap()]);
    assert_eq!(code(&check), Some(13));
    assert!(String::from_utf8_lossy(&check.stdout).contains("report.md was changed"));
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A signed bundle of session `a` in `dir/signed`, made with `cfg`'s key (created here).
fn signed_bundle(cfg: &Path, dir: &Path) -> std::path::PathBuf {
    assert_eq!(code(&monitor(cfg, &["keygen"])), Some(0));
    assert_eq!(code(&monitor(cfg, &["session", "start", "a"])), Some(0));
    assert_eq!(code(&monitor(cfg, &["session", "stop", "a"])), Some(0));
    let signed = dir.join("signed");
    let made = monitor(cfg, &["evidence", "--session", "a", "--out", signed.to_str().unwrap()]);
    assert_eq!(code(&made), Some(0), "{}", err(&made));
    signed
}

/// The repro of the unsigned-bundle bypass: `signed` copied, `report.md` changed and re-hashed,
/// `MANIFEST.minisig` and `evidence.pub` removed with their manifest lines.
fn strip_signature(signed: &Path, out: &Path) {
    use sha2::{Digest as _, Sha256};
    std::fs::create_dir(out).unwrap();
    for entry in std::fs::read_dir(signed).unwrap() {
        let name = entry.unwrap().file_name();
        if name != "MANIFEST.minisig" && name != "evidence.pub" {
            std::fs::copy(signed.join(&name), out.join(&name)).unwrap();
        }
    }
    let mut text = std::fs::read_to_string(out.join("report.md")).unwrap();
    text.push_str("\nnothing to see here\n");
    std::fs::write(out.join("report.md"), &text).unwrap();
    let hash: String = Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let manifest: String = std::fs::read_to_string(out.join("MANIFEST"))
        .unwrap()
        .lines()
        .filter(|l| !l.ends_with("  evidence.pub"))
        .map(|l| if l.ends_with("  report.md") { format!("{hash}  report.md\n") } else { format!("{l}\n") })
        .collect();
    std::fs::write(out.join("MANIFEST"), manifest).unwrap();
}

#[test]
fn evidence_verify_with_a_trusted_key_fails_an_unsigned_bundle_and_refuses_a_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = (dir.path().join("ev.key"), dir.path().join("ev.pub"));
    let cfg = setup(dir.path(), &format!("[evidence]\nsecret_key = \"{}\"\n", key.display()));
    let signed = signed_bundle(&cfg, dir.path());
    let resigned = dir.path().join("resigned");
    strip_signature(&signed, &resigned);
    let verify = |cfg: &Path, bundle: &Path, key: Option<&Path>| {
        let mut args = vec!["evidence", "verify", bundle.to_str().unwrap()];
        if let Some(k) = key {
            args.extend(["--public-key", k.to_str().unwrap()]);
        }
        monitor(cfg, &args)
    };

    // No trusted key: integrity only, reported as unsigned.
    let check = verify(&cfg, &resigned, None);
    assert_eq!(code(&check), Some(0), "{}", out(&check));
    assert!(out(&check).contains("signature unsigned") && out(&check).contains("intact"), "{}", out(&check));
    // A trusted key on the command line or in the config: exit 13.
    let trusted = dir.path().join("trusted.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&trusted, format!("{text}public_key = \"{}\"\n", public.display())).unwrap();
    for check in [verify(&cfg, &resigned, Some(&public)), verify(&trusted, &resigned, None)] {
        assert_eq!(code(&check), Some(13), "{}{}", out(&check), err(&check));
        assert!(
            out(&check).contains("the bundle is not signed, but a trusted public key was given"),
            "{}",
            out(&check)
        );
        assert!(out(&check).contains("TAMPERED"), "{}", out(&check));
    }
    // The signed original still verifies with it.
    let check = verify(&trusted, &signed, None);
    assert_eq!(code(&check), Some(0), "{}", out(&check));

    // A trusted key that is missing or not a key: exit 2, naming the key file, for either bundle.
    let missing = dir.path().join("missing.pub");
    let garbage = dir.path().join("garbage.pub");
    std::fs::write(&garbage, "not a key\n").unwrap();
    for bad in [&missing, &garbage] {
        for bundle in [&signed, &resigned] {
            let check = verify(&cfg, bundle, Some(bad));
            assert_eq!(code(&check), Some(2), "{}{}", out(&check), err(&check));
            assert!(err(&check).contains(&format!("public key `{}`", bad.display())), "{}", err(&check));
            assert!(!err(&check).contains("evidence bundle"), "the key is not a bundle: {}", err(&check));
        }
    }
}

#[test]
fn keygen_refuses_one_file_for_both_keys_and_leaves_no_half_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "");
    std::fs::create_dir(dir.path().join("k")).unwrap();
    for public in ["k/o.key", "./k/o.key", "k/../k/o.key"] {
        let same = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .current_dir(dir.path())
            .arg("--config")
            .arg(&cfg)
            .args(["keygen", "--secret-key", "k/o.key", "--public-key", public])
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert_eq!(code(&same), Some(2), "{public}: {}", err(&same));
        assert!(err(&same).contains("same file"), "{public}: {}", err(&same));
        assert!(!dir.path().join("k/o.key").exists(), "{public}: a secret key was written");
    }
    // The public key cannot be written: no secret key is left behind either.
    let secret = dir.path().join("k/s.key");
    let public = dir.path().join("no-dir/s.pub");
    let failed =
        monitor(&cfg, &["keygen", "--secret-key", secret.to_str().unwrap(), "--public-key", public.to_str().unwrap()]);
    assert_eq!(code(&failed), Some(2), "{}", err(&failed));
    assert!(err(&failed).contains("no-dir/s.pub"), "{}", err(&failed));
    assert!(!secret.exists(), "a secret key without its public key was left behind");
    // With --force over an existing pair, a public key that cannot be written leaves the old pair
    // as it was (not a new secret key without its public key, nor no key at all).
    let public = dir.path().join("k/s.pub");
    let args = ["keygen", "--secret-key", secret.to_str().unwrap(), "--public-key", public.to_str().unwrap()];
    assert_eq!(code(&monitor(&cfg, &args)), Some(0));
    let old = (std::fs::read(&secret).unwrap(), std::fs::read(&public).unwrap());
    std::fs::remove_file(&public).unwrap();
    std::fs::create_dir(&public).unwrap(); // a directory where the public key goes: its write fails
    let mut forced = args.to_vec();
    forced.push("--force");
    let failed = monitor(&cfg, &forced);
    assert_ne!(code(&failed), Some(0), "{}", err(&failed));
    assert_eq!(std::fs::read(&secret).unwrap(), old.0, "the old secret key is kept");
    std::fs::remove_dir(&public).unwrap();
    std::fs::write(&public, &old.1).unwrap();
    assert_eq!(code(&monitor(&cfg, &forced)), Some(0), "--force replaces a whole pair");
    assert_ne!(std::fs::read(&secret).unwrap(), old.0);
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the new secret key is private");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("k"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".monitor-key"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A closed TCP flow of `tx` payload bytes up at `at`, of app `curl`.
fn record(cookie: u64, tx: u64, at: Timestamp) -> FlowRecord {
    let payload = Payload { tx_bytes: tx, rx_bytes: 0 };
    let wire = Wire { tx_bytes: tx + 40, tx_packets: 1, rx_bytes: 0, rx_packets: 0 };
    let curl = support::Proc { tgid: 7, uid: 1000, comm: "curl" };
    support::close_record(cookie, &curl, "192.0.2.9:443", (payload, wire), at)
}

/// The audit's repro: `session start s1` at 10:23:47.1, 2,222 B at 10:23:49, `session stop s1`
/// at 10:24:05.2, 3,333 B at 10:24:06 (same minute); `s2` lasts 1.3 s around the 2,222 B. Their
/// reports, `--since/--until` with seconds, and the evidence bundle count exactly those records,
/// and the bundle's report agrees with its `connections.csv`.
#[test]
fn sessions_of_seconds_count_exactly_their_records_in_reports_and_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path(), "[report]\ntime_zone = \"UTC\"\n");
    let journal = dir.path().join("journal.db");
    let t = |s: &str| format!("2026-11-18T{s}Z").parse::<Timestamp>().unwrap();
    let config = JournalConfig { path: journal.clone(), ..JournalConfig::default() };
    let run = RunInfo { pid: 1, started_at: t("10:00:00"), config_path: None };
    let mut w = open_writer(&config, &run);
    let curl = std::sync::Arc::new(App {
        name: "curl".into(),
        exe: Some("/usr/bin/curl".into()),
        cmdline: None,
        pid: 7,
        start_time: 1,
        uid: 1000,
        user: None,
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Proc,
        android: None,
    });
    let documentation = Destination {
        scope: Scope::Documentation,
        country: None,
        asn: None,
        as_org: None,
        country_db: None,
        asn_db: None,
        answers: Default::default(),
        consensus: None,
    };
    w.append(&record(1, 2_222, t("10:23:49")), &curl, Some(&documentation));
    w.append(&record(2, 3_333, t("10:24:06")), &curl, Some(&documentation));
    w.flush().unwrap();
    drop(w);
    let conn = rusqlite::Connection::open(&journal).unwrap();
    for (name, since, until) in [("s1", "10:23:47.1", "10:24:05.2"), ("s2", "10:23:48", "10:23:49.3")] {
        conn.execute(
            "INSERT INTO sessions (name, started_ms, stopped_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, t(since).as_millisecond(), t(until).as_millisecond()],
        )
        .unwrap();
    }
    drop(conn);

    let payload = |args: &[&str]| {
        let o = monitor(&cfg, args);
        assert_eq!(code(&o), Some(0), "{args:?}: {}", err(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["totals"]["payload_tx"].as_u64().unwrap(), v["apps"].as_array().unwrap().len())
    };
    assert_eq!(payload(&["report", "--session", "s1", "--format", "json"]), (2_222, 1));
    assert_eq!(payload(&["report", "--session", "s2", "--format", "json"]), (2_222, 1));
    let range = ["report", "--since", "2026-11-18T10:24:05Z", "--until", "2026-11-18T10:24:07Z", "--format", "json"];
    assert_eq!(payload(&range), (3_333, 1));

    let bundle = dir.path().join("s1");
    let made = monitor(&cfg, &["evidence", "--session", "s1", "--out", bundle.to_str().unwrap()]);
    assert_eq!(code(&made), Some(0), "{}", err(&made));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("report.json")).unwrap()).unwrap();
    let csv = std::fs::read_to_string(bundle.join("connections.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = header.iter().position(|c| *c == "delta_payload_tx").unwrap();
    let listed: Vec<u64> = lines.map(|l| l.split(',').nth(column).unwrap().parse().unwrap()).collect();
    assert_eq!(listed, [2_222], "{csv}");
    assert_eq!(report["totals"]["payload_tx"], 2_222, "report.json agrees with connections.csv");
    assert_eq!(report["apps"][0]["app"], "curl");
}
