//! `monitor report merge`: weekly JSON exports of several machines (offline labs) → one fleet
//! report in the same schema, figures summed per app, country, ASN and endpoint, with per-host
//! columns (`hosts`, and `by_host` in every app; fields added, never changed: SCHEMA.md).
//!
//! Works on the JSON documents, not on [`Report`](super::Report): inputs come from other machines
//! and other builds. Every input must carry the same schema version and the same period; a host
//! may appear once (an input that is itself a merge brings its `hosts`). Percentages are
//! recomputed from the summed bytes; `endpoints_total` is the sum of the hosts' counts (an
//! endpoint several hosts talk to is counted once per host).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

mod services;

/// Merge errors (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a report of this schema.
    #[error("`{host}` is not a monitor report (no `schema` field)")]
    NotAReport {
        /// Host label of the input.
        host: String,
    },
    /// Schema versions differ.
    #[error("`{host}` has schema {found}, the first input has {expected}: merge exports of one schema version")]
    Schema {
        /// Host label of the input.
        host: String,
        /// Its schema.
        found: String,
        /// The first input's.
        expected: String,
    },
    /// Periods differ.
    #[error("`{host}` reports {found}, the first input {expected}: merge exports of one period")]
    Period {
        /// Host label of the input.
        host: String,
        /// Its period label.
        found: String,
        /// The first input's.
        expected: String,
    },
    /// The same export given twice (under two labels, or a copy of one file).
    #[error("`{host}` is the same export as `{first}`: its figures would count twice")]
    Copy {
        /// Host label of the later input.
        host: String,
        /// The earlier one's.
        first: String,
    },
    /// A host appears twice.
    #[error("host `{host}` appears in more than one input")]
    Overlap {
        /// The host.
        host: String,
    },
    /// A field of the schema holds a value of the wrong kind (a damaged or hand-edited export).
    #[error("`{host}` does not follow the report schema: {reason}")]
    Invalid {
        /// Host label of the input.
        host: String,
        /// What the schema could not read.
        reason: String,
    },
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
}

const TRAFFIC: [&str; 6] = ["payload_tx", "payload_rx", "wire_tx", "wire_rx", "packets_tx", "packets_rx"];

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn add_fields(into: &mut Value, from: &Value, fields: &[&str]) {
    for f in fields {
        let sum = u(&into[*f]) + u(&from[*f]);
        into[*f] = json!(sum);
    }
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    #[expect(clippy::cast_precision_loss, reason = "percentages to 2 decimals")]
    let p = part as f64 * 100.0 / whole as f64;
    (p * 100.0).round() / 100.0
}

fn payload(traffic: &Value) -> u64 {
    u(&traffic["payload_tx"]) + u(&traffic["payload_rx"])
}

/// Merges a list of objects keyed by `key` (summing `traffic` and the `sum` fields).
fn merge_list(into: &mut Vec<Value>, from: &[Value], key: impl Fn(&Value) -> String, sum: &[&str]) {
    for item in from {
        let k = key(item);
        match into.iter_mut().find(|i| key(i) == k) {
            Some(existing) => {
                if item.get("traffic").is_some() {
                    add_fields(&mut existing["traffic"], &item["traffic"], &TRAFFIC);
                }
                add_fields(existing, item, sum);
            }
            None => into.push(item.clone()),
        }
    }
}

fn array(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// An app's per-host traffic: its `by_host` if the input is a merge, else one entry for `label`.
fn by_host_of(app: &Value, label: &str) -> Vec<Value> {
    app.get("by_host")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_else(|| vec![json!({"host": label, "traffic": app["traffic"], "flows": app["flows"]})])
}

/// Host labels and totals of an input (its `hosts` if it is a merge, else `label`).
fn hosts_of(report: &Value, label: &str) -> Vec<Value> {
    match report.get("hosts").and_then(Value::as_array) {
        Some(hosts) => hosts.clone(),
        None => {
            let apps: Vec<Value> = array(&report["apps"])
                .iter()
                .map(|a| json!({"app": a["app"], "traffic": a["traffic"], "flows": a["flows"]}))
                .collect();
            vec![json!({"host": label, "totals": report["totals"], "apps": apps})]
        }
    }
}

/// An input's completeness notes, each prefixed with its host (a merged input's already are).
fn host_notes(label: &str, report: &Value) -> Vec<Value> {
    let notes = array(&report["completeness"]["notes"]);
    if report.get("hosts").is_some() {
        return notes;
    }
    notes.into_iter().map(|n| json!(format!("{label}: {}", n.as_str().unwrap_or("")))).collect()
}

/// One schema and one period across `inputs` (the first input's).
fn same_schema_and_period(inputs: &[(String, Value)]) -> Result<(), Error> {
    let (first_label, first) = inputs.first().ok_or(Error::Empty)?;
    let schema = |host: &str, r: &Value| {
        r["schema"].as_str().map(str::to_owned).ok_or_else(|| Error::NotAReport { host: host.to_owned() })
    };
    let expected_schema = schema(first_label, first)?;
    let expected_period = first["period"]["label"].as_str().unwrap_or_default().to_owned();
    for (label, r) in inputs {
        let found = schema(label, r)?;
        if found != expected_schema {
            return Err(Error::Schema { host: label.clone(), found, expected: expected_schema });
        }
        let period = r["period"]["label"].as_str().unwrap_or_default();
        if period != expected_period {
            return Err(Error::Period { host: label.clone(), found: period.to_owned(), expected: expected_period });
        }
        // One ISO week cut in two time zones has one label and two windows (up to a day apart):
        // the bounds must agree too.
        // (An input without them is refused by the schema check that follows.)
        let bounds = |r: &Value| (r["period"]["since"].clone(), r["period"]["until"].clone());
        let known = |r: &Value| bounds(r).0.is_string() && bounds(r).1.is_string();
        if known(r) && known(first) && bounds(r) != bounds(first) {
            let window = |r: &Value| {
                let (since, until) = bounds(r);
                format!(
                    "{period} as {}/{} ({})",
                    since.as_str().unwrap_or("?"),
                    until.as_str().unwrap_or("?"),
                    r["period"]["time_zone"].as_str().unwrap_or("?")
                )
            };
            return Err(Error::Period { host: label.clone(), found: window(r), expected: window(first) });
        }
    }
    Ok(())
}

/// Two inputs that are the same document (one export given twice, or copied under another
/// name): its figures would count twice. Exports carry no machine identity, so an identical
/// document is the one sign.
fn no_copies(inputs: &[(String, Value)]) -> Result<(), Error> {
    // Two machines with no traffic in the week write the same document: not a copy.
    let idle = |r: &Value| r["apps"].as_array().is_none_or(Vec::is_empty);
    for (i, (label, r)) in inputs.iter().enumerate() {
        if idle(r) {
            continue;
        }
        if let Some((first, _)) = inputs[..i].iter().find(|(_, other)| other == r) {
            return Err(Error::Copy { host: label.clone(), first: first.clone() });
        }
    }
    Ok(())
}

/// Merges exports read from files (`monitor report merge`): as [`merge`], after each input has
/// been read by the typed report and is merged as the typed report writes it. The merge works
/// on the JSON documents and adds fields into the schema's objects, which a damaged or
/// hand-edited export may hold as other kinds (serde reads a struct from an array too).
///
/// # Errors
/// As [`merge`]; an input that does not follow the report schema.
pub fn merge_exports(inputs: &[(String, Value)]) -> Result<Value, Error> {
    same_schema_and_period(inputs)?;
    no_copies(inputs)?;
    let mut typed = Vec::with_capacity(inputs.len());
    for (label, r) in inputs {
        let invalid = |e: serde_json::Error| Error::Invalid { host: label.clone(), reason: e.to_string() };
        let report = super::Report::from_json(r.clone()).map_err(invalid)?;
        typed.push((label.clone(), serde_json::to_value(report).map_err(invalid)?));
    }
    merge(&typed)
}

/// Merges `(host label, report)` pairs built by this program (per-host reports of a fleet):
/// exports read from files go through [`merge_exports`].
///
/// # Errors
/// Inputs of different schemas or periods, a host that appears twice, no input.
pub fn merge(inputs: &[(String, Value)]) -> Result<Value, Error> {
    same_schema_and_period(inputs)?;
    let ((first_label, first), rest) = inputs.split_first().ok_or(Error::Empty)?;
    let mut hosts: Vec<Value> = Vec::new();
    for (label, r) in inputs {
        for h in hosts_of(r, label) {
            if hosts.iter().any(|k| k["host"] == h["host"]) {
                return Err(Error::Overlap { host: h["host"].as_str().unwrap_or_default().to_owned() });
            }
            hosts.push(h);
        }
    }
    let mut out = first.clone();
    out["generated_at"] = Value::Null;
    let mut apps: Vec<Value> = array(&first["apps"]);
    for a in &mut apps {
        a["by_host"] = json!(by_host_of(a, first_label));
    }
    let mut databases = array(&first["databases"]);
    let mut services = array(&first["services"]);
    let mut notes: Vec<Value> = host_notes(first_label, first);
    for (label, r) in rest {
        add_fields(&mut out["totals"], &r["totals"], &TRAFFIC);
        for a in array(&r["apps"]) {
            let name = a["app"].clone();
            let Some(existing) = apps.iter_mut().find(|x| x["app"] == name) else {
                let mut new = a.clone();
                new["by_host"] = json!(by_host_of(&a, label));
                apps.push(new);
                continue;
            };
            merge_app(existing, &a);
            if let Some(by_host) = existing["by_host"].as_array_mut() {
                by_host.extend(by_host_of(&a, label));
            }
        }
        services::merge(&mut services, &array(&r["services"]));
        let complete = out["timeline"]["complete"].as_bool().unwrap_or(false) && r["timeline"]["complete"] == true;
        if out["timeline"].is_object() {
            out["timeline"]["complete"] = json!(complete);
        }
        merge_list(
            &mut databases,
            &array(&r["databases"]),
            |d| format!("{}/{}/{}", d["role"], d["database_type"], d["build_epoch"]),
            &["payload_bytes"],
        );
        let c = &r["completeness"];
        add_fields(
            &mut out["completeness"],
            c,
            &[
                "stats_rows",
                "runs",
                "restarts",
                "unwatched_ms",
                "events_submitted",
                "events_lost",
                "decode_errors",
                "storage_failures",
                "unattributed_bytes",
                "unattributed_packets",
                "attributed_wire_bytes",
                "incomplete_flows",
                "journal_dropped_records",
                "journal_dropped_payload_bytes",
            ],
        );
        for (field, pick_min) in [("data_since", true), ("data_until", false), ("endpoints_purged_before", false)] {
            let (a, b) = (out["completeness"][field].as_str(), c[field].as_str());
            let pick = match (a, b) {
                (Some(a), Some(b)) => Some(if (b < a) == pick_min { b } else { a }.to_owned()),
                (a, b) => a.or(b).map(str::to_owned),
            };
            out["completeness"][field] = pick.map_or(Value::Null, Value::String);
        }
        notes.extend(host_notes(label, r));
        let applies = out["attribution"]["applies"].as_bool().unwrap_or(false) || r["attribution"]["applies"] == true;
        out["attribution"]["applies"] = json!(applies);
    }
    for a in &mut apps {
        recompute_app(a);
        // Per-host evidence a sum cannot carry (each host's own; `monitor verify` per host).
        if let Some(a) = a.as_object_mut() {
            for per_host in ["destinations", "consensus", "plausibility"] {
                a.remove(per_host);
            }
        }
    }
    services::recompute(&mut services, &apps);
    apps.sort_by(|a, b| {
        payload(&b["traffic"])
            .cmp(&payload(&a["traffic"]))
            .then_with(|| a["app"].to_string().cmp(&b["app"].to_string()))
    });
    let completeness = &mut out["completeness"];
    let (un, at) = (u(&completeness["unattributed_bytes"]), u(&completeness["attributed_wire_bytes"]));
    completeness["unattributed_share_pct"] =
        if u(&completeness["stats_rows"]) == 0 { Value::Null } else { json!(pct(un, un + at)) };
    completeness["notes"] = json!(notes);
    out["apps"] = json!(apps);
    out["databases"] = json!(databases);
    out["services"] = json!(services);
    out["hosts"] = json!(hosts);
    Ok(out)
}

fn merge_app(into: &mut Value, from: &Value) {
    add_fields(&mut into["traffic"], &from["traffic"], &TRAFFIC);
    add_fields(into, from, &["flows", "incomplete_flows", "endpoints_total"]);
    for list in ["by_country", "by_asn"] {
        let mut merged = array(&into[list]);
        merge_list(&mut merged, &array(&from[list]), |s| format!("{}/{}", s["kind"], s["key"]), &["flows"]);
        into[list] = json!(merged);
    }
    let mut endpoints = array(&into["top_endpoints"]);
    merge_list(
        &mut endpoints,
        &array(&from["top_endpoints"]),
        |e| format!("{}/{}/{}", e["ip"], e["port"], e["protocol"]),
        &["payload_tx", "payload_rx", "wire_tx", "wire_rx", "flows"],
    );
    into["top_endpoints"] = json!(endpoints);
    let mut sources = array(&into["payload_sources"]);
    merge_list(&mut sources, &array(&from["payload_sources"]), |s| s["payload_source"].to_string(), &["payload_bytes"]);
    into["payload_sources"] = json!(sources);
    add_fields(&mut into["unknown"], &from["unknown"], &["country_bytes", "asn_bytes"]);
    let nd = &mut into["new_destinations"];
    add_fields(nd, &from["new_destinations"], &["endpoints"]);
    let union = |a: &Value, b: &Value| -> Vec<Value> {
        let mut all: BTreeMap<String, Value> = BTreeMap::new();
        for v in array(a).into_iter().chain(array(b)) {
            all.insert(v.to_string(), v);
        }
        all.into_values().collect()
    };
    nd["countries"] = json!(union(&nd["countries"], &from["new_destinations"]["countries"]));
    nd["asns"] = json!(union(&nd["asns"], &from["new_destinations"]["asns"]));
    let mut timeline = array(&into["timeline"]);
    merge_list(&mut timeline, &array(&from["timeline"]), |b| b["since"].to_string(), &["payload_tx", "payload_rx"]);
    timeline.sort_by(|a, b| a["since"].as_str().cmp(&b["since"].as_str()));
    into["timeline"] = json!(timeline);
}

/// Recomputes an app's percentages and orders from its summed bytes.
fn recompute_app(a: &mut Value) {
    let t = a["traffic"].clone();
    let (whole, tx, rx) = (payload(&t), u(&t["payload_tx"]), u(&t["payload_rx"]));
    let by_payload = |x: &Value, y: &Value| {
        let (px, py) = (payload(&x["traffic"]), payload(&y["traffic"]));
        py.cmp(&px).then_with(|| x["key"].to_string().cmp(&y["key"].to_string()))
    };
    for list in ["by_country", "by_asn"] {
        let mut shares = array(&a[list]);
        for s in &mut shares {
            let st = s["traffic"].clone();
            s["share_pct"] = json!(pct(payload(&st), whole));
            s["tx_share_pct"] = json!(pct(u(&st["payload_tx"]), tx));
            s["rx_share_pct"] = json!(pct(u(&st["payload_rx"]), rx));
        }
        shares.sort_by(by_payload);
        a[list] = json!(shares);
    }
    let mut endpoints = array(&a["top_endpoints"]);
    for e in &mut endpoints {
        e["share_pct"] = json!(pct(u(&e["payload_tx"]) + u(&e["payload_rx"]), whole));
    }
    endpoints.sort_by_key(|e| std::cmp::Reverse(u(&e["payload_tx"]) + u(&e["payload_rx"])));
    a["top_endpoints"] = json!(endpoints);
    let mut sources = array(&a["payload_sources"]);
    for s in &mut sources {
        s["share_pct"] = json!(pct(u(&s["payload_bytes"]), whole));
    }
    a["payload_sources"] = json!(sources);
    let unknown: &mut Map<String, Value> = match a["unknown"].as_object_mut() {
        Some(m) => m,
        None => return,
    };
    let (c, n) = (unknown.get("country_bytes").map_or(0, u), unknown.get("asn_bytes").map_or(0, u));
    unknown.insert("country_share_pct".into(), json!(pct(c, whole)));
    unknown.insert("asn_share_pct".into(), json!(pct(n, whole)));
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
