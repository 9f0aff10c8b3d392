//! Daemon lifecycle around the journal: weekly exports written once across restarts, SIGHUP
//! reloads of the geolocation databases, `monitor status`.

use std::{fs, path::PathBuf, process::Command, time::Duration};

use jiff::Timestamp;
use monitor::{
    enrich::{Destination, Scope},
    identity::{App, AppSource},
    journal::{JournalConfig, JournalWriter, RunInfo},
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
    },
};
use nix::sys::signal::{Signal, kill};
use serde_json::Value;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// One closed flow of 1,000 bytes up and 2,000 down at `t`, to a Swedish address.
fn past_record(t: Timestamp) -> (FlowRecord, App, Destination) {
    let payload = Payload { tx_bytes: 1000, rx_bytes: 2000 };
    let wire = Wire { tx_bytes: 1400, tx_packets: 10, rx_bytes: 2400, rx_packets: 10 };
    let record = FlowRecord {
        event: RecordKind::Close,
        cookie: 1,
        owner: Owner {
            tgid: 1,
            pid: 1,
            uid: 0,
            gid: 0,
            comm: "past".into(),
            cgroup_id: 1,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: Some("10.0.0.1:40000".parse().unwrap()),
        remote: Some("89.160.20.112:443".parse().unwrap()),
        payload,
        payload_source: PayloadSource::Syscall,
        payload_sources: Default::default(),
        wire,
        delta_payload: payload,
        delta_wire: wire,
        first_seen: t,
        last_seen: t,
        closed: Some(t),
        complete: true,
        rtt: None,
        final_of_socket: false,
        release: Default::default(),
        resumed: false,
    };
    let app = App {
        name: "past-app".into(),
        exe: None,
        cmdline: None,
        pid: 1,
        start_time: 0,
        uid: 0,
        user: None,
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Kernel,
        android: None,
    };
    let dest = Destination {
        scope: Scope::Public,
        country: Some("SE".into()),
        asn: Some(29518),
        as_org: None,
        country_db: None,
        asn_db: None,
        answers: Default::default(),
        consensus: None,
    };
    (record, app, dest)
}

/// A completed week in the journal is exported by the daemon at start, as JSON and Markdown, and
/// not again after a restart.
pub fn completed_week_is_exported_once_across_restarts() {
    let cg = TestCgroup::new();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.db");
    {
        let config = JournalConfig { path: journal.clone(), ..JournalConfig::default() };
        let mut w =
            JournalWriter::open(&config, RunInfo::current(None), &monitor::zone::Zone::get("UTC").unwrap()).unwrap();
        // Wednesday of ISO week 2026-W40 (2026-09-30 12:00 UTC).
        let (r, app, dest) = past_record("2026-09-30T12:00:00Z".parse().unwrap());
        w.append(&r, &std::sync::Arc::new(app), Some(&dest));
        w.flush().unwrap();
    }
    let reports: PathBuf = dir.path().join("reports");
    let mon = Monitor::start_in(&cg.path, dir, "");
    std::thread::sleep(Duration::from_secs(2));
    let out = mon.stop();
    let json = reports.join("2026-W40.json");
    let md = reports.join("2026-W40.md");
    let doc: Value = serde_json::from_slice(&fs::read(&json).expect("2026-W40.json written")).unwrap();
    assert_eq!(doc["period"]["label"], "2026-W40");
    assert_eq!(doc["apps"][0]["app"], "past-app");
    assert_eq!(doc["apps"][0]["traffic"]["payload_tx"], 1000);
    assert!(fs::read_to_string(&md).unwrap().contains("past-app"));
    assert!(fs::read_to_string(reports.join("2026-W40.html")).unwrap().contains("past-app"), "the page too");
    assert!(out.log.contains("weekly report 2026-W40 written"), "{}", out.log);
    let written = fs::metadata(&json).unwrap().modified().unwrap();

    let mon = Monitor::start_in(&cg.path, out.dir, "");
    std::thread::sleep(Duration::from_secs(2));
    let out = mon.stop();
    assert!(!out.log.contains("weekly report 2026-W40 written"), "exported again:\n{}", out.log);
    assert_eq!(fs::metadata(&json).unwrap().modified().unwrap(), written, "file left alone");
    let weeks: Vec<_> = fs::read_dir(&reports).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(weeks.len(), 3, "only the completed week with data (json, md, html): {weeks:?}");
}

/// SIGHUP reopens the databases; a bad replacement file is refused and the old data keeps working.
pub fn sighup_reloads_databases_and_keeps_old_ones_on_failure() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/geo");
    let pair = Pair::new("10.77.0.1", &["89.160.20.112"], "fd77::1", &["fd77::2"]);
    let cg = TestCgroup::new();
    let geo = tempfile::tempdir().unwrap();
    let country = geo.path().join("country.mmdb");
    fs::copy(fixtures.join("GeoIP2-Country-Test.mmdb"), &country).unwrap();
    let extra = format!("[geo]\ncountry_db = \"{}\"\n", country.display());
    let mut mon = Monitor::start(&cg.path, &extra);
    let flow = |port: u16| {
        let server = format!("89.160.20.112:{port}");
        let mut srv =
            spawn("tcp-server", &[server.clone(), s(10), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
        srv.line();
        spawn("tcp-client", &[server, s(10), s(1)], Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None })
            .finish();
        srv.finish();
    };
    flow(6001);
    // A corrupt replacement (written by rename, as an updater would): refused, old data kept.
    let tmp = geo.path().join("new.mmdb");
    fs::write(&tmp, b"not a database").unwrap();
    fs::rename(&tmp, &country).unwrap();
    kill(mon.pid(), Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    flow(6002);
    // The sink reads the file when it handles the reload: replace it again only once the flow
    // after the first reload has been enriched (it is queued behind that reload).
    mon.wait_for_flow(|f| f["remote"] == "89.160.20.112:6002");
    // A valid replacement of the other schema (DB-IP `country_code`).
    fs::copy(fixtures.join("dbip-country-subset.mmdb"), &tmp).unwrap();
    fs::rename(&tmp, &country).unwrap();
    // The config file edited meanwhile: SIGHUP says that it does not apply it (the databases are
    // reloaded at the paths the daemon started with).
    let config = mon.dir().join("monitor.toml");
    let text = fs::read_to_string(&config).unwrap();
    let edited = text.replace("flush_interval_secs = 1\n", "flush_interval_secs = 2\n");
    assert_ne!(edited, text);
    fs::write(&config, &edited).unwrap();
    kill(mon.pid(), Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    flow(6003);
    // Edited again, into a config a restart would refuse (its database does not exist): said so.
    let invalid =
        edited.replace(&format!("country_db = \"{}\"", country.display()), "country_db = \"/elsewhere.mmdb\"");
    assert_ne!(invalid, edited);
    fs::write(&config, invalid).unwrap();
    kill(mon.pid(), Signal::SIGHUP).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let out = mon.stop();
    assert!(out.log.contains("reload failed, keeping the previous databases"), "{}", out.log);
    assert!(out.log.contains("reloaded country database"), "{}", out.log);
    assert!(out.log.contains("is unchanged"), "the first SIGHUP, config as started: {}", out.log);
    assert!(
        out.log.contains("changed since the daemon started (journal.flush_interval_secs): SIGHUP reloads only"),
        "{}",
        out.log
    );
    assert!(
        out.log.contains(
            "changed since the daemon started (geo.country_db, journal.flush_interval_secs) and is not valid now"
        ) && out.log.contains("a restart would refuse it (exit 2)"),
        "{}",
        out.log
    );
    let db_of = |port: u16| -> Value {
        let f = out.flows.iter().find(|f| f["remote"] == format!("89.160.20.112:{port}")).expect("flow");
        f["destination"]["country_db"]["database_type"].clone()
    };
    assert_eq!(db_of(6001), "GeoIP2-Country");
    assert_eq!(db_of(6002), "GeoIP2-Country", "old database kept after a failed reload");
    assert_ne!(db_of(6003), "GeoIP2-Country", "new database after a good reload");

    // `monitor status` shows the daemon's last state and the databases it used.
    let status = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .args(["status", "--json", "--journal"])
        .arg(out.dir.path().join("journal.db"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let v: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["running"], false);
    assert!(v["rows"]["connections"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["daemon"]["flushes"].as_u64().unwrap() >= 1, "{v}");
}

/// A monitor on `cg` that has seen one TCP exchange of its cgroup (4,000 bytes sent, 100
/// answered) to a server on `port` of `pair`'s far side.
fn monitor_after_one_exchange(pair: &Pair, cg: &TestCgroup, port: u16) -> Monitor {
    let server = format!("{}:{port}", pair.b_v4[0]);
    let mut srv =
        spawn("tcp-server", &[server.clone(), s(100), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = Monitor::start(&cg.path, "");
    spawn("tcp-client", &[server, s(4000), s(1)], Place { netns: Some(&pair.a), cgroup: Some(cg), uid: None }).finish();
    srv.finish();
    mon
}

/// SIGTERM (as systemd sends it) stops the daemon cleanly: open flows reported, statistics
/// final, exit 0.
pub fn sigterm_stops_cleanly() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = monitor_after_one_exchange(&pair, &cg, 6010);
    let out = mon.stop_with(Signal::SIGTERM);
    assert_eq!(out.closed().len(), 1);
    assert_eq!(out.closed()[0].payload.tx_bytes, 4000);
    out.assert_nothing_lost();
    assert!(out.log.contains("detached"), "{}", out.log);
}

/// `monitor check` tells how `run` will read idle flows' counters (the iterator, or socket by
/// socket: degradation `snapshots_by_descriptor`), trying the iterator as `run` does (a docs
/// pass: `check` did not say, and the degradation showed only once the daemon ran).
pub fn check_tells_the_snapshot_mode_run_takes() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let check = Command::new(crate::daemon::monitor_bin())
        .args(["check", "--json", "--cgroup"])
        .arg(&cg.path)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
    let v: Value = serde_json::from_slice(&check.stdout).unwrap();
    let iterator = v["checks"].as_array().unwrap().iter().find(|c| c["name"] == "socket storage iterator");
    let iterator = iterator.unwrap_or_else(|| panic!("no iterator check: {v}"))["ok"].as_bool().unwrap();
    let modes = ["snapshots_by_descriptor", "no_snapshots"];
    let predicted: Vec<&str> =
        v["degradations"].as_array().unwrap().iter().filter_map(Value::as_str).filter(|d| modes.contains(d)).collect();
    assert_eq!(predicted.is_empty(), iterator, "{v}");
    let out = monitor_after_one_exchange(&pair, &cg, 6012).stop();
    let taken: Vec<&str> = out.degradations.iter().map(String::as_str).filter(|d| modes.contains(d)).collect();
    assert_eq!(predicted, taken, "check said {v}; run took {:?}", out.degradations);
    eprintln!("    snapshot degradations {taken:?} (check and run agree)");
}

/// The watched cgroup removed and created again while the daemon runs (a systemd unit's restart
/// does that to its cgroup): the programs stay attached to the removed one and would see nothing
/// in the new one, so the daemon stops with what it recorded, exit 1 and the reason, for a
/// restart to attach to the new cgroup (an adversarial pass: it went blind, silently, and
/// `status` said running).
pub fn watched_cgroup_created_again_stops_the_daemon() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = monitor_after_one_exchange(&pair, &cg, 6011);
    std::thread::sleep(Duration::from_millis(300));
    fs::remove_dir(&cg.path).unwrap();
    fs::create_dir(&cg.path).unwrap();
    let (status, out) = mon.exited();
    assert_eq!(status.code(), Some(1), "{}", out.log);
    assert!(out.log.contains("removed and created again"), "{}", out.log);
    assert_eq!(out.closed().len(), 1, "what it saw before is recorded");
    assert_eq!(out.closed()[0].payload.tx_bytes, 4000);
}

/// A long-lived flow gets periodic `update` records whose deltas add up to the final totals.
pub fn long_lived_flow_gets_periodic_updates_that_add_up() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = format!("{}:6011", pair.b_v4[0]);
    let mut srv =
        spawn("tcp-server", &[server.clone(), s(777), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let lines = spawn(
        "tcp-trickle",
        &[server, s(10_000), s(40), s(100)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None },
    )
    .finish();
    srv.finish();
    let out = mon.stop();
    let local = &lines[0]["local"];
    let mine: Vec<_> =
        out.records.iter().filter(|r| r.local.map(|l| l.to_string()) == local.as_str().map(String::from)).collect();
    let updates = mine.iter().filter(|r| r.event == monitor::tracker::record::RecordKind::Update).count();
    assert!(updates >= 2, "a 4 s flow with a 1 s interval has several updates: {mine:#?}");
    let last = mine.last().unwrap();
    assert_eq!(last.event, monitor::tracker::record::RecordKind::Close);
    assert_eq!((last.payload.tx_bytes, last.payload.rx_bytes), (400_000, 777));
    let tx: u64 = mine.iter().map(|r| r.delta_payload.tx_bytes).sum();
    let wire: u64 = mine.iter().map(|r| r.delta_wire.tx_bytes).sum();
    assert_eq!(tx, 400_000, "deltas add up to the total");
    assert_eq!(wire, last.wire.tx_bytes);
    let mut previous = 0;
    for r in &mine {
        assert!(r.payload.tx_bytes >= previous, "totals never go back");
        previous = r.payload.tx_bytes;
    }
    out.assert_nothing_lost();
}

/// A connection that exchanged data and then went idle: a periodic snapshot reports its bytes
/// while it stays open (an `update` record), and when the monitor stops both sides' `shutdown`
/// records carry them (read from the kernel, not the last event). Where the kernel refuses the
/// counter iterator, the snapshots are read through the owners' descriptors.
pub fn idle_open_flows_are_reported_with_their_bytes_at_shutdown() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = format!("{}:6012", pair.b_v4[0]);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let mut srv = spawn(
        "tcp-hold-server",
        &[server.clone(), s(3000), s(5000)],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None },
    );
    srv.line();
    let mut cli = spawn(
        "tcp-hold-client",
        &[server, s(3000), s(5000)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None },
    );
    let c = cli.line();
    let d = srv.line();
    // Idle for several update intervals: a snapshot asks for flows idle one interval, and the
    // update record follows at the tracker's next due tick.
    std::thread::sleep(std::time::Duration::from_millis(4000));
    let out = mon.stop();
    cli.send("exit");
    srv.send("exit");
    cli.finish();
    srv.finish();
    if out.degradations.iter().any(|d| d == "no_snapshots") {
        // This kernel refuses the counter iterator (a tracing program): the monitor cannot read
        // idle flows' counters, says so at start, and must not claim such records complete.
        eprintln!("    DEGRADED: no counter snapshots on this kernel; checking that shutdown records say incomplete");
        let shutdown: Vec<_> =
            out.records.iter().filter(|r| r.event == monitor::tracker::record::RecordKind::Shutdown).collect();
        assert!(!shutdown.is_empty(), "no shutdown records: {:#?}", out.records);
        assert!(shutdown.iter().all(|r| !r.complete), "stale shutdown records claimed complete: {shutdown:#?}");
        out.assert_nothing_lost();
        return;
    }
    if out.degradations.iter().any(|d| d == "snapshots_by_descriptor") {
        eprintln!("    (the kernel refuses the counter iterator: snapshots read through the owners' descriptors)");
    }
    // The connection's records (the listener, with the server's local address, has its own).
    let find = |local: &Value, kind| {
        out.records
            .iter()
            .rfind(|r| {
                r.local.map(|l| l.to_string()).as_deref() == local.as_str() && r.event == kind && r.remote.is_some()
            })
            .unwrap_or_else(|| panic!("no {kind:?} record for {local}: {:#?}", out.records))
    };
    use monitor::tracker::record::RecordKind::{Shutdown, Update};
    let (client, server) = (find(&c["local"], Update), find(&d["local"], Update));
    assert_eq!((client.payload.tx_bytes, client.payload.rx_bytes), (3000, 5000), "periodic snapshot");
    assert_eq!((server.payload.rx_bytes, server.payload.tx_bytes), (3000, 5000), "periodic snapshot");
    let (client, server) = (find(&c["local"], Shutdown), find(&d["local"], Shutdown));
    assert_eq!((client.payload.tx_bytes, client.payload.rx_bytes), (3000, 5000));
    assert_eq!((server.payload.rx_bytes, server.payload.tx_bytes), (3000, 5000));
    assert!(client.wire.tx_bytes > 3000 && server.wire.tx_bytes > 5000, "wire counters fresh too");
    assert!(client.complete && server.complete);
    out.assert_nothing_lost();
}
