//! Command-line arguments (clap derive; the doc comments are the help text).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use monitor::{report::Format, settings::OutputFormat};

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  runtime failure (e.g. the kernel refused a program)
  2  usage or configuration error
  3  insufficient privileges (needs CAP_BPF CAP_NET_ADMIN CAP_PERFMON CAP_SYS_PTRACE CAP_DAC_READ_SEARCH)
  4  the kernel lacks a required feature (see `monitor check`)
  5  the journal cannot be used (unwritable directory, corrupt file, full disk)
 10  `monitor verify`: at least one claim FAILED
 11  `monitor verify`: no claim failed, at least one is INCONCLUSIVE
 12  `monitor diff`: B has an app, country, ASN, hostname or endpoint A lacks
 13  `monitor journal verify` / `monitor evidence verify`: something was changed or removed
127  `monitor exec`: the command cannot be started (otherwise exec exits with the command's code)";

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nIP geolocation by DB-IP (db-ip.com), CC BY 4.0. ASN data: RouteViews (CC BY 4.0), NRO statistics \
     (CC BY 4.0), DB-IP ASN Lite (CC BY 4.0), via ip-location-db (when the default databases are used)."
);

/// On-device eBPF network monitor: which process sends how many bytes where.
#[derive(Debug, Parser)]
#[command(name = "monitor", version, long_version = LONG_VERSION, after_help = AFTER_HELP)]
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
    /// Per-app residency (bytes by country and network owner) for a week or a time range.
    Report(ReportArgs),
    /// What the daemon last wrote to its journal, and the geolocation databases in use.
    Status(StatusArgs),
    /// Show the configuration in effect (file values and defaults, validated).
    Config(ConfigArgs),
    /// Judge residency claims (PASS/FAIL/INCONCLUSIVE with evidence) over a week or a range.
    Verify(super::verify::VerifyArgs),
    /// List the live alerts the daemon raised for violated claims.
    Alerts(super::alerts::AlertsArgs),
    /// What the databases say for an address; where a host name was seen, per app.
    Lookup(super::lookup::LookupArgs),
    /// Mark named time windows (sessions) in the journal; reports take `--session NAME`.
    Session(super::session::SessionArgs),
    /// Run a command in a cgroup of its own, recording its flows as a new session.
    Exec(super::exec::ExecArgs),
    /// What changed per app between two sessions, weeks or report files (exit 12: something new).
    Diff(super::diff::DiffArgs),
    /// Journal maintenance: `journal verify` checks its hash chain.
    Journal(super::journal::JournalArgs),
    /// Write a self-contained, signed evidence bundle of a week or session, or verify one.
    Evidence(super::evidence::EvidenceArgs),
    /// Create the minisign key pair that signs evidence bundles and weekly exports.
    Keygen(super::evidence::KeygenArgs),
}

/// `monitor run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// One JSON object per line on stdout instead of log lines (same as `--output json`).
    /// Example: --json
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
    /// How flows are shown (overrides `output.format`). Example: --output none
    #[arg(long)]
    pub output: Option<OutputFormat>,
    /// cgroup v2 directory to watch (relative to the cgroup2 mount, or absolute).
    /// Example: --cgroup system.slice/app.service
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Journal file (overrides `journal.path`). Example: --journal /tmp/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// `monitor report`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ReportArgs {
    /// Fleet reports from several machines' exports.
    #[command(subcommand)]
    pub fleet: Option<super::report_merge::ReportCommand>,
    /// ISO week, cut in the report time zone (default: the current week). Example: --week 2026-W47
    #[arg(long, conflicts_with_all = ["since", "until", "session"])]
    pub week: Option<String>,
    /// A session's window (`monitor session`); for a session of `monitor exec`, only the flows
    /// of its command. Example: --session build-42
    #[arg(long, conflicts_with_all = ["since", "until"])]
    pub session: Option<String>,
    /// Start: a date (midnight) or a date and time of day (seconds optional), in the report
    /// time zone unless an offset or `Z` follows. Example: --since 2026-11-19T08:00
    #[arg(long, requires = "until")]
    pub since: Option<String>,
    /// End, excluded; same forms as --since. Example: --until 2026-11-19T12:00
    #[arg(long, requires = "since")]
    pub until: Option<String>,
    /// Only this app. Example: --app firefox
    #[arg(long, value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub app: Option<String>,
    /// Output format; json follows schema monitor.report/1; html is one self-contained page with
    /// maps and charts (`> week.html`). Example: --format html
    #[arg(long, default_value_t = Format::Table)]
    pub format: Format,
    /// IANA time zone of the weeks and dates (overrides `report.time_zone`). Example: --time-zone Europe/Berlin
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
    /// Remote endpoints listed per app (at least 1; default 10). Example: --top 20
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: Option<u32>,
    /// Fleet report from the monitors' metrics in Prometheus instead of the journal (any --format;
    /// per-host sections, `hosts` and per-app `by_host` in JSON); a week or a range, not a session
    /// (sessions are in each machine's journal). Example: --prometheus http://prometheus:9090
    #[arg(long, value_name = "URL", conflicts_with_all = ["journal", "app", "top", "session"])]
    pub prometheus: Option<String>,
    /// With --prometheus: only this machine (a value of --host-label; repeatable). Example: --host lab-01:9464
    #[arg(long = "host", value_name = "LABEL", requires = "prometheus")]
    pub hosts: Vec<String>,
    /// With --prometheus: the label that names a machine (default `instance`). Example: --host-label host
    #[arg(long, value_name = "NAME", requires = "prometheus")]
    pub host_label: Option<String>,
    // `--guest-journal`, `--skew-tolerance` (cli/report_join.rs).
    #[command(flatten)]
    pub join: super::report_join::JoinArgs,
}

/// `monitor status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON output. Example: --json
    #[arg(long)]
    pub json: bool,
    /// Journal file (overrides `journal.path`). Example: --journal /var/lib/monitor/journal.db
    #[arg(long, value_name = "FILE")]
    pub journal: Option<PathBuf>,
}

/// `monitor check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// JSON output. Example: --json
    #[arg(long)]
    pub json: bool,
    /// cgroup to check for exclusive programs (e.g. Android's netd) that block hooks (default: the
    /// configured `cgroup`, `/` unless the config says otherwise). Example: --cgroup /
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
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
    /// Print the configuration in effect as TOML, in the config file's keys: the file's values
    /// and the built-in defaults for the rest, printed only when valid (an invalid value is an
    /// error, exit 2). A valid config file itself. Flags of other commands (`run --journal`,
    /// `--time-zone`) are not applied. Example: monitor config dump
    Dump,
}
