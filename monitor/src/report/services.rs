//! "By service" (issue 10): per app, payload per registrable domain and per host name, each with
//! its countries and ASNs, and the share of unnamed bytes. Built from the journal's connection
//! records ([`crate::journal::ServiceRow`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{fmt::share, model::AsnRef};
use crate::journal::ServiceRow;

/// The services of one app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppServices {
    /// App name.
    pub app: String,
    /// Payload with a host name.
    pub named: ServiceTraffic,
    /// Payload without a host name (no DNS answer, ClientHello or name seen for the flow).
    pub unnamed: ServiceTraffic,
    /// Unnamed share of the app's payload, in percent.
    pub unnamed_share_pct: f64,
    /// By registrable domain, by payload descending, then name.
    pub domains: Vec<Service>,
    /// By host name, by payload descending, then name.
    pub hostnames: Vec<Service>,
}

/// Payload bytes and flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTraffic {
    /// Payload bytes sent ("up").
    pub payload_tx: u64,
    /// Payload bytes received ("down").
    pub payload_rx: u64,
    /// Distinct sockets (a socket counted once per name it carried).
    pub flows: u64,
}

impl ServiceTraffic {
    fn add(&mut self, r: &ServiceRow) {
        self.payload_tx += r.payload_tx;
        self.payload_rx += r.payload_rx;
        self.flows += r.flows;
    }

    /// Payload up + down.
    #[must_use]
    pub fn payload(&self) -> u64 {
        self.payload_tx + self.payload_rx
    }
}

/// One registrable domain or host name of an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// The domain or host name.
    pub name: String,
    /// For a host name: its registrable domain.
    pub registrable_domain: Option<String>,
    /// Where the names came from (`sni`, `quic_sni`, `dns`, `dns_host`, `getaddrinfo`), sorted.
    pub sources: Vec<String>,
    /// Its traffic.
    pub traffic: ServiceTraffic,
    /// Share of the app's payload, in percent.
    pub share_pct: f64,
    /// Countries of its addresses (ISO codes; unknown ones left out), sorted.
    pub countries: Vec<String>,
    /// ASNs of its addresses, sorted.
    pub asns: Vec<AsnRef>,
}

#[derive(Default)]
struct Acc {
    registrable_domain: Option<String>,
    sources: BTreeSet<String>,
    traffic: ServiceTraffic,
    countries: BTreeSet<String>,
    asns: BTreeSet<AsnRef>,
}

impl Acc {
    fn add(&mut self, r: &ServiceRow) {
        self.traffic.add(r);
        if let Some(s) = r.name_source {
            self.sources.insert(crate::variant::name(s).to_owned());
        }
        if let Some(c) = &r.country {
            self.countries.insert(c.clone());
        }
        if let Some(asn) = r.asn {
            self.asns.insert(AsnRef { asn, as_org: r.as_org.clone() });
        }
    }
}

/// Groups `rows` (sorted by app) into one [`AppServices`] per app, in `apps_order` (the report's
/// app order); apps without rows are left out.
#[must_use]
pub fn build(rows: &[ServiceRow], apps_order: &[&str]) -> Vec<AppServices> {
    let mut per_app: BTreeMap<&str, Vec<&ServiceRow>> = BTreeMap::new();
    for r in rows {
        per_app.entry(r.app.as_str()).or_default().push(r);
    }
    apps_order.iter().filter_map(|app| per_app.get(app).map(|rows| app_services(app, rows))).collect()
}

fn app_services(app: &str, rows: &[&ServiceRow]) -> AppServices {
    let mut named = ServiceTraffic::default();
    let mut unnamed = ServiceTraffic::default();
    let mut domains: BTreeMap<String, Acc> = BTreeMap::new();
    let mut hosts: BTreeMap<String, Acc> = BTreeMap::new();
    for r in rows {
        let Some(host) = r.hostname.as_ref() else {
            unnamed.add(r);
            continue;
        };
        named.add(r);
        let domain = r.registrable_domain.clone().unwrap_or_else(|| host.clone());
        domains.entry(domain.clone()).or_default().add(r);
        let h = hosts.entry(host.clone()).or_default();
        h.registrable_domain = Some(domain);
        h.add(r);
    }
    let total = named.payload() + unnamed.payload();
    let finish = |m: BTreeMap<String, Acc>, with_domain: bool| {
        let mut v: Vec<Service> = m
            .into_iter()
            .map(|(name, a)| Service {
                share_pct: share(a.traffic.payload(), total),
                name,
                registrable_domain: if with_domain { a.registrable_domain } else { None },
                sources: a.sources.into_iter().collect(),
                traffic: a.traffic,
                countries: a.countries.into_iter().collect(),
                asns: a.asns.into_iter().collect(),
            })
            .collect();
        v.sort_by(|a, b| b.traffic.payload().cmp(&a.traffic.payload()).then_with(|| a.name.cmp(&b.name)));
        v
    };
    AppServices {
        app: app.to_owned(),
        named,
        unnamed,
        unnamed_share_pct: share(unnamed.payload(), total),
        domains: finish(domains, false),
        hostnames: finish(hosts, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(app: &str, host: Option<&str>, source: &str, country: &str, asn: u32, tx: u64, rx: u64) -> ServiceRow {
        ServiceRow {
            app: app.into(),
            hostname: host.map(Into::into),
            registrable_domain: host.and_then(crate::names::domain::registrable),
            name_source: host.map(|_| crate::variant::parse(source).expect("a name source")),
            country: Some(country.into()),
            asn: Some(asn),
            as_org: Some(format!("org{asn}")),
            payload_tx: tx,
            payload_rx: rx,
            flows: 1,
        }
    }

    #[test]
    fn services_group_hosts_into_domains_with_countries_asns_and_unnamed_share() {
        let rows = [
            row("a", None, "", "US", 1, 100, 100),
            row("a", Some("api.svc.test"), "sni", "US", 1, 300, 100),
            row("a", Some("api.svc.test"), "dns", "DE", 2, 50, 50),
            row("a", Some("cdn.svc.test"), "dns", "US", 1, 200, 0),
            row("b", Some("x.other.test"), "quic_sni", "US", 1, 1, 1),
        ];
        let out = build(&rows, &["b", "a", "missing"]);
        assert_eq!(out.iter().map(|s| s.app.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        let a = &out[1];
        assert_eq!((a.named.payload(), a.unnamed.payload(), a.unnamed_share_pct), (700, 200, 22.22));
        assert_eq!(a.domains.len(), 1);
        assert_eq!((a.domains[0].name.as_str(), a.domains[0].traffic.payload()), ("svc.test", 700));
        let api = &a.hostnames[0];
        assert_eq!((api.name.as_str(), api.traffic.payload_tx, api.traffic.payload_rx), ("api.svc.test", 350, 150));
        assert_eq!(api.sources, ["dns", "sni"]);
        assert_eq!(api.countries, ["DE", "US"]);
        assert_eq!(api.asns.iter().map(|x| x.asn).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(api.registrable_domain.as_deref(), Some("svc.test"));
        assert_eq!(a.hostnames[1].name, "cdn.svc.test");
    }
}
