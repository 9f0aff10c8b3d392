//! Which records are their socket's final one (`FlowRecord::final_of_socket`): the journal
//! leaves those out of the rollups' probe index, so a record marked final that another record
//! of its cookie followed would be counted as a second flow. Only a TCP socket the kernel has
//! both released and closed, and a connected UDP socket released, are gone for good.

use super::*;

/// Every record the events (and then a tick past the grace, and the shutdown) produce.
fn records(t: &mut Tracker, events: &[(EventKind, Event)]) -> Vec<FlowRecord> {
    let mut out = feed(t, events);
    t.tick(200 * SEC, &mut out);
    t.shutdown(201 * SEC, &mut out);
    out
}

/// The one record of an established TCP flow that `end` ends (with or without release events).
fn the_record(release_events: bool, end: (EventKind, Event)) -> FlowRecord {
    let mut t = tracker();
    t.config.release_events = release_events;
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let mut out = records(&mut t, &[(EventKind::Established, est), end]);
    assert_eq!(out.len(), 1, "{out:#?}");
    out.remove(0)
}

/// A TCP socket released whose `TCP_CLOSE` never came ends incomplete at the grace: the close may
/// still come (and would make a record of its own), so that record is not final.
#[test]
fn a_close_at_the_grace_is_not_final() {
    let r = the_record(true, (EventKind::Release, ev(EventKind::Release, 3 * SEC, counters(1000, 500, 900, 400))));
    assert_eq!((r.event, r.complete, r.final_of_socket), (RecordKind::Close, false, false));
}

/// Without release events the process may read a TCP socket long after its `TCP_CLOSE`: its
/// complete close record (after the grace) is not final.
#[test]
fn without_release_events_no_close_is_final() {
    let r = the_record(false, (EventKind::TcpClose, ev(EventKind::TcpClose, 3 * SEC, counters(1000, 500, 900, 400))));
    assert_eq!((r.event, r.complete, r.final_of_socket), (RecordKind::Close, true, false));
}

/// An open TCP socket's update and shutdown records and a TCP socket that never established are
/// not final; the released and closed TCP socket beside them and a released connected UDP socket
/// are, and a snapshot of the TCP socket read later adds no record.
#[test]
fn only_sockets_that_are_gone_have_a_final_record() {
    let mut t = tracker();
    let mut udp = ev(EventKind::Connect, 2 * SEC, counters(128, 128, 100, 100));
    udp.cookie = 8;
    udp.tuple.protocol = IPPROTO_UDP;
    let mut udp_release = udp;
    udp_release.ts_ns = 3 * SEC;
    let mut open = ev(EventKind::Established, 2 * SEC, counters(100, 100, 50, 50));
    open.cookie = 9;
    let mut attempt = ev(EventKind::Connect, 2 * SEC, counters(60, 0, 0, 0));
    attempt.cookie = 10;
    let mut attempt_release = attempt;
    attempt_release.ts_ns = 3 * SEC;
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let mut gone = ev(EventKind::TcpClose, 4 * SEC, counters(1100, 600, 900, 400));
    gone.flags = monitor_common::event::FLAG_RELEASED;
    let mut snapshot = ev(EventKind::Update, 5 * SEC, counters(1100, 600, 900, 400));
    snapshot.flags = monitor_common::event::FLAG_SNAPSHOT;
    let out = records(
        &mut t,
        &[
            (EventKind::Connect, udp),
            (EventKind::Release, udp_release),
            (EventKind::Established, open),
            (EventKind::Connect, attempt),
            (EventKind::Release, attempt_release),
            (EventKind::Established, est),
            (EventKind::TcpClose, gone),
            (EventKind::Update, snapshot),
        ],
    );
    let by_cookie = |c: u64| -> Vec<(RecordKind, bool)> {
        out.iter().filter(|r| r.cookie == c).map(|r| (r.event, r.final_of_socket)).collect()
    };
    assert_eq!(by_cookie(8), [(RecordKind::Close, true)], "connected UDP, released");
    assert_eq!(
        by_cookie(9),
        [(RecordKind::Update, false), (RecordKind::Shutdown, false)],
        "open: its update, then shutdown"
    );
    assert_eq!(by_cookie(10), [(RecordKind::Close, false)], "never established");
    assert_eq!(by_cookie(7), [(RecordKind::Close, true)], "released and closed; the late snapshot adds nothing");
}

/// A TCP socket older than the monitor (found on the packet path, no handshake seen, no
/// `TcpClose` coming) ends at its release. The packets of its close that follow bring an update
/// of the released socket: it must not start a second flow with the whole counters again.
#[test]
fn a_released_old_sockets_late_update_starts_no_second_flow() {
    let mut t = tracker();
    let found = ev(EventKind::Discovered, 2 * SEC, counters(100, 100, 0, 0));
    let mut release = ev(EventKind::Release, 3 * SEC, counters(5000, 3000, 4000, 2000));
    release.flags = monitor_common::event::FLAG_RELEASED;
    let mut late = ev(EventKind::Update, 4 * SEC, counters(5052, 3052, 4000, 2000));
    late.flags = monitor_common::event::FLAG_RELEASED;
    let out =
        records(&mut t, &[(EventKind::Discovered, found), (EventKind::Release, release), (EventKind::Update, late)]);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].event, out[0].payload.tx_bytes, out[0].payload.rx_bytes), (RecordKind::Close, 4000, 2000));
    // The same update without the flag (a socket not released) does start a flow.
    let mut t = tracker();
    let update = ev(EventKind::Update, 4 * SEC, counters(5052, 3052, 4000, 2000));
    let out = records(&mut t, &[(EventKind::Update, update)]);
    assert!(out.iter().any(|r| r.payload.tx_bytes == 4000), "{out:#?}");
}

/// The normal close of a socket the monitor saw established: released first, its state callback
/// on, the packets of its close (with the released flag) come before `TCP_CLOSE`. Their update
/// belongs to the open flow and is absorbed: one record with their wire bytes.
#[test]
fn a_released_sockets_update_before_its_close_is_part_of_its_flow() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, counters(120, 60, 0, 0));
    let mut fin = ev(EventKind::Update, 3 * SEC, counters(5052, 3052, 4000, 2000));
    fin.flags = monitor_common::event::FLAG_RELEASED;
    let mut close = ev(EventKind::TcpClose, 4 * SEC, counters(5104, 3104, 4000, 2000));
    close.flags = monitor_common::event::FLAG_RELEASED;
    let mut out = feed(&mut t, &[(EventKind::Established, est), (EventKind::Update, fin)]);
    t.tick(20 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!((out[0].event, out[0].wire.tx_bytes), (RecordKind::Update, 5052), "the update reached the flow");
    out.extend(records(&mut t, &[(EventKind::TcpClose, close)]));
    assert_eq!(out.len(), 2, "{out:#?}");
    assert_eq!((out[1].event, out[1].wire.tx_bytes, out[1].payload.tx_bytes), (RecordKind::Close, 5104, 4000));
}
