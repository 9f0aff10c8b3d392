//! Issue 8: no allocation per record on the daemon's hot path. Churn-shaped TCP flows go
//! through the whole pipeline (tracker, identity, enrichment, journal; `--output none` as the
//! service runs) on a replay, and a counting allocator counts what the process allocates while
//! they pass. One test per binary: nothing else allocates meanwhile.

#![expect(clippy::unwrap_used, clippy::expect_used, reason = "test helpers panic on failure (house style R16)")]

mod counting;
mod replay;

use counting::Counting;
use monitor::settings::OutputFormat;
use replay::*;

#[global_allocator]
static COUNTING: Counting = Counting;

/// Flows per batch the replay hands over (as the ring buffer reader does).
const PER_BATCH: u64 = 128;

/// Churn-shaped flows `first..first + n`, created in the past (their process is gone: one
/// /proc lookup for all), built before they are counted.
fn batches(first: u64, n: u64, created_ns: u64) -> Vec<monitor::daemon::Batch> {
    (first..first + n)
        .step_by(usize::try_from(PER_BATCH).unwrap())
        .map(|start| {
            (start..start + PER_BATCH)
                .flat_map(|cookie| tcp_flow_released_first(cookie, created_ns + cookie * 1_000, 1024, 512))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_allocates_next_to_nothing_per_flow_record() {
    const WARM_UP: u64 = 16 * 1024;
    const COUNTED: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings(dir.path());
    settings.output = OutputFormat::None;
    let run = Run::start(&settings);
    let created_ns = run.now_ns() - 60 * SEC;
    let (warm_up, counted) = (batches(1, WARM_UP, created_ns), batches(1 + WARM_UP, COUNTED, created_ns));
    // Caches, tables, spare flows and SQLite's statements reach their working size; the count
    // starts once the warm-up is in the journal and ends once the counted flows are (each a
    // whole number of the sink's early flushes), before the shutdown.
    let journal = journal(dir.path());
    let mut rows = journal.prepare("SELECT count(*) FROM connections").unwrap();
    let mut journaled = async |n: u64| {
        for _ in 0..3000 {
            if rows.query_row([], |r| r.get::<_, i64>(0)).unwrap() == i64::try_from(n).unwrap() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{n} records not journaled within 60 s");
    };
    for batch in warm_up {
        run.send(batch).await;
    }
    journaled(WARM_UP).await;
    let before = counting::allocations();
    for batch in counted {
        run.send(batch).await;
    }
    journaled(WARM_UP + COUNTED).await;
    let per_record = (counting::allocations() - before) as f64 / COUNTED as f64;
    let (_, stats) = run.stop().await;
    assert_eq!(stats.tracker.closed_flows, WARM_UP + COUNTED, "every flow recorded");
    eprintln!("{per_record:.3} allocations per flow record (SQLite's own excluded: it calls malloc directly)");
    // What remains is per batch or per flush (channel blocks, statements, a flush's maps), and
    // the B-tree nodes of the rollup's remembered cookies: 0.2 in all when this was written;
    // before, 2 to 6 per record (a box per flow, a `comm` string per record and per copy of the
    // record, a kernel-data app per record of a gone process).
    assert!(per_record < 0.5, "{per_record:.3} allocations per flow record");
}
