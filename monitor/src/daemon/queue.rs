//! The queue from the tracker loop to the sink thread: tokio's bounded mpsc channel, sent to with
//! `send().await` by the loop and read with `blocking_recv()` by the sink thread.
//!
//! The tracker must keep draining the ring buffer: whatever it cannot hand on is lost in the
//! kernel. The sink (identity, enrichment, journal) is slower per record than the tracker, so a
//! burst of short connections is absorbed here and worked off when the burst ends. The queue
//! holds up to [`SINK_QUEUE`] messages; when it is full the loop's `send` waits (the task yields,
//! no thread blocks), and behind it the tracker queue and then the ring buffer fill and the
//! kernel counts lost events.
//!
//! Memory: the queue takes memory only while it holds messages. tokio 1.x allocates a bounded
//! channel's slots lazily, in blocks of 32 messages linked as the sender advances (the capacity is
//! a semaphore, not an array); a block the receiver has emptied is reused at the tail (at most
//! three spare blocks) or freed (`tokio/src/sync/mpsc/list.rs`, `reclaim_block`). An empty queue
//! is one block; a full one [`SINK_QUEUE`] × 16 bytes (`size_of::<SinkMsg>()`) plus the boxed
//! records. Measured (`tests/sink_queue.rs`): empty 1 KiB, 100,000 messages 1.7 MB, drained
//! again 2.7 KiB.

use tokio::sync::mpsc;

use super::sink::SinkMsg;

/// Messages the queue holds at most: a flow record is a 16-byte slot plus a ~350-byte boxed
/// record, so ~96 MB when full; a burst of 260,000 records (130,000 short connections with
/// both ends watched) fits.
pub const SINK_QUEUE: usize = 262_144;

/// Sending side (the tracker loop).
pub struct SinkTx {
    tx: mpsc::Sender<SinkMsg>,
}

/// Receiving side (the sink thread).
pub struct SinkRx {
    rx: mpsc::Receiver<SinkMsg>,
}

/// A queue of at most `capacity` messages (at least one).
#[must_use]
pub fn sink_queue(capacity: usize) -> (SinkTx, SinkRx) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (SinkTx { tx }, SinkRx { rx })
}

impl SinkTx {
    /// Queues `msg`; waits while the queue is full. A message for a sink that has stopped is
    /// dropped.
    pub async fn send(&self, msg: SinkMsg) {
        let _ = self.tx.send(msg).await;
    }

    /// Messages waiting for the sink.
    #[must_use]
    pub fn len(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether no message waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Messages the queue holds at most.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.tx.max_capacity()
    }
}

impl SinkRx {
    /// The next message, waiting for it (a plain thread, never a runtime worker); `None` once
    /// every sender is gone and the queue is empty.
    pub fn recv(&mut self) -> Option<SinkMsg> {
        self.rx.blocking_recv()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn holds_messages_in_order_and_waits_when_full() {
        let (tx, mut rx) = sink_queue(2);
        tx.send(SinkMsg::Tick).await;
        tx.send(SinkMsg::Reload).await;
        assert_eq!((tx.len(), tx.max_len()), (2, 2));
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut seen = Vec::new();
            while let Some(msg) = rx.recv() {
                seen.push(matches!(msg, SinkMsg::Tick));
            }
            seen
        });
        // Full: waits until the consumer takes one.
        let started = Instant::now();
        tx.send(SinkMsg::Tick).await;
        assert!(started.elapsed() >= Duration::from_millis(40), "the third message must wait");
        drop(tx);
        assert_eq!(consumer.join().expect("consumer"), [true, false, true]);
    }

    #[test]
    fn a_message_is_a_small_slot() {
        // The queue's memory when full is SINK_QUEUE slots of this size (plus boxed records).
        assert!(std::mem::size_of::<SinkMsg>() <= 16, "{}", std::mem::size_of::<SinkMsg>());
    }
}
