//! Sessions end to end: `monitor exec --session` runs a command in a child cgroup of its own, and
//! `monitor report --session` shows exactly the command's bytes while the same executable sends
//! to the same server outside the session at the same time.

use std::{
    fs::File,
    os::unix::process::CommandExt as _,
    process::{Command, Stdio},
    time::Duration,
};

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// `monitor <args>` with the test monitor's config and journal; stdout as JSON.
fn monitor_json(dir: &std::path::Path, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(dir.join("monitor.toml"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "monitor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn exec_session_isolates_the_commands_flows() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server_addr = format!("{}:5201", pair.b_v4[0]);
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    let mut server = spawn("tcp-server", &[server_addr.clone(), s(20_000), s(2)], b);
    server.line();
    // One app for both clients: a process gone before /proc is read is named by its `comm`, so
    // the app rule groups by user instead (every process of the test cgroup runs as root).
    let mon = Monitor::start(&cg.path, "[[apps]]\nname = \"tester\"\nuid = [0]\n");
    // Outside the session: the same executable, same server, running all through the session.
    let a = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let outside = spawn("tcp-trickle", &[server_addr.clone(), s(10_000), s(30), s(50)], a);
    std::thread::sleep(Duration::from_millis(300));

    // The session's command: `monitor exec` joins the client's namespace, then moves itself
    // into its own cgroup below the watched one.
    let ns = File::open(pair.a.path()).unwrap();
    let mut exec = Command::new(env!("CARGO_BIN_EXE_monitor"));
    exec.arg("--config")
        .arg(mon.dir().join("monitor.toml"))
        .args(["exec", "--session", "build-1", "--cgroup"])
        .arg(&cg.path)
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args([server_addr.as_str(), "123456", "1"])
        .env("MONITOR_TEST_HELPER", "tcp-client")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only setns between fork and exec.
    unsafe {
        exec.pre_exec(move || setns(&ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from));
    }
    let done = exec.output().unwrap();
    assert!(done.status.success(), "monitor exec: {}", String::from_utf8_lossy(&done.stderr));
    let client: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(client["tx"], 123_456);
    assert_eq!(client["rx"], 20_000);

    let trickle = outside.finish();
    assert_eq!(trickle[0]["tx"], 300_000);
    server.finish();
    let out = mon.stop();
    out.assert_nothing_lost();

    let dir = out.dir.path();
    let journal = dir.join("journal.db");
    let journal = journal.to_str().unwrap();
    let sessions = monitor_json(dir, &["session", "list", "--json", "--journal", journal]);
    let session = &sessions[0];
    assert_eq!(session["name"], "build-1");
    assert_eq!(session["exit_code"], 0);
    assert!(session["cgroup_id"].as_u64().unwrap() > 0);
    // The outside flow really ran through the whole session.
    let started: jiff::Timestamp = session["started"].as_str().unwrap().parse().unwrap();
    let stopped: jiff::Timestamp = session["stopped"].as_str().unwrap().parse().unwrap();
    let local = trickle[0]["local"].as_str().unwrap();
    let outside_flow =
        out.records.iter().find(|r| r.local.map(|l| l.to_string()).as_deref() == Some(local)).expect("trickle flow");
    assert!(outside_flow.first_seen < started && outside_flow.last_seen > stopped, "not concurrent");
    let session_flow = out
        .records
        .iter()
        .find(|r| r.local.map(|l| l.to_string()) == client["local"].as_str().map(str::to_string))
        .expect("session flow");
    let app = |local_flow: &monitor::tracker::FlowRecord| {
        out.flows.iter().find(|f| f["cookie"] == local_flow.cookie).unwrap()["app"]["name"].clone()
    };
    assert_eq!((app(session_flow), app(outside_flow)), ("tester".into(), "tester".into()), "one app");

    // The whole journal has both flows; the session only its command's.
    let all = out.report_json();
    assert_eq!(all["apps"][0]["traffic"]["payload_tx"], 123_456 + 300_000);
    let doc = monitor_json(dir, &["report", "--session", "build-1", "--format", "json", "--journal", journal]);
    assert_eq!(doc["session"]["name"], "build-1");
    let apps = doc["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{doc:#}");
    let t = &apps[0]["traffic"];
    assert_eq!((t["payload_tx"].as_u64(), t["payload_rx"].as_u64()), (Some(123_456), Some(20_000)), "{doc:#}");
    assert_eq!(apps[0]["flows"], 1);
    // The timeline counts the session's cgroup only, and adds up to the totals.
    assert_eq!(doc["timeline"]["complete"], true, "{doc:#}");
    let per_bucket: u64 =
        apps[0]["timeline"].as_array().unwrap().iter().map(|b| b["payload_tx"].as_u64().unwrap()).sum();
    assert_eq!(per_bucket, 123_456);
    let eps = apps[0]["top_endpoints"].as_array().unwrap();
    assert_eq!(eps.len(), 1);
    assert_eq!(eps[0]["ip"], pair.b_v4[0].as_str());
    assert_eq!((eps[0]["payload_tx"].as_u64(), eps[0]["payload_rx"].as_u64()), (Some(123_456), Some(20_000)));
    // The session's cgroup is gone again.
    let left: Vec<_> = std::fs::read_dir(&cg.path)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("monitor-session."))
        .collect();
    assert!(left.is_empty(), "session cgroup left behind");
}

/// `monitor exec` stopped with SIGTERM or SIGHUP (a service manager, `timeout`, a closed
/// terminal) passes the signal on to its command, records the session's end with the command's
/// exit code and removes its cgroup (it died at once, leaving the session open for good, the
/// command running and the cgroup behind; found by an adversarial pass).
pub fn exec_stopped_by_a_signal_ends_its_session() {
    use nix::sys::signal::{Signal, kill};
    let cg = TestCgroup::new();
    let mon = Monitor::start(&cg.path, "");
    let journal = mon.dir().join("journal.db");
    for (name, signal) in [("term-1", Signal::SIGTERM), ("hup-1", Signal::SIGHUP)] {
        let exec = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg("--config")
            .arg(mon.dir().join("monitor.toml"))
            .args(["exec", "--session", name, "--cgroup"])
            .arg(&cg.path)
            .args(["--", "sleep", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Until the command runs in the session's cgroup (beside `monitor exec` itself).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let session_procs = || -> usize {
            std::fs::read_dir(&cg.path)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("monitor-session."))
                .map(|e| std::fs::read_to_string(e.path().join("cgroup.procs")).unwrap_or_default().lines().count())
                .sum()
        };
        while session_procs() < 2 {
            assert!(std::time::Instant::now() < deadline, "the command did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(nix::unistd::Pid::from_raw(i32::try_from(exec.id()).unwrap()), signal).unwrap();
        let out = exec.wait_with_output().unwrap();
        let code = 128 + signal as i32;
        let log = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{log}");
        assert!(!log.contains("no monitor daemon is running"), "a daemon runs: {log}");
        let sessions = monitor_json(mon.dir(), &["session", "list", "--json", "--journal", journal.to_str().unwrap()]);
        let session = sessions.as_array().unwrap().iter().find(|s| s["name"] == name).expect("session listed");
        assert_eq!(session["exit_code"], code, "{session}");
        assert!(session["stopped"].is_string(), "the session ended: {session}");
        assert_eq!(session_procs(), 0, "nothing left running in the session's cgroup");
        let left = std::fs::read_dir(&cg.path)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("monitor-session."));
        assert!(!left, "session cgroup left behind");
    }
    // Without a daemon the session is recorded, its flows are not: `exec` says so.
    let out = mon.stop();
    let done = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .arg("--config")
        .arg(out.dir.path().join("monitor.toml"))
        .args(["exec", "--session", "alone-1", "--cgroup"])
        .arg(&cg.path)
        .args(["--", "true"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success() && log.contains("no monitor daemon is running on the journal"), "{log}");
}

/// `monitor exec --cgroup` outside the cgroup the config watches: a daemon started with this
/// config never sees the command, and its session's report would be empty without a word; it
/// says so (found by an adversarial pass). Under the watched cgroup: no such warning.
pub fn exec_outside_the_watched_cgroup_warns() {
    let (watched, other) = (TestCgroup::new(), TestCgroup::new());
    let dir = tempfile::tempdir().unwrap();
    let journal = monitor::journal::JournalConfig { path: dir.path().join("j.db"), ..Default::default() };
    let run = monitor::journal::RunInfo::current(None);
    drop(monitor::journal::JournalWriter::open(&journal, run, &monitor::zone::Zone::get("UTC").unwrap()).unwrap());
    let config = dir.path().join("monitor.toml");
    std::fs::write(
        &config,
        format!(
            "cgroup = \"{}\"\n[journal]\npath = \"{}\"\n",
            watched.path.display(),
            dir.path().join("j.db").display()
        ),
    )
    .unwrap();
    let exec = |cgroup: &std::path::Path, session: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_monitor"))
            .arg("--config")
            .arg(&config)
            .args(["exec", "--session", session, "--cgroup"])
            .arg(cgroup)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "monitor exec: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = exec(&other.path, "outside");
    assert!(said.contains("is outside the cgroup the config watches"), "{said}");
    let said = exec(&watched.path, "inside");
    assert!(!said.contains("is outside"), "{said}");
}
