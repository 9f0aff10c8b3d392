//! Android emulator hosts (issue 12): a fake emulator process, the test binary linked as
//! `qemu-system-x86_64` and started with `-avd Pixel_Test -port 5554`, relays a guest app's TCP
//! connection the way slirp does. The "guest" is a network namespace where the relay listens on
//! the server's own address, so the guest app sees SERVER:PORT as its remote exactly as under
//! slirp; the relay re-originates the stream from the "host" namespace to the real server. A
//! guest monitor watches the app's cgroup (with a `packages.list`), a host monitor the relay's.
//! The host journal names the relay `android-emulator:Pixel_Test/emulator-5554` with exact
//! bytes, and `monitor report --guest-journal` confirms the package's exact bytes to the server.

use std::{
    fs::File,
    io::{self, Write as _},
    net::{Shutdown, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    thread,
};

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

use crate::{
    cases::{s, server_addr},
    daemon::{Monitor, monitor_bin},
    env::{Netns, Pair, Place, TestCgroup, ip, spawn, spawn_program},
    helper::{name, say},
};

const PACKAGE: &str = "com.zhiliaoapp.musically";
const LIST: &str = "com.zhiliaoapp.musically 10123 0 /data/user/0/com.zhiliaoapp.musically default:targetSdkVersion=34 \
                    3003 0 2023 1 com.android.vending\n";
const EMULATOR: &str = "android-emulator:Pixel_Test/emulator-5554";
const SEND: usize = 70_001;
const REPLY: usize = 123_457;

/// The test binary under the emulator's executable name, in a temporary directory beside it
/// (a hard link; a copy when linking is refused).
fn fake_emulator() -> (tempfile::TempDir, PathBuf) {
    let exe = std::env::current_exe().unwrap();
    let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
    let path = dir.path().join("qemu-system-x86_64");
    if std::fs::hard_link(&exe, &path).is_err() {
        std::fs::copy(&exe, &path).unwrap();
    }
    (dir, path)
}

/// Helper role `emulator-relay -avd AVD -port N GUEST_NETNS LISTEN SERVER`: binds LISTEN inside
/// the guest namespace, accepts one connection, connects to SERVER from its own namespace and
/// copies both ways until each side's end of stream, like slirp's TCP relay.
pub fn relay(args: &[String]) {
    name("qemu-relay");
    let guest = File::open(&args[4]).unwrap();
    let home = File::open("/proc/thread-self/ns/net").unwrap();
    setns(&guest, CloneFlags::CLONE_NEWNET).unwrap();
    let listener = TcpListener::bind(&args[5]).unwrap();
    setns(&home, CloneFlags::CLONE_NEWNET).unwrap();
    say(&json!({"ready": true}));
    let (from_guest, _) = listener.accept().unwrap();
    let to_server = TcpStream::connect(&args[6]).unwrap();
    let (mut guest_r, mut server_w) = (from_guest.try_clone().unwrap(), to_server.try_clone().unwrap());
    let up = thread::spawn(move || {
        let n = io::copy(&mut guest_r, &mut server_w).unwrap();
        server_w.shutdown(Shutdown::Write).unwrap();
        n
    });
    let (mut server_r, mut guest_w) = (to_server, from_guest);
    let down = io::copy(&mut server_r, &mut guest_w).unwrap();
    guest_w.flush().unwrap();
    guest_w.shutdown(Shutdown::Write).unwrap();
    say(&json!({"up": up.join().unwrap(), "down": down}));
    // A real emulator outlives its guest's connections; the monitor names an app from /proc when
    // it writes the flow's record (after the FIN exchange), so the relay must still be there.
    thread::sleep(std::time::Duration::from_secs(2));
}

fn report(args: &[&str], host: &Path) -> Value {
    let out = Command::new(monitor_bin())
        .args(["report", "--format", "json", "--since", "2000-01-01T00:00:00Z", "--until", "2100-01-01T00:00:00Z"])
        .arg("--journal")
        .arg(host)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The relay is named by its AVD and port with exact bytes to the server; the join confirms
/// the package's bytes and destination.
pub fn relay_named_and_joined() {
    let pair = Pair::private();
    let server = server_addr(&pair, false, 0, 5951);
    // The guest: only loopback, holding the server's address (the relay listens there).
    let guest_ns = Netns::new("g");
    ip(&["-n", &guest_ns.name, "addr", "add", &format!("{}/32", server.ip()), "dev", "lo"]);
    let (guest_cg, host_cg) = (TestCgroup::new(), TestCgroup::new());
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("packages.list");
    std::fs::write(&list, LIST).unwrap();

    let mut srv = spawn("tcp-server", &[s(server), s(REPLY), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let guest_mon = Monitor::start(&guest_cg.path, &format!("[android]\npackages_list = \"{}\"\n", list.display()));
    let host_mon = Monitor::start(&host_cg.path, "");
    let (_emulator_dir, emulator) = fake_emulator();
    let relay_args = ["-avd", "Pixel_Test", "-port", "5554"].map(str::to_owned).into_iter();
    let relay_args: Vec<String> =
        relay_args.chain([guest_ns.path().display().to_string(), s(server), s(server)]).collect();
    let mut relay = spawn_program(
        &emulator,
        "emulator-relay",
        &relay_args,
        Place { netns: Some(&pair.a), cgroup: Some(&host_cg), uid: None },
    );
    relay.line();
    let app = spawn(
        "tcp-client",
        &[s(server), s(SEND), s(1)],
        Place { netns: Some(&guest_ns), cgroup: Some(&guest_cg), uid: Some(10_123) },
    );
    let sent = app.finish();
    assert_eq!((sent[0]["tx"].as_u64(), sent[0]["rx"].as_u64()), (Some(SEND as u64), Some(REPLY as u64)));
    let relayed = relay.finish();
    assert_eq!(relayed[0], json!({"up": SEND, "down": REPLY}));
    srv.finish();
    let guest_out = guest_mon.stop();
    let host_out = host_mon.stop();
    let host_journal = host_out.dir.path().join("journal.db");
    let guest_journal = guest_out.dir.path().join("journal.db");

    // The host names the relay by AVD and port; its connection to the server has exact bytes.
    let host = report(&[], &host_journal);
    let apps = host["apps"].as_array().unwrap();
    assert_eq!(apps.iter().map(|a| a["app"].as_str().unwrap()).collect::<Vec<_>>(), [EMULATOR], "{host:#}");
    let to_server: Vec<&Value> = apps[0]["top_endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ip"] == server.ip().to_string() && e["port"] == server.port())
        .collect();
    assert_eq!(to_server.len(), 1, "{host:#}");
    let e = to_server[0];
    assert_eq!(
        (&e["protocol"], &e["payload_tx"], &e["payload_rx"], &e["flows"]),
        (&json!("tcp"), &json!(SEND), &json!(REPLY), &json!(1))
    );

    // The join confirms the package's exact bytes to the server; nothing else is unexplained
    // (the relay's accepted guest-side socket is inbound, not joined).
    let joined = report(&["--guest-journal", guest_journal.to_str().unwrap()], &host_journal);
    let j = &joined["emulator_join"];
    assert_eq!(j["emulators"], json!([EMULATOR]), "{j:#}");
    assert_eq!(j["skew_tolerance_secs"], 120);
    assert_eq!(j["packages"].as_array().unwrap().len(), 1, "{j:#}");
    let p = &j["packages"][0];
    let exact = json!({"payload_tx": SEND, "payload_rx": REPLY, "flows": 1});
    assert_eq!((&p["app"], &p["package"]), (&json!(PACKAGE), &json!(PACKAGE)), "{p:#}");
    assert_eq!(p["guest"], exact, "{p:#}");
    assert_eq!(p["matched"], exact, "{p:#}");
    assert_eq!(p["confirmed"], exact, "{p:#}");
    assert_eq!(p["unmatched"], json!({"payload_tx": 0, "payload_rx": 0, "flows": 0}), "{p:#}");
    assert_eq!(p["differences"], json!([]), "{p:#}");
    assert_eq!(
        p["endpoints"],
        json!([{"protocol": "tcp", "ip": server.ip().to_string(), "port": server.port(), "guest": exact,
                "confirmed": exact, "unmatched_flows": 0}]),
        "{p:#}"
    );
    assert_eq!(j["unexplained"], json!([]), "{j:#}");
}
