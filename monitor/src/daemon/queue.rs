//! The queue from the tracker loop to the sink thread: tokio's unbounded mpsc channel bounded by
//! a tokio semaphore of [`SINK_QUEUE`] permits, sent to with `send().await` by the loop and read
//! with `blocking_recv()` by the sink thread.
//!
//! The tracker must keep draining the ring buffer: whatever it cannot hand on is lost in the
//! kernel. The sink (identity, enrichment, journal) is slower per record than the tracker, so a
//! burst of short connections is absorbed here and worked off when the burst ends. The loop
//! hands on the records of one event batch as one message ([`SinkMsg::Records`]: one wake-up of
//! the sink per batch, not per record), so the bound counts records, not messages: a message
//! takes one permit per record it carries, and a payload copy one per record's size of its bytes
//! (at least one). When the permits are used up the
//! loop's `send` waits (the task yields, no thread blocks), and behind it the tracker queue and
//! then the ring buffer fill and the kernel counts lost events.
//!
//! Memory: the queue takes memory only while it holds messages. tokio 1.x allocates a channel's
//! slots lazily, in blocks of 32 messages linked as the sender advances; a block the receiver has
//! emptied is reused at the tail (at most three spare blocks) or freed
//! (`tokio/src/sync/mpsc/list.rs`, `reclaim_block`). An empty queue is one block; a full one at
//! most [`SINK_QUEUE`] × `size_of::<SinkMsg>()` (24 bytes) plus the records. Measured
//! (`tests/sink_queue.rs`): empty 1 KiB, 100,000 messages 2.5 MB, drained again 3.7 KiB.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use super::sink::SinkMsg;

/// Flow records (and other messages) the queue holds at most: ~350 bytes per record, so ~96 MB
/// when full; a burst of 260,000 records (130,000 short connections with both ends watched)
/// fits.
pub const SINK_QUEUE: usize = 262_144;

/// Sending side (the tracker loop).
pub struct SinkTx {
    tx: mpsc::UnboundedSender<SinkMsg>,
    permits: Arc<Semaphore>,
    max: u32,
}

/// Receiving side (the sink thread).
pub struct SinkRx {
    rx: mpsc::UnboundedReceiver<SinkMsg>,
    permits: Arc<Semaphore>,
    max: u32,
}

/// A queue of at most `capacity` records or other messages (at least one).
#[must_use]
pub fn sink_queue(capacity: usize) -> (SinkTx, SinkRx) {
    let max = u32::try_from(capacity.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let permits = Arc::new(Semaphore::new(max as usize));
    let (tx, rx) = mpsc::unbounded_channel();
    (SinkTx { tx, permits: Arc::clone(&permits), max }, SinkRx { rx, permits, max })
}

impl SinkTx {
    /// Queues `msg`; waits while the queue is full. A message for a sink that has stopped is
    /// dropped.
    pub async fn send(&self, msg: SinkMsg) {
        let weight = weight(&msg, self.max);
        // Fails only once the receiver is gone (it closes the semaphore): the message is dropped.
        let Ok(permit) = self.permits.acquire_many(weight).await else { return };
        // Given back by the receiver when it takes the message.
        permit.forget();
        if self.tx.send(msg).is_err() {
            self.permits.add_permits(weight as usize);
        }
    }

    /// Records (and other messages) waiting for the sink.
    #[must_use]
    pub fn len(&self) -> usize {
        (self.max as usize).saturating_sub(self.permits.available_permits())
    }

    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records (and other messages) the queue holds at most.
    #[must_use]
    pub fn max_len(&self) -> usize {
        self.max as usize
    }
}

impl SinkRx {
    /// The next message, waiting for it (a plain thread, never a runtime worker); `None` once
    /// every sender is gone and the queue is empty.
    pub fn recv(&mut self) -> Option<SinkMsg> {
        let msg = self.rx.blocking_recv()?;
        self.permits.add_permits(weight(&msg, self.max) as usize);
        Some(msg)
    }
}

impl Drop for SinkRx {
    /// A sink that stopped (or panicked) while the queue was full must not leave the tracker
    /// loop waiting for permits forever (it would never see the shutdown signal): closing the
    /// semaphore wakes every waiting `send`, which then drops its message.
    fn drop(&mut self) {
        self.permits.close();
    }
}

/// Bytes a payload copy takes per permit: a record's size, so that the bound on memory holds
/// for copies too (a copy holds up to 2 KiB of payload: one permit per copy let a burst of them
/// hold about six times what the bound says; a review).
const COPY_BYTES_PER_PERMIT: usize = 350;

/// Permits a message takes: one per record it carries, one per [`COPY_BYTES_PER_PERMIT`] of a
/// payload copy (its header included), at least one; a batch larger than the whole queue takes
/// every permit (it waits for an empty queue).
fn weight(msg: &SinkMsg, max: u32) -> u32 {
    let items = match msg {
        SinkMsg::Records(records) => records.len(),
        SinkMsg::Copies(copies) => copies
            .iter()
            .map(|c| (size_of::<crate::probe::Copied>() + c.data.len()).div_ceil(COPY_BYTES_PER_PERMIT))
            .sum(),
        _ => 1,
    };
    u32::try_from(items).unwrap_or(u32::MAX).clamp(1, max)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{
        journal::tests::fixtures::{Flow, at},
        tracker::record::RecordKind,
    };

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

    #[tokio::test]
    async fn counts_records_not_messages() {
        let records = |n: u64| {
            let mut flow = Flow::new(1, "192.0.2.1:443", at(1_800_000_000));
            (0..n).map(|_| flow.record(RecordKind::Close, at(1_800_000_001), 1, 1)).collect::<Vec<_>>()
        };
        let (tx, mut rx) = sink_queue(3);
        tx.send(SinkMsg::Records(records(2))).await;
        tx.send(SinkMsg::Tick).await;
        assert_eq!(tx.len(), 3, "two records and a tick");
        let consumer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let first = rx.recv().map(|m| matches!(m, SinkMsg::Records(r) if r.len() == 2));
            std::thread::sleep(Duration::from_millis(50));
            let mut rest = Vec::new();
            while let Some(msg) = rx.recv() {
                rest.push(msg);
            }
            (first, rest.len())
        });
        // Full: a one-record batch waits until the two records are taken, not just a message.
        let started = Instant::now();
        tx.send(SinkMsg::Records(records(1))).await;
        assert!(started.elapsed() >= Duration::from_millis(40), "the record must wait for room");
        assert_eq!(tx.len(), 2, "the tick and the new record");
        // A batch larger than the queue waits for an empty queue, then goes through.
        tx.send(SinkMsg::Records(records(5))).await;
        drop(tx);
        assert_eq!(consumer.join().expect("consumer"), (Some(true), 3));
    }

    /// A batch of payload copies weighs its copies, as a batch of records its records: the
    /// queue's bound holds whatever the messages carry (review finding: a batch of copies took
    /// one permit however many copies it held).
    /// Copies weigh their bytes too: a full 2 KiB copy as several records (a later review: one
    /// permit per copy let copies hold six times the bound's memory).
    #[test]
    fn a_batch_of_copies_weighs_its_copies() {
        let copy = |len: usize| crate::probe::Copied {
            header: monitor_common::copy::CopyHeader::default(),
            data: vec![0; len].into_boxed_slice(),
        };
        let copies = |n: usize, len: usize| SinkMsg::Copies(Box::new((0..n).map(|_| copy(len)).collect()));
        assert_eq!(weight(&copies(5, 8), 100), 5);
        assert_eq!(weight(&copies(0, 8), 100), 1, "at least one");
        assert_eq!(weight(&copies(500, 8), 100), 100, "at most the whole queue");
        assert_eq!(weight(&SinkMsg::Tick, 100), 1);
        let full = size_of::<crate::probe::Copied>() + 2048;
        assert_eq!(weight(&copies(3, 2048), 1000), u32::try_from(3 * full.div_ceil(COPY_BYTES_PER_PERMIT)).unwrap());
        assert!(weight(&copies(1, 2048), 1000) >= 6, "a full copy weighs what six records do");
    }

    /// The sink thread dying (a panic) while the queue is full: the loop's waiting `send`
    /// returns, so the loop can still see the shutdown signal (review finding: it waited for
    /// permits forever).
    #[tokio::test]
    async fn a_send_waiting_on_a_full_queue_returns_when_the_sink_is_gone() {
        let (tx, rx) = sink_queue(1);
        tx.send(SinkMsg::Tick).await;
        let sink = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(rx);
        });
        let waited = tokio::time::timeout(Duration::from_secs(10), tx.send(SinkMsg::Tick)).await;
        assert!(waited.is_ok(), "send must not wait for a receiver that is gone");
        sink.join().expect("sink");
        // Later sends return at once.
        tokio::time::timeout(Duration::from_secs(1), tx.send(SinkMsg::Reload)).await.expect("at once");
    }

    #[test]
    fn a_message_is_a_small_slot() {
        // The queue's memory when full is at most SINK_QUEUE slots of this size (plus records).
        assert!(std::mem::size_of::<SinkMsg>() <= 24, "{}", std::mem::size_of::<SinkMsg>());
    }
}
