//! CSV rendering: `#` comment lines (period, completeness, databases, attribution), then one
//! header and one row per figure. Columns are described in `SCHEMA.md`. Text cells go through
//! [`escape::csv_cell`] (visible control characters, no formula prefix); foreign text in comment
//! lines through [`escape::terminal`], so each comment stays one line, and the line through
//! [`escape::csv_comment`] (one quoted cell when it could otherwise start a formula cell).

use std::io::Write;

use crate::{
    enrich::Scope,
    escape::{self, Terminal},
    report::{
        Error, Report, Share, ShareKind, Traffic,
        services::{AppServices, Service},
        truth::{AppConsensus, AppPlausibility},
    },
};

const HEADER: [&str; 19] = [
    "section",
    "app",
    "key",
    "kind",
    "country",
    "asn",
    "as_org",
    "scope",
    "ip",
    "port",
    "protocol",
    "payload_tx_bytes",
    "payload_rx_bytes",
    "payload_bytes",
    "wire_tx_bytes",
    "wire_rx_bytes",
    "flows",
    "share_pct",
    "new",
];

/// One CSV line; its fields in [`HEADER`]'s order (the header is written once, also for an
/// empty report).
#[derive(Default, serde::Serialize)]
struct Row {
    section: &'static str,
    app: String,
    key: String,
    kind: String,
    country: String,
    asn: String,
    as_org: String,
    scope: String,
    ip: String,
    port: String,
    protocol: String,
    payload_tx: String,
    payload_rx: String,
    payload: String,
    wire_tx: String,
    wire_rx: String,
    flows: String,
    share_pct: String,
    new: String,
}

impl Row {
    /// The row with its text cells escaped ([`escape::csv_cell`]); numbers are left alone.
    fn escaped(self) -> Self {
        let Self {
            section,
            app,
            key,
            kind,
            country,
            asn,
            as_org,
            scope,
            ip,
            port,
            protocol,
            payload_tx,
            payload_rx,
            payload,
            wire_tx,
            wire_rx,
            flows,
            share_pct,
            new,
        } = self;
        let e = |s: String| escape::csv_cell(&s);
        Self {
            section,
            app: e(app),
            key: e(key),
            kind: e(kind),
            country: e(country),
            asn,
            as_org: e(as_org),
            scope: e(scope),
            ip: e(ip),
            port,
            protocol: e(protocol),
            payload_tx,
            payload_rx,
            payload,
            wire_tx,
            wire_rx,
            flows,
            share_pct,
            new,
        }
    }
}

fn share_row(section: &'static str, app: &str, s: &Share) -> Row {
    let kind = crate::variant::name(s.kind).to_string();
    Row {
        section,
        app: app.into(),
        key: s.key.clone(),
        scope: if s.kind == ShareKind::Scope { s.key.clone() } else { crate::variant::name(Scope::Public).into() },
        kind,
        country: s.country.clone().unwrap_or_default(),
        asn: s.asn.map(|n| n.to_string()).unwrap_or_default(),
        as_org: s.as_org.clone().unwrap_or_default(),
        payload_tx: s.traffic.payload_tx.to_string(),
        payload_rx: s.traffic.payload_rx.to_string(),
        payload: s.traffic.payload().to_string(),
        wire_tx: s.traffic.wire_tx.to_string(),
        wire_rx: s.traffic.wire_rx.to_string(),
        flows: s.flows.to_string(),
        share_pct: format!("{:.2}", s.share_pct),
        ..Row::default()
    }
}

/// A fleet report's line of one machine (`host`: its totals, `app`: empty) or of one app on one
/// machine (`app_host`); `key` is the host label.
fn traffic_row(section: &'static str, app: &str, host: &str, t: &Traffic, flows: u64) -> Row {
    Row {
        section,
        app: app.into(),
        key: host.into(),
        payload_tx: t.payload_tx.to_string(),
        payload_rx: t.payload_rx.to_string(),
        payload: t.payload().to_string(),
        wire_tx: t.wire_tx.to_string(),
        wire_rx: t.wire_rx.to_string(),
        flows: flows.to_string(),
        ..Row::default()
    }
}

/// One `#` comment line, `# ` and `text` ([`escape::csv_comment`]: quoted as one cell when
/// foreign text in it would otherwise make a spreadsheet read cells of its own).
fn comment(out: &mut impl Write, text: &str) -> Result<(), Error> {
    writeln!(out, "{}", escape::csv_comment(&format!("# {text}")))
        .map_err(|source| Error::Write { format: "csv", source })
}

/// Writes `r` as CSV.
pub(super) fn write(r: &Report, out: &mut impl Write) -> Result<(), Error> {
    let p = &r.period;
    comment(out, &format!("schema: {}", r.schema))?;
    comment(out, &format!("period: {} ({} to {}, {})", p.label, p.since_local, p.until_local, p.time_zone))?;
    comment(out, &format!("compared_with: {}", r.previous_period.label))?;
    if let Some(app) = &r.app_filter {
        comment(out, &format!("app_filter: {}", Terminal(app)))?;
    }
    if let Some(session) = &r.session {
        let cgroup = session.cgroup_id.map_or_else(String::new, |id| format!(" cgroup {id}"));
        comment(out, &format!("session: {}{cgroup}", Terminal(&session.name)))?;
    }
    for c in &r.claims {
        // Claim and app names are foreign text (the claims file, the journal).
        let apps: Vec<String> = c.apps.iter().map(|a| Terminal(&crate::escape::list_item(a)).to_string()).collect();
        comment(
            out,
            &format!(
                "claim: {} {} apps={} judged={} satisfying={} violating={} unknown={}{}",
                Terminal(&c.claim),
                c.verdict.to_uppercase(),
                apps.join(","),
                c.total,
                c.satisfying,
                c.violating,
                c.unknown,
                c.reasons.iter().map(|why| format!("; {}", Terminal(why))).collect::<String>()
            ),
        )?;
    }
    for note in &r.completeness.notes {
        // Fleet reports prefix notes with host labels (foreign text).
        comment(out, &format!("completeness: {}", Terminal(note)))?;
    }
    for db in &r.databases {
        comment(
            out,
            &format!(
                "database: {} {} built {} ({} days old), {} payload bytes answered",
                Terminal(&db.role),
                Terminal(&db.database_type),
                Terminal(&db.build_date),
                db.age_days,
                db.payload_bytes
            ),
        )?;
    }
    comment(out, &format!("attribution: {} (applies: {})", r.attribution.text, r.attribution.applies))?;

    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(out);
    w.write_record(HEADER).map_err(Error::Csv)?;
    for h in r.hosts.iter().flatten() {
        let flows = h.apps.iter().map(|a| a.flows).sum();
        w.serialize(traffic_row("host", "", &h.host, &h.totals, flows).escaped()).map_err(Error::Csv)?;
    }
    for a in &r.apps {
        let t = &a.traffic;
        let total = Row {
            section: "app",
            app: a.app.clone(),
            key: a.app.clone(),
            payload_tx: t.payload_tx.to_string(),
            payload_rx: t.payload_rx.to_string(),
            payload: t.payload().to_string(),
            wire_tx: t.wire_tx.to_string(),
            wire_rx: t.wire_rx.to_string(),
            flows: a.flows.to_string(),
            ..Row::default()
        };
        let mut rows = vec![total];
        rows.extend(a.by_host.iter().map(|h| traffic_row("app_host", &a.app, &h.host, &h.traffic, h.flows)));
        rows.extend(a.by_country.iter().map(|s| share_row("country", &a.app, s)));
        rows.extend(a.by_asn.iter().map(|s| share_row("asn", &a.app, s)));
        rows.extend(a.top_endpoints.iter().map(|e| Row {
            section: "endpoint",
            app: a.app.clone(),
            // An IPv6 address in brackets before its port, as everywhere else.
            key: match (e.port, e.ip.parse::<std::net::IpAddr>()) {
                (Some(p), Ok(ip)) => std::net::SocketAddr::new(ip, p).to_string(),
                (Some(p), Err(_)) => format!("{}:{p}", e.ip),
                (None, _) => e.ip.clone(),
            },
            kind: e.hostnames.join(";"),
            country: e.country.clone().unwrap_or_default(),
            asn: e.asn.map(|n| n.to_string()).unwrap_or_default(),
            as_org: e.as_org.clone().unwrap_or_default(),
            scope: e.scope.clone().unwrap_or_default(),
            ip: e.ip.clone(),
            port: e.port.map(|p| p.to_string()).unwrap_or_default(),
            protocol: e.protocol.clone(),
            payload_tx: e.payload_tx.to_string(),
            payload_rx: e.payload_rx.to_string(),
            payload: (e.payload_tx + e.payload_rx).to_string(),
            wire_tx: e.wire_tx.to_string(),
            wire_rx: e.wire_rx.to_string(),
            flows: e.flows.to_string(),
            share_pct: format!("{:.2}", e.share_pct),
            new: e.new.to_string(),
        }));
        let n = &a.new_destinations;
        rows.extend(n.countries.iter().map(|c| Row {
            section: "new_country",
            app: a.app.clone(),
            key: c.clone(),
            country: c.clone(),
            new: "true".into(),
            ..Row::default()
        }));
        rows.extend(n.asns.iter().map(|x| Row {
            section: "new_asn",
            app: a.app.clone(),
            key: format!("AS{}", x.asn),
            asn: x.asn.to_string(),
            as_org: x.as_org.clone().unwrap_or_default(),
            new: "true".into(),
            ..Row::default()
        }));
        rows.extend(a.payload_sources.iter().map(|s| Row {
            section: "payload_source",
            app: a.app.clone(),
            key: s.payload_source.clone(),
            payload: s.payload_bytes.to_string(),
            share_pct: format!("{:.2}", s.share_pct),
            ..Row::default()
        }));
        if let Some(s) = r.services.iter().find(|s| s.app == a.app) {
            rows.extend(service_rows(s));
        }
        if let Some(c) = &a.consensus {
            rows.extend(consensus_rows(&a.app, c));
        }
        if let Some(p) = &a.plausibility {
            rows.extend(plausibility_rows(&a.app, p));
        }
        for row in rows {
            w.serialize(row.escaped()).map_err(Error::Csv)?;
        }
    }
    for j in super::join::rows(r.emulator_join.as_ref()) {
        let row = Row {
            section: j.section,
            app: j.app,
            key: j.key,
            kind: j.kind.into(),
            ip: j.ip,
            port: j.port,
            protocol: j.protocol,
            payload_tx: j.bytes.payload_tx.to_string(),
            payload_rx: j.bytes.payload_rx.to_string(),
            payload: (j.bytes.payload_tx + j.bytes.payload_rx).to_string(),
            flows: j.bytes.flows.to_string(),
            ..Row::default()
        };
        w.serialize(row.escaped()).map_err(Error::Csv)?;
    }
    w.flush().map_err(|source| Error::Write { format: "csv", source })
}

/// "By service" rows: `service_domain` and `service_host` (key = the name, kind = the name
/// sources joined by `+`, country and asn = every one joined by `;`), then `service_unnamed`.
fn service_rows(s: &AppServices) -> Vec<Row> {
    let row = |section: &'static str, x: &Service| Row {
        section,
        app: s.app.clone(),
        key: x.name.clone(),
        kind: x.sources.join("+"),
        country: x.countries.join(";"),
        asn: x.asns.iter().map(|a| a.asn.to_string()).collect::<Vec<_>>().join(";"),
        as_org: x.asns.iter().map(|a| a.as_org.clone().unwrap_or_default()).collect::<Vec<_>>().join(";"),
        payload_tx: x.traffic.payload_tx.to_string(),
        payload_rx: x.traffic.payload_rx.to_string(),
        payload: x.traffic.payload().to_string(),
        flows: x.traffic.flows.to_string(),
        share_pct: format!("{:.2}", x.share_pct),
        ..Row::default()
    };
    let mut rows: Vec<Row> = s.domains.iter().map(|x| row("service_domain", x)).collect();
    rows.extend(s.hostnames.iter().map(|x| row("service_host", x)));
    rows.push(Row {
        section: "service_unnamed",
        app: s.app.clone(),
        payload_tx: s.unnamed.payload_tx.to_string(),
        payload_rx: s.unnamed.payload_rx.to_string(),
        payload: s.unnamed.payload().to_string(),
        flows: s.unnamed.flows.to_string(),
        share_pct: format!("{:.2}", s.unnamed_share_pct),
        ..Row::default()
    });
    rows
}

/// Database consensus: one `consensus` row (key = the databases joined by `+`, payload = bytes
/// on which all agree of `public` in `kind`, share = their share), then one `consensus_disagree`
/// row per disputed destination (country = each database's `label:CC` joined by `;`).
fn consensus_rows(app: &str, c: &AppConsensus) -> Vec<Row> {
    let mut rows = vec![Row {
        section: "consensus",
        app: app.into(),
        key: c.databases.join("+"),
        kind: format!("public={}", c.public_bytes),
        payload: c.agree_bytes.to_string(),
        share_pct: format!("{:.2}", c.agree_share_pct),
        ..Row::default()
    }];
    rows.extend(c.disagreements.iter().map(|d| {
        Row {
            section: "consensus_disagree",
            app: app.into(),
            key: d.ip.clone(),
            ip: d.ip.clone(),
            country: d
                .answers
                .iter()
                .map(|a| format!("{}:{}", a.label, a.country.as_deref().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(";"),
            payload: d.payload_bytes.to_string(),
            ..Row::default()
        }
    }));
    rows
}

/// Physical plausibility: one `plausibility` row (key = the device location, payload = bytes to
/// implausible destinations, kind = `measured=<bytes>`, share = their share), then one
/// `implausible` row per destination (kind = `min_rtt_us=…;distance_km=…;bound_km=…`).
fn plausibility_rows(app: &str, p: &AppPlausibility) -> Vec<Row> {
    let mut rows = vec![Row {
        section: "plausibility",
        app: app.into(),
        key: p.device_location.clone(),
        kind: format!("measured={}", p.measured_bytes),
        payload: p.implausible_bytes.to_string(),
        share_pct: format!("{:.2}", p.implausible_share_pct),
        ..Row::default()
    }];
    rows.extend(p.implausible.iter().map(|d| Row {
        section: "implausible",
        app: app.into(),
        key: d.ip.clone(),
        ip: d.ip.clone(),
        country: d.country.clone(),
        kind: format!("min_rtt_us={};distance_km={:.1};bound_km={:.1}", d.min_rtt_us, d.distance_km, d.bound_km),
        payload: d.payload_bytes.to_string(),
        ..Row::default()
    }));
    rows
}
