//! Writing a [`Buffer`] inside one transaction. Reads the buffer only: the caller clears it after
//! the commit succeeded, so a failed flush loses nothing.

use std::{collections::HashMap, sync::Arc};

use jiff::Timestamp;
use rusqlite::{Transaction, params};
use serde_json::json;

use super::{
    buffer::{Bucket, BucketKey, Buffer, Pending},
    names::{self, int, ms},
    rollup::{Fold, Rollup},
};
use crate::{
    enrich::{DbRef, Destination},
    identity::App,
    tracker::FlowRecord,
};

/// Rows written by one flush.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Written {
    pub connections: usize,
    pub residency: usize,
    pub stats: usize,
}

/// Writes everything in `buf` and folds it into the weekly rollups. `run_started` tags
/// statistics rows with the daemon run.
pub(super) fn write(
    tx: &Transaction<'_>,
    buf: &Buffer,
    rollup: &mut Rollup,
    interval_secs: i64,
    run_started: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<Written> {
    let mut dbs = DbIds::default();
    if let Some(list) = &buf.databases {
        tx.execute("UPDATE databases SET in_use = 0 WHERE in_use = 1", [])?;
        let mut stmt = tx.prepare_cached(
            "INSERT INTO databases (role, database_type, build_epoch, path, registered_ms, in_use)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT (role, database_type, build_epoch)
             DO UPDATE SET path = excluded.path, registered_ms = excluded.registered_ms, in_use = 1",
        )?;
        for info in list {
            let path = info.path.to_string_lossy();
            stmt.execute(params![info.role, &*info.db.database_type, int(info.db.build_epoch), path, ms(now)])?;
        }
    }
    let app_ids = app_ids(tx, buf)?;
    let mut fold = Fold::default();
    for pending in &buf.records {
        // Before the insert: the probe asks whether an earlier record of the socket is there.
        let probed = rollup.probe(tx, pending)?;
        let app_id = app_ids.get(&*pending.app).copied().unwrap_or_default();
        insert_connection(tx, &mut dbs, pending, app_id)?;
        if let Some(probed) = probed {
            fold.add_record(probed, pending);
        }
    }
    for (key, bucket) in &buf.buckets {
        let country_db = dbs.id_of(tx, "country", key.country_db.as_ref())?.unwrap_or(0);
        let asn_db = dbs.id_of(tx, "asn", key.asn_db.as_ref())?.unwrap_or(0);
        upsert_bucket(tx, key, bucket, (country_db, asn_db), interval_secs)?;
        fold.add_bucket(rollup, key, bucket, (country_db, asn_db), interval_secs);
    }
    fold.write(tx, rollup)?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO stats (time_ms, run_started_ms, last, events_submitted, events_lost, storage_failures,
             peer_evictions, peer_parse_failures, unattributed_packets, unattributed_bytes, events_received,
             decode_errors, closed_flows, silent_sockets, incomplete_flows, open_flows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    for row in &buf.stats {
        let d = &row.delta;
        stmt.execute(params![
            ms(row.time),
            ms(run_started),
            row.last,
            int(d.events_submitted),
            int(d.events_lost),
            int(d.storage_failures),
            int(d.peer_evictions),
            int(d.peer_parse_failures),
            int(d.unattributed_packets),
            int(d.unattributed_bytes),
            int(d.events_received),
            int(d.decode_errors),
            int(d.closed_flows),
            int(d.silent_sockets),
            int(d.incomplete_flows),
            int(row.open_flows),
        ])?;
    }
    let loss = &buf.loss;
    if !loss.is_empty() {
        tx.execute(
            "INSERT INTO losses (time_ms, first_ms, last_ms, records, buckets, payload_bytes, wire_bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                ms(now),
                loss.first.map_or(ms(now), ms),
                loss.last.map_or(ms(now), ms),
                int(loss.records),
                int(loss.buckets),
                int(loss.payload_bytes),
                int(loss.wire_bytes),
            ],
        )?;
    }
    let written = Written { connections: buf.records.len(), residency: buf.buckets.len(), stats: buf.stats.len() };
    let rows = written.connections + written.residency + written.stats;
    tx.execute(
        "UPDATE daemon_state SET last_flush_ms = ?1, flushes = flushes + 1, rows_written = rows_written + ?2 WHERE id = 1",
        params![ms(now), i64::try_from(rows).unwrap_or(i64::MAX)],
    )?;
    Ok(written)
}

/// `databases.id` of each (role, type, build) seen in this flush.
#[derive(Default)]
struct DbIds(HashMap<(&'static str, Arc<str>, u64), i64>);

impl DbIds {
    fn id_of(
        &mut self,
        tx: &Transaction<'_>,
        role: &'static str,
        db: Option<&(Arc<str>, u64)>,
    ) -> rusqlite::Result<Option<i64>> {
        let Some((database_type, build_epoch)) = db else {
            return Ok(None);
        };
        let key = (role, database_type.clone(), *build_epoch);
        if let Some(id) = self.0.get(&key) {
            return Ok(Some(*id));
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO databases (role, database_type, build_epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (role, database_type, build_epoch) DO UPDATE SET role = excluded.role
                 RETURNING id",
            )?
            .query_row(params![role, &**database_type, int(*build_epoch)], |row| row.get(0))?;
        self.0.insert(key, id);
        Ok(Some(id))
    }

    fn id_of_ref(
        &mut self,
        tx: &Transaction<'_>,
        role: &'static str,
        db: Option<&DbRef>,
    ) -> rusqlite::Result<Option<i64>> {
        let key = db.map(|d| (d.database_type.clone(), d.build_epoch));
        self.id_of(tx, role, key.as_ref())
    }
}

/// `apps.id` of `app` (pid and start time are per process: they stay in `connections`).
/// `apps.id` of every app of the buffered records: one upsert per app and flush (not per record),
/// with the latest time any of its records was seen.
fn app_ids<'a>(tx: &Transaction<'_>, buf: &'a Buffer) -> rusqlite::Result<HashMap<&'a App, i64>> {
    let mut latest: HashMap<&App, Timestamp> = HashMap::new();
    for Pending { record, app, .. } in &buf.records {
        latest.entry(&**app).and_modify(|t| *t = (*t).max(record.last_seen)).or_insert(record.last_seen);
    }
    latest.into_iter().map(|(app, seen)| Ok((app, app_id(tx, app, seen)?))).collect()
}

fn app_id(tx: &Transaction<'_>, app: &App, seen: Timestamp) -> rusqlite::Result<i64> {
    let App { name, exe, cmdline, pid: _, start_time: _, uid, user, unit, cgroup, container, source } = app;
    let source = names::name(*source);
    let identity = json!([name, exe, cmdline, uid, user, unit, cgroup, container, source]).to_string();
    tx.prepare_cached(
        "INSERT INTO apps (identity, name, exe, cmdline, uid, user, unit, cgroup, container, source,
             first_seen_ms, last_seen_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
         ON CONFLICT (identity) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)
         RETURNING id",
    )?
    .query_row(params![identity, name, exe, cmdline, uid, user, unit, cgroup, container, source, ms(seen)], |row| {
        row.get(0)
    })
}

fn insert_connection(tx: &Transaction<'_>, dbs: &mut DbIds, pending: &Pending, app_id: i64) -> rusqlite::Result<()> {
    let Pending { record, app, dest } = pending;
    let FlowRecord {
        event,
        cookie,
        owner,
        protocol,
        ip_protocol,
        direction,
        local,
        remote,
        payload,
        payload_source,
        payload_sources: _,
        wire,
        delta_payload,
        delta_wire,
        first_seen,
        last_seen,
        closed,
        complete,
    } = record;
    let (scope, country, asn, as_org, country_db, asn_db) = match (remote, dest) {
        (None, _) => (None, None, None, None, None, None),
        (Some(_), None) => (Some(names::SCOPE_UNENRICHED), None, None, None, None, None),
        (Some(_), Some(Destination { scope, country, asn, as_org, country_db, asn_db })) => (
            Some(names::name(*scope)),
            country.as_deref(),
            *asn,
            as_org.as_deref(),
            dbs.id_of_ref(tx, "country", country_db.as_ref())?,
            dbs.id_of_ref(tx, "asn", asn_db.as_ref())?,
        ),
    };
    tx.prepare_cached(
        "INSERT INTO connections (event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid,
             app_start_time, owner_tgid, owner_pid, owner_uid, owner_gid, owner_comm, owner_cgroup_id,
             owner_source, protocol, direction, local_ip, local_port, remote_ip, remote_port,
             payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx,
             delta_payload_tx, delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx,
             delta_packets_rx, payload_source, complete, scope, country, asn, as_org, country_db, asn_db,
             ip_protocol)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20,
             ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39,
             ?40, ?41, ?42)",
    )?
    .execute(params![
        names::name(*event),
        ms(*last_seen),
        ms(*first_seen),
        closed.map(ms),
        cookie.cast_signed(),
        app_id,
        app.pid,
        int(app.start_time),
        owner.tgid,
        owner.pid,
        owner.uid,
        owner.gid,
        owner.comm,
        owner.cgroup_id.cast_signed(),
        names::name(owner.source),
        names::name(*protocol),
        names::name(*direction),
        local.map(|a| a.ip().to_string()),
        local.map(|a| a.port()),
        remote.map(|a| a.ip().to_string()),
        remote.map(|a| a.port()),
        int(payload.tx_bytes),
        int(payload.rx_bytes),
        int(wire.tx_bytes),
        int(wire.rx_bytes),
        int(wire.tx_packets),
        int(wire.rx_packets),
        int(delta_payload.tx_bytes),
        int(delta_payload.rx_bytes),
        int(delta_wire.tx_bytes),
        int(delta_wire.rx_bytes),
        int(delta_wire.tx_packets),
        int(delta_wire.rx_packets),
        names::name(*payload_source),
        complete,
        scope,
        country,
        asn,
        as_org,
        country_db,
        asn_db,
        ip_protocol,
    ])?;
    Ok(())
}

/// Adds a bucket to its row: sums from two flushes of the same (interval, key) add up.
fn upsert_bucket(
    tx: &Transaction<'_>,
    key: &BucketKey,
    b: &Bucket,
    (country_db, asn_db): (i64, i64),
    interval_secs: i64,
) -> rusqlite::Result<()> {
    let BucketKey { interval_start, app, scope, country, asn, as_org, country_db: _, asn_db: _, payload_source } = key;
    tx.prepare_cached(
        "INSERT INTO residency (interval_start, interval_secs, app, scope, country, asn, as_org, country_db,
             asn_db, payload_source, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx,
             connections, new_flows, incomplete_flows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
         ON CONFLICT (interval_start, app, scope, country, asn, as_org, country_db, asn_db, payload_source,
             interval_secs)
         DO UPDATE SET payload_tx = payload_tx + excluded.payload_tx,
             payload_rx = payload_rx + excluded.payload_rx,
             wire_tx = wire_tx + excluded.wire_tx,
             wire_rx = wire_rx + excluded.wire_rx,
             packets_tx = packets_tx + excluded.packets_tx,
             packets_rx = packets_rx + excluded.packets_rx,
             connections = connections + excluded.connections,
             new_flows = new_flows + excluded.new_flows,
             incomplete_flows = incomplete_flows + excluded.incomplete_flows",
    )?
    .execute(params![
        interval_start,
        interval_secs,
        app,
        scope,
        country,
        asn,
        as_org,
        country_db,
        asn_db,
        payload_source,
        int(b.payload_tx),
        int(b.payload_rx),
        int(b.wire_tx),
        int(b.wire_rx),
        int(b.packets_tx),
        int(b.packets_rx),
        int(b.connections),
        int(b.new_flows),
        int(b.incomplete_flows),
    ])?;
    Ok(())
}
