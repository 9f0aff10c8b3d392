//! Builders of records, apps and destinations with known numbers (shared with report tests).

use std::{net::SocketAddr, sync::Arc};

use jiff::Timestamp;

use crate::{
    enrich::{DbRef, Destination, Scope},
    identity::{App, AppSource},
    tracker::{
        FlowRecord,
        record::{Direction, Owner, OwnerSource, Payload, PayloadSource, Protocol, RecordKind, Wire},
    },
};

/// IP + TCP header bytes added to every packet of a fixture flow.
pub(crate) const HEADER: u64 = 40;
/// `build_epoch` of the fixture country database (2026-06-01T00:00:00Z).
pub(crate) const COUNTRY_BUILD: u64 = 1_780_272_000;
/// `build_epoch` of the fixture ASN database (2026-06-17T00:00:00Z).
pub(crate) const ASN_BUILD: u64 = 1_781_654_400;

/// Unix seconds to a timestamp.
pub(crate) fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("valid fixture time")
}

/// An app as /proc would describe it.
pub(crate) fn app(name: &str) -> Arc<App> {
    Arc::new(App {
        name: name.to_string(),
        exe: Some(format!("/usr/bin/{name}")),
        cmdline: Some(format!("{name} --flag")),
        pid: 4242,
        start_time: 77,
        uid: 1000,
        user: Some("alice".into()),
        unit: Some(format!("{name}.service")),
        cgroup: Some(format!("/system.slice/{name}.service")),
        container: None,
        source: AppSource::Proc,
        android: None,
    })
}

/// A public destination answered by the default-like fixture databases.
pub(crate) fn public(country: Option<&str>, asn: Option<u32>, as_org: Option<&str>) -> Destination {
    Destination {
        scope: Scope::Public,
        country: country.map(Into::into),
        asn,
        as_org: as_org.map(Into::into),
        country_db: country.map(|_| DbRef { database_type: "country ipvAll".into(), build_epoch: COUNTRY_BUILD }),
        asn_db: asn.map(|_| DbRef { database_type: "ip-location-db-ASN".into(), build_epoch: ASN_BUILD }),
        answers: Default::default(),
        consensus: None,
    }
}

/// [`public`] with a second country database's answer (`registry`): the answers and verdict
/// the enricher gives with two country databases.
pub(crate) fn public_with_answers(country: &str, registry: Option<&str>) -> Destination {
    use crate::enrich::{
        CountryAnswer,
        consensus::{PRIMARY_LABEL, REGISTRY_LABEL, verdict},
    };
    let mut d = public(Some(country), Some(64_500), Some("Example Org"));
    let db = |t: &str, build_epoch: u64| DbRef { database_type: t.into(), build_epoch };
    d.answers = vec![
        CountryAnswer {
            label: PRIMARY_LABEL.into(),
            db: db("country ipvAll", COUNTRY_BUILD),
            country: Some(country.into()),
        },
        CountryAnswer {
            label: REGISTRY_LABEL.into(),
            db: db("geo-whois", ASN_BUILD),
            country: registry.map(Into::into),
        },
    ]
    .into();
    d.consensus = verdict(&d.answers);
    d
}

/// A destination of a non-public scope (never looked up).
pub(crate) fn scoped(scope: Scope) -> Destination {
    Destination {
        scope,
        country: None,
        asn: None,
        as_org: None,
        country_db: None,
        asn_db: None,
        answers: Default::default(),
        consensus: None,
    }
}

/// One simulated flow: keeps cumulative totals so records carry consistent totals and deltas.
pub(crate) struct Flow {
    pub cookie: u64,
    pub remote: SocketAddr,
    pub direction: Direction,
    pub first_seen: Timestamp,
    payload: Payload,
    wire: Wire,
}

impl Flow {
    /// A new outbound TCP flow to `remote`.
    pub(crate) fn new(cookie: u64, remote: &str, first_seen: Timestamp) -> Self {
        Self {
            cookie,
            remote: remote.parse().expect("fixture address"),
            direction: Direction::Outbound,
            first_seen,
            payload: Payload::default(),
            wire: Wire::default(),
        }
    }

    /// The next record: `tx`/`rx` payload bytes since the previous one, one packet each way that
    /// moved bytes (wire = payload + [`HEADER`] per packet).
    pub(crate) fn record(&mut self, event: RecordKind, last_seen: Timestamp, tx: u64, rx: u64) -> FlowRecord {
        let delta_payload = Payload { tx_bytes: tx, rx_bytes: rx };
        let (tx_packets, rx_packets) = (u64::from(tx > 0), u64::from(rx > 0));
        let delta_wire =
            Wire { tx_bytes: tx + HEADER * tx_packets, tx_packets, rx_bytes: rx + HEADER * rx_packets, rx_packets };
        self.payload.tx_bytes += tx;
        self.payload.rx_bytes += rx;
        self.wire.tx_bytes += delta_wire.tx_bytes;
        self.wire.rx_bytes += delta_wire.rx_bytes;
        self.wire.tx_packets += tx_packets;
        self.wire.rx_packets += rx_packets;
        FlowRecord {
            event,
            cookie: self.cookie,
            owner: Owner {
                tgid: 4242,
                pid: 4243,
                uid: 1000,
                gid: 1000,
                comm: "fixture".into(),
                cgroup_id: 9,
                source: OwnerSource::SockCreate,
                start_cs: 0,
                exec_mark: 0,
            },
            protocol: Protocol::Tcp,
            ip_protocol: 6,
            direction: self.direction,
            local: Some("10.0.0.2:50000".parse().expect("fixture address")),
            remote: Some(self.remote),
            payload: self.payload,
            payload_source: PayloadSource::Syscall,
            payload_sources: Default::default(),
            wire: self.wire,
            delta_payload,
            delta_wire,
            first_seen: self.first_seen,
            last_seen,
            closed: (event == RecordKind::Close).then_some(last_seen),
            complete: true,
            rtt: None,
            final_of_socket: false,
            release: Default::default(),
            resumed: false,
        }
    }
}

/// xorshift64: the same "random" journal on every run (seed: any non-zero value).
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
