//! Payload from the kernel's TCP byte counters (`bytes_acked`, `bytes_received`).

use monitor_common::event::{
    Event, EventKind, FLAG_TCP_COUNTERS, TCP_ALL_ACKED, TCP_FIN_RECEIVED, TcpCounters, tcp_state,
};

use super::{
    flow::{Flow, FlowKey},
    record::Payload,
};

/// Payload from the kernel's TCP counters. `bytes_acked` counts the SYN (active side) and an
/// acknowledged FIN; `bytes_received` counts a received FIN. `base` (counters at `ESTABLISHED`)
/// removes the handshake exactly; without it (kernels without the payload tracepoints, flow seen
/// late) the SYN is taken as the only byte before. The FINs come from the kernel's flags: ours is
/// counted when it was sent (state) and everything sent is acknowledged; the peer's when the
/// socket saw it (`sock_ops` tracks that exactly).
pub(super) fn tcp_payload(base: Option<[u64; 2]>, tcp: TcpCounters) -> Payload {
    use tcp_state::{CLOSING, FIN_WAIT2, LAST_ACK, TIME_WAIT};
    let [base_acked, base_received] = base.unwrap_or([1, 0]);
    let fin_sent = matches!(tcp.old_state, FIN_WAIT2 | TIME_WAIT | LAST_ACK | CLOSING);
    let fin_acked = u64::from(fin_sent && tcp.flags & TCP_ALL_ACKED != 0);
    let fin_received = u64::from(tcp.flags & TCP_FIN_RECEIVED != 0);
    Payload {
        tx_bytes: tcp.bytes_acked.saturating_sub(base_acked.saturating_add(fin_acked)),
        rx_bytes: tcp.bytes_received.saturating_sub(base_received.saturating_add(fin_received)),
    }
}

/// Whether a connection's final counters (`TcpClose`) show it ended in a reset or an abort:
/// `TCP_CLOSE` straight from `ESTABLISHED`, `SYN_RECV`, `FIN_WAIT1` or `CLOSE_WAIT` (a reset
/// sent or received, `SO_LINGER` 0, a close with unread data, a retransmission timeout). An
/// orderly end leaves `FIN_WAIT2` (also when the peer's FIN goes to the time-wait socket after
/// an orphaned socket's FIN was acknowledged), `LAST_ACK` or `CLOSING`. A reset discards the
/// receive queue: bytes the kernel counted in `bytes_received` that the process never read.
pub(super) fn ended_in_reset(tcp: &TcpCounters) -> bool {
    use tcp_state::{CLOSE_WAIT, ESTABLISHED, FIN_WAIT1, SYN_RECV};
    matches!(tcp.old_state, ESTABLISHED | SYN_RECV | FIN_WAIT1 | CLOSE_WAIT)
}

/// Bases too large for a flow's 32-bit handshake base ([`Flow`] keeps 32 bits: a handshake's
/// counters are a few KiB), by socket cookie: the first counters in this run of a connection
/// older than the run that had moved more than 4 GiB either way before it (a long-lived proxy
/// across a daemon restart). Such a connection's TCP counters are handed to its flow less this
/// base, so the flow sees a connection that started at its base, as it sees any older one.
/// Almost always empty: one map test per TCP counter event.
#[derive(Debug, Default)]
pub(super) struct WideBases(foldhash::HashMap<u64, [u64; 2]>);

impl WideBases {
    /// Event `ev` of flow `key` (`flow()`: the flow, when it is known already) with its TCP
    /// counters less the wide base of its socket, which this event sets when it is the flow's
    /// first counters in the run and they do not fit 32 bits; `None` when nothing changes.
    pub(super) fn rebase<'a>(
        &mut self,
        kind: EventKind,
        ev: &Event,
        key: FlowKey,
        flow: impl FnOnce() -> Option<&'a Flow>,
    ) -> Option<Event> {
        if ev.flags & FLAG_TCP_COUNTERS == 0 || key.peer.is_some() {
            return None;
        }
        let known = if self.0.is_empty() { None } else { self.0.get(&key.cookie).copied() };
        let base = match known {
            Some(base) => base,
            None => {
                let wide = |n: u64| u32::try_from(n).is_err();
                if !(wide(ev.tcp.bytes_acked) || wide(ev.tcp.bytes_received))
                    || !matches!(kind, EventKind::Update | EventKind::Discovered)
                    || !flow().is_none_or(Flow::takes_first_counters_as_base)
                {
                    return None;
                }
                let base = [ev.tcp.bytes_acked, ev.tcp.bytes_received];
                self.0.insert(key.cookie, base);
                base
            }
        };
        let mut rebased = *ev;
        rebased.tcp.bytes_acked = ev.tcp.bytes_acked.saturating_sub(base[0]);
        rebased.tcp.bytes_received = ev.tcp.bytes_received.saturating_sub(base[1]);
        Some(rebased)
    }

    /// Socket `cookie`'s flow ended.
    pub(super) fn forget(&mut self, cookie: u64) {
        if !self.0.is_empty() {
            self.0.remove(&cookie);
        }
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }
}
