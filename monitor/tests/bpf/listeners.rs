//! Inbound churn to a listener that existed before the monitor started: every accepted
//! connection is charged to the listener's process with exact bytes, at the cost of a listener
//! started after the monitor (measured side by side in the same test).

use std::{
    io::Write as _,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use monitor::tracker::record::{Direction, OwnerSource};
use serde_json::json;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    helper::{name, pattern, read_to_end, say},
};

const CONNECTIONS: usize = 2_000;
const CLIENT_THREADS: usize = 4;
const REQUEST: usize = 1_000;
const REPLY: usize = 2_000;
const SERVER_UID: u32 = 4244;

/// Helper roles of this test.
///
/// - `churn-server BIND REPLY CONNS`: four threads accept CONNS connections in all, read each to
///   EOF, answer REPLY bytes and close.
/// - `churn-client SERVER SEND CONNS THREADS`: THREADS threads make CONNS connections one after
///   the other, each sending SEND bytes and reading the reply; one JSON line with every local
///   address and the bytes moved.
pub fn helper(role: &str, args: &[String]) {
    let arg = |i: usize| -> &str { args.get(i).map_or_else(|| panic!("{role}: missing argument {i}"), String::as_str) };
    match role {
        // tcp-self-connect ADDR BYTES: a socket bound to ADDR connects to ADDR (a TCP simultaneous
        // open with itself), writes BYTES and reads them back.
        "tcp-self-connect" => {
            name("mon-self-conn");
            let addr: SocketAddr = arg(0).parse().unwrap();
            let bytes: usize = arg(1).parse().unwrap();
            use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, socket};
            use std::os::fd::AsRawFd as _;
            let family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
            let fd = socket(family, SockType::Stream, SockFlag::empty(), None).unwrap();
            let sa = SockaddrStorage::from(addr);
            bind(fd.as_raw_fd(), &sa).unwrap();
            connect(fd.as_raw_fd(), &sa).unwrap();
            let mut s = TcpStream::from(fd);
            s.write_all(&pattern(bytes)).unwrap();
            let mut back = vec![0u8; bytes];
            std::io::Read::read_exact(&mut s, &mut back).unwrap();
            say(&json!({"local": s.local_addr().unwrap().to_string(), "peer": s.peer_addr().unwrap().to_string()}));
        }
        // backlog-server BIND: listens and never accepts; at "close" closes the listener (the
        // kernel resets the connections in its queue), then waits for "exit".
        "backlog-server" => {
            name("mon-backlog-srv");
            let listener = TcpListener::bind(arg(0)).unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            crate::helper::wait_stdin("close");
            drop(listener);
            say(&json!({"closed": true}));
            crate::helper::wait_stdin("exit");
        }
        // backlog-client SERVER SEND CONNS: CONNS connections each write SEND bytes (into the
        // queued connection's receive buffer: nobody accepts them), then read until the reset.
        "backlog-client" => {
            name("mon-backlog-cli");
            let server: SocketAddr = arg(0).parse().unwrap();
            let send: usize = arg(1).parse().unwrap();
            let conns: usize = arg(2).parse().unwrap();
            let mut streams: Vec<TcpStream> = (0..conns).map(|_| TcpStream::connect(server).unwrap()).collect();
            for s in &mut streams {
                s.write_all(&pattern(send)).unwrap();
            }
            let locals: Vec<String> = streams.iter().map(|s| s.local_addr().unwrap().to_string()).collect();
            say(&json!({"locals": locals, "sent": send}));
            for mut s in streams {
                let mut buf = [0u8; 64];
                let end = std::io::Read::read(&mut s, &mut buf);
                assert!(matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset), "{end:?}");
            }
        }
        "churn-server" => {
            name("mon-churn-srv");
            let listener = Arc::new(TcpListener::bind(arg(0)).unwrap());
            let reply: usize = arg(1).parse().unwrap();
            let conns: usize = arg(2).parse().unwrap();
            say(&json!({"ready": true, "pid": std::process::id()}));
            let tickets = Arc::new(AtomicUsize::new(0));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (listener, tickets) = (Arc::clone(&listener), Arc::clone(&tickets));
                    thread::spawn(move || {
                        let mut rx = 0;
                        while tickets.fetch_add(1, Ordering::Relaxed) < conns {
                            let (mut s, _) = listener.accept().unwrap();
                            rx += read_to_end(&mut s);
                            s.write_all(&pattern(reply)).unwrap();
                        }
                        rx
                    })
                })
                .collect();
            let rx: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
            say(&json!({"conns": conns, "rx": rx}));
        }
        "churn-client" => {
            name("mon-churn-cli");
            let server: SocketAddr = arg(0).parse().unwrap();
            let send: usize = arg(1).parse().unwrap();
            let conns: usize = arg(2).parse().unwrap();
            let threads: usize = arg(3).parse().unwrap();
            let started = Instant::now();
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let share = conns / threads + usize::from(t < conns % threads);
                    thread::spawn(move || {
                        (0..share)
                            .map(|_| {
                                let mut s = TcpStream::connect(server).unwrap();
                                s.write_all(&pattern(send)).unwrap();
                                s.shutdown(Shutdown::Write).unwrap();
                                let rx = read_to_end(&mut s);
                                json!([s.local_addr().unwrap().to_string(), send, rx])
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let all: Vec<_> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
            say(&json!({"elapsed_s": started.elapsed().as_secs_f64(), "conns": all}));
        }
        other => panic!("unknown helper role {other}"),
    }
}

/// CPU time (user + system) of a process so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after_comm.split(' ').skip(11).take(2).map(|f| f.parse().unwrap()).collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }).unwrap();
    Duration::from_millis((fields[0] + fields[1]) * 1000 / ticks)
}

/// What one run measured.
struct Run {
    /// Client's time for every connection.
    churn: Duration,
    /// From the first connection until the monitor had exited with every record written.
    total: Duration,
    /// Monitor CPU over the churn.
    cpu: Duration,
    /// Inbound flows charged to the listener with exact bytes, of [`CONNECTIONS`].
    attributed: usize,
}

/// `CONNECTIONS` inbound connections to a listener started before (`old`) or after the monitor.
fn run(old: bool, port: u16) -> Run {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server: SocketAddr = SocketAddr::new(pair.b_v4[0].parse().unwrap(), port);
    let place = Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) };
    let args = [server.to_string(), REPLY.to_string(), CONNECTIONS.to_string()];
    let (mon, srv) = if old {
        let mut srv = spawn("churn-server", &args, place);
        srv.line();
        (Monitor::start(&cg.path, ""), srv)
    } else {
        let mon = Monitor::start(&cg.path, "");
        let mut srv = spawn("churn-server", &args, place);
        srv.line();
        (mon, srv)
    };
    let pid = srv.pid();
    let mon_pid = u32::try_from(mon.pid().as_raw()).unwrap();
    let cpu_before = cpu_time(mon_pid);
    let started = Instant::now();
    let client_args = [server.to_string(), REQUEST.to_string(), CONNECTIONS.to_string(), CLIENT_THREADS.to_string()];
    let truth =
        spawn("churn-client", &client_args, Place { netns: Some(&pair.a), ..Place::default() }).finish().remove(0);
    let churn = started.elapsed();
    let served = srv.finish();
    assert_eq!(served[0]["rx"], CONNECTIONS * REQUEST, "the server received every request");
    let cpu = cpu_time(mon_pid).saturating_sub(cpu_before);
    let out = mon.stop();
    let total = started.elapsed();
    let conns = truth["conns"].as_array().unwrap();
    assert_eq!(conns.len(), CONNECTIONS);
    let inbound: std::collections::HashMap<SocketAddr, &monitor::tracker::FlowRecord> = out
        .closed()
        .into_iter()
        .filter(|r| r.direction == Direction::Inbound)
        .filter_map(|r| r.remote.map(|peer| (peer, r)))
        .collect();
    let mut attributed = 0;
    let mut wrong = Vec::new();
    for c in conns {
        let peer: SocketAddr = c[0].as_str().unwrap().parse().unwrap();
        assert_eq!((c[1].as_u64(), c[2].as_u64()), (Some(REQUEST as u64), Some(REPLY as u64)), "client ground truth");
        match inbound.get(&peer) {
            Some(r)
                if r.owner.tgid == pid
                    && &*r.owner.comm == "mon-churn-srv"
                    && r.owner.uid == SERVER_UID
                    && (r.payload.rx_bytes, r.payload.tx_bytes) == (REQUEST as u64, REPLY as u64)
                    && r.local == Some(server) =>
            {
                attributed += 1;
            }
            other => wrong.push((peer, other.map(|r| (r.owner.clone(), r.payload)))),
        }
    }
    if old {
        // The listener's owner came from /proc at start: say so, not "sock_create".
        let sources: std::collections::BTreeSet<_> = inbound.values().map(|r| r.owner.source).collect();
        assert_eq!(sources, [OwnerSource::Procfs].into(), "owner source of inherited owners");
    }
    for f in &out.flows {
        let app = f["app"]["name"].as_str().unwrap_or_default();
        assert!(!app.is_empty(), "flow with an empty app name: {f}");
    }
    assert!(
        wrong.is_empty(),
        "{} of {CONNECTIONS} inbound flows wrong or missing, first: {:?}",
        wrong.len(),
        wrong.first()
    );
    // Two SYNs to the old listener on both CPUs at once both try to create its counters; the
    // loser retries (SkStorage::get_or_create), so no allocation may fail.
    assert_eq!(out.stats["kernel"]["storage_failures"], 0, "storage failures: {}", out.stats);
    let s = &out.stats;
    assert_eq!(s["kernel"]["events_lost"], 0, "events lost: {s}");
    assert_eq!(s["decode_errors"], 0, "decode errors: {s}");
    assert_eq!(s["kernel"]["events_submitted"], s["events_received"], "submitted != received: {s}");
    assert!(s["last"].as_bool().unwrap(), "final statistics missing: {s}");
    Run { churn, total, cpu, attributed }
}

pub fn old_listener_inbound_churn() {
    let new = run(false, 5210);
    let old = run(true, 5211);
    for (what, r) in [("listener started after the monitor ", &new), ("listener started before the monitor", &old)] {
        eprintln!(
            "    {what}: {CONNECTIONS} connections in {:.2} s ({:.0}/s), until all recorded {:.2} s, monitor CPU {:.2} s, \
             {}/{CONNECTIONS} attributed with exact bytes",
            r.churn.as_secs_f64(),
            CONNECTIONS as f64 / r.churn.as_secs_f64(),
            r.total.as_secs_f64(),
            r.cpu.as_secs_f64(),
            r.attributed
        );
    }
    assert_eq!((new.attributed, old.attributed), (CONNECTIONS, CONNECTIONS));
    // A floor keeps scheduling noise of sub-second figures from failing the comparison; the
    // defect this guards against cost a hundred times more.
    let bound = |d: Duration| 3 * d.max(Duration::from_secs(1));
    assert!(
        old.churn < bound(new.churn),
        "churn to the old listener took {:?}, to a new one {:?}",
        old.churn,
        new.churn
    );
    assert!(
        old.total < bound(new.total),
        "recording took {:?} for the old listener, {:?} for a new one",
        old.total,
        new.total
    );
    assert!(old.cpu < bound(new.cpu), "monitor CPU {:?} for the old listener, {:?} for a new one", old.cpu, new.cpu);
}

/// Connections a listener never accepted, reset when it closes: no process ever held them, so
/// no release comes. They end `tcp_close_grace` after their close, complete, charged to the
/// listener's process with no payload (nobody read the bytes the clients sent; the wire counts
/// them). They stayed open until the monitor stopped, with the unread bytes counted as read.
pub fn unaccepted_connections_end_after_the_grace_with_no_payload() {
    const SEND: usize = 30_000;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mut mon = Monitor::start(&cg.path, "[tracker]\ntcp_close_grace_secs = 2\n");
    let server = SocketAddr::new(pair.b_v4[0].parse().unwrap(), 5212);
    let mut srv =
        spawn("backlog-server", &[server.to_string()], Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None });
    srv.line();
    let mut client = spawn(
        "backlog-client",
        &[server.to_string(), SEND.to_string(), "3".into()],
        Place { netns: Some(&pair.a), ..Place::default() },
    );
    let sent = client.line();
    thread::sleep(Duration::from_millis(300));
    srv.send("close");
    srv.line();
    client.finish();
    let peers: Vec<SocketAddr> =
        sent["locals"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().parse().unwrap()).collect();
    // The grace (2 s) and a tick: well before the 20 s this waits at most.
    for peer in &peers {
        let peer = peer.to_string();
        mon.wait_for_flow(|v| v["event"] == "close" && v["remote"] == peer.as_str());
    }
    srv.send("exit");
    let pid = srv.pid();
    srv.finish();
    let out = mon.stop();
    for peer in &peers {
        let records: Vec<_> = out.records.iter().filter(|r| r.remote == Some(*peer)).collect();
        let ends: Vec<_> = records.iter().filter(|r| r.event != monitor::tracker::record::RecordKind::Update).collect();
        assert_eq!(ends.len(), 1, "one end of the connection from {peer}: {records:?}");
        let r = ends[0];
        assert_eq!(r.event, monitor::tracker::record::RecordKind::Close, "{r:?}");
        assert_eq!((r.direction, r.owner.tgid, r.local), (Direction::Inbound, pid, Some(server)), "{r:?}");
        assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (0, 0), "nobody read or wrote it: {r:?}");
        assert!(r.complete, "the kernel's close counters are final: {r:?}");
        // Wire: the SYN, the data (30,000 B in segments) and the ACKs; the reset comes after
        // the close callback and is left out.
        assert!(r.wire.rx_bytes > SEND as u64 && r.wire.rx_bytes < SEND as u64 + 4_000, "{r:?}");
    }
}

/// A socket connected to its own address (a TCP simultaneous open, as in hole punching) is the
/// active side: the kernel completes such an open through its passive path, and the monitor
/// recorded it `inbound`. Payload exact: the socket reads back what it wrote.
pub fn a_simultaneous_open_is_outbound() {
    const BYTES: u64 = 300_000;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = Monitor::start(&cg.path, "");
    let addr = SocketAddr::new(pair.b_v4[0].parse().unwrap(), 5214);
    let place = Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None };
    let line = spawn("tcp-self-connect", &[addr.to_string(), BYTES.to_string()], place).finish().remove(0);
    assert_eq!(line["peer"], addr.to_string(), "connected to itself");
    let out = mon.stop();
    let ends: Vec<_> = out.closed().into_iter().filter(|r| r.local == Some(addr)).collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    let r = ends[0];
    assert_eq!((r.direction, r.remote), (Direction::Outbound, Some(addr)), "{r:?}");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (BYTES, BYTES), "{r:?}");
}
