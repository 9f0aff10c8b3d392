//! Queries by host name (issue 10): traffic per (app, host name, destination) for the report's
//! "by service" section, and the addresses a host name was seen at for `monitor lookup`.
//!
//! Both read `connections` (a time range through `connection_spans`, a host name through
//! `connections_hostname`); records
//! written before the names migration have no host name and count as unnamed.

use rusqlite::params;
use serde::Serialize;

use super::{
    Error, JournalReader, TimeRange,
    names::{self, count, ms, ts},
};
use crate::names::NameSource;

/// Traffic of one (app, host name, name source, country, ASN) over a range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceRow {
    /// App name.
    pub app: String,
    /// Host name (`None`: unnamed traffic).
    pub hostname: Option<String>,
    /// Registrable domain of the host name.
    pub registrable_domain: Option<String>,
    /// Where the name came from (`sni`, `dns`...; `None` in records older than names).
    pub name_source: Option<NameSource>,
    /// Country of the remote address.
    pub country: Option<String>,
    /// ASN of the remote address.
    pub asn: Option<u32>,
    /// AS organisation.
    pub as_org: Option<String>,
    /// Payload bytes sent.
    pub payload_tx: u64,
    /// Payload bytes received.
    pub payload_rx: u64,
    /// Flows: distinct (socket, remote end), as the report counts them (an unconnected socket has
    /// a flow per peer).
    pub flows: u64,
}

/// One address a host name was seen at, per app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostAddressRow {
    /// App name.
    pub app: String,
    /// Remote address.
    pub ip: String,
    /// How the flows had the name: the source of their `hostname` when it is the name (`sni`,
    /// `dns`...), `dns_name` when the name was the app's DNS answer kept beside another server
    /// name.
    pub name_source: Option<String>,
    /// First flow to it under that name (flow start).
    pub first_seen: jiff::Timestamp,
    /// Latest record of such a flow.
    pub last_seen: jiff::Timestamp,
    /// Distinct sockets.
    pub flows: u64,
    /// Payload bytes sent and received.
    pub payload_bytes: u64,
}

impl JournalReader {
    /// Payload per (app, host name, source, country, ASN) from connection records whose time is
    /// in `range` (of sockets created in cgroup `cgroup` when given), sorted by those keys.
    /// Listening sockets are left out.
    ///
    /// # Errors
    /// When the query fails.
    pub fn services(&self, range: TimeRange, app: Option<&str>, cgroup: Option<u64>) -> Result<Vec<ServiceRow>, Error> {
        let mut stmt = self
            .connection()
            .prepare_cached(concat!(
                "SELECT a.name, c.hostname, c.registrable_domain, c.name_source, c.country, c.asn, c.as_org,
                     SUM(c.delta_payload_tx), SUM(c.delta_payload_rx),
                     COUNT(DISTINCT c.cookie || ' ' || COALESCE(c.remote_ip, '') || ' ' || CASE WHEN c.direction = ",
                super::names::sql!(Direction::Inbound),
                " THEN '' ELSE COALESCE(c.remote_port, '') END)
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.direction != ",
                super::names::sql!(Direction::Listen),
                " AND (?3 IS NULL OR a.name = ?3)
                     AND (?4 IS NULL OR c.owner_cgroup_id = ?4)
                 GROUP BY a.name, c.hostname, c.registrable_domain, c.name_source, c.country, c.asn, c.as_org
                 ORDER BY a.name, c.hostname, c.registrable_domain, c.name_source, c.country, c.asn, c.as_org"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app, cgroup.map(u64::cast_signed)], |row| {
                Ok(ServiceRow {
                    app: row.get(0)?,
                    hostname: row.get(1)?,
                    registrable_domain: row.get(2)?,
                    name_source: names::get_opt(row, 3)?,
                    country: row.get(4)?,
                    asn: row.get(5)?,
                    as_org: row.get(6)?,
                    payload_tx: count(row.get(7)?),
                    payload_rx: count(row.get(8)?),
                    flows: count(row.get(9)?),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }

    /// Distinct (app, remote address, host name) of named connection records whose time is in
    /// `range` (of sockets created in cgroup `cgroup` when given), sorted: the names shown beside
    /// the report's top endpoints.
    ///
    /// # Errors
    /// When the query fails.
    pub fn endpoint_hostnames(
        &self,
        range: TimeRange,
        app: Option<&str>,
        cgroup: Option<u64>,
    ) -> Result<Vec<(String, String, String)>, Error> {
        let mut stmt = self
            .connection()
            .prepare_cached(concat!(
                "SELECT DISTINCT a.name, c.remote_ip, c.hostname
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE c.time_ms >= ?1 AND c.time_ms < ?2 AND",
                super::spans::id_window!("c.id", "?1", "?2"),
                " AND c.hostname IS NOT NULL AND c.remote_ip IS NOT NULL
                     AND (?3 IS NULL OR a.name = ?3) AND (?4 IS NULL OR c.owner_cgroup_id = ?4)
                 ORDER BY 1, 2, 3"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![ms(range.since), ms(range.until), app, cgroup.map(u64::cast_signed)], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }

    /// The addresses flows named `hostname` (as server name or DNS name) went to, per app and how
    /// they had the name, with first and last seen, sorted by app and address.
    ///
    /// # Errors
    /// When the query fails.
    pub fn host_addresses(&self, hostname: &str) -> Result<Vec<HostAddressRow>, Error> {
        let mut stmt = self
            .connection()
            .prepare_cached(
                "SELECT a.name, c.remote_ip, CASE WHEN c.hostname = ?1 THEN c.name_source ELSE 'dns_name' END AS how,
                     MIN(c.first_seen_ms), MAX(c.time_ms), COUNT(DISTINCT c.cookie),
                     SUM(c.delta_payload_tx + c.delta_payload_rx)
                 FROM connections c JOIN apps a ON a.id = c.app_id
                 WHERE (c.hostname = ?1 OR c.dns_name = ?1) AND c.remote_ip IS NOT NULL
                 GROUP BY a.name, c.remote_ip, how
                 ORDER BY a.name, c.remote_ip, how",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![hostname], |row| {
                Ok(HostAddressRow {
                    app: row.get(0)?,
                    ip: row.get(1)?,
                    name_source: row.get(2)?,
                    first_seen: ts(3, row.get(3)?)?,
                    last_seen: ts(4, row.get(4)?)?,
                    flows: count(row.get(5)?),
                    payload_bytes: count(row.get(6)?),
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>();
        rows.map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{
        fixtures::{self, Flow, at},
        tempdir, writer_in,
    };
    use crate::{
        journal::{JournalReader, TimeRange},
        names::{Hostname, NameSource, Names},
        tracker::record::RecordKind::{Close, Update},
    };

    const T0: i64 = 1_794_787_200;

    fn named(host: &str, source: NameSource) -> Names {
        let hostname = Hostname::parse(host).ok();
        Names { registrable_domain: crate::names::domain::registrable(host), hostname, source, ..Names::default() }
    }

    #[test]
    fn services_sum_deltas_per_app_and_name_and_lookup_lists_addresses() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let (alpha, beta) = (fixtures::app("alpha"), fixtures::app("beta"));
        let us = fixtures::public(Some("US"), Some(64_500), Some("Example"));
        let a_name = named("a.svc.test", NameSource::Sni);
        let mut a = Flow::new(1, "203.0.113.7:443", at(T0 + 1));
        w.append_named(&a.record(Update, at(T0 + 10), 1000, 200), &alpha, Some(&us), &a_name);
        w.append_named(&a.record(Close, at(T0 + 20), 1500, 300), &alpha, Some(&us), &a_name);
        let mut b = Flow::new(2, "203.0.113.7:443", at(T0 + 2));
        w.append_named(&b.record(Close, at(T0 + 30), 70, 30), &beta, Some(&us), &named("b.svc.test", NameSource::Dns));
        let mut c = Flow::new(3, "198.51.100.1:80", at(T0 + 3));
        w.append(&c.record(Close, at(T0 + 40), 5, 5), &beta, None);
        w.flush().unwrap();

        let r = JournalReader::open(&dir.path().join("state/journal.db")).unwrap();
        let range = TimeRange { since: at(T0), until: at(T0 + 3600) };
        let rows = r.services(range, None, None).unwrap();
        let got: Vec<_> =
            rows.iter().map(|r| (r.app.as_str(), r.hostname.as_deref(), r.payload_tx, r.payload_rx, r.flows)).collect();
        assert_eq!(
            got,
            [
                ("alpha", Some("a.svc.test"), 2500, 500, 1),
                ("beta", None, 5, 5, 1),
                ("beta", Some("b.svc.test"), 70, 30, 1)
            ]
        );
        assert_eq!(rows[0].registrable_domain.as_deref(), Some("svc.test"));
        assert_eq!(rows[0].name_source, Some(NameSource::Sni));

        let seen = r.host_addresses("b.svc.test").unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!((seen[0].app.as_str(), seen[0].ip.as_str(), seen[0].flows), ("beta", "203.0.113.7", 1));
        assert_eq!((seen[0].first_seen, seen[0].last_seen), (at(T0 + 2), at(T0 + 30)));
    }

    /// `lookup HOST` says how the flows had the name: their server name's source when it is the
    /// server name, `dns_name` when it was the app's DNS answer beside another server name (it
    /// showed the server name's source, `sni`, for a name the app only resolved).
    #[test]
    fn lookup_says_whether_the_name_was_the_server_name_or_the_dns_name_beside_it() {
        let dir = tempdir();
        let mut w = writer_in(dir.path());
        let app = fixtures::app("curlb");
        let us = fixtures::public(Some("US"), Some(64_500), Some("Example"));
        let mut names = named("other.qa.test", NameSource::Sni);
        names.dns_name = Hostname::parse("gamma.qa.test").ok();
        let mut f = Flow::new(1, "203.0.113.9:443", at(T0 + 1));
        w.append_named(&f.record(Close, at(T0 + 5), 10, 20), &app, Some(&us), &names);
        w.flush().unwrap();
        let r = JournalReader::open(&dir.path().join("state/journal.db")).unwrap();
        let how =
            |host: &str| r.host_addresses(host).unwrap().into_iter().map(|row| row.name_source).collect::<Vec<_>>();
        assert_eq!(how("other.qa.test"), [Some("sni".to_string())]);
        assert_eq!(how("gamma.qa.test"), [Some("dns_name".to_string())]);
    }
}
