//! Draining the event ring buffer into the tracker.

use std::{
    mem::size_of,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use log::{trace, warn};
use monitor_common::{
    copy::{COPY_KIND, COPY_MAX, CopyHeader},
    event::{Event, EventKind},
    gai::GAI_KIND,
};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use super::{Error, stats::DrainCounters};

/// Most events handed to the tracker in one message. A batch's room stays below the allocator's
/// mmap threshold ([`crate::sys::MMAP_THRESHOLD`]): a larger one (1,024 events, 229 KiB) was
/// mapped at every drain and unmapped by the tracker thread on the other core, a page fault per
/// page touched and a TLB shoot-down per batch.
pub const EVENT_BATCH: usize = 512;
const _: () = assert!(EVENT_BATCH * size_of::<(EventKind, Event)>() <= crate::sys::MMAP_THRESHOLD);

/// Pause after a drain that read less than [`BUSY_SHARE`] of the ring buffer, before looking
/// again. The kernel signals the ring buffer only when the reader has caught up, so while the
/// reader pauses, new events are queued without a wake-up each: under a burst of short
/// connections (≈ 9 events per TCP exchange) this turns one wake-up of the drainer and the
/// tracker per event into one per pause. The first event after a quiet spell still wakes the
/// reader at once; the events behind it wait at most this long.
pub const DRAIN_PAUSE: Duration = Duration::from_millis(4);

/// A drain that read at least this share of the ring buffer's size (1/8) is followed by the next
/// at once, not by [`DRAIN_PAUSE`]: events arrive fast enough to fill the ring during a pause
/// (with the default 2 MiB, above ≈ 290,000 events per second). Below it a pause fills at most a
/// quarter of the ring at twice the rate; a burst faster than that is what
/// `probe.ring_buffer_kib` is for, and its losses are counted.
pub const BUSY_SHARE: usize = 8;

/// Size of a ring-buffer record's header in the kernel (`BPF_RINGBUF_HDR_SZ`): a record takes
/// its length rounded up to 8 plus this.
const RECORD_HEADER: usize = 8;

/// A payload copy read from the ring buffer (see `monitor_common::copy`), or a `getaddrinfo`
/// result (`header.kind` is `monitor_common::gai::GAI_KIND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// What was copied from where.
    pub header: CopyHeader,
    /// The copied payload bytes (`header.len` of them).
    pub data: Box<[u8]>,
}

/// Payload copies read in one pass, in ring order.
pub type CopyBatch = Vec<Copied>;

/// Copies that followed `after_batches` event batches in the ring (counted from the drain's
/// start): a consumer applies them once it has handled that many batches and before it handles
/// the next, so what it learns from them (a name) reaches neither events before them in the ring
/// nor misses events after them.
#[derive(Debug)]
pub struct OrderedCopies {
    /// Event batches sent before these copies.
    pub after_batches: u64,
    /// The copies, in ring order.
    pub copies: CopyBatch,
}

/// Events in ring order, as sent to the tracker.
type EventBatch = Vec<(EventKind, Event)>;
/// Runs of copies, each with the number of the pass's event batches before it.
type CopyRuns = Vec<(usize, CopyBatch)>;

/// One pass over the ring, in ring order: event batches of at most [`EVENT_BATCH`], and runs of
/// copies, each with the number of this pass's batches before it. A copy after events ends their
/// batch, so a batch never holds events from both sides of a copy.
#[derive(Debug, Default)]
struct Pass {
    batches: Vec<EventBatch>,
    batch: EventBatch,
    copies: CopyRuns,
}

impl Pass {
    fn event(&mut self, ev: (EventKind, Event)) {
        if self.batch.capacity() == 0 {
            self.batch.reserve_exact(EVENT_BATCH);
        }
        self.batch.push(ev);
        if self.batch.len() == EVENT_BATCH {
            self.batches.push(std::mem::take(&mut self.batch));
        }
    }

    fn copy(&mut self, copy: Copied) {
        if !self.batch.is_empty() {
            self.batches.push(std::mem::take(&mut self.batch));
        }
        let at = self.batches.len();
        match self.copies.last_mut() {
            Some((before, run)) if *before == at => run.push(copy),
            _ => self.copies.push((at, vec![copy])),
        }
    }

    fn finish(mut self) -> (Vec<EventBatch>, CopyRuns) {
        if !self.batch.is_empty() {
            self.batches.push(self.batch);
        }
        (self.batches, self.copies)
    }
}

/// Reads the records when the kernel signals, decodes them and sends batches to `tx`; after a
/// drain that read less than an eighth of the ring's `ring_bytes` it waits 4 ms before the next,
/// so a steady trickle of events wakes the daemon about 250 times a second, not once per event.
/// When `tx` is full this waits, the ring buffer fills, and the kernel counts what it loses.
/// Returns when `shutdown` changes (after a last full drain) or the receiver is gone.
///
/// Payload copies of a pass go to `copies` (dropped and counted when absent or full) *before*
/// the pass's events go to `tx`, each run tagged with the event batches sent before it
/// ([`OrderedCopies`]): a consumer that queues what `copies` holds whenever it receives a batch,
/// and applies a run once it has handled `after_batches` batches, sees copies and events in ring
/// order.
///
/// # Errors
/// [`Error::Poll`] when the ring buffer cannot be registered with the runtime.
pub async fn drain(
    ring: RingBuf<MapData>,
    ring_bytes: usize,
    tx: mpsc::Sender<Vec<(EventKind, Event)>>,
    copies: Option<mpsc::Sender<OrderedCopies>>,
    counters: Arc<DrainCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    // SAFETY: the RingBuf owns its map fd, which stays open until the AsyncFd drops it.
    let registered = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = registered.map_err(|e| Error::Poll(e.into()))?;
    // Event batches sent so far (the copies' `after_batches`).
    let mut sent: u64 = 0;
    loop {
        let stop = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(Error::Poll)?;
                let (batches, copied, read) = read_all(guard.get_inner_mut(), &counters);
                guard.clear_ready();
                hand_copies(copies.as_ref(), sent, copied, &counters);
                let pause = !busy(read, ring_bytes);
                for batch in batches {
                    if tx.send(batch).await.is_err() {
                        return Ok(());
                    }
                    sent += 1;
                }
                pause && tokio::select! {
                    () = tokio::time::sleep(DRAIN_PAUSE) => false,
                    _ = shutdown.changed() => true,
                }
            }
            _ = shutdown.changed() => true,
        };
        if stop {
            let (batches, copied, _) = read_all(fd.get_mut(), &counters);
            hand_copies(copies.as_ref(), sent, copied, &counters);
            for batch in batches {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
    }
}

/// Queues the copies of one pass without waiting, each run tagged with the batches sent before
/// it (`sent` before the pass, plus the pass's own): a full queue drops them, counted.
fn hand_copies(copies: Option<&mpsc::Sender<OrderedCopies>>, sent: u64, copied: CopyRuns, counters: &DrainCounters) {
    for (before, run) in copied {
        let n = run.len() as u64;
        let after_batches = sent.saturating_add(before as u64);
        let queued = copies.is_some_and(|tx| tx.try_send(OrderedCopies { after_batches, copies: run }).is_ok());
        if !queued {
            counters.copies_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Whether a drain that read `read` bytes of a ring of `ring_bytes` is followed by the next at
/// once (see [`BUSY_SHARE`]).
fn busy(read: usize, ring_bytes: usize) -> bool {
    read >= ring_bytes / BUSY_SHARE
}

/// The ring's records decoded, in ring order (see [`Pass`]), and the bytes of ring they took.
fn read_all(ring: &mut RingBuf<MapData>, counters: &DrainCounters) -> (Vec<EventBatch>, CopyRuns, usize) {
    let mut pass = Pass::default();
    let mut read = 0;
    while let Some(item) = ring.next() {
        read += item.len().next_multiple_of(8) + RECORD_HEADER;
        if let Some(copy) = decode_copy(&item) {
            counters.copies.fetch_add(1, Ordering::Relaxed);
            pass.copy(copy);
            continue;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        match decode(&item) {
            Some(ev) => pass.event(ev),
            None => {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                warn!("undecodable event len={}", item.len());
            }
        }
    }
    let (batches, copied) = pass.finish();
    trace!("drained batches={} copy runs={} bytes={read}", batches.len(), copied.len());
    (batches, copied, read)
}

/// Decodes a payload copy or a `getaddrinfo` result (kind `GAI_KIND`: `data` is its
/// `monitor_common::gai::GaiData`, see [`super::decode_gai`]); `None` for any other record (and
/// for a copy whose length is out of bounds, which then fails as an event and is counted as a
/// decode error).
#[must_use]
pub fn decode_copy(bytes: &[u8]) -> Option<Copied> {
    let kind: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let kind = u32::from_ne_bytes(kind);
    if (kind != COPY_KIND && kind != GAI_KIND) || bytes.len() < size_of::<CopyHeader>() {
        return None;
    }
    // SAFETY: length checked; `CopyHeader` is plain old data (every bit pattern valid), and
    // read_unaligned copes with any alignment of the ring-buffer slice.
    let header: CopyHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let len = header.len as usize;
    if len == 0 || len > COPY_MAX {
        return None;
    }
    let data = bytes.get(size_of::<CopyHeader>()..size_of::<CopyHeader>() + len)?;
    Some(Copied { header, data: data.into() })
}

/// Decodes one record; `None` for short records and unknown kinds.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<(EventKind, Event)> {
    if bytes.len() < size_of::<Event>() {
        return None;
    }
    // SAFETY: length checked; `Event` is plain old data (every bit pattern valid), and
    // read_unaligned copes with any alignment of the ring-buffer slice.
    let ev: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let kind = EventKind::try_from(ev.kind).ok()?;
    Some((kind, ev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_short_and_unknown_records() {
        let ev = Event { kind: EventKind::Release as u32, cookie: 7, ..Event::default() };
        // SAFETY: Event is repr(C) plain data.
        let bytes = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(&ev).cast::<u8>(), size_of::<Event>()) };
        assert_eq!(decode(bytes), Some((EventKind::Release, ev)));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        let mut unknown = bytes.to_vec();
        unknown[0] = 200;
        assert_eq!(decode(&unknown), None);
    }

    #[test]
    fn decode_copy_takes_the_copied_bytes_only() {
        let header = CopyHeader { kind: COPY_KIND, cookie: 9, len: 3, wire_len: 5, ..CopyHeader::default() };
        // SAFETY: CopyHeader is repr(C) plain data.
        let head =
            unsafe { std::slice::from_raw_parts(std::ptr::from_ref(&header).cast::<u8>(), size_of::<CopyHeader>()) };
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(b"abcdef");
        let copy = decode_copy(&bytes).unwrap();
        assert_eq!((copy.header.cookie, &*copy.data), (9, &b"abc"[..]));
        assert_eq!(decode_copy(&bytes[..size_of::<CopyHeader>() + 2]), None, "shorter than len");
        let mut zero = bytes.clone();
        zero[120..124].copy_from_slice(&0u32.to_ne_bytes());
        assert_eq!(decode_copy(&zero), None, "empty copy");
        let ev = Event { kind: EventKind::Release as u32, ..Event::default() };
        // SAFETY: Event is repr(C) plain data.
        let ev = unsafe { std::slice::from_raw_parts(std::ptr::from_ref(&ev).cast::<u8>(), size_of::<Event>()) };
        assert_eq!(decode_copy(ev), None);
    }

    #[test]
    fn a_pass_keeps_copies_between_the_events_around_them() {
        let ev = |cookie| (EventKind::Release, Event { kind: EventKind::Release as u32, cookie, ..Event::default() });
        let copy = |cookie| Copied { header: CopyHeader { cookie, ..CopyHeader::default() }, data: Box::new([1]) };
        let cookies = |b: &[(EventKind, Event)]| b.iter().map(|(_, e)| e.cookie).collect::<Vec<_>>();
        let copy_cookies = |r: &CopyBatch| r.iter().map(|c| c.header.cookie).collect::<Vec<_>>();
        // c0 e1 e2 c3 c4 e5 c6: the copies sit between the batches they were between.
        let mut pass = Pass::default();
        pass.copy(copy(0));
        pass.event(ev(1));
        pass.event(ev(2));
        pass.copy(copy(3));
        pass.copy(copy(4));
        pass.event(ev(5));
        pass.copy(copy(6));
        let (batches, copies) = pass.finish();
        assert_eq!(batches.iter().map(|b| cookies(b)).collect::<Vec<_>>(), [vec![1, 2], vec![5]]);
        let runs: Vec<_> = copies.iter().map(|(at, r)| (*at, copy_cookies(r))).collect();
        assert_eq!(runs, [(0, vec![0]), (1, vec![3, 4]), (2, vec![6])]);
        // Without copies, events fill batches of EVENT_BATCH.
        let mut pass = Pass::default();
        for c in 0..EVENT_BATCH as u64 + 1 {
            pass.event(ev(c));
        }
        let (batches, copies) = pass.finish();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [EVENT_BATCH, 1]);
        assert!(copies.is_empty());
    }

    #[test]
    fn a_drain_pauses_unless_it_read_an_eighth_of_the_ring() {
        let ring = 2 * 1024 * 1024;
        let event = size_of::<Event>().next_multiple_of(8) + RECORD_HEADER;
        assert_eq!(event, 224, "an event takes 224 bytes of ring");
        // A 4 ms pause at TCP churn's ≈ 160,000 events per second reads ≈ 640 events.
        assert!(!busy(640 * event, ring));
        assert!(!busy(ring / BUSY_SHARE - 1, ring));
        assert!(busy(ring / BUSY_SHARE, ring));
        assert!(busy(ring, ring));
        // The smallest ring (`probe.ring_buffer_kib = 4`) is busy from its third event on.
        assert!(!busy(2 * event, 4096));
        assert!(busy(3 * event, 4096));
    }
}
