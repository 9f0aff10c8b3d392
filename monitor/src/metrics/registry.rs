//! The metric registry: per-app series fed by the sink (one call per flow record, next to the
//! journal's), health series from the statistics and the journal's flushes.
//!
//! Label values follow the report's keys so that PromQL and `monitor report` can be compared
//! directly: `country` is the ISO code, `unknown` for a public address no database covers, or
//! the address class (`private`, `loopback`, …; `none` without a remote address, `unenriched`
//! without a lookup); `asn` is `AS<number>` or the same fallbacks. `direction` is `tx` (sent) or
//! `rx` (received), payload bytes as the journal counts them (`delta_payload` of each record).

use std::{
    collections::HashSet,
    sync::{Mutex, atomic::AtomicU64},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use super::{Label, MetricsConfig};
use crate::{
    enrich::{DbInfo, Destination, Scope},
    identity::App,
    stats::Stats,
    tracker::FlowRecord,
};

/// Label value of apps and ASNs beyond the top N.
pub const OTHER: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PayloadLabels {
    app: Label,
    direction: &'static str,
    country: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AsnLabels {
    app: Label,
    direction: &'static str,
    asn: Label,
    as_org: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    app: Label,
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    role: Label,
    database_type: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    country_db: Label,
    asn_db: Label,
}

/// Apps and ASNs that have series of their own (the first N seen).
#[derive(Debug, Default)]
struct Top {
    apps: HashSet<String>,
    asns: HashSet<String>,
}

/// Counters since start of the health series fed from [`Stats`] (cumulative there).
#[derive(Debug, Default)]
struct Seen {
    submitted: u64,
    lost: u64,
    decode_errors: u64,
    unattributed_bytes: u64,
}

/// Every series the endpoint serves.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    payload: Family<PayloadLabels, Counter>,
    asn_payload: Family<AsnLabels, Counter>,
    flows: Family<FlowLabels, Counter>,
    folded: Family<KindLabels, Counter>,
    events_submitted: Counter,
    events_lost: Counter,
    decode_errors: Counter,
    unattributed_bytes: Counter,
    open_flows: Gauge,
    flush_seconds: Histogram,
    flush_failures: Counter,
    queue_depth: Gauge,
    database_age: Family<DbLabels, Gauge<f64, AtomicU64>>,
    build_info: Family<BuildLabels, Gauge>,
    top_apps: usize,
    top_asns: usize,
    top: Mutex<Top>,
    seen: Mutex<Seen>,
}

impl Metrics {
    /// An empty registry; `start_time_secs` is the process start (Unix seconds).
    #[must_use]
    pub fn new(config: &MetricsConfig, start_time_secs: f64) -> Self {
        let mut registry = Registry::default();
        let payload = Family::<PayloadLabels, Counter>::default();
        let asn_payload = Family::<AsnLabels, Counter>::default();
        let flows = Family::<FlowLabels, Counter>::default();
        let folded = Family::<KindLabels, Counter>::default();
        registry.register_with_unit(
            "monitor_app_payload",
            "Payload bytes per app, direction (tx sent, rx received) and destination country",
            Unit::Bytes,
            payload.clone(),
        );
        registry.register_with_unit(
            "monitor_app_asn_payload",
            "Payload bytes per app, direction and destination autonomous system",
            Unit::Bytes,
            asn_payload.clone(),
        );
        registry.register("monitor_app_flows", "Flows started per app and protocol", flows.clone());
        registry.register(
            "monitor_metrics_folded",
            "Flow records whose app (kind=app) or ASN (kind=asn) was beyond the top N, counted under other",
            folded.clone(),
        );
        let events_submitted = Counter::default();
        let events_lost = Counter::default();
        let decode_errors = Counter::default();
        let unattributed_bytes = Counter::default();
        let open_flows = Gauge::default();
        let flush_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let flush_failures = Counter::default();
        let queue_depth = Gauge::default();
        let database_age = Family::<DbLabels, Gauge<f64, AtomicU64>>::default();
        let build_info = Family::<BuildLabels, Gauge>::default();
        let start_time = Gauge::<f64, AtomicU64>::default();
        start_time.set(start_time_secs);
        registry.register("monitor_events_submitted", "Events the kernel programs produced", events_submitted.clone());
        registry.register("monitor_events_lost", "Events lost because the ring buffer was full", events_lost.clone());
        registry.register("monitor_decode_errors", "Events that could not be decoded", decode_errors.clone());
        registry.register_with_unit(
            "monitor_unattributed",
            "IP-layer bytes of packets on the watched cgroup with no socket to charge",
            Unit::Bytes,
            unattributed_bytes.clone(),
        );
        registry.register("monitor_open_flows", "Flows currently open", open_flows.clone());
        registry.register_with_unit(
            "monitor_journal_flush_duration",
            "Time of each journal flush (one transaction with fsync)",
            Unit::Seconds,
            flush_seconds.clone(),
        );
        registry.register("monitor_journal_flush_failures", "Journal flushes that failed", flush_failures.clone());
        registry.register(
            "monitor_sink_queue_depth",
            "Messages waiting for the sink (journal) thread",
            queue_depth.clone(),
        );
        registry.register_with_unit(
            "monitor_database_age",
            "Age of each geolocation database's data",
            Unit::Seconds,
            database_age.clone(),
        );
        registry.register(
            "monitor_build_info",
            "Version and geolocation database builds (value 1)",
            build_info.clone(),
        );
        registry.register_with_unit(
            "monitor_process_start_time",
            "Start of this process (Unix time); counters restart from 0 when it changes",
            Unit::Seconds,
            start_time,
        );
        Self {
            registry,
            payload,
            asn_payload,
            flows,
            folded,
            events_submitted,
            events_lost,
            decode_errors,
            unattributed_bytes,
            open_flows,
            flush_seconds,
            flush_failures,
            queue_depth,
            database_age,
            build_info,
            top_apps: config.top_apps,
            top_asns: config.top_asns,
            top: Mutex::new(Top::default()),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Counts one flow record as the journal does (called by the sink next to `append`).
    pub fn observe(&self, record: &FlowRecord, app: &App, dest: Option<&Destination>) {
        let (country, asn, as_org) = destination_labels(record, dest);
        let (app, asn, as_org) = {
            let mut top = self.top.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let app = fold(&mut top.apps, &app.name, self.top_apps);
            let asn_folded = fold(&mut top.asns, &asn, self.top_asns);
            let as_org = if asn_folded == OTHER { OTHER.to_owned() } else { as_org };
            (app, asn_folded, as_org)
        };
        if app == OTHER {
            self.folded.get_or_create(&KindLabels { kind: "app" }).inc();
        }
        if asn == OTHER {
            self.folded.get_or_create(&KindLabels { kind: "asn" }).inc();
        }
        let p = record.delta_payload;
        for (direction, bytes) in [("tx", p.tx_bytes), ("rx", p.rx_bytes)] {
            if bytes == 0 {
                continue;
            }
            let labels = PayloadLabels { app: Label(app.clone()), direction, country: Label(country.clone()) };
            self.payload.get_or_create(&labels).inc_by(bytes);
            let labels = AsnLabels {
                app: Label(app.clone()),
                direction,
                asn: Label(asn.clone()),
                as_org: Label(as_org.clone()),
            };
            self.asn_payload.get_or_create(&labels).inc_by(bytes);
        }
        if crate::journal::is_first_record(record) {
            let protocol = serde_variant::to_variant_name(&record.protocol).unwrap_or("unnamed");
            self.flows.get_or_create(&FlowLabels { app: Label(app), protocol }).inc();
        }
    }

    /// Health series from a statistics snapshot (cumulative since start).
    pub fn stats(&self, stats: &Stats) {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let advance = |counter: &Counter, prev: &mut u64, now: u64| {
            counter.inc_by(now.saturating_sub(*prev));
            *prev = (*prev).max(now);
        };
        advance(&self.events_submitted, &mut seen.submitted, stats.kernel.events_submitted);
        advance(&self.events_lost, &mut seen.lost, stats.kernel.events_lost);
        advance(&self.decode_errors, &mut seen.decode_errors, stats.decode_errors);
        advance(&self.unattributed_bytes, &mut seen.unattributed_bytes, stats.kernel.unattributed_bytes);
        self.open_flows.set(i64::try_from(stats.tracker.open_flows).unwrap_or(i64::MAX));
    }

    /// A journal flush: its duration, or a failure.
    pub fn flush(&self, took: Duration, ok: bool) {
        if ok {
            self.flush_seconds.observe(took.as_secs_f64());
        } else {
            self.flush_failures.inc();
        }
    }

    /// Messages waiting for the sink.
    pub fn queue_depth(&self, depth: usize) {
        self.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    /// The databases in use (at start and after every reload); `now_secs` is Unix time.
    pub fn databases(&self, databases: &[DbInfo], now_secs: u64) {
        self.database_age.clear();
        self.build_info.clear();
        let build = |role: &str| {
            databases
                .iter()
                .find(|d| d.role == role)
                .map_or_else(String::new, |d| format!("{} {}", d.db.database_type, d.db.build_epoch))
        };
        let (country_db, asn_db) = (build("country"), build("asn"));
        for d in databases {
            let labels = DbLabels { role: Label(d.role.clone()), database_type: Label(d.db.database_type.to_string()) };
            #[expect(clippy::cast_precision_loss, reason = "ages in seconds are far below 2^52")]
            let age = now_secs.saturating_sub(d.db.build_epoch) as f64;
            self.database_age.get_or_create(&labels).set(age);
        }
        let labels =
            BuildLabels { version: env!("CARGO_PKG_VERSION"), country_db: Label(country_db), asn_db: Label(asn_db) };
        self.build_info.get_or_create(&labels).set(1);
    }

    /// The OpenMetrics text of every series.
    ///
    /// # Errors
    /// Only if formatting fails (never for a `String`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(64 * 1024);
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// `name`, or [`OTHER`] once `top` holds `max` names and not this one.
fn fold(top: &mut HashSet<String>, name: &str, max: usize) -> String {
    if top.contains(name) {
        return name.to_owned();
    }
    if top.len() < max {
        top.insert(name.to_owned());
        return name.to_owned();
    }
    OTHER.to_owned()
}

/// `(country, asn, as_org)` labels, with the report's keys (see the module doc).
fn destination_labels(record: &FlowRecord, dest: Option<&Destination>) -> (String, String, String) {
    let Some(_) = record.remote else { return ("none".into(), "none".into(), String::new()) };
    let Some(d) = dest else { return ("unenriched".into(), "unenriched".into(), String::new()) };
    if d.scope != Scope::Public {
        let scope = serde_variant::to_variant_name(&d.scope).unwrap_or("unnamed");
        return (scope.into(), scope.into(), String::new());
    }
    let country = d.country.as_deref().unwrap_or("unknown").to_owned();
    let asn = d.asn.map_or_else(|| "unknown".to_owned(), |n| format!("AS{n}"));
    (country, asn, d.as_org.as_deref().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests;
