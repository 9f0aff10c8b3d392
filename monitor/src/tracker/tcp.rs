//! Payload from the kernel's TCP byte counters (`bytes_acked`, `bytes_received`).

use monitor_common::event::{TCP_ALL_ACKED, TCP_FIN_RECEIVED, TCP_WRITE_POSITION, TcpCounters, tcp_state};

use super::record::Payload;

/// Payload from the kernel's TCP counters. `bytes_acked` counts the SYN (active side) and an
/// acknowledged FIN; `bytes_received` counts a received FIN. `base` (counters at `ESTABLISHED`)
/// removes the handshake exactly; without it (kernels without the payload tracepoints, flow seen
/// late) the SYN is taken as the only byte before. The FINs come from the kernel's flags: ours is
/// counted when it was sent (state) and everything sent is acknowledged; the peer's when the
/// socket saw it (`sock_ops` tracks that exactly).
pub(super) fn tcp_payload(base: Option<[u64; 2]>, tcp: TcpCounters) -> Payload {
    let [base_acked, base_received] = base.unwrap_or([1, 0]);
    let [acked, received] = stream_position(&tcp);
    Payload { tx_bytes: acked.saturating_sub(base_acked), rx_bytes: received.saturating_sub(base_received) }
}

/// `bytes_acked` and `bytes_received` less the FINs they count (see [`tcp_payload`]): where the
/// stream is each way, the SYN included.
/// A write position (`TCP_WRITE_POSITION`) has our FIN left out already.
pub(super) fn stream_position(tcp: &TcpCounters) -> [u64; 2] {
    use tcp_state::{CLOSING, FIN_WAIT2, LAST_ACK, TIME_WAIT};
    let fin_sent =
        tcp.flags & TCP_WRITE_POSITION == 0 && matches!(tcp.old_state, FIN_WAIT2 | TIME_WAIT | LAST_ACK | CLOSING);
    let fin_acked = u64::from(fin_sent && tcp.flags & TCP_ALL_ACKED != 0);
    let fin_received = u64::from(tcp.flags & TCP_FIN_RECEIVED != 0);
    [tcp.bytes_acked.saturating_sub(fin_acked), tcp.bytes_received.saturating_sub(fin_received)]
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
