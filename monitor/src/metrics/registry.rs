//! The metric registry: per-app series fed by the sink (one call per flow record, next to the
//! journal's), health series from the statistics and the journal's flushes.
//!
//! Label values follow the report's keys so that PromQL and `monitor report` can be compared
//! directly: `country` is the ISO code, `unknown` for a public address no database covers, or
//! the address class (`private`, `loopback`, …; `none` without a remote address, `unenriched`
//! without a lookup); `asn` is `AS<number>` or the same fallbacks. `direction` is `tx` (sent) or
//! `rx` (received), payload bytes as the journal counts them (`delta_payload` of each record).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _, text::encode},
    metrics::{
        MetricType,
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use super::{Label, MetricsConfig, OwnedLabel};
use crate::{
    enrich::{DbInfo, Destination, Role, Scope},
    identity::App,
    stats::Stats,
    tracker::FlowRecord,
};

/// Label value of apps and ASNs beyond the top N.
pub const OTHER: &str = "other";
/// The label of a real name that is [`OTHER`] (an app called `other`), kept apart from the bucket.
pub const OTHER_NAMED: &str = "other (named)";
/// Largest `top_apps`/`top_asns` (indices are `u16`; 10,000 apps is far beyond any dashboard).
pub const MAX_TOP: usize = 10_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DbLabels {
    role: OwnedLabel,
    database_type: OwnedLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    country_db: OwnedLabel,
    asn_db: OwnedLabel,
}

/// Names numbered in order of first sight, at most `max` (then [`OTHER`]'s index).
#[derive(Debug, Default)]
struct Names {
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, u16>,
}

impl Names {
    /// The index of `name`, or of [`OTHER`] once `max` names are known; `true` when folded. A
    /// name that is [`OTHER`] itself (an app called `other`) is [`OTHER_NAMED`]: the folded
    /// bucket and a real app were one series (found by an adversarial pass).
    fn get(&mut self, name: &str, max: usize) -> (u16, bool) {
        let name = if name == OTHER { OTHER_NAMED } else { name };
        if let Some(&i) = self.index.get(name) {
            return (i, false);
        }
        let folded = self.names.len() >= max;
        let name = if folded { OTHER } else { name };
        if let Some(&i) = self.index.get(name) {
            return (i, folded);
        }
        let i = u16::try_from(self.names.len()).unwrap_or(u16::MAX);
        let name: Arc<str> = name.into();
        self.names.push(Arc::clone(&name));
        self.index.insert(name, i);
        (i, folded)
    }

    fn name(&self, i: u16) -> &str {
        self.names.get(usize::from(i)).map_or(OTHER, |n| n)
    }
}

/// The per-app series in compact form: names once, series as small integer keys (~1 MiB at
/// 200 apps × 50 countries, against ~7 MiB as `prometheus-client` families of string labels).
#[derive(Debug, Default)]
struct Tables {
    apps: Names,
    /// Country labels (ISO codes and the report's fallback keys): a few hundred at most.
    countries: Names,
    asns: Names,
    /// `as_org` of each ASN index (the first seen).
    as_orgs: Vec<Arc<str>>,
    /// (app, country) → payload bytes [tx, rx].
    payload: HashMap<(u16, u16), [u64; 2]>,
    /// (app, asn) → payload bytes [tx, rx].
    asn_payload: HashMap<(u16, u16), [u64; 2]>,
    /// (app, protocol) → flows started.
    flows: HashMap<(u16, &'static str), u64>,
    /// app → IP-layer bytes [tx, rx] (the journal's `delta_wire`).
    wire: HashMap<u16, [u64; 2]>,
}

/// The per-app series, encoded at scrape time (a [`Collector`]).
#[derive(Debug, Default)]
struct AppSeries {
    tables: Mutex<Tables>,
}

const DIRECTIONS: [&str; 2] = ["tx", "rx"];

impl Collector for AppSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = self.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let mut payload: Vec<_> = t.payload.iter().collect();
        payload.sort_unstable_by_key(|(k, _)| **k);
        let mut e = encoder.encode_descriptor(
            "monitor_app_payload",
            "Payload bytes per app, direction (tx sent, rx received) and destination country",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for (&(app, country), bytes) in payload {
            for (direction, &v) in DIRECTIONS.iter().zip(bytes) {
                let labels = [
                    ("app", Label(t.apps.name(app))),
                    ("direction", Label(direction)),
                    ("country", Label(t.countries.name(country))),
                ];
                ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
            }
        }
        let mut asn_payload: Vec<_> = t.asn_payload.iter().collect();
        asn_payload.sort_unstable_by_key(|(k, _)| **k);
        let mut e = encoder.encode_descriptor(
            "monitor_app_asn_payload",
            "Payload bytes per app, direction and destination autonomous system",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for (&(app, asn), bytes) in asn_payload {
            let org = t.as_orgs.get(usize::from(asn)).map_or("", |o| o);
            for (direction, &v) in DIRECTIONS.iter().zip(bytes) {
                let labels = [
                    ("app", Label(t.apps.name(app))),
                    ("direction", Label(direction)),
                    ("asn", Label(t.asns.name(asn))),
                    ("as_org", Label(org)),
                ];
                ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
            }
        }
        let mut wire: Vec<_> = t.wire.iter().collect();
        wire.sort_unstable_by_key(|(k, _)| **k);
        let mut e = encoder.encode_descriptor(
            "monitor_app_wire",
            "IP-layer bytes (headers included) per app and direction (tx sent, rx received)",
            Some(&Unit::Bytes),
            MetricType::Counter,
        )?;
        for (&app, bytes) in wire {
            for (direction, &v) in DIRECTIONS.iter().zip(bytes) {
                let labels = [("app", Label(t.apps.name(app))), ("direction", Label(direction))];
                ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
            }
        }
        let mut flows: Vec<_> = t.flows.iter().collect();
        flows.sort_unstable_by_key(|(k, _)| **k);
        let mut e = encoder.encode_descriptor(
            "monitor_app_flows",
            "Flows started per app and protocol",
            None,
            MetricType::Counter,
        )?;
        for (&(app, protocol), &v) in flows {
            let labels = [("app", Label(t.apps.name(app))), ("protocol", Label(protocol))];
            ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
        }
        Ok(())
    }
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
    apps: Arc<AppSeries>,
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
    seen: Mutex<Seen>,
    /// Length of the last exposition.
    last_len: AtomicUsize,
}

impl Metrics {
    /// An empty registry; `start_time_secs` is the process start (Unix seconds).
    #[must_use]
    pub fn new(config: &MetricsConfig, start_time_secs: f64) -> Self {
        let mut registry = Registry::default();
        let apps = Arc::new(AppSeries::default());
        registry.register_collector(Box::new(Arc::clone(&apps)));
        let folded = Family::<KindLabels, Counter>::default();
        // Present from the start (at 0), so that rules on them have a series to evaluate.
        for kind in ["app", "asn"] {
            let _ = folded.get_or_create(&KindLabels { kind });
        }
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
            "Flow records (and other messages) waiting for the sink (journal) thread",
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
            apps,
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
            last_len: AtomicUsize::new(0),
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Counts one flow record as the journal does (called by the sink next to `append`).
    pub fn observe(&self, record: &FlowRecord, app: &App, dest: Option<&Destination>) {
        let (country, asn, as_org) = destination_labels(record, dest);
        let mut t = self.apps.tables.lock().unwrap_or_else(PoisonError::into_inner);
        let (app, app_folded) = t.apps.get(&app.name, self.top_apps);
        let (country, _) = t.countries.get(&country, usize::MAX);
        let (asn, asn_folded) = t.asns.get(&asn, self.top_asns);
        if t.as_orgs.len() <= usize::from(asn) {
            let org: Arc<str> = if asn_folded { OTHER.into() } else { as_org.into() };
            t.as_orgs.push(org);
        }
        let p = record.delta_payload;
        if p.tx_bytes != 0 || p.rx_bytes != 0 {
            let v = t.payload.entry((app, country)).or_default();
            v[0] += p.tx_bytes;
            v[1] += p.rx_bytes;
            let v = t.asn_payload.entry((app, asn)).or_default();
            v[0] += p.tx_bytes;
            v[1] += p.rx_bytes;
        }
        let w = record.delta_wire;
        if w.tx_bytes != 0 || w.rx_bytes != 0 {
            let v = t.wire.entry(app).or_default();
            v[0] += w.tx_bytes;
            v[1] += w.rx_bytes;
        }
        if record.is_first() {
            let protocol = crate::variant::name(record.protocol);
            *t.flows.entry((app, protocol)).or_default() += 1;
        }
        drop(t);
        if app_folded {
            self.folded.get_or_create(&KindLabels { kind: "app" }).inc();
        }
        if asn_folded {
            self.folded.get_or_create(&KindLabels { kind: "asn" }).inc();
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

    /// Flow records (and other messages) waiting for the sink.
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
        let (country_db, asn_db) = (build(crate::variant::name(Role::Country)), build(crate::variant::name(Role::Asn)));
        for d in databases {
            let labels = DbLabels {
                role: OwnedLabel(d.role.clone()),
                database_type: OwnedLabel(d.db.database_type.to_string()),
            };
            #[expect(clippy::cast_precision_loss, reason = "ages in seconds are far below 2^52")]
            let age = now_secs.saturating_sub(d.db.build_epoch) as f64;
            self.database_age.get_or_create(&labels).set(age);
        }
        let labels = BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            country_db: OwnedLabel(country_db),
            asn_db: OwnedLabel(asn_db),
        };
        self.build_info.get_or_create(&labels).set(1);
    }

    /// The OpenMetrics text of every series.
    ///
    /// # Errors
    /// Only if formatting fails (never for a `String`).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        // Sized like the previous exposition (several MiB at hundreds of apps): no regrowth.
        let mut text = String::with_capacity(self.last_len.load(Ordering::Relaxed).saturating_add(4096));
        encode(&mut text, &self.registry)?;
        self.last_len.store(text.len(), Ordering::Relaxed);
        Ok(text)
    }
}

/// `(country, asn, as_org)` labels, with the report's keys (see the module doc).
fn destination_labels(record: &FlowRecord, dest: Option<&Destination>) -> (String, String, String) {
    let Some(_) = record.remote else { return ("none".into(), "none".into(), String::new()) };
    let Some(d) = dest else { return ("unenriched".into(), "unenriched".into(), String::new()) };
    if d.scope != Scope::Public {
        let scope = crate::variant::name(d.scope);
        return (scope.into(), scope.into(), String::new());
    }
    let country = d.country.as_deref().unwrap_or("unknown").to_owned();
    let asn = d.asn.map_or_else(|| "unknown".to_owned(), |n| format!("AS{n}"));
    (country, asn, d.as_org.as_deref().unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests;
