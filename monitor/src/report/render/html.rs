//! The HTML report: one self-contained page (inline CSS and SVG, no script, no external
//! resource; a Content-Security-Policy forbids fetching any), drawn from the [`Report`] through
//! the `minijinja` template `templates/report.html`.
//!
//! Escaping: every string of the report is passed through [`escape::terminal`] here (controls
//! and invisible characters made visible) and HTML-escaped by the template engine's autoescape
//! (`.html` templates), in text and attribute values alike. The template never marks report text
//! safe. Numbers are formatted as in the other renderers (exact bytes, grouped), so each figure
//! of the JSON report is on the page.

mod charts;
mod choropleth;
mod map;

use std::io::Write;

use serde::Serialize;

use self::{
    choropleth::{MapView, WorldView, map_view, world_view},
    map::PALETTE,
};
use crate::{
    escape,
    report::{
        AppReport, Endpoint, Error, Report, Share, ShareKind, TimelineUnit, Traffic,
        fmt::{bytes, grouped, pct},
        services::AppServices,
        truth::{AppConsensus, AppPlausibility},
    },
};

/// The template, embedded.
const TEMPLATE: &str = include_str!("templates/report.html");
/// Bars drawn per chart (the tables below them list every line).
const TOP_BARS: usize = 10;

/// `41203118` → "41.2 MB" (legends, bar ends; exact figures are in titles and tables).
pub(super) fn short_bytes(n: u64) -> String {
    let b = bytes(n);
    match (b.find('('), b.rfind(')')) {
        (Some(i), Some(j)) if i < j => b[i + 1..j].to_string(),
        _ => b,
    }
}

fn t(s: &str) -> String {
    escape::terminal(s)
}

#[derive(Serialize)]
struct TrafficView {
    payload: String,
    payload_tx: String,
    payload_rx: String,
    wire_tx: String,
    wire_rx: String,
    packets_tx: String,
    packets_rx: String,
}

fn traffic(tr: &Traffic) -> TrafficView {
    let Traffic { payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx } = *tr;
    TrafficView {
        payload: bytes(payload_tx + payload_rx),
        payload_tx: bytes(payload_tx),
        payload_rx: bytes(payload_rx),
        wire_tx: bytes(wire_tx),
        wire_rx: bytes(wire_rx),
        packets_tx: grouped(packets_tx),
        packets_rx: grouped(packets_rx),
    }
}

/// A breakdown line; bytes as exact grouped numbers (the unit is in the column heading).
#[derive(Serialize)]
struct ShareRow {
    label: String,
    org: String,
    payload_tx: String,
    payload_rx: String,
    wire_tx: String,
    wire_rx: String,
    packets_tx: String,
    packets_rx: String,
    flows: String,
    share: String,
    tx_share: String,
    rx_share: String,
}

/// How a breakdown line reads (the same words as the Markdown report).
fn destination(s: &Share) -> String {
    match (s.kind, s.key.as_str()) {
        (ShareKind::Country, key) => match map::geometry().and_then(|g| g.countries.iter().find(|c| c.alpha2 == key)) {
            Some(c) => format!("{} ({})", c.name, t(key)),
            None => t(key),
        },
        (ShareKind::Asn, key) => t(key),
        (ShareKind::Unknown, _) => "unknown (public address)".into(),
        (ShareKind::Scope, "none") => "no remote address".into(),
        (ShareKind::Scope, scope) if scope == crate::journal::SCOPE_UNENRICHED => "not looked up".into(),
        (ShareKind::Scope, scope) => format!("{} (not public)", t(scope)),
    }
}

fn share_rows(shares: &[Share]) -> Vec<ShareRow> {
    shares
        .iter()
        .map(|s| {
            let Traffic { payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx } = s.traffic;
            ShareRow {
                label: destination(s),
                org: s.as_org.as_deref().map(t).unwrap_or_default(),
                payload_tx: grouped(payload_tx),
                payload_rx: grouped(payload_rx),
                wire_tx: grouped(wire_tx),
                wire_rx: grouped(wire_rx),
                packets_tx: grouped(packets_tx),
                packets_rx: grouped(packets_rx),
                flows: grouped(s.flows),
                share: format!("{:.2}", s.share_pct),
                tx_share: format!("{:.2}", s.tx_share_pct),
                rx_share: format!("{:.2}", s.rx_share_pct),
            }
        })
        .collect()
}

fn share_bars(shares: &[Share]) -> charts::Bars {
    let lines: Vec<(String, u64, u64)> = shares
        .iter()
        .take(TOP_BARS)
        .map(|s| {
            let label = match &s.as_org {
                Some(org) if s.kind == ShareKind::Asn => format!("{} {}", t(&s.key), t(org)),
                _ => destination(s),
            };
            (label, s.traffic.payload_tx, s.traffic.payload_rx)
        })
        .collect();
    charts::bars(&lines)
}

#[derive(Serialize)]
struct EndpointView {
    endpoint: String,
    protocol: String,
    scope: String,
    country: String,
    network: String,
    payload_tx: String,
    payload_rx: String,
    wire_tx: String,
    wire_rx: String,
    flows: String,
    share: String,
    new: bool,
}

fn endpoint(e: &Endpoint) -> EndpointView {
    let ip = t(&e.ip);
    let endpoint = match e.port {
        Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
        Some(p) => format!("{ip}:{p}"),
        None => format!("{ip} (inbound)"),
    };
    let network = match (e.asn, &e.as_org) {
        (Some(n), Some(org)) => format!("AS{n} {}", t(org)),
        (Some(n), None) => format!("AS{n}"),
        (None, _) => "-".into(),
    };
    EndpointView {
        endpoint,
        protocol: t(&e.protocol),
        scope: e.scope.as_deref().map_or_else(|| "-".into(), t),
        country: e.country.as_deref().map_or_else(|| "-".into(), t),
        network,
        payload_tx: grouped(e.payload_tx),
        payload_rx: grouped(e.payload_rx),
        wire_tx: grouped(e.wire_tx),
        wire_rx: grouped(e.wire_rx),
        flows: grouped(e.flows),
        share: format!("{:.2}", e.share_pct),
        new: e.new,
    }
}

#[derive(Serialize)]
struct BucketRow {
    label: String,
    payload_tx: String,
    payload_rx: String,
}

#[derive(Serialize)]
struct AppView {
    id: String,
    name: String,
    traffic: TrafficView,
    /// Fleet reports: the app per machine (empty otherwise).
    by_host: Vec<super::fleet::HostRow>,
    share_of_total: String,
    flows: String,
    incomplete_flows: String,
    endpoints_total: String,
    map: Option<MapView>,
    countries: Vec<ShareRow>,
    country_bars: charts::Bars,
    asns: Vec<ShareRow>,
    asn_bars: charts::Bars,
    /// By service (host name, from the report's `services`), unnamed bytes last; the section is
    /// drawn only when there are lines.
    services: Vec<ShareRow>,
    /// Bars of [`Self::services`].
    service_bars: charts::Bars,
    /// Database consensus (with two or more country databases).
    consensus: Option<ConsensusView>,
    /// Physical plausibility (with `[device] location` and measured RTTs).
    plausibility: Option<PlausibilityView>,
    unknown_country: String,
    unknown_country_share: String,
    unknown_asn: String,
    unknown_asn_share: String,
    endpoints: Vec<EndpointView>,
    new_countries: Vec<String>,
    new_asns: Vec<String>,
    new_endpoints: String,
    endpoints_compared: bool,
    compared_with: String,
    sources: Vec<(String, String, String)>,
    timeline: charts::Timeline,
    buckets: Vec<BucketRow>,
}

/// Lines "by service": per host name, bytes each way, flows, share of the app's payload, and
/// where the name came from with its countries and networks; unnamed bytes last.
fn service_rows(s: &AppServices) -> Vec<ShareRow> {
    let dash = || "–".to_string();
    let mut rows: Vec<ShareRow> = s
        .hostnames
        .iter()
        .map(|h| {
            let asns: Vec<String> = h.asns.iter().map(|a| format!("AS{}", a.asn)).collect();
            let org = format!("({}; {}; name from {})", h.countries.join(", "), asns.join(", "), h.sources.join(", "));
            ShareRow {
                label: t(&h.name),
                org: t(&org),
                payload_tx: grouped(h.traffic.payload_tx),
                payload_rx: grouped(h.traffic.payload_rx),
                wire_tx: dash(),
                wire_rx: dash(),
                packets_tx: dash(),
                packets_rx: dash(),
                flows: grouped(h.traffic.flows),
                share: format!("{:.2}", h.share_pct),
                tx_share: dash(),
                rx_share: dash(),
            }
        })
        .collect();
    if s.unnamed.payload_tx + s.unnamed.payload_rx > 0 {
        rows.push(ShareRow {
            label: "(unnamed)".into(),
            org: String::new(),
            payload_tx: grouped(s.unnamed.payload_tx),
            payload_rx: grouped(s.unnamed.payload_rx),
            wire_tx: dash(),
            wire_rx: dash(),
            packets_tx: dash(),
            packets_rx: dash(),
            flows: grouped(s.unnamed.flows),
            share: format!("{:.2}", s.unnamed_share_pct),
            tx_share: dash(),
            rx_share: dash(),
        });
    }
    rows
}

fn service_bars(s: &AppServices) -> charts::Bars {
    let lines: Vec<(String, u64, u64)> =
        s.hostnames.iter().take(TOP_BARS).map(|h| (t(&h.name), h.traffic.payload_tx, h.traffic.payload_rx)).collect();
    charts::bars(&lines)
}

#[derive(Serialize)]
struct ConsensusView {
    databases: String,
    public_bytes: String,
    agree_share: String,
    disagree_bytes: String,
    partial_bytes: String,
    /// (destination, bytes, each database's answer).
    disagreements: Vec<(String, String, String)>,
}

#[derive(Serialize)]
struct PlausibilityView {
    device: String,
    measured_bytes: String,
    implausible_bytes: String,
    implausible_share: String,
    /// (destination, country, bytes, min RTT ms, distance km, bound km, note).
    implausible: Vec<(String, String, String, String, String, String, String)>,
}

fn consensus_view(c: &AppConsensus) -> ConsensusView {
    ConsensusView {
        databases: t(&c.databases.join(", ")),
        public_bytes: grouped(c.public_bytes),
        agree_share: format!("{:.2}", c.agree_share_pct),
        disagree_bytes: grouped(c.disagree_bytes),
        partial_bytes: grouped(c.partial_bytes),
        disagreements: c
            .disagreements
            .iter()
            .map(|d| {
                let answers: Vec<String> = d
                    .answers
                    .iter()
                    .map(|a| format!("{}: {}", a.label, a.country.as_deref().unwrap_or("none")))
                    .collect();
                (t(&d.ip), grouped(d.payload_bytes), t(&answers.join(", ")))
            })
            .collect(),
    }
}

fn plausibility_view(p: &AppPlausibility) -> PlausibilityView {
    PlausibilityView {
        device: t(&p.device_location),
        measured_bytes: grouped(p.measured_bytes),
        implausible_bytes: grouped(p.implausible_bytes),
        implausible_share: format!("{:.2}", p.implausible_share_pct),
        implausible: p
            .implausible
            .iter()
            .map(|d| {
                (
                    t(&d.ip),
                    t(&d.country),
                    grouped(d.payload_bytes),
                    format!("{:.3}", f64::from(d.min_rtt_us) / 1000.0),
                    format!("{:.0}", d.distance_km),
                    format!("{:.1}", d.bound_km),
                    d.note.to_string(),
                )
            })
            .collect(),
    }
}

fn app_view(i: usize, a: &AppReport, services: Option<&AppServices>, unit: TimelineUnit, all: &Traffic) -> AppView {
    let nd = &a.new_destinations;
    AppView {
        id: format!("app-{}", i + 1),
        name: t(&a.app),
        traffic: traffic(&a.traffic),
        by_host: super::fleet::html_app_hosts(a),
        share_of_total: pct(crate::report::fmt::share(a.traffic.payload(), all.payload())),
        flows: grouped(a.flows),
        incomplete_flows: grouped(a.incomplete_flows),
        endpoints_total: grouped(a.endpoints_total),
        map: map_view(a),
        countries: share_rows(&a.by_country),
        country_bars: share_bars(&a.by_country),
        asns: share_rows(&a.by_asn),
        asn_bars: share_bars(&a.by_asn),
        services: services.map(service_rows).unwrap_or_default(),
        service_bars: services.map_or_else(|| share_bars(&[]), service_bars),
        consensus: a.consensus.as_ref().map(consensus_view),
        plausibility: a.plausibility.as_ref().map(plausibility_view),
        unknown_country: bytes(a.unknown.country_bytes),
        unknown_country_share: pct(a.unknown.country_share_pct),
        unknown_asn: bytes(a.unknown.asn_bytes),
        unknown_asn_share: pct(a.unknown.asn_share_pct),
        endpoints: a.top_endpoints.iter().map(endpoint).collect(),
        new_countries: nd.countries.iter().map(|c| t(c)).collect(),
        new_asns: nd
            .asns
            .iter()
            .map(|r| r.as_org.as_deref().map_or_else(|| format!("AS{}", r.asn), |o| format!("AS{} {}", r.asn, t(o))))
            .collect(),
        new_endpoints: grouped(nd.endpoints),
        endpoints_compared: nd.endpoints_compared,
        compared_with: t(&nd.compared_with),
        sources: a
            .payload_sources
            .iter()
            .map(|s| (t(&s.payload_source), bytes(s.payload_bytes), pct(s.share_pct)))
            .collect(),
        timeline: charts::timeline(&a.timeline, unit),
        buckets: a
            .timeline
            .iter()
            .map(|b| BucketRow { label: t(&b.label), payload_tx: bytes(b.payload_tx), payload_rx: bytes(b.payload_rx) })
            .collect(),
    }
}

#[derive(Serialize)]
struct Page {
    label: String,
    kind: &'static str,
    since_local: String,
    until_local: String,
    time_zone: String,
    hours: String,
    seconds: String,
    previous: String,
    app_filter: Option<String>,
    generated_at: Option<String>,
    schema: &'static str,
    version: &'static str,
    host: String,
    totals: TrafficView,
    apps: Vec<AppView>,
    world: Option<WorldView>,
    palette: [&'static str; 6],
    timeline_unit: &'static str,
    timeline_complete: bool,
    completeness: Vec<(&'static str, String)>,
    notes: Vec<String>,
    databases: Vec<Database>,
    attribution: String,
    attribution_applies: bool,
    /// Claim verdicts (the report's `claims`); drawn only when present.
    claims: Vec<Claim>,
    /// The emulator join (`emulator_join`); drawn only when present.
    join: Vec<super::join::HtmlBlock>,
    /// A fleet report's machines (`None` for one machine's report).
    hosts: Option<Vec<super::fleet::HostRow>>,
}

/// One claim and its verdict, as text (escaped by the template).
#[derive(Serialize)]
struct Claim {
    /// App the claim is about.
    app: String,
    /// What is claimed ("data stays in the EU").
    claim: String,
    /// Verdict (`PASS`, `FAIL`, `INCONCLUSIVE`).
    verdict: String,
    /// The figures behind the verdict.
    evidence: String,
}

#[derive(Serialize)]
struct Database {
    role: String,
    database_type: String,
    build_date: String,
    build_epoch: String,
    age_days: String,
    path: String,
    payload: String,
    default_data: bool,
}

fn completeness(r: &Report) -> Vec<(&'static str, String)> {
    let c = &r.completeness;
    let time = |v: Option<jiff::Timestamp>| v.map_or_else(|| "-".into(), |t| t.to_string());
    vec![
        ("Statistics rows", grouped(c.stats_rows)),
        ("Daemon runs", grouped(c.runs)),
        ("Restarts", grouped(c.restarts)),
        ("Time between runs (not watched, at most)", crate::report::fmt::span_ms(c.unwatched_ms)),
        ("Kernel events produced", grouped(c.events_submitted)),
        ("Kernel events lost", grouped(c.events_lost)),
        ("Events not decoded", grouped(c.decode_errors)),
        ("Sockets not counted", grouped(c.storage_failures)),
        ("Unattributed IP-layer bytes (host-wide)", bytes(c.unattributed_bytes)),
        ("Unattributed packets", grouped(c.unattributed_packets)),
        ("IP-layer bytes charged to apps", bytes(c.attributed_wire_bytes)),
        ("Unattributed share", c.unattributed_share_pct.map_or_else(|| "unknown (no statistics)".into(), pct)),
        ("Incomplete flows", grouped(c.incomplete_flows)),
        ("Connection records dropped by the journal", grouped(c.journal_dropped_records)),
        ("Payload bytes dropped by the journal", bytes(c.journal_dropped_payload_bytes)),
        ("Endpoints purged before", time(c.endpoints_purged_before)),
        ("Data from", time(c.data_since)),
        ("Data until", time(c.data_until)),
    ]
}

/// Writes the page of `r`.
pub(super) fn write(r: &Report, out: &mut impl Write) -> Result<(), Error> {
    let p = &r.period;
    let page = Page {
        label: t(&p.label),
        kind: if p.kind == crate::report::PeriodKind::IsoWeek { "ISO week" } else { "time range" },
        since_local: t(&p.since_local),
        until_local: t(&p.until_local),
        time_zone: t(&p.time_zone),
        hours: crate::report::fmt::span(p.seconds),
        seconds: grouped(u64::try_from(p.seconds).unwrap_or(0)),
        previous: t(&r.previous_period.label),
        app_filter: r.app_filter.as_deref().map(t),
        generated_at: r.generated_at.map(|g| g.to_string()),
        schema: r.schema,
        version: env!("CARGO_PKG_VERSION"),
        host: std::fs::read_to_string("/proc/sys/kernel/hostname").map_or_else(|_| "unknown".into(), |h| t(h.trim())),
        totals: traffic(&r.totals),
        apps: r
            .apps
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let services = r.services.iter().find(|s| s.app == a.app);
                app_view(i, a, services, r.timeline.unit, &r.totals)
            })
            .collect(),
        world: world_view(),
        palette: PALETTE,
        timeline_unit: crate::variant::name(r.timeline.unit),
        timeline_complete: r.timeline.complete,
        completeness: completeness(r),
        notes: r.completeness.notes.iter().map(|n| t(n)).collect(),
        databases: r
            .databases
            .iter()
            .map(|d| Database {
                role: t(&d.role),
                database_type: t(&d.database_type),
                build_date: t(&d.build_date),
                build_epoch: d.build_epoch.to_string(),
                age_days: d.age_days.to_string(),
                path: d.path.as_deref().map_or_else(|| "-".into(), t),
                payload: bytes(d.payload_bytes),
                default_data: d.default_data,
            })
            .collect(),
        attribution: t(r.attribution.text),
        attribution_applies: r.attribution.applies,
        claims: r
            .claims
            .iter()
            .map(|c| Claim {
                app: t(&c.apps.iter().map(|a| crate::escape::list_item(a)).collect::<Vec<_>>().join(", ")),
                claim: t(&c.claim),
                verdict: c.verdict.to_uppercase(),
                evidence: t(&format!(
                    "{} B satisfy, {} B violate, {} B unknown of {} B{}{}",
                    grouped(c.satisfying),
                    grouped(c.violating),
                    grouped(c.unknown),
                    grouped(c.total),
                    if c.reasons.is_empty() { "" } else { ": " },
                    c.reasons.join("; ")
                )),
            })
            .collect(),
        join: super::join::html_blocks(r.emulator_join.as_ref(), t),
        hosts: super::fleet::html_hosts(r),
    };
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE).map_err(Error::Html)?;
    let html = env.get_template("report.html").and_then(|tpl| tpl.render(&page)).map_err(Error::Html)?;
    out.write_all(html.as_bytes()).map_err(|source| Error::Write { format: "html", source })
}

#[cfg(test)]
mod tests;
