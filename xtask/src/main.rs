//! Project workflows: `cargo xtask <command>`.
//!
//! - `setup`: installs what building and testing need (idempotent, says what it does).
//! - `run`:   setup, then builds and runs the monitor with the built-in defaults.
//! - `test`:  setup, then runs the whole test suite (root/BPF tests included when root), clippy
//!   and `cargo fmt --check`.
//! - `geo`:   fetches the default geolocation data and converts the ASN CSV to MMDB.
//! - `world`: converts world-atlas TopoJSON into the committed country geometry.
//! - `bench`: benchmarks (BENCHMARKS.md).
//! - `install`/`uninstall`: the binary, the hardened unit, config and geolocation data.
//! - `dist`:  static (musl) monitor binaries for x86_64 and aarch64, with config and geo data.
//! - `android`: deploy the monitor to an Android emulator or rooted device, pull its journal.

#![expect(clippy::print_stdout, clippy::print_stderr, reason = "a command-line tool: it reports on stdout and stderr")]

mod android;
mod bench;
mod dist;
mod exec;
mod geo;
mod install;
mod setup;
mod world;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the BPF toolchain, test tools and default geolocation data (idempotent).
    Setup(setup::Args),
    /// Set up, build (release) and run `monitor run` with the built-in defaults.
    Run {
        /// Arguments passed to `monitor run`, e.g. `-- --json`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Set up and run the whole test suite.
    Test {
        /// Skip the static x86_64 binary and its core root cases (run by default as root; the
        /// first build takes minutes).
        #[arg(long = "no-static")]
        no_static: bool,
        /// Arguments passed to `cargo test`, e.g. `-- --nocapture`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Geolocation data: install the defaults or convert an ASN CSV.
    Geo(geo::Args),
    /// World geometry: regenerate (or `--check`) monitor/data/world/countries.json.
    World(world::Args),
    /// Benchmarks: cost, completeness, comparison with peers (see BENCHMARKS.md).
    Bench(bench::Args),
    /// Install the release binary, the hardened systemd unit, the config and the geolocation data.
    Install(install::Args),
    /// Remove what `install` wrote (not the config, the geolocation data or the journal).
    Uninstall(install::UninstallArgs),
    /// Static (musl) binaries in target/dist/<arch>: monitor, monitor.toml, geo data.
    Dist(dist::Args),
    /// Android guest: `deploy` the monitor with adb, `pull` its journal.
    Android(android::Args),
    /// Load generator of the benchmarks (run by `bench` inside its namespaces).
    #[command(hide = true)]
    BenchLoad(bench::load::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup(args) => setup::run(&args),
        Command::Run { args } => setup::run(&setup::Args::default()).and_then(|()| exec::run_monitor(&args)),
        Command::Test { no_static, args } => {
            setup::run(&setup::Args::default()).and_then(|()| exec::run_tests(&args)).and_then(|()| {
                // The static (musl) binary must pass the core root cases too (issue 12): root only.
                match (no_static, exec::is_root()) {
                    (true, _) => eprintln!("xtask: --no-static: skipping the static binary's root cases"),
                    (false, false) => eprintln!("xtask: not root: skipping the static binary's root cases"),
                    (false, true) => dist::test_static()?,
                }
                // The quick benchmark run keeps the harness from rotting; it fails only if the harness
                // itself breaks, never on a figure. Benchmarks load BPF programs: root only.
                if exec::is_root() {
                    eprintln!("xtask: benchmark harness, quick mode (figures are not checked)");
                    setup::run(&setup::Args { bench: true, ..setup::Args::default() })?;
                    bench::run(&bench::Args { quick: true, ..bench::Args::default() })
                } else {
                    eprintln!("xtask: not root: skipping the benchmark harness check");
                    Ok(())
                }
            })
        }
        Command::Geo(args) => geo::run(&args),
        Command::World(args) => world::run(&args),
        Command::Bench(args) => {
            setup::run(&setup::Args { bench: true, ..setup::Args::default() }).and_then(|()| bench::run(&args))
        }
        Command::BenchLoad(args) => bench::load::run(&args),
        Command::Install(args) => install::run(&args),
        Command::Uninstall(args) => install::uninstall(&args),
        Command::Dist(args) => dist::run(&args),
        Command::Android(args) => android::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}
