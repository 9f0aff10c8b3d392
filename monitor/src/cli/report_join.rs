//! `monitor report --guest-journal FILE`: the emulator join (issue 12) added to the host's
//! report, see `report::EmulatorJoin`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use monitor::{
    journal::JournalReader,
    report::{DEFAULT_SKEW_SECS, EmulatorJoin, ReportQuery},
};

/// The join's flags of `monitor report`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// Emulator hosts: join this guest journal (from `cargo xtask android pull`) with the
    /// emulators' flows in the host journal: per package, the bytes the host confirms. Example:
    /// --guest-journal target/android/journal.db
    #[arg(long, value_name = "FILE", conflicts_with = "prometheus")]
    pub guest_journal: Option<PathBuf>,
    /// With --guest-journal: clock-skew tolerance between guest and host, in seconds (default 120).
    /// Example: --skew-tolerance 30
    #[arg(long, value_name = "SECONDS", requires = "guest_journal")]
    pub skew_tolerance: Option<u64>,
}

/// The join over `query`'s period, when `--guest-journal` was given.
///
/// # Errors
/// When the guest journal cannot be opened or either journal cannot be read.
pub fn join(args: &JoinArgs, host: &JournalReader, query: &ReportQuery) -> anyhow::Result<Option<EmulatorJoin>> {
    let JoinArgs { guest_journal, skew_tolerance } = args;
    let Some(path) = guest_journal else { return Ok(None) };
    let guest = super::report::open_journal(path).context("cannot read the guest journal (--guest-journal)")?;
    let tolerance = skew_tolerance.unwrap_or(DEFAULT_SKEW_SECS);
    let join = EmulatorJoin::build(&guest, host, query.period.time_range(), tolerance)
        .with_context(|| format!("cannot join the guest journal `{}`", path.display()))?;
    Ok(Some(join))
}
