//! Folding one flush into the rollups, inside the flush transaction: what the flush writes to
//! `connections` and `residency` is added to `endpoint_week`, `service_week`,
//! `endpoint_name_week` and `residency_week`.

use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use foldhash::HashMap;

use rusqlite::{Transaction, params};

use super::{
    Rollup,
    counted::{COUNTED_KEYS, remember},
    rows::{self, EndpointKey, EndpointSums, Latest, ResidencyKey, ResidencySums, ServiceKey, ServiceSums},
    strings::StrId,
};
use crate::{
    enrich::Destination,
    journal::{
        buffer::{Bucket, BucketKey, Pending},
        names::{self, int, ms},
    },
    tracker::{
        FlowRecord,
        record::{Direction, Protocol, RecordKind},
    },
};

/// Port stored for inbound endpoints (their remote port is ephemeral; reported as `null`).
pub(crate) const INBOUND_PORT: i64 = -1;

/// Endpoint of a record in its week: (week start, app, remote address, port, protocol); strings
/// interned in [`Rollup::strings`].
pub(super) type EndpointId = (i64, StrId, IpAddr, i64, Protocol);
/// Service of a record in its week: (week start, app, host name, registrable domain, name
/// source, country, ASN, organisation), NULL stored as '' (text) and -1 (ASN); strings interned.
pub(super) type ServiceId = (i64, StrId, StrId, StrId, &'static str, StrId, i64, StrId);
/// A flow at a service: (cookie, endpoint, service), the endpoint's port [`INBOUND_PORT`] for an
/// inbound flow (grouped by address, as endpoints are). A service's `flows` count these: an
/// unconnected socket has one per peer, as the app's flows do.
pub(super) type ServiceFlow = (u64, Option<(IpAddr, i64)>, ServiceId);
/// (week start, app, remote address, host name) of a named record.
type EndpointNameId = (i64, String, String, String);
/// Residency key in its week: (week start, app, scope, country, asn, as_org, country_db, asn_db,
/// payload_source).
type ResidencyId = (i64, String, &'static str, String, i64, String, i64, i64, &'static str);

/// A record's endpoint and service in its week, each with whether it is the first record of its
/// socket there. [`Fold::add_record`] remembers both as counted (the keys are small copies).
pub(crate) struct Probed {
    cookie: u64,
    end: Option<(IpAddr, i64)>,
    endpoint: Option<(EndpointId, bool)>,
    service: Option<(ServiceId, bool)>,
}

impl Probed {
    /// Whether the record is the first of its socket at its endpoint or its service in its week:
    /// the only records a later probe looks for in the table (it asks whether a socket has an
    /// earlier record there), so the only ones `connections_cookie` needs (`lookup`, schema 14).
    pub(crate) fn first(&self) -> bool {
        self.endpoint.is_some_and(|(_, first)| first) || self.service.is_some_and(|(_, first)| first)
    }
}

/// Keys of the records probed but not inserted yet (their multi-row insert waits for more rows):
/// a lookup in the table cannot see them, so the probe asks this first. At most one insert's
/// worth of rows (a linear scan, only on the rare lookups).
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    endpoints: Vec<(u64, EndpointId)>,
    services: Vec<ServiceFlow>,
}

impl Unwritten {
    /// Adds the keys of a record about to be buffered for insertion.
    pub(crate) fn add(&mut self, probed: &Probed) {
        if let Some((id, _)) = probed.endpoint {
            self.endpoints.push((probed.cookie, id));
        }
        if let Some((id, _)) = probed.service {
            self.services.push((probed.cookie, probed.end, id));
        }
    }

    /// The buffered records were inserted.
    pub(crate) fn clear(&mut self) {
        self.endpoints.clear();
        self.services.clear();
    }
}

/// What one flush adds to the rollups, summed in memory first. Rows are written in primary-key
/// order, each page of the tables visited once: ordered maps, or, for the two keys every record
/// looks up, hash maps (one hash and one equality test per record instead of a string
/// comparison per tree level) sorted when written. Borrows the destination texts of the flush's
/// records (`'a`: the buffer being written).
#[derive(Default)]
pub(crate) struct Fold<'a> {
    endpoints: HashMap<EndpointId, EndpointSums<Cow<'a, str>>>,
    services: HashMap<ServiceId, ServiceSums>,
    endpoint_names: BTreeSet<EndpointNameId>,
    residency: BTreeMap<ResidencyId, ResidencySums>,
    /// (quarter start, app) → payload sent, received.
    quarters: BTreeMap<(i64, String), (i64, i64)>,
}

impl Rollup {
    /// Call at the start of every flush: bounds the interned strings (forgetting them with the
    /// counted keys that use them, never during a flush: the fold's keys hold their ids).
    pub(crate) fn start_flush(&mut self) {
        if self.strings.len() >= super::strings::MAX_STRINGS {
            self.strings.clear();
            self.counted.clear();
        }
    }

    /// Forgets what the cache of counted records holds (a flush was rolled back: its records
    /// are not in the table).
    pub(crate) fn forget(&mut self) {
        self.counted.clear();
        // Ids inserted by the rolled back flush are gone with it.
        self.answer_ids.clear();
    }

    /// The `answer_sets` id of `text`, remembered (a few hundred distinct lists at most; bounded).
    pub(crate) fn answer_id(&mut self, tx: &Transaction<'_>, text: &str) -> rusqlite::Result<i64> {
        if let Some(id) = self.answer_ids.get(text) {
            return Ok(*id);
        }
        let id = rows::answer_id(tx, text)?;
        if self.answer_ids.len() >= COUNTED_KEYS {
            self.answer_ids.clear();
        }
        self.answer_ids.insert(text.to_owned(), id);
        Ok(id)
    }

    /// Call **before** inserting `pending` into `connections`: its endpoint and service in its
    /// week, each with whether no record of the same socket is there in that week yet (the
    /// report's `flows` is `COUNT(DISTINCT cookie)` per endpoint and week, and distinct (cookie,
    /// endpoint) per service and week;
    /// `connections_cookie` makes this cheap). Neither before the covered weeks; no endpoint
    /// without a remote address, no service for a listening socket.
    /// `unwritten`: the keys of earlier records of this flush not inserted yet (batched
    /// inserts), which the table cannot show; the caller keeps their rows buffered.
    pub(crate) fn probe(
        &mut self,
        tx: &Transaction<'_>,
        pending: &Pending,
        unwritten: &Unwritten,
    ) -> rusqlite::Result<Probed> {
        let Pending { record, app, dest, names: flow_names } = pending;
        let FlowRecord { cookie, protocol, direction, remote, last_seen, .. } = record;
        // The caller inserts this record next (a rolled back flush leaves its cookies known:
        // more lookups, never fewer).
        let fresh = self.cookies.first_write(*cookie);
        if fresh && !last_of_socket(record) {
            self.counted.whole_from_now(*cookie);
        }
        let whole = fresh || self.counted.whole.contains(cookie);
        let end =
            remote.map(|r| (r.ip(), if *direction == Direction::Inbound { INBOUND_PORT } else { i64::from(r.port()) }));
        let mut probed = Probed { cookie: *cookie, end, endpoint: None, service: None };
        let Some(week) = self.weeks.containing_ms(ms(*last_seen)).filter(|w| w.start >= self.covered_from) else {
            return Ok(probed);
        };
        let app_id = self.strings.id(&app.name);
        if *direction != Direction::Listen {
            let (country, asn, as_org) = match (remote, dest) {
                (Some(_), Some(d)) => (d.country.as_deref(), d.asn, d.as_org.as_deref()),
                _ => (None, None, None),
            };
            let host = flow_names.hostname.as_ref().map_or("", |h| h.as_str());
            let domain = flow_names.registrable_domain.as_deref().unwrap_or_default();
            let source = names::name(flow_names.source);
            let (country, asn, org) =
                (country.unwrap_or_default(), asn.map_or(-1, i64::from), as_org.unwrap_or_default());
            let s = &mut self.strings;
            let id: ServiceId = (week.start, app_id, s.id(host), s.id(domain), source, s.id(country), asn, s.id(org));
            let key: ServiceFlow = (*cookie, end, id);
            let seen = if fresh {
                false
            } else if self.counted.services.contains(&key) {
                true
            } else if whole && !self.counted.maybe_remembered(&key) {
                false
            } else if unwritten.services.contains(&key) {
                true
            } else {
                self.lookups += 1;
                let app = &app.name;
                // `connections_cookie` (cookie, remote_ip, remote_port, time_ms) narrows this to the
                // flow's records in that week (inbound: at that address, no remote end: the
                // socket's records without one). One statement per case, so the index is used
                // whole.
                macro_rules! service {
                    ($($head:expr),*) => {
                        concat!(
                            "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id WHERE c.cookie = ?1",
                            $($head,)*
                            " AND c.lookup IS NOT NULL AND c.time_ms >= ?2 AND c.time_ms < ?3 AND c.direction != ",
                            crate::journal::names::sql!(Direction::Listen),
                            " AND a.name = ?4 AND coalesce(c.hostname, '') = ?5
                                 AND coalesce(c.registrable_domain, '') = ?6 AND coalesce(c.name_source, '') = ?7
                                 AND coalesce(c.country, '') = ?8 AND coalesce(c.asn, -1) = ?9
                                 AND coalesce(c.as_org, '') = ?10 AND ?11 IS ?11 AND ?12 IS ?12)"
                        )
                    };
                }
                let sql = match end {
                    None => service!(" AND c.remote_ip IS NULL"),
                    Some((_, INBOUND_PORT)) => service!(
                        " AND c.remote_ip = ?11 AND c.direction = ",
                        crate::journal::names::sql!(Direction::Inbound)
                    ),
                    Some(_) => service!(
                        " AND c.remote_ip = ?11 AND c.remote_port = ?12 AND c.direction != ",
                        crate::journal::names::sql!(Direction::Inbound)
                    ),
                };
                let (ip, port) = (end.map(|(ip, _)| ip.to_string()), end.map(|(_, port)| port));
                tx.prepare_cached(sql)?.query_row(
                    params![
                        cookie.cast_signed(),
                        week.start_ms(),
                        week.end_ms(),
                        app,
                        host,
                        domain,
                        source,
                        country,
                        asn,
                        org,
                        ip,
                        port
                    ],
                    |row| row.get(0),
                )?
            };
            probed.service = Some((key.2, !seen));
        }
        let Some(remote) = remote else {
            return Ok(probed);
        };
        let port = if *direction == Direction::Inbound { INBOUND_PORT } else { i64::from(remote.port()) };
        let id: EndpointId = (week.start, app_id, remote.ip(), port, *protocol);
        let key = (*cookie, id);
        let seen: bool = if fresh {
            false
        } else if self.counted.endpoints.contains(&key) {
            true
        } else if whole && !self.counted.maybe_remembered(&key) {
            false
        } else if unwritten.endpoints.contains(&key) {
            true
        } else {
            self.lookups += 1;
            let (ip, app) = (remote.ip().to_string(), &app.name);
            // `connections_cookie` (cookie, remote_ip, remote_port, time_ms) narrows this to the
            // socket's records at that endpoint in that week (inbound: at that address).
            let sql = if port == INBOUND_PORT {
                concat!(
                    "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id
                     WHERE c.cookie = ?1 AND c.lookup IS NOT NULL AND c.remote_ip = ?4 AND c.time_ms >= ?2
                         AND c.time_ms < ?3
                         AND c.direction = ",
                    crate::journal::names::sql!(Direction::Inbound),
                    " AND ?5 = ?5 AND c.protocol = ?6 AND a.name = ?7)"
                )
            } else {
                concat!(
                    "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id
                     WHERE c.cookie = ?1 AND c.lookup IS NOT NULL AND c.remote_ip = ?4 AND c.remote_port = ?5
                         AND c.time_ms >= ?2
                         AND c.time_ms < ?3 AND c.direction != ",
                    crate::journal::names::sql!(Direction::Inbound),
                    " AND c.protocol = ?6 AND a.name = ?7)"
                )
            };
            tx.prepare_cached(sql)?.query_row(
                params![cookie.cast_signed(), week.start_ms(), week.end_ms(), ip, port, names::name(*protocol), app],
                |row| row.get(0),
            )?
        };
        probed.endpoint = Some((key.1, !seen));
        Ok(probed)
    }
}

/// Whether `record` is the last its socket has: the close (or shutdown) record of a socket with
/// one flow. (A socket counted per peer has a flow per peer, several closing together.) Short
/// connections are all such records: their keys stay out of [`Counted`], three set inserts fewer
/// per record.
fn last_of_socket(record: &FlowRecord) -> bool {
    record.event != RecordKind::Update && !record.of_one_peer()
}

impl<'a> Fold<'a> {
    /// Adds a record (after [`Rollup::probe`]) and remembers its keys in `counted`: the caller
    /// inserts the record next, so any later record of a key has an earlier one.
    /// `answers`: the record's `country_answers` text, as written to `connections`.
    pub fn add_record(&mut self, rollup: &mut Rollup, probed: Probed, pending: &'a Pending, answers: Option<&str>) {
        let counted = &mut rollup.counted;
        let Probed { cookie, end, endpoint, service } = probed;
        let record = &pending.record;
        // The socket's last record: its keys need no remembering. Taken out of `whole`, so that a
        // record that still came later (a late event) asks the table, which has this one.
        let last = last_of_socket(record);
        if last && !counted.whole.is_empty() {
            counted.whole.remove(&cookie);
        }
        let payload = (int(record.delta_payload.tx_bytes), int(record.delta_payload.rx_bytes));
        if let Some((id, first)) = service {
            self.services.entry(id).or_default().add_record(payload, first);
            if !last {
                remember(counted, |c| &mut c.services, cookie, (cookie, end, id));
            }
        }
        let Some((id, first)) = endpoint else {
            return;
        };
        if let Some(host) = &pending.names.hostname {
            let (week, app, ip, ..) = id;
            self.endpoint_names.insert((
                week,
                rollup.strings.text(app).to_owned(),
                ip.to_string(),
                host.as_str().to_owned(),
            ));
        }
        let deltas = [payload.0, payload.1, int(record.delta_wire.tx_bytes), int(record.delta_wire.rx_bytes)];
        let rtt = record.rtt.map(|r| i64::from(r.min_us));
        self.endpoints.entry(id).or_insert_with(EndpointSums::empty).add_record(
            deltas,
            first,
            (ms(record.last_seen), rtt),
            || latest_of(pending, answers),
        );
        if !last {
            remember(&mut rollup.counted, |c| &mut c.endpoints, cookie, (cookie, id));
        }
    }

    /// Adds a residency bucket of `[interval_start, + interval_secs)` with its database ids.
    pub fn add_bucket(
        &mut self,
        rollup: &mut Rollup,
        key: &BucketKey,
        bucket: &Bucket,
        (country_db, asn_db): (i64, i64),
        interval_secs: i64,
    ) {
        let BucketKey { interval_start, app, scope, country, asn, as_org, country_db: _, asn_db: _, payload_source } =
            key;
        let Some(week) = rollup.weeks.containing(*interval_start).filter(|w| w.start >= rollup.covered_from) else {
            return;
        };
        let Bucket {
            payload_tx,
            payload_rx,
            wire_tx,
            wire_rx,
            packets_tx,
            packets_rx,
            connections,
            new_flows,
            incomplete_flows,
        } = *bucket;
        let sums = ResidencySums::of(
            (int(payload_tx), int(payload_rx)),
            (int(wire_tx), int(wire_rx)),
            (int(packets_tx), int(packets_rx)),
            int(connections),
            int(new_flows),
            int(incomplete_flows),
            *interval_start,
            interval_start + interval_secs,
        );
        let quarter = self.quarters.entry((interval_start.div_euclid(rows::QUARTER) * rows::QUARTER, app.to_string()));
        let q = quarter.or_default();
        *q = (q.0.saturating_add(sums.payload_tx), q.1.saturating_add(sums.payload_rx));
        let id = (
            week.start,
            app.to_string(),
            *scope,
            country.as_deref().unwrap_or_default().to_owned(),
            i64::from(*asn),
            as_org.as_deref().unwrap_or_default().to_owned(),
            country_db,
            asn_db,
            *payload_source,
        );
        self.residency.entry(id).and_modify(|s| s.add(&sums)).or_insert(sums);
    }

    /// Adds everything folded to the rollup tables.
    pub fn write(self, tx: &Transaction<'_>, rollup: &mut Rollup) -> rusqlite::Result<()> {
        use std::fmt::Write as _;
        let Self { endpoints, services, endpoint_names, residency, quarters } = self;
        // Keys are distinct: the unstable sort is deterministic.
        let mut endpoints: Vec<_> = endpoints.into_iter().collect();
        // `Protocol` has no order of its own: its stored name orders it.
        let order = |(week, app, ip, port, protocol): &EndpointId| (*week, *app, *ip, *port, names::name(*protocol));
        endpoints.sort_unstable_by(|a, b| order(&a.0).cmp(&order(&b.0)));
        let mut services: Vec<_> = services.into_iter().collect();
        services.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for ((quarter_start, app), payload) in &quarters {
            rows::add_quarter(tx, *quarter_start, app, *payload)?;
        }
        for ((week_start, app, scope, country, asn, as_org, country_db, asn_db, payload_source), sums) in &residency {
            let key = ResidencyKey {
                week_start: *week_start,
                app,
                scope,
                country,
                asn: *asn,
                as_org,
                country_db: *country_db,
                asn_db: *asn_db,
                payload_source,
            };
            rows::add_residency(tx, &key, sums)?;
        }
        let mut ip_text = String::new();
        for ((week_start, app, ip, port, protocol), sums) in &endpoints {
            // Before the key's texts are borrowed from the rollup.
            let answers_id = match &sums.latest.answers {
                Some(text) => Some(rollup.answer_id(tx, text)?),
                None => None,
            };
            let week = rollup.weeks.containing(*week_start);
            let previous_start = week.and_then(|w| rollup.weeks.previous(w)).map_or(i64::MIN, |w| w.start);
            // Only a week before the latest one can have a next week's row to correct.
            let next_start = week
                .and_then(|w| rollup.weeks.next(w))
                .map(|w| w.start)
                .filter(|next| *next <= rollup.latest_endpoint_week);
            rollup.latest_endpoint_week = rollup.latest_endpoint_week.max(*week_start);
            ip_text.clear();
            // Writing to a String cannot fail.
            let _ = write!(ip_text, "{ip}");
            let app = rollup.strings.text(*app);
            let key = EndpointKey {
                week_start: *week_start,
                previous_start,
                next_start,
                app,
                ip: &ip_text,
                port: *port,
                protocol: names::name(*protocol),
            };
            rows::add_endpoint(tx, &key, sums, answers_id)?;
        }
        for ((week_start, app, hostname, registrable_domain, name_source, country, asn, as_org), sums) in &services {
            let text = |id: &StrId| rollup.strings.text(*id);
            let key = ServiceKey {
                week_start: *week_start,
                app: text(app),
                hostname: text(hostname),
                registrable_domain: text(registrable_domain),
                name_source,
                country: text(country),
                asn: *asn,
                as_org: text(as_org),
            };
            rows::add_service(tx, &key, sums)?;
        }
        for (week_start, app, ip, hostname) in &endpoint_names {
            rows::add_endpoint_name(tx, *week_start, app, ip, hostname)?;
        }
        Ok(())
    }
}

/// Destination columns of a record as `insert_connection` stores them (borrowed from the
/// record; the answers text, present only with two or more country databases, copied).
fn latest_of<'a>(pending: &'a Pending, answers_text: Option<&str>) -> Latest<Cow<'a, str>> {
    match (&pending.record.remote, &pending.dest) {
        (None, _) => Latest::none(),
        (Some(_), None) => Latest { scope: Some(Cow::Borrowed(names::SCOPE_UNENRICHED)), ..Latest::none() },
        (Some(_), Some(d)) => {
            let Destination { scope, country, asn, as_org, consensus, .. } = d;
            let checked = answers_text.is_some();
            Latest {
                scope: Some(Cow::Borrowed(names::name(*scope))),
                country: country.as_deref().map(Cow::Borrowed),
                asn: asn.map(i64::from),
                as_org: as_org.as_deref().map(Cow::Borrowed),
                consensus: consensus.filter(|_| checked).map(|c| Cow::Borrowed(names::name(c))),
                answers: answers_text.map(|t| Cow::Owned(t.to_owned())),
            }
        }
    }
}
