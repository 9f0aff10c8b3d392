//! `cargo xtask setup`: everything a fresh machine needs, installed idempotently through the
//! package registries' own clients, each step announced.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::{
    exec::{exec, exec_download, output},
    geo,
};

/// bpf-linker release and LLVM major that match nightly 1.97 (LLVM 22).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The benchmark peer bandwhich, pinned: an unpinned install takes whatever was published last,
/// which may need a newer compiler than the pinned toolchain (and changes the peer's figures).
const BANDWHICH_VERSION: &str = "0.23.1";
const LLVM_MAJOR: &str = "22";

/// `cargo xtask setup` options.
#[derive(clap::Args, Default)]
pub struct Args {
    /// Also install the benchmark peers and load generators (iperf3, nethogs, bandwhich).
    #[arg(long)]
    pub bench: bool,
    /// Do not fetch the default geolocation data.
    #[arg(long)]
    pub no_geo: bool,
}

/// Runs every step.
pub fn run(args: &Args) -> anyhow::Result<()> {
    bpf_toolchain_components()?;
    bpf_linker()?;
    apt_install(&[
        ("iproute2", "network namespaces in tests"),
        ("sqlite3", "root tests open the journal with an external sqlite3 session while the daemon writes"),
        ("iso-codes", "ISO 3166 country codes for `cargo xtask world`"),
        ("chromium", "the HTML report's browser test renders the page headless, offline"),
        ("systemd", "systemd-analyze rates the service unit's exposure in tests"),
        ("file", "`cargo xtask dist` checks that the static binaries are static ELF for the right machine"),
        ("prometheus", "promtool checks the metrics and alerting rules; root tests scrape with a real server"),
        ("dnsmasq-base", "names root tests: an authoritative DNS server and a local stub resolver in namespaces"),
        ("minisign", "evidence tests check signed bundle manifests with the standard `minisign -V`"),
    ])?;
    if !args.no_geo {
        geo::ensure_default()?;
    }
    if args.bench {
        apt_install(&[("iperf3", "throughput benchmark"), ("nethogs", "benchmark peer")])?;
        cargo_install("bandwhich", Some(BANDWHICH_VERSION), &[])?;
    }
    Ok(())
}

fn say(msg: &str) {
    eprintln!("xtask setup: {msg}");
}

/// The BPF toolchain's components (nightly unless `MONITOR_BPF_TOOLCHAIN` names another):
/// rust-src for the BPF build, clippy for linting the BPF crate (`cargo xtask test`).
fn bpf_toolchain_components() -> anyhow::Result<()> {
    let toolchain = crate::exec::bpf_toolchain();
    let installed =
        output(Command::new("rustup").args(["component", "list", "--toolchain", &toolchain, "--installed"]))
            .with_context(|| {
                format!("rustup cannot list the components of toolchain `{toolchain}`, which the BPF build needs")
            })?;
    for (component, why) in [
        ("rust-src", "the BPF build compiles core from source"),
        ("clippy", "`cargo xtask test` lints the BPF programs"),
    ] {
        if installed.lines().any(|l| l.starts_with(component)) {
            continue;
        }
        say(&format!("installing {component} for the {toolchain} toolchain ({why})"));
        exec(rustup_retrying().args(["component", "add", component, "--toolchain", &toolchain]))?;
    }
    Ok(())
}

fn is_installed(package: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))
        .is_some_and(|s| s.contains("install ok installed"))
}

/// Installs missing Debian packages (`apt-get update` once, only when something is missing).
pub fn apt_install(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str)> = packages.iter().filter(|(p, _)| !is_installed(p)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (p, why) in &missing {
        say(&format!("installing Debian package {p} ({why})"));
    }
    if output(Command::new("id").arg("-u")).is_none_or(|s| s.trim() != "0") {
        let names: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
        bail!("root is needed to install packages; run as root, or: sudo apt-get install {}", names.join(" "));
    }
    exec_download(Command::new("apt-get").args(["update", "-q", "-o", "Acquire::Retries=5"]))?;
    exec_download(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "-o", "Acquire::Retries=5"])
            .args(missing.iter().map(|(p, _)| *p))
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Installs a crate's binary with cargo unless that version is already on PATH.
fn cargo_install(name: &str, version: Option<&str>, extra: &[&str]) -> anyhow::Result<()> {
    let present = output(Command::new(name).arg("--version"));
    if present.as_deref().is_some_and(|v| version.is_none_or(|want| v.contains(want))) {
        return Ok(());
    }
    say(&format!("installing {name} {} with cargo install", version.unwrap_or("(latest)")));
    let mut cmd = Command::new("cargo");
    cmd.args(["install", "--locked", name]);
    if let Some(v) = version {
        cmd.args(["--version", v]);
    }
    cmd.args(extra);
    let path = format!("/usr/lib/llvm-{LLVM_MAJOR}/bin:{}", std::env::var("PATH").unwrap_or_default());
    // cargo retries its own downloads; running the whole install again would build it again.
    exec(cmd.env("PATH", path).env("CARGO_NET_RETRY", "10"))
}

/// `rustup`, retrying its own downloads more often than by default (a component or target is tens
/// of MB).
pub fn rustup_retrying() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.env("RUSTUP_MAX_RETRIES", "10");
    cmd
}

fn bpf_linker() -> anyhow::Result<()> {
    let ok = output(Command::new("bpf-linker").arg("--version")).is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    if ok {
        return Ok(());
    }
    let llvm = format!("llvm-{LLVM_MAJOR}-dev");
    let polly = format!("libpolly-{LLVM_MAJOR}-dev");
    apt_install(&[
        (&llvm, "bpf-linker links against LLVM 22, the LLVM of nightly 1.97"),
        (&polly, "needed by llvm-config of LLVM 22"),
        ("zlib1g-dev", "bpf-linker build"),
        ("libzstd-dev", "bpf-linker build"),
    ])?;
    let feature = format!("llvm-{LLVM_MAJOR}");
    cargo_install("bpf-linker", Some(BPF_LINKER_VERSION), &["--no-default-features", "--features", &feature])
}
