//! `monitor diff`: what changed per app between two reports (two sessions, two weeks, or two
//! exported report files): new and gone countries, ASNs, hostnames (when the reports carry them)
//! and endpoints, and byte changes beyond a threshold.
//!
//! Works on the reports' JSON form (schema `monitor.report/1`), so a report built from the
//! journal and an exported file are compared the same way. Reads nothing else; lists are
//! sorted, so the same two reports give the same bytes. The JSON form is schema [`SCHEMA`]
//! (documented in README.md, section *Diffs*).

mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

pub use render::DiffFormat;

/// Version tag of the JSON diff.
pub const SCHEMA: &str = "monitor.diff/1";

/// Default `--threshold`: byte changes of at least this many percent are listed.
pub const DEFAULT_THRESHOLD_PCT: f64 = 20.0;

/// Diff errors.
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A side is not a report of a schema this build understands.
    #[error("{side} is not a monitor report (expected schema `monitor.report/1`, found {found})")]
    NotReport { side: String, found: String },
    /// Writing the output failed.
    #[error("cannot write the {format} diff")]
    Write {
        format: DiffFormat,
        #[source]
        source: std::io::Error,
    },
    /// JSON serialisation failed.
    #[error("cannot write the json diff")]
    Json(#[source] serde_json::Error),
    /// A side's report lacks a figure or a name the diff needs (or has one of the wrong type).
    #[error("{side} is not a valid monitor report: {what} is missing or not {expected}")]
    Malformed { side: String, what: String, expected: &'static str },
}

/// Whether an app is in one report only or in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AppStatus {
    /// Only in B.
    New,
    /// Only in A.
    Gone,
    /// In both.
    Changed,
}

/// One side of a diff: its label (the argument) and the report's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Side {
    /// What was given: a session name, a week or a file.
    pub label: String,
    /// The report's period label.
    pub period: String,
}

/// An ASN with its organisation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Asn {
    /// Number.
    pub asn: u64,
    /// Organisation, when the report names it.
    pub as_org: Option<String>,
}

/// A remote endpoint.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct EndpointKey {
    /// Address.
    pub ip: String,
    /// Port (`None` for inbound flows).
    pub port: Option<u64>,
    /// Protocol.
    pub protocol: String,
}

/// Payload bytes (up + down) of something on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ByteChange {
    /// `total`, a country code or `AS<number>`.
    pub key: String,
    /// Bytes in A.
    pub a: u64,
    /// Bytes in B.
    pub b: u64,
    /// (B − A) / A in percent, 2 decimals; `None` when A is 0.
    pub change_pct: Option<f64>,
}

/// Added and removed items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changes<T> {
    /// In B, not in A.
    pub new: Vec<T>,
    /// In A, not in B.
    pub gone: Vec<T>,
}

impl<T: Ord + Clone> Changes<T> {
    fn of(a: &BTreeSet<T>, b: &BTreeSet<T>) -> Self {
        Self { new: b.difference(a).cloned().collect(), gone: a.difference(b).cloned().collect() }
    }

    fn is_empty(&self) -> bool {
        self.new.is_empty() && self.gone.is_empty()
    }
}

/// What changed for one app.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppDiff {
    /// App name.
    pub app: String,
    /// In B only, in A only, or in both.
    pub status: AppStatus,
    /// Countries (public addresses).
    pub countries: Changes<String>,
    /// ASNs.
    pub asns: Changes<Asn>,
    /// Hostnames (empty when the reports carry none).
    pub hostnames: Changes<String>,
    /// Remote endpoints.
    pub endpoints: Changes<EndpointKey>,
    /// Payload changes of at least the threshold: the app's total, then per country and ASN
    /// present on both sides.
    pub bytes: Vec<ByteChange>,
}

/// The diff of two reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// The older side.
    pub a: Side,
    /// The newer side.
    pub b: Side,
    /// Byte changes listed from this percentage on.
    pub threshold_pct: f64,
    /// Whether B has anything A lacks: an app, country, ASN, hostname or endpoint (the exit code).
    pub anything_new: bool,
    /// Apps with a change, by name.
    pub apps: Vec<AppDiff>,
}

/// What one app of one report has.
#[derive(Default)]
struct Facts {
    payload: u64,
    countries: BTreeMap<String, u64>,
    asns: BTreeMap<u64, (Option<String>, u64)>,
    hostnames: BTreeSet<String>,
    endpoints: BTreeSet<EndpointKey>,
}

/// Reads the figures and names of one side's report, refusing what lacks them: a value the
/// diff would otherwise take as 0 or skip (a hand-edited or truncated file) is an error.
struct Reader<'a> {
    side: &'a str,
}

impl Reader<'_> {
    fn malformed(&self, what: &str, expected: &'static str) -> Error {
        Error::Malformed { side: self.side.to_string(), what: what.to_string(), expected }
    }

    /// Payload up + down of a `traffic` object at `at`.
    fn payload(&self, v: &Value, at: &str) -> Result<u64, Error> {
        let field = |name: &str| {
            v[name].as_u64().ok_or_else(|| self.malformed(&format!("{at}.traffic.{name}"), "a byte count"))
        };
        Ok(field("payload_tx")?.saturating_add(field("payload_rx")?))
    }

    fn text<'v>(&self, v: &'v Value, what: &str) -> Result<&'v str, Error> {
        v.as_str().ok_or_else(|| self.malformed(what, "a string"))
    }

    fn list<'v>(&self, v: &'v Value, what: &str) -> Result<&'v [Value], Error> {
        match v {
            // Sections a report of an older build lacks count as empty.
            Value::Null => Ok(&[]),
            Value::Array(a) => Ok(a),
            _ => Err(self.malformed(what, "a list")),
        }
    }
}

fn hostname(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("hostname").or_else(|| o.get("name")).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// Per app, the facts of `report` (a `monitor.report/1` JSON document).
fn facts(report: &Value, side: &str) -> Result<BTreeMap<String, Facts>, Error> {
    if report["schema"] != "monitor.report/1" {
        return Err(Error::NotReport { side: side.to_string(), found: report["schema"].to_string() });
    }
    let r = Reader { side };
    let mut apps = BTreeMap::new();
    let Some(list) = report["apps"].as_array() else { return Err(r.malformed("apps", "a list")) };
    for (i, app) in list.iter().enumerate() {
        let at = format!("apps[{i}]");
        let name = r.text(&app["app"], &format!("{at}.app"))?;
        let mut f = Facts { payload: r.payload(&app["traffic"], &at)?, ..Facts::default() };
        for (j, s) in r.list(&app["by_country"], &format!("{at}.by_country"))?.iter().enumerate() {
            if let (Some("country"), Some(key)) = (s["kind"].as_str(), s["key"].as_str()) {
                *f.countries.entry(key.to_string()).or_default() +=
                    r.payload(&s["traffic"], &format!("{at}.by_country[{j}]"))?;
            }
        }
        for (j, s) in r.list(&app["by_asn"], &format!("{at}.by_asn"))?.iter().enumerate() {
            if let (Some("asn"), Some(asn)) = (s["kind"].as_str(), s["asn"].as_u64()) {
                let bytes = r.payload(&s["traffic"], &format!("{at}.by_asn[{j}]"))?;
                let e = f.asns.entry(asn).or_insert((None, 0));
                e.0 = e.0.take().or_else(|| s["as_org"].as_str().map(str::to_string));
                e.1 += bytes;
            }
        }
        for h in r.list(&app["hostnames"], &format!("{at}.hostnames"))? {
            f.hostnames.extend(hostname(h));
        }
        for e in r.list(&app["top_endpoints"], &format!("{at}.top_endpoints"))? {
            for key in ["hostname", "hostnames"] {
                match &e[key] {
                    Value::Array(list) => f.hostnames.extend(list.iter().filter_map(hostname)),
                    other => f.hostnames.extend(hostname(other)),
                }
            }
            if let (Some(ip), Some(protocol)) = (e["ip"].as_str(), e["protocol"].as_str()) {
                f.endpoints.insert(EndpointKey {
                    ip: ip.to_string(),
                    port: e["port"].as_u64(),
                    protocol: protocol.to_string(),
                });
            }
        }
        if apps.insert(name.to_string(), f).is_some() {
            return Err(r.malformed(&format!("{at}.app (`{name}` twice)"), "a name listed once"));
        }
    }
    Ok(apps)
}

fn change(key: String, a: u64, b: u64, threshold: f64) -> Option<ByteChange> {
    if a == b {
        return None;
    }
    #[expect(clippy::cast_precision_loss, reason = "a percentage: 2 decimals are kept")]
    let pct = (a > 0).then(|| ((b as f64 - a as f64) / a as f64 * 10_000.0).round() / 100.0);
    pct.is_none_or(|p| p.abs() >= threshold).then_some(ByteChange { key, a, b, change_pct: pct })
}

impl Diff {
    /// Compares report `a` (older) with report `b`. `threshold_pct` ≥ 0.
    ///
    /// # Errors
    /// [`Error::NotReport`] when a side is not a `monitor.report/1` document.
    pub fn of(a: (&str, &Value), b: (&str, &Value), threshold_pct: f64) -> Result<Self, Error> {
        let (fa, fb) = (facts(a.1, a.0)?, facts(b.1, b.0)?);
        let side = |(label, v): (&str, &Value)| Side {
            label: label.to_string(),
            period: v["period"]["label"].as_str().unwrap_or_default().to_string(),
        };
        let empty = Facts::default();
        let names: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
        let mut apps = Vec::new();
        for name in names {
            let (x, y) = (fa.get(name), fb.get(name));
            let status = match (x, y) {
                (None, _) => AppStatus::New,
                (_, None) => AppStatus::Gone,
                _ => AppStatus::Changed,
            };
            let (x, y) = (x.unwrap_or(&empty), y.unwrap_or(&empty));
            let keys = |m: &BTreeMap<String, u64>| m.keys().cloned().collect::<BTreeSet<_>>();
            let asns = |m: &BTreeMap<u64, (Option<String>, u64)>| -> BTreeMap<u64, Asn> {
                m.iter().map(|(n, (org, _))| (*n, Asn { asn: *n, as_org: org.clone() })).collect()
            };
            let (ax, ay) = (asns(&x.asns), asns(&y.asns));
            let asn_changes = Changes {
                new: ay.iter().filter(|(n, _)| !ax.contains_key(n)).map(|(_, a)| a.clone()).collect(),
                gone: ax.iter().filter(|(n, _)| !ay.contains_key(n)).map(|(_, a)| a.clone()).collect(),
            };
            let mut bytes: Vec<ByteChange> = Vec::new();
            if status == AppStatus::Changed {
                bytes.extend(change("total".into(), x.payload, y.payload, threshold_pct));
                for (c, bx) in &x.countries {
                    if let Some(by) = y.countries.get(c) {
                        bytes.extend(change(c.clone(), *bx, *by, threshold_pct));
                    }
                }
                for (n, (_, bx)) in &x.asns {
                    if let Some((_, by)) = y.asns.get(n) {
                        bytes.extend(change(format!("AS{n}"), *bx, *by, threshold_pct));
                    }
                }
            }
            let d = AppDiff {
                app: name.clone(),
                status,
                countries: Changes::of(&keys(&x.countries), &keys(&y.countries)),
                asns: asn_changes,
                hostnames: Changes::of(&x.hostnames, &y.hostnames),
                endpoints: Changes::of(&x.endpoints, &y.endpoints),
                bytes,
            };
            let changed = status != AppStatus::Changed
                || !(d.countries.is_empty()
                    && d.asns.is_empty()
                    && d.hostnames.is_empty()
                    && d.endpoints.is_empty()
                    && d.bytes.is_empty());
            if changed {
                apps.push(d);
            }
        }
        let anything_new = apps.iter().any(|d| {
            d.status == AppStatus::New
                || !d.countries.new.is_empty()
                || !d.asns.new.is_empty()
                || !d.hostnames.new.is_empty()
                || !d.endpoints.new.is_empty()
        });
        Ok(Self { schema: SCHEMA, a: side(a), b: side(b), threshold_pct, anything_new, apps })
    }
}

#[cfg(test)]
mod tests;
