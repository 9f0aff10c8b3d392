//! Cost of large flushes and of checking the result (ignored: a measurement, not a check). Run
//! in release: `cargo test --release -p monitor --lib flush_of_100k_records -- --ignored --nocapture`.

use std::time::Instant;

use jiff::Timestamp;

use super::{
    fixtures::{self, Flow, at},
    tempdir, writer_in,
};
use crate::tracker::record::RecordKind::Close;

/// Monday 2026-11-09T00:00:00Z: start of 2026-W46, the week of `bench_report`.
const WEEK_START: i64 = 1_794_182_400;
const APPS: u64 = 50;
const DESTINATIONS: u64 = 20_000;
const BATCH: u64 = 100_000;
const BATCHES: u64 = 10;
const COUNTRIES: [&str; 6] = ["US", "DE", "NL", "IE", "GB", "FR"];

#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn flush_of_100k_records() {
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let apps: Vec<_> = (0..APPS).map(|i| fixtures::app(&format!("app{i:02}"))).collect();
    let dests: Vec<_> = (0..DESTINATIONS)
        .map(|d| {
            let asn = 64_000 + u32::try_from(d % 500).expect("small");
            fixtures::public(Some(COUNTRIES[usize::try_from(d % 6).expect("small")]), Some(asn), Some("Org"))
        })
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    // Records spread like `bench_report generate --records 10000000` (one per ~60 ms).
    let step_ms = 7 * 86_400 * 1000 / 10_000_000;
    let mut times = Vec::new();
    for batch in 0..BATCHES {
        for i in batch * BATCH..(batch + 1) * BATCH {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let app = &apps[usize::try_from(state % APPS).expect("small")];
            let d = (state >> 8) % DESTINATIONS;
            let ip = std::net::Ipv4Addr::from(0x0b00_0000u32 + u32::try_from(d).expect("small") * 4099);
            let t = at(WEEK_START) + jiff::SignedDuration::from_millis(i64::try_from(i * step_ms).expect("small"));
            let mut flow = Flow::new(i, &format!("{ip}:443"), t);
            let record = flow.record(Close, t, 200 + (state >> 20) % 50_000, 500 + (state >> 36) % 500_000);
            w.append(&record, app, Some(&dests[usize::try_from(d).expect("small")]));
        }
        let started = Instant::now();
        w.flush().expect("flush");
        let took = started.elapsed();
        eprintln!("flush {batch}: {BATCH} records in {took:?}");
        times.push(took);
    }
    times.sort();
    eprintln!("median flush of {BATCH} records: {:?}", times[times.len() / 2]);
    // `journal verify` of the result: the chain and the sums checked against the records.
    let started = Instant::now();
    let v = crate::journal::verify_chain(w.path()).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    eprintln!(
        "journal verify of {} records: {:?} ({} days and {} weeks of sums compared)",
        BATCH * BATCHES,
        started.elapsed(),
        v.figures.days,
        v.figures.weeks
    );
}

/// Records shaped like `cargo xtask bench`'s churn: one close record per socket (cookies rising),
/// a handful of endpoints, two apps, flushed in the sink's early-flush batches ([`crate::journal::FLUSH_RECORDS`]).
#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn churn_records_per_record_cost() {
    churn_cost("churn-shaped", |i, t| tcp_flow(1_000_000 + i, i, t));
}

/// As [`churn_records_per_record_cost`], with the sockets closing out of cookie order as in the
/// real churn (each pair's second socket, the server's, before the first).
#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn churn_records_out_of_order_per_record_cost() {
    churn_cost("churn-shaped, out of cookie order", |i, t| tcp_flow(1_000_000 + (i ^ 1), i, t));
}

/// Records shaped like the UDP churn: per exchange, one client socket (a fresh cookie, closing
/// after one record) and one peer of the server's unconnected socket (one cookie for all, a new
/// peer port per exchange).
#[test]
#[ignore = "measurement: run by hand in release with --nocapture"]
fn udp_churn_records_per_record_cost() {
    const SERVER: u64 = 999_999;
    churn_cost("UDP-churn-shaped", |i, t| {
        let exchange = i / 2;
        if i % 2 == 0 {
            Flow::new(1_000_000 + exchange, "10.200.0.2:5000", t)
        } else {
            Flow::new(SERVER, &format!("10.200.0.1:{}", 10_000 + exchange % 50_000), t)
        }
    });
}

/// The TCP churn's flow `i` of socket `cookie`: a handful of server ports.
fn tcp_flow(cookie: u64, i: u64, t: Timestamp) -> Flow {
    Flow::new(cookie, &format!("10.200.0.2:{}", 5000 + i % 4), t)
}

/// Appends one close record per flow `flow_of(i, t)` (two apps in turn, every 30 µs), flushed in
/// the sink's early-flush batches ([`crate::journal::FLUSH_RECORDS`]), and prints the cost per record.
fn churn_cost(label: &str, flow_of: impl Fn(u64, Timestamp) -> Flow) {
    const RECORDS: u64 = 200_000;
    const FLUSH: u64 = crate::journal::FLUSH_RECORDS as u64;
    let dir = tempdir();
    let mut w = writer_in(dir.path());
    let apps = [fixtures::app("bench-load"), fixtures::app("bench-server")];
    let dest = fixtures::scoped(crate::enrich::Scope::Private);
    let t0 = Timestamp::now();
    let started = Instant::now();
    let mut in_flush = std::time::Duration::ZERO;
    for i in 0..RECORDS {
        let t = t0 + jiff::SignedDuration::from_micros(i64::try_from(i * 30).expect("small"));
        let record = flow_of(i, t).record(Close, t, 1024, 1024);
        w.append(&record, &apps[usize::try_from(i % 2).expect("small")], Some(&dest));
        if (i + 1) % FLUSH == 0 {
            let f = Instant::now();
            w.flush().expect("flush");
            in_flush += f.elapsed();
        }
    }
    w.flush().expect("flush");
    let total = started.elapsed();
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e6 / RECORDS as f64;
    eprintln!("{label}: {:.2} µs per record in total, {:.2} µs in flush", per(total), per(in_flush));
}
