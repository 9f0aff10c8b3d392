//! Command-line arguments (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  runtime failure (e.g. the kernel refused a program)
  2  usage or configuration error
  3  insufficient privileges (needs root, or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON)
  4  the kernel lacks a required feature (see `monitor check`)";

/// On-device eBPF network monitor: which process sends how many bytes where.
#[derive(Debug, Parser)]
#[command(name = "monitor", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v debug, -vv trace); `RUST_LOG` overrides. Example: -v
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Config file (default: /etc/monitor/monitor.toml if it exists, else built-in defaults).
    /// Example: --config config/monitor.toml
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to the kernel and report every flow until SIGINT/SIGTERM.
    Run(RunArgs),
    /// Report, without attaching, whether this kernel has what the monitor needs.
    Check(CheckArgs),
    /// Show the effective configuration.
    Config(ConfigArgs),
}

/// `monitor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// One JSON object per line on stdout instead of log lines. Example: --json
    #[arg(long)]
    pub json: bool,
    /// cgroup v2 directory to watch (relative to the cgroup2 mount, or absolute).
    /// Example: --cgroup system.slice/app.service
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
}

/// `monitor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// JSON output. Example: --json
    #[arg(long)]
    pub json: bool,
}

/// `monitor config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// What to show.
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// `monitor config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration as TOML. Example: monitor config dump
    Dump,
}
