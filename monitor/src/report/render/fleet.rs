//! The per-host figures of a fleet report (`hosts`, every app's `by_host`) for the document
//! renderers (terminal table, Markdown) and the HTML page; absent from a single machine's report.

use serde::Serialize;

use super::doc::{Block, Escape, table};
use crate::report::{
    AppReport, HostTraffic, Report, Traffic,
    fmt::{bytes, grouped},
};

const COLUMNS: [(&str, bool); 6] = [
    ("Host", false),
    ("Payload up", true),
    ("Payload down", true),
    ("Wire up", true),
    ("Wire down", true),
    ("Flows", true),
];

fn row(host: &str, t: &Traffic, flows: u64, esc: Escape) -> Vec<String> {
    vec![esc(host), bytes(t.payload_tx), bytes(t.payload_rx), bytes(t.wire_tx), bytes(t.wire_rx), grouped(flows)]
}

/// "Hosts": one line per machine with its totals (after the apps table).
pub(super) fn hosts(r: &Report, esc: Escape) -> Vec<Block> {
    let Some(hosts) = &r.hosts else { return Vec::new() };
    let rows = hosts.iter().map(|h| row(&h.host, &h.totals, h.apps.iter().map(|a| a.flows).sum(), esc)).collect();
    vec![
        Block::Heading(2, "Hosts".into()),
        Block::Para(format!("Fleet report of {} machines; every figure is their sum.", hosts.len())),
        table(&COLUMNS, rows),
    ]
}

/// "By host" of one app.
pub(super) fn app_hosts(a: &AppReport, esc: Escape) -> Vec<Block> {
    if a.by_host.is_empty() {
        return Vec::new();
    }
    let rows = a.by_host.iter().map(|h: &HostTraffic| row(&h.host, &h.traffic, h.flows, esc)).collect();
    vec![Block::Heading(3, "By host".into()), table(&COLUMNS, rows)]
}

/// One machine's line on the HTML page (text escaped by the template).
#[derive(Serialize)]
pub(super) struct HostRow {
    host: String,
    payload_tx: String,
    payload_rx: String,
    wire_tx: String,
    wire_rx: String,
    flows: String,
}

fn html_row(host: &str, t: &Traffic, flows: u64) -> HostRow {
    HostRow {
        host: crate::escape::terminal(host),
        payload_tx: bytes(t.payload_tx),
        payload_rx: bytes(t.payload_rx),
        wire_tx: bytes(t.wire_tx),
        wire_rx: bytes(t.wire_rx),
        flows: grouped(flows),
    }
}

/// The hosts of the page (`None` for a single machine's report).
pub(super) fn html_hosts(r: &Report) -> Option<Vec<HostRow>> {
    let hosts = r.hosts.as_ref()?;
    Some(hosts.iter().map(|h| html_row(&h.host, &h.totals, h.apps.iter().map(|a| a.flows).sum())).collect())
}

/// The hosts of one app on the page (empty for a single machine's report).
pub(super) fn html_app_hosts(a: &AppReport) -> Vec<HostRow> {
    a.by_host.iter().map(|h| html_row(&h.host, &h.traffic, h.flows)).collect()
}
