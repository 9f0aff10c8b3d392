//! The emulator join (issue 12): a guest's per-package flows (the journal of a monitor inside an
//! Android emulator, pulled with `cargo xtask android pull`) matched with the host's flows of
//! the emulator processes (`android-emulator:*` apps), so the host confirms, per package, the
//! bytes and destination the guest reported.
//!
//! Matching: a guest flow and a host flow are candidates when protocol, remote address and remote
//! port are equal and their times overlap once the guest's `[first_seen, last_seen]` is widened
//! by the clock-skew tolerance on both sides. Candidates are taken greedily, closest first (the
//! smallest sum of the differences of first and last seen; ties by guest, then host order); each
//! flow of either side is matched at most once. The emulator's user-mode network (slirp)
//! re-originates each guest TCP stream and UDP socket as one host socket, so the payload of a
//! matched pair is equal; pairs that differ are listed. Only outbound flows are joined (an
//! inbound guest flow arrives through a port forward and has no common remote address), and guest
//! flows to addresses slirp answers itself (its DNS, the `10.0.2.2` host alias) stay unmatched.
//!
//! Reads both journals; writes nothing.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::journal::{self, FlowApps, FlowRow, JournalReader, TimeRange};

/// Name prefix of the apps an emulator's flows are charged to (see `identity::emulator`).
pub const EMULATOR_APP_PREFIX: &str = "android-emulator:";

/// Default clock-skew tolerance between guest and host (seconds).
pub const DEFAULT_SKEW_SECS: u64 = 120;

/// The join of a guest journal with the host's emulator flows over the report's period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorJoin {
    /// The guest journal, as given.
    pub guest_journal: String,
    /// Clock-skew tolerance applied to guest times (seconds, each side).
    pub skew_tolerance_secs: u64,
    /// Host apps of emulator processes with outbound flows in the period, sorted.
    pub emulators: Vec<String>,
    /// One entry per guest app, by guest payload (up + down) descending, then app name.
    pub packages: Vec<JoinedPackage>,
    /// Host emulator flows no guest flow explains, per (emulator, protocol, address, port),
    /// sorted by emulator, address, port, protocol.
    pub unexplained: Vec<UnexplainedTraffic>,
}

/// Payload bytes and flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowBytes {
    /// Payload bytes sent (up).
    pub payload_tx: u64,
    /// Payload bytes received (down).
    pub payload_rx: u64,
    /// Flows (sockets).
    pub flows: u64,
}

impl FlowBytes {
    fn add(&mut self, f: &FlowRow) {
        self.payload_tx += f.payload_tx;
        self.payload_rx += f.payload_rx;
        self.flows += 1;
    }
}

/// One guest app (package) and what the host confirms of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedPackage {
    /// Guest app name (the package by default).
    pub app: String,
    /// Android package, when the guest journal has one.
    pub package: Option<String>,
    /// Everything the guest recorded (outbound flows of the period).
    pub guest: FlowBytes,
    /// Guest flows matched to a host flow: their guest figures.
    pub matched: FlowBytes,
    /// The matched host flows' payload: the bytes the host confirms.
    pub confirmed: FlowBytes,
    /// Guest flows no host flow matched.
    pub unmatched: FlowBytes,
    /// Per destination (sorted by address, port, protocol).
    pub endpoints: Vec<JoinedEndpoint>,
    /// Matched pairs whose payload differs (in guest first-seen order).
    pub differences: Vec<PairDifference>,
}

/// One destination of a guest app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinedEndpoint {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Remote address.
    pub ip: String,
    /// Remote port.
    pub port: u16,
    /// Guest figures.
    pub guest: FlowBytes,
    /// Host figures of the matched host flows.
    pub confirmed: FlowBytes,
    /// Guest flows left unmatched.
    pub unmatched_flows: u64,
}

/// A matched pair whose payload differs between guest and host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairDifference {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Remote address.
    pub ip: String,
    /// Remote port.
    pub port: u16,
    /// Host app (emulator).
    pub emulator: String,
    /// Guest payload sent.
    pub guest_tx: u64,
    /// Guest payload received.
    pub guest_rx: u64,
    /// Host payload sent.
    pub host_tx: u64,
    /// Host payload received.
    pub host_rx: u64,
}

/// Host emulator traffic to one destination that no guest flow explains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnexplainedTraffic {
    /// Host app (emulator).
    pub emulator: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Remote address.
    pub ip: String,
    /// Remote port.
    pub port: u16,
    /// Host figures.
    pub host: FlowBytes,
}

impl EmulatorJoin {
    /// Joins the guest journal's outbound flows in `range` with the host journal's emulator
    /// flows in `range`.
    ///
    /// # Errors
    /// When either journal cannot be read.
    pub fn build(
        guest: &JournalReader,
        host: &JournalReader,
        range: TimeRange,
        skew_tolerance_secs: u64,
    ) -> Result<Self, journal::Error> {
        let guest_flows = guest.outbound_flows(range, FlowApps::All)?;
        let host_flows = host.outbound_flows(range, FlowApps::Prefix(EMULATOR_APP_PREFIX))?;
        Ok(join(guest.path().display().to_string(), &guest_flows, &host_flows, skew_tolerance_secs))
    }
}

type Key<'a> = (&'a str, &'a str, u16);
/// A guest app: name and package.
type AppId<'a> = (&'a str, Option<&'a str>);
/// A destination within an app: address, port, protocol (the sort order of `endpoints`).
type EndpointId<'a> = (&'a str, u16, &'a str);

fn key(f: &FlowRow) -> Key<'_> {
    (f.protocol.as_str(), f.ip.as_str(), f.port)
}

/// Pairs guest and host flows (indices), greedily, closest in time first.
fn pairs(guest: &[FlowRow], host: &[FlowRow], tolerance_ms: i64) -> Vec<Option<usize>> {
    let mut by_key: HashMap<Key<'_>, Vec<usize>> = HashMap::new();
    for (i, h) in host.iter().enumerate() {
        by_key.entry(key(h)).or_default().push(i);
    }
    let mut candidates = Vec::new();
    for (gi, g) in guest.iter().enumerate() {
        let (gf, gl) = (g.first_seen.as_millisecond(), g.last_seen.as_millisecond());
        for &hi in by_key.get(&key(g)).into_iter().flatten() {
            let (hf, hl) = (host[hi].first_seen.as_millisecond(), host[hi].last_seen.as_millisecond());
            if hf <= gl.saturating_add(tolerance_ms) && hl >= gf.saturating_sub(tolerance_ms) {
                let distance = gf.abs_diff(hf).saturating_add(gl.abs_diff(hl));
                candidates.push((distance, gi, hi));
            }
        }
    }
    candidates.sort_unstable();
    let mut guest_match = vec![None; guest.len()];
    let mut host_taken = vec![false; host.len()];
    for (_, gi, hi) in candidates {
        if guest_match[gi].is_none() && !host_taken[hi] {
            guest_match[gi] = Some(hi);
            host_taken[hi] = true;
        }
    }
    guest_match
}

/// The join of `guest` with `host` (host flows: emulator apps only) at `skew_tolerance_secs`.
pub(crate) fn join(
    guest_journal: String,
    guest: &[FlowRow],
    host: &[FlowRow],
    skew_tolerance_secs: u64,
) -> EmulatorJoin {
    let tolerance_ms = i64::try_from(skew_tolerance_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let matches = pairs(guest, host, tolerance_ms);
    let mut packages: BTreeMap<AppId<'_>, JoinedPackage> = BTreeMap::new();
    let mut endpoints: BTreeMap<AppId<'_>, BTreeMap<EndpointId<'_>, JoinedEndpoint>> = BTreeMap::new();
    let mut host_taken = vec![false; host.len()];
    for (g, matched) in guest.iter().zip(&matches) {
        let id = (g.app.as_str(), g.package.as_deref());
        let p = packages.entry(id).or_insert_with(|| JoinedPackage {
            app: g.app.clone(),
            package: g.package.clone(),
            guest: FlowBytes::default(),
            matched: FlowBytes::default(),
            confirmed: FlowBytes::default(),
            unmatched: FlowBytes::default(),
            endpoints: Vec::new(),
            differences: Vec::new(),
        });
        let e =
            endpoints.entry(id).or_default().entry((g.ip.as_str(), g.port, g.protocol.as_str())).or_insert_with(|| {
                JoinedEndpoint {
                    protocol: g.protocol.clone(),
                    ip: g.ip.clone(),
                    port: g.port,
                    guest: FlowBytes::default(),
                    confirmed: FlowBytes::default(),
                    unmatched_flows: 0,
                }
            });
        p.guest.add(g);
        e.guest.add(g);
        let Some(hi) = *matched else {
            p.unmatched.add(g);
            e.unmatched_flows += 1;
            continue;
        };
        let h = &host[hi];
        host_taken[hi] = true;
        p.matched.add(g);
        p.confirmed.add(h);
        e.confirmed.add(h);
        if (g.payload_tx, g.payload_rx) != (h.payload_tx, h.payload_rx) {
            p.differences.push(PairDifference {
                protocol: g.protocol.clone(),
                ip: g.ip.clone(),
                port: g.port,
                emulator: h.app.clone(),
                guest_tx: g.payload_tx,
                guest_rx: g.payload_rx,
                host_tx: h.payload_tx,
                host_rx: h.payload_rx,
            });
        }
    }
    let mut packages: Vec<JoinedPackage> = packages
        .into_iter()
        .map(|(id, mut p)| {
            p.endpoints = endpoints.remove(&id).unwrap_or_default().into_values().collect();
            p
        })
        .collect();
    packages.sort_by(|a, b| {
        let total = |p: &JoinedPackage| p.guest.payload_tx + p.guest.payload_rx;
        total(b).cmp(&total(a)).then_with(|| a.app.cmp(&b.app)).then_with(|| a.package.cmp(&b.package))
    });
    let mut unexplained: BTreeMap<(&str, &str, u16, &str), UnexplainedTraffic> = BTreeMap::new();
    for (h, _) in host.iter().zip(&host_taken).filter(|(_, taken)| !**taken) {
        unexplained
            .entry((h.app.as_str(), h.ip.as_str(), h.port, h.protocol.as_str()))
            .or_insert_with(|| UnexplainedTraffic {
                emulator: h.app.clone(),
                protocol: h.protocol.clone(),
                ip: h.ip.clone(),
                port: h.port,
                host: FlowBytes::default(),
            })
            .host
            .add(h);
    }
    let mut emulators: Vec<String> = host.iter().map(|h| h.app.clone()).collect();
    emulators.sort();
    emulators.dedup();
    EmulatorJoin {
        guest_journal,
        skew_tolerance_secs,
        emulators,
        packages,
        unexplained: unexplained.into_values().collect(),
    }
}
