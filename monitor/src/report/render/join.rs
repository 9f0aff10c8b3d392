//! The emulator join (`monitor report --guest-journal`) as document blocks (Markdown, table)
//! and CSV rows.

use super::doc::{Block, Escape, address, table};
use crate::report::{EmulatorJoin, FlowBytes, fmt::bytes};

fn addr(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

fn up_down(b: &FlowBytes) -> String {
    format!("{} / {}", bytes(b.payload_tx), bytes(b.payload_rx))
}

/// Blocks of the join (none without one).
pub(super) fn blocks(j: Option<&EmulatorJoin>, esc: Escape) -> Vec<Block> {
    let Some(j) = j else { return Vec::new() };
    let mut d = vec![Block::Heading(2, "Emulator join: host-confirmed bytes per package".into())];
    let emulators = if j.emulators.is_empty() {
        "none".to_owned()
    } else {
        j.emulators.iter().map(|e| esc(e)).collect::<Vec<_>>().join(", ")
    };
    d.push(Block::Para(format!(
        "Guest journal {} joined with the host's emulator flows ({emulators}) by protocol, remote address and port, \
         times overlapping within ±{} s; each host flow confirms at most one guest flow. Bytes are payload, up / down.",
        esc(&j.guest_journal),
        j.skew_tolerance_secs
    )));
    let rows = j
        .packages
        .iter()
        .map(|p| {
            vec![
                esc(&p.app),
                p.package.as_deref().map_or_else(|| "-".into(), esc),
                up_down(&p.guest),
                up_down(&p.confirmed),
                format!("{} of {}", p.matched.flows, p.guest.flows),
                p.unmatched.flows.to_string(),
                p.differences.len().to_string(),
            ]
        })
        .collect();
    d.push(table(
        &[
            ("App", false),
            ("Package", false),
            ("Guest", true),
            ("Host-confirmed", true),
            ("Flows matched", true),
            ("Unmatched", true),
            ("Pairs differing", true),
        ],
        rows,
    ));
    for p in &j.packages {
        d.push(Block::Heading(3, format!("Destinations of {}", esc(&p.app))));
        let rows = p
            .endpoints
            .iter()
            .map(|e| {
                vec![
                    address(&e.ip, e.port, esc),
                    esc(&e.protocol),
                    up_down(&e.guest),
                    up_down(&e.confirmed),
                    format!("{} of {}", e.confirmed.flows, e.guest.flows),
                ]
            })
            .collect();
        d.push(table(
            &[
                ("Destination", false),
                ("Protocol", false),
                ("Guest", true),
                ("Host-confirmed", true),
                ("Flows matched", true),
            ],
            rows,
        ));
        if !p.differences.is_empty() {
            d.push(Block::Para("Matched pairs whose payload differs (slirp relays streams unchanged):".into()));
            d.push(Block::List(
                p.differences
                    .iter()
                    .map(|x| {
                        format!(
                            "{} {} via {}: guest {} / {}, host {} / {}",
                            esc(&x.protocol),
                            address(&x.ip, x.port, esc),
                            esc(&x.emulator),
                            bytes(x.guest_tx),
                            bytes(x.guest_rx),
                            bytes(x.host_tx),
                            bytes(x.host_rx)
                        )
                    })
                    .collect(),
            ));
        }
    }
    d.push(Block::Heading(3, "Host emulator traffic no guest flow explains".into()));
    if j.unexplained.is_empty() {
        d.push(Block::Para("None.".into()));
    } else {
        let rows = j
            .unexplained
            .iter()
            .map(|u| {
                vec![
                    esc(&u.emulator),
                    address(&u.ip, u.port, esc),
                    esc(&u.protocol),
                    up_down(&u.host),
                    u.host.flows.to_string(),
                ]
            })
            .collect();
        d.push(table(
            &[("Emulator", false), ("Destination", false), ("Protocol", false), ("Payload", true), ("Flows", true)],
            rows,
        ));
    }
    d
}

/// One CSV line of the join, in the report's columns: `section`, `app`, `key`, `kind`, `ip`,
/// `port`, `protocol`, payload up/down, `flows`.
pub(super) struct JoinRow {
    pub section: &'static str,
    pub app: String,
    pub key: String,
    pub kind: &'static str,
    pub ip: String,
    pub port: String,
    pub protocol: String,
    pub bytes: FlowBytes,
}

/// CSV rows: per package `join_package` rows (kind `guest`, `confirmed`, `unmatched`), per
/// destination `join_endpoint` rows (kind `guest`, `confirmed`), per differing pair
/// `join_difference` rows (kind `guest`, `host`), per unexplained destination `join_unexplained`
/// (app = the emulator).
pub(super) fn rows(j: Option<&EmulatorJoin>) -> Vec<JoinRow> {
    let Some(j) = j else { return Vec::new() };
    let mut out = Vec::new();
    for p in &j.packages {
        let key = p.package.clone().unwrap_or_default();
        for (kind, b) in [("guest", p.guest), ("confirmed", p.confirmed), ("unmatched", p.unmatched)] {
            out.push(JoinRow {
                section: "join_package",
                app: p.app.clone(),
                key: key.clone(),
                kind,
                ip: String::new(),
                port: String::new(),
                protocol: String::new(),
                bytes: b,
            });
        }
        for e in &p.endpoints {
            for (kind, b) in [("guest", e.guest), ("confirmed", e.confirmed)] {
                out.push(JoinRow {
                    section: "join_endpoint",
                    app: p.app.clone(),
                    key: addr(&e.ip, e.port),
                    kind,
                    ip: e.ip.clone(),
                    port: e.port.to_string(),
                    protocol: e.protocol.clone(),
                    bytes: b,
                });
            }
        }
        for x in &p.differences {
            for (kind, tx, rx) in [("guest", x.guest_tx, x.guest_rx), ("host", x.host_tx, x.host_rx)] {
                out.push(JoinRow {
                    section: "join_difference",
                    app: p.app.clone(),
                    key: x.emulator.clone(),
                    kind,
                    ip: x.ip.clone(),
                    port: x.port.to_string(),
                    protocol: x.protocol.clone(),
                    bytes: FlowBytes { payload_tx: tx, payload_rx: rx, flows: 1 },
                });
            }
        }
    }
    for u in &j.unexplained {
        out.push(JoinRow {
            section: "join_unexplained",
            app: u.emulator.clone(),
            key: addr(&u.ip, u.port),
            kind: "host",
            ip: u.ip.clone(),
            port: u.port.to_string(),
            protocol: u.protocol.clone(),
            bytes: u.host,
        });
    }
    out
}

/// A block of the join for the HTML template (`kind`: `h3`, `p`, `list` or `table`); its text is
/// already passed through the page's escape and is HTML-escaped by the template.
#[derive(serde::Serialize)]
pub(super) struct HtmlBlock {
    kind: &'static str,
    text: String,
    items: Vec<String>,
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<Vec<String>>,
}

/// The join's blocks (below its level-2 heading, which the template writes) for the HTML page.
pub(super) fn html_blocks(j: Option<&EmulatorJoin>, esc: Escape) -> Vec<HtmlBlock> {
    let empty = |kind| HtmlBlock {
        kind,
        text: String::new(),
        items: Vec::new(),
        headers: Vec::new(),
        numeric: Vec::new(),
        rows: Vec::new(),
    };
    blocks(j, esc)
        .into_iter()
        .skip(1)
        .map(|b| match b {
            Block::Heading(_, text) => HtmlBlock { text, ..empty("h3") },
            Block::Para(text) => HtmlBlock { text, ..empty("p") },
            Block::List(items) => HtmlBlock { items, ..empty("list") },
            Block::Table { headers, numeric, rows } => HtmlBlock { headers, numeric, rows, ..empty("table") },
        })
        .collect()
}
