//! Where a report's rows come from.
//!
//! The residency figures ([`Figures`], decided once per report): the `residency` table when
//! both bounds of the period are bounds of its intervals (ISO weeks, whole-minute ranges with
//! the default 60 s intervals), else the connection records' deltas in `[since, until)` by
//! record time (sessions of `session start/stop`, ranges with seconds, sessions of `monitor
//! exec` with their cgroup's records only). Either way a record counts in a period when its
//! time is in it.
//! A session of `monitor exec` reads its other sections (endpoints, by service, host names,
//! truth rows, evidence) from its cgroup's records too, never from the rollups (which hold
//! every cgroup).
//!
//! Of the residency table, the journal's weekly rollups when they hold the period and the
//! previous one completely, else the fine tables. Both give the same rows, so the same report.
//! The rollups are used for an ISO week cut in the journal's rollup time zone (`--week`, or a
//! range on a week's bounds whose previous range of equal length is the week before) when
//! - the rollups cover the previous week (and so this one): see `journal::RollupState`;
//! - retention has not deleted residency rows (for the residency figures) or connection records
//!   (for the endpoints) of the previous week or later: a purge shrinks the fine tables, and
//!   the report must say what they still hold.
//!
//! Anything else (other ranges, another time zone, older weeks) reads the fine tables.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use jiff::Timestamp;

use super::{Error, Period, ReportQuery};
use crate::journal::{
    AppEndpoints, DestinationRow, EndpointKey, EndpointRow, JournalReader, NAMES_ROLLUP_SCHEMA, ResidencyRow,
    SERVICE_FLOWS_SCHEMA, ServiceRow, TimeRange, TruthRow,
};

/// Where a report's residency figures (and everything summed from them: totals, shares,
/// timelines, verdicts, `data_since`/`data_until`) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figures {
    /// The `residency` table (or its weekly rollups): both bounds of the period are bounds of
    /// residency intervals, so whole rows add up to the period exactly.
    Intervals,
    /// The connection records whose time is in the period, summed from their deltas: a bound
    /// lies inside an interval, or the report is of a `monitor exec` session (`cgroup`: only
    /// sockets created in it; the residency table has no cgroup).
    Records {
        /// Only sockets created in this cgroup.
        cgroup: Option<u64>,
    },
}

impl Figures {
    /// The source of `query`'s figures: the one place this is decided.
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub(crate) fn of(reader: &JournalReader, query: &ReportQuery) -> Result<Self, Error> {
        if let Some(cgroup) = query.session.as_ref().and_then(|s| s.cgroup_id) {
            return Ok(Self::Records { cgroup: Some(cgroup) });
        }
        let p = &query.period;
        Ok(if reader.is_interval_bound(p.since)? && reader.is_interval_bound(p.until)? {
            Self::Intervals
        } else {
            Self::Records { cgroup: None }
        })
    }

    /// The cgroup whose sockets alone count (`monitor exec` sessions), for every section read
    /// from the connection records: by service, host names, truth rows, evidence.
    pub(crate) fn cgroup(self) -> Option<u64> {
        match self {
            Self::Intervals => None,
            Self::Records { cgroup } => cgroup,
        }
    }

    /// Public destinations (country, ASN) per app of `range` from this source's fine rows: the
    /// public keys of [`Figures::rows`].
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub(crate) fn destinations(
        self,
        reader: &JournalReader,
        range: TimeRange,
        app: Option<&str>,
    ) -> Result<Vec<DestinationRow>, Error> {
        Ok(match self {
            Self::Intervals => reader.destinations(range, app)?,
            Self::Records { cgroup } => reader.destinations_of_records(range, app, cgroup)?,
        })
    }

    /// Residency rows of `range` (of `app` when given) from this source's fine rows.
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub(crate) fn rows(
        self,
        reader: &JournalReader,
        range: TimeRange,
        app: Option<&str>,
    ) -> Result<Vec<ResidencyRow>, Error> {
        Ok(match self {
            Self::Intervals => reader.residency(range, app)?,
            Self::Records { cgroup } => reader.residency_of_records(range, app, cgroup)?,
        })
    }
    /// Payload per app of `range` from this source's fine rows: the payload of
    /// [`Figures::rows`] summed per app (the timeline's buckets).
    ///
    /// # Errors
    /// When the journal cannot be read.
    pub(crate) fn payload(
        self,
        reader: &JournalReader,
        range: TimeRange,
        app: Option<&str>,
    ) -> Result<Vec<(String, u64, u64)>, Error> {
        Ok(match self {
            Self::Intervals => reader.payload_of_residency(range, app)?,
            Self::Records { cgroup } => reader.payload_of_records(range, app, cgroup)?,
        })
    }
}

/// Which tables a report reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The rollups when they can answer, else the fine tables.
    Auto,
    /// Always the fine tables (tests compare the two).
    Fine,
}

/// What [`read`] takes from the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Residency figures of the period and of the previous one.
    pub residency: bool,
    /// Endpoints.
    pub endpoints: bool,
    /// By service, the endpoints' host names, consensus and plausibility (journal schema 11 on).
    pub names: bool,
}

/// Public destinations of one app in the previous period.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub countries: BTreeSet<String>,
    pub asns: BTreeSet<u32>,
}

/// The rows a report is built from.
#[derive(Debug)]
pub(super) struct Inputs {
    /// Residency rows of the period (of the app, with a filter), sorted by key.
    pub rows: Vec<ResidencyRow>,
    /// IP-layer bytes of every app in the period.
    pub attributed_wire_bytes: u64,
    /// Per app: destinations of the previous period.
    pub previous: BTreeMap<String, Seen>,
    /// Per app: endpoints of the period.
    pub endpoints: BTreeMap<String, AppEndpoints>,
    /// Traffic per app, host name and destination.
    pub services: Vec<ServiceRow>,
    /// Per (app, address) of a top endpoint: the host names of the period's records there.
    pub endpoint_names: HashMap<(String, String), Vec<String>>,
    /// Public destinations per app with the databases' answers and RTTs (empty before schema 4).
    pub truth: Vec<TruthRow>,
}

/// Decides which rollups a report of `period` may read.
///
/// # Errors
/// When the journal cannot be read.
pub(crate) fn plan(
    reader: &JournalReader,
    period: &Period,
    previous: &Period,
    connections_purged: Option<Timestamp>,
    source: Source,
) -> Result<Plan, Error> {
    let none = Plan { residency: false, endpoints: false, names: false };
    // Weeks, and ranges on a week's bounds, whose previous period is the week before.
    // A range whose week cannot be computed (the end of the representable range) is no week.
    let week = |p: &Period| p.is_iso_week().unwrap_or(false);
    if source == Source::Fine || !week(period) || !week(previous) {
        return Ok(none);
    }
    let Some(state) = reader.rollup_state()? else {
        return Ok(none);
    };
    if state.time_zone != period.time_zone_name || !state.covers(previous.since) {
        return Ok(none);
    }
    let intact = |horizon: Option<Timestamp>| horizon.is_none_or(|h| h <= previous.since);
    let endpoints = intact(connections_purged);
    // The names rollups exist from schema 11; `service_week` counts flows as the records do
    // from 18 (an older journal, not migrated yet, reads them from the records).
    let names = endpoints && reader.schema_version()? >= NAMES_ROLLUP_SCHEMA.max(SERVICE_FLOWS_SCHEMA);
    Ok(Plan { residency: intact(reader.residency_purged_before()?), endpoints, names })
}

/// Reads the rows of `query` (previous period `previous`) from `figures` and the tables `plan`
/// names.
///
/// The sections read from the connection records (endpoints, and by service, host names and
/// truth rows) each sort the period's records: they are read side by side, on connections of
/// their own, while this one reads the residency figures (a two-day range of a journal of two
/// million records: 6.2 s one after the other).
///
/// # Errors
/// When the journal cannot be read.
pub(super) fn read(
    reader: &JournalReader,
    query: &ReportQuery,
    previous: &Period,
    figures: Figures,
    plan: Plan,
) -> Result<Inputs, Error> {
    let (period, app) = (&query.period, query.app.as_deref());
    let wire = |rows: &[ResidencyRow]| rows.iter().map(|r| r.wire_tx + r.wire_rx).sum::<u64>();
    let cgroup = figures.cgroup();
    // Never the rollups for a `monitor exec` session: they hold every cgroup (and whole
    // intervals only).
    let endpoints_from_records = !plan.endpoints || matches!(figures, Figures::Records { .. });
    // By service, host names, truth rows: from the rollups when the plan says so, else from the
    // records.
    let names_from_records = !plan.names || matches!(figures, Figures::Records { .. });
    let with_truth = reader.schema_version()? >= super::truth::TRUTH_SCHEMA;
    let path = reader.path();
    std::thread::scope(|scope| {
        let endpoints = endpoints_from_records.then(|| {
            scope.spawn(|| -> Result<_, Error> {
                let r = JournalReader::open(path)?;
                let current = r.endpoints(period.time_range(), app, cgroup)?;
                let before = r.endpoint_keys(previous.time_range(), app, cgroup)?;
                Ok(summarise(current, &before, query.top_endpoints))
            })
        });
        let named_rows = names_from_records.then(|| {
            scope.spawn(|| -> Result<_, Error> {
                let r = JournalReader::open(path)?;
                let range = period.time_range();
                let hostnames = r.endpoint_hostnames(range, app, cgroup)?;
                let truth = if with_truth { r.truth(range, app, cgroup)? } else { Vec::new() };
                Ok((r.services(range, app, cgroup)?, hostnames, truth))
            })
        });
        let (rows, attributed_wire_bytes, previous_seen) = match figures {
            Figures::Records { cgroup } => {
                let rows = figures.rows(reader, period.time_range(), app)?;
                // Host-wide, as the statistics it is compared with: every app, every cgroup.
                let all = if app.is_none() && cgroup.is_none() {
                    wire(&rows)
                } else {
                    wire(&reader.residency_of_records(period.time_range(), None, None)?)
                };
                (rows, all, seen_of(figures.destinations(reader, previous.time_range(), app)?))
            }
            Figures::Intervals if plan.residency => {
                let rows = reader.residency_week(period.time_range(), app)?;
                let all =
                    if app.is_some() { wire(&reader.residency_week(period.time_range(), None)?) } else { wire(&rows) };
                (rows, all, seen_of(reader.destinations_week(previous.since, app)?))
            }
            Figures::Intervals => {
                let rows = reader.residency(period.time_range(), app)?;
                let all = if app.is_some() { wire(&reader.residency(period.time_range(), None)?) } else { wire(&rows) };
                (rows, all, seen_of(reader.destinations(previous.time_range(), app)?))
            }
        };
        let endpoints = match endpoints {
            Some(handle) => joined(handle)?,
            None => reader
                .endpoints_week(period.since, app, query.top_endpoints)?
                .into_iter()
                .map(|e| (e.app.clone(), e))
                .collect(),
        };
        let top = endpoints.values().flat_map(|a| a.top.iter().map(|(e, _)| (e.app.clone(), e.ip.clone())));
        let mut endpoint_names: EndpointNames = top.map(|k| (k, Vec::new())).collect();
        let (services, truth) = match named_rows {
            Some(handle) => {
                let (services, hostnames, truth) = joined(handle)?;
                for (app, ip, host) in hostnames {
                    if let Some(list) = endpoint_names.get_mut(&(app, ip)) {
                        list.push(host);
                    }
                }
                (services, truth)
            }
            None => {
                for ((app, ip), list) in &mut endpoint_names {
                    *list = reader.endpoint_hostnames_week(period.since, app, ip)?;
                }
                let truth = if with_truth { reader.truth_week(period.since, app)? } else { Vec::new() };
                (reader.services_week(period.since, app)?, truth)
            }
        };
        Ok(Inputs { rows, attributed_wire_bytes, previous: previous_seen, endpoints, services, endpoint_names, truth })
    })
}

/// The result of a section read on a thread of its own; a panic there goes on here.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T, Error>>) -> Result<T, Error> {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Host names per (app, address).
type EndpointNames = HashMap<(String, String), Vec<String>>;

/// Public countries and ASNs per app.
fn seen_of(destinations: Vec<DestinationRow>) -> BTreeMap<String, Seen> {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for d in destinations {
        let s = seen.entry(d.app).or_default();
        s.countries.extend(d.country);
        s.asns.extend(d.asn);
    }
    seen
}

/// Per app: the endpoints of `current` with whether `before` lacks them, sorted by payload
/// (up + down) descending, then address, port, protocol; counted, then cut to `top`.
fn summarise(current: Vec<EndpointRow>, before: &[EndpointKey], top: usize) -> BTreeMap<String, AppEndpoints> {
    let known: HashSet<(&str, &str, Option<u16>, &str)> =
        before.iter().map(|e| (e.app.as_str(), e.ip.as_str(), e.port, e.protocol.as_str())).collect();
    let mut by_app: BTreeMap<String, Vec<(EndpointRow, bool)>> = BTreeMap::new();
    for e in current {
        let new = !known.contains(&(e.app.as_str(), e.ip.as_str(), e.port, e.protocol.as_str()));
        by_app.entry(e.app.clone()).or_default().push((e, new));
    }
    by_app
        .into_iter()
        .map(|(app, mut list)| {
            list.sort_by(|(a, _), (b, _)| {
                (b.payload_tx + b.payload_rx)
                    .cmp(&(a.payload_tx + a.payload_rx))
                    .then_with(|| (&a.ip, a.port, &a.protocol).cmp(&(&b.ip, b.port, &b.protocol)))
            });
            let total = list.len() as u64;
            let new = list.iter().filter(|(_, new)| *new).count() as u64;
            list.truncate(top);
            (app.clone(), AppEndpoints { app, total, new, top: list })
        })
        .collect()
}
