//! Claims end to end: apps in a namespace send known bytes to test hosts whose addresses the
//! MaxMind test databases place in known countries (SE, CN, and one of unknown country); a
//! claims file with one passing, one failing and one inconclusive claim must give exactly those
//! verdicts (`monitor verify` on the run's journal) with the exact violating bytes and
//! destination, and the live alert must fire once for the violating destination, reach the
//! alert command as JSON, and count the second violating flow as a repeat.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(name)
}

fn s(v: impl ToString) -> String {
    v.to_string()
}

const SE: &str = "89.160.20.112"; // GeoIP2-Country-Test: SE; GeoLite2-ASN-Test: AS29518
const CN: &str = "175.16.199.1"; // GeoIP2-Country-Test: CN; no ASN
const UNKNOWN: &str = "1.128.0.1"; // no country; AS1221 Telstra

const CLAIMS: &str = r#"
[[claims]]
name = "pass-se-only"
apps = ["app-pass"]
allowed_countries = ["SE"]
min_share = { percent = 100, countries = ["SE"] }

[[claims]]
name = "fail-no-cn"
apps = ["app-fail"]
direction = "upload"
denied_countries = ["CN"]

[[claims]]
name = "inconclusive-no-cn"
apps = ["app-inc"]
denied_countries = ["CN"]
"#;

pub fn verdicts_and_live_alert() {
    let pair = Pair::new("10.77.0.1", &[SE, CN, UNKNOWN], "fd77::1", &[]);
    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut servers = vec![
        spawn("tcp-server", &[format!("{SE}:5201"), s(5_000), s(1)], b),
        spawn("tcp-server", &[format!("{SE}:5202"), s(2_000), s(1)], b),
        spawn("tcp-server", &[format!("{CN}:5201"), s(3_000), s(2)], b),
        spawn("tcp-server", &[format!("{UNKNOWN}:5201"), s(1_000), s(1)], b),
    ];
    for srv in &mut servers {
        srv.line();
    }
    let dir = tempfile::tempdir().unwrap();
    let claims = dir.path().join("claims.toml");
    std::fs::write(&claims, CLAIMS).unwrap();
    let alerts_file = dir.path().join("alerts.jsonl");
    let extra = format!(
        "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n\n\
         [claims]\nfile = \"{}\"\nalert_command = [\"/bin/sh\", \"-c\", \"cat >> {}\"]\nalert_timeout_secs = 5\n\n\
         [[apps]]\nname = \"app-pass\"\nuid = [4242]\n\n[[apps]]\nname = \"app-fail\"\nuid = [4243]\n\n\
         [[apps]]\nname = \"app-inc\"\nuid = [4244]\n",
        fixture("GeoIP2-Country-Test.mmdb").display(),
        fixture("GeoLite2-ASN-Test.mmdb").display(),
        claims.display(),
        alerts_file.display(),
    );
    let mon = Monitor::start_in(&cg.path, dir, &extra);
    let a = |uid| Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(uid) };
    let clients = vec![
        spawn("tcp-client", &[format!("{SE}:5201"), s(30_000), s(1)], a(4242)),
        spawn("tcp-client", &[format!("{SE}:5202"), s(40_000), s(1)], a(4243)),
        // Two connections: 12,000 and 12,007 bytes up, 3,000 down each.
        spawn("tcp-client", &[format!("{CN}:5201"), s(12_000), s(2)], a(4243)),
        spawn("tcp-client", &[format!("{UNKNOWN}:5201"), s(8_000), s(1)], a(4244)),
    ];
    for c in clients {
        c.finish();
    }
    for srv in servers {
        srv.finish();
    }
    let out = mon.stop();
    out.assert_nothing_lost();

    // Verdicts from the journal.
    let verify = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(out.dir.path().join("monitor.toml"))
        .args(["verify", "--format", "json", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(10), "a claim fails: {}", String::from_utf8_lossy(&verify.stderr));
    let doc: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(doc["schema"], "monitor.verdicts/1");
    let claim = |name: &str| {
        doc["claims"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["claim"] == name)
            .unwrap_or_else(|| panic!("{name}: {doc:#}"))
            .clone()
    };
    let pass = claim("pass-se-only");
    assert_eq!(pass["verdict"], "pass", "{pass:#}");
    assert_eq!(pass["bytes"]["satisfying"], 30_000 + 5_000);
    assert_eq!(pass["bytes"]["violating"], 0);
    assert_eq!(pass["min_share_pct"], 100.0);

    let fail = claim("fail-no-cn");
    assert_eq!(fail["verdict"], "fail", "{fail:#}");
    assert_eq!(fail["bytes"]["violating"], 12_000 + 12_007);
    assert_eq!(fail["bytes"]["satisfying"], 40_000);
    let violations = fail["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "one violating destination: {fail:#}");
    let v = &violations[0];
    assert_eq!(
        (v["rule"].as_str(), v["app"].as_str(), v["bytes"].as_u64()),
        (Some("denied_countries"), Some("app-fail"), Some(24_007))
    );
    let d = &v["destination"];
    assert_eq!((d["ip"].as_str(), d["country"].as_str()), (Some(CN), Some("CN")));
    assert_eq!(
        (d["payload_tx"].as_u64(), d["payload_rx"].as_u64(), d["flows"].as_u64()),
        (Some(24_007), Some(6_000), Some(2))
    );
    assert_eq!(d["country_db"]["database_type"], "GeoIP2-Country");
    let procs = d["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "{procs:?}");
    assert_eq!(procs[0]["uid"], 4243);
    assert!(procs[0]["pid"].as_u64().unwrap() > 0);
    // RFC 3339 strings with trimmed fractions do not sort as text ("…:26Z" > "…:26.5Z").
    let seen = |k: &str| d[k].as_str().unwrap().parse::<jiff::Timestamp>().unwrap();
    assert!(seen("first_seen") <= seen("last_seen"), "{d:#}");

    let inc = claim("inconclusive-no-cn");
    assert_eq!(inc["verdict"], "inconclusive", "{inc:#}");
    assert_eq!(inc["bytes"]["unknown_country"], 8_000 + 1_000);
    assert_eq!(inc["bytes"]["violating"], 0);
    assert_eq!(doc["summary"], serde_json::json!({"pass": 1, "fail": 1, "inconclusive": 1}));

    // The live alert: logged once, stored once with the repeat counted, passed to the command once.
    let logged = out.log.matches("claim violated claim=fail-no-cn").count();
    assert_eq!(logged, 1, "{}", out.log);
    assert!(!out.log.contains("claim violated claim=pass") && !out.log.contains("claim violated claim=inconclusive"));
    let lines = std::fs::read_to_string(out.dir.path().join("alerts.jsonl")).unwrap();
    let sent: Vec<Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(sent.len(), 1, "{lines}");
    assert_eq!((sent[0]["claim"].as_str(), sent[0]["destination"].as_str()), (Some("fail-no-cn"), Some(CN)));
    assert_eq!((sent[0]["country"].as_str(), sent[0]["rule"].as_str()), (Some("CN"), Some("denied_countries")));
    let listed = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(out.dir.path().join("monitor.toml"))
        .args(["alerts", "--json"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["payload_tx"], 24_007, "{rows:?}");
    assert!(rows[0]["repeats"].as_u64().unwrap() >= 1, "the second flow is a repeat: {rows:?}");
}
