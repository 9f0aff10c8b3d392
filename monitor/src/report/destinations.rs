//! Per-destination evidence of a report (asked for with [`ReportQuery::evidence`]): every remote
//! address of an app with its geolocation answer and the databases that gave it, bytes each way,
//! flows, first and last seen, and the processes behind it. Claims are judged on these.
//!
//! [`ReportQuery::evidence`]: super::ReportQuery::evidence

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::{Error, ReportQuery};
use crate::{
    identity::android::{AndroidIdentity, USER_OFFSET},
    journal::{DatabaseRef, EvidenceRow, JournalReader},
    names::NameSource,
};

/// One remote address of an app with one geolocation answer (an address answered differently
/// by two database builds in the period appears once per answer).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DestinationDetail {
    /// Remote address.
    pub ip: String,
    /// Scope of the address (`public`, `private`, ..., `unenriched`).
    pub scope: String,
    /// Hostname the app used for the address, when known (an address used under two names
    /// appears once per name).
    pub hostname: Option<String>,
    /// Registrable domain of `hostname` ("example.co.uk"), when known.
    pub registrable_domain: Option<String>,
    /// Where `hostname` came from: `sni`, `quic_sni`, `dns`, `getaddrinfo` (the app's own), or
    /// `dns_host` (another process's DNS answer for the address: not a fact about this app's
    /// destination, so claims' host rules take the name as unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name_source: Option<String>,
    /// ISO country code.
    pub country: Option<String>,
    /// The configured country databases disagreed on the address in at least one record
    /// (claims may count such bytes as of unknown country).
    pub country_disputed: bool,
    /// ASN.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<String>,
    /// Database asked for the country.
    pub country_db: Option<DatabaseAnswer>,
    /// Database asked for the ASN.
    pub asn_db: Option<DatabaseAnswer>,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// IP-layer bytes sent.
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Distinct sockets.
    pub flows: u64,
    /// Earliest start of those flows.
    pub first_seen: Timestamp,
    /// Latest record of those flows in the period.
    pub last_seen: Timestamp,
    /// Processes that sent or received the bytes, by payload bytes descending.
    pub processes: Vec<ProcessUse>,
}

/// A database build that answered.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct DatabaseAnswer {
    /// MMDB `database_type`.
    pub database_type: String,
    /// MMDB `build_epoch` (seconds).
    pub build_epoch: u64,
    /// Build date (UTC), YYYY-MM-DD.
    pub build_date: String,
}

/// One process's part of a destination's traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessUse {
    /// Executable path, when known.
    pub exe: Option<String>,
    /// Process id.
    pub pid: u32,
    /// User id.
    pub uid: u32,
    /// User name, when known.
    pub user: Option<String>,
    /// systemd unit, when known.
    pub unit: Option<String>,
    /// Android package of the process's UID (the first by name for a shared UID), when known.
    pub package: Option<String>,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// IP-layer bytes sent.
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Distinct sockets.
    pub flows: u64,
}

impl DestinationDetail {
    /// Whether the address is public or was not looked up (`unenriched`: judged as public).
    /// Text that names no scope (a report from a newer version) is neither.
    #[must_use]
    pub fn public_or_unenriched(&self) -> bool {
        self.scope == crate::journal::SCOPE_UNENRICHED
            || crate::variant::parse::<crate::enrich::Scope>(&self.scope)
                .is_ok_and(|s| s == crate::enrich::Scope::Public)
    }

    /// Where [`hostname`](Self::hostname) came from, when the text names a source (`None` also
    /// for text this build does not know).
    #[must_use]
    pub fn name_source(&self) -> Option<NameSource> {
        self.name_source.as_deref().and_then(|s| crate::variant::parse(s).ok())
    }

    /// Payload up + down.
    #[must_use]
    pub fn payload(&self) -> u64 {
        self.payload_tx + self.payload_rx
    }
}

/// Reads the evidence of `query` from the journal's connection records (of sockets created in
/// cgroup `cgroup` when given: a `monitor exec` session's), per app.
///
/// # Errors
/// When the journal cannot be read.
pub(super) fn read(
    reader: &JournalReader,
    query: &ReportQuery,
    cgroup: Option<u64>,
) -> Result<BTreeMap<String, Vec<DestinationDetail>>, Error> {
    let range = query.period.time_range();
    let android = reader.android_apps(range, query.app.as_deref())?;
    Ok(group(reader.evidence(range, query.app.as_deref(), cgroup)?, &android))
}

fn answer(db: Option<&DatabaseRef>) -> Option<DatabaseAnswer> {
    db.map(|d| DatabaseAnswer {
        database_type: d.database_type.clone(),
        build_epoch: d.build_epoch,
        build_date: i64::try_from(d.build_epoch)
            .ok()
            .and_then(|s| Timestamp::from_second(s).ok())
            .map_or_else(String::new, |t| t.strftime("%Y-%m-%d").to_string()),
    })
}

/// Address, (host name, name source), scope, country, ASN, organisation, databases: the names
/// as stored text, so destinations sort as before they were typed.
type Key = (
    String,
    (Option<String>, Option<&'static str>),
    &'static str,
    Option<String>,
    Option<u32>,
    Option<String>,
    Option<DatabaseAnswer>,
    Option<DatabaseAnswer>,
);

/// Rows (sorted by app, then destination key) → destinations per app.
/// `android`: Android identities by app name ([`JournalReader::android_apps`]); a process's
/// package is the one of its app with the process's UID.
fn group(
    rows: Vec<EvidenceRow>,
    android: &BTreeMap<String, Vec<AndroidIdentity>>,
) -> BTreeMap<String, Vec<DestinationDetail>> {
    let mut by_app: BTreeMap<String, BTreeMap<Key, DestinationDetail>> = BTreeMap::new();
    for r in rows {
        let EvidenceRow {
            app,
            ip,
            scope,
            country,
            asn,
            as_org,
            country_db,
            asn_db,
            exe,
            pid,
            uid,
            user,
            unit,
            payload_tx,
            payload_rx,
            wire_tx,
            wire_rx,
            flows,
            first_seen,
            last_seen,
            hostname,
            registrable_domain,
            disputed,
            name_source,
        } = r;
        let (country_db, asn_db) = (answer(country_db.as_ref()), answer(asn_db.as_ref()));
        let package = android
            .get(&app)
            .and_then(|ids| {
                ids.iter()
                    .find(|a| a.user_id.checked_mul(USER_OFFSET).and_then(|u| u.checked_add(a.app_id)) == Some(uid))
            })
            .and_then(|a| a.package.clone());
        let key = (
            ip.clone(),
            (hostname.clone(), name_source.map(crate::variant::name)),
            scope.name(),
            country.clone(),
            asn,
            as_org.clone(),
            country_db.clone(),
            asn_db.clone(),
        );
        let d = by_app.entry(app).or_default().entry(key).or_insert_with(|| DestinationDetail {
            ip,
            scope: scope.name().to_owned(),
            hostname,
            registrable_domain,
            name_source: name_source.map(|s| crate::variant::name(s).to_owned()),
            country,
            country_disputed: false,
            asn,
            as_org,
            country_db,
            asn_db,
            payload_tx: 0,
            payload_rx: 0,
            wire_tx: 0,
            wire_rx: 0,
            flows: 0,
            first_seen,
            last_seen,
            processes: Vec::new(),
        });
        d.payload_tx += payload_tx;
        d.payload_rx += payload_rx;
        d.wire_tx += wire_tx;
        d.wire_rx += wire_rx;
        d.flows += flows;
        d.first_seen = d.first_seen.min(first_seen);
        d.last_seen = d.last_seen.max(last_seen);
        d.country_disputed |= disputed;
        d.processes.push(ProcessUse {
            exe,
            pid,
            uid,
            user,
            unit,
            package,
            payload_tx,
            payload_rx,
            wire_tx,
            wire_rx,
            flows,
        });
    }
    by_app
        .into_iter()
        .map(|(app, dests)| {
            let mut list: Vec<DestinationDetail> = dests.into_values().collect();
            for d in &mut list {
                d.processes.sort_by(|a, b| {
                    (b.payload_tx + b.payload_rx).cmp(&(a.payload_tx + a.payload_rx)).then_with(|| a.pid.cmp(&b.pid))
                });
            }
            list.sort_by(|a, b| b.payload().cmp(&a.payload()).then_with(|| a.ip.cmp(&b.ip)));
            (app, list)
        })
        .collect()
}
