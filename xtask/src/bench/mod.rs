//! `cargo xtask bench`: what the monitor costs the traffic it watches, how much of it it catches,
//! and how it compares with the tools users pick today (nethogs, bandwhich). BENCHMARKS.md has
//! the latest figures and how to read them.
//!
//! One command runs every benchmark, prints a table and writes every figure with the machine
//! description to `target/bench/results.json`. Comparisons alternate their configurations
//! (none, monitor, nethogs, bandwhich, none, ...) for several rounds and report medians with min
//! and max. `--quick` runs each benchmark for seconds (the test suite runs it so the harness
//! cannot rot); figures never fail a run, only a broken harness does.
//!
//! Modules: [`machine`] (description), [`env`] (namespaces, cgroup, processes; all `Drop`
//! guards), [`stats`] (alternation, medians), [`observer`] (starting/stopping/costing the
//! monitor and the peers), [`parse`] (their outputs), one module per benchmark
//! ([`throughput`], [`churn`], [`listeners`], [`sockets`], [`kernel`], [`plugin`] for enrichment and reports),
//! [`output`] (table, JSON) and [`load`] (the load generator, `xtask bench-load`).
//!
//! Everything runs on this machine's cores, shared: load generator, server, observer and the
//! kernel's softirq work compete for them (2 on CI), as they would on a device.

mod budget;
mod churn;
mod env;
mod kernel;
mod listeners;
pub mod load;
mod machine;
mod observer;
mod output;
mod packets;
mod parse;
mod plugin;
mod procstat;
mod sockets;
mod stats;
mod throughput;

use std::{
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::json;

use self::{
    env::{Cgroup, Pair},
    observer::{Observer, Tools},
    output::Section,
};
use crate::exec::{cargo, exec, output as cmd_output, target_dir};

/// `cargo xtask bench` options.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Run each benchmark briefly (used by the test suite so the harness cannot rot).
    #[arg(long)]
    pub quick: bool,
    /// Run only these benchmarks (comma-separated: throughput, churn, listeners, sockets,
    /// kernel, enrichment, reports). Example: --only churn,kernel
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Compare only these observers with the baseline (comma-separated: monitor, nethogs,
    /// bandwhich); the others are listed as skipped. Example: --observers monitor
    #[arg(long, value_delimiter = ',', value_parser = ["monitor", "nethogs", "bandwhich"])]
    pub observers: Vec<String>,
}

/// Shared by every benchmark.
pub struct Ctx<'a> {
    /// Binaries and scratch directory.
    pub tools: &'a Tools,
    /// Namespaces `a` (clients, peers) and `b` (servers).
    pub pair: &'a Pair,
    /// The cgroup holding the load, watched by the monitor.
    pub cgroup: &'a Cgroup,
    /// `--quick`.
    pub quick: bool,
}

/// One benchmark: runs against the shared context and returns its section.
type Benchmark = fn(&Ctx<'_>) -> anyhow::Result<Section>;

/// Set by SIGINT/SIGTERM: benchmarks stop at the next sample and everything is cleaned up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Whether the run was interrupted.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

/// Runs the benchmarks.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    if cmd_output(Command::new("id").arg("-u")).is_none_or(|s| s.trim() != "0") {
        bail!("benchmarks need root (network namespaces, cgroups, BPF); run `cargo xtask bench` as root");
    }
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::Relaxed));
    let tools = tools(args.quick, &args.observers)?;
    let machine = machine::describe();
    env::remove_stale();
    let pair = Pair::new()?;
    let cgroup = Cgroup::new(&format!("monitor-bench-{}", std::process::id()))?;
    let ctx = Ctx { tools: &tools, pair: &pair, cgroup: &cgroup, quick: args.quick };
    let benchmarks: [(&str, Benchmark); 7] = [
        ("throughput", throughput::run),
        ("churn", churn::run),
        ("listeners", listeners::run),
        ("sockets", sockets::run),
        ("kernel", kernel::run),
        ("enrichment", plugin::enrichment),
        ("reports", plugin::reports),
    ];
    let mut sections = Vec::new();
    for (name, bench) in benchmarks {
        if interrupted() {
            break;
        }
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        eprintln!("bench: {name}...");
        let t = Instant::now();
        let mut s = bench(&ctx).unwrap_or_else(|e| {
            let mut s = Section::new(name);
            s.error = Some(format!("{e:#}"));
            s
        });
        s.seconds = t.elapsed().as_secs_f64();
        eprintln!("bench: {name} done in {:.0} s", s.seconds);
        sections.push(s);
    }
    drop(cgroup);
    drop(pair);
    let mode = if args.quick { "quick" } else { "full" };
    let command = if args.quick { "cargo xtask bench --quick" } else { "cargo xtask bench" };
    let skipped: Vec<String> = tools.missing.iter().map(|(o, why)| format!("{}: {why}", o.name())).collect();
    let elapsed = started.elapsed().as_secs_f64();
    println!("{command} ({mode} mode, {elapsed:.0} s)");
    println!("machine: {}", machine.summary());
    for s in &skipped {
        println!("peer skipped: {s}");
    }
    println!();
    print!("{}", output::table(&sections));
    let results = json!({
        "command": command,
        "mode": mode,
        "date": cmd_output(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])).unwrap_or_default().trim(),
        "duration_s": elapsed,
        "machine": machine,
        "binaries": { "monitor": tools.monitor, "load": tools.load, "profile": if args.quick { "debug" } else { "release" } },
        "observers_skipped": skipped,
        "sections": sections,
    });
    let path = target_dir().join("bench/results.json");
    output::write_json(&path, &results)?;
    println!("\nresults: {}", path.display());
    if interrupted() {
        bail!("interrupted");
    }
    let broken: Vec<&str> = sections.iter().filter(|s| s.error.is_some()).map(|s| s.name.as_str()).collect();
    if !broken.is_empty() {
        bail!("benchmark harness failed in: {} (see the table)", broken.join(", "));
    }
    Ok(())
}

/// Builds the monitor (and, for full runs, a release load generator) and finds the peers.
/// Quick mode uses debug binaries, which the test suite has already built.
fn tools(quick: bool, observers: &[String]) -> anyhow::Result<Tools> {
    let profile = if quick { "debug" } else { "release" };
    let mut build = cargo();
    if quick {
        // The test suite's build (same packages, same features): after `cargo xtask test` this
        // builds nothing, where `cargo build -p monitor` would build every crate a second time.
        build.args(["test", "--no-run", "--quiet"]);
    } else {
        build.args(["build", "--quiet", "--package", "monitor", "--package", "xtask", "--release"]);
    }
    exec(&mut build).context("cannot build the benchmark binaries")?;
    let bin = target_dir().join(profile);
    let load = if quick { std::env::current_exe()? } else { bin.join("xtask") };
    let mut missing = Vec::new();
    for (o, probe) in [(Observer::Nethogs, ["nethogs", "-V"]), (Observer::Bandwhich, ["bandwhich", "--version"])] {
        if Command::new(probe[0]).arg(probe[1]).output().is_err() {
            missing.push((o, format!("`{}` not found (cargo xtask setup --bench installs it)", probe[0])));
        }
    }
    if !observers.is_empty() {
        for o in [Observer::Monitor, Observer::Nethogs, Observer::Bandwhich] {
            if !observers.iter().any(|n| n == o.name()) && !missing.iter().any(|(m, _)| *m == o) {
                missing.push((o, "not selected (--observers)".to_owned()));
            }
        }
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        bail!("iperf3 not found (cargo xtask setup --bench installs it)");
    }
    let work = target_dir().join("bench/work");
    std::fs::create_dir_all(&work)?;
    Ok(Tools { monitor: bin.join("monitor"), load, missing, work })
}
