//! Sockets other than TCP and UDP, against ground truth: ping sockets and raw ICMP sockets (IPv4
//! and IPv6), raw IP sockets of protocol 253, UDP-Lite sockets, an `IPPROTO_RAW` socket writing its own IP header,
//! and Ethernet frames sent through an `AF_PACKET` socket (unattributed bytes).

use std::{
    net::{IpAddr, SocketAddr},
    process::Command,
};

use monitor::tracker::{
    FlowRecord,
    record::{Direction, Protocol},
};
use serde_json::json;

use crate::{
    daemon::{Monitor, Output},
    env::{Counters, Helper, Netns, Pair, Place, TestCgroup, spawn},
};

/// Uid of the helpers under test (not root; raw and packet sockets get `CAP_NET_RAW`).
const UID: u32 = 4244;

fn s(v: impl ToString) -> String {
    v.to_string()
}

/// Lets every group open ping sockets in `ns` (the default range `1 0` allows none).
fn allow_ping_sockets(ns: &Netns) {
    let status = Command::new("ip")
        .args(["netns", "exec", &ns.name, "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"])
        .status()
        .unwrap();
    assert!(status.success(), "sysctl net.ipv4.ping_group_range");
}

fn dests(pair: &Pair, v6: bool, n: usize) -> Vec<IpAddr> {
    let list = if v6 { &pair.b_v6 } else { &pair.b_v4 };
    list.iter().take(n).map(|a| a.parse().unwrap()).collect()
}

/// Closed records of process `pid`.
fn closed_of(out: &Output, pid: u32) -> Vec<&FlowRecord> {
    out.closed().into_iter().filter(|r| r.owner.tgid == pid).collect()
}

fn assert_owner(r: &FlowRecord, pid: u32, comm: &str) {
    assert_eq!((r.owner.tgid, &*r.owner.comm, r.owner.uid), (pid, comm, UID), "owner: {r:#?}");
}

/// |measured - truth| <= 1 % of truth (the tolerance of cases.rs).
fn assert_within_1pct(what: &str, measured: u64, truth: u64) {
    let diff = measured.abs_diff(truth);
    assert!(diff * 100 <= truth, "{what}: monitor {measured} vs interface {truth} (diff {diff} > 1%)");
    eprintln!("    {what}: monitor {measured} B, interface {truth} B, diff {diff} B");
}

fn assert_wire_matches(records: &[&FlowRecord], iface: Counters) {
    let tx: u64 = records.iter().map(|r| r.wire.tx_bytes).sum();
    let rx: u64 = records.iter().map(|r| r.wire.rx_bytes).sum();
    assert_within_1pct("wire tx", tx, iface.tx_bytes);
    assert_within_1pct("wire rx", rx, iface.rx_bytes);
}

/// One ICMP socket (`raw`: SOCK_RAW, else a ping socket) pings two hosts 20 times each: one
/// record per host, with exactly the bytes the helper wrote and read.
pub fn ping(v6: bool, raw: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    allow_ping_sockets(&pair.a);
    let hosts = dests(&pair, v6, 2);
    let (size, count) = (1000u64, 20u64);
    let mon = Monitor::start(&cg.path, "");
    let before = pair.a.counters("va");
    let mut args = vec![s(if raw { "raw" } else { "dgram" }), s(size), s(count)];
    args.extend(hosts.iter().map(s));
    let helper = spawn("ping", &args, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(UID) });
    let pid = helper.pid();
    let truth = helper.finish().remove(0);
    let out = mon.stop();
    let iface = pair.a.counters("va").ip_layer_since(before);
    let records = closed_of(&out, pid);
    assert_eq!(records.len(), hosts.len(), "one flow per host: {:#?}", out.records);
    let (protocol, number, header) = if v6 { (Protocol::Icmpv6, 58, 40) } else { (Protocol::Icmp, 1, 20) };
    for host in &hosts {
        let remote = SocketAddr::new(*host, 0);
        let r = records.iter().find(|r| r.remote == Some(remote)).unwrap_or_else(|| panic!("no flow to {remote}"));
        let t = &truth["peers"][host.to_string()];
        assert_owner(r, pid, "mon-ping");
        assert_eq!((r.protocol, r.ip_protocol, r.direction), (protocol, number, Direction::Unconnected));
        assert_eq!(r.local.map(|l| l.port()), Some(0), "no port for ICMP");
        assert_eq!(t["tx"], size * count, "helper wrote whole echo requests");
        assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (t["tx"].as_u64().unwrap(), t["rx"].as_u64().unwrap()));
        assert_eq!((r.wire.tx_packets, r.wire.rx_packets), (count, count));
        assert_eq!(r.wire.tx_bytes, count * (size + header));
        assert!(r.complete);
    }
    assert_wire_matches(&records, iface);
    out.assert_nothing_lost();
}

/// One helper's run under the monitor: its pid and report, the monitor's output and the IP-layer
/// counters of its interface over the run.
struct OneFlow {
    pid: u32,
    truth: serde_json::Value,
    out: Output,
    iface: Counters,
}

/// Starts the monitor, runs `role ARGS` in namespace `a` (watched cgroup, test uid) against
/// `echo` (already answering in `b`), and stops the monitor when both are done.
fn one_flow(pair: &Pair, cg: &TestCgroup, echo: Helper, role: &str, args: &[String]) -> OneFlow {
    let mon = Monitor::start(&cg.path, "");
    let before = pair.a.counters("va");
    let helper = spawn(role, args, Place { netns: Some(&pair.a), cgroup: Some(cg), uid: Some(UID) });
    let pid = helper.pid();
    let truth = helper.finish().remove(0);
    echo.finish();
    let out = mon.stop();
    let iface = pair.a.counters("va").ip_layer_since(before);
    OneFlow { pid, truth, out, iface }
}

/// A raw socket of protocol `protocol` exchanges 40 datagrams with a raw echo on the other host:
/// one `raw` record for the host, port 0, payload what the helper wrote and read. Raw TCP and UDP
/// sockets (protocol 6, 17: the process writes the transport header itself, as a SYN scanner
/// does) too: before, one was a TCP "listener" without a remote, the other a UDP flow per the
/// ports read from its payload, charged 8 bytes less than it wrote.
pub fn raw_ip(v6: bool, protocol: u8) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let host = dests(&pair, v6, 1)[0];
    let (size, count) = (1200u64, 40u64);
    let mut echo =
        spawn("raw-echo", &[s(protocol), s(count), s(1), s(host)], Place { netns: Some(&pair.b), ..Place::default() });
    echo.line();
    let OneFlow { pid, truth, out, iface } =
        one_flow(&pair, &cg, echo, "raw-send", &[s(protocol), s(size), s(count), s(host), s(0)]);
    let records = closed_of(&out, pid);
    assert_eq!(records.len(), 1, "{:#?}", out.records);
    let r = records[0];
    assert_owner(r, pid, "mon-raw-send");
    assert_eq!(
        (r.protocol, r.ip_protocol, r.remote),
        (Protocol::Raw, protocol, Some(SocketAddr::new(host, 0))),
        "{r:#?}"
    );
    // IPv4 raw sockets read the IP header with each datagram; IPv6 raw sockets do not.
    let header = if v6 { 40 } else { 20 };
    let read = if v6 { size } else { size + 20 };
    assert_eq!((truth["tx"].as_u64(), truth["rx"].as_u64()), (Some(size * count), Some(read * count)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (size * count, read * count));
    assert_eq!((r.wire.tx_packets, r.wire.rx_packets), (count, count));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes), (count * (size + header), count * (size + header)));
    assert_wire_matches(&records, iface);
    out.assert_nothing_lost();
    // The journal keeps the protocol number; the report names the endpoint `raw`, port 0.
    let conn = rusqlite::Connection::open(out.dir.path().join("journal.db")).unwrap();
    let row: (String, i64, i64, i64) = conn
        .query_row(
            "SELECT protocol, ip_protocol, remote_port, payload_tx FROM connections WHERE event = 'close' AND owner_tgid = ?1",
            [pid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(row, ("raw".into(), i64::from(protocol), 0, i64::try_from(size * count).unwrap()));
    let doc = out.report_json();
    let endpoint = &doc["apps"][0]["top_endpoints"][0];
    assert_eq!(
        (&endpoint["ip"], &endpoint["port"], &endpoint["protocol"]),
        (&json!(host.to_string()), &json!(0), &json!("raw")),
        "{doc:#}"
    );
    assert_eq!(endpoint["payload_tx"], size * count);
}

/// A raw TCP socket created before the monitor started (found at its first packet, not by
/// `sock_create`) is counted per host and named `raw` too: the validation's case, where it was
/// one `tcp` "listener" record without a remote.
pub fn raw_tcp_older_than_the_monitor() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let host = dests(&pair, false, 1)[0];
    let (size, count) = (700u64, 20u64);
    let mut echo =
        spawn("raw-echo", &[s(6), s(count), s(1), s(host)], Place { netns: Some(&pair.b), ..Place::default() });
    echo.line();
    let mut helper = spawn(
        "raw-send",
        &[s(6), s(size), s(count), s(host), s(0), s("wait")],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(UID) },
    );
    helper.line();
    let mon = Monitor::start(&cg.path, "");
    let pid = helper.pid();
    helper.send("go");
    let truth = helper.finish().remove(0);
    echo.finish();
    let out = mon.stop();
    let records = closed_of(&out, pid);
    assert_eq!(records.len(), 1, "{:#?}", out.records);
    let r = records[0];
    assert_eq!((r.protocol, r.ip_protocol, r.remote), (Protocol::Raw, 6, Some(SocketAddr::new(host, 0))), "{r:#?}");
    // IPv4 raw sockets read the IP header with each datagram.
    assert_eq!((truth["tx"].as_u64(), truth["rx"].as_u64()), (Some(size * count), Some((size + 20) * count)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (size * count, (size + 20) * count), "{r:#?}");
    out.assert_nothing_lost();
}

/// A UDP-Lite socket (the validation's case: it was counted as a raw socket, without ports and
/// with the 8-byte UDP-Lite header in its payload) exchanges 30 datagrams with a server: one
/// record with both ports, payload exactly what the helper wrote and read.
pub fn udplite(v6: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = SocketAddr::new(dests(&pair, v6, 1)[0], 9500);
    let (size, count) = (1111u64, 30u64);
    let mut echo = spawn("udplite-echo", &[s(server), s(count)], Place { netns: Some(&pair.b), ..Place::default() });
    if echo.line()["udplite"] == json!(false) {
        crate::missing("this kernel has no UDP-Lite sockets".to_owned());
        return;
    }
    let OneFlow { pid, truth, out, iface } =
        one_flow(&pair, &cg, echo, "udplite-send", &[s(server), s(size), s(count)]);
    let records = closed_of(&out, pid);
    assert_eq!(records.len(), 1, "{:#?}", out.records);
    let r = records[0];
    assert_owner(r, pid, "mon-udplite");
    assert_eq!((r.protocol, r.ip_protocol, r.remote), (Protocol::UdpLite, 136, Some(server)), "{r:#?}");
    assert_eq!(r.local.map(|l| l.port()), truth["local_port"].as_u64().map(|p| u16::try_from(p).unwrap()), "{r:#?}");
    assert_eq!((truth["tx"].as_u64(), truth["rx"].as_u64()), (Some(size * count), Some(size / 2 * count)));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (size * count, size / 2 * count), "{r:#?}");
    let header = if v6 { 40 + 8 } else { 20 + 8 };
    assert_eq!((r.wire.tx_packets, r.wire.rx_packets), (count, count));
    assert_eq!((r.wire.tx_bytes, r.wire.rx_bytes), (count * (size + header), count * (size / 2 + header)));
    assert!(r.complete, "{r:#?}");
    assert_wire_matches(&records, iface);
    out.assert_nothing_lost();
    let conn = rusqlite::Connection::open(out.dir.path().join("journal.db")).unwrap();
    let row: (String, i64, i64) = conn
        .query_row(
            "SELECT protocol, ip_protocol, remote_port FROM connections WHERE event = 'close' AND owner_tgid = ?1",
            [pid],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(row, ("udplite".into(), 136, 9500));
}

/// An `IPPROTO_RAW` socket writes whole IPv4 packets (header included) of protocol 253: the
/// payload it is charged is what it wrote, the header included.
pub fn ipproto_raw_send() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let host = dests(&pair, false, 1)[0];
    let (size, count) = (1000u64, 20u64);
    // A raw socket of protocol 253 on the far side, so it answers no "protocol unreachable".
    let mut sink =
        spawn("raw-echo", &[s(253), s(count), s(0), s(host)], Place { netns: Some(&pair.b), ..Place::default() });
    sink.line();
    let mon = Monitor::start(&cg.path, "");
    let before = pair.a.counters("va");
    let helper = spawn(
        "raw-send",
        &[s(253), s(size), s(count), s(host), s(1)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(UID) },
    );
    let pid = helper.pid();
    let truth = helper.finish().remove(0);
    sink.finish();
    let out = mon.stop();
    let iface = pair.a.counters("va").ip_layer_since(before);
    let records = closed_of(&out, pid);
    assert_eq!(records.len(), 1, "{:#?}", out.records);
    let r = records[0];
    assert_owner(r, pid, "mon-raw-send");
    assert_eq!((r.protocol, r.ip_protocol, r.remote), (Protocol::Raw, 255, Some(SocketAddr::new(host, 0))));
    assert_eq!(truth["tx"].as_u64(), Some((20 + size) * count));
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), ((20 + size) * count, 0));
    assert_eq!((r.wire.tx_bytes, r.wire.tx_packets, r.wire.rx_packets), ((20 + size) * count, count, 0));
    assert_within_1pct("wire tx", r.wire.tx_bytes, iface.tx_bytes);
    out.assert_nothing_lost();
}

/// Frames written to an `AF_PACKET` socket pass no cgroup hook: they are counted as unattributed
/// bytes (the bytes written, Ethernet header included), for the watched cgroup only.
pub fn packet_socket_frames() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (size, frames) = (1000u64, 200u64);
    let mon = Monitor::start(&cg.path, "");
    let before = pair.a.counters("va");
    let helper = spawn(
        "packet-send",
        &[s("va"), s(size), s(frames)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(UID) },
    );
    let pid = helper.pid();
    let truth = helper.finish().remove(0);
    let after = pair.a.counters("va");
    // The same frames from a process outside the watched cgroup are not the monitor's business.
    spawn("packet-send", &[s("va"), s(size), s(frames)], Place { netns: Some(&pair.a), ..Place::default() }).finish();
    let out = mon.stop();
    assert_eq!(truth["tx"].as_u64(), Some(size * frames));
    // The interface also carries the odd IPv6 multicast report of the new namespace.
    let on_iface = after.tx_bytes - before.tx_bytes;
    assert!(on_iface >= size * frames && (on_iface - size * frames) * 100 <= size * frames, "veth sent {on_iface} B");
    let k = &out.stats["kernel"];
    assert_eq!(
        (k["unattributed_bytes"].as_u64(), k["unattributed_packets"].as_u64()),
        (Some(size * frames), Some(frames)),
        "{}",
        out.stats
    );
    assert!(closed_of(&out, pid).is_empty(), "a packet socket has no flow: {:#?}", out.records);
    let doc = out.report_json();
    assert_eq!(
        doc["completeness"]["unattributed_bytes"],
        size * frames,
        "the report's completeness covers them: {doc:#}"
    );
    eprintln!("    {frames} frames, {} B unattributed", size * frames);
    out.assert_nothing_lost();
}
