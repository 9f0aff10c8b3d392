//! Benchmark 2b, old listeners: the TCP churn of [`churn`] (clients in namespace `a`, server in
//! `b`, both in the watched cgroup), once with the server started after the monitor (a new
//! listener: the kernel records its owner at `socket()`) and once with the server started before
//! it (an old listener, like every service on a host where the monitor starts later: its owner
//! comes from the daemon's start-up pass over /proc). Side by side: exchange rate, the monitor's
//! CPU per exchange and memory, and how many inbound flows are charged to the server with exact
//! bytes. Goal: old listeners cost what new ones do, every flow attributed.

use serde::Serialize;
use serde_json::json;

use super::{
    Ctx,
    churn::{self, Completeness, Sample},
    load::Proto,
    observer::Observer,
    output::{Row, Section},
    stats::{Summary, alternate, bracketing_baseline, paired_ratios, show},
};

/// A configuration of this comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Case {
    /// Nothing watching.
    None,
    /// Monitor first, then the server.
    NewListener,
    /// Server first, then the monitor.
    OldListener,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::NewListener => "monitor, new listener",
            Self::OldListener => "monitor, old listener",
        }
    }
}

/// Monitor CPU milliseconds per 1,000 exchanges.
fn cpu_per_1000(s: &Sample) -> Option<f64> {
    let cost = s.cost.as_ref()?;
    (s.ok > 0).then(|| 1e6 * cost.cpu.total() / s.ok as f64)
}

/// Runs the benchmark.
pub fn run(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("listeners");
    let (count, rounds) = if ctx.quick { (5_000, 1) } else { (50_000, 3) };
    let cases = [Case::None, Case::NewListener, Case::OldListener];
    let results = alternate(&cases, rounds, |c, round| {
        let o = if c == Case::None { Observer::None } else { Observer::Monitor };
        churn::sample(ctx, Proto::Tcp, o, count, round, c == Case::OldListener)
    });
    let results: Vec<Vec<Option<Sample>>> =
        results.into_iter().map(|v| v.into_iter().map(Result::ok).collect()).collect();
    let rates = |i: usize| -> Vec<Option<f64>> { results[i].iter().map(|s| s.as_ref().map(|s| s.rate)).collect() };
    let base = bracketing_baseline(&rates(0));
    let mut data = serde_json::Map::new();
    for (i, c) in cases.iter().enumerate() {
        let samples: Vec<&Sample> = results[i].iter().flatten().collect();
        let abs = Summary::of(&rates(i).into_iter().flatten().collect::<Vec<_>>());
        let rel = Summary::of(&paired_ratios(&rates(i), &base));
        let per_1000 = Summary::of(&samples.iter().filter_map(|s| cpu_per_1000(s)).collect::<Vec<_>>());
        let cpu =
            Summary::of(&samples.iter().filter_map(|s| s.cost.as_ref()).map(|c| c.core_percent()).collect::<Vec<_>>());
        let peak = Summary::of(
            &samples.iter().filter_map(|s| s.cost.as_ref()).map(|c| c.peak_rss_kib as f64 / 1024.0).collect::<Vec<_>>(),
        );
        if *c == Case::None {
            section.rows.push(Row::info("inbound churn rate (exchanges/s)", c.name(), show(abs, 0)));
        } else {
            section.rows.push(Row::info(
                "inbound churn rate (relative)",
                c.name(),
                format!("{} of none ({}/s)", show(rel, 3), show(abs, 0)),
            ));
            section.rows.push(Row::info(
                "inbound churn: CPU ms per 1000 exchanges / % of a core / peak RSS MiB",
                c.name(),
                format!("{} / {} / {}", show(per_1000, 1), show(cpu, 1), show(peak, 1)),
            ));
            let server: Vec<Completeness> = samples.iter().filter_map(|s| s.server).collect();
            let worst = server.iter().copied().min_by(|a, b| a.exact_fraction().total_cmp(&b.exact_fraction()));
            if let Some(w) = worst {
                let ok = server.iter().all(|s| s.exact == s.expected);
                section.rows.push(Row::goal(
                    "inbound churn: attributed to the server (worst run)",
                    c.name(),
                    w.show(),
                    "100 %",
                    ok,
                ));
            }
            let lossless = samples.iter().filter_map(|s| s.stats.as_ref()).all(|s| s.lossless());
            section.rows.push(Row::goal(
                "inbound churn: events lost",
                c.name(),
                if lossless { "none" } else { "some" },
                "none",
                lossless,
            ));
        }
        data.insert(
            c.name().into(),
            json!({ "rate": abs, "relative": rel, "cpu_ms_per_1000": per_1000, "cpu_core_percent": cpu, "peak_rss_mib": peak, "samples": results[i] }),
        );
    }
    // Old vs new, paired by round.
    let paired = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<Summary> {
        let old: Vec<Option<f64>> = results[2].iter().map(|s| s.as_ref().and_then(f)).collect();
        let new: Vec<Option<f64>> = results[1].iter().map(|s| s.as_ref().and_then(f)).collect();
        Summary::of(&paired_ratios(&old, &new))
    };
    let rate = paired(&|s| Some(s.rate));
    let cost = paired(&cpu_per_1000);
    let ok = rate.is_some_and(|r| r.median >= 0.8) && cost.is_some_and(|c| c.median <= 1.25);
    section.rows.push(Row::goal(
        "inbound churn: old listener ÷ new listener (rate / CPU per exchange)",
        "monitor",
        format!("{} / {}", show(rate, 3), show(cost, 3)),
        "rate ≥ 0.8, CPU ≤ 1.25",
        ok,
    ));
    section.data = json!({ "exchanges": count, "rounds": rounds, "client_processes": churn::PROCS, "cases": data });
    section.notes.push(format!(
        "{count} TCP exchanges of 1 KiB each way per run, {} client processes, {rounds} round(s); \"old listener\": the server \
         was listening before the monitor started",
        churn::PROCS
    ));
    Ok(section)
}
