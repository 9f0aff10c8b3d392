//! Benchmark 1, throughput cost: one TCP bulk transfer (iperf3, one stream) over the veth pair (client in
//! namespace `a`, server in `b`) and over loopback (both in `a`), with each observer. Both iperf3
//! processes are in the load cgroup, which the monitor watches, so it counts both ends of every
//! transfer (the harder case); the peers capture on the device carrying the transfer.

use std::{
    fs,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::{
    Ctx,
    env::{ADDR_A, ADDR_B, DEV_A, Place, Proc, wait_for_text},
    observer::{self, Cost, Observer, Target},
    output::{Row, Section},
    parse,
    procstat::{MachineLoad, MachineTicks},
    stats::{Summary, alternate, bracketing_baseline, paired_ratios, show, steal_adjusted},
};

const PORT: u16 = 5201;
/// Goal: throughput with the monitor ≥ 0.97 of the baseline.
const GOAL_RELATIVE: f64 = 0.97;
/// Goal: under 2 % of one core per Gbit/s.
const GOAL_CPU_PER_GBPS: f64 = 2.0;

#[derive(Debug, Clone, Copy)]
enum Path {
    Veth,
    Loopback,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Self::Veth => "veth",
            Self::Loopback => "loopback",
        }
    }
}

/// One transfer.
#[derive(Debug, Serialize)]
struct Sample {
    gbps: f64,
    bytes_sent: u64,
    cost: Option<Cost>,
    /// The whole machine over the sample.
    machine: MachineLoad,
    /// Monitor only: largest payload the monitor recorded for the client's data socket ÷ bytes
    /// iperf3 sent (1.0 = exact).
    monitor_payload_ratio: Option<f64>,
}

/// Runs the benchmark.
pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("throughput");
    // Short samples, many rounds: on a shared VM single-stream throughput swings by ±20 % from
    // one sample to the next (steal, vCPU placement); the more pairs, the steadier the median.
    let (seconds, rounds) = if ctx.quick { (2, 1) } else { (5, 10) };
    let configs = ctx.tools.configs();
    let mut data = serde_json::Map::new();
    let mut all_steal = Vec::new();
    for path in [Path::Veth, Path::Loopback] {
        let results = alternate(&configs, rounds, |o, round| sample(ctx, path, o, seconds, round));
        let results: Vec<Vec<Option<Sample>>> =
            results.into_iter().map(|v| v.into_iter().map(Result::ok).collect()).collect();
        let gbps = |i: usize| -> Vec<Option<f64>> { results[i].iter().map(|s| s.as_ref().map(|s| s.gbps)).collect() };
        let adjusted = |i: usize| -> Vec<Option<f64>> {
            results[i].iter().map(|s| s.as_ref().map(|s| steal_adjusted(s.gbps, s.machine.steal_percent))).collect()
        };
        let base = bracketing_baseline(&gbps(0));
        let base_adj = bracketing_baseline(&adjusted(0));
        all_steal.extend(results.iter().flatten().flatten().map(|s| s.machine.steal_percent));
        let mut per_config = serde_json::Map::new();
        for (i, o) in configs.iter().enumerate() {
            let abs = Summary::of(&gbps(i).into_iter().flatten().collect::<Vec<_>>());
            let rel = Summary::of(&paired_ratios(&gbps(i), &base));
            let rel_adj = Summary::of(&paired_ratios(&adjusted(i), &base_adj));
            let costs: Vec<(&Cost, f64)> =
                results[i].iter().flatten().filter_map(|s| s.cost.as_ref().map(|c| (c, s.gbps))).collect();
            let cpu = Summary::of(&costs.iter().map(|(c, _)| c.core_percent()).collect::<Vec<_>>());
            let cpu_per_gbps =
                Summary::of(&costs.iter().map(|(c, g)| c.core_percent() / g.max(1e-9)).collect::<Vec<_>>());
            let peak = Summary::of(&costs.iter().map(|(c, _)| c.peak_rss_kib as f64 / 1024.0).collect::<Vec<_>>());
            let m = format!("{} throughput", path.name());
            if *o == Observer::None {
                section.rows.push(Row::info(format!("{m} (Gbit/s)"), o.name(), show(abs, 2)));
            } else {
                let rel_s = format!("{} of none ({} Gbit/s)", show(rel, 3), show(abs, 2));
                if *o == Observer::Monitor {
                    section.rows.push(Row::info(format!("{m} (relative, raw)"), o.name(), rel_s));
                    let ok = rel_adj.is_some_and(|r| r.median >= GOAL_RELATIVE);
                    section.rows.push(Row::goal(
                        format!("{m} (relative, steal-adjusted)"),
                        o.name(),
                        show(rel_adj, 3),
                        "≥ 0.97",
                        ok,
                    ));
                    let acc = Summary::of(
                        &results[i].iter().flatten().filter_map(|s| s.monitor_payload_ratio).collect::<Vec<_>>(),
                    );
                    section.rows.push(Row::info(
                        format!("{m}: payload recorded ÷ bytes iperf3 sent"),
                        o.name(),
                        show(acc, 6),
                    ));
                    let ok = cpu_per_gbps.is_some_and(|c| c.median < GOAL_CPU_PER_GBPS);
                    section.rows.push(Row::goal(
                        format!("{m}: CPU % of a core per Gbit/s"),
                        o.name(),
                        show(cpu_per_gbps, 3),
                        "< 2",
                        ok,
                    ));
                } else {
                    section.rows.push(Row::info(
                        format!("{m} (relative, raw / steal-adjusted)"),
                        o.name(),
                        format!("{rel_s} / {}", show(rel_adj, 3)),
                    ));
                    section.rows.push(Row::info(
                        format!("{m}: CPU % of a core per Gbit/s"),
                        o.name(),
                        show(cpu_per_gbps, 3),
                    ));
                }
                section.rows.push(Row::info(
                    format!("{m}: CPU % of a core / peak RSS MiB"),
                    o.name(),
                    format!("{} / {}", show(cpu, 2), show(peak, 1)),
                ));
            }
            per_config.insert(
                o.name().into(),
                json!({ "gbps": abs, "relative": rel, "relative_steal_adjusted": rel_adj, "cpu_core_percent": cpu, "cpu_percent_per_gbps": cpu_per_gbps,
                        "peak_rss_mib": peak, "samples": results[i] }),
            );
        }
        data.insert(path.name().into(), serde_json::Value::Object(per_config));
    }
    section.data = json!({ "seconds_per_transfer": seconds, "rounds": rounds, "paths": data });
    section.notes.push(format!(
        "iperf3 -t {seconds}, 1 TCP stream, {rounds} round(s) alternating {}; both iperf3 ends in the watched cgroup; relative = \
         per-round ratio to the mean of the baselines before and after; steal-adjusted = each sample's throughput ÷ (1 − the \
         machine's steal share during it), as CPU-bound transfers get only the CPU the hypervisor leaves",
        configs.iter().map(|o| o.name()).collect::<Vec<_>>().join(" ")
    ));
    let steal = Summary::of(&all_steal);
    section.notes.push(format!("hypervisor steal during throughput samples: {} % of all CPU time", show(steal, 1)));
    Ok(section)
}

fn sample(ctx: &Ctx<'_>, path: Path, o: Observer, seconds: u32, round: usize) -> anyhow::Result<Sample> {
    let tag = format!("tput-{}-{round}", path.name());
    let (server_ns, addr, device) = match path {
        Path::Veth => (&ctx.pair.b, ADDR_B, DEV_A),
        Path::Loopback => (&ctx.pair.a, "127.0.0.1", "lo"),
    };
    let target = Target { cgroup: ctx.cgroup, netns: &ctx.pair.a, device, monitor_config: None };
    let running = observer::start(o, target, ctx.tools, &tag)?;
    let ticks = MachineTicks::now();
    let work = &ctx.tools.work;
    let server_out = work.join(format!("{tag}-iperf3-server.out"));
    let client_out = work.join(format!("{tag}-iperf3-client.json"));
    let mut server_cmd = Command::new("iperf3");
    server_cmd
        .args(["-s", "-1", "--forceflush", "-B", addr, "-p", &PORT.to_string()])
        .stdout(fs::File::create(&server_out)?)
        .stderr(Stdio::null());
    let mut server =
        Proc::spawn("iperf3 server", &mut server_cmd, Place { netns: Some(server_ns), cgroup: Some(ctx.cgroup) })?;
    wait_for_text(&server_out, "listening", Duration::from_secs(10), &mut server)?;
    let mut client_cmd = Command::new("iperf3");
    let bind = if matches!(path, Path::Veth) { ADDR_A } else { "127.0.0.1" };
    client_cmd
        .args(["-c", addr, "-B", bind, "-p", &PORT.to_string(), "-t", &seconds.to_string(), "-J"])
        .stdout(fs::File::create(&client_out)?)
        .stderr(Stdio::null());
    let mut client =
        Proc::spawn("iperf3 client", &mut client_cmd, Place { netns: Some(&ctx.pair.a), cgroup: Some(ctx.cgroup) })?;
    let client_pid = client.pid();
    let finished = client.wait_timeout(Duration::from_secs(u64::from(seconds) + 30))?;
    let _ = server.wait_timeout(Duration::from_secs(5));
    let machine = ticks.load_since();
    let (cost, out) = running.stop()?;
    let report: serde_json::Value = serde_json::from_str(&fs::read_to_string(&client_out)?)
        .with_context(|| format!("iperf3 report {}", client_out.display()))?;
    anyhow::ensure!(finished, "iperf3 client failed: {}", report["error"]);
    let gbps =
        report["end"]["sum_received"]["bits_per_second"].as_f64().context("no throughput in the iperf3 report")? / 1e9;
    let bytes_sent = report["end"]["sum_sent"]["bytes"].as_u64().unwrap_or(0);
    let monitor_payload_ratio = if o == Observer::Monitor {
        let run = parse::monitor(&out)?;
        let max_tx =
            run.flows.iter().filter(|f| f.owner.tgid == client_pid).map(|f| f.payload.tx_bytes).max().unwrap_or(0);
        Some(max_tx as f64 / bytes_sent.max(1) as f64)
    } else {
        None
    };
    for p in [&server_out, &client_out, &out] {
        observer::discard(p);
    }
    Ok(Sample { gbps, bytes_sent, cost, machine, monitor_payload_ratio })
}
