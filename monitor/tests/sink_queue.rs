//! The sink queue takes memory only while it holds messages (tokio's mpsc allocates its
//! slots lazily, in blocks of 32), measured with a counting allocator. One test in this binary:
//! the count is process-wide.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

use monitor::daemon::{SINK_QUEUE, SinkMsg, sink_queue};

/// Bytes currently allocated by the process.
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
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
