//! Benchmarks 5 (enrichment) and 6 (reports): library code of the `monitor` crate
//! (`monitor::enrich` lookups, `monitor::journal` + `monitor::report`).
//!
//! xtask cannot link the `monitor` crate (building xtask must not need the BPF toolchain that
//! `cargo xtask setup` installs), so these benchmarks drive two example programs of the `monitor`
//! crate, built on demand, and are skipped until those files exist. Their reference sources are
//! `monitor/examples/{bench_enrich,bench_report}.rs`, written against the enrich/journal/report
//! API. Contract:
//!
//! - `bench_enrich --addresses FILE --mode uncached|cached`: loads the default databases, then
//!   times lookups and prints one JSON line `{"lookups": N, "seconds": S, "country_found": N,
//!   "asn_found": N}` (S covers the lookups only). FILE holds random public IPv4/IPv6 addresses,
//!   one per line (written by the harness from a fixed seed). `uncached`: cache disabled, each
//!   address once. `cached`: default cache, warmed with the first 10,000 addresses, then as many
//!   lookups as FILE has lines cycling over those (a device's working set of destinations).
//!   `--warm N` (uncached): the first N addresses are looked up untimed, the rest timed (a daemon
//!   whose jump tables and decoded records are warm, still without an answer cache).
//! - `bench_report generate --journal DIR --records N --days 7`: writes a synthetic journal
//!   (N connection records over one week, and that week's residency rows) with the daemon's
//!   writer; `bench_report weekly --journal DIR` builds the weekly report and prints it. The
//!   harness times both processes and takes the report's peak memory from `wait4`.

use std::{
    fs,
    io::{BufWriter, Write as _},
    net::{Ipv4Addr, Ipv6Addr},
    os::unix::process::ExitStatusExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, bail};
use nix::{
    sys::wait::{Id, WaitPidFlag, WaitStatus, waitid},
    unistd::Pid,
};
use serde_json::json;

use super::{
    Ctx,
    output::{Row, Section},
    stats::{Summary, show},
};
use crate::exec::{cargo, exec, workspace_root};

fn example(name: &str) -> Option<PathBuf> {
    let path = workspace_root().join("monitor/examples").join(format!("{name}.rs"));
    path.exists().then_some(path)
}

fn build_example(ctx: &Ctx<'_>, name: &str) -> anyhow::Result<PathBuf> {
    let mut cmd = cargo();
    if ctx.quick {
        // The test suite's package selection and features (it has built the examples already).
        cmd.args(["build", "--quiet", "--example", name]);
    } else {
        cmd.args(["build", "--quiet", "--package", "monitor", "--example", name, "--release"]);
    }
    exec(&mut cmd)?;
    let profile = if ctx.quick { "debug" } else { "release" };
    Ok(ctx
        .tools
        .monitor
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("target"))
        .join(profile)
        .join("examples")
        .join(name))
}

/// Runs `cmd` to the end; returns (stdout, wall seconds, user+system CPU seconds, peak RSS KiB).
fn measured(cmd: &mut Command) -> anyhow::Result<(String, f64, f64, u64)> {
    let out_path = std::env::temp_dir().join(format!("bench-plugin-{}.out", std::process::id()));
    cmd.stdout(fs::File::create(&out_path)?).stderr(Stdio::inherit());
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("failed to run {cmd:?}"))?;
    let pid = i32::try_from(child.id())?;
    // Peak memory from the child's own VmHWM, read until it exits: `ru_maxrss` would include the
    // memory of this (large) process, which the child starts as a copy of before `exec`.
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(vm_hwm_kib(child.id()).unwrap_or(0));
        // WNOWAIT leaves the child to be reaped by wait4 below; an error ends the loop too.
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        if !matches!(waitid(Id::Pid(Pid::from_raw(pid)), flags), Ok(WaitStatus::StillAlive)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // wait4 through libc: nix wraps no wait call that returns the child's rusage.
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it for our own child.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our child; `status` and `usage` are valid for writes.
    let r = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4 failed for {cmd:?}");
    }
    let status = std::process::ExitStatus::from_raw(status);
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    let secs = |t: nix::libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok((stdout, wall, secs(usage.ru_utime) + secs(usage.ru_stime), peak_kib))
}

/// `VmHWM` (peak resident set) of a running process, KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 5. Country and ASN lookups per second, cached and uncached.
pub fn enrichment(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("enrichment");
    if example("bench_enrich").is_none() {
        section.rows.push(Row::skipped("country + ASN lookups/s", "skipped: enrichment not available yet"));
        section.data = json!({ "skipped": "enrichment not available yet" });
        return Ok(section);
    }
    let bin = build_example(ctx, "bench_enrich")?;
    let (count, rounds) = if ctx.quick { (100_000, 1) } else { (1_000_000, 3) };
    let addresses = ctx.tools.work.join("addresses.txt");
    write_addresses(&addresses, count)?;
    // The same addresses first, then as many new ones: warm runs look the first half up untimed.
    let warm_addresses = ctx.tools.work.join("addresses-warm.txt");
    write_addresses(&warm_addresses, 2 * count)?;
    // (mode, databases, warm): every default database (country, ASN, registry country for
    // consensus), then country and ASN alone, so the registry database's cost shows on its own.
    // Cold: a fresh process, every jump table entry and decoded record made by the timed
    // lookups; warm: as in a daemon that has run a while (the goals are per lookup
    // without an answer cache; both are shown).
    let modes = [
        ("uncached", "all", false),
        ("uncached", "all", true),
        ("cached", "all", false),
        ("uncached", "two", false),
        ("uncached", "two", true),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut raw = Vec::new();
    for _ in 0..rounds {
        for (i, (mode, dbs, warm)) in modes.iter().enumerate() {
            let mut cmd = Command::new(&bin);
            if *warm {
                cmd.arg("--addresses").arg(&warm_addresses).args(["--warm", &count.to_string()]);
            } else {
                cmd.arg("--addresses").arg(&addresses);
            }
            let (out, _, _, peak) = measured(cmd.args(["--mode", mode, "--databases", dbs]))?;
            let v: serde_json::Value =
                serde_json::from_str(out.trim()).with_context(|| format!("bench_enrich said {out:?}"))?;
            let lookups = v["lookups"].as_f64().unwrap_or(0.0);
            let seconds = v["seconds"].as_f64().unwrap_or(0.0);
            if seconds > 0.0 {
                rates[i].push(lookups / seconds);
            }
            rss[i].push(peak as f64 / 1024.0);
            raw.push(json!({ "mode": mode, "databases": dbs, "warm": warm, "result": v, "peak_rss_kib": peak }));
        }
    }
    for (i, (mode, dbs, warm)) in modes.iter().enumerate() {
        let r = Summary::of(&rates[i]);
        let m = Summary::of(&rss[i]);
        let state = match (*mode, *warm) {
            ("cached", _) => "cached",
            (_, true) => "uncached, warm",
            _ => "uncached, cold",
        };
        let (metric, goal, shown) = if *dbs == "all" {
            (format!("country + ASN + registry country lookups/s, {state}"), 2_000_000.0, "≥ 2,000,000")
        } else {
            (format!("country + ASN lookups/s (registry left out), {state}"), 3_000_000.0, "≥ 3,000,000")
        };
        let value = format!("{} (peak RSS {} MiB)", show(r, 0), show(m, 1));
        section.rows.push(if *mode == "uncached" {
            Row::goal(metric, "-", value, shown, r.is_some_and(|r| r.median >= goal))
        } else {
            Row::info(metric, "-", value)
        });
    }
    let _ = fs::remove_file(&warm_addresses);
    let _ = fs::remove_file(&addresses);
    section.data = json!({ "addresses": count, "rounds": rounds, "samples": raw });
    Ok(section)
}

/// 6. Weekly report over a synthetic journal.
pub fn reports(ctx: &Ctx<'_>) -> anyhow::Result<Section> {
    let mut section = Section::new("reports");
    if example("bench_report").is_none() {
        section.rows.push(Row::skipped("weekly report, 10,000,000 records", "skipped: journal not available yet"));
        section.data = json!({ "skipped": "journal not available yet" });
        return Ok(section);
    }
    let bin = build_example(ctx, "bench_report")?;
    let (records, rounds) = if ctx.quick { (100_000, 1) } else { (10_000_000, 3) };
    let dir = ctx.tools.work.join("journal");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)?;
    let (_, gen_wall, _, gen_peak) = measured(Command::new(&bin).args(["generate", "--journal"]).arg(&dir).args([
        "--records",
        &records.to_string(),
        "--days",
        "7",
    ]))?;
    let journal_mib = fs::read_dir(&dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum::<u64>()
        as f64
        / 1_048_576.0;
    let mut walls = Vec::new();
    let mut peaks = Vec::new();
    let mut cpus = Vec::new();
    for _ in 0..rounds {
        let (_, wall, cpu, peak) = measured(Command::new(&bin).args(["weekly", "--journal"]).arg(&dir))?;
        walls.push(wall);
        cpus.push(cpu);
        peaks.push(peak as f64 / 1024.0);
    }
    let _ = fs::remove_dir_all(&dir);
    let (w, p, c) = (Summary::of(&walls), Summary::of(&peaks), Summary::of(&cpus));
    section.rows.push(Row::goal(
        format!("weekly report, {records} records"),
        "-",
        format!("{} s, CPU {} s, peak RSS {} MiB", show(w, 2), show(c, 2), show(p, 1)),
        "< 2 s",
        w.is_some_and(|w| w.median < 2.0),
    ));
    section.rows.push(Row::info(
        format!("writing the synthetic journal, {records} records"),
        "-",
        format!("{gen_wall:.1} s, peak RSS {:.1} MiB, journal {journal_mib:.0} MiB", gen_peak as f64 / 1024.0),
    ));
    section.data = json!({ "records": records, "rounds": rounds, "generate_seconds": gen_wall, "generate_peak_rss_kib": gen_peak,
                           "journal_mib": journal_mib, "report_seconds": w, "report_cpu_seconds": c, "report_peak_rss_mib": p });
    Ok(section)
}

/// Writes `count` random public addresses (80 % IPv4, 20 % IPv6 global unicast), one per line,
/// from a fixed seed so every run looks up the same list.
fn write_addresses(path: &Path, count: usize) -> anyhow::Result<()> {
    let mut out = BufWriter::new(fs::File::create(path)?);
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut written = 0;
    while written < count {
        let r = next();
        if r % 5 == 0 {
            let hi = (next() & 0x1fff_ffff_ffff_ffff) | 0x2000_0000_0000_0000; // 2000::/3
            let a = Ipv6Addr::from((u128::from(hi) << 64) | u128::from(next()));
            let s = a.segments();
            if s[0] == 0x2001 && (s[1] == 0x0db8 || s[1] < 0x0200) || s[0] == 0x2002 {
                continue; // documentation, IETF special-purpose, 6to4
            }
            writeln!(out, "{a}")?;
        } else {
            let a = Ipv4Addr::from((r >> 32) as u32);
            if !is_public_v4(a) {
                continue;
            }
            writeln!(out, "{a}")?;
        }
        written += 1;
    }
    out.flush()?;
    Ok(())
}

fn is_public_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    !(a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_multicast()
        || a.is_broadcast()
        || a.is_documentation()
        || a.is_unspecified()
        || o[0] == 0
        || o[0] >= 240
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 192 && o[1] == 88 && o[2] == 99)
        || (o[0] == 198 && (o[1] & 0xfe) == 18))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_v4_excludes_special_ranges() {
        for s in [
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "192.168.1.1",
            "198.18.0.1",
            "203.0.113.5",
            "224.0.0.1",
            "240.0.0.1",
            "0.1.2.3",
        ] {
            assert!(!is_public_v4(s.parse().unwrap()), "{s}");
        }
        for s in ["1.1.1.1", "8.8.8.8", "100.128.0.1", "198.20.0.1"] {
            assert!(is_public_v4(s.parse().unwrap()), "{s}");
        }
    }
}
