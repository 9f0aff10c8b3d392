//! Folding one flush into the rollups, inside the flush transaction: what the flush writes to
//! `connections` and `residency` is added to `endpoint_week` and `residency_week`.

use std::collections::BTreeMap;

use foldhash::HashSet;

use rusqlite::{Transaction, params};

use super::{
    Rollup,
    rows::{self, EndpointKey, EndpointSums, Latest, ResidencyKey, ResidencySums},
};
use crate::{
    enrich::Destination,
    journal::{
        buffer::{Bucket, BucketKey, Pending},
        names::{self, int, ms},
    },
    tracker::{FlowRecord, record::Direction},
};

/// Port stored for inbound endpoints (their remote port is ephemeral; reported as `null`).
pub(crate) const INBOUND_PORT: i64 = -1;

/// Endpoint of a record in its week: (week start, app, remote address, port, protocol).
type EndpointId = (i64, String, String, i64, &'static str);
/// Residency key in its week: (week start, app, scope, country, asn, as_org, country_db, asn_db,
/// payload_source).
type ResidencyId = (i64, String, &'static str, String, i64, String, i64, i64, &'static str);

/// Bound of [`Counted`]: about 2 MiB of keys.
const COUNTED_KEYS: usize = 16_384;

/// (cookie, endpoint in its week) of records written by this writer: a later record with the
/// same key is not the first of its socket there. A cache: emptied when full (the table answers
/// then) and when a flush is rolled back ([`Rollup::forget`]).
#[derive(Debug, Default)]
pub(crate) struct Counted(HashSet<(u64, EndpointId)>);

impl Counted {
    fn contains(&self, key: &(u64, EndpointId)) -> bool {
        self.0.contains(key)
    }

    fn insert(&mut self, key: (u64, EndpointId)) {
        if self.0.len() >= COUNTED_KEYS {
            self.0.clear();
        }
        self.0.insert(key);
    }
}

/// A record's endpoint in its week, and whether it is the first record of its socket there.
pub(crate) struct Probed {
    id: EndpointId,
    first: bool,
}

/// What one flush adds to the rollups, summed in memory first. Ordered maps: rows are then
/// written in primary-key order, each page of the tables visited once.
#[derive(Default)]
pub(crate) struct Fold {
    endpoints: BTreeMap<EndpointId, EndpointSums<String>>,
    residency: BTreeMap<ResidencyId, ResidencySums>,
}

impl Rollup {
    /// Forgets what the cache of counted records holds (a flush was rolled back: its records
    /// are not in the table).
    pub(crate) fn forget(&mut self) {
        self.counted.0.clear();
    }

    /// Call **before** inserting `pending` into `connections`: its endpoint and week, and whether
    /// no record of the same socket at that endpoint is in that week yet (the report's `flows`
    /// is `COUNT(DISTINCT cookie)` per endpoint and week; `connections_cookie` makes this cheap).
    /// `None` without a remote address or before the covered weeks.
    /// `before_query` runs before the table is asked: the caller writes the records it holds
    /// back (batched inserts), so that the lookup sees every earlier record.
    pub(crate) fn probe(
        &mut self,
        tx: &Transaction<'_>,
        pending: &Pending,
        before_query: impl FnOnce() -> rusqlite::Result<()>,
    ) -> rusqlite::Result<Option<Probed>> {
        let Pending { record, app, dest: _, names: _ } = pending;
        let FlowRecord { cookie, protocol, direction, remote, last_seen, .. } = record;
        // No record of a cookie above `max_cookie` is stored; the caller inserts this one next
        // (a rolled back flush leaves the bound high: more lookups, never fewer).
        let fresh = *cookie > self.max_cookie;
        self.max_cookie = if cookie.cast_signed() < 0 { u64::MAX } else { self.max_cookie.max(*cookie) };
        let Some(remote) = remote else {
            return Ok(None);
        };
        let Some(week) = self.weeks.containing_ms(ms(*last_seen)).filter(|w| w.start >= self.covered_from) else {
            return Ok(None);
        };
        let port = if *direction == Direction::Inbound { INBOUND_PORT } else { i64::from(remote.port()) };
        let id = (week.start, app.name.clone(), remote.ip().to_string(), port, names::name(*protocol));
        let key = (*cookie, id.clone());
        let seen: bool = if fresh {
            false
        } else if self.counted.contains(&key) {
            true
        } else {
            before_query()?;
            // `connections_cookie` (cookie, remote_ip, remote_port, time_ms) narrows this to the
            // socket's records at that endpoint in that week (inbound: at that address).
            let sql = if id.3 == INBOUND_PORT {
                "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id
                     WHERE c.cookie = ?1 AND c.remote_ip = ?4 AND c.time_ms >= ?2 AND c.time_ms < ?3
                         AND c.direction = 'inbound' AND ?5 = ?5 AND c.protocol = ?6 AND a.name = ?7)"
            } else {
                "SELECT EXISTS (SELECT 1 FROM connections c JOIN apps a ON a.id = c.app_id
                     WHERE c.cookie = ?1 AND c.remote_ip = ?4 AND c.remote_port = ?5 AND c.time_ms >= ?2
                         AND c.time_ms < ?3 AND c.direction != 'inbound' AND c.protocol = ?6 AND a.name = ?7)"
            };
            tx.prepare_cached(sql)?.query_row(
                params![cookie.cast_signed(), week.start_ms(), week.end_ms(), id.2, id.3, id.4, id.1],
                |row| row.get(0),
            )?
        };
        // The caller inserts the record next: any later record of the key has an earlier one.
        self.counted.insert(key);
        Ok(Some(Probed { id, first: !seen }))
    }
}

impl Fold {
    /// Adds a record (after [`Rollup::probe`]).
    pub fn add_record(&mut self, probed: Probed, pending: &Pending) {
        let Probed { id, first } = probed;
        let record = &pending.record;
        let deltas = [
            int(record.delta_payload.tx_bytes),
            int(record.delta_payload.rx_bytes),
            int(record.delta_wire.tx_bytes),
            int(record.delta_wire.rx_bytes),
        ];
        let sums = self.endpoints.entry(id).or_insert_with(EndpointSums::empty);
        sums.add_record(deltas, first, ms(record.last_seen), || latest_of(pending));
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
        let id = (
            week.start,
            app.clone(),
            *scope,
            country.clone(),
            i64::from(*asn),
            as_org.clone(),
            country_db,
            asn_db,
            *payload_source,
        );
        self.residency.entry(id).and_modify(|s| s.add(&sums)).or_insert(sums);
    }

    /// Adds everything folded to the rollup tables.
    pub fn write(self, tx: &Transaction<'_>, rollup: &mut Rollup) -> rusqlite::Result<()> {
        let Self { endpoints, residency } = self;
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
        for ((week_start, app, ip, port, protocol), sums) in &endpoints {
            let week = rollup.weeks.containing(*week_start);
            let previous_start = week.and_then(|w| rollup.weeks.previous(w)).map_or(i64::MIN, |w| w.start);
            // Only a week before the latest one can have a next week's row to correct.
            let next_start = week
                .and_then(|w| rollup.weeks.next(w))
                .map(|w| w.start)
                .filter(|next| *next <= rollup.latest_endpoint_week);
            rollup.latest_endpoint_week = rollup.latest_endpoint_week.max(*week_start);
            let key =
                EndpointKey { week_start: *week_start, previous_start, next_start, app, ip, port: *port, protocol };
            rows::add_endpoint(tx, &key, sums)?;
        }
        Ok(())
    }
}

/// Destination columns of a record as `insert_connection` stores them.
fn latest_of(pending: &Pending) -> Latest<String> {
    match (&pending.record.remote, &pending.dest) {
        (None, _) => Latest { scope: None, country: None, asn: None, as_org: None },
        (Some(_), None) => {
            Latest { scope: Some(names::SCOPE_UNENRICHED.into()), country: None, asn: None, as_org: None }
        }
        (Some(_), Some(Destination { scope, country, asn, as_org, .. })) => Latest {
            scope: Some(names::name(*scope).into()),
            country: country.as_deref().map(str::to_owned),
            asn: asn.map(i64::from),
            as_org: as_org.as_deref().map(str::to_owned),
        },
    }
}
