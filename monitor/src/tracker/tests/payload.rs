//! TCP payload from the kernel's TCP counters: per direction, SYN and FINs removed exactly.

use monitor_common::event::{TCP_CONSUMED, tcp_state};

use super::*;

fn established_with_base(acked: u64, received: u64) -> (EventKind, Event) {
    let mut est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    est.flags = FLAG_TCP_COUNTERS;
    est.tcp =
        TcpCounters { bytes_acked: acked, bytes_received: received, old_state: 1, flags: 0, ..TcpCounters::default() };
    (EventKind::Established, est)
}

fn tcp_close(
    old_state: u32,
    acked: u64,
    received: u64,
    flags: u32,
    app_tx: u64,
    app_rx: u64,
) -> Vec<(EventKind, Event)> {
    let rel = ev(EventKind::Release, 3 * SEC, counters(10, 10, app_tx, app_rx));
    let mut close = ev(EventKind::TcpClose, 4 * SEC, counters(10, 10, app_tx, app_rx));
    close.tcp =
        TcpCounters { bytes_acked: acked, bytes_received: received, old_state, flags, ..TcpCounters::default() };
    vec![(EventKind::Release, rel), (EventKind::TcpClose, close)]
}

/// A tracker that saw the handshake and a TCP `Update` (the kernel's `received` with `flags`, the
/// syscalls' `app_rx`), and the records its tick at 20 s wrote.
fn after_update(received: u64, flags: u32, app_rx: u64) -> (Tracker, Vec<FlowRecord>) {
    let mut t = tracker();
    let mut up = ev(EventKind::Update, 3 * SEC, counters(10, 10, 100, app_rx));
    up.flags = FLAG_TCP_COUNTERS;
    up.tcp =
        TcpCounters { bytes_acked: 1 + 100, bytes_received: received, old_state: 1, flags, ..TcpCounters::default() };
    feed(&mut t, &[established_with_base(1, 0), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(20 * SEC, &mut out);
    (t, out)
}

/// A download read with splice(2): the syscall tracepoints saw the request, not the 8 MiB.
#[test]
fn bytes_that_bypass_the_syscalls_come_from_the_tcp_counters_per_direction() {
    let mut t = tracker();
    let mut events = vec![established_with_base(1, 0)];
    // Active close after reading everything: FIN_WAIT2 -> CLOSE, both FINs exchanged.
    events.extend(tcp_close(5, 1 + 100 + 1, 8_388_608 + 1, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 100, 0));
    let out = feed(&mut t, &events);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (100, 8_388_608));
    assert_eq!(out[0].payload_sources, PayloadSources { tx: PayloadSource::Syscall, rx: PayloadSource::TcpCounters });
    assert_eq!(out[0].payload_source, PayloadSource::Mixed);
}

/// A connection that ends in a reset (`TCP_CLOSE` from `ESTABLISHED`, `CLOSE_WAIT` or
/// `FIN_WAIT1`): the kernel received bytes the process never read, and the reset discarded them.
/// A process that read with recvmsg keeps its count; a splice reader (no recvmsg count) takes the
/// kernel's. Orderly ends (`FIN_WAIT2`, with the peer's FIN or not: an orphaned socket's FIN was
/// acknowledged) keep the larger count: a zero-copy reader's few recv(2) bytes do not win.
#[test]
fn a_reset_discards_unread_bytes_that_the_tcp_counters_count() {
    use monitor_common::event::tcp_state::{CLOSE_WAIT, ESTABLISHED, FIN_WAIT1, FIN_WAIT2};
    let close = |old_state: u32, flags: u32, app_rx: u64| {
        let mut t = tracker();
        let mut events = vec![established_with_base(1, 0)];
        let received = 300_000 + u64::from(flags & TCP_FIN_RECEIVED);
        events.extend(tcp_close(old_state, 1 + 100, received, flags, 100, app_rx));
        let out = feed(&mut t, &events);
        (out[0].payload.rx_bytes, out[0].payload_sources.rx)
    };
    for (old_state, flags) in [(ESTABLISHED, 0), (CLOSE_WAIT, TCP_FIN_RECEIVED), (FIN_WAIT1, 0)] {
        // Read 100,000 of the 300,000 bytes that arrived, then closed: a reset.
        assert_eq!(close(old_state, flags, 100_000), (100_000, PayloadSource::Syscall), "old state {old_state}");
        // A splice reader reset the same way: nothing read with recvmsg, the kernel's count.
        assert_eq!(close(old_state, flags, 0), (300_000, PayloadSource::TcpCounters), "old state {old_state}");
    }
    for flags in [TCP_ALL_ACKED, TCP_FIN_RECEIVED | TCP_ALL_ACKED] {
        assert_eq!(close(FIN_WAIT2, flags, 1_000), (300_000, PayloadSource::TcpCounters), "flags {flags}");
    }
}

/// The close of a socket its process had released carries what the process consumed
/// (`TCP_CONSUMED`: the kernel left the unread bytes out): after a reset too, the larger count
/// wins, so a reader that took part of the stream by splice and part by recvmsg is exact, and one
/// that read nothing (an upload) counts nothing (an adversarial pass: 5,000 unread bytes were
/// counted as received).
#[test]
fn a_released_socket_s_close_counts_what_its_process_consumed() {
    use monitor_common::event::{TCP_CONSUMED, tcp_state::ESTABLISHED};
    let close = |received: u64, app_rx: u64| {
        let mut t = tracker();
        let mut events = vec![established_with_base(1, 0)];
        events.extend(tcp_close(ESTABLISHED, 1 + 100, received, TCP_CONSUMED, 100, app_rx));
        let out = feed(&mut t, &events);
        (out[0].payload.rx_bytes, out[0].payload_sources.rx)
    };
    assert_eq!(close(0, 0), (0, PayloadSource::Syscall), "nothing read, nothing counted");
    assert_eq!(close(250_000, 100_000), (250_000, PayloadSource::TcpCounters), "150,000 spliced, 100,000 read");
    assert_eq!(close(100_000, 100_000), (100_000, PayloadSource::Syscall), "all read with recvmsg");
}

/// While a connection is open `bytes_received` runs ahead of the reads by what is queued, so a
/// recvmsg reader's updates carry its own count; a reset after an update never takes back bytes
/// an update reported: the records' deltas add up to the final total.
#[test]
fn updates_of_a_recvmsg_reader_count_what_it_read() {
    use monitor_common::event::tcp_state::ESTABLISHED;
    let (mut t, mut out) = after_update(6_000_000, 0, 4_000_000);
    assert_eq!((out[0].payload.rx_bytes, out[0].payload_sources.rx), (4_000_000, PayloadSource::Syscall));
    out.extend(feed(&mut t, &tcp_close(ESTABLISHED, 1 + 100, 8_000_000, 0, 100, 4_500_000)));
    let last = out.last().expect("close record");
    assert_eq!(last.payload.rx_bytes, 4_500_000, "{last:#?}");
    assert_eq!(out.iter().map(|r| r.delta_payload.rx_bytes).sum::<u64>(), 4_500_000, "deltas add up");
}

/// Updates whose TCP counters leave out what waits unread (`TCP_CONSUMED`) count what the process
/// took by any path, the larger count winning while open: nothing for a reply nobody read (an
/// adversarial re-check: such an update counted it all), the spliced bytes of a reader that used
/// both.
#[test]
fn updates_of_what_the_process_consumed_count_it() {
    use monitor_common::event::TCP_CONSUMED;
    let update = |received: u64, app_rx: u64| {
        let (_, out) = after_update(received, TCP_CONSUMED, app_rx);
        (out[0].payload.rx_bytes, out[0].payload_sources.rx)
    };
    assert_eq!(update(0, 0), (0, PayloadSource::Syscall), "nothing taken, nothing counted");
    assert_eq!(update(250_000, 100_000), (250_000, PayloadSource::TcpCounters), "150,000 spliced too");
}

/// A close whose counters say less than an update reported (a reset from the peer while the
/// process holds the socket: its close carries the kernel's count with what waits unread, and the
/// syscall count is taken; an update before it counted spliced bytes too) keeps the update's
/// total: the records' deltas add up to the last one (a review).
#[test]
fn a_total_never_goes_back_below_what_an_update_reported() {
    use monitor_common::event::{TCP_CONSUMED, tcp_state::ESTABLISHED};
    let (mut t, mut out) = after_update(250_000, TCP_CONSUMED, 100_000);
    assert_eq!(out[0].payload.rx_bytes, 250_000);
    let mut close = ev(EventKind::TcpClose, 21 * SEC, counters(10, 10, 100, 100_000));
    close.tcp =
        TcpCounters { bytes_acked: 1 + 100, bytes_received: 300_000, old_state: ESTABLISHED, ..TcpCounters::default() };
    let rel = ev(EventKind::Release, 22 * SEC, counters(10, 10, 100, 100_000));
    out.extend(feed(&mut t, &[(EventKind::TcpClose, close), (EventKind::Release, rel)]));
    let last = out.last().expect("close record");
    assert_eq!(last.payload.rx_bytes, 250_000, "{last:#?}");
    assert_eq!(out.iter().map(|r| r.delta_payload.rx_bytes).sum::<u64>(), 250_000, "deltas add up");
}

#[test]
fn fin_not_received_in_fin_wait2_is_not_subtracted() {
    let mut t = tracker();
    let mut events = vec![established_with_base(1, 0)];
    events.extend(tcp_close(5, 1 + 300 + 1, 700, TCP_ALL_ACKED, 0, 0));
    let out = feed(&mut t, &events);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (300, 700));
    assert_eq!(out[0].payload_source, PayloadSource::TcpCounters);
}

#[test]
fn unacknowledged_fin_and_passive_base_are_exact() {
    let mut t = tracker();
    // Accepted socket: the SYN-ACK is not in bytes_acked (base 0). Reset in LAST_ACK: FIN unacked.
    let mut events = vec![established_with_base(0, 0)];
    events.extend(tcp_close(9, 4000, 51, TCP_FIN_RECEIVED, 10, 10));
    let out = feed(&mut t, &events);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (4000, 50));
}

#[test]
fn syscall_counts_stay_when_the_tcp_counters_lag_or_the_flow_was_seen_late() {
    // In flight: bytes_acked lags the bytes written.
    let mut t = tracker();
    let mut up = ev(EventKind::Update, 3 * SEC, counters(10, 10, 5000, 0));
    up.flags = FLAG_TCP_COUNTERS;
    up.tcp = TcpCounters { bytes_acked: 1 + 3000, bytes_received: 0, old_state: 1, flags: 0, ..TcpCounters::default() };
    feed(&mut t, &[established_with_base(1, 0), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(20 * SEC, &mut out);
    assert_eq!(out[0].payload.tx_bytes, 5000);
    assert_eq!(out[0].payload_source, PayloadSource::Syscall);
    // Socket older than the monitor (no handshake seen): lifetime TCP counters never replace the
    // counts since the monitor started.
    let mut t = tracker();
    let out = feed(&mut t, &tcp_close(5, 1 + 90_000 + 1, 70_000, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 10_000, 0));
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (10_000, 0));
    assert_eq!(out[0].payload_source, PayloadSource::Syscall);
}

/// A splice download older than this run (the daemon restarted, or started after it): no
/// handshake seen, so its first TCP counters are the base, and what it received since counts from
/// the kernel's counters, not as 0 (an adversarial pass: a restart left it at 0 B, complete).
#[test]
fn a_splice_reader_older_than_the_run_counts_from_its_first_tcp_counters() {
    let update = |at: u64, received: u64| {
        let mut up = ev(EventKind::Update, at, counters(10, 10, 0, 0));
        up.flags = FLAG_TCP_COUNTERS;
        up.tcp = TcpCounters { bytes_acked: 1 + 100, bytes_received: received, old_state: 1, ..TcpCounters::default() };
        (EventKind::Update, up)
    };
    let mut t = tracker();
    feed(&mut t, &[update(3 * SEC, 5_000_000_u64 & 0xffff_ffff), update(5 * SEC, 5_000_000 + 1_200_000)]);
    let mut out = Vec::new();
    t.tick(20 * SEC, &mut out);
    assert_eq!((out[0].payload.rx_bytes, out[0].payload_sources.rx), (1_200_000, PayloadSource::TcpCounters));
    assert_eq!(out[0].payload.tx_bytes, 0, "nothing written in the run");
    // Its release ends it (a connection older than the run gets no close callback of its own),
    // with the latest counters.
    // Sent bytes acknowledged now were written before the run (a socket still draining what its
    // process wrote): not counted again (an adversarial re-check: they were, twice).
    let mut drained = update(6 * SEC, 5_000_000 + 1_500_000);
    drained.1.tcp.bytes_acked = 1 + 100 + 1_032_192;
    let out = feed(&mut t, &[drained]);
    assert!(out.is_empty());
    let mut out = Vec::new();
    t.tick(40 * SEC, &mut out);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload_sources.tx), (0, PayloadSource::Syscall), "{out:#?}");
    let release = ev(EventKind::Release, 7 * SEC, counters(10, 10, 0, 0));
    let out = feed(&mut t, &[update(6 * SEC, 5_000_000 + 1_500_000), (EventKind::Release, release)]);
    let last = out.last().expect("the flow ends at its release");
    assert_eq!((last.payload.rx_bytes, last.payload_sources.rx), (1_500_000, PayloadSource::TcpCounters), "{out:#?}");
}

/// The same reader, its release read the kernel's counters (`cgroup/sock_release` of a socket
/// older than the monitor): the bytes it spliced since its last update count, and, its
/// discovery carrying the counters at its first packet, also when it ended before any update
/// (an adversarial pass: its close added 0 B after a restart, and one that ended within the
/// update interval counted 0 B for the whole run).
#[test]
fn a_splice_reader_older_than_the_run_ends_with_the_counters_its_release_read() {
    let tcp = |received: u64| TcpCounters { bytes_acked: 1 + 100, bytes_received: received, ..TcpCounters::default() };
    let with_counters = |kind: EventKind, at: u64, received: u64| {
        let mut e = ev(kind, at, counters(10, 10, 0, 0));
        e.flags = FLAG_TCP_COUNTERS;
        e.tcp = tcp(received);
        (kind, e)
    };
    // Ended before its first update: discovered at 5,000,000, released at 5,860,000 (the peer's
    // FIN read to the end: `consumed`, the FIN left out by the release's own reading).
    let mut t = tracker();
    let mut release = with_counters(EventKind::Release, 4 * SEC, 5_000_000 + 860_000 + 1);
    release.1.tcp.flags = TCP_FIN_RECEIVED | TCP_CONSUMED;
    release.1.tcp.old_state = tcp_state::CLOSE_WAIT;
    let out = feed(&mut t, &[with_counters(EventKind::Discovered, 3 * SEC, 5_000_000), release]);
    let last = out.last().expect("the flow ends at its release");
    assert_eq!((last.payload.rx_bytes, last.payload_sources.rx), (860_000, PayloadSource::TcpCounters), "{out:#?}");
    assert_eq!((last.event, last.payload.tx_bytes), (RecordKind::Close, 0), "nothing written in the run");
    // With updates between: the release's counters, not the last update's.
    let mut t = tracker();
    feed(
        &mut t,
        &[
            with_counters(EventKind::Discovered, 3 * SEC, 5_000_000),
            with_counters(EventKind::Update, 5 * SEC, 6_000_000),
        ],
    );
    let mut out = Vec::new();
    t.tick(20 * SEC, &mut out);
    assert_eq!(out[0].payload.rx_bytes, 1_000_000);
    let out = feed(&mut t, &[with_counters(EventKind::Release, 21 * SEC, 6_704_032)]);
    let last = out.last().expect("the flow ends at its release");
    assert_eq!((last.payload.rx_bytes, last.delta_payload.rx_bytes), (1_704_032, 704_032), "{out:#?}");
}

/// A splice reader whose peer reset the connection while it held it: the reset's `TCP_CLOSE`
/// counted what was still unread (and never will be read); its release's reading says what it
/// took (a re-check: it was charged 400,000 B of which it read 200,000). The close's sent side
/// and state stay.
#[test]
fn a_reset_reader_s_release_counts_what_it_took_after_the_close_counted_more() {
    let mut t = tracker();
    let mut close = ev(EventKind::TcpClose, 3 * SEC, counters(10, 10, 100, 0));
    close.flags = FLAG_TCP_COUNTERS;
    close.tcp = TcpCounters {
        bytes_acked: 1 + 100,
        bytes_received: 400_000,
        old_state: tcp_state::ESTABLISHED,
        ..TcpCounters::default()
    };
    let mut release = ev(EventKind::Release, 4 * SEC, counters(10, 10, 100, 0));
    release.flags = FLAG_TCP_COUNTERS;
    release.tcp = TcpCounters {
        bytes_acked: 1 + 100,
        bytes_received: 200_000,
        old_state: tcp_state::CLOSE,
        flags: TCP_CONSUMED,
        ..TcpCounters::default()
    };
    let out = feed(&mut t, &[established_with_base(1, 0), (EventKind::TcpClose, close), (EventKind::Release, release)]);
    let last = out.last().expect("the flow ends at its release");
    assert_eq!((last.payload.tx_bytes, last.payload.rx_bytes), (100, 200_000), "{out:#?}");
    assert_eq!(last.payload_sources.rx, PayloadSource::TcpCounters);
}

/// kTLS: the process wrote 32,768 bytes of plaintext, the stream carried two TLS 1.2 records.
#[test]
fn ktls_records_are_counted_as_the_stream_carried_them() {
    let mut t = tracker();
    let mut up = ev(EventKind::Update, 3 * SEC, counters(10, 10, 32_768, 0));
    up.flags = FLAG_TCP_COUNTERS;
    up.tcp = TcpCounters {
        bytes_acked: 1 + 32_768 + 2 * 29,
        bytes_received: 0,
        old_state: 1,
        flags: TCP_ALL_ACKED,
        ..TcpCounters::default()
    };
    feed(&mut t, &[established_with_base(1, 0), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(20 * SEC, &mut out);
    assert_eq!(
        (out[0].event, out[0].payload.tx_bytes),
        (RecordKind::Update, 32_826),
        "updates use the TCP counters too"
    );
    assert_eq!(out[0].payload_sources.tx, PayloadSource::TcpCounters);
}

/// The kernel's RTT estimates ride on the TCP events: the smallest `rtt_min` seen and the latest
/// `srtt` (stored ×8 by the kernel) reach the record; "no sample" values are ignored.
#[test]
fn kernel_rtt_estimates_reach_the_record() {
    let mut t = tracker();
    let (kind, mut est) = established_with_base(1, 0);
    est.tcp.rtt_min_us = 500;
    est.tcp.srtt_us_x8 = 500 * 8;
    let mut update = ev(EventKind::Update, 3 * SEC, counters(10, 10, 100, 0));
    update.flags = FLAG_TCP_COUNTERS;
    update.tcp = TcpCounters { bytes_acked: 101, rtt_min_us: 300, srtt_us_x8: 900 * 8, ..TcpCounters::default() };
    let mut events = vec![(kind, est), (EventKind::Update, update)];
    let mut close = tcp_close(5, 1 + 100 + 1, 1, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 100, 0);
    close[1].1.tcp.rtt_min_us = 400; // the kernel's window moved on: the flow's minimum stays 300
    close[1].1.tcp.srtt_us_x8 = 700 * 8;
    events.extend(close);
    let out = feed(&mut t, &events);
    assert_eq!(out[0].rtt, Some(Rtt { min_us: 300, smoothed_us: 700 }));

    // No sample: rtt_min at the kernel's reset value, srtt 0.
    let mut t = tracker();
    let (kind, mut est) = established_with_base(1, 0);
    est.tcp.rtt_min_us = u32::MAX;
    let mut events = vec![(kind, est)];
    events.extend(tcp_close(5, 1 + 100 + 1, 1, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 100, 0));
    let out = feed(&mut t, &events);
    assert_eq!(out[0].rtt, None);
}

/// An IPv6 download read with splice(2), still open at shutdown: the snapshot read by descriptor
/// carries the kernel's TCP counters (the spliced bytes) and the counters' local address without
/// its family. The shutdown record has the spliced bytes and keeps the flow's IPv6 address.
#[test]
fn a_snapshot_brings_tcp_counters_and_leaves_an_address_it_cannot_name() {
    use monitor_common::{AF_INET6, event::FLAG_SNAPSHOT};
    let mut t = tracker();
    let v6 = |last: u8| {
        let mut b = [0u8; 16];
        b[0] = 0xfd;
        b[1] = 0x77;
        b[15] = last;
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        [w(0), w(4), w(8), w(12)]
    };
    let tuple = Tuple { local_addr: v6(1), remote_addr: v6(2), family: AF_INET6, ..tcp_tuple() };
    let (kind, mut est) = established_with_base(1, 0);
    est.tuple = tuple;
    let mut snap = ev(EventKind::Update, 5 * SEC, counters(1_600_000, 1_500_000, 100, 0));
    snap.flags = FLAG_NO_OWNER | FLAG_SNAPSHOT | FLAG_TCP_COUNTERS;
    snap.tuple = Tuple { local_addr: v6(1), local_port: 40000, ..Tuple::default() };
    snap.tcp = TcpCounters { bytes_acked: 101, bytes_received: 1_500_007, old_state: 1, ..TcpCounters::default() };
    feed(&mut t, &[(kind, est), (EventKind::Update, snap)]);
    let mut out = Vec::new();
    t.shutdown(9 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    let r = &out[0];
    assert_eq!((r.event, r.payload.tx_bytes, r.payload.rx_bytes), (RecordKind::Shutdown, 100, 1_500_007), "{r:#?}");
    assert_eq!(r.payload_sources.rx, PayloadSource::TcpCounters);
    assert_eq!(r.local, Some("[fd77::1]:40000".parse().unwrap()), "the IPv6 address stays");
}

/// The base is kept in 32 bits (flow state is per open socket): a handshake's counters (SYN and
/// Fast Open data) fit and are removed exactly; counters too large for a handshake are not
/// taken as a base, so the syscall counts stand, as for a flow seen without its handshake.
#[test]
fn the_handshake_base_is_exact_and_a_base_out_of_range_is_none() {
    let mut t = tracker();
    // Fast Open: the SYN and 1,000 bytes of data acknowledged at ESTABLISHED.
    let mut events = vec![established_with_base(1 + 1000, 0)];
    events.extend(tcp_close(5, 1 + 1000 + 4000 + 1, 701, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 0, 0));
    let out = feed(&mut t, &events);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (4000, 700));

    let mut t = tracker();
    let mut events = vec![established_with_base(u64::from(u32::MAX) + 2, 0)];
    events.extend(tcp_close(5, u64::from(u32::MAX) + 9000, 8_388_609, TCP_FIN_RECEIVED | TCP_ALL_ACKED, 100, 0));
    let out = feed(&mut t, &events);
    assert_eq!((out[0].payload.tx_bytes, out[0].payload.rx_bytes), (100, 0));
    assert_eq!(out[0].payload_source, PayloadSource::Syscall);
}

/// A connection older than the run that had moved more than 4 GiB each way before it (a
/// long-lived splice proxy across a daemon restart): its first counters in this run are its
/// base all the same, so what it moves from then on counts, by the kernel's counters alone too
/// (a re-check: such a base did not fit the tracker's 32-bit handshake base, so a splice reader
/// was charged 0 B and, without the payload tracepoints, the connection's whole life again).
#[test]
fn a_connection_older_than_the_run_with_gibibytes_behind_it_counts_from_its_first_counters() {
    const BEFORE: u64 = 5 << 30;
    let with_counters = |kind: EventKind, at: u64, acked: u64, received: u64, flags: u32| {
        let mut e = ev(kind, at, counters(10, 10, 0, 0));
        e.flags = FLAG_TCP_COUNTERS;
        e.tcp = TcpCounters {
            bytes_acked: BEFORE + acked,
            bytes_received: BEFORE + received,
            old_state: tcp_state::ESTABLISHED,
            flags,
            ..TcpCounters::default()
        };
        (kind, e)
    };
    for syscall_payload in [true, false] {
        let mut t = Tracker::new(TrackerConfig { syscall_payload, ..config() }, Clock::with_offset(0));
        feed(
            &mut t,
            &[
                with_counters(EventKind::Discovered, 3 * SEC, 0, 0, 0),
                with_counters(EventKind::Update, 5 * SEC, 300, 600_000, TCP_CONSUMED),
            ],
        );
        let mut out = Vec::new();
        t.tick(20 * SEC, &mut out);
        assert_eq!(out[0].payload.rx_bytes, 600_000, "syscall payload {syscall_payload}: {out:#?}");
        let mut release = with_counters(EventKind::Release, 21 * SEC, 300, 860_001, TCP_CONSUMED | TCP_FIN_RECEIVED);
        release.1.tcp.old_state = tcp_state::CLOSE_WAIT;
        let out = feed(&mut t, &[release]);
        let last = out.last().expect("the flow ends at its release");
        assert_eq!(
            (last.event, last.payload.rx_bytes, last.delta_payload.rx_bytes, last.payload_sources.rx),
            (RecordKind::Close, 860_000, 260_000, PayloadSource::TcpCounters),
            "syscall payload {syscall_payload}: {out:#?}"
        );
        // Sent: the syscalls' count (none) where they count; else the kernel's, from the base.
        assert_eq!(last.payload.tx_bytes, if syscall_payload { 0 } else { 300 }, "{out:#?}");
    }
}

/// A splice reader older than the run that took bytes queued before a restart after it, before
/// its socket's first packet under the new programs (a gap the last notes left open: up to one
/// pacing gap, 60–90 KB in an adversarial pass): its counters read at start are its base, or
/// its first counters in the run where those are lower (read before the start's).
#[test]
fn a_splice_reader_older_than_the_run_counts_from_its_counters_read_at_start() {
    let tcp = |received: u64, flags: u32| TcpCounters {
        bytes_acked: 1 + 100,
        bytes_received: received,
        old_state: tcp_state::ESTABLISHED,
        flags: flags | TCP_CONSUMED,
        ..TcpCounters::default()
    };
    let with_counters = |kind: EventKind, at: u64, received: u64, flags: u32| {
        let mut e = ev(kind, at, counters(10, 10, 0, 0));
        e.flags = FLAG_TCP_COUNTERS;
        e.tcp = tcp(received, flags);
        (kind, e)
    };
    let cookie = ev(EventKind::Update, 0, counters(0, 0, 0, 0)).cookie;
    // Read at start: 5,000 taken; at its first packet 65,000; at its release 1,000,000 and the
    // peer's FIN. 995,000 were read under the run.
    let mut t = tracker();
    t.read_at_start([(cookie, tcp(5_000, 0))]);
    let mut release = with_counters(EventKind::Release, 21 * SEC, 1_000_001, TCP_FIN_RECEIVED);
    release.1.tcp.old_state = tcp_state::CLOSE_WAIT;
    let out = feed(&mut t, &[with_counters(EventKind::Discovered, 3 * SEC, 65_000, 0), release]);
    let last = out.last().expect("the flow ends at its release");
    assert_eq!((last.event, last.payload.rx_bytes, last.payload.tx_bytes), (RecordKind::Close, 995_000, 0), "{out:#?}");
    // Its first packet came before the start's reading (counters 4,000): the lower one is the base.
    let mut t = tracker();
    t.read_at_start([(cookie, tcp(5_000, 0))]);
    let out = feed(&mut t, &[with_counters(EventKind::Discovered, 3 * SEC, 4_000, 0), release]);
    assert_eq!(out.last().expect("closed").payload.rx_bytes, 996_000, "{out:#?}");
    // The peer's FIN came before the start (counted in `bytes_received` then): not a byte taken.
    let mut t = tracker();
    let mut start = tcp(5_001, TCP_FIN_RECEIVED);
    start.old_state = tcp_state::CLOSE_WAIT;
    t.read_at_start([(cookie, start)]);
    let out = feed(&mut t, &[with_counters(EventKind::Discovered, 3 * SEC, 65_001, TCP_FIN_RECEIVED), release]);
    assert_eq!(out.last().expect("closed").payload.rx_bytes, 995_000, "{out:#?}");
    // A connection seen from its handshake (made after the start's reading) keeps its own base.
    let mut t = tracker();
    t.read_at_start([(cookie, tcp(5_000, 0))]);
    let mut est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    est.flags = FLAG_TCP_COUNTERS;
    est.tcp = TcpCounters { bytes_acked: 1, old_state: 1, ..TcpCounters::default() };
    let mut events = vec![(EventKind::Established, est)];
    events.extend(tcp_close(tcp_state::LAST_ACK, 1, 70_001, TCP_FIN_RECEIVED | TCP_CONSUMED, 0, 0));
    let out = feed(&mut t, &events);
    assert_eq!(out.last().expect("closed").payload.rx_bytes, 70_000, "{out:#?}");
}

/// A connection older than the run whose reader took queued bytes and closed before any packet
/// passed under the new programs: its only event is its release, with the kernel's counters
/// (an adversarial pass: no record at all). Counted from those read at start; one the daemon
/// did not read at start has no record rather than its whole life's bytes.
#[test]
fn an_older_connection_whose_only_event_is_its_release_counts_from_its_counters_read_at_start() {
    let tcp = |received: u64| TcpCounters {
        bytes_acked: 1 + 100,
        bytes_received: received,
        old_state: tcp_state::ESTABLISHED,
        flags: TCP_CONSUMED,
        ..TcpCounters::default()
    };
    let release = || {
        let mut e = ev(EventKind::Release, 4 * SEC, ByteCounters::default());
        e.flags = FLAG_TCP_COUNTERS;
        e.tcp = tcp(205_000);
        e.first_ns = 0;
        (EventKind::Release, e)
    };
    for syscall_payload in [true, false] {
        let config = TrackerConfig { syscall_payload, ..config() };
        let mut t = Tracker::new(config, Clock::with_offset(0));
        t.read_at_start([(7, tcp(5_000))]);
        let out = feed(&mut t, &[release()]);
        assert_eq!(out.len(), 1, "{out:#?}");
        let r = &out[0];
        assert_eq!((r.event, r.payload.rx_bytes, r.payload.tx_bytes), (RecordKind::Close, 200_000, 0), "{r:#?}");
        assert_eq!(r.owner.tgid, 42, "the owner the release carries");
        assert_eq!(t.stats().open_flows, 0);
        // Not read at start: its counters are its whole life's, not this run's.
        let mut t = Tracker::new(config, Clock::with_offset(0));
        assert!(feed(&mut t, &[release()]).is_empty(), "syscall payload {syscall_payload}");
        assert_eq!(t.stats().silent_sockets, 1);
    }
}

/// Such a connection's release carries no local address (the release hook cannot read one):
/// its record takes the one the daemon read at start (an adversarial pass: the record had none).
#[test]
fn an_older_connection_ended_by_its_release_alone_has_the_local_address_read_at_start() {
    let tcp = |received: u64| TcpCounters {
        bytes_acked: 1,
        bytes_received: received,
        old_state: tcp_state::ESTABLISHED,
        flags: TCP_CONSUMED,
        ..TcpCounters::default()
    };
    let mut release = ev(EventKind::Release, 4 * SEC, ByteCounters::default());
    release.flags = FLAG_TCP_COUNTERS;
    release.tcp = tcp(9_000);
    release.first_ns = 0;
    (release.tuple.local_addr, release.tuple.local_port) = ([0; 4], 0);
    let local: SocketAddr = "10.0.0.9:5555".parse().unwrap();
    let mut t = tracker();
    t.read_at_start([super::super::OlderConnection {
        cookie: release.cookie,
        tcp: tcp(1_000),
        local: Some(local),
        written: None,
    }]);
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].local, out[0].payload.rx_bytes), (Some(local), 8_000), "{out:#?}");
    // Without one read at start it has none (not a made-up one).
    let mut t = tracker();
    t.read_at_start([(release.cookie, tcp(1_000))]);
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out[0].local, None, "{out:#?}");
}

/// An older connection that wrote while its peer's window was closed and closed with the bytes
/// still queued: its release's write position (`TCP_WRITE_POSITION`: acknowledged plus queued,
/// sent by the kernel after the release) less the one read at start is what it wrote in the
/// run; what it had queued before the run is not counted (an adversarial pass: no record).
/// A first update read before the start's pass (counters below those read then) is the base.
#[test]
fn an_older_connection_closing_with_queued_writes_counts_what_it_wrote_in_the_run() {
    let tcp = |acked: u64, flags: u32| TcpCounters {
        bytes_acked: acked,
        bytes_received: 1,
        old_state: tcp_state::ESTABLISHED,
        flags,
        ..TcpCounters::default()
    };
    let mut release = ev(EventKind::Release, 4 * SEC, ByteCounters::default());
    // At start: 70,001 acknowledged (the SYN counted), 30,000 queued.
    let at_start = super::super::OlderConnection {
        cookie: release.cookie,
        tcp: tcp(70_001, 0),
        local: None,
        written: monitor_common::event::write_position(70_001, 30_000, tcp_state::ESTABLISHED, false),
    };
    assert_eq!(at_start.written, Some(100_001));
    // Released with nothing more acknowledged and 30,000 + 45,000 queued.
    release.flags = FLAG_TCP_COUNTERS;
    release.first_ns = 0;
    release.tcp = tcp(145_001, TCP_CONSUMED | monitor_common::event::TCP_WRITE_POSITION);
    let mut t = tracker();
    t.read_at_start([at_start]);
    let out = feed(&mut t, &[(EventKind::Release, release)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].event, out[0].payload.tx_bytes, out[0].payload.rx_bytes), (RecordKind::Close, 45_000, 0));
    // Without the position read at start, its sends are its calls' (none seen): bytes written
    // before the run may be in the kernel's, so none are taken from there.
    let mut t = tracker();
    t.read_at_start([(release.cookie, tcp(70_001, 0))]);
    assert!(feed(&mut t, &[(EventKind::Release, release)]).is_empty());
    // A FIN of ours in the position is left out by the kernel's arithmetic, not again here.
    use monitor_common::event::write_position;
    assert_eq!(write_position(100_002, 0, tcp_state::FIN_WAIT2, false), Some(100_001));
    assert_eq!(write_position(100_001, 1, tcp_state::FIN_WAIT1, false), Some(100_001));
    // Over: both FINs exchanged (ours acknowledged), or reset (what was queued was written all
    // the same, as the calls of a young socket count it).
    assert_eq!(write_position(100_002, 0, tcp_state::CLOSE, true), Some(100_001), "both FINs");
    assert_eq!(write_position(100_001, 9, tcp_state::CLOSE, false), Some(100_010), "reset with 9 B queued");
    assert_eq!(write_position(1, 9, tcp_state::SYN_RECV, false), None, "no stream yet");
    let mut fin = release;
    fin.tcp.old_state = tcp_state::FIN_WAIT2;
    let mut t = tracker();
    t.read_at_start([at_start]);
    assert_eq!(feed(&mut t, &[(EventKind::Release, fin)])[0].payload.tx_bytes, 45_000);
}
