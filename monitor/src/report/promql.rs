//! `monitor report --prometheus URL`: the fleet report from the monitors' metrics in Prometheus
//! (or anything answering its HTTP query API: Thanos, Mimir, VictoriaMetrics).
//!
//! Payload bytes per host, app, country / ASN and direction over the period come from one PromQL
//! query each, evaluated at the period's end:
//!
//! ```text
//! sum by (<host>, app, country, direction) (sum_over_time((
//!   (((x - x offset 5m) >= 0) unless on(<host>) (changes(s[5m]) > 0)) or (x * 1)
//! )[<period>s:5m]))     x = monitor_app_payload_bytes_total{…}, s = monitor_process_start_time_seconds{…}
//! ```
//!
//! i.e. the counter's growth summed over 5-minute steps: it telescopes to exact totals, counts a
//! series' first value when it appears (a new app or country), and in a step where the host's
//! daemon restarted (its start time changed) takes the new process's counter, from 0, whatever
//! the old one had reached (a restarted counter above the old value is no difference to take).
//! `x * 1` drops the metric name as the difference does: a series new inside the period is one
//! series in every step (with the name in its first step only, Prometheus refused the query).
//! Unlike `increase()` it does not extrapolate. What it can miss: the traffic of the last step
//! (≤ 5 min) before a restart, and it attributes traffic to the step (5-minute resolution at the
//! period's edges). `config/`'s promtool test of [`growth_query`] checks both on known series. Wire bytes (`monitor_app_wire_bytes_total`) and
//! flows started (`monitor_app_flows_total`) per host and app come from the same growth sum.
//! Each host becomes a report of the journal's schema with those figures (no packets or
//! endpoints: the metrics never label addresses), then the hosts are combined by
//! [`merge`] (same `hosts` / `by_host`).

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use super::{ATTRIBUTION, Period, SCHEMA, ShareKind, build::period_info, merge};

/// The completeness note of a host's figures from Prometheus.
const NOTE: &str = "figures from Prometheus: payload bytes per country and ASN (monitor_app_payload_bytes_total, \
                    monitor_app_asn_payload_bytes_total), wire bytes (monitor_app_wire_bytes_total) and flows \
                    (monitor_app_flows_total); no packets, endpoints, services or completeness counters: the \
                    metrics never carry addresses, ports or host names (cardinality, privacy), so endpoints \
                    are only in each machine's journal";

/// Step of the growth sum (see the module doc).
const STEP: &str = "5m";
/// Longest wait for one query.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Errors of `monitor report --prometheus`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The HTTP request failed.
    #[error("query to {url} failed")]
    Http {
        /// The server.
        url: String,
        /// Why.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The answer is not a PromQL vector result.
    #[error("unexpected answer from {url}: {reason}")]
    Answer {
        /// The server.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// A label value is unusable in a selector.
    #[error("host `{0}` contains a quote or backslash")]
    Host(String),
    /// Combining the hosts failed.
    #[error(transparent)]
    Merge(#[from] merge::Error),
}

/// Where and what to ask.
#[derive(Debug, Clone)]
pub struct Source {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    pub url: String,
    /// Label that names a machine (`instance` by default).
    pub host_label: String,
    /// Only these machines (empty: all).
    pub hosts: Vec<String>,
}

impl Source {
    fn selector(&self, metric: &str) -> Result<String, Error> {
        if let Some(bad) = self.hosts.iter().find(|h| h.contains(['"', '\\'])) {
            return Err(Error::Host(bad.clone()));
        }
        if self.hosts.is_empty() {
            return Ok(metric.to_owned());
        }
        let alternatives: Vec<String> = self.hosts.iter().map(|h| regex_escape(h)).collect();
        Ok(format!("{metric}{{{}=~\"{}\"}}", self.host_label, alternatives.join("|")))
    }

    /// An instant query at `time` (Unix seconds); the result vector.
    fn query(&self, promql: &str, time: i64) -> Result<Vec<Value>, Error> {
        let url = format!("{}/api/v1/query", self.url.trim_end_matches('/'));
        // A refused query is an HTTP error status with Prometheus's reason in its JSON body: read
        // it, so the user sees the reason and not only "http status: 422".
        let agent: ureq::Agent =
            ureq::Agent::config_builder().timeout_global(Some(TIMEOUT)).http_status_as_error(false).build().into();
        let http = |source| Error::Http { url: url.clone(), source: Box::new(source) };
        let mut response =
            agent.get(&url).query("query", promql).query("time", time.to_string()).call().map_err(http)?;
        let status = response.status();
        let body = response.body_mut().read_to_string().map_err(http)?;
        let answer = |reason: String| Error::Answer { url: url.clone(), reason };
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            let start: String = body.chars().take(200).collect();
            answer(if status.is_success() {
                e.to_string()
            } else {
                format!("HTTP {status}: {}", crate::escape::terminal(&start))
            })
        })?;
        if v["status"] != "success" {
            return Err(answer(format!("{}: {}", v["errorType"], v["error"])));
        }
        v["data"]["result"].as_array().cloned().ok_or_else(|| answer("no result vector".into()))
    }
}

/// `.` and other regex metacharacters of a host name, escaped for `=~`.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push_str("\\\\");
        }
        out.push(c);
    }
    out
}

/// Growth of `metric` per (host, app, `by`…) over the period.
fn growth(src: &Source, period: &Period, metric: &str, by: &str) -> Result<Vec<Value>, Error> {
    let x = src.selector(metric)?;
    let start = src.selector("monitor_process_start_time_seconds")?;
    let seconds = period.until.duration_since(period.since).as_secs();
    src.query(&growth_query(&x, &start, &src.host_label, by, seconds), period.until.as_second())
}

/// The PromQL of the growth of the series `x` per (`host`, app, `by`…) over the `seconds` before
/// the query's time, with `start` the daemons' start-time gauges (see the module doc). The
/// subquery's range is a second short of the period: Prometheus 2 includes a step at the range's
/// start (3 does not), whose growth is of the 5 minutes before the period.
#[must_use]
pub fn growth_query(x: &str, start: &str, host: &str, by: &str, seconds: i64) -> String {
    let range = (seconds - 1).max(1);
    format!(
        "sum by ({host}, app{by}) (sum_over_time(((({x} - {x} offset {STEP}) >= 0) unless on({host}) \
         (changes({start}[{STEP}]) > 0) or ({x} * 1))[{range}s:{STEP}]))"
    )
}

/// A sample's value as a whole number (counters of bytes and flows).
fn whole(r: &Value) -> u64 {
    let v = r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "counts, rounded")]
    let v = v.round().max(0.0) as u64;
    v
}

/// One host's figures as they accumulate.
#[derive(Default)]
struct HostApps {
    /// app → (kind, key) → [tx, rx].
    apps: BTreeMap<String, BTreeMap<(&'static str, String), [u64; 2]>>,
    /// app → IP-layer bytes [tx, rx].
    wire: BTreeMap<String, [u64; 2]>,
    /// app → flows started.
    flows: BTreeMap<String, u64>,
}

/// The host and app labels of a sample.
fn host_app<'a>(src: &Source, r: &'a Value) -> Option<(&'a str, &'a str)> {
    Some((r["metric"][&src.host_label].as_str()?, r["metric"]["app"].as_str()?))
}

/// Wire bytes (`direction` rows) and flows per host and app.
fn add_wire_and_flows(hosts: &mut BTreeMap<String, HostApps>, src: &Source, wire: &[Value], flows: &[Value]) {
    for r in wire {
        let (Some((host, app)), Some(dir)) = (host_app(src, r), r["metric"]["direction"].as_str()) else { continue };
        let h = hosts.entry(host.to_owned()).or_default();
        h.apps.entry(app.to_owned()).or_default();
        h.wire.entry(app.to_owned()).or_default()[usize::from(dir == "rx")] += whole(r);
    }
    for r in flows {
        let Some((host, app)) = host_app(src, r) else { continue };
        let h = hosts.entry(host.to_owned()).or_default();
        h.apps.entry(app.to_owned()).or_default();
        *h.flows.entry(app.to_owned()).or_default() += whole(r);
    }
}

fn add(hosts: &mut BTreeMap<String, HostApps>, src: &Source, list: &'static str, key: &str, rows: &[Value]) {
    for r in rows {
        let m = &r["metric"];
        let (Some(host), Some(app), Some(k), Some(dir)) =
            (m[&src.host_label].as_str(), m["app"].as_str(), m[key].as_str(), m["direction"].as_str())
        else {
            continue;
        };
        let bytes = whole(r);
        let slot = hosts.entry(host.to_owned()).or_default().apps.entry(app.to_owned()).or_default();
        let v = slot.entry((list, k.to_owned())).or_default();
        v[usize::from(dir == "rx")] += bytes;
    }
}

/// The kind of a share key.
fn kind(list: &str, key: &str) -> ShareKind {
    match (list, key) {
        (_, "unknown") => ShareKind::Unknown,
        ("by_country", k) if k.len() == 2 && k.bytes().all(|b| b.is_ascii_uppercase()) => ShareKind::Country,
        ("by_asn", k) if k.starts_with("AS") && k[2..].bytes().all(|b| b.is_ascii_digit()) => ShareKind::Asn,
        _ => ShareKind::Scope,
    }
}

fn host_report(period: &Value, previous: &Value, figures: &HostApps) -> Value {
    let mut apps = Vec::new();
    let mut totals = [0_u64; 4];
    for (app, shares) in &figures.apps {
        let mut lists: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
        let mut traffic = [0_u64; 2];
        for ((list, key), [tx, rx]) in shares {
            if *list == "by_country" {
                traffic[0] += tx;
                traffic[1] += rx;
            }
            let kind = kind(list, key);
            let asn = key.strip_prefix("AS").and_then(|n| n.parse::<u32>().ok()).filter(|_| kind == ShareKind::Asn);
            lists.entry(list).or_default().push(json!({
                "kind": kind, "key": key,
                "country": (kind == ShareKind::Country).then_some(key), "asn": asn, "as_org": Value::Null,
                "traffic": {"payload_tx": tx, "payload_rx": rx, "wire_tx": 0, "wire_rx": 0, "packets_tx": 0, "packets_rx": 0},
                "flows": 0,
            }));
        }
        let wire = figures.wire.get(app).copied().unwrap_or_default();
        totals[0] += traffic[0];
        totals[1] += traffic[1];
        totals[2] += wire[0];
        totals[3] += wire[1];
        apps.push(json!({
            "app": app,
            "traffic": {"payload_tx": traffic[0], "payload_rx": traffic[1], "wire_tx": wire[0], "wire_rx": wire[1], "packets_tx": 0, "packets_rx": 0},
            "flows": figures.flows.get(app).copied().unwrap_or_default(), "incomplete_flows": 0,
            "by_country": lists.remove("by_country").unwrap_or_default(),
            "by_asn": lists.remove("by_asn").unwrap_or_default(),
            "unknown": {"country_bytes": 0, "asn_bytes": 0},
            "top_endpoints": [], "endpoints_total": 0, "payload_sources": [],
            "new_destinations": {"compared_with": previous["label"], "countries": [], "asns": [], "endpoints": 0,
                                 "endpoints_compared": false},
        }));
    }
    json!({
        "schema": SCHEMA,
        "period": period,
        "previous_period": previous,
        "app_filter": Value::Null,
        "generated_at": Value::Null,
        "totals": {"payload_tx": totals[0], "payload_rx": totals[1], "wire_tx": totals[2], "wire_rx": totals[3], "packets_tx": 0, "packets_rx": 0},
        "apps": apps,
        "completeness": {"notes": [NOTE]},
        "databases": [],
        "attribution": {"text": ATTRIBUTION, "applies": false},
    })
}

/// Figures without the host label cannot be given to a host: none with it (a mistyped
/// `--host-label`) is an error, some without it a warning with their bytes. They were left out
/// silently (found by an adversarial pass).
fn unlabelled<'a>(src: &Source, rows: impl Iterator<Item = &'a Value>) -> Result<(), Error> {
    let (mut with, mut without, mut bytes) = (0_usize, 0_usize, 0_u64);
    for r in rows {
        if r["metric"][&src.host_label].is_string() {
            with += 1;
        } else {
            without += 1;
            bytes += whole(r);
        }
    }
    if without > 0 && with == 0 {
        return Err(Error::Answer {
            url: src.url.clone(),
            reason: format!(
                "none of the {without} series carries the label `{}` that names a machine (see --host-label)",
                crate::escape::terminal(&src.host_label)
            ),
        });
    }
    if without > 0 {
        log::warn!(
            "{without} series without the label `{}` are left out of the fleet figures ({bytes} bytes and flows)",
            crate::escape::terminal(&src.host_label)
        );
    }
    Ok(())
}

/// The fleet report of `period` from Prometheus at `src`.
///
/// # Errors
/// A failed query or an unexpected answer.
pub fn fleet_report(src: &Source, period: &Period) -> Result<Value, Error> {
    let mut hosts: BTreeMap<String, HostApps> = BTreeMap::new();
    let by_country = growth(src, period, "monitor_app_payload_bytes_total", ", country, direction")?;
    add(&mut hosts, src, "by_country", "country", &by_country);
    let by_asn = growth(src, period, "monitor_app_asn_payload_bytes_total", ", asn, direction")?;
    add(&mut hosts, src, "by_asn", "asn", &by_asn);
    let wire = growth(src, period, "monitor_app_wire_bytes_total", ", direction")?;
    let flows = growth(src, period, "monitor_app_flows_total", "")?;
    unlabelled(src, [&by_country, &by_asn, &wire, &flows].into_iter().flatten())?;
    add_wire_and_flows(&mut hosts, src, &wire, &flows);
    let encode = |p: &Period| {
        serde_json::to_value(period_info(p)).map_err(|e| Error::Answer { url: src.url.clone(), reason: e.to_string() })
    };
    let previous = period.previous().map_or(Ok(Value::Null), |p| encode(&p))?;
    let period = encode(period)?;
    let inputs: Vec<(String, Value)> =
        hosts.iter().map(|(host, figures)| (host.clone(), host_report(&period, &previous, figures))).collect();
    if inputs.is_empty() {
        let mut empty = host_report(&period, &previous, &HostApps::default());
        empty["hosts"] = json!([]);
        return Ok(empty);
    }
    Ok(merge::merge(&inputs)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_escaped_in_the_selector() {
        let src = Source {
            url: "http://x".into(),
            host_label: "instance".into(),
            hosts: vec!["lab-01.example:9464".into(), "lab-02".into()],
        };
        assert_eq!(src.selector("m").unwrap(), r#"m{instance=~"lab-01\\.example:9464|lab-02"}"#);
        let bad = Source { hosts: vec!["a\"b".into()], ..src };
        assert!(matches!(bad.selector("m"), Err(Error::Host(_))));
    }

    fn sample(labels: Value, v: &str) -> Value {
        json!({"metric": labels, "value": [1_794_787_200, v]})
    }

    #[test]
    fn wire_bytes_and_flows_per_host_reach_every_format() {
        let src = Source { url: "http://x".into(), host_label: "host".into(), hosts: Vec::new() };
        let mut hosts = BTreeMap::new();
        let payload = [
            sample(json!({"host": "lab-a", "app": "app-a", "country": "SE", "direction": "tx"}), "300000"),
            sample(json!({"host": "lab-a", "app": "app-a", "country": "SE", "direction": "rx"}), "20000"),
            sample(json!({"host": "lab-b", "app": "app-a", "country": "GB", "direction": "tx"}), "100"),
        ];
        add(&mut hosts, &src, "by_country", "country", &payload);
        let wire = [
            sample(json!({"host": "lab-a", "app": "app-a", "direction": "tx"}), "310240"),
            sample(json!({"host": "lab-a", "app": "app-a", "direction": "rx"}), "26000"),
            sample(json!({"host": "lab-b", "app": "app-a", "direction": "tx"}), "140.4"),
        ];
        let flows = [
            sample(json!({"host": "lab-a", "app": "app-a"}), "2"),
            sample(json!({"host": "lab-b", "app": "app-a"}), "1"),
            sample(json!({"app": "no-host"}), "9"),
        ];
        add_wire_and_flows(&mut hosts, &src, &wire, &flows);
        let zone = crate::zone::Zone::get("UTC").unwrap();
        let period = Period::iso_week("2026-W47", &zone).unwrap();
        let info = serde_json::to_value(period_info(&period)).unwrap();
        let previous = serde_json::to_value(period_info(&period.previous().unwrap())).unwrap();
        let inputs: Vec<(String, Value)> =
            hosts.iter().map(|(h, f)| (h.clone(), host_report(&info, &previous, f))).collect();
        let report = crate::report::Report::from_json(merge::merge(&inputs).unwrap()).unwrap();
        let a = &report.apps[0];
        assert_eq!(
            (a.traffic.payload_tx, a.traffic.wire_tx, a.traffic.wire_rx, a.flows),
            (300_100, 310_380, 26_000, 3)
        );
        let by_host: Vec<(&str, u64, u64)> =
            a.by_host.iter().map(|h| (h.host.as_str(), h.traffic.wire_tx, h.flows)).collect();
        assert_eq!(by_host, [("lab-a", 310_240, 2), ("lab-b", 140, 1)]);
        assert_eq!(report.previous_period.label, "2026-W46");
        assert!(report.completeness.notes.iter().any(|n| n.contains("never carry addresses")));
        let mut csv = Vec::new();
        report.render(crate::report::Format::Csv, &mut csv).unwrap();
        let csv = String::from_utf8(csv).unwrap();
        assert!(csv.contains("\napp_host,app-a,lab-b,,,,,,,,,100,0,100,140,0,1,,\n"), "{csv}");
    }

    #[test]
    fn share_kinds_follow_the_report() {
        assert_eq!(kind("by_country", "SE"), ShareKind::Country);
        assert_eq!(kind("by_country", "private"), ShareKind::Scope);
        assert_eq!(kind("by_country", "unknown"), ShareKind::Unknown);
        assert_eq!(kind("by_asn", "AS29518"), ShareKind::Asn);
        assert_eq!(kind("by_asn", "loopback"), ShareKind::Scope);
    }

    /// A query Prometheus refuses comes back as an HTTP error status with its reason in a JSON
    /// body: the error carries that reason (it said only "http status: 422"; found by an
    /// adversarial pass). A local one-shot server stands in for Prometheus.
    #[test]
    fn a_refused_query_says_prometheus_s_reason() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request).unwrap();
            let body = r#"{"status":"error","errorType":"execution","error":"vector cannot contain metrics with the same labelset"}"#;
            let head = format!(
                "HTTP/1.1 422 Unprocessable Entity\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body.as_bytes()).unwrap();
        });
        let src = Source { url, host_label: "instance".into(), hosts: Vec::new() };
        let err = src.query("up", 0).unwrap_err().to_string();
        server.join().unwrap();
        assert!(
            err.contains("execution") && err.contains("vector cannot contain metrics with the same labelset"),
            "{err}"
        );
    }

    #[test]
    fn series_without_the_host_label_are_said_not_dropped() {
        let src = Source { url: "http://prometheus:9090".into(), host_label: "hostname".into(), hosts: Vec::new() };
        let sample = |labels: Value| json!({"metric": labels, "value": [0, "100"]});
        let none = [sample(json!({"instance": "lab-01:9464", "app": "a"}))];
        let err = unlabelled(&src, none.iter()).unwrap_err().to_string();
        assert!(err.contains("none of the 1 series carries the label `hostname`"), "{err}");
        let some = [sample(json!({"hostname": "lab-01", "app": "a"})), none[0].clone()];
        assert!(unlabelled(&src, some.iter()).is_ok(), "a warning, not an error");
        assert!(unlabelled(&src, [].iter()).is_ok(), "no series: an empty fleet");
    }
}
