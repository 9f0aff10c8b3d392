//! The journal's hash chain: every flush that writes connection records or statistics rows
//! seals them in a `batches` row, in the flush's transaction. A batch holds a 16-byte digest per
//! row (the first half of the SHA-256 of its canonical bytes, see [`row_digest`]; a
//! `connections` row of a batch sealed since schema 16 over its own values and a digest of each
//! shared combination it names, see [`row_digest_v2`]) and the
//! SHA-256 over the previous batch's hash, its own ranges and times and those digests, so
//! [`verify`] names any row changed or removed after it was written, and any batch edited,
//! removed or inserted.
//!
//! Covered: every column of `connections` and `stats` as of the sessions migration (schema 8) ([`CONNECTION_COLUMNS`],
//! [`STATS_COLUMNS`]); rows written before the journal reached it are outside the chain
//! (counted). Apps: batches of format 3 cover each record's app identity (`apps.identity`), and
//! [`verify`] checks every `apps` row's columns against its identity. Not covered: tables
//! rewritten in place (residency sums, rollups, apps' last-seen times, sessions). Without a key the chain proves consistency, not origin: whoever can rewrite the file can
//! recompute it; signed evidence bundles record the chain's head to anchor it.

use std::path::Path;

use rusqlite::{Connection, Row, Transaction, params, types::ValueRef};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::{
    Error,
    figures::{self, FiguresChecked},
    intern::{self, Group},
    names::ms,
    open,
};

/// Bytes of a row digest.
pub const DIGEST_LEN: usize = 16;
/// How a batch's `connections` rows are digested (`batches.row_format`, schema 16), and what its
/// hash starts with:
/// - 1: [`row_digest`] over the row's 52 values;
/// - 2 (written since schema 16): [`row_digest_v2`], over the row's own values and one digest
///   per shared combination of values (shape, owner, destination, names), so a flush hashes a
///   combination once, not once per row;
/// - 3 (written since the adversarial-pass round, same schema): format 2 and the digest of the
///   row's app identity ([`app_digest`] of `apps.identity`, the JSON of every identity column:
///   name, executable, command line, user, unit, cgroup, container, source, Android package), so
///   an app renamed or given another executable after the fact shows in every row of it.
const DOMAINS: [&[u8]; 3] = [b"monitor.journal.batch/1", b"monitor.journal.batch/2", b"monitor.journal.batch/3"];
/// The format of the batches a flush writes.
const ROW_FORMAT: i64 = 3;
/// Index of `app_id` in [`CONNECTION_SELECT`].
const APP_ID_COLUMN: usize = 6;

/// [`CONNECTION_COLUMNS`] but the last, with a trailing comma (one list for both uses).
macro_rules! hashed_connection_columns {
    () => {
        "id, event, time_ms, first_seen_ms, closed_ms, cookie, app_id, app_pid, app_start_time, owner_tgid, owner_pid,
        owner_uid, owner_gid, owner_comm, owner_cgroup_id, owner_source, protocol, direction, local_ip, local_port,
        remote_ip, remote_port, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, delta_payload_tx,
        delta_payload_rx, delta_wire_tx, delta_wire_rx, delta_packets_tx, delta_packets_rx, payload_source, complete,
        scope, country, asn, as_org, country_db, asn_db, ip_protocol, hostname, registrable_domain, name_source,
        dns_name, ech_outer, rtt_min_us, rtt_srtt_us, consensus, "
    };
}
/// Columns of `connections` hashed, in order (names and residency columns included): the
/// values a flush hashes (`flush::rows::Layout` sends each to `connection_rows` or to its group's
/// table, schema 14). The last,
/// `country_answers`, is hashed as its text ([`CONNECTION_SELECT`]): in rows written since schema
/// 13 the column is NULL and the text is the `answer_sets` row `answers_id` names, so the chain
/// covers the text whichever way it is stored, and a changed `answer_sets` text or `answers_id`
/// shows as a changed row.
#[cfg(test)]
pub const CONNECTION_COLUMNS: &str = concat!(hashed_connection_columns!(), "country_answers");
/// The names of [`CONNECTION_COLUMNS`] but the last, in order: the values a flush hashes from the
/// record (`country_answers` follows as its text).
pub(super) fn hashed_columns() -> impl Iterator<Item = &'static str> {
    hashed_connection_columns!().split(',').map(str::trim).filter(|name| !name.is_empty())
}
/// Number of names in [`CONNECTION_COLUMNS`].
pub const CONNECTION_COLUMN_COUNT: usize = 52;
/// How the chain reads [`CONNECTION_COLUMNS`]: `country_answers` as its text.
const CONNECTION_SELECT: &str = concat!(hashed_connection_columns!(), super::truth::answers_text!("connections"));
/// Columns of `stats` hashed, in order.
pub const STATS_COLUMNS: &str = "id, time_ms, run_started_ms, last, events_submitted, events_lost, storage_failures,
    peer_evictions, peer_parse_failures, unattributed_packets, unattributed_bytes, events_received, decode_errors,
    closed_flows, silent_sockets, incomplete_flows, open_flows";

/// The chained tables: name, the SELECT list of the hashed values, and their number.
const TABLES: [(&str, &str, usize); 2] =
    [("connections", CONNECTION_SELECT, CONNECTION_COLUMN_COUNT), ("stats", STATS_COLUMNS, 17)];

/// Highest row ids before a flush writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark([i64; 2]);

impl Mark {
    /// The highest `connections` id before the flush.
    pub(super) fn connections(self) -> i64 {
        self.0[0]
    }
}

/// Reads the highest ids of the chained tables (call first in the flush's transaction).
pub(super) fn mark(tx: &Transaction<'_>) -> rusqlite::Result<Mark> {
    let max = |sql: &str| tx.prepare_cached(sql)?.query_row([], |r| r.get(0));
    // `connections` is a view (schema 14): its ids are those of `connection_rows`.
    Ok(Mark([max("SELECT COALESCE(MAX(id), 0) FROM connection_rows")?, max("SELECT COALESCE(MAX(id), 0) FROM stats")?]))
}

/// Digest of one row: the table name, then each column as a tag byte and its value (integers
/// and reals as 8 bytes big-endian, text and blobs with a 4-byte big-endian length).
pub fn row_digest(table: &str, row: &Row<'_>, columns: usize) -> rusqlite::Result<[u8; DIGEST_LEN]> {
    let mut h = RowHasher::new(table);
    for i in 0..columns {
        h.push(row.get_ref(i)?);
    }
    Ok(h.finish())
}

/// Digest of a `connections` row of format 2 (`row` as [`CONNECTION_SELECT`] reads it): the table
/// name and the values [`intern::ROUTES`] keeps in `connection_rows`, each as [`encode`]
/// writes it, then the group digest of each [`Group`] in [`Group::ALL`] order: of
/// the group's table name (as [`start_row`] writes it) and the group's values in column order, the destination's with the
/// `country_answers` text in place of `answers_id`. The flush computes the same bytes from the
/// values it binds (`flush::rows::Binder::row`).
pub fn row_digest_v2(row: &Row<'_>) -> rusqlite::Result<[u8; DIGEST_LEN]> {
    Ok(digest_of(&row_bytes_v2(row)?))
}

/// Digest of a `connections` row of format 3: the bytes of [`row_digest_v2`], then the
/// [`app_digest`] of the identity of the app the row names (`None`: no such `apps` row).
pub fn row_digest_v3(row: &Row<'_>, app_identity: Option<&str>) -> rusqlite::Result<[u8; DIGEST_LEN]> {
    let mut bytes = row_bytes_v2(row)?;
    bytes.extend_from_slice(&app_digest(app_identity));
    Ok(digest_of(&bytes))
}

/// Digest of an app's identity (`apps.identity`) as a format-3 row digest covers it.
pub fn app_digest(identity: Option<&str>) -> [u8; DIGEST_LEN] {
    let mut bytes = Vec::with_capacity(identity.map_or(0, str::len) + 16);
    start_row(&mut bytes, "apps");
    encode(&mut bytes, identity.map_or(ValueRef::Null, |t| ValueRef::Text(t.as_bytes())));
    digest_of(&bytes)
}

/// The hashed bytes of a format-2 row: its own values, then its group digests.
fn row_bytes_v2(row: &Row<'_>) -> rusqlite::Result<Vec<u8>> {
    let mut own = Vec::with_capacity(512);
    start_row(&mut own, "connections");
    let mut groups = Group::ALL.map(|g| {
        let mut bytes = Vec::with_capacity(256);
        start_row(&mut bytes, g.table().0);
        bytes
    });
    for (i, route) in intern::ROUTES.iter().enumerate() {
        let value = row.get_ref(i)?;
        match route {
            Some(g) => encode(&mut groups[g.index()], value),
            None => encode(&mut own, value),
        }
    }
    encode(&mut groups[Group::Destination.index()], row.get_ref(intern::ROUTES.len())?);
    for g in &groups {
        own.extend_from_slice(&digest_of(g));
    }
    Ok(own)
}

/// Appends a column's value as a row digest hashes it: a tag byte, then integers and reals as 8
/// bytes big-endian, text and blobs with a 4-byte big-endian length. Also the key of an interned
/// combination of values (`super::intern`).
pub(super) fn encode(b: &mut Vec<u8>, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => b.push(0),
        ValueRef::Integer(v) => {
            b.push(1);
            b.extend_from_slice(&v.to_be_bytes());
        }
        ValueRef::Real(v) => {
            b.push(2);
            b.extend_from_slice(&v.to_bits().to_be_bytes());
        }
        ValueRef::Text(t) | ValueRef::Blob(t) => {
            b.push(if matches!(value, ValueRef::Text(_)) { 3 } else { 4 });
            b.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
            b.extend_from_slice(t);
        }
    }
}

/// A row digest built column by column ([`row_digest`]'s bytes). The bytes are collected first
/// and hashed at once (two hash updates per column cost more than the hashing).
struct RowHasher(Vec<u8>);

impl RowHasher {
    fn new(table: &str) -> Self {
        let mut bytes = Vec::with_capacity(512);
        start_row(&mut bytes, table);
        Self(bytes)
    }

    /// Adds the next column's value.
    fn push(&mut self, value: ValueRef<'_>) {
        encode(&mut self.0, value);
    }

    fn finish(self) -> [u8; DIGEST_LEN] {
        digest_of(&self.0)
    }
}

/// Empties `bytes` and starts a row of `table` in it: the flush hashes each `connections` row
/// from the values it binds ([`encode`] each, then [`digest_of`]), instead of reading the rows
/// back, with one buffer for every row.
pub(super) fn start_row(bytes: &mut Vec<u8>, table: &str) {
    bytes.clear();
    bytes.extend_from_slice(table.as_bytes());
    bytes.push(0);
}

/// The row digest of the bytes [`start_row`] and [`encode`] collected.
pub(super) fn digest_of(bytes: &[u8]) -> [u8; DIGEST_LEN] {
    let full = Sha256::digest(bytes);
    let mut out = [0u8; DIGEST_LEN];
    out.copy_from_slice(&full[..DIGEST_LEN]);
    out
}

/// The `connections` rows a flush wrote, hashed as they were bound: ids `first..first + n`.
#[derive(Debug, Default)]
pub(super) struct Written {
    /// Concatenated row digests, in id order.
    pub(super) digests: Vec<u8>,
    /// Smallest and largest `time_ms`.
    pub(super) times: Option<(i64, i64)>,
}

impl Written {
    pub(super) fn add(&mut self, digest: [u8; DIGEST_LEN], time_ms: i64) {
        self.digests.extend_from_slice(&digest);
        self.times = Some(self.times.map_or((time_ms, time_ms), |(lo, hi)| (lo.min(time_ms), hi.max(time_ms))));
    }

    pub(super) fn rows(&self) -> i64 {
        i64::try_from(self.digests.len() / DIGEST_LEN).unwrap_or(i64::MAX)
    }
}

/// (id, digest) of the rows of `table` with ids in `first..=last`, by id, digested as batches of
/// `format` digest them (the format applies to `connections` rows only).
fn digests(
    conn: &Connection,
    table: &str,
    (columns, n): (&str, usize),
    (first, last): (i64, i64),
    format: i64,
) -> rusqlite::Result<Vec<(i64, [u8; DIGEST_LEN])>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {columns} FROM {table} WHERE id >= ?1 AND id <= ?2 ORDER BY id"))?;
    let connections = table == TABLES[0].0;
    let mut identities: std::collections::HashMap<i64, Option<String>> = std::collections::HashMap::new();
    let mut identity_of = |id: i64| -> rusqlite::Result<Option<String>> {
        if let Some(known) = identities.get(&id) {
            return Ok(known.clone());
        }
        // An identity that cannot be read (no such row, a damaged page: the structural check says
        // so) digests as none: the rows naming it show as changed, not the whole check failing.
        let found = conn
            .prepare_cached("SELECT identity FROM apps WHERE id = ?1")
            .and_then(|mut stmt| stmt.query_row([id], |r| r.get::<_, String>(0)))
            .ok();
        identities.insert(id, found.clone());
        Ok(found)
    };
    let rows = stmt.query_map(params![first, last], |row| {
        let digest = match format {
            2 if connections => row_digest_v2(row)?,
            3 if connections => row_digest_v3(row, identity_of(row.get(APP_ID_COLUMN)?)?.as_deref())?,
            _ => row_digest(table, row, n)?,
        };
        Ok((row.get::<_, i64>(0)?, digest))
    })?;
    rows.collect()
}

/// A batch's fields that its hash covers.
struct Sealed<'a> {
    time_ms: i64,
    ranges: [(i64, i64); 2],
    times: (Option<i64>, Option<i64>),
    digests: &'a [u8],
}

/// The hash of a batch whose rows are digested as `format` says (an unknown format hashes as
/// none that was written: the batch shows as changed).
fn batch_hash(prev: &[u8], b: &Sealed<'_>, format: i64) -> [u8; 32] {
    let mut h = Sha256::new();
    let domain = usize::try_from(format - 1).ok().and_then(|i| DOMAINS.get(i));
    h.update(domain.copied().unwrap_or(b"monitor.journal.batch/unknown"));
    h.update(prev);
    h.update(b.time_ms.to_be_bytes());
    for (first, last) in b.ranges {
        h.update(first.to_be_bytes());
        h.update(last.to_be_bytes());
    }
    for t in [b.times.0, b.times.1] {
        h.update(t.unwrap_or(i64::MIN).to_be_bytes());
    }
    h.update(b.digests);
    h.finalize().into()
}

/// The first id of the flush's `connections` rows (the flush binds ids explicitly, so the rows
/// it hashed are exactly those ids).
pub(super) fn first_connection(mark: Mark) -> rusqlite::Result<i64> {
    mark.0[0].checked_add(1).ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(0, mark.0[0]))
}

/// Seals the rows written since `mark` in a new batch (nothing when the flush wrote none):
/// the `connections` rows from their digests in `written` (hashed as bound), the `stats` rows
/// read back.
pub(super) fn seal(tx: &Transaction<'_>, mark: Mark, written: Written, now: jiff::Timestamp) -> rusqlite::Result<()> {
    let first = first_connection(mark)?;
    let mut ranges = [(first, mark.0[0] + written.rows()), (0, 0)];
    let times = (written.times.map(|t| t.0), written.times.map(|t| t.1));
    let mut blob = written.digests;
    let (table, columns, n) = TABLES[1];
    let rows = digests(tx, table, (columns, n), (mark.0[1] + 1, i64::MAX), ROW_FORMAT)?;
    ranges[1] = (mark.0[1] + 1, rows.last().map_or(mark.0[1], |r| r.0));
    for (_, d) in rows {
        blob.extend_from_slice(&d);
    }
    if blob.is_empty() {
        return Ok(());
    }
    let prev: Vec<u8> = tx
        .prepare_cached("SELECT hash FROM batches ORDER BY id DESC LIMIT 1")?
        .query_row([], |r| r.get(0))
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(vec![0; 32]) } else { Err(e) })?;
    let sealed = Sealed { time_ms: ms(now), ranges, times, digests: &blob };
    let hash = batch_hash(&prev, &sealed, ROW_FORMAT);
    tx.prepare_cached(
        "INSERT INTO batches (time_ms, first_connection, last_connection, first_stats, last_stats, min_time_ms,
             max_time_ms, digests, prev_hash, hash, row_format) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        sealed.time_ms,
        ranges[0].0,
        ranges[0].1,
        ranges[1].0,
        ranges[1].1,
        times.0,
        times.1,
        blob,
        prev,
        hash.as_slice(),
        ROW_FORMAT
    ])?;
    Ok(())
}

/// One problem [`verify`] found: the table, the row id, and the batch that sealed it.
#[expect(missing_docs, reason = "the fields are named by the variant docs")]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A row's content differs from what was sealed.
    RowChanged { table: &'static str, id: i64, batch: i64 },
    /// A sealed row is gone (and retention cannot have purged it).
    RowRemoved { table: &'static str, id: i64, batch: i64 },
    /// A row with an id after the last sealed one: written outside the daemon's flushes.
    RowAdded { table: &'static str, id: i64 },
    /// A batch's stored hash does not match its contents (the batch row was edited).
    BatchChanged { batch: i64 },
    /// A batch does not follow the one before (a batch was removed or inserted).
    ChainBroken { batch: i64 },
    /// Sums in `table` for one app and period differ from the `source` rows they are summed
    /// from (see `journal::figures`): the figures reports read were changed.
    FiguresDiffer { table: &'static str, source: &'static str, period: String, app: String, key: String },
    /// A row of `table` at a time (Unix seconds) outside the calendar the monitor writes: its
    /// sums cannot be compared with anything.
    OutsideCalendar { table: &'static str, time: i64 },
    /// A `connection_spans` row (schema 17) that does not bound the records it covers: reports
    /// of a time range could leave records out although every record is intact.
    SpanWrong { span: i64 },
    /// An `apps` row whose columns (name, executable, command line, user, unit...) are not the
    /// identity it was written with: changed after the fact.
    AppChanged { id: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RowChanged { table, id, batch } => write!(f, "{table} row {id} changed (sealed in batch {batch})"),
            Self::RowRemoved { table, id, batch } => write!(f, "{table} row {id} removed (sealed in batch {batch})"),
            Self::RowAdded { table, id } => write!(f, "{table} row {id} was added outside the hash chain"),
            Self::BatchChanged { batch } => write!(f, "batch {batch} was changed"),
            Self::ChainBroken { batch } => {
                write!(f, "batch {batch} does not follow the batch before it (a batch was removed or inserted)")
            }
            Self::OutsideCalendar { table, time } => {
                write!(
                    f,
                    "{table} has a row at {time} s (Unix time), outside the calendar: no week or day to check it in"
                )
            }
            Self::AppChanged { id } => write!(
                f,
                "apps row {id} changed: its name, executable or another identity column is not the identity it was \
                 written with"
            ),
            Self::SpanWrong { span } => write!(
                f,
                "connection_spans row {span} does not bound the records it covers: time ranges may leave records out"
            ),
            Self::FiguresDiffer { table, source, period, app, key } => write!(
                f,
                "{table} sums of app \"{}\"{}{} for {period} differ from the {source} rows they are summed from",
                crate::escape::terminal(app),
                if key.is_empty() { "" } else { " at " },
                crate::escape::terminal(key)
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Integrity {
    /// Batches checked.
    pub batches: u64,
    /// Sealed rows found intact.
    pub rows_intact: u64,
    /// Sealed rows missing because retention purged them (older than the purge horizon).
    pub rows_purged: u64,
    /// Rows written before the chain began (schema < 4): not covered.
    pub rows_before_chain: u64,
    /// Hash of the last batch (hex): the chain's head, recorded in evidence bundles.
    pub head: Option<String>,
    /// Problems, in table and id order per batch, then the figures that differ from their rows.
    pub problems: Vec<Problem>,
    /// What the figure check compared (reports read sums, which the chain does not seal: they
    /// are recomputed from the rows they are summed from).
    pub figures: FiguresChecked,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Recomputes the chain of the journal at `path` (opened read-only) and reports every row
/// changed or removed after it was written.
///
/// # Errors
/// When the journal cannot be opened or read.
pub fn verify(path: &Path) -> Result<Integrity, Error> {
    let conn = open::open_ro(path)?;
    // One snapshot: a flush of a running daemon must not appear half-way through the check.
    let tx = conn.unchecked_transaction().map_err(|e| Error::read(path, e))?;
    verify_conn(&tx).map_err(|e| Error::read(path, e))
}

impl super::JournalReader {
    /// SQLite's structural check of the whole file (`PRAGMA integrity_check`: pages, b-trees,
    /// every index against its table): the problems it reports, one per line, none when the file
    /// is sound. A page too damaged for the check to go on ends the list with SQLite's error,
    /// after what the check found up to there.
    ///
    /// # Errors
    /// When the check cannot start, or fails other than on a damaged page.
    pub fn structure_problems(&self) -> Result<Vec<String>, Error> {
        let run = || -> rusqlite::Result<Vec<String>> {
            let mut stmt = self.conn().prepare("PRAGMA integrity_check")?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            loop {
                match rows.next() {
                    // "*** in database main ***" heads the problems of each attached database.
                    Ok(Some(row)) => out.extend(
                        row.get::<_, String>(0)?
                            .lines()
                            .filter(|l| !l.starts_with("*** in database"))
                            .map(str::to_owned),
                    ),
                    Ok(None) => break,
                    Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseCorrupt) => {
                        out.push(e.to_string());
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        };
        let lines = run().map_err(|e| self.err(e))?;
        Ok(if lines == ["ok"] { Vec::new() } else { lines })
    }
}

type BatchRow = (i64, i64, [(i64, i64); 2], (Option<i64>, Option<i64>), Vec<u8>, Vec<u8>, Vec<u8>, i64);

fn verify_conn(conn: &Connection) -> rusqlite::Result<Integrity> {
    let mut out = Integrity {
        batches: 0,
        rows_intact: 0,
        rows_purged: 0,
        rows_before_chain: 0,
        head: None,
        problems: Vec::new(),
        figures: FiguresChecked::default(),
    };
    let has: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'batches')",
        [],
        |r| r.get(0),
    )?;
    if !has {
        return Ok(out);
    }
    let horizon: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'connections_purged_before_ms'", [], |r| r.get(0))
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    let residency_horizon: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'residency_purged_before_ms'", [], |r| r.get(0))
        .or_else(|e| if matches!(e, rusqlite::Error::QueryReturnedNoRows) { Ok(None) } else { Err(e) })?;
    // Retention deletes statistics rows older than residency's horizon: recorded in time order,
    // they go as a prefix of ids. A missing row before the first one left is purged; one after
    // it was removed.
    let first_stats_left: Option<i64> = conn.query_row("SELECT MIN(id) FROM stats", [], |r| r.get(0))?;
    let stats_purged = |id: i64| residency_horizon.is_some() && first_stats_left.is_none_or(|first| id < first);
    let mut stmt = conn.prepare(
        "SELECT id, time_ms, first_connection, last_connection, first_stats, last_stats, min_time_ms, max_time_ms,
             digests, prev_hash, hash, coalesce(row_format, 1) FROM batches ORDER BY id",
    )?;
    let batches: Vec<BatchRow> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [(r.get(2)?, r.get(3)?), (r.get(4)?, r.get(5)?)],
                (r.get(6)?, r.get(7)?),
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut prev = vec![0u8; 32];
    let mut sealed_up_to = [0i64; 2];
    for (batch, time_ms, ranges, times, blob, prev_hash, hash, format) in &batches {
        out.batches += 1;
        if *prev_hash != prev {
            out.problems.push(Problem::ChainBroken { batch: *batch });
        }
        let sealed = Sealed { time_ms: *time_ms, ranges: *ranges, times: *times, digests: blob };
        if batch_hash(prev_hash, &sealed, *format).as_slice() != hash.as_slice() {
            out.problems.push(Problem::BatchChanged { batch: *batch });
        }
        prev.clone_from(hash);
        // Retention deletes connection records older than the horizon: a batch with such rows
        // may miss them legitimately.
        let purgeable = horizon.is_some_and(|h| times.0.is_some_and(|t| t < h));

        let mut offset = 0;
        for (i, (table, columns, n)) in TABLES.iter().enumerate() {
            let (first, last) = ranges[i];
            let expected: Vec<&[u8]> = (first..=last)
                .map(|k| {
                    let at = offset + usize::try_from(k - first).unwrap_or(0) * DIGEST_LEN;
                    blob.get(at..at + DIGEST_LEN).unwrap_or_default()
                })
                .collect();
            offset += expected.len() * DIGEST_LEN;
            let found = digests(conn, table, (columns, *n), (first, last), *format)?;
            let mut found = found.into_iter().peekable();
            for (k, want) in (first..=last).zip(expected) {
                match found.peek() {
                    Some((id, got)) if *id == k => {
                        if got.as_slice() == want {
                            out.rows_intact += 1;
                        } else {
                            out.problems.push(Problem::RowChanged { table, id: k, batch: *batch });
                        }
                        found.next();
                    }
                    _ if (i == 0 && purgeable) || (i == 1 && stats_purged(k)) => out.rows_purged += 1,
                    _ => out.problems.push(Problem::RowRemoved { table, id: k, batch: *batch }),
                }
            }
            sealed_up_to[i] = sealed_up_to[i].max(last);
        }
    }
    for (i, (table, ..)) in TABLES.iter().enumerate() {
        let first_sealed = batches.first().map_or(i64::MAX, |b| b.2[i].0);
        out.rows_before_chain += conn
            .query_row(&format!("SELECT COUNT(*) FROM {table} WHERE id < ?1"), [first_sealed], |r| r.get::<_, i64>(0))?
            .cast_unsigned();
        let mut stmt = conn.prepare(&format!("SELECT id FROM {table} WHERE id > ?1 ORDER BY id"))?;
        let added = stmt.query_map([sealed_up_to[i]], |r| r.get::<_, i64>(0))?;
        if !batches.is_empty() {
            for id in added {
                out.problems.push(Problem::RowAdded { table, id: id? });
            }
        }
    }
    out.head = batches.last().map(|b| hex(&b.6));
    let horizons = figures::Horizons {
        connections_ms: horizon.unwrap_or(i64::MIN),
        residency_ms: residency_horizon.unwrap_or(i64::MIN),
        // Rows before the chain: checked from the first sealed record on.
        chain_start_ms: (out.rows_before_chain > 0).then(|| batches.iter().find_map(|b| b.3.0).unwrap_or(i64::MAX / 2)),
    };
    out.problems.extend(super::spans::check(conn)?.into_iter().map(|span| Problem::SpanWrong { span }));
    // A damaged page of `apps` must not hide what the chain check found (the structural check
    // reports the damage).
    out.problems.extend(apps_changed(conn).unwrap_or_default().into_iter().map(|id| Problem::AppChanged { id }));
    // A damaged page of a summed table must not hide what the chain check found.
    let mut found = Vec::new();
    out.figures = figures::check(conn, horizons, &mut found)
        .unwrap_or_else(|e| FiguresChecked { failed: Some(e.to_string()), ..FiguresChecked::default() });
    out.problems.extend(found);
    Ok(out)
}

/// Ids of the `apps` rows whose identity columns are not their `identity` (the JSON the flush
/// wrote them under and found them by, [`super::flush`]): a column changed after the fact. Format-3
/// batches cover the identity itself.
fn apps_changed(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT id, identity, name, exe, cmdline, uid, user, unit, cgroup, container, source, android_package,
             android_packages, android_user_id, android_app_id, android_kind FROM apps ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        let id: i64 = r.get(0)?;
        let identity: String = r.get(1)?;
        let text = |i: usize| r.get::<_, Option<String>>(i);
        let mut key = serde_json::json!([
            r.get::<_, String>(2)?,
            text(3)?,
            text(4)?,
            r.get::<_, i64>(5)?,
            text(6)?,
            text(7)?,
            text(8)?,
            text(9)?,
            r.get::<_, String>(10)?
        ]);
        if let Some(kind) = text(15)? {
            let packages: Vec<String> =
                text(12)?.unwrap_or_default().split(' ').filter(|p| !p.is_empty()).map(str::to_owned).collect();
            if let Some(list) = key.as_array_mut() {
                list.push(serde_json::json!([
                    text(11)?,
                    packages,
                    r.get::<_, Option<i64>>(13)?,
                    r.get::<_, Option<i64>>(14)?,
                    kind
                ]));
            }
        }
        // The text, not `Value == String` (which compares a JSON string value).
        let written = key.to_string();
        Ok((id, written != identity))
    })?;
    rows.filter_map(|r| r.map(|(id, changed)| changed.then_some(id)).transpose()).collect()
}

/// Reseals the batches from `from` on as format `format` (no other change): for tests of the
/// formats older writers sealed.
#[cfg(test)]
pub(super) fn reseal_as(conn: &Connection, from: i64, format: i64) -> rusqlite::Result<()> {
    type Batch = (i64, i64, [(i64, i64); 2], (Option<i64>, Option<i64>), Vec<u8>);
    let batches: Vec<Batch> = conn
        .prepare(
            "SELECT id, time_ms, first_connection, last_connection, first_stats, last_stats, min_time_ms,
                 max_time_ms, prev_hash FROM batches WHERE id >= ?1 ORDER BY id",
        )?
        .query_map([from], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [(r.get(2)?, r.get(3)?), (r.get(4)?, r.get(5)?)],
                (r.get(6)?, r.get(7)?),
                r.get(8)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut prev: Option<Vec<u8>> = None;
    for (id, time_ms, ranges, times, stored_prev) in batches {
        let prev_hash = prev.take().unwrap_or(stored_prev);
        let mut blob = Vec::new();
        for (i, (table, columns, n)) in TABLES.iter().enumerate() {
            for (_, d) in digests(conn, table, (columns, *n), ranges[i], format)? {
                blob.extend_from_slice(&d);
            }
        }
        let hash = batch_hash(&prev_hash, &Sealed { time_ms, ranges, times, digests: &blob }, format);
        conn.execute(
            "UPDATE batches SET digests = ?1, prev_hash = ?2, hash = ?3, row_format = ?4 WHERE id = ?5",
            params![blob, prev_hash, hash.as_slice(), format, id],
        )?;
        prev = Some(hash.to_vec());
    }
    Ok(())
}

/// Reseals every batch as a journal before schema 16 did (format 1, no `row_format` column),
/// and takes schema 17's spans away: for tests of older journals.
#[cfg(test)]
pub(super) fn as_schema_15_batches(conn: &Connection) -> rusqlite::Result<()> {
    super::spans::as_schema_16(conn)?;
    reseal_as(conn, i64::MIN, 1)?;
    conn.execute_batch("ALTER TABLE batches DROP COLUMN row_format")
}

#[cfg(test)]
mod tests;
