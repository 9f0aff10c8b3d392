//! The JSON line of a flow: byte for byte as before (stored expected lines built from fixture
//! records, hostile names included), and its cost (ignored timing test).

use std::sync::Arc;

use super::FlowOutput;
use crate::{
    daemon::Output,
    enrich::{Consensus, CountryAnswer, DbRef, Destination, Scope},
    escape,
    identity::{App, AppSource},
    names::{Hostname, NameSource, Names},
    tracker::{
        FlowRecord,
        record::{
            Direction, Owner, OwnerSource, Payload, PayloadSource, PayloadSources, Protocol, RecordKind, Rtt, Wire,
        },
    },
};

fn t(secs: i64, nanos: i32) -> jiff::Timestamp {
    jiff::Timestamp::new(secs, nanos).unwrap()
}

fn db(kind: &str, build_epoch: u64) -> DbRef {
    DbRef { database_type: kind.into(), build_epoch }
}

/// Every field set: RTT, names, two country answers, hostile app and comm.
fn full() -> FlowOutput {
    let record = FlowRecord {
        event: RecordKind::Close,
        cookie: 18_446_744_073_709_551_615,
        owner: Owner {
            tgid: 4242,
            pid: 4243,
            uid: 1000,
            gid: 1001,
            comm: "=HYPERLINK(\"x\")\x1b[2J\u{202e}".into(),
            cgroup_id: 9,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: Some("[2001:db8::2]:50000".parse().unwrap()),
        remote: Some("203.0.113.10:443".parse().unwrap()),
        payload: Payload { tx_bytes: 1, rx_bytes: 2 },
        payload_source: PayloadSource::Mixed,
        payload_sources: PayloadSources { tx: PayloadSource::Syscall, rx: PayloadSource::TcpCounters },
        wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
        delta_payload: Payload { tx_bytes: 1, rx_bytes: 2 },
        delta_wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
        first_seen: t(1_794_805_200, 123_456_789),
        last_seen: t(1_794_805_201, 0),
        closed: Some(t(1_794_805_201, 500_000)),
        complete: false,
        rtt: Some(Rtt { min_us: 110, smoothed_us: 250 }),
        final_of_socket: false,
        release: Default::default(),
        resumed: false,
    };
    let app = App {
        name: "\x1b]0;pwned\x07evil|app\n## injected\u{202e}\u{85}".into(),
        exe: Some("/usr/bin/evil".into()),
        cmdline: Some("$'\\x1b]0;pwned\\a' --flag".into()),
        pid: 4242,
        start_time: 77,
        uid: 1000,
        user: Some("\u{202e}root".into()),
        unit: Some("evil.service".into()),
        cgroup: Some("/system.slice/evil.service".into()),
        container: Some("0123abcd".into()),
        source: AppSource::Proc,
        android: None,
    };
    let answers = [
        CountryAnswer { label: "primary".into(), db: db("country ipvAll", 1_780_272_000), country: Some("NL".into()) },
        CountryAnswer { label: "registry".into(), db: db("RIR", 1_780_000_000), country: None },
    ];
    let destination = Destination {
        scope: Scope::Public,
        country: Some("NL".into()),
        asn: Some(64_500),
        as_org: Some("Example \"Org\"".into()),
        country_db: Some(db("country ipvAll", 1_780_272_000)),
        asn_db: Some(db("ip-location-db-ASN", 1_781_654_400)),
        answers: Arc::from(answers),
        consensus: Some(Consensus::Partial),
    };
    let names = Names {
        hostname: Some(Hostname::parse("www.example.com").unwrap()),
        registrable_domain: Some("example.com".into()),
        source: NameSource::Sni,
        dns_name: Some(Hostname::parse("cdn.example.net").unwrap()),
        ech_outer: true,
    };
    FlowOutput { record, app: Arc::new(app), destination: Some(destination), names }
}

/// The fewest fields: no remote address, destination, names or RTT; an update of a UDP flow.
fn sparse() -> FlowOutput {
    let mut f = full();
    let r = &mut f.record;
    r.event = RecordKind::Update;
    r.protocol = Protocol::Udp;
    r.ip_protocol = 17;
    r.direction = Direction::Unknown;
    r.local = None;
    r.remote = None;
    r.payload_source = PayloadSource::Syscall;
    r.payload_sources = PayloadSources::default();
    r.closed = None;
    r.complete = true;
    r.rtt = None;
    r.owner.source = OwnerSource::Procfs;
    f.destination = None;
    f.names = Names::default();
    f.app = Arc::new(App {
        exe: None,
        cmdline: None,
        user: None,
        unit: None,
        cgroup: None,
        container: None,
        ..(*f.app).clone()
    });
    f
}

fn line(f: FlowOutput) -> String {
    let mut out = Vec::new();
    escape::json::to_writer(&mut out, &Output::Flow(Box::new(f))).unwrap();
    String::from_utf8(out).unwrap()
}

/// `full()` as printed before the output types were serialised by hand (derived, with
/// `#[serde(flatten)]`).
const FULL: &str = r#"{"type":"flow","event":"close","cookie":18446744073709551615,"owner":{"tgid":4242,"pid":4243,"uid":1000,"gid":1001,"comm":"=HYPERLINK(\"x\")\u001b[2J\u202e","cgroup_id":9,"source":"sock_create"},"protocol":"tcp","ip_protocol":6,"direction":"outbound","local":"[2001:db8::2]:50000","remote":"203.0.113.10:443","payload":{"tx_bytes":1,"rx_bytes":2},"payload_source":"mixed","payload_sources":{"tx":"syscall","rx":"tcp_counters"},"wire":{"tx_bytes":41,"tx_packets":1,"rx_bytes":42,"rx_packets":1},"delta_payload":{"tx_bytes":1,"rx_bytes":2},"delta_wire":{"tx_bytes":41,"tx_packets":1,"rx_bytes":42,"rx_packets":1},"first_seen":"2026-11-16T05:00:00.123456789Z","last_seen":"2026-11-16T05:00:01Z","closed":"2026-11-16T05:00:01.0005Z","complete":false,"rtt":{"min_us":110,"smoothed_us":250},"app":{"name":"\u001b]0;pwned\u0007evil|app\n## injected\u202e\u0085","exe":"/usr/bin/evil","cmdline":"$'\\x1b]0;pwned\\a' --flag","pid":4242,"start_time":77,"uid":1000,"user":"\u202eroot","unit":"evil.service","cgroup":"/system.slice/evil.service","container":"0123abcd","source":"proc"},"destination":{"scope":"public","country":"NL","asn":64500,"as_org":"Example \"Org\"","country_db":{"database_type":"country ipvAll","build_epoch":1780272000},"asn_db":{"database_type":"ip-location-db-ASN","build_epoch":1781654400},"answers":[{"label":"primary","db":{"database_type":"country ipvAll","build_epoch":1780272000},"country":"NL"},{"label":"registry","db":{"database_type":"RIR","build_epoch":1780000000},"country":null}],"consensus":"partial"},"names":{"hostname":"www.example.com","registrable_domain":"example.com","source":"sni","dns_name":"cdn.example.net","ech_outer":true}}"#;
/// `sparse()`, likewise.
const SPARSE: &str = r#"{"type":"flow","event":"update","cookie":18446744073709551615,"owner":{"tgid":4242,"pid":4243,"uid":1000,"gid":1001,"comm":"=HYPERLINK(\"x\")\u001b[2J\u202e","cgroup_id":9,"source":"procfs"},"protocol":"udp","ip_protocol":17,"direction":"unknown","local":null,"remote":null,"payload":{"tx_bytes":1,"rx_bytes":2},"payload_source":"syscall","payload_sources":{"tx":"syscall","rx":"syscall"},"wire":{"tx_bytes":41,"tx_packets":1,"rx_bytes":42,"rx_packets":1},"delta_payload":{"tx_bytes":1,"rx_bytes":2},"delta_wire":{"tx_bytes":41,"tx_packets":1,"rx_bytes":42,"rx_packets":1},"first_seen":"2026-11-16T05:00:00.123456789Z","last_seen":"2026-11-16T05:00:01Z","closed":null,"complete":true,"app":{"name":"\u001b]0;pwned\u0007evil|app\n## injected\u202e\u0085","exe":null,"cmdline":null,"pid":4242,"start_time":77,"uid":1000,"user":null,"unit":null,"cgroup":null,"container":null,"source":"proc"},"destination":null,"names":{"hostname":null,"registrable_domain":null,"source":"none","ech_outer":false}}"#;

#[test]
fn flow_line_is_unchanged_with_every_field() {
    assert_eq!(line(full()), FULL);
}

#[test]
fn flow_line_is_unchanged_without_optional_fields() {
    assert_eq!(line(sparse()), SPARSE);
}

#[test]
fn flow_line_is_the_record_app_destination_and_names_as_json() {
    // The line holds exactly the parts' own JSON (one source of truth: their Serialize impls).
    let f = full();
    let v: serde_json::Value = serde_json::from_str(&line(f.clone())).unwrap();
    let mut expected = serde_json::to_value(&f.record).unwrap();
    let map = expected.as_object_mut().unwrap();
    map.insert("app".into(), serde_json::to_value(&*f.app).unwrap());
    map.insert("destination".into(), serde_json::to_value(&f.destination).unwrap());
    map.insert("names".into(), serde_json::to_value(&f.names).unwrap());
    map.insert("type".into(), "flow".into());
    assert_eq!(v, expected);
}

/// The printer's line, app rendered once per `Arc<App>`, is the same bytes as the whole record
/// serialised: for hostile and sparse apps, for a second flow of the same app (rendered JSON
/// reused), for a different app at the same time, and after the cache was emptied.
#[test]
fn printed_line_with_a_rendered_app_is_the_same_bytes() {
    let mut apps = super::AppJson::default();
    let mut printed = |f: &FlowOutput| {
        let mut out = Vec::new();
        apps.line(&mut out, &Output::Flow(Box::new(f.clone()))).unwrap();
        String::from_utf8(out).unwrap()
    };
    let (full, sparse) = (full(), sparse());
    assert_eq!(printed(&full), FULL);
    assert_eq!(printed(&sparse), SPARSE);
    let mut again = full.clone();
    again.record.cookie = 5;
    assert_eq!(printed(&again), line(again.clone()), "the same app's JSON, reused");
    assert_eq!(printed(&sparse), SPARSE, "each app has its own JSON");
    // Past the cache's size: every app is still printed as itself.
    let many: Vec<FlowOutput> = (0..super::APPS_RENDERED + 10)
        .map(|i| {
            let mut f = full.clone();
            f.app = Arc::new(App { name: format!("app-{i}\u{202e}"), ..(*full.app).clone() });
            f
        })
        .collect();
    for f in many.iter().chain(many.iter().take(3)) {
        assert_eq!(printed(f), line(f.clone()));
    }
    let stats = Output::Stats(Box::default());
    let mut out = Vec::new();
    apps.line(&mut out, &stats).unwrap();
    let mut plain = Vec::new();
    escape::json::to_writer(&mut plain, &stats).unwrap();
    assert_eq!(out, plain, "other outputs are written as they are");
}

/// Records like the churn benchmark's (one close record per TCP socket, loopback-like private
/// addresses, no names), serialised as the printer does (app rendered once).
#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn flow_line_cost() {
    const LINES: u32 = 200_000;
    let mut f = sparse();
    f.record.event = RecordKind::Close;
    f.record.remote = Some("10.200.0.2:5000".parse().unwrap());
    f.record.local = Some("10.200.0.1:41234".parse().unwrap());
    f.record.closed = Some(f.record.last_seen);
    f.record.owner.comm = "bench-load".into();
    f.app = Arc::new(App { name: "bench-load".into(), exe: Some("/usr/bin/bench-load".into()), ..(*f.app).clone() });
    f.destination = Some(Destination::unlooked(Scope::Private));
    let outputs: Vec<Output> = (0..LINES)
        .map(|i| {
            let mut f = f.clone();
            f.record.cookie = u64::from(i) + 1_000_000;
            f.record.last_seen += jiff::SignedDuration::from_micros(i64::from(i) * 30);
            Output::Flow(Box::new(f))
        })
        .collect();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut bytes = 0;
    let mut apps = super::AppJson::default();
    let started = std::time::Instant::now();
    for o in &outputs {
        apps.line(&mut out, o).unwrap();
        out.push(b'\n');
        bytes += out.len();
        out.clear();
    }
    let took = started.elapsed();
    eprintln!(
        "flow lines: {:.3} µs per line, {} bytes per line",
        took.as_secs_f64() * 1e6 / f64::from(LINES),
        bytes / LINES as usize
    );
}
