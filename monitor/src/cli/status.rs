//! `monitor status`: the daemon as its journal last saw it, and the geolocation databases.

use std::{fmt::Write as _, os::unix::ffi::OsStrExt as _, process::ExitCode};

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};
use monitor::{
    enrich::{DbInfo, Enricher},
    escape::{Terminal, terminal_bytes},
    journal::TimeRange,
    settings::Settings,
};
use serde_json::json;

use super::{args::StatusArgs, exit, report::open_journal};

/// Prints the status.
pub fn execute(args: &StatusArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let journal = args.journal.clone().unwrap_or_else(|| settings.journal.path.clone());
    let reader = open_journal(&journal)?;
    let state = reader.state()?;
    let counts = reader.counts()?;
    let now = Timestamp::now();
    let day = TimeRange { since: now - SignedDuration::from_hours(24), until: now };
    let stats = reader.stats(day)?;
    let writer = monitor::journal::writer_pid(&journal);
    let running = writer.is_some();
    let (configured, geo_error) = match Enricher::open(&settings.geo) {
        Ok(e) => (e.databases(), e.warnings().to_vec()),
        Err(e) => (Vec::new(), vec![monitor::errors::chain(&e)]),
    };
    let mut out = String::new();
    if args.json {
        let doc = json!({
            "journal": journal, "running": running, "writer_pid": writer, "daemon": state, "rows": counts,
            "last_24h": stats, "databases_configured": configured, "geo_warnings": geo_error,
        });
        writeln!(out, "{doc}")?;
        super::write_stdout(out.as_bytes()).context("cannot write the status")?;
        return Ok(ExitCode::from(exit::OK));
    }
    writeln!(out, "journal   {}", journal.display())?;
    match &state {
        Some(s) => {
            // The lock's holder is the daemon writing the journal now; the recorded one may
            // have stopped and another process hold the lock (a daemon starting, a `flock`).
            let how = match writer {
                Some(w) if i64::from(w) == i64::from(s.pid) => "running".to_owned(),
                Some(w) => format!("not running; process {w} holds the journal's lock"),
                None => "not running".to_owned(),
            };
            writeln!(
                out,
                "daemon    pid {} ({how}), started {}, version {}",
                s.pid,
                s.started_at,
                Terminal(&s.version)
            )?;
            match &s.degradations {
                Some(d) if d.is_empty() => writeln!(out, "degraded  no (full hook set)")?,
                Some(d) => writeln!(out, "degraded  {}", Terminal(&d.join(", ")))?,
                None => {}
            }
            let last = s.last_flush.map_or_else(|| "never".to_owned(), |t| t.to_string());
            writeln!(
                out,
                "flushes   {} (last {last}), {} rows written, every {} s",
                s.flushes, s.rows_written, s.flush_interval_secs
            )?;
            if running && let Some(quiet) = flush_overdue(s, now) {
                writeln!(
                    out,
                    "warning   the daemon has written nothing to this journal for {quiet} s (a flush is due every {} s): \
                     its writes are failing or stalled (a full or frozen disk, a removed journal); its log says why, \
                     and the records wait in its memory",
                    s.flush_interval_secs
                )?;
            }
            for db in &s.databases {
                let age = (now.as_second() - i64::try_from(db.build_epoch).unwrap_or(0)) / 86_400;
                writeln!(
                    out,
                    "in use    {} {} ({}, {age} days old)",
                    Terminal(&db.role),
                    db.path.as_deref().map_or_else(|| "?".into(), |p| terminal_bytes(p.as_os_str().as_bytes())),
                    Terminal(&db.database_type)
                )?;
            }
        }
        None => writeln!(out, "daemon    never ran on this journal")?,
    }
    writeln!(
        out,
        "rows      {} connection records, {} residency rows, {} app identities (name with executable, command line, user, unit, container: reports group them by name), {} exports",
        counts.connections, counts.residency, counts.apps, counts.exports
    )?;
    if stats.rows == 0 {
        // A daemon writes its first statistics row `tracker.stats_interval_secs` after its start.
        writeln!(
            out,
            "last 24h  no statistics row in the last 24 hours: events lost, unattributed traffic and names not known"
        )?;
    } else {
        writeln!(
            out,
            "last 24h  events lost {} of {}, unattributed {} B in {} packets, incomplete flows {}",
            stats.events_lost,
            stats.events_submitted,
            stats.unattributed_bytes,
            stats.unattributed_packets,
            stats.incomplete_flows
        )?;
    }
    if stats.rows > 0 {
        writeln!(
            out,
            "names     {} names learned, payload copies {} ({} lost), {} unparsable payloads (last 24h)",
            stats.names_learned, stats.copies_submitted, stats.copies_lost, stats.names_malformed
        )?;
    }
    // The configured files as they are now: those the daemon uses are listed above already.
    let in_use = |db: &DbInfo| {
        state.as_ref().is_some_and(|s| {
            s.databases.iter().any(|u| {
                u.role == db.role
                    && u.path.as_deref() == Some(db.path.as_path())
                    && u.database_type == *db.db.database_type
                    && u.build_epoch == db.db.build_epoch
            })
        })
    };
    for db in configured.iter().filter(|db| !in_use(db)) {
        writeln!(
            out,
            "geo       {} {} ({}, {} days old){}",
            db.role,
            terminal_bytes(db.path.as_os_str().as_bytes()),
            Terminal(&db.db.database_type),
            db.age_days,
            match &state {
                // Recorded with the first flush: none yet, nothing to compare with.
                Some(s) if s.databases.is_empty() => ": the daemon has not recorded the databases it uses yet",
                Some(_) => ": not what the daemon uses (SIGHUP reloads the databases)",
                None => "",
            }
        )?;
    }
    for w in &geo_error {
        writeln!(out, "warning   {w}")?;
    }
    super::write_stdout(out.as_bytes()).context("cannot write the status")?;
    Ok(ExitCode::from(exit::OK))
}

/// Seconds since the daemon last wrote (or, before its first flush, since it started) when that
/// is more than three flush intervals and ten seconds: its writes are failing or stalled.
fn flush_overdue(s: &monitor::journal::DaemonState, now: jiff::Timestamp) -> Option<i64> {
    let since = s.last_flush.unwrap_or(s.started_at);
    let quiet = now.as_second() - since.as_second();
    let bound = i64::try_from(s.flush_interval_secs.saturating_mul(3)).unwrap_or(i64::MAX).saturating_add(10);
    (quiet > bound).then_some(quiet)
}

/// Whether a daemon writes `journal`: a process holds its single-writer lock.
pub(super) fn daemon_running(journal: &std::path::Path) -> bool {
    monitor::journal::writer_pid(journal).is_some()
}
