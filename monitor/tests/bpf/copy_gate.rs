//! The kernel's TLS gate on payload copies (issue 10 cost goal): a TCP flow is copied to the
//! names stage only when its first payload starts a TLS ClientHello. Plain flows, and flows whose
//! first bytes resemble a TLS record but are no ClientHello (wrong version, impossible length,
//! another handshake message, application data), cost no copy at all; a ClientHello held whole by
//! its first segment costs one, one split across two segments two. Checked against the kernel's
//! own copy counter (`kernel.copies_submitted`), which counts every ring reservation tried, and
//! followed into the journal's statistics (`monitor status`).

use std::{
    io::Write as _,
    net::{Shutdown, SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use serde_json::{Value, json};

use crate::{
    cases::server_addr,
    daemon::{Monitor, monitor_bin},
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, read_to_end, say},
};

/// Payload bytes each client sends after its first bytes.
const SEND: usize = 5_000;
/// Reply of the server per connection.
const REPLY: usize = 700;

/// First bytes of flows that must not be copied (hex), each with why.
const NOT_TLS: &[(&str, &str)] = &[
    ("", "plain bytes (0x00, 0x01, …)"),
    ("474554202f20485454502f312e310d0a486f73743a20782e746573740d0a0d0a", "an HTTP request"),
    ("160305004001000040", "record version 3.5"),
    ("160201004001000040", "record version 2.1"),
    ("160301400101003ffc", "record length 16,385"),
    ("160303000001000040", "record length 0"),
    ("160303004002000040", "a ServerHello, not a ClientHello"),
    ("170303004001000040", "application data"),
];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

/// Helper roles of this file.
pub fn helper(role: &str, args: &[String]) {
    match role {
        // gate-client SERVER MODE SEND: one connection whose first bytes are a rustls ClientHello
        // for `gate.svc.test` (`tls`: one write; `tls-split`: two segments 50 ms apart) or the
        // hex bytes `hex:…`, then SEND pattern bytes; reads the reply to EOF.
        "gate-client" => {
            name("mon-gate-client");
            let server: SocketAddr = args[0].parse().unwrap();
            let mode = args[1].as_str();
            let mut first = match mode.strip_prefix("hex:") {
                Some(h) => hex(h),
                None => crate::names::client_hello("gate.svc.test"),
            };
            let head = first.len();
            first.extend(pattern(args[2].parse().unwrap()));
            let mut s = TcpStream::connect(server).unwrap();
            if mode == "tls-split" {
                s.set_nodelay(true).unwrap();
                s.write_all(&first[..head / 2]).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                s.write_all(&first[head / 2..]).unwrap();
            } else {
                s.write_all(&first).unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
            let rx = read_to_end(&mut s);
            say(&json!({"local": s.local_addr().unwrap().to_string(), "tx": first.len(), "rx": rx}));
        }
        other => panic!("unknown helper role {other}"),
    }
}

/// The closed flow line of the connection from `local`.
fn flow<'a>(flows: &'a [Value], local: &Value) -> &'a Value {
    flows
        .iter()
        .find(|f| f["event"] == "close" && f["local"] == *local)
        .unwrap_or_else(|| panic!("no closed flow from {local}: {flows:#?}"))
}

pub fn only_tls_client_hellos_are_copied() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let v4 = server_addr(&pair, false, 0, 443);
    let v6 = server_addr(&pair, true, 0, 443);
    let b = Place { netns: Some(&pair.b), ..Place::default() };
    // Per server: every not-TLS start, then the TLS connections (v4: whole and split; v6: whole).
    let conns = |tls: usize| (NOT_TLS.len() + tls).to_string();
    let mut srv4 = spawn("tcp-server", &[v4.to_string(), REPLY.to_string(), conns(2)], b);
    srv4.line();
    let mut srv6 = spawn("tcp-server", &[v6.to_string(), REPLY.to_string(), conns(1)], b);
    srv6.line();
    let mon = Monitor::start(&cg.path, "");
    let a = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(4260) };
    let client = |server: SocketAddr, mode: String| {
        let line = spawn("gate-client", &[server.to_string(), mode, SEND.to_string()], a).finish().remove(0);
        assert_eq!(line["rx"], REPLY, "{line}");
        line
    };
    let mut plain = Vec::new();
    for (bytes, why) in NOT_TLS {
        for server in [v4, v6] {
            plain.push((client(server, format!("hex:{bytes}")), *why));
        }
    }
    let whole4 = client(v4, "tls".into());
    let split4 = client(v4, "tls-split".into());
    let whole6 = client(v6, "tls".into());
    srv4.finish();
    srv6.finish();
    let out = mon.stop();
    out.assert_nothing_lost();

    // Every connection is recorded with its exact bytes (the gate changes no accounting).
    for line in plain.iter().map(|(l, _)| l).chain([&whole4, &split4, &whole6]) {
        let f = flow(&out.flows, &line["local"]);
        assert_eq!((&f["payload"]["tx_bytes"], &f["payload"]["rx_bytes"]), (&line["tx"], &line["rx"]), "{f}");
    }
    for (line, why) in &plain {
        let names = &flow(&out.flows, &line["local"])["names"];
        assert!(names["hostname"].is_null(), "{why}: {names}");
    }
    for line in [&whole4, &split4, &whole6] {
        let names = &flow(&out.flows, &line["local"])["names"];
        assert_eq!((names["hostname"].as_str(), names["source"].as_str()), (Some("gate.svc.test"), Some("sni")));
    }
    // Ground truth: one copy per whole ClientHello, two for the split one, none for the rest.
    let kernel = &out.stats["kernel"];
    assert_eq!(kernel["copies_submitted"], 1 + 2 + 1, "{}", out.stats);
    assert_eq!(kernel["copies_lost"], 0, "{}", out.stats);
    let names = &out.stats["names"];
    assert_eq!(
        (&names["copies"], &names["sni"], &names["malformed_total"]),
        (&json!(4), &json!(3), &json!(0)),
        "{names}"
    );

    // The same counters reach the journal's statistics and `monitor status`.
    let status = Command::new(monitor_bin())
        .args(["status", "--json", "--journal"])
        .arg(out.dir.path().join("journal.db"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    let day = &doc["last_24h"];
    let counters = ["copies_submitted", "copies_lost", "names_malformed", "names_learned"].map(|k| day[k].as_u64());
    assert_eq!(counters, [Some(4), Some(0), Some(0), Some(3)], "{day}");
}
