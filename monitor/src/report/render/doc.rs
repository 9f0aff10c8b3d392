//! The report as a document: the same content for Markdown and terminal output.

use std::{fmt::Write, net::IpAddr};

use crate::enrich::Scope;
use crate::report::{
    AppReport, Endpoint, Report, Share, ShareKind,
    fmt::{bytes, grouped, pct},
    model::{AsnRef, TimelineInfo, TimelineUnit},
    services::{AppServices, Service},
};

/// Escapes foreign text (app names, the app filter, database strings) for the output format.
pub(super) type Escape = fn(&str) -> String;

/// A piece of a document.
pub(crate) enum Block {
    /// Heading of level 1–3.
    Heading(u8, String),
    /// A paragraph.
    Para(String),
    /// A bulleted list.
    List(Vec<String>),
    /// A table; `numeric[i]` right-aligns column `i`.
    Table { headers: Vec<&'static str>, numeric: Vec<bool>, rows: Vec<Vec<String>> },
}

pub(super) fn table(headers: &[(&'static str, bool)], rows: Vec<Vec<String>>) -> Block {
    Block::Table {
        headers: headers.iter().map(|h| h.0).collect(),
        numeric: headers.iter().map(|h| h.1).collect(),
        rows,
    }
}

/// How a breakdown key reads in a document.
fn destination(s: &Share, esc: Escape) -> String {
    match (s.kind, s.key.as_str()) {
        (ShareKind::Country | ShareKind::Asn, key) => esc(key),
        (ShareKind::Unknown, _) => "unknown (public address)".into(),
        (ShareKind::Scope, "none") => "no remote address".into(),
        (ShareKind::Scope, scope) if scope == crate::journal::SCOPE_UNENRICHED => "not looked up".into(),
        (ShareKind::Scope, scope) => format!("{} (not public)", esc(scope)),
    }
}

/// `ip` with `port`: "192.0.2.1:443", "[2001:db8::1]:443". An address read from a journal is
/// foreign text: unless it is an IP address, the whole text is escaped with `esc`.
pub(super) fn address(ip: &str, port: u16, esc: Escape) -> String {
    let text = if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    if ip.parse::<IpAddr>().is_ok() { text } else { esc(&text) }
}

fn endpoint(e: &Endpoint, esc: Escape) -> String {
    let addr = match e.port {
        Some(p) => address(&e.ip, p, esc),
        None if e.ip.parse::<IpAddr>().is_ok() => format!("{} (inbound)", e.ip),
        None => format!("{} (inbound)", esc(&e.ip)),
    };
    if e.hostnames.is_empty() {
        return addr;
    }
    let names: Vec<String> = e.hostnames.iter().map(|h| esc(h)).collect();
    format!("{addr} ({})", names.join(", "))
}

fn opt(v: Option<&String>, esc: Escape) -> String {
    v.map_or_else(|| "-".into(), |s| esc(s))
}

/// Builds the document of `r`; `esc` escapes every string that did not come from the monitor.
pub(super) fn document(r: &Report, esc: Escape) -> Vec<Block> {
    let p = &r.period;
    let mut d = vec![Block::Heading(1, format!("Residency report {}", p.label))];
    let mut intro = format!(
        "Period: {} to {} ({}, {}). New destinations are compared with {}.",
        p.since_local,
        p.until_local,
        p.time_zone,
        super::super::fmt::span(p.seconds),
        r.previous_period.label
    );
    if let Some(app) = &r.app_filter {
        let _ = write!(intro, " Only app {}.", esc(app));
    }
    if let Some(session) = &r.session {
        let _ = write!(intro, " Session {}", esc(&session.name));
        let _ = match session.cgroup_id {
            Some(id) => write!(intro, " (only sockets created in cgroup {id})."),
            None => write!(intro, "."),
        };
    }
    if let Some(t) = r.generated_at {
        let _ = write!(intro, " Generated at {t}.");
    }
    d.push(Block::Para(intro));
    d.push(Block::Para(format!(
        "Bytes are payload bytes (what apps sent and received); wire bytes include IP and transport headers. Schema {}.",
        r.schema
    )));
    d.push(Block::Heading(2, "Apps".into()));
    let cols = [
        ("App", false),
        ("Payload up", true),
        ("Payload down", true),
        ("Wire up", true),
        ("Wire down", true),
        ("Flows", true),
    ];
    let mut rows: Vec<Vec<String>> = r
        .apps
        .iter()
        .map(|a| {
            let t = &a.traffic;
            vec![
                esc(&a.app),
                bytes(t.payload_tx),
                bytes(t.payload_rx),
                bytes(t.wire_tx),
                bytes(t.wire_rx),
                grouped(a.flows),
            ]
        })
        .collect();
    let t = &r.totals;
    let flows: u64 = r.apps.iter().map(|a| a.flows).sum();
    rows.push(vec![
        "total".into(),
        bytes(t.payload_tx),
        bytes(t.payload_rx),
        bytes(t.wire_tx),
        bytes(t.wire_rx),
        grouped(flows),
    ]);
    d.push(table(&cols, rows));
    claims(&mut d, r, esc);
    d.extend(super::fleet::hosts(r, esc));
    for a in &r.apps {
        app(&mut d, a, esc);
        timeline(&mut d, a, r.timeline);
        if let Some(s) = r.services.iter().find(|s| s.app == a.app) {
            services(&mut d, s, esc);
        }
    }
    d.push(Block::Heading(2, "Completeness".into()));
    // Notes carry text from the journal (payload sources, degradations) and, in a fleet report,
    // host labels and other machines' text: foreign.
    d.push(Block::List(r.completeness.notes.iter().map(|n| esc(n)).collect()));
    d.push(Block::Heading(2, "Databases".into()));
    if r.databases.is_empty() {
        d.push(Block::Para("No geolocation database answered any figure of this period.".into()));
    } else {
        let cols = [
            ("Role", false),
            ("Type", false),
            ("Build date", false),
            ("Age (days)", true),
            ("Payload answered", true),
            ("Path", false),
        ];
        let rows = r
            .databases
            .iter()
            .map(|db| {
                vec![
                    esc(&db.role),
                    esc(&db.database_type),
                    esc(&db.build_date),
                    db.age_days.to_string(),
                    bytes(db.payload_bytes),
                    opt(db.path.as_ref(), esc),
                ]
            })
            .collect();
        d.push(table(&cols, rows));
    }
    d.push(Block::Heading(2, "Attribution".into()));
    let applies = if r.attribution.applies {
        "Applies: the default databases answered figures of this report."
    } else {
        "Applies when the default databases are used; none of them answered figures of this report (see Databases)."
    };
    d.push(Block::Para(format!("{} {applies}", r.attribution.text)));
    d.extend(super::join::blocks(r.emulator_join.as_ref(), esc));
    d
}

/// The claim verdicts (a claims file configured): one row per claim, then each claim's reasons.
fn claims(d: &mut Vec<Block>, r: &Report, esc: Escape) {
    if r.claims.is_empty() {
        return;
    }
    d.push(Block::Heading(2, "Claims".into()));
    let cols = [
        ("Claim", false),
        ("Verdict", false),
        ("Apps", false),
        ("Judged", true),
        ("Satisfying", true),
        ("Violating", true),
        ("Unknown", true),
    ];
    let rows = r
        .claims
        .iter()
        .map(|c| {
            let apps: Vec<String> = c.apps.iter().map(|a| esc(&crate::escape::list_item(a))).collect();
            vec![
                esc(&c.claim),
                c.verdict.to_uppercase(),
                if apps.is_empty() { "-".into() } else { apps.join(", ") },
                bytes(c.total),
                bytes(c.satisfying),
                bytes(c.violating),
                bytes(c.unknown),
            ]
        })
        .collect();
    d.push(table(&cols, rows));
    let reasons: Vec<String> =
        r.claims.iter().flat_map(|c| c.reasons.iter().map(|why| format!("{}: {}", esc(&c.claim), esc(why)))).collect();
    if !reasons.is_empty() {
        d.push(Block::List(reasons));
    }
}

/// When the app's payload moved: one row per day (or hour, for periods of two days or less) that
/// moved any, as the JSON's `timeline` and the HTML page's chart.
fn timeline(d: &mut Vec<Block>, a: &AppReport, info: TimelineInfo) {
    let rows: Vec<Vec<String>> = a
        .timeline
        .iter()
        .filter(|b| b.payload_tx + b.payload_rx > 0)
        .map(|b| vec![b.label.clone(), bytes(b.payload_tx), bytes(b.payload_rx)])
        .collect();
    if rows.is_empty() {
        return;
    }
    let unit = match info.unit {
        TimelineUnit::Day => "Day",
        TimelineUnit::Hour => "Hour",
    };
    d.push(Block::Heading(3, "Timeline".into()));
    d.push(table(&[(unit, false), ("Payload up", true), ("Payload down", true)], rows));
    if !info.complete {
        d.push(Block::Para(
            "Part of the period is known only from weekly totals (its detailed rows were purged): the rows above do \
             not add up to the app's payload."
                .into(),
        ));
    }
}

fn app(d: &mut Vec<Block>, a: &AppReport, esc: Escape) {
    let t = &a.traffic;
    let name = esc(&a.app);
    d.push(Block::Heading(2, format!("App {name}")));
    d.push(Block::Para(format!(
        "{name} sent {} and received {} of payload ({} / {} on the wire) in {} flow{} ({} incomplete).",
        bytes(t.payload_tx),
        bytes(t.payload_rx),
        bytes(t.wire_tx),
        bytes(t.wire_rx),
        grouped(a.flows),
        if a.flows == 1 { "" } else { "s" },
        grouped(a.incomplete_flows)
    )));
    d.extend(super::fleet::app_hosts(a, esc));
    let share_rows = |shares: &[Share], with_org: bool| -> Vec<Vec<String>> {
        shares
            .iter()
            .map(|s| {
                let mut row = vec![destination(s, esc)];
                if with_org {
                    row.push(opt(s.as_org.as_ref(), esc));
                }
                let t = &s.traffic;
                row.extend([
                    bytes(t.payload_tx),
                    bytes(t.payload_rx),
                    pct(s.share_pct),
                    bytes(t.wire_tx),
                    bytes(t.wire_rx),
                    grouped(s.flows),
                ]);
                row
            })
            .collect()
    };
    let nums = [
        ("Payload up", true),
        ("Payload down", true),
        ("Share", true),
        ("Wire up", true),
        ("Wire down", true),
        ("Flows", true),
    ];
    d.push(Block::Heading(3, "By country".into()));
    d.push(table(&[&[("Country", false)][..], &nums].concat(), share_rows(&a.by_country, false)));
    d.push(Block::Heading(3, "By network (ASN)".into()));
    d.push(table(&[&[("Network", false), ("Organisation", false)][..], &nums].concat(), share_rows(&a.by_asn, true)));
    d.push(Block::Para(format!(
        "Public addresses with unknown country: {} ({}); with unknown network: {} ({}).",
        bytes(a.unknown.country_bytes),
        pct(a.unknown.country_share_pct),
        bytes(a.unknown.asn_bytes),
        pct(a.unknown.asn_share_pct)
    )));
    d.push(Block::Heading(3, "Top endpoints".into()));
    if a.top_endpoints.is_empty() {
        d.push(Block::Para("No connection records for this period.".into()));
    } else {
        let cols = [
            ("Endpoint", false),
            ("Proto", false),
            ("Country", false),
            ("Network", false),
            ("Payload up", true),
            ("Payload down", true),
            ("Share", true),
            ("Flows", true),
            ("New", false),
        ];
        let rows = a
            .top_endpoints
            .iter()
            .map(|e| {
                vec![
                    endpoint(e, esc),
                    esc(&e.protocol),
                    e.country
                        .as_deref()
                        .map(esc)
                        .or_else(|| e.scope.as_deref().filter(|s| *s != crate::variant::name(Scope::Public)).map(esc))
                        .unwrap_or_else(|| "-".into()),
                    e.asn.map_or_else(
                        || "-".into(),
                        |n| format!("AS{n} {}", e.as_org.as_deref().map(esc).unwrap_or_default()).trim_end().into(),
                    ),
                    bytes(e.payload_tx),
                    bytes(e.payload_rx),
                    pct(e.share_pct),
                    grouped(e.flows),
                    if e.new { "new".into() } else { String::new() },
                ]
            })
            .collect();
        d.push(table(&cols, rows));
        d.push(Block::Para(format!("{} endpoints in total.", grouped(a.endpoints_total))));
    }
    let n = &a.new_destinations;
    d.push(Block::Heading(3, format!("New since {}", n.compared_with)));
    let list = |v: Vec<String>| if v.is_empty() { "none".to_string() } else { v.join(", ") };
    let asns = n.asns.iter().map(|x| format!("AS{} ({})", x.asn, opt(x.as_org.as_ref(), esc))).collect();
    let endpoints = if n.endpoints_compared {
        grouped(n.endpoints)
    } else {
        "not compared (older connection records were purged)".into()
    };
    d.push(Block::List(vec![
        format!("countries: {}", list(n.countries.iter().map(|c| esc(c)).collect())),
        format!("networks: {}", list(asns)),
        format!("endpoints: {endpoints}"),
    ]));
    let sources: Vec<String> =
        a.payload_sources.iter().map(|s| format!("{} {}", esc(&s.payload_source), pct(s.share_pct))).collect();
    d.push(Block::Para(format!("Payload measured by: {}.", list(sources))));
    d.extend(super::truth::blocks(a, esc));
}

/// "By service": the app's host names and registrable domains, and its unnamed share.
fn services(d: &mut Vec<Block>, s: &AppServices, esc: Escape) {
    let name = esc(&s.app);
    d.push(Block::Heading(3, format!("Services of {name}")));
    d.push(Block::Para(format!(
        "{} of payload went to named hosts, {} ({}) had no name (no DNS answer, TLS or QUIC server name seen).",
        bytes(s.named.payload()),
        bytes(s.unnamed.payload()),
        pct(s.unnamed_share_pct)
    )));
    if s.hostnames.is_empty() {
        return;
    }
    let list = |v: &[String]| {
        if v.is_empty() { "-".to_owned() } else { v.iter().map(|x| esc(x)).collect::<Vec<_>>().join(", ") }
    };
    let asns = |v: &[AsnRef]| {
        if v.is_empty() {
            return "-".to_owned();
        }
        v.iter()
            .map(|a| a.as_org.as_ref().map_or_else(|| format!("AS{}", a.asn), |o| format!("AS{} {}", a.asn, esc(o))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let row = |x: &Service| {
        vec![
            esc(&x.name),
            list(&x.sources),
            bytes(x.traffic.payload_tx),
            bytes(x.traffic.payload_rx),
            grouped(x.traffic.flows),
            pct(x.share_pct),
            list(&x.countries),
            asns(&x.asns),
        ]
    };
    let cols = |first: &'static str| {
        [
            (first, false),
            ("Source", false),
            ("Payload up", true),
            ("Payload down", true),
            ("Flows", true),
            ("Share", true),
            ("Countries", false),
            ("ASNs", false),
        ]
    };
    d.push(table(&cols("Domain"), s.domains.iter().map(row).collect()));
    d.push(table(&cols("Host name"), s.hostnames.iter().map(row).collect()));
}
