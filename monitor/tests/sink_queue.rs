//! The sink queue takes memory only while it holds messages (tokio's mpsc allocates its
//! slots lazily, in blocks of 32), measured with a counting allocator. One test in this binary:
//! the count is process-wide.

mod counting;

use counting::Counting;
use monitor::daemon::{SINK_QUEUE, SinkMsg, sink_queue};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    usize::try_from(counting::live()).unwrap_or_default()
}

#[test]
fn the_sink_queue_takes_memory_only_while_it_holds_messages() {
    const HELD: usize = 100_000;
    const KIB: usize = 1024;
    let slot = size_of::<SinkMsg>();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();

    let base = live();
    let (tx, mut rx) = sink_queue(SINK_QUEUE);
    let empty = live() - base;
    // A preallocated array would be SINK_QUEUE × slot (6 MiB).
    assert!(empty < 4 * KIB, "an empty queue takes {empty} bytes");

    runtime.block_on(async {
        for _ in 0..HELD {
            tx.send(SinkMsg::Tick).await;
        }
    });
    let full = live() - base;
    assert!(full >= HELD * slot && full < HELD * slot * 11 / 10 + 4 * KIB, "{HELD} messages take {full} bytes");

    for _ in 0..HELD {
        assert!(matches!(rx.recv(), Some(SinkMsg::Tick)));
    }
    let drained = live() - base;
    // The current block and at most three spare ones are kept.
    assert!(drained < 8 * KIB, "a drained queue still takes {drained} bytes");
    eprintln!("slot {slot} B; empty {empty} B, {HELD} messages {full} B, drained {drained} B");
    drop((tx, rx));
}
