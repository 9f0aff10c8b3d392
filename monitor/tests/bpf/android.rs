//! Android app identity on Linux: a `packages.list` fixture (`[android] packages_list`) and
//! helper processes running with Android app UIDs; the report names each package with the exact
//! payload bytes its processes sent and received; once with the path configured, once from the
//! default path inside a mount namespace.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{
    cases::{s, server_addr},
    daemon::{Monitor, config_text},
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
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("packages.list");
    std::fs::write(&list, LIST).unwrap();
    let config = format!("[android]\npackages_list = \"{}\"\n", list.display());
    let mon = |cg: &TestCgroup| Monitor::start(&cg.path, &config);
    run(&mon, &list.display().to_string());
}

/// The same with `[android] packages_list` unset: the monitor runs in a mount namespace where
/// `/data/system` is a tmpfs holding the fixture as `packages.list` (the Android default path).
pub fn default_packages_list_in_a_mount_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("fixture.list");
    std::fs::write(&list, LIST).unwrap();
    let _mount_point = MountPoint::create(Path::new("/data/system"));
    let script = "mount -t tmpfs -o size=1m,mode=0755 monitor-android-test /data/system \
                  && cp \"$MONITOR_TEST_ANDROID_FIXTURE\" /data/system/packages.list && exec \"$0\" \"$@\"";
    let wrapper: Vec<String> =
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script].map(str::to_owned).to_vec();
    let env = [("MONITOR_TEST_ANDROID_FIXTURE", list.display().to_string())];
    let mon = |cg: &TestCgroup| {
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(dir.path(), "");
        Monitor::start_under(&cg.path, dir, &text, &wrapper, &env)
    };
    run(&mon, "/data/system/packages.list");
    assert!(!Path::new("/data/system/packages.list").exists(), "the fixture stays inside the namespace");
}

/// Creates `path` (and missing parents) if absent; removes what it created on drop.
struct MountPoint {
    created: Vec<PathBuf>,
}

impl MountPoint {
    fn create(path: &Path) -> Self {
        let mut created: Vec<PathBuf> = path.ancestors().filter(|p| !p.exists()).map(Path::to_path_buf).collect();
        std::fs::create_dir_all(path).unwrap();
        created.reverse();
        Self { created }
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Traffic of UIDs 10123 and 1010777 under the monitor `start` gives; asserts the packages
/// (read from `list_path`), bytes and `android` objects in the report and flow lines.
fn run(start: &dyn Fn(&TestCgroup) -> Monitor, list_path: &str) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let a = server_addr(&pair, false, 0, 5901);
    let b = server_addr(&pair, true, 1, 5902);
    let mut echo_a = spawn("udp-echo", &[s(a), s(50)], Place { netns: Some(&pair.b), ..Place::default() });
    echo_a.line();
    let mut echo_b = spawn("udp-echo", &[s(b), s(40)], Place { netns: Some(&pair.b), ..Place::default() });
    echo_b.line();
    let mon = start(&cg);
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
    assert!(out.log.contains(&format!("android packages=2 bad_lines=0 from {list_path}")), "{}", out.log);
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
