//! The time between daemon runs, from the `stats` table: nothing is watched from a run's end to
//! the next run's start, so a report over that time says how long its figures could not see.

use jiff::Timestamp;
use rusqlite::OptionalExtension as _;

use super::{Error, JournalReader, TimeRange, names::ms};

/// One daemon run as its statistics rows show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RunSpan {
    /// `run_started_ms`: the daemon's start (its programs attach shortly after).
    started_ms: i64,
    /// Whether its final snapshot is there (it stopped cleanly).
    stopped: bool,
    /// Time of its latest statistics row: its stop (the final snapshot), or for a run killed or
    /// crashed its last flush (the row the next run added), else its last snapshot.
    last_ms: i64,
}

/// Restarts in a range and the time nothing was watched between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunGaps {
    /// Runs that ran in the range: from their start to their latest statistics row, or to the
    /// next run's start (the latest run: to now, unless it stopped cleanly).
    pub runs: u64,
    /// Runs that started in the range after an earlier run.
    pub restarts: u64,
    /// Milliseconds of the range between a run's latest statistics row and the next run's start:
    /// an upper bound of the time nothing was watched (exact where the earlier run stopped
    /// cleanly, up to a flush interval more where it was killed), not counting the next run's own
    /// start-up before its programs attach.
    pub unwatched_ms: u64,
}

impl JournalReader {
    /// Restarts in `range` and the time between runs that falls in it.
    ///
    /// # Errors
    /// When the query fails.
    pub fn run_gaps(&self, range: TimeRange) -> Result<RunGaps, Error> {
        let mut stmt = self
            .conn()
            .prepare_cached(
                // Every run: the one after the range ends a gap the range may end in.
                "SELECT run_started_ms, MAX(time_ms), MAX(last) FROM stats
                 GROUP BY run_started_ms ORDER BY run_started_ms",
            )
            .map_err(|e| self.err(e))?;
        let runs: rusqlite::Result<Vec<RunSpan>> = stmt
            .query_map([], |row| Ok(RunSpan { started_ms: row.get(0)?, last_ms: row.get(1)?, stopped: row.get(2)? }))
            .and_then(Iterator::collect);
        let runs = runs.map_err(|e| self.err(e))?;
        Ok(gaps(&runs, ms(range.since), ms(range.until)))
    }
}

/// The start of the run `daemon_state` describes and its last flush (its start when it never
/// flushed), when that is later than every statistics row of the run, or the run has none, and the
/// run has no final one (killed before its first snapshot or after); `None` otherwise, or on a new
/// journal.
pub(super) fn earlier_run_end(conn: &rusqlite::Connection) -> rusqlite::Result<Option<(Timestamp, Timestamp)>> {
    let state: Option<(i64, Option<i64>)> = conn
        .query_row("SELECT started_ms, last_flush_ms FROM daemon_state WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    // A run killed before its first flush: alive at its start at least.
    let Some((started, flushed)) = state else { return Ok(None) };
    let flushed = flushed.unwrap_or(started);
    let (latest, stopped): (Option<i64>, bool) = conn.query_row(
        "SELECT MAX(time_ms), COALESCE(MAX(last), 0) FROM stats WHERE run_started_ms = ?1",
        [started],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    if stopped || latest.is_some_and(|l| l >= flushed) {
        return Ok(None);
    }
    let (Ok(started), Ok(flushed)) = (Timestamp::from_millisecond(started), Timestamp::from_millisecond(flushed))
    else {
        return Ok(None);
    };
    Ok(Some((started, flushed)))
}

/// Folds consecutive runs (by start) into the runs that ran in `[since, until)`, the restarts in
/// it, and the time between runs that falls in it (a gap the range starts or ends in counts for
/// its part).
fn gaps(runs: &[RunSpan], since: i64, until: i64) -> RunGaps {
    let mut out = RunGaps::default();
    for (i, run) in runs.iter().enumerate() {
        let next = runs.get(i + 1);
        // Its end: the next run's start bounds it; the latest run runs on unless it stopped.
        let end = match next {
            Some(n) => run.last_ms.min(n.started_ms),
            None if run.stopped => run.last_ms,
            None => i64::MAX,
        };
        if run.started_ms < until && end >= since {
            out.runs += 1;
        }
        if i > 0 && run.started_ms >= since && run.started_ms < until {
            out.restarts += 1;
        }
        if let Some(n) = next {
            let (from, to) = (run.last_ms.max(since), n.started_ms.min(until));
            out.unwatched_ms += u64::try_from(to - from).unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started_ms: i64, last_ms: i64) -> RunSpan {
        RunSpan { started_ms, last_ms, stopped: false }
    }

    fn gaps_of(runs: u64, restarts: u64, unwatched_ms: u64) -> RunGaps {
        RunGaps { runs, restarts, unwatched_ms }
    }

    #[test]
    fn the_gaps_between_runs_are_summed_within_the_range() {
        let runs = [run(0, 100), run(130, 500), run(520, 900)];
        assert_eq!(gaps(&runs, 0, 1000), gaps_of(3, 2, 30 + 20));
        // A range starting inside the first gap counts only its part of it.
        assert_eq!(gaps(&runs, 110, 1000), gaps_of(2, 2, 20 + 20));
        // A restart before the range is not one of its restarts.
        assert_eq!(gaps(&runs, 200, 1000), gaps_of(2, 1, 20));
        // One run, or none: nothing between runs.
        assert_eq!(gaps(&runs[..1], 0, 1000), gaps_of(1, 0, 0));
        assert_eq!(gaps(&[], 0, 1000), RunGaps::default());
    }

    /// A range that ends in a gap, or lies in one, counts its part of the gap, although the next
    /// run starts after it (an adversarial re-check: such a range read as fully watched).
    #[test]
    fn a_range_in_a_gap_counts_its_part() {
        let runs = [run(0, 100), run(130, 500)];
        assert_eq!(gaps(&runs, 50, 120), gaps_of(1, 0, 20), "ends in the gap");
        assert_eq!(gaps(&runs, 105, 125), gaps_of(0, 0, 20), "inside the gap");
        assert_eq!(gaps(&runs, 110, 200), gaps_of(1, 1, 20), "starts in the gap");
    }

    /// The latest run runs on, unless it stopped: a range after its last row holds it.
    #[test]
    fn the_latest_run_counts_until_it_stopped() {
        assert_eq!(gaps(&[run(0, 100)], 200, 300), gaps_of(1, 0, 0));
        let stopped = RunSpan { started_ms: 0, last_ms: 100, stopped: true };
        assert_eq!(gaps(&[stopped], 200, 300), gaps_of(0, 0, 0));
    }

    #[test]
    fn a_run_that_overlaps_the_next_adds_no_time() {
        // A run whose last row is after the next one's start (two runs on one journal cannot
        // overlap, but the rows' clocks may step back): a restart, no negative time.
        assert_eq!(gaps(&[run(0, 200), run(150, 300)], 0, 1000), gaps_of(2, 1, 0));
    }
}
