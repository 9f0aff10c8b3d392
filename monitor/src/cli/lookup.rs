//! `monitor lookup`: what the geolocation databases say for an address (with the database and
//! build that answered), and for a host name the addresses this device's apps reached under it,
//! per app, with first and last seen (from the journal).

use std::{fmt::Write as _, net::IpAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Args;
use monitor::{
    enrich::{Consensus, DbInfo, Destination, Enricher, Scope},
    escape::Terminal,
    journal::{HostAddressRow, JournalReader, TimeRange},
    names::Hostname,
    residency::{self, Plausibility},
    settings::Settings,
};
use serde::Serialize;

use super::{
    exit,
    report::{UsageError, open_journal},
};

/// `monitor lookup`.
#[derive(Debug, Args)]
pub struct LookupArgs {
    /// Addresses (IPv4 or IPv6) and host names to explain. Example: monitor lookup 203.0.113.7 api.example.com
    #[arg(required = true, value_name = "ADDRESS|HOSTNAME")]
    pub targets: Vec<String>,
    /// JSON output: one object, the databases and an answer per target. Example: --json
    #[arg(long)]
    pub json: bool,
    /// Journal file for host names (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// The answer for one target.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Answer {
    /// An address: the databases' answer (every country database's, with their consensus) and,
    /// with `[device] location` and an RTT measured to it in the journal, its plausibility.
    Address {
        query: String,
        destination: Destination,
        #[serde(skip_serializing_if = "Option::is_none")]
        plausibility: Option<Plausibility>,
    },
    /// A host name: where it was seen, each address with the databases' answer.
    /// `query` is the name looked for (lower case, ASCII form); `unicode`, the name as given
    /// when it was an internationalised one.
    Hostname {
        query: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        unicode: Option<String>,
        seen: Vec<Seen>,
    },
}

#[derive(Debug, Serialize)]
struct Seen {
    #[serde(flatten)]
    row: HostAddressRow,
    destination: Option<Destination>,
}

/// Prints the answers.
///
/// # Errors
/// [`UsageError`] (exit 2) when a target is neither an address nor a valid host name; journal
/// errors (exit 5) when a host name is asked and the journal cannot be read.
pub fn execute(args: LookupArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let LookupArgs { targets, json, journal } = args;
    let mut enricher = Enricher::open(&settings.geo).context("cannot open the geolocation databases")?;
    let databases = enricher.databases();
    let mut reader = None;
    let mut answers = Vec::new();
    for target in targets {
        if let Ok(ip) = target.parse::<IpAddr>() {
            let destination = enricher.lookup(ip);
            let plausibility = match (&settings.device.location, destination.country.as_deref()) {
                (Some(device), Some(country)) => {
                    if reader.is_none() {
                        // No journal: no measured RTT, so nothing to judge (the answer stands).
                        let path = journal.clone().unwrap_or_else(|| settings.journal.path.clone());
                        reader = JournalReader::open(&path).ok();
                    }
                    let all = TimeRange { since: jiff::Timestamp::MIN, until: jiff::Timestamp::MAX };
                    let rtt = reader.as_ref().map(|r| r.min_rtt_us(&ip.to_string(), all)).transpose()?.flatten();
                    rtt.and_then(|us| residency::plausibility(device, country, us).ok())
                }
                _ => None,
            };
            answers.push(Answer::Address { destination, plausibility, query: target });
            continue;
        }
        // `999.1.1.1`, `10.1`, `fe80::zz`: a mistyped address, not a host name (no top-level
        // domain is all digits, and host names have no colons).
        if target.contains(':')
            || target.rsplit('.').next().is_some_and(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()))
        {
            anyhow::bail!(UsageError(format!("`{}` is not a valid IP address", Terminal(&target))));
        }
        // An internationalised name is looked for in its ASCII form, the form DNS answers and
        // server names carry (`bücher.example` is `xn--bcher-kva.example`).
        let unicode = !target.is_ascii();
        let host = match Hostname::from_user(&target) {
            Ok(host) => host,
            Err(e) => anyhow::bail!(UsageError(format!(
                "`{}` is neither an IP address nor a valid host name ({e})",
                Terminal(&target)
            ))),
        };
        if reader.is_none() {
            let path = journal.clone().unwrap_or_else(|| settings.journal.path.clone());
            reader = Some(open_journal(&path)?);
        }
        let Some(r) = reader.as_ref() else { continue };
        let rows = r.host_addresses(host.as_str())?;
        let seen = rows
            .into_iter()
            .map(|row| {
                let destination = row.ip.parse::<IpAddr>().ok().map(|ip| enricher.lookup(ip));
                Seen { row, destination }
            })
            .collect();
        answers.push(Answer::Hostname { query: host.as_str().to_owned(), unicode: unicode.then_some(target), seen });
    }
    let mut out = String::new();
    if json {
        writeln!(out, "{}", serde_json::json!({ "databases": databases, "answers": answers }))?;
    } else {
        text(&mut out, &answers, &databases)?;
    }
    super::write_stdout(out.as_bytes()).context("cannot write the answers")?;
    Ok(ExitCode::from(exit::OK))
}

fn destination(d: &Destination) -> String {
    let db = |r: Option<&monitor::enrich::DbRef>| {
        r.map_or_else(
            || "no database".to_owned(),
            |r| format!("{} built {}", Terminal(&r.database_type), r.build_epoch),
        )
    };
    let scope = serde_json::to_value(d.scope).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    if d.scope != Scope::Public {
        // Never looked up (README: private scopes are neither a country nor unknown).
        return format!("scope {scope}, not looked up (only public addresses have a country and a network owner)");
    }
    format!(
        "scope {scope}, country {} ({}), AS{} {} ({})",
        d.country.as_deref().map_or_else(|| "unknown".to_owned(), |c| Terminal(c).to_string()),
        db(d.country_db.as_ref()),
        d.asn.map_or_else(|| "?".to_owned(), |a| a.to_string()),
        d.as_org.as_deref().map_or_else(|| "unknown".to_owned(), |o| Terminal(o).to_string()),
        db(d.asn_db.as_ref()),
    )
}

fn text(out: &mut String, answers: &[Answer], databases: &[DbInfo]) -> std::fmt::Result {
    for db in databases {
        writeln!(
            out,
            "database  {} {} ({}, {} days old)",
            db.role,
            db.path.display(),
            Terminal(&db.db.database_type),
            db.age_days
        )?;
    }
    for a in answers {
        match a {
            Answer::Address { query, destination: d, plausibility } => {
                writeln!(out, "{query}: {}", destination(d))?;
                if let Some(c) = d.consensus {
                    let each: Vec<String> = d
                        .answers
                        .iter()
                        .map(|a| format!("{} {}", Terminal(&a.label), a.country.as_deref().map_or("none", |c| c)))
                        .collect();
                    let word = match c {
                        Consensus::Agree => "agree",
                        Consensus::Disagree => "DISAGREE",
                        Consensus::Partial if d.answers.iter().all(|a| a.country.is_none()) => "have no answer",
                        Consensus::Partial => "partly answer",
                    };
                    writeln!(out, "{query}: the country databases {word}: {}", each.join(", "))?;
                }
                if let Some(p) = plausibility {
                    let verdict = match p.verdict {
                        residency::Verdict::Plausible => "plausible",
                        residency::Verdict::Implausible => "IMPLAUSIBLE (likely an anycast/CDN edge near the device)",
                    };
                    writeln!(
                        out,
                        "{query}: {verdict}: min RTT {:.3} ms reaches {:.1} km; the country is at least {:.0} km away",
                        f64::from(p.min_rtt_us) / 1000.0,
                        p.bound_km,
                        p.distance_km
                    )?;
                }
            }
            Answer::Hostname { query, unicode, seen } => {
                // The name as given first, with the ASCII form that was looked for.
                let query = match unicode {
                    Some(given) => format!("{} ({query})", Terminal(given)),
                    None => query.clone(),
                };
                if seen.is_empty() {
                    writeln!(out, "{query}: not seen in the journal")?;
                }
                for s in seen {
                    let r = &s.row;
                    writeln!(
                        out,
                        "{query}: app {} reached {} ({}), {} flows, {} payload bytes, first {} last {}{}",
                        Terminal(&r.app),
                        r.ip,
                        r.name_source.as_deref().unwrap_or("-"),
                        r.flows,
                        r.payload_bytes,
                        r.first_seen,
                        r.last_seen,
                        s.destination.as_ref().map_or_else(String::new, |d| format!("; {}", destination(d)))
                    )?;
                }
            }
        }
    }
    Ok(())
}
