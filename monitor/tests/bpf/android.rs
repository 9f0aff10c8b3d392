//! Android app identity on Linux: a `packages.list` fixture (`[android] packages_list`) and
//! helper processes running with Android app UIDs; the report names each package with the exact
//! payload bytes its processes sent and received.

use serde_json::{Value, json};

use crate::{
    cases::{s, server_addr},
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

const LIST: &str = "\
com.zhiliaoapp.musically 10123 0 /data/user/0/com.zhiliaoapp.musically default:targetSdkVersion=34 3003 0 2023 1 com.android.vending
com.example.other 10777 0 /data/user/0/com.example.other default:targetSdkVersion=34 3003 0 7 1 @null
";

fn app<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["apps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["app"] == name)
        .unwrap_or_else(|| panic!("no app {name}: {doc:#}"))
}

/// UID 10123 (user 0) and UID 1010777 (user 10, app 10777) are charged to their packages.
pub fn packages_named_with_exact_bytes() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("packages.list");
    std::fs::write(&list, LIST).unwrap();
    let a = server_addr(&pair, false, 0, 5901);
    let b = server_addr(&pair, true, 1, 5902);
    let mut echo_a = spawn("udp-echo", &[s(a), s(50)], Place { netns: Some(&pair.b), ..Place::default() });
    echo_a.line();
    let mut echo_b = spawn("udp-echo", &[s(b), s(40)], Place { netns: Some(&pair.b), ..Place::default() });
    echo_b.line();
    let mon = Monitor::start(&cg.path, &format!("[android]\npackages_list = \"{}\"\n", list.display()));
    let tiktok = spawn(
        "udp-connected",
        &[s(a), s(1000), s(50)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(10_123) },
    );
    tiktok.finish();
    let other = spawn(
        "udp-connected",
        &[s(b), s(700), s(40)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(1_010_777) },
    );
    other.finish();
    echo_a.finish();
    echo_b.finish();
    let out = mon.stop();
    assert!(out.log.contains("android packages=2"), "{}", out.log);
    let doc = out.report_json();
    let t = app(&doc, "com.zhiliaoapp.musically");
    assert_eq!(
        (t["traffic"]["payload_tx"].as_u64(), t["traffic"]["payload_rx"].as_u64()),
        (Some(50_000), Some(50_000)),
        "{t:#}"
    );
    let o = app(&doc, "com.example.other");
    assert_eq!(
        (o["traffic"]["payload_tx"].as_u64(), o["traffic"]["payload_rx"].as_u64()),
        (Some(28_000), Some(28_000)),
        "{o:#}"
    );
    assert_eq!(doc["apps"].as_array().unwrap().len(), 2, "only the two packages: {doc:#}");
    let tiktok_android = json!({"package": "com.zhiliaoapp.musically", "packages": ["com.zhiliaoapp.musically"],
                                "user_id": 0, "app_id": 10123, "kind": "app"});
    let other_android = json!({"package": "com.example.other", "packages": ["com.example.other"],
                               "user_id": 10, "app_id": 10777, "kind": "app"});
    assert_eq!(t["android"], tiktok_android, "{t:#}");
    assert_eq!(o["android"], other_android, "{o:#}");
    // Every `flow` line carries the same object as the report.
    let mut seen = std::collections::BTreeSet::new();
    for f in &out.flows {
        let name = f["app"]["name"].as_str().unwrap();
        let expected = match name {
            "com.zhiliaoapp.musically" => &tiktok_android,
            "com.example.other" => &other_android,
            _ => panic!("flow of an unexpected app: {f:#}"),
        };
        assert_eq!(&f["app"]["android"], expected, "{f:#}");
        seen.insert(name.to_owned());
    }
    assert_eq!(seen.len(), 2, "flow lines of both packages");
}
