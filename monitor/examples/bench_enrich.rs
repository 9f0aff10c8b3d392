//! Plug-in of `cargo xtask bench` (xtask/src/bench/plugin.rs): country + ASN lookups per second
//! with the default databases. The harness builds it with
//! `cargo build -p monitor --example bench_enrich`.
//!
//! `bench_enrich --addresses FILE --mode uncached|cached [--working-set N] [--databases all|two]`
//! - `--databases all` (default): every default database (country, ASN and the registry country
//!   compared for consensus); `two`: country and ASN only (the registry left out), so the
//!   difference is the cost of the extra database.
//! - `uncached`: cache disabled (`cache_entries = 0`), every address of FILE looked up once.
//! - `cached`: default cache; the first N addresses (default 10,000, within the default cache of
//!   16,384) are looked up once to warm it, then as many lookups as FILE has lines cycle over them.
//!
//! - `--warm N` (`uncached` only): the first N addresses of FILE are looked up before the timer
//!   starts and the rest are timed: the databases' jump tables and decoded records are then as
//!   warm as in a daemon that has run a while (still no answer cache, and no timed address was
//!   looked up before).
//!
//! - `--digest`: after the timed lookups, every address of FILE is looked up again and a
//!   digest of all the answers (every field, in order) is added as `"digest"`: two builds that
//!   print the same digest gave the same answers.
//!
//! Prints `{"lookups":…,"seconds":…,"country_found":…,"asn_found":…}`; `seconds` covers the
//! timed lookups only (not loading the databases or reading FILE, nor the digest).
#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a bench plug-in: prints its result and usage errors")]

use std::{
    fs::File,
    hash::{Hash as _, Hasher as _},
    io::{BufRead as _, BufReader},
    net::IpAddr,
    time::Instant,
};

use anyhow::{Context as _, bail};
use monitor::enrich::{Enricher, GeoConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let path = arg("--addresses").context("usage: bench_enrich --addresses FILE --mode uncached|cached")?;
    let mode = arg("--mode").unwrap_or_else(|| "uncached".into());
    let working_set: usize = arg("--working-set").map_or(Ok(10_000), |v| v.parse()).context("--working-set")?;
    let databases = arg("--databases").unwrap_or_else(|| "all".into());
    let warm: usize = arg("--warm").map_or(Ok(0), |v| v.parse()).context("--warm")?;
    if warm > 0 && mode != "uncached" {
        bail!("--warm is for --mode uncached");
    }
    let mut addrs: Vec<IpAddr> = Vec::new();
    for line in BufReader::new(File::open(&path).with_context(|| format!("cannot open {path}"))?).lines() {
        addrs.push(line?.trim().parse().context("not an address")?);
    }
    let defaults = GeoConfig::default();
    let cache_entries = match mode.as_str() {
        "uncached" => 0,
        "cached" => defaults.cache_entries,
        other => bail!("unknown mode {other}"),
    };
    let config = GeoConfig { cache_entries, ..defaults };
    let empty = tempfile::tempdir()?;
    let mut enricher = match databases.as_str() {
        "all" => Enricher::open(&config)?,
        // Country and ASN named explicitly; the default directory searched for the registry file
        // is empty, so it is left out.
        "two" => Enricher::open_in(
            &GeoConfig {
                country_db: Some(monitor::enrich::default_path(monitor::enrich::Role::Country)),
                asn_db: Some(monitor::enrich::default_path(monitor::enrich::Role::Asn)),
                ..config
            },
            empty.path(),
        )?,
        other => bail!("unknown --databases {other}"),
    };
    for w in enricher.warnings() {
        eprintln!("bench_enrich: {w}");
    }
    // The daemon drops the files' unmapped cached pages when it maps them and then reads each
    // page on first touch (`enrich::db`, to keep only used pages resident). Read the files once
    // so the timed lookups measure lookups, not the disk, as on a daemon that has run a while.
    for db in enricher.databases() {
        std::fs::read(&db.path).with_context(|| format!("cannot read {}", db.path.display()))?;
    }
    if warm > 0 {
        for ip in addrs.iter().take(warm) {
            enricher.lookup(*ip);
        }
        addrs.drain(..warm.min(addrs.len()));
        anyhow::ensure!(!addrs.is_empty(), "--warm {warm} leaves no address of {path} to time");
    }
    let set: &[IpAddr] = if mode == "cached" { &addrs[..working_set.min(addrs.len()).max(1)] } else { &addrs };
    if mode == "cached" {
        for ip in set {
            enricher.lookup(*ip);
        }
    }
    let (mut country, mut asn, mut disagree) = (0u64, 0u64, 0u64);
    let start = Instant::now();
    for i in 0..addrs.len() {
        let d = enricher.lookup(set[i % set.len()]);
        country += u64::from(d.country.is_some());
        asn += u64::from(d.asn.is_some());
        disagree += u64::from(d.consensus == Some(monitor::enrich::Consensus::Disagree));
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut out = serde_json::json!({
        "lookups": addrs.len(), "seconds": seconds, "country_found": country, "asn_found": asn,
        "disagree": disagree, "mode": mode, "warmed_with": warm, "databases": enricher.databases().len()
    });
    if args.iter().any(|a| a == "--digest") {
        // SipHash with fixed keys: the same answers give the same digest in every build.
        let mut digest = std::hash::DefaultHasher::new();
        for ip in &addrs {
            enricher.lookup(*ip).hash(&mut digest);
        }
        out["digest"] = format!("{:016x}", digest.finish()).into();
    }
    println!("{out}");
    Ok(())
}
