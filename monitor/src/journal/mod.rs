//! Journal: the durable SQLite store of connection records, residency rows and statistics.
//!
//! Owns the journal file (`[journal] path`, mode 0600, WAL mode) and its schema. Does not decide
//! what a flow is (tracker), where an address is (enrich) or how figures are presented (report).
//!
//! # Writing
//! [`JournalWriter`] is owned by the daemon. [`JournalWriter::append`] only buffers in memory;
//! [`JournalWriter::flush`] (synchronous: run it on `spawn_blocking`) writes everything buffered
//! in **one** transaction, so a crash loses at most what was appended since the last flush
//! (`flush_interval_secs`). A failed flush (full disk, I/O error) returns the error and keeps the
//! buffer for the next attempt; only when the buffer exceeds [`MAX_BUFFERED_RECORDS`] /
//! [`MAX_BUFFERED_BUCKETS`] are the oldest entries dropped, counted and written to `losses` by
//! the next successful flush.
//!
//! # Residency attribution
//! Each record's *deltas* (`delta_payload`, `delta_wire`) are added to the residency interval
//! that contains the record's `last_seen` (the flow's latest kernel event): intervals are
//! `residency_interval_secs` long and aligned to the Unix epoch. The bytes of a delta were moved
//! between the previous record of the flow and `last_seen`, so a delta spanning a boundary is
//! charged to the later interval; with updates every few seconds the skew is at most one update
//! interval. Totals per flow are the sum of its deltas, so the same bytes are never counted twice.
//!
//! # Schema (version [`SCHEMA_VERSION`], migrations in `schema.rs`, append-only)
//! Times are Unix milliseconds (`*_ms`) or seconds (`interval_start`). Unsigned 64-bit values
//! that may exceed `i64::MAX` (the socket `cookie`) are stored as their two's-complement bit
//! pattern; byte counters saturate at `i64::MAX`.
//!
//! | table | one row per | columns |
//! |---|---|---|
//! | `databases` | geo database (role, type, build) | `id`, `role` (`country`/`asn`), `database_type`, `build_epoch` (s), `path` (NULL when only seen in records), `registered_ms`, `in_use` (1 = named by the running daemon) |
//! | `apps` | distinct app identity | `id`, `identity` (JSON dedup key), `name`, `exe`, `cmdline`, `uid`, `user`, `unit`, `cgroup`, `container`, `source`, `first_seen_ms`, `last_seen_ms`, `android_package`, `android_packages` (space-separated), `android_user_id`, `android_app_id`, `android_kind` (`app`/`sdk_sandbox`/`isolated`; all NULL when not an Android app or before schema 6) |
//! | `connections` (a view since schema 14, writable through triggers) | [`FlowRecord`] | `id`, `event` (`update`/`close`/`shutdown`), `time_ms` (= `last_seen`), `first_seen_ms`, `closed_ms`, `cookie`, `app_id` → `apps`, `app_pid`, `app_start_time`, `owner_tgid`, `owner_pid`, `owner_uid`, `owner_gid`, `owner_comm`, `owner_cgroup_id`, `owner_source`, `protocol` (`tcp`/`udp`/`mptcp`/`icmp`/`icmpv6`/`sctp`/`udplite`/`raw`), `ip_protocol` (number; NULL before schema 3), `direction`, `local_ip`, `local_port`, `remote_ip`, `remote_port`, `payload_tx`, `payload_rx`, `wire_tx`, `wire_rx`, `packets_tx`, `packets_rx` (totals), `delta_*` (same six, since the previous record), `payload_source`, `complete`, `scope` (NULL: no remote address; `unenriched`: no [`Destination`]), `country`, `asn`, `as_org`, `country_db`/`asn_db` → `databases`, `ip_protocol` (schema 3), `rtt_min_us`, `rtt_srtt_us` (kernel RTT estimates, TCP), `consensus` (`agree`/`disagree`/`partial`, NULL with fewer than two country databases), `country_answers` (JSON list of `{label, database_type, build_epoch, country}`, primary first) (residency migration; NULL in rows written since schema 13, which name the list by `answers_id` → `answer_sets`: read `COALESCE(country_answers, answer_sets.text)`); `hostname`, `registrable_domain`, `name_source`, `dns_name`, `ech_outer` (names migration) |
//! | `connection_rows` | one row per [`FlowRecord`] (schema 14; `connections` is the view joining it back) | `id`, `time_ms`, `first_seen_ms`, `closed_ms`, `cookie`, addresses and ports, the twelve byte and packet figures, `rtt_min_us`, `rtt_srtt_us`, and the ids of its shared parts: `shape_id` → `connection_shapes` (`event`, `protocol`, `direction`, `payload_source`, `complete`, `ip_protocol`), `owner_id` → `connection_owners` (`app_id` to `owner_source`), `destination_id` → `connection_destinations` (`scope` to `asn_db`, `consensus`, `answers_id`; NULL: no remote address), `names_id` → `connection_names` (`hostname` to `ech_outer`; NULL: unnamed, `name_source` `none`); `lookup` (1: a record the rollups' flow counting may look for, the first of its socket at an endpoint or service in a week, a flow's first record with a remote end that is not its close, or a close past the caps that ends a flow with earlier records, unless it is the socket's final record (a TCP socket released and closed, a connected UDP socket released), after which no record of its cookie comes; only these are in `connections_cookie`; not covered by the hash chain; schema 15 adds it, set on every record, to a schema 14 journal written before the column was) |
//! | `residency` | interval × app × destination × provenance | key: `interval_start`, `interval_secs`, `app` (`App::name`), `scope` (as above, `none` for no remote address), `country` (`''` = unknown), `asn` (0 = unknown), `as_org` (`''`), `country_db`/`asn_db` (`databases.id`, 0 = none), `payload_source`; sums: `payload_tx`, `payload_rx`, `wire_tx`, `wire_rx`, `packets_tx`, `packets_rx`, `connections` (distinct flows with traffic in the interval), `new_flows` (flows whose first record falls in it: additive over any period), `incomplete_flows` (final records with `complete = 0`) |
//! | `stats` | [`record_stats`](JournalWriter::record_stats) call | `time_ms`, `run_started_ms`, `last`, increments since the previous row of the same run of `events_submitted`, `events_lost`, `storage_failures`, `peer_evictions`, `peer_parse_failures`, `unattributed_packets`, `unattributed_bytes`, `events_received`, `decode_errors`, `closed_flows`, `silent_sockets`, `incomplete_flows`, and (names-stats migration; NULL before) `copies_submitted`, `copies_lost`, `names_malformed`, `names_learned` (server names read plus DNS answers recorded); gauge `open_flows`; a run killed (no final row) gets an empty row at its last flush (at its start if it never flushed), written with an empty row at the new run's start by the new run at its open (`runs.rs`) |
//! | `losses` | flush after the buffer overflowed | `time_ms`, `first_ms`/`last_ms` (time range of the dropped data), `records`, `buckets`, `payload_bytes`, `wire_bytes` |
//! | `daemon_state` | – (single row) | `pid`, `started_ms`, `version`, `config_path`, `last_flush_ms`, `flushes`, `rows_written`, `flush_interval_secs`, `residency_interval_secs`, `degradations` |
//! | `exports` | exported (week, time zone, format) | `week`, `time_zone`, `format`, `path`, `written_ms` |
//! | `alerts` | (ISO week, claim, remote address) violated | `period`, `claim`, `destination`, `app`, `exe`, `pid`, `user`, `country`, `asn`, `as_org`, `rule`, `first_ms`, `last_ms`, `repeats` (later violating records), `payload_tx`/`payload_rx` (bytes of the violating records) |
//! | `sessions` | named time window | `name` (unique), `started_ms`, `stopped_ms` (NULL while running), `cgroup_id`/`cgroup_path` (the child cgroup of `monitor exec`; NULL: every flow of the window), `command`, `exit_code` |
//! | `batches` | flush (schema 8 on) | hash chain, see `chain.rs`: `first_connection`..`last_connection`, `first_stats`..`last_stats` (row ids), `min_time_ms`/`max_time_ms` (of its connection records), `digests` (16 bytes per row), `prev_hash`, `hash` (SHA-256), `row_format` (schema 16: how its `connections` rows are digested, 1, 2 or 3: format 3 also covers each row's app identity) |
//! | `connection_spans` | flush that wrote connection records (schema 17) | `first_id`..`last_id` (record ids, without gaps from span to span), `min_time_ms`/`max_time_ms` (of those records), `max_before_ms` (latest time of this span and every one before), `min_after_ms` (earliest of this span and every one after): a time range as a range of ids, see `spans.rs`; replaces the index `connections_time` |
//! | `answer_sets` | distinct `country_answers` text (schema 11) | `id`, `text` (unique): referred to by `connections.answers_id` and `endpoint_week.answers_id` |
//! | `meta` | key | `key`, `value`: `connections_purged_before_ms`, `residency_purged_before_ms` |
//!
//! # Reading
//! [`JournalReader`] opens the file read-only; WAL lets it read while the daemon writes.
//!
//! [`FlowRecord`]: crate::tracker::FlowRecord
//! [`Destination`]: crate::enrich::Destination

mod alerts;
mod android;
mod buffer;
mod chain;
mod config;
mod evidence;
mod exports;
mod figures;
mod files;
mod flows;
mod flush;
mod intern;
mod legacy;
mod names;
mod narrow;
mod open;
mod reader;
mod resume;
mod rollup;
mod rows;
mod runs;
mod schema;
mod seen;
mod services;
mod session_rows;
mod sessions;
mod spans;
mod truth;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::path::PathBuf;

pub use alerts::AlertRow;
/// Whether a record starts its flow (counted as a new flow in residency rows and metrics).
pub use buffer::{FLUSH_RECORDS, Loss, MAX_BUFFERED_BUCKETS, MAX_BUFFERED_RECORDS};
pub use chain::{Integrity, Problem as IntegrityProblem, verify as verify_chain};
pub use config::{CONFIG_DOC, JournalConfig};
pub use evidence::{DatabaseRef, EvidenceRow};
pub use exports::{ExportRow, record_export};
pub use figures::FiguresChecked;
pub use files::writer_pid;
pub use flows::{FlowApps, FlowRow};
pub use names::SCOPE_UNENRICHED;
pub use narrow::EndpointKey;
pub use reader::JournalReader;
pub use resume::{Earlier, EarlierFlow};
pub use rollup::{AppEndpoints, DestinationRow, NAMES_ROLLUP_SCHEMA, QUARTER, RollupState, SERVICE_FLOWS_SCHEMA};
pub use rows::{DaemonState, DatabaseRow, EndpointRow, LossTotals, ResidencyRow, RowCounts, StatsTotals, TimeRange};
pub use runs::RunGaps;
pub use schema::SCHEMA_VERSION;
pub use services::{HostAddressRow, ServiceRow};
pub use session_rows::RecordRow;
pub use sessions::{
    MAX_SESSION_NAME, Session, SessionCgroup, SessionError, check_session_name, start_session, stop_session,
};
pub use truth::{StoredAnswer, TruthRow};
pub use writer::{FlushReport, JournalWriter, PurgeReport, RunInfo};

/// Journal errors.
#[expect(missing_docs, reason = "variant fields are described by the error messages")]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The directory of the journal cannot be created.
    #[error("cannot create journal directory `{}`", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The journal file cannot be created, opened or given mode 0600.
    #[error("cannot open journal `{}` (is its directory writable?)", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the journal's lock file: two writers would record every flow twice.
    #[error(
        "another monitor daemon is writing the journal `{}` (it holds `{}`); stop it, or give this one \
         another journal (--journal)",
        path.display(),
        lock.display()
    )]
    Locked { path: PathBuf, lock: PathBuf },
    /// The journal's lock file was removed while a daemon held it (a "stale lock" deleted by
    /// hand): that daemon still writes the journal, and a second one would record every flow twice.
    #[error(
        "another monitor daemon (pid {pid}) is writing the journal `{}`: its lock file `{}` was removed \
         while it ran (it is not stale); stop that daemon, or give this one another journal (--journal)",
        path.display(),
        lock.display()
    )]
    LockRemoved { path: PathBuf, lock: PathBuf, pid: i32 },
    /// This daemon's lock file was removed, replaced or renamed and the one at the path is
    /// another process's now: it writes nothing (two daemons would record every flow twice) and
    /// keeps its records until it holds the lock again.
    #[error(
        "this daemon no longer holds the journal's lock `{}` ({reason}): nothing is written to `{}`, the \
         records are kept in memory and written once it holds the lock again (stop the other daemon)",
        lock.display(),
        path.display()
    )]
    LockLost { path: PathBuf, lock: PathBuf, reason: String },
    /// A journal in a place its reader cannot write, with a writer's files beside it (`-wal`,
    /// `-shm`, `-journal`): a writer may be using it, or its write-ahead log holds data that a
    /// read of the database file alone would miss.
    #[error(
        "journal `{path}` is read-only here and has its write-ahead log or another writer's file \
         beside it (a writer may be using it): copy it with its `-wal` file to a writable directory \
         to read it",
        path = path.display()
    )]
    ReadOnlyWal { path: PathBuf },
    /// SQLite refused to open the file.
    #[error("cannot open journal `{}`", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A journal (a SQLite database with the journal's schema, or a cut one) that is damaged. It
    /// is never replaced automatically.
    #[error(
        "journal `{path}` is corrupt ({reason}); move it away \
         (e.g. `mv {path} {path}.corrupt`) to start a new journal",
        path = path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    /// An empty database at the journal's path (a daemon that stopped before it created its
    /// tables, e.g. on a full disk): nothing to read yet; `monitor run` makes it a journal.
    #[error(
        "journal `{}` holds nothing yet (an empty database: a daemon that stopped before it created its \
         tables, e.g. on a full disk); `monitor run` makes it a journal",
        path.display()
    )]
    Empty { path: PathBuf },
    /// A database in write-ahead-log mode with no tables and no `-wal` file beside it: a copy
    /// made without the log, where a running (or killed) daemon keeps what it wrote last.
    #[error(
        "journal `{}` holds no tables, and its write-ahead log `{}-wal` is not beside it: a journal's latest writes \
         are in that file until the daemon checkpoints them (at its stop, or as the log grows); copy the journal \
         with its `-wal` file, or read it in place",
        path.display(),
        path.display()
    )]
    WalMissing { path: PathBuf },
    /// The file is not a journal: not SQLite, or another application's database. Left untouched.
    #[error(
        "`{}` is not a monitor journal ({reason}); it was left untouched: give the journal another path \
         (--journal or journal.path)",
        path.display()
    )]
    NotJournal { path: PathBuf, reason: String },
    /// The journal or its lock file is not a regular file owned by the user running the monitor
    /// (a symlink, a device node, another user's file...). Refused before anything is changed.
    #[error(
        "refusing to use `{}` for the journal: {reason}; it must be a regular file owned by the user \
         running the monitor (nothing was changed)",
        path.display()
    )]
    Unsafe { path: PathBuf, reason: String },
    /// A reader was pointed at a file that does not exist.
    #[error("journal `{}` does not exist (has the daemon run with this journal path?)", path.display())]
    Missing { path: PathBuf },
    /// The file was written by a newer `monitor`.
    #[error("journal `{}` has schema version {found}; this monitor supports up to {supported}", path.display())]
    TooNew { path: PathBuf, found: u32, supported: u32 },
    /// Applying migrations failed.
    #[error("cannot migrate journal `{}` to schema version {SCHEMA_VERSION}", path.display())]
    Migrate {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    /// The journal's path names another file than the one the writer opened. Buffered rows are
    /// kept; nothing is written to that file.
    #[error(
        "journal `{}` was replaced by another file while the daemon ran: nothing is written to it and the records \
         are kept in memory (move that file away and the daemon creates a new journal there)",
        path.display()
    )]
    Replaced { path: PathBuf },
    /// The journal is no longer at its path, and its write-ahead log could not be copied into it
    /// yet (a reader holds it). Buffered rows are kept; the next flush tries again.
    #[error(
        "journal `{}` was removed or replaced while the daemon ran, and its write-ahead log cannot be copied into \
         it yet (a reader holds it): retried at the next flush, the records are kept in memory",
        path.display()
    )]
    Checkpoint { path: PathBuf },
    /// The journal was removed but a `-wal` file is still there: a new journal would take that
    /// log for its own. Buffered rows are kept.
    #[error(
        "journal `{}` was removed while the daemon ran but `{}` was left: no new journal is created beside it (SQLite \
         would replay that log into it) and the records are kept in memory; remove it too",
        path.display(),
        left.display()
    )]
    RemovedLeaving { path: PathBuf, left: PathBuf },
    /// `SQLITE_FULL`: the disk (or the configured size limit) is full. Buffered rows are kept.
    #[error("journal `{}` is full (no space left on device); buffered rows are kept for the next flush", path.display())]
    Full { path: PathBuf },
    /// Any other failure while writing. Buffered rows are kept.
    #[error("cannot write journal `{}`; buffered rows are kept for the next flush", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("cannot read journal `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A configuration value is out of range.
    #[error("invalid value for `journal.{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl Error {
    /// Maps a write-side SQLite error, singling out `SQLITE_FULL`.
    fn write(path: &std::path::Path, source: rusqlite::Error) -> Self {
        match source.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::Full { path: path.to_path_buf() },
            Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
                Self::Corrupt { path: path.to_path_buf(), reason: source.to_string() }
            }
            _ => Self::Write { path: path.to_path_buf(), source },
        }
    }

    /// Maps a read-side SQLite error, singling out corruption: SQLite's own finding, text that
    /// is not UTF-8 (the journal writes only UTF-8) or a stored name this build does not know,
    /// which damaged pages give when SQLite does not notice them. (A column of another type than a query expects may be the query's
    /// bug: no advice to move the journal away for it.)
    fn read(path: &std::path::Path, source: rusqlite::Error) -> Self {
        let damaged = match &source {
            // Text that is not UTF-8, or a stored name this build does not know in a journal of
            // its own schema (a newer schema is refused at open).
            rusqlite::Error::FromSqlConversionFailure(_, _, e) => {
                e.is::<std::str::Utf8Error>() || e.is::<names::UnknownScope>() || e.is::<serde::de::value::Error>()
            }
            e => matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ),
        };
        if damaged {
            Self::Corrupt { path: path.to_path_buf(), reason: source.to_string() }
        } else {
            Self::Read { path: path.to_path_buf(), source }
        }
    }
}
