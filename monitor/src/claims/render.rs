//! Presenting [`Verdicts`]: JSON (schema [`VERDICTS_SCHEMA`](super::VERDICTS_SCHEMA)), and a
//! document (per claim: verdict, reasons, bytes, violating destinations with their evidence)
//! as Markdown or terminal tables. Foreign text (claim names and descriptions, app names,
//! executables, organisations, hostnames) is escaped for the format.

use std::io::Write;

use super::{ClaimVerdict, Error, Verdicts};
use crate::{
    escape,
    report::{
        Format,
        render::{Block, write_markdown, write_table},
    },
};

type Escape = fn(&str) -> String;

impl Verdicts {
    /// Writes the verdicts in `format` (`csv` and `html` are written as the table document;
    /// `monitor verify` refuses them).
    ///
    /// # Errors
    /// When writing fails.
    pub fn render(&self, format: Format, out: &mut impl Write) -> Result<(), Error> {
        let io = |source| Error::Write { format: format.name(), source };
        match format {
            Format::Json => {
                escape::json::to_writer_pretty(&mut *out, self).map_err(|e| io(e.into()))?;
                writeln!(out).map_err(io)
            }
            Format::Markdown => write_markdown(&document(self, escape::markdown), out).map_err(io),
            Format::Table | Format::Csv | Format::Html => {
                write_table(&document(self, escape::terminal), out).map_err(io)
            }
        }
    }
}

/// 1234567 → "1,234,567".
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<&str>, esc: Escape) -> String {
    v.map_or_else(|| "-".into(), esc)
}

fn document(v: &Verdicts, esc: Escape) -> Vec<Block> {
    let p = &v.period;
    let mut d = vec![Block::Heading(1, format!("Claim verdicts {}", p.label))];
    let mut intro = format!("Period: {} to {} ({}). Schema {}.", p.since_local, p.until_local, p.time_zone, v.schema);
    if let Some(f) = &v.claims_file {
        intro.push_str(&format!(" Claims file {}.", esc(f)));
    }
    if let Some(t) = v.generated_at {
        intro.push_str(&format!(" Generated at {t}."));
    }
    d.push(Block::Para(intro));
    d.push(Block::Para(format!(
        "{} pass, {} fail, {} inconclusive. Events lost in the period: {}.",
        v.summary.pass, v.summary.fail, v.summary.inconclusive, v.lost_events
    )));
    let rows = v
        .claims
        .iter()
        .map(|c| {
            vec![
                esc(&c.claim),
                c.verdict.label().to_string(),
                c.direction.to_string(),
                grouped(c.bytes.satisfying),
                grouped(c.bytes.violating),
                grouped(c.bytes.unknown_country + c.bytes.unknown_asn + c.bytes.unnamed),
                grouped(c.bytes.exempt),
            ]
        })
        .collect();
    d.push(Block::Table {
        headers: vec!["Claim", "Verdict", "Bytes", "Satisfying", "Violating", "Unknown", "Exempt"],
        numeric: vec![false, false, false, true, true, true, true],
        rows,
    });
    for c in &v.claims {
        claim(&mut d, c, esc);
    }
    d
}

fn claim(d: &mut Vec<Block>, c: &ClaimVerdict, esc: Escape) {
    d.push(Block::Heading(2, format!("{}: {}", esc(&c.claim), c.verdict.label())));
    if let Some(text) = &c.description {
        d.push(Block::Para(esc(text)));
    }
    let apps: Vec<String> = c.apps.iter().map(|a| esc(&crate::escape::list_item(a))).collect();
    let b = &c.bytes;
    let mut facts = vec![
        format!("apps: {}", if apps.is_empty() { "none with traffic".into() } else { apps.join(", ") }),
        format!(
            "{} bytes: {} in all, {} satisfying, {} violating, {} exempt (not public)",
            c.direction,
            grouped(b.total),
            grouped(b.satisfying),
            grouped(b.violating),
            grouped(b.exempt)
        ),
        format!(
            "unknown: country {} ({} %), ASN {} ({} %), hostname {} ({} %)",
            grouped(b.unknown_country),
            c.unknown_country_pct,
            grouped(b.unknown_asn),
            c.unknown_asn_pct,
            grouped(b.unnamed),
            c.unnamed_pct
        ),
    ];
    if let Some(p) = c.min_share_pct {
        facts.push(format!("share to the min_share destinations: {p} %"));
    }
    if b.unidentified_violating > 0 {
        facts.push(format!(
            "violating bytes of processes whose executable is unknown: {}",
            grouped(b.unidentified_violating)
        ));
    }
    facts.extend(c.reasons.iter().map(|r| esc(r)));
    d.push(Block::List(facts));
    if c.violations.is_empty() {
        return;
    }
    let rows = c
        .violations
        .iter()
        .map(|v| {
            let x = &v.destination;
            let db = |a: Option<&crate::report::DatabaseAnswer>| {
                a.map_or_else(|| "-".into(), |a| format!("{} {}", esc(&a.database_type), a.build_date))
            };
            let procs: Vec<String> = x
                .processes
                .iter()
                .map(|p| {
                    format!(
                        "{} pid {} user {}",
                        opt(p.exe.as_deref(), esc),
                        p.pid,
                        p.user.as_deref().map_or_else(|| p.uid.to_string(), esc)
                    )
                })
                .collect();
            vec![
                esc(&x.ip),
                opt(x.hostname.as_deref(), esc),
                esc(&v.app),
                v.rule.to_string(),
                opt(x.country.as_deref(), esc),
                x.asn.map_or_else(|| "-".into(), |a| format!("AS{a} {}", opt(x.as_org.as_deref(), esc))),
                format!("{}; {}", db(x.country_db.as_ref()), db(x.asn_db.as_ref())),
                grouped(x.payload_tx),
                grouped(x.payload_rx),
                grouped(x.flows),
                x.first_seen.to_string(),
                x.last_seen.to_string(),
                procs.join("; "),
            ]
        })
        .collect();
    d.push(Block::Table {
        headers: vec![
            "Destination",
            "Hostname",
            "App",
            "Rule",
            "Country",
            "ASN",
            "Databases",
            "Up",
            "Down",
            "Flows",
            "First seen",
            "Last seen",
            "Processes",
        ],
        numeric: vec![false, false, false, false, false, false, false, true, true, true, false, false, false],
        rows,
    });
}
