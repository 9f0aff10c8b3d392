//! TCP connections that never establish: refused (the peer's kernel answers the SYN with a
//! reset) and unanswered (nobody holds the address; the process gives up and closes). Each is an
//! outbound flow of its process to the destination it named, with the SYN and the reset counted
//! exactly as the interface carried them. Before the `connect` hooks kept the destination, a
//! refused blocking `connect` (which clears the socket's destination port) was a `listen` record
//! with no remote: the attempt's destination was invisible.

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use monitor::tracker::{
    FlowRecord,
    record::{Direction, OwnerSource, Protocol},
};
use serde_json::json;

use crate::{
    cases::{assert_owner, server_addr},
    daemon::Monitor,
    env::{MAC_B, Pair, Place, TestCgroup, ip, spawn},
    helper::{name, say},
};

const UID: u32 = 4251;
/// No process listens there in namespace `b`: its kernel answers with a reset.
const CLOSED_PORT: u16 = 9;

/// Helper role `tcp-attempt REFUSED UNANSWERED WAIT_MS`: a blocking `connect` to REFUSED (must
/// fail with ECONNREFUSED), then a non-blocking one to UNANSWERED, closed after WAIT_MS.
pub fn helper(args: &[String]) {
    name("mon-tcp-attempt");
    let refused: SocketAddr = args[0].parse().unwrap();
    let unanswered: SocketAddr = args[1].parse().unwrap();
    let wait = Duration::from_millis(args[2].parse().unwrap());
    let err = TcpStream::connect(refused).expect_err("nothing listens on the refused port");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    // std has no non-blocking connect: a timeout shorter than the wait, the socket dropped after it.
    let err = TcpStream::connect_timeout(&unanswered, wait).expect_err("nobody holds the unanswered address");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    say(&json!({"pid": std::process::id()}));
}

/// One outbound TCP record per attempt, to its destination, owned by the helper, wire bytes
/// equal to what the client's interface sent and received in the window (nothing else crosses
/// it: static neighbours, the pair settled), no payload.
pub fn refused_and_unanswered(v6: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let refused = server_addr(&pair, v6, 0, CLOSED_PORT);
    // An address `b` does not hold, routed to `b` like its own (host route, static neighbour):
    // packets to it reach `b`, whose blackhole route drops them without an answer (without it,
    // IPv6 answers "no route" with an ICMPv6 error). No address changes in `b`, which would send
    // multicast listener reports.
    let gone: SocketAddr = if v6 { "[fd77::9]:443" } else { "10.77.0.9:443" }.parse().unwrap();
    let (host, family) = (format!("{}/{}", gone.ip(), if v6 { 128 } else { 32 }), if v6 { "-6" } else { "-4" });
    ip(&["-n", &pair.a.name, family, "route", "add", &host, "dev", "va"]);
    ip(&[
        "-n",
        &pair.a.name,
        "neigh",
        "replace",
        &gone.ip().to_string(),
        "lladdr",
        MAC_B,
        "dev",
        "va",
        "nud",
        "permanent",
    ]);
    ip(&["-n", &pair.b.name, family, "route", "add", "blackhole", &host]);
    let mon = Monitor::start(&cg.path, "");
    let before = pair.a.counters("va");
    let client = spawn(
        "tcp-attempt",
        &[refused.to_string(), gone.to_string(), "300".into()],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(UID) },
    );
    let pid = client.pid();
    client.finish();
    let out = mon.stop();
    let iface = pair.a.counters("va").ip_layer_since(before);
    let mine: Vec<&FlowRecord> = out.closed().into_iter().filter(|r| r.owner.tgid == pid).collect();
    assert_eq!(mine.len(), 2, "one record per attempt: {:#?}", out.records);
    let find = |to: SocketAddr| -> &FlowRecord {
        mine.iter().find(|r| r.remote == Some(to)).unwrap_or_else(|| panic!("no record to {to}: {mine:#?}"))
    };
    let (syn, reset) = if v6 { (80, 60) } else { (60, 40) };
    for (to, rx) in [(refused, reset), (gone, 0)] {
        let r = find(to);
        assert_owner(r, pid, "mon-tcp-attempt", UID);
        assert_eq!(r.owner.source, OwnerSource::SockCreate);
        assert_eq!((r.protocol, r.direction), (Protocol::Tcp, Direction::Outbound), "{r:#?}");
        assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (0, 0), "{r:#?}");
        // One SYN each (the unanswered one is closed before the first retransmission at 1 s).
        assert_eq!((r.wire.tx_bytes, r.wire.tx_packets), (syn, 1), "{r:#?}");
        assert_eq!((r.wire.rx_bytes, r.wire.rx_packets), (rx, u64::from(rx != 0)), "{r:#?}");
        assert!(r.complete, "{r:#?}");
    }
    assert_eq!((iface.tx_bytes, iface.rx_bytes), (2 * syn, reset), "the interface carried exactly the attempts");
    out.assert_nothing_lost();
}
