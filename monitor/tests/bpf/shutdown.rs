//! Shutdown under load: the journal is behind the traffic when SIGINT arrives; the daemon exits
//! within its documented limit (`daemon::SHUTDOWN_DRAIN`) and says what it left.

use std::{
    thread,
    time::{Duration, Instant},
};

use monitor::{daemon::SHUTDOWN_DRAIN, tracker::record::RecordKind};

use crate::{
    daemon::Monitor,
    env::{Pair, Place, TestCgroup, spawn},
};

/// What `Monitor::stop` waits before it sends the signal.
const STOP_PAUSE: Duration = Duration::from_millis(300);
/// Exit time allowed beyond the limit: final statistics, last flush, detaching.
const SLACK: Duration = Duration::from_secs(2);

pub fn bounded_under_load() {
    let pair = Pair::private();
    let cg = TestCgroup::new();
    let mon = Monitor::start(&cg.path, "");
    let server = format!("{}:5311", pair.b_v4[0]);
    // Server in `b`, two client processes in `a`, all in the watched cgroup: both ends of every
    // connection are recorded, so each connection is two records.
    let place_a = Place { netns: Some(&pair.a), cgroup: Some(&cg), uid: None };
    let place_b = Place { netns: Some(&pair.b), cgroup: Some(&cg), uid: None };
    // One idle connection stays open throughout: it must still be reported at exit.
    let hold = format!("{}:5312", pair.b_v4[0]);
    let mut hold_srv = spawn("tcp-hold-server", &[hold.clone(), "100".into(), "200".into()], place_b);
    hold_srv.line();
    let mut hold_cli = spawn("tcp-hold-client", &[hold, "100".into(), "200".into()], place_a);
    let held = hold_cli.line();
    hold_srv.line();
    let secs = "18".to_owned();
    let mut churners = vec![spawn("tcp-churn", &[server.clone(), "-".into(), secs.clone()], place_b)];
    churners[0].line();
    for _ in 0..2 {
        churners.push(spawn("tcp-churn", &["-".into(), server.clone(), secs.clone()], place_a));
    }
    // Long enough for the journal to fall behind by more than the limit (debug build: ~10,000
    // records/s written, the churn makes more).
    thread::sleep(Duration::from_secs(12));
    // The daemon is gone once `stop` (polling every 20 ms) has reaped it.
    let pid = mon.pid();
    let gone = thread::spawn(move || {
        while nix::sys::signal::kill(pid, None).is_ok() {
            thread::sleep(Duration::from_millis(10));
        }
        Instant::now()
    });
    let signalled = Instant::now() + STOP_PAUSE;
    let out = mon.stop();
    let took = gone.join().unwrap().saturating_duration_since(signalled);
    hold_cli.send("exit");
    hold_srv.send("exit");
    hold_cli.finish();
    hold_srv.finish();
    let made: u64 = churners.into_iter().map(|c| c.finish().last().unwrap()["connections"].as_u64().unwrap()).sum();
    let left = out.log.lines().filter(|l| l.contains("shutdown:")).collect::<Vec<_>>();
    eprintln!("    {made} connections made, exit {took:?} after SIGINT; {left:?}");
    assert!(took <= SHUTDOWN_DRAIN + SLACK, "exit took {took:?}, limit {SHUTDOWN_DRAIN:?} + {SLACK:?}");
    assert!(out.stats["last"].as_bool().unwrap(), "final statistics: {}", out.stats);
    // The load outran the journal (else this test shows nothing): what was left is counted.
    let dropped: u64 =
        left.iter().filter_map(|l| l.split("shutdown: ").nth(1)?.split(' ').next()?.parse::<u64>().ok()).sum();
    assert!(dropped > 0, "the journal kept up with the load; nothing was left to count:\n{}", out.log);
    let local = held["local"].as_str().unwrap();
    assert!(
        out.records.iter().any(|r| r.event == RecordKind::Shutdown && r.local.is_some_and(|l| l.to_string() == local)),
        "the open connection from {local} is reported as `shutdown` despite the limit"
    );
}
