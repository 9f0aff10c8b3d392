//! Payload that bypasses the `sock_send_length`/`sock_recv_length` tracepoints, one case per
//! kernel path, and an unconnected UDP socket with far more peers than slots; every figure against
//! ground truth (the bytes the helpers really moved, counted by the other end).
//!
//! Paths and how 6.18 counts them (the TCP counters make every one exact):
//! - receive: splice(2) from a socket (`tcp_splice_read` → `tcp_read_sock`), `TCP_ZEROCOPY_RECEIVE`
//!   (pages mapped and small reads copied inside getsockopt), io_uring zero-copy receive
//!   (`IORING_OP_RECV_ZC`), kTLS receive (the process reads plaintext; the stream carries records):
//!   no or short syscall count;
//! - send: sendfile(2) and vmsplice(2)+splice(2) into a socket (`splice_to_socket` →
//!   `sock_sendmsg`), `MSG_ZEROCOPY` (sendmsg): counted by the tracepoint; kTLS transmit: the
//!   tracepoint counts the plaintext, the stream carries records.

use std::{collections::BTreeSet, net::SocketAddr, process::Command};

use monitor::tracker::{
    FlowRecord,
    record::{PayloadSource, RecordKind},
};
use serde_json::Value;

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
    missing,
};

const CLIENT_UID: u32 = 4242;
const SERVER_UID: u32 = 4243;
/// The download: 8 MiB.
const DOWNLOAD: usize = 8 << 20;

fn s(v: impl ToString) -> String {
    v.to_string()
}

fn addr(v: &Value) -> SocketAddr {
    v.as_str().unwrap().parse().unwrap()
}

fn v4(pair: &Pair, i: usize, port: u16) -> SocketAddr {
    SocketAddr::new(pair.b_v4[i].parse().unwrap(), port)
}

/// One TCP client run: the monitor's record of the client's connection, the client's and the
/// server's reports.
pub(crate) struct Run {
    pub(crate) record: FlowRecord,
    pub(crate) client: Value,
    pub(crate) server: Value,
}

/// Starts `tcp-server` (replies `reply` bytes after reading to the end) outside the watched
/// cgroup, then `role SERVER args...` in it, and returns the client's closed flow.
pub(crate) fn client_run(port: u16, reply: usize, role: &str, args: &[String]) -> Run {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = v4(&pair, 0, port);
    let mut srv = spawn("tcp-server", &[s(server), s(reply), s(1)], Place { netns: Some(&pair.b), ..Place::default() });
    srv.line();
    let mon = Monitor::start(&cg.path, "");
    let mut full = vec![s(server)];
    full.extend_from_slice(args);
    let client = spawn(role, &full, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) });
    let client = client.finish().remove(0);
    let server = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    let local = addr(&client["local"]);
    let found: Vec<&FlowRecord> = out.closed().into_iter().filter(|r| r.local == Some(local)).collect();
    assert_eq!(found.len(), 1, "one closed flow for {local}: {:#?}", out.records);
    let record = found[0].clone();
    assert!(record.complete, "{record:#?}");
    eprintln!(
        "    {role}: payload tx {} ({:?}), rx {} ({:?})",
        record.payload.tx_bytes, record.payload_sources.tx, record.payload.rx_bytes, record.payload_sources.rx
    );
    Run { record, client, server }
}

/// `tcp-hold-server` on `server` in the pair's second namespace and `cg`, ready: it reads `read`
/// bytes of one connection, answers `reply` and holds the connection until "exit".
fn hold_server(pair: &Pair, cg: &TestCgroup, server: SocketAddr, read: usize, reply: usize) -> crate::env::Helper {
    let mut srv = spawn(
        "tcp-hold-server",
        &[s(server), s(read), s(reply)],
        Place { netns: Some(&pair.b), cgroup: Some(cg), uid: None },
    );
    srv.line();
    srv
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The case: an 8 MiB download read with splice(2) was recorded with `rx_bytes: 0`.
pub fn splice_receive() {
    let run = client_run(5401, DOWNLOAD, "tcp-splice-client", &[s(100)]);
    let r = &run.record;
    assert_eq!((n(&run.client["rx"]), n(&run.server["rx"])), (DOWNLOAD as u64, 100), "helpers moved the bytes");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (100, DOWNLOAD as u64), "{r:#?}");
    assert_eq!((r.payload_sources.tx, r.payload_sources.rx), (PayloadSource::Syscall, PayloadSource::TcpCounters));
    assert_eq!(r.payload_source, PayloadSource::Mixed);
    assert!(r.wire.rx_bytes > DOWNLOAD as u64, "wire counts headers too");
}

/// A splice(2) download open across a daemon restart that ends right after it (within the new
/// run's first update interval): the new run's `close` holds exactly what was read after the
/// restart, from the kernel's counters at the socket's first packet under the new run and at
/// its release (an adversarial pass: 0 B; and one that ended later lost what it read after its
/// last update).
pub fn splice_receive_across_a_restart() {
    splice_receive_across_a_restart_after(251 * 400, 0, 5412);
}

/// As [`splice_receive_across_a_restart`] where 200,800 bytes of the rest had arrived before the
/// restart and are read after it, before the socket's first packet under the new run: counted
/// from the counters the daemon read at start (they were missing from the record).
pub fn splice_receive_of_bytes_queued_across_a_restart() {
    splice_receive_across_a_restart_after(251 * 400, 251 * 800, 5418);
}

/// A splice reader older than the run that reads bytes queued before the restart and closes the
/// socket (the peer sends nothing more; the FIN goes out after the release). Whether its reads
/// send a window update before the release is up to the kernel's timing: without one its
/// release is its only event under the new run, counted from the counters the daemon read at
/// start (an adversarial pass: such readers had no record at all), with the local address read
/// then (the release hook cannot read it); with one it is discovered at that packet. Either way
/// its `close` holds exactly what it read and its local address.
pub fn splice_reader_of_queued_bytes_closing_before_a_packet() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    // A long transfer first: its receive window grows past what a read of the queued bytes can
    // double, so that read sends no window update.
    let (first, queued) = (251 * 400_000usize, 251 * 8_000usize);
    let server = SocketAddr::new(pair.b_v4[0].parse().unwrap(), 5419);
    let first_run = Monitor::start(&cg.path, "");
    let mut srv = spawn(
        "tcp-two-phase-server",
        &[s(server), s(first + queued), s(0)],
        Place { netns: Some(&pair.b), cgroup: None, uid: Some(SERVER_UID) },
    );
    srv.line();
    let mut client = spawn(
        "tcp-splice-two-phase-client",
        &[s(server), s(first), s(queued)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let local: SocketAddr = client.line()["local"].as_str().unwrap().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let before = first_run.stop();
    let second_run = Monitor::start_in(&cg.path, before.dir, "");
    client.send("go");
    let done = client.line();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = second_run.stop();
    srv.send("go");
    client.send("exit");
    srv.send("exit");
    client.finish();
    srv.finish();
    out.assert_nothing_lost();
    assert_eq!(n(&done["rx_after_go"]), queued as u64, "the helper read the queued bytes");
    let ends: Vec<&FlowRecord> =
        out.records.iter().filter(|r| r.remote == Some(server) && r.event == RecordKind::Close).collect();
    assert_eq!(ends.len(), 1, "one close of the client's flow: {:#?}", out.records);
    assert_eq!(ends[0].local, Some(local), "{:#?}", ends[0]);
    let r = ends[0];
    assert_eq!((r.payload.rx_bytes, r.payload_sources.rx), (queued as u64, PayloadSource::TcpCounters), "{r:#?}");
    assert_eq!((r.payload.tx_bytes, r.owner.uid), (0, CLIENT_UID), "{r:#?}");
}

/// As [`splice_receive_across_a_restart`] after 4.3 GB read before the restart: the new run's
/// first counters of the socket are past 32 bits (a re-check: they were taken as no base, and
/// the splice reader was charged 0 B).
pub fn splice_receive_across_a_restart_after_gibibytes() {
    splice_receive_across_a_restart_after(251 * 17_200_000, 0, 5417);
}

/// A splice reader that read `first` bytes (a multiple of the helpers' 251-byte pattern: the
/// reader checks the bytes) under one run and the rest under the next, from a server on `port`
/// that sent `queued` bytes of the rest before the restart (read first under the next run; also
/// a multiple of the pattern).
fn splice_receive_across_a_restart_after(first: usize, queued: usize, port: u16) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let second = 1_234_567usize;
    let server = SocketAddr::new(pair.b_v6[0].parse().unwrap(), port);
    let first_run = Monitor::start(&cg.path, "");
    let mut srv = spawn(
        "tcp-two-phase-server",
        &[s(server), s(first + queued), s(second)],
        Place { netns: Some(&pair.b), cgroup: None, uid: Some(SERVER_UID) },
    );
    srv.line();
    let mut client = spawn(
        "tcp-splice-two-phase-client",
        &[s(server), s(first)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let local: SocketAddr = client.line()["local"].as_str().unwrap().parse().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let before = first_run.stop();
    let second_run = Monitor::start_in(&cg.path, before.dir, "");
    if queued == 0 {
        srv.send("go");
        client.send("go");
    } else {
        // The queued bytes are read before the server sends more.
        client.send("go");
        std::thread::sleep(std::time::Duration::from_millis(300));
        srv.send("go");
    }
    let done = client.line();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = second_run.stop();
    client.send("exit");
    srv.send("exit");
    client.finish();
    srv.finish();
    out.assert_nothing_lost();
    let after = (queued + second) as u64;
    assert_eq!(n(&done["rx_after_go"]), after, "the helper read the rest");
    let ends: Vec<&FlowRecord> = out
        .records
        .iter()
        .filter(|r| r.local == Some(local) && matches!(r.event, RecordKind::Close | RecordKind::Shutdown))
        .collect();
    assert_eq!(ends.len(), 1, "one end of the client's flow: {ends:#?}");
    let r = ends[0];
    assert_eq!(r.event, RecordKind::Close, "{r:#?}");
    assert_eq!((r.payload.rx_bytes, r.payload_sources.rx), (after, PayloadSource::TcpCounters), "{r:#?}");
    assert_eq!(r.payload.tx_bytes, 0, "{r:#?}");
}

/// A download read with splice(2) over IPv6, both ends still open when the monitor stops (the
/// validation's case): each side's `shutdown` record holds the bytes moved so far, the spliced
/// ones from the kernel's TCP counters read at shutdown, and the socket's own IPv6 address.
pub fn splice_receive_open_at_shutdown() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (send, reply) = (54_321usize, 1_500_007usize);
    let server = SocketAddr::new(pair.b_v6[0].parse().unwrap(), 5411);
    let mon = Monitor::start(&cg.path, "");
    let mut srv = hold_server(&pair, &cg, server, send, reply);
    let mut client = spawn(
        "tcp-splice-hold-client",
        &[s(server), s(send), s(reply)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let (c, sv) = (client.line(), srv.line());
    // The last bytes' ACKs and the kernel's counters settle well within this.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = mon.stop();
    client.send("exit");
    srv.send("exit");
    client.finish();
    srv.finish();
    out.assert_nothing_lost();
    assert_eq!(
        (n(&c["tx"]), n(&c["rx"]), n(&sv["rx"]), n(&sv["tx"])),
        (send as u64, reply as u64, send as u64, reply as u64)
    );
    if out.degradations.iter().any(|d| d == "no_snapshots") {
        eprintln!("    DEGRADED: no counter snapshots on this kernel; open flows end with their last report");
        return;
    }
    for (who, line, tx, rx) in [("client", &c, send, reply), ("server", &sv, reply, send)] {
        let local = addr(&line["local"]);
        assert!(local.is_ipv6(), "{local}");
        let found: Vec<&FlowRecord> =
            out.records.iter().filter(|r| r.local == Some(local) && r.remote.is_some()).collect();
        let last = found.last().unwrap_or_else(|| panic!("{who}: no record at {local}: {:#?}", out.records));
        assert_eq!(last.event, RecordKind::Shutdown, "{who}: {last:#?}");
        assert!(last.complete, "{who}: {last:#?}");
        assert_eq!((last.payload.tx_bytes, last.payload.rx_bytes), (tx as u64, rx as u64), "{who}: {last:#?}");
        assert_eq!(last.remote.map(|r| r.is_ipv6()), Some(true), "{who}: {last:#?}");
        if who == "client" {
            assert_eq!(last.payload_sources.rx, PayloadSource::TcpCounters, "{last:#?}");
        }
        eprintln!("    {who}: shutdown record at {local}: tx {tx}, rx {rx}, exact");
    }
}

/// A client that closes with unread data (a cancelled download): the kernel received the whole
/// reply, the process read a third of it, and the close discarded the rest with a reset. The
/// client's record counts what it read, not what its kernel received; the server's what it
/// wrote, which the client's kernel acknowledged.
pub fn reset_with_unread_data() {
    reset_with_unread(20_000, 5412, 300);
}

/// The same, the client reading nothing of the reply (an upload whose answer nobody reads, a
/// process killed before its first read): its record counts nothing received (an adversarial
/// pass: the kernel's `bytes_received`, 5,000 bytes nobody read, was taken for payload read
/// another way, as a splice reader's is). The kernel leaves what was never read out of a
/// released socket's final counters (`TCP_CONSUMED`).
pub fn reset_with_nothing_read() {
    reset_with_unread(0, 5413, 300);
}

/// The same, the reply left unread for updates to come (a second and more) before the close:
/// the updates count what the process took, not what waits (`TCP_CONSUMED` in the kernel
/// programs' updates and the descriptor snapshots), so the deltas of the client's records add up
/// to what it read (an adversarial re-check: an update counted the 100,000 bytes nobody read, and
/// the journal's sum kept them after the close said 0).
pub fn unread_reply_across_updates() {
    reset_with_unread(0, 5414, 2_500);
    reset_with_unread(20_000, 5415, 2_500);
}

/// A splice reader reset by its peer while it holds the connection, the rest of the reply
/// unread: `TCP_CLOSE` comes before its release and counted every byte that arrived; its record
/// counts what it read (an adversarial re-check: 60,000 B charged of 20,000 read).
pub fn peer_reset_of_a_splice_reader() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (send, reply, read) = (1_000usize, 60_000usize, 251 * 80usize);
    let server = v4(&pair, 0, 5416);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let mut srv = spawn(
        "tcp-reset-server",
        &[s(server), s(send), s(reply)],
        Place { netns: Some(&pair.b), cgroup: None, uid: None },
    );
    srv.line();
    let mut client = spawn(
        "tcp-splice-hold-client",
        &[s(server), s(send), s(read)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let c = client.line();
    srv.line();
    srv.send("reset");
    srv.line();
    // The reset reaches the client, whose socket closes (`TCP_CLOSE`) while it holds it, for
    // longer than an update interval: the updates while the flow waits for its release must not
    // count what is still unread either (a re-check: one did, and the total kept it).
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    client.send("exit");
    client.finish();
    srv.send("exit");
    srv.finish();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!((n(&c["tx"]), n(&c["rx"])), (send as u64, read as u64), "{c}");
    let local = addr(&c["local"]);
    let ends: Vec<&FlowRecord> = out.records.iter().filter(|r| r.local == Some(local)).collect();
    let r = ends.last().unwrap_or_else(|| panic!("a record of the client: {:#?}", out.records));
    assert_eq!(r.event, RecordKind::Close, "{ends:#?}");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (send as u64, read as u64), "{r:#?}");
    assert!(ends.iter().any(|r| r.event == RecordKind::Update), "an update while it waited: {ends:#?}");
    let received: u64 = ends.iter().map(|r| r.delta_payload.rx_bytes).sum();
    assert_eq!(received, read as u64, "the records' deltas: {ends:#?}");
}

fn reset_with_unread(read: usize, port: u16, wait_ms: u64) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let (send, reply) = (1_000usize, 60_000usize);
    let server = v4(&pair, 0, port);
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let mut srv = hold_server(&pair, &cg, server, send, reply);
    let client = spawn(
        "tcp-unread-client",
        &[s(server), s(send), s(read), s(wait_ms)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let c = client.finish().remove(0);
    let sv = srv.line();
    std::thread::sleep(std::time::Duration::from_millis(300));
    srv.send("exit");
    srv.finish();
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!(n(&c["extra"]["unread"]), (reply - read) as u64, "the rest of the reply arrived unread: {c}");
    assert_eq!((n(&sv["rx"]), n(&sv["tx"])), (send as u64, reply as u64));
    for (who, line, tx, rx) in [("client", &c, send, read), ("server", &sv, reply, send)] {
        let local = addr(&line["local"]);
        let found: Vec<&FlowRecord> =
            out.closed().into_iter().filter(|r| r.local == Some(local) && r.remote.is_some()).collect();
        assert_eq!(found.len(), 1, "{who}: one closed connection at {local}: {:#?}", out.records);
        let r = found[0];
        assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (tx as u64, rx as u64), "{who}: {r:#?}");
        assert_eq!(r.payload_source, PayloadSource::Syscall, "{who}: {r:#?}");
        let all = out.records.iter().filter(|r| r.local == Some(local) && r.remote.is_some());
        let deltas = all.fold((0, 0), |(t, x), r| (t + r.delta_payload.tx_bytes, x + r.delta_payload.rx_bytes));
        assert_eq!(deltas, (tx as u64, rx as u64), "{who}: the records' deltas add up: {:#?}", out.records);
        eprintln!("    {who}: tx {tx}, rx {rx}, exact (the reset discarded {} unread bytes)", reply - read);
    }
}

/// A slow download read with splice(2): the periodic updates show its progress too (the TCP
/// counters travel in the kernel's updates), never more than the final total, and their deltas add
/// up to it.
pub fn splice_receive_updates() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = v4(&pair, 0, 5409);
    let mut srv = spawn(
        "tcp-trickle-server",
        &[s(server), s(100_000), s(40), s(100)],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    srv.line();
    let mon = Monitor::start(&cg.path, "[probe]\nupdate_interval_secs = 1\n");
    let client =
        spawn("tcp-splice-client", &[s(server), s(100)], Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None });
    let line = client.finish().remove(0);
    srv.finish();
    let out = mon.stop();
    out.assert_nothing_lost();
    let total = 4_000_000u64;
    assert_eq!(n(&line["rx"]), total);
    let local = addr(&line["local"]);
    let mine: Vec<&FlowRecord> = out.records.iter().filter(|r| r.local == Some(local)).collect();
    let updates: Vec<&&FlowRecord> =
        mine.iter().filter(|r| r.event == RecordKind::Update && r.payload.rx_bytes > 0).collect();
    assert!(updates.len() >= 2, "a 4 s download with a 1 s interval shows progress: {mine:#?}");
    assert!(
        updates.iter().all(|r| r.payload.rx_bytes < total && r.payload_sources.rx == PayloadSource::TcpCounters),
        "{updates:#?}"
    );
    let last = mine.last().unwrap();
    assert_eq!(
        (last.event, last.payload.rx_bytes, last.payload.tx_bytes),
        (RecordKind::Close, total, 100),
        "{last:#?}"
    );
    assert_eq!(mine.iter().map(|r| r.delta_payload.rx_bytes).sum::<u64>(), total, "deltas add up");
}

/// The server side: an 8 MiB upload read with splice(2) by an accepted socket (the peer's FIN
/// arrives in ESTABLISHED, the server closes from CLOSE_WAIT).
pub fn splice_receive_server() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = v4(&pair, 0, 5408);
    let mon = Monitor::start(&cg.path, "");
    let mut srv = spawn(
        "tcp-splice-server",
        &[s(server), s(100)],
        Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) },
    );
    srv.line();
    let client =
        spawn("tcp-client", &[s(server), s(DOWNLOAD), s(1)], Place { netns: Some(&pair.a), ..Place::default() });
    let client = client.finish().remove(0);
    let line = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!((n(&line["rx"]), n(&client["rx"])), (DOWNLOAD as u64, 100), "helpers moved the bytes");
    let local = addr(&line["local"]);
    let r = out
        .closed()
        .into_iter()
        .find(|r| r.local == Some(local) && r.remote.is_some())
        .unwrap_or_else(|| panic!("{:#?}", out.records));
    assert_eq!((r.payload.rx_bytes, r.payload.tx_bytes), (DOWNLOAD as u64, 100), "{r:#?}");
    assert_eq!((r.payload_sources.rx, r.payload_sources.tx), (PayloadSource::TcpCounters, PayloadSource::Syscall));
    assert!(r.complete);
}

/// Sends `size` bytes with `role`; the server's count is the truth.
fn send_path(port: u16, role: &str, size: usize) -> Run {
    let run = client_run(port, 1000, role, &[s(size)]);
    let r = &run.record;
    assert_eq!(n(&run.server["rx"]), size as u64, "the server received everything");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (size as u64, 1000), "{r:#?}");
    run
}

pub fn sendfile_send() {
    send_path(5402, "tcp-sendfile-client", 3_000_007);
}

pub fn vmsplice_splice_send() {
    send_path(5403, "tcp-vmsplice-client", 3_000_011);
}

pub fn msg_zerocopy_send() {
    let run = send_path(5404, "tcp-zerocopy-send-client", 3_000_013);
    eprintln!("    {} zero-copy completion notifications", run.client["extra"]["notifications"]);
}

/// Transmit timestamps come back on the error queue with a copy of each packet sent: reading
/// them (`MSG_ERRQUEUE`) receives nothing from the peer. The record's rx is the reply alone
/// (the audit's case: the copies were counted as received, and the orderly close kept the
/// larger syscall count).
pub fn tcp_timestamps_error_queue() {
    let run = send_path(5412, "tcp-timestamping-client", 100_003);
    let copies = n(&run.client["extra"]["errqueue_bytes"]);
    assert!(copies > 0, "the helper must have read packet copies from the error queue: {}", run.client);
    eprintln!("    {copies} B read from the error queue, not counted");
}

/// A connected UDP socket with `IP_RECVERR`/`IPV6_RECVERR` sending to a port where nothing
/// listens: each ICMP error comes back on the error queue with the datagram it quotes. Nothing
/// was received from the peer, so the record's rx is 0 (the audit's case: 1,500).
pub fn udp_icmp_error_queue(v6: bool) {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let ip = if v6 { &pair.b_v6[0] } else { &pair.b_v4[0] };
    let server = SocketAddr::new(ip.parse().unwrap(), 5413);
    let (count, size) = (5usize, 300usize);
    let mon = Monitor::start(&cg.path, "");
    let client = spawn(
        "udp-recverr-client",
        &[s(server), s(count), s(size)],
        Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) },
    );
    let client = client.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    let copies = n(&client["extra"]["errqueue_bytes"]);
    assert!(copies > 0, "the helper must have read ICMP errors from the error queue: {client}");
    let local = addr(&client["local"]);
    let found: Vec<&FlowRecord> =
        out.closed().into_iter().filter(|r| r.local.map(|l| l.port()) == Some(local.port())).collect();
    assert_eq!(found.len(), 1, "one closed flow for {local}: {:#?}", out.records);
    let r = found[0];
    assert_eq!(r.remote, Some(server), "{r:#?}");
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), ((count * size) as u64, 0), "{r:#?}");
    assert_eq!(r.wire.rx_packets, 0, "no datagram came back, only ICMP errors: {r:#?}");
    eprintln!("    {copies} B read from the error queue, not counted");
}

pub fn tcp_zerocopy_receive() {
    let run = client_run(5405, DOWNLOAD, "tcp-zerocopy-recv-client", &[s(100)]);
    let r = &run.record;
    let bypassed = n(&run.client["extra"]["bypassed"]);
    assert_eq!(n(&run.client["rx"]), DOWNLOAD as u64, "the helper read everything");
    assert!(bypassed > 0, "the helper must read without recvmsg: {}", run.client);
    assert_eq!((r.payload.tx_bytes, r.payload.rx_bytes), (100, DOWNLOAD as u64), "{r:#?}");
    assert_eq!(r.payload_sources.rx, PayloadSource::TcpCounters);
    eprintln!("    {bypassed} B mapped or copied inside getsockopt, {} B by recv(2)", run.client["extra"]["recv"]);
}

/// Whether this kernel has kTLS: TCP_ULP "tls" on an unconnected socket answers ENOTCONN when
/// the ULP exists, ENOENT when it does not (after the kernel's own module autoload).
fn ktls_probe() -> Result<(), String> {
    let probe = || -> Option<i32> {
        // SAFETY: a fresh socket, closed below.
        unsafe {
            let fd = nix::libc::socket(nix::libc::AF_INET, nix::libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let r = nix::libc::setsockopt(fd, nix::libc::SOL_TCP, nix::libc::TCP_ULP, b"tls".as_ptr().cast(), 3);
            let errno = std::io::Error::last_os_error().raw_os_error();
            nix::libc::close(fd);
            if r == 0 { None } else { errno }
        }
    };
    if probe() != Some(nix::libc::ENOENT) {
        return Ok(());
    }
    let modprobe = Command::new("modprobe").arg("tls").output();
    if probe() != Some(nix::libc::ENOENT) {
        return Ok(());
    }
    let config = Command::new("zcat").arg("/proc/config.gz").output().ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.contains("CONFIG_TLS ") || l.starts_with("CONFIG_TLS="))
            .map(str::to_owned)
    });
    Err(format!(
        "kTLS is not available on this kernel ({}): TCP_ULP \"tls\" gives ENOENT, `modprobe tls`: {}",
        config.unwrap_or_else(|| "no /proc/config.gz".into()),
        match modprobe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => e.to_string(),
        }
    ))
}

/// kTLS both ways: the stream carries TLS records (header, explicit nonce, tag per 16 KiB), so
/// the payload is what the stream carried, as for TLS done in the process.
pub fn ktls() {
    if let Err(reason) = ktls_probe() {
        return missing(reason);
    }
    let size = 1_000_000usize;
    // Transmit: a plain server counts the raw stream.
    let tx = client_run(5406, 500, "ktls-client", &[s(size)]);
    let stream = n(&tx.server["rx"]);
    let records = n(&tx.client["extra"]["records"]);
    assert_eq!(stream, size as u64 + 29 * records, "TLS 1.2 AES-GCM: 5 + 8 + 16 bytes per record");
    assert_eq!((tx.record.payload.tx_bytes, tx.record.payload.rx_bytes), (stream, 500), "{:#?}", tx.record);
    assert_eq!(tx.record.payload_sources.tx, PayloadSource::TcpCounters);
    // Receive: the same plaintext in the same records gives the same stream.
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let server = v4(&pair, 0, 5407);
    let mon = Monitor::start(&cg.path, "");
    let mut srv =
        spawn("ktls-server", &[s(server)], Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: Some(SERVER_UID) });
    srv.line();
    spawn("ktls-client", &[s(server), s(size)], Place { netns: Some(&pair.a), ..Place::default() }).finish();
    let srv_line = srv.finish().remove(0);
    let out = mon.stop();
    out.assert_nothing_lost();
    assert_eq!(n(&srv_line["rx"]), size as u64, "the server decrypted everything");
    let local = addr(&srv_line["local"]);
    let r = out
        .closed()
        .into_iter()
        .find(|r| r.local == Some(local) && r.remote.is_some())
        .unwrap_or_else(|| panic!("{:#?}", out.records));
    assert_eq!((r.payload.rx_bytes, r.payload_sources.rx), (stream, PayloadSource::TcpCounters), "{r:#?}");
}

/// io_uring zero-copy receive needs a NIC receive queue with header split and a page-pool memory
/// provider bound to the ring; veth and loopback have none.
pub fn io_uring_zero_copy_receive() {
    missing(
        "io_uring zero-copy receive (IORING_OP_RECV_ZC) needs a hardware receive queue with header split; \
         the test network (veth) has none. Its bytes are counted by the TCP counters like splice's."
            .into(),
    );
}

/// One unconnected socket, 100 destinations round robin through 8 peer slots (every datagram
/// flushes a slot): still exactly one flow per destination, in the records, the journal and the
/// report.
pub fn udp_round_robin_100_peers() {
    const PEERS: u16 = 100;
    const ROUNDS: usize = 20;
    const SIZE: usize = 1200;
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let ip = pair.b_v4[0].clone();
    let mut sink = spawn(
        "udp-sink",
        &[ip.clone(), s(6000), s(PEERS), s(ROUNDS)],
        Place { netns: Some(&pair.b), ..Place::default() },
    );
    sink.line();
    let mon = Monitor::start(&cg.path, "[[apps]]\nname = \"round-robin\"\nuid = [4242]\n");
    let dests: Vec<SocketAddr> = (0..PEERS).map(|i| format!("{ip}:{}", 6000 + i).parse().unwrap()).collect();
    let mut args = vec![s(SIZE), s(ROUNDS)];
    args.extend(dests.iter().map(s));
    let client =
        spawn("udp-round-robin", &args, Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: Some(CLIENT_UID) });
    let line = client.finish().remove(0);
    sink.finish();
    let out = mon.stop();
    out.assert_nothing_lost();
    let port = u16::try_from(n(&line["local_port"])).unwrap();
    let mine: Vec<&FlowRecord> = out.records.iter().filter(|r| r.local.is_some_and(|l| l.port() == port)).collect();
    let closed: Vec<&&FlowRecord> = mine.iter().filter(|r| r.event == RecordKind::Close).collect();
    assert_eq!(closed.len(), usize::from(PEERS), "one close record per destination: {closed:#?}");
    let remotes: BTreeSet<SocketAddr> = closed.iter().filter_map(|r| r.remote).collect();
    assert_eq!(remotes, dests.iter().copied().collect(), "every destination once");
    for r in &closed {
        assert_eq!((r.payload.tx_bytes, r.wire.tx_packets), ((SIZE * ROUNDS) as u64, ROUNDS as u64), "{r:#?}");
        assert_eq!(r.payload_source, PayloadSource::IpLayer);
    }
    let evictions = n(&out.stats["kernel"]["peer_evictions"]);
    assert_eq!(evictions, u64::from(PEERS) * ROUNDS as u64 - 8, "every datagram after the first 8 flushes a slot");
    assert_eq!(n(&out.stats["tracker"]["split_peer_flows"]), 0, "{}", out.stats);

    // The journal: 100 close records, 100 new flows.
    let journal = out.dir.path().join("journal.db");
    let db = rusqlite::Connection::open(&journal).unwrap();
    let count: i64 = db
        .query_row("SELECT COUNT(*) FROM connections WHERE event = 'close' AND local_port = ?1", [port], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(count, i64::from(PEERS), "close records in the journal");
    let new_flows: i64 =
        db.query_row("SELECT SUM(new_flows) FROM residency WHERE app = 'round-robin'", [], |row| row.get(0)).unwrap();
    assert_eq!(new_flows, i64::from(PEERS), "flows in the journal's residency rows");

    // The report.
    let doc = out.report_json();
    let app =
        doc["apps"].as_array().unwrap().iter().find(|a| a["app"] == "round-robin").unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(n(&app["flows"]), u64::from(PEERS), "flows in the report: {app:#}");
    assert_eq!(n(&app["endpoints_total"]), u64::from(PEERS), "{app:#}");
    assert_eq!(n(&app["traffic"]["payload_tx"]), u64::from(PEERS) * (SIZE * ROUNDS) as u64);
    eprintln!("    100 peers through 8 slots ({evictions} evictions): 100 flows in records, journal and report");
}
