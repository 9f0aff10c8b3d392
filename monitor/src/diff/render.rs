//! Presenting a [`Diff`]: JSON (the data), or one table of changes (app, change, what, A, B) as
//! Markdown or for a terminal. Foreign text (app names, organisations, hostnames) is escaped by
//! [`crate::escape`] for each format.

use std::io::Write;

use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};

use super::{AppDiff, AppStatus, Diff, Error};
use crate::escape;

/// Output format of `monitor diff`. Named by its `clap::ValueEnum` derive (`--format`), also in
/// messages ([`Display`](std::fmt::Display)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    /// A terminal table.
    Table,
    /// JSON, schema `monitor.diff/1`.
    Json,
    /// A Markdown document with a table.
    Markdown,
}

impl std::fmt::Display for DiffFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every variant has a value: none is `#[value(skip)]`.
        clap::ValueEnum::to_possible_value(self).map_or(Ok(()), |v| f.write_str(v.get_name()))
    }
}

const HEADERS: [&str; 5] = ["app", "change", "what", "A", "B"];

/// The rows of the change table, foreign text escaped by `esc`.
fn rows(d: &AppDiff, esc: fn(&str) -> String) -> Vec<[String; 5]> {
    let app = esc(&d.app);
    let mut out = Vec::new();
    let mut row = |change: &str, what: String, a: String, b: String| {
        out.push([app.clone(), change.to_string(), what, a, b]);
    };
    if d.status != AppStatus::Changed {
        row(&format!("app {}", <&str>::from(d.status)), String::new(), String::new(), String::new());
    }
    for (kind, c) in [("country", &d.countries), ("hostname", &d.hostnames)] {
        for x in &c.new {
            row(&format!("new {kind}"), esc(x), String::new(), String::new());
        }
        for x in &c.gone {
            row(&format!("gone {kind}"), esc(x), String::new(), String::new());
        }
    }
    let asn = |a: &super::Asn| match &a.as_org {
        Some(org) => format!("AS{} ({})", a.asn, esc(org)),
        None => format!("AS{}", a.asn),
    };
    for a in &d.asns.new {
        row("new ASN", asn(a), String::new(), String::new());
    }
    for a in &d.asns.gone {
        row("gone ASN", asn(a), String::new(), String::new());
    }
    let ep = |e: &super::EndpointKey| {
        let ip = if e.ip.contains(':') { format!("[{}]", e.ip) } else { e.ip.clone() };
        let where_ = e.port.map_or_else(|| format!("{} (inbound)", e.ip), |p| format!("{ip}:{p}"));
        format!("{} {}", esc(&where_), esc(&e.protocol))
    };
    for e in &d.endpoints.new {
        row("new endpoint", ep(e), String::new(), String::new());
    }
    for e in &d.endpoints.gone {
        row("gone endpoint", ep(e), String::new(), String::new());
    }
    for b in &d.bytes {
        let pct = b.change_pct.map_or_else(|| "bytes".to_string(), |p| format!("bytes {p:+.2} %"));
        row(&pct, esc(&b.key), b.a.to_string(), b.b.to_string());
    }
    out
}

impl Diff {
    /// Writes the diff in `format`. Same diff, same bytes.
    ///
    /// # Errors
    /// When writing to `out` fails.
    pub fn render(&self, format: DiffFormat, out: &mut impl Write) -> Result<(), Error> {
        let io = |source| Error::Write { format, source };
        let summary = |esc: fn(&str) -> String| {
            format!(
                "A: {} ({}). B: {} ({}). Byte changes from {} %. {}",
                esc(&self.a.label),
                esc(&self.a.period),
                esc(&self.b.label),
                esc(&self.b.period),
                self.threshold_pct,
                if self.anything_new { "B has something new." } else { "Nothing new in B." }
            )
        };
        match format {
            DiffFormat::Json => {
                escape::json::to_writer_pretty(&mut *out, self).map_err(Error::Json)?;
                writeln!(out).map_err(io)
            }
            DiffFormat::Markdown => {
                let rows: Vec<_> = self.apps.iter().flat_map(|d| rows(d, escape::markdown)).collect();
                let mut text = format!("# Diff\n\n{}\n", summary(escape::markdown));
                if !rows.is_empty() {
                    text.push_str(&format!("\n| {} |\n|{}\n", HEADERS.join(" | "), " --- |".repeat(HEADERS.len())));
                    for r in rows {
                        text.push_str(&format!("| {} |\n", r.join(" | ")));
                    }
                }
                out.write_all(text.as_bytes()).map_err(io)
            }
            DiffFormat::Table => {
                let rows: Vec<_> = self.apps.iter().flat_map(|d| rows(d, escape::terminal)).collect();
                writeln!(out, "{}", summary(escape::terminal)).map_err(io)?;
                if rows.is_empty() {
                    return Ok(());
                }
                let mut table = Table::new();
                table.load_style(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Disabled);
                table.set_header(HEADERS);
                for r in rows {
                    table.add_row(r);
                }
                writeln!(out, "{table}").map_err(io)
            }
        }
    }
}
