//! UDP sockets whose peer changes: sent to another address while connected, connected again,
//! disconnected with `connect(AF_UNSPEC)`, connected after unconnected use. Every byte is charged
//! to the address it went to or came from (before, such bytes were charged to the connected peer
//! or lost), against the bytes the helper moved and the interface's counters.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsRawFd as _,
    time::Duration,
};

use monitor::tracker::FlowRecord;
use serde_json::{Value, json};

use crate::{
    cases::{CLIENT_UID, assert_owner, assert_wire_matches, s, server_addr},
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, say},
};

/// Helper roles of this file; false for another role.
pub fn run(role: &str, args: &[String]) -> bool {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // udp-drain BIND COUNT: receives COUNT datagrams, answers none.
        "udp-drain" => {
            name("mon-udp-drain");
            let s = UdpSocket::bind(arg(0)).unwrap();
            say(&json!({"ready": true}));
            let count: usize = arg(1).parse().unwrap();
            let mut buf = vec![0u8; 65536];
            let rx: usize = (0..count).map(|_| s.recv(&mut buf).unwrap()).sum();
            say(&json!({"rx": rx}));
        }
        // udp-rebind SCENARIO SIZE COUNT A B: one socket whose peer changes (see `scenario`).
        // With `old-` before the scenario, the socket is made first, `ready` is said, and the
        // scenario runs after `go` on stdin (a socket older than the monitor); with
        // `old-connected-`, the socket is also connected to A before `ready`.
        "udp-rebind" => {
            name("mon-udp-rebind");
            let (size, count): (usize, usize) = (arg(1).parse().unwrap(), arg(2).parse().unwrap());
            let (a, b): (SocketAddr, SocketAddr) = (arg(3).parse().unwrap(), arg(4).parse().unwrap());
            // An explicit port: `connect(AF_UNSPEC)` keeps it (an automatic one is given up).
            let any = if a.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let port = UdpSocket::bind(any).unwrap().local_addr().unwrap().port();
            let mut bound: SocketAddr = any.parse().unwrap();
            bound.set_port(port);
            // `disconnect-auto`: an automatic port, which `connect(AF_UNSPEC)` gives up: the
            // next send binds a new one.
            let auto =
                matches!(arg(0), "disconnect-auto" | "sendto-then-disconnect" | "sendto-unconnected-then-disconnect");
            let s = UdpSocket::bind(if auto { any.parse().unwrap() } else { bound }).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let which = match arg(0).strip_prefix("old-") {
                Some(which) => {
                    let which = match which.strip_prefix("connected-") {
                        Some(which) => {
                            s.connect(a).unwrap();
                            which
                        }
                        None => which,
                    };
                    say(&json!({"ready": true}));
                    crate::helper::wait_stdin("go");
                    which
                }
                None => arg(0),
            };
            let mut moved = Moved::default();
            eprintln!("    udp-rebind {}: {a} then {b}", arg(0));
            let before = scenario(which, &s, &mut moved, (size, count), (a, b));
            let flows: serde_json::Map<String, Value> =
                moved.0.iter().map(|(k, (tx, rx))| (k.to_string(), json!({"tx": tx, "rx": rx}))).collect();
            let local = s.local_addr().unwrap();
            say(&json!({
                "local_port": local.port(),
                "local": local.to_string(),
                "local_before": before.map(|b| b.to_string()),
                "pid": std::process::id(),
                "flows": flows
            }));
        }
        _ => return false,
    }
    true
}

/// Payload sent to and received from each address.
#[derive(Default)]
struct Moved(BTreeMap<SocketAddr, (usize, usize)>);

impl Moved {
    /// `count` datagrams of `size` to `to` (through the connected peer when `to` is `None`),
    /// each answered unless `answered` is false.
    fn exchange(&mut self, s: &UdpSocket, to: (SocketAddr, bool), size: usize, count: usize, answered: bool) {
        let (peer, connected) = to;
        let mut buf = vec![0u8; 65536];
        for _ in 0..count {
            if connected { s.send(&pattern(size)) } else { s.send_to(&pattern(size), peer) }.unwrap();
            let entry = self.0.entry(peer).or_default();
            entry.0 += size;
            if answered {
                let (n, from) = s.recv_from(&mut buf).unwrap();
                assert_eq!(from, peer, "reply from an unexpected peer");
                entry.1 += n;
            }
        }
    }
}

/// - `sendto-other`: connected to A, COUNT exchanges with A, COUNT datagrams sent to B with
///   `sendto()` (unanswered: a connected socket takes datagrams from its peer only), COUNT more
///   exchanges with A;
/// - `reconnect`: connected to A, COUNT exchanges; connected to B, COUNT exchanges;
/// - `disconnect`: connected to A (unless it is already), COUNT exchanges over more than a second (so an update record
///   carries A); `connect(AF_UNSPEC)`; COUNT exchanges with B through `sendto()` (IPv6: COUNT
///   datagrams, unanswered);
/// - `disconnect-auto`: `disconnect` on a socket whose port the kernel chose;
/// - `connect-after`: COUNT exchanges with A through `sendto()`; connected to B, COUNT exchanges;
/// - `sendto-unconnected-then-disconnect`: as `sendto-then-disconnect`, never connected: COUNT
///   exchanges with A and COUNT datagrams to B through `sendto()`, `connect(AF_UNSPEC)`, COUNT
///   exchanges with A;
/// - `disconnect-connect`: connected to A, COUNT exchanges, `connect(AF_UNSPEC)`, at once
///   connected to B, COUNT exchanges;
/// - `sendto-then-disconnect`: a socket whose port the kernel chose, connected to A, COUNT
///   exchanges with A, COUNT datagrams sent to B with `sendto()` (unanswered), at once (no event
///   of B's peer flow is due) `connect(AF_UNSPEC)`, COUNT exchanges with A through `sendto()`
///   from the new port.
///
/// Returns the socket's local address just before a disconnect.
fn scenario(
    which: &str,
    s: &UdpSocket,
    m: &mut Moved,
    (size, count): (usize, usize),
    (a, b): (SocketAddr, SocketAddr),
) -> Option<SocketAddr> {
    let mut before = None;
    match which {
        "sendto-other" => {
            s.connect(a).unwrap();
            m.exchange(s, (a, true), size, count, true);
            m.exchange(s, (b, false), size, count, false);
            m.exchange(s, (a, true), size, count, true);
        }
        "reconnect" => {
            s.connect(a).unwrap();
            m.exchange(s, (a, true), size, count, true);
            s.connect(b).unwrap();
            m.exchange(s, (b, true), size, count, true);
        }
        "sendto-unconnected-then-disconnect" => {
            m.exchange(s, (a, false), size, count, true);
            m.exchange(s, (b, false), size, count, false);
            before = Some(s.local_addr().unwrap());
            disconnect(s);
            m.exchange(s, (a, false), size, count, true);
        }
        "sendto-then-disconnect" => {
            s.connect(a).unwrap();
            m.exchange(s, (a, true), size, count, true);
            m.exchange(s, (b, false), size, count, false);
            before = Some(s.local_addr().unwrap());
            disconnect(s);
            m.exchange(s, (a, false), size, count, true);
        }
        "disconnect-connect" => {
            // No packet between the disconnect and the next connect: the connect hook, not the
            // packet path, finds the disconnect.
            s.connect(a).unwrap();
            m.exchange(s, (a, true), size, count, true);
            disconnect(s);
            s.connect(b).unwrap();
            m.exchange(s, (b, true), size, count, true);
        }
        "disconnect" | "disconnect-auto" => {
            if s.peer_addr().ok() != Some(a) {
                s.connect(a).unwrap();
            }
            m.exchange(s, (a, true), size, count - 1, true);
            std::thread::sleep(Duration::from_millis(1300));
            m.exchange(s, (a, true), size, 1, true);
            before = Some(s.local_addr().unwrap());
            disconnect(s);
            // An IPv6 socket still takes datagrams from its old peer only (the kernel keeps the
            // address after the disconnect): B's answers would never come. One that reaches IPv4
            // peers at mapped addresses does not (its IPv4 side forgets the peer).
            m.exchange(s, (b, false), size, count, b.ip().to_canonical().is_ipv4());
        }
        "connect-after" => {
            m.exchange(s, (a, false), size, count, true);
            s.connect(b).unwrap();
            m.exchange(s, (b, true), size, count, true);
        }
        other => panic!("unknown scenario {other}"),
    }
    before
}

/// `connect(AF_UNSPEC)`.
fn disconnect(s: &UdpSocket) {
    let unspec = nix::libc::sockaddr { sa_family: nix::libc::AF_UNSPEC as nix::libc::sa_family_t, sa_data: [0; 14] };
    let len = nix::libc::socklen_t::try_from(std::mem::size_of_val(&unspec)).unwrap();
    // SAFETY: a valid sockaddr of the given length.
    let rc = unsafe { nix::libc::connect(s.as_raw_fd(), &raw const unspec, len) };
    assert_eq!(rc, 0, "connect(AF_UNSPEC): {}", std::io::Error::last_os_error());
}

/// The addresses a scenario's socket uses.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// An IPv4 socket, IPv4 peers.
    V4,
    /// An IPv6 socket, IPv6 peers.
    V6,
    /// An IPv6 socket that reaches IPv4 peers at their IPv4-mapped addresses (records show them,
    /// and the socket's local side, as IPv4).
    Mapped,
}

/// The `i`th server address of `family` with `port`.
fn peer(pair: &Pair, family: Family, i: usize, port: u16) -> SocketAddr {
    let a = server_addr(pair, family == Family::V6, i, port);
    match (family, a.ip()) {
        (Family::Mapped, IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), port),
        _ => a,
    }
}

/// An address as records show it (IPv4-mapped as IPv4).
fn canonical(a: &str) -> SocketAddr {
    let a: SocketAddr = a.parse().unwrap();
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Each scenario on its own socket, under one monitor (update interval 1 s): per address, the
/// flows' payload adds up to what the helper moved, no byte is charged to an address it did not
/// go to or come from, and the wire bytes of all flows equal the interface's.
pub fn udp_peer_changes_are_charged_to_the_right_addresses(family: Family) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let place = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) };
    let server = Place { netns: Some(&pair.b), ..Place::default() };
    let (size, count) = (700, 20);
    // Sockets older than the monitor (found at start or on the packet path): each runs its
    // scenario once the monitor is up.
    let old: Vec<_> = ["old-connect-after", "old-reconnect", "old-connected-disconnect"]
        .into_iter()
        .enumerate()
        .map(|(i, which)| {
            let port = 5420 + u16::try_from(i).unwrap() * 2;
            let (a, b) = (peer(&pair, family, 0, port), peer(&pair, family, 1, port + 1));
            let mut client = spawn("udp-rebind", &[s(which), s(size), s(count), s(a), s(b)], place);
            client.line();
            (which, client, a, b)
        })
        .collect();
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let before = pair.a.counters("va");
    let mut truths = Vec::new();
    for (which, mut client, a, b) in old {
        let mut echo_a = spawn("udp-echo", &[s(a), s(count)], server);
        echo_a.line();
        let mut echo_b = if which == "old-connected-disconnect" && family == Family::V6 {
            spawn("udp-drain", &[s(b), s(count)], server)
        } else {
            spawn("udp-echo", &[s(b), s(count)], server)
        };
        echo_b.line();
        let pid = client.pid();
        client.send("go");
        let lines = client.finish();
        echo_a.finish();
        echo_b.finish();
        truths.push((which, pid, lines[0].clone(), b));
    }
    for (i, which) in [
        "sendto-other",
        "reconnect",
        "disconnect",
        "connect-after",
        "disconnect-auto",
        "sendto-then-disconnect",
        "disconnect-connect",
        "sendto-unconnected-then-disconnect",
    ]
    .into_iter()
    .enumerate()
    {
        let port = 5400 + u16::try_from(i).unwrap() * 2;
        let (a, b) = (peer(&pair, family, 0, port), peer(&pair, family, 1, port + 1));
        let sendto = which.starts_with("sendto");
        let a_count = if sendto { 2 * count } else { count };
        let mut echo_a = spawn("udp-echo", &[s(a), s(a_count)], server);
        echo_a.line();
        // After a disconnect an IPv6 socket takes datagrams from its old peer only, until connected again.
        let unanswered = matches!(which, "disconnect" | "disconnect-auto") && family == Family::V6;
        let mut other = if sendto || unanswered {
            spawn("udp-drain", &[s(b), s(count)], server)
        } else {
            spawn("udp-echo", &[s(b), s(count)], server)
        };
        other.line();
        let client = spawn("udp-rebind", &[s(which), s(size), s(count), s(a), s(b)], place);
        let pid = client.pid();
        let lines = client.finish();
        echo_a.finish();
        other.finish();
        truths.push((which, pid, lines[0].clone(), b));
    }
    let out = mon.stop();
    let iface = pair.a.counters("va").ip_layer_since(before);
    for (which, pid, truth, b) in &truths {
        let flows: Vec<&FlowRecord> = out.closed().into_iter().filter(|r| r.owner.tgid == *pid).collect();
        let expected: BTreeMap<SocketAddr, &Value> =
            truth["flows"].as_object().unwrap().iter().map(|(a, moved)| (canonical(a), moved)).collect();
        let b = canonical(&b.to_string());
        for r in &flows {
            assert_owner(r, *pid, "mon-udp-rebind", CLIENT_UID);
            let remote = r.remote.map(|a| a.to_string()).unwrap_or_default();
            assert!(
                r.remote.is_some_and(|a| expected.contains_key(&a)),
                "{which}: a flow charged to {remote}: {flows:#?}"
            );
        }
        for (addr, moved) in &expected {
            let mine: Vec<&&FlowRecord> = flows.iter().filter(|r| r.remote == Some(*addr)).collect();
            let tx: u64 = mine.iter().map(|r| r.payload.tx_bytes).sum();
            let rx: u64 = mine.iter().map(|r| r.payload.rx_bytes).sum();
            let want = (moved["tx"].as_u64().unwrap(), moved["rx"].as_u64().unwrap());
            assert_eq!((tx, rx), want, "{which}: payload to and from {addr}: {flows:#?}");
            let packets: u64 = mine.iter().map(|r| r.wire.tx_packets).sum();
            assert_eq!(packets * u64::try_from(size).unwrap(), want.0, "{which}: datagrams to {addr}");
        }
        if which.ends_with("reconnect") || which.ends_with("connect-after") {
            // Connected to B at the end: B's records carry the source address connect() chose,
            // not the wildcard the socket was bound to.
            let local = canonical(truth["local"].as_str().unwrap());
            for r in flows.iter().filter(|r| r.remote == Some(b)) {
                assert_eq!(r.local, Some(local), "{which}: {r:#?}");
            }
        }
        if let Some(before) = truth["local_before"]
            .as_str()
            .filter(|_| matches!(*which, "sendto-then-disconnect" | "sendto-unconnected-then-disconnect"))
        {
            // B was sent to only before the disconnect, and no event of its peer flow left
            // before it: its records keep the port it was sent from, not the one the kernel
            // gave the socket at its next send.
            let port = |a: &str| a.parse::<SocketAddr>().unwrap().port();
            assert_ne!(u64::from(port(before)), truth["local_port"].as_u64().unwrap(), "a new port");
            for r in flows.iter().filter(|r| r.remote == Some(b)) {
                assert_eq!(r.local.map(|l| l.port()), Some(port(before)), "{which}: {r:#?}");
            }
        }
        if let Some(before) = truth["local_before"].as_str().filter(|_| *which == "disconnect-auto") {
            // The port changed at the disconnect: A's records keep the old one, B's the new one.
            let port = |a: &str| a.parse::<SocketAddr>().unwrap().port();
            let after = truth["local_port"].as_u64().unwrap();
            assert_ne!(u64::from(port(before)), after, "the kernel gave the socket a new port");
            for r in &flows {
                let want = if r.remote == Some(b) { after } else { u64::from(port(before)) };
                assert_eq!(r.local.map(|l| u64::from(l.port())), Some(want), "{which}: {r:#?}");
            }
        }
        eprintln!("    {which}: {} flow records, every byte at its address", flows.len());
    }
    assert_wire_matches(&out, iface);
    out.assert_nothing_lost();
}
