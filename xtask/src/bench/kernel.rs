//! Benchmark 4, kernel cost: time per invocation of each of the monitor's programs, from the kernel's BPF
//! run-time statistics, and the size of each program.
//!
//! Statistics are switched on with `BPF_ENABLE_STATS` (aya's `enable_stats`): they count only
//! while the returned descriptor is open, so they are on for the measurement alone and go off
//! even if the harness dies. (The `kernel.bpf_stats_enabled` sysctl is left untouched.) Counting
//! adds two clock reads per invocation, a few tens of nanoseconds: the figures are upper bounds.
//!
//! The programs are found through the monitor's own descriptors (/proc/<pid>/fdinfo: `prog_id`),
//! then read with `BPF_OBJ_GET_INFO_BY_FD` (aya's `loaded_programs`). Workload: an iperf3
//! transfer over the veth pair, then TCP and UDP churn, all in the watched cgroup.

use std::{collections::BTreeMap, fs, time::Duration};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{
    Ctx,
    churn::{PROCS, run_clients, start_server},
    env::{ADDR_A, ADDR_B, DEV_A, Place, Proc, wait_for_text},
    load::Proto,
    observer::{self, Observer, Target},
    output::{Row, Section},
    stats::{Summary, show},
};

/// Counters of one program at one moment.
#[derive(Debug, Clone, Serialize)]
struct Prog {
    name: String,
    /// The hook it is attached to (see [`hook`]).
    hook: String,
    prog_type: String,
    run_time_ns: u64,
    run_count: u64,
    xlated_insns: u32,
    jited_bytes: u32,
    verified_insns: u32,
}

/// Hook names of the attach types the monitor uses (`enum bpf_attach_type`, include/uapi/linux/bpf.h).
fn hook(attach_type: u32) -> Option<&'static str> {
    Some(match attach_type {
        0 => "cgroup_skb/ingress",
        1 => "cgroup_skb/egress",
        2 => "cgroup/sock_create",
        3 => "sockops",
        10 => "cgroup/connect4",
        11 => "cgroup/connect6",
        14 => "cgroup/sendmsg4",
        15 => "cgroup/sendmsg6",
        19 => "cgroup/recvmsg4",
        20 => "cgroup/recvmsg6",
        23 => "tp_btf",
        34 => "cgroup/sock_release",
        _ => return None,
    })
}

/// A `key:\tvalue` line of an fdinfo file.
fn fdinfo_field(info: &str, key: &str) -> Option<u32> {
    info.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).and_then(|v| v.trim().parse().ok())
}

/// The monitor's programs (ids from its descriptors; program names are cut to 15 characters by
/// the kernel, so each is named with the hook its link attaches it to).
fn snapshot(pid: u32) -> anyhow::Result<BTreeMap<u32, Prog>> {
    let mut ids = Vec::new();
    let mut hooks = BTreeMap::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        let Ok(link) = fs::read_link(entry.path()) else { continue };
        let info = fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy()))
            .unwrap_or_default();
        match link.to_string_lossy().as_ref() {
            "anon_inode:bpf-prog" => ids.extend(fdinfo_field(&info, "prog_id")),
            "anon_inode:bpf_link" => {
                if let (Some(id), Some(t)) = (fdinfo_field(&info, "prog_id"), fdinfo_field(&info, "attach_type")) {
                    hooks.insert(id, hook(t).map_or_else(|| format!("attach type {t}"), str::to_owned));
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    for info in aya::programs::loaded_programs().flatten() {
        if !ids.contains(&info.id()) {
            continue;
        }
        let hook = hooks.get(&info.id()).map_or(
            // tp_btf programs are attached through raw tracepoint descriptors, not links.
            if format!("{:?}", info.program_type()) == "BPF_PROG_TYPE_TRACING" { "tp_btf" } else { "?" },
            String::as_str,
        );
        out.insert(
            info.id(),
            Prog {
                name: format!("{} [{hook}]", info.name_as_str().unwrap_or("?")),
                hook: hook.to_owned(),
                prog_type: format!("{:?}", info.program_type()),
                run_time_ns: u64::try_from(info.run_time().as_nanos()).unwrap_or(u64::MAX),
                run_count: info.run_count(),
                xlated_insns: info.size_translated().unwrap_or(0) / 8,
                jited_bytes: info.size_jitted(),
                verified_insns: info.verified_instruction_count().unwrap_or(0),
            },
        );
    }
    anyhow::ensure!(!out.is_empty(), "no BPF programs found among the monitor's descriptors");
    Ok(out)
}

/// Runs the benchmark.
pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("kernel");
    if !ctx.tools.available(Observer::Monitor) {
        section.rows.push(Row::skipped("BPF program cost", "monitor unavailable"));
        return Ok(section);
    }
    let (seconds, exchanges, rounds) = if ctx.quick { (1, 2_000, 1) } else { (5, 20_000, 3) };
    let mut per_round: Vec<Deltas> = Vec::new();
    let mut phases: Vec<[Phase; 3]> = Vec::new();
    for round in 0..rounds {
        match measure(ctx, seconds, exchanges, round) {
            Ok(r) => {
                per_round.push(r.programs);
                phases.push(r.phases);
            }
            Err(e) => eprintln!("bench: kernel round {}: {e:#}", round + 1),
        }
    }
    anyhow::ensure!(!per_round.is_empty(), "every kernel-cost round failed");
    // BPF time per Gbit/s: (BPF seconds per second) ÷ (Gbit per second) = BPF s per Gbit, as %.
    let per_gbit = Summary::of(
        &phases.iter().map(|p| 100.0 * (p[0].bpf_ns as f64 / 1e9) / (p[0].work * 8.0 / 1e9)).collect::<Vec<_>>(),
    );
    section.rows.push(Row::info(
        "all programs, iperf3 over veth (both ends watched)",
        "monitor",
        format!("{} % of a core per Gbit/s", show(per_gbit, 3)),
    ));
    for (i, proto) in [(1, "TCP"), (2, "UDP")] {
        let us = Summary::of(
            &phases
                .iter()
                .filter(|p| p[i].work > 0.0)
                .map(|p| p[i].bpf_ns as f64 / 1e3 / p[i].work)
                .collect::<Vec<_>>(),
        );
        section.rows.push(Row::info(
            format!("all programs, {proto} churn (both ends watched)"),
            "monitor",
            format!("{} µs of BPF per exchange", show(us, 2)),
        ));
    }
    socket_rows(&mut section, &phases);
    let whole = packet_rows(&mut section, &per_round);
    phase_packet_rows(&mut section, &phases);
    section.notes.extend(packet_notes(&whole, &phases));
    let mut programs = serde_json::Map::new();
    let names: Vec<String> = per_round[0].keys().cloned().collect();
    for name in names {
        let rows: Vec<&(Prog, u64, u64)> = per_round.iter().filter_map(|r| r.get(&name)).collect();
        let ns = Summary::of(&rows.iter().filter(|r| r.2 > 0).map(|r| r.1 as f64 / r.2 as f64).collect::<Vec<_>>());
        let runs = Summary::of(&rows.iter().map(|r| r.2 as f64).collect::<Vec<_>>());
        let p = &rows[0].0;
        section.rows.push(Row::info(
            p.name.clone(),
            "monitor",
            format!(
                "{} ns/run over {} runs; {} insns xlated, {} B jited, {} verified",
                show(ns, 1),
                show(runs, 0),
                p.xlated_insns,
                p.jited_bytes,
                p.verified_insns
            ),
        ));
        programs.insert(name, json!({ "ns_per_run": ns, "runs": runs, "program": p, "rounds": rows.iter().map(|r| json!({"run_time_ns": r.1, "run_count": r.2})).collect::<Vec<_>>() }));
    }
    section.data = json!({ "iperf_seconds": seconds, "exchanges_per_protocol": exchanges, "rounds": rounds, "programs": programs,
                           "bpf_percent_of_core_per_gbps": per_gbit, "phases": phases });
    section.notes.push(format!(
        "BPF run-time stats on only during the workload (iperf3 {seconds} s over veth + {exchanges} TCP + {exchanges} UDP exchanges), {rounds} round(s); ns/run includes the stats' own clock reads and the dispatch: the empty \
         calibration programs (`calibrate_*`, attached beside the monitor's for these runs only) measure that floor on each \
         hook, and the net figures subtract it (hooks without an empty program: the smallest floor)"
    ));
    Ok(section)
}

/// Issue 8's goal for BPF time per socket over its life, in µs.
const SOCKET_GOAL_US: f64 = 3.0;
/// Issue 8's goal for each per-packet program, in ns per run.
const PACKET_GOAL_NS: f64 = 100.0;

/// BPF time per socket over its life, as measured and net of the measurement floor. A TCP
/// exchange has two sockets (client, accepted); a UDP exchange one fresh client socket (the
/// server's one socket's work for the exchange is charged to it).
fn socket_rows(section: &mut Section, phases: &[[Phase; 3]]) {
    for (i, proto, sockets) in [(1, "TCP", 2.0), (2, "UDP", 1.0)] {
        let per = |net: bool| {
            Summary::of(
                &phases
                    .iter()
                    .filter(|p| p[i].work > 0.0)
                    .map(|p| {
                        let ns = if net { p[i].bpf_ns as f64 - p[i].floor_ns } else { p[i].bpf_ns as f64 };
                        ns / 1e3 / p[i].work / sockets
                    })
                    .collect::<Vec<_>>(),
            )
        };
        for (net, label) in [(false, "as measured"), (true, "net of the measurement floor")] {
            let metric = format!("BPF per socket over its life, {proto} churn, {label}");
            section.rows.push(at_most(metric, per(net), 2, "µs", SOCKET_GOAL_US));
        }
    }
}

/// A row of the monitor's whose goal is a median of at most `goal` (`unit`).
fn at_most(metric: String, value: Option<Summary>, digits: usize, unit: &str, goal: f64) -> Row {
    let ok = value.is_some_and(|s| s.median <= goal);
    Row::goal(metric, "monitor", format!("{} {unit}", show(value, digits)), &format!("≤ {goal} {unit}"), ok)
}

/// ns per run of the per-packet programs, as measured and net of the empty program on the same
/// hook (per round, then summarised). Returns the net medians, in [`PACKET_HOOKS`] order.
fn packet_rows(section: &mut Section, rounds: &[Deltas]) -> [Option<f64>; 2] {
    let mut medians = [None; 2];
    for (h, hook) in PACKET_HOOKS.into_iter().enumerate() {
        let mut raw = Vec::new();
        let mut net = Vec::new();
        let mut floor = Vec::new();
        for d in rounds {
            if let Some((r, f)) = per_run_on(d, hook) {
                raw.push(r);
                floor.push(f);
                net.push(r - f);
            }
        }
        let (raw, net, floor) = (Summary::of(&raw), Summary::of(&net), Summary::of(&floor));
        medians[h] = net.map(|s| s.median);
        let metric = format!("per-packet program [{hook}], as measured");
        section.rows.push(at_most(metric, raw, 1, "ns/run", PACKET_GOAL_NS));
        section.rows.push(Row::info(
            format!("measurement floor [{hook}]: an empty program"),
            "calibration",
            format!("{} ns/run", show(floor, 1)),
        ));
        let metric = format!("per-packet program [{hook}], net of the floor");
        section.rows.push(at_most(metric, net, 1, "ns/run", PACKET_GOAL_NS));
    }
    medians
}

/// The workload phases, in [`Phase`] order.
const PHASE_NAMES: [&str; 3] = ["iperf3 bulk transfer", "TCP churn", "UDP churn"];

/// For each per-packet hook whose figure over the whole workload (`whole`, net medians) misses
/// its goal: what bounds it, from the phases' own figures ([`super::packets::note`]).
fn packet_notes(whole: &[Option<f64>; 2], phases: &[[Phase; 3]]) -> Vec<String> {
    let median = |v: Vec<f64>| Summary::of(&v).map(|s| s.median);
    PACKET_HOOKS
        .into_iter()
        .enumerate()
        .filter_map(|(h, hook)| {
            let figures: Vec<super::packets::PhaseFigure<'_>> = PHASE_NAMES
                .into_iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    let net_ns = median(phases.iter().filter_map(|p| p[i].packets[h].map(|(r, f)| r - f)).collect())?;
                    let runs = median(phases.iter().map(|p| p[i].runs[h] as f64).collect())?;
                    Some(super::packets::PhaseFigure { name, net_ns, runs })
                })
                .collect();
            super::packets::note(hook, whole[h]?, PACKET_GOAL_NS, &figures)
        })
        .collect()
}

/// The per-packet figures split by workload phase (information: the goal rows above cover the
/// whole workload). Bulk transfer packets take the short path; the first packets of short
/// connections also pass the names gate, and unconnected UDP the per-peer table.
fn phase_packet_rows(section: &mut Section, phases: &[[Phase; 3]]) {
    for (i, label) in PHASE_NAMES.into_iter().enumerate() {
        for (h, hook) in PACKET_HOOKS.into_iter().enumerate() {
            let values: Vec<(f64, f64)> = phases.iter().filter_map(|p| p[i].packets[h]).collect();
            let raw = Summary::of(&values.iter().map(|v| v.0).collect::<Vec<_>>());
            let net = Summary::of(&values.iter().map(|v| v.0 - v.1).collect::<Vec<_>>());
            section.rows.push(Row::info(
                format!("per-packet program [{hook}], {label} phase alone"),
                "monitor",
                format!("{} ns/run as measured, {} net of the floor", show(raw, 1), show(net, 1)),
            ));
        }
    }
}

/// Whether a program is one of the empty calibration programs (`monitor-ebpf/src/probes/calibrate.rs`;
/// names cut to 15 characters by the kernel).
fn is_calibration(p: &Prog) -> bool {
    p.name.starts_with("calibrate_")
}

/// The measurement floor: ns per run of the empty calibration program on each hook, over the same
/// workload. Run-time statistics time each run with two clock reads around the call, so even a
/// program that does nothing shows a cost; it is the same for every program on that hook.
#[derive(Debug, Default, Clone, Serialize)]
struct Floors(BTreeMap<String, f64>);

impl Floors {
    fn of(d: &Deltas) -> Self {
        Self(
            d.values()
                .filter(|p| is_calibration(&p.0) && p.2 > 0)
                .map(|p| (p.0.hook.clone(), p.1 as f64 / p.2 as f64))
                .collect(),
        )
    }

    /// The floor of `hook`; hooks without a calibration program (sock_release, sock_addr, tp_btf)
    /// get the smallest measured floor, so the net figures never subtract too much.
    fn for_hook(&self, hook: &str) -> f64 {
        self.0.get(hook).copied().unwrap_or_else(|| self.0.values().copied().reduce(f64::min).unwrap_or(0.0))
    }
}

/// Δrun_time_ns and Δrun_count of every program between two snapshots, by name.
type Deltas = BTreeMap<String, (Prog, u64, u64)>;

fn deltas(before: &BTreeMap<u32, Prog>, after: BTreeMap<u32, Prog>) -> Deltas {
    let mut result = BTreeMap::new();
    for (id, a) in after {
        let b = before.get(&id);
        let dt = a.run_time_ns.saturating_sub(b.map_or(0, |b| b.run_time_ns));
        let dn = a.run_count.saturating_sub(b.map_or(0, |b| b.run_count));
        result.insert(a.name.clone(), (a, dt, dn));
    }
    result
}

/// BPF time of one workload phase, over all programs.
#[derive(Debug, Clone, Copy, Serialize)]
struct Phase {
    /// The monitor's programs (calibration programs excluded).
    bpf_ns: u64,
    /// The part of `bpf_ns` an empty program would have cost for the same runs on the same hooks
    /// (see [`Floors`]).
    floor_ns: f64,
    /// iperf3: bytes received; churn: exchanges.
    work: f64,
    seconds: f64,
    /// The per-packet programs in this phase alone, [egress, ingress]: ns per run as measured and
    /// the empty program's ns per run on the same hook (`None` without runs).
    packets: [Option<(f64, f64)>; 2],
    /// Runs of the per-packet programs in this phase, [egress, ingress].
    runs: [u64; 2],
}

/// The per-packet hooks, in [`Phase::packets`] order.
const PACKET_HOOKS: [&str; 2] = ["cgroup_skb/egress", "cgroup_skb/ingress"];

/// ns per run of the monitor's program on `hook` and of the empty program beside it.
fn per_run_on(d: &Deltas, hook: &str) -> Option<(f64, f64)> {
    let per_run = |calibration: bool| {
        d.values()
            .filter(|p| p.0.hook == hook && is_calibration(&p.0) == calibration && p.2 > 0)
            .max_by_key(|p| p.2)
            .map(|p| p.1 as f64 / p.2 as f64)
    };
    Some((per_run(false)?, per_run(true)?))
}

/// Runs of the monitor's program on `hook` (0 without one).
fn runs_on(d: &Deltas, hook: &str) -> u64 {
    d.values().filter(|p| p.0.hook == hook && !is_calibration(&p.0)).map(|p| p.2).max().unwrap_or(0)
}

/// One round: per-program deltas over the whole workload, and the phases (iperf3, TCP, UDP).
struct Round {
    programs: Deltas,
    phases: [Phase; 3],
}

fn measure(ctx: &Ctx<'_>, seconds: u32, exchanges: usize, round: usize) -> anyhow::Result<Round> {
    let config = observer::config_from_env();
    let target = Target { cgroup: ctx.cgroup, netns: &ctx.pair.a, device: DEV_A, monitor_config: config.as_deref() };
    let running = observer::start_with_calibration(target, ctx.tools, &format!("kernel-{round}"))?;
    let pid = running.pid().context("monitor pid")?;
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS failed")?;
    let first = snapshot(pid)?;
    let mut last = first.clone();
    let mut phases = [Phase { bpf_ns: 0, floor_ns: 0.0, work: 0.0, seconds: 0.0, packets: [None; 2], runs: [0; 2] }; 3];
    for (i, phase) in phases.iter_mut().enumerate() {
        let t = std::time::Instant::now();
        phase.work = match i {
            0 => iperf(ctx, seconds, round)?,
            1 => churn(ctx, Proto::Tcp, exchanges, round)?,
            _ => churn(ctx, Proto::Udp, exchanges, round)?,
        };
        phase.seconds = t.elapsed().as_secs_f64();
        let now = snapshot(pid)?;
        let d = deltas(&last, now.clone());
        let floors = Floors::of(&d);
        let monitor = d.values().filter(|p| !is_calibration(&p.0));
        phase.bpf_ns = monitor.clone().map(|p| p.1).sum();
        phase.floor_ns = monitor.map(|p| p.2 as f64 * floors.for_hook(&p.0.hook)).sum();
        phase.packets = PACKET_HOOKS.map(|hook| per_run_on(&d, hook));
        phase.runs = PACKET_HOOKS.map(|hook| runs_on(&d, hook));
        last = now;
    }
    drop(stats_fd);
    let (_, out) = running.stop()?;
    observer::discard(&out);
    Ok(Round { programs: deltas(&first, last), phases })
}

/// iperf3 over the veth pair; returns the bytes received.
fn iperf(ctx: &Ctx<'_>, seconds: u32, round: usize) -> anyhow::Result<f64> {
    let work = &ctx.tools.work;
    let server_out = work.join(format!("kernel-{round}-iperf3.out"));
    let client_out = work.join(format!("kernel-{round}-iperf3.json"));
    let mut cmd = std::process::Command::new("iperf3");
    cmd.args(["-s", "-1", "--forceflush", "-B", ADDR_B, "-p", "5202"])
        .stdout(fs::File::create(&server_out)?)
        .stderr(std::process::Stdio::null());
    let mut server =
        Proc::spawn("iperf3 server", &mut cmd, Place { netns: Some(&ctx.pair.b), cgroup: Some(ctx.cgroup) })?;
    wait_for_text(&server_out, "listening", Duration::from_secs(10), &mut server)?;
    let mut cmd = std::process::Command::new("iperf3");
    cmd.args(["-c", ADDR_B, "-B", ADDR_A, "-p", "5202", "-t", &seconds.to_string(), "-J"])
        .stdout(fs::File::create(&client_out)?)
        .stderr(std::process::Stdio::null());
    let mut client =
        Proc::spawn("iperf3 client", &mut cmd, Place { netns: Some(&ctx.pair.a), cgroup: Some(ctx.cgroup) })?;
    client.wait_timeout(Duration::from_secs(u64::from(seconds) + 30))?;
    let _ = server.wait_timeout(Duration::from_secs(5));
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(&client_out)?).context("iperf3 report")?;
    observer::discard(&server_out);
    observer::discard(&client_out);
    report["end"]["sum_received"]["bytes"].as_f64().context("no byte count in the iperf3 report")
}

/// `exchanges` churn exchanges; returns how many succeeded.
fn churn(ctx: &Ctx<'_>, proto: Proto, exchanges: usize, round: usize) -> anyhow::Result<f64> {
    let (srv, _) = start_server(ctx, proto)?;
    let log = ctx.tools.work.join(format!("kernel-{round}-truth"));
    let summary = run_clients(ctx, proto, exchanges, &log)?;
    drop(srv);
    for i in 0..PROCS {
        observer::discard(&std::path::PathBuf::from(format!("{}.{i}", log.display())));
    }
    Ok(summary["ok"].as_f64().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prog(name: &str, hook: &str) -> Prog {
        Prog {
            name: format!("{name} [{hook}]"),
            hook: hook.to_owned(),
            prog_type: String::new(),
            run_time_ns: 0,
            run_count: 0,
            xlated_insns: 0,
            jited_bytes: 0,
            verified_insns: 0,
        }
    }

    fn round(entries: &[(&str, &str, u64, u64)]) -> Deltas {
        entries.iter().map(|&(n, h, ns, runs)| (format!("{n} [{h}]"), (prog(n, h), ns, runs))).collect()
    }

    #[test]
    fn floors_come_from_the_empty_programs_and_default_to_the_smallest() {
        let d = round(&[
            ("calibrate_egres", "cgroup_skb/egress", 6_000, 100),
            ("calibrate_sock_", "sockops", 5_000, 100),
            ("cgroup_skb_egre", "cgroup_skb/egress", 17_000, 100),
        ]);
        let f = Floors::of(&d);
        assert!((f.for_hook("cgroup_skb/egress") - 60.0).abs() < 1e-9);
        assert!((f.for_hook("sockops") - 50.0).abs() < 1e-9);
        assert!((f.for_hook("tp_btf") - 50.0).abs() < 1e-9, "no empty program: the smallest floor");
        assert!(Floors::default().for_hook("tp_btf").abs() < 1e-9);
    }

    #[test]
    fn per_packet_rows_subtract_the_floor_of_the_same_hook() {
        let d = round(&[
            ("calibrate_egres", "cgroup_skb/egress", 6_000, 100),
            ("cgroup_skb_egre", "cgroup_skb/egress", 15_000, 100),
            ("calibrate_ingre", "cgroup_skb/ingress", 5_000, 100),
            ("cgroup_skb_ingr", "cgroup_skb/ingress", 17_000, 100),
        ]);
        let mut s = Section::new("kernel");
        packet_rows(&mut s, &[d]);
        let value = |m: &str| s.rows.iter().find(|r| r.metric == m).map(|r| (r.value.clone(), r.verdict)).unwrap();
        assert_eq!(
            value("per-packet program [cgroup_skb/egress], as measured"),
            ("150.0 ns/run".into(), super::super::output::Verdict::Missed)
        );
        assert_eq!(
            value("per-packet program [cgroup_skb/egress], net of the floor"),
            ("90.0 ns/run".into(), super::super::output::Verdict::Met)
        );
        assert_eq!(
            value("per-packet program [cgroup_skb/ingress], net of the floor"),
            ("120.0 ns/run".into(), super::super::output::Verdict::Missed)
        );
    }

    #[test]
    fn socket_rows_count_two_sockets_per_tcp_exchange() {
        let phase =
            |bpf_ns, floor_ns| Phase { bpf_ns, floor_ns, work: 1000.0, seconds: 1.0, packets: [None; 2], runs: [0; 2] };
        let phases = [[phase(0, 0.0), phase(8_000_000, 3_000_000.0), phase(4_000_000, 1_000_000.0)]];
        let mut s = Section::new("kernel");
        socket_rows(&mut s, &phases);
        let value = |m: &str| s.rows.iter().find(|r| r.metric == m).map(|r| r.value.clone()).unwrap();
        assert_eq!(value("BPF per socket over its life, TCP churn, as measured"), "4.00 µs");
        assert_eq!(value("BPF per socket over its life, TCP churn, net of the measurement floor"), "2.50 µs");
        assert_eq!(value("BPF per socket over its life, UDP churn, net of the measurement floor"), "3.00 µs");
    }

    #[test]
    fn phase_rows_show_each_phase_net_of_its_floor() {
        let phase = |packets| Phase { bpf_ns: 0, floor_ns: 0.0, work: 1.0, seconds: 1.0, packets, runs: [10; 2] };
        let phases = [[
            phase([Some((150.0, 55.0)), Some((120.0, 56.0))]),
            phase([Some((200.0, 50.0)), None]),
            phase([None, None]),
        ]];
        let mut s = Section::new("kernel");
        phase_packet_rows(&mut s, &phases);
        let value = |m: &str| s.rows.iter().find(|r| r.metric == m).map(|r| r.value.clone()).unwrap();
        assert_eq!(
            value("per-packet program [cgroup_skb/egress], iperf3 bulk transfer phase alone"),
            "150.0 ns/run as measured, 95.0 net of the floor"
        );
        assert_eq!(
            value("per-packet program [cgroup_skb/ingress], iperf3 bulk transfer phase alone"),
            "120.0 ns/run as measured, 64.0 net of the floor"
        );
        assert_eq!(
            value("per-packet program [cgroup_skb/egress], TCP churn phase alone"),
            "200.0 ns/run as measured, 150.0 net of the floor"
        );
        assert!(value("per-packet program [cgroup_skb/ingress], UDP churn phase alone").starts_with("n/a"));
    }

    #[test]
    fn a_missed_per_packet_goal_gets_a_note_from_the_phases() {
        let phase = |net: f64, runs| Phase {
            bpf_ns: 0,
            floor_ns: 0.0,
            work: 1.0,
            seconds: 1.0,
            packets: [Some((net + 50.0, 50.0)), Some((net + 50.0, 50.0))],
            runs: [runs, runs],
        };
        let phases = [[phase(90.0, 800), phase(70.0, 100), phase(350.0, 100)]];
        let notes = packet_notes(&[Some(99.0), Some(114.0)], &phases);
        assert_eq!(notes.len(), 1, "egress meets the goal: {notes:?}");
        assert!(notes[0].starts_with("per-packet program [cgroup_skb/ingress]: 114.0 ns net"), "{notes:?}");
        assert!(notes[0].contains("UDP churn 350.0 ns × 10 % of the runs"), "{notes:?}");
        assert!(packet_notes(&[None, None], &phases).is_empty());
    }
}
