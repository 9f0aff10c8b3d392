//! `monitor run` output: hostile app names and `comm` in log lines and JSON lines.

use std::sync::Arc;

use monitor::{
    escape,
    identity::{App, AppSource},
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
    },
};

use super::*;

const EVIL: &str = "\x1b]0;pwned\x07evil|app\n## injected\u{202e}\u{85}";
const COMM: &str = "=HYPERLINK(\"x\")\x1b[2J";

fn flow() -> FlowOutput {
    let t = jiff::Timestamp::from_second(1_794_805_200).unwrap();
    let record = FlowRecord {
        event: RecordKind::Close,
        cookie: 7,
        owner: Owner {
            tgid: 4242,
            pid: 4243,
            uid: 1000,
            gid: 1000,
            comm: COMM.into(),
            cgroup_id: 9,
            source: OwnerSource::SockCreate,
            start_cs: 0,
            exec_mark: 0,
        },
        protocol: Protocol::Tcp,
        ip_protocol: 6,
        direction: Direction::Outbound,
        local: Some("10.0.0.2:50000".parse().unwrap()),
        remote: Some("203.0.113.10:443".parse().unwrap()),
        payload: Payload { tx_bytes: 1, rx_bytes: 2 },
        payload_source: PayloadSource::Syscall,
        payload_sources: Default::default(),
        wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
        delta_payload: Payload { tx_bytes: 1, rx_bytes: 2 },
        delta_wire: Wire { tx_bytes: 41, tx_packets: 1, rx_bytes: 42, rx_packets: 1 },
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
        name: EVIL.into(),
        exe: None,
        cmdline: Some("$'\\x1b]0;pwned\\a'".into()),
        pid: 4242,
        start_time: 0,
        uid: 1000,
        user: Some("\u{202e}root".into()),
        unit: None,
        cgroup: None,
        container: None,
        source: AppSource::Kernel,
        android: None,
    };
    FlowOutput { record, app: Arc::new(app), destination: None, names: monitor::names::Names::default() }
}

#[test]
fn flow_log_line_shows_hostile_app_and_comm_escaped_on_one_line() {
    assert_eq!(
        describe(&flow()),
        "close tcp outbound 10.0.0.2:50000 -> 203.0.113.10:443 app=\"\\x1b]0;pwned\\x07evil|app\\n## injected\\u{202e}\\u{85}\" \
         pid=4242 comm=\"=HYPERLINK(\\\"x\\\")\\x1b[2J\" uid=1000 payload tx=1 rx=2 wire tx=41B/1p rx=42B/1p"
    );
}

#[test]
fn json_line_has_no_raw_control_or_bidi_character() {
    let mut line = Vec::new();
    escape::json::to_writer(&mut line, &Output::Flow(Box::new(flow()))).unwrap();
    let text = String::from_utf8(line).unwrap();
    assert!(!text.chars().any(escape::is_invisible), "{text:?}");
    assert!(text.contains(r#""name":"\u001b]0;pwned\u0007evil|app\n## injected\u202e\u0085""#), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((v["app"]["name"].as_str(), v["owner"]["comm"].as_str()), (Some(EVIL), Some(COMM)));
    assert_eq!(v["app"]["user"], "\u{202e}root");
}
