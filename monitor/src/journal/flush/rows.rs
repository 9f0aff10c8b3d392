//! Connection records into `connection_rows`, in multi-row inserts, with their interned groups.

use std::sync::Arc;

use rusqlite::{Transaction, types::ValueRef};

use crate::journal::{
    buffer::Pending,
    chain,
    intern::{Group, Interned, ROUTES},
    names::{self, int, ms},
    rollup::Unwritten,
};
use crate::{enrich::Destination, tracker::FlowRecord};

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
pub(super) struct ConnectionRow<'a> {
    pub pending: &'a Pending,
    pub app_id: i64,
    /// [`chain::app_digest`] of the app's identity: the end of the row's digest (format 3).
    pub app_digest: [u8; chain::DIGEST_LEN],
    pub country_db: Option<i64>,
    pub asn_db: Option<i64>,
    /// `country_answers` text ([`super::truth::AnswerTexts`]) and its `answer_sets` id.
    pub answers: Option<(Arc<str>, i64)>,
    /// Whether `connections_cookie` must hold the row (`rollup::Probed::first`, unless the record
    /// is its socket's final one: `FlowRecord::final_of_socket`).
    pub lookup: bool,
}

/// Records waiting for their multi-row insert. Written when [`ROWS_PER_INSERT`] are collected and
/// at the end of the flush: the rows are in the table before the transaction commits. Until then
/// the rollup probe finds their keys in `unwritten`.
pub(super) struct Connections<'a, 'tx> {
    rows: Vec<ConnectionRow<'a>>,
    /// The multi-row statement, held for the flush: a cached statement clears its parameters
    /// each time it goes back to the cache (every parameter is bound again anyway).
    multi: Option<rusqlite::CachedStatement<'tx>>,
    /// Buffers reused by every row ([`Binder`]).
    scratch: Scratch,
    /// Id of the next row.
    next_id: i64,
    /// Digests of the rows written, for the hash chain.
    pub written: chain::Written,
    /// Rollup keys of `rows`, for the probe: the table does not show them yet.
    pub unwritten: Unwritten,
}

/// Buffers one row's binding fills, kept for the next row.
#[derive(Default)]
struct Scratch {
    /// Address text of the value being bound (SQLite copies bound text: one buffer serves all).
    text: String,
    /// The hashed bytes of the row: its own values, the group digests, then the app's
    /// ([`chain::row_digest_v3`]).
    hashed: Vec<u8>,
    /// The encoded values of each group ([`Group::ALL`] order): its key in [`Interned`].
    keys: [Vec<u8>; 4],
}

impl<'a, 'tx> Connections<'a, 'tx> {
    pub(super) fn new(first_id: i64) -> Self {
        Self {
            rows: Vec::with_capacity(ROWS_PER_INSERT),
            multi: None,
            scratch: Scratch { hashed: Vec::with_capacity(1024), ..Scratch::default() },
            next_id: first_id,
            written: chain::Written::default(),
            unwritten: Unwritten::default(),
        }
    }

    pub(super) fn push(
        &mut self,
        tx: &'tx Transaction<'_>,
        interned: &mut Interned,
        row: ConnectionRow<'a>,
    ) -> rusqlite::Result<()> {
        self.rows.push(row);
        if self.rows.len() == ROWS_PER_INSERT { self.write_out(tx, interned) } else { Ok(()) }
    }

    /// Inserts every collected row.
    pub(super) fn write_out(&mut self, tx: &'tx Transaction<'_>, interned: &mut Interned) -> rusqlite::Result<()> {
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
/// group digest the row's digest covers, then the app's (format 3, [`chain::row_digest_v3`]).
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
            app_digest,
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
            release: _,
            resumed: _,
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
        s.hashed.extend_from_slice(app_digest);
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
