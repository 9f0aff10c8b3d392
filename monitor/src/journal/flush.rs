//! Writing a [`Buffer`] inside one transaction. Reads the buffer only: the caller clears it after
//! the commit succeeded, so a failed flush loses nothing.

use std::sync::Arc;

use foldhash::HashMap;
use jiff::Timestamp;
use rusqlite::{Transaction, params, types::ValueRef};
use serde_json::json;

use super::{
    buffer::{Bucket, BucketKey, Buffer, Pending},
    chain,
    intern::{Group, Interned, ROUTES},
    names::{self, int, ms},
    rollup::{Fold, Rollup, Unwritten},
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
        // A socket's final record is never looked for: no record of its cookie follows.
        let lookup = probed.first() && !pending.record.final_of_socket;
        let app_id = app_ids.get(&Arc::as_ptr(&pending.app)).copied().unwrap_or_default();
        let (country_db, asn_db) = match (&pending.record.remote, &pending.dest) {
            (Some(_), Some(d)) => {
                (dbs.id_of_ref(tx, "country", d.country_db.as_ref())?, dbs.id_of_ref(tx, "asn", d.asn_db.as_ref())?)
            }
            _ => (None, None),
        };
        let answers = match (&pending.record.remote, &pending.dest) {
            (Some(_), Some(d)) => texts.of(&d.answers, |text| rollup.answer_id(tx, text))?,
            _ => None,
        };
        fold.add_record(rollup, probed, pending, answers.as_ref().map(|(text, _)| &**text));
        connections.push(tx, interned, ConnectionRow { pending, app_id, country_db, asn_db, answers, lookup })?;
    }
    connections.write_out(tx, interned)?;
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
             decode_errors, closed_flows, silent_sockets, incomplete_flows, open_flows, copies_submitted,
             copies_lost, names_malformed, names_learned)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
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

/// `databases.id` of each (role, type, build) seen in this flush. Per record, the first few
/// databases of the flush are recognised by the address of their shared type name first (every
/// answer of one loaded database carries the same `Arc`), without hashing the name.
#[derive(Default)]
struct DbIds {
    ids: HashMap<(&'static str, Arc<str>, u64), i64>,
    recent: Vec<(&'static str, Arc<str>, u64, i64)>,
}

/// Databases remembered by address (a country and an ASN database, and a few reloads).
const RECENT_DBS: usize = 4;

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
        if let Some(id) = self.ids.get(&key) {
            return Ok(Some(*id));
        }
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO databases (role, database_type, build_epoch) VALUES (?1, ?2, ?3)
                 ON CONFLICT (role, database_type, build_epoch) DO UPDATE SET role = excluded.role
                 RETURNING id",
            )?
            .query_row(params![role, &**database_type, int(*build_epoch)], |row| row.get(0))?;
        self.ids.insert(key, id);
        Ok(Some(id))
    }

    fn id_of_ref(
        &mut self,
        tx: &Transaction<'_>,
        role: &'static str,
        db: Option<&DbRef>,
    ) -> rusqlite::Result<Option<i64>> {
        let Some(d) = db else {
            return Ok(None);
        };
        let known = self
            .recent
            .iter()
            .find(|(r, name, epoch, _)| *r == role && *epoch == d.build_epoch && Arc::ptr_eq(name, &d.database_type));
        if let Some((.., id)) = known {
            return Ok(Some(*id));
        }
        let key = (d.database_type.clone(), d.build_epoch);
        let id = self.id_of(tx, role, Some(&key))?;
        if let Some(id) = id
            && self.recent.len() < RECENT_DBS
        {
            self.recent.push((role, d.database_type.clone(), d.build_epoch, id));
        }
        Ok(id)
    }
}

/// `apps.id` of `app` (pid and start time are per process: they stay in `connections`).
/// `apps.id` of every app of the buffered records: one upsert per app and flush (not per record),
/// with the latest time any of its records was seen. Looked up per record by the address of
/// its `Arc` (the buffer holds every one during the flush): one address hashed per record, the
/// fields of an app once per `Arc` (apps read from the kernel alone come in an `Arc` each).
fn app_ids(tx: &Transaction<'_>, buf: &Buffer) -> rusqlite::Result<HashMap<*const App, i64>> {
    let mut by_arc: HashMap<*const App, (&App, Timestamp)> = HashMap::default();
    for Pending { record, app, .. } in &buf.records {
        by_arc
            .entry(Arc::as_ptr(app))
            .and_modify(|(_, t)| *t = (*t).max(record.last_seen))
            .or_insert((&**app, record.last_seen));
    }
    let mut latest: HashMap<&App, Timestamp> = HashMap::default();
    for (app, seen) in by_arc.values() {
        latest.entry(*app).and_modify(|t| *t = (*t).max(*seen)).or_insert(*seen);
    }
    let ids = latest
        .into_iter()
        .map(|(app, seen)| Ok((app, app_id(tx, app, seen)?)))
        .collect::<rusqlite::Result<HashMap<&App, i64>>>()?;
    Ok(by_arc.into_iter().map(|(arc, (app, _))| (arc, ids.get(app).copied().unwrap_or_default())).collect())
}

fn app_id(tx: &Transaction<'_>, app: &App, seen: Timestamp) -> rusqlite::Result<i64> {
    let App { name, exe, cmdline, pid: _, start_time: _, uid, user, unit, cgroup, container, source, android } = app;
    let source = names::name(*source);
    let mut key = json!([name, exe, cmdline, uid, user, unit, cgroup, container, source]);
    // Appended only when present: identities of apps without it keep their earlier key.
    if let (Some(a), Some(list)) = (android, key.as_array_mut()) {
        list.push(json!([a.package, a.packages, a.user_id, a.app_id, names::name(a.kind)]));
    }
    let identity = key.to_string();
    let (package, packages, user_id, app_id, kind) = match android {
        Some(a) => (
            a.package.as_deref(),
            Some(a.packages.join(" ")),
            Some(a.user_id),
            Some(a.app_id),
            Some(names::name(a.kind)),
        ),
        None => (None, None, None, None, None),
    };
    tx.prepare_cached(
        "INSERT INTO apps (identity, name, exe, cmdline, uid, user, unit, cgroup, container, source,
             first_seen_ms, last_seen_ms, android_package, android_packages, android_user_id, android_app_id,
             android_kind)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, ?12, ?13, ?14, ?15, ?16)
         ON CONFLICT (identity) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)
         RETURNING id",
    )?
    .query_row(
        params![
            identity,
            name,
            exe,
            cmdline,
            uid,
            user,
            unit,
            cgroup,
            container,
            source,
            ms(seen),
            package,
            packages,
            user_id,
            app_id,
            kind
        ],
        |row| row.get(0),
    )
}

/// Rows per multi-row `INSERT` into `connection_rows` (27 values each: 864 bound parameters, far
/// below SQLite's limit of 32,766). A flush's remainder goes in with the one-row statement.
const ROWS_PER_INSERT: usize = 32;

/// The statements that store a record, derived once from [`ROUTES`]: where each hashed value
/// before `country_answers` goes, into `connection_rows` or into its group's key.
struct Layout {
    /// Values bound per record: the row's own, a group id each, and `lookup`.
    values: usize,
    /// `INSERT INTO connection_rows` of one row and of [`ROWS_PER_INSERT`] rows.
    insert: [String; 2],
}

/// The row's own columns, in binding order: the hashed values no group takes, then the id of each
/// [`Group`] in [`Group::ALL`] order, then `lookup` (1: the rollups' probe may look for the row,
/// `rollup::Probed::first`; NULL: it never will).
fn row_columns(routes: &[Option<Group>]) -> Vec<&'static str> {
    let own = chain::hashed_columns().zip(routes).filter(|(_, r)| r.is_none()).map(|(name, _)| name);
    own.chain(Group::ALL.map(Group::id_column)).chain(["lookup"]).collect()
}

static LAYOUT: std::sync::LazyLock<Layout> = std::sync::LazyLock::new(|| {
    let columns = row_columns(&ROUTES);
    let values = columns.len();
    // `OR ROLLBACK`: a failing row (none is expected) ends the whole flush transaction, as any
    // error of a flush does (its records stay buffered). Under the default `ABORT`, SQLite must be
    // able to undo one statement alone, so a multi-row insert copied every table and index page
    // an earlier statement of the flush had changed to a statement journal first (3 % of the
    // replay's CPU per record).
    let sql = |rows: usize| {
        let row = format!("({})", vec!["?"; values].join(", "));
        format!(
            "INSERT OR ROLLBACK INTO connection_rows ({}) VALUES {}",
            columns.join(", "),
            vec![row; rows].join(",\n")
        )
    };
    Layout { values, insert: [sql(1), sql(ROWS_PER_INSERT)] }
});

/// A record ready for `connections`, with its ids resolved.
struct ConnectionRow<'a> {
    pending: &'a Pending,
    app_id: i64,
    country_db: Option<i64>,
    asn_db: Option<i64>,
    /// `country_answers` text ([`super::truth::AnswerTexts`]) and its `answer_sets` id.
    answers: Option<(Arc<str>, i64)>,
    /// Whether `connections_cookie` must hold the row (`rollup::Probed::first`, unless the record
    /// is its socket's final one: `FlowRecord::final_of_socket`).
    lookup: bool,
}

/// Records waiting for their multi-row insert. Written when [`ROWS_PER_INSERT`] are collected and
/// at the end of the flush: the rows are in the table before the transaction commits. Until then
/// the rollup probe finds their keys in `unwritten`.
struct Connections<'a, 'tx> {
    rows: Vec<ConnectionRow<'a>>,
    /// The multi-row statement, held for the flush: a cached statement clears its parameters
    /// each time it goes back to the cache (every parameter is bound again anyway).
    multi: Option<rusqlite::CachedStatement<'tx>>,
    /// Buffers reused by every row ([`Binder`]).
    scratch: Scratch,
    /// Id of the next row.
    next_id: i64,
    /// Digests of the rows written, for the hash chain.
    written: chain::Written,
    /// Rollup keys of `rows`, for the probe: the table does not show them yet.
    unwritten: Unwritten,
}

/// Buffers one row's binding fills, kept for the next row.
#[derive(Default)]
struct Scratch {
    /// Address text of the value being bound (SQLite copies bound text: one buffer serves all).
    text: String,
    /// The hashed bytes of the row: its own values, then the group digests ([`chain::row_digest_v2`]).
    hashed: Vec<u8>,
    /// The encoded values of each group ([`Group::ALL`] order): its key in [`Interned`].
    keys: [Vec<u8>; 4],
}

impl<'a, 'tx> Connections<'a, 'tx> {
    fn new(first_id: i64) -> Self {
        Self {
            rows: Vec::with_capacity(ROWS_PER_INSERT),
            multi: None,
            scratch: Scratch { hashed: Vec::with_capacity(1024), ..Scratch::default() },
            next_id: first_id,
            written: chain::Written::default(),
            unwritten: Unwritten::default(),
        }
    }

    fn push(
        &mut self,
        tx: &'tx Transaction<'_>,
        interned: &mut Interned,
        row: ConnectionRow<'a>,
    ) -> rusqlite::Result<()> {
        self.rows.push(row);
        if self.rows.len() == ROWS_PER_INSERT { self.write_out(tx, interned) } else { Ok(()) }
    }

    /// Inserts every collected row.
    fn write_out(&mut self, tx: &'tx Transaction<'_>, interned: &mut Interned) -> rusqlite::Result<()> {
        if self.rows.len() == ROWS_PER_INSERT {
            let stmt = match &mut self.multi {
                Some(stmt) => stmt,
                multi @ None => multi.insert(tx.prepare_cached(&LAYOUT.insert[1])?),
            };
            for (i, row) in self.rows.iter().enumerate() {
                let binder = Binder { stmt, routes: &ROUTES, param: i * LAYOUT.values, column: 0 };
                let digest = binder.row(tx, interned, self.next_id, row, &mut self.scratch)?;
                self.next_id += 1;
                self.written.add(digest, ms(row.pending.record.last_seen));
            }
            stmt.raw_execute()?;
        } else if !self.rows.is_empty() {
            let mut stmt = tx.prepare_cached(&LAYOUT.insert[0])?;
            for row in &self.rows {
                let binder = Binder { stmt: &mut stmt, routes: &ROUTES, param: 0, column: 0 };
                let digest = binder.row(tx, interned, self.next_id, row, &mut self.scratch)?;
                stmt.raw_execute()?;
                self.next_id += 1;
                self.written.add(digest, ms(row.pending.record.last_seen));
            }
        }
        self.rows.clear();
        self.unwritten.clear();
        Ok(())
    }
}

/// Binds one record's values, in [`chain::CONNECTION_COLUMNS`] order: each goes either to the
/// row's next parameter and the row's hashed bytes, or into its group's key ([`Layout`]), whose
/// group digest the row's digest covers (format 2, [`chain::row_digest_v2`]).
struct Binder<'s, 'st> {
    stmt: &'s mut rusqlite::Statement<'st>,
    routes: &'s [Option<Group>],
    /// The last parameter bound.
    param: usize,
    /// The next value's index in `routes`.
    column: usize,
}

impl Binder<'_, '_> {
    fn value<V: Plain + ?Sized>(&mut self, scratch: &mut Scratch, value: &V) -> rusqlite::Result<()> {
        let v = value.plain();
        let route = self.routes.get(self.column).copied().flatten();
        self.column += 1;
        match route {
            // Into the group's key ([`Interned`]), which its group digest covers.
            Some(group) => {
                chain::encode(&mut scratch.keys[group.index()], v);
                Ok(())
            }
            None => {
                chain::encode(&mut scratch.hashed, v);
                self.param += 1;
                self.stmt.raw_bind_parameter(self.param, rusqlite::types::ToSqlOutput::Borrowed(v))
            }
        }
    }

    /// Binds `row` as row `id` and returns its digest for the hash chain (of exactly the values
    /// the view `connections` reads back: the row's own, then the digest of each group).
    fn row(
        mut self,
        tx: &Transaction<'_>,
        interned: &mut Interned,
        id: i64,
        row: &ConnectionRow<'_>,
        scratch: &mut Scratch,
    ) -> rusqlite::Result<[u8; chain::DIGEST_LEN]> {
        let ConnectionRow {
            pending: Pending { record, app, dest, names: flow_names },
            app_id,
            country_db,
            asn_db,
            answers,
            lookup,
        } = row;
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
            rtt,
            final_of_socket: _,
        } = record;
        let (scope, country, asn, as_org) = match (remote, dest) {
            (None, _) => (None, None, None, None),
            (Some(_), None) => (Some(names::SCOPE_UNENRICHED), None, None, None),
            (Some(_), Some(Destination { scope, country, asn, as_org, .. })) => {
                (Some(names::name(*scope)), country.as_deref(), *asn, as_org.as_deref())
            }
        };
        let consensus = match (remote, dest, answers) {
            (Some(_), Some(d), Some(_)) => d.consensus.map(names::name),
            _ => None,
        };
        chain::start_row(&mut scratch.hashed, "connections");
        for key in &mut scratch.keys {
            key.clear();
        }
        let s = scratch;
        self.value(s, &id)?;
        self.value(s, &names::name(*event))?;
        self.value(s, &ms(*last_seen))?;
        self.value(s, &ms(*first_seen))?;
        self.value(s, &closed.map(ms))?;
        self.value(s, &cookie.cast_signed())?;
        self.value(s, app_id)?;
        self.value(s, &app.pid)?;
        self.value(s, &int(app.start_time))?;
        self.value(s, &owner.tgid)?;
        self.value(s, &owner.pid)?;
        self.value(s, &owner.uid)?;
        self.value(s, &owner.gid)?;
        self.value(s, &*owner.comm)?;
        self.value(s, &owner.cgroup_id.cast_signed())?;
        self.value(s, &names::name(owner.source))?;
        self.value(s, &names::name(*protocol))?;
        self.value(s, &names::name(*direction))?;
        for addr in [local, remote] {
            match addr {
                Some(a) => {
                    let mut text = std::mem::take(&mut s.text);
                    names::ip_text(a.ip(), &mut text);
                    let bound = self.value(s, &text.as_str());
                    s.text = text;
                    bound?;
                    self.value(s, &a.port())?;
                }
                None => {
                    self.value(s, &rusqlite::types::Null)?;
                    self.value(s, &rusqlite::types::Null)?;
                }
            }
        }
        self.value(s, &int(payload.tx_bytes))?;
        self.value(s, &int(payload.rx_bytes))?;
        self.value(s, &int(wire.tx_bytes))?;
        self.value(s, &int(wire.rx_bytes))?;
        self.value(s, &int(wire.tx_packets))?;
        self.value(s, &int(wire.rx_packets))?;
        self.value(s, &int(delta_payload.tx_bytes))?;
        self.value(s, &int(delta_payload.rx_bytes))?;
        self.value(s, &int(delta_wire.tx_bytes))?;
        self.value(s, &int(delta_wire.rx_bytes))?;
        self.value(s, &int(delta_wire.tx_packets))?;
        self.value(s, &int(delta_wire.rx_packets))?;
        self.value(s, &names::name(*payload_source))?;
        self.value(s, complete)?;
        self.value(s, &scope)?;
        self.value(s, &country)?;
        self.value(s, &asn)?;
        self.value(s, &as_org)?;
        self.value(s, country_db)?;
        self.value(s, asn_db)?;
        self.value(s, ip_protocol)?;
        let crate::names::Names { hostname, registrable_domain, source, dns_name, ech_outer } = flow_names;
        self.value(s, &hostname.as_ref().map(|h| h.as_str()))?;
        self.value(s, &registrable_domain.as_deref())?;
        self.value(s, &names::name(*source))?;
        self.value(s, &dns_name.as_ref().map(|h| h.as_str()))?;
        self.value(s, ech_outer)?;
        self.value(s, &rtt.map(|r| r.min_us))?;
        self.value(s, &rtt.map(|r| r.smoothed_us))?;
        self.value(s, &consensus)?;
        // `country_answers`: stored once in `answer_sets` (schema 13) and named by the
        // destination's `answers_id` (schema 14); the destination's group digest covers its text.
        let (text, answers_id) = answers.as_ref().map(|(t, id)| (&**t, *id)).unzip();
        let text = text.map_or(rusqlite::types::ValueRef::Null, |t| rusqlite::types::ValueRef::Text(t.as_bytes()));
        let routed = s.keys[Group::Destination.index()].len();
        chain::encode(
            &mut s.keys[Group::Destination.index()],
            answers_id.map_or(rusqlite::types::ValueRef::Null, rusqlite::types::ValueRef::Integer),
        );
        for (group, key) in Group::ALL.into_iter().zip(&s.keys) {
            let (id, digest) = interned.id(tx, group, key, |b| {
                if group == Group::Destination {
                    b.extend_from_slice(key.get(..routed).unwrap_or_default());
                    chain::encode(b, text);
                } else {
                    b.extend_from_slice(key);
                }
            })?;
            s.hashed.extend_from_slice(&digest);
            self.param += 1;
            self.stmt.raw_bind_parameter(self.param, id)?;
        }
        self.param += 1;
        self.stmt.raw_bind_parameter(self.param, lookup.then_some(1))?;
        Ok(chain::digest_of(&s.hashed))
    }
}

/// A value of a record as SQLite stores it: what `rusqlite::ToSql` makes of the type, without
/// its conversion through `ToSqlOutput` and a call through `dyn ToSql` for each of 51 values per
/// record. Integers that do not fit SQLite's are never bound: every record's are `u32` or
/// smaller, or converted beforehand ([`names::int`]).
trait Plain {
    fn plain(&self) -> ValueRef<'_>;
}

/// Integers SQLite stores as they are (`bool` as 0 or 1), as `rusqlite` binds them.
macro_rules! plain_integers {
    ($($t:ty),*) => {$(
        impl Plain for $t {
            fn plain(&self) -> ValueRef<'_> {
                ValueRef::Integer(i64::from(*self))
            }
        }
    )*};
}

plain_integers!(i64, u32, u16, u8, bool);

impl Plain for str {
    fn plain(&self) -> ValueRef<'_> {
        ValueRef::Text(self.as_bytes())
    }
}

impl<T: Plain + ?Sized> Plain for &T {
    fn plain(&self) -> ValueRef<'_> {
        (**self).plain()
    }
}

impl<T: Plain> Plain for Option<T> {
    fn plain(&self) -> ValueRef<'_> {
        self.as_ref().map_or(ValueRef::Null, Plain::plain)
    }
}

impl Plain for rusqlite::types::Null {
    fn plain(&self) -> ValueRef<'_> {
        ValueRef::Null
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each group's table lists its columns in the order the record's values come (a key is
    /// decoded into them on a miss), every routed value lands somewhere, and the row binds 28.
    #[test]
    fn the_layout_matches_the_columns_of_each_table() {
        let hashed: Vec<&str> = chain::hashed_columns().collect();
        assert_eq!(hashed.len(), 51, "every value but country_answers");
        assert_eq!(ROUTES.len(), hashed.len());
        for g in Group::ALL {
            let mut routed: Vec<&str> =
                hashed.iter().zip(ROUTES.iter()).filter(|(_, r)| **r == Some(g)).map(|(n, _)| *n).collect();
            if g == Group::Destination {
                routed.push("answers_id");
            }
            assert_eq!(routed, g.table().1, "{g:?}");
        }
        assert_eq!(LAYOUT.values, 28);
        assert_eq!(row_columns(&ROUTES).len(), LAYOUT.values);
    }
}
