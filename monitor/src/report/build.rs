//! [`Report::build`]: journal rows → figures.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::{
    ATTRIBUTION, AppReport, Attribution, Error, Period, Report, SCHEMA, Share, ShareKind, SourceShare, Traffic,
    Unknown,
    fmt::share,
    model::{AndroidApp, AsnRef, Endpoint, NewDestinations, PeriodInfo, SessionInfo},
    notes, services,
    source::{self, Figures, Inputs, Seen, Source},
};
use crate::{
    journal::{AppEndpoints, DatabaseRow, EndpointRow, JournalReader, ResidencyRow},
    residency::DeviceLocation,
};

/// Endpoints listed per app unless the query says otherwise.
pub const DEFAULT_TOP_ENDPOINTS: usize = 10;

/// What to report.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// The period.
    pub period: Period,
    /// Only this app (by name).
    pub app: Option<String>,
    /// A session: with a cgroup, only the records of sockets created in it are reported (from
    /// connection records, not residency rows). Set `period` to the session's window (a window
    /// not on the residency intervals is counted from connection records too).
    pub session: Option<SessionInfo>,
    /// Endpoints listed per app.
    pub top_endpoints: usize,
    /// Stamped into the report when set (leave `None` for byte-identical reruns).
    pub generated_at: Option<Timestamp>,
    /// Also list every destination of each app with its evidence ([`AppReport::destinations`]),
    /// from connection records.
    pub evidence: bool,
    /// `[device] location`: judges the plausibility of destinations' countries; `None`: off.
    pub device: Option<DeviceLocation>,
}

impl ReportQuery {
    /// All apps, [`DEFAULT_TOP_ENDPOINTS`], no generation time.
    #[must_use]
    pub fn new(period: Period) -> Self {
        Self {
            period,
            app: None,
            top_endpoints: DEFAULT_TOP_ENDPOINTS,
            generated_at: None,
            session: None,
            evidence: false,
            device: None,
        }
    }
}

impl Report {
    /// Builds the report of `query` from the journal: from its weekly rollups when they hold
    /// the week and the previous one completely, else from its fine tables (same figures).
    ///
    /// # Errors
    /// When the journal cannot be read or the previous period cannot be computed.
    pub fn build(reader: &JournalReader, query: &ReportQuery) -> Result<Self, Error> {
        build_from(reader, query, Source::Auto)
    }
}

/// [`Report::build`] reading the tables `source` allows.
pub(crate) fn build_from(reader: &JournalReader, query: &ReportQuery, source: Source) -> Result<Report, Error> {
    let period = &query.period;
    let previous = period.previous()?;
    let purged = reader.connections_purged_before()?;
    let endpoints_compared = purged.is_none_or(|p| p <= previous.since);
    let figures = Figures::of(reader, query)?;
    // The rollups hold whole intervals of every cgroup: figures from records read the fine tables.
    let source = if figures == Figures::Intervals { source } else { Source::Fine };
    let plan = source::plan(reader, period, &previous, purged, source)?;
    let Inputs {
        rows,
        attributed_wire_bytes,
        previous: seen,
        endpoints,
        services: service_rows,
        endpoint_names,
        truth,
    } = source::read(reader, query, &previous, figures, plan)?;

    let no_destinations = Seen::default();
    let mut truth = super::truth::figures(&truth, query.device.as_ref());
    let mut apps: Vec<AppReport> = group(&rows)
        .into_iter()
        .map(|(name, rows)| {
            let prev = seen.get(name).unwrap_or(&no_destinations);
            let mut report = app_report(name, &rows, prev, endpoints.get(name));
            report.new_destinations.compared_with.clone_from(&previous.label);
            report.new_destinations.endpoints_compared = endpoints_compared;
            report.consensus = truth.consensus.remove(name);
            report.plausibility = truth.plausibility.remove(name);
            report
        })
        .collect();
    apps.sort_by(|a, b| b.traffic.payload().cmp(&a.traffic.payload()).then_with(|| a.app.cmp(&b.app)));
    let mut android = reader.android_apps(period.time_range(), query.app.as_deref())?;
    for a in &mut apps {
        a.android = android.remove(&a.app).and_then(AndroidApp::from_list);
    }
    if query.evidence {
        let mut details = super::destinations::read(reader, query, figures.cgroup())?;
        for a in &mut apps {
            a.destinations = details.remove(&a.app).unwrap_or_default();
        }
    }
    let mut totals = Traffic::default();
    for a in &apps {
        totals.add(&a.traffic);
    }
    let timeline = super::timeline::fill(reader, query, figures, &mut apps, plan.residency && plan.names)?;
    let databases = databases(&rows, &reader.databases()?, period.until);
    let mut completeness =
        notes::completeness(reader, query, figures, &rows, attributed_wire_bytes, &apps, (&previous, purged))?;
    let order: Vec<&str> = apps.iter().map(|a| a.app.as_str()).collect();
    let services = services::build(&service_rows, &order);
    for a in &mut apps {
        for e in &mut a.top_endpoints {
            e.hostnames = endpoint_names.get(&(a.app.clone(), e.ip.clone())).cloned().unwrap_or_default();
        }
    }
    if truth.location_missing {
        completeness.notes.push(
            "Physical plausibility is off: RTTs were measured but [device] location is not set (see config/monitor.toml)."
                .into(),
        );
    }
    Ok(Report {
        schema: SCHEMA,
        period: period_info(period),
        previous_period: period_info(&previous),
        app_filter: query.app.clone(),
        session: query.session.clone(),
        generated_at: query.generated_at,
        totals,
        apps,
        services,
        completeness,
        attribution: Attribution { text: ATTRIBUTION, applies: databases.iter().any(|d| d.default_data) },
        databases,
        timeline,
        claims: Vec::new(),
        emulator_join: None,
        hosts: None,
    })
}

pub(super) fn period_info(p: &Period) -> PeriodInfo {
    PeriodInfo {
        label: p.label.clone(),
        kind: p.kind,
        time_zone: p.time_zone_name.clone(),
        since: p.since,
        until: p.until,
        since_local: p.local(p.since),
        until_local: p.local(p.until),
        seconds: p.until.duration_since(p.since).as_secs(),
    }
}

fn group(rows: &[ResidencyRow]) -> BTreeMap<&str, Vec<&ResidencyRow>> {
    let mut by_app: BTreeMap<&str, Vec<&ResidencyRow>> = BTreeMap::new();
    for r in rows {
        // Journals written before unattributed flows were named `unknown` hold an empty name.
        let name = if r.app.is_empty() { crate::identity::UNKNOWN_APP } else { r.app.as_str() };
        by_app.entry(name).or_default().push(r);
    }
    by_app
}

pub(super) fn traffic(r: &ResidencyRow) -> Traffic {
    Traffic {
        payload_tx: r.payload_tx,
        payload_rx: r.payload_rx,
        wire_tx: r.wire_tx,
        wire_rx: r.wire_rx,
        packets_tx: r.packets_tx,
        packets_rx: r.packets_rx,
    }
}

/// Breakdown line before shares are known.
#[derive(Default)]
struct Acc {
    traffic: Traffic,
    flows: u64,
    country: Option<String>,
    asn: Option<u32>,
    /// Organisation names seen for an ASN, with their bytes.
    orgs: BTreeMap<String, u64>,
}

fn country_key(r: &ResidencyRow) -> (ShareKind, String) {
    match (r.scope.is_public(), &r.country) {
        (true, Some(c)) => (ShareKind::Country, c.clone()),
        (true, None) => (ShareKind::Unknown, "unknown".into()),
        (false, _) => (ShareKind::Scope, r.scope.name().to_owned()),
    }
}

fn asn_key(r: &ResidencyRow) -> (ShareKind, String) {
    match (r.scope.is_public(), r.asn) {
        (true, Some(n)) => (ShareKind::Asn, format!("AS{n}")),
        (true, None) => (ShareKind::Unknown, "unknown".into()),
        (false, _) => (ShareKind::Scope, r.scope.name().to_owned()),
    }
}

fn breakdown(rows: &[&ResidencyRow], total: &Traffic, key: fn(&ResidencyRow) -> (ShareKind, String)) -> Vec<Share> {
    let mut acc: BTreeMap<(ShareKind, String), Acc> = BTreeMap::new();
    for r in rows {
        let k = key(r);
        let a = acc.entry(k.clone()).or_default();
        a.traffic.add(&traffic(r));
        a.flows += r.new_flows;
        match k.0 {
            ShareKind::Country => a.country.clone_from(&r.country),
            ShareKind::Asn => {
                a.asn = r.asn;
                if let Some(org) = &r.as_org {
                    *a.orgs.entry(org.clone()).or_default() += r.payload_tx + r.payload_rx;
                }
            }
            ShareKind::Unknown | ShareKind::Scope => {}
        }
    }
    let mut shares: Vec<Share> = acc
        .into_iter()
        .map(|((kind, key), a)| Share {
            kind,
            key,
            country: a.country,
            asn: a.asn,
            as_org: most_bytes(&a.orgs),
            share_pct: share(a.traffic.payload(), total.payload()),
            tx_share_pct: share(a.traffic.payload_tx, total.payload_tx),
            rx_share_pct: share(a.traffic.payload_rx, total.payload_rx),
            traffic: a.traffic,
            flows: a.flows,
        })
        .collect();
    shares.sort_by(|a, b| {
        b.traffic
            .payload()
            .cmp(&a.traffic.payload())
            .then_with(|| (a.kind, a.asn, &a.key).cmp(&(b.kind, b.asn, &b.key)))
    });
    shares
}

/// The name with the most bytes; ties go to the alphabetically first.
fn most_bytes(names: &BTreeMap<String, u64>) -> Option<String> {
    names.iter().max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0))).map(|(n, _)| n.clone())
}

fn app_report(name: &str, rows: &[&ResidencyRow], prev: &Seen, eps: Option<&AppEndpoints>) -> AppReport {
    let mut total = Traffic::default();
    let (mut flows, mut incomplete) = (0, 0);
    let mut unknown = Unknown::default();
    let mut sources: BTreeMap<&str, u64> = BTreeMap::new();
    for r in rows {
        total.add(&traffic(r));
        flows += r.new_flows;
        incomplete += r.incomplete_flows;
        let bytes = r.payload_tx + r.payload_rx;
        if r.scope.is_public() && r.country.is_none() {
            unknown.country_bytes += bytes;
        }
        if r.scope.is_public() && r.asn.is_none() {
            unknown.asn_bytes += bytes;
        }
        *sources.entry(r.payload_source.as_str()).or_default() += bytes;
    }
    unknown.country_share_pct = share(unknown.country_bytes, total.payload());
    unknown.asn_share_pct = share(unknown.asn_bytes, total.payload());
    let mut payload_sources: Vec<SourceShare> = sources
        .into_iter()
        .map(|(s, b)| SourceShare {
            payload_source: s.to_string(),
            payload_bytes: b,
            share_pct: share(b, total.payload()),
        })
        .collect();
    payload_sources
        .sort_by(|a, b| b.payload_bytes.cmp(&a.payload_bytes).then_with(|| a.payload_source.cmp(&b.payload_source)));

    let countries = |rs: &[&ResidencyRow]| -> BTreeSet<String> {
        rs.iter().filter(|r| r.scope.is_public()).filter_map(|r| r.country.clone()).collect()
    };
    let asns = |rs: &[&ResidencyRow]| -> BTreeSet<u32> {
        rs.iter().filter(|r| r.scope.is_public()).filter_map(|r| r.asn).collect()
    };
    let by_asn = breakdown(rows, &total, asn_key);
    let new_asns = asns(rows)
        .difference(&prev.asns)
        .map(|n| AsnRef { asn: *n, as_org: by_asn.iter().find(|s| s.asn == Some(*n)).and_then(|s| s.as_org.clone()) })
        .collect();

    let endpoint = |(e, new): &(EndpointRow, bool)| Endpoint {
        ip: e.ip.clone(),
        port: e.port,
        protocol: e.protocol.clone(),
        scope: e.scope.map(|s| s.name().to_owned()),
        country: e.country.clone(),
        asn: e.asn,
        as_org: e.as_org.clone(),
        payload_tx: e.payload_tx,
        payload_rx: e.payload_rx,
        wire_tx: e.wire_tx,
        wire_rx: e.wire_rx,
        flows: e.flows,
        share_pct: share(e.payload_tx + e.payload_rx, total.payload()),
        new: *new,
        hostnames: Vec::new(),
    };
    let (endpoints, endpoints_total, new_endpoints) =
        eps.map_or((Vec::new(), 0, 0), |a| (a.top.iter().map(endpoint).collect(), a.total, a.new));

    AppReport {
        app: name.to_string(),
        traffic: total,
        by_host: Vec::new(),
        flows,
        incomplete_flows: incomplete,
        by_country: breakdown(rows, &total, country_key),
        by_asn,
        unknown,
        top_endpoints: endpoints,
        endpoints_total,
        new_destinations: NewDestinations {
            compared_with: String::new(),
            countries: countries(rows).difference(&prev.countries).cloned().collect(),
            asns: new_asns,
            endpoints: new_endpoints,
            endpoints_compared: true,
        },
        payload_sources,
        destinations: Vec::new(),
        timeline: Vec::new(),
        consensus: None,
        plausibility: None,
        android: None,
    }
}

/// Databases referenced by the period's rows, with the payload bytes each answered.
fn databases(rows: &[ResidencyRow], known: &[DatabaseRow], until: Timestamp) -> Vec<super::DatabaseUse> {
    let mut bytes: BTreeMap<i64, u64> = BTreeMap::new();
    for r in rows {
        // A database that was asked and had no answer is listed, with none of those bytes (an
        // adversarial pass: "payload bytes answered" counted every byte looked up).
        let answered = [(r.country_db, r.country.is_some()), (r.asn_db, r.asn.is_some())];
        for (id, answer) in answered {
            if let Some(id) = id {
                *bytes.entry(id).or_default() += if answer { r.payload_tx + r.payload_rx } else { 0 };
            }
        }
    }
    let mut used: Vec<super::DatabaseUse> = known
        .iter()
        .filter_map(|db| bytes.get(&db.id).map(|b| (db, *b)))
        .map(|(db, payload_bytes)| {
            let build = Timestamp::from_second(i64::try_from(db.build_epoch).unwrap_or(i64::MAX))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            super::DatabaseUse {
                role: db.role.clone(),
                database_type: db.database_type.clone(),
                build_epoch: db.build_epoch,
                build_date: build.strftime("%Y-%m-%d").to_string(),
                age_days: until.duration_since(build).as_secs().div_euclid(86_400),
                path: db.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                payload_bytes,
                default_data: is_default(&db.role, &db.database_type, db.path.as_deref()),
            }
        })
        .collect();
    used.sort_by(|a, b| (&a.role, &a.database_type, a.build_epoch).cmp(&(&b.role, &b.database_type, b.build_epoch)));
    used
}

/// Whether a database is one of the defaults the [`ATTRIBUTION`] is for: DB-IP Country Lite as
/// packaged by ip-location-db (`database_type` "country ipvAll" or a `dbip-country*` file), or the
/// ip-location-db ASN data (`database_type` containing "ip-location-db").
fn is_default(role: &str, database_type: &str, path: Option<&std::path::Path>) -> bool {
    let file = path.and_then(|p| p.file_name()).map(|f| f.to_string_lossy().to_lowercase()).unwrap_or_default();
    match role {
        "country" => database_type == "country ipvAll" || file.starts_with("dbip-country"),
        "asn" => database_type.to_lowercase().contains("ip-location-db"),
        _ => false,
    }
}
