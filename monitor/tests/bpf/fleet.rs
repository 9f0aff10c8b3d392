//! A fleet in one machine: two monitors, each with its own cgroup, journal and `[metrics]` port,
//! scraped every second by a real Prometheus (Debian's `prometheus`, started here on loopback).
//! After known traffic, PromQL returns exactly the bytes per app, country and direction that
//! each monitor's journal holds (and that the helpers sent), and `monitor report --prometheus`
//! (JSON and CSV) gives each host's payload, wire bytes and flows per app as its journal does.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

const SE: &str = "89.160.20.112"; // GeoIP2-Country-Test: SE
const GB: &str = "81.2.69.142"; // GB

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(name)
}

/// A loopback port free right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prometheus on loopback with its own data directory; killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `targets` (host label, port) every second.
    fn start(targets: &[(&str, u16)]) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: monitor\n    static_configs:\n",
        );
        for (host, port) in targets {
            config.push_str(&format!("      - targets: ['127.0.0.1:{port}']\n        labels: {{host: '{host}'}}\n"));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                crate::missing(format!("prometheus: {e} (`cargo xtask setup` installs Debian's prometheus)"));
                return None;
            }
        };
        let p = Self { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.get("/-/ready").is_none_or(|(code, _)| code != 200) {
            assert!(Instant::now() < deadline, "prometheus not ready within 30 s");
            thread::sleep(Duration::from_millis(200));
        }
        Some(p)
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        Some((code, text.split_once("\r\n\r\n")?.1.to_owned()))
    }

    /// An instant PromQL query's result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let mut encoded = String::new();
        for b in promql.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                encoded.push(char::from(b));
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        let (code, body) = self.get(&format!("/api/v1/query?query={encoded}")).unwrap();
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{code} {body}: {e}"));
        assert_eq!(v["status"], "success", "{v}");
        v["data"]["result"].as_array().unwrap().clone()
    }

    /// Scrapes of `host` that succeeded since the start (`up` is 1 for each).
    fn scrapes(&self, host: &str) -> u64 {
        let r = self.query(&format!("sum_over_time(up{{host=\"{host}\"}}[1h])"));
        r.first().and_then(|v| v["value"][1].as_str()?.parse().ok()).unwrap_or(0)
    }
}

/// (app, country, direction) → bytes from PromQL for `host`.
fn promql_bytes(p: &Prometheus, host: &str) -> BTreeMap<(String, String, String), u64> {
    let q = format!("sum by (app, country, direction) (monitor_app_payload_bytes_total{{host=\"{host}\"}})");
    p.query(&q)
        .iter()
        .map(|v| {
            let m = &v["metric"];
            let key =
                (s(m["app"].as_str().unwrap()), s(m["country"].as_str().unwrap()), s(m["direction"].as_str().unwrap()));
            (key, v["value"][1].as_str().unwrap().parse().unwrap())
        })
        .filter(|(_, b)| *b > 0)
        .collect()
}

/// (app, country, direction) → bytes from a monitor's journal (`monitor report --format json`).
fn journal_bytes(report: &Value) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for app in report["apps"].as_array().unwrap() {
        for share in app["by_country"].as_array().unwrap() {
            for (direction, field) in [("tx", "payload_tx"), ("rx", "payload_rx")] {
                let bytes = share["traffic"][field].as_u64().unwrap();
                if bytes > 0 {
                    let key = (s(app["app"].as_str().unwrap()), s(share["key"].as_str().unwrap()), s(direction));
                    out.insert(key, bytes);
                }
            }
        }
    }
    out
}

fn key(app: &str, country: &str, direction: &str) -> (String, String, String) {
    (s(app), s(country), s(direction))
}

pub fn prometheus_returns_each_journals_bytes_per_app_and_country() {
    let pair = Pair::new("10.78.0.1", &[SE, GB], "fd78::1", &[]);
    let (cg_a, cg_b) = (TestCgroup::new(), TestCgroup::new());
    let (port_a, port_b) = (free_port(), free_port());
    let Some(prom) = Prometheus::start(&[("lab-a", port_a), ("lab-b", port_b)]) else { return };
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut servers = vec![
        spawn("tcp-server", &[format!("{SE}:5201"), s(20_000), s(2)], b),
        spawn("tcp-server", &[format!("{GB}:5202"), s(30_000), s(1)], b),
    ];
    for srv in &mut servers {
        srv.line();
    }
    let config = |port: u16| {
        format!(
            "[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\n[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n\n\
             [[apps]]\nname = \"app-a\"\nuid = [4242]\n\n[[apps]]\nname = \"app-b\"\nuid = [4243]\n\n\
             [[apps]]\nname = \"app-c\"\nuid = [4244]\n",
            fixture("GeoIP2-Country-Test.mmdb").display(),
            fixture("GeoLite2-ASN-Test.mmdb").display()
        )
    };
    let mut mon_a = Monitor::start(&cg_a.path, &config(port_a));
    let mut mon_b = Monitor::start(&cg_b.path, &config(port_b));
    let a = |cg, uid| Place { netns: Some(&pair.a), cgroup: Some(cg), uid: Some(uid) };
    let clients = vec![
        spawn("tcp-client", &[format!("{SE}:5201"), s(300_000), s(1)], a(&cg_a, 4242)),
        spawn("tcp-client", &[format!("{GB}:5202"), s(100_000), s(1)], a(&cg_b, 4243)),
        spawn("tcp-client", &[format!("{SE}:5201"), s(50_000), s(1)], a(&cg_b, 4244)),
    ];
    for c in clients {
        c.finish();
    }
    for srv in servers {
        srv.finish();
    }
    mon_a.wait_for_flow(|v| v["event"] == "close" && v["app"]["name"] == "app-a");
    mon_b.wait_for_flow(|v| v["event"] == "close" && v["app"]["name"] == "app-b");
    mon_b.wait_for_flow(|v| v["event"] == "close" && v["app"]["name"] == "app-c");
    // Two more scrapes of each after the last record.
    let (before_a, before_b) = (prom.scrapes("lab-a"), prom.scrapes("lab-b"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.scrapes("lab-a") < before_a + 2 || prom.scrapes("lab-b") < before_b + 2 {
        assert!(Instant::now() < deadline, "prometheus does not scrape the monitors");
        thread::sleep(Duration::from_millis(250));
    }
    let from_prom_a = promql_bytes(&prom, "lab-a");
    let from_prom_b = promql_bytes(&prom, "lab-b");
    let fleet: Value = serde_json::from_str(&fleet_report(&prom, "json")).unwrap();
    let fleet_csv = fleet_report(&prom, "csv");
    let (out_a, out_b) = (mon_a.stop(), mon_b.stop());
    out_a.assert_nothing_lost();
    out_b.assert_nothing_lost();
    let (report_a, report_b) = (out_a.report_json(), out_b.report_json());
    let (journal_a, journal_b) = (journal_bytes(&report_a), journal_bytes(&report_b));

    // Ground truth: what the helpers sent and received.
    let truth_a = BTreeMap::from([(key("app-a", "SE", "tx"), 300_000), (key("app-a", "SE", "rx"), 20_000)]);
    let truth_b = BTreeMap::from([
        (key("app-b", "GB", "tx"), 100_000),
        (key("app-b", "GB", "rx"), 30_000),
        (key("app-c", "SE", "tx"), 50_000),
        (key("app-c", "SE", "rx"), 20_000),
    ]);
    assert_eq!(journal_a, truth_a, "journal of lab-a");
    assert_eq!(journal_b, truth_b, "journal of lab-b");
    assert_eq!(from_prom_a, journal_a, "PromQL for lab-a vs its journal");
    assert_eq!(from_prom_b, journal_b, "PromQL for lab-b vs its journal");
    eprintln!("    PromQL equals both journals: lab-a {from_prom_a:?}, lab-b {from_prom_b:?}");

    // `monitor report --prometheus`: the same numbers as the local reports added up.
    let hosts: Vec<&str> = fleet["hosts"].as_array().unwrap().iter().map(|h| h["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["lab-a", "lab-b"], "{fleet:#}");
    let mut both = journal_a.clone();
    both.extend(journal_b.clone());
    let mut from_report = BTreeMap::new();
    for app in fleet["apps"].as_array().unwrap() {
        for share in app["by_country"].as_array().unwrap() {
            for (direction, field) in [("tx", "payload_tx"), ("rx", "payload_rx")] {
                let bytes = share["traffic"][field].as_u64().unwrap();
                if bytes > 0 {
                    from_report
                        .insert(key(app["app"].as_str().unwrap(), share["key"].as_str().unwrap(), direction), bytes);
                }
            }
        }
    }
    assert_eq!(from_report, both, "monitor report --prometheus vs the journals");
    let by_host = |app: &str| -> Vec<(String, u64)> {
        let a = fleet["apps"].as_array().unwrap().iter().find(|a| a["app"] == app).unwrap();
        a["by_host"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (s(h["host"].as_str().unwrap()), h["traffic"]["payload_tx"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(by_host("app-a"), [(s("lab-a"), 300_000)]);
    assert_eq!(by_host("app-c"), [(s("lab-b"), 50_000)]);

    // Per host and app: wire bytes and flows (monitor_app_wire_bytes_total, monitor_app_flows_total)
    // equal each journal's, in the JSON and in the CSV rendering of the same fleet report.
    let mut from_journals = journal_columns(&report_a, "lab-a");
    from_journals.extend(journal_columns(&report_b, "lab-b"));
    assert!(from_journals.values().all(|c| c[2] > c[0] && c[4] == 1), "wire > payload, one flow: {from_journals:?}");
    let mut from_fleet = BTreeMap::new();
    for app in fleet["apps"].as_array().unwrap() {
        for h in app["by_host"].as_array().unwrap() {
            let t = &h["traffic"];
            let n = |v: &Value| v.as_u64().unwrap();
            let columns =
                [n(&t["payload_tx"]), n(&t["payload_rx"]), n(&t["wire_tx"]), n(&t["wire_rx"]), n(&h["flows"])];
            from_fleet.insert((s(h["host"].as_str().unwrap()), s(app["app"].as_str().unwrap())), columns);
        }
    }
    assert_eq!(from_fleet, from_journals, "fleet report per host vs the journals");
    assert_eq!(csv_columns(&fleet_csv), from_journals, "CSV fleet report per host vs the journals:\n{fleet_csv}");
    eprintln!("    fleet report per host (payload, wire, flows) equals both journals: {from_fleet:?}");
}

/// (host, app) → [payload tx, payload rx, wire tx, wire rx, flows] from a machine's own report.
fn journal_columns(report: &Value, host: &str) -> BTreeMap<(String, String), [u64; 5]> {
    report["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let t = &a["traffic"];
            let n = |v: &Value| v.as_u64().unwrap();
            let columns =
                [n(&t["payload_tx"]), n(&t["payload_rx"]), n(&t["wire_tx"]), n(&t["wire_rx"]), n(&a["flows"])];
            ((s(host), s(a["app"].as_str().unwrap())), columns)
        })
        .collect()
}

/// The same from the `app_host` rows of a CSV fleet report.
fn csv_columns(text: &str) -> BTreeMap<(String, String), [u64; 5]> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("app_host,")) {
        let f: Vec<&str> = line.split(',').collect();
        let n = |i: usize| f[i].parse::<u64>().unwrap();
        // section, app, key (host), …, payload_tx (11), payload_rx, payload, wire_tx (14), wire_rx, flows (16)
        out.insert((s(f[2]), s(f[1])), [n(11), n(12), n(14), n(15), n(16)]);
    }
    out
}

/// `monitor report --prometheus` over the current week in `format`, hosts named by the `host` label.
fn fleet_report(prom: &Prometheus, format: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["report", "--prometheus", &format!("http://127.0.0.1:{}", prom.port), "--host-label", "host"])
        .args(["--host", "lab-a", "--host", "lab-b", "--format", format, "--time-zone", "UTC"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
