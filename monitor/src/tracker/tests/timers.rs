//! The tracker's timers (update interval, TCP close grace) are 32-bit millisecond stamps: they
//! must hold over a monitor's months of running, across the stamps' wrap every 49.7 days.

use super::*;

const DAY: u64 = 86_400 * SEC;
/// Where the stamps' milliseconds wrap.
const WRAP: u64 = (1 << 32) * 1_000_000;

/// A connection idle for 30 days (past the 24.8 days a stamp measures) gets its update at the
/// first tick after it moves again, as on its first day: an unchanged flow's stamp is moved up at
/// each tick.
#[test]
fn a_connection_idle_for_a_month_gets_its_update_when_it_moves_again() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let up = ev(EventKind::Update, 3 * SEC, counters(1000, 100, 800, 50));
    feed(&mut t, &[(EventKind::Established, est), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(13 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    out.clear();
    // Idle: a tick every minute for 30 days (the daemon ticks every second), nothing to say.
    let mut now = 13 * SEC;
    while now < 30 * DAY {
        now += 60 * SEC;
        t.tick(now, &mut out);
    }
    assert!(out.is_empty(), "{out:#?}");
    let moved = ev(EventKind::Update, now + SEC, counters(5000, 100, 4800, 50));
    feed(&mut t, &[(EventKind::Update, moved)]);
    t.tick(now + 2 * SEC, &mut out);
    assert_eq!(out.len(), 1, "the update comes at once: {out:#?}");
    assert_eq!((out[0].event, out[0].delta_payload.tx_bytes), (RecordKind::Update, 4000));
}

/// A released connection waits exactly its grace for `TCP_CLOSE`, also when the stamps wrap
/// in between.
#[test]
fn a_released_connection_waits_its_grace_across_the_stamps_wrap() {
    for released_at in [WRAP - 60 * SEC, 3 * WRAP - 1_000_000, 40 * DAY] {
        let mut t = tracker();
        let est = ev(EventKind::Established, released_at - 5 * SEC, ByteCounters::default());
        let rel = ev(EventKind::Release, released_at, counters(10, 10, 5, 5));
        assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel)]).is_empty());
        let mut out = Vec::new();
        t.tick(released_at + 119 * SEC, &mut out);
        assert!(out.iter().all(|r| r.event == RecordKind::Update), "within the grace: {out:#?}");
        out.clear();
        t.tick(released_at + 120 * SEC, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!((out[0].event, out[0].complete), (RecordKind::Close, false), "{released_at}");
    }
}

/// An update is due one interval after the previous record, to the millisecond, across the
/// wrap too.
#[test]
fn updates_come_one_interval_apart_across_the_stamps_wrap() {
    let start = WRAP - 4 * SEC;
    let mut t = tracker();
    let mut est = ev(EventKind::Established, start, counters(10, 10, 5, 5));
    est.first_ns = start;
    feed(&mut t, &[(EventKind::Established, est)]);
    let mut out = Vec::new();
    t.tick(start + 10 * SEC - 1_000_000, &mut out);
    assert!(out.is_empty(), "a millisecond early: {out:#?}");
    t.tick(start + 10 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
}
