//! Flows that continue across a restart of the daemon: a socket older than this run (discovered
//! at its first packet, its direction unknown to the kernel) that an earlier run journaled. Its
//! records take the direction that run knew, and its first record here is not a new flow, so a
//! connection open across a restart stays one flow to one endpoint in reports.

use std::{net::SocketAddr, sync::Arc};

use jiff::Timestamp;
use rusqlite::{OptionalExtension as _, params};

use super::{Error, JournalWriter, names};
use crate::{
    identity::App,
    tracker::record::{Direction, Owner, Protocol, RecordKind},
};

/// What an earlier run journaled of a socket: the flow continues it.
#[derive(Debug, Clone)]
pub struct Earlier {
    /// The latest direction the journal knows for the socket (`Unknown` when no record of it
    /// said one: a socket older than every run, whose flow still continues).
    pub direction: Direction,
    /// The owner and app of its latest record.
    pub owner: Option<(Owner, Arc<App>)>,
    /// When the flow was first seen, as that record says (the flow's start, not this run's).
    pub first_seen: Timestamp,
}

impl JournalWriter {
    /// What earlier runs journaled of socket `cookie` (with remote end `remote`, when given) in
    /// records since `since_ms` (the boot: socket cookies start again at each boot) and before this
    /// run's start, found through the rollups' probe index `connections_cookie` (a socket's first
    /// record per endpoint and week is in it, every flow's first record with a remote end that is
    /// not its close, and closes past the caps that end a flow with earlier records); `None` when
    /// no record of it is there, or when the latest indexed record of that remote end (this run's
    /// flushed ones included) is a `close`: that flow ended, and a record of the socket and remote
    /// end now is a new one.
    ///
    /// # Errors
    /// When a query fails, or a stored value is not one this build knows.
    pub fn earlier(&self, cookie: u64, remote: Option<SocketAddr>, since_ms: i64) -> Result<Option<Earlier>, Error> {
        let read = |source| Error::read(self.path(), source);
        // This run's own records are not an earlier run's (a discovered socket's first record).
        let run_ms = self.run.started_at.as_millisecond();
        let (ip, port) = (
            remote.map(|r| {
                let mut text = String::new();
                names::ip_text(r.ip(), &mut text);
                text
            }),
            remote.map(|r| r.port()),
        );
        let owner = self
            .conn
            .prepare_cached(&earlier_owner_sql(remote.is_some()))
            .map_err(read)?
            .query_row(params![cookie.cast_signed(), since_ms, run_ms, ip, port], owner_and_app)
            .optional()
            .map_err(read)?;
        let Some((owner, first_seen)) = owner else { return Ok(None) };
        // A peer flow whose latest indexed record, this run's included, is a `close` ended (closed
        // past the caps, by this run or an earlier one): a later record of it is a new flow. The
        // sink's cache of answers says so within a run, but holds 4,096 flows (a re-check: a
        // peer that talked again after its close past the caps, beyond the cache, continued the
        // closed flow and closed it a second time).
        if remote.is_some() {
            let event: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT s.event FROM connection_rows r JOIN connection_shapes s ON s.id = r.shape_id
                     WHERE r.cookie = ?1 AND r.lookup IS NOT NULL AND r.time_ms >= ?2
                         AND r.remote_ip = ?3 AND r.remote_port = ?4
                     ORDER BY r.time_ms DESC, r.id DESC LIMIT 1",
                )
                .map_err(read)?
                .query_row(params![cookie.cast_signed(), since_ms, ip, port], |row| row.get(0))
                .optional()
                .map_err(read)?;
            if event.map(|t| names::parse::<RecordKind>(0, &t)).transpose().map_err(read)? == Some(RecordKind::Close) {
                return Ok(None);
            }
        }
        let text: Option<String> = self
            .conn
            .prepare_cached(&earlier_direction_sql(remote.is_some()))
            .map_err(read)?
            .query_row(
                params![cookie.cast_signed(), since_ms, run_ms, ip, port, names::name(Direction::Unknown)],
                |row| row.get(0),
            )
            .optional()
            .map_err(read)?;
        let direction = text.map(|t| names::parse(0, &t)).transpose().map_err(read)?.unwrap_or(Direction::Unknown);
        Ok(Some(Earlier { direction, owner: Some(owner), first_seen }))
    }
}

/// The condition on the remote end in [`JournalWriter::earlier`]'s queries: the given one (`?4`,
/// `?5`), which the probe index `connections_cookie` takes after the cookie, or any (both NULL).
/// One statement for each: a single `?4 IS NULL OR (...)` left SQLite only the index's cookie
/// column, so every lookup read all of a socket's indexed rows (an adversarial pass: about 1.6 ms
/// per record of a socket with 5,000 peers after a restart, the journal seconds behind).
fn remote_condition(remote: bool) -> &'static str {
    if remote { "r.remote_ip = ?4 AND r.remote_port = ?5" } else { "?4 IS NULL AND ?5 IS NULL" }
}

/// [`JournalWriter::earlier`]'s query of the owner and app of the latest indexed record before
/// this run.
fn earlier_owner_sql(remote: bool) -> String {
    format!(
        "SELECT o.owner_tgid, o.owner_pid, o.owner_uid, o.owner_gid, o.owner_comm, o.owner_cgroup_id,
             o.owner_source, o.app_pid, o.app_start_time, a.name, a.exe, a.cmdline, a.uid, a.user, a.unit,
             a.cgroup, a.container, a.source, r.first_seen_ms
         FROM connection_rows r JOIN connection_owners o ON o.id = r.owner_id JOIN apps a ON a.id = o.app_id
         WHERE r.cookie = ?1 AND {} AND r.lookup IS NOT NULL AND r.time_ms >= ?2 AND r.time_ms < ?3
         ORDER BY r.time_ms DESC LIMIT 1",
        remote_condition(remote)
    )
}

/// [`JournalWriter::earlier`]'s query of the latest known direction before this run.
fn earlier_direction_sql(remote: bool) -> String {
    format!(
        "SELECT s.direction FROM connection_rows r JOIN connection_shapes s ON s.id = r.shape_id
         WHERE r.cookie = ?1 AND {} AND r.lookup IS NOT NULL AND r.time_ms >= ?2 AND r.time_ms < ?3
             AND s.direction != ?6
         ORDER BY r.time_ms DESC LIMIT 1",
        remote_condition(remote)
    )
}

/// One flow of a socket that earlier runs journaled: its remote end, direction and protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EarlierFlow {
    /// The remote end.
    pub remote: SocketAddr,
    /// The direction its indexed record says.
    pub direction: Direction,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its latest indexed record is a `close`: a close that was its flow's first record of a
    /// week, or one past the tracker's caps that ended a flow with earlier records (indexed for
    /// this, `Release::Split`), of an earlier run or of this one.
    pub closed: bool,
}

impl JournalWriter {
    /// The flows of socket `cookie` (one per remote end) that the journal holds since `since_ms`
    /// (the boot), this run's flushed records included, found through `connections_cookie` as
    /// [`Self::earlier`] finds them (every flow's first record of each week is there). A flow
    /// only this run journaled is no earlier run's: [`Self::earlier`] does not find it.
    ///
    /// # Errors
    /// When the query fails, or a stored value is not one this build knows (an address that
    /// does not parse is a corrupt journal).
    pub fn earlier_flows(&self, cookie: u64, since_ms: i64) -> Result<Vec<EarlierFlow>, Error> {
        let read = |source| Error::read(self.path(), source);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT r.remote_ip, r.remote_port, s.direction, s.protocol, s.event
                 FROM connection_rows r JOIN connection_shapes s ON s.id = r.shape_id
                 WHERE r.cookie = ?1 AND r.lookup IS NOT NULL AND r.time_ms >= ?2 AND r.remote_ip IS NOT NULL
                 ORDER BY r.time_ms, r.id",
            )
            .map_err(read)?;
        let rows = stmt
            .query_map(params![cookie.cast_signed(), since_ms], |row| {
                let ip: String = row.get(0)?;
                let ip: std::net::IpAddr = ip.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
                })?;
                Ok(EarlierFlow {
                    remote: SocketAddr::new(ip, row.get(1)?),
                    direction: names::parse(2, &row.get::<_, String>(2)?)?,
                    protocol: names::parse(3, &row.get::<_, String>(3)?)?,
                    closed: names::parse::<RecordKind>(4, &row.get::<_, String>(4)?)? == RecordKind::Close,
                })
            })
            .map_err(read)?;
        let mut flows: Vec<EarlierFlow> = Vec::new();
        let mut at: std::collections::HashMap<SocketAddr, usize> = std::collections::HashMap::new();
        for flow in rows {
            let flow = flow.map_err(read)?;
            // The latest record's direction of each remote end (a known direction over `unknown`).
            match at.get(&flow.remote).and_then(|&i| flows.get_mut(i)) {
                Some(f) => {
                    f.closed = flow.closed; // the latest indexed record's
                    if flow.direction != Direction::Unknown {
                        (f.direction, f.protocol) = (flow.direction, flow.protocol);
                    }
                }
                None => {
                    at.insert(flow.remote, flows.len());
                    flows.push(flow);
                }
            }
        }
        Ok(flows)
    }
}

/// The owner and app columns of [`JournalWriter::earlier`]'s first query, and the record's
/// `first_seen`.
fn owner_and_app(row: &rusqlite::Row<'_>) -> rusqlite::Result<((Owner, Arc<App>), Timestamp)> {
    let comm: String = row.get(4)?;
    let owner = Owner {
        tgid: row.get(0)?,
        pid: row.get(1)?,
        uid: row.get(2)?,
        gid: row.get(3)?,
        comm: comm.into(),
        cgroup_id: row.get::<_, i64>(5)?.cast_unsigned(),
        source: names::parse(6, &row.get::<_, String>(6)?)?,
        start_cs: 0,
        exec_mark: 0,
    };
    let app = App {
        pid: row.get(7)?,
        start_time: row.get::<_, i64>(8)?.cast_unsigned(),
        name: row.get(9)?,
        exe: row.get(10)?,
        cmdline: row.get(11)?,
        uid: row.get(12)?,
        user: row.get(13)?,
        unit: row.get(14)?,
        cgroup: row.get(15)?,
        container: row.get(16)?,
        source: names::parse(17, &row.get::<_, String>(17)?)?,
        android: None,
    };
    let first_seen = names::ts(18, row.get(18)?)?;
    Ok(((owner, Arc::new(app)), first_seen))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        fixtures::{self, Flow, at},
        tempdir, writer_in, writer_restarted,
    };
    use crate::tracker::record::{Direction, RecordKind};

    const T0: i64 = 1_794_787_200;

    #[test]
    fn what_an_earlier_run_knew_is_found_by_cookie_since_the_boot() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("server");
        let mut inbound = Flow::new(7, "192.0.2.1:50000", at(T0));
        inbound.direction = Direction::Inbound;
        w.append(&inbound.record(RecordKind::Update, at(T0 + 10), 100, 200), &app, None);
        w.append(&inbound.record(RecordKind::Shutdown, at(T0 + 20), 100, 200), &app, None);
        // A later record of the socket without a direction (a run after a restart) hides nothing.
        let mut later = inbound.record(RecordKind::Update, at(T0 + 8 * 86_400), 5, 5);
        later.direction = Direction::Unknown;
        w.append(&later, &app, None);
        let mut unknown = Flow::new(8, "192.0.2.2:443", at(T0));
        unknown.direction = Direction::Unknown;
        w.append(&unknown.record(RecordKind::Update, at(T0 + 10), 1, 1), &app, None);
        w.flush().expect("flush");
        drop(w);
        // The next run, a restart after them.
        let w = writer_restarted(dir.path(), T0 + 10 * 86_400);
        let direction = |cookie| w.earlier(cookie, None, 0).expect("query").map(|e| e.direction);
        assert_eq!(direction(7), Some(Direction::Inbound));
        assert_eq!(direction(8), Some(Direction::Unknown), "never had a direction: continues all the same");
        assert_eq!(direction(9), None, "never journaled");
        assert_eq!(direction(u64::MAX), None);
        // Records from before the boot are another socket's (cookies start again at each boot).
        assert!(w.earlier(7, None, (T0 + 9 * 86_400) * 1000).expect("query").is_none());
        // The owner and app of its latest record.
        let (owner, app) = w.earlier(7, None, 0).expect("query").and_then(|e| e.owner).expect("owner");
        assert_eq!(
            (app.name.as_str(), owner.tgid),
            ("server", inbound.record(RecordKind::Update, at(T0), 0, 0).owner.tgid)
        );
    }

    /// A lookup of a socket's flow with one remote end seeks that end in the probe index, not
    /// every indexed row of the socket (an adversarial pass: with one statement for both cases,
    /// SQLite used the cookie column alone, 1.6 ms per record of a socket with 5,000 peers).
    #[test]
    fn a_lookup_of_one_remote_end_seeks_it_in_the_probe_index() {
        let dir = tempdir();
        let w = writer_in(dir.path());
        let plan = |sql: &str| -> String {
            let mut stmt = w.conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).expect("plan");
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            let rows =
                stmt.query_map(rusqlite::params_from_iter(nulls), |row| row.get::<_, String>(3)).expect("plan rows");
            rows.map(|r| r.expect("plan row")).collect::<Vec<_>>().join("; ")
        };
        let seek =
            "USING INDEX connections_cookie (cookie=? AND remote_ip=? AND remote_port=? AND time_ms>? AND time_ms<?)";
        for sql in [super::earlier_owner_sql(true), super::earlier_direction_sql(true)] {
            let plan = plan(&sql);
            assert!(plan.contains(seek), "{plan}");
        }
        for sql in [super::earlier_owner_sql(false), super::earlier_direction_sql(false)] {
            let plan = plan(&sql);
            assert!(plan.contains("USING INDEX connections_cookie (cookie=?)"), "{plan}");
        }
    }
}
