//! The completeness section: statistics, journal losses and retention, as figures and sentences.

use jiff::Timestamp;

use super::{
    AppReport, Completeness, Error, Period, ReportQuery,
    fmt::{bytes, grouped, pct, share, span_ms},
    source::Figures,
};
use crate::journal::{JournalReader, ResidencyRow};

/// Apps named in the note on apps named from the kernel's record (the rest are counted).
const KERNEL_NAMED_SHOWN: usize = 10;

/// Builds the completeness section of a report whose residency figures came from `figures`.
/// `previous`: the period new destinations are compared with, and the time before which
/// connection records were purged, if they were.
pub(super) fn completeness(
    reader: &JournalReader,
    query: &ReportQuery,
    figures: Figures,
    rows: &[ResidencyRow],
    attributed_wire_bytes: u64,
    apps: &[AppReport],
    (previous, purged): (&Period, Option<Timestamp>),
) -> Result<Completeness, Error> {
    let range = query.period.time_range();
    let stats = reader.stats(range)?;
    let losses = reader.losses(range)?;
    let gaps = reader.run_gaps(range)?;
    // Runs in the period: those with statistics rows in it, and those that ran in it without one.
    let runs = gaps.runs.max(stats.runs);
    let incomplete_flows: u64 = apps.iter().map(|a| a.incomplete_flows).sum();
    let unattributed_share_pct =
        (stats.rows > 0).then(|| share(stats.unattributed_bytes, attributed_wire_bytes + stats.unattributed_bytes));
    let endpoints_purged_before = purged.filter(|p| *p > query.period.since);

    let mut notes = Vec::new();
    if stats.rows == 0 {
        notes.push(
            "no statistics were recorded in this period: lost events and unattributed traffic are unknown".into(),
        );
    } else {
        notes.push(format!(
            "{} statistics snapshots from {} daemon run(s): {} kernel events produced, {} lost (ring buffer full)",
            grouped(stats.rows),
            grouped(runs),
            grouped(stats.events_submitted),
            grouped(stats.events_lost)
        ));
        if stats.events_lost > 0 {
            notes.push("flows whose events were lost may be missing or undercounted".into());
        }
        if stats.decode_errors > 0 {
            notes.push(format!("{} events could not be decoded", grouped(stats.decode_errors)));
        }
        if stats.storage_failures > 0 {
            notes.push(format!("{} sockets could not be counted (no socket storage)", grouped(stats.storage_failures)));
        }
        if stats.peer_parse_failures > 0 {
            notes.push(format!(
                "{} packets of unconnected sockets (UDP, ping, raw) had headers the kernel program could not read: \
                 their bytes are in no flow record",
                grouped(stats.peer_parse_failures)
            ));
        }
        notes.push(format!(
            "{} of traffic ({} of all wire bytes) could not be charged to any socket (host-wide, e.g. handshakes, time-wait packets, and frames of packet sockets with their link-layer headers; traffic through AF_XDP sockets and TUN/TAP devices is in no figure)",
            bytes(stats.unattributed_bytes),
            pct(unattributed_share_pct.unwrap_or(0.0))
        ));
        if query.app.is_some() {
            notes.push("statistics are host-wide: they are not filtered by app".into());
        }
    }
    if gaps.restarts > 0 || gaps.unwatched_ms > 0 {
        let started = if gaps.restarts > 0 {
            format!("the daemon started again {} time(s) in this period and ", grouped(gaps.restarts))
        } else {
            "the daemon ".into()
        };
        notes.push(format!(
            "{started}was not running for about {} of this period: traffic then is not counted (measured \
             from each run's stop, or for a run killed from its last journal flush; a run killed also loses \
             what it had not written yet: its records since that flush, and its statistics (lost events, \
             unattributed bytes) since its last snapshot, up to `tracker.stats_interval_secs`; a run counts \
             only from when its programs attach, shortly after its start)",
            span_ms(gaps.unwatched_ms)
        ));
    }
    if incomplete_flows > 0 {
        notes
            .push(format!("{} flows ended incomplete (part of their history was not seen)", grouped(incomplete_flows)));
    }
    let sources: Vec<String> = apps
        .iter()
        .flat_map(|a| a.payload_sources.iter().map(|s| s.payload_source.clone()))
        .filter(|s| s != crate::variant::name(crate::tracker::record::PayloadSource::Syscall))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !sources.is_empty() {
        notes.push(format!(
            "payload of some flows was not measured at the syscall layer but by: {} (see payload_sources)",
            sources.join(", ")
        ));
    }
    let kernel_named: Vec<String> = reader
        .kernel_named_apps(range)?
        .into_iter()
        .filter(|name| query.app.as_deref().is_none_or(|app| app == name))
        .collect();
    if !kernel_named.is_empty() {
        let shown: Vec<&str> = kernel_named.iter().take(KERNEL_NAMED_SHOWN).map(String::as_str).collect();
        let more = kernel_named.len().saturating_sub(KERNEL_NAMED_SHOWN);
        notes.push(format!(
            "some traffic of {} is charged to processes that exited before the monitor read them: named from the \
             kernel's 15-character process name, their executable unknown (`source: kernel` in the records){}",
            shown.join(", "),
            if more > 0 { format!(" (and {more} more apps)") } else { String::new() }
        ));
    }
    if losses.records > 0 || losses.buckets > 0 {
        notes.push(format!(
            "the journal dropped {} connection records and {} residency rows ({} of payload) while writes were failing",
            grouped(losses.records),
            grouped(losses.buckets),
            bytes(losses.payload_bytes)
        ));
        // The residency rows' payload is what the interval figures lack; these figures are the
        // records' own, and lack whatever the dropped records carried.
        if losses.records > 0 && !matches!(figures, Figures::Intervals) {
            notes.push(
                "this report's figures are summed from connection records (its bounds are not on whole minutes, \
                 or it is a session's): they lack the bytes of the dropped records, an amount the journal does not \
                 know (a report over whole minutes reads the residency rows instead)"
                    .into(),
            );
        }
    }
    let degradations = reader.state()?.and_then(|s| s.degradations);
    if let Some(d) = degradations.as_ref().filter(|d| !d.is_empty()) {
        notes.push(format!(
            "the latest daemon run was degraded: {} (see the README, section Degraded operation)",
            d.join(", ")
        ));
    }
    if let Some(p) = endpoints_purged_before {
        notes.push(format!(
            "endpoint detail covers only the time since {p}: older connection records were purged (retention)"
        ));
    }
    if let Figures::Records { cgroup } = figures {
        notes.extend(from_records(cgroup, previous, purged.filter(|p| *p > previous.since), query.period.since));
    }
    let now = Timestamp::now();
    if query.period.since > now {
        notes.push(format!(
            "the period has not begun (it starts at {}): nothing could be recorded in it yet",
            query.period.since
        ));
    } else if query.period.until > now {
        notes.push("the period has not ended: the figures are those recorded so far".into());
    }
    if let Some(app) = query.app.as_deref()
        && apps.is_empty()
    {
        notes.push(format!(
            "no traffic of an app named \"{app}\" in this period (names are matched as JSON or the table writes them; a report without --app lists every app)"
        ));
    }
    Ok(Completeness {
        degradations,
        stats_rows: stats.rows,
        runs,
        restarts: gaps.restarts,
        unwatched_ms: gaps.unwatched_ms,
        events_submitted: stats.events_submitted,
        events_lost: stats.events_lost,
        decode_errors: stats.decode_errors,
        storage_failures: stats.storage_failures,
        unattributed_bytes: stats.unattributed_bytes,
        unattributed_packets: stats.unattributed_packets,
        attributed_wire_bytes,
        unattributed_share_pct,
        incomplete_flows,
        journal_dropped_records: losses.records,
        journal_dropped_payload_bytes: losses.payload_bytes,
        endpoints_purged_before,
        data_since: rows.iter().map(|r| r.first_interval).min(),
        data_until: rows.iter().map(|r| r.last_interval_end).max(),
        notes,
    })
}

/// The notes of figures summed from connection records (of sockets created in `cgroup` when
/// given): where they come from, and what records purged before `purged` leave out of the period
/// (from `since`) and of the comparison with the `previous` one.
fn from_records(cgroup: Option<u64>, previous: &Period, purged: Option<Timestamp>, since: Timestamp) -> Vec<String> {
    let mut notes = vec![match cgroup {
        Some(id) => format!(
            "the figures are summed from the connection records of sockets created in cgroup {id} by their time (the \
             residency table has no cgroup)"
        ),
        None => "the figures are summed from the connection records by their time: the period's bounds are not on \
                 the journal's residency intervals (a period of whole intervals reads the residency table)"
            .into(),
    }];
    match purged {
        Some(p) if p > since => notes.push(format!(
            "the figures cover only the time since {p}: they are summed from connection records, and older ones \
             were purged (retention)"
        )),
        Some(p) => notes.push(format!(
            "new countries and ASNs are compared with the records of {} since {p} only: older connection records \
             were purged (retention)",
            previous.label
        )),
        None => {}
    }
    notes
}
