//! Building the rollups of the covered weeks from the fine tables (a journal that has data but no
//! rollups for the writer's time zone). One pass over each table in time order, summed in
//! memory one week at a time with strings interned (SQLite's GROUP BY sorts every row: several
//! times slower on millions of rows), then written in primary-key order.
//!
//! Memory: about 100 bytes per distinct (app, endpoint) of the largest week, plus the distinct
//! strings (a million endpoints in a week: ~150 MB, freed when the backfill ends).

use std::collections::HashMap;

use rusqlite::{Row, Transaction, types::Type};

use super::{
    Weeks,
    rows::{self, EndpointKey, EndpointSums, Latest, ResidencyKey, ResidencySums, ServiceKey, ServiceSums},
    weeks::Week,
};

/// Fine rows read by a backfill.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Backfilled {
    /// `residency` rows.
    pub residency: u64,
    /// `connections` records with a remote address.
    pub connections: u64,
}

/// `covered_from` for the journal as it is: the start of the week before the week of the latest
/// residency row or connection record; `i64::MIN` (everything) when there is none.
pub(super) fn covered_from(tx: &Transaction<'_>, weeks: &mut Weeks) -> rusqlite::Result<i64> {
    let residency: Option<i64> = tx.query_row("SELECT MAX(interval_start) FROM residency", [], |r| r.get(0))?;
    // The latest record is in the spans from the first whose running maximum is the last's on.
    let connections: Option<i64> = tx.query_row(
        concat!(
            "SELECT MAX(time_ms) FROM connections WHERE id >= ",
            crate::journal::spans::from_id!("(SELECT max_before_ms FROM connection_spans ORDER BY id DESC LIMIT 1)")
        ),
        [],
        |r| r.get(0),
    )?;
    let latest = residency.into_iter().chain(connections.map(|t| t.div_euclid(1000))).max();
    let Some(latest) = latest else {
        return Ok(i64::MIN);
    };
    // A week jiff cannot represent has no report: nothing is covered.
    Ok(weeks.containing(latest).and_then(|w| weeks.previous(w)).map_or(i64::MAX, |w| w.start))
}

/// Adds the fine rows of every week starting at or after `from` to the (empty) rollup tables.
pub(super) fn run(tx: &Transaction<'_>, weeks: &mut Weeks, from: i64) -> rusqlite::Result<Backfilled> {
    let residency = residency(tx, weeks, from)?;
    let connections = endpoints(tx, weeks, from)?;
    Ok(Backfilled { residency, connections })
}

/// Maps and sets with `foldhash` (fast, non-keyed): keys here are small integers and short
/// strings from our own file, and it halves the cost of the in-memory sums against SipHash.
type FastMap<K, V> = foldhash::HashMap<K, V>;
type FastSet<K> = foldhash::HashSet<K>;

/// Strings seen by a backfill, by number; remembers the last string per column (consecutive
/// rows often repeat it).
#[derive(Default)]
struct Interner {
    ids: FastMap<String, u32>,
    names: Vec<String>,
    last: [u32; 24],
}

impl Interner {
    fn id(&mut self, column: usize, s: &str) -> u32 {
        let last = self.last.get(column).copied().unwrap_or(u32::MAX);
        if self.names.get(last as usize).is_some_and(|n| n == s) {
            return last;
        }
        let id = if let Some(id) = self.ids.get(s) {
            *id
        } else {
            // More than 4 billion distinct strings cannot come from one journal.
            let id = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
            self.names.push(s.to_owned());
            self.ids.insert(s.to_owned(), id);
            id
        };
        if let Some(l) = self.last.get_mut(column) {
            *l = id;
        }
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }

    /// Text column `i` of `row` (NULL as `None`), interned.
    fn opt(&mut self, row: &Row<'_>, i: usize) -> rusqlite::Result<Option<u32>> {
        Ok(text(row, i)?.map(|s| self.id(i, s)))
    }

    /// Text column `i` of `row`, NULL as '' (the rollups' sentinel), interned.
    fn req(&mut self, row: &Row<'_>, i: usize) -> rusqlite::Result<u32> {
        Ok(self.id(i, text(row, i)?.unwrap_or_default()))
    }
}

fn text<'r>(row: &'r Row<'_>, i: usize) -> rusqlite::Result<Option<&'r str>> {
    row.get_ref(i)?.as_str_or_null().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

/// (app, scope, country, asn, as_org, country_db, asn_db, payload_source), strings interned.
type ResidencyId = (u32, u32, u32, i64, u32, i64, i64, u32);

fn residency(tx: &Transaction<'_>, weeks: &mut Weeks, from: i64) -> rusqlite::Result<u64> {
    let mut s = Interner::default();
    let mut current: Option<Week> = None;
    let mut sums: FastMap<ResidencyId, ResidencySums> = FastMap::default();
    let mut quarters: FastMap<(i64, u32), (i64, i64)> = FastMap::default();
    let mut read = 0;
    let mut stmt = tx.prepare(
        "SELECT interval_start, interval_secs, app, scope, country, asn, as_org, country_db, asn_db, payload_source,
             payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, connections, new_flows,
             incomplete_flows
         FROM residency WHERE interval_start >= ?1 ORDER BY interval_start",
    )?;
    let mut rows = stmt.query([from])?;
    while let Some(row) = rows.next()? {
        read += 1;
        let start: i64 = row.get(0)?;
        let Some(week) = weeks.containing(start) else {
            continue;
        };
        if current != Some(week) {
            if let Some(done) = current {
                write_residency(tx, done, &mut sums, &s)?;
                write_quarters(tx, &mut quarters, &s)?;
            }
            current = Some(week);
        }
        let q = quarters.entry((start.div_euclid(rows::QUARTER) * rows::QUARTER, s.req(row, 2)?)).or_default();
        let (ptx, prx): (i64, i64) = (row.get(10)?, row.get(11)?);
        *q = (q.0.saturating_add(ptx), q.1.saturating_add(prx));
        let id = (
            s.req(row, 2)?,
            s.req(row, 3)?,
            s.req(row, 4)?,
            row.get(5)?,
            s.req(row, 6)?,
            row.get(7)?,
            row.get(8)?,
            s.req(row, 9)?,
        );
        let add = ResidencySums::of(
            (row.get(10)?, row.get(11)?),
            (row.get(12)?, row.get(13)?),
            (row.get(14)?, row.get(15)?),
            row.get(16)?,
            row.get(17)?,
            row.get(18)?,
            start,
            start.saturating_add(row.get(1)?),
        );
        sums.entry(id).and_modify(|s| s.add(&add)).or_insert(add);
    }
    if let Some(done) = current {
        write_residency(tx, done, &mut sums, &s)?;
        write_quarters(tx, &mut quarters, &s)?;
    }
    Ok(read)
}

fn write_quarters(
    tx: &Transaction<'_>,
    quarters: &mut FastMap<(i64, u32), (i64, i64)>,
    s: &Interner,
) -> rusqlite::Result<()> {
    // ((quarter start, app), (payload sent, received)), in primary-key order.
    let mut list: Vec<_> = quarters.drain().map(|((start, app), v)| ((start, s.name(app)), v)).collect();
    list.sort_unstable();
    for ((start, app), payload) in list {
        rows::add_quarter(tx, start, app, payload)?;
    }
    Ok(())
}

fn write_residency(
    tx: &Transaction<'_>,
    week: Week,
    sums: &mut FastMap<ResidencyId, ResidencySums>,
    s: &Interner,
) -> rusqlite::Result<()> {
    let mut list: Vec<(ResidencyKey<'_>, ResidencySums)> = sums
        .drain()
        .map(|((app, scope, country, asn, as_org, country_db, asn_db, source), v)| {
            let key = ResidencyKey {
                week_start: week.start,
                app: s.name(app),
                scope: s.name(scope),
                country: s.name(country),
                asn,
                as_org: s.name(as_org),
                country_db,
                asn_db,
                payload_source: s.name(source),
            };
            (key, v)
        })
        .collect();
    // Primary-key order: each page of the table is written once.
    list.sort_by(|(a, _), (b, _)| {
        (a.app, a.scope, a.country, a.asn, a.as_org, a.country_db, a.asn_db, a.payload_source).cmp(&(
            b.app,
            b.scope,
            b.country,
            b.asn,
            b.as_org,
            b.country_db,
            b.asn_db,
            b.payload_source,
        ))
    });
    for (key, v) in &list {
        rows::add_residency(tx, key, v)?;
    }
    Ok(())
}

/// (app, remote address, port, protocol), strings interned.
type EndpointId = (u32, u32, i32, u32);

/// (app, host name, registrable domain, name source, country, ASN, organisation), strings
/// interned ('' for NULL), ASN -1 for NULL.
type ServiceId = (u32, u32, u32, u32, u32, i64, u32);

/// One week's endpoint sums: an index into dense vectors (a third of the memory of a map of
/// sums); and the week's service sums and endpoint names.
#[derive(Default)]
struct EndpointWeek {
    index: FastMap<EndpointId, u32>,
    ids: Vec<EndpointId>,
    sums: Vec<EndpointSums<u32>>,
    /// (cookie, endpoint) already counted, for sockets with several records.
    counted: FastSet<(i64, EndpointId)>,
    services: FastMap<ServiceId, ServiceSums>,
    /// (cookie, remote address, remote port (-1: inbound), service) already counted, for sockets
    /// with several records: a service's flows are its (socket, endpoint) pairs.
    counted_services: FastSet<(i64, u32, Option<i64>, ServiceId)>,
    /// (app, remote address, host name) of named records.
    names: FastSet<(u32, u32, u32)>,
}

impl EndpointWeek {
    fn entry(&mut self, id: EndpointId) -> Option<&mut EndpointSums<u32>> {
        let next = u32::try_from(self.ids.len()).ok()?;
        let i = *self.index.entry(id).or_insert(next);
        if i == next {
            self.ids.push(id);
            self.sums.push(EndpointSums::empty());
        }
        self.sums.get_mut(i as usize)
    }
}

fn endpoints(tx: &Transaction<'_>, weeks: &mut Weeks, from: i64) -> rusqlite::Result<u64> {
    let from_ms = from.saturating_mul(1000);
    // Sockets with several records: only those need remembering to be counted once per week.
    let multi: FastSet<i64> = tx
        .prepare(concat!(
            "SELECT cookie FROM connection_rows WHERE time_ms >= ?1 AND id >= ",
            crate::journal::spans::from_id!("?1"),
            " GROUP BY cookie HAVING COUNT(*) > 1"
        ))?
        .query_map([from_ms], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut s = Interner::default();
    let apps: FastMap<i64, u32> = {
        let mut stmt = tx.prepare("SELECT id, name FROM apps")?;
        let mut rows = stmt.query([])?;
        let mut apps = FastMap::default();
        while let Some(row) = rows.next()? {
            apps.insert(row.get(0)?, s.req(row, 1)?);
        }
        apps
    };
    let mut current: Option<Week> = None;
    let mut week_sums = EndpointWeek::default();
    let mut read = 0;
    let mut stmt = tx.prepare(concat!(
        "SELECT time_ms, cookie, app_id, remote_ip, CASE WHEN direction = ",
        crate::journal::names::sql!(Direction::Inbound),
        " THEN -1 ELSE remote_port END,
             protocol, delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, scope, country, asn, as_org,
             hostname, registrable_domain, name_source, consensus, ",
        crate::journal::truth::answers_text!("connections"),
        ", rtt_min_us, direction = ",
        crate::journal::names::sql!(Direction::Listen),
        "
         FROM connections WHERE time_ms >= ?1 AND id >= ",
        crate::journal::spans::from_id!("?1"),
        " ORDER BY time_ms, id",
    ))?;
    let mut rows = stmt.query([from_ms])?;
    while let Some(row) = rows.next()? {
        let time_ms: i64 = row.get(0)?;
        let Some(week) = weeks.containing_ms(time_ms) else {
            continue;
        };
        if current != Some(week) {
            if let Some(done) = current {
                write_endpoints(tx, weeks, done, std::mem::take(&mut week_sums), &s)?;
            }
            current = Some(week);
        }
        let cookie: i64 = row.get(1)?;
        let app_id: i64 = row.get(2)?;
        let Some(app) = apps.get(&app_id).copied() else {
            continue;
        };
        let multiple = multi.contains(&cookie);
        let payload: (i64, i64) = (row.get(6)?, row.get(7)?);
        let listen: bool = row.get(20)?;
        if !listen {
            let asn: Option<i64> = row.get(12)?;
            let sid = (
                app,
                s.req(row, 14)?,
                s.req(row, 15)?,
                s.req(row, 16)?,
                s.req(row, 11)?,
                asn.unwrap_or(-1),
                s.req(row, 13)?,
            );
            // The flow's endpoint: (address, port or -1 inbound); none without a remote end.
            let port: Option<i64> = if text(row, 3)?.is_some() { row.get(4)? } else { None };
            let first = !multiple || week_sums.counted_services.insert((cookie, s.req(row, 3)?, port, sid));
            week_sums.services.entry(sid).or_default().add_record(payload, first);
        }
        if text(row, 3)?.is_none() {
            continue;
        }
        read += 1;
        let id = (app, s.req(row, 3)?, row.get(4)?, s.req(row, 5)?);
        let first = !multiple || week_sums.counted.insert((cookie, id));
        let deltas = [payload.0, payload.1, row.get(8)?, row.get(9)?];
        if let Some(host) = s.opt(row, 14)? {
            week_sums.names.insert((app, id.1, host));
        }
        let latest = Latest {
            scope: s.opt(row, 10)?,
            country: s.opt(row, 11)?,
            asn: row.get(12)?,
            as_org: s.opt(row, 13)?,
            consensus: s.opt(row, 17)?,
            answers: s.opt(row, 18)?,
        };
        let rtt: Option<i64> = row.get(19)?;
        if let Some(sums) = week_sums.entry(id) {
            sums.add_record(deltas, first, (time_ms, rtt), || latest);
        }
    }
    if let Some(done) = current {
        write_endpoints(tx, weeks, done, week_sums, &s)?;
    }
    Ok(read)
}

fn write_endpoints(
    tx: &Transaction<'_>,
    weeks: &mut Weeks,
    week: Week,
    sums: EndpointWeek,
    s: &Interner,
) -> rusqlite::Result<()> {
    let EndpointWeek { index, ids, sums, counted, services, counted_services, names } = sums;
    drop((index, counted, counted_services));
    let previous_start = weeks.previous(week).map_or(i64::MIN, |w| w.start);
    let key =
        |i: usize| ids.get(i).map(|(app, ip, port, protocol)| (s.name(*app), s.name(*ip), *port, s.name(*protocol)));
    let mut answer_ids: HashMap<u32, i64> = HashMap::new();
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_unstable_by(|a, b| key(*a).cmp(&key(*b)));
    for i in order {
        let (Some((app, ip, port, protocol)), Some(v)) = (key(i), sums.get(i)) else {
            continue;
        };
        // Weeks are written oldest first: the next week has no rows yet.
        let key = EndpointKey {
            week_start: week.start,
            previous_start,
            next_start: None,
            app,
            ip,
            port: i64::from(port),
            protocol,
        };
        let Latest { scope, country, asn, as_org, consensus, answers } = v.latest;
        let named = EndpointSums {
            payload_tx: v.payload_tx,
            payload_rx: v.payload_rx,
            wire_tx: v.wire_tx,
            wire_rx: v.wire_rx,
            flows: v.flows,
            latest_ms: v.latest_ms,
            latest: Latest {
                scope: scope.map(|i| s.name(i)),
                country: country.map(|i| s.name(i)),
                asn,
                as_org: as_org.map(|i| s.name(i)),
                consensus: consensus.map(|i| s.name(i)),
                answers: answers.map(|i| s.name(i)),
            },
            rtt_min_us: v.rtt_min_us,
        };
        let answers_id = match answers {
            Some(a) => Some(match answer_ids.get(&a) {
                Some(id) => *id,
                None => {
                    let id = rows::answer_id(tx, s.name(a))?;
                    answer_ids.insert(a, id);
                    id
                }
            }),
            None => None,
        };
        rows::add_endpoint(tx, &key, &named, answers_id)?;
    }
    let mut services: Vec<(ServiceKey<'_>, ServiceSums)> = services
        .into_iter()
        .map(|((app, host, domain, source, country, asn, org), v)| {
            let key = ServiceKey {
                week_start: week.start,
                app: s.name(app),
                hostname: s.name(host),
                registrable_domain: s.name(domain),
                name_source: s.name(source),
                country: s.name(country),
                asn,
                as_org: s.name(org),
            };
            (key, v)
        })
        .collect();
    services.sort_unstable_by(|(a, _), (b, _)| {
        (a.app, a.hostname, a.registrable_domain, a.name_source, a.country, a.asn, a.as_org).cmp(&(
            b.app,
            b.hostname,
            b.registrable_domain,
            b.name_source,
            b.country,
            b.asn,
            b.as_org,
        ))
    });
    for (key, v) in &services {
        rows::add_service(tx, key, v)?;
    }
    let mut names: Vec<(&str, &str, &str)> =
        names.into_iter().map(|(app, ip, host)| (s.name(app), s.name(ip), s.name(host))).collect();
    names.sort_unstable();
    for (app, ip, host) in names {
        rows::add_endpoint_name(tx, week.start, app, ip, host)?;
    }
    Ok(())
}
