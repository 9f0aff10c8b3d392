//! Writing a [`Buffer`] inside one transaction. Reads the buffer only: the caller clears it after
//! the commit succeeded, so a failed flush loses nothing. `ids`: the ids of apps and databases a
//! record refers to; `rows`: the multi-row inserts of connection records.

mod ids;
mod rows;

use std::sync::Arc;

use jiff::Timestamp;
use rusqlite::{Transaction, params};

use self::{
    ids::{DbIds, app_ids},
    rows::{ConnectionRow, Connections},
};
use super::{
    buffer::{Bucket, BucketKey, Buffer},
    chain,
    intern::Interned,
    names::{int, ms},
    rollup::{Fold, Rollup},
};
use crate::{
    enrich::Role,
    tracker::record::{RecordKind, Release},
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
    interned: &mut Interned,
    interval_secs: i64,
    run_started: Timestamp,
    now: Timestamp,
) -> rusqlite::Result<Written> {
    let mark = chain::mark(tx)?;
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
    rollup.start_flush();
    let mut fold = Fold::default();
    let mut connections = Connections::new(chain::first_connection(mark)?);
    let mut texts = super::truth::AnswerTexts::default();
    for pending in &buf.records {
        // Before the insert: the probe asks whether an earlier record of the socket is there
        // (in the table, or among the rows collected for the next multi-row insert).
        let probed = rollup.probe(tx, pending, &connections.unwritten)?;
        connections.unwritten.add(&probed);
        // A socket's final record is never looked for: no record of its cookie follows. (A peer's
        // `close` is not indexed either unless it is a first: a UDP server's peers past the caps
        // close one by one, and the index insert doubled the journal's cost per UDP record.)
        // But a close past the caps that ends a flow with earlier records is: a restart's closes
        // for a released socket's earlier peers ask whether the flow was closed, and without it
        // closed such a flow a second time (a review). A one-record flow (a UDP server's client
        // that sent once) needs none: its only record is its close.
        let split = pending.record.release == Release::Split && !pending.record.is_first();
        // A flow's first record that is not its close is looked for too where it is not its
        // socket's first at its endpoint (a re-check and a review: a UDP server's second client
        // port from one address, its endpoint's, and a peer's flow after its close past the caps
        // were not found after a restart, and their next records counted a new flow). A
        // one-record flow needs none, so the UDP server's clients past the caps add no index row;
        // records without a remote end (listeners) are found by their socket's first.
        let record = &pending.record;
        let later_flow = record.remote.is_some() && record.is_first() && record.event != RecordKind::Close;
        let lookup = (probed.first() || split || later_flow) && !pending.record.final_of_socket;
        let app = app_ids.get(&Arc::as_ptr(&pending.app)).copied().unwrap_or_default();
        let (country_db, asn_db) = match (&pending.record.remote, &pending.dest) {
            (Some(_), Some(d)) => (
                dbs.id_of_ref(tx, Role::Country, d.country_db.as_ref())?,
                dbs.id_of_ref(tx, Role::Asn, d.asn_db.as_ref())?,
            ),
            _ => (None, None),
        };
        let answers = match (&pending.record.remote, &pending.dest) {
            (Some(_), Some(d)) => texts.of(&d.answers, |text| rollup.answer_id(tx, text))?,
            _ => None,
        };
        fold.add_record(rollup, probed, pending, answers.as_ref().map(|(text, _)| &**text));
        let (app_id, app_digest) = (app.id, app.digest);
        connections.push(
            tx,
            interned,
            ConnectionRow { pending, app_id, app_digest, country_db, asn_db, answers, lookup },
        )?;
    }
    connections.write_out(tx, interned)?;
    for (key, bucket) in &buf.buckets {
        let country_db = dbs.id_of(tx, Role::Country, key.country_db.as_ref())?.unwrap_or(0);
        let asn_db = dbs.id_of(tx, Role::Asn, key.asn_db.as_ref())?.unwrap_or(0);
        upsert_bucket(tx, key, bucket, (country_db, asn_db), interval_secs)?;
        fold.add_bucket(rollup, key, bucket, (country_db, asn_db), interval_secs);
    }
    fold.write(tx, rollup)?;
    let mut stmt = tx.prepare_cached(
        "INSERT INTO stats (time_ms, run_started_ms, last, events_submitted, events_lost, storage_failures,
             peer_evictions, peer_parse_failures, unattributed_packets, unattributed_bytes, events_received,
             decode_errors, closed_flows, silent_sockets, incomplete_flows, open_flows, copies_submitted,
             copies_lost, names_malformed, names_learned)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )?;
    for row in &buf.stats {
        let d = &row.delta;
        stmt.execute(params![
            ms(row.time),
            ms(row.run.unwrap_or(run_started)),
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
            int(d.copies_submitted),
            int(d.copies_lost),
            int(d.names_malformed),
            int(d.names_learned),
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
    let written = &connections.written;
    super::spans::extend(tx, mark.connections(), mark.connections().saturating_add(written.rows()), written.times)?;
    chain::seal(tx, mark, connections.written, now)?;
    let written = Written { connections: buf.records.len(), residency: buf.buckets.len(), stats: buf.stats.len() };
    let rows = written.connections + written.residency + written.stats;
    tx.prepare_cached(
        "UPDATE daemon_state SET last_flush_ms = ?1, flushes = flushes + 1, rows_written = rows_written + ?2 WHERE id = 1",
    )?
    .execute(params![ms(now), i64::try_from(rows).unwrap_or(i64::MAX)])?;
    Ok(written)
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
        &**app,
        scope,
        country.as_deref().unwrap_or_default(),
        asn,
        as_org.as_deref().unwrap_or_default(),
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
