//! Kernel programs of the monitor.
//!
//! Hooks (all cgroup hooks attach to the watched cgroup v2 directory):
//! - `cgroup/sock_create`: records the owner of every TCP/UDP socket ([`probes::sock`]).
//! - `cgroup/connect4|6`, `sendmsg4|6`, `recvmsg4|6`: remote addresses, and owners of sockets
//!   older than the monitor ([`probes::sock_addr`]).
//! - `sockops`: TCP handshake and close with final TCP counters ([`probes::sock_ops`]).
//! - `cgroup_skb/egress|ingress`: the only per-packet work: two atomic adds on per-socket
//!   storage, plus per-peer counters for unconnected UDP ([`probes::skb`]).
//! - `tp_btf/sock_send_length|sock_recv_length`: payload bytes written and read by the process
//!   ([`probes::payload`]).
//! - `cgroup/sock_release`: final counters when the process lets go of a socket.
//! - `uprobe`/`uretprobe` on libc's `getaddrinfo`: names resolved without DNS packets
//!   ([`probes::getaddrinfo`]; optional, costs on `getaddrinfo` calls only).
//!
//! Every program lets traffic pass whatever happens; failures are counted in `STATS`.
#![no_std]
#![no_main]
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic_xadd: AtomicU64::fetch_add does not exist on bpfel")]

mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
