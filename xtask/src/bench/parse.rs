//! Reading what the observers recorded: the monitor's journal (its `connections` and `stats`
//! tables, as README.md describes them), nethogs' trace mode and bandwhich's raw mode.

use std::{collections::HashMap, path::Path};

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
    /// Records the journal dropped from a full buffer (its `losses` table).
    pub journal_lost_records: u64,
    /// Whether the line was present (the monitor reached its end of run).
    pub present: bool,
}

impl FinalStats {
    /// Nothing lost: no lost events, every event received and decoded.
    pub fn lossless(&self) -> bool {
        self.present
            && self.events_lost == 0
            && self.journal_lost_records == 0
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

/// Reads a monitor's journal (read-only): every `connections` row in the order written, and the
/// `stats` rows (increments, summed; `open_flows` is a gauge).
pub fn monitor(journal: &Path) -> anyhow::Result<MonitorRun> {
    let db = rusqlite::Connection::open_with_flags(journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("cannot open the monitor's journal {}", journal.display()))?;
    let mut index: HashMap<(u64, Option<String>, Option<String>), usize> = HashMap::new();
    let mut flows: Vec<Flow> = Vec::new();
    let mut stmt = db.prepare(
        "SELECT event, cookie, owner_tgid, protocol, direction, local_ip, local_port, remote_ip, remote_port,
                payload_tx, payload_rx
         FROM connections ORDER BY id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let addr = |ip: Option<String>, port: Option<u16>| -> Option<String> {
            let ip: std::net::IpAddr = ip?.parse().ok()?;
            Some(std::net::SocketAddr::new(ip, port.unwrap_or(0)).to_string())
        };
        let flow = Flow {
            event: row.get(0)?,
            cookie: row.get::<_, i64>(1)?.cast_unsigned(),
            owner: FlowOwner { tgid: row.get(2)? },
            protocol: row.get(3)?,
            direction: row.get(4)?,
            local: addr(row.get(5)?, row.get(6)?),
            remote: addr(row.get(7)?, row.get(8)?),
            payload: FlowPayload { tx_bytes: row.get(9)?, rx_bytes: row.get(10)? },
        };
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
    }
    let journal_lost_records: u64 = db
        .query_row("SELECT COALESCE(SUM(records), 0) FROM losses", [], |r| r.get(0))
        .with_context(|| format!("losses in {}", journal.display()))?;
    let (stats, peak_open_flows) = db
        .query_row(
            "SELECT COALESCE(SUM(events_submitted), 0), COALESCE(SUM(events_lost), 0),
                    COALESCE(SUM(events_received), 0), COALESCE(SUM(decode_errors), 0),
                    COALESCE(SUM(storage_failures), 0), COALESCE(SUM(incomplete_flows), 0),
                    COALESCE(MAX(last), 0), COALESCE(MAX(open_flows), 0)
             FROM stats",
            [],
            |r| {
                Ok((
                    FinalStats {
                        events_submitted: r.get(0)?,
                        events_lost: r.get(1)?,
                        events_received: r.get(2)?,
                        decode_errors: r.get(3)?,
                        storage_failures: r.get(4)?,
                        incomplete_flows: r.get(5)?,
                        journal_lost_records,
                        present: r.get::<_, i64>(6)? != 0,
                    },
                    r.get(7)?,
                ))
            },
        )
        .with_context(|| format!("statistics in {}", journal.display()))?;
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
