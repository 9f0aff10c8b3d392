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
        out.insert(
            info.id(),
            Prog {
                name: format!(
                    "{} [{}]",
                    info.name_as_str().unwrap_or("?"),
                    hooks.get(&info.id()).map_or(
                        // tp_btf programs are attached through raw tracepoint descriptors, not links.
                        if format!("{:?}", info.program_type()) == "BPF_PROG_TYPE_TRACING" { "tp_btf" } else { "?" },
                        String::as_str
                    )
                ),
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
        "BPF run-time stats on only during the workload (iperf3 {seconds} s over veth + {exchanges} TCP + {exchanges} UDP exchanges), {rounds} round(s); ns/run includes the stats' own clock reads"
    ));
    Ok(section)
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
    bpf_ns: u64,
    /// iperf3: bytes received; churn: exchanges.
    work: f64,
    seconds: f64,
}

/// One round: per-program deltas over the whole workload, and the phases (iperf3, TCP, UDP).
struct Round {
    programs: Deltas,
    phases: [Phase; 3],
}

fn measure(ctx: &Ctx<'_>, seconds: u32, exchanges: usize, round: usize) -> anyhow::Result<Round> {
    let config = observer::config_from_env();
    let target = Target { cgroup: ctx.cgroup, netns: &ctx.pair.a, device: DEV_A, monitor_config: config.as_deref() };
    let running = observer::start(Observer::Monitor, target, ctx.tools, &format!("kernel-{round}"))?;
    let pid = running.pid().context("monitor pid")?;
    let stats_fd = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS failed")?;
    let first = snapshot(pid)?;
    let mut last = first.clone();
    let mut phases = [Phase { bpf_ns: 0, work: 0.0, seconds: 0.0 }; 3];
    for (i, phase) in phases.iter_mut().enumerate() {
        let t = std::time::Instant::now();
        phase.work = match i {
            0 => iperf(ctx, seconds, round)?,
            1 => churn(ctx, Proto::Tcp, exchanges, round)?,
            _ => churn(ctx, Proto::Udp, exchanges, round)?,
        };
        phase.seconds = t.elapsed().as_secs_f64();
        let now = snapshot(pid)?;
        phase.bpf_ns = deltas(&last, now.clone()).values().map(|d| d.1).sum();
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
