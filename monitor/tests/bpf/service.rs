//! The service's restrictions (`config/monitor.service`) applied to the real binary. There is no
//! systemd as PID 1 on the test machines, so the unit itself cannot be started; instead the
//! monitor runs under the equivalent of its settings that matter for the attach and the journal:
//! root with exactly the unit's capability bounding set (`setpriv --bounding-set`, as systemd
//! does for `CapabilityBoundingSet=`), `NoNewPrivileges`, a private mount namespace whose `/` is
//! read-only except the journal directory (`ProtectSystem=strict` + `StateDirectory=`), with
//! read-only `/proc/sys` (`ProtectKernelTunables=`) and cgroup2 mount (`ProtectControlGroups=`),
//! and `$NOTIFY_SOCKET`/`$WATCHDOG_USEC` as `Type=notify` with `WatchdogSec=` sets them.

use std::{
    os::unix::net::UnixDatagram,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use monitor::privileges::NEEDED;

use crate::{
    daemon::{Monitor, config_text},
    env::{Pair, Place, TestCgroup, spawn},
};

const CLIENT_UID: u32 = 4242;

/// `setpriv` names: `CAP_SYS_PTRACE` → `sys_ptrace`.
fn setpriv_name(cap: &str) -> String {
    cap.trim_start_matches("CAP_").to_lowercase()
}

/// `-all,+bpf,+perfmon,…` for every needed capability except `without`.
fn bounding_set(without: Option<&str>) -> String {
    let mut set = String::from("-all");
    for (_, name) in NEEDED.iter().filter(|(_, n)| Some(*n) != without) {
        set.push_str(",+");
        set.push_str(&setpriv_name(name));
    }
    set
}

/// `unshare … sh -c '<mounts>; exec setpriv …' sh`, followed by the monitor and its arguments.
fn sandbox(writable: &Path) -> Vec<String> {
    let cgroup2 = monitor::probe::cgroup2_mount().unwrap();
    let script = format!(
        "set -e\n\
         mount --bind '{dir}' '{dir}'\n\
         mount -o remount,bind,ro /\n\
         mount --bind /proc/sys /proc/sys\n\
         mount -o remount,bind,ro /proc/sys\n\
         mount -o remount,bind,ro '{cgroup2}'\n\
         export WATCHDOG_PID=$$\n\
         exec setpriv --bounding-set {caps} --inh-caps -all --no-new-privs \"$@\"\n",
        dir = writable.display(),
        cgroup2 = cgroup2.display(),
        caps = bounding_set(None),
    );
    ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", &script, "sh"].map(str::to_owned).to_vec()
}

/// Every datagram queued on the notify socket.
fn notifications(sock: &UnixDatagram) -> Vec<String> {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0_u8; 4096];
    let mut out = Vec::new();
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

pub fn sandboxed_with_the_unit_capabilities_attaches_records_exactly_and_notifies() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let config = config_text(
        dir.path(),
        "[tracker]\nstats_interval_secs = 1\n\n[[apps]]\nname = \"svc-client\"\nuid = [4242]\n",
    );
    let server = format!("{}:5210", pair.b_v4[0]);
    let mut srv = spawn(
        "tcp-server",
        &[server.clone(), "65536".into(), "1".into()],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    srv.line();
    let wrapper = sandbox(dir.path());
    let env = [("NOTIFY_SOCKET", notify_path.display().to_string()), ("WATCHDOG_USEC", "4000000".to_owned())];
    let mut mon = Monitor::start_under(&cg.path, dir, &config, &wrapper, &env);
    let started = Instant::now();
    let client = spawn(
        "tcp-client",
        &[server.clone(), "1000000".into(), "1".into()],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    client.finish();
    srv.finish();
    mon.wait_for_flow(|v| v["remote"] == server.as_str() && v["event"] == "close");
    // Statistics every second and watchdog pings every second (a quarter of 4 s): run 3.5 s.
    std::thread::sleep(Duration::from_millis(3500).saturating_sub(started.elapsed()));
    let out = mon.stop();

    // Attached, recorded exactly, journaled.
    let closed = out.closed();
    let r = closed.iter().find(|r| r.remote == Some(server.parse().unwrap())).expect("the client's flow");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (1_000_000, 65_536), "{r:#?}");
    assert_eq!(r.owner.uid, CLIENT_UID);
    out.assert_nothing_lost();
    let flow = out.flows.iter().find(|f| f["remote"] == server.as_str() && f["event"] == "close").unwrap();
    assert_eq!(flow["app"]["name"], "svc-client");
    // CAP_SYS_PTRACE at work: another user's /proc/<pid>/exe is readable.
    let helper = std::env::current_exe().unwrap();
    assert_eq!(flow["app"]["exe"].as_str(), helper.to_str(), "exe: {flow}");
    let report = out.report_json();
    let app = report["apps"].as_array().unwrap().iter().find(|a| a["app"] == "svc-client").unwrap();
    assert_eq!(
        (app["traffic"]["payload_tx"].as_u64(), app["traffic"]["payload_rx"].as_u64()),
        (Some(1_000_000), Some(65_536))
    );

    // Type=notify: READY first, STATUS with flows and losses, watchdog pings, STOPPING last.
    let notes = notifications(&notify);
    assert!(notes.first().is_some_and(|n| n.contains("READY=1")), "{notes:#?}");
    assert!(notes.last().is_some_and(|n| n.contains("STATUS=")), "{notes:#?}");
    assert!(notes.iter().any(|n| n.contains("STOPPING=1")), "{notes:#?}");
    let pings = notes.iter().filter(|n| n.as_str() == "WATCHDOG=1\n").count();
    assert!(pings >= 3, "watchdog pings: {notes:#?}");
    let statuses = notes.iter().filter(|n| n.starts_with("STATUS=flows")).count();
    assert!(statuses >= 3, "a STATUS= line per statistics interval: {notes:#?}");
    let last_status = notes.iter().rev().find(|n| n.starts_with("STATUS=flows")).unwrap();
    let expected = format!("closed={} records={} events lost=0 decode errors=0", closed.len(), out.records.len());
    assert!(last_status.contains(&expected), "{last_status} lacks {expected}");
}

pub fn each_unit_capability_dropped_exits_3_naming_it() {
    let cg = TestCgroup::new();
    for (_, name) in NEEDED {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("journal.db");
        let out = Command::new("setpriv")
            .args(["--bounding-set", &bounding_set(Some(name)), "--inh-caps", "-all", "--no-new-privs"])
            .arg(env!("CARGO_BIN_EXE_monitor"))
            .args(["run", "--cgroup"])
            .arg(&cg.path)
            .arg("--journal")
            .arg(&journal)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{name}: {err}");
        assert!(err.contains(&format!("missing {name} in the effective capability set")), "{name}: {err}");
        assert!(!journal.exists(), "{name}: no journal before the privilege check");
    }
}
