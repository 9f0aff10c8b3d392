//! The report as data. Its JSON form is the documented schema (`SCHEMA.md`): fields are only
//! added, never renamed or removed, within one schema version.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use self::fleet::{HostApp, HostSummary, HostTraffic};
use self::fleet::{StaticText, attribution_text, schema_tag};
use super::PeriodKind;

mod fleet;

/// A per-app residency report over one period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Schema version, [`SCHEMA`](super::SCHEMA) (a report of another schema is not read).
    #[serde(deserialize_with = "schema_tag")]
    pub schema: StaticText,
    /// The period reported.
    pub period: PeriodInfo,
    /// The period "new destinations" are compared with.
    pub previous_period: PeriodInfo,
    /// Only this app was reported, if set.
    pub app_filter: Option<String>,
    /// The session reported (its window is `period`), if the report is of a session.
    pub session: Option<SessionInfo>,
    /// When the report was made, if the caller asked for it (left out for reproducible output).
    pub generated_at: Option<Timestamp>,
    /// Sums over the apps reported.
    pub totals: Traffic,
    /// One entry per app, by payload bytes (up + down) descending, then name.
    pub apps: Vec<AppReport>,
    /// Per app (same order as `apps`): payload by registrable domain and host name.
    #[serde(default)]
    pub services: Vec<super::services::AppServices>,
    /// What the figures may be missing.
    #[serde(default)]
    pub completeness: Completeness,
    /// Databases that answered the country/ASN figures of this period.
    pub databases: Vec<DatabaseUse>,
    /// Data licence attribution.
    pub attribution: Attribution,
    /// How the apps' `timeline`s are cut (added in the HTML report round).
    #[serde(default)]
    pub timeline: TimelineInfo,
    /// Claim verdicts over the period, when a claims file is configured (absent otherwise):
    /// per claim the verdict and its bytes, as `monitor verify` judges them (evidence there).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimSummary>,
    /// The emulator join (`monitor report --guest-journal`, issue 12); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub emulator_join: Option<super::EmulatorJoin>,
    /// Fleet reports only (`monitor report merge`, `monitor report --prometheus`): one entry per
    /// machine; absent from a single machine's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostSummary>>,
}

/// One claim's verdict in a report (the full evidence is `monitor verify`'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimSummary {
    /// Claim name.
    pub claim: String,
    /// Apps the claim selected that had traffic.
    pub apps: Vec<String>,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// Why (one line per reason).
    pub reasons: Vec<String>,
    /// Bytes the claim judged (in its direction).
    pub total: u64,
    /// Bytes that satisfy it.
    pub satisfying: u64,
    /// Bytes that violate it.
    pub violating: u64,
    /// Bytes that could not be judged (unknown country, ASN or name).
    pub unknown: u64,
}

/// Unit of the per-app timelines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineUnit {
    /// Local calendar days (periods longer than two days).
    #[default]
    Day,
    /// Hours (periods of two days or less).
    Hour,
}

/// How the apps' timelines are cut, and whether they add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineInfo {
    /// Bucket size.
    pub unit: TimelineUnit,
    /// Every app's buckets add up to its payload (false when the fine residency rows of the
    /// period were purged and the figures came from the weekly rollups).
    pub complete: bool,
}

/// Payload of an app in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeBucket {
    /// First instant included (UTC).
    pub since: Timestamp,
    /// First instant excluded (UTC).
    pub until: Timestamp,
    /// `since` in the period's time zone: `2026-11-16` (days) or `2026-11-16T05:00` (hours).
    pub label: String,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
}

/// A session (`monitor session`, `monitor exec --session`) a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Session name.
    pub name: String,
    /// Only sockets created in this cgroup (`monitor exec`) are reported; `None`: every flow of
    /// the window.
    pub cgroup_id: Option<u64>,
}

/// A period in UTC and local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodInfo {
    /// "2026-W47", or `"<since>/<until>"` for a range.
    pub label: String,
    /// `iso_week` or `range`.
    pub kind: PeriodKind,
    /// IANA time zone.
    pub time_zone: String,
    /// First instant included (UTC).
    pub since: Timestamp,
    /// First instant excluded (UTC).
    pub until: Timestamp,
    /// `since` in the time zone, RFC 3339 with offset.
    pub since_local: String,
    /// `until` in the time zone, RFC 3339 with offset.
    pub until_local: String,
    /// Length in seconds (604,800 for most weeks; 601,200 or 608,400 across a DST change).
    pub seconds: i64,
}

/// Payload and IP-layer bytes and packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Payload bytes sent ("up").
    pub payload_tx: u64,
    /// Payload bytes received ("down").
    pub payload_rx: u64,
    /// IP-layer bytes sent (headers included).
    pub wire_tx: u64,
    /// IP-layer bytes received.
    pub wire_rx: u64,
    /// Packets sent.
    pub packets_tx: u64,
    /// Packets received.
    pub packets_rx: u64,
}

impl Traffic {
    /// Payload up + down.
    #[must_use]
    pub fn payload(&self) -> u64 {
        self.payload_tx + self.payload_rx
    }

    pub(super) fn add(&mut self, o: &Self) {
        self.payload_tx += o.payload_tx;
        self.payload_rx += o.payload_rx;
        self.wire_tx += o.wire_tx;
        self.wire_rx += o.wire_rx;
        self.packets_tx += o.packets_tx;
        self.packets_rx += o.packets_rx;
    }
}

/// Figures of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    /// App name.
    pub app: String,
    /// All its traffic.
    pub traffic: Traffic,
    /// Fleet reports only: its traffic per machine, in the order of the report's `hosts`
    /// (absent from a single machine's report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub by_host: Vec<HostTraffic>,
    /// Flows that started in the period.
    pub flows: u64,
    /// Flows that ended incomplete in the period.
    #[serde(default)]
    pub incomplete_flows: u64,
    /// By country; non-public scopes and unknown countries as their own entries.
    pub by_country: Vec<Share>,
    /// By ASN; non-public scopes and unknown ASNs as their own entries.
    pub by_asn: Vec<Share>,
    /// Public traffic whose country / ASN is unknown.
    #[serde(default)]
    pub unknown: Unknown,
    /// Remote endpoints by payload bytes (at most the query's `top_endpoints`).
    #[serde(default)]
    pub top_endpoints: Vec<Endpoint>,
    /// Endpoints seen in the period (all, not only the top ones).
    #[serde(default)]
    pub endpoints_total: u64,
    /// Destinations seen in this period but not in the previous one.
    #[serde(default)]
    pub new_destinations: NewDestinations,
    /// Payload bytes by how they were measured.
    #[serde(default)]
    pub payload_sources: Vec<SourceShare>,
    /// Every remote address with its evidence (only when the query asks for evidence; left
    /// out of the JSON otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty", skip_deserializing)]
    pub destinations: Vec<super::DestinationDetail>,
    /// Payload per day (per hour for short periods), every bucket of the period, in order.
    #[serde(default)]
    pub timeline: Vec<TimeBucket>,
    /// Consensus of the country databases over the app's public traffic (absent when fewer than
    /// two databases were compared).
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub consensus: Option<super::truth::AppConsensus>,
    /// Physical plausibility of its destinations' countries from measured RTT (absent without a
    /// `[device] location` or without measured TCP destinations).
    #[serde(skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub plausibility: Option<super::truth::AppPlausibility>,
    /// Android identity, when the app is an Android app UID named from a packages.list (left
    /// out of the JSON otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub android: Option<AndroidApp>,
}

/// Android identity of an app in a report: the first (by user, app ID) of the UIDs seen under
/// the app's name, and the others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AndroidApp {
    /// `package`, `packages`, `user_id`, `app_id`, `kind` of the first UID.
    #[serde(flatten)]
    pub first: crate::identity::android::AndroidIdentity,
    /// Further UIDs under the same name (e.g. the same package for another Android user);
    /// left out of the JSON when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<crate::identity::android::AndroidIdentity>,
}

impl AndroidApp {
    /// From the identities of one app name, sorted; `None` when empty.
    #[must_use]
    pub fn from_list(mut list: Vec<crate::identity::android::AndroidIdentity>) -> Option<Self> {
        if list.is_empty() {
            return None;
        }
        let first = list.remove(0);
        Some(Self { first, others: list })
    }
}

/// What a [`Share`] entry stands for. Named by its serde derive (JSON `kind`, the CSV `kind`
/// column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShareKind {
    /// A country (`key` = ISO code).
    Country,
    /// An autonomous system (`key` = `"AS<number>"`).
    Asn,
    /// A public address with unknown country (`by_country`) or ASN (`by_asn`); `key` = "unknown".
    Unknown,
    /// A non-public scope (`key` = private, loopback, link_local, cgnat, multicast, documentation,
    /// reserved), `none` (no remote address) or `unenriched` (no lookup made).
    Scope,
}

/// One line of a breakdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    /// What `key` is.
    pub kind: ShareKind,
    /// "US", "AS396986", "unknown", "private"...
    pub key: String,
    /// ISO country code (`kind = country`).
    pub country: Option<String>,
    /// ASN (`kind = asn`).
    pub asn: Option<u32>,
    /// AS organisation (`kind = asn`; the name with the most bytes when databases disagree).
    pub as_org: Option<String>,
    /// Traffic.
    pub traffic: Traffic,
    /// Flows that started in the period.
    pub flows: u64,
    /// Payload (up + down) as a percentage of the app's payload, 2 decimals.
    pub share_pct: f64,
    /// Payload up as a percentage of the app's payload up.
    pub tx_share_pct: f64,
    /// Payload down as a percentage of the app's payload down.
    pub rx_share_pct: f64,
}

/// Public traffic without a country / ASN answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unknown {
    /// Payload bytes (up + down) to public addresses with unknown country.
    pub country_bytes: u64,
    /// Percentage of the app's payload.
    pub country_share_pct: f64,
    /// Payload bytes (up + down) to public addresses with unknown ASN.
    pub asn_bytes: u64,
    /// Percentage of the app's payload.
    pub asn_share_pct: f64,
}

/// A remote endpoint of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Remote address.
    pub ip: String,
    /// Remote port (`None` for inbound flows: grouped by address).
    pub port: Option<u16>,
    /// `tcp` / `udp`.
    pub protocol: String,
    /// Scope of the address.
    pub scope: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// ASN.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<String>,
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
    /// Percentage of the app's payload.
    pub share_pct: f64,
    /// Not seen in the previous period.
    pub new: bool,
    /// Host names the app's flows to this address carried in the period (sorted; empty when
    /// unnamed).
    pub hostnames: Vec<String>,
}

/// Destinations of this period absent from the previous one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewDestinations {
    /// The period compared with (label).
    pub compared_with: String,
    /// New countries (public addresses), sorted.
    pub countries: Vec<String>,
    /// New ASNs, sorted by number.
    pub asns: Vec<AsnRef>,
    /// Number of new endpoints (the new ones among `top_endpoints` carry `new: true`).
    pub endpoints: u64,
    /// False when connection records of the previous period were purged: endpoint novelty unknown.
    pub endpoints_compared: bool,
}

/// An ASN with its organisation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AsnRef {
    /// Number.
    pub asn: u32,
    /// Organisation.
    pub as_org: Option<String>,
}

/// Payload bytes measured one way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceShare {
    /// `syscall`, `ip_layer`, `tcp_counters` or `wire_minus_headers`.
    pub payload_source: String,
    /// Payload bytes (up + down).
    pub payload_bytes: u64,
    /// Percentage of the app's payload.
    pub share_pct: f64,
}

/// What the period's figures may be missing, from the `stats` and `losses` tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Completeness {
    /// Statistics rows in the period (0: nothing below is known).
    pub stats_rows: u64,
    /// Daemon runs with statistics in the period.
    pub runs: u64,
    /// Runs that started in the period after an earlier run (restarts).
    pub restarts: u64,
    /// Milliseconds of the period between a run's last statistics snapshot and the next run's
    /// start: at most the time nothing was watched (exact after a clean stop).
    pub unwatched_ms: u64,
    /// Kernel events produced.
    pub events_submitted: u64,
    /// Kernel events lost (ring buffer full).
    pub events_lost: u64,
    /// Events that could not be decoded.
    pub decode_errors: u64,
    /// Sockets that could not be counted.
    pub storage_failures: u64,
    /// IP-layer bytes not charged to any socket (host-wide).
    pub unattributed_bytes: u64,
    /// Packets not charged to any socket.
    pub unattributed_packets: u64,
    /// IP-layer bytes charged to apps (all apps, whatever the filter).
    pub attributed_wire_bytes: u64,
    /// unattributed / (attributed + unattributed) wire bytes, percent; `None` without statistics.
    pub unattributed_share_pct: Option<f64>,
    /// Flows of the reported apps that ended incomplete.
    pub incomplete_flows: u64,
    /// Connection records the journal had to drop (buffer full while writes failed).
    pub journal_dropped_records: u64,
    /// Payload bytes missing because the journal dropped residency rows.
    pub journal_dropped_payload_bytes: u64,
    /// Connection records (endpoints) before this instant were purged; `None` if none were.
    pub endpoints_purged_before: Option<Timestamp>,
    /// Start of the first residency interval with data.
    pub data_since: Option<Timestamp>,
    /// End of the last residency interval with data.
    pub data_until: Option<Timestamp>,
    /// Degradations of the journal's latest daemon run (snake_case names, see README
    /// "Degraded operation"); `None` when that daemon did not record them.
    pub degradations: Option<Vec<String>>,
    /// The same facts as sentences, in a fixed order.
    pub notes: Vec<String>,
}

/// A database that answered figures of this report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseUse {
    /// `country` or `asn`.
    pub role: String,
    /// MMDB `database_type`.
    pub database_type: String,
    /// MMDB `build_epoch` (seconds).
    pub build_epoch: u64,
    /// Build date (UTC), YYYY-MM-DD.
    pub build_date: String,
    /// Age of the data at the end of the period, in days.
    pub age_days: i64,
    /// File it was read from, when known.
    pub path: Option<String>,
    /// Payload bytes (up + down) whose country / ASN this database gave.
    pub payload_bytes: u64,
    /// One of the default databases (DB-IP Country Lite, ip-location-db ASN).
    pub default_data: bool,
}

/// Licence attribution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribution {
    /// [`ATTRIBUTION`](super::ATTRIBUTION).
    #[serde(deserialize_with = "attribution_text")]
    pub text: StaticText,
    /// Whether the default databases answered figures of this report.
    pub applies: bool,
}
