//! Residency end to end: helpers in the watched cgroup talk to test hosts whose addresses lie in
//! the MaxMind test databases' ranges; the journal and `monitor report --format json` must show,
//! per app, exactly the bytes each helper sent and received per country and per ASN.

use std::{collections::BTreeMap, path::PathBuf};

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

const SE: &str = "89.160.20.112"; // GeoIP2-Country-Test: SE; GeoLite2-ASN-Test: AS29518 Bredband2 AB
const TELSTRA: &str = "1.128.0.1"; // AS1221 Telstra Pty Ltd
const GB: &str = "81.2.69.142"; // GB
const ATT: &str = "12.81.92.1"; // AS7018 AT&T Services
const JP: &str = "2001:218::1"; // JP

/// (payload up, payload down) per key of a report's share list.
fn shares(app: &Value, list: &str) -> BTreeMap<String, (u64, u64)> {
    app[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let t = &s["traffic"];
            (
                s["key"].as_str().unwrap().to_owned(),
                (t["payload_tx"].as_u64().unwrap(), t["payload_rx"].as_u64().unwrap()),
            )
        })
        .collect()
}

pub fn per_app_bytes_by_country_and_asn() {
    let pair = Pair::new("10.77.0.1", &[SE, TELSTRA, GB, ATT], "fd77::1", &[JP]);
    let cg = TestCgroup::new();
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut servers = vec![
        spawn("tcp-server", &[format!("{SE}:5201"), s(20_000), s(1)], b),
        spawn("tcp-server", &[format!("{TELSTRA}:5201"), s(50_000), s(1)], b),
        spawn("udp-echo", &[format!("{GB}:5300"), format!("{ATT}:5300"), s(50)], b),
        spawn("tcp-server", &[format!("[{JP}]:5201"), s(7_000), s(1)], b),
    ];
    for srv in &mut servers {
        srv.line();
    }
    let extra = format!(
        "[geo]\ncountry_db = \"{}\"\nasn_db = \"{}\"\n\n\
         [[apps]]\nname = \"app-a\"\nuid = [4242]\n\n[[apps]]\nname = \"app-b\"\nuid = [4243]\n\n\
         [[apps]]\nname = \"app-c\"\nuid = [4244]\n",
        fixture("GeoIP2-Country-Test.mmdb").display(),
        fixture("GeoLite2-ASN-Test.mmdb").display()
    );
    let mon = Monitor::start(&cg.path, &extra);
    let a = |uid| Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(uid) };
    let clients = vec![
        spawn("tcp-client", &[format!("{SE}:5201"), s(300_000), s(1)], a(4242)),
        spawn("tcp-client", &[format!("{TELSTRA}:5201"), s(100_000), s(1)], a(4242)),
        spawn("udp-unconnected", &[s(1000), s(50), format!("{GB}:5300"), format!("{ATT}:5300")], a(4243)),
        spawn("tcp-client", &[format!("[{JP}]:5201"), s(60_000), s(1)], a(4244)),
    ];
    for c in clients {
        c.finish();
    }
    for srv in servers {
        srv.finish();
    }
    let out = mon.stop();
    out.assert_nothing_lost();

    // The printed flows carry the enrichment and its provenance.
    let se_flow = out.flows.iter().find(|f| f["remote"] == format!("{SE}:5201")).expect("flow to SE");
    assert_eq!(se_flow["app"]["name"], "app-a");
    assert_eq!(se_flow["destination"]["country"], "SE");
    assert_eq!(se_flow["destination"]["asn"], 29518);
    assert_eq!(se_flow["destination"]["country_db"]["database_type"], "GeoIP2-Country");

    let doc = out.report_json();
    assert_eq!(doc["schema"], "monitor.report/1");
    let app = |name: &str| {
        doc["apps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["app"] == name)
            .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
            .clone()
    };

    let a = app("app-a");
    let by_country = shares(&a, "by_country");
    assert_eq!(by_country.get("SE"), Some(&(300_000, 20_000)), "{by_country:?}");
    let by_asn = shares(&a, "by_asn");
    assert_eq!(by_asn.get("AS29518"), Some(&(300_000, 20_000)), "{by_asn:?}");
    assert_eq!(by_asn.get("AS1221"), Some(&(100_000, 50_000)), "{by_asn:?}");
    assert_eq!(a["traffic"]["payload_tx"], 400_000);
    assert_eq!(a["traffic"]["payload_rx"], 70_000);

    let b = app("app-b");
    let by_country = shares(&b, "by_country");
    assert_eq!(by_country.get("GB"), Some(&(50_000, 50_000)), "{by_country:?}");
    let by_asn = shares(&b, "by_asn");
    assert_eq!(by_asn.get("AS7018"), Some(&(50_000, 50_000)), "{by_asn:?}");
    assert_eq!(b["traffic"]["payload_tx"], 100_000);

    let c = app("app-c");
    assert_eq!(shares(&c, "by_country").get("JP"), Some(&(60_000, 7_000)));

    // Every public byte is either attributed or reported as unknown, never dropped.
    for name in ["app-a", "app-b", "app-c"] {
        let x = app(name);
        let total = x["traffic"]["payload_tx"].as_u64().unwrap() + x["traffic"]["payload_rx"].as_u64().unwrap();
        let countries: u64 = shares(&x, "by_country").values().map(|(u, d)| u + d).sum();
        let asns: u64 = shares(&x, "by_asn").values().map(|(u, d)| u + d).sum();
        assert_eq!((countries, asns), (total, total), "{name}: shares add up to the total");
    }
    let names: Vec<&str> =
        doc["databases"].as_array().unwrap().iter().map(|d| d["database_type"].as_str().unwrap()).collect();
    assert!(names.contains(&"GeoIP2-Country") && names.contains(&"GeoLite2-ASN"), "provenance: {names:?}");
}
