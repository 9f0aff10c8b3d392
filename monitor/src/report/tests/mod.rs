//! Report tests: a journal with known records over two weeks, exact figures.

mod export;
mod figures;
mod golden;
mod hostile;
mod join;
mod restarts;
mod rollup;
mod session;
mod truth;
mod unaligned;
mod unknown;

use std::path::{Path, PathBuf};

use crate::{
    enrich::{Destination, Scope},
    journal::{
        JournalWriter,
        tests::{
            fixtures::{self, Flow, at},
            writer_in,
        },
    },
    stats::Stats,
    tracker::record::RecordKind::{Close, Update},
};

/// Monday 2026-11-16 00:00 in America/New_York (05:00 UTC): start of 2026-W47 there.
pub(super) const W: i64 = 1_794_805_200;
pub(super) const DAY: i64 = 86_400;
pub(super) const NY: &str = "America/New_York";

/// [`NY`], looked up.
pub(super) fn ny() -> crate::zone::Zone {
    crate::zone::Zone::get(NY).expect("zone")
}

/// One flow of one record: `(tx, rx)` payload bytes at Unix second `t`.
fn close(
    w: &mut JournalWriter,
    app: &str,
    cookie: u64,
    remote: &str,
    t: i64,
    (tx, rx): (u64, u64),
    dest: &Destination,
) {
    let mut f = Flow::new(cookie, remote, at(t));
    w.append(&f.record(Close, at(t), tx, rx), &fixtures::app(app), Some(dest));
}

/// Writes the two-week fixture journal and returns its path.
///
/// 2026-W47 (New York): `browser` sends 41,000,000 / receives 2,000,000 to 203.0.113.10 (US,
/// AS396986), 2,000,000 / 500,000 to CN (AS4134), 100,000 up to a public address without country
/// or ASN, 50,000 / 50,000 to a private address, 333 up to JP in the week's last minute; `sync`
/// 5,000 / 6,000 to DE (AS3320). 2026-W46: `browser` 10,000 / 10,000 to the same US endpoint and
/// 777 up to DE one second before W47 starts. After W47: 999 up to JP (excluded).
pub(super) fn fixture_journal(dir: &Path) -> PathBuf {
    let mut w = writer_in(dir);
    let us = fixtures::public(Some("US"), Some(396_986), Some("ByteDance Inc."));
    let cn = fixtures::public(Some("CN"), Some(4134), Some("Chinanet"));
    let de = fixtures::public(Some("DE"), Some(3320), Some("Deutsche Telekom AG"));
    let jp = fixtures::public(Some("JP"), Some(2497), Some("Internet Initiative Japan Inc."));
    let unknown = fixtures::public(None, None, None);
    let private = fixtures::scoped(Scope::Private);

    // Previous week.
    close(&mut w, "browser", 5, "203.0.113.10:443", W - 3 * DAY, (10_000, 10_000), &us);
    close(&mut w, "browser", 6, "198.51.100.99:443", W - 1, (777, 0), &de);
    // This week.
    let browser = fixtures::app("browser");
    let mut f1 = Flow::new(1, "203.0.113.10:443", at(W + 3600));
    w.append(&f1.record(Update, at(W + 3600), 40_000_000, 2_000_000), &browser, Some(&us));
    w.append(&f1.record(Close, at(W + 3660), 1_000_000, 0), &browser, Some(&us));
    close(&mut w, "browser", 2, "198.51.100.20:443", W + 7200, (2_000_000, 500_000), &cn);
    close(&mut w, "browser", 3, "192.0.2.77:443", W + 7300, (100_000, 0), &unknown);
    close(&mut w, "browser", 4, "192.168.1.10:8080", W + 7400, (50_000, 50_000), &private);
    close(&mut w, "browser", 7, "192.0.2.200:443", W + 7 * DAY - 30, (333, 0), &jp);
    close(&mut w, "sync", 9, "198.51.100.7:443", W + DAY, (5000, 6000), &de);
    // Next week.
    close(&mut w, "browser", 8, "192.0.2.200:443", W + 7 * DAY + 10, (999, 0), &jp);

    let snap = |submitted: u64, lost: u64, unattributed: u64| {
        let mut s = Stats::default();
        s.kernel.events_submitted = submitted;
        s.kernel.events_lost = lost;
        s.kernel.unattributed_bytes = unattributed;
        s
    };
    w.record_stats(at(W - DAY), &snap(500, 1, 10));
    w.record_stats(at(W + 100), &snap(2500, 5, 1010));
    // 7 datagrams of unconnected sockets whose peer could not be read (in no flow record).
    let mut last = snap(3500, 5, 4010);
    last.kernel.peer_parse_failures = 7;
    w.record_stats(at(W + 200), &last);
    w.flush().expect("flush fixture");
    w.path().to_path_buf()
}

/// The share kinds' names in JSON reports and the CSV `kind` column, each parsing back.
#[test]
fn share_kind_names_are_the_ones_in_use() {
    use crate::report::ShareKind;
    crate::variant::assert_names(&[
        (ShareKind::Country, "country"),
        (ShareKind::Asn, "asn"),
        (ShareKind::Unknown, "unknown"),
        (ShareKind::Scope, "scope"),
    ]);
}
