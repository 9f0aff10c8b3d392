//! Plug-in of `cargo xtask bench` (xtask/src/bench/plugin.rs): the weekly report over a large
//! synthetic journal. The harness builds it with
//! `cargo build -p monitor --example bench_report`.
//!
//! - `bench_report generate --journal DIR --records N --days 7`: writes `DIR/journal.db` through
//!   the daemon's own writer: N `close` records spread evenly over ISO week 2026-W46 (UTC), from
//!   50 apps to 20,000 public destinations (30 countries, 500 ASNs), which also fills the week's
//!   residency rows (one per interval × app × destination with traffic) and rollups. Flows carry
//!   what the names and residency-truth sections read: 90 % a host name (500 names, by SNI or
//!   DNS), two country answers per destination (the registry disagrees on 5 %), and a kernel RTT
//!   on TCP flows.
//! - `bench_report weekly --journal DIR`: builds the report of that week and prints it as JSON
//!   (the harness times this process and takes its peak memory).

use std::{
    io::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use jiff::SignedDuration;
use monitor::{
    enrich::{CountryAnswer, DbRef, Destination, Scope, consensus},
    identity::{App, AppSource},
    journal::{JournalConfig, JournalReader, JournalWriter, RunInfo},
    names::{Hostname, NameSource, Names},
    report::{Format, Period, Report, ReportQuery},
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Rtt, Wire},
    },
};

const WEEK: &str = "2026-W46";
const APPS: u64 = 50;
const DESTINATIONS: u64 = 20_000;
const COUNTRIES: [&str; 30] = [
    "US", "DE", "NL", "IE", "GB", "FR", "SG", "JP", "CN", "IN", "BR", "CA", "AU", "SE", "FI", "CH", "KR", "HK", "TW",
    "RU", "PL", "IT", "ES", "BE", "AT", "NO", "DK", "ZA", "MX", "AE",
];

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let dir = PathBuf::from(arg("--journal").context("--journal DIR")?);
    let path = dir.join("journal.db");
    match args.get(1).map(String::as_str) {
        Some("generate") => {
            let records: u64 = arg("--records").context("--records N")?.parse()?;
            generate(path, records)
        }
        Some("weekly") => {
            let reader = JournalReader::open(&path)?;
            let week = Period::iso_week(WEEK, &monitor::zone::Zone::get("UTC")?)?;
            let report = Report::build(&reader, &ReportQuery::new(week))?;
            // As `monitor report` does: rendered into memory, written in one go.
            let mut out = Vec::new();
            report.render(Format::Json, &mut out)?;
            std::io::stdout().lock().write_all(&out)?;
            Ok(())
        }
        _ => bail!("usage: bench_report generate|weekly --journal DIR [--records N --days 7]"),
    }
}

fn generate(path: PathBuf, records: u64) -> anyhow::Result<()> {
    let mut writer = JournalWriter::open(
        &JournalConfig { path, ..JournalConfig::default() },
        RunInfo::current(None),
        &monitor::zone::Zone::get("UTC")?,
    )?;
    let start = Period::iso_week(WEEK, &monitor::zone::Zone::get("UTC")?)?.since;
    let step_ns = 7 * 86_400 * 1_000_000_000 / i128::from(records.max(1));
    let country_db = DbRef { database_type: "DBIP-Country-Lite".into(), build_epoch: 1_780_000_000 };
    let asn_db = DbRef { database_type: "GeoLite2-ASN".into(), build_epoch: 1_780_000_000 };
    let apps: Vec<Arc<App>> = (0..APPS)
        .map(|i| {
            Arc::new(App {
                name: format!("app{i:02}"),
                exe: Some(format!("/usr/bin/app{i:02}")),
                cmdline: None,
                pid: 1000 + i as u32,
                start_time: 1,
                uid: 1000,
                user: None,
                unit: None,
                cgroup: None,
                container: None,
                source: AppSource::Proc,
                android: None,
            })
        })
        .collect();
    let registry_db = DbRef { database_type: "geo-whois-asn-country".into(), build_epoch: 1_780_000_000 };
    let dests: Vec<Destination> = (0..DESTINATIONS)
        .map(|d| {
            let country = COUNTRIES[(d % 30) as usize];
            let registry = if d % 20 == 0 { COUNTRIES[((d + 1) % 30) as usize] } else { country };
            let answers: Arc<[CountryAnswer]> = vec![
                CountryAnswer {
                    label: consensus::PRIMARY_LABEL.into(),
                    db: country_db.clone(),
                    country: Some(country.into()),
                },
                CountryAnswer {
                    label: consensus::REGISTRY_LABEL.into(),
                    db: registry_db.clone(),
                    country: Some(registry.into()),
                },
            ]
            .into();
            Destination {
                scope: Scope::Public,
                country: Some(country.into()),
                asn: Some(64_000 + (d % 500) as u32),
                as_org: Some(format!("Org {}", d % 500).into()),
                country_db: Some(country_db.clone()),
                asn_db: Some(asn_db.clone()),
                consensus: consensus::verdict(&answers),
                answers,
            }
        })
        .collect();
    let names: Vec<Names> = (0..DESTINATIONS)
        .map(|d| {
            if d % 10 == 9 {
                return Names::default();
            }
            let host = format!("api{}.svc{}.example.com", d % 500, d % 50);
            Names {
                registrable_domain: monitor::names::domain::registrable(&host),
                hostname: Hostname::parse(&host).ok(),
                source: if d % 3 == 0 { NameSource::Dns } else { NameSource::Sni },
                ..Names::default()
            }
        })
        .collect();
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..records {
        let r = next();
        let app = &apps[(r % APPS) as usize];
        let d = (r >> 8) % DESTINATIONS;
        // 20,000 addresses in 1.0.0.0/8 .. 223.0.0.0/8 avoiding 10/8 and 127/8: public scope.
        let ip = Ipv4Addr::from(0x0b00_0000u32 + (d as u32) * 4099);
        let last = start + SignedDuration::from_nanos((i128::from(i) * step_ns) as i64);
        let tx = 200 + (r >> 20) % 50_000;
        let rx = 500 + (r >> 36) % 500_000;
        let payload = Payload { tx_bytes: tx, rx_bytes: rx };
        let wire = Wire { tx_bytes: tx + 400, tx_packets: 10, rx_bytes: rx + 800, rx_packets: 20 };
        let record = FlowRecord {
            event: RecordKind::Close,
            cookie: i,
            owner: Owner {
                tgid: app.pid,
                pid: app.pid,
                uid: app.uid,
                gid: app.uid,
                comm: app.name.as_str().into(),
                cgroup_id: 1,
                source: OwnerSource::SockCreate,
                start_cs: 0,
                exec_mark: 0,
            },
            protocol: if r % 5 == 0 { Protocol::Udp } else { Protocol::Tcp },
            ip_protocol: if r % 5 == 0 { 17 } else { 6 },
            direction: Direction::Outbound,
            local: Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)), 1024 + (i % 60_000) as u16)),
            remote: Some(SocketAddr::new(IpAddr::V4(ip), 443)),
            payload,
            payload_source: PayloadSource::Syscall,
            payload_sources: Default::default(),
            wire,
            delta_payload: payload,
            delta_wire: wire,
            first_seen: last - SignedDuration::from_millis(200),
            last_seen: last,
            closed: Some(last),
            complete: true,
            rtt: (r % 5 != 0).then(|| Rtt { min_us: 500 + (d % 200) as u32 * 1000, smoothed_us: 300_000 }),
            final_of_socket: false,
            release: Default::default(),
            resumed: false,
        };
        writer.append_named(&record, app, Some(&dests[d as usize]), &names[d as usize]);
        if i % 100_000 == 99_999 {
            writer.flush()?;
        }
    }
    writer.flush()?;
    Ok(())
}
