//! The queue from the tracker loop to the sink thread.
//!
//! The tracker must keep draining the ring buffer: whatever it cannot hand on is lost in the
//! kernel. The sink (identity, enrichment, journal) is slower per record than the tracker, so a
//! burst of short connections is absorbed here and worked off when the burst ends. The queue
//! holds up to [`SINK_QUEUE`] messages and takes memory only for the messages it holds (a
//! linked channel, not a preallocated array); when it is full the tracker waits, and behind it
//! the ring buffer fills and the kernel counts lost events.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use super::sink::SinkMsg;

/// Messages the queue holds at most: ~350 B each (a flow record), so ~90 MB when full; a burst
/// of 260,000 records (130,000 short connections with both ends watched) fits.
pub const SINK_QUEUE: usize = 262_144;

/// How long the sender sleeps between looks at a full queue.
const FULL_WAIT: Duration = Duration::from_millis(1);

/// Sending side (the tracker loop).
pub struct SinkTx {
    tx: mpsc::Sender<SinkMsg>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// Receiving side (the sink thread).
pub struct SinkRx {
    rx: mpsc::Receiver<SinkMsg>,
    queued: Arc<AtomicUsize>,
}

/// A queue of at most `capacity` messages.
pub fn sink_queue(capacity: usize) -> (SinkTx, SinkRx) {
    let (tx, rx) = mpsc::channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (SinkTx { tx, queued: Arc::clone(&queued), capacity: capacity.max(1) }, SinkRx { rx, queued })
}

impl SinkTx {
    /// Queues `msg`; waits (off the async workers) while the queue is full. A message for a
    /// sink that has stopped is dropped.
    pub fn send(&self, msg: SinkMsg) {
        if self.queued.load(Ordering::Acquire) >= self.capacity {
            tokio::task::block_in_place(|| {
                while self.queued.load(Ordering::Acquire) >= self.capacity {
                    std::thread::sleep(FULL_WAIT);
                }
            });
        }
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.send(msg).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Messages waiting for the sink.
    pub fn len(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

impl SinkRx {
    /// The next message; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<SinkMsg> {
        let msg = self.rx.recv().ok()?;
        self.queued.fetch_sub(1, Ordering::AcqRel);
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_messages_in_order_and_waits_when_full() {
        let (tx, rx) = sink_queue(2);
        tx.send(SinkMsg::Tick);
        tx.send(SinkMsg::Reload);
        assert_eq!(tx.len(), 2);
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut seen = Vec::new();
            while let Some(msg) = rx.recv() {
                seen.push(matches!(msg, SinkMsg::Tick));
            }
            seen
        });
        // Full: waits until the consumer takes one.
        let started = std::time::Instant::now();
        tx.send(SinkMsg::Tick);
        assert!(started.elapsed() >= Duration::from_millis(40), "the third message must wait");
        drop(tx);
        assert_eq!(consumer.join().expect("consumer"), [true, false, true]);
    }
}
