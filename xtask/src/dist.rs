//! `cargo xtask dist`: fully static monitor binaries (musl, SQLite bundled by rusqlite) for
//! x86_64 and aarch64, for Android guests and other hosts without a matching libc.
//!
//! Cross C toolchain: `cargo-zigbuild` and `ziglang` from PyPI, pinned, in a venv under the
//! target directory (installed idempotently, announced). The BPF object is built by
//! `monitor/build.rs` for the BPF target whatever the host target is. Output per architecture in
//! `target/dist/<arch>/`: `monitor`, `monitor.toml`, `geo/` (with licences) and `PROVENANCE`.
//! Each binary is checked with `file`: static ELF for the right machine, or the command fails.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    exec::{cargo, exec, exec_download, output, target_dir, workspace_root},
    geo::DEFAULT_GEO_DIR,
    setup,
};

/// Pinned cross toolchain (PyPI).
const CARGO_ZIGBUILD_VERSION: &str = "0.24.0";
const ZIGLANG_VERSION: &str = "0.17.0";

/// `cargo xtask dist` options.
#[derive(clap::Args)]
pub struct Args {
    /// Architecture(s) to build.
    #[arg(long, value_enum, default_value = "all")]
    pub target: Which,
}

/// Architectures `dist` builds.
#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    X86_64,
    Aarch64,
    All,
}

/// One architecture: directory name, Rust target triple, what `file` says about its machine.
struct Arch {
    name: &'static str,
    triple: &'static str,
    machine: &'static str,
}

const ARCHES: [Arch; 2] = [
    Arch { name: "x86_64", triple: "x86_64-unknown-linux-musl", machine: "x86-64" },
    Arch { name: "aarch64", triple: "aarch64-unknown-linux-musl", machine: "ARM aarch64" },
];

fn say(msg: &str) {
    eprintln!("xtask dist: {msg}");
}

/// Runs `cargo xtask dist`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let chosen: Vec<&Arch> = ARCHES
        .iter()
        .filter(|a| match args.target {
            Which::All => true,
            Which::X86_64 => a.name == "x86_64",
            Which::Aarch64 => a.name == "aarch64",
        })
        .collect();
    for arch in chosen {
        build(arch)?;
    }
    Ok(())
}

/// Builds, checks and packages one architecture; returns the packaged binary's path.
pub fn build_x86_64() -> anyhow::Result<PathBuf> {
    build(&ARCHES[0])
}

/// Root test filters run against the static x86_64 binary (`cargo xtask test` as root).
const CORE_CASES: [&str; 3] = ["tcp_", "udp_", "netd_"];

/// Builds the static x86_64 binary and runs the core root cases against it (`MONITOR_BIN`).
pub fn test_static() -> anyhow::Result<()> {
    if !crate::exec::is_root() {
        bail!("the static binary's root cases need root");
    }
    let bin = build_x86_64()?;
    for filter in CORE_CASES {
        say(&format!("root cases `{filter}` against {}", bin.display()));
        exec(
            cargo()
                // The suite's own package selection (the workspace's default members): cargo then
                // reuses the test build instead of building every crate again with other features.
                .args(["test", "--test", "bpf", "--", filter])
                .env("MONITOR_BIN", &bin)
                .env("MONITOR_REQUIRE_ROOT_TESTS", "1"),
        )?;
    }
    Ok(())
}

fn build(arch: &Arch) -> anyhow::Result<PathBuf> {
    setup::apt_install(&[("file", "`cargo xtask dist` checks that binaries are static ELF for the right machine")])?;
    rustup_target(arch.triple)?;
    let venv = zig_toolchain()?;
    say(&format!("building the static monitor for {} (release, cargo zigbuild)", arch.triple));
    let path = format!("{}:{}", venv.join("bin").display(), std::env::var("PATH").unwrap_or_default());
    exec(cargo().args(["zigbuild", "--release", "--package", "monitor", "--target", arch.triple]).env("PATH", path))?;
    let built = target_dir().join(arch.triple).join("release/monitor");
    check_static(&built, arch.machine)?;
    package(arch, &built)
}

fn rustup_target(triple: &str) -> anyhow::Result<()> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("rustup cannot list the installed targets")?;
    if installed.lines().any(|l| l.trim() == triple) {
        return Ok(());
    }
    say(&format!("installing the Rust standard library for {triple} (rustup target add)"));
    exec(setup::rustup_retrying().args(["target", "add", triple]))
}

/// A venv under the target directory with pinned `cargo-zigbuild` and `ziglang`; returns it.
fn zig_toolchain() -> anyhow::Result<PathBuf> {
    let venv = target_dir().join("dist-tools/venv");
    let bin = venv.join("bin");
    let have_zigbuild = output(Command::new(bin.join("cargo-zigbuild")).arg("--version"))
        .is_some_and(|v| v.contains(CARGO_ZIGBUILD_VERSION));
    let have_zig = output(Command::new(bin.join("python3")).args(["-m", "ziglang", "version"]))
        .is_some_and(|v| v.trim() == ZIGLANG_VERSION);
    if have_zigbuild && have_zig {
        return Ok(venv);
    }
    say(&format!(
        "installing cargo-zigbuild {CARGO_ZIGBUILD_VERSION} and ziglang {ZIGLANG_VERSION} from PyPI into {} \
         (C cross compiler for the bundled SQLite, musl linker)",
        venv.display()
    ));
    if !bin.join("python3").exists() {
        exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    }
    // pip's own retries cover connecting; a read that stalls or breaks mid-file (ziglang's wheel is
    // tens of MB) fails the command, which `exec_download` runs again.
    exec_download(Command::new(bin.join("pip")).args([
        "install",
        "-q",
        "--retries",
        "10",
        "--timeout",
        "60",
        &format!("cargo-zigbuild=={CARGO_ZIGBUILD_VERSION}"),
        &format!("ziglang=={ZIGLANG_VERSION}"),
    ]))?;
    Ok(venv)
}

/// Fails unless `file` says `bin` is a statically linked ELF for `machine`.
fn check_static(bin: &Path, machine: &str) -> anyhow::Result<()> {
    let said = output(Command::new("file").arg("--brief").arg(bin))
        .with_context(|| format!("`file` cannot examine {}", bin.display()))?;
    let said = said.trim();
    if !is_static_for(said, machine) {
        bail!("{} is not a static ELF for {machine}: `file` says: {said}", bin.display());
    }
    say(&format!("{}: {said}", bin.display()));
    Ok(())
}

/// Whether `file --brief` output describes a static ELF executable for `machine`.
fn is_static_for(said: &str, machine: &str) -> bool {
    let statically = said.contains("statically linked") || said.contains("static-pie linked");
    said.starts_with("ELF 64-bit") && said.contains(&format!(", {machine},")) && statically
}

/// Copies binary, default config, geolocation data and a provenance note into `target/dist/<arch>`.
fn package(arch: &Arch, built: &Path) -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let out = root.join("target/dist").join(arch.name);
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let bin = out.join("monitor");
    copy(built, &bin)?;
    copy(&root.join("config/monitor.toml"), &out.join("monitor.toml"))?;
    let geo = Path::new(DEFAULT_GEO_DIR);
    let geo_note = if geo.join("MANIFEST").exists() {
        copy_dir(geo, &out.join("geo"))?;
        format!("geo/: copy of {} (ATTRIBUTION.txt, licenses/)", geo.display())
    } else {
        say(&format!("no geolocation data in {} (run `cargo xtask geo`): packaging without it", geo.display()));
        "geo/: not included (no data in the install dir at build time)".to_owned()
    };
    let commit = output(Command::new("git").arg("-C").arg(&root).args(["rev-parse", "HEAD"]))
        .map_or_else(|| "unknown".to_owned(), |c| c.trim().to_owned());
    let provenance = format!(
        "monitor static build for {triple}: musl, SQLite bundled by rusqlite, built by `cargo xtask dist` \
         (cargo-zigbuild {CARGO_ZIGBUILD_VERSION}, ziglang {ZIGLANG_VERSION}) from commit {commit}.\n\
         monitor.toml: the default config (config/monitor.toml). {geo_note}.\n\
         Run: ./monitor --config monitor.toml run (root; on Android see README \"Static builds\").\n",
        triple = arch.triple
    );
    std::fs::write(out.join("PROVENANCE"), provenance).context("cannot write PROVENANCE")?;
    say(&format!("packaged {}", out.display()));
    Ok(bin)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| format!("cannot copy {} to {}", from.display(), to.display())).map(drop)
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let kind = entry.file_type().with_context(|| format!("cannot stat {}", entry.path().display()))?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            copy(&entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::is_static_for;

    #[test]
    fn file_output_is_checked_for_static_and_machine() {
        let x86 =
            "ELF 64-bit LSB executable, x86-64, version 1 (SYSV), statically linked, with debug_info, not stripped";
        let arm = "ELF 64-bit LSB executable, ARM aarch64, version 1 (SYSV), statically linked, not stripped";
        let pie = "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), static-pie linked, stripped";
        let dynamic = "ELF 64-bit LSB pie executable, x86-64, version 1 (SYSV), dynamically linked, \
                       interpreter /lib64/ld-linux-x86-64.so.2, not stripped";
        assert!(is_static_for(x86, "x86-64"));
        assert!(is_static_for(pie, "x86-64"));
        assert!(is_static_for(arm, "ARM aarch64"));
        assert!(!is_static_for(x86, "ARM aarch64"));
        assert!(!is_static_for(arm, "x86-64"));
        assert!(!is_static_for(dynamic, "x86-64"));
        assert!(!is_static_for("ASCII text", "x86-64"));
    }
}
