//! Builds the kernel object (`monitor-ebpf`) with aya-build and the pinned nightly toolchain;
//! `src/probe/load.rs` embeds it with `include_bytes_aligned!`.

use std::{env, path::PathBuf};

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

/// The toolchain that builds the kernel object: nightly rustc 1.97 (LLVM 22, matching
/// bpf-linker 0.13 built against llvm-22). Override with `MONITOR_BPF_TOOLCHAIN`.
const DEFAULT_BPF_TOOLCHAIN: &str = "nightly";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=MONITOR_BPF_TOOLCHAIN");
    let toolchain = env::var("MONITOR_BPF_TOOLCHAIN").unwrap_or_else(|_| DEFAULT_BPF_TOOLCHAIN.into());
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?);
    let root_dir = manifest_dir.join("../monitor-ebpf");
    let root_dir = root_dir.to_str().context("non-UTF-8 path to monitor-ebpf")?;
    aya_build::build_ebpf(
        [Package { name: "monitor-ebpf", root_dir, no_default_features: false, features: &[] }],
        Toolchain::Custom(&toolchain),
    )
    .context("building the kernel programs failed (run `cargo xtask setup` to install the BPF toolchain)")
}
