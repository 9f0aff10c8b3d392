//! Benchmark 2, connection churn: short exchanges (see `load`) from 4 processes × 2 threads in namespace
//! `a` to a server in `b`, as fast as the machine goes, over TCP and then UDP, with each observer.
//! Clients and server are in the watched cgroup, so the monitor records both ends.
//!
//! Completeness (monitor): every exchange in the clients' ground-truth logs must have a flow
//! record on the client side (`outbound`, matched by local and remote port) with the client's
//! tgid and payload exactly as logged (1024/1024), and one on the server side (`inbound`: an
//! accepted TCP connection, or a UDP peer that sent first; for UDP also `unconnected`, the answer
//! of an exchange split in two records). Ports are reused across 100,000 exchanges, so records are
//! counted per port pair and process (a multiset), never "any record with that port".

use std::{
    collections::HashMap,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{
    Ctx, budget,
    env::{ADDR_A, ADDR_B, DEV_A, Place, Proc},
    load::{EXCHANGE_BYTES, Proto},
    observer::{self, Cost, Observer, Target},
    output::{Row, Section},
    parse::{self, FinalStats},
    procstat::{MachineLoad, MachineTicks},
    stats::{Summary, alternate, bracketing_baseline, paired_ratios, show, steal_adjusted},
};

/// First server port; [`PORTS`] consecutive ports.
pub const SERVER_PORT: u16 = 7000;
const PORTS: u16 = 4;
/// Issue 8's goal for the churn rate with the monitor, relative to the rate without.
const RATE_GOAL: f64 = 0.85;
/// Issue 8's goal for the daemon's CPU time per flow record, in µs.
const DAEMON_GOAL_US: f64 = 3.0;
/// Client worker processes.
pub const PROCS: usize = 4;
const THREADS: usize = 2;

/// One exchange from a client's log.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    pid: u32,
    local_port: u16,
    remote_port: u16,
    tx: u64,
    rx: u64,
    ok: bool,
}

/// How many expected flows were recorded, with the right owner, with exact payload bytes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Completeness {
    /// Exchanges whose request was sent (the denominator).
    pub expected: u64,
    /// With a record for the same port pair.
    pub recorded: u64,
    /// ... whose owner tgid is the load process.
    pub right_process: u64,
    /// ... and whose payload is exactly what the load sent and received (1024/1024).
    pub exact: u64,
}

impl Completeness {
    fn frac(n: u64, d: u64) -> f64 {
        if d == 0 { 1.0 } else { n as f64 / d as f64 }
    }
    /// exact / expected.
    pub fn exact_fraction(&self) -> f64 {
        Self::frac(self.exact, self.expected)
    }
    pub(super) fn show(&self) -> String {
        let p = |n| 100.0 * Self::frac(n, self.expected);
        format!(
            "{:.3} % recorded, {:.3} % right tgid, {:.3} % exact bytes (of {})",
            p(self.recorded),
            p(self.right_process),
            p(self.exact),
            self.expected
        )
    }
}

/// What a peer could attribute.
#[derive(Debug, Clone, Serialize)]
struct PeerCompleteness {
    /// Bytes the peer charged to the load processes ÷ all bytes it counted.
    bytes_attributed: f64,
    /// bandwhich: exchanges whose (local port, remote port) it listed at least once (distinct pairs).
    connections_listed: Option<f64>,
    /// bandwhich: ... listed under the load's process name.
    connections_right_name: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(super) struct Sample {
    pub(super) rate: f64,
    pub(super) ok: u64,
    failed: u64,
    elapsed_s: f64,
    pub(super) cost: Option<Cost>,
    /// The whole machine over the sample.
    pub(super) machine: MachineLoad,
    /// CPU seconds the whole machine was busy from the load's start until the monitor had worked
    /// off its queue (the same span as the monitor's `cost`).
    pub(super) machine_busy_s: f64,
    pub(super) client: Option<Completeness>,
    pub(super) server: Option<Completeness>,
    pub(super) stats: Option<FinalStats>,
    /// The monitor's account of where its CPU went (its closing log line).
    account: Option<budget::Account>,
    peer: Option<PeerCompleteness>,
}

/// Runs the benchmark.
pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("churn");
    let (count, rounds) = if ctx.quick { (5_000, 1) } else { (100_000, 3) };
    let configs = ctx.tools.configs();
    let mut data = serde_json::Map::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        let p = if proto == Proto::Tcp { "tcp" } else { "udp" };
        let results = alternate(&configs, rounds, |o, round| sample(ctx, proto, o, count, round, false));
        let results: Vec<Vec<Option<Sample>>> =
            results.into_iter().map(|v| v.into_iter().map(Result::ok).collect()).collect();
        let rates = |i: usize| -> Vec<Option<f64>> { results[i].iter().map(|s| s.as_ref().map(|s| s.rate)).collect() };
        let base = bracketing_baseline(&rates(0));
        let adjusted = |i: usize| -> Vec<Option<f64>> {
            results[i].iter().map(|s| s.as_ref().map(|s| steal_adjusted(s.rate, s.machine.steal_percent))).collect()
        };
        let base_adj = bracketing_baseline(&adjusted(0));
        let mut per_config = serde_json::Map::new();
        for (i, o) in configs.iter().enumerate() {
            let samples: Vec<&Sample> = results[i].iter().flatten().collect();
            let abs = Summary::of(&rates(i).into_iter().flatten().collect::<Vec<_>>());
            let rel = Summary::of(&paired_ratios(&rates(i), &base));
            let rel_adj = Summary::of(&paired_ratios(&adjusted(i), &base_adj));
            let costs: Vec<&Cost> = samples.iter().filter_map(|s| s.cost.as_ref()).collect();
            let cpu = Summary::of(&costs.iter().map(|c| c.core_percent()).collect::<Vec<_>>());
            let peak = Summary::of(&costs.iter().map(|c| c.peak_rss_kib as f64 / 1024.0).collect::<Vec<_>>());
            let m = format!("{p} churn");
            if *o == Observer::None {
                section.rows.push(Row::info(format!("{m} rate (exchanges/s)"), o.name(), show(abs, 0)));
            } else {
                let metric = format!("{m} rate (relative, raw / steal-adjusted)");
                let value = format!("{} of none ({}/s) / {}", show(rel, 3), show(abs, 0), show(rel_adj, 3));
                section.rows.push(if *o == Observer::Monitor {
                    let ok = rel.is_some_and(|r| r.median >= RATE_GOAL);
                    Row::goal(metric, o.name(), value, &format!("≥ {RATE_GOAL} of none (raw)"), ok)
                } else {
                    Row::info(metric, o.name(), value)
                });
                section.rows.push(Row::info(
                    format!("{m}: CPU % of a core / peak RSS MiB"),
                    o.name(),
                    format!("{} / {}", show(cpu, 1), show(peak, 1)),
                ));
            }
            if *o == Observer::Monitor {
                monitor_rows(&mut section, &m, &samples);
            }
            if matches!(o, Observer::Nethogs | Observer::Bandwhich) {
                peer_rows(&mut section, &m, *o, &samples);
            }
            per_config.insert(
                o.name().into(),
                json!({ "rate": abs, "relative": rel, "relative_steal_adjusted": rel_adj, "cpu_core_percent": cpu, "peak_rss_mib": peak, "samples": results[i] }),
            );
        }
        data.insert(p.into(), serde_json::Value::Object(per_config));
        let runs = |o: Observer| -> Vec<budget::Run> {
            let Some(i) = configs.iter().position(|c| *c == o) else { return Vec::new() };
            results[i].iter().flatten().map(budget_run).collect()
        };
        if let Some(b) = budget::of(&runs(Observer::None), &runs(Observer::Monitor), 2.0, DAEMON_GOAL_US, RATE_GOAL) {
            section.notes.push(b.note(p, 2.0, DAEMON_GOAL_US, RATE_GOAL));
            let accounts: Vec<budget::Account> = configs
                .iter()
                .position(|c| *c == Observer::Monitor)
                .map(|i| results[i].iter().flatten().filter_map(|s| s.account).collect())
                .unwrap_or_default();
            if let Some(note) = budget::account_note(p, b.daemon_us / 2.0, &accounts, DAEMON_GOAL_US) {
                section.notes.push(note);
            }
        }
    }
    section.data = json!({ "exchanges": count, "rounds": rounds, "client_processes": PROCS, "threads_per_process": THREADS, "protocols": data });
    section.notes.push(format!(
        "{count} exchanges of 1 KiB each way per run, {PROCS} client processes × {THREADS} threads, closed loop (as fast as it goes), \
         {rounds} round(s); client, server, observer and softirq share the 2 cores"
    ));
    section.notes.push(
        "peers aggregate per process: nethogs shows pid but no ports (figure: bytes charged to the load pids); bandwhich lists \
         connections by port and process name, no pid (figures: distinct port pairs listed, with the load's name)"
            .into(),
    );
    Ok(section)
}

/// A run's figures for the ratio's budget ([`budget`]).
fn budget_run(s: &Sample) -> budget::Run {
    budget::Run {
        exchanges: s.ok,
        machine_busy_s: s.machine_busy_s,
        load_busy_cores: s.machine.busy_percent / 100.0 * budget::cores(),
        daemon_cpu_s: s.cost.as_ref().map(|c| c.cpu.total()),
    }
}

fn monitor_rows(section: &mut Section, m: &str, samples: &[&Sample]) {
    let client: Vec<Completeness> = samples.iter().filter_map(|s| s.client).collect();
    let server: Vec<Completeness> = samples.iter().filter_map(|s| s.server).collect();
    let worst = |v: &[Completeness]| v.iter().copied().min_by(|a, b| a.exact_fraction().total_cmp(&b.exact_fraction()));
    if let Some(c) = worst(&client) {
        let ok = client.iter().all(|c| c.exact == c.expected);
        section.rows.push(Row::goal(
            format!("{m}: recorded, client side (worst run)"),
            "monitor",
            c.show(),
            "100 %",
            ok,
        ));
    }
    if let Some(c) = worst(&server) {
        let ok = server.iter().all(|c| c.exact == c.expected);
        section.rows.push(Row::goal(
            format!("{m}: recorded, server side (worst run)"),
            "monitor",
            c.show(),
            "100 %",
            ok,
        ));
    }
    // Daemon CPU per flow record: CPU time over the load window (and the catch-up after it, see
    // `Running::settle`) ÷ the records that window produced (each exchange recorded on both sides).
    let per_record = Summary::of(
        &samples
            .iter()
            .filter_map(|s| {
                let records = s.client?.recorded + s.server?.recorded;
                let cost = s.cost.as_ref()?;
                (records > 0).then(|| cost.cpu.total() * 1e6 / records as f64)
            })
            .collect::<Vec<_>>(),
    );
    if per_record.is_some() {
        section.rows.push(Row::goal(
            format!("{m}: daemon CPU per flow record (load window)"),
            "monitor",
            format!("{} µs", show(per_record, 1)),
            &format!("≤ {DAEMON_GOAL_US} µs"),
            per_record.is_some_and(|s| s.median <= DAEMON_GOAL_US),
        ));
    }
    let stats: Vec<&FinalStats> = samples.iter().filter_map(|s| s.stats.as_ref()).collect();
    if !stats.is_empty() {
        let lost: u64 = stats.iter().map(|s| s.events_lost).sum();
        let gap: u64 = stats.iter().map(|s| s.events_submitted.abs_diff(s.events_received + s.events_lost)).sum();
        let submitted: u64 = stats.iter().map(|s| s.events_submitted).sum();
        // A socket whose storage the kernel could not allocate goes uncounted: a loss too.
        let storage: u64 = stats.iter().map(|s| s.storage_failures).sum();
        let dropped: u64 = stats.iter().map(|s| s.journal_lost_records).sum();
        let ok = stats.iter().all(|s| s.lossless() && s.storage_failures == 0);
        let rate = Summary::of(&samples.iter().map(|s| s.rate).collect::<Vec<_>>());
        section.rows.push(Row::goal(
            format!("{m}: events lost (all runs)"),
            "monitor",
            format!(
                "{lost} lost of {submitted}; submitted − received − lost = {gap}; storage failures {storage}; \
                 journal dropped {dropped}; at {}/s",
                show(rate, 0)
            ),
            "0 lost, submitted = received, 0 storage failures, 0 dropped",
            ok,
        ));
    }
}

fn peer_rows(section: &mut Section, m: &str, o: Observer, samples: &[&Sample]) {
    let peers: Vec<&PeerCompleteness> = samples.iter().filter_map(|s| s.peer.as_ref()).collect();
    let bytes = Summary::of(&peers.iter().map(|p| 100.0 * p.bytes_attributed).collect::<Vec<_>>());
    let mut value = format!("{} % of bytes on the load's pids", show(bytes, 1));
    if o == Observer::Bandwhich {
        let listed =
            Summary::of(&peers.iter().filter_map(|p| p.connections_listed).map(|x| 100.0 * x).collect::<Vec<_>>());
        let named =
            Summary::of(&peers.iter().filter_map(|p| p.connections_right_name).map(|x| 100.0 * x).collect::<Vec<_>>());
        value = format!(
            "{} % of bytes under the load's name; {} % of port pairs listed, {} % with the load's name",
            show(bytes, 1),
            show(listed, 1),
            show(named, 1)
        );
    }
    section.rows.push(Row::info(format!("{m}: attributed"), o.name(), value));
}

/// One churn run with observer `o`. `old_listener`: the server starts before the observer (its
/// listening sockets are older than the monitor), else after it.
pub(super) fn sample(
    ctx: &Ctx<'_>,
    proto: Proto,
    o: Observer,
    count: usize,
    round: usize,
    old_listener: bool,
) -> anyhow::Result<Sample> {
    let p = if proto == Proto::Tcp { "tcp" } else { "udp" };
    let age = if old_listener { "-old" } else { "" };
    let tag = format!("churn-{p}-{round}-{}{age}", o.name());
    let config = observer::config_from_env();
    let target = Target { cgroup: ctx.cgroup, netns: &ctx.pair.a, device: DEV_A, monitor_config: config.as_deref() };
    let early = if old_listener { Some(start_server(ctx, proto)?) } else { None };
    let running = observer::start(o, target, ctx.tools, &tag)?;
    let (server, server_pid) = match early {
        Some(started) => started,
        None => start_server(ctx, proto)?,
    };
    let log = ctx.tools.work.join(format!("{tag}-truth"));
    let ticks = MachineTicks::now();
    let summary = run_clients(ctx, proto, count, &log)?;
    let machine = ticks.load_since();
    // End the server before the observer: its sockets' release reports everything the kernel
    // still holds for them (e.g. the last unconnected-UDP peers, kept in per-socket slots).
    drop(server);
    // Let the last FIN exchanges and close events arrive, and the monitor work off its queue.
    thread::sleep(Duration::from_millis(500));
    let settled = running.settle(Duration::from_secs(60));
    let machine_busy_s = ticks.busy_seconds_since();
    if settled > Duration::from_secs(1) {
        eprintln!("bench:   the monitor worked off its queue {:.1} s after the load", settled.as_secs_f64());
    }
    let (cost, out) = running.stop()?;
    let truth = read_truth(&log, PROCS)?;
    let ok = summary["ok"].as_u64().unwrap_or(0);
    let elapsed_s = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    let mut s = Sample {
        rate: summary["rate"].as_f64().unwrap_or(0.0),
        ok,
        failed: summary["failed"].as_u64().unwrap_or(0),
        elapsed_s,
        cost,
        machine,
        machine_busy_s,
        client: None,
        server: None,
        stats: None,
        account: None,
        peer: None,
    };
    let pids: Vec<u32> = summary["pids"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p.as_u64()).map(|p| p as u32).collect())
        .unwrap_or_default();
    let mut keep = false;
    match o {
        Observer::None => {}
        Observer::Monitor => {
            let run = parse::monitor(&out)?;
            let (client, server) = monitor_completeness(&run.flows, &truth, proto, server_pid);
            // A miss or an inexact record keeps the monitor's records and log (and the load's
            // truth) for a look.
            keep = client.exact < client.expected || server.exact < server.expected;
            if keep {
                let st = &run.stats;
                eprintln!(
                    "bench:   the run's loss figures: events lost {}, storage failures {}, incomplete flows {}, \
                     records the journal dropped {}",
                    st.events_lost, st.storage_failures, st.incomplete_flows, st.journal_lost_records
                );
            }
            s.client = Some(client);
            s.server = Some(server);
            s.stats = Some(run.stats);
            let log = std::fs::read_to_string(out.with_extension("err")).unwrap_or_default();
            s.account = budget::Account::from_log(&log);
            // Every socket of the run is closed before the monitor stops: the kernel must have
            // reported as many releases as creations.
            if let (Some(created), Some(released)) =
                (final_stat(&log, "sockets_created"), final_stat(&log, "sockets_released"))
                && released < created
            {
                eprintln!(
                    "bench:   the kernel reported {} fewer socket releases than creations ({created} created, \
                     {released} released)",
                    created - released
                );
                keep = true;
            }
            if keep {
                let figure =
                    |key: &str| final_stat(&log, key).map_or_else(|| "not in the log".to_owned(), |v| v.to_string());
                eprintln!(
                    "bench:   sockets other than TCP released without counters: {}; sockets created {}, released {}",
                    figure("released_uncounted"),
                    figure("sockets_created"),
                    figure("sockets_released")
                );
            }
        }
        Observer::Nethogs => {
            let run = parse::nethogs(&out)?;
            let total = run.processes.iter().fold(0.0, |a, p| a + p.sent + p.received);
            let mine = run
                .processes
                .iter()
                .filter(|p| p.pid.is_some_and(|pid| pids.contains(&pid)))
                .fold(0.0, |a, p| a + p.sent + p.received);
            s.peer = Some(PeerCompleteness {
                bytes_attributed: ratio(mine, total),
                connections_listed: None,
                connections_right_name: None,
            });
        }
        Observer::Bandwhich => {
            let run = parse::bandwhich(&out)?;
            let total = run.processes.iter().fold(0.0, |a, p| a + p.sent + p.received);
            let mine =
                run.processes.iter().filter(|p| p.name == "bench-load").fold(0.0, |a, p| a + p.sent + p.received);
            let wanted: std::collections::HashSet<(u16, u16)> =
                truth.iter().filter(|t| t.ok).map(|t| (t.local_port, t.remote_port)).collect();
            let listed: std::collections::HashSet<(u16, u16)> = run
                .connections
                .iter()
                .filter(|c| c.2 == p)
                .map(|c| (c.0, c.1))
                .filter(|k| wanted.contains(k))
                .collect();
            let named: std::collections::HashSet<(u16, u16)> = run
                .connections
                .iter()
                .filter(|c| c.2 == p && c.3 == "bench-load")
                .map(|c| (c.0, c.1))
                .filter(|k| wanted.contains(k))
                .collect();
            let n = wanted.len() as f64;
            s.peer = Some(PeerCompleteness {
                bytes_attributed: ratio(mine, total),
                connections_listed: Some(ratio(listed.len() as f64, n)),
                connections_right_name: Some(ratio(named.len() as f64, n)),
            });
        }
    }
    if keep {
        eprintln!(
            "bench:   kept for the miss: the monitor's records {}, its log {}, the load's truth {}.*",
            out.display(),
            out.with_extension("err").display(),
            log.display()
        );
        return Ok(s);
    }
    observer::discard(&out);
    for i in 0..PROCS {
        observer::discard(&PathBuf::from(format!("{}.{i}", log.display())));
    }
    Ok(s)
}

fn ratio(n: f64, d: f64) -> f64 {
    if d > 0.0 { n / d } else { 0.0 }
}

/// Starts the churn server in namespace `b` and the load cgroup; returns it and its pid.
pub fn start_server(ctx: &Ctx<'_>, proto: Proto) -> anyhow::Result<(Proc, u32)> {
    let mut cmd = Command::new(&ctx.tools.load);
    cmd.args(["bench-load", "server", "--proto", proto_arg(proto), "--listen", &format!("{ADDR_B}:{SERVER_PORT}")])
        .args(["--ports", &PORTS.to_string(), "--threads", &(PROCS * THREADS / 2).max(2).to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut server =
        Proc::spawn("churn server", &mut cmd, Place { netns: Some(&ctx.pair.b), cgroup: Some(ctx.cgroup) })?;
    let mut line = String::new();
    BufReader::new(server.child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let v: serde_json::Value = serde_json::from_str(&line).with_context(|| format!("churn server said {line:?}"))?;
    let pid = v["pid"].as_u64().context("no pid from the churn server")? as u32;
    Ok((server, pid))
}

fn proto_arg(proto: Proto) -> &'static str {
    if proto == Proto::Tcp { "tcp" } else { "udp" }
}

/// Runs `count` exchanges from the client processes; returns their JSON summary.
pub fn run_clients(ctx: &Ctx<'_>, proto: Proto, count: usize, log: &Path) -> anyhow::Result<serde_json::Value> {
    let mut cmd = Command::new(&ctx.tools.load);
    cmd.args(["bench-load", "client", "--proto", proto_arg(proto), "--local", ADDR_A])
        .args(["--server", &format!("{ADDR_B}:{SERVER_PORT}"), "--ports", &PORTS.to_string()])
        .args(["--count", &count.to_string(), "--procs", &PROCS.to_string(), "--threads", &THREADS.to_string()])
        .arg("--log")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    let mut client =
        Proc::spawn("churn client", &mut cmd, Place { netns: Some(&ctx.pair.a), cgroup: Some(ctx.cgroup) })?;
    let mut text = String::new();
    client.child.stdout.take().context("client stdout")?.read_to_string(&mut text)?;
    let finished = client.wait_timeout(Duration::from_secs(10))?;
    anyhow::ensure!(finished, "churn client failed; it said {text:?}");
    serde_json::from_str(text.trim()).with_context(|| format!("churn client said {text:?}"))
}

/// Reads the ground-truth logs `<log>.0` … `<log>.<procs-1>`.
pub fn read_truth(log: &Path, procs: usize) -> anyhow::Result<Vec<Truth>> {
    let mut out = Vec::new();
    for i in 0..procs {
        let path = PathBuf::from(format!("{}.{i}", log.display()));
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        for line in text.lines() {
            let f: Vec<u64> = line.split(',').filter_map(|x| x.parse().ok()).collect();
            if let [pid, local, remote, tx, rx] = f[..] {
                let ok = tx == EXCHANGE_BYTES as u64 && rx == EXCHANGE_BYTES as u64;
                out.push(Truth { pid: pid as u32, local_port: local as u16, remote_port: remote as u16, tx, rx, ok });
            }
        }
    }
    Ok(out)
}

/// Records by (local port, remote port): (tgid, payload tx, payload rx).
type Index = HashMap<(u16, u16), Vec<(u32, u64, u64)>>;

fn index(flows: &[parse::Flow], proto: &str, directions: &[&str]) -> Index {
    let mut idx: Index = HashMap::new();
    for f in flows.iter().filter(|f| f.protocol == proto && directions.contains(&f.direction.as_str())) {
        if let (Some(l), Some(r)) = (parse::Flow::port(f.local.as_ref()), parse::Flow::port(f.remote.as_ref())) {
            idx.entry((l, r)).or_default().push((f.owner.tgid, f.payload.tx_bytes, f.payload.rx_bytes));
        }
    }
    idx
}

/// Exchanges one record stands for: one per socket, except that a UDP server sees a client
/// port reused later in the run as the same peer, so one record may sum several exchanges.
fn covers(tx: u64, rx: u64) -> u64 {
    (tx.max(rx) / EXCHANGE_BYTES as u64).max(1)
}

/// Matches expected exchanges `(pid, (local port, remote port), tx, rx)` with the records of the
/// same port pair. Per port pair and process, the records must stand for as many exchanges as
/// expected (recorded / right process) and their payload must add up exactly to the ground
/// truth (exact).
/// Expected exchanges of one port pair by process: (count, tx, rx).
type PerPid = HashMap<u32, (u64, u64, u64)>;

/// An expected exchange: (pid, (local port, remote port), payload tx, payload rx).
type Expected = (u32, (u16, u16), u64, u64);

#[cfg(test)]
fn complete(idx: &Index, expected: impl Iterator<Item = Expected>) -> Completeness {
    complete_with(idx, expected, &mut Vec::new())
}

/// Port pairs (at most five) listed by [`complete_with`] whose records are not exact.
const INEXACT_SHOWN: usize = 5;

/// [`complete`], which also lists in `inexact` (at most [`INEXACT_SHOWN`]) the port pairs and
/// processes whose records do not add up to the ground truth: what a missed "exact bytes" needs
/// to be explained.
fn complete_with(idx: &Index, expected: impl Iterator<Item = Expected>, inexact: &mut Vec<String>) -> Completeness {
    // port pair -> pid -> (exchanges, tx, rx)
    let mut want: HashMap<(u16, u16), PerPid> = HashMap::new();
    for (pid, key, tx, rx) in expected {
        let e = want.entry(key).or_default().entry(pid).or_default();
        *e = (e.0 + 1, e.1 + tx, e.2 + rx);
    }
    let mut c = Completeness::default();
    for (key, pids) in &want {
        let recs = idx.get(key).map_or(&[][..], Vec::as_slice);
        let n_key: u64 = pids.values().map(|v| v.0).sum();
        c.expected += n_key;
        c.recorded += n_key.min(recs.iter().map(|r| covers(r.1, r.2)).sum());
        for (pid, &(n, tx, rx)) in pids {
            let mine: Vec<_> = recs.iter().filter(|r| r.0 == *pid).collect();
            let right = n.min(mine.iter().map(|r| covers(r.1, r.2)).sum());
            c.right_process += right;
            let (rtx, rrx) = mine.iter().fold((0, 0), |a, r| (a.0 + r.1, a.1 + r.2));
            if rtx == tx && rrx == rx {
                c.exact += right;
            } else if !mine.is_empty() && inexact.len() < INEXACT_SHOWN {
                inexact.push(format!(
                    "pid {pid} ports {} -> {}: {n} exchange(s) of {tx}/{rx} B in all, {} record(s) of {rtx}/{rrx} B",
                    key.0,
                    key.1,
                    mine.len()
                ));
            }
        }
    }
    c
}

/// Client-side and server-side completeness of one monitor run. Expected: every exchange whose
/// client sent its request (failed ones with the bytes they did move).
pub fn monitor_completeness(
    flows: &[parse::Flow],
    truth: &[Truth],
    proto: Proto,
    server_pid: u32,
) -> (Completeness, Completeness) {
    let p = proto_arg(proto);
    let sent = || truth.iter().filter(|t| t.tx > 0);
    let client_index = index(flows, p, &["outbound"]);
    let mut inexact = Vec::new();
    let client =
        complete_with(&client_index, sent().map(|t| (t.pid, (t.local_port, t.remote_port), t.tx, t.rx)), &mut inexact);
    if client.recorded < client.expected {
        explain_misses(flows, &client_index, truth, sent());
    }
    for line in &inexact {
        eprintln!("bench:   client records not exact: {line}");
    }
    // UDP: the clients sent first, so the server socket's peers are `inbound` as accepted TCP
    // connections are; a few exchanges are split in two records (the slot was flushed between
    // request and answer, and the peer's flow closed at once past the per-socket cap), the
    // answer's then `unconnected` (it claimed a slot going out).
    let server_dirs: &[&str] = if proto == Proto::Tcp { &["inbound"] } else { &["inbound", "unconnected"] };
    let mut inexact = Vec::new();
    let server = complete_with(
        &index(flows, p, server_dirs),
        sent().map(|t| (server_pid, (t.remote_port, t.local_port), t.rx, t.tx)),
        &mut inexact,
    );
    for line in &inexact {
        eprintln!("bench:   server records not exact: {line}");
    }
    (client, server)
}

/// Prints (at most five) client exchanges short of records: of a port pair and process with
/// fewer `outbound` records (counted as [`covers`] does) than exchanges, with every record that
/// has the exchange's local port, and the process's records by direction and without a local
/// port: what a missed figure needs to be explained.
fn explain_misses<'a>(flows: &[parse::Flow], client: &Index, truth: &[Truth], sent: impl Iterator<Item = &'a Truth>) {
    let sent: Vec<&Truth> = sent.collect();
    let mut wanted: HashMap<(u32, u16, u16), u64> = HashMap::new();
    for t in &sent {
        *wanted.entry((t.pid, t.local_port, t.remote_port)).or_default() += 1;
    }
    let short = |t: &&&Truth| {
        let have: u64 = client
            .get(&(t.local_port, t.remote_port))
            .map_or(0, |recs| recs.iter().filter(|r| r.0 == t.pid).map(|r| covers(r.1, r.2)).sum());
        have < wanted.get(&(t.pid, t.local_port, t.remote_port)).copied().unwrap_or(0)
    };
    let mut shown = std::collections::HashSet::new();
    for t in sent.iter().filter(short).filter(|t| shown.insert((t.pid, t.local_port, t.remote_port))).take(5) {
        let same_pair = wanted.get(&(t.pid, t.local_port, t.remote_port)).copied().unwrap_or(0);
        eprintln!("bench:   exchanges of pid {} on this port pair: {same_pair}", t.pid);
        let exchanges = truth.iter().filter(|e| e.pid == t.pid).count();
        let sent_ok = truth.iter().filter(|e| e.pid == t.pid && e.tx > 0).count();
        eprintln!("bench:   exchanges of pid {}: {exchanges} ({sent_ok} sent their request)", t.pid);
        let mut by_direction: HashMap<(&str, &str), usize> = HashMap::new();
        let mut without_port = Vec::new();
        for f in flows.iter().filter(|f| f.owner.tgid == t.pid) {
            *by_direction.entry((f.event.as_str(), f.direction.as_str())).or_default() += 1;
            if parse::Flow::port(f.local.as_ref()).is_none_or(|p| p == 0) && without_port.len() < 5 {
                without_port
                    .push(format!("{} {} {} {:?} -> {:?}", f.event, f.protocol, f.direction, f.local, f.remote));
            }
        }
        eprintln!("bench:   records of pid {}: {by_direction:?}; without a local port: {without_port:?}", t.pid);
        let same_port: Vec<String> = flows
            .iter()
            .filter(|f| parse::Flow::port(f.local.as_ref()) == Some(t.local_port))
            .map(|f| {
                format!(
                    "{} {} {} cookie {} tgid {} {:?} -> {:?} payload {}/{}",
                    f.event,
                    f.protocol,
                    f.direction,
                    f.cookie,
                    f.owner.tgid,
                    f.local,
                    f.remote,
                    f.payload.tx_bytes,
                    f.payload.rx_bytes
                )
            })
            .collect();
        eprintln!(
            "bench:   unmatched client exchange: pid {} port {} -> {}, {}/{} B; records with its local port: {:?}",
            t.pid, t.local_port, t.remote_port, t.tx, t.rx, same_port
        );
    }
}

/// `key=VALUE` of the monitor's last stats line in its log `log`.
fn final_stat(log: &str, key: &str) -> Option<u64> {
    let pattern = format!("{key}=");
    log.lines().rev().find_map(|l| {
        l.split_whitespace().find_map(|field| field.strip_prefix(pattern.as_str()).and_then(|v| v.parse().ok()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(recs: &[((u16, u16), u32, u64, u64)]) -> Index {
        let mut i: Index = HashMap::new();
        for &(k, pid, tx, rx) in recs {
            i.entry(k).or_default().push((pid, tx, rx));
        }
        i
    }

    #[test]
    fn final_stat_reads_the_last_stats_line() {
        let log = "[.. INFO ] stats events=3 sockets_created=7 sockets_released=7\n\
                   [.. INFO ] stats events=9 released_uncounted=0 sockets_created=12 sockets_released=11\n\
                   [.. INFO ] detached\n";
        assert_eq!(final_stat(log, "sockets_created"), Some(12));
        assert_eq!(final_stat(log, "sockets_released"), Some(11));
        assert_eq!(final_stat(log, "released_uncounted"), Some(0));
        assert_eq!(final_stat(log, "events"), Some(9));
        assert_eq!(final_stat(log, "lost"), None);
    }

    #[test]
    fn reused_ports_match_one_to_one_and_merged_peers_count_fully() {
        let k = (40000, 7000);
        // Two exchanges on one port pair by two processes, both recorded exactly.
        let c = complete(
            &idx(&[(k, 1, 1024, 1024), (k, 2, 1024, 1024)]),
            [(1, k, 1024, 1024), (2, k, 1024, 1024)].into_iter(),
        );
        assert_eq!((c.expected, c.recorded, c.right_process, c.exact), (2, 2, 2, 2));
        // A UDP server peer seen twice: one record of 2048/2048.
        let c = complete(&idx(&[(k, 9, 2048, 2048)]), [(9, k, 1024, 1024), (9, k, 1024, 1024)].into_iter());
        assert_eq!((c.recorded, c.exact), (2, 2));
        // One of two missing; wrong owner; wrong bytes.
        let c = complete(&idx(&[(k, 1, 1024, 1024)]), [(1, k, 1024, 1024), (1, k, 1024, 1024)].into_iter());
        assert_eq!((c.recorded, c.right_process, c.exact), (1, 1, 0));
        let c = complete(&idx(&[(k, 3, 1024, 1024)]), [(1, k, 1024, 1024)].into_iter());
        assert_eq!((c.recorded, c.right_process, c.exact), (1, 0, 0));
        let c = complete(&idx(&[(k, 1, 1024, 1000)]), [(1, k, 1024, 1024)].into_iter());
        assert_eq!((c.recorded, c.right_process, c.exact), (1, 1, 0));
    }

    #[test]
    fn inexact_port_pairs_are_listed_with_truth_and_records() {
        let (k, j) = ((40000, 7000), (40001, 7000));
        let mut inexact = Vec::new();
        let c = complete_with(
            &idx(&[(k, 1, 1024, 1025), (j, 1, 1024, 1024)]),
            [(1, k, 1024, 1024), (1, j, 1024, 1024), (2, j, 1024, 1024)].into_iter(),
            &mut inexact,
        );
        assert_eq!((c.expected, c.recorded, c.exact), (3, 2, 1));
        // The missing one (pid 2) has no record to show; the inexact one does.
        assert_eq!(
            inexact,
            vec![
                "pid 1 ports 40000 -> 7000: 1 exchange(s) of 1024/1024 B in all, 1 record(s) of 1024/1025 B".to_owned()
            ]
        );
    }
}
