//! The weekly rollups give byte for byte the report the fine tables give: kept up by flushes
//! (records in any order, sockets spanning weeks, several records per socket) and backfilled
//! when a journal is opened with another time zone. The fixture's flows carry host names of
//! every source, database answers that agree and disagree, and kernel RTTs, so that the by-service,
//! host name, consensus and plausibility sections are compared too.

use std::path::Path;

use super::{DAY, NY, W, ny};
use crate::{
    enrich::{
        CountryAnswer, DbRef, Destination, Scope,
        consensus::{PRIMARY_LABEL, REGISTRY_LABEL, verdict},
    },
    journal::{
        JournalConfig, JournalReader, JournalWriter,
        tests::{
            fixtures::{self, Flow, Rng, at},
            run, tempdir,
        },
    },
    names::{Hostname, NameSource, Names},
    report::{
        Format, Period, Report, ReportQuery,
        build::build_from,
        source::{self, Plan, Source},
    },
    residency::DeviceLocation,
    tracker::record::{Direction, Protocol, RecordKind, Rtt},
};

const APPS: [&str; 3] = ["browser", "sync", "game"];
/// Cookie of a UDP server socket that lives through every week of the fixtures.
const SERVER_COOKIE: u64 = 1_000_000;

fn writer(dir: &Path, zone: &str) -> JournalWriter {
    let config = JournalConfig { path: dir.join("journal.db"), ..JournalConfig::default() };
    JournalWriter::open(&config, run(), &crate::zone::Zone::get(zone).expect("zone")).expect("open journal")
}

fn destination(i: u64) -> Destination {
    const COUNTRIES: [&str; 4] = ["US", "CN", "DE", "JP"];
    match i % 7 {
        5 => fixtures::scoped(Scope::Private),
        6 => fixtures::public(None, None, None),
        k => {
            let asn = 100 + (i % 5) as u32;
            let country = COUNTRIES[(k % 4) as usize];
            let mut d = fixtures::public(Some(country), Some(asn), Some(&format!("Org {asn}")));
            // The registry agrees, disagrees or has no answer; some destinations were looked up
            // in one database only (no verdict).
            let registry = match i % 4 {
                0 => Some(country),
                1 => Some("SG"),
                2 => None,
                _ => return d,
            };
            let db = |t: &str| DbRef { database_type: t.into(), build_epoch: 1_780_000_000 };
            d.answers = vec![
                CountryAnswer { label: PRIMARY_LABEL.into(), db: db("country ipvAll"), country: Some(country.into()) },
                CountryAnswer { label: REGISTRY_LABEL.into(), db: db("geo-whois"), country: registry.map(Into::into) },
            ]
            .into();
            d.consensus = verdict(&d.answers);
            d
        }
    }
}

/// Host names of endpoint `e` for socket `cookie`: several names per address (CDN), every source,
/// some unnamed.
fn names_of(e: u64, cookie: u64) -> Names {
    const SOURCES: [NameSource; 4] = [NameSource::Sni, NameSource::Dns, NameSource::QuicSni, NameSource::DnsHost];
    if e % 6 == 1 {
        return Names::default();
    }
    let host = format!("h{}.svc{}.example.com", cookie % 3, e % 4);
    Names {
        registrable_domain: crate::names::domain::registrable(&host),
        hostname: Hostname::parse(&host).ok(),
        source: SOURCES[(cookie % 4) as usize],
        ..Names::default()
    }
}

/// Writes `sockets` flows with 1-4 records each, spread over `[from, from + days)`, flushed at
/// random points; a tenth of the sockets get a late record written after later ones.
fn write_traffic(w: &mut JournalWriter, rng: &mut Rng, cookie_base: u64, sockets: u64, from: i64, days: i64) {
    let mut late = Vec::new();
    for i in 0..sockets {
        // Cookies out of order (the kernel hands them out in per-CPU batches).
        let cookie = cookie_base + i * 7919 % sockets;
        let app = fixtures::app(APPS[rng.below(3) as usize]);
        let t0 = from + rng.below((days * DAY) as u64) as i64;
        // Endpoints 30-39 first appear in 2026-W47: new destinations against W46.
        let e = if t0 < W { rng.below(30) } else { rng.below(40) };
        let remote =
            if e % 4 == 0 { format!("[2001:db8::{e:x}]:443") } else { format!("198.51.100.{e}:{}", 400 + e % 3) };
        let mut t = t0;
        let mut flow = Flow::new(cookie, &remote, at(t));
        if e % 9 == 0 {
            flow.direction = Direction::Inbound;
            flow.remote.set_port(30_000 + rng.below(1000) as u16);
        }
        let dest = destination(e);
        let names = names_of(e, cookie);
        let records = 1 + rng.below(4);
        for n in 0..records {
            // Up to two days between records: some sockets span a week boundary.
            t += rng.below(2 * DAY as u64) as i64;
            let kind = if n + 1 == records { RecordKind::Close } else { RecordKind::Update };
            let mut record = flow.record(kind, at(t), rng.below(100_000), rng.below(1_000_000));
            if e % 5 == 0 {
                record.protocol = Protocol::Udp;
            } else if e % 3 != 0 {
                let min_us = 100 + rng.below(300_000) as u32;
                record.rtt = Some(Rtt { min_us, smoothed_us: min_us + 500 });
            }
            if rng.below(10) == 0 {
                late.push((record, app.clone(), dest.clone(), names.clone()));
            } else {
                w.append_named(&record, &app, Some(&dest), &names);
            }
        }
        if rng.below(8) == 0 {
            // A long-lived unconnected UDP server socket: one cookie, a flow per peer.
            let peer = format!("198.51.100.{}:{}", rng.below(6), 40_000 + rng.below(3));
            let mut flow = Flow::new(SERVER_COOKIE, &peer, at(t));
            flow.direction = Direction::Inbound;
            let mut record = flow.record(RecordKind::Close, at(t), rng.below(500), rng.below(500));
            record.protocol = Protocol::Udp;
            w.append(&record, &fixtures::app("dns"), Some(&destination(3)));
        }
        if rng.below(50) == 0 {
            w.flush().expect("flush");
        }
    }
    w.flush().expect("flush");
    for (record, app, dest, names) in &late {
        w.append_named(record, app, Some(dest), names);
    }
    w.flush().expect("flush late records");
}

/// The journal's figure check finds every sum equal to its rows, having compared `weeks` weeks
/// or more.
fn figures_agree(dir: &Path, weeks: u64) {
    let v = crate::journal::verify_chain(&dir.join("journal.db")).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert!(v.figures.days >= 14 && v.figures.weeks >= weeks, "{:?}", v.figures);
}

fn render(r: &Report) -> String {
    let mut out = Vec::new();
    r.render(Format::Json, &mut out).expect("render");
    String::from_utf8(out).expect("utf-8")
}

/// Builds `week` (New York) for `app` from the rollups and from the fine tables, checks they
/// are identical, and returns which rollups were used.
fn same_report(reader: &JournalReader, week: &str, app: Option<&str>) -> Plan {
    let mut q = ReportQuery::new(Period::iso_week(week, &ny()).expect("week"));
    q.app = app.map(str::to_string);
    q.generated_at = Some(at(W));
    q.device = Some(DeviceLocation::Country("US".into()));
    let previous = q.period.previous().expect("previous");
    let purged = reader.connections_purged_before().expect("purge horizon");
    let plan = source::plan(reader, &q.period, &previous, purged, Source::Auto).expect("plan");
    let auto = render(&build_from(reader, &q, Source::Auto).expect("from rollups"));
    let fine = render(&build_from(reader, &q, Source::Fine).expect("from fine tables"));
    assert_eq!(auto, fine, "{week} app {app:?}: the rollups must give the fine tables' report");
    plan
}

/// A range on `week`'s bounds (New York) reads the rollups too, gives the fine tables' report,
/// and the week's figures (only the period's label differs).
fn same_range_report(reader: &JournalReader, week: &str) {
    let w = Period::iso_week(week, &ny()).expect("week");
    let mut q = ReportQuery::new(Period::range(w.since, w.until, &ny()).expect("range"));
    q.generated_at = Some(at(W));
    q.device = Some(DeviceLocation::Country("US".into()));
    let previous = q.period.previous().expect("previous");
    let plan = source::plan(reader, &q.period, &previous, None, Source::Auto).expect("plan");
    let range = build_from(reader, &q, Source::Auto).expect("from rollups");
    assert_eq!(render(&range), render(&build_from(reader, &q, Source::Fine).expect("fine")), "{week} as a range");
    if !previous.is_iso_week().expect("previous") {
        // After a week of 169 hours the range of equal length before is no week: fine tables.
        assert_eq!(plan, Plan { residency: false, endpoints: false, names: false }, "{week} as a range");
        return;
    }
    assert_eq!(plan, Plan { residency: true, endpoints: true, names: true }, "{week} as a range");
    q.period = w;
    let week_report = Report::build(reader, &q).expect("week");
    let apps = |r: &Report| {
        let mut v = serde_json::to_value(&r.apps).expect("json");
        for a in v.as_array_mut().expect("apps") {
            a["new_destinations"]["compared_with"] = serde_json::Value::Null;
        }
        v
    };
    assert!(!range.apps.is_empty());
    assert_eq!(apps(&range), apps(&week_report), "{week}: the range has the week's figures");
}

#[test]
fn rollups_kept_by_flushes_give_the_fine_tables_report() {
    let dir = tempdir();
    let mut w = writer(dir.path(), NY);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    write_traffic(&mut w, &mut rng, 1, 3000, W - 14 * DAY, 28);
    // An endpoint first met in 2026-W50 (the latest week), then a late record of it in W49:
    // the W50 row stops being new.
    let us = fixtures::public(Some("US"), Some(7018), Some("AT&T"));
    for (cookie, t) in [(90_001, W + 22 * DAY), (90_002, W + 15 * DAY)] {
        let mut flow = Flow::new(cookie, "203.0.113.99:443", at(t));
        w.append(&flow.record(RecordKind::Close, at(t), 10, 20), &fixtures::app("sync"), Some(&us));
        w.flush().expect("flush");
    }
    drop(w);
    figures_agree(dir.path(), 6);
    let reader = JournalReader::open(&dir.path().join("journal.db")).expect("reader");
    let both = Plan { residency: true, endpoints: true, names: true };
    for week in ["2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49", "2026-W50"] {
        for app in [None, Some("browser"), Some("sync"), Some("dns")] {
            assert_eq!(same_report(&reader, week, app), both, "{week}: a new journal's rollups cover every week");
        }
        same_range_report(&reader, week);
    }
    // 2026-W44 lasts 169 hours in New York: the range on W45's bounds is compared with a
    // range that starts an hour into W44, which the rollups cannot answer.
    let w45 = Period::iso_week("2026-W45", &ny()).expect("week");
    assert!(
        !Period::range(w45.since, w45.until, &ny())
            .and_then(|r| r.previous())
            .expect("previous")
            .is_iso_week()
            .expect("week")
    );
    // The fixture has what the comparison needs to mean something.
    let mut q = ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"));
    q.top_endpoints = 100;
    let r = Report::build(&reader, &q).expect("build");
    assert_eq!(r.apps.len(), 4);
    let (dns, others): (Vec<_>, Vec<_>) = r.apps.iter().partition(|a| a.app == "dns");
    assert!(others.iter().all(|a| a.endpoints_total > 20 && a.top_endpoints.iter().any(|e| e.flows > 1)));
    // The server socket's peers: one endpoint per address (inbound), one socket each.
    assert_eq!(dns[0].endpoints_total, 6);
    assert!(dns[0].top_endpoints.iter().all(|e| e.flows == 1 && e.port.is_none()));
    assert!(r.apps.iter().any(|a| a.top_endpoints.iter().any(|e| e.port.is_none())), "inbound endpoints");
    assert!(r.apps.iter().any(|a| a.new_destinations.endpoints > 0), "new endpoints against W46");
    // ... and the names and truth sections have something to compare.
    let json = render(&r);
    for needle in ["\"quic_sni\"", "\"dns_host\"", "svc1.example.com"] {
        assert!(json.contains(needle), "{needle} in the W47 report");
    }
    assert!(r.apps.iter().any(|a| a.top_endpoints.iter().any(|e| e.hostnames.len() > 1)), "several names per address");
    let mut q = ReportQuery::new(Period::iso_week("2026-W47", &ny()).expect("week"));
    q.device = Some(DeviceLocation::Country("US".into()));
    let r = Report::build(&reader, &q).expect("build");
    assert!(r.apps.iter().any(|a| a.consensus.as_ref().is_some_and(|c| c.disagree_bytes > 0)), "disagreements");
    assert!(
        r.apps.iter().any(|a| a.plausibility.as_ref().is_some_and(|p| p.implausible_bytes > 0)),
        "implausible destinations"
    );
    let w50 =
        Report::build(&reader, &ReportQuery::new(Period::iso_week("2026-W50", &ny()).expect("week"))).expect("build");
    assert_eq!((w50.apps.len(), w50.apps[0].new_destinations.endpoints), (1, 0), "seen in W49 already");
}

#[test]
fn rollups_rebuilt_for_another_time_zone_give_the_fine_tables_report() {
    let dir = tempdir();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    // Written with UTC rollups (as a journal migrated from schema 1 has none at all).
    let mut w = writer(dir.path(), "UTC");
    write_traffic(&mut w, &mut rng, 1, 2000, W - 14 * DAY, 17);
    drop(w);
    // Reopened for New York: backfilled for the week of the latest data and the one before.
    let mut w = writer(dir.path(), NY);
    let reader = JournalReader::open(&dir.path().join("journal.db")).expect("reader");
    let state = reader.rollup_state().expect("state").expect("rollups built");
    assert_eq!(state.time_zone, NY);
    let both = Plan { residency: true, endpoints: true, names: true };
    let none = Plan { residency: false, endpoints: false, names: false };
    let mut used = Vec::new();
    for week in ["2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49"] {
        let previous = Period::iso_week(week, &ny()).and_then(|p| p.previous()).expect("previous week");
        let expected = if state.covers(previous.since) { both } else { none };
        assert_eq!(same_report(&reader, week, None), expected, "{week}");
        same_report(&reader, week, Some("sync"));
        used.push(expected == both);
    }
    // The week of the latest data (W48) has its previous week covered too, as have later weeks.
    assert_eq!(used, [false, false, false, true, true]);
    // Flushes after the rebuild keep the covered weeks exact, also for sockets whose earlier
    // records were written before the rebuild (looked up in the table).
    write_traffic(&mut w, &mut rng, 10_000, 1000, W + 7 * DAY, 14);
    drop(w);
    // Rebuilt rollups and those kept since agree with their rows (weeks before the rebuild's
    // coverage are not compared).
    figures_agree(dir.path(), 3);
    let mut from_rollups = 0;
    for week in ["2026-W45", "2026-W46", "2026-W47", "2026-W48", "2026-W49", "2026-W50", "2026-W51"] {
        for app in [None, Some("browser"), Some("dns")] {
            from_rollups += usize::from(same_report(&reader, week, app) == both);
        }
    }
    assert!(from_rollups >= 6, "weeks after the rebuild are read from the rollups ({from_rollups})");
}

/// One unconnected socket with three peers (two ports at one address) in one country, the first
/// peer with two records: "by service" counts three flows, one per peer as the app's flows do,
/// from the records and from the rollups alike, and the figure check finds them equal. It counted
/// the socket once (an adversarial pass: by-service flows 1 where the app had 3).
#[test]
fn the_peers_of_a_socket_are_flows_of_their_service() {
    let dir = tempdir();
    let mut w = writer(dir.path(), NY);
    let us = fixtures::public(Some("US"), Some(7018), Some("AT&T"));
    let t = W + DAY;
    for (i, peer) in ["203.0.113.1:443", "203.0.113.2:443", "203.0.113.2:444"].into_iter().enumerate() {
        let t = t + i64::try_from(i).expect("small");
        let mut flow = Flow::new(77, peer, at(t));
        flow.direction = Direction::Unconnected;
        let kinds: &[RecordKind] = if i == 0 { &[RecordKind::Update, RecordKind::Close] } else { &[RecordKind::Close] };
        for (n, kind) in kinds.iter().enumerate() {
            let mut record = flow.record(*kind, at(t + i64::try_from(n).expect("small")), 100, 200);
            record.protocol = Protocol::Udp;
            w.append(&record, &fixtures::app("quic"), Some(&us));
            w.flush().expect("flush");
        }
    }
    drop(w);
    let v = crate::journal::verify_chain(&dir.path().join("journal.db")).expect("verify");
    assert!(v.problems.is_empty() && v.figures.weeks >= 1, "{:?} {:?}", v.problems, v.figures);
    let reader = JournalReader::open(&dir.path().join("journal.db")).expect("reader");
    let week = Period::iso_week("2026-W47", &ny()).expect("week");
    let range = crate::journal::TimeRange { since: week.since, until: week.until };
    let fine = reader.services(range, None, None).expect("services from the records");
    let rolled = reader.services_week(week.since, None).expect("services from the rollup");
    assert_eq!(fine.iter().map(|s| s.flows).collect::<Vec<_>>(), [3], "{fine:#?}");
    assert_eq!(rolled.iter().map(|s| s.flows).collect::<Vec<_>>(), [3], "{rolled:#?}");
    drop(reader);

    // A journal of schema 17 counted the socket once: its writer's next open, migrating it,
    // rebuilds the rollups, and the check finds them equal to the records again.
    let path = dir.path().join("journal.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute("UPDATE service_week SET flows = 1", []).expect("the old count");
    conn.pragma_update(None, "user_version", crate::journal::SCHEMA_VERSION - 1).expect("version");
    drop(conn);
    // Not migrated yet (read-only media, before the daemon's restart): its `service_week` is not
    // compared, and reports read services from the records.
    let v = crate::journal::verify_chain(&path).expect("verify");
    assert!(v.problems.is_empty(), "an old journal is not tampered with: {:?}", v.problems);
    let reader = JournalReader::open(&path).expect("reader");
    let plan = source::plan(&reader, &week, &week.previous().expect("previous"), None, Source::Auto).expect("plan");
    assert!(plan.endpoints && !plan.names, "services come from the records of a journal before schema 18");
    drop(reader);
    drop(writer(dir.path(), NY));
    let v = crate::journal::verify_chain(&path).expect("verify");
    assert!(v.problems.is_empty(), "rebuilt at the migration: {:?}", v.problems);
    let rolled = JournalReader::open(&path).expect("reader").services_week(week.since, None).expect("rollup");
    assert_eq!(rolled.iter().map(|s| s.flows).collect::<Vec<_>>(), [3], "{rolled:#?}");
}
