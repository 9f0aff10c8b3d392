//! `monitor verify` and `monitor alerts` as a CI pipeline runs them: a journal with known bytes,
//! claims that pass, fail and are inconclusive, and the documented exit codes (0, 10, 11, 2).
#![expect(clippy::unwrap_used, reason = "test helpers panic on failure (house style R16)")]

mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::Arc,
};

use jiff::Timestamp;
use monitor::{
    enrich::{DbRef, Destination, Scope},
    identity::{App, AppSource},
    journal::{JournalConfig, JournalWriter, RunInfo},
    tracker::{
        FlowRecord,
        record::{Payload, Wire},
    },
};
use serde_json::Value;

fn app(name: &str, exe: &str) -> Arc<App> {
    Arc::new(App {
        name: name.into(),
        exe: Some(exe.into()),
        cmdline: None,
        pid: 77,
        start_time: 1,
        uid: 1000,
        user: Some("alice".into()),
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Proc,
        android: None,
    })
}

fn dest(country: Option<&str>, asn: u32, org: &str) -> Destination {
    Destination {
        scope: Scope::Public,
        country: country.map(Into::into),
        asn: Some(asn),
        as_org: Some(org.into()),
        country_db: Some(DbRef { database_type: "GeoIP2-Country".into(), build_epoch: 1_780_272_000 }),
        asn_db: Some(DbRef { database_type: "GeoLite2-ASN".into(), build_epoch: 1_780_272_000 }),
        answers: Default::default(),
        consensus: None,
    }
}

fn record(cookie: u64, remote: &str, tx: u64, rx: u64, at: Timestamp) -> FlowRecord {
    let payload = Payload { tx_bytes: tx, rx_bytes: rx };
    let wire = Wire { tx_bytes: tx + 40, tx_packets: 1, rx_bytes: rx + 40, rx_packets: 1 };
    support::close_record(cookie, &support::Proc { tgid: 77, uid: 1000, comm: "shop" }, remote, (payload, wire), at)
}

/// In 2026-W47: app `shop` sends 9,000 bytes to a US address (AS64500 "Oracle Corporation") and
/// 1,000 to a CN address; app `notes` sends 500 bytes to an address of unknown country.
fn journal(dir: &Path) -> PathBuf {
    let config = JournalConfig { path: dir.join("journal.db"), ..JournalConfig::default() };
    let mut w =
        JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap()).unwrap();
    let at: Timestamp = "2026-11-18T12:00:00Z".parse().unwrap();
    let shop = app("shop", "/opt/shop/bin/shop");
    w.append(
        &record(1, "198.51.100.7:443", 9_000, 4_000, at),
        &shop,
        Some(&dest(Some("US"), 64_500, "Oracle Corporation")),
    );
    w.append(&record(2, "203.0.113.9:443", 1_000, 200, at), &shop, Some(&dest(Some("CN"), 64_501, "Example CN")));
    let notes = app("notes", "/usr/bin/notes");
    w.append(&record(3, "192.0.2.44:443", 500, 0, at), &notes, Some(&dest(None, 64_502, "Example")));
    w.flush().unwrap();
    config.path
}

fn verify(dir: &Path, journal: &Path, claims: &str, format: &str) -> Output {
    let file = dir.join("claims.toml");
    fs::write(&file, claims).unwrap();
    let config = dir.join("monitor.toml");
    fs::write(&config, "").unwrap();
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--config", config.to_str().unwrap(), "verify", "--claims", file.to_str().unwrap()])
        .args(["--journal", journal.to_str().unwrap(), "--week", "2026-W47", "--format", format])
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

const PASS: &str = "[[claims]]\nname = \"shop-not-ru\"\napps = [\"shop\"]\ndenied_countries = [\"RU\"]\n";
const FAIL: &str = "[[claims]]\nname = \"shop-us-only\"\nexe = [\"/opt/shop/*\"]\ndirection = \"upload\"\n\
                    allowed_countries = [\"US\"]\n";
const INCONCLUSIVE: &str = "[[claims]]\nname = \"notes-not-cn\"\napps = [\"notes\"]\ndenied_countries = [\"CN\"]\n";

#[test]
fn verify_exit_codes_gate_on_pass_fail_and_inconclusive() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());

    let out = verify(dir.path(), &j, PASS, "json");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    assert_eq!(doc["schema"], "monitor.verdicts/1");
    assert_eq!(doc["claims"][0]["verdict"], "pass");
    assert_eq!(doc["claims"][0]["bytes"]["satisfying"], 9_000 + 4_000 + 1_000 + 200);

    let out = verify(dir.path(), &j, FAIL, "json");
    assert_eq!(out.status.code(), Some(10));
    let c = &json(&out)["claims"][0];
    assert_eq!(c["verdict"], "fail");
    assert_eq!((c["bytes"]["violating"].as_u64(), c["bytes"]["satisfying"].as_u64()), (Some(1_000), Some(9_000)));
    let v = &c["violations"][0];
    assert_eq!((v["rule"].as_str(), v["bytes"].as_u64()), (Some("allowed_countries"), Some(1_000)));
    let d = &v["destination"];
    assert_eq!(
        (d["ip"].as_str(), d["country"].as_str(), d["asn"].as_u64()),
        (Some("203.0.113.9"), Some("CN"), Some(64_501))
    );
    assert_eq!(
        (d["payload_tx"].as_u64(), d["payload_rx"].as_u64(), d["flows"].as_u64()),
        (Some(1_000), Some(200), Some(1))
    );
    assert_eq!(d["country_db"]["database_type"], "GeoIP2-Country");
    assert_eq!(d["processes"][0]["exe"], "/opt/shop/bin/shop");
    assert_eq!(d["processes"][0]["pid"], 77);
    assert_eq!(d["first_seen"], "2026-11-18T12:00:00Z");

    let out = verify(dir.path(), &j, INCONCLUSIVE, "json");
    assert_eq!(out.status.code(), Some(11));
    assert_eq!(json(&out)["claims"][0]["verdict"], "inconclusive");

    // All three: the worst verdict decides; the table and Markdown forms say the same.
    let all = format!("{PASS}{FAIL}{INCONCLUSIVE}");
    for format in ["table", "markdown"] {
        let out = verify(dir.path(), &j, &all, format);
        assert_eq!(out.status.code(), Some(10));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("PASS") && text.contains("FAIL") && text.contains("INCONCLUSIVE"), "{text}");
    }
    let out = verify(dir.path(), &j, &format!("{PASS}{INCONCLUSIVE}"), "json");
    assert_eq!(out.status.code(), Some(11));
}

#[test]
fn malformed_claims_are_usage_errors_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    for (claims, needle) in [
        ("[[claims]]\nname = \"x\"\napps = [\"a\"]\ndenied_country = [\"CN\"]\n", "denied_country"),
        ("[[claims]]\nname = \"x\"\napps = [\"a\"]\ndenied_countries = [\"China\"]\n", "not an ISO 3166-1 alpha-2"),
        (
            "[[claims]]\nname = \"x\"\napps = [\"a\"]\nmin_share = { percent = 150, countries = [\"US\"] }\n",
            "impossible",
        ),
    ] {
        let out = verify(dir.path(), &j, claims, "json");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{needle}: {err}");
    }
}

#[test]
fn alerts_lists_nothing_on_a_journal_without_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["alerts", "--json", "--journal", j.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out), serde_json::json!([]));
}

#[test]
fn weekly_export_of_verdicts_writes_json_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let file = dir.path().join("claims.toml");
    fs::write(&file, format!("{PASS}{FAIL}")).unwrap();
    let set = monitor::claims::ClaimSet::load(&file).unwrap();
    let reader = monitor::journal::JournalReader::open(&j).unwrap();
    let out = dir.path().join("reports");
    fs::create_dir(&out).unwrap();
    let formats = [monitor::report::Format::Json, monitor::report::Format::Markdown, monitor::report::Format::Csv];
    let written = monitor::claims::export_verdicts(
        &reader,
        "2026-W47",
        &monitor::zone::Zone::get("UTC").unwrap(),
        &out,
        &formats,
        &set,
        &file,
    )
    .unwrap();
    assert_eq!(written, [out.join("2026-W47.verdicts.json"), out.join("2026-W47.verdicts.md")]);
    let doc: Value = serde_json::from_slice(&fs::read(&written[0]).unwrap()).unwrap();
    assert_eq!(doc["summary"], serde_json::json!({"pass": 1, "fail": 1, "inconclusive": 0}));
    assert_eq!(doc["claims"][1]["bytes"]["violating"], 1_000);
    assert!(fs::read_to_string(&written[1]).unwrap().contains("shop-us-only: FAIL"));
}

#[test]
fn alerts_of_a_journal_from_before_the_alerts_table_are_none() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let conn = rusqlite::Connection::open(&j).unwrap();
    conn.execute_batch("DROP TABLE alerts; PRAGMA user_version = 3;").unwrap();
    drop(conn);
    let reader = monitor::journal::JournalReader::open(&j).unwrap();
    assert_eq!(reader.alerts(None).unwrap(), []);
    // verify needs no new table: the evidence comes from connection records.
    let out = verify(dir.path(), &j, FAIL, "json");
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
}

fn monitor_with(config_text: &str, dir: &Path, args: &[&str]) -> Output {
    let config = dir.join("monitor-with.toml");
    fs::write(&config, config_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["--config", config.to_str().unwrap()])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// `verify --session` judges the session's window only; `verify --journal-integrity` is the
/// journal's hash-chain check (exit 13 after a row changed); evidence bundles carry the verdicts.
#[test]
fn verify_takes_sessions_and_the_journal_check_and_bundles_carry_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let ms = |t: &str| t.parse::<Timestamp>().unwrap().as_millisecond();
    let conn = rusqlite::Connection::open(&j).unwrap();
    for (name, since, until) in [
        ("covers", "2026-11-18T11:00:00Z", "2026-11-18T13:00:00Z"),
        ("before", "2026-11-10T00:00:00Z", "2026-11-11T00:00:00Z"),
    ] {
        conn.execute(
            "INSERT INTO sessions (name, started_ms, stopped_ms) VALUES (?1, ?2, ?3)",
            rusqlite::params![name, ms(since), ms(until)],
        )
        .unwrap();
    }
    drop(conn);
    let claims = dir.path().join("claims.toml");
    fs::write(&claims, FAIL).unwrap();
    let (jp, cp) = (j.to_str().unwrap(), claims.to_str().unwrap());
    let base = ["verify", "--claims", cp, "--journal", jp, "--format", "json"];

    let out = monitor_with("", dir.path(), &[&base[..], &["--session", "covers"]].concat());
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    let c = &json(&out)["claims"][0];
    assert_eq!((c["verdict"].as_str(), c["bytes"]["violating"].as_u64()), (Some("fail"), Some(1_000)));
    let out = monitor_with("", dir.path(), &[&base[..], &["--session", "before"]].concat());
    assert_eq!(out.status.code(), Some(11), "no traffic in that window: {}", String::from_utf8_lossy(&out.stdout));
    let out = monitor_with("", dir.path(), &[&base[..], &["--session", "nope"]].concat());
    assert_eq!(out.status.code(), Some(2), "an unknown session is a usage error");

    let integrity = ["verify", "--journal-integrity", "--journal", jp];
    let out = monitor_with("", dir.path(), &integrity);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let conn = rusqlite::Connection::open(&j).unwrap();
    conn.execute("UPDATE connections SET payload_tx = payload_tx + 1 WHERE cookie = 2", []).unwrap();
    drop(conn);
    let out = monitor_with("", dir.path(), &integrity);
    assert_eq!(out.status.code(), Some(13), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("TAMPERED"));

    let bundle = dir.path().join("bundle");
    let config = format!("[journal]\npath = \"{jp}\"\n\n[claims]\nfile = \"{cp}\"\n");
    let out = monitor_with(&config, dir.path(), &["evidence", "--week", "2026-W47", "--out", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let verdicts: Value = serde_json::from_slice(&fs::read(bundle.join("verdicts.json")).unwrap()).unwrap();
    assert_eq!(verdicts["claims"][0]["verdict"], "fail");
    assert!(fs::read_to_string(bundle.join("MANIFEST")).unwrap().contains("verdicts.json"));
}

/// A window of seconds (not on the journal's 60 s residency intervals) around violating traffic
/// at 10:25:14 judges that traffic: FAIL, as the whole minute around it does, never
/// INCONCLUSIVE "no traffic"; a window of seconds beside it holds none.
#[test]
fn verify_judges_a_window_of_seconds_by_its_records() {
    let dir = tempfile::tempdir().unwrap();
    let config = JournalConfig { path: dir.path().join("journal.db"), ..JournalConfig::default() };
    let mut w =
        JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap()).unwrap();
    let at: Timestamp = "2026-11-18T10:25:14Z".parse().unwrap();
    let shop = app("shop", "/opt/shop/bin/shop");
    w.append(&record(1, "203.0.113.9:443", 1_000, 200, at), &shop, Some(&dest(Some("CN"), 64_501, "Example CN")));
    w.flush().unwrap();
    drop(w);
    let claims = dir.path().join("claims.toml");
    fs::write(&claims, FAIL).unwrap();
    let (jp, cp) = (config.path.to_str().unwrap(), claims.to_str().unwrap());
    let window = |since: &str, until: &str| {
        let base = ["verify", "--claims", cp, "--journal", jp, "--format", "json", "--time-zone", "UTC"];
        monitor_with("", dir.path(), &[&base[..], &["--since", since, "--until", until]].concat())
    };
    for (since, until) in [("2026-11-18T10:25:10Z", "2026-11-18T10:25:20Z"), ("2026-11-18T10:25Z", "2026-11-18T10:26Z")]
    {
        let out = window(since, until);
        assert_eq!(out.status.code(), Some(10), "[{since}, {until}): {}", String::from_utf8_lossy(&out.stdout));
        let c = &json(&out)["claims"][0];
        assert_eq!((c["verdict"].as_str(), c["bytes"]["violating"].as_u64()), (Some("fail"), Some(1_000)));
    }
    let out = window("2026-11-18T10:25:15Z", "2026-11-18T10:25:20Z");
    assert_eq!(out.status.code(), Some(11), "no traffic after 10:25:14: {}", String::from_utf8_lossy(&out.stdout));
}

/// With a claims file configured, `monitor report` carries the verdicts (JSON `claims`, and the
/// HTML page's Claims section) with the same bytes as `monitor verify`.
#[test]
fn reports_carry_the_claim_verdicts_when_claims_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let claims = dir.path().join("claims.toml");
    fs::write(&claims, format!("{PASS}{FAIL}")).unwrap();
    let config = format!("[journal]\npath = \"{}\"\n\n[claims]\nfile = \"{}\"\n", j.display(), claims.display());
    let out = monitor_with(&config, dir.path(), &["report", "--week", "2026-W47", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc = json(&out);
    let c = doc["claims"].as_array().expect("claims in the report");
    assert_eq!((c[0]["claim"].as_str(), c[0]["verdict"].as_str()), (Some("shop-not-ru"), Some("pass")));
    assert_eq!((c[1]["claim"].as_str(), c[1]["verdict"].as_str()), (Some("shop-us-only"), Some("fail")));
    assert_eq!((c[1]["violating"].as_u64(), c[1]["satisfying"].as_u64()), (Some(1_000), Some(9_000)));
    let out = monitor_with(&config, dir.path(), &["report", "--week", "2026-W47", "--format", "html"]);
    let page = String::from_utf8(out.stdout).unwrap();
    assert!(page.contains("<h2 id=\"claims\">Claims</h2>") && page.contains("<strong>FAIL</strong>"), "{page}");
    assert!(page.contains("1,000 B violate"), "the violating bytes on the page");
    // Without a claims file the report has no `claims` field.
    let plain = format!("[journal]\npath = \"{}\"\n", j.display());
    let out = monitor_with(&plain, dir.path(), &["report", "--week", "2026-W47", "--format", "json"]);
    assert!(json(&out).get("claims").is_none());
}

/// A claims file that checks nothing is a usage error, not a passing gate: no claims at all, or a
/// claim that selects apps but states no rule.
#[test]
fn claims_that_check_nothing_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    for (claims, needle) in [
        ("", "has no claims"),
        ("claims = []\n", "has no claims"),
        (
            "[[claims]]\nname = \"a\"\napps = [\"shop\"]\n",
            "claim `a` has no rule to check: add one of allowed_countries",
        ),
        (
            "[[claims]]\nname = \"a\"\napps = [\"shop\"]\ndirection = \"upload\"\n[claims.inconclusive]\nno_traffic = false\n",
            "claim `a` has no rule to check",
        ),
        // Rules no destination can meet check nothing either (an adversarial pass).
        ("[[claims]]\nname = \"a\"\napps = [\"shop\"]\ndenied_asns = [0]\n", "`denied_asns`: AS0 is reserved"),
        ("[[claims]]\nname = \"a\"\napps = [\"shop\"]\ndenied_orgs = [\"\"]\n", "`denied_orgs`: an empty pattern"),
        ("[[claims]]\nname = \"a\"\napps = [\"\"]\ndenied_asns = [1]\n", "`apps`: an empty app"),
        (
            "[[claims]]\nname = \"a\"\napps = [\"shop\"]\nmin_share = { percent = 50, asns = [0] }\n",
            "`min_share`: AS0 is reserved",
        ),
        (
            "[[claims]]\nname = \"a\"\napps = [\"shop\"]\ndenied_hosts = [\"bad host\"]\n",
            "`denied_hosts`: `bad host` can match no host name",
        ),
    ] {
        let out = verify(dir.path(), &j, claims, "json");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{claims:?}: {err}");
        assert!(err.contains(needle) && !err.contains("panicked"), "{needle}: {err}");
        assert!(out.stdout.is_empty(), "no verdicts: {}", String::from_utf8_lossy(&out.stdout));
    }
}

/// A claim's `groups` must name `[[apps]]` entries of the config: a group nothing defines selects
/// no traffic, and with `no_traffic = false` its claim passed on 0 bytes (an adversarial pass).
/// Refused by `verify` and by every command that reads the configured claims file; a defined
/// group selects the traffic its entry names.
#[test]
fn a_claim_naming_a_group_no_apps_entry_defines_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let claims = dir.path().join("grouped.toml");
    fs::write(
        &claims,
        "[[claims]]\nname = \"store-us\"\ngroups = [\"store\"]\nallowed_countries = [\"US\"]\n\
         [claims.inconclusive]\nno_traffic = false\n",
    )
    .unwrap();
    let claims = claims.to_str().unwrap();
    let verify_args = ["verify", "--claims", claims, "--journal", j.to_str().unwrap(), "--week", "2026-W47"];
    for config in ["", "[[apps]]\nname = \"stor\"\nexe = [\"/opt/shop/*\"]\n"] {
        let out = monitor_with(config, dir.path(), &verify_args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config:?}: {err}");
        assert!(
            err.contains("invalid claim `store-us`: `groups`: `store` is not the name of an `[[apps]]` entry"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "no verdicts: {}", String::from_utf8_lossy(&out.stdout));
        let configured = format!("{config}[claims]\nfile = \"{claims}\"\n");
        let out = monitor_with(&configured, dir.path(), &["config", "dump"]);
        assert_eq!(out.status.code(), Some(2), "config dump: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Defined: the group is the app name its entry gives (here that of the journal's app `shop`),
    // and selects its traffic: 1,000 B up and 200 down to CN break "US only".
    let grouped = dir.path().join("shop-group.toml");
    fs::write(&grouped, "[[claims]]\nname = \"shop-us\"\ngroups = [\"shop\"]\nallowed_countries = [\"US\"]\n").unwrap();
    let mut args = verify_args.to_vec();
    args[2] = grouped.to_str().unwrap();
    args.extend(["--format", "json"]);
    let out = monitor_with("[[apps]]\nname = \"shop\"\nexe = [\"/opt/shop/*\"]\n", dir.path(), &args);
    assert_eq!(out.status.code(), Some(10), "{}", String::from_utf8_lossy(&out.stderr));
    let v = json(&out);
    let claim = &v["claims"][0];
    assert_eq!((claim["verdict"].as_str(), claim["bytes"]["violating"].as_u64()), (Some("fail"), Some(1_200)), "{v}");
    // An unnamed destination has no name source (not "none").
    let destination = &claim["violations"][0]["destination"];
    assert!(destination.get("name_source").is_none(), "{destination}");
}

/// `verify --format` offers exactly the formats verdicts are written in; clap refuses the others
/// (exit 2), with --journal-integrity too.
#[test]
fn verify_format_accepts_only_the_verdict_formats() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let help = monitor_with("", dir.path(), &["verify", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    let help = String::from_utf8(help.stdout).unwrap();
    let at = help.find("--format <FORMAT>").unwrap_or_else(|| panic!("{help}"));
    let values = help[at..].split("\n      --").next().unwrap().to_lowercase();
    assert!(values.contains("possible values"), "{values}");
    assert!(values.contains("table") && values.contains("json") && values.contains("markdown"), "{values}");
    assert!(!values.contains("csv") && !values.contains("html"), "{values}");
    let jp = j.to_str().unwrap();
    for format in ["csv", "html"] {
        let out = verify(dir.path(), &j, PASS, format);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {err}");
        assert!(err.contains(&format!("invalid value '{format}'")), "{err}");
        let out = monitor_with("", dir.path(), &["verify", "--journal-integrity", "--journal", jp, "--format", format]);
        assert_eq!(out.status.code(), Some(2), "{format}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let out = monitor_with("", dir.path(), &["verify", "--journal-integrity", "--journal", jp, "--format", "markdown"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("table or json"));
    let out = monitor_with("", dir.path(), &["verify", "--journal-integrity", "--journal", jp, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json(&out)["structure"], serde_json::json!([]));
}

/// Overwrites page `page` of the SQLite file at `path` with pseudo-random bytes.
fn scribble(path: &Path, page: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    drop(conn);
    let mut bytes = fs::read(path).unwrap();
    let at = usize::try_from((page - 1) * size).unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ page.cast_unsigned();
    for b in &mut bytes[at..at + usize::try_from(size).unwrap()] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x.to_le_bytes()[0];
    }
    fs::write(path, bytes).unwrap();
}

/// `journal verify` (and `verify --journal-integrity`) run SQLite's structural check: a page of
/// a table the hash chain does not cover (`residency`), of `apps` (whose identities format-3
/// batches cover: the records of an app that cannot be read show as changed) or of an index
/// overwritten with random bytes is reported, exit 5, though every chained row is intact.
#[test]
fn journal_verify_reports_pages_damaged_outside_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let conn = rusqlite::Connection::open(&j).unwrap();
    let root = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let pages = [
        ("residency", root("SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = 'residency'")),
        ("apps", root("SELECT rootpage FROM sqlite_schema WHERE type = 'table' AND name = 'apps'")),
        (
            "an index",
            root(
                "SELECT rootpage FROM sqlite_schema WHERE type = 'index' AND tbl_name NOT IN
                     ('connections', 'stats', 'batches', 'meta') ORDER BY rootpage LIMIT 1",
            ),
        ),
    ];
    drop(conn);
    let config = |path: &Path| format!("[journal]\npath = \"{}\"\n", path.display());
    let out = monitor_with(&config(&j), dir.path(), &["journal", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("structure ok") && text.ends_with("intact\n"), "{text}");
    for (what, page) in pages {
        let copy = dir.path().join(format!("damaged-{page}.db"));
        fs::copy(&j, &copy).unwrap();
        scribble(&copy, page);
        let conn = rusqlite::Connection::open(&copy).unwrap();
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_ne!(check, "ok", "{what}: the test must damage the file");
        drop(conn);
        let out = monitor_with(&config(&copy), dir.path(), &["journal", "verify"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(5), "{what} (page {page}): {text}{}", String::from_utf8_lossy(&out.stderr));
        // The records of an app that cannot be read cannot be verified either.
        let ending = if what == "apps" { "\nCORRUPT, TAMPERED\n" } else { "\nCORRUPT\n" };
        assert!(text.contains("CORRUPT   ") && text.ends_with(ending), "{what}: {text}");
        if what != "apps" {
            assert!(!text.contains("PROBLEM"), "{what}: the chain itself is intact: {text}");
        }
        let out = monitor_with(
            "",
            dir.path(),
            &["verify", "--journal-integrity", "--journal", copy.to_str().unwrap(), "--format", "json"],
        );
        assert_eq!(out.status.code(), Some(5), "{what}: {}", String::from_utf8_lossy(&out.stderr));
        let doc = json(&out);
        assert!(!doc["structure"].as_array().unwrap().is_empty(), "{what}: {doc}");
        if what != "apps" {
            assert_eq!(doc["problems"], serde_json::json!([]), "{what}: the chain itself is intact");
        }
    }
}

/// Reports read sums the chain does not seal (`residency`, the weekly rollups): `journal verify`
/// recomputes them from the chained records. Erasing the CN bytes from the sums a claim reads
/// (the connection records untouched) is found, named by table and app, exit 13.
#[test]
fn journal_verify_finds_sums_edited_away_from_their_records() {
    let dir = tempfile::tempdir().unwrap();
    let j = journal(dir.path());
    let config = format!("[journal]\npath = \"{}\"\n", j.display());
    let out = monitor_with(&config, dir.path(), &["journal", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("figures   1 days and 1 weeks of sums compared") && text.ends_with("intact\n"), "{text}");
    let conn = rusqlite::Connection::open(&j).unwrap();
    conn.execute_batch("DELETE FROM residency_week WHERE country = 'CN'; DELETE FROM residency WHERE country = 'CN'")
        .unwrap();
    drop(conn);
    let out = monitor_with(&config, dir.path(), &["journal", "verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(13), "{text}");
    let named =
        text.lines().find(|l| l.starts_with("PROBLEM   residency sums of app \"shop\" at ")).unwrap_or_default();
    assert!(
        named.contains("country \"CN\"")
            && named.ends_with("for 2026-11-18 differ from the connections rows they are summed from"),
        "{text}"
    );
    assert!(!text.contains("app \"notes\"") && text.ends_with("\nTAMPERED\n"), "{text}");
    let out = monitor_with(&config, dir.path(), &["journal", "verify", "--json"]);
    assert_eq!(out.status.code(), Some(13));
    let doc = json(&out);
    let problems = doc["problems"].as_array().unwrap();
    assert!(problems.iter().all(|p| p["problem"] == "figures_differ" && p["app"] == "shop"), "{doc}");
    assert_eq!(doc["figures"]["days"], 1, "{doc}");
}
