//! Draining the event ring buffer into the tracker.

use std::{
    mem::size_of,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use log::{trace, warn};
use monitor_common::event::{Event, EventKind};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use super::{Error, stats::DrainCounters};

/// Most events handed to the tracker in one message.
pub const EVENT_BATCH: usize = 1024;

/// Pause after a drain that found less than a full batch, before looking again. The kernel
/// signals the ring buffer only when the reader has caught up, so while the reader pauses, new
/// events are queued without a wake-up each: under a burst of short connections (≈ 9 events per
/// TCP exchange) this turns one wake-up of the drainer, the tracker and the sink per event into
/// one per pause. Events wait at most this long; the ring buffer (4 MiB by default) holds far
/// more than a millisecond of events.
pub const DRAIN_PAUSE: Duration = Duration::from_millis(1);

/// Reads the records when the kernel signals, decodes them and sends batches to `tx`; after a
/// drain of less than [`EVENT_BATCH`] records it waits [`DRAIN_PAUSE`] before the next.
/// When `tx` is full this waits, the ring buffer fills, and the kernel counts what it loses.
/// Returns when `shutdown` changes (after a last full drain) or the receiver is gone.
///
/// # Errors
/// [`Error::Poll`] when the ring buffer cannot be registered with the runtime.
pub async fn drain(
    ring: RingBuf<MapData>,
    tx: mpsc::Sender<Vec<(EventKind, Event)>>,
    counters: Arc<DrainCounters>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    // SAFETY: the RingBuf owns its map fd, which stays open until the AsyncFd drops it.
    let registered = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
    let mut fd = registered.map_err(|e| Error::Poll(e.into()))?;
    loop {
        let stop = tokio::select! {
            guard = fd.readable_mut() => {
                let mut guard = guard.map_err(Error::Poll)?;
                let batches = read_all(guard.get_inner_mut(), &counters);
                guard.clear_ready();
                let pause = batches.iter().map(Vec::len).sum::<usize>() < EVENT_BATCH;
                for batch in batches {
                    if tx.send(batch).await.is_err() {
                        return Ok(());
                    }
                }
                pause && tokio::select! {
                    () = tokio::time::sleep(DRAIN_PAUSE) => false,
                    _ = shutdown.changed() => true,
                }
            }
            _ = shutdown.changed() => true,
        };
        if stop {
            for batch in read_all(fd.get_mut(), &counters) {
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
    }
}

fn read_all(ring: &mut RingBuf<MapData>, counters: &DrainCounters) -> Vec<Vec<(EventKind, Event)>> {
    let mut batches = Vec::new();
    let mut batch = Vec::with_capacity(EVENT_BATCH);
    while let Some(item) = ring.next() {
        counters.received.fetch_add(1, Ordering::Relaxed);
        match decode(&item) {
            Some(ev) => batch.push(ev),
            None => {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                warn!("undecodable event len={}", item.len());
            }
        }
        if batch.len() == EVENT_BATCH {
            batches.push(std::mem::replace(&mut batch, Vec::with_capacity(EVENT_BATCH)));
        }
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    trace!("drained batches={}", batches.len());
    batches
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
}
