//! Live alerts: claims judged on each enriched record as it arrives. The first violation of a
//! claim by a destination (remote address) in a period (ISO week in the report time zone) is an
//! alert; later violating records of the same (period, claim, destination) only count as repeats.
//!
//! Owns the in-memory table of alerts of the current period (bounded by [`MAX_TRACKED`]); the
//! daemon's sink logs new alerts, stores the rows it is handed ([`Alerts::take_changed`]) in
//! the journal and feeds the alert command. `min_share` is judged only by `monitor verify`
//! (a share needs the whole period); records without bytes in the claim's direction never alert.

use std::collections::HashMap;

use jiff::{Timestamp, tz::TimeZone};

use super::{ClaimSet, Facts};
use crate::{
    enrich::{Destination, Scope},
    identity::App,
    journal::AlertRow,
    tracker::FlowRecord,
};

/// Alerts (period, claim, destination) remembered; past this, those of older periods are
/// forgotten first, then all (their rows stay in the journal; a forgotten one may alert again).
pub const MAX_TRACKED: usize = 100_000;

type Key = (String, String, String);

/// Live claim state of the sink.
pub struct Alerts {
    claims: ClaimSet,
    tz: TimeZone,
    known: HashMap<Key, AlertRow>,
    changed: Vec<Key>,
    /// Rows changed, then forgotten before they were stored.
    evicted: Vec<AlertRow>,
}

impl Alerts {
    /// Judges `claims`, cutting periods in `tz`.
    #[must_use]
    pub fn new(claims: ClaimSet, tz: TimeZone) -> Self {
        Self { claims, tz, known: HashMap::new(), changed: Vec::new(), evicted: Vec::new() }
    }

    /// Replaces the claims (SIGHUP); alerts already raised stay raised.
    pub fn replace(&mut self, claims: ClaimSet) {
        self.claims = claims;
    }

    /// Number of claims watched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.claims.claims.len()
    }

    /// No claims watched.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.claims.claims.is_empty()
    }

    /// The ISO week label of `t` ("2026-W48"), `None` at the ends of time.
    #[must_use]
    pub fn period_of(&self, t: Timestamp) -> Option<String> {
        crate::week::monday_of(t, &self.tz).ok().map(crate::week::label)
    }

    /// Alerts already stored (e.g. for the current week, read at start): not raised again.
    pub fn remember(&mut self, rows: Vec<AlertRow>) {
        for row in rows {
            self.known.insert((row.period.clone(), row.claim.clone(), row.destination.clone()), row);
        }
    }

    /// Judges one record without its host names; returns the alerts it raises.
    pub fn check(&mut self, record: &FlowRecord, app: &App, dest: Option<&Destination>) -> Vec<AlertRow> {
        self.check_named(record, app, dest, None)
    }

    /// Judges one record with the host names the names stage gave it (hostname rules need
    /// them) and the databases' consensus (a disputed country counts as unknown when the claim
    /// says so); returns the alerts it raises (first violations).
    pub fn check_named(
        &mut self,
        record: &FlowRecord,
        app: &App,
        dest: Option<&Destination>,
        names: Option<&crate::names::Names>,
    ) -> Vec<AlertRow> {
        let (Some(remote), Some(dest)) = (record.remote, dest) else { return Vec::new() };
        // Another process's DNS answer for the address says nothing of the name this app used.
        let names = names.filter(|n| n.source != crate::names::NameSource::DnsHost);
        if self.claims.claims.is_empty() {
            return Vec::new();
        }
        let Some(period) = self.period_of(record.last_seen) else { return Vec::new() };
        let facts = Facts {
            public: dest.scope == Scope::Public,
            country: dest.country.as_deref(),
            country_disputed: dest.consensus == Some(crate::enrich::Consensus::Disagree),
            asn: dest.asn,
            as_org: dest.as_org.as_deref(),
            hostname: names.and_then(|n| n.hostname.as_ref()).map(|h| h.as_str()),
            registrable_domain: names.and_then(|n| n.registrable_domain.as_deref()),
        };
        let (tx, rx) = (record.delta_payload.tx_bytes, record.delta_payload.rx_bytes);
        let ip = remote.ip().to_string();
        let mut raised = Vec::new();
        // Every package of the UID (shared UIDs have several) can select it.
        let packages = app.android.as_ref().map_or(&[][..], |a| a.packages.as_slice());
        let (exe, unit) = (app.exe.as_deref(), app.unit.as_deref());
        for claim in &self.claims.claims {
            if claim.direction.bytes(tx, rx) == 0
                || !(claim.selects(&app.name, exe, unit, None)
                    || packages.iter().any(|p| claim.selects(&app.name, exe, unit, Some(p))))
            {
                continue;
            }
            let Some(rule) = claim.judge(&facts).violation else { continue };
            let key = (period.clone(), claim.name.clone(), ip.clone());
            if let Some(row) = self.known.get_mut(&key) {
                row.repeats += 1;
                row.last_seen = row.last_seen.max(record.last_seen);
                row.payload_tx += tx;
                row.payload_rx += rx;
                self.changed.push(key);
                continue;
            }
            let row = AlertRow {
                period: period.clone(),
                claim: claim.name.clone(),
                destination: ip.clone(),
                app: app.name.clone(),
                exe: app.exe.clone(),
                pid: app.pid,
                user: app.user.clone(),
                country: dest.country.as_deref().map(str::to_string),
                asn: dest.asn,
                as_org: dest.as_org.as_deref().map(str::to_string),
                rule: rule.to_string(),
                first_seen: record.last_seen,
                last_seen: record.last_seen,
                repeats: 0,
                payload_tx: tx,
                payload_rx: rx,
            };
            raised.push(row.clone());
            self.known.insert(key.clone(), row);
            self.changed.push(key);
        }
        if self.known.len() > MAX_TRACKED {
            self.forget(&period);
        }
        raised
    }

    /// Forgets alerts of periods other than `current` (all, if that is not enough), keeping
    /// changed rows for the next [`Alerts::take_changed`].
    fn forget(&mut self, current: &str) {
        let changed: std::collections::HashSet<Key> = self.changed.drain(..).collect();
        let keep_current = self.known.keys().filter(|k| k.0 == current).count() <= MAX_TRACKED / 2;
        let mut kept = HashMap::new();
        for (key, row) in self.known.drain() {
            if keep_current && key.0 == current {
                if changed.contains(&key) {
                    self.changed.push(key.clone());
                }
                kept.insert(key, row);
            } else if changed.contains(&key) {
                self.evicted.push(row);
            }
        }
        self.known = kept;
    }

    /// Rows raised or counted since the last call (each once), for the journal.
    pub fn take_changed(&mut self) -> Vec<AlertRow> {
        let mut keys = std::mem::take(&mut self.changed);
        keys.sort();
        keys.dedup();
        let mut rows: Vec<AlertRow> = std::mem::take(&mut self.evicted);
        rows.extend(keys.iter().filter_map(|k| self.known.get(k).cloned()));
        rows
    }

    /// Puts rows that could not be stored back, to be stored with the next changes.
    pub fn restore(&mut self, rows: Vec<AlertRow>) {
        for row in rows {
            let key = (row.period.clone(), row.claim.clone(), row.destination.clone());
            if self.known.contains_key(&key) {
                self.changed.push(key);
            } else {
                self.evicted.push(row);
            }
        }
    }
}
