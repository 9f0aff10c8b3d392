//! `[journal]` configuration section.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Error;

/// The documented `[journal]` section: every key with its default. Parses to
/// [`JournalConfig::default`] (checked by a test); meant to be pasted into `config/monitor.toml`.
pub const CONFIG_DOC: &str = r#"[journal]
# SQLite file holding connection records, residency rows and statistics. Created with mode 0600
# (parent directories with mode 0700) when missing. It and its `.lock` must be regular files owned
# by the user running the monitor: a symlink, device node or another user's file is refused before
# anything is changed. A file that is not a journal (or another application's database) is an
# error and left alone; a damaged journal is never replaced: move it away to start a new one.
path = "/var/lib/monitor/journal.db"
# Seconds between two writes of buffered records (one transaction each), 1 to 3600. At most this
# much is lost when the daemon is killed. A failed write (full disk) keeps the records for the
# next one.
flush_interval_secs = 5
# Length of a residency row in seconds, aligned to the Unix epoch. Must divide 900 (15 minutes)
# so that no row straddles a local midnight in any time zone and weekly reports are exact.
# Report periods whose bounds are not multiples of it are summed from connection records.
residency_interval_secs = 60
# Days connection records (one row per flow record; endpoint detail in reports, and the figures
# of periods not on whole residency intervals) are kept.
connections_retention_days = 30
# Days residency rows (per app and destination per interval) and statistics are kept.
residency_retention_days = 400
"#;

/// `[journal]`: where and how often records are written, and for how long they are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// SQLite file.
    pub path: PathBuf,
    /// Seconds between two flushes: the most a crash can lose.
    pub flush_interval_secs: u64,
    /// Residency interval in seconds (divides 900).
    pub residency_interval_secs: u64,
    /// Days connection records are kept.
    pub connections_retention_days: u32,
    /// Days residency rows and statistics are kept.
    pub residency_retention_days: u32,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            // FHS: variable state of a daemon.
            path: PathBuf::from("/var/lib/monitor/journal.db"),
            // 5 s: at most 5 s of records lost on a crash, one small transaction (and fsync) per 5 s.
            flush_interval_secs: 5,
            // 60 s: minute resolution; ~1,440 rows per app and destination per day.
            residency_interval_secs: 60,
            // 30 days of per-flow detail (endpoints); the bulk of the file.
            connections_retention_days: 30,
            // 400 days: a full year of weekly reports plus slack for year-over-year comparisons.
            residency_retention_days: 400,
        }
    }
}

impl JournalConfig {
    /// Checks the ranges the journal relies on.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the key.
    pub fn validate(&self) -> Result<(), Error> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::Invalid { key: "path", reason: "must not be empty".into() });
        }
        if !(1..=3600).contains(&self.flush_interval_secs) {
            return Err(Error::Invalid {
                key: "flush_interval_secs",
                reason: "must be 1 to 3600 seconds (at most that much is lost when the daemon is killed)".into(),
            });
        }
        let r = self.residency_interval_secs;
        if r == 0 || !900u64.is_multiple_of(r) {
            return Err(Error::Invalid {
                key: "residency_interval_secs",
                reason: format!("{r} does not divide 900 (e.g. 10, 60, 300, 900)"),
            });
        }
        if self.connections_retention_days == 0 {
            return Err(Error::Invalid { key: "connections_retention_days", reason: "must be at least 1".into() });
        }
        if self.residency_retention_days == 0 {
            return Err(Error::Invalid { key: "residency_retention_days", reason: "must be at least 1".into() });
        }
        Ok(())
    }

    /// `flush_interval_secs` as a duration.
    #[must_use]
    pub fn flush_interval(&self) -> Duration {
        Duration::from_secs(self.flush_interval_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        journal: JournalConfig,
    }

    #[test]
    fn config_doc_parses_to_default() {
        let file: File = toml::from_str(CONFIG_DOC).expect("CONFIG_DOC parses");
        assert_eq!(file.journal, JournalConfig::default());
        file.journal.validate().expect("defaults are valid");
    }

    #[test]
    fn config_rejects_unknown_keys_and_bad_intervals() {
        assert!(toml::from_str::<File>("[journal]\nflush_secs = 3\n").is_err());
        let cfg: File = toml::from_str("[journal]\nresidency_interval_secs = 7\n").expect("parses");
        assert!(matches!(cfg.journal.validate(), Err(Error::Invalid { key: "residency_interval_secs", .. })));
        let cfg: File = toml::from_str("[journal]\nresidency_interval_secs = 300\n").expect("parses");
        cfg.journal.validate().expect("300 divides 900");
        assert_eq!(cfg.journal.flush_interval_secs, 5, "unset keys keep their defaults");
    }
}
