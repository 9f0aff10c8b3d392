//! Physical plausibility end to end (issue 15): the device is configured in the US; test hosts
//! in a network namespace sit at addresses the test databases (`consensus-{a,b}.mmdb`) place in
//! the US, in Singapore and in Sweden. Over a veth pair the kernel measures an RTT far below
//! 1 ms, which reaches at most a few km: Singapore and Sweden cannot be where the primary
//! database puts them, the US can (the device is there). The databases disagree on the
//! Singapore range only.

use std::{path::Path, process::Command, time::Duration};

use serde_json::Value;

use crate::{
    daemon::Monitor,
    delay_line::DelayLine,
    env::{Netns, Pair, Place, TestCgroup, ip, spawn},
};

const US: &str = "11.1.1.2"; // consensus-a: US, consensus-b: US
const SG: &str = "11.2.2.2"; // consensus-a: SG, consensus-b: US
const SE: &str = "11.3.3.2"; // consensus-a: SE, consensus-b: SE

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo").join(name).display().to_string()
}

/// `monitor report --format json` over the whole journal, with the run's config (for
/// `[device] location`).
fn report(dir: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(dir.join("monitor.toml"))
        .args(["report", "--format", "json", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"])
        .arg("--journal")
        .arg(dir.join("journal.db"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn far_countries_over_a_veth_pair_are_implausible() {
    let pair = Pair::new("10.78.0.1", &[US, SG, SE], "fd78::1", &[]);
    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut servers: Vec<_> = [US, SG, SE]
        .iter()
        .map(|ip| spawn("tcp-server", &[format!("{ip}:5201"), "1000".into(), "1".into()], b))
        .collect();
    for srv in &mut servers {
        srv.line();
    }
    let extra = format!(
        "[geo]\ncountry_db = \"{}\"\nregistry_db = \"{}\"\nasn_db = \"{}\"\n\n[device]\nlocation = \"US\"\n\n\
         [[apps]]\nname = \"app-p\"\nuid = [4250]\n",
        fixture("consensus-a.mmdb"),
        fixture("consensus-b.mmdb"),
        fixture("GeoLite2-ASN-Test.mmdb"),
    );
    let mon = Monitor::start(&cg.path, &extra);
    let a = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(4250) };
    let sizes = [(US, 30_000_u64), (SG, 20_000), (SE, 10_000)];
    for (ip, n) in sizes {
        spawn("tcp-client", &[format!("{ip}:5201"), n.to_string(), "1".into()], a).finish();
    }
    for srv in servers {
        srv.finish();
    }
    let out = mon.stop();
    out.assert_nothing_lost();

    // Every TCP flow carries the kernel's RTT estimates; over veth, well under a millisecond.
    for (ip, _) in sizes {
        let rec = out
            .closed()
            .into_iter()
            .find(|r| r.remote.is_some_and(|a| a.ip().to_string() == ip))
            .unwrap_or_else(|| panic!("no closed flow to {ip}"));
        let rtt = rec.rtt.unwrap_or_else(|| panic!("no RTT on the flow to {ip}: {rec:?}"));
        assert!(rtt.min_us > 0 && rtt.min_us < 1000, "{ip}: {rtt:?}");
        assert!(rtt.smoothed_us >= rtt.min_us, "{ip}: {rtt:?}");
    }

    let doc = report(out.dir.path());
    let app = doc["apps"].as_array().unwrap().iter().find(|a| a["app"] == "app-p").unwrap_or_else(|| panic!("{doc:#}"));
    let bytes = |n: u64| n + 1000; // sent + the server's reply
    let p = &app["plausibility"];
    assert_eq!(p["device_location"], "US");
    let implausible = p["implausible"].as_array().unwrap();
    let ips: Vec<&str> = implausible.iter().map(|d| d["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, [SG, SE], "by bytes: {p:#}");
    for d in implausible {
        let rtt = d["min_rtt_us"].as_u64().unwrap();
        assert!(rtt > 0 && rtt < 1000, "{d}");
        // The bound is min_rtt_ms × 100 km; the distance to Singapore or Sweden from any US
        // territory is thousands of km.
        assert!((d["bound_km"].as_f64().unwrap() - rtt as f64 / 10.0).abs() < 1e-6, "{d}");
        assert!(d["distance_km"].as_f64().unwrap() > 1000.0, "{d}");
        assert_eq!(d["note"], "anycast/CDN edge near the device");
    }
    assert_eq!((&implausible[0]["country"], &implausible[1]["country"]), (&"SG".into(), &"SE".into()));
    assert_eq!(p["implausible_bytes"], bytes(20_000) + bytes(10_000));
    assert_eq!(p["measured_bytes"], bytes(30_000) + bytes(20_000) + bytes(10_000));

    // Consensus: US and SE agree, SG disagrees (SG vs US).
    let c = &app["consensus"];
    assert_eq!(c["agree_bytes"], bytes(30_000) + bytes(10_000));
    assert_eq!(c["disagree_bytes"], bytes(20_000));
    let d = &c["disagreements"][0];
    assert_eq!(d["ip"], SG);
    let answers: Vec<(&str, &str)> = d["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["label"].as_str().unwrap(), a["country"].as_str().unwrap()))
        .collect();
    assert_eq!(answers, [("primary", "SG"), ("registry", "US")]);

    // The CSV form carries the same figures.
    let csv = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(out.dir.path().join("monitor.toml"))
        .args(["report", "--format", "csv", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"])
        .arg("--journal")
        .arg(out.dir.path().join("journal.db"))
        .output()
        .unwrap();
    let text = String::from_utf8(csv.stdout).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(",app-p,")).collect();
    let line = |section: &str, key: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{section},app-p,{key},")))
            .unwrap_or_else(|| panic!("no {section} {key} row in\n{text}"))
    };
    assert!(line("plausibility", "US").contains(&format!(",{},", bytes(20_000) + bytes(10_000))), "{text}");
    assert!(line("implausible", SG).contains(",SG,"), "{text}");
    assert!(line("implausible", SE).contains(",SE,"), "{text}");
    assert!(line("consensus_disagree", SG).contains("primary:SG;registry:US"), "{text}");
    assert!(line("consensus", "primary+registry").contains(&format!(",{},", bytes(30_000) + bytes(10_000))), "{text}");

    // `monitor lookup` explains one address: each database's answer, and the plausibility.
    let lookup = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(out.dir.path().join("monitor.toml"))
        .args(["lookup", SG, US, "--journal"])
        .arg(out.dir.path().join("journal.db"))
        .output()
        .unwrap();
    let said = String::from_utf8(lookup.stdout).unwrap();
    assert!(said.contains(&format!("{SG}: the country databases DISAGREE: primary SG, registry US")), "{said}");
    assert!(said.contains(&format!("{SG}: IMPLAUSIBLE")), "{said}");
    assert!(
        said.contains(&format!("{US}: plausible")) && said.contains(&format!("{US}: the country databases agree")),
        "{said}"
    );
}

/// The same destinations behind a delay line of 80 ms each way (a tun pair and a forwarding
/// thread; no netem on the CI kernel): the kernel measures a minimum RTT of at least 160 ms,
/// which reaches 16,000 km, so Singapore and Sweden become plausible.
pub fn far_countries_become_plausible_behind_a_slow_path() {
    let (a, b) = (Netns::new("dla"), Netns::new("dlb"));
    let line = DelayLine::new(&a, &b, Duration::from_millis(80));
    ip(&["-n", &a.name, "addr", "add", "10.79.0.1/32", "dev", "tda"]);
    ip(&["-n", &a.name, "link", "set", "tda", "up"]);
    ip(&["-n", &a.name, "route", "add", "11.0.0.0/8", "dev", "tda"]);
    for host in [US, SG, SE] {
        ip(&["-n", &b.name, "addr", "add", &format!("{host}/32"), "dev", "tdb"]);
    }
    ip(&["-n", &b.name, "link", "set", "tdb", "up"]);
    ip(&["-n", &b.name, "route", "add", "10.79.0.1/32", "dev", "tdb"]);
    let cg = TestCgroup::new();
    let server_place = Place { netns: Some(&b), ..Place::default() };
    let mut servers: Vec<_> = [US, SG, SE]
        .iter()
        .map(|ip| spawn("tcp-server", &[format!("{ip}:5201"), "1000".into(), "1".into()], server_place))
        .collect();
    for srv in &mut servers {
        srv.line();
    }
    let extra = format!(
        "[geo]\ncountry_db = \"{}\"\nregistry_db = \"{}\"\nasn_db = \"{}\"\n\n[device]\nlocation = \"US\"\n\n\
         [[apps]]\nname = \"app-slow\"\nuid = [4251]\n",
        fixture("consensus-a.mmdb"),
        fixture("consensus-b.mmdb"),
        fixture("GeoLite2-ASN-Test.mmdb"),
    );
    let mon = Monitor::start(&cg.path, &extra);
    let client = Place { netns: Some(&a), cgroup: Some(&cg), uid: Some(4251) };
    for ip in [US, SG, SE] {
        spawn("tcp-client", &[format!("{ip}:5201"), "5000".into(), "1".into()], client).finish();
    }
    for srv in servers {
        srv.finish();
    }
    let out = mon.stop();
    drop(line);
    out.assert_nothing_lost();
    for ip in [US, SG, SE] {
        let rec = out
            .closed()
            .into_iter()
            .find(|r| r.remote.is_some_and(|a| a.ip().to_string() == ip))
            .unwrap_or_else(|| panic!("no closed flow to {ip}"));
        let rtt = rec.rtt.unwrap_or_else(|| panic!("no RTT on the flow to {ip}: {rec:?}"));
        assert!(rtt.min_us >= 150_000 && rtt.min_us < 1_000_000, "{ip}: {rtt:?} behind 2 × 80 ms");
    }
    let doc = report(out.dir.path());
    let app =
        doc["apps"].as_array().unwrap().iter().find(|a| a["app"] == "app-slow").unwrap_or_else(|| panic!("{doc:#}"));
    let p = &app["plausibility"];
    assert_eq!(p["measured_bytes"], 3 * (5_000 + 1_000), "{p:#}");
    assert_eq!(p["implausible_bytes"], 0, "{p:#}");
    assert!(p["implausible"].as_array().is_none_or(Vec::is_empty), "{p:#}");
}
