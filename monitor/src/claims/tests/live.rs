//! Live alerts: first violation per (week, claim, destination), repeats counted; the alert
//! command gets the JSON on stdin, and a hung one is killed.

use std::{path::Path, sync::Arc, time::Duration};

use jiff::Timestamp;

use crate::{
    claims::{ClaimSet, command::AlertCommand, live::Alerts},
    enrich::{Destination, Scope},
    identity::{
        App, AppSource,
        android::{AndroidIdentity, UidKind},
    },
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
    },
};

fn app(name: &str) -> Arc<App> {
    Arc::new(App {
        name: name.into(),
        exe: Some(format!("/usr/bin/{name}")),
        cmdline: None,
        pid: 42,
        start_time: 1,
        uid: 1000,
        user: Some("alice".into()),
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Proc,
        android: None,
    })
}

fn dest(country: &str) -> Destination {
    Destination {
        scope: Scope::Public,
        country: Some(country.into()),
        asn: Some(64_500),
        as_org: Some("Example".into()),
        country_db: None,
        asn_db: None,
        answers: Default::default(),
        consensus: None,
    }
}

fn record(remote: &str, tx: u64, rx: u64, at: &str) -> FlowRecord {
    let at: Timestamp = at.parse().unwrap();
    let payload = Payload { tx_bytes: tx, rx_bytes: rx };
    let wire = Wire { tx_bytes: tx, tx_packets: 1, rx_bytes: rx, rx_packets: 1 };
    FlowRecord {
        event: RecordKind::Update,
        cookie: 1,
        owner: Owner {
            tgid: 42,
            pid: 42,
            uid: 1000,
            gid: 1000,
            comm: "x".into(),
            cgroup_id: 1,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: None,
        remote: Some(remote.parse().unwrap()),
        payload,
        payload_source: PayloadSource::Syscall,
        payload_sources: Default::default(),
        rtt: None,
        final_of_socket: false,
        release: Default::default(),
        resumed: false,
        wire,
        delta_payload: payload,
        delta_wire: wire,
        first_seen: at,
        last_seen: at,
        closed: None,
        complete: true,
    }
}

fn alerts(text: &str) -> Alerts {
    Alerts::new(ClaimSet::parse(text, Path::new("c.toml")).unwrap(), jiff::tz::TimeZone::UTC)
}

#[test]
fn the_first_violation_per_destination_and_week_alerts_and_repeats_are_counted() {
    let mut a = alerts(
        "[[claims]]\nname = \"no-cn\"\napps = [\"shop\"]\ndirection = \"upload\"\ndenied_countries = [\"CN\"]\n",
    );
    let shop = app("shop");
    let cn = dest("CN");
    let raised = a.check(&record("203.0.113.9:443", 100, 0, "2026-11-18T12:00:00Z"), &shop, Some(&cn));
    assert_eq!(raised.len(), 1);
    assert_eq!(
        (raised[0].claim.as_str(), raised[0].rule.as_str(), raised[0].period.as_str()),
        ("no-cn", "denied_countries", "2026-W47")
    );
    assert_eq!((raised[0].destination.as_str(), raised[0].pid, raised[0].payload_tx), ("203.0.113.9", 42, 100));
    // Same destination, same week: counted, not raised.
    assert!(a.check(&record("203.0.113.9:8443", 50, 0, "2026-11-19T12:00:00Z"), &shop, Some(&cn)).is_empty());
    // Only received bytes: not a violation of an upload claim.
    assert!(a.check(&record("203.0.113.9:443", 0, 70, "2026-11-19T12:00:00Z"), &shop, Some(&cn)).is_empty());
    // Allowed country, another app, a private address: nothing.
    assert!(a.check(&record("198.51.100.1:443", 10, 0, "2026-11-19T12:00:00Z"), &shop, Some(&dest("SE"))).is_empty());
    assert!(a.check(&record("203.0.113.9:443", 10, 0, "2026-11-19T12:00:00Z"), &app("other"), Some(&cn)).is_empty());
    // Another destination, and the same one in the next week: raised.
    assert_eq!(a.check(&record("203.0.113.10:443", 1, 0, "2026-11-19T12:00:00Z"), &shop, Some(&cn)).len(), 1);
    assert_eq!(a.check(&record("203.0.113.9:443", 1, 0, "2026-11-23T00:00:01Z"), &shop, Some(&cn)).len(), 1);
    let rows = a.take_changed();
    let first = rows.iter().find(|r| r.destination == "203.0.113.9" && r.period == "2026-W47").unwrap();
    assert_eq!((first.repeats, first.payload_tx), (1, 150));
    assert_eq!(first.last_seen, "2026-11-19T12:00:00Z".parse::<Timestamp>().unwrap());
    assert_eq!(rows.len(), 3);
    assert!(a.take_changed().is_empty(), "each change is handed over once");
    // After a restart, the stored rows are remembered: no second alert.
    let mut b = alerts("[[claims]]\nname = \"no-cn\"\napps = [\"shop\"]\ndenied_countries = [\"CN\"]\n");
    b.remember(rows);
    assert!(b.check(&record("203.0.113.9:443", 5, 0, "2026-11-20T12:00:00Z"), &shop, Some(&cn)).is_empty());
}

#[test]
fn android_packages_select_apps_by_any_package_of_their_uid() {
    let mut a =
        alerts("[[claims]]\nname = \"no-cn\"\nandroid_packages = [\"com.example.b\"]\ndenied_countries = [\"CN\"]\n");
    let packages = vec!["com.example.a".to_owned(), "com.example.b".to_owned()];
    let mut shared = Arc::unwrap_or_clone(app("com.example.a"));
    shared.android = Some(AndroidIdentity {
        package: Some("com.example.a".into()),
        packages,
        user_id: 0,
        app_id: 10_200,
        kind: UidKind::App,
    });
    let shared = Arc::new(shared);
    let cn = dest("CN");
    let raised = a.check(&record("203.0.113.9:443", 100, 0, "2026-11-18T12:00:00Z"), &shared, Some(&cn));
    assert_eq!(raised.len(), 1, "the shared UID's second package is claimed");
    assert!(
        a.check(&record("203.0.113.10:443", 100, 0, "2026-11-18T12:00:00Z"), &app("com.example.b"), Some(&cn))
            .is_empty(),
        "a same-named app without an Android identity is not"
    );
}

#[test]
fn the_alert_command_gets_the_json_on_stdin_and_a_hung_one_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let script = format!("cat > {}", out.display());
    let mut a = alerts("[[claims]]\nname = \"no-cn\"\napps = [\"shop\"]\ndenied_countries = [\"CN\"]\n");
    let alert =
        a.check(&record("203.0.113.9:443", 100, 0, "2026-11-18T12:00:00Z"), &app("shop"), Some(&dest("CN"))).remove(0);
    let command = AlertCommand::spawn(vec!["sh".into(), "-c".into(), script], Duration::from_secs(5)).unwrap();
    command.send(alert.clone());
    command.stop();
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got["claim"], "no-cn");
    assert_eq!(got["destination"], "203.0.113.9");
    assert_eq!(got["country"], "CN");
    assert_eq!(got["payload_tx"], 100);

    let started = std::time::Instant::now();
    let hung = AlertCommand::spawn(vec!["sleep".into(), "30".into()], Duration::from_secs(1)).unwrap();
    hung.send(alert);
    hung.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "killed after its timeout: {:?}", started.elapsed());
}

#[test]
fn an_alert_command_built_with_an_endless_timeout_does_not_overflow_its_deadline() {
    // The settings refuse such a timeout; a caller building the command itself gets it cut to
    // the config's maximum instead of a panic in the alert thread.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("alert.json");
    let mut a = alerts("[[claims]]\nname = \"no-cn\"\napps = [\"shop\"]\ndenied_countries = [\"CN\"]\n");
    let alert =
        a.check(&record("203.0.113.9:443", 100, 0, "2026-11-18T12:00:00Z"), &app("shop"), Some(&dest("CN"))).remove(0);
    let script = format!("cat > {}", out.display());
    let command = AlertCommand::spawn(vec!["sh".into(), "-c".into(), script], Duration::MAX).unwrap();
    command.send(alert);
    command.stop();
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(got["claim"], "no-cn");
}
