//! The tracker's timers (update interval, TCP close grace) are 32-bit stamps in 64ths of a
//! second: they must hold over a monitor's years of running, across the stamps' wrap every 2.1
//! years, and over a host's suspend.

use super::*;

const DAY: u64 = 86_400 * SEC;
/// Where the stamps' units wrap.
const WRAP: u64 = (1 << 32) * (SEC / 64);

/// A connection idle for 400 days (past the 388 days a stamp measures) gets its update at the
/// first tick after it moves again, as on its first day: an unchanged flow's stamp is moved up at
/// each tick.
#[test]
fn a_connection_idle_for_over_a_year_gets_its_update_when_it_moves_again() {
    let mut t = tracker();
    let est = ev(EventKind::Established, 2 * SEC, ByteCounters::default());
    let up = ev(EventKind::Update, 3 * SEC, counters(1000, 100, 800, 50));
    feed(&mut t, &[(EventKind::Established, est), (EventKind::Update, up)]);
    let mut out = Vec::new();
    t.tick(13 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    out.clear();
    // Idle: a tick every hour for 400 days (the daemon ticks every second), nothing to say.
    let mut now = 13 * SEC;
    while now < 400 * DAY {
        now += 3600 * SEC;
        t.tick(now, &mut out);
    }
    assert!(out.is_empty(), "{out:#?}");
    let moved = ev(EventKind::Update, now + SEC, counters(5000, 100, 4800, 50));
    feed(&mut t, &[(EventKind::Update, moved)]);
    t.tick(now + 2 * SEC, &mut out);
    assert_eq!(out.len(), 1, "the update comes at once: {out:#?}");
    assert_eq!((out[0].event, out[0].delta_payload.tx_bytes), (RecordKind::Update, 4000));
}

/// A released connection waits its grace for `TCP_CLOSE` (less a 64th of a second at most: the
/// stamps' unit), also when the stamps wrap in between.
#[test]
fn a_released_connection_waits_its_grace_across_the_stamps_wrap() {
    for released_at in [WRAP - 60 * SEC, 3 * WRAP - 1_000_000, 40 * DAY + 7_000_001] {
        let mut t = tracker();
        let est = ev(EventKind::Established, released_at - 5 * SEC, ByteCounters::default());
        let rel = ev(EventKind::Release, released_at, counters(10, 10, 5, 5));
        assert!(feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel)]).is_empty());
        let mut out = Vec::new();
        t.tick(released_at + 119 * SEC, &mut out);
        assert!(out.iter().all(|r| r.event == RecordKind::Update), "within the grace: {out:#?}");
        out.clear();
        t.tick(released_at + 120 * SEC + SEC / 64, &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!((out[0].event, out[0].complete), (RecordKind::Close, false), "{released_at}");
    }
}

/// An update is due one interval after the previous record (less a 64th of a second at most: the
/// stamps' unit), across the stamps' wrap too.
#[test]
fn updates_come_one_interval_apart_across_the_stamps_wrap() {
    let start = WRAP - 4 * SEC + 7_000_000;
    let mut t = tracker();
    let mut est = ev(EventKind::Established, start, counters(10, 10, 5, 5));
    est.first_ns = start;
    feed(&mut t, &[(EventKind::Established, est)]);
    let mut out = Vec::new();
    t.tick(start + 10 * SEC - SEC / 64, &mut out);
    assert!(out.is_empty(), "a 64th early: {out:#?}");
    t.tick(start + 10 * SEC, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
}

/// A host suspended for 30 or 300 days (the event clock counts the suspend, the daemon's ticks
/// stop): at the first tick after it, open flows are due and released ones have waited their
/// grace.
#[test]
fn after_a_long_suspend_flows_are_due_and_released_ones_end() {
    for days in [30, 300] {
        let mut t = tracker();
        let est = ev(EventKind::Established, 2 * SEC, counters(10, 10, 5, 5));
        let mut other = ev(EventKind::Established, 2 * SEC, counters(10, 10, 5, 5));
        other.cookie = 8;
        let rel = ev(EventKind::Release, 3 * SEC, counters(20, 20, 5, 5));
        feed(&mut t, &[(EventKind::Established, est), (EventKind::Established, other), (EventKind::Release, rel)]);
        let mut out = Vec::new();
        t.tick(13 * SEC, &mut out);
        assert_eq!(out.len(), 2, "{out:#?}");
        out.clear();
        let woke = days * DAY;
        let moved = Event { cookie: 8, ..ev(EventKind::Update, woke, counters(500, 20, 400, 5)) };
        feed(&mut t, &[(EventKind::Update, moved)]);
        t.tick(woke + SEC, &mut out);
        out.sort_by_key(|r| r.cookie);
        let got: Vec<_> = out.iter().map(|r| (r.cookie, r.event, r.complete)).collect();
        assert_eq!(got, [(7, RecordKind::Close, false), (8, RecordKind::Update, true)], "{days} days: {out:#?}");
    }
}

/// Timers longer than a day (possible only through `TrackerConfig`, settings refuse them) are
/// taken as a day.
#[test]
fn timers_over_a_day_are_taken_as_a_day() {
    let config = TrackerConfig {
        update_interval: Duration::from_secs(30 * 86_400),
        tcp_close_grace: Duration::from_secs(30 * 86_400),
        ..config()
    };
    let mut t = Tracker::new(config, Clock::with_offset(0));
    assert_eq!(t.update_interval(), Duration::from_secs(crate::tracker::MAX_TIMER_SECS));
    let est = ev(EventKind::Established, 2 * SEC, counters(10, 10, 5, 5));
    let rel = ev(EventKind::Release, 3 * SEC, counters(20, 20, 5, 5));
    feed(&mut t, &[(EventKind::Established, est), (EventKind::Release, rel)]);
    let mut out = Vec::new();
    t.tick(3 * SEC + DAY - SEC, &mut out);
    assert_eq!(out.iter().map(|r| r.event).collect::<Vec<_>>(), [RecordKind::Update], "{out:#?}");
    out.clear();
    t.tick(3 * SEC + DAY, &mut out);
    assert_eq!(out.iter().map(|r| (r.event, r.complete)).collect::<Vec<_>>(), [(RecordKind::Close, false)]);
}
