//! Reading what the observers printed: the monitor's JSON lines (schema in README.md), nethogs'
//! trace mode and bandwhich's raw mode.

use std::{
    collections::HashMap,
    fs::File,
    io::{BufRead as _, BufReader},
    path::Path,
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The fields of a monitor `flow` record the benchmarks check.
#[derive(Debug, Clone, Deserialize)]
pub struct Flow {
    /// `close`, `update` or `shutdown`.
    pub event: String,
    /// Socket cookie.
    pub cookie: u64,
    /// Owning process.
    pub owner: FlowOwner,
    /// `tcp` / `udp`.
    pub protocol: String,
    /// `outbound`, `inbound`, `unconnected`, ...
    pub direction: String,
    /// "addr:port".
    pub local: Option<String>,
    /// "addr:port".
    pub remote: Option<String>,
    /// Application bytes.
    pub payload: FlowPayload,
}

/// `owner` of a flow record.
#[derive(Debug, Clone, Deserialize)]
pub struct FlowOwner {
    /// Process id.
    pub tgid: u32,
}

/// `payload` of a flow record.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct FlowPayload {
    /// Sent.
    pub tx_bytes: u64,
    /// Received.
    pub rx_bytes: u64,
}

impl Flow {
    /// Port of "addr:port".
    pub fn port(addr: Option<&String>) -> Option<u16> {
        addr?.rsplit_once(':')?.1.parse().ok()
    }
}

/// The final `stats` line (`"last": true`), kept as JSON for the results file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FinalStats {
    /// `kernel.events_submitted`.
    pub events_submitted: u64,
    /// `kernel.events_lost`.
    pub events_lost: u64,
    /// `events_received`.
    pub events_received: u64,
    /// `decode_errors`.
    pub decode_errors: u64,
    /// `kernel.storage_failures`.
    pub storage_failures: u64,
    /// `tracker.incomplete_flows`.
    pub incomplete_flows: u64,
    /// Whether the line was present (the monitor reached its end of run).
    pub present: bool,
}

impl FinalStats {
    /// Nothing lost: no lost events, every event received and decoded.
    pub fn lossless(&self) -> bool {
        self.present
            && self.events_lost == 0
            && self.events_submitted == self.events_received
            && self.decode_errors == 0
    }
}

/// Everything the monitor printed in one run: the last record of each flow, and the final stats.
pub struct MonitorRun {
    /// Last record of each flow (cookie, local, remote), in first-seen order.
    pub flows: Vec<Flow>,
    /// Final statistics.
    pub stats: FinalStats,
    /// Largest `tracker.open_flows` of the periodic statistics lines.
    pub peak_open_flows: u64,
}

/// Reads a monitor's stdout.
pub fn monitor(path: &Path) -> anyhow::Result<MonitorRun> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut index: HashMap<(u64, Option<String>, Option<String>), usize> = HashMap::new();
    let mut flows: Vec<Flow> = Vec::new();
    let mut stats = FinalStats::default();
    let mut peak_open_flows = 0;
    for line in BufReader::new(file).lines() {
        let line = line?;
        if line.contains("\"type\":\"flow\"") {
            let flow: Flow = serde_json::from_str(&line).with_context(|| format!("unexpected flow record: {line}"))?;
            let key = (flow.cookie, flow.local.clone(), flow.remote.clone());
            // Records of one flow are cumulative (updates, then close): keep the last. A record
            // after a `close` of the same key is a new flow (a peer of an unconnected UDP socket
            // whose slot was flushed, coming back).
            match index.get(&key) {
                Some(&i) if flows[i].event != "close" => flows[i] = flow,
                _ => {
                    index.insert(key, flows.len());
                    flows.push(flow);
                }
            }
        } else if line.contains("\"type\":\"stats\"") {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            let k = &v["kernel"];
            let n = |x: &serde_json::Value| x.as_u64().unwrap_or(0);
            peak_open_flows = peak_open_flows.max(n(&v["tracker"]["open_flows"]));
            stats = FinalStats {
                events_submitted: n(&k["events_submitted"]),
                events_lost: n(&k["events_lost"]),
                events_received: n(&v["events_received"]),
                decode_errors: n(&v["decode_errors"]),
                storage_failures: n(&k["storage_failures"]),
                incomplete_flows: n(&v["tracker"]["incomplete_flows"]),
                present: v["last"].as_bool().unwrap_or(false),
            };
        }
    }
    Ok(MonitorRun { flows, stats, peak_open_flows })
}

/// One process row of a peer: name, pid when shown, cumulative bytes sent and received.
#[derive(Debug, Clone, Serialize)]
pub struct PeerProcess {
    /// Program name (nethogs: path; bandwhich: comm).
    pub name: String,
    /// Process id (nethogs only; 0 for its "unknown" rows).
    pub pid: Option<u32>,
    /// Bytes sent.
    pub sent: f64,
    /// Bytes received.
    pub received: f64,
}

/// A connection row of bandwhich: (local port, remote port, protocol, process name).
pub type PeerConnection = (u16, u16, String, String);

/// What a peer printed: per-process totals and (bandwhich) the connections it listed.
#[derive(Debug, Default)]
pub struct PeerRun {
    /// Largest cumulative figures seen per process.
    pub processes: Vec<PeerProcess>,
    /// Every connection listed at least once.
    pub connections: Vec<PeerConnection>,
}

fn keep_max(
    map: &mut HashMap<(String, Option<u32>), (f64, f64)>,
    key: (String, Option<u32>),
    sent: f64,
    received: f64,
) {
    let e = map.entry(key).or_insert((0.0, 0.0));
    e.0 = e.0.max(sent);
    e.1 = e.1.max(received);
}

fn finish(map: HashMap<(String, Option<u32>), (f64, f64)>, connections: Vec<PeerConnection>) -> PeerRun {
    let processes =
        map.into_iter().map(|((name, pid), (sent, received))| PeerProcess { name, pid, sent, received }).collect();
    PeerRun { processes, connections }
}

/// Reads `nethogs -t -v 2` output: after each "Refreshing:", lines `name/pid/uid<TAB>sent<TAB>received`
/// with cumulative bytes.
pub fn nethogs(path: &Path) -> anyhow::Result<PeerRun> {
    let text = std::fs::read_to_string(path)?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let mut cols = line.split('\t');
        let (Some(who), Some(sent), Some(received)) = (cols.next(), cols.next(), cols.next()) else { continue };
        let (Ok(sent), Ok(received)) = (sent.trim().parse::<f64>(), received.trim().parse::<f64>()) else { continue };
        let mut parts = who.rsplitn(3, '/');
        let (_uid, pid, name) = (parts.next(), parts.next(), parts.next());
        let pid = pid.and_then(|p| p.parse().ok());
        keep_max(&mut map, (name.unwrap_or(who).to_owned(), pid), sent, received);
    }
    Ok(finish(map, Vec::new()))
}

/// Reads `bandwhich --raw --total-utilization` output: per refresh, `process: <ts> "name" up/down
/// Bps: U/D connections: N` (one line per process, names may repeat) and `connection: <ts>
/// <dev>:LPORT => ADDR:RPORT (proto) up/down Bps: U/D process: "name"`.
pub fn bandwhich(path: &Path) -> anyhow::Result<PeerRun> {
    let text = std::fs::read_to_string(path)?;
    let mut map = HashMap::new();
    let mut refresh: HashMap<String, (f64, f64)> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    let flush = |refresh: &mut HashMap<String, (f64, f64)>, map: &mut HashMap<_, _>| {
        for (name, (u, d)) in refresh.drain() {
            keep_max(map, (name, None), u, d);
        }
    };
    for line in text.lines() {
        if line.starts_with("Refreshing:") {
            flush(&mut refresh, &mut map);
        } else if let Some(rest) = line.strip_prefix("process: ") {
            let name = quoted(rest).unwrap_or_default();
            if let Some((u, d)) = up_down(rest) {
                let e = refresh.entry(name).or_insert((0.0, 0.0));
                e.0 += u;
                e.1 += d;
            }
        } else if let Some(rest) = line.strip_prefix("connection: ") {
            // "<ts> <dev>:LPORT => ADDR:RPORT (proto) up/down Bps: U/D process: "name""
            let words: Vec<&str> = rest.split_whitespace().collect();
            let lport = words.get(1).and_then(|w| w.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
            let rport = words.get(3).and_then(|w| w.rsplit_once(':')).and_then(|(_, p)| p.parse().ok());
            let proto = words.get(4).map(|p| p.trim_matches(|c| c == '(' || c == ')').to_owned());
            let name = rest.rsplit_once("process: ").and_then(|(_, n)| quoted(n));
            if let (Some(l), Some(r), Some(p), Some(n)) = (lport, rport, proto, name) {
                seen.insert((l, r, p, n));
            }
        }
    }
    flush(&mut refresh, &mut map);
    Ok(finish(map, seen.into_iter().collect()))
}

fn quoted(s: &str) -> Option<String> {
    let start = s.find('"')? + 1;
    let end = start + s[start..].find('"')?;
    Some(s[start..end].to_owned())
}

fn up_down(s: &str) -> Option<(f64, f64)> {
    let after = s.split_once("Bps: ")?.1;
    let pair = after.split_whitespace().next()?;
    let (u, d) = pair.split_once('/')?;
    Some((u.parse().ok()?, d.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwhich_raw_lines() {
        let dir = std::env::temp_dir().join(format!("bw-test-{}", std::process::id()));
        let text = "Refreshing:\nprocess: <1> \"iperf3\" up/down Bps: 10/5 connections: 2\n\
                    process: <1> \"iperf3\" up/down Bps: 1/1 connections: 2\n\
                    connection: <1> <lo>:54838 => 127.0.0.1:5999 (tcp) up/down Bps: 9/0 process: \"iperf3\"\n\
                    Refreshing:\nprocess: <2> \"iperf3\" up/down Bps: 20/6 connections: 0\n";
        std::fs::write(&dir, text).unwrap();
        let run = bandwhich(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        assert_eq!(run.processes.len(), 1);
        assert_eq!((run.processes[0].sent, run.processes[0].received), (20.0, 6.0));
        assert_eq!(run.connections, vec![(54838, 5999, "tcp".to_owned(), "iperf3".to_owned())]);
    }

    #[test]
    fn nethogs_trace_lines() {
        let dir = std::env::temp_dir().join(format!("nh-test-{}", std::process::id()));
        let text = "Refreshing:\n/usr/bin/iperf3/42/0\t100\t7\nunknown TCP/0/0\t5\t0\nRefreshing:\n/usr/bin/iperf3/42/0\t300\t9\n";
        std::fs::write(&dir, text).unwrap();
        let mut run = nethogs(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        run.processes.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(run.processes[0].name, "/usr/bin/iperf3");
        assert_eq!((run.processes[0].pid, run.processes[0].sent), (Some(42), 300.0));
        assert_eq!((run.processes[1].name.as_str(), run.processes[1].pid), ("unknown TCP", Some(0)));
    }
}
