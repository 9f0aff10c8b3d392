//! Running commands, and the `run` and `test` workflows.

use std::{
    os::unix::process::CommandExt as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `target/` in the workspace), absolute: a
/// relative `CARGO_TARGET_DIR` is where cargo takes it, under the directory xtask was started in.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_relative() => std::env::current_dir().map_or(dir.clone(), |cwd| cwd.join(&dir)),
        Some(dir) => dir,
        None => workspace_root().join("target"),
    }
}

/// Runs `cmd`, failing with the command line on a non-zero exit.
pub fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("failed to run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// Waits before each retry of a download: a registry's or the network's hiccup (a read timeout,
/// a reset mid-file) fails one attempt, not the whole set-up.
const DOWNLOAD_BACKOFF_SECS: [u64; 3] = [5, 20, 60];

/// Runs `cmd`, which downloads from a package registry, again after a failure (three more tries,
/// 5, 20 and 60 s apart, each announced), then fails with the command line as [`exec`] does. Only
/// for idempotent commands that only download (`pip install` of pinned versions, `npm pack`,
/// `apt-get`); cargo and rustup retry their own downloads (`CARGO_NET_RETRY`,
/// `RUSTUP_MAX_RETRIES`).
pub fn exec_download(cmd: &mut Command) -> anyhow::Result<()> {
    exec_retrying(cmd, &DOWNLOAD_BACKOFF_SECS)
}

fn exec_retrying(cmd: &mut Command, backoff_secs: &[u64]) -> anyhow::Result<()> {
    for &wait in backoff_secs {
        match exec(cmd) {
            Ok(()) => return Ok(()),
            Err(e) => {
                eprintln!("xtask: {e:#}; a download may have failed: trying again in {wait} s");
                std::thread::sleep(std::time::Duration::from_secs(wait));
            }
        }
    }
    exec(cmd)
}

/// Runs `cmd` and returns its stdout, or `None` when it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo` of the toolchain running xtask.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Whether xtask runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Builds the release binary and runs `monitor run` with the given arguments.
pub fn run_monitor(args: &[String]) -> anyhow::Result<()> {
    exec(cargo().args(["build", "--release", "--package", "monitor"]))?;
    let bin = target_dir().join("release/monitor");
    eprintln!("xtask: starting {} run {} (Ctrl-C stops it)", bin.display(), args.join(" "));
    let mut cmd = Command::new(bin);
    cmd.arg("run").args(args);
    // Become the monitor: signals (Ctrl-C, `timeout`, `kill`) reach it directly, it shuts down
    // cleanly, and its exit code is this command's.
    let err = cmd.exec();
    Err(err).context("failed to start the monitor")
}

/// Runs every test. As root, tests that need BPF must run: `MONITOR_REQUIRE_ROOT_TESTS=1` makes a
/// skipped root test a failure, so CI cannot pass without them.
pub fn run_tests(args: &[String]) -> anyhow::Result<()> {
    warn_if_disk_is_short();
    // First: a formatting slip fails in seconds, not after the whole suite.
    eprintln!("xtask: formatting (rustfmt.toml; `cargo fmt --all` fixes it)");
    exec(cargo().args(["fmt", "--all", "--check"]))?;
    let mut cmd = cargo();
    // Default members: monitor-ebpf only builds for the BPF target (monitor/build.rs does that).
    cmd.arg("test");
    if is_root() {
        eprintln!("xtask: running as root: BPF tests are required (MONITOR_REQUIRE_ROOT_TESTS=1)");
        cmd.env("MONITOR_REQUIRE_ROOT_TESTS", "1");
    } else {
        eprintln!("xtask: not root: BPF tests will be skipped (run as root to include them)");
    }
    cmd.args(args);
    exec(&mut cmd)?;
    eprintln!("xtask: clippy (warnings are errors)");
    exec(cargo().args([
        "clippy",
        "--package",
        "monitor",
        "--package",
        "monitor-common",
        "--package",
        "xtask",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: clippy of the BPF programs (nightly, BPF target; warnings are errors)");
    exec(
        Command::new("rustup")
            .args(["run", &bpf_toolchain(), "cargo", "clippy", "--package", "monitor-ebpf", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--", "-D", "warnings"])
            // Its own directory: the nightly build of the host tools would not share the stable one's.
            .env("CARGO_TARGET_DIR", target_dir().join("bpf-clippy"))
            .current_dir(workspace_root()),
    )?;
    eprintln!("xtask: API docs (rustdoc warnings, e.g. broken links, are errors)");
    exec(
        cargo()
            .args(["doc", "--no-deps", "--package", "monitor", "--package", "monitor-common"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )
}

/// The toolchain that builds the BPF programs (`monitor/build.rs`: `MONITOR_BPF_TOOLCHAIN`, default
/// nightly).
pub fn bpf_toolchain() -> String {
    std::env::var("MONITOR_BPF_TOOLCHAIN").unwrap_or_else(|_| "nightly".to_owned())
}

/// What a fresh target directory grows to over `cargo xtask test` as root (test build, both
/// clippy runs, docs, static binary, quick benchmark): 6.2 GiB measured on a fresh clone;
/// rounded up.
const SUITE_DISK_GIB: u64 = 7;

/// Warns (does not fail: an existing target directory already holds most of the build) when the
/// target directory's file system has less free space than a fresh run of the suite takes. A
/// full disk otherwise shows up only as a linker's "No space left on device" deep in the run.
fn warn_if_disk_is_short() {
    let dir = target_dir();
    let Some(existing) = dir.ancestors().find(|d| d.exists()) else { return };
    let Ok(stat) = nix::sys::statvfs::statvfs(existing) else { return };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    if free < SUITE_DISK_GIB << 30 {
        eprintln!(
            "xtask: warning: {:.1} GiB free for {}; a fresh run of the test suite needs about \
             {SUITE_DISK_GIB} GiB there (builds fail with \"No space left on device\")",
            gib(free),
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::exec_retrying;

    /// A shell command that appends a line to `log` and succeeds from its `ok_from`-th run on.
    fn counting(log: &std::path::Path, ok_from: usize) -> Command {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"echo run >> "$1"; [ "$(wc -l < "$1")" -ge "$2" ]"#)
            .arg("sh")
            .arg(log)
            .arg(ok_from.to_string());
        cmd
    }

    fn runs(log: &std::path::Path) -> usize {
        std::fs::read_to_string(log).map_or(0, |s| s.lines().count())
    }

    #[test]
    fn a_download_that_fails_once_is_run_again_and_succeeds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("runs");
        exec_retrying(&mut counting(&log, 2), &[0, 0, 0]).expect("second run succeeds");
        assert_eq!(runs(&log), 2);
    }

    #[test]
    fn a_download_that_keeps_failing_fails_after_its_retries() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("runs");
        let err = exec_retrying(&mut counting(&log, 99), &[0, 0, 0]).expect_err("never succeeds");
        assert_eq!(runs(&log), 4, "one run and three retries");
        assert!(format!("{err:#}").contains("failed"), "{err:#}");
    }
}
