//! Rows of the rollup tables as sums, and the statements that add them (shared by the flush and
//! the backfill, so both fold alike).

use rusqlite::{Transaction, params};

/// Sums of one `residency_week` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ResidencySums {
    pub payload_tx: i64,
    pub payload_rx: i64,
    pub wire_tx: i64,
    pub wire_rx: i64,
    pub packets_tx: i64,
    pub packets_rx: i64,
    pub new_flows: i64,
    pub incomplete_flows: i64,
    /// Sum of the residency rows' `connections`.
    pub flow_intervals: i64,
    /// Earliest `interval_start` (Unix s).
    pub first_interval: i64,
    /// Latest `interval_start + interval_secs` (Unix s).
    pub last_interval_end: i64,
}

impl ResidencySums {
    /// Sums of one residency row (or bucket) of interval `[start, end)`.
    #[expect(clippy::too_many_arguments, reason = "one argument per stored column")]
    pub fn of(
        (payload_tx, payload_rx): (i64, i64),
        (wire_tx, wire_rx): (i64, i64),
        (packets_tx, packets_rx): (i64, i64),
        connections: i64,
        new_flows: i64,
        incomplete_flows: i64,
        start: i64,
        end: i64,
    ) -> Self {
        Self {
            payload_tx,
            payload_rx,
            wire_tx,
            wire_rx,
            packets_tx,
            packets_rx,
            new_flows,
            incomplete_flows,
            flow_intervals: connections,
            first_interval: start,
            last_interval_end: end,
        }
    }

    pub fn add(&mut self, o: &Self) {
        self.payload_tx = self.payload_tx.saturating_add(o.payload_tx);
        self.payload_rx = self.payload_rx.saturating_add(o.payload_rx);
        self.wire_tx = self.wire_tx.saturating_add(o.wire_tx);
        self.wire_rx = self.wire_rx.saturating_add(o.wire_rx);
        self.packets_tx = self.packets_tx.saturating_add(o.packets_tx);
        self.packets_rx = self.packets_rx.saturating_add(o.packets_rx);
        self.new_flows = self.new_flows.saturating_add(o.new_flows);
        self.incomplete_flows = self.incomplete_flows.saturating_add(o.incomplete_flows);
        self.flow_intervals = self.flow_intervals.saturating_add(o.flow_intervals);
        self.first_interval = self.first_interval.min(o.first_interval);
        self.last_interval_end = self.last_interval_end.max(o.last_interval_end);
    }
}

/// Key of one `residency_week` row (stored sentinels: '' and 0 for unknown).
#[derive(Debug, Clone, Copy)]
pub(super) struct ResidencyKey<'a> {
    pub week_start: i64,
    pub app: &'a str,
    pub scope: &'a str,
    pub country: &'a str,
    pub asn: i64,
    pub as_org: &'a str,
    pub country_db: i64,
    pub asn_db: i64,
    pub payload_source: &'a str,
}

/// Adds sums to a `residency_week` row (creating it).
pub(super) fn add_residency(tx: &Transaction<'_>, k: &ResidencyKey<'_>, s: &ResidencySums) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO residency_week (week_start, app, scope, country, asn, as_org, country_db, asn_db,
             payload_source, payload_tx, payload_rx, wire_tx, wire_rx, packets_tx, packets_rx, new_flows,
             incomplete_flows, flow_intervals, first_interval, last_interval_end)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
         ON CONFLICT (week_start, app, scope, country, asn, as_org, country_db, asn_db, payload_source)
         DO UPDATE SET payload_tx = payload_tx + excluded.payload_tx,
             payload_rx = payload_rx + excluded.payload_rx,
             wire_tx = wire_tx + excluded.wire_tx,
             wire_rx = wire_rx + excluded.wire_rx,
             packets_tx = packets_tx + excluded.packets_tx,
             packets_rx = packets_rx + excluded.packets_rx,
             new_flows = new_flows + excluded.new_flows,
             incomplete_flows = incomplete_flows + excluded.incomplete_flows,
             flow_intervals = flow_intervals + excluded.flow_intervals,
             first_interval = min(first_interval, excluded.first_interval),
             last_interval_end = max(last_interval_end, excluded.last_interval_end)",
    )?
    .execute(params![
        k.week_start,
        k.app,
        k.scope,
        k.country,
        k.asn,
        k.as_org,
        k.country_db,
        k.asn_db,
        k.payload_source,
        s.payload_tx,
        s.payload_rx,
        s.wire_tx,
        s.wire_rx,
        s.packets_tx,
        s.packets_rx,
        s.new_flows,
        s.incomplete_flows,
        s.flow_intervals,
        s.first_interval,
        s.last_interval_end,
    ])?;
    Ok(())
}

/// Sums of one `endpoint_week` row and the destination of its latest record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct EndpointSums<S> {
    pub payload_tx: i64,
    pub payload_rx: i64,
    pub wire_tx: i64,
    pub wire_rx: i64,
    /// Sockets counted in this week (each once: see `fold`).
    pub flows: i64,
    /// Time of the latest record (Unix ms).
    pub latest_ms: i64,
    /// Scope, country, ASN, organisation of the latest record; the first written wins a tie.
    pub latest: Latest<S>,
    /// Smallest positive kernel RTT minimum (µs) of any record.
    pub rtt_min_us: Option<i64>,
}

/// Destination columns of a record, `S` a string type (owned, borrowed or interned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Latest<S> {
    pub scope: Option<S>,
    pub country: Option<S>,
    pub asn: Option<i64>,
    pub as_org: Option<S>,
    /// Consensus verdict (`connections.consensus`).
    pub consensus: Option<S>,
    /// Every country database's answer (`connections.country_answers`, JSON).
    pub answers: Option<S>,
}

impl<S> Latest<S> {
    /// No destination (a record without a remote address).
    pub fn none() -> Self {
        Self { scope: None, country: None, asn: None, as_org: None, consensus: None, answers: None }
    }
}

impl<S> EndpointSums<S> {
    /// No record yet.
    pub fn empty() -> Self {
        Self {
            payload_tx: 0,
            payload_rx: 0,
            wire_tx: 0,
            wire_rx: 0,
            flows: 0,
            latest_ms: i64::MIN,
            latest: Latest::none(),
            rtt_min_us: None,
        }
    }

    /// Adds one record (deltas, whether it is a new socket here, its time, RTT minimum and
    /// destination).
    pub fn add_record(
        &mut self,
        deltas: [i64; 4],
        first: bool,
        (time_ms, rtt_min_us): (i64, Option<i64>),
        latest: impl FnOnce() -> Latest<S>,
    ) {
        let [ptx, prx, wtx, wrx] = deltas;
        if let Some(rtt) = rtt_min_us.filter(|r| *r > 0) {
            self.rtt_min_us = Some(self.rtt_min_us.map_or(rtt, |m| m.min(rtt)));
        }
        self.payload_tx = self.payload_tx.saturating_add(ptx);
        self.payload_rx = self.payload_rx.saturating_add(prx);
        self.wire_tx = self.wire_tx.saturating_add(wtx);
        self.wire_rx = self.wire_rx.saturating_add(wrx);
        self.flows += i64::from(first);
        // Strictly later only: among records of the same millisecond the first written wins, as
        // SQLite's bare columns beside MAX() in `JournalReader::endpoints` do.
        if time_ms > self.latest_ms {
            self.latest_ms = time_ms;
            self.latest = latest();
        }
    }
}

/// Key of one `endpoint_week` row with the neighbouring weeks (for the `new` flag).
#[derive(Debug, Clone, Copy)]
pub(super) struct EndpointKey<'a> {
    pub week_start: i64,
    /// Start of the previous week (`i64::MIN` when not representable: the row is new).
    pub previous_start: i64,
    /// Start of the next week, whose row (if any) is not new once this one exists.
    pub next_start: Option<i64>,
    pub app: &'a str,
    pub ip: &'a str,
    /// Remote port; -1 for inbound flows (reported as `null`).
    pub port: i64,
    pub protocol: &'a str,
}

/// Adds sums to an `endpoint_week` row. A new row is `new` unless the previous week has the
/// endpoint; the next week's row (written earlier by a late record) stops being new.
/// `answers_id`: the `answer_sets` id of the latest record's answers ([`answer_id`]).
pub(super) fn add_endpoint(
    tx: &Transaction<'_>,
    k: &EndpointKey<'_>,
    s: &EndpointSums<impl AsRef<str>>,
    answers_id: Option<i64>,
) -> rusqlite::Result<()> {
    let Latest { scope, country, asn, as_org, consensus, answers: _ } = &s.latest;
    tx.prepare_cached(
        "INSERT INTO endpoint_week (week_start, app, remote_ip, port, protocol, payload_tx, payload_rx, wire_tx,
             wire_rx, flows, latest_ms, scope, country, asn, as_org, new, consensus, answers_id, rtt_min_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
             NOT EXISTS (SELECT 1 FROM endpoint_week WHERE week_start = ?16 AND app = ?2 AND remote_ip = ?3
                 AND port = ?4 AND protocol = ?5), ?17, ?18, ?19)
         ON CONFLICT (week_start, app, remote_ip, port, protocol)
         DO UPDATE SET payload_tx = payload_tx + excluded.payload_tx,
             payload_rx = payload_rx + excluded.payload_rx,
             wire_tx = wire_tx + excluded.wire_tx,
             wire_rx = wire_rx + excluded.wire_rx,
             flows = flows + excluded.flows,
             scope = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.scope ELSE scope END,
             country = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.country ELSE country END,
             asn = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.asn ELSE asn END,
             as_org = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.as_org ELSE as_org END,
             consensus = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.consensus ELSE consensus END,
             answers_id = CASE WHEN excluded.latest_ms > latest_ms THEN excluded.answers_id ELSE answers_id END,
             rtt_min_us = CASE WHEN rtt_min_us IS NULL THEN excluded.rtt_min_us
                 ELSE min(rtt_min_us, coalesce(excluded.rtt_min_us, rtt_min_us)) END,
             latest_ms = max(latest_ms, excluded.latest_ms)",
    )?
    .execute(params![
        k.week_start,
        k.app,
        k.ip,
        k.port,
        k.protocol,
        s.payload_tx,
        s.payload_rx,
        s.wire_tx,
        s.wire_rx,
        s.flows,
        s.latest_ms,
        scope.as_ref().map(AsRef::as_ref),
        country.as_ref().map(AsRef::as_ref),
        asn,
        as_org.as_ref().map(AsRef::as_ref),
        k.previous_start,
        consensus.as_ref().map(AsRef::as_ref),
        answers_id,
        s.rtt_min_us,
    ])?;
    if let Some(next) = k.next_start {
        tx.prepare_cached(
            "UPDATE endpoint_week SET new = 0 WHERE week_start = ?1 AND app = ?2 AND remote_ip = ?3 AND port = ?4
                 AND protocol = ?5 AND new = 1",
        )?
        .execute(params![next, k.app, k.ip, k.port, k.protocol])?;
    }
    Ok(())
}

/// The `answer_sets` id of a `country_answers` text (inserted when new).
pub(super) fn answer_id(tx: &Transaction<'_>, text: &str) -> rusqlite::Result<i64> {
    tx.prepare_cached(
        "INSERT INTO answer_sets (text) VALUES (?1) ON CONFLICT (text) DO UPDATE SET text = excluded.text
         RETURNING id",
    )?
    .query_row(params![text], |row| row.get(0))
}

/// Key of one `service_week` row: a week's traffic of one app to one (host name, name source,
/// destination). Stored sentinels for NULL: '' for text, -1 for the ASN.
#[derive(Debug, Clone, Copy)]
pub(super) struct ServiceKey<'a> {
    pub week_start: i64,
    pub app: &'a str,
    pub hostname: &'a str,
    pub registrable_domain: &'a str,
    pub name_source: &'a str,
    pub country: &'a str,
    pub asn: i64,
    pub as_org: &'a str,
}

/// Sums of one `service_week` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ServiceSums {
    pub payload_tx: i64,
    pub payload_rx: i64,
    /// Sockets counted in this week (each once per key: see `fold`).
    pub flows: i64,
}

impl ServiceSums {
    /// Adds one record's payload deltas; `first`: no earlier record of its socket has this key in
    /// the week.
    pub fn add_record(&mut self, (tx, rx): (i64, i64), first: bool) {
        self.payload_tx = self.payload_tx.saturating_add(tx);
        self.payload_rx = self.payload_rx.saturating_add(rx);
        self.flows += i64::from(first);
    }
}

/// Adds sums to a `service_week` row (creating it).
pub(super) fn add_service(tx: &Transaction<'_>, k: &ServiceKey<'_>, s: &ServiceSums) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO service_week (week_start, app, hostname, registrable_domain, name_source, country, asn, as_org,
             payload_tx, payload_rx, flows)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (week_start, app, hostname, registrable_domain, name_source, country, asn, as_org)
         DO UPDATE SET payload_tx = payload_tx + excluded.payload_tx,
             payload_rx = payload_rx + excluded.payload_rx,
             flows = flows + excluded.flows",
    )?
    .execute(params![
        k.week_start,
        k.app,
        k.hostname,
        k.registrable_domain,
        k.name_source,
        k.country,
        k.asn,
        k.as_org,
        s.payload_tx,
        s.payload_rx,
        s.flows,
    ])?;
    Ok(())
}

/// Notes that `app` reached `ip` under `hostname` in the week (`endpoint_name_week`).
pub(super) fn add_endpoint_name(
    tx: &Transaction<'_>,
    week_start: i64,
    app: &str,
    ip: &str,
    hostname: &str,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO endpoint_name_week (week_start, app, remote_ip, hostname) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![week_start, app, ip, hostname])?;
    Ok(())
}

/// Seconds per `timeline_quarter` row (residency intervals divide it).
pub const QUARTER: i64 = 900;

/// Adds payload to a `timeline_quarter` row (creating it).
pub(super) fn add_quarter(
    tx: &Transaction<'_>,
    quarter_start: i64,
    app: &str,
    (ptx, prx): (i64, i64),
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO timeline_quarter (quarter_start, app, payload_tx, payload_rx) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (quarter_start, app)
         DO UPDATE SET payload_tx = payload_tx + excluded.payload_tx, payload_rx = payload_rx + excluded.payload_rx",
    )?
    .execute(params![quarter_start, app, ptx, prx])?;
    Ok(())
}
